/*
 * libcurl's multi interface on nginx events (see ngx_tce_curl.h).
 *
 * Sockets: curl says which to watch (CURLMOPT_SOCKETFUNCTION); each
 * gets an ngx_connection_t only while curl watches it, holding a dup()
 * of curl's socket, never curl's own fd: curl sometimes closes a socket
 * before it says CURL_POLL_REMOVE, and the number may be reused at
 * once; with a descriptor of our own, events are always deleted on an
 * open fd that is ours.  A socket that gets no connection (the worker's
 * worker_connections are taken) fails its transfer only: returning -1
 * from the callback would abort every transfer of the multi handle for
 * good, so the transfer is listed and a posted event completes it as
 * failed, outside curl's calls.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_tce_curl.h"


typedef struct {
    ngx_tce_curl_t           *cu;
    curl_socket_t             s;
} ngx_tce_curl_sock_t;


static int ngx_tce_curl_socket(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp);
static ngx_connection_t *ngx_tce_curl_conn_get(ngx_tce_curl_t *cu,
    curl_socket_t s);
static void ngx_tce_curl_conn_free(ngx_tce_curl_t *cu, ngx_connection_t *c);
static int ngx_tce_curl_starve(ngx_tce_curl_t *cu, CURL *easy);
static void ngx_tce_curl_starved(ngx_event_t *ev);
static int ngx_tce_curl_timer(CURLM *multi, long timeout_ms, void *userp);
static void ngx_tce_curl_on_timer(ngx_event_t *ev);
static void ngx_tce_curl_event(ngx_event_t *ev);
static void ngx_tce_curl_action(ngx_tce_curl_t *cu, curl_socket_t s,
    int flags);
static void ngx_tce_curl_check(ngx_tce_curl_t *cu);
static int ngx_tce_curl_close(void *clientp, curl_socket_t s);
static ngx_uint_t ngx_tce_curl_forget(ngx_array_t *a, CURL *easy);


ngx_tce_curl_t *
ngx_tce_curl_create(ngx_pool_t *pool, ngx_log_t *log, const char *name,
    ngx_tce_curl_done_pt done, void *data)
{
    ngx_tce_curl_t  *cu;

    cu = ngx_pcalloc(pool, sizeof(ngx_tce_curl_t));
    if (cu == NULL) {
        return NULL;
    }

    cu->log = log;
    cu->name = name;
    cu->done = done;
    cu->data = data;

    if (ngx_array_init(&cu->conns, pool, 4, sizeof(ngx_connection_t *))
        != NGX_OK
        || ngx_array_init(&cu->easies, pool, 4, sizeof(CURL *)) != NGX_OK
        || ngx_array_init(&cu->failed, pool, 4, sizeof(CURL *)) != NGX_OK)
    {
        return NULL;
    }

    cu->timer.handler = ngx_tce_curl_on_timer;
    cu->timer.data = cu;
    cu->timer.log = log;
    cu->timer.cancelable = 1;

    cu->starved.handler = ngx_tce_curl_starved;
    cu->starved.data = cu;
    cu->starved.log = log;
    cu->starved.cancelable = 1;

    cu->multi = curl_multi_init();

    if (cu->multi == NULL
        || curl_multi_setopt(cu->multi, CURLMOPT_SOCKETFUNCTION,
                             ngx_tce_curl_socket)
           != CURLM_OK
        || curl_multi_setopt(cu->multi, CURLMOPT_SOCKETDATA, cu) != CURLM_OK
        || curl_multi_setopt(cu->multi, CURLMOPT_TIMERFUNCTION,
                             ngx_tce_curl_timer)
           != CURLM_OK
        || curl_multi_setopt(cu->multi, CURLMOPT_TIMERDATA, cu) != CURLM_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0, "%s: curl_multi_init() failed",
                      name);

        if (cu->multi) {
            (void) curl_multi_cleanup(cu->multi);
            cu->multi = NULL;
        }

        return NULL;
    }

    return cu;
}


ngx_int_t
ngx_tce_curl_add(ngx_tce_curl_t *cu, CURL *easy)
{
    CURL       **ep;
    CURLMcode    rc;

    if (cu->multi == NULL) {
        return NGX_ERROR;
    }

    if (curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION,
                            ngx_tce_curl_close)
           != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, cu) != CURLE_OK)
    {
        ngx_log_error(NGX_LOG_ERR, cu->log, 0,
                      "%s: curl_easy_setopt() failed", cu->name);
        return NGX_ERROR;
    }

    ep = ngx_array_push(&cu->easies);
    if (ep == NULL) {
        return NGX_ERROR;
    }

    *ep = easy;

    rc = curl_multi_add_handle(cu->multi, easy);

    if (rc != CURLM_OK) {
        cu->easies.nelts--;
        ngx_log_error(NGX_LOG_ERR, cu->log, 0,
                      "%s: curl_multi_add_handle() failed: %s", cu->name,
                      curl_multi_strerror(rc));
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_tce_curl_remove(ngx_tce_curl_t *cu, CURL *easy)
{
    if (ngx_tce_curl_forget(&cu->easies, easy) && cu->multi) {
        (void) curl_multi_remove_handle(cu->multi, easy);
    }

    (void) ngx_tce_curl_forget(&cu->failed, easy);
}


void
ngx_tce_curl_destroy(ngx_tce_curl_t *cu)
{
    CURL  *easy;

    if (cu->multi == NULL) {
        return;
    }

    while (cu->easies.nelts) {
        easy = ((CURL **) cu->easies.elts)[0];
        ngx_tce_curl_remove(cu, easy);
        cu->done(cu, easy, CURLE_ABORTED_BY_CALLBACK, "the worker exits");
    }

    if (cu->timer.timer_set) {
        ngx_del_timer(&cu->timer);
    }

    if (cu->starved.posted) {
        ngx_delete_posted_event(&cu->starved);
    }

    /* closes curl's cached connections: our close callback frees ours */
    (void) curl_multi_cleanup(cu->multi);
    cu->multi = NULL;

    while (cu->conns.nelts) {
        ngx_tce_curl_conn_free(cu, ((ngx_connection_t **) cu->conns.elts)[0]);
    }
}


