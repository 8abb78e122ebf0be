/*
 * Weighted schedules built once per change, shared by every worker.
 *
 * A group's cycle (ngx_tce_sched.c) is W = sum of its weights / gcd
 * entries long: half a million for 1,000 instances of weights 1..1000,
 * up to 2^20.  Building it costs O(W); if every worker built its own
 * on its next request after each change (as views used to), a flapping
 * health check would stall every worker for milliseconds each time.
 * Instead:
 *
 * - a set that only lacks a few members of the cycles its service has
 *   (ngx_tce_sched_covers_locked: each routable instance a member of
 *   its group's cycle with the same weight, at most
 *   NGX_TCE_SCHED_MASK_MAX members and 1/8 of a group's weight lacking)
 *   keeps them: views skip the entries of the members it lacks, and
 *   nothing is built (a flapping check, a drain, an instance back);
 * - a build of at most NGX_TCE_SCHED_SLICE entries runs at once on the
 *   loop of the process that made the change;
 * - otherwise the process that changes a set (the Consul watcher's
 *   worker, or the master applying the state file) builds the schedules
 *   of the new set once: in a worker, on its background thread
 *   (ngx_tce_background.c, at the lowest CPU priority), into process
 *   memory (tens of ms of CPU at half a million entries, none of it on
 *   the event loop; the loop only plans the groups, O(n), and copies
 *   the result); in the
 *   master, which serves no requests, at once.  Without that thread
 *   (nginx built without threads, an exiting worker, a thread that
 *   could not be started) the build runs on the event loop in slices of
 *   NGX_TCE_SCHED_SLICE entries (a fraction of a millisecond each,
 *   interleaved with the worker's requests);
 * - back on the event loop the result is copied into the zone, in pages
 *   (one slab page per 1,024 entries, so that the free space the zone
 *   reports is space a schedule can use: a memcpy of 4 bytes per entry,
 *   about 0.2 ms at half a million), and published with a new
 *   generation of the service; the workers' views point at it, each
 *   from its own position (a pick reads one entry: O(1), nothing copied
 *   per worker);
 * - meanwhile (a few to a few tens of ms) a worker's new view keeps the
 *   previous schedule, less the instances that left: removals and
 *   address changes apply at once, new instances and new weights when
 *   the build is published (lb/ngx_http_tce_upstream_view.c);
 * - a set is freed when the service has moved on and the last view
 *   using it goes (reference count under the zone's lock; views hold
 *   it, not requests, so a long request pins only its own view's);
 * - a newer change cancels a build still running in the same process
 *   (one on a thread is left to finish and freed unpublished); one from
 *   elsewhere makes it void (the service's sched_serial).
 * If the zone cannot hold a schedule, the service is marked LOCAL and
 * each worker builds its own, as before (logged once per change).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_tce.h"
#include "ngx_tce_background.h"
#include "ngx_tce_persist.h"
#include "ngx_tce_sched_zone.h"


/* entries per slice of a build on an event loop: about 0.2 ms */
#define NGX_TCE_SCHED_SLICE  16384


typedef struct {
    u_char                      cluster[NGX_TCE_CLUSTER_LEN];
    ngx_uint_t                  env;
    uint32_t                    nmembers;
    uint32_t                   *w;          /* nmembers weights */
    ngx_tce_sched_member_t     *m;          /* and ids */
    uint64_t                    wsum;
    uint32_t                    len;
    uint32_t                   *seq;        /* len entries, malloc */
    ngx_tce_sched_build_t      *build;
} ngx_tce_sched_plan_group_t;


/* a group's part of a new set, while checking it against the cycles */
typedef struct {
    ngx_uint_t                  pos;        /* next member to compare */
    ngx_uint_t                  members;    /* in the new set */
    uint64_t                    weight;     /* theirs */
} ngx_tce_sched_kept_t;


typedef struct {
    ngx_queue_t                 queue;
    ngx_tce_zone_t             *zone;
    ngx_tce_service_t          *svc;
    ngx_uint_t                  serial;
    ngx_log_t                  *log;
    ngx_uint_t                  ngroups;
    ngx_uint_t                  cur;        /* group being built */
    ngx_tce_sched_plan_group_t *groups;
    uint32_t                   *weights;    /* all groups' w */
    ngx_tce_sched_member_t     *members;    /* all groups' m */
    ngx_uint_t                  threaded;   /* handed to the thread */
    ngx_uint_t                  orphaned;   /* cancelled while there */
    volatile ngx_uint_t         done;       /* the thread's last write */
#if (NGX_THREADS)
    ngx_thread_task_t           task;
#endif
} ngx_tce_sched_job_t;


