/*
 * One Redis connection on nginx's event loop: hiredis's async context
 * (redisAsyncContext) whose event hooks (addRead, delRead, addWrite,
 * delWrite, cleanup) drive an ngx_connection_t on the context's fd.
 * hiredis 0.14 has no nginx adapter and no async timeouts: this file is
 * both, written for the suite.
 *
 * hiredis connects (non-blocking), buffers the commands and writes them
 * (redisAsyncHandleWrite); replies are read here with nginx's recv and
 * parsed by hiredis's reader, then handed out in order from a FIFO of
 * our own.  hiredis's own reply dispatch is not used: in 0.14 it
 * asserts (aborting the worker) on a reply nobody asked for or on a
 * malformed pub/sub frame; here such a reply closes the connection
 * with a clear error, and so does a reply over NGX_TCE_REDIS_MAX_REPLY
 * bytes or an array of more than NGX_TCE_REDIS_MAX_ELEMENTS.
 *
 * Timeouts (nginx timers): the handshake, and any command without an
 * answer for the configured timeout, close the connection; the queued
 * commands then fail.  A lost connection is retried after a backoff
 * (100 ms doubling up to 5 s, with jitter) when its owner asks for it.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <hiredis/sds.h>

#include "ngx_tce_redis.h"


#define NGX_TCE_REDIS_MAX_ELEMENTS  (1024 * 1024)
#define NGX_TCE_REDIS_READ_BUF      16384


typedef struct {
    ngx_queue_t                 queue;
    ngx_tce_redis_reply_pt      handler;
    void                       *data;
} ngx_tce_redis_cmd_t;


static ngx_int_t ngx_tce_redis_target(ngx_tce_redis_conn_t *rc);
static ngx_int_t ngx_tce_redis_send(ngx_tce_redis_conn_t *rc,
    ngx_tce_redis_reply_pt handler, void *data, int argc,
    const char **argv, const size_t *argvlen);
static void ngx_tce_redis_handshake(ngx_tce_redis_conn_t *rc);
static void ngx_tce_redis_hs_reply(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data);
static void ngx_tce_redis_dispatch(ngx_tce_redis_conn_t *rc,
    redisReply *reply);
static void ngx_tce_redis_read_handler(ngx_event_t *rev);
static void ngx_tce_redis_write_handler(ngx_event_t *wev);
static void ngx_tce_redis_timer_handler(ngx_event_t *ev);
static void ngx_tce_redis_retry_handler(ngx_event_t *ev);
static void ngx_tce_redis_idle_handler(ngx_event_t *ev);
static void ngx_tce_redis_arm(ngx_tce_redis_conn_t *rc);
static void ngx_tce_redis_free_ac(ngx_tce_redis_conn_t *rc);
static void ngx_tce_redis_add_read(void *privdata);
static void ngx_tce_redis_del_read(void *privdata);
static void ngx_tce_redis_add_write(void *privdata);
static void ngx_tce_redis_del_write(void *privdata);
static void ngx_tce_redis_cleanup(void *privdata);
static void *ngx_tce_redis_create_array(const redisReadTask *task,
    int elements);


/* hiredis's reply functions, with a bound on arrays (see above) */
static redisReplyObjectFunctions  *ngx_tce_redis_default_fn;
static redisReplyObjectFunctions   ngx_tce_redis_fn;


static const char  *ngx_tce_redis_states[] = {
    "down", "connecting", "up"
};


const char *
ngx_tce_redis_state_name(ngx_uint_t state)
{
    return state <= NGX_TCE_REDIS_UP ? ngx_tce_redis_states[state] : "?";
}


void
ngx_tce_redis_conn_init(ngx_tce_redis_conn_t *rc,
    ngx_tce_redis_main_conf_t *rmcf, const char *name, ngx_log_t *log)
{
    ngx_memzero(rc, sizeof(ngx_tce_redis_conn_t));

    rc->rmcf = rmcf;
    rc->log = log;
    rc->name = name;
    rc->channel = rmcf->channel;

    ngx_queue_init(&rc->pending);

    rc->timer.handler = ngx_tce_redis_timer_handler;
    rc->timer.data = rc;
    rc->timer.log = log;
    rc->timer.cancelable = 1;

    rc->retry.handler = ngx_tce_redis_retry_handler;
    rc->retry.data = rc;
    rc->retry.log = log;
    rc->retry.cancelable = 1;

    rc->idle.handler = ngx_tce_redis_idle_handler;
    rc->idle.data = rc;
    rc->idle.log = log;
    rc->idle.cancelable = 1;
}


