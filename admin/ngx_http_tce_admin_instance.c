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
 * Every write: the turn of the API's writers, If-Match, the state file
 * loaded, edited and written whole, then the zone; a refusal changes
 * neither, a zone too full puts the file back.
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


ngx_int_t
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

    if (ngx_http_tce_admin_etag(r, generation) != NGX_OK) {
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

    if (ngx_http_tce_admin_etag(r, generation) != NGX_OK) {
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


ngx_int_t
ngx_http_tce_admin_inst_commit(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, ngx_tce_state_t *st,
    ngx_tce_state_service_t *ss, const char *orig)
{
    ngx_int_t                        rc;
    char                             err[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    ngx_tce_main_conf_t             *tmcf;
    ngx_http_tce_admin_main_conf_t  *amcf;

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);
    amcf = ngx_http_get_module_main_conf(r, ngx_http_tce_admin_api_module);

    if (ngx_http_tce_admin_store_save(r, st) != NGX_OK) {
        return ngx_http_tce_admin_refuse(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                        "store_error",
                                        "the state file could not be "
                                        "written (see the error log): "
                                        "nothing changed");
    }

    if (ngx_http_tce_admin_consul_fed(ctx->svc)) {
        rc = ngx_tce_override_service_set(tmcf->zone, ctx->svc, ss,
                                          r->connection->log);

    } else {
        rc = ngx_tce_zone_set(tmcf->zone, ctx->svc, ss->instances,
                              ss->ninstances, NGX_TCE_SOURCE_STATE,
                              r->connection->log);
    }

    if (rc != NGX_ERROR) {
        return NGX_OK;
    }

    /* the zone is full: the file goes back to what it was */
    if (orig == NULL
        || ngx_tce_state_write((char *) tmcf->state_path.data, orig,
                               ngx_strlen(orig), err, sizeof(err))
           != 0)
    {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "tce admin: the state file holds a change to "
                      "service \"%s\" the zone could not take",
                      ctx->svc->name);
    }

    (void) ngx_http_tce_admin_fp(&tmcf->state_path, &amcf->sh->fp);

    return ngx_http_tce_admin_refuse(r, NGX_HTTP_INSUFFICIENT_STORAGE,
                                    "zone_full",
                                    "the tce zone is full: nothing "
                                    "changed");
}


static ngx_int_t
ngx_http_tce_admin_inst_patch(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len)
{
    char                            *orig;
    u_char                           text[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    ngx_int_t                        rc;
    ngx_tce_state_t                  st;
    ngx_tce_instance_t               inst, *fi, carrier;
    ngx_tce_state_service_t         *ss;
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

    orig = NULL;
    st.services = NULL;
    st.nservices = 0;

    ngx_http_tce_admin_store_lock(r);

    rc = ngx_http_tce_admin_precondition(r, ctx);
    if (rc != NGX_OK) {
        goto done;
    }

    rc = ngx_http_tce_admin_inst_find(r, ctx, id, &inst);
    if (rc != NGX_OK) {
        goto done;
    }

    if (inst.rm_deadline && req.drain == 0) {
        ngx_snprintf(text, sizeof(text) - 1,
                     "instance \"%s\" is being removed (DELETE): POST it "
                     "again to keep it%Z", id);
        rc = ngx_http_tce_admin_refuse(r, NGX_HTTP_CONFLICT,
                                      "being_removed", (char *) text);
        goto done;
    }

    rc = ngx_http_tce_admin_store_load(r, &st);
    if (rc != NGX_OK) {
        goto done;
    }

    orig = ngx_tce_state_encode(&st);
    if (orig == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    if (ngx_http_tce_admin_consul_fed(ctx->svc)) {
        ss = ngx_http_tce_admin_edit_service_add(&st,
                                                 (char *) ctx->svc->name,
                                                 ctx->svc->name_len);
        if (ss == NULL) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        fi = ngx_http_tce_admin_edit_find(ss, id);

        if (fi == NULL) {
            /* an entry that carries the override: Consul's address */
            carrier = inst;
            carrier.op_weight = 0;
            carrier.op_drain = 0;
            carrier.op_down = 0;
            carrier.state = NGX_TCE_STATE_UP;
            carrier.rm_since = 0;
            carrier.rm_deadline = 0;

            if (ngx_http_tce_admin_edit_add(ss, &carrier) != 0) {
                rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
                goto done;
            }

            fi = ngx_http_tce_admin_edit_find(ss, id);
        }

    } else {
        ss = ngx_http_tce_admin_edit_service(&st, (char *) ctx->svc->name,
                                             ctx->svc->name_len);
        fi = ss ? ngx_http_tce_admin_edit_find(ss, id) : NULL;

        if (fi == NULL) {
            ngx_snprintf(text, sizeof(text) - 1,
                         "instance \"%s\" of service \"%s\" is not in the "
                         "state file, which keeps the API's changes%Z",
                         id, ctx->svc->name);
            rc = ngx_http_tce_admin_refuse(r, NGX_HTTP_CONFLICT,
                                          "not_in_state_file",
                                          (char *) text);
            goto done;
        }
    }

    if (req.weight >= 0) {
        fi->op_weight = (uint16_t) req.weight;
    }

    if (req.drain >= 0) {
        fi->op_drain = (uint8_t) req.drain;
    }

    if (req.down >= 0) {
        fi->op_down = (uint8_t) req.down;
    }

    /* a Consul instance's entry left without override goes */
    if (ngx_http_tce_admin_consul_fed(ctx->svc)
        && !fi->op_weight && !fi->op_drain && !fi->op_down)
    {
        (void) ngx_http_tce_admin_edit_remove(ss, id);
    }

    rc = ngx_http_tce_admin_inst_commit(r, ctx, &st, ss, orig);
    if (rc != NGX_OK) {
        goto done;
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "tce admin: PATCH instance \"%s\" of \"%s\" cluster "
                  "\"%V\" by \"%V\"", id, ctx->svc->name, &ctx->cluster,
                  &ctx->principal);

    rc = ngx_http_tce_admin_inst_find(r, ctx, id, &inst);

    if (rc == NGX_OK) {
        rc = ngx_http_tce_admin_inst_show(r, ctx, &inst, NGX_HTTP_OK, NULL);
    }

done:

    if (orig) {
        free(orig);
    }

    ngx_tce_state_free(&st);

    ngx_http_tce_admin_store_unlock(r);

    return rc == NGX_DONE ? NGX_OK : rc;
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
    char                     *orig;
    u_char                    text[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    uint64_t                  timeout, now;
    ngx_int_t                 rc;
    ngx_tce_state_t           st;
    ngx_tce_instance_t        inst, *fi;
    ngx_tce_state_service_t  *ss;
    char                      id[NGX_TCE_ID_LEN];

    rc = ngx_http_tce_admin_timeout(r, &timeout);
    if (rc != NGX_OK) {
        return rc == NGX_DONE ? NGX_OK : rc;
    }

    rc = ngx_http_tce_admin_inst_id(r, ctx, id);
    if (rc != NGX_OK) {
        return rc == NGX_DONE ? NGX_OK : rc;
    }

    orig = NULL;
    st.services = NULL;
    st.nservices = 0;

    ngx_http_tce_admin_store_lock(r);

    rc = ngx_http_tce_admin_precondition(r, ctx);
    if (rc != NGX_OK) {
        goto done;
    }

    rc = ngx_http_tce_admin_inst_find(r, ctx, id, &inst);
    if (rc != NGX_OK) {
        goto done;
    }

    if (ngx_http_tce_admin_consul_fed(ctx->svc)) {
        rc = ngx_http_tce_admin_consul_refuse(r, ctx);
        goto done;
    }

    rc = ngx_http_tce_admin_store_load(r, &st);
    if (rc != NGX_OK) {
        goto done;
    }

    orig = ngx_tce_state_encode(&st);
    if (orig == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    ss = ngx_http_tce_admin_edit_service(&st, (char *) ctx->svc->name,
                                         ctx->svc->name_len);
    fi = ss ? ngx_http_tce_admin_edit_find(ss, id) : NULL;

    if (fi == NULL) {
        ngx_snprintf(text, sizeof(text) - 1,
                     "instance \"%s\" of service \"%s\" is not in the "
                     "state file, which keeps the API's changes%Z",
                     id, ctx->svc->name);
        rc = ngx_http_tce_admin_refuse(r, NGX_HTTP_CONFLICT,
                                      "not_in_state_file", (char *) text);
        goto done;
    }

    now = ngx_http_tce_admin_now_ms();

    /* again: a new deadline when one is given, the start kept */
    if (fi->rm_deadline == 0) {
        fi->rm_since = now;
    }

    if (fi->rm_deadline == 0 || r->args.len) {
        fi->rm_deadline = now + timeout;

        if (fi->rm_deadline == 0) {
            fi->rm_deadline = 1;
        }
    }

    rc = ngx_http_tce_admin_inst_commit(r, ctx, &st, ss, orig);
    if (rc != NGX_OK) {
        goto done;
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "tce admin: DELETE instance \"%s\" of \"%s\" cluster "
                  "\"%V\" by \"%V\": draining, removed within %uLms",
                  id, ctx->svc->name, &ctx->cluster, &ctx->principal,
                  fi->rm_deadline - now);

    rc = ngx_http_tce_admin_inst_find(r, ctx, id, &inst);

    if (rc == NGX_OK) {
        rc = ngx_http_tce_admin_inst_show(r, ctx, &inst, NGX_HTTP_ACCEPTED,
                                          "draining");
    }

done:

    if (orig) {
        free(orig);
    }

    ngx_tce_state_free(&st);

    ngx_http_tce_admin_store_unlock(r);

    return rc == NGX_DONE ? NGX_OK : rc;
}


static ngx_int_t
ngx_http_tce_admin_inst_post(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len)
{
    char                      *orig;
    u_char                     text[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    ngx_int_t                  rc;
    ngx_str_t                  loc;
    ngx_uint_t                 status;
    ngx_tce_state_t            st;
    ngx_tce_instance_t         inst, *fi;
    ngx_table_elt_t           *h;
    ngx_tce_state_service_t   *ss;
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

    orig = NULL;
    st.services = NULL;
    st.nservices = 0;

    ngx_http_tce_admin_store_lock(r);

    rc = ngx_http_tce_admin_precondition(r, ctx);
    if (rc != NGX_OK) {
        goto done;
    }

    if (ngx_http_tce_admin_consul_fed(ctx->svc)) {
        rc = ngx_http_tce_admin_consul_refuse(r, ctx);
        goto done;
    }

    rc = ngx_http_tce_admin_store_load(r, &st);
    if (rc != NGX_OK) {
        goto done;
    }

    orig = ngx_tce_state_encode(&st);

    ss = ngx_http_tce_admin_edit_service_add(&st, (char *) ctx->svc->name,
                                             ctx->svc->name_len);
    if (orig == NULL || ss == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    fi = ngx_http_tce_admin_edit_find(ss, inst.id);
    status = NGX_HTTP_CREATED;

    if (fi == NULL) {
        if (ngx_http_tce_admin_edit_add(ss, &inst) != 0) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

    } else if (fi->env == inst.env
               && ngx_strcmp(fi->cluster, inst.cluster) == 0
               && (fi->rm_deadline
                   || (ngx_strcmp(fi->addr, inst.addr) == 0
                       && fi->weight == inst.weight
                       && ngx_strcmp(fi->version, inst.version) == 0)))
    {
        /* the same again, or one being removed: kept, as asked now */
        ngx_memcpy(fi->addr, inst.addr, sizeof(inst.addr));
        fi->sockaddr = inst.sockaddr;
        fi->socklen = inst.socklen;
        fi->weight = inst.weight;
        ngx_memcpy(fi->version, inst.version, sizeof(inst.version));
        fi->rm_since = 0;
        fi->rm_deadline = 0;
        status = NGX_HTTP_OK;

    } else {
        ngx_snprintf(text, sizeof(text) - 1,
                     "service \"%s\" has an instance \"%s\" already (cluster "
                     "\"%s\", env %s, %s): PATCH or DELETE it%Z",
                     ctx->svc->name, inst.id, fi->cluster,
                     ngx_tce_env_name(fi->env), fi->addr);
        rc = ngx_http_tce_admin_refuse(r, NGX_HTTP_CONFLICT,
                                      "instance_exists", (char *) text);
        goto done;
    }

    rc = ngx_http_tce_admin_inst_commit(r, ctx, &st, ss, orig);
    if (rc != NGX_OK) {
        goto done;
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "tce admin: POST instance \"%s\" (%s) to \"%s\" cluster "
                  "\"%V\" by \"%V\"", inst.id, inst.addr, ctx->svc->name,
                  &ctx->cluster, &ctx->principal);

    /* where it is: the collection's URI and the id */
    loc.len = r->uri.len + 1 + ngx_strlen(inst.id);
    loc.data = ngx_pnalloc(r->pool, loc.len);
    h = ngx_list_push(&r->headers_out.headers);

    if (loc.data == NULL || h == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    loc.len = ngx_sprintf(loc.data, "%V%s%s", &r->uri,
                          r->uri.data[r->uri.len - 1] == '/' ? "" : "/",
                          inst.id)
              - loc.data;

    h->hash = 1;
    ngx_str_set(&h->key, "Location");
    h->value = loc;

    rc = ngx_http_tce_admin_inst_find(r, ctx, inst.id, &inst);

    if (rc == NGX_OK) {
        rc = ngx_http_tce_admin_inst_show(r, ctx, &inst, status,
                                          status == NGX_HTTP_CREATED
                                          ? "added" : "kept");
    }

done:

    if (orig) {
        free(orig);
    }

    ngx_tce_state_free(&st);

    ngx_http_tce_admin_store_unlock(r);

    return rc == NGX_DONE ? NGX_OK : rc;
}