static ngx_uint_t ngx_tce_sched_covers_locked(ngx_tce_sched_set_t *set,
    const ngx_tce_instance_t *inst, ngx_uint_t n, ngx_uint_t *masked);
static ngx_tce_sched_job_t *ngx_tce_sched_plan(const ngx_tce_instance_t *inst,
    ngx_uint_t n, ngx_log_t *log);
static ngx_uint_t ngx_tce_sched_job_short(ngx_tce_sched_job_t *job);
static ngx_int_t ngx_tce_sched_job_run(ngx_tce_sched_job_t *job,
    uint32_t max);
static void ngx_tce_sched_job_free(ngx_tce_sched_job_t *job);
static void ngx_tce_sched_job_publish(ngx_tce_sched_job_t *job);
static ngx_tce_sched_set_t *ngx_tce_sched_copy_locked(ngx_slab_pool_t *pool,
    ngx_tce_sched_job_t *job);
static ngx_int_t ngx_tce_sched_members_copy_locked(ngx_slab_pool_t *pool,
    ngx_tce_sched_group_t *sg, ngx_tce_sched_plan_group_t *g);
static void ngx_tce_sched_free_locked(ngx_slab_pool_t *pool,
    ngx_tce_sched_set_t *set);
static void ngx_tce_sched_local_free(ngx_tce_sched_set_t *set);
static void ngx_tce_sched_slice_handler(ngx_event_t *ev);
static void ngx_tce_sched_zone_cancel(ngx_tce_service_t *svc);
static void ngx_tce_sched_job_wait(ngx_tce_sched_job_t *job);
#if (NGX_THREADS)
static ngx_int_t ngx_tce_sched_job_post(ngx_tce_sched_job_t *job);
static void ngx_tce_sched_job_thread(void *data, ngx_log_t *log);
static void ngx_tce_sched_job_done(ngx_event_t *ev);
#endif


/*
 * Builds of this process not published yet: on a thread, or waiting for
 * their next slice (those are the ones not threaded).  Orphans: builds
 * cancelled while on a thread, freed when the thread is done with them.
 */
static ngx_queue_t   ngx_tce_sched_jobs;
static ngx_queue_t   ngx_tce_sched_orphans;
static ngx_event_t   ngx_tce_sched_event;


ngx_uint_t
ngx_tce_sched_zone_changed_locked(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, const ngx_tce_instance_t *inst, ngx_uint_t n,
    ngx_uint_t *masked)
{
    ngx_tce_sched_set_t  *set;

    set = svc->sched;
    *masked = 0;

    svc->sched_serial++;

    if (set && n && svc->sched_state == NGX_TCE_SCHED_READY
        && ngx_tce_sched_covers_locked(set, inst, n, masked))
    {
        /* kept: views skip the entries of what the new set lacks */
        return 0;
    }

    if (set) {
        set->retired = 1;

        if (set->refs == 0) {
            ngx_tce_sched_free_locked(zone->shpool, set);
        }
    }

    svc->sched = NULL;
    svc->sched_state = n ? NGX_TCE_SCHED_BUILDING : NGX_TCE_SCHED_EMPTY;

    return n != 0;
}


/*
 * Whether the set's cycles can route inst[0..n-1] (sorted by id): each
 * routable instance is a member of its group's cycle with the same
 * weight, and the members a group lacks are few and light (*masked:
 * the most in a group).  Both lists are in id order: one merge per
 * group, O(n + members).
 */
