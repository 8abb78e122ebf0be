/*
 * The notice lines of a reload: the zone's services are copied before
 * the state file is applied and compared with what they hold after.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_tce.h"
#include "ngx_tce_change.h"
#include "ngx_tce_reload_log.h"


/* the canary policies compared per service (one per cluster) */
#define NGX_TCE_RELOAD_LOG_POLICIES  16


typedef struct {
    ngx_tce_service_t          *svc;
    ngx_atomic_uint_t           generation;
    ngx_tce_instance_t         *inst;
    ngx_uint_t                  n;
    uint32_t                    policies;    /* their digest */
    uint32_t                    name;        /* crc32 of the name */
} ngx_tce_reload_svc_t;


struct ngx_tce_reload_log_s {
    ngx_tce_reload_svc_t       *svcs;        /* sorted by svc */
    ngx_uint_t                  n;
};


static uint32_t ngx_tce_reload_log_policies(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc);
static void ngx_tce_reload_log_one(ngx_tce_zone_t *zone,
    ngx_tce_reload_svc_t *before, ngx_tce_service_t *svc, ngx_log_t *log);
static int ngx_libc_cdecl ngx_tce_reload_log_cmp(const void *a,
    const void *b);


ngx_tce_reload_log_t *
ngx_tce_reload_log_before(ngx_tce_zone_t *zone, ngx_log_t *log)
{
    ngx_uint_t             n, i;
    ngx_tce_service_t     *svc;
    ngx_tce_reload_log_t  *rl;
    ngx_tce_reload_svc_t  *rs;

    rl = ngx_calloc(sizeof(ngx_tce_reload_log_t), log);
    if (rl == NULL) {
        return NULL;
    }

    n = 0;

    for (svc = zone->sh->services; svc; svc = svc->next) {
        n++;
    }

    if (n == 0) {
        return rl;
    }

    rl->svcs = ngx_calloc(n * sizeof(ngx_tce_reload_svc_t), log);
    if (rl->svcs == NULL) {
        ngx_free(rl);
        return NULL;
    }

    i = 0;

    /* services added meanwhile come first in the list: not counted */
    for (svc = zone->sh->services; svc && i < n; svc = svc->next) {
        rs = &rl->svcs[i];

        rs->svc = svc;
        rs->name = ngx_crc32_short(svc->name, svc->name_len);
        rs->policies = ngx_tce_reload_log_policies(zone, svc);

        if (ngx_tce_zone_copy(zone, svc, &rs->inst, &rs->n,
                              &rs->generation, log)
            != NGX_OK)
        {
            rl->n = i;
            ngx_tce_reload_log_free(rl);
            return NULL;
        }

        i++;
    }

    rl->n = i;

    ngx_qsort(rl->svcs, rl->n, sizeof(ngx_tce_reload_svc_t),
              ngx_tce_reload_log_cmp);

    return rl;
}


void
ngx_tce_reload_log_after(ngx_tce_reload_log_t *rl, ngx_tce_zone_t *zone,
    ngx_log_t *log)
{
    ngx_tce_service_t     *svc;
    ngx_tce_reload_svc_t   key, *before;

    if (rl == NULL) {
        return;
    }

    for (svc = zone->sh->services; svc; svc = svc->next) {
        key.svc = svc;

        before = rl->n ? bsearch(&key, rl->svcs, rl->n,
                                 sizeof(ngx_tce_reload_svc_t),
                                 ngx_tce_reload_log_cmp)
                       : NULL;

        /* the memory of a service reclaimed meanwhile, reused */
        if (before
            && before->name != ngx_crc32_short(svc->name, svc->name_len))
        {
            before = NULL;
        }

        if (before && before->generation == svc->generation) {
            continue;
        }

        ngx_tce_reload_log_one(zone, before, svc, log);
    }

    ngx_tce_reload_log_free(rl);
}


static void
ngx_tce_reload_log_one(ngx_tce_zone_t *zone, ngx_tce_reload_svc_t *before,
    ngx_tce_service_t *svc, ngx_log_t *log)
{
    size_t               len;
    uint32_t             policies;
    ngx_uint_t           n, changed, policy;
    ngx_tce_change_t     c;
    ngx_tce_instance_t  *inst;
    ngx_atomic_uint_t    generation;
    char                 text[NGX_TCE_CHANGE_TEXT_LEN];

    if (ngx_tce_zone_copy(zone, svc, &inst, &n, &generation, log)
        != NGX_OK)
    {
        return;
    }

    changed = ngx_tce_change_diff(before ? before->inst : NULL,
                                  before ? before->n : 0, inst, n, &c);
    ngx_free(inst);

    policies = ngx_tce_reload_log_policies(zone, svc);
    policy = before ? (before->policies != policies) : (policies != 0);

    /* a new generation for the same set (its schedules published) */
    if (!changed && !policy) {
        return;
    }

    len = ngx_tce_change_text(text, sizeof(text), &c);

    if (before == NULL) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "tce: service \"%s\" new, generation %uA: %*s%s%s",
                      svc->name, generation, len, text,
                      (changed && policy) ? ", " : "",
                      policy ? "canary policy set" : "");
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "tce: service \"%s\" generation %uA -> %uA: %*s%s%s",
                  svc->name, before->generation, generation, len, text,
                  (changed && policy) ? ", " : "",
                  policy ? "canary policy changed" : "");
}


/* a digest of the canary policies set for the service's clusters */
static uint32_t
ngx_tce_reload_log_policies(ngx_tce_zone_t *zone, ngx_tce_service_t *svc)
{
    uint32_t                 crc;
    ngx_uint_t               i, n;
    ngx_tce_policy_entry_t   p[NGX_TCE_RELOAD_LOG_POLICIES];

    n = ngx_tce_zone_policy_list(zone, svc, p, NGX_TCE_RELOAD_LOG_POLICIES);

    if (n == 0) {
        return 0;
    }

    ngx_crc32_init(crc);

    for (i = 0; i < n; i++) {
        ngx_crc32_update(&crc, p[i].cluster, ngx_strlen(p[i].cluster) + 1);
        ngx_crc32_update(&crc, (u_char *) &p[i].canary.epoch,
                         sizeof(p[i].canary.epoch));
        ngx_crc32_update(&crc, (u_char *) &p[i].canary.weight,
                         sizeof(p[i].canary.weight));
        ngx_crc32_update(&crc, (u_char *) &p[i].canary.fallback,
                         sizeof(p[i].canary.fallback));
    }

    ngx_crc32_final(crc);

    /* 0 stands for "none" */
    return crc ? crc : 1;
}


void
ngx_tce_reload_log_free(ngx_tce_reload_log_t *rl)
{
    ngx_uint_t  i;

    if (rl == NULL) {
        return;
    }

    for (i = 0; i < rl->n; i++) {
        if (rl->svcs[i].inst) {
            ngx_free(rl->svcs[i].inst);
        }
    }

    if (rl->svcs) {
        ngx_free(rl->svcs);
    }

    ngx_free(rl);
}


static int ngx_libc_cdecl
ngx_tce_reload_log_cmp(const void *a, const void *b)
{
    uintptr_t  x, y;

    x = (uintptr_t) ((ngx_tce_reload_svc_t *) a)->svc;
    y = (uintptr_t) ((ngx_tce_reload_svc_t *) b)->svc;

    return (x > y) - (x < y);
}
