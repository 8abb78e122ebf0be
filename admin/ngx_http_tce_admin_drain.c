/*
 * Removals asked through the admin API (DELETE of an instance, a PUT of
 * an env's set without it), completed when the instance has drained.
 *
 * Such an instance carries "removing" {since, deadline} in the state
 * file and in the zone (rm_since, rm_deadline): it is routed no new
 * request from the moment the zone has it.  Every worker runs this
 * timer; at each tick, a worker that finds a service with removals
 * (ngx_tce_service_t.removals, no lock) and gets the turn of the API's
 * writers (a trylock: never waits) looks at each such instance:
 *
 *   - its attempts in flight, summed over every worker, from the
 *     in-flight gauge of its metric series (counting is on whenever
 *     tce_admin is: ngx_http_tce_admin_api.c);
 *   - due when at least NGX_HTTP_TCE_ADMIN_DRAIN_SETTLE ms have passed
 *     since the drain began (a worker busy in its event loop when the
 *     drain began may still pick the instance once; that request is
 *     counted by then), and its in-flight count is 0 or the deadline
 *     has passed.
 *
 * Due instances leave the state file (one write for all of them, on
 * nginx's thread pool, the writers' turn held until it is through),
 * then the zone (event loop); each removal is logged and gets an audit
 * line of its own (principal "drain-timer").  The state (file and
 * zone) outlives a reload, and the new workers go on with it; after a
 * restart nothing is in flight and the removals complete at the first
 * tick.  A state file edited by hand since it was loaded is not
 * overwritten: removals wait for a reload.
 *
 * With tce_redis, a service whose set is the fleet's (svc->fleet_set)
 * is drained fleet-wide: the marker is in the fleet's set, so every
 * node stops routing to the instance.  Who removes: any node, the
 * first whose syncer worker finds the instance due, with the due rule
 * above except that drain_settle= (tce_redis, 1 s) must have passed
 * since the drain began (every node has the marker by then: a fleet
 * change reaches every node in well under 100 ms) and the count in
 * flight is the fleet's: this node's, and the other nodes' busy marks
 * in Redis (ngx_http_tce_admin_drain_busy.c; each node's syncer writes
 * its own at this tick), read just before the removal.  The removal
 * is a fleet change (ngx_http_tce_admin_fleet_set.c): the set read from
 * Redis loses the instances that still carry that same removal,
 * written only if nobody wrote the service in between, so it happens
 * once, and a node that dies leaves it to the others (no owner to wait
 * for; its marks expire).  Once the fleet reports an instance removed,
 * no node that could reach Redis has a request in flight on it, unless
 * its deadline passed (reason drain_timeout, with the counts).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_admin_drain.h"
#include "ngx_http_tce_admin_edit.h"
#include "ngx_http_tce_admin_fleet_set.h"
#include "ngx_http_tce_admin_inst.h"
#include "ngx_http_tce_admin_inst_edit.h"
#include "ngx_http_tce_metrics.h"
#include "ngx_tce_persist.h"


#define NGX_HTTP_TCE_ADMIN_DRAIN_TICK    100    /* ms */
#define NGX_HTTP_TCE_ADMIN_DRAIN_SETTLE  200    /* ms */

/* a job is allocated after the thread task that posts it, if any */
#if (NGX_THREADS)
#define NGX_HTTP_TCE_ADMIN_DRAIN_HEAD    sizeof(ngx_thread_task_t)
#else
#define NGX_HTTP_TCE_ADMIN_DRAIN_HEAD    0
#endif

#define NGX_HTTP_TCE_ADMIN_DRAIN_DONE     0
#define NGX_HTTP_TCE_ADMIN_DRAIN_CHANGED  1     /* edited by hand */
#define NGX_HTTP_TCE_ADMIN_DRAIN_FAILED   2


