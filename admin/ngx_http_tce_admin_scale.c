/*
 * The admin API's scaling signal:
 *
 *   GET v1/services/<psm>/clusters/<cluster>/envs/<env>/scale
 *
 * the env's current instances, their request rate and in-flight
 * average per instance over the recent window, the targets of the
 * upstream's tce_scale_target, and the desired instances as Kubernetes'
 * HPA computes them (lb/ngx_http_tce_metrics_window.c).  The same
 * figure is the gauge tce_scale_desired_instances.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_metrics.h"
#include "ngx_tce_scale.h"


static json_t *ngx_http_tce_admin_target(double target);


static json_t *
ngx_http_tce_admin_target(double target)
{
    return target > 0 ? json_real(target) : json_null();
}


ngx_int_t
ngx_http_tce_admin_scale(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx)
{
    int                                env;
    json_t                            *root, *targets, *props;
    ngx_tce_main_conf_t               *tmcf;
    ngx_http_tce_scale_t               sc;
    ngx_http_tce_upstream_srv_conf_t  *ucf;

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    env = ngx_tce_env_parse((char *) ctx->env.data, ctx->env.len);

    if (env < 0) {
        return ngx_http_tce_admin_error(r, NGX_HTTP_NOT_FOUND, "unknown_env",
                                        "no such env: \"prod\" or "
                                        "\"canary\"");
    }

    ucf = ngx_http_tce_metrics_scale_conf((ngx_cycle_t *) ngx_cycle,
                                          ctx->svc->name,
                                          ctx->svc->name_len);

    if (ngx_http_tce_metrics_scale(tmcf->zone, ctx->svc, &ctx->cluster,
                                   (ngx_uint_t) env, ucf, &sc,
                                   r->connection->log)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    targets = json_object();
    props = json_object();
    root = json_object();

    if (root == NULL || targets == NULL || props == NULL
        || json_object_set(root, "targets", targets) != 0
        || json_object_set(root, "proposals", props) != 0
        || json_object_set_new(root, "service",
                               ngx_http_tce_admin_jstr(ctx->svc->name,
                                   ctx->svc->name_len))
           != 0
        || json_object_set_new(root, "cluster",
                               ngx_http_tce_admin_jstr(ctx->cluster.data,
                                   ctx->cluster.len))
           != 0
        || json_object_set_new(root, "env",
                               json_string(ngx_tce_env_name(env))) != 0
        || json_object_set_new(root, "window_seconds",
                               json_integer(NGX_TCE_WINDOW_SECONDS)) != 0
        || json_object_set_new(root, "current", json_integer(sc.current))
           != 0
        || json_object_set_new(root, "instances", json_integer(sc.listed))
           != 0
        || json_object_set_new(root, "requests_per_second",
                               json_real(sc.rps)) != 0
        || json_object_set_new(root, "in_flight", json_real(sc.in_flight))
           != 0
        || json_object_set_new(root, "tolerance",
                               json_real(NGX_TCE_SCALE_TOLERANCE)) != 0
        || json_object_set_new(root, "desired",
                               sc.desired >= 0 ? json_integer(sc.desired)
                                               : json_null())
           != 0
        || json_object_set_new(targets, "rps",
                               ngx_http_tce_admin_target(sc.target_rps))
           != 0
        || json_object_set_new(targets, "inflight",
                               ngx_http_tce_admin_target(
                                   sc.target_inflight))
           != 0
        || json_object_set_new(props, "rps",
                               sc.target_rps > 0
                               ? json_integer(sc.proposals[0])
                               : json_null())
           != 0
        || json_object_set_new(props, "inflight",
                               sc.target_inflight > 0
                               ? json_integer(sc.proposals[1])
                               : json_null())
           != 0
        || (sc.desired < 0
            && json_object_set_new(root, "reason",
                   json_string("no tce_scale_target in an upstream of "
                               "this service"))
               != 0))
    {
        json_decref(targets);
        json_decref(props);
        json_decref(root);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_decref(targets);
    json_decref(props);

    return ngx_http_tce_admin_send(r, NGX_HTTP_OK, root);
}
