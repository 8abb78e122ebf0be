/*
 * The admin API's instance operations:
 *
 *   GET    v1/services/<psm>/clusters/<cluster>/instances
 *   POST   ... {"id", "address", "weight", "env", "version"}: adds one
 *   GET    v1/services/<psm>/clusters/<cluster>/instances/<id>
 *   PATCH  ... {"weight": n|null, "drain": bool|null, "down": bool|null}
 *   DELETE ...[?timeout=30s]: drains, then removes (202)
 *
 * Overrides (PATCH) are the operator's, kept apart from discovery: for
 * an instance of the state file they are its "override" object; for
 * one Consul reports, an entry of the state file that carries only the
 * override (ngx_tce_override.c lays it over every answer of Consul).
 * Instances Consul reports are added and removed in Consul: POST and
 * DELETE answer 409 for them.
 *
 * A DELETE marks the instance "removing" in the state file and the
 * zone: it gets no new request, and the removal timer of the workers
 * (ngx_http_tce_admin_drain.c) takes it out of both once its requests
 * in flight, summed over every worker, are 0, or at the deadline.
 *
 * Every write (ngx_http_tce_admin_inst_write.c) is a change of the
 * admin store: the state file edited and written on the thread pool,
 * then the zone, then the audit line; a refusal changes neither, a zone
 * too full puts the file back.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_admin_edit.h"
#include "ngx_http_tce_admin_inst.h"
#include "ngx_http_tce_admin_inst_edit.h"
#include "ngx_http_tce_admin_inst_input.h"
#include "ngx_http_tce_admin_store.h"
#include "ngx_http_tce_metrics.h"
#include "ngx_tce_text.h"


static ngx_int_t ngx_http_tce_admin_inst_list(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx);
static ngx_int_t ngx_http_tce_admin_inst_patch(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len);
static ngx_int_t ngx_http_tce_admin_inst_delete(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx);
static ngx_int_t ngx_http_tce_admin_inst_post(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len);
static ngx_int_t ngx_http_tce_admin_inst_id(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, char *id);


ngx_int_t
ngx_http_tce_admin_instance_op(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len)
{
    ngx_int_t           rc;
    ngx_tce_instance_t  inst;
    char                id[NGX_TCE_ID_LEN];

    if (ctx->instance.len == 0) {
        if (r->method & NGX_HTTP_POST) {
            return ngx_http_tce_admin_inst_post(r, ctx, body, len);
        }

        return ngx_http_tce_admin_inst_list(r, ctx);
    }

    if (r->method & NGX_HTTP_PATCH) {
        return ngx_http_tce_admin_inst_patch(r, ctx, body, len);
    }

    if (r->method & NGX_HTTP_DELETE) {
        return ngx_http_tce_admin_inst_delete(r, ctx);
    }

    rc = ngx_http_tce_admin_inst_id(r, ctx, id);
    if (rc != NGX_OK) {
        return rc == NGX_DONE ? NGX_OK : rc;
    }

    rc = ngx_http_tce_admin_inst_find(r, ctx, id, &inst);
    if (rc != NGX_OK) {
        return rc == NGX_DONE ? NGX_OK : rc;
    }

    return ngx_http_tce_admin_inst_show(r, ctx, &inst, NGX_HTTP_OK, NULL);
}


/* the route's id, checked, NUL-terminated into id */
static ngx_int_t
ngx_http_tce_admin_inst_id(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, char *id)
{
    char    quoted[NGX_TCE_ID_LEN + 16];
    u_char  text[NGX_HTTP_TCE_ADMIN_TEXT_LEN];

    if (!ngx_tce_id_valid((char *) ctx->instance.data, ctx->instance.len)) {
        (void) ngx_tce_text_escape(quoted, sizeof(quoted),
                                   (char *) ctx->instance.data,
                                   ngx_min(ctx->instance.len, 100));
        ngx_snprintf(text, sizeof(text) - 1,
                     "instance \"%s\": not an instance id (1..127 "
                     "printable characters without spaces or quotes)%Z",
                     quoted);
        return ngx_http_tce_admin_refuse(r, NGX_HTTP_BAD_REQUEST, "bad_id",
                                        (char *) text);
    }

    ngx_memcpy(id, ctx->instance.data, ctx->instance.len);
    id[ctx->instance.len] = '\0';

    return NGX_OK;
}