/* one tick's removals: chosen on the event loop, written on a thread */
typedef struct {
    ngx_http_tce_admin_main_conf_t *amcf;
    ngx_log_t                      *log;
    char                           *path;
    ngx_http_tce_admin_fp_t         expect;
    ngx_http_tce_admin_removal_t   *items;
    ngx_uint_t                      nitems;

    /* the thread's */
    ngx_uint_t                      result;
    ngx_uint_t                      written;
    ngx_tce_state_t                 st;
    ngx_http_tce_admin_fp_t         fp;
    char                            why[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
} ngx_http_tce_admin_drain_job_t;


static void ngx_http_tce_admin_drain_tick(ngx_event_t *ev);
static void ngx_http_tce_admin_drain_run(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_log_t *log);
static void ngx_http_tce_admin_drain_due(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_http_tce_admin_drain_job_t *job,
    ngx_uint_t max, uint64_t settle, uint64_t now);
#if (NGX_THREADS)
static void ngx_http_tce_admin_drain_thread(void *data, ngx_log_t *log);
static void ngx_http_tce_admin_drain_event(ngx_event_t *ev);
#endif
static void ngx_http_tce_admin_drain_file(
    ngx_http_tce_admin_drain_job_t *job);
static void ngx_http_tce_admin_drain_apply(
    ngx_http_tce_admin_drain_job_t *job);
static void ngx_http_tce_admin_drain_report(
    ngx_http_tce_admin_main_conf_t *amcf, ngx_http_tce_admin_removal_t *it,
    ngx_log_t *log);
static void ngx_http_tce_admin_drain_fleet(
    ngx_http_tce_admin_main_conf_t *amcf, ngx_log_t *log);
static int ngx_http_tce_admin_drain_fleet_edit(ngx_tce_state_t *st,
    void *data, ngx_uint_t *status, ngx_http_tce_admin_err_t *err);
static void ngx_http_tce_admin_drain_fleet_busy(void *data,
    const char *err);
static void ngx_http_tce_admin_drain_fleet_done(
    ngx_http_tce_admin_fset_t *fs);

ngx_int_t
ngx_http_tce_admin_drain_init_process(ngx_cycle_t *cycle)
{
    ngx_event_t                     *ev;
    ngx_http_tce_admin_main_conf_t  *amcf;

    if ((ngx_process != NGX_PROCESS_WORKER
         && ngx_process != NGX_PROCESS_SINGLE)
        || cycle->conf_ctx[ngx_http_module.index] == NULL)
    {
        return NGX_OK;
    }

    amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_tce_admin_api_module);

    if (amcf == NULL || amcf->shm_zone == NULL || amcf->sh == NULL
        || (amcf->tmcf->state_path.len == 0 && !amcf->tmcf->fleet))
    {
        return NGX_OK;
    }

    ev = ngx_pcalloc(cycle->pool, sizeof(ngx_event_t));
    if (ev == NULL) {
        return NGX_ERROR;
    }

    ev->handler = ngx_http_tce_admin_drain_tick;
    ev->data = amcf;
    ev->log = cycle->log;
    ev->cancelable = 1;

    ngx_add_timer(ev, NGX_HTTP_TCE_ADMIN_DRAIN_TICK);

    return NGX_OK;
}


static void
ngx_http_tce_admin_drain_tick(ngx_event_t *ev)
{
    ngx_http_tce_admin_main_conf_t *amcf = ev->data;

    /* an exiting worker leaves it to the new ones */
    if (ngx_exiting || ngx_quit || ngx_terminate) {
        ngx_http_tce_admin_busy_forget();
        return;
    }

    ngx_http_tce_admin_drain_run(amcf, ev->log);

    ngx_add_timer(ev, NGX_HTTP_TCE_ADMIN_DRAIN_TICK);
}


