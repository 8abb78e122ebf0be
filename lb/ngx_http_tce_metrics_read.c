/*
 * Reading one service's group series for the admin API: the counters
 * of each (cluster, env) as they are now, so that a caller polling
 * them can compute rates, error ratios and quantiles over its own
 * polling interval.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_metrics.h"


ngx_uint_t
ngx_http_tce_metrics_read_groups(u_char *name, size_t len,
    ngx_http_tce_metrics_group_copy_t *out, ngx_uint_t max)
{
    ngx_uint_t                         n;
    ngx_queue_t                       *q, *gq;
    ngx_http_tce_metrics_svc_t        *svc;
    ngx_http_tce_metrics_group_t      *g;
    ngx_http_tce_metrics_main_conf_t  *mmcf;

    mmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_tce_metrics_module);

    if (mmcf == NULL || !mmcf->enabled || mmcf->zone == NULL
        || mmcf->sh == NULL)
    {
        return 0;
    }

    n = 0;

    ngx_shmtx_lock(&mmcf->zone->shpool->mutex);

    for (q = ngx_queue_head(&mmcf->sh->services);
         q != ngx_queue_sentinel(&mmcf->sh->services);
         q = ngx_queue_next(q))
    {
        svc = ngx_queue_data(q, ngx_http_tce_metrics_svc_t, queue);

        if (svc->name_len != len || ngx_memcmp(svc->name, name, len) != 0) {
            continue;
        }

        for (gq = ngx_queue_head(&svc->groups);
             gq != ngx_queue_sentinel(&svc->groups) && n < max;
             gq = ngx_queue_next(gq))
        {
            g = ngx_queue_data(gq, ngx_http_tce_metrics_group_t, queue);

            out[n].env = g->env;
            out[n].cluster_len = g->cluster_len;
            ngx_memcpy(out[n].cluster, g->cluster, g->cluster_len);
            out[n].c = g->c;
            n++;
        }

        break;
    }

    ngx_shmtx_unlock(&mmcf->zone->shpool->mutex);

    return n;
}
