/*
 * The core of the suite as the other modules see it: the shared zone
 * holding the registry, and the calls that read and write it.
 *
 * One writer at a time (the zone's mutex); readers on the request path
 * take no lock: they compare a service's generation with the one their
 * read view was built from, and only when it moved copy the instance
 * set, under the mutex, into memory of their own.
 */

#ifndef _NGX_TCE_H_INCLUDED_
#define _NGX_TCE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_tce_types.h"
#include "ngx_tce_instance.h"
#include "ngx_tce_canary.h"
#include "ngx_tce_change.h"


#define NGX_TCE_SOURCE_NONE     0       /* named by nginx.conf only */
#define NGX_TCE_SOURCE_STATE    1       /* the state file */
#define NGX_TCE_SOURCE_CONSUL   2       /* Consul (or its snapshot) */

#define NGX_TCE_DISC_ERR_LEN    160

/* who set a canary policy of the zone (none: nginx.conf's tce_canary) */
#define NGX_TCE_POLICY_CONF     0
#define NGX_TCE_POLICY_STATE    1       /* the state file, at a reload */
#define NGX_TCE_POLICY_ADMIN    2       /* the admin API */
#define NGX_TCE_POLICY_FLEET    3       /* the fleet (tce_redis) */
#define NGX_TCE_POLICY_DEPLOY   4       /* a progressive deploy */


typedef struct ngx_tce_service_s  ngx_tce_service_t;
typedef struct ngx_tce_policy_s   ngx_tce_policy_t;   /* ngx_tce_policy.c */
typedef struct ngx_tce_sched_set_s  ngx_tce_sched_set_t;  /* sched_zone */
typedef struct ngx_tce_override_s  ngx_tce_override_t;    /* override.c */
typedef struct ngx_tce_applied_s  ngx_tce_applied_t;      /* applied.c */
struct ngx_tce_fleet_override_s;                          /* fleet.h */

struct ngx_tce_service_s {
    ngx_tce_service_t          *next;        /* list of the live ones */
    ngx_tce_service_t          *hnext;       /* same bucket of the index */
    ngx_tce_service_t          *lnext;       /* reclaim: waiting list */
    ngx_atomic_t                holds;       /* ngx_tce_zone_hold() */
    uint32_t                    pinned;      /* named by nginx.conf or
                                                the state file: kept */
    uint32_t                    retired;     /* reclaim epoch, 0: live
                                                (its time: updated) */
    ngx_atomic_t                generation;  /* bumped on every change */
    ngx_tce_instance_t        **instances;   /* sorted by id, in chunks
                                                of a page at most
                                                (ngx_tce_zone.c) */
    ngx_uint_t                  ninstances;
    ngx_uint_t                  removals;    /* instances with rm_* set */
    ngx_uint_t                  source;      /* NGX_TCE_SOURCE_* */
    time_t                      updated;
    ngx_tce_policy_t           *policies;    /* canary, per cluster */
    ngx_tce_override_t         *overrides;   /* the state file's, by id */
    ngx_uint_t                  noverrides;
    uint64_t                    fleet_rev;   /* tce_redis: the fleet's
                                                revision of its policies */
    ngx_uint_t                  fleet_set;   /* tce_redis: its instance
                                                set is the fleet's (P
                                                inst), not the file's */

    /* the weighted schedules of the set (ngx_tce_sched_zone.h) */
    ngx_tce_sched_set_t        *sched;       /* NULL: not (yet) built */
    ngx_uint_t                  sched_state;
    ngx_uint_t                  sched_serial;  /* bumped per new set */
    ngx_atomic_uint_t           sched_generation;  /* the generation
                                                      their publication
                                                      made */

    /* the generation of each worker's view (ngx_tce_applied.c) */
    ngx_tce_applied_t          *applied;