static void
ngx_http_tce_admin_drain_run(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_log_t *log)
{
    size_t                          size;
    uint64_t                        now;
    ngx_str_t                      *path;
    ngx_uint_t                      pending;
    ngx_tce_zone_t                 *zone;
    u_char                         *mem;
    ngx_tce_service_t              *svc;
    ngx_http_tce_admin_drain_job_t *job;
#if (NGX_THREADS)
    ngx_thread_task_t              *task;
#endif

    zone = amcf->tmcf->zone;
    path = &amcf->tmcf->state_path;

    pending = 0;

    for (svc = zone->sh->services; svc; svc = svc->next) {
        if (amcf->tmcf->fleet && svc->fleet_set) {
            continue;
        }

        pending += svc->removals;
    }

    if (amcf->tmcf->fleet) {
        ngx_http_tce_admin_drain_fleet(amcf, log);
    }

    if (pending == 0 || path->len == 0
        || !ngx_http_tce_admin_turn_try(amcf, log))
    {
        return;
    }

    size = NGX_HTTP_TCE_ADMIN_DRAIN_HEAD
           + sizeof(ngx_http_tce_admin_drain_job_t)
           + pending * sizeof(ngx_http_tce_admin_removal_t) + path->len + 1;

    mem = ngx_calloc(size, log);
    if (mem == NULL) {
        ngx_http_tce_admin_turn_release(amcf);
        return;
    }

    job = (ngx_http_tce_admin_drain_job_t *)
              (mem + NGX_HTTP_TCE_ADMIN_DRAIN_HEAD);
    job->amcf = amcf;
    job->log = log;
    job->items = (ngx_http_tce_admin_removal_t *) (job + 1);
    job->path = (char *) (job->items + pending);
    ngx_memcpy(job->path, path->data, path->len);
    job->expect = amcf->sh->fp;

    now = ngx_http_tce_admin_now_ms();

    for (svc = zone->sh->services; svc; svc = svc->next) {
        if (svc->removals && job->nitems < pending
            && !(amcf->tmcf->fleet && svc->fleet_set))
        {
            ngx_http_tce_admin_drain_due(zone, svc, job, pending,
                                         NGX_HTTP_TCE_ADMIN_DRAIN_SETTLE,
                                         now);
        }
    }

    if (job->nitems == 0) {
        ngx_free(mem);
        ngx_http_tce_admin_turn_release(amcf);
        return;
    }

#if (NGX_THREADS)

    task = (ngx_thread_task_t *) mem;
    task->ctx = job;
    task->handler = ngx_http_tce_admin_drain_thread;
    task->event.handler = ngx_http_tce_admin_drain_event;
    task->event.data = task;
    task->event.log = log;

    if (!ngx_exiting && ngx_tce_thread_post(amcf->tmcf, task) == NGX_OK) {
        return;
    }

#endif

    ngx_http_tce_admin_drain_file(job);
    ngx_http_tce_admin_drain_apply(job);
    ngx_free(mem);
}


/*
 * The instances of svc due for removal are added to the job: drained
 * (no attempt in flight, summed over the workers) or at their
 * deadline, and at least settle ms after the drain began.
 */
static void
ngx_http_tce_admin_drain_due(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_http_tce_admin_drain_job_t *job, ngx_uint_t max, uint64_t settle,
    uint64_t now)
{
    int64_t                        in_flight;
    ngx_str_t                      name;
    ngx_uint_t                     i, n;
    ngx_atomic_uint_t              generation;
    ngx_tce_instance_t            *inst;
    ngx_http_tce_admin_removal_t  *it;

    if (ngx_http_tce_admin_consul_fed(svc)
        || ngx_tce_zone_copy(zone, svc, &inst, &n, &generation, job->log)
           != NGX_OK)
    {
        return;
    }

    name.data = svc->name;
    name.len = svc->name_len;

    for (i = 0; i < n && job->nitems < max; i++) {
        if (inst[i].rm_deadline == 0 || now < inst[i].rm_since + settle) {
            continue;
        }

        if (ngx_http_tce_metrics_in_flight(zone, &name, &inst[i], &in_flight)
            != NGX_OK)
        {
            in_flight = 0;
        }

        if (in_flight > 0 && now < inst[i].rm_deadline) {
            continue;
        }

        it = &job->items[job->nitems++];

        ngx_memcpy(it->service, svc->name,
                   ngx_min(svc->name_len, NGX_TCE_SERVICE_LEN - 1));
        ngx_memcpy(it->id, inst[i].id, NGX_TCE_ID_LEN);
        ngx_memcpy(it->cluster, inst[i].cluster, NGX_TCE_CLUSTER_LEN);
        it->svc = svc;
        it->in_flight = in_flight;
        it->drained_ms = now - inst[i].rm_since;
        it->generation = generation;
        it->since = inst[i].rm_since;
        it->deadline = inst[i].rm_deadline;
    }

    if (inst) {
        ngx_free(inst);
    }
}


