/*
 * libcurl's multi interface on nginx events, for any client of the
 * suite that sends HTTP requests of its own from a worker (the deploy
 * webhook, the API diff's mirrors): a multi handle whose sockets are
 * watched through ngx_connection_t's holding a dup() of curl's socket,
 * whose timer is an nginx timer, and which tells its owner when a
 * transfer is done.
 *
 * The Consul watcher (ngx_tce_consul_events.c) has its own copy of the
 * pattern.  See ngx_tce_curl.c for why a dup() and why a socket that
 * gets no nginx connection must not return -1 to curl.
 */

#ifndef _NGX_TCE_CURL_H_INCLUDED_
#define _NGX_TCE_CURL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <curl/curl.h>


typedef struct ngx_tce_curl_s  ngx_tce_curl_t;

/*
 * A transfer is over: rc is curl's result (CURLE_OK: an answer came,
 * whatever its status), error a text for the log (NULL with CURLE_OK).
 * The easy handle is out of the multi handle already: the owner
 * frees or reuses it.
 */
typedef void (*ngx_tce_curl_done_pt)(ngx_tce_curl_t *cu, CURL *easy,
    CURLcode rc, const char *error);

/*
 * The worker is shutting down (nginx closed a watched connection as
 * idle): the owner ends what it runs and calls ngx_tce_curl_destroy().
 */
typedef void (*ngx_tce_curl_exiting_pt)(ngx_tce_curl_t *cu);


struct ngx_tce_curl_s {
    CURLM                    *multi;
    ngx_log_t                *log;
    const char               *name;       /* log prefix: "tce webhook" */
    ngx_tce_curl_done_pt      done;
    ngx_tce_curl_exiting_pt   exiting;    /* NULL: destroyed at once */
    void                     *data;       /* the owner's */
    ngx_event_t               timer;      /* curl's */
    ngx_event_t               starved;    /* posted: see ngx_tce_curl.c */
    ngx_array_t               conns;      /* ngx_connection_t * */
    ngx_array_t               easies;     /* CURL *: transfers running */
    ngx_array_t               failed;     /* CURL *: to complete, failed */
};


/*
 * A driver whose memory comes from pool (the cycle's) and whose
 * descriptors are freed by ngx_tce_curl_destroy().  Returns NULL
 * (logged) on error.
 */
ngx_tce_curl_t *ngx_tce_curl_create(ngx_pool_t *pool, ngx_log_t *log,
    const char *name, ngx_tce_curl_done_pt done, void *data);

/*
 * Starts a transfer (the easy handle set up by the caller; this sets
 * its CURLOPT_CLOSESOCKETFUNCTION/DATA and CURLOPT_NOSIGNAL).  Returns
 * NGX_OK, or NGX_ERROR (logged): the handle is then not in the multi.
 */
ngx_int_t ngx_tce_curl_add(ngx_tce_curl_t *cu, CURL *easy);

/* takes a running transfer out; done is not called */
void ngx_tce_curl_remove(ngx_tce_curl_t *cu, CURL *easy);

/*
 * Every running transfer is completed as failed (CURLE_ABORTED_BY_CALLBACK,
 * done called) and every descriptor freed; the driver is unusable after.
 * Called when the worker exits; safe to call twice.
 */
void ngx_tce_curl_destroy(ngx_tce_curl_t *cu);


#endif /* _NGX_TCE_CURL_H_INCLUDED_ */
