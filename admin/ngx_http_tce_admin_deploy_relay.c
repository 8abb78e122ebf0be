/*
 * Deploy writes sent to a fleet node that does not drive deploys: the
 * node relays them to the holder of the deploy lease through Redis and
 * answers with the holder's outcome, so that any node of the fleet
 * takes POST .../deploys and .../deploys/current/<action>.
 *
 * The node that took the request (the relay) checks it as the holder
 * would (auth, service, body), then RPUSHes the command, a JSON object
 * {"id", "service", "cluster", "principal", "action", "body"}, to
 * <prefix>deploy_commands.  The holder's controlling worker takes up
 * to 16 commands off that list in its lease script, every tick
 * (ngx_http_tce_admin_deploy_fleet.c), applies each one as its own
 * route would (ngx_http_tce_admin_deploy_apply()), and writes the
 * outcome to <prefix>deploy_result:<id> (expiring after 30 s): at once
 * for a refusal (409, ...), after the records write that carries the
 * change otherwise, so the fleet's records and policies have it when
 * the relay answers.  The relay reads the result every
 * NGX_HTTP_TCE_ADMIN_RELAY_POLL ms and answers with its status and
 * body (the audit line is the relay's: its request).
 *
 * No result after NGX_HTTP_TCE_ADMIN_RELAY_WAIT ms (no holder, or one
 * that cannot reach Redis): the relay takes its command back (LREM).
 * Taken back: 503 deploy_controller_unavailable, not applied.  Already
 * taken by a holder: it waits NGX_HTTP_TCE_ADMIN_RELAY_WAIT more for
 * the result, then answers 503 deploy_outcome_unknown (the holder took
 * it and went silent: GET .../deploys/current tells).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_tce_redis.h"


#define NGX_HTTP_TCE_ADMIN_RELAY_POLL     50      /* ms */
#define NGX_HTTP_TCE_ADMIN_RELAY_WAIT     5000    /* ms */
#define NGX_HTTP_TCE_ADMIN_RELAY_KEEP     "60000" /* ms, the queue */
#define NGX_HTTP_TCE_ADMIN_RESULT_KEEP    "30000" /* ms, a result */
#define NGX_HTTP_TCE_ADMIN_RELAY_ID_LEN   128
#define NGX_HTTP_TCE_ADMIN_RELAY_PENDING  16
#define NGX_HTTP_TCE_ADMIN_RELAY_KEY_LEN  (NGX_TCE_REDIS_PREFIX_MAX + 32 \
                                           + NGX_HTTP_TCE_ADMIN_RELAY_ID_LEN)

/* the relay's phases */
#define NGX_HTTP_TCE_ADMIN_RELAY_QUEUED   0    /* polling for the result */
#define NGX_HTTP_TCE_ADMIN_RELAY_TAKEN    1    /* a holder took it */


/* a relayed write in flight: outlives its request if the client goes */
typedef struct {
    ngx_http_request_t         *r;           /* NULL: request gone */
    ngx_pool_cleanup_t         *cln;
    ngx_event_t                 ev;
    ngx_msec_t                  deadline;
    ngx_uint_t                  phase;
    ngx_uint_t                  busy;        /* a Redis command in flight */
    char                       *cmd;         /* the queued JSON, malloc() */
    size_t                      cmd_len;
    u_char                      list[NGX_HTTP_TCE_ADMIN_RELAY_KEY_LEN];
    u_char                      key[NGX_HTTP_TCE_ADMIN_RELAY_KEY_LEN];
} ngx_http_tce_admin_relay_t;


/* the holder's: an outcome waiting for the records write that has it */
typedef struct {
    char                       *json;        /* malloc(); NULL: free */
    ngx_uint_t                  seq;         /* pushes sent before it */
    u_char                      key[NGX_HTTP_TCE_ADMIN_RELAY_KEY_LEN];
} ngx_http_tce_admin_result_t;