#if (NGX_THREADS)

static void
ngx_http_tce_admin_drain_thread(void *data, ngx_log_t *log)
{
    ngx_http_tce_admin_drain_file(data);
}


static void
ngx_http_tce_admin_drain_event(ngx_event_t *ev)
{
    ngx_thread_task_t  *task = ev->data;

    ngx_http_tce_admin_drain_apply(task->ctx);
    ngx_free(task);
}

#endif


/*
 * On a thread (pure C): the state file, if it is still the one last
 * loaded or written, loses the due instances that still carry their
 * removal marker, and is written whole.  An instance already gone from
 * the file counts as removed (the zone follows the file).
 */
static void
ngx_http_tce_admin_drain_file(ngx_http_tce_admin_drain_job_t *job)
{
    int                            rc;
    char                          *data;
    ngx_uint_t                     i, edited;
    ngx_tce_instance_t            *fi;
    ngx_tce_state_service_t       *ss;
    ngx_http_tce_admin_removal_t  *it;

    if (ngx_http_tce_admin_fp_path(job->path, &job->fp) != NGX_OK
        || !ngx_http_tce_admin_fp_equal(&job->fp, &job->expect))
    {
        job->result = NGX_HTTP_TCE_ADMIN_DRAIN_CHANGED;
        return;
    }

    if (ngx_tce_state_load(job->path, &job->st, job->why, sizeof(job->why))
        != 0)
    {
        job->result = NGX_HTTP_TCE_ADMIN_DRAIN_FAILED;
        return;
    }

    edited = 0;

    for (i = 0; i < job->nitems; i++) {
        it = &job->items[i];

        ss = ngx_http_tce_admin_edit_service(&job->st, it->service,
                                             strlen(it->service));
        if (ss == NULL) {
            it->removed = 1;
            continue;
        }

        fi = ngx_http_tce_admin_edit_find(ss, it->id);

        if (fi == NULL) {
            it->removed = 1;
            continue;
        }

        if (fi->rm_deadline == 0) {
            continue;       /* restored in the meantime */
        }

        (void) ngx_http_tce_admin_edit_remove(ss, it->id);
        it->removed = 1;
        edited = 1;
    }

    job->result = NGX_HTTP_TCE_ADMIN_DRAIN_DONE;

    if (!edited) {
        return;
    }

    data = ngx_tce_state_encode(&job->st);
    if (data == NULL) {
        (void) snprintf(job->why, sizeof(job->why), "out of memory");
        job->result = NGX_HTTP_TCE_ADMIN_DRAIN_FAILED;
        return;
    }

    rc = ngx_tce_state_write(job->path, data, strlen(data), job->why,
                             sizeof(job->why));
    free(data);

    (void) ngx_http_tce_admin_fp_path(job->path, &job->fp);

    if (rc != 0) {
        job->result = NGX_HTTP_TCE_ADMIN_DRAIN_FAILED;
        return;
    }

    job->written = 1;
}


/*
 * Event loop, the file done: the zone follows it, each removal is
 * logged and audited, the writers' turn is given back.
 */