/* removes easy from a, keeping the order; 1 if it was there */
static ngx_uint_t
ngx_tce_curl_forget(ngx_array_t *a, CURL *easy)
{
    CURL        **ep;
    ngx_uint_t    i;

    ep = a->elts;

    for (i = 0; i < a->nelts; i++) {
        if (ep[i] == easy) {
            ngx_memmove(&ep[i], &ep[i + 1],
                        (a->nelts - i - 1) * sizeof(CURL *));
            a->nelts--;
            return 1;
        }
    }

    return 0;
}


/* CURLMOPT_SOCKETFUNCTION: which events curl wants on socket s */
static int
ngx_tce_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp,
    void *socketp)
{
    ngx_tce_curl_t *cu = userp;

    ngx_connection_t  *c;

    c = socketp;

    if (what == CURL_POLL_REMOVE) {
        if (c) {
            curl_multi_assign(cu->multi, s, NULL);
            ngx_tce_curl_conn_free(cu, c);
        }

        return 0;
    }

    if (c == NULL) {
        c = ngx_tce_curl_conn_get(cu, s);

        if (c == NULL) {
            return ngx_tce_curl_starve(cu, easy);
        }

        curl_multi_assign(cu->multi, s, c);
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

    curl_multi_assign(cu->multi, s, NULL);
    ngx_tce_curl_conn_free(cu, c);

    return ngx_tce_curl_starve(cu, easy);
}


static ngx_connection_t *
ngx_tce_curl_conn_get(ngx_tce_curl_t *cu, curl_socket_t s)
{
    ngx_socket_t          fd;
    ngx_connection_t     *c, **cp;
    ngx_tce_curl_sock_t  *sock;

    cp = ngx_array_push(&cu->conns);
    if (cp == NULL) {
        return NULL;
    }

    sock = ngx_alloc(sizeof(ngx_tce_curl_sock_t), cu->log);
    if (sock == NULL) {
        cu->conns.nelts--;
        return NULL;
    }

    fd = dup(s);

    if (fd == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ERR, cu->log, ngx_errno, "%s: dup() failed",
                      cu->name);
        ngx_free(sock);
        cu->conns.nelts--;
        return NULL;
    }

    /* worker_connections exhausted: NULL (nginx logs it) */
    c = ngx_get_connection(fd, cu->log);
    if (c == NULL) {
        (void) close(fd);
        ngx_free(sock);
        cu->conns.nelts--;
        return NULL;
    }

    *cp = c;

    sock->cu = cu;
    sock->s = s;
    c->data = sock;
    c->log = cu->log;
    c->read->log = cu->log;
    c->write->log = cu->log;
    c->read->handler = ngx_tce_curl_event;
    c->write->handler = ngx_tce_curl_event;

    /* closed at once when the worker starts shutting down */
    c->idle = 1;

    return c;
}


