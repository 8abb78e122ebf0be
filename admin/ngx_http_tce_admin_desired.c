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
 * its requests in flight.  One change of the admin store (the state
 * file written on the thread pool, then the zone, then the audit
 * line): every worker takes the whole set at its next request.  With
 * tce_redis the same edit is made to the service's set in the fleet
 * store (ngx_http_tce_admin_fleet_set.c), and every node takes it.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_admin_fleet_set.h"
#include "ngx_http_tce_admin_inst.h"
#include "ngx_http_tce_admin_inst_edit.h"
#include "ngx_http_tce_admin_inst_input.h"
#include "ngx_http_tce_admin_store.h"
#include "ngx_tce_text.h"


/* a PUT under way */
typedef struct {
    ngx_http_tce_admin_ctx_t      *ctx;
    ngx_http_tce_admin_change_t    change;
    ngx_tce_state_t                state;
    ngx_tce_state_service_t       *ss;        /* in state, once edited */
    unsigned                       env;
    char                           cluster[NGX_TCE_CLUSTER_LEN];
    uint64_t                       timeout;
    uint64_t                       now;
    ngx_tce_instance_t            *want;      /* malloc'd */
    size_t                         n;
    ngx_http_tce_admin_outcome_t  *out;       /* malloc'd */
    size_t                         nout;
} ngx_http_tce_admin_desired_t;


static ngx_int_t ngx_http_tce_admin_desired_put(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, int env, u_char *body, size_t len);
static void ngx_http_tce_admin_desired_cleanup(void *data);
static void ngx_http_tce_admin_desired_reset(void *data);
static ngx_int_t ngx_http_tce_admin_desired_prepare(ngx_http_request_t *r,
    void *data);
static int ngx_http_tce_admin_desired_edit(ngx_tce_state_t *st, void *data,
    ngx_uint_t *status, ngx_http_tce_admin_err_t *err);
static ngx_int_t ngx_http_tce_admin_desired_apply(ngx_http_request_t *r,
    void *data);
