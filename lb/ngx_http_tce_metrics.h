/*
 * Request metrics (lb/): the series kept in the tce zone, the calls the
 * balancer makes into them.
 *
 * A series is allocated in the zone's slab, under the zone's mutex,
 * when a worker builds its read view of a service and the series does
 * not exist yet; the view then holds a pointer to it (and a reference
 * on it).  The request path only adds to counters with atomic
 * operations: no lock, no lookup.  A series nobody references for
 * tce_metrics_expire is freed by a timer.
 */

#ifndef _NGX_HTTP_TCE_METRICS_H_INCLUDED_
#define _NGX_HTTP_TCE_METRICS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_tce.h"
#include "ngx_tce_prom.h"
#include "ngx_http_tce_upstream.h"


#define NGX_HTTP_TCE_METRICS_VERSION   "0.1.0"


/* the cluster label of a $variable naming no cluster of the view */
#define NGX_HTTP_TCE_METRICS_UNKNOWN   "unknown"


/* adds v to a 64-bit counter of the zone, atomically */
#define ngx_http_tce_metrics_add(p, v)                                       \
    (void) ngx_atomic_fetch_add((ngx_atomic_t *) (p), (ngx_atomic_int_t) (v))


typedef struct ngx_http_tce_metrics_group_s  ngx_http_tce_metrics_group_t;
typedef struct ngx_http_tce_metrics_peer_s   ngx_http_tce_metrics_peer_t;
typedef struct ngx_http_tce_metrics_cell_s   ngx_http_tce_metrics_cell_t;


/*
 * One process's share of one series (ngx_http_tce_metrics_slot.c): its
 * attempts in flight and its references, taken back out of the series
 * when the process dies without releasing them.
 */
struct ngx_http_tce_metrics_cell_s {
    ngx_queue_t                        series;    /* the series' cells */
    ngx_queue_t                        slot;      /* the process's cells */
    uint64_t                           in_flight; /* written by its owner */
    ngx_uint_t                         refs;      /* under the mutex */
    ngx_pid_t                          pid;
    uint64_t                          *total;     /* the series' gauge */
    ngx_atomic_t                      *series_refs;
    time_t                            *unused;
};


/* a process holding cells: its pid and the master's slot it runs in */
typedef struct {
    ngx_queue_t                        queue;     /* root's slots */
    ngx_queue_t                        cells;
    ngx_int_t                          slot;      /* ngx_process_slot */
    ngx_pid_t                          pid;
} ngx_http_tce_metrics_slot_t;


/* per service, cluster and env */
struct ngx_http_tce_metrics_group_s {
    ngx_queue_t                        queue;     /* service's groups */
    ngx_atomic_t                       refs;      /* views using it */
    time_t                             unused;    /* last release */
    ngx_queue_t                        cells;     /* per process */
    ngx_uint_t                         env;
    size_t                             cluster_len;
    u_char                             cluster[NGX_TCE_CLUSTER_LEN];
    ngx_tce_group_counters_t           c;
};


/* per instance (id, cluster, env) */
struct ngx_http_tce_metrics_peer_s {
    ngx_rbtree_node_t                  node;      /* key: crc32 */
    ngx_queue_t                        queue;     /* service's peers */
    ngx_atomic_t                       refs;
    time_t                             unused;
    ngx_queue_t                        cells;     /* per process */
    ngx_uint_t                         env;
    size_t                             cluster_len;
    size_t                             id_len;
    ngx_tce_instance_counters_t        c;
    u_char                             data[1];   /* cluster, then id */
};


typedef struct {
    ngx_queue_t                        queue;     /* root's services */
    ngx_queue_t                        groups;
    ngx_queue_t                        peers;
    ngx_rbtree_t                       tree;
    ngx_rbtree_node_t                  sentinel;
    size_t                             name_len;
    u_char                             name[NGX_TCE_SERVICE_LEN];
} ngx_http_tce_metrics_svc_t;


