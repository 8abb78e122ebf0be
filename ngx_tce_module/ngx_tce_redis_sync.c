/*
 * The fleet's syncer: one worker per nginx instance, elected like the
 * Consul watcher (two words in the zone: owner pid and heartbeat), holds
 * a subscriber on <prefix>events and a command connection.  It applies
 * the fleet's snapshot to the zone:
 *
 *   - when the subscription is (re)established: pub/sub messages are
 *     not queued for a disconnected subscriber, so a full read follows
 *     every reconnection, and it is applied whole (forced): Redis may
 *     be another master now, whose history parted from the one this
 *     node followed (a write the old master took but no replica had),
 *     with the same fleet version and revisions that do not tell;
 *   - when a message announces a version above the applied one;
 *   - when the fleet version, compared every resync=, differs from the
 *     applied one (a missed message);
 *   - when Redis's replication id (INFO replication, master_replid,
 *     asked before every snapshot read and every version check) is not
 *     the one read before: the data may have been replaced under open
 *     connections (this Redis made a replica of another master, which
 *     sends it its data whole; promoted), with a fleet version that
 *     does not tell; the snapshot is then applied whole too.  A Redis
 *     that refuses INFO (ACL) leaves the version alone to tell.
 *
 * Every resync= the subscriber is PINGed too: a silent one (a half-open
 * connection) is closed after timeout= and made again.
 *
 * A snapshot is one read (a Lua script: version and both hashes at
 * once), checked whole (ngx_tce_fleet.c) before anything is applied,
 * then written to the cache file on the thread pool.  Every worker
 * (the syncer too) keeps a command connection for the admin API's
 * writes (ngx_http_tce_admin_fleet.c), opened on demand.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_tce_redis.h"
#include "ngx_tce_persist.h"
#include "ngx_tce_text.h"


static void ngx_tce_redis_tick(ngx_event_t *ev);
static void ngx_tce_redis_start(ngx_tce_redis_ctx_t *ctx);
static void ngx_tce_redis_stop(ngx_tce_redis_ctx_t *ctx);
static void ngx_tce_redis_state(ngx_tce_redis_ctx_t *ctx);
static void ngx_tce_redis_sub_ready(ngx_tce_redis_conn_t *rc);
static void ngx_tce_redis_cmd_ready(ngx_tce_redis_conn_t *rc);
static void ngx_tce_redis_down(ngx_tce_redis_conn_t *rc, const char *err);
static ngx_int_t ngx_tce_redis_push(ngx_tce_redis_conn_t *rc,
    redisReply *reply);
static void ngx_tce_redis_check(ngx_tce_redis_ctx_t *ctx);
static void ngx_tce_redis_pong(ngx_tce_redis_conn_t *rc, redisReply *reply,
    const char *err, void *data);
static void ngx_tce_redis_check_reply(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data);
static ngx_int_t ngx_tce_redis_ask_replid(ngx_tce_redis_ctx_t *ctx);
static void ngx_tce_redis_replid(ngx_tce_redis_conn_t *rc, redisReply *reply,
    const char *err, void *data);
static void ngx_tce_redis_pull(ngx_tce_redis_ctx_t *ctx);
static void ngx_tce_redis_pull_reply(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data);
static ngx_int_t ngx_tce_redis_snapshot(redisReply *reply,
    ngx_tce_fleet_t *f, char *err, size_t errlen);
static void ngx_tce_redis_error(ngx_tce_redis_ctx_t *ctx, const char *err);
static ngx_int_t ngx_tce_redis_key(ngx_tce_redis_ctx_t *ctx,
    const char *name, ngx_str_t *key);
static ngx_int_t ngx_tce_redis_apply_set(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, const ngx_tce_fleet_t *f, ngx_log_t *log);


/* one consistent read: version, policies, revisions, overrides, sets */
static const char  ngx_tce_redis_read_script[] =
    "return {redis.call('GET', KEYS[1]) or '0', "
    "redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]), "
    "redis.call('HGETALL', KEYS[4]), redis.call('HGETALL', KEYS[5])}";


ngx_tce_redis_sh_t *
ngx_tce_redis_sh(ngx_tce_zone_t *zone)
{
    return zone->sh->redis;
}


