/*
 * The request metrics as the exporter sees them (pure C, no nginx): the
 * counters kept in the zone, a snapshot of them, and its rendering as
 * Prometheus text format 0.0.4, OpenMetrics 1.0.0 or JSON.
 *
 * The counter structures are the very layout of the zone's series: the
 * request path adds to their fields with atomic operations, a scrape
 * copies them into a snapshot and renders the copy without any lock.
 */

#ifndef _NGX_TCE_PROM_H_INCLUDED_
#define _NGX_TCE_PROM_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "ngx_tce_histogram.h"
#include "ngx_tce_window.h"


#define NGX_TCE_PROM_NCLASSES      6     /* 1xx 2xx 3xx 4xx 5xx other */
#define NGX_TCE_PROM_NSOURCES      2

#define NGX_TCE_PROM_SRC_UPSTREAM  0     /* an upstream answered */
#define NGX_TCE_PROM_SRC_NGINX     1     /* nginx answered (502/503/504) */

#define NGX_TCE_PROM_TEXT          0     /* text/plain; version=0.0.4 */
#define NGX_TCE_PROM_OPENMETRICS   1
#define NGX_TCE_PROM_JSON          2

#define NGX_TCE_PROM_DEPARTED      (-1)  /* instance state: not listed */


/* per service, cluster and env */
typedef struct {
    uint64_t                  requests[NGX_TCE_PROM_NCLASSES]
                                      [NGX_TCE_PROM_NSOURCES];
    uint64_t                  bytes_in;
    uint64_t                  bytes_out;
    uint64_t                  connect_failures;
    uint64_t                  timeouts;
    uint64_t                  retries;
    uint64_t                  in_flight;     /* gauge, read as signed */
    ngx_tce_histogram_t       request_time;
    ngx_tce_histogram_t       upstream_time;
} ngx_tce_group_counters_t;


/* per instance: attempts sent to it, by the status class they got */
typedef struct {
    uint64_t                  requests[NGX_TCE_PROM_NCLASSES];
    uint64_t                  in_flight;     /* gauge, read as signed */
    uint64_t                  time_sum_ms;
    uint64_t                  time_count;
    ngx_tce_window_t          window;        /* the last seconds */
} ngx_tce_instance_counters_t;


/* per service, written by the discovery watcher */
typedef struct {
    uint64_t                  ok;
    uint64_t                  failures;
    uint64_t                  empty;
    uint64_t                  last_success;  /* unix time, 0: never */
    uint64_t                  index;
} ngx_tce_discovery_counters_t;


typedef struct {
    const char               *service;
    const char               *cluster;
    const char               *env;
    ngx_tce_group_counters_t  c;
} ngx_tce_prom_group_t;


typedef struct {
    const char               *service;
    const char               *cluster;
    const char               *env;
    const char               *instance;
    int                       state;         /* NGX_TCE_STATE_*, DEPARTED */
    unsigned                  weight;
    ngx_tce_instance_counters_t  c;
} ngx_tce_prom_instance_t;


typedef struct {
    const char               *service;
    ngx_tce_discovery_counters_t  c;
} ngx_tce_prom_discovery_t;


/* a file the workers write (ngx_tce_persist.h) */
typedef struct {
    const char               *file;          /* path, from the config */
    uint64_t                  writes;
    uint64_t                  errors;
    uint64_t                  last_success;  /* unix time, 0: never */
} ngx_tce_prom_persist_t;


/* the fleet store (tce_redis), present 0 without it */
typedef struct {
    int                       present;
    unsigned                  up;            /* the syncer is connected */
    uint64_t                  version;       /* fleet version applied */
    uint64_t                  last_sync;     /* unix time, 0: never */
    uint64_t                  syncs;
    uint64_t                  messages;
    uint64_t                  errors;
    uint64_t                  rejected;
    uint64_t                  writes;
    uint64_t                  write_errors;
} ngx_tce_prom_fleet_t;


/* an env with a tce_scale_target: the instances HPA's formula wants */
typedef struct {
    const char               *service;
    const char               *cluster;
    const char               *env;
    uint32_t                  desired;
} ngx_tce_prom_scale_t;


