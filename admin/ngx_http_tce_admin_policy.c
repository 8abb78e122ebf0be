/*
 * The admin API's traffic policy: a cluster's canary.
 *
 *   GET    v1/services/<psm>/clusters/<cluster>/canary
 *   PUT    ... {"weight": 12.5} | {"weight_bp": 1250}, "fallback",
 *              {"rollback": true} (weight 0, new epoch: every sticky
 *              user back to prod)
 *   DELETE ... back to nginx.conf's tce_canary
 *
 * With tce_redis, writes go to the fleet store instead
 * (ngx_http_tce_admin_fleet.c).  Otherwise they honour If-Match
 * against the service's generation (the ETag), go to the state file
 * first (ngx_http_tce_admin_store_change: on the thread pool), then to
 * the zone (ngx_tce_zone_policy_set), so that each worker takes the new
 * policy at its next request and it survives a restart; then to the
 * audit log.  A refused write changes none.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_admin_edit.h"
#include "ngx_http_tce_admin_store.h"
#include "ngx_http_tce_upstream.h"


/* a write of the canary policy under way */
typedef struct {
    ngx_http_tce_admin_ctx_t         *ctx;
    ngx_http_tce_admin_change_t       change;
    ngx_http_tce_admin_canary_req_t   req;
    ngx_uint_t                        put;      /* 0: DELETE */
    ngx_uint_t                        had;      /* a policy in the zone */
    ngx_tce_canary_policy_t           cur;
    ngx_tce_canary_policy_t           next;
} ngx_http_tce_admin_canary_run_t;


static ngx_int_t ngx_http_tce_admin_canary_write(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, const ngx_http_tce_admin_canary_req_t *req);
static json_t *ngx_http_tce_admin_canary_json(
    const ngx_tce_canary_policy_t *pol);
static json_t *ngx_http_tce_admin_canary_conf(ngx_http_request_t *r,
    ngx_tce_service_t *svc, json_t **canary);
static ngx_int_t ngx_http_tce_admin_canary_prepare(ngx_http_request_t *r,
    void *data);
static int ngx_http_tce_admin_canary_edit(ngx_tce_state_t *st, void *data,
    ngx_uint_t *status, ngx_http_tce_admin_err_t *err);
static ngx_int_t ngx_http_tce_admin_canary_zone(ngx_http_request_t *r,
    void *data);
static ngx_int_t ngx_http_tce_admin_canary_answer(ngx_http_request_t *r,
    void *data);


ngx_int_t
ngx_http_tce_admin_canary(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len)
{
    ngx_int_t                        rc;
    ngx_tce_main_conf_t             *tmcf;
    ngx_http_tce_admin_err_t         err;
    ngx_http_tce_admin_canary_req_t  req;

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        return ngx_http_tce_admin_canary_show(r, ctx, NGX_HTTP_OK);
    }

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    rc = ngx_http_tce_admin_deploy_canary_check(r, ctx);
    if (rc != NGX_OK) {
        return rc == NGX_DONE ? NGX_OK : rc;
    }

    if (r->method & NGX_HTTP_DELETE) {
        return tmcf->fleet ? ngx_http_tce_admin_fleet_canary(r, ctx, NULL)
                           : ngx_http_tce_admin_canary_write(r, ctx, NULL);
    }

    if (ngx_http_tce_admin_canary_parse((char *) body, len, &req, &err)
        != 0)
    {
        return ngx_http_tce_admin_error(r, NGX_HTTP_BAD_REQUEST, err.code,
                                        err.text);
    }

    return tmcf->fleet ? ngx_http_tce_admin_fleet_canary(r, ctx, &req)
                       : ngx_http_tce_admin_canary_write(r, ctx, &req);
}