static ngx_uint_t
ngx_tce_sched_covers_locked(ngx_tce_sched_set_t *set,
    const ngx_tce_instance_t *inst, ngx_uint_t n, ngx_uint_t *masked)
{
    int                      c;
    uint32_t                 w;
    ngx_str_t                cluster;
    ngx_uint_t               i, j, ok;
    ngx_tce_sched_kept_t    *kept, *kg;
    ngx_tce_sched_group_t   *sg;
    ngx_tce_sched_member_t  *m;

    kept = ngx_calloc(set->ngroups * sizeof(ngx_tce_sched_kept_t),
                      ngx_cycle->log);
    if (kept == NULL) {
        return 0;
    }

    ok = 0;

    for (i = 0; i < n; i++) {
        w = ngx_tce_instance_weight(&inst[i]);

        if (w == 0) {
            continue;
        }

        cluster.data = (u_char *) inst[i].cluster;
        cluster.len = ngx_strlen(inst[i].cluster);

        sg = ngx_tce_sched_set_group(set, &cluster, inst[i].env);

        if (sg == NULL || sg->members == NULL) {
            goto done;              /* a group the cycles do not have */
        }

        /* the members before it in id order are masked */

        kg = &kept[sg - set->groups];
        c = -1;
        m = NULL;

        while (kg->pos < sg->nmembers) {
            m = ngx_tce_sched_member(sg, kg->pos);
            c = ngx_strcmp(m->id, inst[i].id);

            if (c >= 0) {
                break;
            }

            kg->pos++;
        }

        if (c != 0 || m->weight != w) {
            goto done;              /* new to the cycle, or reweighted */
        }

        kg->pos++;
        kg->members++;
        kg->weight += w;
    }

    *masked = 0;

    for (j = 0; j < set->ngroups; j++) {
        sg = &set->groups[j];
        kg = &kept[j];

        if (sg->nmembers - kg->members > NGX_TCE_SCHED_MASK_MAX
            || (sg->wsum - kg->weight) * 8 > sg->wsum)
        {
            goto done;              /* too much skipped: build anew */
        }

        *masked = ngx_max(*masked, sg->nmembers - kg->members);
    }

    ok = 1;

done:

    ngx_free(kept);

    return ok;
}


void
ngx_tce_sched_zone_request(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    const ngx_tce_instance_t *inst, ngx_uint_t n, ngx_log_t *log)
{
    ngx_tce_sched_job_t  *job;

    if (n == 0) {
        /* nothing to build; a build of an older set holds svc: cancel */
        ngx_tce_sched_zone_cancel(svc);
        return;
    }

    job = ngx_tce_sched_plan(inst, n, log);

    if (job == NULL) {
        ngx_shmtx_lock(&zone->shpool->mutex);
        svc->sched_state = NGX_TCE_SCHED_LOCAL;
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return;
    }

    job->zone = zone;
    job->svc = svc;
    job->log = ngx_cycle->log;

    /* read after the change: the set this build is for */
    job->serial = svc->sched_serial;

    /*
     * A process without an event loop yet (the master at start or
     * reload) builds at once; its posted queues are not set up.
     */

    if (ngx_posted_next_events.next == NULL) {
        (void) ngx_tce_sched_job_run(job, (uint32_t) -1);
        ngx_tce_sched_job_publish(job);
        ngx_tce_sched_job_free(job);

        /* the master keeps no lists for builds it will not make */
        ngx_tce_sched_spare_free();
        return;
    }

    /* a build no longer than a slice, here and now: published at once */

    if (ngx_tce_sched_job_short(job)) {
        ngx_tce_sched_zone_cancel(svc);

        (void) ngx_tce_sched_job_run(job, (uint32_t) -1);

        ngx_log_debug1(NGX_LOG_DEBUG_CORE, job->log, 0,
                       "tce: schedules of \"%s\" built at once",
                       svc->name);

        ngx_tce_sched_job_publish(job);
        ngx_tce_sched_job_free(job);
        return;
    }

    if (ngx_tce_sched_jobs.next == NULL) {
        ngx_queue_init(&ngx_tce_sched_jobs);
        ngx_queue_init(&ngx_tce_sched_orphans);
    }

    /* a build of an older set of the same service is void: cancel it */
    ngx_tce_sched_zone_cancel(svc);

    ngx_queue_insert_tail(&ngx_tce_sched_jobs, &job->queue);

#if (NGX_THREADS)
    if (ngx_tce_sched_job_post(job) == NGX_OK) {
        return;
    }
#endif

    /* no thread to hand it to: in slices on this event loop */

    if (!ngx_tce_sched_event.posted) {
        ngx_tce_sched_event.handler = ngx_tce_sched_slice_handler;
        ngx_tce_sched_event.log = ngx_cycle->log;
        ngx_post_event(&ngx_tce_sched_event, &ngx_posted_next_events);
    }
}


/*
 * One slice of the first build in the queue; the next slice runs at
 * the next turn of the event loop, after the events ready by then.
 */