static void ngx_http_tce_admin_relay_queued(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data);
static void ngx_http_tce_admin_relay_timer(ngx_event_t *ev);
static void ngx_http_tce_admin_relay_read(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data);
static void ngx_http_tce_admin_relay_withdrawn(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data);
static void ngx_http_tce_admin_relay_answer(ngx_http_tce_admin_relay_t *w,
    const char *text, size_t len);
static void ngx_http_tce_admin_relay_fail(ngx_http_tce_admin_relay_t *w,
    ngx_uint_t status, const char *code, const char *text);
static void ngx_http_tce_admin_relay_finalize(ngx_http_tce_admin_relay_t *w,
    ngx_int_t rc);
static void ngx_http_tce_admin_relay_gone(void *data);
static void ngx_http_tce_admin_relay_free(ngx_http_tce_admin_relay_t *w);
static ngx_tce_redis_ctx_t *ngx_http_tce_admin_relay_redis(
    ngx_tce_redis_main_conf_t **rmcfp);
static ngx_int_t ngx_http_tce_admin_relay_back(
    ngx_http_tce_admin_relay_t *w);
static const char *ngx_http_tce_admin_relay_str(ngx_str_t *s);
static void ngx_http_tce_admin_result_send(u_char *key, const char *json,
    ngx_log_t *log);
static void ngx_http_tce_admin_result_sent(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data);


/*
 * KEYS: the queue.  ARGV: the command, the queue's expiry (ms).
 */
static const char  ngx_http_tce_admin_relay_push_script[] =
    "redis.call('RPUSH', KEYS[1], ARGV[1])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "return 1\n";


/*
 * KEYS: the queue, the result.  ARGV: the command.  Returns {0} when
 * the command was still queued (now removed), else {1, result or ""}.
 */
static const char  ngx_http_tce_admin_relay_back_script[] =
    "if redis.call('LREM', KEYS[1], 1, ARGV[1]) > 0 then return {0} end\n"
    "return {1, redis.call('GET', KEYS[2]) or ''}\n";


static ngx_uint_t  ngx_http_tce_admin_relay_seq;
static ngx_uint_t  ngx_http_tce_admin_relay_pushes;

static ngx_http_tce_admin_result_t
    ngx_http_tce_admin_results[NGX_HTTP_TCE_ADMIN_RELAY_PENDING];


