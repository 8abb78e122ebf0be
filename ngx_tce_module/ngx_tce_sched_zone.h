/*
 * Weighted schedules shared by every worker, kept in the zone next to
 * the instance set they were built for (ngx_tce_sched_zone.c).
 *
 * A change of a service's instance set asks for one build of its
 * schedules, by the process that made the change; workers only point at
 * the result.  Until it is ready a worker routes on its previous
 * schedule, less the instances that left (docs/architecture.md).
 */

#ifndef _NGX_TCE_SCHED_ZONE_H_INCLUDED_
#define _NGX_TCE_SCHED_ZONE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_tce.h"
#include "ngx_tce_sched.h"


/* entries are stored in pages of this many (4 KiB of uint32_t) */
#define NGX_TCE_SCHED_CHUNK_SHIFT  10
#define NGX_TCE_SCHED_CHUNK        (1 << NGX_TCE_SCHED_CHUNK_SHIFT)

/* svc->sched_state */
#define NGX_TCE_SCHED_EMPTY        0    /* nothing to build */
#define NGX_TCE_SCHED_BUILDING     1    /* asked for, not ready yet */
#define NGX_TCE_SCHED_READY        2    /* svc->sched */
#define NGX_TCE_SCHED_LOCAL        3    /* zone full: workers build */


/*
 * A group's masked members: a later set of the service that lacks at
 * most this many of a cycle's members (and at most 1/8 of its weight),
 * and has no instance or weight the cycle does not, is routed on that
 * cycle, views skipping the entries of the members it lacks: no build.
 */
#define NGX_TCE_SCHED_MASK_MAX     8


/* a member of a cycle as it was built: its instance id and weight */
typedef struct {
    uint32_t                    weight;
    char                        id[NGX_TCE_ID_LEN];
} ngx_tce_sched_member_t;

/* members are stored in pages of this many */
#define NGX_TCE_SCHED_MEMBERS_PAGE                                           \
    (4096 / sizeof(ngx_tce_sched_member_t))


/*
 * One group's (cluster, env) cycle.  Entries are the positions of the
 * group's members: its routable instances in the set's order (by id)
 * when the cycle was built.
 */
typedef struct {
    uint32_t                  **chunks;
    uint32_t                    len;
    uint32_t                    nmembers;
    ngx_uint_t                  env;
    u_char                      cluster[NGX_TCE_CLUSTER_LEN];
    ngx_tce_sched_member_t    **members;   /* zone sets: nmembers, in
                                              pages; NULL in local ones */
    uint64_t                    wsum;      /* the members' weights */
} ngx_tce_sched_group_t;


#define ngx_tce_sched_member(sg, p)                                          \
    (&(sg)->members[(p) / NGX_TCE_SCHED_MEMBERS_PAGE]                        \
                   [(p) % NGX_TCE_SCHED_MEMBERS_PAGE])


struct ngx_tce_sched_set_s {
    ngx_uint_t                  refs;       /* views using it */
    ngx_uint_t                  retired;    /* no longer the service's */
    ngx_uint_t                  local;      /* process memory, not zone */
    ngx_uint_t                  ngroups;
    ngx_tce_sched_group_t      *groups;
};


/*
 * The service's instance set was just replaced by inst[0..n-1] (sorted
 * by id; zone lock held).  If its schedules can route the new set with
 * some of their members masked (NGX_TCE_SCHED_MASK_MAX), they stay the
 * service's: returns 0, and in *masked the most members masked in a
 * group.  Otherwise retires them (freed now if no view uses them),
 * marks a new build as wanted and returns 1 (0 for an empty set).
 */
ngx_uint_t ngx_tce_sched_zone_changed_locked(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, const ngx_tce_instance_t *inst, ngx_uint_t n,
    ngx_uint_t *masked);

/*
 * Builds the schedules of inst[0..n-1], the set just stored (sorted by
 * id), and publishes them in the zone with a new generation.  In a
 * worker the build runs on nginx's thread pool and is published back
 * on the event loop (without a pool: on the loop, in slices of well
 * under a millisecond each); elsewhere (the master applying the state
 * file) at once.  A newer change of the service cancels it.  When the
 * zone cannot hold them, the service is marked NGX_TCE_SCHED_LOCAL
 * (logged) and workers build their own.
 */
void ngx_tce_sched_zone_request(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    const ngx_tce_instance_t *inst, ngx_uint_t n, ngx_log_t *log);

/*
 * The service's schedules if they belong to that generation of its
 * set (with a reference the caller drops with ngx_tce_sched_release);
 * otherwise NULL.  *state gets svc->sched_state, or
 * NGX_TCE_SCHED_BUILDING when the generation moved on.
 */
ngx_tce_sched_set_t *ngx_tce_sched_zone_get(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_atomic_uint_t generation,
    ngx_uint_t *state);

/*
 * The service's schedules if their publication is the only change since
 * that generation (the set and its policies are the same): a reference,
 * as ngx_tce_sched_zone_get's, and in *generation the one they made.
 * NULL otherwise.  A view takes them in place, without a rebuild.
 */
ngx_tce_sched_set_t *ngx_tce_sched_zone_published(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_atomic_uint_t from,
    ngx_atomic_uint_t *generation);

/* 1 while this process has builds queued (they hold their service) */
ngx_uint_t ngx_tce_sched_zone_pending(void);

/* one more reference to a set already referenced */
void ngx_tce_sched_hold(ngx_tce_zone_t *zone, ngx_tce_sched_set_t *set);

/* drops a reference; a retired or local set goes with its last one */
void ngx_tce_sched_release(ngx_tce_zone_t *zone, ngx_tce_sched_set_t *set);

/*
 * Builds the schedules of a set in process memory, at once (the
 * NGX_TCE_SCHED_LOCAL case), with one reference.  NULL on error.
 */
ngx_tce_sched_set_t *ngx_tce_sched_local(const ngx_tce_instance_t *inst,
    ngx_uint_t n, ngx_log_t *log);

/* the set's group of that cluster and env, or NULL */
ngx_tce_sched_group_t *ngx_tce_sched_set_group(ngx_tce_sched_set_t *set,
    ngx_str_t *cluster, ngx_uint_t env);

/* exit_process: builds still running finish now (they are published) */
void ngx_tce_sched_zone_exit(ngx_cycle_t *cycle);


#endif /* _NGX_TCE_SCHED_ZONE_H_INCLUDED_ */
