/*
 * The deploy webhook: tce_deploy_webhook <url> [timeout=<time>]
 * [retries=<n>] [queue=<n>]; (http level).
 *
 * Every deploy event (the API's and the controller's) becomes one JSON
 * object in a queue in a shared zone of its own (any worker may add to
 * it); the worker that controls the deploys (ngx_http_tce_admin_deploy
 * _ctl.c) POSTs them to the URL one at a time, in order, through
 * libcurl's multi interface on nginx events (ngx_tce_curl.h), retrying
 * a failed one with backoff.  A full queue drops its oldest event.
 *
 *   ngx_http_tce_admin_webhook_module.c  the directive, the zone, the
 *                                        queue, status and metrics
 *   ngx_http_tce_admin_webhook_send.c    the sender in the controller
 */

#ifndef _NGX_HTTP_TCE_ADMIN_WEBHOOK_H_INCLUDED_
#define _NGX_HTTP_TCE_ADMIN_WEBHOOK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_tce_prom.h"
#include "ngx_tce_curl.h"
#include "ngx_http_tce_admin_deploy.h"


#define NGX_HTTP_TCE_ADMIN_WEBHOOK_ERROR_LEN  128
#define NGX_HTTP_TCE_ADMIN_WEBHOOK_TICK       100     /* ms */
#define NGX_HTTP_TCE_ADMIN_WEBHOOK_BACKOFF    250     /* ms, doubled */
#define NGX_HTTP_TCE_ADMIN_WEBHOOK_BACKOFF_MAX  30000 /* ms */
#define NGX_HTTP_TCE_ADMIN_WEBHOOK_LOG_EVERY  10000   /* ms between lines */


/* an event in the queue: its JSON in the zone's slab */
typedef struct {
    uint64_t                    seq;
    size_t                      len;
    u_char                     *body;
} ngx_http_tce_admin_webhook_event_t;


typedef struct {
    ngx_uint_t                  capacity;    /* queue= */
    ngx_uint_t                  head;        /* the oldest */
    ngx_uint_t                  n;
    uint64_t                    next_seq;

    /* the head's: failed attempts, not retried before (unix ms) */
    ngx_uint_t                  attempts;
    uint64_t                    retry_at;

    /* the worker POSTing the head, 0: none; since (unix ms) */
    ngx_atomic_t                sender;
    uint64_t                    sender_since;

    uint64_t                    queued;      /* events ever queued */
    uint64_t                    delivered;   /* answered 2xx */
    uint64_t                    dropped;     /* the queue was full */
    uint64_t                    abandoned;   /* retries exhausted */
    uint64_t                    failures;    /* failed attempts */
    uint64_t                    last_success;  /* unix ms, 0: never */
    uint64_t                    last_failure;
    uint64_t                    logged_at;   /* unix ms of the last line */
    uint64_t                    unlogged;    /* failures not logged since */
    char                        last_error[
                                    NGX_HTTP_TCE_ADMIN_WEBHOOK_ERROR_LEN];

    ngx_http_tce_admin_webhook_event_t  ring[1];   /* capacity */
} ngx_http_tce_admin_webhook_sh_t;


typedef struct ngx_http_tce_admin_webhook_sender_s
    ngx_http_tce_admin_webhook_sender_t;


typedef struct {
    ngx_str_t                   url;         /* NUL-terminated */
    ngx_str_t                   target;      /* scheme://host:port: logs */
    ngx_msec_t                  timeout;
    ngx_uint_t                  retries;
    ngx_uint_t                  queue;
    ngx_shm_zone_t             *shm_zone;    /* NULL: no webhook */
    ngx_slab_pool_t            *shpool;
    ngx_http_tce_admin_webhook_sh_t     *sh;
    ngx_http_tce_admin_webhook_sender_t *sender;  /* this worker's */
} ngx_http_tce_admin_webhook_main_conf_t;


/*
 * Queues a deploy event (event: "deploy_started", "deploy_promoted"...;
 * by: the principal of an API action, NULL for the controller) when a
 * webhook is configured; a no-op otherwise.  Never blocks: the JSON is
 * built here, the POST is the controller's.  A full queue loses its
 * oldest event (counted); no memory loses this one (logged).
 */
void ngx_http_tce_admin_webhook_deploy(const char *event,
    const ngx_http_tce_admin_deploy_t *d, ngx_str_t *by, ngx_log_t *log);

/* the status object ("deploy_webhook" in tce_status), NULL: none */
json_t *ngx_http_tce_admin_webhook_json(void);

/* fills the snapshot's webhook figures (present 0 without a webhook) */
void ngx_http_tce_admin_webhook_prom(ngx_tce_prom_webhook_t *w);

/*
 * ngx_http_tce_admin_webhook_send.c.  The worker's sender, made in
 * init_process; it POSTs the queue's head whenever this worker
 * controls the deploys.  NGX_ERROR on no memory.
 */
ngx_int_t ngx_http_tce_admin_webhook_sender_init(ngx_cycle_t *cycle,
    ngx_http_tce_admin_webhook_main_conf_t *wmcf);

/* an event was queued by this worker: send it now if it controls */
void ngx_http_tce_admin_webhook_kick(
    ngx_http_tce_admin_webhook_main_conf_t *wmcf);

/* unix time in ms */
uint64_t ngx_http_tce_admin_webhook_now(void);


extern ngx_module_t  ngx_http_tce_admin_webhook_module;


#endif /* _NGX_HTTP_TCE_ADMIN_WEBHOOK_H_INCLUDED_ */
