/*
 * The canary policy in effect, per cluster of a service, as an
 * operator reads it (tce_status, tce_metrics): the zone's where one is
 * set (the state file, the admin API or the fleet set it), otherwise
 * nginx.conf's tce_canary, which the balancer then routes with.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_upstream.h"


static ngx_int_t ngx_http_tce_upstream_policy_add(ngx_array_t *out,
    u_char *cluster, size_t len);
static void ngx_http_tce_upstream_policy_conf(ngx_tce_service_t *svc,
    ngx_tce_policy_entry_t *e);


ngx_int_t
ngx_http_tce_upstream_policy_effective(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_array_t *out, ngx_log_t *log)
{
    ngx_uint_t                          i, j, n, np;
    ngx_atomic_uint_t                   generation;
    ngx_tce_instance_t                 *inst;
    ngx_tce_policy_entry_t             *e;
    ngx_http_upstream_srv_conf_t      **uscfp;
    ngx_http_upstream_main_conf_t      *umcf;
    ngx_http_tce_upstream_srv_conf_t   *ucf;
    ngx_tce_policy_entry_t              zp[NGX_HTTP_TCE_UPSTREAM_POLICIES];

    /* the clusters: of the instances, of the zone's policies, of the
     * upstreams naming the service with a static cluster= */

    if (ngx_tce_zone_copy(zone, svc, &inst, &n, &generation, log) != NGX_OK) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        if (ngx_http_tce_upstream_policy_add(out, (u_char *) inst[i].cluster,
                                             ngx_strlen(inst[i].cluster))
            != NGX_OK)
        {
            ngx_free(inst);
            return NGX_ERROR;
        }
    }

    if (inst) {
        ngx_free(inst);
    }

    np = ngx_tce_zone_policy_list(zone, svc, zp,
                                  NGX_HTTP_TCE_UPSTREAM_POLICIES);

    for (i = 0; i < np; i++) {
        if (ngx_http_tce_upstream_policy_add(out, zp[i].cluster,
                                             ngx_strlen(zp[i].cluster))
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    umcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_upstream_module);
    uscfp = umcf ? umcf->upstreams.elts : NULL;

    for (i = 0; umcf && i < umcf->upstreams.nelts; i++) {
        if (uscfp[i]->srv_conf == NULL) {
            continue;
        }

        ucf = ngx_http_conf_upstream_srv_conf(uscfp[i],
                                              ngx_http_tce_upstream_module);

        if (ucf && ucf->service == svc && ucf->cluster == NULL
            && ngx_http_tce_upstream_policy_add(out, ucf->cluster_name.data,
                                                ucf->cluster_name.len)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    /* each cluster's policy: the zone's, else nginx.conf's */

    e = out->elts;

    for (i = 0; i < out->nelts; i++) {
        for (j = 0; j < np; j++) {
            if (ngx_strcmp(zp[j].cluster, e[i].cluster) == 0) {
                e[i].canary = zp[j].canary;
                e[i].source = zp[j].source;
                break;
            }
        }

        if (j == np) {
            ngx_http_tce_upstream_policy_conf(svc, &e[i]);
        }
    }

    return NGX_OK;
}


/* appends a cluster not listed yet, with no policy */
static ngx_int_t
ngx_http_tce_upstream_policy_add(ngx_array_t *out, u_char *cluster,
    size_t len)
{
    ngx_uint_t               i;
    ngx_tce_policy_entry_t  *e;

    if (len == 0 || len >= NGX_TCE_CLUSTER_LEN) {
        return NGX_OK;
    }

    e = out->elts;

    for (i = 0; i < out->nelts; i++) {
        if (ngx_strncmp(e[i].cluster, cluster, len) == 0
            && e[i].cluster[len] == '\0')
        {
            return NGX_OK;
        }
    }

    e = ngx_array_push(out);
    if (e == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(e, sizeof(ngx_tce_policy_entry_t));
    ngx_memcpy(e->cluster, cluster, len);

    return NGX_OK;
}


/*
 * nginx.conf's policy of a cluster: the tce_canary of the first
 * upstream routing to it (tce_service <psm> with that cluster or a
 * cluster=$variable, or tce_service $variable); an upstream without
 * tce_canary routes to prod only, with no fallback (all zero).
 */
static void
ngx_http_tce_upstream_policy_conf(ngx_tce_service_t *svc,
    ngx_tce_policy_entry_t *e)
{
    size_t                              len;
    ngx_uint_t                          i;
    ngx_http_upstream_srv_conf_t      **uscfp;
    ngx_http_upstream_main_conf_t      *umcf;
    ngx_http_tce_upstream_srv_conf_t   *ucf;

    e->source = NGX_TCE_POLICY_CONF;
    ngx_memzero(&e->canary, sizeof(ngx_tce_canary_policy_t));

    umcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_upstream_module);
    if (umcf == NULL) {
        return;
    }

    uscfp = umcf->upstreams.elts;
    len = ngx_strlen(e->cluster);

    for (i = 0; i < umcf->upstreams.nelts; i++) {
        if (uscfp[i]->srv_conf == NULL) {
            continue;
        }

        ucf = ngx_http_conf_upstream_srv_conf(uscfp[i],
                                              ngx_http_tce_upstream_module);

        if (ucf == NULL || (ucf->service != svc && ucf->service_cv == NULL)
            || (ucf->cluster == NULL
                && (ucf->cluster_name.len != len
                    || ngx_strncmp(ucf->cluster_name.data, e->cluster, len)
                       != 0)))
        {
            continue;
        }

        if (ucf->canary) {
            e->canary = ucf->canary->policy;
        }

        return;
    }
}


ngx_int_t
ngx_http_tce_upstream_policy_prom(ngx_tce_zone_t *zone,
    ngx_tce_prom_snapshot_t *s, ngx_pool_t *pool)
{
    u_char                  *name;
    ngx_uint_t               i;
    ngx_array_t              a, entries;
    ngx_tce_service_t       *svc;
    ngx_tce_prom_canary_t   *pc;
    ngx_tce_policy_entry_t  *e;

    if (ngx_array_init(&a, pool, 8, sizeof(ngx_tce_prom_canary_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (svc = zone->sh->services; svc; svc = svc->next) {
        if (ngx_array_init(&entries, pool, 2, sizeof(ngx_tce_policy_entry_t))
            != NGX_OK
            || ngx_http_tce_upstream_policy_effective(zone, svc, &entries,
                                                      pool->log)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (entries.nelts == 0) {
            continue;
        }

        name = ngx_pnalloc(pool, svc->name_len + 1);
        if (name == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(name, svc->name, svc->name_len);
        name[svc->name_len] = '\0';

        e = entries.elts;

        for (i = 0; i < entries.nelts; i++) {
            pc = ngx_array_push(&a);
            if (pc == NULL) {
                return NGX_ERROR;
            }

            pc->service = (char *) name;
            pc->cluster = (char *) e[i].cluster;
            pc->weight = e[i].canary.weight;
            pc->epoch = e[i].canary.epoch;
        }
    }

    s->canary = a.elts;
    s->ncanary = a.nelts;

    return NGX_OK;
}
