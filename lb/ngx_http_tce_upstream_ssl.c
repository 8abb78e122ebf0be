/*
 * TLS upstreams (proxy_pass https://, grpc_pass grpcs://): session
 * reuse per instance.
 *
 * nginx asks the balancer for a session before each handshake to an
 * upstream (peer.set_session) and hands it the session the server gave
 * (peer.save_session), as long as proxy_ssl_session_reuse is on (the
 * default).  Each worker keeps the last session of each instance on
 * the instance's peer in its current view: a request that started on
 * an older view finds the same instance (id and address) there.  The
 * session is carried across rebuilds with the instance, and freed when
 * the instance leaves or moves (ngx_http_tce_upstream_carry.c) or the
 * view goes.  Verification (proxy_ssl_verify, proxy_ssl_name,
 * proxy_ssl_trusted_certificate) is nginx's own and needs nothing here.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_upstream.h"


#if (NGX_HTTP_SSL)


static ngx_http_tce_upstream_peer_t *ngx_http_tce_upstream_ssl_peer(
    ngx_http_tce_upstream_peer_data_t *pd);


ngx_int_t
ngx_http_tce_upstream_set_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_tce_upstream_peer_data_t  *pd = data;

    ngx_http_tce_upstream_peer_t  *peer;

    peer = ngx_http_tce_upstream_ssl_peer(pd);

    if (peer == NULL || peer->ssl_session == NULL) {
        return NGX_OK;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "tce set session: %p", peer->ssl_session);

    /* SSL_set_session() takes its own reference */
    return ngx_ssl_set_session(pc->connection, peer->ssl_session);
}


void
ngx_http_tce_upstream_save_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_tce_upstream_peer_data_t  *pd = data;

    ngx_ssl_session_t             *session;
    ngx_http_tce_upstream_peer_t  *peer;

    peer = ngx_http_tce_upstream_ssl_peer(pd);

    if (peer == NULL) {
        return;
    }

    session = ngx_ssl_get_session(pc->connection);

    if (session == NULL) {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "tce save session: %p", session);

    if (peer->ssl_session) {
        ngx_ssl_free_session(peer->ssl_session);
    }

    peer->ssl_session = session;
}


void
ngx_http_tce_upstream_ssl_move(ngx_http_tce_upstream_peer_t *p,
    ngx_http_tce_upstream_peer_t *o)
{
    if (o->ssl_session == NULL) {
        return;
    }

    if (p == NULL) {
        ngx_ssl_free_session(o->ssl_session);

    } else {
        if (p->ssl_session) {
            ngx_ssl_free_session(p->ssl_session);
        }

        p->ssl_session = o->ssl_session;
    }

    o->ssl_session = NULL;
}


/*
 * The peer whose session the request's current attempt uses: the same
 * instance in the worker's current view; NULL between attempts, or if
 * the instance left the registry or moved since the request started.
 */
static ngx_http_tce_upstream_peer_t *
ngx_http_tce_upstream_ssl_peer(ngx_http_tce_upstream_peer_data_t *pd)
{
    ngx_http_tce_upstream_view_t  *view;

    if (pd->current == NULL) {
        return NULL;
    }

    view = pd->conf->view;

    if (view == pd->view) {
        return pd->current;
    }

    if (view == NULL) {
        return NULL;
    }

    return ngx_http_tce_upstream_same_peer(view, pd->current);
}


#endif