/* a tce_diff location's outcomes for a service's cluster */
typedef struct {
    const char               *service;
    const char               *cluster;
    const char               *location;      /* name= in nginx.conf */
    uint64_t                  results[3];    /* match, mismatch, error */
} ngx_tce_prom_diff_t;


/* the deploy webhook (tce_deploy_webhook), present 0 without it */
typedef struct {
    int                       present;
    uint64_t                  queue;         /* events waiting */
    uint64_t                  queued;
    uint64_t                  delivered;
    uint64_t                  dropped;       /* the queue was full */
    uint64_t                  abandoned;     /* retries exhausted */
    uint64_t                  failures;      /* failed attempts */
    uint64_t                  last_success;  /* unix time, 0: never */
} ngx_tce_prom_webhook_t;


/* the canary policy in effect of a service's cluster */
typedef struct {
    const char               *service;
    const char               *cluster;
    uint32_t                  weight;        /* basis points */
    uint64_t                  epoch;
} ngx_tce_prom_canary_t;


typedef struct {
    ngx_tce_prom_group_t     *groups;
    size_t                    ngroups;
    ngx_tce_prom_instance_t  *instances;
    size_t                    ninstances;
    ngx_tce_prom_discovery_t *discovery;
    size_t                    ndiscovery;
    ngx_tce_prom_persist_t   *persist;
    size_t                    npersist;
    ngx_tce_prom_fleet_t      fleet;
    ngx_tce_prom_scale_t     *scale;
    size_t                    nscale;
    ngx_tce_prom_diff_t      *diff;
    size_t                    ndiff;
    ngx_tce_prom_webhook_t    webhook;
    ngx_tce_prom_canary_t    *canary;
    size_t                    ncanary;

    const char               *zone_name;
    uint64_t                  zone_size;
    uint64_t                  zone_used;
    uint64_t                  zone_free;
    uint64_t                  zone_services;
    uint64_t                  services_skipped;
    uint64_t                  services_reclaimed;
    uint64_t                  writes_refused;
    uint64_t                  dropped;
    uint64_t                  start_time;
    const char               *version;
    const char               *server_version;
} ngx_tce_prom_snapshot_t;


/* a growing buffer; after a failed allocation every append is a no-op */
typedef struct {
    char                     *data;
    size_t                    len;
    size_t                    cap;
    int                       failed;
} ngx_tce_buf_t;


/* appends; returns 0, or -1 (and b->failed set) when out of memory */
int ngx_tce_buf_append(ngx_tce_buf_t *b, const char *s, size_t len);
int ngx_tce_buf_printf(ngx_tce_buf_t *b, const char *fmt, ...);
void ngx_tce_buf_free(ngx_tce_buf_t *b);

/*
 * Appends a label value escaped for the exposition formats: backslash,
 * double quote and newline become \\, \" and \n.
 */
int ngx_tce_prom_escape(ngx_tce_buf_t *b, const char *s);

/* the class index of a status code: 0 for 1xx .. 4 for 5xx, 5 other */
static inline unsigned
ngx_tce_prom_class(unsigned status)
{
    return (status - 100 < 500) ? status / 100 - 1
                                : NGX_TCE_PROM_NCLASSES - 1;
}

const char *ngx_tce_prom_class_name(unsigned cls);

/*
 * Renders the snapshot in format (NGX_TCE_PROM_*) into b.  Families are
 * rendered whole, each with one HELP and one TYPE line, and only when
 * they have samples.  Returns 0, or -1 when out of memory (b is then to
 * be freed, its content is incomplete).
 */
int ngx_tce_prom_render(const ngx_tce_prom_snapshot_t *s, unsigned format,
    ngx_tce_buf_t *b);

/* the Content-Type of a format */
const char *ngx_tce_prom_content_type(unsigned format);

/*
 * The format an Accept header asks for: OpenMetrics when it names
 * application/openmetrics-text (with a q above 0), text otherwise.
 */
unsigned ngx_tce_prom_negotiate(const char *accept, size_t len);


#endif /* _NGX_TCE_PROM_H_INCLUDED_ */