ngx_int_t
ngx_tce_redis_sync_init(ngx_cycle_t *cycle, ngx_tce_redis_main_conf_t *rmcf)
{
    ngx_tce_redis_ctx_t  *ctx;

    if (ngx_tce_redis_sh(rmcf->zone) == NULL) {
        return NGX_OK;
    }

    ctx = ngx_pcalloc(cycle->pool, sizeof(ngx_tce_redis_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->rmcf = rmcf;
    ctx->sh = ngx_tce_redis_sh(rmcf->zone);
    ctx->log = cycle->log;

    ngx_tce_redis_conn_init(&ctx->cmd, rmcf, "command", cycle->log);
    ctx->cmd.data = ctx;
    ctx->cmd.ready = ngx_tce_redis_cmd_ready;
    ctx->cmd.down = ngx_tce_redis_down;
    ctx->cmd.idle_time = NGX_TCE_REDIS_IDLE;

    /*
     * an admin request waiting for its write holds no timer but this
     * one, which runs only while an answer is owed: a worker shutting
     * down waits for it (timeout= at most), and answers the request
     * before it exits, not from its exit with the client's connection
     * left open
     */
    ctx->cmd.timer.cancelable = 0;

    ngx_tce_redis_conn_init(&ctx->sub, rmcf, "subscriber", cycle->log);
    ctx->sub.data = ctx;
    ctx->sub.subscriber = 1;
    ctx->sub.ready = ngx_tce_redis_sub_ready;
    ctx->sub.down = ngx_tce_redis_down;
    ctx->sub.push = ngx_tce_redis_push;

    ngx_tce_redis_sentinel_init(ctx);

    ctx->tick.handler = ngx_tce_redis_tick;
    ctx->tick.data = ctx;
    ctx->tick.log = cycle->log;
    ctx->tick.cancelable = 1;

    rmcf->ctx = ctx;

    /* the first worker to tick wins: at once, not after a full period */
    ngx_add_timer(&ctx->tick, 1);

    return NGX_OK;
}


void
ngx_tce_redis_sync_exit(ngx_tce_redis_main_conf_t *rmcf)
{
    ngx_tce_redis_ctx_t  *ctx;

    ctx = rmcf->ctx;

    if (ctx == NULL) {
        return;
    }

    ngx_tce_redis_stop(ctx);
    ngx_tce_redis_shutdown(&ctx->cmd);

    if (ctx->tick.timer_set) {
        ngx_del_timer(&ctx->tick);
    }

    if (ctx->cache_text) {
        free(ctx->cache_text);
        ctx->cache_text = NULL;
    }

    rmcf->ctx = NULL;
}


static void
ngx_tce_redis_tick(ngx_event_t *ev)
{
    ngx_tce_redis_ctx_t *ctx = ev->data;

    ngx_pid_t            owner;
    ngx_msec_t           now;
    ngx_msec_int_t       age;
    ngx_tce_redis_sh_t  *sh;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        ngx_tce_redis_sync_exit(ctx->rmcf);
        return;
    }

    sh = ctx->sh;
    owner = (ngx_pid_t) sh->owner;
    now = ngx_current_msec;

    if (owner == ngx_pid) {
        sh->heartbeat = now;

        if (!ctx->owner) {
            ngx_tce_redis_start(ctx);
        }

        if ((ngx_msec_int_t) (now - ctx->last_check)
            >= (ngx_msec_int_t) ctx->rmcf->resync)
        {
            ngx_tce_redis_check(ctx);
        }

        goto next;
    }

    if (ctx->owner) {
        ngx_log_error(NGX_LOG_WARN, ctx->log, 0,
                      "tce redis: worker %P took the fleet sync over, "
                      "this one stops", owner);
        ngx_tce_redis_stop(ctx);
    }

    age = (ngx_msec_int_t) (now - sh->heartbeat);

    if (owner == 0
        || age > NGX_TCE_REDIS_STALE
        || (kill(owner, 0) == -1 && ngx_errno == NGX_ESRCH))
    {
        if (ngx_atomic_cmp_set(&sh->owner, (ngx_atomic_uint_t) owner,
                               (ngx_atomic_uint_t) ngx_pid))
        {
            sh->heartbeat = now;

            ngx_log_error(NGX_LOG_NOTICE, ctx->log, 0,
                          "tce redis: worker %P syncs the fleet policy "
                          "(previous: %P)", ngx_pid, owner);

            ngx_tce_redis_start(ctx);
        }
    }

next:

    ngx_add_timer(&ctx->tick, NGX_TCE_REDIS_TICK);
}


static void
ngx_tce_redis_start(ngx_tce_redis_ctx_t *ctx)
{
    u_char             host[NGX_TCE_REDIS_HOST_LEN];
    in_port_t          port;
    ngx_atomic_uint_t  epoch;

    ctx->owner = 1;
    ctx->last_check = ngx_current_msec;
    ctx->replid_len = 0;

    ctx->cmd.reconnect = 1;
    ctx->cmd.idle_time = 0;
    ctx->sub.reconnect = 1;

    if (ctx->cmd.idle.timer_set) {
        ngx_del_timer(&ctx->cmd.idle);
    }

    if (ctx->rmcf->master_name.len) {
        /* asks for the master; its answer connects the two others */
        ngx_tce_redis_sentinel_init(ctx);
        ctx->sentinel.reconnect = 1;
        (void) ngx_tce_redis_connect(&ctx->sentinel);

        if (ngx_tce_redis_master(ctx->rmcf, host, &port, &epoch)
            != NGX_OK)
        {
            ngx_tce_redis_state(ctx);
            return;
        }
    }

    (void) ngx_tce_redis_connect(&ctx->cmd);
    (void) ngx_tce_redis_connect(&ctx->sub);

    ngx_tce_redis_state(ctx);
}


/* gives up the syncer's part; the command connection stays for writes */
static void
ngx_tce_redis_stop(ngx_tce_redis_ctx_t *ctx)
{
    if (!ctx->owner) {
        return;
    }

    ctx->owner = 0;

    ngx_tce_redis_shutdown(&ctx->sub);
    ctx->sub.ready = ngx_tce_redis_sub_ready;
    ctx->sub.down = ngx_tce_redis_down;

    ngx_tce_redis_shutdown(&ctx->sentinel);

    ctx->cmd.reconnect = 0;
    ctx->cmd.idle_time = NGX_TCE_REDIS_IDLE;

    if (ctx->cmd.retry.timer_set) {
        ngx_del_timer(&ctx->cmd.retry);
    }

    (void) ngx_atomic_cmp_set(&ctx->sh->owner, (ngx_atomic_uint_t) ngx_pid,
                              0);
}


/* the syncer's view: up when both connections are */
static void
ngx_tce_redis_state(ngx_tce_redis_ctx_t *ctx)
{
    ngx_uint_t  state;

    if (!ctx->owner) {
        return;
    }

    if (ctx->sub.state == NGX_TCE_REDIS_UP
        && ctx->cmd.state == NGX_TCE_REDIS_UP)
    {
        state = NGX_TCE_REDIS_UP;

    } else if (ctx->sub.state == NGX_TCE_REDIS_DOWN
               && ctx->cmd.state == NGX_TCE_REDIS_DOWN)
    {
        state = NGX_TCE_REDIS_DOWN;

    } else {
        state = NGX_TCE_REDIS_CONNECTING;
    }

    if (state == NGX_TCE_REDIS_UP && ctx->sh->state != NGX_TCE_REDIS_UP) {
        ctx->sh->up_since = ngx_time();

        ngx_log_error(NGX_LOG_NOTICE, ctx->log, 0,
                      "tce redis: connected to %s", ctx->cmd.target);
    }

    ctx->sh->state = state;
}


static void
ngx_tce_redis_sub_ready(ngx_tce_redis_conn_t *rc)
{
    ngx_tce_redis_ctx_t *ctx = rc->data;

    ngx_tce_redis_state(ctx);

    /* messages sent while we were away are lost: read everything */
    ctx->whole = 1;
    ngx_tce_redis_pull(ctx);
}


static void
ngx_tce_redis_cmd_ready(ngx_tce_redis_conn_t *rc)
{
    ngx_tce_redis_ctx_t *ctx = rc->data;

    ngx_tce_redis_state(ctx);

    if (ctx->owner && ctx->again && ctx->sub.state == NGX_TCE_REDIS_UP) {
        ngx_tce_redis_pull(ctx);
    }
}


static void
ngx_tce_redis_down(ngx_tce_redis_conn_t *rc, const char *err)
{
    ngx_tce_redis_ctx_t *ctx = rc->data;

    if (rc->quiet) {
        /* routine (the master moved, nginx closes): not an error */
        if (ctx->owner && rc == &ctx->cmd) {
            ctx->pulling = 0;
            ctx->checking = 0;
            ctx->again = 1;
        }

        ngx_tce_redis_state(ctx);
        return;
    }

    if (!ctx->owner) {
        if (rc == &ctx->cmd) {
            ngx_tce_redis_error(ctx, err);
        }

        return;
    }

    ngx_tce_redis_error(ctx, err);

    if (rc == &ctx->cmd) {
        ctx->pulling = 0;
        ctx->checking = 0;

        /* the subscriber may be fine: pull once the command side is back */
        ctx->again = 1;
    }

    ngx_tce_redis_state(ctx);
}


static void
ngx_tce_redis_error(ngx_tce_redis_ctx_t *ctx, const char *err)
{
    ngx_tce_redis_sh_t  *sh;

    sh = ctx->sh;

    (void) ngx_atomic_fetch_add(&sh->errors, 1);
    sh->last_error_time = ngx_time();

    /* one writer at a time in practice; a torn text is still a text */
    ngx_cpystrn(sh->last_error, (u_char *) err, sizeof(sh->last_error));
}


/* ["message", <channel>, <version>] */
static ngx_int_t
ngx_tce_redis_push(ngx_tce_redis_conn_t *rc, redisReply *reply)
{
    ngx_tce_redis_ctx_t *ctx = rc->data;

    uint64_t     version;
    redisReply  *kind, *payload;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
        return NGX_ERROR;
    }

    kind = reply->element[0];
    payload = reply->element[2];

    if (kind->type != REDIS_REPLY_STRING || kind->len != 7
        || ngx_strncmp(kind->str, "message", 7) != 0
        || reply->element[1]->type != REDIS_REPLY_STRING
        || payload->type != REDIS_REPLY_STRING)
    {
        return NGX_ERROR;
    }

    if (ngx_tce_fleet_uint(payload->str, payload->len, &version) != 0) {
        ngx_log_error(NGX_LOG_WARN, ctx->log, 0,
                      "tce redis: a message on \"%V\" is not a version: "
                      "resyncing", &rc->rmcf->channel);
        version = (uint64_t) -1;
    }

    (void) ngx_atomic_fetch_add(&ctx->sh->messages, 1);

    if (version != ctx->sh->version) {
        if (version != (uint64_t) -1 && version > ctx->sh->seen) {
            ctx->sh->seen = version;
        }

        ngx_tce_redis_pull(ctx);
    }

    return NGX_OK;
}


