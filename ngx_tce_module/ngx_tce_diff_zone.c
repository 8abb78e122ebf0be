/*
 * API diff: the outcomes in the shared zone (see ngx_tce_diff_mirror.h)
 * and what other modules read of them (ngx_tce_diff.h).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_tce_diff_mirror.h"
#include "ngx_tce_text.h"


static ngx_tce_diff_entry_t *ngx_tce_diff_find(ngx_tce_diff_sh_t *sh,
    ngx_str_t *service, ngx_str_t *cluster, ngx_str_t *location);
static ngx_tce_diff_entry_t *ngx_tce_diff_add(ngx_tce_zone_t *zone,
    ngx_str_t *service, ngx_str_t *cluster, ngx_str_t *location);
static ngx_int_t ngx_tce_diff_same(const char *s, ngx_str_t *v);
static ngx_tce_diff_main_conf_t *ngx_tce_diff_conf(void);
static ngx_uint_t ngx_tce_diff_covers(ngx_tce_diff_main_conf_t *dmcf,
    ngx_str_t *service, ngx_str_t *cluster);
static json_t *ngx_tce_diff_mismatch_json(ngx_tce_diff_entry_t *e,
    ngx_tce_diff_mismatch_t *m);


void
ngx_tce_diff_zone_count(ngx_tce_zone_t *zone, ngx_tce_diff_job_t *job,
    int result, ngx_log_t *log)
{
    u_char                    line[NGX_TCE_DIFF_REQUEST_LEN], *p;
    ngx_time_t               *tp;
    ngx_tce_diff_entry_t     *e;
    ngx_tce_diff_mismatch_t  *m;

    if (zone == NULL || zone->sh == NULL) {
        return;
    }

    e = ngx_tce_diff_find(zone->sh->diff, &job->service, &job->cluster,
                          &job->conf->name);

    if (e == NULL) {
        e = ngx_tce_diff_add(zone, &job->service, &job->cluster,
                             &job->conf->name);

        if (e == NULL) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "tce diff: zone \"%V\" is full, an outcome of "
                          "\"%V\" is not counted",
                          &zone->shm_zone->shm.name, &job->conf->name);
            return;
        }
    }

    (void) ngx_atomic_fetch_add(&e->results[result], 1);

    if (result == NGX_TCE_DIFF_MATCH && job->outcome.noise) {
        (void) ngx_atomic_fetch_add(&e->noisy, 1);
    }

    if (result != NGX_TCE_DIFF_MISMATCH) {
        return;
    }

    /* "<method> <uri>", cut, made printable outside the lock */

    p = ngx_snprintf(line, sizeof(line) - 1, "%V %V", &job->method,
                     &job->uri);
    tp = ngx_timeofday();

    ngx_shmtx_lock(&zone->shpool->mutex);

    m = &e->last[e->nlast++ % NGX_TCE_DIFF_NLAST];

    m->time = (uint64_t) tp->sec * 1000 + tp->msec;
    m->prod_status = job->side[NGX_TCE_DIFF_PROD].status;
    m->canary_status = job->side[NGX_TCE_DIFF_CANARY].status;
    m->prod_digest = job->outcome.prod_digest;
    m->canary_digest = job->outcome.canary_digest;

    (void) ngx_tce_text_escape(m->request, sizeof(m->request),
                               (char *) line,
                               ngx_min((size_t) (p - line), 80));
    ngx_memcpy(m->what, job->outcome.what, sizeof(m->what));
    ngx_memcpy(m->prod, job->outcome.prod, sizeof(m->prod));
    ngx_memcpy(m->canary, job->outcome.canary, sizeof(m->canary));

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/* without the lock: entries are published whole, never unlinked */
static ngx_tce_diff_entry_t *
ngx_tce_diff_find(ngx_tce_diff_sh_t *sh, ngx_str_t *service,
    ngx_str_t *cluster, ngx_str_t *location)
{
    ngx_tce_diff_entry_t  *e;

    if (sh == NULL) {
        return NULL;
    }

    for (e = sh->entries; e; e = e->next) {
        if (ngx_tce_diff_same(e->service, service)
            && ngx_tce_diff_same(e->cluster, cluster)
            && ngx_tce_diff_same(e->location, location))
        {
            return e;
        }
    }

    return NULL;
}


