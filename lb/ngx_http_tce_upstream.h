/*
 * The upstream balancer (lb/): types shared by its files.
 *
 * Each worker keeps, per upstream, its own read view of the service: a
 * copy of the instance set with per-instance balancer state, grouped by
 * cluster and env, each group with its precomputed weighted schedule.
 * A view is rebuilt when the service's generation moves, and freed when
 * the last request using it is done (reference count, one worker only:
 * no atomics needed).
 */

#ifndef _NGX_HTTP_TCE_UPSTREAM_H_INCLUDED_
#define _NGX_HTTP_TCE_UPSTREAM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_tce.h"
#include "ngx_tce_sched_zone.h"
#include "ngx_tce_sched_ramp.h"
#include "ngx_tce_prom.h"


/* tce_keepalive: an upstream's idle connections, per worker */
typedef struct ngx_http_tce_upstream_keepalive_s
    ngx_http_tce_upstream_keepalive_t;


typedef struct {
    ngx_tce_instance_t                 inst;
    ngx_str_t                          name;      /* inst.addr */
    ngx_str_t                          id;        /* inst.id */

    /* passive health, as nginx's max_fails/fail_timeout, per worker */
    ngx_uint_t                         fails;
    time_t                             accessed;
    time_t                             checked;

    /* slow_start: when its ramp began (unix ms, 0: none), the credit
     * of its admitted entries (ngx_tce_sched_ramp.h) */
    uint64_t                           ss_start;
    uint32_t                           ss_credit;

    /* request metrics: the instance's series (lb/ngx_http_tce_metrics.h)
     * and this worker's cell of it */
    struct ngx_http_tce_metrics_peer_s   *metrics;
    struct ngx_http_tce_metrics_cell_s   *mcell;

    /* tce_keepalive: its idle connections, most recent first */
    ngx_queue_t                        idle;

#if (NGX_HTTP_SSL)
    /* TLS upstreams: the instance's last session, for reuse */
    ngx_ssl_session_t                 *ssl_session;
#endif
} ngx_http_tce_upstream_peer_t;


/* a schedule entry whose instance left the set (a view meanwhile) */
#define NGX_HTTP_TCE_UPSTREAM_GONE  0xffffffff


/*
 * A group's schedule is shared (ngx_tce_sched_zone.h): its entries are
 * member positions of the set it was built for; map turns them into
 * this view's peer indices.  Usually the set is this view's own and map
 * is members; while a new set's schedule is being built, it is the
 * previous view's, and map drops the instances that left.
 */
typedef struct {
    ngx_tce_sched_set_t               *set;       /* NULL: no schedule */
    uint32_t                         **chunks;    /* entries, in pages */
    uint32_t                           len;       /* 0: no schedule */
    uint32_t                           pos;
    uint32_t                          *map;       /* entry -> peer */
    uint32_t                           nmap;
    uint32_t                          *own_map;   /* map, if not members */
    uint32_t                          *members;   /* routable peers */
    ngx_uint_t                         nmembers;
    ngx_uint_t                         scan;      /* degraded-mode cursor */
    struct ngx_http_tce_metrics_group_s  *metrics;  /* its series */
    struct ngx_http_tce_metrics_cell_s   *mcell;    /* this worker's */
} ngx_http_tce_upstream_group_t;


typedef struct {
    ngx_str_t                          name;
    ngx_http_tce_upstream_group_t      env[NGX_TCE_NENVS];

    /* the zone's policy, or tce_canary's; the split goes on across
     * rebuilds (ngx_http_tce_upstream_canary.c) */
    ngx_tce_canary_policy_t            canary;
    ngx_tce_canary_split_t             split;
} ngx_http_tce_upstream_cluster_t;


typedef struct {
    ngx_uint_t                         refs;
    ngx_atomic_uint_t                  generation;
    ngx_tce_zone_t                    *zone;      /* its schedules' */
    ngx_http_tce_upstream_peer_t      *peers;     /* sorted by id */
    ngx_uint_t                         npeers;
    ngx_http_tce_upstream_cluster_t   *clusters;
    ngx_uint_t                         nclusters;
    ngx_http_tce_upstream_cluster_t   *static_cluster;

    /* the series of requests finding no group (metrics) */
    struct ngx_http_tce_metrics_group_s  *metrics;
    struct ngx_http_tce_metrics_cell_s   *mcell;
    ngx_tce_zone_t                    *mzone;     /* of the series bound */
} ngx_http_tce_upstream_view_t;