/* every resync=: the fleet version against the applied one */
static void
ngx_tce_redis_check(ngx_tce_redis_ctx_t *ctx)
{
    size_t       len[2];
    ngx_str_t    key;
    const char  *argv[2];

    ctx->last_check = ngx_current_msec;

    /* the subscribers' liveness: a PING answered within timeout= */
    argv[0] = "PING";
    len[0] = 4;

    if (ctx->sub.state == NGX_TCE_REDIS_UP && ctx->sub.npending == 0) {
        (void) ngx_tce_redis_command(&ctx->sub, ngx_tce_redis_pong, ctx, 1,
                                     argv, len);
    }

    if (ctx->rmcf->master_name.len
        && ctx->sentinel.state == NGX_TCE_REDIS_UP)
    {
        if (ctx->sub.state == NGX_TCE_REDIS_UP
            && ctx->cmd.state == NGX_TCE_REDIS_UP)
        {
            if (ctx->sentinel.npending == 0) {
                (void) ngx_tce_redis_command(&ctx->sentinel,
                                             ngx_tce_redis_pong, ctx, 1,
                                             argv, len);
            }

        } else {
            /* the master is unreachable: ask again, the next sentinel */
            ctx->sentinel.quiet = 1;
            ngx_tce_redis_close(&ctx->sentinel, "asking Sentinel again");
            (void) ngx_tce_redis_connect(&ctx->sentinel);
        }
    }

    if (ctx->sub.state != NGX_TCE_REDIS_UP) {
        return;
    }

    if (ctx->checking || ctx->pulling
        || ngx_tce_redis_key(ctx, "version", &key) != NGX_OK)
    {
        return;
    }

    (void) ngx_tce_redis_ask_replid(ctx);

    argv[0] = "GET";
    len[0] = 3;
    argv[1] = (char *) key.data;
    len[1] = key.len;

    if (ngx_tce_redis_command(&ctx->cmd, ngx_tce_redis_check_reply, ctx, 2,
                              argv, len)
        == NGX_OK)
    {
        ctx->checking = 1;
    }

    ngx_free(key.data);
}


