/*
 * tce_keepalive: idle upstream connections cached per instance.
 *
 *   upstream backend {
 *       tce_service demo.web.api;
 *       tce_keepalive 64 [timeout=60s] [requests=1000];
 *   }
 *
 * nginx's keepalive module keeps one queue per upstream and scans it
 * for the chosen address on every get(): O(cached connections).  The
 * balancer owns its instances, so here each cached connection sits in
 * two queues at once: the worker's LRU queue of the upstream (bounded
 * by <connections>, the least recently used one evicted in O(1)) and
 * the idle queue of its instance in the worker's current view (found
 * in O(1) by get()).  Conditions for caching a connection are nginx's.
 *
 * Lifetimes: connections are cached only on peers of the current view.
 * A rebuild moves them to the new view by instance id (same address,
 * still routable) and closes the others before the old view can be
 * freed (ngx_http_tce_upstream_carry.c); a view being freed closes
 * whatever still hangs off it.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_upstream.h"


typedef struct {
    ngx_queue_t                        lru;     /* ka->cache or ka->free */
    ngx_queue_t                        link;    /* peer->idle */
    ngx_http_tce_upstream_keepalive_t *ka;
    ngx_http_tce_upstream_peer_t      *peer;
    ngx_connection_t                  *connection;
} ngx_http_tce_upstream_keepalive_item_t;


struct ngx_http_tce_upstream_keepalive_s {
    ngx_uint_t                         max_cached;
    ngx_msec_t                         timeout;
    ngx_uint_t                         requests;
    ngx_queue_t                        cache;   /* most recent first */
    ngx_queue_t                        free;
};


static ngx_http_tce_upstream_peer_t *ngx_http_tce_upstream_keepalive_peer(
    ngx_http_tce_upstream_peer_data_t *pd,
    ngx_http_tce_upstream_peer_t *peer);
static void ngx_http_tce_upstream_keepalive_release(
    ngx_http_tce_upstream_keepalive_item_t *item);
static void ngx_http_tce_upstream_keepalive_dummy_handler(ngx_event_t *ev);
static void ngx_http_tce_upstream_keepalive_close_handler(ngx_event_t *ev);
static void ngx_http_tce_upstream_keepalive_close(ngx_connection_t *c);