ngx_int_t
ngx_http_tce_admin_deploy_relay(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len)
{
    json_t                      *j;
    u_char                       id[NGX_HTTP_TCE_ADMIN_RELAY_ID_LEN], *p;
    ngx_str_t                    key, args[2];
    ngx_pool_cleanup_t          *cln;
    ngx_tce_redis_ctx_t         *rctx;
    ngx_tce_redis_main_conf_t   *rmcf;
    ngx_http_tce_admin_relay_t  *w;

    rctx = ngx_http_tce_admin_relay_redis(&rmcf);

    if (rctx == NULL) {
        return ngx_http_tce_admin_fleet_unavailable(r, "not started");
    }

    /* unique in the fleet: the host, this worker, a count, the time */
    p = ngx_snprintf(id, sizeof(id) - 1, "%V:%P:%ui:%M",
                     &ngx_cycle->hostname, ngx_pid,
                     ++ngx_http_tce_admin_relay_seq, ngx_current_msec);
    *p = '\0';

    /* jansson refuses NULL even with a length of 0 */
    j = json_pack("{s:s, s:s%, s:s%, s:s%, s:s%, s:s%}",
                  "id", (char *) id,
                  "service", ctx->svc->name, ctx->svc->name_len,
                  "cluster", ngx_http_tce_admin_relay_str(&ctx->cluster),
                  ctx->cluster.len,
                  "principal", ngx_http_tce_admin_relay_str(&ctx->principal),
                  ctx->principal.len,
                  "action", ngx_http_tce_admin_relay_str(&ctx->action),
                  ctx->action.len,
                  "body", body ? (char *) body : "", body ? len : 0);

    if (j == NULL) {
        return ngx_http_tce_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                        "invalid_json",
                                        "body: not UTF-8 text");
    }

    w = ngx_calloc(sizeof(ngx_http_tce_admin_relay_t), r->connection->log);
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (w == NULL || cln == NULL) {
        ngx_free(w);
        json_decref(j);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    w->cmd = json_dumps(j, JSON_COMPACT);
    json_decref(j);

    if (w->cmd == NULL) {
        ngx_free(w);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    w->cmd_len = ngx_strlen(w->cmd);
    w->r = r;
    w->cln = cln;
    w->deadline = ngx_current_msec + NGX_HTTP_TCE_ADMIN_RELAY_WAIT;
    w->ev.handler = ngx_http_tce_admin_relay_timer;
    w->ev.data = w;
    w->ev.log = r->connection->log;

    p = ngx_snprintf(w->list, sizeof(w->list) - 1, "%Vdeploy_commands",
                     &rmcf->prefix);
    *p = '\0';
    p = ngx_snprintf(w->key, sizeof(w->key) - 1, "%Vdeploy_result:%s",
                     &rmcf->prefix, id);
    *p = '\0';

    key.data = w->list;
    key.len = ngx_strlen(w->list);
    args[0].data = (u_char *) w->cmd;
    args[0].len = w->cmd_len;
    args[1].data = (u_char *) NGX_HTTP_TCE_ADMIN_RELAY_KEEP;
    args[1].len = sizeof(NGX_HTTP_TCE_ADMIN_RELAY_KEEP) - 1;

    if (ngx_tce_redis_eval(&rctx->cmd, ngx_http_tce_admin_relay_queued, w,
                           ngx_http_tce_admin_relay_push_script, &key, 1,
                           args, 2)
        != NGX_OK)
    {
        free(w->cmd);
        ngx_free(w);
        return ngx_http_tce_admin_fleet_unavailable(r,
                                                (char *) rctx->cmd.err);
    }

    w->busy = 1;
    cln->handler = ngx_http_tce_admin_relay_gone;
    cln->data = w;
    ctx->gen_before = ctx->svc->generation;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "tce admin: deploy write relayed to the deploy lease's "
                  "holder as \"%s\"", id);

    /* answered once the holder's result is read */
    r->main->count++;

    return NGX_DONE;
}


/* the relay's Redis: this worker's command connection; NULL: none */
static ngx_tce_redis_ctx_t *
ngx_http_tce_admin_relay_redis(ngx_tce_redis_main_conf_t **rmcfp)
{
    ngx_tce_redis_main_conf_t  *rmcf;

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_tce_redis_module);
    *rmcfp = rmcf;

    if (rmcf == NULL || !rmcf->enabled) {
        return NULL;
    }

    return rmcf->ctx;
}


/*
 * A Redis reply for w came back: w is free for the next command; if its
 * request has gone meanwhile, w is freed (NGX_DECLINED: nothing to do).
 */