ngx_int_t
ngx_tce_redis_connect(ngx_tce_redis_conn_t *rc)
{
    ngx_connection_t           *c;
    redisAsyncContext          *ac;
    ngx_tce_redis_main_conf_t  *rmcf;

    if (rc->state != NGX_TCE_REDIS_DOWN) {
        return NGX_OK;
    }

    if (rc->retry.timer_set) {
        ngx_del_timer(&rc->retry);
    }

    rmcf = rc->rmcf;

    if (ngx_tce_redis_target(rc) != NGX_OK) {
        ngx_tce_redis_close(rc, (char *) rc->err);
        return NGX_ERROR;
    }

    if (rc->port == 0) {
        ac = redisAsyncConnectUnix((char *) rmcf->unix_path.data);

    } else {
        /* numeric: resolved when the configuration was read, or given
         * by Sentinel and checked */
        ac = redisAsyncConnect((char *) rc->host, rc->port);
    }

    if (ac == NULL) {
        ngx_tce_redis_close(rc, "out of memory");
        return NGX_ERROR;
    }

    if (ac->err) {
        ngx_cpystrn(rc->err, (u_char *) ac->errstr, sizeof(rc->err));
        redisAsyncFree(ac);
        ngx_tce_redis_close(rc, (char *) rc->err);
        return NGX_ERROR;
    }

    c = ngx_get_connection(ac->c.fd, rc->log);
    if (c == NULL) {
        redisAsyncFree(ac);
        ngx_tce_redis_close(rc, "no free nginx connection");
        return NGX_ERROR;
    }

    if (ngx_tce_redis_default_fn == NULL) {
        ngx_tce_redis_default_fn = ac->c.reader->fn;
        ngx_tce_redis_fn = *ac->c.reader->fn;
        ngx_tce_redis_fn.createArray = ngx_tce_redis_create_array;
    }

    ac->c.reader->fn = &ngx_tce_redis_fn;

    c->data = rc;
    c->log = rc->log;
    c->read->log = rc->log;
    c->write->log = rc->log;
    c->read->handler = ngx_tce_redis_read_handler;
    c->write->handler = ngx_tce_redis_write_handler;
    c->recv = ngx_recv;
    c->send = ngx_send;

    ac->data = rc;
    ac->ev.data = rc;
    ac->ev.addRead = ngx_tce_redis_add_read;
    ac->ev.delRead = ngx_tce_redis_del_read;
    ac->ev.addWrite = ngx_tce_redis_add_write;
    ac->ev.delWrite = ngx_tce_redis_del_write;
    ac->ev.cleanup = ngx_tce_redis_cleanup;

    rc->ac = ac;
    rc->c = c;
    rc->state = NGX_TCE_REDIS_CONNECTING;
    rc->err[0] = '\0';

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rc->log, 0,
                   "tce redis: %s connecting to %s", rc->name, rc->target);

    ngx_tce_redis_handshake(rc);

    if (rc->ac == NULL) {
        return NGX_ERROR;
    }

    /* hiredis reads once the first write is done */
    ngx_tce_redis_add_read(rc);

    return rc->ac ? NGX_OK : NGX_ERROR;
}


/*
 * Where to connect: the next sentinel of the list, the master Sentinel
 * named last (the zone), or the configured address.  NGX_ERROR with
 * rc->err set when the master is not known yet.
 */
static ngx_int_t
ngx_tce_redis_target(ngx_tce_redis_conn_t *rc)
{
    ngx_tce_redis_addr_t       *a;
    ngx_tce_redis_main_conf_t  *rmcf;

    rmcf = rc->rmcf;

    if (rc->sentinel) {
        a = rmcf->sentinels->elts;
        a = &a[rc->next++ % rmcf->sentinels->nelts];

        ngx_memcpy(rc->host, a->host, sizeof(rc->host));
        rc->port = a->port;

    } else if (rmcf->master_name.len) {
        if (ngx_tce_redis_master(rmcf, rc->host, &rc->port, &rc->epoch)
            != NGX_OK)
        {
            ngx_snprintf(rc->err, sizeof(rc->err) - 1,
                         "the address of master \"%V\" is not known yet "
                         "(asking Sentinel)%Z", &rmcf->master_name);
            ngx_snprintf(rc->target, sizeof(rc->target) - 1,
                         "master \"%V\"%Z", &rmcf->master_name);
            return NGX_ERROR;
        }

    } else if (rmcf->unix_path.len) {
        rc->port = 0;
        ngx_snprintf(rc->target, sizeof(rc->target) - 1, "%V%Z",
                     &rmcf->server);
        return NGX_OK;

    } else {
        ngx_memcpy(rc->host, rmcf->host.data, rmcf->host.len + 1);
        rc->port = rmcf->port;
    }

    ngx_snprintf(rc->target, sizeof(rc->target) - 1,
                 ngx_strlchr(rc->host, rc->host + ngx_strlen(rc->host), ':')
                 ? "[%s]:%d%Z" : "%s:%d%Z", rc->host, (int) rc->port);

    return NGX_OK;
}


