/*
 * The master's address from Redis Sentinel (tce_redis sentinel=...
 * master=<name>).
 *
 * The syncer holds one connection to a sentinel of the list (the next
 * one after each failure).  Its handshake asks SENTINEL
 * get-master-addr-by-name, then subscribes to +switch-master: the
 * question is asked again on every reconnection, so a switch announced
 * while no sentinel was listened to is not missed.  While the syncer's
 * own connections to the master are down, the sentinel connection is
 * made again every resync= (asking again, the next sentinel).
 *
 * The address lives in the zone (master_host, master_port, under the
 * zone's mutex) with an epoch bumped on every move: each connection to
 * the master remembers the epoch it was made with, and one made to a
 * former master is closed before its next command
 * (ngx_tce_redis_stale()), in every worker.  Sentinel's answers are
 * checked: a host must be a numeric address, a port a number.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_tce_redis.h"


static ngx_int_t ngx_tce_redis_sentinel_hello(ngx_tce_redis_conn_t *rc,
    redisReply *reply, u_char *err, size_t len);
static ngx_int_t ngx_tce_redis_sentinel_push(ngx_tce_redis_conn_t *rc,
    redisReply *reply);
static void ngx_tce_redis_sentinel_ready(ngx_tce_redis_conn_t *rc);
static void ngx_tce_redis_sentinel_down(ngx_tce_redis_conn_t *rc,
    const char *err);
static ngx_int_t ngx_tce_redis_sentinel_addr(u_char *host, size_t hlen,
    u_char *port, size_t plen, u_char *out, in_port_t *out_port);
static void ngx_tce_redis_sentinel_set(ngx_tce_redis_ctx_t *ctx,
    u_char *host, in_port_t port, const char *how);
static void ngx_tce_redis_sentinel_follow(ngx_tce_redis_ctx_t *ctx);


ngx_int_t
ngx_tce_redis_master(ngx_tce_redis_main_conf_t *rmcf, u_char *host,
    in_port_t *port, ngx_atomic_uint_t *epoch)
{
    ngx_int_t            rc;
    ngx_slab_pool_t     *shpool;
    ngx_tce_redis_sh_t  *sh;

    sh = rmcf->zone->sh->redis;

    if (sh == NULL) {
        return NGX_DECLINED;
    }

    shpool = rmcf->zone->shpool;

    ngx_shmtx_lock(&shpool->mutex);

    if (sh->master_port) {
        ngx_memcpy(host, sh->master_host, NGX_TCE_REDIS_HOST_LEN);
        *port = sh->master_port;
        *epoch = sh->master_epoch;
        rc = NGX_OK;

    } else {
        rc = NGX_DECLINED;
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return rc;
}


void
ngx_tce_redis_sentinel_init(ngx_tce_redis_ctx_t *ctx)
{
    ngx_tce_redis_conn_t  *rc;

    rc = &ctx->sentinel;

    ngx_tce_redis_conn_init(rc, ctx->rmcf, "sentinel", ctx->log);

    rc->data = ctx;
    rc->sentinel = 1;
    rc->subscriber = 1;
    ngx_str_set(&rc->channel, "+switch-master");
    rc->hello = ngx_tce_redis_sentinel_hello;
    rc->push = ngx_tce_redis_sentinel_push;
    rc->ready = ngx_tce_redis_sentinel_ready;
    rc->down = ngx_tce_redis_sentinel_down;

    /* spread the nodes of a fleet over the sentinels */
    rc->next = (ngx_uint_t) ngx_random();
}