static ngx_int_t
ngx_http_tce_admin_relay_back(ngx_http_tce_admin_relay_t *w)
{
    w->busy = 0;

    if (w->r == NULL) {
        ngx_http_tce_admin_relay_free(w);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static const char *
ngx_http_tce_admin_relay_str(ngx_str_t *s)
{
    return s->len ? (const char *) s->data : "";
}


static void
ngx_http_tce_admin_relay_queued(ngx_tce_redis_conn_t *rc, redisReply *reply,
    const char *err, void *data)
{
    ngx_http_tce_admin_relay_t *w = data;

    if (ngx_http_tce_admin_relay_back(w) != NGX_OK) {
        return;
    }

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        if (reply) {
            err = reply->type == REDIS_REPLY_ERROR ? reply->str
                                                   : "unexpected answer";
        }

        ngx_http_tce_admin_relay_finalize(w,
            ngx_http_tce_admin_fleet_unavailable(w->r, err));
        return;
    }

    ngx_add_timer(&w->ev, NGX_HTTP_TCE_ADMIN_RELAY_POLL);
}


static void
ngx_http_tce_admin_relay_timer(ngx_event_t *ev)
{
    ngx_http_tce_admin_relay_t *w = ev->data;

    size_t                      argl[2];
    ngx_str_t                   keys[2], arg;
    const char                 *argv[2];
    ngx_tce_redis_ctx_t        *rctx;
    ngx_tce_redis_main_conf_t  *rmcf;

    rctx = ngx_http_tce_admin_relay_redis(&rmcf);

    if (rctx == NULL) {
        ngx_http_tce_admin_relay_fail(w, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "redis_unavailable",
                                      "the fleet store (Redis) is gone");
        return;
    }

    if (w->phase == NGX_HTTP_TCE_ADMIN_RELAY_QUEUED
        && (ngx_msec_int_t) (ngx_current_msec - w->deadline) >= 0)
    {
        /* no result in time: take the command back unless taken */
        keys[0].data = w->list;
        keys[0].len = ngx_strlen(w->list);
        keys[1].data = w->key;
        keys[1].len = ngx_strlen(w->key);
        arg.data = (u_char *) w->cmd;
        arg.len = w->cmd_len;

        if (ngx_tce_redis_eval(&rctx->cmd,
                               ngx_http_tce_admin_relay_withdrawn, w,
                               ngx_http_tce_admin_relay_back_script, keys, 2,
                               &arg, 1)
            != NGX_OK)
        {
            ngx_http_tce_admin_relay_fail(w, NGX_HTTP_SERVICE_UNAVAILABLE,
                "deploy_outcome_unknown",
                "Redis cannot be reached to take the relayed command back: "
                "it may still be applied; GET .../deploys/current tells");
            return;
        }

        w->busy = 1;
        return;
    }

    if (w->phase == NGX_HTTP_TCE_ADMIN_RELAY_TAKEN
        && (ngx_msec_int_t) (ngx_current_msec - w->deadline) >= 0)
    {
        ngx_http_tce_admin_relay_fail(w, NGX_HTTP_SERVICE_UNAVAILABLE,
            "deploy_outcome_unknown",
            "the node holding the deploy lease took the command but gave "
            "no result in time: GET .../deploys/current tells whether it "
            "was applied");
        return;
    }

    argv[0] = "GET";
    argl[0] = 3;
    argv[1] = (char *) w->key;
    argl[1] = ngx_strlen(w->key);

    if (ngx_tce_redis_command(&rctx->cmd, ngx_http_tce_admin_relay_read, w,
                              2, argv, argl)
        != NGX_OK)
    {
        /* not connected now: again at the next poll, until the end */
        ngx_add_timer(&w->ev, NGX_HTTP_TCE_ADMIN_RELAY_POLL);
        return;
    }

    w->busy = 1;
}


static void
ngx_http_tce_admin_relay_read(ngx_tce_redis_conn_t *rc, redisReply *reply,
    const char *err, void *data)
{
    ngx_http_tce_admin_relay_t *w = data;

    if (ngx_http_tce_admin_relay_back(w) != NGX_OK) {
        return;
    }

    if (reply && reply->type == REDIS_REPLY_STRING) {
        ngx_http_tce_admin_relay_answer(w, reply->str, reply->len);
        return;
    }

    /* none yet (or Redis failing: the deadline bounds it) */
    ngx_add_timer(&w->ev, NGX_HTTP_TCE_ADMIN_RELAY_POLL);
}


static void
ngx_http_tce_admin_relay_withdrawn(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data)
{
    ngx_http_tce_admin_relay_t *w = data;

    u_char                           text[NGX_HTTP_TCE_ADMIN_TEXT_LEN], *p;
    u_char                           holder[NGX_HTTP_TCE_ADMIN_LEASE_LEN];
    redisReply                      *e;
    ngx_http_tce_admin_main_conf_t  *amcf;

    if (ngx_http_tce_admin_relay_back(w) != NGX_OK) {
        return;
    }

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements < 1
        || reply->element[0]->type != REDIS_REPLY_INTEGER)
    {
        ngx_http_tce_admin_relay_fail(w, NGX_HTTP_SERVICE_UNAVAILABLE,
            "deploy_outcome_unknown",
            "the relayed command could not be taken back from Redis: it "
            "may still be applied; GET .../deploys/current tells");
        return;
    }

    if (reply->element[0]->integer == 0) {
        amcf = ngx_http_get_module_main_conf(w->r,
                                             ngx_http_tce_admin_api_module);

        ngx_shmtx_lock(&amcf->shpool->mutex);
        ngx_memcpy(holder, amcf->sh->deploy_lease_holder, sizeof(holder));
        ngx_shmtx_unlock(&amcf->shpool->mutex);

        p = ngx_snprintf(text, sizeof(text) - 1,
                         "no node holding the fleet's deploy lease took the "
                         "command within %d ms (last holder seen: %s): not "
                         "applied; retry",
                         NGX_HTTP_TCE_ADMIN_RELAY_WAIT,
                         holder[0] ? (char *) holder : "none");
        *p = '\0';

        ngx_http_tce_admin_relay_fail(w, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "deploy_controller_unavailable",
                                      (char *) text);
        return;
    }

    e = reply->elements > 1 ? reply->element[1] : NULL;

    if (e && e->type == REDIS_REPLY_STRING && e->len) {
        ngx_http_tce_admin_relay_answer(w, e->str, e->len);
        return;
    }

    /* a holder has it: its result comes soon, or never (it died) */
    w->phase = NGX_HTTP_TCE_ADMIN_RELAY_TAKEN;
    w->deadline = ngx_current_msec + NGX_HTTP_TCE_ADMIN_RELAY_WAIT;
    ngx_add_timer(&w->ev, NGX_HTTP_TCE_ADMIN_RELAY_POLL);
}


