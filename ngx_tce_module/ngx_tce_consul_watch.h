/*
 * Internal to the Consul watcher's files: its state per worker, and the
 * calls between the watch logic (ngx_tce_consul_watch.c) and the driver
 * of libcurl's multi interface on nginx events (ngx_tce_consul_events.c).
 */

#ifndef _NGX_TCE_CONSUL_WATCH_H_INCLUDED_
#define _NGX_TCE_CONSUL_WATCH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <curl/curl.h>

#include "ngx_tce_consul.h"
#include "ngx_tce_consul_client.h"
#include "ngx_tce_consul_parse.h"
#include "ngx_tce_consul_detect.h"


typedef struct ngx_tce_consul_watch_s  ngx_tce_consul_watch_t;
typedef struct ngx_tce_consul_job_s    ngx_tce_consul_job_t;


#define NGX_TCE_CONSUL_NEW      0
#define NGX_TCE_CONSUL_OK       1
#define NGX_TCE_CONSUL_FAILING  2
#define NGX_TCE_CONSUL_EMPTY    3

#define NGX_TCE_CONSUL_W_SERVICE  0     /* a service's instances */
#define NGX_TCE_CONSUL_W_CATALOG  1     /* /v1/catalog/services */
#define NGX_TCE_CONSUL_W_CHECKS   2     /* /v1/health/state/any */


struct ngx_tce_consul_watch_s {
    ngx_tce_consul_watch_t     *next;
    ngx_tce_consul_ctx_t       *ctx;
    ngx_tce_service_t          *svc;        /* NULL: catalog or checks */
    ngx_uint_t                  kind;       /* NGX_TCE_CONSUL_W_* */
    ngx_tce_consul_request_t   *req;        /* the query in flight */
    ngx_tce_consul_job_t       *job;        /* its answer, being parsed */
    ngx_tce_consul_memo_t      *memo;       /* the last answer's entries
                                               (health), NULL while job
                                               has it */
    ngx_event_t                 timer;      /* the next query */
    uint64_t                    index;      /* for the next query */
    uint64_t                    sent;       /* the index req carries */
    ngx_msec_t                  started;
    ngx_uint_t                  attempt;    /* failures in a row */
    ngx_uint_t                  state;      /* NGX_TCE_CONSUL_* */
    size_t                      nskipped;
    ngx_uint_t                  seen;       /* catalog sweep */
    uint32_t                    logged[2];  /* last errors logged */

    /* change detection (ngx_tce_consul_fetch.c) */
    ngx_queue_t                 queue;      /* in ctx->pending */
    uint64_t                    digest;     /* its checks, 0: unknown */
    uint64_t                    asked;      /* digest when fetch began */
    unsigned                    queued:1;
    unsigned                    fetching:1; /* req holds a fetch slot */
};


struct ngx_tce_consul_ctx_s {
    ngx_tce_consul_main_conf_t *cmcf;
    ngx_tce_shctx_t            *sh;
    ngx_log_t                  *log;
    ngx_event_t                 tick;       /* election */
    ngx_event_t                 curl_timer;
    ngx_event_t                 snapshot;
    ngx_event_t                 failback;   /* probes the first URL */
    ngx_event_t                 starved;    /* posted: transfers that got
                                               no connection (events.c) */
    ngx_tce_consul_request_t   *probe;      /* that probe, in flight */
    CURLM                      *multi;
    ngx_tce_consul_client_t    *client;
    ngx_tce_consul_watch_t     *watches;
    ngx_uint_t                  nwatches;
    ngx_array_t                 conns;      /* ngx_connection_t * */
    ngx_uint_t                  owner;      /* this worker watches */

    /*
     * Change detection (catalog mode, or more than
     * NGX_TCE_CONSUL_DIRECT_MAX services): no blocking query per
     * service; the checks watch says which changed, and at most
     * NGX_TCE_CONSUL_FETCHES of them are fetched at once.
     */
    ngx_uint_t                  detect;
    ngx_queue_t                 pending;    /* watches to fetch */
    ngx_uint_t                  nfetch;     /* fetches in flight */
    ngx_event_t                 resync;     /* everything, now and then */
    void                       *digests;    /* the last checks answer */
    ngx_uint_t                  full;       /* catalog limit logged */
    ngx_uint_t                  skipping;   /* names without room */
};


/* CURLMOPT_SOCKETFUNCTION: watches socket s for curl on nginx events */
int ngx_tce_consul_socket(CURL *easy, curl_socket_t s, int what, void *userp,
    void *socketp);