    /* discovery status (Consul), written by the watcher only */
    time_t                      disc_success;   /* last good answer */
    time_t                      disc_failure;   /* last failed one */
    uint64_t                    disc_index;     /* X-Consul-Index */
    uint64_t                    disc_digest;    /* its checks when last
                                                   fetched, 0: never */
    ngx_atomic_t                disc_syncs;     /* good answers */
    ngx_atomic_t                disc_errors;    /* failed ones */
    ngx_atomic_t                disc_empty;     /* 200 [] not applied */
    ngx_uint_t                  disc_watched;   /* 1 once watched */
    u_char                      disc_error[NGX_TCE_DISC_ERR_LEN];
                                                /* "" when in sync */

    size_t                      name_len;
    u_char                      name[NGX_TCE_SERVICE_LEN];
};


typedef struct {
    ngx_tce_service_t          *services;    /* list, newest first */
    ngx_uint_t                  nservices;
    ngx_tce_service_t         **index;       /* by name: hash buckets */
    ngx_uint_t                  index_mask;  /* buckets - 1 */
    time_t                      created;
    void                       *metrics;     /* lb/ngx_http_tce_metrics.h */

    /* the Consul watcher's election (ngx_tce_consul_watch.c) */
    ngx_atomic_t                consul_owner;      /* pid, 0: none */
    ngx_atomic_t                consul_heartbeat;  /* ngx_current_msec */
    uint64_t                    consul_nodes;      /* node checks' digest */

    /* status of the files the workers write (ngx_tce_persist.h) */
    void                       *persist;

    /* the fleet store's status (ngx_tce_redis.h), NULL: none yet */
    void                       *redis;
    ngx_uint_t                  fleet_overrides;  /* tce_redis: the
                                                overrides tables are the
                                                fleet's, laid over every
                                                source (set per cycle) */

    /* the API diff's outcomes (ngx_tce_diff_mirror.h), NULL: none yet */
    void                       *diff;

    /* services reclaimed (ngx_tce_reclaim.c), NULL: none yet */
    void                       *reclaim;
    ngx_atomic_t                services_skipped;   /* names not stored */
    ngx_atomic_t                services_reclaimed;
    ngx_atomic_t                writes_refused;     /* sets, policies,
                                                       overrides: full */
} ngx_tce_shctx_t;


typedef struct {
    ngx_tce_shctx_t            *sh;
    ngx_slab_pool_t            *shpool;
    ngx_shm_zone_t             *shm_zone;
} ngx_tce_zone_t;


/* a service named in nginx.conf, resolved to its zone entry at start */
typedef struct {
    ngx_str_t                   name;
    ngx_str_t                   cluster;     /* empty: cluster=$variable */
    ngx_uint_t                  state_only;  /* discovery=state: never
                                                watched in Consul */
    u_char                     *file;        /* where: for messages */
    ngx_uint_t                  line;
    ngx_tce_service_t         **service;
} ngx_tce_service_ref_t;


typedef struct {
    ngx_tce_zone_t             *zone;        /* NULL: no tce_zone */
    ngx_uint_t                  metrics;     /* tce_metrics somewhere */
    ngx_str_t                   state_path;
    ngx_flag_t                  state_allow_empty;
    ngx_array_t                 refs;        /* ngx_tce_service_ref_t */
    ngx_array_t                 persist;     /* ngx_tce_persist_t * */
    ngx_uint_t                  exiting;     /* exit_process has begun */
    ngx_uint_t                  fleet;       /* tce_redis: canary policies
                                                come from the fleet */
} ngx_tce_main_conf_t;


/*
 * Finds a service by name; with create, adds it (empty) if absent.
 * O(1): a hash index in the zone, sized from the zone's size.  Lookup
 * takes no lock: an entry is published whole in its bucket, and one
 * unlinked is freed only once every worker has passed a point where it
 * holds no such pointer (ngx_tce_reclaim.c).  A pointer kept beyond the
 * current event handler needs ngx_tce_zone_hold().  Returns NULL if
 * absent (or, with create, if the zone is full).
 */
ngx_tce_service_t *ngx_tce_zone_service(ngx_tce_zone_t *zone, u_char *name,
    size_t len, ngx_uint_t create);