/*
 * The holder's result: {"status": n, "deploy": {...}} or {"status": n,
 * "code": "...", "text": "..."}, answered as the holder would have.
 */
static void
ngx_http_tce_admin_relay_answer(ngx_http_tce_admin_relay_t *w,
    const char *text, size_t len)
{
    json_t                    *j, *d;
    ngx_int_t                  rc, status;
    const char                *code, *why;
    ngx_http_request_t        *r;
    ngx_http_tce_admin_ctx_t  *ctx;

    r = w->r;
    ctx = ngx_http_get_module_ctx(r, ngx_http_tce_admin_api_module);

    j = json_loadb(text, len, 0, NULL);
    status = j ? json_integer_value(json_object_get(j, "status")) : 0;
    code = j ? json_string_value(json_object_get(j, "code")) : NULL;
    why = j ? json_string_value(json_object_get(j, "text")) : NULL;
    d = j ? json_object_get(j, "deploy") : NULL;

    if (status < 200 || status > 599 || (code == NULL && d == NULL)) {
        json_decref(j);
        ngx_http_tce_admin_relay_fail(w, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "deploy_outcome_unknown",
                                      "the deploy lease's holder gave a "
                                      "result this node cannot read: GET "
                                      ".../deploys/current tells");
        return;
    }

    if (code) {
        rc = ngx_http_tce_admin_error(r, status, code, why ? why : "");

    } else {
        if (ctx) {
            ctx->gen_after = ctx->svc->generation;
            (void) ngx_http_tce_admin_audit(r, ctx, status, NULL);
        }

        rc = ngx_http_tce_admin_send(r, status, json_incref(d));
    }

    json_decref(j);

    ngx_http_tce_admin_relay_finalize(w, rc);
}


static void
ngx_http_tce_admin_relay_fail(ngx_http_tce_admin_relay_t *w,
    ngx_uint_t status, const char *code, const char *text)
{
    ngx_http_tce_admin_relay_finalize(w,
        ngx_http_tce_admin_error(w->r, status, code, text));
}


