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
 * first (ngx_http_tce_admin_store.c), then to the
 * zone (ngx_tce_zone_policy_set), so that each worker takes the new
 * policy at its next request and it survives a restart.  A refused
 * write changes neither.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_admin_edit.h"
#include "ngx_http_tce_admin_store.h"


static ngx_int_t ngx_http_tce_admin_canary_write(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, const ngx_http_tce_admin_canary_req_t *req);
static ngx_int_t ngx_http_tce_admin_precondition(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx);


ngx_int_t
ngx_http_tce_admin_canary(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len)
{
    ngx_tce_main_conf_t             *tmcf;
    ngx_http_tce_admin_err_t         err;
    ngx_http_tce_admin_canary_req_t  req;

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        return ngx_http_tce_admin_canary_show(r, ctx, NGX_HTTP_OK);
    }

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

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
    json_t                   *root, *pj;
    ngx_atomic_uint_t         generation;
    ngx_tce_main_conf_t      *tmcf;
    ngx_tce_canary_policy_t   pol;

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    /* with tce_redis the ETag is the fleet's revision of the service */
    generation = tmcf->fleet ? (ngx_atomic_uint_t) ctx->svc->fleet_rev
                             : ctx->svc->generation;

    if (ngx_tce_zone_policy_get(tmcf->zone, ctx->svc, &ctx->cluster, &pol)
        == NGX_OK)
    {
        pj = json_pack("{s:I, s:f, s:I, s:b}",
                       "weight_bp", (json_int_t) pol.weight,
                       "weight", pol.weight / 100.0,
                       "epoch", (json_int_t) pol.epoch,
                       "fallback", (int) pol.fallback);

    } else {
        pj = json_null();
    }

    root = json_object();

    if (root == NULL
        || json_object_set_new(root, "canary", pj) != 0
        || json_object_set_new(root, "source",
                               json_string(json_is_null(pj) ? "nginx.conf"
                                           : tmcf->fleet ? "fleet"
                                                         : "state"))
           != 0
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


/* If-Match against the service's generation: NGX_OK or 412 sent */
static ngx_int_t
ngx_http_tce_admin_precondition(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx)
{
    u_char            text[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    ngx_table_elt_t  *h;

    h = r->headers_in.if_match;

    if (h == NULL
        || ngx_http_tce_admin_if_match((char *) h->value.data, h->value.len,
                                       ctx->svc->generation))
    {
        return NGX_OK;
    }

    ngx_snprintf(text, sizeof(text) - 1,
                 "If-Match does not match the service's generation "
                 "(ETag \"%uA\"): read it again and retry%Z",
                 ctx->svc->generation);

    return ngx_http_tce_admin_refuse(r, NGX_HTTP_PRECONDITION_FAILED,
                                    "precondition_failed", (char *) text);
}


/* req NULL: DELETE */
static ngx_int_t
ngx_http_tce_admin_canary_write(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, const ngx_http_tce_admin_canary_req_t *req)
{
    u_char                    text[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    ngx_int_t                 rc;
    ngx_uint_t                had;
    ngx_tce_state_t           st;
    ngx_tce_main_conf_t      *tmcf;
    ngx_tce_canary_policy_t   cur, next, *pnext;
    ngx_tce_state_service_t  *ss;

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    ngx_http_tce_admin_store_lock(r);

    rc = ngx_http_tce_admin_precondition(r, ctx);
    if (rc != NGX_OK) {
        goto unlock;
    }

    rc = ngx_http_tce_admin_store_load(r, &st);
    if (rc != NGX_OK) {
        goto unlock;
    }

    ss = ngx_http_tce_admin_edit_service(&st, (char *) ctx->svc->name,
                                         ctx->svc->name_len);
    if (ss == NULL) {
        ngx_snprintf(text, sizeof(text) - 1,
                     "service \"%s\" is not in the state file, which "
                     "keeps the API's changes: add it there first%Z",
                     ctx->svc->name);
        rc = ngx_http_tce_admin_refuse(r, NGX_HTTP_CONFLICT,
                                      "not_in_state_file", (char *) text);
        goto done;
    }

    pnext = NULL;

    had = (ngx_tce_zone_policy_get(tmcf->zone, ctx->svc, &ctx->cluster,
                                   &cur)
           == NGX_OK);

    if (!had) {
        cur.weight = 0;
        cur.epoch = 0;
        cur.fallback = 1;
    }

    if (req) {
        ngx_http_tce_admin_canary_apply(req, &cur, &next);
        pnext = &next;
    }

    if (ngx_http_tce_admin_edit_canary(ss, (char *) ctx->cluster.data,
                                       ctx->cluster.len, pnext)
        != 0
        || ngx_http_tce_admin_store_save(r, &st) != NGX_OK)
    {
        rc = ngx_http_tce_admin_refuse(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                      "store_error",
                                      "the state file could not be "
                                      "written (see the error log): "
                                      "nothing changed");
        goto done;
    }

    if (ngx_tce_zone_policy_set(tmcf->zone, ctx->svc, &ctx->cluster, pnext,
                                r->connection->log)
        == NGX_ERROR)
    {
        /* the zone is full: put the file's policy back as it was */
        if (ngx_http_tce_admin_edit_canary(ss, (char *) ctx->cluster.data,
                                           ctx->cluster.len,
                                           had ? &cur : NULL)
            != 0
            || ngx_http_tce_admin_store_save(r, &st) != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "tce admin: the state file holds a canary policy "
                          "of \"%s\" cluster \"%V\" the zone could not "
                          "take", ctx->svc->name, &ctx->cluster);
        }

        rc = ngx_http_tce_admin_refuse(r, NGX_HTTP_INSUFFICIENT_STORAGE,
                                      "zone_full",
                                      "the tce zone is full: nothing "
                                      "changed");
        goto done;
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "tce admin: %V canary of \"%s\" cluster \"%V\" by \"%V\"",
                  &r->method_name, ctx->svc->name, &ctx->cluster,
                  &ctx->principal);

    rc = ngx_http_tce_admin_canary_show(r, ctx, NGX_HTTP_OK);

done:

    ngx_tce_state_free(&st);

unlock:

    ngx_http_tce_admin_store_unlock(r);

    return rc == NGX_DONE ? NGX_OK : rc;
}
