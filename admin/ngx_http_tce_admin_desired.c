/*
 * The admin API's desired instance set of an env:
 *
 *   GET v1/services/<psm>/clusters/<cluster>/envs/<env>/instances
 *   PUT ...[?timeout=30s] {"instances": [{"id", "address", "weight",
 *                                         "version"}, ...]}
 *
 * A PUT adds the instances the env lacks, updates those it has (address,
 * weight, version; overrides kept; a removal under way cancelled) and
 * starts the removal of the others: they drain and leave once their
 * requests in flight have ended (ngx_http_tce_admin_drain.c).  The
 * answer says what was added, updated, kept, and what is draining with
 * its requests in flight.  One write of the state file, one change of
 * the zone: every worker takes the whole set at its next request.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_admin_inst.h"
#include "ngx_http_tce_admin_inst_edit.h"
#include "ngx_http_tce_admin_inst_input.h"
#include "ngx_http_tce_admin_store.h"
#include "ngx_tce_text.h"


static ngx_int_t ngx_http_tce_admin_desired_put(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, int env, u_char *body, size_t len);
static ngx_int_t ngx_http_tce_admin_desired_answer(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, ngx_http_tce_admin_outcome_t *out,
    size_t nout);


ngx_int_t
ngx_http_tce_admin_desired(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len)
{
    int     env;
    char    quoted[32];
    u_char  text[NGX_HTTP_TCE_ADMIN_TEXT_LEN];

    env = ngx_tce_env_parse((char *) ctx->env.data, ctx->env.len);

    if (env < 0) {
        (void) ngx_tce_text_escape(quoted, sizeof(quoted),
                                   (char *) ctx->env.data,
                                   ngx_min(ctx->env.len, 16));
        ngx_snprintf(text, sizeof(text) - 1,
                     "no env \"%s\" (envs: prod, canary)%Z", quoted);
        return ngx_http_tce_admin_error(r, NGX_HTTP_NOT_FOUND,
                                        "unknown_env", (char *) text);
    }

    if (r->method & NGX_HTTP_PUT) {
        return ngx_http_tce_admin_desired_put(r, ctx, env, body, len);
    }

    return ngx_http_tce_admin_inst_list_env(r, ctx);
}


static ngx_int_t
ngx_http_tce_admin_desired_put(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, int env, u_char *body, size_t len)
{
    char                          *orig;
    u_char                         text[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    size_t                         i, n, nout, added, draining;
    uint64_t                       timeout, now;
    ngx_int_t                      rc;
    ngx_tce_state_t                st;
    ngx_tce_instance_t            *want;
    const ngx_tce_instance_t      *conflict;
    ngx_tce_state_service_t       *ss;
    ngx_http_tce_admin_err_t       err;
    ngx_http_tce_admin_outcome_t  *out;
    char                           cluster[NGX_TCE_CLUSTER_LEN];

    ngx_memcpy(cluster, ctx->cluster.data, ctx->cluster.len);
    cluster[ctx->cluster.len] = '\0';

    rc = ngx_http_tce_admin_timeout(r, &timeout);
    if (rc != NGX_OK) {
        return rc == NGX_DONE ? NGX_OK : rc;
    }

    if (ngx_http_tce_admin_set_parse((char *) body, len, (unsigned) env,
                                     &want, &n, &err)
        != 0)
    {
        return ngx_http_tce_admin_error(r, NGX_HTTP_BAD_REQUEST, err.code,
                                        err.text);
    }

    for (i = 0; i < n; i++) {
        ngx_memcpy(want[i].cluster, cluster, sizeof(cluster));
    }

    orig = NULL;
    out = NULL;
    nout = 0;
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

    now = ngx_http_tce_admin_now_ms();

    rc = ngx_http_tce_admin_edit_desired(ss, cluster, (unsigned) env, want,
                                         n, now,
                                         now + timeout ? now + timeout : 1,
                                         &out, &nout, &conflict);
    if (rc == -1) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    if (rc == 1) {
        ngx_snprintf(text, sizeof(text) - 1,
                     "instance \"%s\" of service \"%s\" is in another "
                     "cluster or env: DELETE it there first%Z",
                     conflict->id, ctx->svc->name);
        rc = ngx_http_tce_admin_refuse(r, NGX_HTTP_CONFLICT, "id_conflict",
                                      (char *) text);
        goto done;
    }

    rc = ngx_http_tce_admin_inst_commit(r, ctx, &st, ss, orig);
    if (rc != NGX_OK) {
        goto done;
    }

    added = 0;
    draining = 0;

    for (i = 0; i < nout; i++) {
        added += (out[i].what == NGX_HTTP_TCE_ADMIN_ADDED);
        draining += (out[i].what == NGX_HTTP_TCE_ADMIN_DRAINING);
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "tce admin: PUT %uz instances of \"%s\" cluster \"%V\" "
                  "env %s by \"%V\": %uz added, %uz draining", n,
                  ctx->svc->name, &ctx->cluster, ngx_tce_env_name(env),
                  &ctx->principal, added, draining);

    rc = ngx_http_tce_admin_desired_answer(r, ctx, out, nout);

done:

    if (orig) {
        free(orig);
    }

    if (want) {
        free(want);
    }

    if (out) {
        free(out);
    }

    ngx_tce_state_free(&st);

    ngx_http_tce_admin_store_unlock(r);

    return rc == NGX_DONE ? NGX_OK : rc;
}


static ngx_int_t
ngx_http_tce_admin_desired_answer(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, ngx_http_tce_admin_outcome_t *out,
    size_t nout)
{
    size_t                i;
    json_t               *root, *lists[4], *ij, *dj;
    ngx_uint_t            j, n;
    ngx_atomic_uint_t     generation;
    ngx_tce_instance_t   *inst;
    ngx_tce_main_conf_t  *tmcf;

    static const char  *names[4] = { "added", "updated", "kept",
                                     "draining" };

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    if (ngx_tce_zone_copy(tmcf->zone, ctx->svc, &inst, &n, &generation,
                          r->connection->log)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    root = json_object();
    if (root == NULL) {
        goto failed;
    }

    for (i = 0; i < 4; i++) {
        lists[i] = json_array();

        if (json_object_set_new(root, names[i], lists[i]) != 0) {
            goto failed;
        }
    }

    if (json_object_set_new(root, "service",
                            ngx_http_tce_admin_jstr(ctx->svc->name,
                                                    ctx->svc->name_len))
        != 0
        || json_object_set_new(root, "cluster",
                               ngx_http_tce_admin_jstr(ctx->cluster.data,
                                                       ctx->cluster.len))
           != 0
        || json_object_set_new(root, "env",
                               ngx_http_tce_admin_jstr(ctx->env.data,
                                                       ctx->env.len))
           != 0
        || json_object_set_new(root, "generation", json_integer(generation))
           != 0)
    {
        goto failed;
    }

    for (i = 0; i < nout; i++) {
        if (out[i].what != NGX_HTTP_TCE_ADMIN_DRAINING) {
            if (json_array_append_new(lists[out[i].what],
                                      ngx_http_tce_admin_jstr(out[i].id,
                                          ngx_strlen(out[i].id)))
                != 0)
            {
                goto failed;
            }

            continue;
        }

        /* what is draining: its requests in flight, its deadline */
        for (j = 0; j < n; j++) {
            if (ngx_strcmp(inst[j].id, out[i].id) == 0) {
                break;
            }
        }

        if (j == n) {
            continue;
        }

        ij = ngx_http_tce_admin_inst_json(r, ctx, &inst[j]);

        dj = json_pack("{s:O*, s:O*, s:O*}",
                       "id", json_object_get(ij, "id"),
                       "in_flight", json_object_get(ij, "in_flight"),
                       "removal", json_object_get(ij, "removal"));
        json_decref(ij);

        if (json_array_append_new(lists[3], dj) != 0) {
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