static void
ngx_http_tce_admin_relay_finalize(ngx_http_tce_admin_relay_t *w,
    ngx_int_t rc)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = w->r;
    c = r->connection;

    w->cln->handler = NULL;
    ngx_http_tce_admin_relay_free(w);

    ngx_http_finalize_request(r, rc == NGX_DONE ? NGX_OK : rc);
    ngx_http_run_posted_requests(c);
}


/* the request's pool goes: a command in flight frees w in its reply */
static void
ngx_http_tce_admin_relay_gone(void *data)
{
    ngx_http_tce_admin_relay_t *w = data;

    w->r = NULL;

    if (!w->busy) {
        ngx_http_tce_admin_relay_free(w);
    }
}


static void
ngx_http_tce_admin_relay_free(ngx_http_tce_admin_relay_t *w)
{
    if (w->ev.timer_set) {
        ngx_del_timer(&w->ev);
    }

    free(w->cmd);
    ngx_free(w);
}


void
ngx_http_tce_admin_deploy_relay_take(ngx_http_tce_admin_main_conf_t *amcf,
    const char *text, size_t len, ngx_log_t *log)
{
    char                             *out;
    json_t                           *j, *res_j;
    u_char                            key[NGX_HTTP_TCE_ADMIN_RELAY_KEY_LEN];
    u_char                           *p;
    size_t                            blen;
    ngx_uint_t                        i;
    const char                       *id, *body;
    ngx_tce_redis_main_conf_t        *rmcf;
    ngx_http_tce_admin_err_t          err;
    ngx_http_tce_admin_result_t      *slot;
    ngx_http_tce_admin_deploy_cmd_t   cmd;
    ngx_http_tce_admin_deploy_res_t   res;

    if (ngx_http_tce_admin_relay_redis(&rmcf) == NULL) {
        return;
    }

    ngx_memzero(&cmd, sizeof(ngx_http_tce_admin_deploy_cmd_t));

    j = json_loadb(text, len, 0, NULL);
    id = NULL;
    body = NULL;
    blen = 0;

    if (j == NULL
        || json_unpack(j, "{s:s, s:s%, s:s%, s:s%, s:s%, s:s%}",
                       "id", &id,
                       "service", &cmd.service.data, &cmd.service.len,
                       "cluster", &cmd.cluster.data, &cmd.cluster.len,
                       "principal", &cmd.principal.data, &cmd.principal.len,
                       "action", &cmd.action.data, &cmd.action.len,
                       "body", &body, &blen)
           != 0
        || ngx_strlen(id) >= NGX_HTTP_TCE_ADMIN_RELAY_ID_LEN)
    {
        json_decref(j);
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "tce admin: a relayed deploy command cannot be read: "
                      "dropped");
        return;
    }

    p = ngx_snprintf(key, sizeof(key) - 1, "%Vdeploy_result:%s",
                     &rmcf->prefix, id);
    *p = '\0';

    res.code = NULL;

    if (cmd.action.len == 0
        && ngx_http_tce_admin_deploy_parse(body, blen, &cmd.conf, &err) != 0)
    {
        /* the relay checked it: only a different version refuses it */
        res.status = NGX_HTTP_BAD_REQUEST;
        res.code = err.code;
        res.text = err.text;

    } else if (cmd.action.len
               && !(cmd.action.len == 5
                    && ngx_strncmp(cmd.action.data, "pause", 5) == 0)
               && !(cmd.action.len == 6
                    && ngx_strncmp(cmd.action.data, "resume", 6) == 0)
               && !(cmd.action.len == 7
                    && ngx_strncmp(cmd.action.data, "promote", 7) == 0)
               && !(cmd.action.len == 8
                    && ngx_strncmp(cmd.action.data, "rollback", 8) == 0))
    {
        res.status = NGX_HTTP_BAD_REQUEST;
        res.code = "unknown_action";
        res.text = "the relayed action is not one of pause, resume, "
                   "promote, rollback";

    } else {
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "tce admin: relayed deploy command \"%s\" applied",
                      id);
        ngx_http_tce_admin_deploy_apply(amcf, &cmd, &res, log);
    }

    if (res.code) {
        res_j = json_pack("{s:i, s:s, s:s}", "status", (int) res.status,
                          "code", res.code, "text", res.text);

    } else {
        res_j = json_pack("{s:i, s:o}", "status", (int) res.status,
                          "deploy", ngx_http_tce_admin_deploy_json(&res.copy));
    }

    json_decref(j);

    out = res_j ? json_dumps(res_j, JSON_COMPACT) : NULL;
    json_decref(res_j);

    if (out == NULL) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "tce admin: no memory for a relayed deploy "
                      "command's result");
        return;
    }

    if (res.code) {
        /* nothing changed: nothing to wait for */
        ngx_http_tce_admin_result_send(key, out, log);
        free(out);
        return;
    }

    slot = NULL;

    for (i = 0; i < NGX_HTTP_TCE_ADMIN_RELAY_PENDING; i++) {
        if (ngx_http_tce_admin_results[i].json == NULL) {
            slot = &ngx_http_tce_admin_results[i];
            break;
        }
    }

    if (slot == NULL) {
        /* more than a tick's commands waiting: this one's goes now */
        ngx_http_tce_admin_result_send(key, out, log);
        free(out);
        return;
    }

    slot->json = out;
    slot->seq = ngx_http_tce_admin_relay_pushes;
    ngx_memcpy(slot->key, key, sizeof(key));
}


