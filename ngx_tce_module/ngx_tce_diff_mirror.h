/*
 * API diff (tce_diff): types shared by the module's files.
 *
 *   ngx_tce_diff_module.c   the directive, the filters that copy the
 *                           client's prod answer and start a job
 *   ngx_tce_diff_mirror.c   a job: the two mirror requests (libcurl's
 *                           multi interface on nginx events), the
 *                           comparison on the thread pool
 *   ngx_tce_diff_zone.c     the outcomes in the shared zone: counters,
 *                           the last mismatches, totals, metrics, JSON
 *   ngx_tce_diff_compare.c  the comparison itself (pure C)
 */

#ifndef _NGX_TCE_DIFF_MIRROR_H_INCLUDED_
#define _NGX_TCE_DIFF_MIRROR_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include <curl/curl.h>

#include "ngx_tce.h"
#include "ngx_tce_curl.h"
#include "ngx_tce_diff.h"
#include "ngx_tce_diff_compare.h"


/* jobs a worker runs at once; a sampled request beyond is not mirrored */
#define NGX_TCE_DIFF_MAX_JOBS      64

#define NGX_TCE_DIFF_NAME_LEN      64      /* name= */
#define NGX_TCE_DIFF_REQUEST_LEN   256     /* a mismatch's request line */
#define NGX_TCE_DIFF_NLAST         8       /* mismatches kept per entry */
#define NGX_TCE_DIFF_ERROR_LEN     128

/* the sides of a job */
#define NGX_TCE_DIFF_PROD          0       /* the client's own answer */
#define NGX_TCE_DIFF_PROD2         1       /* a second prod instance */
#define NGX_TCE_DIFF_CANARY        2
#define NGX_TCE_DIFF_NSIDES        3


/* a tce_diff location */
typedef struct {
    ngx_str_t                  name;
    ngx_uint_t                 sample;     /* in 1/100 of a percent */
    ngx_uint_t                 methods;    /* NGX_HTTP_GET | ... */
    size_t                     max_body;
    ngx_msec_t                 timeout;
    ngx_tce_diff_ignore_t      ignore;
    ngx_str_t                  service;    /* the upstream's, "": $var */
} ngx_tce_diff_conf_t;


typedef struct {
    ngx_tce_diff_conf_t       *diff;       /* NULL: off */
} ngx_tce_diff_loc_conf_t;


typedef struct ngx_tce_diff_worker_s  ngx_tce_diff_worker_t;


typedef struct {
    ngx_tce_zone_t            *zone;
    ngx_array_t                services;   /* ngx_str_t: tce_diff covers */
    ngx_tce_main_conf_t       *tmcf;
    ngx_tce_diff_worker_t     *worker;     /* this worker's jobs */
} ngx_tce_diff_main_conf_t;


typedef struct ngx_tce_diff_job_s  ngx_tce_diff_job_t;


/* one answer of a job */
typedef struct {
    ngx_tce_diff_job_t        *job;
    CURL                      *easy;       /* mirrors only */
    struct curl_slist         *headers;
    unsigned                   status;
    ngx_tce_diff_header_t     *hdrs;       /* NGX_TCE_DIFF_MAX_HEADERS */
    ngx_uint_t                 nhdrs;
    u_char                    *body;       /* max_body bytes */
    size_t                     len;
    unsigned                   done:1;
    unsigned                   cut:1;      /* stopped at max_body */
    char                       error[NGX_TCE_DIFF_ERROR_LEN];
    char                       addr[NGX_TCE_ADDR_LEN];
} ngx_tce_diff_side_t;


/* the request's side of a job: detached when the request goes */
typedef struct {
    ngx_tce_diff_job_t        *job;
} ngx_tce_diff_ctx_t;


struct ngx_tce_diff_job_s {
    ngx_queue_t                queue;      /* the worker's jobs */
    ngx_pool_t                *pool;       /* the job's own memory */
    ngx_tce_diff_worker_t     *worker;
    ngx_tce_diff_conf_t       *conf;
    ngx_tce_diff_ctx_t        *ctx;        /* NULL: request gone */
    ngx_str_t                  service;
    ngx_str_t                  cluster;
    ngx_str_t                  method;
    ngx_str_t                  uri;
    ngx_array_t               *reqh;       /* ngx_str_t: header lines */
    ngx_uint_t                 pending;    /* sides not done */
    ngx_tce_diff_side_t        side[NGX_TCE_DIFF_NSIDES];
    ngx_tce_diff_outcome_t     outcome;
    unsigned                   in_thread:1;
    unsigned                   aborted:1;
};