static void
ngx_http_tce_admin_drain_apply(ngx_http_tce_admin_drain_job_t *job)
{
    ngx_uint_t                       i, j;
    ngx_log_t                       *log;
    ngx_tce_zone_t                  *zone;
    ngx_tce_service_t               *svc;
    ngx_tce_state_service_t         *ss;
    ngx_http_tce_admin_removal_t    *it;
    ngx_http_tce_admin_main_conf_t  *amcf;

    amcf = job->amcf;
    log = job->log;
    zone = amcf->tmcf->zone;

    if (job->written || job->result == NGX_HTTP_TCE_ADMIN_DRAIN_FAILED) {
        amcf->sh->fp = job->fp;
    }

    switch (job->result) {

    case NGX_HTTP_TCE_ADMIN_DRAIN_CHANGED:
        if (!amcf->drain_warned) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "tce admin: the state file \"%s\" changed on disk "
                          "since it was loaded: instances drained for "
                          "removal stay (draining) until nginx is reloaded",
                          job->path);
            amcf->drain_warned = 1;
        }

        goto done;

    case NGX_HTTP_TCE_ADMIN_DRAIN_FAILED:
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tce admin: state file \"%s\": %s: removals wait",
                      job->path, job->why);
        goto done;
    }

    amcf->drain_warned = 0;

    /* the zone follows the file, once per service */

    for (i = 0; i < job->nitems; i++) {
        it = &job->items[i];
        svc = it->svc;

        for (j = 0; j < i; j++) {
            if (job->items[j].svc == svc) {
                break;
            }
        }

        if (j < i || !it->removed || ngx_http_tce_admin_consul_fed(svc)) {
            continue;
        }

        ss = ngx_http_tce_admin_edit_service(&job->st, it->service,
                                             strlen(it->service));

        if (ss
            && ngx_tce_zone_set(zone, svc, ss->instances, ss->ninstances,
                                NGX_TCE_SOURCE_STATE, log)
               == NGX_ERROR)
        {
            ngx_log_error(NGX_LOG_ALERT, log, 0,
                          "tce admin: drained instances of \"%s\" left the "
                          "state file but the zone could not take the "
                          "set: they stay, draining", it->service);
            it->removed = 0;
        }
    }

    for (i = 0; i < job->nitems; i++) {
        it = &job->items[i];

        if (it->removed) {
            ngx_http_tce_admin_drain_report(amcf, it, log);
        }
    }

done:

    ngx_tce_state_free(&job->st);

    ngx_http_tce_admin_turn_release(amcf);
}


/* the log line and the audit line of one removal */
static void
ngx_http_tce_admin_drain_report(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_http_tce_admin_removal_t *it, ngx_log_t *log)
{
    u_char   more[80], *last;
    json_t  *line;

    last = more;

    if (it->fleet) {
        last = ngx_snprintf(more, sizeof(more), " (%L of them on %ui other "
                            "nodes)", it->others, it->nodes);
    }

    if (it->in_flight > 0) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "tce admin: instance \"%s\" of \"%s\" cluster \"%s\" "
                      "removed at its drain timeout (%uLms) with %L "
                      "requests in flight%*s", it->id, it->service,
                      it->cluster, it->drained_ms, it->in_flight,
                      (size_t) (last - more), more);

    } else {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "tce admin: instance \"%s\" of \"%s\" cluster \"%s\" "
                      "removed, drained in %uLms", it->id, it->service,
                      it->cluster, it->drained_ms);
    }

    line = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I}",
                     "event", "instance_removed",
                     "principal", "drain-timer",
                     "service", it->service,
                     "cluster", it->cluster,
                     "instance", it->id,
                     "reason", it->in_flight > 0 ? "drain_timeout" : "drained",
                     "drained_ms", (json_int_t) it->drained_ms,
                     "in_flight", (json_int_t) it->in_flight,
                     "generation_before", (json_int_t) it->generation);

    if (line == NULL
        || (it->fleet
            && json_object_set_new(line, "in_flight_other_nodes",
                                   json_integer(it->others))
               != 0))
    {
        json_decref(line);
        (void) ngx_atomic_fetch_add(&amcf->sh->audit_errors, 1);
        return;
    }

    ngx_http_tce_admin_audit_system(amcf, line, log);
}