ngx_int_t
ngx_http_tce_admin_inst_find(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, const char *id, ngx_tce_instance_t *out)
{
    u_char                text[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    ngx_uint_t            i, n, found;
    ngx_atomic_uint_t     generation;
    ngx_tce_instance_t   *inst;
    ngx_tce_main_conf_t  *tmcf;

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    if (ngx_tce_zone_copy(tmcf->zone, ctx->svc, &inst, &n, &generation,
                          r->connection->log)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    found = 0;

    for (i = 0; i < n; i++) {
        if (ngx_strcmp(inst[i].id, id) == 0
            && ngx_strlen(inst[i].cluster) == ctx->cluster.len
            && ngx_strncmp(inst[i].cluster, ctx->cluster.data,
                           ctx->cluster.len) == 0)
        {
            *out = inst[i];
            found = 1;
            break;
        }
    }

    if (inst) {
        ngx_free(inst);
    }

    if (found) {
        return NGX_OK;
    }

    ngx_snprintf(text, sizeof(text) - 1,
                 "service \"%s\" cluster \"%V\" has no instance \"%s\"%Z",
                 ctx->svc->name, &ctx->cluster, id);

    return ngx_http_tce_admin_refuse(r, NGX_HTTP_NOT_FOUND,
                                    "unknown_instance", (char *) text);
}



ngx_uint_t
ngx_http_tce_admin_consul_fed(ngx_tce_service_t *svc)
{
    return svc->source == NGX_TCE_SOURCE_CONSUL || svc->disc_watched;
}


ngx_int_t
ngx_http_tce_admin_consul_refuse(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx)
{
    u_char  text[NGX_HTTP_TCE_ADMIN_TEXT_LEN];

    ngx_snprintf(text, sizeof(text) - 1,
                 "the instances of service \"%s\" are registered in "
                 "Consul: add and remove them there (drain, down and "
                 "weight overrides work here, with PATCH)%Z",
                 ctx->svc->name);

    return ngx_http_tce_admin_refuse(r, NGX_HTTP_CONFLICT,
                                    "registered_in_consul", (char *) text);
}


json_t *
ngx_http_tce_admin_inst_json(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, ngx_tce_instance_t *inst)
{
    json_t               *ij;
    int64_t               n;
    ngx_str_t             name;
    ngx_tce_main_conf_t  *tmcf;

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    ij = ngx_http_tce_admin_instance(inst, NULL);
    if (ij == NULL) {
        return NULL;
    }

    name.data = ctx->svc->name;
    name.len = ctx->svc->name_len;

    if (ngx_http_tce_metrics_in_flight(tmcf->zone, &name, inst, &n)
        != NGX_OK)
    {
        n = 0;
    }

    if (json_object_set_new(ij, "cluster",
                            ngx_http_tce_admin_jstr(inst->cluster,
                                ngx_strlen(inst->cluster)))
           != 0
        || json_object_set_new(ij, "env",
                               json_string(ngx_tce_env_name(inst->env)))
           != 0
        || json_object_set_new(ij, "in_flight",
                               json_integer(n > 0 ? n : 0)) != 0)
    {
        json_decref(ij);
        return NULL;
    }

    return ij;
}


ngx_int_t
ngx_http_tce_admin_inst_show(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, ngx_tce_instance_t *inst,
    ngx_uint_t status, const char *outcome)
{
    json_t             *root, *ij;
    ngx_atomic_uint_t   generation;

    generation = ctx->svc->generation;

    ij = ngx_http_tce_admin_inst_json(r, ctx, inst);
    root = json_object();

    if (ij == NULL || root == NULL
        || json_object_set_new(root, "instance", ij) != 0
        || json_object_set_new(root, "service",
                               ngx_http_tce_admin_jstr(ctx->svc->name,
                                   ctx->svc->name_len))
           != 0
        || json_object_set_new(root, "generation", json_integer(generation))
           != 0
        || (outcome
            && json_object_set_new(root, "status", json_string(outcome))
               != 0))
    {
        if (root == NULL) {
            json_decref(ij);
        }

        json_decref(root);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_tce_admin_etag(r, ngx_http_tce_admin_inst_tag(r, ctx->svc,
                                                               generation))
        != NGX_OK)
    {
        json_decref(root);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_tce_admin_send(r, status, root);
}


static ngx_int_t
ngx_http_tce_admin_inst_list(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx)
{
    json_t               *root, *list;
    ngx_uint_t            i, n;
    ngx_atomic_uint_t     generation;
    ngx_tce_instance_t   *inst;
    ngx_tce_main_conf_t  *tmcf;

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    if (ngx_tce_zone_copy(tmcf->zone, ctx->svc, &inst, &n, &generation,
                          r->connection->log)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    root = json_object();
    list = json_array();

    if (root == NULL
        || json_object_set_new(root, "instances", list) != 0
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
        goto failed;
    }

    for (i = 0; i < n; i++) {
        if (ngx_strlen(inst[i].cluster) != ctx->cluster.len
            || ngx_strncmp(inst[i].cluster, ctx->cluster.data,
                           ctx->cluster.len) != 0
            || (ctx->env.len
                && (ngx_strlen(ngx_tce_env_name(inst[i].env))
                    != ctx->env.len
                    || ngx_strncmp(ngx_tce_env_name(inst[i].env),
                                   ctx->env.data, ctx->env.len) != 0)))
        {
            continue;
        }

        if (json_array_append_new(list,
                                  ngx_http_tce_admin_inst_json(r, ctx,
                                                               &inst[i]))
            != 0)
        {
            goto failed;
        }
    }

    if (inst) {
        ngx_free(inst);
        inst = NULL;
    }

    if (ngx_http_tce_admin_etag(r, ngx_http_tce_admin_inst_tag(r, ctx->svc,
                                                               generation))
        != NGX_OK)
    {
        goto failed;
    }

    return ngx_http_tce_admin_send(r, NGX_HTTP_OK, root);

failed:

    json_decref(root);

    if (inst) {
        ngx_free(inst);
    }

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


ngx_int_t
ngx_http_tce_admin_inst_list_env(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx)
{
    return ngx_http_tce_admin_inst_list(r, ctx);
}



static ngx_int_t
ngx_http_tce_admin_inst_patch(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len)
{
    ngx_int_t                        rc;
    ngx_tce_main_conf_t             *tmcf;
    ngx_http_tce_admin_err_t         err;
    ngx_http_tce_admin_patch_req_t   req;
    char                             id[NGX_TCE_ID_LEN];

    if (ngx_http_tce_admin_patch_parse((char *) body, len, &req, &err) != 0)
    {
        return ngx_http_tce_admin_error(r, NGX_HTTP_BAD_REQUEST, err.code,
                                        err.text);
    }

    rc = ngx_http_tce_admin_inst_id(r, ctx, id);
    if (rc != NGX_OK) {
        return rc == NGX_DONE ? NGX_OK : rc;
    }

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    if (tmcf->fleet) {
        return ngx_http_tce_admin_fleet_override(r, ctx, id, &req);
    }

    return ngx_http_tce_admin_inst_write(r, ctx, id, &req, 0, NULL);
}


ngx_atomic_uint_t
ngx_http_tce_admin_inst_tag(ngx_http_request_t *r, ngx_tce_service_t *svc,
    ngx_atomic_uint_t generation)
{
    ngx_tce_main_conf_t  *tmcf;

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    return tmcf->fleet ? (ngx_atomic_uint_t) svc->fleet_rev : generation;
}


uint64_t
ngx_http_tce_admin_now_ms(void)
{
    ngx_time_t  *tp;

    ngx_time_update();
    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


/* the ?timeout= of a request, else the location's default */
ngx_int_t
ngx_http_tce_admin_timeout(ngx_http_request_t *r, uint64_t *ms)
{
    int                             rc;
    ngx_http_tce_admin_err_t        err;
    ngx_http_tce_admin_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_tce_admin_api_module);

    *ms = alcf->drain_timeout;

    rc = ngx_http_tce_admin_query_parse((char *) r->args.data, r->args.len,
                                        ms, &err);
    if (rc < 0) {
        return ngx_http_tce_admin_refuse(r, NGX_HTTP_BAD_REQUEST, err.code,
                                        err.text);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_tce_admin_inst_delete(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx)
{
    uint64_t   timeout;
    ngx_int_t  rc;
    char       id[NGX_TCE_ID_LEN];

    rc = ngx_http_tce_admin_timeout(r, &timeout);
    if (rc != NGX_OK) {
        return rc == NGX_DONE ? NGX_OK : rc;
    }

    rc = ngx_http_tce_admin_inst_id(r, ctx, id);
    if (rc != NGX_OK) {
        return rc == NGX_DONE ? NGX_OK : rc;
    }

    return ngx_http_tce_admin_inst_write(r, ctx, id, NULL, timeout, NULL);
}


static ngx_int_t
ngx_http_tce_admin_inst_post(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len)
{
    ngx_tce_instance_t         inst;
    ngx_http_tce_admin_err_t   err;

    if (ngx_http_tce_admin_add_parse((char *) body, len, &inst, &err) != 0)
    {
        return ngx_http_tce_admin_error(r, NGX_HTTP_BAD_REQUEST, err.code,
                                        err.text);
    }

    ngx_memcpy(inst.cluster, ctx->cluster.data, ctx->cluster.len);
    inst.cluster[ctx->cluster.len] = '\0';

    if (r->args.len) {
        return ngx_http_tce_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                        "unknown_field",
                                        "query: POST takes no parameter");
    }

    return ngx_http_tce_admin_inst_write(r, ctx, NULL, NULL, 0, &inst);
}