/*
 * Replaces a service's instance set by a copy of inst[0..n-1] (sorted
 * by id on the way in) and bumps its generation.  Returns NGX_OK,
 * NGX_DECLINED when the set is unchanged (generation kept), or
 * NGX_ERROR when the zone is full, changing nothing.
 */
ngx_int_t ngx_tce_zone_set(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    const ngx_tce_instance_t *inst, ngx_uint_t n, ngx_uint_t source,
    ngx_log_t *log);

/*
 * The same, and when the set changed (NGX_OK) how, in *change (not
 * touched otherwise), with the generations before and after: for the
 * log line of a change.
 */
ngx_int_t ngx_tce_zone_set_change(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, const ngx_tce_instance_t *inst, ngx_uint_t n,
    ngx_uint_t source, ngx_tce_change_t *change, ngx_log_t *log);

/*
 * The same for a set already sorted by id (ngx_tce_instance_sort(), off
 * the event loop), which the caller keeps: the operator overrides are
 * merged into it and its instances' slow_start times stamped.
 */
ngx_int_t ngx_tce_zone_set_sorted(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_tce_instance_t *sorted, ngx_uint_t n,
    ngx_uint_t source, ngx_tce_change_t *change, ngx_log_t *log);

/*
 * Frees the copy of a replaced set the zone keeps between changes: at a
 * worker's exit (nginx unloads the module, its pointer with it).
 */
void ngx_tce_zone_scratch_free(void);

/*
 * Reserves the room ngx_tce_zone_set() would need to store the state
 * file's set inst[0..n-1] for svc (no overrides merged: the file's
 * instances carry their own): the chunks, allocated and left unused.
 * A reload reserves every set it changes before it stores any, so that
 * a zone too small refuses the whole file, not a part of it.  Returns
 * the reservation, to be given back with ngx_tce_zone_unreserve() right
 * before the ngx_tce_zone_set() it was made for; or NULL with *rc
 * NGX_OK (nothing to reserve: the set is unchanged or empty) or
 * NGX_ERROR (the zone is full, counted and logged; nothing reserved).
 */
ngx_tce_instance_t **ngx_tce_zone_reserve(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, const ngx_tce_instance_t *inst, ngx_uint_t n,
    ngx_int_t *rc, ngx_log_t *log);
void ngx_tce_zone_unreserve(ngx_tce_zone_t *zone, ngx_tce_instance_t **res,
    ngx_uint_t n);

/* frees the chunks of a set of n instances (the zone's lock held) */
void ngx_tce_zone_chunks_free_locked(ngx_slab_pool_t *pool,
    ngx_tce_instance_t **chunks, ngx_uint_t n);

/*
 * Copies a service's instance set into memory from ngx_alloc (the
 * caller frees it with ngx_free), with the generation it belongs to.
 * Returns NGX_OK (*inst may be NULL when n is 0) or NGX_ERROR.
 */
ngx_int_t ngx_tce_zone_copy(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_tce_instance_t **inst, ngx_uint_t *n, ngx_atomic_uint_t *generation,
    ngx_log_t *log);

/*
 * Sets (policy not NULL) or clears (NULL: nginx.conf's default applies)
 * the canary policy of a service's cluster, recording who set it
 * (source: NGX_TCE_POLICY_*, even when the policy is unchanged), and
 * bumps the service's generation so that every worker's view picks it
 * up at its next request.  Returns NGX_OK, NGX_DECLINED when nothing changed
 * (generation kept), or NGX_ERROR when the zone is full, changing
 * nothing.
 */
ngx_int_t ngx_tce_zone_policy_set(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_str_t *cluster,
    const ngx_tce_canary_policy_t *policy, ngx_uint_t source,
    ngx_log_t *log);

/* a policy of the zone as listed for the status and the metrics */
typedef struct {
    u_char                      cluster[NGX_TCE_CLUSTER_LEN];
    ngx_tce_canary_policy_t     canary;
    ngx_uint_t                  source;      /* NGX_TCE_POLICY_* */
} ngx_tce_policy_entry_t;

