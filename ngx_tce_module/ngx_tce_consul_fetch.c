/*
 * Change detection for the Consul watcher: what keeps the number of
 * connections to Consul small whatever the number of services.
 *
 * Up to NGX_TCE_CONSUL_DIRECT_MAX services named in nginx.conf, each
 * has a blocking query of its own (ngx_tce_consul_watch.c).  In
 * catalog mode, or beyond that count, no service has one: a blocking
 * query on /v1/health/state/any (every check of the datacenter, with
 * its ServiceName and ModifyIndex; it returns when any check changes,
 * appears or goes) is folded into one digest per service
 * (ngx_tce_consul_detect.c), and the services whose digest differs
 * from the one of their last fetch are queued; at most
 * NGX_TCE_CONSUL_FETCHES non-blocking health queries run at once, on
 * connections libcurl reuses.  In catalog mode the blocking query on
 * /v1/catalog/services adds and drops services.
 *
 * What no check reveals (an instance's address or port changed, an
 * instance registered without a check) is caught by the resync: every
 * watched service is fetched again each resync= (default 5 min).  A
 * change of a node check refetches every service.  The digests of the
 * last fetch live in the zone (disc_digest), so a reload or a takeover
 * fetches only what changed meanwhile.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_tce_consul.h"
#include "ngx_tce_consul_watch.h"
#include "ngx_tce_consul_detect.h"


void
ngx_tce_consul_enqueue(ngx_tce_consul_watch_t *w)
{
    ngx_tce_consul_ctx_t  *ctx;

    ctx = w->ctx;

    if (w->queued || w->req || w->job
        || w->kind != NGX_TCE_CONSUL_W_SERVICE)
    {
        return;
    }

    if (w->timer.timer_set) {
        /* a backoff or a rate limit runs: the timer enqueues it */
        return;
    }

    ngx_queue_insert_tail(&ctx->pending, &w->queue);
    w->queued = 1;

    ngx_tce_consul_pump(ctx);
}


void
ngx_tce_consul_unqueue(ngx_tce_consul_watch_t *w)
{
    if (w->queued) {
        ngx_queue_remove(&w->queue);
        w->queued = 0;
    }

    if (w->fetching) {
        w->fetching = 0;
        w->ctx->nfetch--;
    }
}


void
ngx_tce_consul_pump(ngx_tce_consul_ctx_t *ctx)
{
    ngx_queue_t             *q;
    ngx_tce_consul_watch_t  *w;

    while (ctx->multi
           && ctx->nfetch < NGX_TCE_CONSUL_FETCHES
           && !ngx_queue_empty(&ctx->pending))
    {
        q = ngx_queue_head(&ctx->pending);
        ngx_queue_remove(q);

        w = ngx_queue_data(q, ngx_tce_consul_watch_t, queue);
        w->queued = 0;

        /* a fetch asks for the current state: never a blocking query */
        w->index = 0;

        w->asked = w->digest;
        ngx_tce_consul_query(w);

        if (w->req) {
            w->fetching = 1;
            ctx->nfetch++;
        }
    }
}


void
ngx_tce_consul_fetch_done(ngx_tce_consul_watch_t *w)
{
    if (w->fetching) {
        w->fetching = 0;
        w->ctx->nfetch--;
    }
}


/*
 * A fetch of w applied: its checks are those of w->asked; when another
 * change was seen while it ran, it goes again.
 */
void
ngx_tce_consul_fetched(ngx_tce_consul_watch_t *w)
{
    if (w->asked) {
        w->svc->disc_digest = w->asked;
    }

    if (w->digest != w->asked) {
        w->asked = w->digest;
        ngx_tce_consul_enqueue(w);
    }
}


/* the digest the last checks answer gives svc, 0 when none is known */

uint64_t
ngx_tce_consul_known_digest(ngx_tce_consul_ctx_t *ctx,
    ngx_tce_service_t *svc)
{
    if (ctx->digests == NULL) {
        return 0;
    }

    return ngx_tce_consul_digest(ctx->digests, (char *) svc->name);
}


void
ngx_tce_consul_digests_drop(ngx_tce_consul_ctx_t *ctx)
{
    if (ctx->digests) {
        ngx_tce_consul_digests_free(ctx->digests);
        ngx_free(ctx->digests);
        ctx->digests = NULL;
    }
}


/*
 * A parsed /v1/health/state/any answer (taken: *parsed is zeroed):
 * queues every watched service whose checks differ from those of its
 * last fetch (all of them when a node check changed).  O(n log n) in
 * the checks and services.
 */
ngx_int_t
ngx_tce_consul_changes(ngx_tce_consul_watch_t *w,
    ngx_tce_consul_digests_t *parsed, char *err, size_t errlen)
{
    uint64_t                   d;
    ngx_uint_t                 all, n;
    ngx_tce_consul_ctx_t      *ctx;
    ngx_tce_consul_watch_t    *sw;
    ngx_tce_consul_digests_t  *digests;

    ctx = w->ctx;

    digests = ngx_alloc(sizeof(ngx_tce_consul_digests_t), ctx->log);
    if (digests == NULL) {
        ngx_snprintf((u_char *) err, errlen, "out of memory%Z");
        return NGX_ERROR;
    }

    *digests = *parsed;
    ngx_memzero(parsed, sizeof(ngx_tce_consul_digests_t));

    ngx_tce_consul_digests_drop(ctx);
    ctx->digests = digests;

    all = digests->nodes != ctx->sh->consul_nodes;
    ctx->sh->consul_nodes = digests->nodes;

    n = 0;

    for (sw = ctx->watches; sw; sw = sw->next) {
        if (sw->kind != NGX_TCE_CONSUL_W_SERVICE) {
            continue;
        }

        d = ngx_tce_consul_digest(digests, (char *) sw->svc->name);

        if (all || d != sw->svc->disc_digest) {
            sw->digest = d;
            ngx_tce_consul_enqueue(sw);
            n++;
        }
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ctx->log, 0,
                   "tce consul: %uz checks, %ui service(s) to fetch%s",
                   digests->nchecks, n, all ? " (node checks changed)" : "");

    return NGX_OK;
}


void
ngx_tce_consul_resync(ngx_event_t *ev)
{
    ngx_tce_consul_ctx_t *ctx = ev->data;

    ngx_tce_consul_watch_t  *w;

    if (ctx->multi == NULL) {
        return;
    }

    for (w = ctx->watches; w; w = w->next) {
        if (w->kind == NGX_TCE_CONSUL_W_SERVICE) {
            w->digest = ngx_tce_consul_known_digest(ctx, w->svc);
            ngx_tce_consul_enqueue(w);
        }
    }

    ngx_tce_consul_timer_set(&ctx->resync, ctx->cmcf->resync);
}
