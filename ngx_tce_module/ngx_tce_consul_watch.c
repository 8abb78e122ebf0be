/*
 * The Consul watcher: one per nginx instance, run by the worker that
 * wins the election in the zone, driving libcurl's multi interface on
 * nginx events.
 *
 * Election: every worker runs a timer (NGX_TCE_CONSUL_TICK).  The
 * owner refreshes its heartbeat; any other worker takes ownership with
 * a compare-and-set when the owner is none, its heartbeat is older than
 * NGX_TCE_CONSUL_STALE or its pid is gone.  An exiting worker gives up
 * ownership and closes its Consul connections at once.
 *
 * Watches: one per service (plus the catalog in catalog mode), each
 * with at most one query in flight: a blocking query carrying the last
 * index, rate-limited, retried with backoff and jitter on errors.  A
 * good answer replaces the service's instance set in the zone; every
 * worker's view follows at its next request.  In catalog mode, or past
 * NGX_TCE_CONSUL_DIRECT_MAX services, the services' watches do not
 * block: a watch of every check says which changed, and those are
 * fetched a few at a time (ngx_tce_consul_fetch.c).  Either way at most
 * NGX_TCE_CONSUL_MAX_CONNS connections are open to Consul.
 *
 * URLs: the client moves to the next URL when one fails to answer or
 * answers 5xx; while it is not on the first, the first is probed every
 * NGX_TCE_CONSUL_FAILBACK ms (GET /v1/status/leader) and, once it
 * serves again, every query moves back to it.
 *
 * Sockets and timers: ngx_tce_consul_events.c.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_tce_consul.h"
#include "ngx_tce_consul_watch.h"
#include "ngx_tce_consul_parse.h"
#include "ngx_tce_consul_client.h"
#include "ngx_tce_consul_detect.h"


static void ngx_tce_consul_tick(ngx_event_t *ev);
static ngx_int_t ngx_tce_consul_start(ngx_tce_consul_ctx_t *ctx);
static void ngx_tce_consul_stop(ngx_tce_consul_ctx_t *ctx,
    ngx_uint_t release);
static ngx_tce_consul_watch_t *ngx_tce_consul_watch_add(
    ngx_tce_consul_ctx_t *ctx, ngx_tce_service_t *svc);
static ngx_tce_consul_watch_t *ngx_tce_consul_watch_find(
    ngx_tce_consul_ctx_t *ctx, ngx_tce_service_t *svc);
static ngx_int_t ngx_tce_consul_adopt(ngx_tce_consul_ctx_t *ctx,
    ngx_tce_service_t *svc);
static int ngx_tce_consul_watch_cmp(const void *one, const void *two);
static int ngx_tce_consul_watch_key(const void *key, const void *elt);
static void ngx_tce_consul_watch_free(ngx_tce_consul_watch_t *w);
static void ngx_tce_consul_watch_timer(ngx_event_t *ev);
static void ngx_tce_consul_status_error(ngx_tce_consul_watch_t *w,
    const char *text);
static const char *ngx_tce_consul_name(ngx_tce_consul_watch_t *w);
static uint32_t ngx_tce_consul_error_key(const char *error);
static void ngx_tce_consul_snapshot_later(ngx_tce_consul_ctx_t *ctx);
static void ngx_tce_consul_snapshot_timer(ngx_event_t *ev);
static void ngx_tce_consul_failback_timer(ngx_event_t *ev);
static void ngx_tce_consul_probe_done(ngx_tce_consul_ctx_t *ctx,
    ngx_tce_consul_request_t *req, CURLcode code);
static ngx_int_t ngx_tce_consul_add(ngx_tce_consul_ctx_t *ctx,
    ngx_tce_consul_request_t *req, void *data, char *err, size_t errlen);
static void ngx_tce_consul_finish(ngx_tce_consul_ctx_t *ctx,
    ngx_tce_consul_request_t *req, CURLcode code);
static void ngx_tce_consul_skipped(ngx_tce_consul_ctx_t *ctx,
    ngx_uint_t skipped);


ngx_int_t
ngx_tce_consul_watch_init(ngx_cycle_t *cycle,
    ngx_tce_consul_main_conf_t *cmcf)
{
    ngx_tce_consul_ctx_t  *ctx;

    ctx = ngx_pcalloc(cycle->pool, sizeof(ngx_tce_consul_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    if (ngx_array_init(&ctx->conns, cycle->pool, 16,
                       sizeof(ngx_connection_t *))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ctx->cmcf = cmcf;
    ctx->sh = cmcf->zone->sh;
    ctx->log = cycle->log;

    ngx_tce_consul_event_init(&ctx->tick, ngx_tce_consul_tick, ctx,
                              cycle->log);
    ngx_tce_consul_event_init(&ctx->curl_timer, ngx_tce_consul_curl_timer,
                              ctx, cycle->log);
    ngx_tce_consul_event_init(&ctx->snapshot, ngx_tce_consul_snapshot_timer,
                              ctx, cycle->log);
    ngx_tce_consul_event_init(&ctx->failback, ngx_tce_consul_failback_timer,
                              ctx, cycle->log);
    ngx_tce_consul_event_init(&ctx->resync, ngx_tce_consul_resync, ctx,
                              cycle->log);
    ngx_tce_consul_event_init(&ctx->starved, ngx_tce_consul_starved, ctx,
                              cycle->log);
    ngx_queue_init(&ctx->pending);

    cmcf->ctx = ctx;

    /* the first worker to tick wins: at once, not after a full period */
    ngx_tce_consul_timer_set(&ctx->tick, 1);

    return NGX_OK;
}


