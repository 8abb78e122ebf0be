/*
 * The admin API's progressive deploys of a cluster's canary:
 *
 *   POST v1/services/<psm>/clusters/<cluster>/deploys     start one (201)
 *   GET  ... /deploys                 the cluster's deploys, newest first
 *   GET  ... /deploys/current         the latest one
 *   POST ... /deploys/current/promote|rollback|pause|resume
 *
 * A deploy lives in the tce_admin zone (one of NGX_HTTP_TCE_ADMIN_DEPLOYS
 * records: a new one takes a free record or the oldest finished one)
 * and in the deploys file; the controller (ngx_http_tce_admin_deploy_ctl.c)
 * moves it along its steps.  These routes change it under the zone's
 * mutex and set the canary policy in the tce zone at once, so a
 * rollback is live at every worker's next request.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_admin_inst.h"
#include "ngx_http_tce_admin_webhook.h"
#include "ngx_tce_text.h"
#include "ngx_tce_diff.h"


static ngx_int_t ngx_http_tce_admin_deploy_start(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len);
static ngx_int_t ngx_http_tce_admin_deploy_list(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx);
static ngx_int_t ngx_http_tce_admin_deploy_current(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx);
static ngx_int_t ngx_http_tce_admin_deploy_action(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len);
static ngx_http_tce_admin_deploy_t *ngx_http_tce_admin_deploy_latest(
    ngx_http_tce_admin_shctx_t *sh, ngx_http_tce_admin_ctx_t *ctx);
static ngx_uint_t ngx_http_tce_admin_deploy_is(ngx_http_tce_admin_deploy_t *d,
    ngx_http_tce_admin_ctx_t *ctx);
static ngx_uint_t ngx_http_tce_admin_deploy_named(
    ngx_http_tce_admin_deploy_t *d, ngx_str_t *service, ngx_str_t *cluster);
static void ngx_http_tce_admin_deploy_do_start(
    ngx_http_tce_admin_main_conf_t *amcf,
    ngx_http_tce_admin_deploy_cmd_t *cmd, ngx_http_tce_admin_deploy_res_t *res,
    ngx_log_t *log);
static void ngx_http_tce_admin_deploy_do_action(
    ngx_http_tce_admin_main_conf_t *amcf,
    ngx_http_tce_admin_deploy_cmd_t *cmd, ngx_http_tce_admin_deploy_res_t *res,
    ngx_log_t *log);
static ngx_int_t ngx_http_tce_admin_deploy_write(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, ngx_http_tce_admin_deploy_conf_t *conf,
    u_char *body, size_t len);
static ngx_int_t ngx_http_tce_admin_deploy_send(ngx_http_request_t *r,
    ngx_uint_t status, ngx_http_tce_admin_deploy_t *copy);


ngx_int_t
ngx_http_tce_admin_deploy(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len)
{
    if (ctx->action.len) {
        return ngx_http_tce_admin_deploy_action(r, ctx, body, len);
    }

    if (ctx->env.len) {     /* deploys/current */
        return ngx_http_tce_admin_deploy_current(r, ctx);
    }

    if (r->method & NGX_HTTP_POST) {
        return ngx_http_tce_admin_deploy_start(r, ctx, body, len);
    }

    return ngx_http_tce_admin_deploy_list(r, ctx);
}


static ngx_uint_t
ngx_http_tce_admin_deploy_is(ngx_http_tce_admin_deploy_t *d,
    ngx_http_tce_admin_ctx_t *ctx)
{
    ngx_str_t  service;

    service.data = (u_char *) ctx->svc->name;
    service.len = ctx->svc->name_len;

    return ngx_http_tce_admin_deploy_named(d, &service, &ctx->cluster);
}


static ngx_uint_t
ngx_http_tce_admin_deploy_named(ngx_http_tce_admin_deploy_t *d,
    ngx_str_t *service, ngx_str_t *cluster)
{
    return d->id
           && ngx_strlen(d->service) == service->len
           && ngx_strncmp(d->service, service->data, service->len) == 0
           && ngx_strlen(d->cluster) == cluster->len
           && ngx_strncmp(d->cluster, cluster->data, cluster->len) == 0;
}


