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

/* one instance's recent figures, every worker's summed */
typedef struct {
    ngx_uint_t                         found;     /* it has a series */
    int64_t                            in_flight;
    ngx_tce_window_sum_t               w;         /* the last seconds */
} ngx_http_tce_metrics_recent_t;


/*
 * Turns counting on (the series, the log phase) as tce_metrics does,
 * for the directives that read the counters (tce_admin,
 * tce_scale_target).  Returns NGX_CONF_OK or an error text.
 */
char *ngx_http_tce_metrics_enable(ngx_conf_t *cf);

/*
 * The recent figures of inst[0..n-1], instances of the service name,
 * into out[0..n-1] (found 0 for an instance no worker counted yet),
 * under one hold of the zone's mutex: O(n log n).  Returns NGX_OK, or
 * NGX_DECLINED when counting is off (out untouched).
 */
ngx_int_t ngx_http_tce_metrics_recent(ngx_str_t *name,
    ngx_tce_instance_t *inst, ngx_uint_t n,
    ngx_http_tce_metrics_recent_t *out);

/* an env's figures against its upstream's tce_scale_target */
typedef struct {
    ngx_uint_t                         current;   /* routable instances */
    ngx_uint_t                         listed;    /* instances, any state */
    double                             rps;       /* per routable one */
    double                             in_flight; /* average, per one */
    ngx_uint_t                         counted;   /* counting is on */
    double                             target_rps;       /* 0: unset */
    double                             target_inflight;  /* 0: unset */
    uint32_t                           proposals[2];     /* rps, inflight */
    ngx_int_t                          desired;   /* -1: no target */
} ngx_http_tce_scale_t;


/*
 * The upstream whose tce_scale_target applies to the service: the
 * first naming it with a target, else the first tce_service $var one
 * with a target; NULL when none has.
 */
ngx_http_tce_upstream_srv_conf_t *ngx_http_tce_metrics_scale_conf(
    ngx_cycle_t *cycle, u_char *name, size_t len);

/*
 * The env's current instances, per-instance request rate and in-flight
 * average over the recent window (the sum over the env's instances
 * divided by the routable ones), and desired instances for ucf's
 * targets (NULL: none) as HPA computes them (ngx_tce_scale.h).
 * Returns NGX_OK or NGX_ERROR (no memory).
 */
ngx_int_t ngx_http_tce_metrics_scale(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_str_t *cluster, ngx_uint_t env,
    ngx_http_tce_upstream_srv_conf_t *ucf, ngx_http_tce_scale_t *out,
    ngx_log_t *log);

/*
 * The desired instances of every env of the services with a
 * tce_scale_target, into s->scale (from pool), for the exposition.
 */
ngx_int_t ngx_http_tce_metrics_scale_snapshot(ngx_tce_zone_t *zone,
    ngx_tce_prom_snapshot_t *s, ngx_pool_t *pool);

/* the service's series, or NULL (zone's mutex held) */
ngx_http_tce_metrics_svc_t *ngx_http_tce_metrics_svc_find_locked(
    ngx_http_tce_metrics_sh_t *sh, u_char *name, size_t len);

/* an instance's series, or NULL (zone's mutex held) */
ngx_http_tce_metrics_peer_t *ngx_http_tce_metrics_peer_find_locked(
    ngx_http_tce_metrics_svc_t *svc, u_char *cluster, size_t clen,
    ngx_uint_t env, u_char *id, size_t idlen);


/*
 * Adds v to the slot word of second now in one of a window's arrays
 * (ngx_tce_window.h): a compare-and-set loop, no lock; a slot left by
 * an older second is started over.
 */
static ngx_inline void
ngx_http_tce_metrics_window_add(uint64_t *words, uint32_t now, uint32_t v)
{
    ngx_atomic_t       *p;
    ngx_atomic_uint_t   old;

    p = (ngx_atomic_t *) &words[ngx_tce_window_slot(now)];

    do {
        old = *p;
    } while (!ngx_atomic_cmp_set(p, old,
                                 ngx_tce_window_next(old, now, v)));
}


/*
 * The attempts in flight on one instance of a service (its cluster,
 * env and id), summed over every worker, into *n.  Returns NGX_OK, or
 * NGX_DECLINED when no series of it exists: no view has held it since
 * tce_metrics_expire, counting is off, or the zone had no room.
 */
ngx_int_t ngx_http_tce_metrics_in_flight(ngx_tce_zone_t *zone,
    ngx_str_t *service, ngx_tce_instance_t *inst, int64_t *n);

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


/* a copy of one group series (ngx_http_tce_metrics_read_groups()) */
typedef struct {
    ngx_uint_t                         env;
    size_t                             cluster_len;
    u_char                             cluster[NGX_TCE_CLUSTER_LEN];
    ngx_tce_group_counters_t           c;
} ngx_http_tce_metrics_group_copy_t;


/*
 * Copies the group series (per cluster and env) of the service name
 * into out, at most max, under one short hold of the zone's mutex, and
 * returns how many.  0 when tce_metrics is off or the service has no
 * series yet.  Counters are cumulative since the zone was created.
 */
ngx_uint_t ngx_http_tce_metrics_read_groups(u_char *name, size_t len,
    ngx_http_tce_metrics_group_copy_t *out, ngx_uint_t max);


extern ngx_module_t  ngx_http_tce_metrics_module;


#endif /* _NGX_HTTP_TCE_METRICS_H_INCLUDED_ */
