/*
 * The instances' recent figures (request rate, error ratio, in-flight
 * average over the last NGX_TCE_WINDOW_SECONDS seconds), read from the
 * series every worker adds to (ngx_tce_window.h): for the admin API's
 * reads and the scaling signal.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_metrics.h"
#include "ngx_tce_scale.h"


char *
ngx_http_tce_metrics_enable(ngx_conf_t *cf)
{
    ngx_tce_main_conf_t               *tmcf;
    ngx_http_tce_metrics_main_conf_t  *mmcf;

    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_tce_module);

    if (tmcf->zone == NULL) {
        return "needs a \"tce_zone\" in http{} before it";
    }

    mmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_tce_metrics_module);
    mmcf->enabled = 1;
    mmcf->zone = tmcf->zone;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_tce_metrics_recent(ngx_str_t *name, ngx_tce_instance_t *inst,
    ngx_uint_t n, ngx_http_tce_metrics_recent_t *out)
{
    uint32_t                           now;
    ngx_uint_t                         i;
    ngx_tce_zone_t                    *zone;
    ngx_http_tce_metrics_sh_t         *sh;
    ngx_http_tce_metrics_svc_t        *svc;
    ngx_http_tce_metrics_peer_t       *p;
    ngx_http_tce_metrics_main_conf_t  *mmcf;

    mmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_tce_metrics_module);

    if (mmcf == NULL || !mmcf->enabled || mmcf->sh == NULL) {
        return NGX_DECLINED;
    }

    sh = mmcf->sh;
    zone = mmcf->zone;
    now = (uint32_t) ngx_time();

    ngx_memzero(out, n * sizeof(ngx_http_tce_metrics_recent_t));

    ngx_shmtx_lock(&zone->shpool->mutex);

    svc = ngx_http_tce_metrics_svc_find_locked(sh, name->data, name->len);

    for (i = 0; svc && i < n; i++) {
        p = ngx_http_tce_metrics_peer_find_locked(svc,
                                       (u_char *) inst[i].cluster,
                                       ngx_strlen(inst[i].cluster),
                                       inst[i].env, (u_char *) inst[i].id,
                                       ngx_strlen(inst[i].id));
        if (p == NULL) {
            continue;
        }

        out[i].found = 1;
        out[i].in_flight = (int64_t) p->c.in_flight;
        ngx_tce_window_sum(&p->c.window, now, &out[i].w);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    for (i = 0; i < n; i++) {
        out[i].w.seconds = NGX_TCE_WINDOW_SECONDS;
    }

    return NGX_OK;
}


ngx_http_tce_upstream_srv_conf_t *
ngx_http_tce_metrics_scale_conf(ngx_cycle_t *cycle, u_char *name,
    size_t len)
{
    ngx_uint_t                          i;
    ngx_http_upstream_srv_conf_t      **uscfp;
    ngx_http_upstream_main_conf_t      *umcf;
    ngx_http_tce_upstream_srv_conf_t   *ucf, *any;

    umcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_upstream_module);
    if (umcf == NULL) {
        return NULL;
    }

    uscfp = umcf->upstreams.elts;
    any = NULL;

    for (i = 0; i < umcf->upstreams.nelts; i++) {
        if (uscfp[i]->srv_conf == NULL) {
            continue;
        }

        ucf = ngx_http_conf_upstream_srv_conf(uscfp[i],
                                              ngx_http_tce_upstream_module);

        if (ucf == NULL || (ucf->scale_rps == 0 && ucf->scale_inflight == 0))
        {
            continue;
        }

        if (ucf->service_cv) {
            any = any ? any : ucf;
            continue;
        }

        if (ucf->service_name.len == len
            && ngx_strncmp(ucf->service_name.data, name, len) == 0)
        {
            return ucf;
        }
    }

    return any;
}


ngx_int_t
ngx_http_tce_metrics_scale(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_str_t *cluster, ngx_uint_t env, ngx_http_tce_upstream_srv_conf_t *ucf,
    ngx_http_tce_scale_t *out, ngx_log_t *log)
{
    uint64_t                        requests, busy;
    ngx_str_t                       name;
    ngx_uint_t                      i, j, n, seconds;
    ngx_atomic_uint_t               generation;
    ngx_tce_instance_t             *inst;
    ngx_tce_scale_metric_t          m[2];
    ngx_http_tce_metrics_recent_t  *rec;

    ngx_memzero(out, sizeof(ngx_http_tce_scale_t));
    out->desired = -1;

    if (ngx_tce_zone_copy(zone, svc, &inst, &n, &generation, log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the env's instances, moved to the front */

    for (i = 0, j = 0; i < n; i++) {
        if (inst[i].env != env
            || ngx_strlen(inst[i].cluster) != cluster->len
            || ngx_strncmp(inst[i].cluster, cluster->data, cluster->len)
               != 0)
        {
            continue;
        }

        if (j != i) {
            inst[j] = inst[i];
        }

        out->current += (ngx_tce_instance_weight(&inst[j]) != 0);
        j++;
    }

    out->listed = j;
    rec = NULL;

    if (j) {
        rec = ngx_alloc(j * sizeof(ngx_http_tce_metrics_recent_t), log);
        if (rec == NULL) {
            ngx_free(inst);
            return NGX_ERROR;
        }

        name.data = svc->name;
        name.len = svc->name_len;

        out->counted = (ngx_http_tce_metrics_recent(&name, inst, j, rec)
                        == NGX_OK);
    }

    requests = 0;
    busy = 0;
    seconds = NGX_TCE_WINDOW_SECONDS;

    for (i = 0; out->counted && i < j; i++) {
        requests += rec[i].w.requests;
        busy += rec[i].w.busy_ms;
    }

    if (out->current) {
        out->rps = (double) requests / seconds / out->current;

        /* Little's law: time spent in attempts / window = mean in flight */
        out->in_flight = (double) busy / (seconds * 1000.0) / out->current;
    }

    if (ucf) {
        out->target_rps = ucf->scale_rps / 1000.0;
        out->target_inflight = ucf->scale_inflight / 1000.0;

        m[0].observed = out->rps;
        m[0].target = out->target_rps;
        m[1].observed = out->in_flight;
        m[1].target = out->target_inflight;

        out->desired = ngx_tce_scale_desired((uint32_t) out->current, m, 2,
                                             NGX_TCE_SCALE_TOLERANCE,
                                             out->proposals);
    }

    if (rec) {
        ngx_free(rec);
    }

    if (inst) {
        ngx_free(inst);
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_tce_metrics_scale_snapshot(ngx_tce_zone_t *zone,
    ngx_tce_prom_snapshot_t *s, ngx_pool_t *pool)
{
    u_char                            *p;
    ngx_str_t                          cl;
    ngx_uint_t                         i, j, n, env, first;
    ngx_array_t                        a;
    ngx_atomic_uint_t                  generation;
    ngx_tce_service_t                 *svc;
    ngx_tce_instance_t                *inst;
    ngx_tce_prom_scale_t              *ps;
    ngx_http_tce_scale_t               sc;
    ngx_http_tce_upstream_srv_conf_t  *ucf;

    if (ngx_array_init(&a, pool, 4, sizeof(ngx_tce_prom_scale_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (svc = zone->sh->services; svc; svc = svc->next) {
        ucf = ngx_http_tce_metrics_scale_conf((ngx_cycle_t *) ngx_cycle,
                                              svc->name, svc->name_len);
        if (ucf == NULL) {
            continue;
        }

        if (ngx_tce_zone_copy(zone, svc, &inst, &n, &generation, pool->log)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        /* each (cluster, env) once: groups are few, a linear search */

        first = a.nelts;

        for (i = 0; i < n; i++) {
            ps = (ngx_tce_prom_scale_t *) a.elts + first;

            for (j = first; j < a.nelts; j++, ps++) {
                if (ps->env == ngx_tce_env_name(inst[i].env)
                    && ngx_strcmp(ps->cluster, inst[i].cluster) == 0)
                {
                    break;
                }
            }

            if (j < a.nelts) {
                continue;
            }

            env = inst[i].env;
            cl.len = ngx_strlen(inst[i].cluster);
            cl.data = ngx_pnalloc(pool, cl.len + 1);
            p = ngx_pnalloc(pool, svc->name_len + 1);

            if (cl.data == NULL || p == NULL) {
                ngx_free(inst);
                return NGX_ERROR;
            }

            ngx_memcpy(cl.data, inst[i].cluster, cl.len + 1);
            ngx_memcpy(p, svc->name, svc->name_len);
            p[svc->name_len] = '\0';

            ps = ngx_array_push(&a);

            if (ps == NULL
                || ngx_http_tce_metrics_scale(zone, svc, &cl, env, ucf, &sc,
                                              pool->log)
                   != NGX_OK)
            {
                ngx_free(inst);
                return NGX_ERROR;
            }

            ps->service = (char *) p;
            ps->cluster = (char *) cl.data;
            ps->env = ngx_tce_env_name(env);
            ps->desired = (uint32_t) sc.desired;
        }

        if (inst) {
            ngx_free(inst);
        }
    }

    s->scale = a.elts;
    s->nscale = a.nelts;

    return NGX_OK;
}