/* the cluster's newest record, the mutex held; NULL: none */
static ngx_http_tce_admin_deploy_t *
ngx_http_tce_admin_deploy_latest(ngx_http_tce_admin_shctx_t *sh,
    ngx_http_tce_admin_ctx_t *ctx)
{
    ngx_uint_t                    i;
    ngx_http_tce_admin_deploy_t  *d, *best;

    best = NULL;

    for (i = 0; i < NGX_HTTP_TCE_ADMIN_DEPLOYS; i++) {
        d = &sh->deploys[i];

        if (ngx_http_tce_admin_deploy_is(d, ctx)
            && (best == NULL || d->id > best->id))
        {
            best = d;
        }
    }

    return best;
}


static ngx_int_t
ngx_http_tce_admin_deploy_start(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len)
{
    ngx_http_tce_admin_err_t           err;
    ngx_http_tce_admin_deploy_conf_t   conf;

    if (ngx_http_tce_admin_deploy_parse((char *) body, len, &conf, &err)
        != 0)
    {
        return ngx_http_tce_admin_error(r, NGX_HTTP_BAD_REQUEST, err.code,
                                        err.text);
    }

    return ngx_http_tce_admin_deploy_write(r, ctx, &conf, body, len);
}


/*
 * A start or an action: applied here when this node drives deploys,
 * relayed to the node that does through Redis otherwise.
 */
static ngx_int_t
ngx_http_tce_admin_deploy_write(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, ngx_http_tce_admin_deploy_conf_t *conf,
    u_char *body, size_t len)
{
    ngx_http_tce_admin_deploy_cmd_t   cmd;
    ngx_http_tce_admin_deploy_res_t   res;
    ngx_http_tce_admin_main_conf_t   *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_tce_admin_api_module);

    if (!ngx_http_tce_admin_deploy_fleet_drives(amcf)) {
        /* another node drives deploys: the command goes to it */
        return ngx_http_tce_admin_deploy_relay(r, ctx, body, len);
    }

    ngx_memzero(&cmd, sizeof(ngx_http_tce_admin_deploy_cmd_t));
    cmd.service.data = (u_char *) ctx->svc->name;
    cmd.service.len = ctx->svc->name_len;
    cmd.cluster = ctx->cluster;
    cmd.principal = ctx->principal;
    cmd.action = ctx->action;

    if (conf) {
        cmd.conf = *conf;
    }

    ctx->gen_before = ctx->svc->generation;

    ngx_http_tce_admin_deploy_apply(amcf, &cmd, &res, r->connection->log);

    ctx->gen_after = ctx->svc->generation;

    if (res.code) {
        return ngx_http_tce_admin_error(r, res.status, res.code, res.text);
    }

    (void) ngx_http_tce_admin_audit(r, ctx, res.status, NULL);

    return ngx_http_tce_admin_deploy_send(r, res.status, &res.copy);
}


void
ngx_http_tce_admin_deploy_apply(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_http_tce_admin_deploy_cmd_t *cmd, ngx_http_tce_admin_deploy_res_t *res,
    ngx_log_t *log)
{
    res->code = NULL;
    res->text = "";

    if (cmd->action.len) {
        ngx_http_tce_admin_deploy_do_action(amcf, cmd, res, log);

    } else {
        ngx_http_tce_admin_deploy_do_start(amcf, cmd, res, log);
    }
}