/*
 * AUTH, SELECT, then PING or SUBSCRIBE: ready() once all are answered.
 * To a sentinel: SENTINEL get-master-addr-by-name, then SUBSCRIBE.
 */
static void
ngx_tce_redis_handshake(ngx_tce_redis_conn_t *rc)
{
    char                        db[NGX_INT_T_LEN + 1];
    int                         n;
    size_t                      len[3];
    const char                 *argv[3];
    ngx_tce_redis_main_conf_t  *rmcf;

    rmcf = rc->rmcf;
    rc->handshake = 0;

    if (rc->sentinel) {
        argv[0] = "SENTINEL";
        len[0] = 8;
        argv[1] = "get-master-addr-by-name";
        len[1] = sizeof("get-master-addr-by-name") - 1;
        argv[2] = (char *) rmcf->master_name.data;
        len[2] = rmcf->master_name.len;

        if (ngx_tce_redis_send(rc, ngx_tce_redis_hs_reply, "SENTINEL", 3,
                               argv, len)
            != NGX_OK)
        {
            return;
        }

        rc->handshake++;
        goto subscribe;
    }

    if (rmcf->password.len) {
        n = 0;
        argv[n] = "AUTH";
        len[n++] = 4;

        if (rmcf->username.len) {
            argv[n] = (char *) rmcf->username.data;
            len[n++] = rmcf->username.len;
        }

        argv[n] = (char *) rmcf->password.data;
        len[n++] = rmcf->password.len;

        if (ngx_tce_redis_send(rc, ngx_tce_redis_hs_reply, "AUTH", n, argv,
                               len)
            != NGX_OK)
        {
            return;
        }

        rc->handshake++;
    }

    if (rmcf->db > 0) {
        argv[0] = "SELECT";
        len[0] = 6;
        argv[1] = db;
        len[1] = ngx_sprintf((u_char *) db, "%i", rmcf->db) - (u_char *) db;

        if (ngx_tce_redis_send(rc, ngx_tce_redis_hs_reply, "SELECT", 2, argv,
                               len)
            != NGX_OK)
        {
            return;
        }

        rc->handshake++;
    }

subscribe:

    if (rc->subscriber) {
        argv[0] = "SUBSCRIBE";
        len[0] = 9;
        argv[1] = (char *) rc->channel.data;
        len[1] = rc->channel.len;
        n = 2;

    } else {
        argv[0] = "PING";
        len[0] = 4;
        n = 1;
    }

    if (ngx_tce_redis_send(rc, ngx_tce_redis_hs_reply, (void *) argv[0], n,
                           argv, len)
        != NGX_OK)
    {
        return;
    }

    rc->handshake++;
}