/* tce_canary: the upstream's default policy and how requests choose */
typedef struct {
    ngx_tce_canary_policy_t            policy;
    ngx_http_complex_value_t          *key;       /* NULL: no sticky key */
    ngx_int_t                          key_index; /* key=$var: its index */
    ngx_str_t                          key_cookie;  /* key=$cookie_name */
    ngx_str_t                          header;    /* override header */
    ngx_uint_t                         header_hash;
    ngx_str_t                          cookie;    /* override cookie */
    ngx_array_t                       *override_from;   /* ngx_cidr_t */
} ngx_http_tce_upstream_canary_conf_t;


typedef struct {
    ngx_flag_t                         canary_header;
} ngx_http_tce_upstream_loc_conf_t;


/* lines about names from requests: a budget per window, per worker */
#define NGX_HTTP_TCE_UPSTREAM_LOG_WINDOW     10     /* seconds */
#define NGX_HTTP_TCE_UPSTREAM_LOG_BURST      5      /* lines per window */

/* a name from a request is cut to this many bytes, then escaped */
#define NGX_HTTP_TCE_UPSTREAM_NAME_CUT       64
#define NGX_HTTP_TCE_UPSTREAM_NAME_LEN       (4 * 64 + 4)

typedef struct {
    time_t                             window;    /* its start */
    ngx_uint_t                         lines;     /* logged in it */
    ngx_uint_t                         left_out;  /* since the last line */
} ngx_http_tce_upstream_log_limit_t;


typedef struct {
    ngx_str_t                          service_name;
    ngx_tce_service_t                 *service;   /* set at zone init */
    ngx_http_complex_value_t          *cluster;   /* NULL: static */
    ngx_str_t                          cluster_name;
    ngx_uint_t                         max_fails;
    time_t                             fail_timeout;
    ngx_msec_t                         slow_start;  /* 0: off */

    /* tce_scale_target, in 1/1000 (0: not set) */
    ngx_uint_t                         scale_rps;
    ngx_uint_t                         scale_inflight;
    ngx_tce_zone_t                    *zone;
    ngx_http_upstream_server_t        *placeholder;
    unsigned                           inited:1;  /* init_upstream ran */
    ngx_http_tce_upstream_canary_conf_t  *canary;  /* NULL: no tce_canary */
    ngx_http_tce_upstream_keepalive_t    *keepalive;  /* NULL: none */

    /* this worker's current view */
    ngx_http_tce_upstream_view_t      *view;

    /* tce_service $var: the service named per request, and this
     * worker's conf per service met (ngx_http_tce_upstream_byname.c) */
    ngx_http_complex_value_t          *service_cv;
    ngx_rbtree_t                      *byname;

    /* lines naming what a request chose; shared with the copies */
    ngx_http_tce_upstream_log_limit_t  *log_limit;
} ngx_http_tce_upstream_srv_conf_t;


typedef struct {
    ngx_http_request_t                *request;
    ngx_http_tce_upstream_srv_conf_t  *conf;
    ngx_http_tce_upstream_view_t      *view;
    ngx_http_tce_upstream_cluster_t   *cluster;
    ngx_http_tce_upstream_group_t     *group;
    ngx_http_tce_upstream_peer_t      *current;
    ngx_http_tce_upstream_peer_t      *last;      /* for $tce_instance */
    ngx_http_tce_upstream_peer_t      *again;     /* its idle connection
                                                     was stale: retry it */
    ngx_str_t                          cluster_name;
    ngx_uint_t                         env;
    ngx_uint_t                         spare;     /* fallback's members */
    ngx_uint_t                         ntried;
    uintptr_t                         *tried;     /* bitmap of peers */
    uintptr_t                          tried_word;
} ngx_http_tce_upstream_peer_data_t;


/*
 * Returns the worker's current view for the upstream, rebuilt first if
 * the service's generation moved.  If a rebuild fails, the previous view
 * is kept (and returned).  NULL only if there never was one.
 */
ngx_http_tce_upstream_view_t *ngx_http_tce_upstream_view_get(
    ngx_http_tce_upstream_srv_conf_t *ucf, ngx_log_t *log);

/*
 * slow_start: 1 if the pick may take this schedule entry of a ramping
 * peer (peer->ss_start set), 0 to pass it on; ends the ramp when its
 * time is over.
 */
ngx_uint_t ngx_http_tce_upstream_ramp_admit(
    ngx_http_tce_upstream_srv_conf_t *ucf,
    ngx_http_tce_upstream_peer_t *peer);

/* unix time in ms, from nginx's cached time */
uint64_t ngx_http_tce_upstream_now_ms(void);

/* drops one reference; frees the view with the last one */
void ngx_http_tce_upstream_view_release(ngx_http_tce_upstream_view_t *view);