/*
 * tce_redis: this node's busy marks, then the removals of the services
 * whose set is the fleet's, by this node's syncer worker, one service
 * at a time (the writers' turn held until Redis has answered both the
 * read of the other nodes' marks and the write).
 */
static void
ngx_http_tce_admin_drain_fleet(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_log_t *log)
{
    size_t                           size;
    uint64_t                         now;
    ngx_uint_t                       i, pending;
    ngx_tce_zone_t                  *zone;
    ngx_tce_service_t               *svc;
    ngx_tce_redis_main_conf_t       *rmcf;
    ngx_http_tce_admin_fset_t       *fs;
    ngx_http_tce_admin_drain_job_t  *job;

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_tce_redis_module);

    if (rmcf == NULL || rmcf->ctx == NULL) {
        return;
    }

    if (!rmcf->ctx->owner) {
        ngx_http_tce_admin_busy_forget();
        return;
    }

    ngx_http_tce_admin_busy_mark(rmcf, log);

    zone = amcf->tmcf->zone;

    for (svc = zone->sh->services; svc; svc = svc->next) {
        if (svc->fleet_set && svc->removals) {
            break;
        }
    }

    if (svc == NULL || !ngx_http_tce_admin_turn_try(amcf, log)) {
        return;
    }

    now = ngx_http_tce_admin_now_ms();

    for ( /* void */ ; svc; svc = svc->next) {
        pending = svc->removals;

        if (!svc->fleet_set || pending == 0) {
            continue;
        }

        size = sizeof(ngx_http_tce_admin_drain_job_t)
               + pending * sizeof(ngx_http_tce_admin_removal_t);

        job = ngx_calloc(size, log);
        if (job == NULL) {
            break;
        }

        job->amcf = amcf;
        job->log = log;
        job->items = (ngx_http_tce_admin_removal_t *) (job + 1);

        ngx_http_tce_admin_drain_due(zone, svc, job, pending,
                                     rmcf->drain_settle, now);

        if (job->nitems == 0) {
            ngx_free(job);
            continue;
        }

        for (i = 0; i < job->nitems; i++) {
            job->items[i].fleet = 1;
        }

        fs = ngx_http_tce_admin_fset_create(rmcf, svc, log);
        if (fs == NULL) {
            ngx_free(job);
            break;
        }

        fs->edit = ngx_http_tce_admin_drain_fleet_edit;
        fs->done = ngx_http_tce_admin_drain_fleet_done;
        fs->data = job;

        /* what the other nodes still have in flight on them, first */
        if (ngx_http_tce_admin_busy_read(rmcf, job->items, job->nitems,
                                         ngx_http_tce_admin_drain_fleet_busy,
                                         fs, log)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "tce admin: drained instances of \"%s\" wait for "
                          "the fleet store: %s", svc->name,
                          rmcf->ctx->cmd.err[0] ? (char *) rmcf->ctx->cmd.err
                                                : "not connected");
            ngx_http_tce_admin_fset_free(fs);
            ngx_free(job);
            break;
        }

        /* the turn goes back with the answers */
        return;
    }

    ngx_http_tce_admin_turn_release(amcf);
}


/*
 * The other nodes' marks are in: an instance still busy elsewhere
 * waits (until its deadline), the others are removed.
 */