void
ngx_tce_consul_watch_exit(ngx_tce_consul_main_conf_t *cmcf)
{
    ngx_tce_consul_ctx_t  *ctx;

    ctx = cmcf->ctx;

    if (ctx == NULL) {
        return;
    }

    ngx_tce_consul_stop(ctx, 1);

    if (ctx->tick.timer_set) {
        ngx_del_timer(&ctx->tick);
    }

    cmcf->ctx = NULL;
}


static void
ngx_tce_consul_tick(ngx_event_t *ev)
{
    ngx_tce_consul_ctx_t *ctx = ev->data;

    ngx_pid_t         owner;
    ngx_msec_t        now;
    ngx_atomic_t     *lock;
    ngx_msec_int_t    age;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        ngx_tce_consul_watch_exit(ctx->cmcf);
        return;
    }

    lock = &ctx->sh->consul_owner;
    owner = (ngx_pid_t) *lock;
    now = ngx_current_msec;

    if (owner == ngx_pid) {
        ctx->sh->consul_heartbeat = now;

        if (!ctx->owner) {
            /* won before, but starting failed: try again */
            (void) ngx_tce_consul_start(ctx);
        }

        goto next;
    }

    if (ctx->owner) {
        ngx_log_error(NGX_LOG_WARN, ctx->log, 0,
                      "tce consul: worker %P took the watcher over, "
                      "this one stops watching", owner);
        ngx_tce_consul_stop(ctx, 0);
    }

    age = (ngx_msec_int_t) (now - ctx->sh->consul_heartbeat);

    if (owner == 0
        || age > NGX_TCE_CONSUL_STALE
        || (kill(owner, 0) == -1 && ngx_errno == NGX_ESRCH))
    {
        if (ngx_atomic_cmp_set(lock, (ngx_atomic_uint_t) owner,
                               (ngx_atomic_uint_t) ngx_pid))
        {
            ctx->sh->consul_heartbeat = now;

            ngx_log_error(NGX_LOG_NOTICE, ctx->log, 0,
                          "tce consul: worker %P watches Consul "
                          "(previous watcher: %P)", ngx_pid, owner);

            (void) ngx_tce_consul_start(ctx);
        }
    }

next:

    /* back on the event loop: also the quiescent point of reclaim */
    ngx_tce_reclaim_tick(ctx->cmcf->zone, ctx->owner, ctx->log);

    ngx_tce_consul_timer_set(&ctx->tick, NGX_TCE_CONSUL_TICK);
}


static ngx_int_t
ngx_tce_consul_start(ngx_tce_consul_ctx_t *ctx)
{
    char                         err[NGX_TCE_CONSUL_CLIENT_ERR_LEN];
    char                         masked[NGX_TCE_CONSUL_CLIENT_ERR_LEN];
    ngx_uint_t                   i, nservices;
    ngx_tce_service_t           *svc;
    ngx_tce_consul_conf_t        conf;
    ngx_tce_service_ref_t       *ref;
    ngx_tce_consul_watch_t      *w;
    ngx_tce_consul_main_conf_t  *cmcf;

    cmcf = ctx->cmcf;

    ngx_memzero(&conf, sizeof(ngx_tce_consul_conf_t));

    conf.urls = (const char *const *) cmcf->urls->elts;
    conf.nurls = cmcf->urls->nelts;
    conf.token = (char *) cmcf->token.data;
    conf.dc = (char *) cmcf->dc.data;
    conf.cafile = (char *) cmcf->ca.data;
    conf.request_timeout_ms = cmcf->timeout;
    conf.wait_ms = cmcf->wait;
    conf.consistency = (int) cmcf->consistency;
    conf.token_over_http = (int) cmcf->token_over_http;

    err[0] = '\0';

    ctx->client = ngx_tce_consul_client_create(&conf, err, sizeof(err));

    if (ctx->client == NULL) {
        ngx_log_error(NGX_LOG_ERR, ctx->log, 0, "tce consul: %s", err);
        return NGX_ERROR;
    }

    ctx->multi = curl_multi_init();

    if (ctx->multi == NULL
        || curl_multi_setopt(ctx->multi, CURLMOPT_SOCKETFUNCTION,
                             ngx_tce_consul_socket) != CURLM_OK
        || curl_multi_setopt(ctx->multi, CURLMOPT_SOCKETDATA, ctx)
           != CURLM_OK
        || curl_multi_setopt(ctx->multi, CURLMOPT_TIMERFUNCTION,
                             ngx_tce_consul_timer) != CURLM_OK
        || curl_multi_setopt(ctx->multi, CURLMOPT_TIMERDATA, ctx)
           != CURLM_OK
        || curl_multi_setopt(ctx->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                             (long) NGX_TCE_CONSUL_MAX_CONNS) != CURLM_OK
        || curl_multi_setopt(ctx->multi, CURLMOPT_MAXCONNECTS,
                             (long) NGX_TCE_CONSUL_MAX_CONNS) != CURLM_OK)
    {
        ngx_log_error(NGX_LOG_ERR, ctx->log, 0,
                      "tce consul: cannot set up a curl multi handle");
        ngx_tce_consul_stop(ctx, 0);
        return NGX_ERROR;
    }

    ctx->owner = 1;
    ctx->detect = cmcf->catalog;

    ref = cmcf->tmcf->refs.elts;

    for (i = 0; i < cmcf->tmcf->refs.nelts; i++) {
        svc = *ref[i].service;

        /* discovery=state: the state file feeds it, no query is sent */
        if (svc == NULL || ref[i].state_only
            || ngx_tce_consul_watch_find(ctx, svc))
        {
            continue;
        }

        if (ngx_tce_consul_watch_add(ctx, svc) == NULL) {
            ngx_tce_consul_stop(ctx, 0);
            return NGX_ERROR;
        }
    }

    /*
     * Catalog mode: the services an earlier watcher (before a takeover
     * or a reload) watched for the catalog are watched again, so that
     * one which left the catalog meanwhile is found gone by the first
     * catalog answer instead of keeping its last set for good.
     */
    if (cmcf->catalog
        && ngx_tce_consul_adopt(ctx, cmcf->zone->sh->services) != NGX_OK)
    {
        ngx_tce_consul_stop(ctx, 0);
        return NGX_ERROR;
    }

    nservices = ctx->nwatches;

    if (nservices > NGX_TCE_CONSUL_DIRECT_MAX) {
        ctx->detect = 1;
    }

    if (cmcf->catalog) {
        w = ngx_tce_consul_watch_add(ctx, NULL);
        if (w == NULL) {
            ngx_tce_consul_stop(ctx, 0);
            return NGX_ERROR;
        }

        w->kind = NGX_TCE_CONSUL_W_CATALOG;
    }

    if (ctx->detect) {
        w = ngx_tce_consul_watch_add(ctx, NULL);
        if (w == NULL) {
            ngx_tce_consul_stop(ctx, 0);
            return NGX_ERROR;
        }

        w->kind = NGX_TCE_CONSUL_W_CHECKS;

        ngx_tce_consul_timer_set(&ctx->resync, cmcf->resync);
    }

    ngx_log_error(NGX_LOG_NOTICE, ctx->log, 0,
                  "tce consul: watching %ui service(s)%s%s at %s",
                  nservices, cmcf->catalog ? " and the catalog" : "",
                  ctx->detect ? ", changes detected on every check"
                              : ", one blocking query each",
                  ngx_tce_consul_url_mask(masked, sizeof(masked),
                      ngx_tce_consul_client_server(ctx->client)));

    for (w = ctx->watches; w; w = w->next) {
        if (w->kind != NGX_TCE_CONSUL_W_SERVICE || !ctx->detect) {
            ngx_tce_consul_query(w);
        }
    }

    if (cmcf->urls->nelts > 1) {
        ngx_tce_consul_timer_set(&ctx->failback, NGX_TCE_CONSUL_FAILBACK);
    }

    return NGX_OK;
}