/* CURLMOPT_TIMERFUNCTION: arms ctx->curl_timer */
int ngx_tce_consul_timer(CURLM *multi, long timeout_ms, void *userp);

/* the handler of ctx->curl_timer */
void ngx_tce_consul_curl_timer(ngx_event_t *ev);

/* CURLOPT_CLOSESOCKETFUNCTION: stops watching s, then closes it */
int ngx_tce_consul_close(void *clientp, curl_socket_t s);

/* stops watching a socket and closes our descriptor of it */
void ngx_tce_consul_conn_free(ngx_tce_consul_ctx_t *ctx, ngx_connection_t *c);

/* handles the transfers curl has finished (ngx_tce_consul_watch.c) */
void ngx_tce_consul_check(ngx_tce_consul_ctx_t *ctx);

/*
 * The handler of ctx->starved: every transfer marked failed on our side
 * (no connection to watch its socket) leaves the multi handle and is
 * completed as a failure (ngx_tce_consul_watch.c).
 */
void ngx_tce_consul_starved(ngx_event_t *ev);

/*
 * A finished query of w (ngx_tce_consul_answer.c): the answer is
 * checked, parsed on the thread pool (in place without one) and
 * applied on the event loop; req is the caller's to free.
 */
void ngx_tce_consul_done(ngx_tce_consul_watch_t *w,
    ngx_tce_consul_request_t *req, CURLcode code);

/* w is being freed: the parse of its answer, if any, is dropped */
void ngx_tce_consul_job_drop(ngx_tce_consul_watch_t *w);

/*
 * What a parsed answer changes (ngx_tce_consul_watch.c, _fetch.c): a
 * service's instances, the catalog's services, the checks' digests.
 * Each takes what it is given and zeroes it (what is left there is the
 * caller's to free).  NGX_OK, NGX_DECLINED (an empty health answer not
 * applied) or NGX_ERROR, err saying why.
 */
ngx_int_t ngx_tce_consul_health(ngx_tce_consul_watch_t *w,
    ngx_tce_consul_health_t *h, char *err, size_t errlen);
ngx_int_t ngx_tce_consul_catalog(ngx_tce_consul_watch_t *w,
    ngx_tce_consul_names_t *names, char *err, size_t errlen);
ngx_int_t ngx_tce_consul_changes(ngx_tce_consul_watch_t *w,
    ngx_tce_consul_digests_t *digests, char *err, size_t errlen);

/* the watch's state after an answer applied, or failed */
void ngx_tce_consul_success(ngx_tce_consul_watch_t *w, ngx_uint_t state,
    const char *note);
void ngx_tce_consul_failed(ngx_tce_consul_watch_t *w, const char *error);

/* starts a query of w now, or arms its timer (ngx_tce_consul_watch.c) */
void ngx_tce_consul_query(ngx_tce_consul_watch_t *w);

/*
 * Change detection (ngx_tce_consul_fetch.c).  enqueue: w's service
 * will be fetched (once, however often it is enqueued meanwhile);
 * pump: starts fetches while slots are free; fetch_done: the
 * bookkeeping of a finished fetch (its slot is free again; held while
 * its answer is parsed); resync: every service fetched again (its
 * timer handler); unqueue: w's fetch is dropped (w is being freed or
 * moved to another URL).
 */
void ngx_tce_consul_enqueue(ngx_tce_consul_watch_t *w);
void ngx_tce_consul_pump(ngx_tce_consul_ctx_t *ctx);
void ngx_tce_consul_fetch_done(ngx_tce_consul_watch_t *w);
void ngx_tce_consul_fetched(ngx_tce_consul_watch_t *w);
void ngx_tce_consul_resync(ngx_event_t *ev);
void ngx_tce_consul_unqueue(ngx_tce_consul_watch_t *w);
void ngx_tce_consul_digests_drop(ngx_tce_consul_ctx_t *ctx);
uint64_t ngx_tce_consul_known_digest(ngx_tce_consul_ctx_t *ctx,
    ngx_tce_service_t *svc);

void ngx_tce_consul_event_init(ngx_event_t *ev, ngx_event_handler_pt handler,
    void *data, ngx_log_t *log);
void ngx_tce_consul_timer_set(ngx_event_t *ev, ngx_msec_t ms);


#endif /* _NGX_TCE_CONSUL_WATCH_H_INCLUDED_ */
