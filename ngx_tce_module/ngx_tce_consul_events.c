/*
 * libcurl's multi interface driven by nginx events, for the Consul
 * watcher.
 *
 * Sockets: curl tells which sockets to watch (CURLMOPT_SOCKETFUNCTION);
 * each gets an ngx_connection_t only while curl watches it, released
 * when curl says CURL_POLL_REMOVE or closes the socket through our
 * CURLOPT_CLOSESOCKETFUNCTION.  The connection holds a dup() of curl's
 * socket, never curl's own fd: libcurl sometimes closes a socket before
 * it says CURL_POLL_REMOVE, and the fd number may then be reused at
 * once.  With a descriptor of our own, events are always deleted on an
 * open fd that is ours, and then that fd is closed.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_tce_consul_watch.h"


/* c->data of a watched socket's connection (c->fd is a dup of s) */
typedef struct {
    ngx_tce_consul_ctx_t       *ctx;
    curl_socket_t               s;
} ngx_tce_consul_sock_t;


static ngx_connection_t *ngx_tce_consul_conn_get(ngx_tce_consul_ctx_t *ctx,
    curl_socket_t s);
static int ngx_tce_consul_starve(ngx_tce_consul_ctx_t *ctx, CURL *easy);
static void ngx_tce_consul_event(ngx_event_t *ev);
static void ngx_tce_consul_action(ngx_tce_consul_ctx_t *ctx,
    curl_socket_t s, int flags);


/* CURLMOPT_SOCKETFUNCTION: which events curl wants on socket s */

int
ngx_tce_consul_socket(CURL *easy, curl_socket_t s, int what, void *userp,
    void *socketp)
{
    ngx_tce_consul_ctx_t *ctx = userp;

    ngx_connection_t  *c;

    c = socketp;

    if (what == CURL_POLL_REMOVE) {
        if (c) {
            curl_multi_assign(ctx->multi, s, NULL);
            ngx_tce_consul_conn_free(ctx, c);
        }

        return 0;
    }

    if (c == NULL) {
        c = ngx_tce_consul_conn_get(ctx, s);

        if (c == NULL) {
            return ngx_tce_consul_starve(ctx, easy);
        }

        curl_multi_assign(ctx->multi, s, c);
    }

    /* level-triggered: curl reads only what it wants per call */

    if ((what & CURL_POLL_IN) && !c->read->active) {
        if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            goto failed;
        }

    } else if (!(what & CURL_POLL_IN) && c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if ((what & CURL_POLL_OUT) && !c->write->active) {
        if (ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            goto failed;
        }

    } else if (!(what & CURL_POLL_OUT) && c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    return 0;

failed:

    curl_multi_assign(ctx->multi, s, NULL);
    ngx_tce_consul_conn_free(ctx, c);

    return ngx_tce_consul_starve(ctx, easy);
}


/* a connection holding a dup() of s, in ctx->conns; NULL on failure */

static ngx_connection_t *
ngx_tce_consul_conn_get(ngx_tce_consul_ctx_t *ctx, curl_socket_t s)
{
    ngx_socket_t            fd;
    ngx_connection_t       *c, **cp;
    ngx_tce_consul_sock_t  *sock;

    cp = ngx_array_push(&ctx->conns);
    if (cp == NULL) {
        return NULL;
    }

    sock = ngx_alloc(sizeof(ngx_tce_consul_sock_t), ctx->log);
    if (sock == NULL) {
        ctx->conns.nelts--;
        return NULL;
    }

    /* our own descriptor of curl's socket: see the top of the file */
    fd = dup(s);

    if (fd == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ERR, ctx->log, ngx_errno,
                      "tce consul: dup() failed");
        ngx_free(sock);
        ctx->conns.nelts--;
        return NULL;
    }

    /* worker_connections exhausted: NULL (nginx logs it) */
    c = ngx_get_connection(fd, ctx->log);
    if (c == NULL) {
        (void) close(fd);
        ngx_free(sock);
        ctx->conns.nelts--;
        return NULL;
    }

    *cp = c;

    sock->ctx = ctx;
    sock->s = s;
    c->data = sock;
    c->log = ctx->log;
    c->read->log = ctx->log;
    c->write->log = ctx->log;
    c->read->handler = ngx_tce_consul_event;
    c->write->handler = ngx_tce_consul_event;

    /* closed at once when the worker starts shutting down */
    c->idle = 1;

    return c;
}


/*
 * A transfer whose socket cannot be watched (worker_connections
 * exhausted): returning -1 to curl would abort every transfer and
 * leave the multi handle unusable for good.  Instead the request is
 * marked failed and curl told all is well; right after the callback
 * (posted event, outside curl's calls) the transfer is taken out of
 * the multi and completed as a failure, so its watch retries with
 * backoff as on any error.
 */