/* the view's cluster of that name, or NULL */
ngx_http_tce_upstream_cluster_t *ngx_http_tce_upstream_view_cluster(
    ngx_http_tce_upstream_view_t *view, ngx_str_t *name);

ngx_int_t ngx_http_tce_upstream_add_variables(ngx_conf_t *cf);

/* a directive parameter compiled as a complex value; NULL on error */
ngx_http_complex_value_t *ngx_http_tce_upstream_complex(ngx_conf_t *cf,
    ngx_str_t *value);

/*
 * tce_service $var: the conf of the service the request names, built
 * once per worker and service (a copy of ucf with its own view).  A
 * name not in the registry is logged (escaped, rate-limited) and gets
 * a copy for this request only, bound to no service (the 503 path).
 * The cache is bounded by the zone's services: no name outside the
 * registry is kept.  NULL when out of memory.
 */
ngx_http_tce_upstream_srv_conf_t *ngx_http_tce_upstream_byname(
    ngx_http_request_t *r, ngx_http_tce_upstream_srv_conf_t *ucf);

/*
 * Brings the views of every service this worker met through the
 * tce_service $var upstream ucf up to date (the metrics timer: their
 * series are allocated and released like a static upstream's).
 * O(services met).
 */
void ngx_http_tce_upstream_byname_refresh(
    ngx_http_tce_upstream_srv_conf_t *ucf, ngx_log_t *log);

/*
 * Drops this worker's entries of ucf unused for a while whose service
 * no longer is watched nor named by the configuration, so that the
 * zone may reclaim it (the sweep timer, every second).
 */
void ngx_http_tce_upstream_byname_sweep(
    ngx_http_tce_upstream_srv_conf_t *ucf);

/*
 * ngx_http_tce_upstream_log.c: 1 if a line about names from a request
 * may be logged now (at most NGX_HTTP_TCE_UPSTREAM_LOG_BURST per
 * NGX_HTTP_TCE_UPSTREAM_LOG_WINDOW seconds); *left_out is then the
 * number of lines held back since the previous one.  0: hold it back.
 */
ngx_uint_t ngx_http_tce_upstream_log_allow(
    ngx_http_tce_upstream_log_limit_t *limit, ngx_uint_t *left_out);

/*
 * name, cut to NGX_HTTP_TCE_UPSTREAM_NAME_CUT bytes ("..." then) and
 * escaped to printable ASCII ("\xHH"), into buf (of
 * NGX_HTTP_TCE_UPSTREAM_NAME_LEN bytes); returns out, set to it.
 */
ngx_str_t *ngx_http_tce_upstream_log_name(ngx_str_t *out, u_char *buf,
    ngx_str_t *name);

/*
 * " (<n> like it left out)" into buf (of NGX_INT_T_LEN + 32 bytes), or
 * "" when n is 0; returns out, set to it.
 */
ngx_str_t *ngx_http_tce_upstream_log_left_out(ngx_str_t *out, u_char *buf,
    ngx_uint_t n);

/*
 * Logs that every instance of the request's service, cluster and env
 * failed or was tried (level ERR), or, other not NGX_ERROR, that env
 * other serves instead (WARN): names escaped, rate-limited as above.
 */
void ngx_http_tce_upstream_log_tried(ngx_http_tce_upstream_peer_data_t *pd,
    ngx_log_t *log, ngx_int_t other);

/* clusters of a service whose policy is listed (status, metrics) */
#define NGX_HTTP_TCE_UPSTREAM_POLICIES  64

/*
 * ngx_http_tce_upstream_policy.c: appends to out (of
 * ngx_tce_policy_entry_t) the canary policy in effect for each cluster
 * of the service (of its instances, of the zone's policies, of the
 * upstreams naming it with a static cluster=) and where it comes from:
 * the zone's policy if one is set, otherwise nginx.conf's tce_canary
 * (source NGX_TCE_POLICY_CONF).  Returns NGX_OK or NGX_ERROR.
 */
ngx_int_t ngx_http_tce_upstream_policy_effective(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_array_t *out, ngx_log_t *log);

/* the same for every service, as the snapshot's canary gauges */
ngx_int_t ngx_http_tce_upstream_policy_prom(ngx_tce_zone_t *zone,
    ngx_tce_prom_snapshot_t *s, ngx_pool_t *pool);