static void
ngx_http_tce_admin_deploy_do_start(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_http_tce_admin_deploy_cmd_t *cmd, ngx_http_tce_admin_deploy_res_t *res,
    ngx_log_t *log)
{
    uint64_t                           now;
    ngx_uint_t                         i;
    ngx_http_tce_admin_deploy_t       *d, *slot;
    ngx_http_tce_admin_shctx_t        *sh;
    ngx_http_tce_admin_deploy_conf_t  *conf;

    sh = amcf->sh;
    conf = &cmd->conf;
    now = ngx_http_tce_admin_now_ms();

    ngx_shmtx_lock(&amcf->shpool->mutex);

    slot = NULL;

    for (i = 0; i < NGX_HTTP_TCE_ADMIN_DEPLOYS; i++) {
        d = &sh->deploys[i];

        if (ngx_http_tce_admin_deploy_named(d, &cmd->service, &cmd->cluster)
            && ngx_http_tce_admin_deploy_active(d))
        {
            ngx_shmtx_unlock(&amcf->shpool->mutex);
            res->status = NGX_HTTP_CONFLICT;
            res->code = "deploy_running";
            res->text = "a deploy of this cluster is running or paused: "
                        "promote, roll back or let it end first";
            return;
        }

        /* a free record, else the one finished longest ago */
        if (ngx_http_tce_admin_deploy_active(d)) {
            continue;
        }

        if (d->id == 0) {
            if (slot == NULL || slot->id) {
                slot = d;
            }

        } else if (slot == NULL
                   || (slot->id && d->updated_ms < slot->updated_ms))
        {
            slot = d;
        }
    }

    if (slot == NULL) {
        ngx_shmtx_unlock(&amcf->shpool->mutex);
        res->status = NGX_HTTP_CONFLICT;
        res->code = "too_many_deploys";
        res->text = "every deploy record is taken by a running deploy";
        return;
    }

    ngx_memzero(slot, sizeof(ngx_http_tce_admin_deploy_t));

    slot->id = ++sh->deploy_next_id;
    slot->state = NGX_HTTP_TCE_ADMIN_DEPLOY_RUNNING;
    slot->created_ms = now;
    slot->updated_ms = now;
    slot->rev = 1;
    slot->conf = *conf;

    ngx_memcpy(slot->service, cmd->service.data,
               ngx_min(cmd->service.len, NGX_TCE_SERVICE_LEN - 1));
    ngx_memcpy(slot->cluster, cmd->cluster.data,
               ngx_min(cmd->cluster.len, NGX_TCE_CLUSTER_LEN - 1));
    (void) ngx_tce_text_escape(slot->principal, sizeof(slot->principal),
                               (char *) cmd->principal.data,
                               cmd->principal.len);

    for (i = 0; i < conf->nsteps; i++) {
        slot->steps[i].weight_bp = conf->steps_bp[i];
    }

    slot->steps[0].verdict = NGX_HTTP_TCE_ADMIN_STEP_RUNNING;
    slot->steps[0].started_ms = now;

    if (conf->steps_bp[0] >= NGX_TCE_CANARY_SCALE) {
        /* a single step of 100%: promoted at once */
        slot->state = NGX_HTTP_TCE_ADMIN_DEPLOY_PROMOTED;
        slot->steps[0].verdict = NGX_HTTP_TCE_ADMIN_STEP_PASSED;
        slot->steps[0].ended_ms = now;
    }

    if (ngx_http_tce_admin_deploy_policy_locked(amcf, slot,
                                                conf->steps_bp[0], 0, log)
        != NGX_OK)
    {
        ngx_memzero(slot, sizeof(ngx_http_tce_admin_deploy_t));
        ngx_shmtx_unlock(&amcf->shpool->mutex);
        res->status = NGX_HTTP_INSUFFICIENT_STORAGE;
        res->code = "zone_full";
        res->text = "the zone cannot take the canary policy: nothing "
                    "changed";
        return;
    }

    res->copy = *slot;

    ngx_shmtx_unlock(&amcf->shpool->mutex);

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "tce admin: deploy %uL of \"%s\" cluster \"%s\" started "
                  "by \"%V\" at %ui bp", res->copy.id, res->copy.service,
                  res->copy.cluster, &cmd->principal,
                  (ngx_uint_t) conf->steps_bp[0]);

    ngx_http_tce_admin_deploy_persist(amcf, log);
    ngx_http_tce_admin_webhook_deploy(res->copy.state
                                      == NGX_HTTP_TCE_ADMIN_DEPLOY_PROMOTED
                                      ? "deploy_promoted" : "deploy_started",
                                      &res->copy, &cmd->principal, log);

    res->status = NGX_HTTP_CREATED;
}


