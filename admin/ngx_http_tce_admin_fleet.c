/*
 * The admin API's writes with tce_redis: the fleet store.  Canary
 * policies here, instance overrides in ngx_http_tce_admin_fleet_inst.c;
 * both go through ngx_http_tce_admin_fleet_send() below.
 *
 * The write is one Lua script in Redis: it checks If-Match against the
 * service's fleet revision, merges the request into the stored value
 * (so two nodes racing never lose an update), stores it, bumps the
 * revision and the fleet version, and publishes the version on
 * <prefix>events; all or nothing.  The answer comes once Redis has
 * answered: the node that took the write applies it to its own zone at
 * once, the others through their syncer (ngx_tce_redis_sync.c).
 *
 * With replicas=<n> (1 by default with Sentinel), the accepted write is
 * followed by WAIT <n> <timeout/2> on the same connection: the answer is
 * 200 only once n replicas have it, so a failover cannot lose a write
 * answered 200.  Fewer acknowledgements: 503 not_replicated, saying
 * that the master has the write (the fleet applies it) but a failover
 * now could lose it; the client reads it back before retrying.
 *
 * Redis unreachable, failing or silent for timeout=: 503 with the
 * reason; the zone is left as it is, traffic goes on with the last
 * applied policy.  The state file is not written: with tce_redis the
 * fleet is the store of canary policies.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_tce_redis.h"


/* a write in flight: outlives its request if the client goes away */
typedef struct {
    ngx_http_request_t         *r;           /* NULL: request gone */
    ngx_pool_cleanup_t         *cln;
    ngx_uint_t                  kind;        /* NGX_HTTP_TCE_ADMIN_FLEET_* */
    char                        id[NGX_TCE_ID_LEN];  /* an override's */

    /* the accepted write, kept while WAIT is answered */
    uint64_t                    rev;
    int64_t                     version;
    size_t                      len;
    char                        pol[NGX_TCE_FLEET_VALUE_MAX + 1];
} ngx_http_tce_admin_fleet_write_t;


static void ngx_http_tce_admin_fleet_reply(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data);
static ngx_int_t ngx_http_tce_admin_fleet_answer(ngx_http_request_t *r,
    redisReply *reply, const char *err, ngx_http_tce_admin_fleet_write_t *w);
static void ngx_http_tce_admin_fleet_waited(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data);
static ngx_int_t ngx_http_tce_admin_fleet_apply(ngx_http_request_t *r,
    ngx_http_tce_admin_fleet_write_t *w, ngx_uint_t acked,
    const char *err);
static void ngx_http_tce_admin_fleet_finalize(ngx_http_request_t *r,
    ngx_int_t status);
static void ngx_http_tce_admin_fleet_gone(void *data);


/*
 * KEYS: canary hash, rev hash, version.  ARGV: field, service, If-Match
 * ("" for none), "set" or "del", weight (-1: keep), fallback (-1: keep),
 * rollback (0/1), channel.  Returns {1, rev, version, policy ("" when
 * deleted)}, {0, rev} when If-Match does not match, {2, text} when the
 * stored policy cannot be read (nothing changed).
 */
static const char  ngx_http_tce_admin_fleet_script[] =
    "local rev = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')\n"
    "if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= rev then\n"
    "  return {0, rev}\n"
    "end\n"
    "local pol = ''\n"
    "if ARGV[4] == 'del' then\n"
    "  redis.call('HDEL', KEYS[1], ARGV[1])\n"
    "else\n"
    "  local w, e, f = 0, 0, true\n"
    "  local cur = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "  if cur then\n"
    "    local ok, o = pcall(cjson.decode, cur)\n"
    "    if not ok or type(o) ~= 'table'\n"
    "       or type(o.weight_bp) ~= 'number' then\n"
    "      return {2, 'the stored policy is not a policy object'}\n"
    "    end\n"
    "    w = o.weight_bp\n"
    "    if type(o.epoch) == 'number' then e = o.epoch end\n"
    "    if o.fallback == false then f = false end\n"
    "  end\n"
    "  if tonumber(ARGV[5]) >= 0 then w = tonumber(ARGV[5]) end\n"
    "  if tonumber(ARGV[6]) >= 0 then f = (ARGV[6] == '1') end\n"
    "  if ARGV[7] == '1' then w = 0; e = e + 1 end\n"
    "  pol = string.format("
    "'{\"epoch\":%d,\"fallback\":%s,\"weight_bp\":%d}',\n"
    "                      e, f and 'true' or 'false', w)\n"
    "  redis.call('HSET', KEYS[1], ARGV[1], pol)\n"
    "end\n"
    "rev = redis.call('HINCRBY', KEYS[2], ARGV[2], 1)\n"
    "local v = redis.call('INCR', KEYS[3])\n"
    "redis.call('PUBLISH', ARGV[8], tostring(v))\n"
    "return {1, rev, v, pol}\n";