/*
 * Closes every Consul connection and frees the watcher's state.  With
 * release, ownership goes back to the zone for another worker.
 */
static void
ngx_tce_consul_stop(ngx_tce_consul_ctx_t *ctx, ngx_uint_t release)
{
    ngx_tce_consul_watch_t  *w;

    while (ctx->watches) {
        w = ctx->watches;
        ctx->watches = w->next;
        ngx_tce_consul_watch_free(w);
    }

    ctx->nwatches = 0;
    ctx->nfetch = 0;
    ctx->detect = 0;
    ngx_queue_init(&ctx->pending);
    ngx_tce_consul_digests_drop(ctx);

    if (ctx->resync.timer_set) {
        ngx_del_timer(&ctx->resync);
    }

    if (ctx->probe) {
        curl_multi_remove_handle(ctx->multi,
                                 ngx_tce_consul_request_handle(ctx->probe));
        ngx_tce_consul_request_free(ctx->probe);
        ctx->probe = NULL;
    }

    if (ctx->failback.timer_set) {
        ngx_del_timer(&ctx->failback);
    }

    if (ctx->starved.posted) {
        ngx_delete_posted_event(&ctx->starved);
    }

    if (ctx->multi) {
        /* closes the cached connections; no socket callback for them */
        curl_multi_cleanup(ctx->multi);
        ctx->multi = NULL;
    }

    /* sockets curl closed without a word: our descriptors go now */
    while (ctx->conns.nelts) {
        ngx_tce_consul_conn_free(ctx,
                                 ((ngx_connection_t **) ctx->conns.elts)[0]);
    }

    if (ctx->client) {
        ngx_tce_consul_client_destroy(ctx->client);
        ctx->client = NULL;
    }

    if (ctx->curl_timer.timer_set) {
        ngx_del_timer(&ctx->curl_timer);
    }

    if (ctx->snapshot.timer_set) {
        /* a change not yet persisted: persist it now */
        ngx_del_timer(&ctx->snapshot);
        (void) ngx_tce_consul_snapshot_write(ctx->cmcf, ctx->log);
    }

    if (release
        && ngx_atomic_cmp_set(&ctx->sh->consul_owner,
                              (ngx_atomic_uint_t) ngx_pid, 0))
    {
        ngx_log_error(NGX_LOG_NOTICE, ctx->log, 0,
                      "tce consul: worker %P stops watching Consul",
                      ngx_pid);
    }

    ctx->owner = 0;
}