char *
ngx_http_tce_upstream_keepalive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_tce_upstream_srv_conf_t *ucf = conf;

    ngx_int_t                           n;
    ngx_str_t                          *value, s;
    ngx_msec_t                          timeout;
    ngx_uint_t                          i;
    ngx_http_tce_upstream_keepalive_t  *ka;

    if (ucf->keepalive) {
        return "is duplicate";
    }

    if (ucf->service_name.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tce_keepalive\" must come after "
                           "\"tce_service\" in the upstream");
        return NGX_CONF_ERROR;
    }

    ka = ngx_pcalloc(cf->pool, sizeof(ngx_http_tce_upstream_keepalive_t));
    if (ka == NULL) {
        return NGX_CONF_ERROR;
    }

    ka->timeout = 60000;
    ka->requests = 1000;

    value = cf->args->elts;

    n = ngx_atoi(value[1].data, value[1].len);

    if (n == NGX_ERROR || n == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid number of connections \"%V\" in "
                           "\"tce_keepalive\": expected a number > 0",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    ka->max_cached = n;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            timeout = ngx_parse_time(&s, 0);

            if (timeout == (ngx_msec_t) NGX_ERROR || timeout == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in \"tce_keepalive\": "
                                   "expected a time > 0", &value[i]);
                return NGX_CONF_ERROR;
            }

            ka->timeout = timeout;
            continue;
        }

        if (ngx_strncmp(value[i].data, "requests=", 9) == 0) {
            n = ngx_atoi(value[i].data + 9, value[i].len - 9);

            if (n == NGX_ERROR || n == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in \"tce_keepalive\": "
                                   "expected a number > 0", &value[i]);
                return NGX_CONF_ERROR;
            }

            ka->requests = n;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"tce_keepalive\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    ucf->keepalive = ka;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_tce_upstream_keepalive_init(ngx_conf_t *cf,
    ngx_http_tce_upstream_keepalive_t *ka)
{
    ngx_uint_t                               i;
    ngx_http_tce_upstream_keepalive_item_t  *items;

    /* each worker gets its own copy of the items with the fork */

    items = ngx_pcalloc(cf->pool, ka->max_cached
                        * sizeof(ngx_http_tce_upstream_keepalive_item_t));
    if (items == NULL) {
        return NGX_ERROR;
    }

    ngx_queue_init(&ka->cache);
    ngx_queue_init(&ka->free);

    for (i = 0; i < ka->max_cached; i++) {
        items[i].ka = ka;
        ngx_queue_insert_head(&ka->free, &items[i].lru);
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_tce_upstream_keepalive_get(ngx_peer_connection_t *pc,
    ngx_http_tce_upstream_peer_t *peer)
{
    ngx_queue_t                             *q;
    ngx_connection_t                        *c;
    ngx_http_tce_upstream_keepalive_item_t  *item;

    /* the instance's most recently cached connection */

    q = ngx_queue_head(&peer->idle);
    item = ngx_queue_data(q, ngx_http_tce_upstream_keepalive_item_t, link);

    ngx_queue_remove(&item->link);
    ngx_queue_remove(&item->lru);
    ngx_queue_insert_head(&item->ka->free, &item->lru);

    c = item->connection;
    item->connection = NULL;
    item->peer = NULL;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "tce keepalive: using connection %p", c);

    c->idle = 0;
    c->sent = 0;
    c->data = NULL;
    c->log = pc->log;
    c->read->log = pc->log;
    c->write->log = pc->log;
    c->pool->log = pc->log;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    pc->connection = c;
    pc->cached = 1;

    return NGX_DONE;
}


void
ngx_http_tce_upstream_keepalive_free(ngx_peer_connection_t *pc,
    ngx_http_tce_upstream_peer_data_t *pd,
    ngx_http_tce_upstream_peer_t *peer, ngx_uint_t state)
{
    ngx_queue_t                             *q;
    ngx_connection_t                        *c;
    ngx_http_upstream_t                     *u;
    ngx_http_tce_upstream_keepalive_t       *ka;
    ngx_http_tce_upstream_keepalive_item_t  *item;

    ka = pd->conf->keepalive;
    u = pd->request->upstream;
    c = pc->connection;

    /* the conditions of nginx's keepalive module */

    if (state & NGX_PEER_FAILED
        || c == NULL
        || c->read->eof
        || c->read->error
        || c->read->timedout
        || c->write->error
        || c->write->timedout)
    {
        return;
    }

    if (c->requests >= ka->requests
        || !u->keepalive
        || !u->request_body_sent
        || ngx_terminate
        || ngx_exiting)
    {
        return;
    }

    peer = ngx_http_tce_upstream_keepalive_peer(pd, peer);

    if (peer == NULL) {
        return;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "tce keepalive: saving connection %p", c);

    if (ngx_queue_empty(&ka->free)) {
        /* full: the least recently used connection of any instance */
        q = ngx_queue_last(&ka->cache);
        item = ngx_queue_data(q, ngx_http_tce_upstream_keepalive_item_t,
                              lru);
        ngx_http_tce_upstream_keepalive_release(item);
    }

    q = ngx_queue_head(&ka->free);
    item = ngx_queue_data(q, ngx_http_tce_upstream_keepalive_item_t, lru);

    ngx_queue_remove(&item->lru);
    ngx_queue_insert_head(&ka->cache, &item->lru);
    ngx_queue_insert_head(&peer->idle, &item->link);

    item->peer = peer;
    item->connection = c;

    pc->connection = NULL;

    c->read->delayed = 0;
    ngx_add_timer(c->read, ka->timeout);

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->write->handler = ngx_http_tce_upstream_keepalive_dummy_handler;
    c->read->handler = ngx_http_tce_upstream_keepalive_close_handler;

    /* idle: closed at once when the worker starts a graceful exit */
    c->data = item;
    c->idle = 1;
    c->log = ngx_cycle->log;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;
    c->pool->log = ngx_cycle->log;

    if (c->read->ready) {
        ngx_http_tce_upstream_keepalive_close_handler(c->read);
    }
}


/*
 * The peer of the worker's current view a connection to peer may be
 * cached on: peer itself, or, for a request that started on a view
 * since rebuilt, the same instance in the current view.  NULL if it
 * left, moved, or is no longer routable (draining or down).
 */
static ngx_http_tce_upstream_peer_t *
ngx_http_tce_upstream_keepalive_peer(ngx_http_tce_upstream_peer_data_t *pd,
    ngx_http_tce_upstream_peer_t *peer)
{
    ngx_http_tce_upstream_view_t  *view;

    view = pd->conf->view;

    if (view == pd->view) {
        return peer;
    }

    if (view == NULL) {
        return NULL;
    }

    peer = ngx_http_tce_upstream_same_peer(view, peer);

    if (peer == NULL || ngx_tce_instance_weight(&peer->inst) == 0) {
        return NULL;
    }

    return peer;
}


void
ngx_http_tce_upstream_keepalive_move(ngx_http_tce_upstream_peer_t *p,
    ngx_http_tce_upstream_peer_t *o)
{
    ngx_queue_t                             *q;
    ngx_http_tce_upstream_keepalive_item_t  *item;

    if (ngx_queue_empty(&o->idle)) {
        return;
    }

    if (p == NULL || ngx_tce_instance_weight(&p->inst) == 0) {
        /* gone, moved to another address, or draining or down */
        ngx_http_tce_upstream_keepalive_drop(o);
        return;
    }

    for (q = ngx_queue_head(&o->idle);
         q != ngx_queue_sentinel(&o->idle);
         q = ngx_queue_next(q))
    {
        item = ngx_queue_data(q, ngx_http_tce_upstream_keepalive_item_t,
                              link);
        item->peer = p;
    }

    ngx_queue_add(&p->idle, &o->idle);
    ngx_queue_init(&o->idle);
}


void
ngx_http_tce_upstream_keepalive_drop(ngx_http_tce_upstream_peer_t *peer)
{
    ngx_queue_t                             *q;
    ngx_http_tce_upstream_keepalive_item_t  *item;

    while (!ngx_queue_empty(&peer->idle)) {
        q = ngx_queue_head(&peer->idle);
        item = ngx_queue_data(q, ngx_http_tce_upstream_keepalive_item_t,
                              link);
        ngx_http_tce_upstream_keepalive_release(item);
    }
}


/* closes the item's connection and gives the item back */
static void
ngx_http_tce_upstream_keepalive_release(
    ngx_http_tce_upstream_keepalive_item_t *item)
{
    ngx_connection_t  *c;

    c = item->connection;

    ngx_queue_remove(&item->link);
    ngx_queue_remove(&item->lru);
    ngx_queue_insert_head(&item->ka->free, &item->lru);

    item->connection = NULL;
    item->peer = NULL;

    ngx_http_tce_upstream_keepalive_close(c);
}


static void
ngx_http_tce_upstream_keepalive_dummy_handler(ngx_event_t *ev)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "tce keepalive: dummy handler");
}