/* INFO replication on the command connection, before what follows */
static ngx_int_t
ngx_tce_redis_ask_replid(ngx_tce_redis_ctx_t *ctx)
{
    size_t       len[2];
    const char  *argv[2];

    argv[0] = "INFO";
    len[0] = 4;
    argv[1] = "replication";
    len[1] = 11;

    return ngx_tce_redis_command(&ctx->cmd, ngx_tce_redis_replid, ctx, 2,
                                 argv, len);
}


/*
 * master_replid in INFO's answer: another one than the one read before,
 * and the next snapshot is applied whole
 */
static void
ngx_tce_redis_replid(ngx_tce_redis_conn_t *rc, redisReply *reply,
    const char *err, void *data)
{
    ngx_tce_redis_ctx_t *ctx = data;

    size_t   n;
    u_char  *p, *last, *id;

    if (reply == NULL || !ctx->owner || reply->type != REDIS_REPLY_STRING) {
        return;
    }

    p = (u_char *) reply->str;
    last = p + reply->len;

    p = ngx_strnstr(p, "master_replid:", reply->len);
    if (p == NULL) {
        return;
    }

    id = p + sizeof("master_replid:") - 1;

    for (p = id; p < last && *p != CR && *p != LF; p++) {
        /* void */
    }

    n = p - id;

    if (n == 0 || n > NGX_TCE_REDIS_REPLID_LEN) {
        return;
    }

    if (ctx->replid_len
        && (n != ctx->replid_len || ngx_memcmp(id, ctx->replid, n) != 0))
    {
        ngx_log_error(NGX_LOG_NOTICE, ctx->log, 0,
                      "tce redis: the replication id of %s changed from "
                      "%*s to %*s (its data may have been replaced): the "
                      "fleet policy is read again whole", rc->target,
                      ctx->replid_len, ctx->replid, n, id);

        ctx->whole = 1;
    }

    ngx_memcpy(ctx->replid, id, n);
    ctx->replid_len = n;
}