static ngx_tce_consul_watch_t *
ngx_tce_consul_watch_add(ngx_tce_consul_ctx_t *ctx, ngx_tce_service_t *svc)
{
    ngx_tce_consul_watch_t  *w;

    w = ngx_calloc(sizeof(ngx_tce_consul_watch_t), ctx->log);
    if (w == NULL) {
        return NULL;
    }

    w->ctx = ctx;
    w->svc = svc;
    w->kind = NGX_TCE_CONSUL_W_SERVICE;
    w->state = NGX_TCE_CONSUL_NEW;
    w->started = ngx_current_msec - NGX_TCE_CONSUL_RATE;

    ngx_tce_consul_event_init(&w->timer, ngx_tce_consul_watch_timer, w,
                              ctx->log);

    if (svc) {
        svc->disc_watched = 1;

        /*
         * A reload or a takeover: the zone holds the set Consul gave at
         * disc_index (the last answer applied cleanly), so the watch
         * goes on blocking from there instead of asking everything
         * again.  A Consul whose index went back answers at the end of
         * the wait with a lower index, and the watch starts over.
         */
        if (svc->disc_index && svc->disc_error[0] == '\0') {
            w->index = svc->disc_index;
        }
    }

    w->next = ctx->watches;
    ctx->watches = w;
    ctx->nwatches++;

    return w;
}


static ngx_tce_consul_watch_t *
ngx_tce_consul_watch_find(ngx_tce_consul_ctx_t *ctx, ngx_tce_service_t *svc)
{
    ngx_tce_consul_watch_t  *w;

    for (w = ctx->watches; w; w = w->next) {
        if (w->svc == svc) {
            return w;
        }
    }

    return NULL;
}


/* qsort/bsearch of watches by service address */

static int
ngx_tce_consul_watch_cmp(const void *one, const void *two)
{
    ngx_tce_consul_watch_t  *a, *b;

    a = *(ngx_tce_consul_watch_t **) one;
    b = *(ngx_tce_consul_watch_t **) two;

    return (a->svc > b->svc) - (a->svc < b->svc);
}


static int
ngx_tce_consul_watch_key(const void *key, const void *elt)
{
    ngx_tce_consul_watch_t  *w;

    w = *(ngx_tce_consul_watch_t **) elt;

    return ((uintptr_t) key > (uintptr_t) w->svc)
           - ((uintptr_t) key < (uintptr_t) w->svc);
}


/* the caller unlinks it */

static void
ngx_tce_consul_watch_free(ngx_tce_consul_watch_t *w)
{
    ngx_tce_consul_unqueue(w);
    ngx_tce_consul_job_drop(w);
    ngx_tce_consul_memo_free(w->memo);

    if (w->req) {
        curl_multi_remove_handle(w->ctx->multi,
                                 ngx_tce_consul_request_handle(w->req));
        ngx_tce_consul_request_free(w->req);
    }

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }

    ngx_free(w);
}


static void
ngx_tce_consul_watch_timer(ngx_event_t *ev)
{
    ngx_tce_consul_watch_t *w = ev->data;

    if (w->ctx->detect && w->kind == NGX_TCE_CONSUL_W_SERVICE) {
        /* a retry or a rate-limited fetch waits for a free slot */
        ngx_tce_consul_enqueue(w);
        return;
    }

    ngx_tce_consul_query(w);
}


void
ngx_tce_consul_query(ngx_tce_consul_watch_t *w)
{
    char                   err[NGX_TCE_CONSUL_CLIENT_ERR_LEN];
    uint64_t               delay;
    ngx_tce_consul_ctx_t  *ctx;

    ctx = w->ctx;

    if (w->req || w->job || ctx->multi == NULL) {
        return;
    }

    /* a churning service cannot make the loop spin */
    delay = ngx_tce_consul_rate_delay(w->started, ngx_current_msec,
                                      NGX_TCE_CONSUL_RATE);
    if (delay) {
        ngx_tce_consul_timer_set(&w->timer, (ngx_msec_t) delay);
        return;
    }

    err[0] = '\0';

    if (w->kind == NGX_TCE_CONSUL_W_CHECKS) {
        w->req = ngx_tce_consul_checks_request(ctx->client, w->index, err,
                                               sizeof(err));

    } else if (w->svc) {
        /*
         * catalog mode: the catalog lists the union of the instances'
         * tags, so only Consul's tag= filter keeps untagged instances
         * of a tagged service out
         */
        w->req = ngx_tce_consul_health_request(ctx->client,
                                               (char *) w->svc->name,
                                               ctx->cmcf->catalog
                                               ? (char *) ctx->cmcf->tag.data
                                               : NULL,
                                               w->index, err, sizeof(err));
    } else {
        w->req = ngx_tce_consul_services_request(ctx->client, w->index,
                                                 err, sizeof(err));
    }

    if (w->req == NULL) {
        ngx_tce_consul_failed(w, err);
        return;
    }

    /* the answer is decoded with its parse, off the event loop */
    if (ngx_tce_consul_request_raw(w->req) != 0) {
        ngx_tce_consul_request_free(w->req);
        w->req = NULL;
        ngx_tce_consul_failed(w, "curl_easy_setopt() failed");
        return;
    }

    if (ngx_tce_consul_add(ctx, w->req, w, err, sizeof(err)) != NGX_OK) {
        ngx_tce_consul_request_free(w->req);
        w->req = NULL;
        ngx_tce_consul_failed(w, err);
        return;
    }

    w->started = ngx_current_msec;
    w->sent = w->index;
}


/*
 * Applies a parsed health answer h (taken: h is zeroed).  Returns
 * NGX_OK (applied or unchanged), NGX_DECLINED (an empty answer not
 * applied: err says why) or NGX_ERROR (err says why; nothing changed).
 */