/*
 * An idle connection became readable: the backend closed it (or sent
 * something it should not have), the idle timeout fired, or the worker
 * is exiting (c->close, set by ngx_close_idle_connections()).
 */
static void
ngx_http_tce_upstream_keepalive_close_handler(ngx_event_t *ev)
{
    int                n;
    char               buf[1];
    ngx_connection_t  *c;

    c = ev->data;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "tce keepalive: close handler");

    if (!c->close && !ev->timedout) {
        n = recv(c->fd, buf, 1, MSG_PEEK);

        if (n == -1 && ngx_socket_errno == NGX_EAGAIN) {
            ev->ready = 0;

            if (ngx_handle_read_event(ev, 0) == NGX_OK) {
                return;
            }
        }
    }

    ngx_http_tce_upstream_keepalive_release(c->data);
}


static void
ngx_http_tce_upstream_keepalive_close(ngx_connection_t *c)
{

#if (NGX_HTTP_SSL)

    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;
        c->ssl->no_send_shutdown = 1;

        if (ngx_ssl_shutdown(c) == NGX_AGAIN) {
            c->ssl->handler = ngx_http_tce_upstream_keepalive_close;
            return;
        }
    }

#endif

    ngx_destroy_pool(c->pool);
    ngx_close_connection(c);
}