/* the answer to get-master-addr-by-name: [host, port] */
static ngx_int_t
ngx_tce_redis_sentinel_hello(ngx_tce_redis_conn_t *rc, redisReply *reply,
    u_char *err, size_t len)
{
    ngx_tce_redis_ctx_t *ctx = rc->data;

    u_char      host[NGX_TCE_REDIS_HOST_LEN];
    in_port_t   port;
    redisReply  *h, *p;

    if (reply->type == REDIS_REPLY_NIL) {
        ngx_snprintf(err, len - 1, "Sentinel %s does not know master "
                     "\"%V\"%Z", rc->target, &rc->rmcf->master_name);
        return NGX_ERROR;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        ngx_snprintf(err, len - 1, "unexpected answer of Sentinel %s to "
                     "get-master-addr-by-name (reply type %d)%Z",
                     rc->target, reply->type);
        return NGX_ERROR;
    }

    h = reply->element[0];
    p = reply->element[1];

    if (ngx_tce_redis_sentinel_addr((u_char *) h->str, h->len,
                                    (u_char *) p->str, p->len, host, &port)
        != NGX_OK)
    {
        ngx_snprintf(err, len - 1, "Sentinel %s gave an address that is "
                     "not a numeric host and port: \"%*s\" \"%*s\"%Z",
                     rc->target, (size_t) ngx_min(h->len, 40), h->str,
                     (size_t) ngx_min(p->len, 10), p->str);
        return NGX_ERROR;
    }

    ngx_tce_redis_sentinel_set(ctx, host, port, (char *) rc->target);

    return NGX_OK;
}


/*
 * ["message", "+switch-master", "<name> <old ip> <old port> <new ip>
 * <new port>"]; another master's switch is ignored.
 */
static ngx_int_t
ngx_tce_redis_sentinel_push(ngx_tce_redis_conn_t *rc, redisReply *reply)
{
    ngx_tce_redis_ctx_t *ctx = rc->data;

    u_char      *f[5], *p, *last, host[NGX_TCE_REDIS_HOST_LEN];
    size_t       flen[5];
    in_port_t    port;
    ngx_uint_t   n;
    redisReply  *m;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[2]->type != REDIS_REPLY_STRING)
    {
        return NGX_ERROR;
    }

    m = reply->element[2];
    p = (u_char *) m->str;
    last = p + m->len;

    for (n = 0; n < 5; n++) {
        while (p < last && *p == ' ') {
            p++;
        }

        f[n] = p;

        while (p < last && *p != ' ') {
            p++;
        }

        flen[n] = p - f[n];

        if (flen[n] == 0) {
            break;
        }
    }

    if (n < 5 || p != last) {
        ngx_log_error(NGX_LOG_ERR, ctx->log, 0,
                      "tce redis: a +switch-master message of Sentinel %s "
                      "is not \"<name> <ip> <port> <ip> <port>\": ignored",
                      rc->target);
        return NGX_OK;
    }

    if (flen[0] != rc->rmcf->master_name.len
        || ngx_strncmp(f[0], rc->rmcf->master_name.data, flen[0]) != 0)
    {
        return NGX_OK;
    }

    if (ngx_tce_redis_sentinel_addr(f[3], flen[3], f[4], flen[4], host,
                                    &port)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, ctx->log, 0,
                      "tce redis: Sentinel %s switched master \"%V\" to an "
                      "address that is not a numeric host and port: "
                      "ignored", rc->target, &rc->rmcf->master_name);
        return NGX_OK;
    }

    ngx_tce_redis_sentinel_set(ctx, host, port, "+switch-master");

    return NGX_OK;
}


static void
ngx_tce_redis_sentinel_ready(ngx_tce_redis_conn_t *rc)
{
    ngx_tce_redis_ctx_t *ctx = rc->data;

    ctx->sh->sentinel_state = NGX_TCE_REDIS_UP;
}


static void
ngx_tce_redis_sentinel_down(ngx_tce_redis_conn_t *rc, const char *err)
{
    ngx_tce_redis_ctx_t  *ctx = rc->data;
    ngx_tce_redis_sh_t   *sh;

    sh = ctx->sh;
    sh->sentinel_state = NGX_TCE_REDIS_DOWN;

    if (rc->quiet) {
        return;     /* routine: asked again, or nginx closes */
    }

    (void) ngx_atomic_fetch_add(&sh->errors, 1);
    sh->last_error_time = ngx_time();
    ngx_snprintf(sh->last_error, sizeof(sh->last_error) - 1,
                 "sentinel: %s%Z", err);
}