ngx_uint_t
ngx_http_tce_admin_deploy_relay_push_sent(void)
{
    return ++ngx_http_tce_admin_relay_pushes;
}


void
ngx_http_tce_admin_deploy_relay_pushed(ngx_uint_t seq, ngx_uint_t ok,
    ngx_log_t *log)
{
    ngx_uint_t                    i;
    ngx_http_tce_admin_result_t  *res;

    if (!ok) {
        /* the records go again at the next tick; the results with them */
        return;
    }

    for (i = 0; i < NGX_HTTP_TCE_ADMIN_RELAY_PENDING; i++) {
        res = &ngx_http_tce_admin_results[i];

        /* applied before this write was sent: the fleet has it now */
        if (res->json && res->seq < seq) {
            ngx_http_tce_admin_result_send(res->key, res->json, log);
            free(res->json);
            res->json = NULL;
        }
    }
}


static void
ngx_http_tce_admin_result_send(u_char *key, const char *json,
    ngx_log_t *log)
{
    size_t                      argl[5];
    const char                 *argv[5];
    ngx_tce_redis_ctx_t        *rctx;
    ngx_tce_redis_main_conf_t  *rmcf;

    rctx = ngx_http_tce_admin_relay_redis(&rmcf);

    if (rctx == NULL) {
        return;
    }

    argv[0] = "SET";
    argl[0] = 3;
    argv[1] = (char *) key;
    argl[1] = ngx_strlen(key);
    argv[2] = json;
    argl[2] = ngx_strlen(json);
    argv[3] = "PX";
    argl[3] = 2;
    argv[4] = NGX_HTTP_TCE_ADMIN_RESULT_KEEP;
    argl[4] = sizeof(NGX_HTTP_TCE_ADMIN_RESULT_KEEP) - 1;

    if (ngx_tce_redis_command(&rctx->cmd, ngx_http_tce_admin_result_sent,
                              NULL, 5, argv, argl)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "tce admin: the result of a relayed deploy command "
                      "cannot be written: %s", rctx->cmd.err[0]
                                               ? (char *) rctx->cmd.err
                                               : "not connected");
    }
}


static void
ngx_http_tce_admin_result_sent(ngx_tce_redis_conn_t *rc, redisReply *reply,
    const char *err, void *data)
{
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_WARN, rc->log, 0,
                      "tce admin: the result of a relayed deploy command "
                      "was not written: %s",
                      reply ? reply->str : (err ? err : "unknown error"));
    }
}