static void
ngx_tce_redis_hs_reply(ngx_tce_redis_conn_t *rc, redisReply *reply,
    const char *err, void *data)
{
    const char *what = data;

    u_char      text[NGX_TCE_REDIS_ERR_LEN];
    ngx_uint_t  ok;

    if (reply == NULL) {
        return;     /* closed: the reason is logged by the closer */
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_snprintf(text, sizeof(text) - 1, "%s refused: %*s%Z", what,
                     (size_t) ngx_min(reply->len, 100), reply->str);
        ngx_tce_redis_close(rc, (char *) text);
        return;
    }

    if (what[0] == 'S' && what[1] == 'E') {
        /* the master's address: the owner checks and keeps it */
        if (rc->hello == NULL
            || rc->hello(rc, reply, text, sizeof(text)) != NGX_OK)
        {
            ngx_tce_redis_close(rc, (char *) text);
            return;
        }

        ok = 1;

    } else if (what[0] == 'S' && what[1] == 'U') {
        /* ["subscribe", <channel>, <count>] */
        ok = reply->type == REDIS_REPLY_ARRAY && reply->elements == 3
             && reply->element[0]->type == REDIS_REPLY_STRING
             && reply->element[0]->len == 9
             && ngx_strncasecmp((u_char *) reply->element[0]->str,
                                (u_char *) "subscribe", 9) == 0
             && reply->element[2]->type == REDIS_REPLY_INTEGER;

    } else if (what[0] == 'P') {
        ok = reply->type == REDIS_REPLY_STATUS && reply->len == 4
             && ngx_strncasecmp((u_char *) reply->str, (u_char *) "PONG", 4)
                == 0;

    } else {
        ok = reply->type == REDIS_REPLY_STATUS && reply->len == 2
             && ngx_strncmp(reply->str, "OK", 2) == 0;
    }

    if (!ok) {
        ngx_snprintf(text, sizeof(text) - 1,
                     "unexpected answer to %s (reply type %d)%Z", what,
                     reply->type);
        ngx_tce_redis_close(rc, (char *) text);
        return;
    }

    if (--rc->handshake) {
        return;
    }

    rc->state = NGX_TCE_REDIS_UP;
    rc->failures = 0;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rc->log, 0,
                   "tce redis: %s connected to %s", rc->name, rc->target);

    if (rc->ready) {
        rc->ready(rc);
    }
}


ngx_int_t
ngx_tce_redis_command(ngx_tce_redis_conn_t *rc,
    ngx_tce_redis_reply_pt handler, void *data, int argc, const char **argv,
    const size_t *argvlen)
{
    (void) ngx_tce_redis_stale(rc);

    if (rc->state == NGX_TCE_REDIS_DOWN
        && ngx_tce_redis_connect(rc) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_tce_redis_send(rc, handler, data, argc, argv, argvlen);
}


ngx_int_t
ngx_tce_redis_command_same(ngx_tce_redis_conn_t *rc,
    ngx_tce_redis_reply_pt handler, void *data, int argc, const char **argv,
    const size_t *argvlen)
{
    if (rc->state != NGX_TCE_REDIS_UP) {
        return NGX_ERROR;
    }

    return ngx_tce_redis_send(rc, handler, data, argc, argv, argvlen);
}


ngx_uint_t
ngx_tce_redis_stale(ngx_tce_redis_conn_t *rc)
{
    ngx_tce_redis_sh_t  *sh;

    if (rc->state == NGX_TCE_REDIS_DOWN || rc->sentinel
        || rc->rmcf->master_name.len == 0)
    {
        return 0;
    }

    sh = rc->rmcf->zone->sh->redis;

    if (sh == NULL || rc->epoch == sh->master_epoch) {
        return 0;
    }

    rc->quiet = 1;
    ngx_tce_redis_close(rc, "the master moved (Sentinel)");

    return 1;
}


static ngx_int_t
ngx_tce_redis_send(ngx_tce_redis_conn_t *rc, ngx_tce_redis_reply_pt handler,
    void *data, int argc, const char **argv, const size_t *argvlen)
{
    int                   len;
    char                 *cmd;
    ngx_tce_redis_cmd_t  *q;

    if (rc->ac == NULL) {
        return NGX_ERROR;
    }

    q = ngx_alloc(sizeof(ngx_tce_redis_cmd_t), rc->log);
    if (q == NULL) {
        return NGX_ERROR;
    }

    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) {
        ngx_free(q);
        return NGX_ERROR;
    }

    if (redisAppendFormattedCommand(&rc->ac->c, cmd, len) != REDIS_OK) {
        redisFreeCommand(cmd);
        ngx_free(q);
        return NGX_ERROR;
    }

    redisFreeCommand(cmd);

    q->handler = handler;
    q->data = data;

    ngx_queue_insert_tail(&rc->pending, &q->queue);
    rc->npending++;

    if (rc->idle.timer_set) {
        ngx_del_timer(&rc->idle);
    }

    if (!rc->timer.timer_set) {
        ngx_add_timer(&rc->timer, rc->rmcf->timeout);
    }

    ngx_tce_redis_add_write(rc);

    return NGX_OK;
}