static void
ngx_http_tce_admin_drain_fleet_busy(void *data, const char *err)
{
    ngx_http_tce_admin_fset_t *fs = data;

    uint64_t                         now;
    ngx_uint_t                       i, n;
    ngx_http_tce_admin_removal_t    *it;
    ngx_http_tce_admin_drain_job_t  *job;

    job = fs->data;

    if (err) {
        ngx_log_error(NGX_LOG_WARN, job->log, 0,
                      "tce admin: drained instances of \"%s\" wait for the "
                      "fleet store: %s", fs->svc->name, err);
        goto done;
    }

    now = ngx_http_tce_admin_now_ms();
    n = 0;

    for (i = 0; i < job->nitems; i++) {
        it = &job->items[i];

        if (it->others > 0 && now < it->deadline) {
            continue;       /* another node has requests on it */
        }

        it->in_flight += it->others;

        if (n != i) {
            job->items[n] = *it;
        }

        n++;
    }

    job->nitems = n;

    if (n == 0) {
        goto done;
    }

    if (ngx_http_tce_admin_fset_run(fs) == NGX_OK) {
        return;     /* the turn goes back with the answer */
    }

    ngx_log_error(NGX_LOG_WARN, job->log, 0,
                  "tce admin: drained instances of \"%s\" wait for the "
                  "fleet store: %s", fs->svc->name, fs->why);

done:

    ngx_http_tce_admin_turn_release(job->amcf);
    ngx_http_tce_admin_fset_free(fs);
    ngx_free(job);
}


/* pure: the set loses the due instances still under the same removal */
static int
ngx_http_tce_admin_drain_fleet_edit(ngx_tce_state_t *st, void *data,
    ngx_uint_t *status, ngx_http_tce_admin_err_t *err)
{
    ngx_http_tce_admin_drain_job_t *job = data;

    ngx_uint_t                     i, edited;
    ngx_tce_instance_t            *fi;
    ngx_tce_state_service_t       *ss;
    ngx_http_tce_admin_removal_t  *it;

    edited = 0;

    for (i = 0; i < job->nitems; i++) {
        it = &job->items[i];
        it->removed = 0;

        ss = ngx_http_tce_admin_edit_service(st, it->service,
                                             strlen(it->service));
        fi = ss ? ngx_http_tce_admin_edit_find(ss, it->id) : NULL;

        /* gone already, kept (POST), or drained again since */
        if (fi == NULL || fi->rm_deadline == 0 || fi->rm_since != it->since)
        {
            continue;
        }

        (void) ngx_http_tce_admin_edit_remove(ss, it->id);
        it->removed = 1;
        edited = 1;
    }

    if (edited) {
        return 0;
    }

    /* another node removed them: nothing to write */
    *status = 0;
    err->code = "nothing";
    err->text[0] = '\0';

    return -1;
}


static void
ngx_http_tce_admin_drain_fleet_done(ngx_http_tce_admin_fset_t *fs)
{
    ngx_http_tce_admin_drain_job_t *job = fs->data;

    ngx_uint_t                 i;
    ngx_tce_state_service_t   *ss;

    switch (fs->result) {

    case NGX_HTTP_TCE_ADMIN_FSET_OK:
    case NGX_HTTP_TCE_ADMIN_FSET_UNREPLICATED:
        ss = fs->st.services;

        if (ss
            && ngx_tce_zone_set(fs->zone, fs->svc, ss->instances,
                                ss->ninstances, NGX_TCE_SOURCE_STATE,
                                job->log)
               == NGX_ERROR)
        {
            ngx_log_error(NGX_LOG_ERR, job->log, 0,
                          "tce admin: drained instances of \"%s\" left the "
                          "fleet's set, but this node's zone is full: it "
                          "applies at the next resync", fs->svc->name);
        }

        fs->svc->fleet_set = 1;
        ngx_tce_policy_fleet_rev(fs->zone, fs->svc, fs->rev);

        for (i = 0; i < job->nitems; i++) {
            if (job->items[i].removed) {
                ngx_http_tce_admin_drain_report(job->amcf, &job->items[i],
                                                job->log);
            }
        }

        break;

    case NGX_HTTP_TCE_ADMIN_FSET_REFUSED:
        break;

    default:
        ngx_log_error(NGX_LOG_WARN, job->log, 0,
                      "tce admin: drained instances of \"%s\" wait for the "
                      "fleet store: %s", fs->svc->name, fs->why);
        break;
    }

    ngx_http_tce_admin_turn_release(job->amcf);

    ngx_http_tce_admin_fset_free(fs);
    ngx_free(job);
}