/* the metrics' root in the zone (ngx_tce_shctx_t.metrics) */
typedef struct {
    ngx_queue_t                        services;
    ngx_atomic_t                       dropped;
    ngx_atomic_t                       series;
    ngx_queue_t                        slots;     /* processes' cells */
} ngx_http_tce_metrics_sh_t;


typedef struct {
    ngx_flag_t                         enabled;   /* a tce_metrics exists */
    time_t                             expire;
    ngx_tce_zone_t                    *zone;
    ngx_http_tce_metrics_sh_t         *sh;        /* set at init_module */
    ngx_event_t                       *timer;
} ngx_http_tce_metrics_main_conf_t;


/*
 * Allocates the metrics' root in the zone if it is not there yet (a
 * fresh zone; a reloaded zone keeps its root and counters).  Returns
 * the root, or NULL when the zone is full.
 */
ngx_http_tce_metrics_sh_t *ngx_http_tce_metrics_init_zone(
    ngx_tce_zone_t *zone, ngx_log_t *log);

/*
 * Points the view's groups and peers (and view->metrics, the series of
 * requests that find no group) at their series, creating those that do
 * not exist; each pointer holds a reference.  Called by the view build;
 * a series the zone has no room for stays NULL and its observations are
 * counted as dropped.  Does nothing when no tce_metrics is configured.
 */
void ngx_http_tce_metrics_view_bind(ngx_http_tce_upstream_srv_conf_t *ucf,
    ngx_http_tce_upstream_view_t *view, ngx_log_t *log);

/* drops the view's references (the view is being freed) */
void ngx_http_tce_metrics_view_release(ngx_http_tce_upstream_view_t *view);

/* frees the series nobody has referenced for expire seconds */
void ngx_http_tce_metrics_expire(ngx_tce_zone_t *zone,
    ngx_http_tce_metrics_sh_t *sh, time_t expire, ngx_log_t *log);

/*
 * Copies every series into s, service by service, each under a short
 * hold of the zone's mutex; strings and arrays come from pool.
 */
ngx_int_t ngx_http_tce_metrics_snapshot(ngx_tce_zone_t *zone,
    ngx_http_tce_metrics_sh_t *sh, ngx_tce_prom_snapshot_t *s,
    ngx_pool_t *pool);

/*
 * This process's cell of a series (its queue of cells, the series'
 * gauge, references and last-release time), made if needed, with one
 * more reference.  Called under the zone's mutex; NULL when the zone
 * is full.
 */
ngx_http_tce_metrics_cell_t *ngx_http_tce_metrics_cell_locked(
    ngx_tce_zone_t *zone, ngx_http_tce_metrics_sh_t *sh, ngx_queue_t *cells,
    uint64_t *in_flight, ngx_atomic_t *refs, time_t *unused);

/* drops a reference of the cell (under the mutex); frees it at 0 */
void ngx_http_tce_metrics_cell_release_locked(ngx_tce_zone_t *zone,
    ngx_http_tce_metrics_cell_t *cell);

/*
 * Takes back what dead processes held: the attempts in flight and the
 * references of a process that ran in this worker's slot before it,
 * or whose pid is gone (logged).  At init_process and on the timer.
 */
void ngx_http_tce_metrics_reclaim(ngx_tce_zone_t *zone,
    ngx_http_tce_metrics_sh_t *sh, ngx_log_t *log);

/*
 * The balancer's get/free: attempts in flight, group and instance, in
 * the series and in this process's cell of it.
 */
static ngx_inline void
ngx_http_tce_metrics_attempt(ngx_http_tce_upstream_group_t *g,
    ngx_http_tce_upstream_peer_t *peer, ngx_atomic_int_t d)
{
    if (peer->metrics) {
        peer->mcell->in_flight += d;
        ngx_http_tce_metrics_add(&peer->metrics->c.in_flight, d);
    }

    if (g && g->metrics) {
        g->mcell->in_flight += d;
        ngx_http_tce_metrics_add(&g->metrics->c.in_flight, d);
    }
}


extern ngx_module_t  ngx_http_tce_metrics_module;


#endif /* _NGX_HTTP_TCE_METRICS_H_INCLUDED_ */