/* a numeric host (IPv4 or IPv6) and a port: NUL-terminated into out */
static ngx_int_t
ngx_tce_redis_sentinel_addr(u_char *host, size_t hlen, u_char *port,
    size_t plen, u_char *out, in_port_t *out_port)
{
    ngx_int_t  n;
#if (NGX_HAVE_INET6)
    u_char     a6[16];
#endif

    n = ngx_atoi(port, plen);

    if (n < 1 || n > 65535 || hlen == 0
        || hlen >= NGX_TCE_REDIS_HOST_LEN)
    {
        return NGX_ERROR;
    }

    if (ngx_inet_addr(host, hlen) == INADDR_NONE
#if (NGX_HAVE_INET6)
        && ngx_inet6_addr(host, hlen, a6) != NGX_OK
#endif
       )
    {
        return NGX_ERROR;
    }

    ngx_memcpy(out, host, hlen);
    out[hlen] = '\0';
    *out_port = (in_port_t) n;

    return NGX_OK;
}


static void
ngx_tce_redis_sentinel_set(ngx_tce_redis_ctx_t *ctx, u_char *host,
    in_port_t port, const char *how)
{
    ngx_uint_t           moved, first;
    ngx_slab_pool_t     *shpool;
    ngx_tce_redis_sh_t  *sh;

    sh = ctx->sh;
    shpool = ctx->rmcf->zone->shpool;

    ngx_shmtx_lock(&shpool->mutex);

    first = (sh->master_port == 0);
    moved = first || sh->master_port != port
            || ngx_strcmp(sh->master_host, host) != 0;

    if (moved) {
        ngx_memcpy(sh->master_host, host, ngx_strlen(host) + 1);
        sh->master_port = port;
        sh->master_since = ngx_time();
        (void) ngx_atomic_fetch_add(&sh->master_epoch, 1);
    }

    ngx_shmtx_unlock(&shpool->mutex);

    if (moved) {
        if (!first) {
            (void) ngx_atomic_fetch_add(&sh->switches, 1);
        }

        ngx_log_error(NGX_LOG_NOTICE, ctx->log, 0,
                      "tce redis: master \"%V\" is %s:%d (%s)",
                      &ctx->rmcf->master_name, host, (int) port, how);
    }

    ngx_tce_redis_sentinel_follow(ctx);
}


/* the syncer's connections to the master: to the one named now */
static void
ngx_tce_redis_sentinel_follow(ngx_tce_redis_ctx_t *ctx)
{
    if (!ctx->owner) {
        return;
    }

    (void) ngx_tce_redis_stale(&ctx->cmd);
    (void) ngx_tce_redis_stale(&ctx->sub);

    if (ctx->cmd.state == NGX_TCE_REDIS_DOWN) {
        (void) ngx_tce_redis_connect(&ctx->cmd);
    }

    if (ctx->sub.state == NGX_TCE_REDIS_DOWN) {
        (void) ngx_tce_redis_connect(&ctx->sub);
    }
}


json_t *
ngx_tce_redis_sentinel_json(ngx_tce_zone_t *zone, ngx_tce_redis_sh_t *sh)
{
    u_char   text[NGX_TCE_REDIS_HOST_LEN + 8], *p;
    json_t  *master;

    if (!sh->with_sentinel) {
        return NULL;
    }

    master = NULL;

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (sh->master_port) {
        p = ngx_snprintf(text, sizeof(text) - 1,
                         ngx_strchr(sh->master_host, ':')
                         ? "[%s]:%d" : "%s:%d", sh->master_host,
                         (int) sh->master_port);
        *p = '\0';
        master = json_string((char *) text);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return json_pack("{s:s, s:o, s:o, s:I}",
                     "state", ngx_tce_redis_state_name(sh->owner
                                                       ? sh->sentinel_state
                                                       : NGX_TCE_REDIS_DOWN),
                     "master", master ? master : json_null(),
                     "master_since", sh->master_since
                                     ? json_integer(sh->master_since)
                                     : json_null(),
                     "switches", (json_int_t) sh->switches);
}