ngx_int_t
ngx_http_tce_admin_canary_show(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, ngx_uint_t status)
{
    json_t                   *root, *pj, *conf;
    const char               *source;
    ngx_atomic_uint_t         generation;
    ngx_tce_main_conf_t      *tmcf;
    ngx_tce_canary_policy_t   pol;

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    /* with tce_redis the ETag is the fleet's revision of the service */
    generation = tmcf->fleet ? (ngx_atomic_uint_t) ctx->svc->fleet_rev
                             : ctx->svc->generation;

    pj = NULL;
    conf = ngx_http_tce_admin_canary_conf(r, ctx->svc, &pj);

    if (ngx_tce_zone_policy_get(tmcf->zone, ctx->svc, &ctx->cluster, &pol)
        == NGX_OK)
    {
        json_decref(pj);
        pj = ngx_http_tce_admin_canary_json(&pol);
        source = tmcf->fleet ? "fleet" : "state";

    } else {
        source = "nginx.conf";
    }

    root = json_object();

    if (root == NULL || pj == NULL || conf == NULL
        || json_object_set_new(root, "canary", pj) != 0
        || json_object_set_new(root, "source", json_string(source)) != 0
        || json_object_set_new(root, "nginx_conf", conf) != 0
        || json_object_set_new(root, "service",
                               ngx_http_tce_admin_jstr(ctx->svc->name,
                                   ctx->svc->name_len))
           != 0
        || json_object_set_new(root, "cluster",
                               ngx_http_tce_admin_jstr(ctx->cluster.data,
                                   ctx->cluster.len))
           != 0
        || json_object_set_new(root, "generation", json_integer(generation))
           != 0)
    {
        json_decref(root);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_tce_admin_etag(r, generation) != NGX_OK) {
        json_decref(root);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_tce_admin_send(r, status, root);
}


static json_t *
ngx_http_tce_admin_canary_json(const ngx_tce_canary_policy_t *pol)
{
    return json_pack("{s:I, s:f, s:I, s:b}",
                     "weight_bp", (json_int_t) pol->weight,
                     "weight", pol->weight / 100.0,
                     "epoch", (json_int_t) pol->epoch,
                     "fallback", (int) pol->fallback);
}


/*
 * nginx.conf's canary policy of the service, which DELETE gives back:
 * the tce_canary of each upstream that routes to it (tce_service
 * <psm>, or tce_service $var), as [{"upstream", "canary"}]; an upstream
 * without tce_canary routes to prod only (weight 0, no fallback), as
 * the balancer does.  *canary gets their policy when they all agree,
 * null when they differ or none routes to the service.  NULL when out
 * of memory.
 */
static json_t *
ngx_http_tce_admin_canary_conf(ngx_http_request_t *r, ngx_tce_service_t *svc,
    json_t **canary)
{
    json_t                             *list, *one;
    ngx_uint_t                          i, n, differ;
    ngx_tce_canary_policy_t             pol, first;
    ngx_http_upstream_srv_conf_t      **uscfp;
    ngx_http_upstream_main_conf_t      *umcf;
    ngx_http_tce_upstream_srv_conf_t   *ucf;

    list = json_array();
    *canary = NULL;

    if (list == NULL) {
        return NULL;
    }

    umcf = ngx_http_get_module_main_conf(r, ngx_http_upstream_module);
    uscfp = umcf->upstreams.elts;

    n = 0;
    differ = 0;
    ngx_memzero(&first, sizeof(ngx_tce_canary_policy_t));

    for (i = 0; i < umcf->upstreams.nelts; i++) {
        if (uscfp[i]->srv_conf == NULL) {
            continue;
        }

        ucf = ngx_http_conf_upstream_srv_conf(uscfp[i],
                                              ngx_http_tce_upstream_module);

        if (ucf == NULL || (ucf->service != svc && ucf->service_cv == NULL))
        {
            continue;
        }

        if (ucf->canary) {
            pol = ucf->canary->policy;

        } else {
            ngx_memzero(&pol, sizeof(ngx_tce_canary_policy_t));
        }

        if (n == 0) {
            first = pol;

        } else if (pol.weight != first.weight || pol.epoch != first.epoch
                   || pol.fallback != first.fallback)
        {
            differ = 1;
        }

        n++;

        one = json_object();

        if (one == NULL
            || json_array_append_new(list, one) != 0
            || json_object_set_new(one, "upstream",
                                   ngx_http_tce_admin_jstr(
                                       uscfp[i]->host.data,
                                       uscfp[i]->host.len))
               != 0
            || json_object_set_new(one, "canary",
                                   ngx_http_tce_admin_canary_json(&pol))
               != 0)
        {
            json_decref(list);
            return NULL;
        }
    }

    *canary = (n && !differ) ? ngx_http_tce_admin_canary_json(&first)
                             : json_null();

    if (*canary == NULL) {
        json_decref(list);
        return NULL;
    }

    return list;
}


/* event loop, the turn held: the policy now and the one asked for */
static ngx_int_t
ngx_http_tce_admin_canary_prepare(ngx_http_request_t *r, void *data)
{
    ngx_http_tce_admin_canary_run_t *cr = data;

    ngx_tce_main_conf_t  *tmcf;

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    cr->had = (ngx_tce_zone_policy_get(tmcf->zone, cr->ctx->svc,
                                       &cr->ctx->cluster, &cr->cur)
               == NGX_OK);

    if (!cr->had) {
        cr->cur.weight = 0;
        cr->cur.epoch = 0;
        cr->cur.fallback = 1;
    }

    if (cr->put) {
        ngx_http_tce_admin_canary_apply(&cr->req, &cr->cur, &cr->next);
    }

    return NGX_OK;
}


/* a thread: the file's canary object of the cluster (pure C) */
static int
ngx_http_tce_admin_canary_edit(ngx_tce_state_t *st, void *data,
    ngx_uint_t *status, ngx_http_tce_admin_err_t *err)
{
    ngx_http_tce_admin_canary_run_t *cr = data;

    ngx_tce_state_service_t  *ss;

    ss = ngx_http_tce_admin_edit_service(st, (char *) cr->ctx->svc->name,
                                         cr->ctx->svc->name_len);
    if (ss == NULL) {
        *status = NGX_HTTP_CONFLICT;
        err->code = "not_in_state_file";
        snprintf(err->text, sizeof(err->text),
                 "service \"%s\" is not in the state file, which keeps "
                 "the API's changes: add it there first",
                 cr->ctx->svc->name);
        return -1;
    }

    if (ngx_http_tce_admin_edit_canary(ss, (char *) cr->ctx->cluster.data,
                                       cr->ctx->cluster.len,
                                       cr->put ? &cr->next : NULL)
        != 0)
    {
        *status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        err->code = "store_error";
        snprintf(err->text, sizeof(err->text),
                 "no memory to change the state file: nothing changed");
        return -1;
    }

    return 0;
}


/* event loop, the file written: the zone */
static ngx_int_t
ngx_http_tce_admin_canary_zone(ngx_http_request_t *r, void *data)
{
    ngx_http_tce_admin_canary_run_t *cr = data;

    ngx_tce_main_conf_t  *tmcf;

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    if (ngx_tce_zone_policy_set(tmcf->zone, cr->ctx->svc, &cr->ctx->cluster,
                                cr->put ? &cr->next : NULL,
                                NGX_TCE_POLICY_ADMIN, r->connection->log)
        == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    /* the cluster's policy is the API's again, not a deploy's */
    ngx_http_tce_admin_deploy_disown(
        ngx_http_get_module_main_conf(r, ngx_http_tce_admin_api_module),
        cr->ctx->svc, &cr->ctx->cluster);

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "tce admin: %V canary of \"%s\" cluster \"%V\" by \"%V\"",
                  &r->method_name, cr->ctx->svc->name, &cr->ctx->cluster,
                  &cr->ctx->principal);

    return NGX_OK;
}


static ngx_int_t
ngx_http_tce_admin_canary_answer(ngx_http_request_t *r, void *data)
{
    ngx_http_tce_admin_canary_run_t *cr = data;

    return ngx_http_tce_admin_canary_show(r, cr->ctx, NGX_HTTP_OK);
}


/* req NULL: DELETE */
static ngx_int_t
ngx_http_tce_admin_canary_write(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, const ngx_http_tce_admin_canary_req_t *req)
{
    ngx_http_tce_admin_canary_run_t  *cr;

    cr = ngx_pcalloc(r->pool, sizeof(ngx_http_tce_admin_canary_run_t));
    if (cr == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cr->ctx = ctx;

    if (req) {
        cr->req = *req;
        cr->put = 1;
    }

    cr->change.prepare = ngx_http_tce_admin_canary_prepare;
    cr->change.edit = ngx_http_tce_admin_canary_edit;
    cr->change.apply = ngx_http_tce_admin_canary_zone;
    cr->change.answer = ngx_http_tce_admin_canary_answer;
    cr->change.data = cr;

    return ngx_http_tce_admin_store_change(r, ctx, &cr->change);
}
