/*
 * A worker's per-instance state that outlives a read view: the idle
 * connections of tce_keepalive and the TLS sessions of https/grpcs
 * upstreams.  It lives on the peers of the worker's current view; a
 * rebuild moves it to the same instance (id and address) of the new
 * view, and closes or frees what belongs to an instance that left or
 * moved, before the old view can be freed (it may live on for the
 * requests still using it, but holds none of this state).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_upstream.h"


static ngx_int_t ngx_http_tce_upstream_same_addr(
    ngx_http_tce_upstream_peer_t *p, ngx_http_tce_upstream_peer_t *o);
static ngx_uint_t ngx_http_tce_upstream_holds(
    ngx_http_tce_upstream_peer_t *peer);


void
ngx_http_tce_upstream_carry(ngx_http_tce_upstream_view_t *view,
    ngx_http_tce_upstream_view_t *old)
{
    ngx_int_t                      c;
    ngx_uint_t                     i, j;
    ngx_http_tce_upstream_peer_t  *p, *o;

    j = 0;

    for (i = 0; i < old->npeers; i++) {
        o = &old->peers[i];

        if (!ngx_http_tce_upstream_holds(o)) {
            continue;
        }

        p = NULL;

        /* both views are sorted by id: one merge pass */
        while (j < view->npeers) {
            c = ngx_strcmp(view->peers[j].inst.id, o->inst.id);

            if (c == 0 && ngx_http_tce_upstream_same_addr(&view->peers[j], o)) {
                p = &view->peers[j];
            }

            if (c >= 0) {
                break;
            }

            j++;
        }

        ngx_http_tce_upstream_keepalive_move(p, o);

#if (NGX_HTTP_SSL)
        ngx_http_tce_upstream_ssl_move(p, o);
#endif
    }
}


void
ngx_http_tce_upstream_drop(ngx_http_tce_upstream_view_t *view)
{
    ngx_uint_t  i;

    for (i = 0; i < view->npeers; i++) {
        ngx_http_tce_upstream_keepalive_drop(&view->peers[i]);

#if (NGX_HTTP_SSL)
        ngx_http_tce_upstream_ssl_move(NULL, &view->peers[i]);
#endif
    }
}


ngx_http_tce_upstream_peer_t *
ngx_http_tce_upstream_same_peer(ngx_http_tce_upstream_view_t *view,
    ngx_http_tce_upstream_peer_t *peer)
{
    ngx_int_t                      c;
    ngx_uint_t                     lo, hi, mid;
    ngx_http_tce_upstream_peer_t  *p;

    lo = 0;
    hi = view->npeers;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        p = &view->peers[mid];

        c = ngx_strcmp(peer->inst.id, p->inst.id);

        if (c == 0) {
            return ngx_http_tce_upstream_same_addr(p, peer) ? p : NULL;
        }

        if (c < 0) {
            hi = mid;

        } else {
            lo = mid + 1;
        }
    }

    return NULL;
}


static ngx_int_t
ngx_http_tce_upstream_same_addr(ngx_http_tce_upstream_peer_t *p,
    ngx_http_tce_upstream_peer_t *o)
{
    return ngx_cmp_sockaddr(&p->inst.sockaddr.sa, p->inst.socklen,
                            &o->inst.sockaddr.sa, o->inst.socklen, 1)
           == NGX_OK;
}


static ngx_uint_t
ngx_http_tce_upstream_holds(ngx_http_tce_upstream_peer_t *peer)
{
#if (NGX_HTTP_SSL)
    if (peer->ssl_session) {
        return 1;
    }
#endif

    return !ngx_queue_empty(&peer->idle);
}