static ngx_int_t
ngx_http_tce_admin_deploy_list(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx)
{
    json_t                          *root, *list;
    ngx_uint_t                       i, j, n;
    ngx_http_tce_admin_deploy_t     *copy, t;
    ngx_http_tce_admin_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_tce_admin_api_module);

    copy = ngx_palloc(r->pool, NGX_HTTP_TCE_ADMIN_DEPLOYS
                               * sizeof(ngx_http_tce_admin_deploy_t));
    if (copy == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = 0;

    ngx_shmtx_lock(&amcf->shpool->mutex);

    for (i = 0; i < NGX_HTTP_TCE_ADMIN_DEPLOYS; i++) {
        if (ngx_http_tce_admin_deploy_is(&amcf->sh->deploys[i], ctx)) {
            copy[n++] = amcf->sh->deploys[i];
        }
    }

    ngx_shmtx_unlock(&amcf->shpool->mutex);

    /* newest first: a few records, an insertion sort */
    for (i = 1; i < n; i++) {
        t = copy[i];

        for (j = i; j > 0 && copy[j - 1].id < t.id; j--) {
            copy[j] = copy[j - 1];
        }

        copy[j] = t;
    }

    root = json_object();
    list = json_array();

    if (root == NULL || json_object_set_new(root, "deploys", list) != 0) {
        json_decref(root);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < n; i++) {
        if (json_array_append_new(list,
                                  ngx_http_tce_admin_deploy_json(&copy[i]))
            != 0)
        {
            json_decref(root);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_tce_admin_send(r, NGX_HTTP_OK, root);
}


/*
 * The latest deploy, with "diff": the cluster's API diff as GET
 * .../diff answers it (cumulative: match ratio, counts, the last
 * mismatches), null when no tce_diff location proxies to the service.
 */
static ngx_int_t
ngx_http_tce_admin_deploy_current(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx)
{
    json_t                          *root, *diff;
    ngx_str_t                        service;
    ngx_uint_t                       declined;
    ngx_http_tce_admin_deploy_t     *d, copy;
    ngx_http_tce_admin_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_tce_admin_api_module);

    ngx_shmtx_lock(&amcf->shpool->mutex);

    d = ngx_http_tce_admin_deploy_latest(amcf->sh, ctx);
    if (d) {
        copy = *d;
    }

    ngx_shmtx_unlock(&amcf->shpool->mutex);

    if (d == NULL) {
        return ngx_http_tce_admin_error(r, NGX_HTTP_NOT_FOUND, "no_deploy",
                                        "this cluster has no deploy");
    }

    root = ngx_http_tce_admin_deploy_json(&copy);
    if (root == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    service.data = (u_char *) ctx->svc->name;
    service.len = ctx->svc->name_len;

    diff = ngx_tce_diff_json(&service, &ctx->cluster, &declined);

    if (diff == NULL && !declined) {
        json_decref(root);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (diff
        && (json_object_set_new(diff, "service",
                                ngx_http_tce_admin_jstr(ctx->svc->name,
                                                        ctx->svc->name_len))
            != 0
            || json_object_set_new(diff, "cluster",
                                   ngx_http_tce_admin_jstr(
                                       ctx->cluster.data, ctx->cluster.len))
               != 0))
    {
        json_decref(diff);
        json_decref(root);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (json_object_set_new(root, "diff", diff ? diff : json_null()) != 0) {
        json_decref(root);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_tce_admin_send(r, NGX_HTTP_OK, root);
}


static ngx_int_t
ngx_http_tce_admin_deploy_action(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len)
{
    json_t     *j;
    ngx_int_t   ok;

    /* the body, if any, is an empty object */
    if (len) {
        j = json_loadb((char *) body, len, 0, NULL);
        ok = (j && json_is_object(j) && json_object_size(j) == 0);
        json_decref(j);

        if (!ok) {
            return ngx_http_tce_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                            "unknown_field",
                                            "body: must be {} (an action "
                                            "takes no field)");
        }
    }

    return ngx_http_tce_admin_deploy_write(r, ctx, NULL, NULL, 0);
}


static void
ngx_http_tce_admin_deploy_do_action(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_http_tce_admin_deploy_cmd_t *cmd, ngx_http_tce_admin_deploy_res_t *res,
    ngx_log_t *log)
{
    uint64_t                      now;
    ngx_int_t                     rc;
    ngx_str_t                    *a;
    ngx_uint_t                    i, state;
    const char                   *text;
    ngx_http_tce_admin_deploy_t  *d, *best;

    a = &cmd->action;

    now = ngx_http_tce_admin_now_ms();
    text = NULL;

    ngx_shmtx_lock(&amcf->shpool->mutex);

    best = NULL;

    for (i = 0; i < NGX_HTTP_TCE_ADMIN_DEPLOYS; i++) {
        d = &amcf->sh->deploys[i];

        if (ngx_http_tce_admin_deploy_named(d, &cmd->service, &cmd->cluster)
            && (best == NULL || d->id > best->id))
        {
            best = d;
        }
    }

    d = best;

    if (d == NULL || !ngx_http_tce_admin_deploy_active(d)) {
        ngx_shmtx_unlock(&amcf->shpool->mutex);
        res->status = NGX_HTTP_CONFLICT;
        res->code = "not_running";
        res->text = "this cluster has no running or paused deploy";
        return;
    }

    rc = NGX_OK;
    state = d->state;

    if (a->len == 5 && ngx_strncmp(a->data, "pause", 5) == 0) {
        if (d->state != NGX_HTTP_TCE_ADMIN_DEPLOY_RUNNING) {
            text = "the deploy is paused already";

        } else {
            d->state = NGX_HTTP_TCE_ADMIN_DEPLOY_PAUSED;
        }

    } else if (a->len == 6 && ngx_strncmp(a->data, "resume", 6) == 0) {
        if (d->state != NGX_HTTP_TCE_ADMIN_DEPLOY_PAUSED) {
            text = "the deploy is not paused";

        } else {
            /* the step starts over: a fresh window */
            d->state = NGX_HTTP_TCE_ADMIN_DEPLOY_RUNNING;
            d->base_valid = 0;
            d->steps[d->step].verdict = NGX_HTTP_TCE_ADMIN_STEP_RUNNING;
            d->steps[d->step].started_ms = now;
        }

    } else if (a->len == 7 && ngx_strncmp(a->data, "promote", 7) == 0) {
        rc = ngx_http_tce_admin_deploy_policy_locked(amcf, d,
                                                     NGX_TCE_CANARY_SCALE, 0,
                                                     log);
        d->state = NGX_HTTP_TCE_ADMIN_DEPLOY_PROMOTED;

    } else {
        /* rollback */
        rc = ngx_http_tce_admin_deploy_policy_locked(amcf, d, 0, 1, log);
        d->state = NGX_HTTP_TCE_ADMIN_DEPLOY_ROLLED_BACK;
        (void) ngx_snprintf((u_char *) d->why, sizeof(d->why) - 1,
                            "rolled back by \"%V\"%Z", &cmd->principal);
    }

    if (text == NULL && rc != NGX_OK) {
        d->state = state;
        text = "the zone cannot take the canary policy";
    }

    if (text) {
        ngx_shmtx_unlock(&amcf->shpool->mutex);
        res->status = rc == NGX_OK ? NGX_HTTP_CONFLICT
                                   : NGX_HTTP_INSUFFICIENT_STORAGE;
        res->code = rc == NGX_OK ? "not_running" : "zone_full";
        res->text = text;
        return;
    }

    if (d->state == NGX_HTTP_TCE_ADMIN_DEPLOY_PROMOTED
        || d->state == NGX_HTTP_TCE_ADMIN_DEPLOY_ROLLED_BACK)
    {
        d->steps[d->step].verdict = NGX_HTTP_TCE_ADMIN_STEP_STOPPED;
        d->steps[d->step].ended_ms = now;
    }

    d->updated_ms = now;
    d->rev++;
    res->copy = *d;

    ngx_shmtx_unlock(&amcf->shpool->mutex);

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "tce admin: deploy %uL of \"%s\" cluster \"%s\": %V by "
                  "\"%V\"", res->copy.id, res->copy.service,
                  res->copy.cluster, a, &cmd->principal);

    ngx_http_tce_admin_deploy_persist(amcf, log);
    ngx_http_tce_admin_webhook_deploy(
        res->copy.state == NGX_HTTP_TCE_ADMIN_DEPLOY_PAUSED ? "deploy_paused"
        : res->copy.state == NGX_HTTP_TCE_ADMIN_DEPLOY_PROMOTED
          ? "deploy_promoted"
        : res->copy.state == NGX_HTTP_TCE_ADMIN_DEPLOY_ROLLED_BACK
          ? "deploy_rolled_back" : "deploy_resumed",
        &res->copy, &cmd->principal, log);

    res->status = NGX_HTTP_OK;
}


static ngx_int_t
ngx_http_tce_admin_deploy_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_http_tce_admin_deploy_t *copy)
{
    return ngx_http_tce_admin_send(r, status,
                                   ngx_http_tce_admin_deploy_json(copy));
}


ngx_int_t
ngx_http_tce_admin_deploy_canary_check(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx)
{
    ngx_uint_t                       i, busy;
    ngx_http_tce_admin_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_tce_admin_api_module);

    if (amcf->sh == NULL) {
        return NGX_OK;
    }

    busy = 0;

    ngx_shmtx_lock(&amcf->shpool->mutex);

    for (i = 0; i < NGX_HTTP_TCE_ADMIN_DEPLOYS; i++) {
        if (ngx_http_tce_admin_deploy_is(&amcf->sh->deploys[i], ctx)
            && ngx_http_tce_admin_deploy_active(&amcf->sh->deploys[i]))
        {
            busy = 1;
        }
    }

    ngx_shmtx_unlock(&amcf->shpool->mutex);

    if (!busy) {
        return NGX_OK;
    }

    return ngx_http_tce_admin_refuse(r, NGX_HTTP_CONFLICT, "deploy_running",
                                     "a deploy drives this cluster's canary:"
                                     " use .../deploys/current/promote, "
                                     "rollback or pause");
}


void
ngx_http_tce_admin_deploy_disown(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_tce_service_t *svc, ngx_str_t *cluster)
{
    ngx_uint_t                   i, changed;
    ngx_http_tce_admin_ctx_t     ctx;
    ngx_http_tce_admin_deploy_t *d;

    if (amcf->sh == NULL) {
        return;
    }

    ngx_memzero(&ctx, sizeof(ngx_http_tce_admin_ctx_t));
    ctx.svc = svc;
    ctx.cluster = *cluster;

    changed = 0;

    ngx_shmtx_lock(&amcf->shpool->mutex);

    for (i = 0; i < NGX_HTTP_TCE_ADMIN_DEPLOYS; i++) {
        d = &amcf->sh->deploys[i];

        if (d->owns && ngx_http_tce_admin_deploy_is(d, &ctx)) {
            d->owns = 0;
            changed = 1;
        }
    }

    ngx_shmtx_unlock(&amcf->shpool->mutex);

    if (changed) {
        ngx_http_tce_admin_deploy_persist(amcf, ngx_cycle->log);
    }
}