struct ngx_tce_diff_worker_s {
    ngx_tce_curl_t            *curl;       /* the mirrors' transfers */
    ngx_log_t                 *log;
    ngx_queue_t                jobs;
    ngx_uint_t                 njobs;
    ngx_uint_t                 next;       /* round robin of picks */
    ngx_tce_diff_main_conf_t  *dmcf;
};


/* a mismatch kept for the API (texts printable, NUL-terminated) */
typedef struct {
    uint64_t                   time;       /* unix ms */
    unsigned                   prod_status;
    unsigned                   canary_status;
    uint64_t                   prod_digest;
    uint64_t                   canary_digest;
    char                       request[NGX_TCE_DIFF_REQUEST_LEN];
    char                       what[NGX_TCE_DIFF_WHAT_LEN];
    char                       prod[NGX_TCE_DIFF_SNIP_LEN];
    char                       canary[NGX_TCE_DIFF_SNIP_LEN];
} ngx_tce_diff_mismatch_t;


/*
 * The outcomes of one location for one service's cluster, in the zone:
 * entries are published whole and never unlinked (read without the
 * lock), counters are atomic, the ring of mismatches is written and
 * copied under the zone's lock.
 */
typedef struct ngx_tce_diff_entry_s  ngx_tce_diff_entry_t;

struct ngx_tce_diff_entry_s {
    ngx_tce_diff_entry_t      *next;
    ngx_atomic_t               results[NGX_TCE_DIFF_NRESULTS];
    ngx_atomic_t               noisy;      /* matches with noise set aside */
    ngx_uint_t                 nlast;      /* mismatches ever kept */
    ngx_tce_diff_mismatch_t    last[NGX_TCE_DIFF_NLAST];
    char                       service[NGX_TCE_SERVICE_LEN];
    char                       cluster[NGX_TCE_CLUSTER_LEN];
    char                       location[NGX_TCE_DIFF_NAME_LEN];
};


typedef struct {
    ngx_tce_diff_entry_t      *entries;    /* newest first */
} ngx_tce_diff_sh_t;


/*
 * ngx_tce_diff_mirror.c.  Starts the job of a sampled request: its two
 * mirror requests (copies of the request nginx sent to prod, in req) to
 * prod2 and canary.  The job is the worker's, not the request's: the
 * request's ctx points to it until the request ends.  Returns the job,
 * or NULL (logged) when it could not start; nothing is left then.
 */
ngx_tce_diff_job_t *ngx_tce_diff_job_start(ngx_http_request_t *r,
    ngx_tce_diff_conf_t *conf, ngx_tce_diff_worker_t *w, ngx_buf_t *req,
    ngx_str_t *service, ngx_str_t *cluster, const char *prod2,
    const char *canary);

/*
 * The client's answer is complete (error NULL) or cannot be compared
 * (error says why): the job goes on without the request.
 */
void ngx_tce_diff_job_prod_done(ngx_tce_diff_job_t *job, const char *error);

/* this worker's job runner, made at its first job; NULL on error */
ngx_tce_diff_worker_t *ngx_tce_diff_worker(ngx_tce_diff_main_conf_t *dmcf,
    ngx_log_t *log);

/* the worker exits: every job and connection freed */
void ngx_tce_diff_worker_free(ngx_tce_diff_worker_t *w);

/*
 * ngx_tce_diff_zone.c.  Counts a job's outcome for service, cluster and
 * location in the zone, and keeps it among the last mismatches when it
 * is one (request line and texts made printable).  A full zone loses
 * the count (logged once per worker).
 */
void ngx_tce_diff_zone_count(ngx_tce_zone_t *zone, ngx_tce_diff_job_t *job,
    int result, ngx_log_t *log);


extern ngx_module_t  ngx_tce_diff_module;


#endif /* _NGX_TCE_DIFF_MIRROR_H_INCLUDED_ */