/* subscribed, Redis answers a PING with ["pong", ""] */
static void
ngx_tce_redis_pong(ngx_tce_redis_conn_t *rc, redisReply *reply,
    const char *err, void *data)
{
    if (reply == NULL) {
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[0]->len != 4
        || ngx_strncasecmp((u_char *) reply->element[0]->str,
                           (u_char *) "pong", 4) != 0)
    {
        ngx_tce_redis_close(rc, "unexpected answer to PING on the "
                                "subscription");
    }
}


static void
ngx_tce_redis_check_reply(ngx_tce_redis_conn_t *rc, redisReply *reply,
    const char *err, void *data)
{
    ngx_tce_redis_ctx_t *ctx = data;

    uint64_t  version;

    ctx->checking = 0;

    if (reply == NULL || !ctx->owner) {
        return;
    }

    if (reply->type == REDIS_REPLY_NIL) {
        version = 0;

    } else if (reply->type != REDIS_REPLY_STRING
               || ngx_tce_fleet_uint(reply->str, reply->len, &version) != 0)
    {
        ngx_tce_redis_error(ctx, "the fleet version is not a number");
        ngx_tce_redis_pull(ctx);
        return;
    }

    if (version > ctx->sh->seen) {
        ctx->sh->seen = version;
    }

    if (version != ctx->sh->version || ctx->again || ctx->whole) {
        ngx_tce_redis_pull(ctx);
    }
}


static void
ngx_tce_redis_pull(ngx_tce_redis_ctx_t *ctx)
{
    ngx_str_t   keys[5];
    ngx_uint_t  i;

    if (!ctx->owner) {
        return;
    }

    if (ctx->pulling) {
        ctx->again = 1;
        return;
    }

    ctx->again = 0;

    ngx_memzero(keys, sizeof(keys));

    if (ngx_tce_redis_key(ctx, "version", &keys[0]) != NGX_OK
        || ngx_tce_redis_key(ctx, "canary", &keys[1]) != NGX_OK
        || ngx_tce_redis_key(ctx, "rev", &keys[2]) != NGX_OK
        || ngx_tce_redis_key(ctx, "override", &keys[3]) != NGX_OK
        || ngx_tce_redis_key(ctx, "inst", &keys[4]) != NGX_OK)
    {
        goto done;
    }

    /* the replication id first: a change after it shows at the next */
    (void) ngx_tce_redis_ask_replid(ctx);

    if (ngx_tce_redis_eval(&ctx->cmd, ngx_tce_redis_pull_reply, ctx,
                           ngx_tce_redis_read_script, keys, 5, NULL, 0)
        == NGX_OK)
    {
        ctx->pulling = 1;

    } else {
        ctx->again = 1;     /* the next check or reconnection pulls */
    }

done:

    for (i = 0; i < 5; i++) {
        if (keys[i].data) {
            ngx_free(keys[i].data);
        }
    }
}