ngx_int_t
ngx_tce_consul_health(ngx_tce_consul_watch_t *w, ngx_tce_consul_health_t *hp,
    char *err, size_t errlen)
{
    size_t                    len;
    ngx_int_t                 rc;
    ngx_uint_t                n;
    ngx_tce_change_t          change;
    ngx_tce_service_t        *svc;
    ngx_tce_consul_ctx_t     *ctx;
    ngx_tce_consul_health_t   h;
    char                      text[NGX_TCE_CHANGE_TEXT_LEN];

    ctx = w->ctx;
    svc = w->svc;

    h = *hp;
    ngx_memzero(hp, sizeof(ngx_tce_consul_health_t));

    if (h.nskipped != w->nskipped) {
        if (h.nskipped) {
            ngx_log_error(NGX_LOG_WARN, ctx->log, 0,
                          "tce consul: service \"%s\": %uz entr%s skipped, "
                          "the first because %s", svc->name, h.nskipped,
                          h.nskipped == 1 ? "y" : "ies", h.reason);
        }

        w->nskipped = h.nskipped;
    }

    if (h.ninstances == 0 && !ctx->cmcf->allow_empty
        && svc->ninstances != 0)
    {
        ngx_tce_consul_health_free(&h);

        (void) ngx_atomic_fetch_add(&svc->disc_empty, 1);

        ngx_snprintf((u_char *) err, errlen,
                     "Consul answered no passing instance: the last "
                     "known good set is kept (tce_consul_allow_empty "
                     "off)%Z");
        return NGX_DECLINED;
    }

    /* sorted with the parse (ngx_tce_consul_answer.c) */
    rc = ngx_tce_zone_set_sorted(ctx->cmcf->zone, svc, h.instances,
                                 h.ninstances, NGX_TCE_SOURCE_CONSUL,
                                 &change, ctx->log);

    n = h.ninstances;

    ngx_tce_consul_health_free(&h);

    if (rc == NGX_ERROR) {
        /* services that left the catalog and nobody uses make room */
        (void) ngx_tce_reclaim_evict(ctx->cmcf->zone, ctx->log);
        ngx_snprintf((u_char *) err, errlen, "the tce zone is full%Z");
        return NGX_ERROR;
    }

    if (rc == NGX_OK) {
        len = ngx_tce_change_text(text, sizeof(text), &change);

        ngx_log_error(NGX_LOG_NOTICE, ctx->log, 0,
                      "tce consul: service \"%s\" generation %uL -> %uL: "
                      "%*s%s%ui instance%s in all", svc->name,
                      change.gen_before, change.gen_after, len, text,
                      len ? "; " : "", n, n == 1 ? "" : "s");

        ngx_tce_consul_snapshot_later(ctx);
    }

    return NGX_OK;
}


/* the zone's services an earlier watcher watched: watched again */