/* the command timer runs while an answer is owed; idle after the last */
static void
ngx_tce_redis_arm(ngx_tce_redis_conn_t *rc)
{
    if (rc->timer.timer_set) {
        ngx_del_timer(&rc->timer);
    }

    if (rc->npending) {
        ngx_add_timer(&rc->timer, rc->rmcf->timeout);
        return;
    }

    if (rc->idle_time && rc->state == NGX_TCE_REDIS_UP) {
        ngx_add_timer(&rc->idle, rc->idle_time);
    }
}


static void
ngx_tce_redis_dispatch(ngx_tce_redis_conn_t *rc, redisReply *reply)
{
    ngx_queue_t          *q;
    ngx_tce_redis_cmd_t  *cmd;

    /* a message may come before the answer to a PING of the syncer's */
    if (rc->subscriber && rc->state == NGX_TCE_REDIS_UP && rc->push
        && reply->type == REDIS_REPLY_ARRAY && reply->elements > 0
        && reply->element[0]->type == REDIS_REPLY_STRING
        && reply->element[0]->len == 7
        && ngx_strncmp(reply->element[0]->str, "message", 7) == 0)
    {
        if (rc->push(rc, reply) != NGX_OK) {
            ngx_tce_redis_close(rc, "unexpected message on the "
                                    "subscription");
        }

        return;
    }

    if (ngx_queue_empty(&rc->pending)) {
        if (rc->subscriber && rc->state == NGX_TCE_REDIS_UP && rc->push
            && rc->push(rc, reply) == NGX_OK)
        {
            return;
        }

        ngx_tce_redis_close(rc, rc->subscriber
                                ? "unexpected message on the subscription"
                                : "a reply to no command: protocol error");
        return;
    }

    q = ngx_queue_head(&rc->pending);
    ngx_queue_remove(q);
    rc->npending--;

    cmd = ngx_queue_data(q, ngx_tce_redis_cmd_t, queue);

    ngx_tce_redis_arm(rc);

    cmd->handler(rc, reply, NULL, cmd->data);

    ngx_free(cmd);
}


static void
ngx_tce_redis_read_handler(ngx_event_t *rev)
{
    u_char                 buf[NGX_TCE_REDIS_READ_BUF];
    void                  *reply;
    ssize_t                n;
    ngx_uint_t             serial;
    redisReader           *reader;
    ngx_connection_t      *c;
    ngx_tce_redis_conn_t  *rc;

    c = rev->data;
    rc = c->data;

    if (rc->ac == NULL) {
        return;
    }

    if (!(rc->ac->c.flags & REDIS_CONNECTED)) {
        /* readable before writable: an error on connect, say */
        ngx_tce_redis_write_handler(c->write);
        return;
    }

    serial = rc->serial;

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0) {
            ngx_tce_redis_close(rc, "Redis closed the connection");
            return;
        }

        if (n == NGX_ERROR) {
            ngx_tce_redis_close(rc, "read error (see the error log)");
            return;
        }

        reader = rc->ac->c.reader;

        if (redisReaderFeed(reader, (char *) buf, n) != REDIS_OK
            || reader->len - reader->pos > NGX_TCE_REDIS_MAX_REPLY)
        {
            ngx_tce_redis_close(rc, "a reply larger than 8 MB");
            return;
        }

        for ( ;; ) {
            reply = NULL;

            if (redisReaderGetReply(reader, &reply) != REDIS_OK) {
                ngx_snprintf(rc->err, sizeof(rc->err) - 1,
                             "protocol error: %s%Z", reader->errstr);
                ngx_tce_redis_close(rc, (char *) rc->err);
                return;
            }

            if (reply == NULL) {
                break;
            }

            ngx_tce_redis_dispatch(rc, reply);

            freeReplyObject(reply);

            if (rc->serial != serial) {
                return;     /* closed by a handler */
            }
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_tce_redis_close(rc, "cannot add a read event");
    }
}


static void
ngx_tce_redis_write_handler(ngx_event_t *wev)
{
    size_t                 len;
    ngx_uint_t             i;
    ngx_connection_t      *c;
    redisAsyncContext     *ac;
    ngx_tce_redis_conn_t  *rc;

    c = wev->data;
    rc = c->data;

    for (i = 0; i < 16; i++) {
        ac = rc->ac;

        if (ac == NULL) {
            return;
        }

        len = (ac->c.flags & REDIS_CONNECTED) ? sdslen(ac->c.obuf) : 0;

        redisAsyncHandleWrite(ac);

        if (rc->ac == NULL) {
            /* hiredis freed the context itself (cleanup has run) */
            ngx_tce_redis_close(rc, rc->err[0] ? (char *) rc->err
                                               : "connection failed");
            return;
        }

        if (!(ac->c.flags & REDIS_CONNECTED)) {
            return;     /* connect(2) still in progress */
        }

        if (sdslen(ac->c.obuf) == 0) {
            return;
        }

        if (sdslen(ac->c.obuf) == len) {
            /* EAGAIN: with edge-triggered events, wait for the next one */
            wev->ready = 0;
            break;
        }
    }

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_tce_redis_close(rc, "cannot add a write event");
    }
}