/* ngx_http_tce_upstream_canary.c: directives, view, decision */
char *ngx_http_tce_upstream_canary(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void *ngx_http_tce_upstream_create_loc_conf(ngx_conf_t *cf);
char *ngx_http_tce_upstream_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
ngx_int_t ngx_http_tce_upstream_canary_init(ngx_conf_t *cf);

/* copies the cluster's policy into a view, carries its split */
void ngx_http_tce_upstream_canary_view(ngx_http_tce_upstream_srv_conf_t *ucf,
    ngx_http_tce_upstream_cluster_t *cl, ngx_http_tce_upstream_view_t *old);

/*
 * Chooses the request's env (override, sticky key, exact split, then
 * fallback when that env is empty): sets pd->env, pd->group and
 * pd->spare.  Returns NGX_OK or NGX_ERROR.
 */
ngx_int_t ngx_http_tce_upstream_canary_choose(ngx_http_request_t *r,
    ngx_http_tce_upstream_peer_data_t *pd);

/*
 * The chosen env is exhausted: moves the request to the other env if
 * the fallback rule allows it.  Returns 1 if it did, 0 otherwise.
 */
ngx_uint_t ngx_http_tce_upstream_canary_fallback(
    ngx_http_tce_upstream_peer_data_t *pd);

/* ngx_http_tce_upstream_keepalive.c: tce_keepalive */
char *ngx_http_tce_upstream_keepalive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* the worker's cache of the upstream; NGX_ERROR when out of memory */
ngx_int_t ngx_http_tce_upstream_keepalive_init(ngx_conf_t *cf,
    ngx_http_tce_upstream_keepalive_t *ka);

/*
 * get(): takes the most recent idle connection of peer, whose idle
 * queue must not be empty, into pc (pc->cached = 1).  Returns NGX_DONE.
 */
ngx_int_t ngx_http_tce_upstream_keepalive_get(ngx_peer_connection_t *pc,
    ngx_http_tce_upstream_peer_t *peer);

/*
 * free(): caches pc->connection on peer's instance in the current view
 * (pc->connection = NULL then) if nginx's conditions for keepalive
 * hold; otherwise changes nothing and the upstream closes it.
 */
void ngx_http_tce_upstream_keepalive_free(ngx_peer_connection_t *pc,
    ngx_http_tce_upstream_peer_data_t *pd,
    ngx_http_tce_upstream_peer_t *peer, ngx_uint_t state);

/*
 * A rebuild: gives the instance that stays (same id and address) in
 * view, or NULL if it left or moved, what old's peer o holds: its idle
 * connections (only to a routable instance; closed otherwise).  o
 * holds none afterwards.
 */
void ngx_http_tce_upstream_keepalive_move(ngx_http_tce_upstream_peer_t *p,
    ngx_http_tce_upstream_peer_t *o);

/* closes every idle connection cached on the peer */
void ngx_http_tce_upstream_keepalive_drop(ngx_http_tce_upstream_peer_t *peer);

/*
 * ngx_http_tce_upstream_carry.c: the per-instance state of a worker
 * that outlives a view (idle connections, TLS sessions).
 *
 * carry(): a rebuild, before old can go: moves that state from old's
 * peers to the same instances (id and address) of view, and closes or
 * frees the rest; nothing in old points to it afterwards.  O(n): both
 * views are sorted by id.
 */
void ngx_http_tce_upstream_carry(ngx_http_tce_upstream_view_t *view,
    ngx_http_tce_upstream_view_t *old);

/* a view is being freed: closes and frees what its peers still hold */
void ngx_http_tce_upstream_drop(ngx_http_tce_upstream_view_t *view);

/*
 * The peer of view that is the same instance (id and address) as peer,
 * which may belong to an older view; NULL if it left or moved.
 * O(log n).
 */
ngx_http_tce_upstream_peer_t *ngx_http_tce_upstream_same_peer(
    ngx_http_tce_upstream_view_t *view, ngx_http_tce_upstream_peer_t *peer);

#if (NGX_HTTP_SSL)

/*
 * ngx_http_tce_upstream_ssl.c: TLS session reuse per instance, as
 * nginx's round robin does per server: set_session()/save_session() of
 * the peer connection (pc->data is the request's peer data).  A
 * session is kept on the instance's peer in the worker's current view.
 */
ngx_int_t ngx_http_tce_upstream_set_session(ngx_peer_connection_t *pc,
    void *data);
void ngx_http_tce_upstream_save_session(ngx_peer_connection_t *pc,
    void *data);

/* moves o's session to p, or frees it if p is NULL */
void ngx_http_tce_upstream_ssl_move(ngx_http_tce_upstream_peer_t *p,
    ngx_http_tce_upstream_peer_t *o);

#endif


extern ngx_module_t  ngx_http_tce_upstream_module;


#endif /* _NGX_HTTP_TCE_UPSTREAM_H_INCLUDED_ */