static ngx_int_t
ngx_tce_consul_adopt(ngx_tce_consul_ctx_t *ctx, ngx_tce_service_t *svc)
{
    for ( /* void */ ; svc; svc = svc->next) {
        /* nginx.conf's names have their watch already */
        if (!svc->disc_watched
            || ngx_tce_consul_named(ctx->cmcf, svc->name, svc->name_len)
            || ngx_tce_service_state_only(ctx->cmcf->tmcf, svc->name,
                                          svc->name_len))
        {
            continue;
        }

        if (ngx_tce_consul_watch_add(ctx, svc) == NULL) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * Catalog mode: watches every tagged service of the parsed catalog
 * (taken: *parsed is zeroed), stops watching the others.
 */
ngx_int_t
ngx_tce_consul_catalog(ngx_tce_consul_watch_t *w,
    ngx_tce_consul_names_t *parsed, char *err, size_t errlen)
{
    size_t                       i, len, nsorted;
    uint64_t                     d;
    ngx_uint_t                   skipped;
    ngx_tce_service_t           *svc;
    ngx_tce_consul_ctx_t        *ctx;
    ngx_tce_consul_watch_t      *sw, **link, **sorted, **found;
    ngx_tce_consul_names_t       names;
    ngx_tce_consul_main_conf_t  *cmcf;

    ctx = w->ctx;
    cmcf = ctx->cmcf;

    names = *parsed;
    ngx_memzero(parsed, sizeof(ngx_tce_consul_names_t));

    /* the watches sorted by service: each name found in O(log n) */

    sorted = ngx_alloc((ctx->nwatches + 1) * sizeof(ngx_tce_consul_watch_t *),
                       ctx->log);
    if (sorted == NULL) {
        ngx_tce_consul_names_free(&names);
        ngx_snprintf((u_char *) err, errlen, "out of memory%Z");
        return NGX_ERROR;
    }

    nsorted = 0;

    for (sw = ctx->watches; sw; sw = sw->next) {
        sw->seen = 0;

        if (sw->svc) {
            sorted[nsorted++] = sw;
        }
    }

    qsort(sorted, nsorted, sizeof(ngx_tce_consul_watch_t *),
          ngx_tce_consul_watch_cmp);

    skipped = 0;

    for (i = 0; i < names.nnames; i++) {
        len = ngx_strlen(names.names[i]);

        svc = ngx_tce_zone_service(cmcf->zone, (u_char *) names.names[i],
                                   len, 1);
        if (svc == NULL) {
            /* no room for this name: skipped, the others go on */
            skipped++;
            continue;
        }

        found = bsearch(svc, sorted, nsorted, sizeof(ngx_tce_consul_watch_t *),
                        ngx_tce_consul_watch_key);
        sw = found ? *found : NULL;

        /* tagged in Consul, but nginx.conf gives it to the state file */
        if (sw == NULL
            && ngx_tce_service_state_only(cmcf->tmcf, svc->name,
                                          svc->name_len))
        {
            continue;
        }

        if (sw == NULL) {
            if (ctx->nwatches > NGX_TCE_CONSUL_MAX_SERVICES) {
                if (!ctx->full) {
                    ngx_log_error(NGX_LOG_ERR, ctx->log, 0,
                                  "tce consul: more than %d services "
                                  "tagged \"%V\", the rest is not watched",
                                  NGX_TCE_CONSUL_MAX_SERVICES, &cmcf->tag);
                    ctx->full = 1;
                }

                continue;
            }

            sw = ngx_tce_consul_watch_add(ctx, svc);
            if (sw == NULL) {
                ngx_snprintf((u_char *) err, errlen, "out of memory%Z");
                ngx_tce_consul_names_free(&names);
                ngx_free(sorted);
                return NGX_ERROR;
            }

            ngx_log_error(NGX_LOG_INFO, ctx->log, 0,
                          "tce consul: watching service \"%s\" (tagged "
                          "\"%V\")", svc->name, &cmcf->tag);

            /*
             * fetched unless the zone holds what the checks say (a
             * reload, a takeover); before the first checks answer,
             * that answer decides (or its failure: see failed())
             */
            d = ngx_tce_consul_known_digest(ctx, svc);

            if (d != 0 && d != svc->disc_digest) {
                sw->digest = d;
                ngx_tce_consul_enqueue(sw);
            }
        }

        sw->seen = 1;
    }

    ngx_tce_consul_names_free(&names);
    ngx_free(sorted);

    ngx_tce_consul_skipped(ctx, skipped);

    /* untagged or gone: no longer watched; its last set stays served */

    link = &ctx->watches;

    while (*link) {
        sw = *link;

        if (sw->svc == NULL || sw->seen
            || ngx_tce_consul_named(cmcf, sw->svc->name, sw->svc->name_len))
        {
            link = &sw->next;
            continue;
        }

        ngx_log_error(NGX_LOG_NOTICE, ctx->log, 0,
                      "tce consul: service \"%s\" left the catalog (tag "
                      "\"%V\"), no longer watched", sw->svc->name,
                      &cmcf->tag);

        if (cmcf->allow_empty) {
            (void) ngx_tce_zone_set(cmcf->zone, sw->svc, NULL, 0,
                                    NGX_TCE_SOURCE_CONSUL, ctx->log);
        }

        sw->svc->disc_watched = 0;
        *link = sw->next;
        ctx->nwatches--;
        ngx_tce_consul_watch_free(sw);
    }

    /* a watch freed while fetching gave its slot back: use it */
    ngx_tce_consul_pump(ctx);

    return NGX_OK;
}


/*
 * Names of the catalog the zone had no room for: counted, logged when
 * it starts and when it ends; they are tried again at the next catalog
 * answer (at most wait= later), after services that left the catalog
 * and nobody uses were emptied to be reclaimed.
 */
static void
ngx_tce_consul_skipped(ngx_tce_consul_ctx_t *ctx, ngx_uint_t skipped)
{
    ngx_tce_zone_t  *zone;

    zone = ctx->cmcf->zone;

    if (skipped == 0) {
        if (ctx->skipping) {
            ngx_log_error(NGX_LOG_NOTICE, ctx->log, 0,
                          "tce consul: every service of the catalog has "
                          "room in the tce zone again");
            ctx->skipping = 0;
        }

        return;
    }

    (void) ngx_atomic_fetch_add(&zone->sh->services_skipped, skipped);

    if (!ctx->skipping) {
        ngx_log_error(NGX_LOG_ERR, ctx->log, 0,
                      "tce zone \"%V\" is full: %ui service(s) of the "
                      "catalog skipped (not watched), tried again at the "
                      "next catalog answer", &zone->shm_zone->shm.name,
                      skipped);
        ctx->skipping = 1;
    }

    (void) ngx_tce_reclaim_evict(zone, ctx->log);
}


void
ngx_tce_consul_success(ngx_tce_consul_watch_t *w, ngx_uint_t state,
    const char *note)
{
    ngx_tce_consul_ctx_t  *ctx;

    ctx = w->ctx;

    if (w->svc) {
        w->svc->disc_success = ngx_time();

        if (state == NGX_TCE_CONSUL_OK) {
            (void) ngx_atomic_fetch_add(&w->svc->disc_syncs, 1);
        }
    }

    if (state == NGX_TCE_CONSUL_EMPTY) {
        if (w->state != NGX_TCE_CONSUL_EMPTY) {
            ngx_log_error(NGX_LOG_WARN, ctx->log, 0,
                          "tce consul: service \"%s\": %s",
                          ngx_tce_consul_name(w), note);
        }

        ngx_tce_consul_status_error(w, note);
        w->state = state;
        return;
    }

    if (w->state == NGX_TCE_CONSUL_FAILING
        || w->state == NGX_TCE_CONSUL_EMPTY)
    {
        ngx_log_error(NGX_LOG_NOTICE, ctx->log, 0,
                      "tce consul: %s \"%s\": in sync again, index %uL",
                      w->svc ? "service" : "watch", ngx_tce_consul_name(w),
                      w->index);
    }

    if (w->state != NGX_TCE_CONSUL_OK) {
        ngx_tce_consul_status_error(w, "");
    }

    w->state = state;
}


/* logged once per change of state or of error text, not per retry */

void
ngx_tce_consul_failed(ngx_tce_consul_watch_t *w, const char *error)
{
    uint32_t                 key;
    uint64_t                 delay;
    ngx_tce_consul_ctx_t    *ctx;
    ngx_tce_consul_watch_t  *sw;

    ctx = w->ctx;

    if (error == NULL || error[0] == '\0') {
        error = "unknown error";
    }

    if (w->svc) {
        w->svc->disc_failure = ngx_time();
        (void) ngx_atomic_fetch_add(&w->svc->disc_errors, 1);
    }

    key = ngx_tce_consul_error_key(error);

    /*
     * Failing over between URLs alternates two errors: a change means
     * one that differs from both last ones logged.
     */
    if (w->state != NGX_TCE_CONSUL_FAILING
        || (key != w->logged[0] && key != w->logged[1]))
    {
        /* "kept" only when something is */
        ngx_log_error(NGX_LOG_ERR, ctx->log, 0,
                      "tce consul: %s \"%s\": %s; %s, retrying with "
                      "backoff",
                      w->svc ? "service" : "watch", ngx_tce_consul_name(w),
                      error,
                      w->svc == NULL ? "the services known are kept"
                      : w->svc->ninstances ? "the last known good set is kept"
                      : "no instance is known yet (requests get 503)");

        w->logged[1] = w->state == NGX_TCE_CONSUL_FAILING ? w->logged[0] : 0;
        w->logged[0] = key;
    }

    ngx_tce_consul_status_error(w, error);

    w->state = NGX_TCE_CONSUL_FAILING;

    /* the server may have restarted: the next answer is a fresh one */
    w->index = 0;

    delay = ngx_tce_consul_backoff(w->attempt, NGX_TCE_CONSUL_BACKOFF_BASE,
                                   NGX_TCE_CONSUL_BACKOFF_CAP,
                                   (uint32_t) ngx_random());
    if (w->attempt < 32) {
        w->attempt++;
    }

    ngx_tce_consul_timer_set(&w->timer, (ngx_msec_t) delay);

    if (w->kind == NGX_TCE_CONSUL_W_CHECKS) {
        /* no detector for now: what was never fetched is fetched anyway */
        for (sw = ctx->watches; sw; sw = sw->next) {
            if (sw->kind == NGX_TCE_CONSUL_W_SERVICE
                && sw->svc->disc_digest == 0)
            {
                ngx_tce_consul_enqueue(sw);
            }
        }
    }
}


static void
ngx_tce_consul_status_error(ngx_tce_consul_watch_t *w, const char *text)
{
    ngx_slab_pool_t  *shpool;

    if (w->svc == NULL) {
        return;
    }

    /* readers (the admin API) copy it under the same lock */
    shpool = w->ctx->cmcf->zone->shpool;

    ngx_shmtx_lock(&shpool->mutex);
    (void) ngx_cpystrn(w->svc->disc_error, (u_char *) text,
                       NGX_TCE_DISC_ERR_LEN);
    ngx_shmtx_unlock(&shpool->mutex);
}


static const char *
ngx_tce_consul_name(ngx_tce_consul_watch_t *w)
{
    if (w->svc) {
        return (const char *) w->svc->name;
    }

    return w->kind == NGX_TCE_CONSUL_W_CHECKS ? "/v1/health/state/any"
                                              : "/v1/catalog/services";
}


/* an error's identity: its text without numbers ("after 12 ms") */

static uint32_t
ngx_tce_consul_error_key(const char *error)
{
    uint32_t  crc;

    ngx_crc32_init(crc);

    for ( /* void */ ; *error; error++) {
        if (*error < '0' || *error > '9') {
            ngx_crc32_update(&crc, (u_char *) error, 1);
        }
    }

    ngx_crc32_final(crc);

    return crc | 1;
}


static void
ngx_tce_consul_snapshot_later(ngx_tce_consul_ctx_t *ctx)
{
    if (ctx->cmcf->snapshot.len == 0 || ctx->snapshot.timer_set) {
        return;
    }

    ngx_add_timer(&ctx->snapshot, NGX_TCE_CONSUL_SNAPSHOT_DELAY);
}


static void
ngx_tce_consul_snapshot_timer(ngx_event_t *ev)
{
    ngx_tce_consul_ctx_t *ctx = ev->data;

    (void) ngx_tce_consul_snapshot_write(ctx->cmcf, ctx->log);
}


void
ngx_tce_consul_check(ngx_tce_consul_ctx_t *ctx)
{
    int                        left;
    CURL                      *easy;
    CURLMsg                   *msg;
    CURLcode                   code;
    ngx_tce_consul_request_t  *req;

    while (ctx->multi && (msg = curl_multi_info_read(ctx->multi, &left))) {

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        easy = msg->easy_handle;
        code = msg->data.result;
        req = NULL;

        (void) curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &req);

        curl_multi_remove_handle(ctx->multi, easy);

        ngx_tce_consul_finish(ctx, req, code);
    }
}


void
ngx_tce_consul_starved(ngx_event_t *ev)
{
    ngx_tce_consul_ctx_t *ctx = ev->data;

    ngx_tce_consul_watch_t    *w;
    ngx_tce_consul_request_t  *req;

    if (ctx->multi == NULL) {
        return;
    }

    if (ctx->probe && ngx_tce_consul_request_is_local(ctx->probe)) {
        req = ctx->probe;
        curl_multi_remove_handle(ctx->multi,
                                 ngx_tce_consul_request_handle(req));
        ngx_tce_consul_finish(ctx, req, CURLE_COULDNT_CONNECT);
    }

    /*
     * Completing one may start others (fetches): those are new
     * requests, marked only if they starve too, and then post this
     * event again.  Watches are never freed on this path.
     */
    for (w = ctx->watches; w && ctx->multi; w = w->next) {
        req = w->req;

        if (req == NULL || !ngx_tce_consul_request_is_local(req)) {
            continue;
        }

        curl_multi_remove_handle(ctx->multi,
                                 ngx_tce_consul_request_handle(req));
        ngx_tce_consul_finish(ctx, req, CURLE_COULDNT_CONNECT);
    }
}


/* a transfer out of the multi handle: its answer goes to its owner */

static void
ngx_tce_consul_finish(ngx_tce_consul_ctx_t *ctx, ngx_tce_consul_request_t *req,
    CURLcode code)
{
    ngx_tce_consul_watch_t  *w;

    if (req == ctx->probe) {
        ctx->probe = NULL;
        ngx_tce_consul_probe_done(ctx, req, code);
        ngx_tce_consul_request_free(req);
        return;
    }

    w = ngx_tce_consul_request_data(req);

    if (w == NULL || w->req != req) {
        ngx_tce_consul_request_free(req);
        return;
    }

    w->req = NULL;
    ngx_tce_consul_done(w, req, code);
    ngx_tce_consul_request_free(req);
}


/* hands a request to curl; on failure err says why and req is the caller's */

static ngx_int_t
ngx_tce_consul_add(ngx_tce_consul_ctx_t *ctx, ngx_tce_consul_request_t *req,
    void *data, char *err, size_t errlen)
{
    CURL       *easy;
    CURLMcode   rc;

    ngx_tce_consul_request_set_data(req, data);

    /* curl closes its sockets through us: events go first */
    easy = ngx_tce_consul_request_handle(req);

    if (curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION,
                         ngx_tce_consul_close) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, ctx) != CURLE_OK)
    {
        ngx_snprintf((u_char *) err, errlen,
                     "cannot set CURLOPT_CLOSESOCKETFUNCTION%Z");
        return NGX_ERROR;
    }

    rc = curl_multi_add_handle(ctx->multi, easy);

    if (rc != CURLM_OK) {
        ngx_snprintf((u_char *) err, errlen, "%s%Z",
                     curl_multi_strerror(rc));
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* while away from the first URL: is it serving again? */

static void
ngx_tce_consul_failback_timer(ngx_event_t *ev)
{
    ngx_tce_consul_ctx_t *ctx = ev->data;

    char                       err[NGX_TCE_CONSUL_CLIENT_ERR_LEN];
    ngx_tce_consul_request_t  *req;

    if (ctx->multi == NULL || ctx->client == NULL) {
        return;
    }

    ngx_tce_consul_timer_set(&ctx->failback, NGX_TCE_CONSUL_FAILBACK);

    if (ctx->probe || ngx_tce_consul_client_current(ctx->client) == 0) {
        return;
    }

    err[0] = '\0';

    req = ngx_tce_consul_leader_request(ctx->client, 0, err, sizeof(err));

    if (req == NULL) {
        ngx_log_error(NGX_LOG_ERR, ctx->log, 0,
                      "tce consul: cannot probe the first URL: %s", err);
        return;
    }

    if (ngx_tce_consul_add(ctx, req, NULL, err, sizeof(err)) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, ctx->log, 0,
                      "tce consul: cannot probe the first URL: %s", err);
        ngx_tce_consul_request_free(req);
        return;
    }

    ctx->probe = req;
}


