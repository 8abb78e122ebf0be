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


typedef struct ngx_tce_consul_watch_s  ngx_tce_consul_watch_t;


struct ngx_tce_consul_ctx_s {
    ngx_tce_consul_main_conf_t *cmcf;
    ngx_tce_shctx_t            *sh;
    ngx_log_t                  *log;
    ngx_event_t                 tick;       /* election */
    ngx_event_t                 curl_timer;
    ngx_event_t                 snapshot;
    ngx_event_t                 failback;   /* probes the first URL */
    ngx_tce_consul_request_t   *probe;      /* that probe, in flight */
    CURLM                      *multi;
    ngx_tce_consul_client_t    *client;
    ngx_tce_consul_watch_t     *watches;
    ngx_uint_t                  nwatches;
    ngx_array_t                 conns;      /* ngx_connection_t * */
    ngx_uint_t                  owner;      /* this worker watches */
    ngx_uint_t                  full;       /* catalog limit logged */
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

void ngx_tce_consul_event_init(ngx_event_t *ev, ngx_event_handler_pt handler,
    void *data, ngx_log_t *log);
void ngx_tce_consul_timer_set(ngx_event_t *ev, ngx_msec_t ms);


#endif /* _NGX_TCE_CONSUL_WATCH_H_INCLUDED_ */
