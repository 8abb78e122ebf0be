/*
 * The "traffic" object of each env in GET v1/services/<psm>: the
 * service's request counters from the metrics series, cumulative, so
 * that a poller (the dashboard) computes the request rate, the 5xx
 * ratio and latency quantiles over its own interval, as Prometheus
 * does with rate() and histogram_quantile():
 *
 *   "traffic": {"requests": 1234, "by_class": {"2xx": 1200, ...},
 *               "answered_by_nginx": 3, "in_flight": 2,
 *               "request_duration": {"le_seconds": [0.005, ..., 60],
 *                                    "counts": [...14 buckets...],
 *                                    "sum_seconds": 12.3}}
 *
 * "counts" are per bucket (not cumulative); the last one counts the
 * requests above the last bound.  An env without a series (tce_metrics
 * off, or no request yet) has no "traffic".
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_metrics.h"
#include "ngx_tce_instance.h"


#define NGX_HTTP_TCE_ADMIN_MAX_GROUPS  64


static json_t *ngx_http_tce_admin_traffic_json(ngx_tce_group_counters_t *c);


static const char  *ngx_http_tce_admin_classes[NGX_TCE_PROM_NCLASSES] = {
    "1xx", "2xx", "3xx", "4xx", "5xx", "other"
};


ngx_int_t
ngx_http_tce_admin_traffic(json_t *clusters, ngx_tce_service_t *svc,
    ngx_log_t *log)
{
    u_char                              name[NGX_TCE_CLUSTER_LEN + 1];
    json_t                             *cj, *ej, *tj;
    ngx_uint_t                          i, n;
    ngx_http_tce_metrics_group_copy_t  *g;

    g = ngx_alloc(NGX_HTTP_TCE_ADMIN_MAX_GROUPS * sizeof(*g), log);
    if (g == NULL) {
        return NGX_ERROR;
    }

    n = ngx_http_tce_metrics_read_groups(svc->name, svc->name_len, g,
                                         NGX_HTTP_TCE_ADMIN_MAX_GROUPS);

    for (i = 0; i < n; i++) {
        ngx_memcpy(name, g[i].cluster, g[i].cluster_len);
        name[g[i].cluster_len] = '\0';

        /* only the clusters the registry has (not "unknown") */
        cj = json_object_get(clusters, (char *) name);
        ej = json_object_get(json_object_get(cj, "envs"),
                             ngx_tce_env_name(g[i].env));
        if (ej == NULL) {
            continue;
        }

        tj = ngx_http_tce_admin_traffic_json(&g[i].c);

        if (tj == NULL || json_object_set_new(ej, "traffic", tj) != 0) {
            ngx_free(g);
            return NGX_ERROR;
        }
    }

    ngx_free(g);

    return NGX_OK;
}


/* each container is attached to its parent first: tj owns everything */

static json_t *
ngx_http_tce_admin_traffic_json(ngx_tce_group_counters_t *c)
{
    json_t      *tj, *cls, *le, *counts, *dj;
    uint64_t     total, nginx, v;
    ngx_uint_t   i;

    tj = json_object();
    if (tj == NULL) {
        return NULL;
    }

    cls = json_object();
    dj = json_object();

    if (json_object_set_new(tj, "by_class", cls) != 0
        || json_object_set_new(tj, "request_duration", dj) != 0)
    {
        goto failed;
    }

    le = json_array();
    counts = json_array();

    if (json_object_set_new(dj, "le_seconds", le) != 0
        || json_object_set_new(dj, "counts", counts) != 0)
    {
        goto failed;
    }

    total = 0;
    nginx = 0;

    for (i = 0; i < NGX_TCE_PROM_NCLASSES; i++) {
        v = c->requests[i][NGX_TCE_PROM_SRC_UPSTREAM]
            + c->requests[i][NGX_TCE_PROM_SRC_NGINX];
        total += v;
        nginx += c->requests[i][NGX_TCE_PROM_SRC_NGINX];

        if (json_object_set_new(cls, ngx_http_tce_admin_classes[i],
                                json_integer((json_int_t) v))
            != 0)
        {
            goto failed;
        }
    }

    for (i = 0; i < NGX_TCE_HIST_NBUCKETS; i++) {
        if (i + 1 < NGX_TCE_HIST_NBUCKETS
            && json_array_append_new(le, json_real(
                   (double) ngx_tce_histogram_bound_ms(i) / 1000))
               != 0)
        {
            goto failed;
        }

        if (json_array_append_new(counts, json_integer(
                (json_int_t) c->request_time.bucket[i]))
            != 0)
        {
            goto failed;
        }
    }

    if (json_object_set_new(dj, "sum_seconds",
                            json_real((double) c->request_time.sum_ms
                                      / 1000))
        != 0
        || json_object_set_new(tj, "requests",
                               json_integer((json_int_t) total))
           != 0
        || json_object_set_new(tj, "answered_by_nginx",
                               json_integer((json_int_t) nginx))
           != 0
        || json_object_set_new(tj, "in_flight",
                               json_integer((json_int_t)
                                            (int64_t) c->in_flight))
           != 0)
    {
        goto failed;
    }

    return tj;

failed:

    json_decref(tj);

    return NULL;
}