static void
ngx_tce_sched_slice_handler(ngx_event_t *ev)
{
    ngx_queue_t          *q;
    ngx_tce_sched_job_t  *job;

    if (ngx_tce_sched_jobs.next == NULL) {
        return;
    }

    /* the first build left to this loop; threaded ones are skipped */

    job = NULL;

    for (q = ngx_queue_head(&ngx_tce_sched_jobs);
         q != ngx_queue_sentinel(&ngx_tce_sched_jobs);
         q = ngx_queue_next(q))
    {
        job = ngx_queue_data(q, ngx_tce_sched_job_t, queue);

        if (!job->threaded) {
            break;
        }

        job = NULL;
    }

    if (job == NULL) {
        return;
    }

    if (ngx_tce_sched_job_run(job, NGX_TCE_SCHED_SLICE) == NGX_OK) {
        ngx_queue_remove(q);

        ngx_log_debug1(NGX_LOG_DEBUG_CORE, job->log, 0,
                       "tce: schedules of \"%s\" built on the event loop",
                       job->svc->name);

        ngx_tce_sched_job_publish(job);
        ngx_tce_sched_job_free(job);
    }

    /* posted again while a build is left to this loop */

    for (q = ngx_queue_head(&ngx_tce_sched_jobs);
         q != ngx_queue_sentinel(&ngx_tce_sched_jobs);
         q = ngx_queue_next(q))
    {
        job = ngx_queue_data(q, ngx_tce_sched_job_t, queue);

        if (!job->threaded) {
            ngx_post_event(ev, &ngx_posted_next_events);
            return;
        }
    }
}


#if (NGX_THREADS)

static ngx_int_t
ngx_tce_sched_job_post(ngx_tce_sched_job_t *job)
{
    job->task.ctx = job;
    job->task.handler = ngx_tce_sched_job_thread;
    job->task.event.handler = ngx_tce_sched_job_done;
    job->task.event.data = job;
    job->task.event.log = job->log;

    if (ngx_tce_background_post(&job->task, job->log) != NGX_OK) {
        return NGX_DECLINED;
    }

    job->threaded = 1;

    return NGX_OK;
}


/* on a thread: the job's own memory only, no nginx call, no zone */

static void
ngx_tce_sched_job_thread(void *data, ngx_log_t *log)
{
    ngx_tce_sched_job_t *job = data;

    (void) ngx_tce_sched_job_run(job, (uint32_t) -1);

    ngx_memory_barrier();

    job->done = 1;
}


/* back on the event loop: published, unless cancelled meanwhile */

static void
ngx_tce_sched_job_done(ngx_event_t *ev)
{
    ngx_tce_sched_job_t *job = ev->data;

    ngx_queue_remove(&job->queue);

    if (!job->orphaned) {
        ngx_log_debug1(NGX_LOG_DEBUG_CORE, job->log, 0,
                       "tce: schedules of \"%s\" built on a thread",
                       job->svc->name);

        ngx_tce_sched_job_publish(job);
    }

    ngx_tce_sched_job_free(job);
}

#endif


/* a threaded build, by exit_process: the thread has run its tasks by then */

static void
ngx_tce_sched_job_wait(ngx_tce_sched_job_t *job)
{
    while (!job->done) {
        ngx_sched_yield();
    }

    ngx_memory_barrier();
}


void
ngx_tce_sched_zone_exit(ngx_cycle_t *cycle)
{
    ngx_queue_t          *q;
    ngx_tce_sched_job_t  *job;

    if (ngx_tce_sched_event.posted) {
        ngx_delete_posted_event(&ngx_tce_sched_event);
    }

    if (ngx_tce_sched_jobs.next == NULL) {
        return;
    }

    /*
     * The other workers wait for these: finish them (each a few ms).
     * The background thread was joined just before: it ran every task
     * queued, but the completion events will not run any more.
     */

    while (!ngx_queue_empty(&ngx_tce_sched_jobs)) {
        q = ngx_queue_head(&ngx_tce_sched_jobs);
        job = ngx_queue_data(q, ngx_tce_sched_job_t, queue);
        ngx_queue_remove(q);

        if (job->threaded) {
            ngx_tce_sched_job_wait(job);

        } else {
            (void) ngx_tce_sched_job_run(job, (uint32_t) -1);
        }

        ngx_tce_sched_job_publish(job);
        ngx_tce_sched_job_free(job);
    }

    while (!ngx_queue_empty(&ngx_tce_sched_orphans)) {
        q = ngx_queue_head(&ngx_tce_sched_orphans);
        job = ngx_queue_data(q, ngx_tce_sched_job_t, queue);
        ngx_queue_remove(q);

        ngx_tce_sched_job_wait(job);
        ngx_tce_sched_job_free(job);
    }
}


/*
 * The groups of a set sorted by id: its (cluster, env) pairs with
 * routable instances, members in the set's order, and their weights.
 * Groups are few (clusters x 2): a linear search finds each one.
 */