static ngx_int_t ngx_http_tce_admin_desired_done(ngx_http_request_t *r,
    void *data);
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
    size_t                          i;
    ngx_int_t                       rc;
    ngx_pool_cleanup_t             *cln;
    ngx_tce_main_conf_t            *tmcf;
    ngx_http_tce_admin_err_t        err;
    ngx_http_tce_admin_desired_t   *dr;

    dr = ngx_pcalloc(r->pool, sizeof(ngx_http_tce_admin_desired_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (dr == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_tce_admin_desired_cleanup;
    cln->data = dr;

    dr->ctx = ctx;
    dr->env = (unsigned) env;

    ngx_memcpy(dr->cluster, ctx->cluster.data, ctx->cluster.len);
    dr->cluster[ctx->cluster.len] = '\0';

    rc = ngx_http_tce_admin_timeout(r, &dr->timeout);
    if (rc != NGX_OK) {
        return rc == NGX_DONE ? NGX_OK : rc;
    }

    if (ngx_http_tce_admin_set_parse((char *) body, len, dr->env, &dr->want,
                                     &dr->n, &err)
        != 0)
    {
        return ngx_http_tce_admin_error(r, NGX_HTTP_BAD_REQUEST, err.code,
                                        err.text);
    }

    for (i = 0; i < dr->n; i++) {
        ngx_memcpy(dr->want[i].cluster, dr->cluster, sizeof(dr->cluster));
    }

    dr->change.prepare = ngx_http_tce_admin_desired_prepare;
    dr->change.edit = ngx_http_tce_admin_desired_edit;
    dr->change.apply = ngx_http_tce_admin_desired_apply;
    dr->change.answer = ngx_http_tce_admin_desired_done;
    dr->change.data = dr;
    dr->change.state = &dr->state;
    dr->change.reset = ngx_http_tce_admin_desired_reset;

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    /* with tce_redis the fleet keeps the set */
    if (tmcf->fleet) {
        return ngx_http_tce_admin_fleet_change(r, ctx, &dr->change);
    }

    return ngx_http_tce_admin_store_change(r, ctx, &dr->change);
}


static void
ngx_http_tce_admin_desired_cleanup(void *data)
{
    ngx_http_tce_admin_desired_t *dr = data;

    free(dr->want);
    free(dr->out);
    dr->want = NULL;
    dr->out = NULL;
}


/* the edit runs again (tce_redis: a newer set): its outcomes go */
static void
ngx_http_tce_admin_desired_reset(void *data)
{
    ngx_http_tce_admin_desired_t *dr = data;

    free(dr->out);
    dr->out = NULL;
    dr->nout = 0;
}


/* event loop, the turn held */
static ngx_int_t
ngx_http_tce_admin_desired_prepare(ngx_http_request_t *r, void *data)
{
    ngx_http_tce_admin_desired_t *dr = data;

    if (ngx_http_tce_admin_consul_fed(dr->ctx->svc)) {
        return ngx_http_tce_admin_consul_refuse(r, dr->ctx);
    }

    dr->now = ngx_http_tce_admin_now_ms();

    return NGX_OK;
}


/* a thread: the env's instances in the state file (pure C) */
static int
ngx_http_tce_admin_desired_edit(ngx_tce_state_t *st, void *data,
    ngx_uint_t *status, ngx_http_tce_admin_err_t *err)
{
    ngx_http_tce_admin_desired_t *dr = data;

    int                        rc;
    uint64_t                   deadline;
    const ngx_tce_instance_t  *conflict;

    dr->ss = ngx_http_tce_admin_edit_service_add(st,
                                               (char *) dr->ctx->svc->name,
                                               dr->ctx->svc->name_len);
    rc = -1;

    if (dr->ss) {
        deadline = dr->now + dr->timeout;

        rc = ngx_http_tce_admin_edit_desired(dr->ss, dr->cluster, dr->env,
                                             dr->want, dr->n, dr->now,
                                             deadline ? deadline : 1,
                                             &dr->out, &dr->nout, &conflict);
    }

    if (rc == 0) {
        return 0;
    }

    if (rc == 1) {
        *status = NGX_HTTP_CONFLICT;
        err->code = "id_conflict";
        snprintf(err->text, sizeof(err->text),
                 "instance \"%.64s\" of service \"%.64s\" is in another "
                 "cluster or env: DELETE it there first", conflict->id,
                 dr->ctx->svc->name);
        return -1;
    }

    *status = NGX_HTTP_INTERNAL_SERVER_ERROR;
    err->code = "store_error";
    snprintf(err->text, sizeof(err->text),
             "no memory to change the state file: nothing changed");

    return -1;
}


/* event loop, the file written: the zone takes the service's set */
static ngx_int_t
ngx_http_tce_admin_desired_apply(ngx_http_request_t *r, void *data)
{
    ngx_http_tce_admin_desired_t *dr = data;

    size_t                i, added, draining;
    ngx_tce_main_conf_t  *tmcf;

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    if (ngx_tce_zone_set(tmcf->zone, dr->ctx->svc, dr->ss->instances,
                         dr->ss->ninstances, NGX_TCE_SOURCE_STATE,
                         r->connection->log)
        == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    added = 0;
    draining = 0;

    for (i = 0; i < dr->nout; i++) {
        added += (dr->out[i].what == NGX_HTTP_TCE_ADMIN_ADDED);
        draining += (dr->out[i].what == NGX_HTTP_TCE_ADMIN_DRAINING);
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "tce admin: PUT %uz instances of \"%s\" cluster \"%V\" "
                  "env %s by \"%V\": %uz added, %uz draining", dr->n,
                  dr->ctx->svc->name, &dr->ctx->cluster,
                  ngx_tce_env_name(dr->env), &dr->ctx->principal, added,
                  draining);

    return NGX_OK;
}


static ngx_int_t
ngx_http_tce_admin_desired_done(ngx_http_request_t *r, void *data)
{
    ngx_http_tce_admin_desired_t *dr = data;

    return ngx_http_tce_admin_desired_answer(r, dr->ctx, dr->out, dr->nout);
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