static void
ngx_tce_curl_conn_free(ngx_tce_curl_t *cu, ngx_connection_t *c)
{
    ngx_uint_t          i;
    ngx_connection_t  **cp;

    cp = cu->conns.elts;

    for (i = 0; i < cu->conns.nelts; i++) {
        if (cp[i] == c) {
            cp[i] = cp[--cu->conns.nelts];
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
        ngx_log_error(NGX_LOG_ALERT, cu->log, ngx_socket_errno,
                      "%s: close() of a socket failed", cu->name);
    }

    c->fd = (ngx_socket_t) -1;
}


/* a transfer whose socket cannot be watched: failed after the callback */
static int
ngx_tce_curl_starve(ngx_tce_curl_t *cu, CURL *easy)
{
    CURL       **ep;
    ngx_uint_t   i;

    ep = cu->failed.elts;

    for (i = 0; i < cu->failed.nelts; i++) {
        if (ep[i] == easy) {
            return 0;
        }
    }

    ep = ngx_array_push(&cu->failed);
    if (ep == NULL) {
        return -1;
    }

    *ep = easy;

    if (!cu->starved.posted) {
        ngx_post_event(&cu->starved, &ngx_posted_events);
    }

    return 0;
}


static void
ngx_tce_curl_starved(ngx_event_t *ev)
{
    ngx_tce_curl_t *cu = ev->data;

    CURL  *easy;

    while (cu->failed.nelts) {
        easy = ((CURL **) cu->failed.elts)[0];
        ngx_tce_curl_remove(cu, easy);
        cu->done(cu, easy, CURLE_COULDNT_CONNECT,
                 "no free connection in this worker (worker_connections)");
    }
}


/* CURLMOPT_TIMERFUNCTION: curl wants to be called in timeout_ms */
static int
ngx_tce_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    ngx_tce_curl_t *cu = userp;

    if (cu->timer.timer_set) {
        ngx_del_timer(&cu->timer);
    }

    if (timeout_ms >= 0) {
        ngx_add_timer(&cu->timer, (ngx_msec_t) timeout_ms);
    }

    return 0;
}


static void
ngx_tce_curl_on_timer(ngx_event_t *ev)
{
    ngx_tce_curl_action(ev->data, CURL_SOCKET_TIMEOUT, 0);
}


static void
ngx_tce_curl_event(ngx_event_t *ev)
{
    curl_socket_t          s;
    ngx_tce_curl_t        *cu;
    ngx_connection_t      *c;
    ngx_tce_curl_sock_t   *sock;

    c = ev->data;
    sock = c->data;
    cu = sock->cu;

    if (c->close) {
        /* ngx_close_idle_connections(): the worker is shutting down */
        if (cu->exiting) {
            cu->exiting(cu);

        } else {
            ngx_tce_curl_destroy(cu);
        }

        return;
    }

    /* c may be freed by curl's callbacks: read what is needed first */
    s = sock->s;

    ngx_tce_curl_action(cu, s, ev->write ? CURL_CSELECT_OUT : CURL_CSELECT_IN);
}


static void
ngx_tce_curl_action(ngx_tce_curl_t *cu, curl_socket_t s, int flags)
{
    int        running;
    CURLMcode  rc;

    if (cu->multi == NULL) {
        return;
    }

    rc = curl_multi_socket_action(cu->multi, s, flags, &running);

    if (rc != CURLM_OK) {
        ngx_log_error(NGX_LOG_ERR, cu->log, 0,
                      "%s: curl_multi_socket_action() failed: %s", cu->name,
                      curl_multi_strerror(rc));
    }

    ngx_tce_curl_check(cu);
}


/* finished transfers go to their owner */
static void
ngx_tce_curl_check(ngx_tce_curl_t *cu)
{
    int        left;
    CURL      *easy;
    CURLMsg   *msg;
    CURLcode   result;

    while (cu->multi && (msg = curl_multi_info_read(cu->multi, &left))) {

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        easy = msg->easy_handle;
        result = msg->data.result;

        if (!ngx_tce_curl_forget(&cu->easies, easy)) {
            continue;
        }

        /* failed already (starved): its posted event is moot for it */
        (void) ngx_tce_curl_forget(&cu->failed, easy);
        (void) curl_multi_remove_handle(cu->multi, easy);

        cu->done(cu, easy, result,
                 result == CURLE_OK ? NULL : curl_easy_strerror(result));
    }
}


/* CURLOPT_CLOSESOCKETFUNCTION: events off before curl closes s */
static int
ngx_tce_curl_close(void *clientp, curl_socket_t s)
{
    ngx_tce_curl_t *cu = clientp;

    ngx_uint_t          i;
    ngx_connection_t  **cp;

    cp = cu->conns.elts;

    for (i = 0; i < cu->conns.nelts; i++) {
        if (((ngx_tce_curl_sock_t *) cp[i]->data)->s == s) {
            if (cu->multi) {
                curl_multi_assign(cu->multi, s, NULL);
            }

            ngx_tce_curl_conn_free(cu, cp[i]);
            break;
        }
    }

    return close(s);
}