ngx_int_t
ngx_http_tce_admin_fleet_canary(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, const ngx_http_tce_admin_canary_req_t *req)
{
    u_char      *p;
    ngx_str_t    field, args[4];
    ngx_uint_t   i;

    field.len = ctx->svc->name_len + 1 + ctx->cluster.len;
    field.data = ngx_pnalloc(r->pool, field.len);
    if (field.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(field.data, "%*s/%V", ctx->svc->name_len, ctx->svc->name,
                &ctx->cluster);

    ngx_str_set(&args[0], "set");

    if (req == NULL) {
        ngx_str_set(&args[0], "del");
    }

    for (i = 1; i < 4; i++) {
        args[i].data = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (args[i].data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    p = ngx_sprintf(args[1].data, "%D", req ? req->weight : -1);
    args[1].len = p - args[1].data;
    p = ngx_sprintf(args[2].data, "%d", req ? req->fallback : -1);
    args[2].len = p - args[2].data;
    p = ngx_sprintf(args[3].data, "%d", req ? req->rollback : 0);
    args[3].len = p - args[3].data;

    return ngx_http_tce_admin_fleet_send(r, ctx,
                                         NGX_HTTP_TCE_ADMIN_FLEET_CANARY,
                                         NULL,
                                         ngx_http_tce_admin_fleet_script,
                                         "canary", &field, args, 4);
}


ngx_int_t
ngx_http_tce_admin_fleet_send(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, ngx_uint_t kind, const char *id,
    const char *script, const char *hash, ngx_str_t *field, ngx_str_t *args,
    ngx_uint_t nargs)
{
    uint64_t                           rev;
    ngx_str_t                          keys[3], im, argv[10];
    ngx_uint_t                         i, n;
    ngx_table_elt_t                   *h;
    ngx_pool_cleanup_t                *cln;
    ngx_tce_redis_ctx_t               *rctx;
    ngx_tce_redis_main_conf_t         *rmcf;
    ngx_http_tce_admin_fleet_write_t  *w;

    const char                        *names[3];

    names[0] = hash;
    names[1] = "rev";
    names[2] = "version";

    rmcf = ngx_http_get_module_main_conf(r, ngx_tce_redis_module);
    rctx = rmcf->ctx;

    if (rctx == NULL) {
        return ngx_http_tce_admin_fleet_unavailable(r, "not started");
    }

    /* no If-Match: an empty ARGV */
    ngx_str_set(&im, "");

    h = r->headers_in.if_match;

    if (h) {
        switch (ngx_tce_fleet_if_match((char *) h->value.data, h->value.len,
                                       &rev))
        {
        case 1:
            im.data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
            if (im.data == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            im.len = ngx_sprintf(im.data, "%uL", rev) - im.data;
            break;

        case 0:
            break;

        default:
            return ngx_http_tce_admin_error(r, NGX_HTTP_PRECONDITION_FAILED,
                       "precondition_failed",
                       "If-Match is not an ETag of this API (\"<n>\")");
        }
    }

    for (i = 0; i < 3; i++) {
        keys[i].len = rmcf->prefix.len + ngx_strlen(names[i]);
        keys[i].data = ngx_pnalloc(r->pool, keys[i].len);
        if (keys[i].data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_sprintf(keys[i].data, "%V%s", &rmcf->prefix, names[i]);
    }

    /* ARGV: field, service, If-Match, up to 6 of the script's, channel */
    n = 0;
    argv[n++] = *field;
    argv[n].data = ctx->svc->name;
    argv[n++].len = ctx->svc->name_len;
    argv[n++] = im;

    for (i = 0; i < nargs && n < 9; i++) {
        argv[n++] = args[i];
    }

    argv[n++] = rmcf->channel;

    w = ngx_alloc(sizeof(ngx_http_tce_admin_fleet_write_t),
                  r->connection->log);
    if (w == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ngx_free(w);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    w->r = r;
    w->cln = cln;
    w->kind = kind;
    w->id[0] = '\0';

    if (id) {
        (void) ngx_cpystrn((u_char *) w->id, (u_char *) id, NGX_TCE_ID_LEN);
    }

    if (ngx_tce_redis_eval(&rctx->cmd, ngx_http_tce_admin_fleet_reply, w,
                           script, keys, 3, argv, n)
        != NGX_OK)
    {
        ngx_free(w);
        return ngx_http_tce_admin_fleet_unavailable(r,
                                                (char *) rctx->cmd.err);
    }

    cln->handler = ngx_http_tce_admin_fleet_gone;
    cln->data = w;

    /* answered from the reply's handler */
    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_tce_admin_fleet_gone(void *data)
{
    ngx_http_tce_admin_fleet_write_t *w = data;

    w->r = NULL;
}


static void
ngx_http_tce_admin_fleet_reply(ngx_tce_redis_conn_t *rc, redisReply *reply,
    const char *err, void *data)
{
    ngx_http_tce_admin_fleet_write_t *w = data;

    char                        ms[NGX_INT_T_LEN], n[NGX_INT_T_LEN];
    size_t                      len[3];
    ngx_int_t                   status;
    const char                 *argv[3];
    ngx_http_request_t         *r;
    ngx_tce_redis_main_conf_t  *rmcf;

    r = w->r;

    if (r == NULL) {
        ngx_free(w);
        return;
    }

    status = ngx_http_tce_admin_fleet_answer(r, reply, err, w);

    if (status != NGX_AGAIN) {
        w->cln->handler = NULL;
        ngx_free(w);
        ngx_http_tce_admin_fleet_finalize(r, status);
        return;
    }

    /* accepted by the master: WAIT until a replica has it */
    rmcf = ngx_http_get_module_main_conf(r, ngx_tce_redis_module);

    argv[0] = "WAIT";
    len[0] = 4;
    argv[1] = n;
    len[1] = ngx_sprintf((u_char *) n, "%i", rmcf->replicas) - (u_char *) n;
    argv[2] = ms;
    len[2] = ngx_sprintf((u_char *) ms, "%M",
                         ngx_max(rmcf->timeout / 2, 1))
             - (u_char *) ms;

    if (ngx_tce_redis_command_same(rc, ngx_http_tce_admin_fleet_waited, w,
                                   3, argv, len)
        == NGX_OK)
    {
        return;
    }

    w->cln->handler = NULL;
    status = ngx_http_tce_admin_fleet_apply(r, w, 0, "WAIT cannot be sent");
    ngx_free(w);
    ngx_http_tce_admin_fleet_finalize(r, status);
}


/* the answer to WAIT: how many replicas have the write */
static void
ngx_http_tce_admin_fleet_waited(ngx_tce_redis_conn_t *rc, redisReply *reply,
    const char *err, void *data)
{
    ngx_http_tce_admin_fleet_write_t *w = data;

    ngx_int_t            status;
    ngx_uint_t           acked;
    ngx_http_request_t  *r;

    r = w->r;

    if (r == NULL) {
        ngx_free(w);
        return;
    }

    w->cln->handler = NULL;

    acked = 0;

    if (reply == NULL) {
        /* err says why */

    } else if (reply->type == REDIS_REPLY_INTEGER && reply->integer >= 0) {
        acked = (ngx_uint_t) reply->integer;
        err = NULL;

    } else {
        err = reply->type == REDIS_REPLY_ERROR ? reply->str
                                               : "unexpected answer to WAIT";
    }

    status = ngx_http_tce_admin_fleet_apply(r, w, acked, err);
    ngx_free(w);
    ngx_http_tce_admin_fleet_finalize(r, status);
}


static void
ngx_http_tce_admin_fleet_finalize(ngx_http_request_t *r, ngx_int_t status)
{
    ngx_connection_t  *c;

    c = r->connection;

    ngx_http_finalize_request(r, status == NGX_DONE ? NGX_OK : status);
    ngx_http_run_posted_requests(c);
}


/*
 * The script's answer: an HTTP status (answered), or NGX_AGAIN when the
 * write was accepted and WAIT is to follow (kept in w).
 */
static ngx_int_t
ngx_http_tce_admin_fleet_answer(ngx_http_request_t *r, redisReply *reply,
    const char *err, ngx_http_tce_admin_fleet_write_t *w)
{
    u_char                      text[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    redisReply                 *e;
    ngx_tce_redis_sh_t         *sh;
    ngx_tce_main_conf_t        *tmcf;
    ngx_tce_canary_policy_t     pol;
    ngx_tce_fleet_override_t    ov;
    ngx_tce_redis_main_conf_t  *rmcf;

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);
    rmcf = ngx_http_get_module_main_conf(r, ngx_tce_redis_module);
    sh = ngx_tce_redis_sh(tmcf->zone);

    if (reply == NULL) {
        return ngx_http_tce_admin_fleet_unavailable(r, err);
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tce admin: the fleet write failed in Redis: %*s",
                      (size_t) ngx_min(reply->len, 200), reply->str);

        ngx_snprintf(text, sizeof(text) - 1, "Redis: %*s%Z",
                     (size_t) ngx_min(reply->len, 120), reply->str);

        return ngx_http_tce_admin_fleet_unavailable(r, (char *) text);
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2
        || reply->element[0]->type != REDIS_REPLY_INTEGER)
    {
        goto bad;
    }

    e = reply->element[1];

    switch (reply->element[0]->integer) {

    case 0:
        if (e->type != REDIS_REPLY_INTEGER || e->integer < 0) {
            goto bad;
        }

        (void) ngx_atomic_fetch_add(&sh->conflicts, 1);

        ngx_snprintf(text, sizeof(text) - 1,
                     "If-Match does not match the service's fleet "
                     "revision (ETag \"%L\"): read it again and retry%Z",
                     e->integer);

        if (ngx_http_tce_admin_etag(r, (ngx_atomic_uint_t) e->integer)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_tce_admin_error(r, NGX_HTTP_PRECONDITION_FAILED,
                                        "precondition_failed",
                                        (char *) text);

    case 1:
        break;

    case 2:
        if (w->kind == NGX_HTTP_TCE_ADMIN_FLEET_OVERRIDE) {
            return ngx_http_tce_admin_error(r, NGX_HTTP_CONFLICT,
                       "fleet_override_invalid",
                       "the override stored in Redis for this instance is "
                       "not an override object: fix or delete it there; "
                       "nothing changed");
        }

        return ngx_http_tce_admin_error(r, NGX_HTTP_CONFLICT,
                   "fleet_policy_invalid",
                   "the policy stored in Redis for this cluster is not a "
                   "policy object: fix or delete it there; nothing "
                   "changed");

    default:
        goto bad;
    }

    if (reply->elements != 4
        || e->type != REDIS_REPLY_INTEGER || e->integer < 1
        || reply->element[2]->type != REDIS_REPLY_INTEGER
        || reply->element[3]->type != REDIS_REPLY_STRING
        || reply->element[3]->len > NGX_TCE_FLEET_VALUE_MAX)
    {
        goto bad;
    }

    w->rev = (uint64_t) e->integer;
    w->version = reply->element[2]->integer;
    w->len = reply->element[3]->len;
    ngx_memcpy(w->pol, reply->element[3]->str, w->len);
    w->pol[w->len] = '\0';

    if (w->len
        && (w->kind == NGX_HTTP_TCE_ADMIN_FLEET_CANARY
            ? ngx_tce_canary_parse_json(w->pol, &pol, NULL, 0)
            : ngx_tce_fleet_override_parse(w->pol, w->len, &ov, NULL, 0))
           != 0)
    {
        goto bad;
    }

    (void) ngx_atomic_fetch_add(&sh->writes, 1);

    if (rmcf->replicas > 0) {
        return NGX_AGAIN;
    }

    return ngx_http_tce_admin_fleet_apply(r, w, 0, NULL);

bad:

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "tce admin: unexpected answer of Redis to a fleet write "
                  "(reply type %d)", reply->type);

    return ngx_http_tce_admin_error(r, NGX_HTTP_BAD_GATEWAY, "redis_error",
                                    "unexpected answer of Redis to the "
                                    "write: read the policy back before "
                                    "retrying");
}


/*
 * The write is in Redis: this node routes with it now (the others
 * through their syncer), the audit line, and the answer: 200, or 503
 * not_replicated when fewer than replicas= acknowledged it (acked, or
 * err when WAIT itself failed).
 */
static ngx_int_t
ngx_http_tce_admin_fleet_apply(ngx_http_request_t *r,
    ngx_http_tce_admin_fleet_write_t *w, ngx_uint_t acked, const char *err)
{
    u_char                      text[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    ngx_uint_t                  ok, level;
    ngx_tce_redis_sh_t         *sh;
    ngx_tce_main_conf_t        *tmcf;
    ngx_tce_canary_policy_t     pol;
    ngx_http_tce_admin_ctx_t   *ctx;
    ngx_tce_redis_main_conf_t  *rmcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_tce_admin_api_module);
    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);
    rmcf = ngx_http_get_module_main_conf(r, ngx_tce_redis_module);
    sh = ngx_tce_redis_sh(tmcf->zone);

    if (w->kind == NGX_HTTP_TCE_ADMIN_FLEET_OVERRIDE) {
        if (ngx_http_tce_admin_fleet_inst_apply(r, ctx, w->id, w->pol,
                                                w->len)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "tce admin: fleet override stored, but this "
                          "node's zone is full: it applies at the next "
                          "resync");
        }

    } else if (w->len == 0) {
        (void) ngx_tce_zone_policy_set(tmcf->zone, ctx->svc, &ctx->cluster,
                                       NULL, 0, r->connection->log);

    } else if (ngx_tce_canary_parse_json(w->pol, &pol, NULL, 0) != 0
               || ngx_tce_zone_policy_set(tmcf->zone, ctx->svc,
                                          &ctx->cluster, &pol,
                                          NGX_TCE_POLICY_FLEET,
                                          r->connection->log)
                  == NGX_ERROR)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tce admin: fleet policy stored, but this node's "
                      "zone is full: it applies at the next resync");
    }

    /* the audit line: the fleet revision is the ETag here */
    ctx->gen_before = (ngx_atomic_uint_t) ctx->svc->fleet_rev;
    ctx->gen_after = (ngx_atomic_uint_t) w->rev;

    ngx_tce_policy_fleet_rev(tmcf->zone, ctx->svc, w->rev);

    ok = (rmcf->replicas == 0 || acked >= (ngx_uint_t) rmcf->replicas);
    level = ok ? NGX_LOG_NOTICE : NGX_LOG_WARN;

    (void) ngx_http_tce_admin_audit(r, ctx, ok ? NGX_HTTP_OK
                                               : NGX_HTTP_SERVICE_UNAVAILABLE,
                                    NULL);

    ngx_log_error(level, r->connection->log, 0,
                  "tce admin: %V %s%s%s of \"%s\" cluster \"%V\" by \"%V\" "
                  "(fleet version %L, revision %uL)%s",
                  &r->method_name, w->id[0] ? "instance \"" : "canary",
                  w->id, w->id[0] ? "\"" : "", ctx->svc->name,
                  &ctx->cluster, &ctx->principal, w->version, w->rev,
                  ok ? "" : ": not acknowledged by the replicas");

    if (ok) {
        return (w->kind == NGX_HTTP_TCE_ADMIN_FLEET_OVERRIDE)
               ? ngx_http_tce_admin_fleet_inst_show(r, ctx, w->id)
               : ngx_http_tce_admin_canary_show(r, ctx, NGX_HTTP_OK);
    }

    (void) ngx_atomic_fetch_add(&sh->not_replicated, 1);

    if (err) {
        ngx_snprintf(text, sizeof(text) - 1,
                     "the Redis master took the write (fleet revision "
                     "%uL) but whether a replica has it is unknown: %s; a "
                     "failover could lose it: read it back before "
                     "retrying%Z", w->rev, err);

    } else {
        ngx_snprintf(text, sizeof(text) - 1,
                     "the Redis master took the write (fleet revision "
                     "%uL) but %ui of %i replicas acknowledged it within "
                     "%M ms; a failover could lose it: read it back "
                     "before retrying%Z", w->rev, acked, rmcf->replicas,
                     ngx_max(rmcf->timeout / 2, 1));
    }

    return ngx_http_tce_admin_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "not_replicated", (char *) text);
}


ngx_int_t
ngx_http_tce_admin_fleet_unavailable(ngx_http_request_t *r, const char *err)
{
    u_char               text[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    ngx_tce_main_conf_t *tmcf;
    ngx_tce_redis_sh_t  *sh;

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);
    sh = ngx_tce_redis_sh(tmcf->zone);

    if (sh) {
        (void) ngx_atomic_fetch_add(&sh->write_errors, 1);
    }

    ngx_snprintf(text, sizeof(text) - 1,
                 "the fleet store (Redis) is unavailable: %s; the write "
                 "was not confirmed (traffic keeps the last applied "
                 "policy)%Z", err ? err : "unknown error");

    return ngx_http_tce_admin_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "redis_unavailable", (char *) text);
}