static ngx_tce_sched_job_t *
ngx_tce_sched_plan(const ngx_tce_instance_t *inst, ngx_uint_t n,
    ngx_log_t *log)
{
    uint32_t                     *gid, *off, w;
    ngx_uint_t                    i, j, m;
    ngx_tce_sched_job_t          *job;
    ngx_tce_sched_plan_group_t   *g;

    job = ngx_calloc(sizeof(ngx_tce_sched_job_t), log);
    gid = ngx_alloc(n * sizeof(uint32_t), log);
    off = ngx_alloc(n * sizeof(uint32_t), log);

    if (job == NULL || gid == NULL || off == NULL) {
        goto failed;
    }

    job->log = log;
    job->groups = ngx_calloc(n * sizeof(ngx_tce_sched_plan_group_t), log);
    job->weights = ngx_alloc(n * sizeof(uint32_t), log);
    /* zeroed: ids are copied whole into the zone, bytes after theirs */
    job->members = ngx_calloc(n * sizeof(ngx_tce_sched_member_t), log);

    if (job->groups == NULL || job->weights == NULL
        || job->members == NULL)
    {
        goto failed;
    }

    for (i = 0; i < n; i++) {
        gid[i] = (uint32_t) -1;

        if (ngx_tce_instance_weight(&inst[i]) == 0) {
            continue;
        }

        for (j = 0; j < job->ngroups; j++) {
            g = &job->groups[j];

            if (g->env == inst[i].env
                && ngx_strcmp(g->cluster, inst[i].cluster) == 0)
            {
                break;
            }
        }

        if (j == job->ngroups) {
            g = &job->groups[job->ngroups++];
            ngx_cpystrn(g->cluster, (u_char *) inst[i].cluster,
                        NGX_TCE_CLUSTER_LEN);
            g->env = inst[i].env;
        }

        gid[i] = (uint32_t) j;
        job->groups[j].nmembers++;
    }

    m = 0;

    for (j = 0; j < job->ngroups; j++) {
        job->groups[j].w = job->weights + m;
        job->groups[j].m = job->members + m;
        off[j] = 0;
        m += job->groups[j].nmembers;
    }

    for (i = 0; i < n; i++) {
        if (gid[i] != (uint32_t) -1) {
            g = &job->groups[gid[i]];
            w = ngx_tce_instance_weight(&inst[i]);
            g->w[off[gid[i]]] = w;
            g->m[off[gid[i]]].weight = w;
            ngx_cpystrn((u_char *) g->m[off[gid[i]]].id,
                        (u_char *) inst[i].id, NGX_TCE_ID_LEN);
            g->wsum += w;
            off[gid[i]]++;
        }
    }

    ngx_free(gid);
    ngx_free(off);

    return job;

failed:

    ngx_log_error(NGX_LOG_ERR, log, 0, "tce: no memory for a schedule");

    if (gid) {
        ngx_free(gid);
    }

    if (off) {
        ngx_free(off);
    }

    if (job) {
        ngx_tce_sched_job_free(job);
    }

    return NULL;
}


/*
 * 1 if the job's cycles hold at most NGX_TCE_SCHED_SLICE entries in all
 * (a cycle is at most its weights' sum long): a fraction of a
 * millisecond, less than waiting for the background thread.
 */
static ngx_uint_t
ngx_tce_sched_job_short(ngx_tce_sched_job_t *job)
{
    uint64_t    total;
    ngx_uint_t  j;

    total = 0;

    for (j = 0; j < job->ngroups; j++) {
        total += job->groups[j].wsum;
    }

    return total <= NGX_TCE_SCHED_SLICE;
}


/*
 * Writes up to max entries of the job's cycles.  Returns NGX_OK when
 * every group is done, NGX_AGAIN when more is left, NGX_ERROR when out
 * of memory (the job is then done, with no schedule: see publish).
 */