/* the event hooks of hiredis (ac->ev) */

static void
ngx_tce_redis_add_read(void *privdata)
{
    ngx_tce_redis_conn_t *rc = privdata;

    if (rc->c && ngx_handle_read_event(rc->c->read, 0) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, rc->log, 0,
                      "tce redis: cannot add a read event");
    }
}


static void
ngx_tce_redis_del_read(void *privdata)
{
    ngx_tce_redis_conn_t *rc = privdata;

    /* edge-triggered events stay: a spurious one reads nothing */
    if (rc->c && rc->c->read->active
        && !(ngx_event_flags & NGX_USE_CLEAR_EVENT))
    {
        (void) ngx_del_event(rc->c->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_tce_redis_add_write(void *privdata)
{
    ngx_tce_redis_conn_t *rc = privdata;

    ngx_event_t  *wev;

    if (rc->c == NULL) {
        return;
    }

    wev = rc->c->write;

    if (wev->active && wev->ready) {
        /* writable already: no new edge will come, write this turn */
        ngx_post_event(wev, &ngx_posted_events);
        return;
    }

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, rc->log, 0,
                      "tce redis: cannot add a write event");
    }
}


static void
ngx_tce_redis_del_write(void *privdata)
{
    ngx_tce_redis_conn_t *rc = privdata;

    if (rc->c && rc->c->write->active
        && !(ngx_event_flags & NGX_USE_CLEAR_EVENT))
    {
        (void) ngx_del_event(rc->c->write, NGX_WRITE_EVENT, 0);
    }
}


/*
 * hiredis frees the context (redisAsyncFree, or an error it met while
 * connecting or writing): the nginx connection goes, the fd stays open
 * for hiredis to close right after.
 */
static void
ngx_tce_redis_cleanup(void *privdata)
{
    ngx_tce_redis_conn_t *rc = privdata;

    ngx_connection_t  *c;

    c = rc->c;

    if (c) {
        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }

        if (c->write->posted) {
            ngx_delete_posted_event(c->write);
        }

        if (c->read->active) {
            (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
        }

        if (c->write->active) {
            (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
        }

        ngx_free_connection(c);
        c->fd = (ngx_socket_t) -1;
        rc->c = NULL;
    }

    if (rc->ac) {
        /* freed by hiredis, not by us: keep its reason */
        if (rc->ac->err) {
            ngx_cpystrn(rc->err, (u_char *) rc->ac->errstr,
                        sizeof(rc->err));
        }

        rc->ac->ev.data = NULL;
        rc->ac = NULL;
    }
}


static void
ngx_tce_redis_free_ac(ngx_tce_redis_conn_t *rc)
{
    redisAsyncContext  *ac;

    ac = rc->ac;

    if (ac == NULL) {
        return;
    }

    rc->ac = NULL;

    /* runs ngx_tce_redis_cleanup(), which releases rc->c */
    redisAsyncFree(ac);
}


void
ngx_tce_redis_close(ngx_tce_redis_conn_t *rc, const char *err)
{
    ngx_msec_t            delay, base;
    ngx_uint_t            was;
    ngx_queue_t           failed, *q;
    ngx_tce_redis_cmd_t  *cmd;

    if (err != (char *) rc->err) {
        ngx_cpystrn(rc->err, (u_char *) err, sizeof(rc->err));
    }

    rc->serial++;
    was = rc->state;
    rc->state = NGX_TCE_REDIS_DOWN;
    rc->handshake = 0;

    if (rc->timer.timer_set) {
        ngx_del_timer(&rc->timer);
    }

    if (rc->idle.timer_set) {
        ngx_del_timer(&rc->idle);
    }

    ngx_tce_redis_free_ac(rc);

    if (rc->quiet) {
        /* routine (the master moved): reconnect at once, no backoff */
        ngx_log_error(NGX_LOG_INFO, rc->log, 0,
                      "tce redis: %s connection to %s closed: %s",
                      rc->name, rc->target, rc->err);
        rc->failures = 0;

    } else {
        if (was == NGX_TCE_REDIS_UP || rc->failures == 0) {
            ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                          "tce redis: %s connection to %s %s: %s",
                          rc->name, rc->target,
                          was == NGX_TCE_REDIS_UP ? "lost" : "failed",
                          rc->err);
        }

        rc->failures++;
    }

    /* handlers may queue anew (on a new connection): fail these only */
    ngx_queue_init(&failed);

    if (!ngx_queue_empty(&rc->pending)) {
        ngx_queue_add(&failed, &rc->pending);
        ngx_queue_init(&rc->pending);
    }

    rc->npending = 0;

    while (!ngx_queue_empty(&failed)) {
        q = ngx_queue_head(&failed);
        ngx_queue_remove(q);
        cmd = ngx_queue_data(q, ngx_tce_redis_cmd_t, queue);
        cmd->handler(rc, NULL, (char *) rc->err, cmd->data);
        ngx_free(cmd);
    }

    if (rc->down) {
        rc->down(rc, (char *) rc->err);     /* may look at rc->quiet */
    }

    rc->quiet = 0;

    if (!rc->reconnect || rc->state != NGX_TCE_REDIS_DOWN
        || rc->retry.timer_set || ngx_exiting || ngx_quit || ngx_terminate)
    {
        return;
    }

    base = NGX_TCE_REDIS_BACKOFF_MIN;

    while (base < NGX_TCE_REDIS_BACKOFF_MAX
           && (ngx_uint_t) (base / NGX_TCE_REDIS_BACKOFF_MIN) < rc->failures)
    {
        base *= 2;
    }

    base = ngx_min(base, NGX_TCE_REDIS_BACKOFF_MAX);

    /* jitter: between half and all of it, so that nodes spread out */
    delay = base / 2 + (ngx_msec_t) ngx_random() % (base / 2 + 1);

    ngx_add_timer(&rc->retry, delay);
}


void
ngx_tce_redis_shutdown(ngx_tce_redis_conn_t *rc)
{
    rc->reconnect = 0;
    rc->ready = NULL;
    rc->down = NULL;

    if (rc->state != NGX_TCE_REDIS_DOWN || !ngx_queue_empty(&rc->pending)) {
        rc->quiet = 1;          /* an orderly close */
        ngx_tce_redis_close(rc, "closed by nginx");
    }

    if (rc->retry.timer_set) {
        ngx_del_timer(&rc->retry);
    }

    if (rc->timer.timer_set) {
        ngx_del_timer(&rc->timer);
    }

    if (rc->idle.timer_set) {
        ngx_del_timer(&rc->idle);
    }
}


static void
ngx_tce_redis_timer_handler(ngx_event_t *ev)
{
    ngx_tce_redis_conn_t *rc = ev->data;

    u_char  text[NGX_TCE_REDIS_ERR_LEN];

    ngx_snprintf(text, sizeof(text) - 1, "%s within %M ms%Z",
                 rc->state == NGX_TCE_REDIS_UP
                 ? "no answer to a command" : "no answer to the handshake",
                 rc->rmcf->timeout);

    ngx_tce_redis_close(rc, (char *) text);
}


static void
ngx_tce_redis_retry_handler(ngx_event_t *ev)
{
    ngx_tce_redis_conn_t *rc = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate || !rc->reconnect) {
        return;
    }

    (void) ngx_tce_redis_connect(rc);
}


static void
ngx_tce_redis_idle_handler(ngx_event_t *ev)
{
    ngx_tce_redis_conn_t *rc = ev->data;

    if (rc->npending || rc->state != NGX_TCE_REDIS_UP) {
        return;
    }

    rc->serial++;
    rc->state = NGX_TCE_REDIS_DOWN;
    rc->failures = 0;

    if (rc->timer.timer_set) {
        ngx_del_timer(&rc->timer);
    }

    ngx_tce_redis_free_ac(rc);
}


static void *
ngx_tce_redis_create_array(const redisReadTask *task, int elements)
{
    if (elements < 0 || elements > NGX_TCE_REDIS_MAX_ELEMENTS) {
        return NULL;    /* the reader then fails: a protocol error */
    }

    return ngx_tce_redis_default_fn->createArray(task, elements);
}