static void
ngx_tce_redis_pull_reply(ngx_tce_redis_conn_t *rc, redisReply *reply,
    const char *err, void *data)
{
    ngx_tce_redis_ctx_t *ctx = data;

    char                 text[NGX_TCE_REDIS_ERR_LEN], why[128];
    ngx_uint_t           back, force;
    ngx_tce_fleet_t      f;
    ngx_tce_redis_sh_t  *sh;

    ctx->pulling = 0;

    if (reply == NULL || !ctx->owner) {
        return;
    }

    sh = ctx->sh;

    if (ngx_tce_redis_snapshot(reply, &f, why, sizeof(why)) != NGX_OK) {
        ngx_snprintf((u_char *) text, sizeof(text) - 1,
                     "fleet snapshot refused, nothing applied: %s%Z", why);
        ngx_log_error(NGX_LOG_ERR, ctx->log, 0, "tce redis: %s", text);

        (void) ngx_atomic_fetch_add(&sh->rejected, 1);
        ngx_tce_redis_error(ctx, text);
        return;
    }

    /*
     * a version that went back: Redis was emptied or replaced; the first
     * read after a reconnection: maybe replaced, with a version that
     * does not tell (a failover to a replica that missed a write of this
     * node, then took as many other writes)
     */
    back = (f.version < sh->version);
    force = (back || ctx->whole);
    ctx->whole = 0;

    if (back) {
        ngx_log_error(NGX_LOG_WARN, ctx->log, 0,
                      "tce redis: the fleet version went back from %uL to "
                      "%uL: applying Redis's policy as it is",
                      sh->version, f.version);
    }

    if (ngx_tce_redis_apply(ctx->rmcf->zone, &f, force, ctx->log)
        != NGX_OK)
    {
        ngx_tce_redis_error(ctx, "the tce zone is full: fleet policy "
                                 "applied in part");
    }

    if (f.version != sh->version || ctx->cache_text == NULL) {
        if (ctx->cache_text) {
            free(ctx->cache_text);
        }

        ctx->cache_text = ngx_tce_fleet_encode(&f);

        if (ctx->cache_text && ctx->rmcf->persist) {
            ngx_tce_persist_write(ctx->rmcf->persist, ctx->log);
        }
    }

    if (f.version != sh->version) {
        ngx_log_error(NGX_LOG_INFO, ctx->log, 0,
                      "tce redis: fleet version %uL applied (%uz policies, "
                      "%uz overrides, %uz instance sets)", f.version,
                      f.npolicies, f.noverrides, f.nsets);
    }

    sh->version = f.version;

    if (f.version > sh->seen || back) {
        sh->seen = f.version;
    }

    sh->last_sync = ngx_time();
    (void) ngx_atomic_fetch_add(&sh->syncs, 1);

    ngx_tce_fleet_free(&f);

    if (ctx->again) {
        ngx_tce_redis_pull(ctx);
    }
}


/*
 * {version, [field, value, ...], [service, rev, ...], [field, value,
 * ...], [service, set, ...]}, all checked
 */
static ngx_int_t
ngx_tce_redis_snapshot(redisReply *reply, ngx_tce_fleet_t *f, char *err,
    size_t errlen)
{
    size_t       i;
    redisReply  *v, *pols, *revs, *ovs, *sets, *k, *e;

    ngx_memzero(f, sizeof(ngx_tce_fleet_t));

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_snprintf((u_char *) err, errlen - 1, "Redis: %*s%Z",
                     (size_t) ngx_min(reply->len, 100), reply->str);
        return NGX_ERROR;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 5) {
        ngx_cpystrn((u_char *) err, (u_char *) "not the read script's "
                    "answer", errlen);
        return NGX_ERROR;
    }

    v = reply->element[0];
    pols = reply->element[1];
    revs = reply->element[2];
    ovs = reply->element[3];
    sets = reply->element[4];

    if (v->type != REDIS_REPLY_STRING
        || ngx_tce_fleet_uint(v->str, v->len, &f->version) != 0)
    {
        ngx_cpystrn((u_char *) err, (u_char *) "the version is not a "
                    "number", errlen);
        return NGX_ERROR;
    }

    if (pols->type != REDIS_REPLY_ARRAY || pols->elements % 2
        || revs->type != REDIS_REPLY_ARRAY || revs->elements % 2
        || ovs->type != REDIS_REPLY_ARRAY || ovs->elements % 2
        || sets->type != REDIS_REPLY_ARRAY || sets->elements % 2)
    {
        ngx_cpystrn((u_char *) err, (u_char *) "the canary, rev, override "
                    "and inst keys must be hashes", errlen);
        return NGX_ERROR;
    }

    for (i = 0; i < pols->elements; i += 2) {
        k = pols->element[i];
        e = pols->element[i + 1];

        if (k->type != REDIS_REPLY_STRING || e->type != REDIS_REPLY_STRING
            || ngx_tce_fleet_add_policy(f, k->str, k->len, e->str, e->len,
                                        err, errlen)
               != 0)
        {
            goto failed;
        }
    }

    for (i = 0; i < revs->elements; i += 2) {
        k = revs->element[i];
        e = revs->element[i + 1];

        if (k->type != REDIS_REPLY_STRING || e->type != REDIS_REPLY_STRING
            || ngx_tce_fleet_add_rev(f, k->str, k->len, e->str, e->len, err,
                                     errlen)
               != 0)
        {
            goto failed;
        }
    }

    for (i = 0; i < ovs->elements; i += 2) {
        k = ovs->element[i];
        e = ovs->element[i + 1];

        if (k->type != REDIS_REPLY_STRING || e->type != REDIS_REPLY_STRING
            || ngx_tce_fleet_add_override(f, k->str, k->len, e->str, e->len,
                                          err, errlen)
               != 0)
        {
            goto failed;
        }
    }

    for (i = 0; i < sets->elements; i += 2) {
        k = sets->element[i];
        e = sets->element[i + 1];

        if (k->type != REDIS_REPLY_STRING || e->type != REDIS_REPLY_STRING
            || ngx_tce_fleet_add_set(f, k->str, k->len, e->str, e->len, err,
                                     errlen)
               != 0)
        {
            goto failed;
        }
    }

    return NGX_OK;