static ngx_tce_diff_entry_t *
ngx_tce_diff_add(ngx_tce_zone_t *zone, ngx_str_t *service,
    ngx_str_t *cluster, ngx_str_t *location)
{
    ngx_tce_diff_sh_t     *sh;
    ngx_tce_diff_entry_t  *e;

    if (service->len >= NGX_TCE_SERVICE_LEN
        || cluster->len >= NGX_TCE_CLUSTER_LEN
        || location->len >= NGX_TCE_DIFF_NAME_LEN)
    {
        return NULL;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    sh = zone->sh->diff;

    if (sh == NULL) {
        sh = ngx_slab_calloc_locked(zone->shpool, sizeof(ngx_tce_diff_sh_t));
        if (sh == NULL) {
            ngx_shmtx_unlock(&zone->shpool->mutex);
            return NULL;
        }

        zone->sh->diff = sh;
    }

    /* another worker may have added it meanwhile */
    e = ngx_tce_diff_find(sh, service, cluster, location);

    if (e == NULL) {
        e = ngx_slab_calloc_locked(zone->shpool,
                                   sizeof(ngx_tce_diff_entry_t));

        if (e) {
            ngx_memcpy(e->service, service->data, service->len);
            ngx_memcpy(e->cluster, cluster->data, cluster->len);
            ngx_memcpy(e->location, location->data, location->len);
            e->next = sh->entries;

            /* whole before a lock-free reader can reach it */
            ngx_memory_barrier();

            sh->entries = e;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return e;
}


static ngx_int_t
ngx_tce_diff_same(const char *s, ngx_str_t *v)
{
    return ngx_strncmp(s, v->data, v->len) == 0 && s[v->len] == '\0';
}


static ngx_tce_diff_main_conf_t *
ngx_tce_diff_conf(void)
{
    ngx_cycle_t  *cycle;

    cycle = (ngx_cycle_t *) ngx_cycle;

    if (cycle->conf_ctx == NULL
        || cycle->conf_ctx[ngx_http_module.index] == NULL)
    {
        return NULL;
    }

    return ngx_http_cycle_get_module_main_conf(cycle, ngx_tce_diff_module);
}


/* a tce_diff location proxies to the service, or has counted for it */
static ngx_uint_t
ngx_tce_diff_covers(ngx_tce_diff_main_conf_t *dmcf, ngx_str_t *service,
    ngx_str_t *cluster)
{
    ngx_str_t             *s;
    ngx_uint_t             i;
    ngx_tce_diff_sh_t     *sh;
    ngx_tce_diff_entry_t  *e;

    s = dmcf->services.elts;

    for (i = 0; i < dmcf->services.nelts; i++) {
        if (s[i].len == service->len
            && ngx_strncmp(s[i].data, service->data, service->len) == 0)
        {
            return 1;
        }
    }

    sh = (dmcf->zone && dmcf->zone->sh) ? dmcf->zone->sh->diff : NULL;

    for (e = sh ? sh->entries : NULL; e; e = e->next) {
        if (ngx_tce_diff_same(e->service, service)
            && ngx_tce_diff_same(e->cluster, cluster))
        {
            return 1;
        }
    }

    return 0;
}


ngx_int_t
ngx_tce_diff_totals(ngx_str_t *service, ngx_str_t *cluster,
    uint64_t *match, uint64_t *mismatch, uint64_t *error)
{
    uint64_t                   r[NGX_TCE_DIFF_NRESULTS];
    ngx_uint_t                 k;
    ngx_tce_diff_sh_t         *sh;
    ngx_tce_diff_entry_t      *e;
    ngx_tce_diff_main_conf_t  *dmcf;

    dmcf = ngx_tce_diff_conf();

    if (dmcf == NULL || !ngx_tce_diff_covers(dmcf, service, cluster)) {
        return NGX_DECLINED;
    }

    ngx_memzero(r, sizeof(r));

    sh = (dmcf->zone && dmcf->zone->sh) ? dmcf->zone->sh->diff : NULL;

    for (e = sh ? sh->entries : NULL; e; e = e->next) {
        if (ngx_tce_diff_same(e->service, service)
            && ngx_tce_diff_same(e->cluster, cluster))
        {
            for (k = 0; k < NGX_TCE_DIFF_NRESULTS; k++) {
                r[k] += e->results[k];
            }
        }
    }

    *match = r[NGX_TCE_DIFF_MATCH];
    *mismatch = r[NGX_TCE_DIFF_MISMATCH];
    *error = r[NGX_TCE_DIFF_ERROR];

    return NGX_OK;
}


json_t *
ngx_tce_diff_json(ngx_str_t *service, ngx_str_t *cluster,
    ngx_uint_t *declined)
{
    uint64_t                   r[NGX_TCE_DIFF_NRESULTS];
    json_t                    *root, *locs, *last, *o;
    ngx_uint_t                 k, n, i;
    ngx_tce_diff_sh_t         *sh;
    ngx_tce_diff_entry_t      *e;
    ngx_tce_diff_mismatch_t    copy[NGX_TCE_DIFF_NLAST];
    ngx_tce_diff_main_conf_t  *dmcf;

    *declined = 0;

    dmcf = ngx_tce_diff_conf();

    if (dmcf == NULL || !ngx_tce_diff_covers(dmcf, service, cluster)) {
        *declined = 1;
        return NULL;
    }

    root = json_object();
    locs = json_array();
    last = json_array();

    if (root == NULL || locs == NULL || last == NULL) {
        goto failed;
    }

    ngx_memzero(r, sizeof(r));

    sh = (dmcf->zone && dmcf->zone->sh) ? dmcf->zone->sh->diff : NULL;

    for (e = sh ? sh->entries : NULL; e; e = e->next) {
        if (!ngx_tce_diff_same(e->service, service)
            || !ngx_tce_diff_same(e->cluster, cluster))
        {
            continue;
        }

        for (k = 0; k < NGX_TCE_DIFF_NRESULTS; k++) {
            r[k] += e->results[k];
        }

        o = json_pack("{s:s, s:I, s:I, s:I, s:I}",
                      "location", e->location,
                      "match", (json_int_t) e->results[0],
                      "mismatch", (json_int_t) e->results[1],
                      "error", (json_int_t) e->results[2],
                      "noisy", (json_int_t) e->noisy);

        if (o == NULL || json_array_append_new(locs, o) != 0) {
            goto failed;
        }

        /* the ring, newest first, copied under the lock */

        ngx_shmtx_lock(&dmcf->zone->shpool->mutex);

        n = ngx_min(e->nlast, NGX_TCE_DIFF_NLAST);

        for (i = 0; i < n; i++) {
            copy[i] = e->last[(e->nlast - 1 - i) % NGX_TCE_DIFF_NLAST];
        }

        ngx_shmtx_unlock(&dmcf->zone->shpool->mutex);

        for (i = 0; i < n; i++) {
            o = ngx_tce_diff_mismatch_json(e, &copy[i]);

            if (o == NULL || json_array_append_new(last, o) != 0) {
                goto failed;
            }
        }
    }

    o = (r[0] + r[1]) ? json_real((double) r[0] / (double) (r[0] + r[1]))
                      : json_null();

    if (o == NULL
        || json_object_set_new(root, "match_ratio", o) != 0
        || json_object_set_new(root, "match", json_integer(r[0])) != 0
        || json_object_set_new(root, "mismatch", json_integer(r[1])) != 0
        || json_object_set_new(root, "error", json_integer(r[2])) != 0
        || json_object_set(root, "locations", locs) != 0
        || json_object_set(root, "last_mismatches", last) != 0)
    {
        goto failed;
    }

    json_decref(locs);
    json_decref(last);

    return root;

failed:

    json_decref(root);
    json_decref(locs);
    json_decref(last);

    return NULL;
}


static json_t *
ngx_tce_diff_mismatch_json(ngx_tce_diff_entry_t *e,
    ngx_tce_diff_mismatch_t *m)
{
    char  pd[17], cd[17];

    (void) ngx_sprintf((u_char *) pd, "%016uxL%Z", m->prod_digest);
    (void) ngx_sprintf((u_char *) cd, "%016uxL%Z", m->canary_digest);

    return json_pack("{s:s, s:I, s:s, s:i, s:i, s:s, s:s, s:s, s:s, s:s}",
                     "location", e->location,
                     "time_ms", (json_int_t) m->time,
                     "request", m->request,
                     "prod_status", (int) m->prod_status,
                     "canary_status", (int) m->canary_status,
                     "prod_digest", pd,
                     "canary_digest", cd,
                     "what", m->what,
                     "prod", m->prod,
                     "canary", m->canary);
}


ngx_int_t
ngx_tce_diff_prom(ngx_tce_zone_t *zone, ngx_tce_prom_snapshot_t *s,
    ngx_pool_t *pool)
{
    ngx_uint_t             k;
    ngx_array_t           *a;
    ngx_tce_diff_sh_t     *sh;
    ngx_tce_diff_entry_t  *e;
    ngx_tce_prom_diff_t   *d;

    sh = (zone && zone->sh) ? zone->sh->diff : NULL;

    if (sh == NULL) {
        return NGX_OK;
    }

    a = ngx_array_create(pool, 8, sizeof(ngx_tce_prom_diff_t));
    if (a == NULL) {
        return NGX_ERROR;
    }

    for (e = sh->entries; e; e = e->next) {
        d = ngx_array_push(a);
        if (d == NULL) {
            return NGX_ERROR;
        }

        d->service = e->service;
        d->cluster = e->cluster;
        d->location = e->location;

        for (k = 0; k < NGX_TCE_DIFF_NRESULTS; k++) {
            d->results[k] = e->results[k];
        }
    }

    s->diff = a->elts;
    s->ndiff = a->nelts;

    return NGX_OK;
}