/*
 * Copies the policies set in the zone for the service's clusters, at
 * most max, into out[] (under the zone's lock).  Returns how many.
 */
ngx_uint_t ngx_tce_zone_policy_list(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_tce_policy_entry_t *out, ngx_uint_t max);

/* "nginx.conf", "state", "admin", "fleet" or "deploy" */
const char *ngx_tce_policy_source_name(ngx_uint_t source);

/* 1 if some cluster of svc has a canary policy set in the zone */
ngx_uint_t ngx_tce_policy_any(ngx_tce_service_t *svc);

/* frees every policy entry of svc (reclaim; the zone's lock held) */
void ngx_tce_policy_free_locked(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc);

/*
 * Copies the canary policy of a service's cluster into *policy (view
 * builds only: it takes the zone's lock).  Returns NGX_OK, or
 * NGX_DECLINED when none is set.
 */
ngx_int_t ngx_tce_zone_policy_get(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_str_t *cluster,
    ngx_tce_canary_policy_t *policy);

/*
 * Applies the fleet's canary policies of one service (tce_redis): the
 * n clusters of cluster[]/policy[] get theirs, every other cluster of
 * the service goes back to nginx.conf's default; the service's fleet
 * revision becomes rev.  Returns NGX_OK, or NGX_ERROR when the zone is
 * full (logged; what was set before stays).
 */
ngx_int_t ngx_tce_policy_apply_fleet(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_str_t *cluster,
    const ngx_tce_canary_policy_t *policy, ngx_uint_t n, uint64_t rev,
    ngx_log_t *log);

/* sets a service's fleet revision to rev if that is higher (a write) */
void ngx_tce_policy_fleet_rev(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    uint64_t rev);

/*
 * Applies the canary objects of a state file's service (checked when
 * the file was loaded): sets the policy of every cluster that has one,
 * clears it for the others.  ss NULL clears them all.  Returns NGX_OK,
 * or NGX_ERROR when the zone is full.
 */
ngx_int_t ngx_tce_policy_apply_state(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, const ngx_tce_state_service_t *ss,
    ngx_log_t *log);

/*
 * Stores, per service, the operator's overrides (weight, drain, down)
 * of the state file st, matched by instance id, and lays them over the
 * set each service is served from now whatever its source (bumping its
 * generation when that changes it); services that left the file lose
 * theirs.  An override matching no instance of a Consul-fed service is
 * a warning naming the ids it has.  Returns NGX_OK, or NGX_ERROR when
 * the zone is full (what was stored before stays).
 */
ngx_int_t ngx_tce_override_apply_state(ngx_tce_zone_t *zone,
    const ngx_tce_state_t *st, ngx_log_t *log);

/*
 * The same for one service: its table becomes the overrides of ss
 * (NULL: none), laid over the set served now.  The admin API's PATCH
 * of a Consul-fed instance.  Returns NGX_OK, or NGX_ERROR when the zone
 * is full (the table stays as it was).
 */
ngx_int_t ngx_tce_override_service_set(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, const ngx_tce_state_service_t *ss,
    ngx_log_t *log);

/*
 * The fleet's overrides (tce_redis) of one service: its table becomes
 * the entries of ov[0..n-1] naming the service, laid over the set
 * served now.  Returns NGX_OK, or NGX_ERROR when the zone is full.
 */
ngx_int_t ngx_tce_override_fleet_set(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, const struct ngx_tce_fleet_override_s *ov,
    size_t n, ngx_log_t *log);

/*
 * One instance's override in the service's table (tce_redis: a write
 * of this node): set, or removed when o has none.  NGX_OK/NGX_ERROR.
 */
ngx_int_t ngx_tce_override_one(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    const struct ngx_tce_fleet_override_s *o, ngx_log_t *log);

/*
 * Sets the op_* fields of inst[0..n-1] (sorted by id) from the
 * service's overrides table: an instance it does not name gets none.
 * Called by ngx_tce_zone_set() with the zone's lock held, for every
 * source but the state file (whose instances carry their own).
 */