failed:

    if (k->type != REDIS_REPLY_STRING || e->type != REDIS_REPLY_STRING) {
        ngx_cpystrn((u_char *) err, (u_char *) "a hash entry is not a "
                    "string", errlen);
    }

    ngx_tce_fleet_free(f);

    return NGX_ERROR;
}


ngx_int_t
ngx_tce_redis_apply(ngx_tce_zone_t *zone, const ngx_tce_fleet_t *f,
    ngx_uint_t force, ngx_log_t *log)
{
    size_t                    i, n, cap;
    uint64_t                  rev;
    ngx_int_t                 rc;
    ngx_str_t                *names;
    ngx_tce_service_t        *svc;
    ngx_tce_canary_policy_t  *pols;

    rc = NGX_OK;
    cap = ngx_max(f->npolicies, 1);

    names = ngx_alloc(cap * sizeof(ngx_str_t), log);
    pols = ngx_alloc(cap * sizeof(ngx_tce_canary_policy_t), log);

    if (names == NULL || pols == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    for (svc = zone->sh->services; svc; svc = svc->next) {
        rev = ngx_tce_fleet_rev(f, (char *) svc->name, svc->name_len);

        /* a write of this node, newer than what was read */
        if (!force && rev < svc->fleet_rev) {
            continue;
        }

        n = 0;

        for (i = 0; i < f->npolicies; i++) {
            if (ngx_strlen(f->policies[i].service) != svc->name_len
                || ngx_memcmp(f->policies[i].service, svc->name,
                              svc->name_len)
                   != 0)
            {
                continue;
            }

            names[n].data = (u_char *) f->policies[i].cluster;
            names[n].len = ngx_strlen(f->policies[i].cluster);
            pols[n] = f->policies[i].policy;
            n++;
        }

        if (ngx_tce_override_fleet_set(zone, svc, f->overrides,
                                       f->noverrides, log)
            != NGX_OK
            || ngx_tce_redis_apply_set(zone, svc, f, log) != NGX_OK
            || ngx_tce_policy_apply_fleet(zone, svc, names, pols, n, rev,
                                          log)
               != NGX_OK)
        {
            rc = NGX_ERROR;
        }
    }

done:

    if (names) {
        ngx_free(names);
    }

    if (pols) {
        ngx_free(pols);
    }

    return rc;
}


/*
 * The fleet's instance set of svc, if the fleet has one: stored in the
 * zone as the state file's would be (the overrides table laid over),
 * and the service marked as the fleet's, so that a reload does not
 * bring the state file's set back.  A service Consul feeds is left to
 * Consul.
 *
 * A service whose set was the fleet's, with none in the fleet now (a
 * new master that never had the write that made it, or a set deleted
 * in Redis), goes back to its state file's set, as a node started now
 * would route: else it would keep instances Redis does not hold.
 */
static ngx_int_t
ngx_tce_redis_apply_set(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    const ngx_tce_fleet_t *f, ngx_log_t *log)
{
    size_t                    i;
    ngx_uint_t                n;
    ngx_tce_state_service_t  *ss;
    const ngx_tce_instance_t *inst;

    if (svc->source == NGX_TCE_SOURCE_CONSUL) {
        return NGX_OK;
    }

    for (i = 0; i < f->nsets; i++) {
        if (ngx_strlen(f->sets[i].service) == svc->name_len
            && ngx_memcmp(f->sets[i].service, svc->name, svc->name_len)
               == 0)
        {
            break;
        }
    }

    if (i == f->nsets) {
        if (!svc->fleet_set) {
            return NGX_OK;
        }

        ngx_tce_state_instances(zone, svc, &inst, &n);

        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "tce redis: the fleet holds no instance set of "
                      "\"%s\" any more: back to the state file's "
                      "(%ui instances)", svc->name, n);

        if (ngx_tce_zone_set(zone, svc, inst, n, NGX_TCE_SOURCE_STATE, log)
            == NGX_ERROR)
        {
            return NGX_ERROR;
        }

        svc->fleet_set = 0;

        return NGX_OK;
    }

    ss = f->sets[i].st.services;

    if (ngx_tce_zone_set(zone, svc, ss->instances, ss->ninstances,
                         NGX_TCE_SOURCE_STATE, log)
        == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    svc->fleet_set = 1;

    return NGX_OK;
}


/* <prefix><name>, from ngx_alloc: the caller frees key->data */
static ngx_int_t
ngx_tce_redis_key(ngx_tce_redis_ctx_t *ctx, const char *name,
    ngx_str_t *key)
{
    size_t  len;

    len = ngx_strlen(name);

    key->data = ngx_alloc(ctx->rmcf->prefix.len + len + 1, ctx->log);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    key->len = ngx_sprintf(key->data, "%V%s%Z", &ctx->rmcf->prefix, name)
               - key->data - 1;

    return NGX_OK;
}


json_t *
ngx_tce_redis_json(ngx_tce_zone_t *zone)
{
    char                 err[NGX_TCE_REDIS_ERR_LEN * 4];
    json_t              *o;
    ngx_pid_t            owner;
    ngx_tce_redis_sh_t  *sh;

    sh = zone->sh->redis;

    if (sh == NULL) {
        return NULL;
    }

    /* Redis's own texts may be in it: printable only */
    (void) ngx_tce_text_escape(err, sizeof(err), (char *) sh->last_error,
                               ngx_strnlen(sh->last_error,
                                           NGX_TCE_REDIS_ERR_LEN));

    owner = (ngx_pid_t) sh->owner;

    o = json_pack("{s:s, s:o, s:I, s:I, s:o, s:o, s:s, s:o, "
                  "s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                  "state", ngx_tce_redis_state_name(owner ? sh->state
                                                   : NGX_TCE_REDIS_DOWN),
                  "syncer_pid", owner ? json_integer(owner) : json_null(),
                  "fleet_version", (json_int_t) sh->version,
                  "version_seen", (json_int_t) sh->seen,
                  "last_sync", sh->last_sync ? json_integer(sh->last_sync)
                                             : json_null(),
                  "last_sync_age_s", sh->last_sync
                                     ? json_integer(ngx_time()
                                                    - sh->last_sync)
                                     : json_null(),
                  "last_error", err,
                  "last_error_time", sh->last_error_time
                                     ? json_integer(sh->last_error_time)
                                     : json_null(),
                  "syncs", (json_int_t) sh->syncs,
                  "messages", (json_int_t) sh->messages,
                  "errors", (json_int_t) sh->errors,
                  "snapshots_refused", (json_int_t) sh->rejected,
                  "writes", (json_int_t) sh->writes,
                  "write_errors", (json_int_t) sh->write_errors,
                  "write_conflicts", (json_int_t) sh->conflicts);

    if (o == NULL
        || json_object_set_new(o, "writes_not_replicated",
                               json_integer(sh->not_replicated))
           != 0
        || json_object_set_new(o, "audit_stream_added",
                               json_integer(sh->audit_added))
           != 0
        || json_object_set_new(o, "audit_stream_errors",
                               json_integer(sh->audit_errors))
           != 0)
    {
        json_decref(o);
        return NULL;
    }

    if (sh->with_sentinel
        && json_object_set_new(o, "sentinel",
                               ngx_tce_redis_sentinel_json(zone, sh))
           != 0)
    {
        json_decref(o);
        return NULL;
    }

    return o;
}


ngx_int_t
ngx_tce_redis_prom(ngx_tce_zone_t *zone, ngx_tce_prom_snapshot_t *s,
    ngx_pool_t *pool)
{
    ngx_tce_redis_sh_t  *sh;

    sh = zone->sh->redis;

    if (sh == NULL) {
        return NGX_OK;
    }

    s->fleet.present = 1;
    s->fleet.up = (sh->owner && sh->state == NGX_TCE_REDIS_UP);
    s->fleet.version = sh->version;
    s->fleet.last_sync = (uint64_t) sh->last_sync;
    s->fleet.syncs = sh->syncs;
    s->fleet.messages = sh->messages;
    s->fleet.errors = sh->errors;
    s->fleet.rejected = sh->rejected;
    s->fleet.writes = sh->writes;
    s->fleet.write_errors = sh->write_errors;

    return NGX_OK;
}