static int
ngx_tce_consul_starve(ngx_tce_consul_ctx_t *ctx, CURL *easy)
{
    ngx_tce_consul_request_t  *req;

    req = NULL;
    (void) curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &req);

    if (req == NULL) {
        return -1;      /* not ours: cannot happen */
    }

    /* nginx logged the shortage; the watch logs its failure */
    (void) ngx_tce_consul_request_local_error(req,
               "no free connection in this worker (worker_connections)");

    if (!ctx->starved.posted) {
        ngx_post_event(&ctx->starved, &ngx_posted_events);
    }

    return 0;
}

/* CURLMOPT_TIMERFUNCTION: curl wants to be called in timeout_ms */

int
ngx_tce_consul_timer(CURLM *multi, long timeout_ms, void *userp)
{
    ngx_tce_consul_ctx_t *ctx = userp;

    if (timeout_ms < 0) {
        if (ctx->curl_timer.timer_set) {
            ngx_del_timer(&ctx->curl_timer);
        }

        return 0;
    }

    ngx_tce_consul_timer_set(&ctx->curl_timer, (ngx_msec_t) timeout_ms);

    return 0;
}

void
ngx_tce_consul_curl_timer(ngx_event_t *ev)
{
    ngx_tce_consul_action(ev->data, CURL_SOCKET_TIMEOUT, 0);
}

static void
ngx_tce_consul_event(ngx_event_t *ev)
{
    curl_socket_t           s;
    ngx_connection_t       *c;
    ngx_tce_consul_ctx_t   *ctx;
    ngx_tce_consul_sock_t  *sock;

    c = ev->data;
    sock = c->data;
    ctx = sock->ctx;

    if (c->close) {
        /* ngx_close_idle_connections(): the worker is shutting down */
        ngx_tce_consul_watch_exit(ctx->cmcf);
        return;
    }

    /* c may be freed by curl's callbacks: read what is needed first */
    s = sock->s;

    ngx_tce_consul_action(ctx, s,
                          ev->write ? CURL_CSELECT_OUT : CURL_CSELECT_IN);
}

static void
ngx_tce_consul_action(ngx_tce_consul_ctx_t *ctx, curl_socket_t s, int flags)
{
    int        running;
    CURLMcode  rc;

    if (ctx->multi == NULL) {
        return;
    }

    rc = curl_multi_socket_action(ctx->multi, s, flags, &running);

    if (rc != CURLM_OK) {
        ngx_log_error(NGX_LOG_ERR, ctx->log, 0,
                      "tce consul: curl_multi_socket_action() failed: %s",
                      curl_multi_strerror(rc));
    }

    ngx_tce_consul_check(ctx);
}

/*
 * CURLOPT_CLOSESOCKETFUNCTION: a socket curl still had us watch (no
 * CURL_POLL_REMOVE came first) loses its events before it is closed.
 */
int
ngx_tce_consul_close(void *clientp, curl_socket_t s)
{
    ngx_tce_consul_ctx_t *ctx = clientp;

    ngx_uint_t         i;
    ngx_connection_t  **cp;

    cp = ctx->conns.elts;

    for (i = 0; i < ctx->conns.nelts; i++) {
        if (((ngx_tce_consul_sock_t *) cp[i]->data)->s == s) {
            if (ctx->multi) {
                curl_multi_assign(ctx->multi, s, NULL);
            }

            ngx_tce_consul_conn_free(ctx, cp[i]);
            break;
        }
    }

    return close(s);
}

void
ngx_tce_consul_conn_free(ngx_tce_consul_ctx_t *ctx, ngx_connection_t *c)
{
    ngx_uint_t         i;
    ngx_connection_t  **cp;

    cp = ctx->conns.elts;

    for (i = 0; i < ctx->conns.nelts; i++) {
        if (cp[i] == c) {
            cp[i] = cp[--ctx->conns.nelts];
            break;
        }
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    /* c->fd is our dup(): open whatever curl did with its socket */

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_free(c->data);
    ngx_free_connection(c);

    if (close(c->fd) == -1) {
        ngx_log_error(NGX_LOG_ALERT, ctx->log, ngx_socket_errno,
                      "tce consul: close() of a socket failed");
    }

    c->fd = (ngx_socket_t) -1;
}

void
ngx_tce_consul_event_init(ngx_event_t *ev, ngx_event_handler_pt handler,
    void *data, ngx_log_t *log)
{
    ev->handler = handler;
    ev->data = data;
    ev->log = log;

    /* none of them keeps an exiting worker alive */
    ev->cancelable = 1;
}

/* ngx_add_timer() keeps a set timer within 300 ms of the new one */

void
ngx_tce_consul_timer_set(ngx_event_t *ev, ngx_msec_t ms)
{
    if (ev->timer_set) {
        ngx_del_timer(ev);
    }

    ngx_add_timer(ev, ms);
}