void ngx_tce_override_merge_locked(ngx_tce_service_t *svc,
    ngx_tce_instance_t *inst, ngx_uint_t n);

/* a worker's view of a service: its pid, the generation it was built on */
typedef struct {
    ngx_pid_t                   pid;         /* 0: none yet */
    ngx_atomic_uint_t           generation;
} ngx_tce_applied_slot_t;

/*
 * Records that this worker (ngx_worker) routes the service on a view
 * built from that generation (view rebuilds only: it takes the zone's
 * lock).  Not in the master, nor in a worker shutting down.  When the
 * zone is full nothing is recorded (the status then lacks the worker).
 */
void ngx_tce_zone_applied(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_atomic_uint_t generation);

/*
 * Copies the service's slots, slot i being worker i's, at most max
 * (under the zone's lock).  Returns how many were copied.
 */
ngx_uint_t ngx_tce_zone_applied_copy(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_tce_applied_slot_t *out, ngx_uint_t max);

/*
 * Keeps svc from being reclaimed while the caller holds a pointer to it
 * beyond the current event handler (an admin request waiting for the
 * thread pool, a worker's tce_service $var cache).  Returns NGX_OK, or
 * NGX_DECLINED when svc is being reclaimed already (treat it as
 * absent).  ngx_tce_zone_release() drops the hold.
 */
ngx_int_t ngx_tce_zone_hold(ngx_tce_zone_t *zone, ngx_tce_service_t *svc);
void ngx_tce_zone_release(ngx_tce_zone_t *zone, ngx_tce_service_t *svc);

/* svc is named by the configuration: never reclaimed (master) */
void ngx_tce_zone_pin(ngx_tce_service_t *svc);

/*
 * The reclaim of services (Consul watcher and every worker's election
 * tick, ngx_tce_reclaim.c).  tick: records that this worker holds no
 * pointer to an unlinked service now; the watcher (owner) then unlinks
 * the services that may go and frees those every worker has passed.
 * evict: the zone has no room for a new name: services that left the
 * catalog, unused by any worker, are emptied so that they may go.
 * Returns how many were emptied.
 */
void ngx_tce_reclaim_tick(ngx_tce_zone_t *zone, ngx_uint_t owner,
    ngx_log_t *log);
ngx_uint_t ngx_tce_reclaim_evict(ngx_tce_zone_t *zone, ngx_log_t *log);

/* a worker exits: its record goes (exit_process) */
void ngx_tce_reclaim_exit(ngx_tce_zone_t *zone);

/*
 * Registers a service named in nginx.conf (tce_service): its cluster
 * (empty for a variable), and whether only the state file feeds it
 * (discovery=state).  Returns NGX_OK, or NGX_ERROR (logged) when
 * another upstream names the same service with the other discovery.
 */
ngx_int_t ngx_tce_add_service_ref(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *cluster, ngx_uint_t state_only, ngx_tce_service_t **service);

/*
 * Writes into p..last what the zone's registry needs, for a "too
 * small" error: ": the zone has 64 KB; its 8 services and 1600
 * instances need about 2650 KB (their metric series included) and a
 * reload that changes them all needs more: set "tce_zone tce 3456k;"
 * or larger", from the state file, nginx.conf's services and whether
 * tce_metrics is on (ngx_tce_zone_size.h).  Returns the end.
 */
u_char *ngx_tce_zone_advice(ngx_tce_zone_t *zone, u_char *p, u_char *last);

/*
 * The state file's instances of svc, as this configuration read the
 * file: *n is 0 when the file has no such service (or there is none)
 */
void ngx_tce_state_instances(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    const ngx_tce_instance_t **inst, ngx_uint_t *n);

/* 1 when a tce_service names the service with discovery=state */
ngx_uint_t ngx_tce_service_state_only(ngx_tce_main_conf_t *tmcf,
    u_char *name, size_t len);


extern ngx_module_t  ngx_tce_module;


#endif /* _NGX_TCE_H_INCLUDED_ */