static ngx_int_t
ngx_tce_sched_job_run(ngx_tce_sched_job_t *job, uint32_t max)
{
    uint32_t                     left;
    ngx_tce_sched_plan_group_t  *g;

    while (job->cur < job->ngroups) {
        g = &job->groups[job->cur];

        if (g->build == NULL && g->seq == NULL) {
            g->build = ngx_tce_sched_start(g->w, g->nmembers, &g->len);
            g->seq = g->build ? ngx_alloc(((size_t) g->len + 1)
                                          * sizeof(uint32_t), job->log)
                              : NULL;

            if (g->seq == NULL) {
                job->cur = job->ngroups;
                job->ngroups = 0;
                return NGX_ERROR;
            }
        }

        left = ngx_tce_sched_run(g->build, g->seq, max);

        if (left) {
            return NGX_AGAIN;
        }

        ngx_tce_sched_done(g->build);
        g->build = NULL;
        job->cur++;

        /* a slice ends with a group: the next one starts afresh */
        if (max != (uint32_t) -1) {
            break;
        }
    }

    return job->cur < job->ngroups ? NGX_AGAIN : NGX_OK;
}


static void
ngx_tce_sched_job_publish(ngx_tce_sched_job_t *job)
{
    ngx_slab_pool_t      *pool;
    ngx_tce_service_t    *svc;
    ngx_tce_sched_set_t  *set;

    pool = job->zone->shpool;
    svc = job->svc;

    ngx_shmtx_lock(&pool->mutex);

    if (svc->sched_serial != job->serial) {
        /* the set changed meanwhile: a newer build is on its way */
        ngx_shmtx_unlock(&pool->mutex);
        return;
    }

    set = (job->cur == job->ngroups && job->ngroups)
          ? ngx_tce_sched_copy_locked(pool, job) : NULL;

    if (set == NULL) {
        svc->sched_state = NGX_TCE_SCHED_LOCAL;
        svc->generation++;
        ngx_shmtx_unlock(&pool->mutex);

        ngx_log_error(NGX_LOG_ERR, job->log, 0,
                      "tce zone \"%V\" is full: the schedules of service "
                      "\"%s\" are built by each worker",
                      &job->zone->shm_zone->shm.name, svc->name);
        return;
    }

    svc->sched = set;
    svc->sched_state = NGX_TCE_SCHED_READY;

    /* the workers' views move to it at their next request */
    svc->generation++;
    svc->sched_generation = svc->generation;

    ngx_shmtx_unlock(&pool->mutex);

    ngx_log_debug2(NGX_LOG_DEBUG_CORE, job->log, 0,
                   "tce: schedules of \"%s\" published, generation %uA",
                   svc->name, svc->generation);
}


/* the job's cycles into the zone, in pages; NULL if it is full */
static ngx_tce_sched_set_t *
ngx_tce_sched_copy_locked(ngx_slab_pool_t *pool, ngx_tce_sched_job_t *job)
{
    uint32_t                     c, nchunks, k;
    ngx_uint_t                   j;
    ngx_tce_sched_set_t         *set;
    ngx_tce_sched_group_t       *sg;
    ngx_tce_sched_plan_group_t  *g;

    set = ngx_slab_calloc_locked(pool, sizeof(ngx_tce_sched_set_t)
                                 + job->ngroups
                                   * sizeof(ngx_tce_sched_group_t));
    if (set == NULL) {
        return NULL;
    }

    set->groups = (ngx_tce_sched_group_t *) (set + 1);
    set->ngroups = job->ngroups;

    for (j = 0; j < job->ngroups; j++) {
        g = &job->groups[j];
        sg = &set->groups[j];

        ngx_memcpy(sg->cluster, g->cluster, NGX_TCE_CLUSTER_LEN);
        sg->env = g->env;
        sg->nmembers = g->nmembers;
        sg->wsum = g->wsum;

        if (ngx_tce_sched_members_copy_locked(pool, sg, g) != NGX_OK) {
            goto failed;
        }

        sg->len = g->len;
        nchunks = (g->len + NGX_TCE_SCHED_CHUNK - 1)
                  >> NGX_TCE_SCHED_CHUNK_SHIFT;

        sg->chunks = ngx_slab_calloc_locked(pool,
                                            nchunks * sizeof(uint32_t *));
        if (sg->chunks == NULL) {
            goto failed;
        }

        for (c = 0; c < nchunks; c++) {
            sg->chunks[c] = ngx_slab_alloc_locked(pool,
                                       NGX_TCE_SCHED_CHUNK * sizeof(uint32_t));
            if (sg->chunks[c] == NULL) {
                goto failed;
            }

            k = g->len - (c << NGX_TCE_SCHED_CHUNK_SHIFT);
            k = ngx_min(k, NGX_TCE_SCHED_CHUNK);

            ngx_memcpy(sg->chunks[c],
                       g->seq + (c << NGX_TCE_SCHED_CHUNK_SHIFT),
                       k * sizeof(uint32_t));
        }
    }

    return set;

failed:

    ngx_tce_sched_free_locked(pool, set);

    return NULL;
}