/*
 * The first URL serves again: every query goes back to it, each with
 * the index it had (the agents of one datacenter share Consul's index).
 */
static void
ngx_tce_consul_probe_done(ngx_tce_consul_ctx_t *ctx,
    ngx_tce_consul_request_t *req, CURLcode code)
{
    char                     masked[NGX_TCE_CONSUL_CLIENT_ERR_LEN];
    ngx_tce_consul_watch_t  *w;
    ngx_tce_consul_result_t  res;

    (void) ngx_tce_consul_request_done(req, code, &res);

    if (!ngx_tce_consul_leader_ok(&res)
        || ngx_tce_consul_client_current(ctx->client) == 0)
    {
        return;
    }

    ngx_tce_consul_client_use(ctx->client, 0);

    ngx_log_error(NGX_LOG_NOTICE, ctx->log, 0,
                  "tce consul: %s serves again, watching from it",
                  ngx_tce_consul_url_mask(masked, sizeof(masked),
                      ngx_tce_consul_client_server(ctx->client)));

    for (w = ctx->watches; w; w = w->next) {
        if (w->req == NULL) {
            continue;       /* waiting on a timer: goes there next time */
        }

        curl_multi_remove_handle(ctx->multi,
                                 ngx_tce_consul_request_handle(w->req));
        ngx_tce_consul_request_free(w->req);
        w->req = NULL;

        /* not rate-limited: this query did not answer */
        w->started = ngx_current_msec - NGX_TCE_CONSUL_RATE;

        if (w->fetching) {
            ngx_tce_consul_unqueue(w);
            ngx_tce_consul_enqueue(w);
            continue;
        }

        ngx_tce_consul_query(w);
    }

    ngx_tce_consul_pump(ctx);
}