/* the group's member ids and weights into the zone, in pages */
static ngx_int_t
ngx_tce_sched_members_copy_locked(ngx_slab_pool_t *pool,
    ngx_tce_sched_group_t *sg, ngx_tce_sched_plan_group_t *g)
{
    uint32_t  c, npages, k;

    npages = (g->nmembers + NGX_TCE_SCHED_MEMBERS_PAGE - 1)
             / NGX_TCE_SCHED_MEMBERS_PAGE;

    sg->members = ngx_slab_calloc_locked(pool,
                                npages * sizeof(ngx_tce_sched_member_t *));
    if (sg->members == NULL) {
        return NGX_ERROR;
    }

    for (c = 0; c < npages; c++) {
        k = g->nmembers - c * NGX_TCE_SCHED_MEMBERS_PAGE;
        k = ngx_min(k, NGX_TCE_SCHED_MEMBERS_PAGE);

        sg->members[c] = ngx_slab_alloc_locked(pool,
                                        k * sizeof(ngx_tce_sched_member_t));
        if (sg->members[c] == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(sg->members[c], g->m + c * NGX_TCE_SCHED_MEMBERS_PAGE,
                   k * sizeof(ngx_tce_sched_member_t));
    }

    return NGX_OK;
}


static void
ngx_tce_sched_free_locked(ngx_slab_pool_t *pool, ngx_tce_sched_set_t *set)
{
    uint32_t                c, nchunks;
    ngx_uint_t              j;
    ngx_tce_sched_group_t  *sg;

    for (j = 0; j < set->ngroups; j++) {
        sg = &set->groups[j];

        if (sg->members) {
            nchunks = (sg->nmembers + NGX_TCE_SCHED_MEMBERS_PAGE - 1)
                      / NGX_TCE_SCHED_MEMBERS_PAGE;

            /* a partial copy: the pages array was zeroed */
            for (c = 0; c < nchunks && sg->members[c]; c++) {
                ngx_slab_free_locked(pool, sg->members[c]);
            }

            ngx_slab_free_locked(pool, sg->members);
        }

        if (sg->chunks == NULL) {
            continue;
        }

        nchunks = (sg->len + NGX_TCE_SCHED_CHUNK - 1)
                  >> NGX_TCE_SCHED_CHUNK_SHIFT;

        /* a partial copy: the chunks array was zeroed, stop at NULL */
        for (c = 0; c < nchunks && sg->chunks[c]; c++) {
            ngx_slab_free_locked(pool, sg->chunks[c]);
        }

        ngx_slab_free_locked(pool, sg->chunks);
    }

    ngx_slab_free_locked(pool, set);
}


static void
ngx_tce_sched_job_free(ngx_tce_sched_job_t *job)
{
    ngx_uint_t  j;

    if (job->groups) {
        for (j = 0; j < job->ngroups || j < job->cur; j++) {
            ngx_tce_sched_done(job->groups[j].build);

            if (job->groups[j].seq) {
                ngx_free(job->groups[j].seq);
            }
        }

        ngx_free(job->groups);
    }

    if (job->weights) {
        ngx_free(job->weights);
    }

    if (job->members) {
        ngx_free(job->members);
    }

    ngx_free(job);
}


ngx_uint_t
ngx_tce_sched_zone_pending(void)
{
    return ngx_tce_sched_jobs.next != NULL
           && !ngx_queue_empty(&ngx_tce_sched_jobs);
}


static void
ngx_tce_sched_zone_cancel(ngx_tce_service_t *svc)
{
    ngx_queue_t          *q;
    ngx_tce_sched_job_t  *old;

    if (ngx_tce_sched_jobs.next == NULL) {
        return;
    }

    for (q = ngx_queue_head(&ngx_tce_sched_jobs);
         q != ngx_queue_sentinel(&ngx_tce_sched_jobs);
         q = ngx_queue_next(q))
    {
        old = ngx_queue_data(q, ngx_tce_sched_job_t, queue);

        if (old->svc == svc) {
            ngx_queue_remove(q);

            if (old->threaded) {
                /* the thread still writes into it: freed when done */
                old->orphaned = 1;
                ngx_queue_insert_tail(&ngx_tce_sched_orphans, &old->queue);

            } else {
                ngx_tce_sched_job_free(old);
            }

            return;
        }
    }
}


ngx_tce_sched_set_t *
ngx_tce_sched_zone_get(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_atomic_uint_t generation, ngx_uint_t *state)
{
    ngx_tce_sched_set_t  *set;

    set = NULL;

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (svc->generation != generation) {
        *state = NGX_TCE_SCHED_BUILDING;

    } else {
        *state = svc->sched_state;
        set = svc->sched;

        if (set) {
            set->refs++;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return set;
}


ngx_tce_sched_set_t *
ngx_tce_sched_zone_published(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_atomic_uint_t from, ngx_atomic_uint_t *generation)
{
    ngx_tce_sched_set_t  *set;

    set = NULL;

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (svc->generation == from + 1
        && svc->sched_generation == svc->generation
        && svc->sched_state == NGX_TCE_SCHED_READY
        && svc->sched != NULL)
    {
        set = svc->sched;
        set->refs++;
        *generation = svc->generation;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return set;
}


void
ngx_tce_sched_hold(ngx_tce_zone_t *zone, ngx_tce_sched_set_t *set)
{
    if (set->local) {
        set->refs++;
        return;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);
    set->refs++;
    ngx_shmtx_unlock(&zone->shpool->mutex);
}


void
ngx_tce_sched_release(ngx_tce_zone_t *zone, ngx_tce_sched_set_t *set)
{
    if (set->local) {
        if (--set->refs == 0) {
            ngx_tce_sched_local_free(set);
        }

        return;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (--set->refs == 0 && set->retired) {
        ngx_tce_sched_free_locked(zone->shpool, set);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


ngx_tce_sched_set_t *
ngx_tce_sched_local(const ngx_tce_instance_t *inst, ngx_uint_t n,
    ngx_log_t *log)
{
    uint32_t                     c, nchunks;
    ngx_uint_t                   j;
    ngx_tce_sched_job_t         *job;
    ngx_tce_sched_set_t         *set;
    ngx_tce_sched_group_t       *sg;
    ngx_tce_sched_plan_group_t  *g;

    job = ngx_tce_sched_plan(inst, n, log);
    if (job == NULL) {
        return NULL;
    }

    job->log = log;
    set = NULL;

    if (ngx_tce_sched_job_run(job, (uint32_t) -1) != NGX_OK) {
        goto done;
    }

    set = ngx_calloc(sizeof(ngx_tce_sched_set_t)
                     + job->ngroups * sizeof(ngx_tce_sched_group_t), log);
    if (set == NULL) {
        goto done;
    }

    set->groups = (ngx_tce_sched_group_t *) (set + 1);
    set->ngroups = job->ngroups;
    set->local = 1;
    set->refs = 1;

    for (j = 0; j < job->ngroups; j++) {
        g = &job->groups[j];
        sg = &set->groups[j];

        ngx_memcpy(sg->cluster, g->cluster, NGX_TCE_CLUSTER_LEN);
        sg->env = g->env;
        sg->nmembers = g->nmembers;

        nchunks = (g->len + NGX_TCE_SCHED_CHUNK - 1)
                  >> NGX_TCE_SCHED_CHUNK_SHIFT;

        sg->chunks = ngx_alloc(nchunks * sizeof(uint32_t *), log);
        if (sg->chunks == NULL) {
            ngx_tce_sched_local_free(set);
            set = NULL;
            goto done;
        }

        /* one array, seen through pointers as the zone's pages are */
        for (c = 0; c < nchunks; c++) {
            sg->chunks[c] = g->seq + (c << NGX_TCE_SCHED_CHUNK_SHIFT);
        }

        sg->len = g->len;
        g->seq = NULL;
    }

done:

    ngx_tce_sched_job_free(job);

    return set;
}


static void
ngx_tce_sched_local_free(ngx_tce_sched_set_t *set)
{
    ngx_uint_t  j;

    for (j = 0; j < set->ngroups; j++) {
        if (set->groups[j].chunks) {
            ngx_free(set->groups[j].chunks[0]);
            ngx_free(set->groups[j].chunks);
        }
    }

    ngx_free(set);
}


ngx_tce_sched_group_t *
ngx_tce_sched_set_group(ngx_tce_sched_set_t *set, ngx_str_t *cluster,
    ngx_uint_t env)
{
    ngx_uint_t              j;
    ngx_tce_sched_group_t  *sg;

    for (j = 0; j < set->ngroups; j++) {
        sg = &set->groups[j];

        if (sg->env == env
            && ngx_strncmp(sg->cluster, cluster->data, cluster->len) == 0
            && sg->cluster[cluster->len] == '\0')
        {
            return sg;
        }
    }

    return NULL;
}
