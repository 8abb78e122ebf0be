/*
 * The controller of progressive deploys.
 *
 * One worker of the nginx instance drives every deploy: it is elected
 * as the Consul watcher is (ngx_tce_consul_watch.c), over words of its
 * own in the tce_admin zone, so that it also runs without Consul: every
 * worker ticks every NGX_HTTP_TCE_ADMIN_DEPLOY_TICK ms; the owner
 * refreshes its heartbeat, another worker takes over when there is no
 * owner, its heartbeat is older than NGX_HTTP_TCE_ADMIN_DEPLOY_STALE or
 * its pid is gone (a SIGKILL), and an exiting worker gives it back at
 * once (a reload).
 *
 * At each tick the owner looks at every running deploy: the canary's
 * and prod's requests since the step began (the differences of the
 * cumulative counters of their metric series, ngx_http_tce_metrics.h,
 * and of the API diff's totals, ngx_tce_diff.h) go to the judge
 * (ngx_tce_judge.h) with the alpha of one look.  Between ticks, every
 * NGX_HTTP_TCE_ADMIN_DEPLOY_QUICK ms, the owner also looks at the
 * running deploys for the judge's error clock: a window that counts a
 * new 5xx (canary or prod) is judged on error_ratio_vs_prod at once,
 * with that 5xx's alpha, so a canary that fails every answer is rolled
 * back within a quick look of its second 5xx.  A failing gate rolls
 * the canary back at once (weight 0, new epoch) and ends the deploy as
 * rolled_back, with the gate and its figures.  At the step's end, with
 * at least min_requests canary requests, the step has passed and the
 * next one begins (its weight set, a new window); all passed, the
 * canary gets 100% (promoted).  Too few requests: the step waits, and
 * fails the deploy (rolled back, state failed) after
 * inconclusive_seconds.
 *
 * The records are in the zone (they survive a reload and the loss of
 * the controlling worker) and in the deploys file, <tce_state>.deploys,
 * written on the thread pool after every change of state (a restart
 * reads it back; the counters then start again, so the step in course
 * starts a fresh window).  The canary policies a deploy set are set
 * again after the state file's at every start and reload, until an
 * API canary write takes the cluster over.
 *
 * With tce_redis only the node holding the fleet's deploy lease drives
 * deploys, and its records and policies are also in Redis
 * (ngx_http_tce_admin_deploy_fleet.c).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_admin_inst.h"
#include "ngx_http_tce_admin_webhook.h"
#include "ngx_http_tce_metrics.h"
#include "ngx_tce_diff.h"


#define NGX_HTTP_TCE_ADMIN_DEPLOY_STALE   1500   /* ms */
#define NGX_HTTP_TCE_ADMIN_DEPLOY_GROUPS  64


/* the deploys file's content, copied on the event loop */
typedef struct {
    uint64_t                      next_id;
    ngx_http_tce_admin_deploy_t   deploys[NGX_HTTP_TCE_ADMIN_DEPLOYS];
} ngx_http_tce_admin_deploy_job_t;


static void ngx_http_tce_admin_deploy_tick(ngx_event_t *ev);
static void ngx_http_tce_admin_deploy_quick(ngx_event_t *ev);
static void ngx_http_tce_admin_deploy_look(
    ngx_http_tce_admin_main_conf_t *amcf, ngx_uint_t i,
    ngx_http_tce_metrics_group_copy_t *g, ngx_uint_t quick, ngx_log_t *log);
static ngx_uint_t ngx_http_tce_admin_deploy_sub(ngx_tce_judge_sample_t *out,
    const ngx_tce_judge_sample_t *now, const ngx_tce_judge_sample_t *base);
static void ngx_http_tce_admin_deploy_event(
    ngx_http_tce_admin_main_conf_t *amcf, ngx_http_tce_admin_deploy_t *d,
    const char *event, ngx_log_t *log);
static void *ngx_http_tce_admin_deploy_collect(void *data, ngx_log_t *log);
static char *ngx_http_tce_admin_deploy_encode(void *job, size_t *len,
    char *err, size_t errlen);
static void ngx_http_tce_admin_deploy_free(void *job);
static void ngx_http_tce_admin_deploy_load(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_log_t *log);


/* the owner's quick looks between two ticks (the error clock) */
static ngx_event_t  ngx_http_tce_admin_deploy_quick_ev;
static ngx_uint_t   ngx_http_tce_admin_deploy_quick_n;


ngx_int_t
ngx_http_tce_admin_deploy_conf(ngx_conf_t *cf,
    ngx_http_tce_admin_main_conf_t *amcf)
{
    ngx_str_t   path;

    if (amcf->tmcf->state_path.len == 0 || amcf->deploys) {
        return NGX_OK;
    }

    path.len = amcf->tmcf->state_path.len + sizeof(".deploys") - 1;
    path.data = ngx_pnalloc(cf->pool, path.len);
    if (path.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ngx_cpymem(path.data, amcf->tmcf->state_path.data,
                          amcf->tmcf->state_path.len),
               ".deploys", sizeof(".deploys") - 1);

    amcf->deploys = ngx_tce_persist_add(cf, amcf->tmcf, &path, "deploys");
    if (amcf->deploys == NULL) {
        return NGX_ERROR;
    }

    amcf->deploys->collect = ngx_http_tce_admin_deploy_collect;
    amcf->deploys->encode = ngx_http_tce_admin_deploy_encode;
    amcf->deploys->free = ngx_http_tce_admin_deploy_free;
    amcf->deploys->data = amcf;

    return NGX_OK;
}


ngx_int_t
ngx_http_tce_admin_deploy_init_zone(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_uint_t fresh, ngx_log_t *log)
{
    ngx_uint_t                    i;
    ngx_http_tce_admin_deploy_t  *d;

    if (fresh && amcf->deploys) {
        ngx_http_tce_admin_deploy_load(amcf, log);
    }

    /* the state file's policies were just applied: the deploys' win */
    for (i = 0; i < NGX_HTTP_TCE_ADMIN_DEPLOYS; i++) {
        d = &amcf->sh->deploys[i];

        if (d->id && d->owns) {
            /* a restart's counters start again from 0: a new window */
            d->base_valid = 0;

            if (amcf->tmcf->fleet) {
                /* the fleet's canary hash has them */
                continue;
            }

            (void) ngx_http_tce_admin_deploy_policy_locked(amcf, d,
                                                           d->weight_bp, 0,
                                                           log);
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_tce_admin_deploy_policy_locked(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_http_tce_admin_deploy_t *d, uint32_t weight_bp, ngx_uint_t new_epoch,
    ngx_log_t *log)
{
    ngx_str_t                 cluster;
    ngx_tce_zone_t           *zone;
    ngx_tce_service_t        *svc;
    ngx_tce_canary_policy_t   pol;

    zone = amcf->tmcf->zone;

    svc = ngx_tce_zone_service(zone, (u_char *) d->service,
                               ngx_strlen(d->service), 0);
    if (svc == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tce admin: deploy %uL: no service \"%s\" in the zone",
                      d->id, d->service);
        return NGX_ERROR;
    }

    cluster.data = (u_char *) d->cluster;
    cluster.len = ngx_strlen(d->cluster);

    if (ngx_tce_zone_policy_get(zone, svc, &cluster, &pol) != NGX_OK) {
        /* as the canary route: nothing set yet */
        pol.weight = 0;
        pol.epoch = d->owns ? d->epoch : 0;
        pol.fallback = 1;
    }

    pol.weight = weight_bp;

    if (new_epoch) {
        pol.epoch++;
    }

    if (ngx_tce_zone_policy_set(zone, svc, &cluster, &pol,
                                NGX_TCE_POLICY_DEPLOY, log)
        == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    d->weight_bp = pol.weight;
    d->epoch = pol.epoch;
    d->fallback = pol.fallback;
    d->owns = 1;

    ngx_http_tce_admin_deploy_fleet_policy_locked(amcf, d);

    return NGX_OK;
}


ngx_int_t
ngx_http_tce_admin_deploy_init_process(ngx_cycle_t *cycle)
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

    if (amcf == NULL || amcf->shm_zone == NULL || amcf->sh == NULL) {
        return NGX_OK;
    }

    ev = ngx_pcalloc(cycle->pool, sizeof(ngx_event_t));
    if (ev == NULL) {
        return NGX_ERROR;
    }

    ev->handler = ngx_http_tce_admin_deploy_tick;
    ev->data = amcf;
    ev->log = cycle->log;
    ev->cancelable = 1;

    /* the first worker to tick wins: at once */
    ngx_add_timer(ev, 1);

    return NGX_OK;
}


static void
ngx_http_tce_admin_deploy_tick(ngx_event_t *ev)
{
    ngx_http_tce_admin_main_conf_t *amcf = ev->data;

    ngx_pid_t                           owner;
    ngx_uint_t                          i, drive, running;
    ngx_msec_t                          now;
    ngx_msec_int_t                      age;
    ngx_http_tce_admin_shctx_t         *sh;
    ngx_http_tce_metrics_group_copy_t  *g;

    sh = amcf->sh;
    owner = (ngx_pid_t) sh->deploy_owner;
    now = ngx_current_msec;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        /* a reload: the new workers take over at their first tick */
        if (owner == ngx_pid
            && ngx_atomic_cmp_set(&sh->deploy_owner,
                                  (ngx_atomic_uint_t) ngx_pid, 0))
        {
            ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                          "tce admin: worker %P stops controlling deploys",
                          ngx_pid);
        }

        return;
    }

    if (owner != ngx_pid) {
        age = (ngx_msec_int_t) (now - sh->deploy_heartbeat);

        if ((owner == 0
             || age > NGX_HTTP_TCE_ADMIN_DEPLOY_STALE
             || (kill(owner, 0) == -1 && ngx_errno == NGX_ESRCH))
            && ngx_atomic_cmp_set(&sh->deploy_owner,
                                  (ngx_atomic_uint_t) owner,
                                  (ngx_atomic_uint_t) ngx_pid))
        {
            ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                          "tce admin: worker %P controls deploys (previous "
                          "controller: %P)", ngx_pid, owner);
            owner = ngx_pid;
        }
    }

    if (owner == ngx_pid) {
        sh->deploy_heartbeat = now;

        /* with tce_redis, only the node holding the lease drives; the
         * others send it their counters of the running deploys */
        drive = ngx_http_tce_admin_deploy_lease(amcf, ev->log);

        g = ngx_alloc(NGX_HTTP_TCE_ADMIN_DEPLOY_GROUPS * sizeof(*g),
                      ev->log);
        running = 0;

        for (i = 0; g && i < NGX_HTTP_TCE_ADMIN_DEPLOYS; i++) {
            if (sh->deploys[i].id
                && sh->deploys[i].state == NGX_HTTP_TCE_ADMIN_DEPLOY_RUNNING)
            {
                running = 1;

                if (drive) {
                    ngx_http_tce_admin_deploy_look(amcf, i, g, 0, ev->log);

                } else {
                    ngx_http_tce_admin_deploy_fleet_share(amcf, i, g,
                                                          ev->log);
                }
            }
        }

        if (g) {
            ngx_free(g);
        }

        if (drive) {
            ngx_http_tce_admin_deploy_fleet_gather(amcf, ev->log);
        }

        ngx_http_tce_admin_deploy_fleet_flush(amcf, ev->log);

        /* the error clock's looks until the next tick */
        ngx_http_tce_admin_deploy_quick_n = 0;

        if (drive && running
            && !ngx_http_tce_admin_deploy_quick_ev.timer_set)
        {
            ngx_http_tce_admin_deploy_quick_ev.handler =
                                             ngx_http_tce_admin_deploy_quick;
            ngx_http_tce_admin_deploy_quick_ev.data = amcf;
            ngx_http_tce_admin_deploy_quick_ev.log = ev->log;
            ngx_http_tce_admin_deploy_quick_ev.cancelable = 1;
            ngx_add_timer(&ngx_http_tce_admin_deploy_quick_ev,
                          NGX_HTTP_TCE_ADMIN_DEPLOY_QUICK);
        }
    }

    ngx_add_timer(ev, NGX_HTTP_TCE_ADMIN_DEPLOY_TICK);
}


/*
 * A quick look at every running deploy between two ticks, for the
 * judge's error clock only: nothing is written unless the window
 * counts a new 5xx.
 */
static void
ngx_http_tce_admin_deploy_quick(ngx_event_t *ev)
{
    ngx_http_tce_admin_main_conf_t *amcf = ev->data;

    ngx_uint_t                          i;
    ngx_http_tce_admin_shctx_t         *sh;
    ngx_http_tce_metrics_group_copy_t  *g;

    sh = amcf->sh;

    if (ngx_exiting || ngx_quit || ngx_terminate
        || sh->deploy_owner != (ngx_atomic_uint_t) ngx_pid
        || !ngx_http_tce_admin_deploy_fleet_drives(amcf))
    {
        return;
    }

    g = ngx_alloc(NGX_HTTP_TCE_ADMIN_DEPLOY_GROUPS * sizeof(*g), ev->log);
    if (g == NULL) {
        return;
    }

    for (i = 0; i < NGX_HTTP_TCE_ADMIN_DEPLOYS; i++) {
        if (sh->deploys[i].id
            && sh->deploys[i].state == NGX_HTTP_TCE_ADMIN_DEPLOY_RUNNING)
        {
            ngx_http_tce_admin_deploy_look(amcf, i, g, 1, ev->log);
        }
    }

    ngx_free(g);

    /* a rollback decided here goes to the fleet now, not at the tick */
    ngx_http_tce_admin_deploy_fleet_flush(amcf, ev->log);

    /* the tick looks next */
    if (++ngx_http_tce_admin_deploy_quick_n
        < NGX_HTTP_TCE_ADMIN_DEPLOY_TICK / NGX_HTTP_TCE_ADMIN_DEPLOY_QUICK - 1)
    {
        ngx_add_timer(ev, NGX_HTTP_TCE_ADMIN_DEPLOY_QUICK);
    }
}


/*
 * One look at record i: a copy is judged off the lock, then written
 * back unless an API action changed the record meanwhile (its rev).
 * A quick look (between ticks) judges a new 5xx of the window only.
 */
static void
ngx_http_tce_admin_deploy_look(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_uint_t i, ngx_http_tce_metrics_group_copy_t *g, ngx_uint_t quick,
    ngx_log_t *log)
{
    int                                rc;
    double                             alpha[NGX_TCE_JUDGE_NGATES];
    int64_t                            want_bp;
    uint64_t                           now, elapsed, m;
    uint32_t                           next;
    const char                        *event;
    ngx_uint_t                         persist, want_epoch;
    ngx_tce_judge_diff_t               diff, dd;
    ngx_tce_judge_sample_t             canary, prod, dc, dp;
    ngx_tce_judge_figures_t            fig;
    ngx_http_tce_admin_deploy_t        d, *sd;
    ngx_http_tce_admin_deploy_step_t  *step;

    sd = &amcf->sh->deploys[i];

    ngx_shmtx_lock(&amcf->shpool->mutex);
    d = *sd;
    ngx_shmtx_unlock(&amcf->shpool->mutex);

    if (d.state != NGX_HTTP_TCE_ADMIN_DEPLOY_RUNNING
        || ngx_http_tce_admin_deploy_counters(&d, g, &canary, &prod, &diff)
           != NGX_OK)
    {
        return;
    }

    now = ngx_http_tce_admin_now_ms();
    step = &d.steps[d.step];
    event = NULL;
    persist = 0;
    want_bp = -1;
    want_epoch = 0;

    if (!d.base_valid
        || ngx_http_tce_admin_deploy_sub(&dc, &canary, &d.base_canary)
        || ngx_http_tce_admin_deploy_sub(&dp, &prod, &d.base_prod)
        || diff.match < d.base_diff.match
        || diff.mismatch < d.base_diff.mismatch
        || diff.error < d.base_diff.error)
    {
        if (quick) {
            return;
        }

        /* a new window: started, resumed, restarted, counters reset */
        d.err_looked = 0;
        d.base_canary = canary;
        d.base_prod = prod;
        d.base_diff = diff;
        d.base_valid = 1;
        step->started_ms = now;
        step->verdict = NGX_HTTP_TCE_ADMIN_STEP_RUNNING;
        goto write;
    }

    dd.match = diff.match - d.base_diff.match;
    dd.mismatch = diff.mismatch - d.base_diff.mismatch;
    dd.error = diff.error - d.base_diff.error;
    dd.have = diff.have;

    /* with tce_redis: the other nodes' requests of this step too */
    ngx_http_tce_admin_deploy_fleet_add(&d, &dc, &dp, &dd);

    /* the error clock: the window's m-th 5xx is judged once */
    m = dc.errors + dp.errors;

    if (m > d.err_looked) {
        d.err_looked = m;

    } else if (quick) {
        return;

    } else {
        m = 0;
    }

    ngx_tce_judge_alphas(d.conf.gates.alpha, d.conf.step_ms,
                         quick ? 0 : NGX_HTTP_TCE_ADMIN_DEPLOY_TICK, m,
                         alpha);

    rc = ngx_tce_judge_each(&d.conf.gates, alpha, &dc, &dp, &dd, &fig);

    step->fig = fig;
    step->figures = 1;

    elapsed = now > step->started_ms ? now - step->started_ms : 0;

    if (rc == NGX_TCE_JUDGE_FAIL) {
        want_bp = 0;
        want_epoch = 1;
        d.state = NGX_HTTP_TCE_ADMIN_DEPLOY_ROLLED_BACK;
        step->verdict = NGX_HTTP_TCE_ADMIN_STEP_FAILED;
        step->ended_ms = now;
        (void) ngx_cpystrn((u_char *) d.gate,
                           (u_char *) ngx_tce_judge_gate_name(fig.gate),
                           sizeof(d.gate));
        (void) ngx_snprintf((u_char *) d.why, sizeof(d.why) - 1,
                            "gate %s failed at step %ui (%ui bp) after "
                            "%uL ms: canary %uL requests, %uL 5xx (%.4f), "
                            "p99 %.1f ms; prod %uL requests, %uL 5xx "
                            "(%.4f), p99 %.1f ms; p-value %.3e%Z",
                            d.gate, (ngx_uint_t) d.step + 1,
                            (ngx_uint_t) step->weight_bp, elapsed,
                            fig.canary_requests, fig.canary_errors,
                            fig.canary_error_ratio, fig.canary_p99_ms,
                            fig.prod_requests, fig.prod_errors,
                            fig.prod_error_ratio, fig.prod_p99_ms,
                            fig.p[fig.gate]);
        event = "deploy_rolled_back";
        goto write;
    }

    if (quick || elapsed < d.conf.step_ms) {
        goto write;
    }

    if (dc.requests < d.conf.min_requests) {
        if (step->verdict != NGX_HTTP_TCE_ADMIN_STEP_INCONCLUSIVE) {
            event = "deploy_inconclusive";
        }

        step->verdict = NGX_HTTP_TCE_ADMIN_STEP_INCONCLUSIVE;

        if (elapsed < d.conf.inconclusive_ms) {
            goto write;
        }

        want_bp = 0;
        want_epoch = 1;
        d.state = NGX_HTTP_TCE_ADMIN_DEPLOY_FAILED;
        step->ended_ms = now;
        (void) ngx_cpystrn((u_char *) d.gate, (u_char *) "min_requests",
                           sizeof(d.gate));
        (void) ngx_snprintf((u_char *) d.why, sizeof(d.why) - 1,
                            "step %ui (%ui bp) had %uL canary requests "
                            "of the %uL needed after %uL ms: rolled back%Z",
                            (ngx_uint_t) d.step + 1,
                            (ngx_uint_t) step->weight_bp, dc.requests,
                            d.conf.min_requests, elapsed);
        event = "deploy_failed";
        goto write;
    }

    /* the step passed */

    step->verdict = NGX_HTTP_TCE_ADMIN_STEP_PASSED;
    step->ended_ms = now;
    next = d.step + 1;

    if (next >= d.conf.nsteps
        || d.conf.steps_bp[next] >= NGX_TCE_CANARY_SCALE)
    {
        want_bp = NGX_TCE_CANARY_SCALE;

        if (next < d.conf.nsteps) {
            d.step = next;
            d.steps[next].verdict = NGX_HTTP_TCE_ADMIN_STEP_PASSED;
            d.steps[next].started_ms = now;
            d.steps[next].ended_ms = now;
        }

        d.state = NGX_HTTP_TCE_ADMIN_DEPLOY_PROMOTED;
        event = "deploy_promoted";
        goto write;
    }

    want_bp = d.conf.steps_bp[next];
    d.step = next;
    d.steps[next].verdict = NGX_HTTP_TCE_ADMIN_STEP_RUNNING;
    d.steps[next].started_ms = now;
    d.base_canary = canary;
    d.base_prod = prod;
    d.base_diff = diff;
    d.err_looked = 0;
    event = "deploy_step";

write:

    ngx_shmtx_lock(&amcf->shpool->mutex);

    if (sd->id != d.id || sd->rev != d.rev
        || (want_bp >= 0
            && ngx_http_tce_admin_deploy_policy_locked(amcf, &d,
                                                       (uint32_t) want_bp,
                                                       want_epoch, log)
               != NGX_OK))
    {
        /* an API action came first (its policy stands), or no memory */
        ngx_shmtx_unlock(&amcf->shpool->mutex);
        return;
    }

    if (event) {
        d.updated_ms = now;
        d.rev++;
        persist = 1;
    }

    *sd = d;

    ngx_shmtx_unlock(&amcf->shpool->mutex);

    if (event) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "tce admin: deploy %uL of \"%s\" cluster \"%s\": %s, "
                      "step %ui at %ui bp%s%s", d.id, d.service, d.cluster,
                      event, (ngx_uint_t) d.step + 1,
                      (ngx_uint_t) d.weight_bp, d.why[0] ? ": " : "",
                      d.why);

        ngx_http_tce_admin_deploy_event(amcf, &d, event, log);
    }

    if (persist) {
        ngx_http_tce_admin_deploy_persist(amcf, log);
    }
}


ngx_int_t
ngx_http_tce_admin_deploy_counters(ngx_http_tce_admin_deploy_t *d,
    ngx_http_tce_metrics_group_copy_t *g, ngx_tce_judge_sample_t *canary,
    ngx_tce_judge_sample_t *prod, ngx_tce_judge_diff_t *diff)
{
    size_t                   clen;
    uint64_t                 v;
    ngx_str_t                service, cluster;
    ngx_uint_t               i, n, c, s;
    ngx_tce_judge_sample_t  *out;

    ngx_memzero(canary, sizeof(ngx_tce_judge_sample_t));
    ngx_memzero(prod, sizeof(ngx_tce_judge_sample_t));
    ngx_memzero(diff, sizeof(ngx_tce_judge_diff_t));

    clen = ngx_strlen(d->cluster);

    n = ngx_http_tce_metrics_read_groups((u_char *) d->service,
                                         ngx_strlen(d->service), g,
                                         NGX_HTTP_TCE_ADMIN_DEPLOY_GROUPS);

    for (i = 0; i < n; i++) {
        if (g[i].cluster_len != clen
            || ngx_memcmp(g[i].cluster, d->cluster, clen) != 0)
        {
            continue;
        }

        out = (g[i].env == NGX_TCE_ENV_CANARY) ? canary : prod;

        for (c = 0; c < NGX_TCE_PROM_NCLASSES; c++) {
            for (s = 0; s < NGX_TCE_PROM_NSOURCES; s++) {
                v = g[i].c.requests[c][s];
                out->requests += v;

                if (c == 4) {       /* 5xx */
                    out->errors += v;
                }
            }
        }

        for (c = 0; c < NGX_TCE_HIST_NBUCKETS; c++) {
            out->bucket[c] += g[i].c.request_time.bucket[c];
        }
    }

    service.data = (u_char *) d->service;
    service.len = ngx_strlen(d->service);
    cluster.data = (u_char *) d->cluster;
    cluster.len = clen;

    if (ngx_tce_diff_totals(&service, &cluster, &diff->match,
                            &diff->mismatch, &diff->error)
        == NGX_OK)
    {
        diff->have = 1;
    }

    return NGX_OK;
}


/* out = now - base; 1 when a counter went back (a reset) */
static ngx_uint_t
ngx_http_tce_admin_deploy_sub(ngx_tce_judge_sample_t *out,
    const ngx_tce_judge_sample_t *now, const ngx_tce_judge_sample_t *base)
{
    ngx_uint_t  i;

    if (now->requests < base->requests || now->errors < base->errors) {
        return 1;
    }

    out->requests = now->requests - base->requests;
    out->errors = now->errors - base->errors;

    for (i = 0; i < NGX_TCE_HIST_NBUCKETS; i++) {
        if (now->bucket[i] < base->bucket[i]) {
            return 1;
        }

        out->bucket[i] = now->bucket[i] - base->bucket[i];
    }

    return 0;
}


/* the controller's audit line: {"time", "event", "deploy": {...}} */
static void
ngx_http_tce_admin_deploy_event(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_http_tce_admin_deploy_t *d, const char *event, ngx_log_t *log)
{
    json_t  *line;

    line = json_object();

    if (line == NULL
        || json_object_set_new(line, "event", json_string(event)) != 0
        || json_object_set_new(line, "principal",
                               json_string("deploy-controller")) != 0
        || json_object_set_new(line, "service", json_string(d->service))
           != 0
        || json_object_set_new(line, "deploy",
                               ngx_http_tce_admin_deploy_json(d)) != 0)
    {
        json_decref(line);
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "tce admin: no memory for the audit line of deploy "
                      "%uL", d->id);
        return;
    }

    ngx_http_tce_admin_audit_system(amcf, line, log);
    ngx_http_tce_admin_webhook_deploy(event, d, NULL, log);
}


void
ngx_http_tce_admin_deploy_persist(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_log_t *log)
{
    if (amcf->deploys) {
        ngx_tce_persist_write(amcf->deploys, log);
    }

    if (amcf->tmcf->fleet) {
        /* the controlling worker writes them to the fleet at its tick */
        amcf->sh->deploy_fleet_dirty = 1;
    }
}


char *
ngx_http_tce_admin_deploy_dump(ngx_http_tce_admin_main_conf_t *amcf,
    size_t *len, ngx_log_t *log)
{
    char   *text, err[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    void   *job;

    job = ngx_http_tce_admin_deploy_collect(amcf, log);
    if (job == NULL) {
        return NULL;
    }

    text = ngx_http_tce_admin_deploy_encode(job, len, err, sizeof(err));

    ngx_http_tce_admin_deploy_free(job);

    if (text == NULL) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "tce admin: deploy records not encoded: %s", err);
    }

    return text;
}


static void *
ngx_http_tce_admin_deploy_collect(void *data, ngx_log_t *log)
{
    ngx_http_tce_admin_main_conf_t *amcf = data;

    ngx_http_tce_admin_deploy_job_t  *job;

    job = ngx_alloc(sizeof(ngx_http_tce_admin_deploy_job_t), log);
    if (job == NULL) {
        return NULL;
    }

    ngx_shmtx_lock(&amcf->shpool->mutex);

    job->next_id = amcf->sh->deploy_next_id;
    ngx_memcpy(job->deploys, amcf->sh->deploys, sizeof(job->deploys));

    ngx_shmtx_unlock(&amcf->shpool->mutex);

    return job;
}


/* any thread: {"next_id": n, "deploys": [...]} */
static char *
ngx_http_tce_admin_deploy_encode(void *data, size_t *len, char *err,
    size_t errlen)
{
    ngx_http_tce_admin_deploy_job_t *job = data;

    char        *text;
    json_t      *root, *list;
    ngx_uint_t   i;

    root = json_object();
    list = json_array();

    if (root == NULL || json_object_set_new(root, "deploys", list) != 0
        || json_object_set_new(root, "next_id",
                               json_integer((json_int_t) job->next_id))
           != 0)
    {
        goto failed;
    }

    for (i = 0; i < NGX_HTTP_TCE_ADMIN_DEPLOYS; i++) {
        if (job->deploys[i].id
            && json_array_append_new(list, ngx_http_tce_admin_deploy_json(
                                               &job->deploys[i]))
               != 0)
        {
            goto failed;
        }
    }

    text = json_dumps(root, JSON_INDENT(1) | JSON_SORT_KEYS);
    json_decref(root);

    if (text == NULL) {
        (void) ngx_cpystrn((u_char *) err, (u_char *) "no memory", errlen);
        return NULL;
    }

    *len = ngx_strlen(text);

    return text;

failed:

    json_decref(root);
    (void) ngx_cpystrn((u_char *) err, (u_char *) "no memory", errlen);

    return NULL;
}


static void
ngx_http_tce_admin_deploy_free(void *job)
{
    ngx_free(job);
}


/* master, a fresh zone: the deploys file into the records */
static void
ngx_http_tce_admin_deploy_load(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_log_t *log)
{
    char                          err[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    size_t                        i, n, k;
    json_t                       *root, *list;
    json_error_t                  jerr;
    ngx_file_info_t               fi;
    ngx_http_tce_admin_deploy_t  *d;

    if (ngx_file_info(amcf->deploys->path.data, &fi) == NGX_FILE_ERROR
        && ngx_errno == NGX_ENOENT)
    {
        return;
    }

    root = json_load_file((char *) amcf->deploys->path.data,
                          JSON_REJECT_DUPLICATES, &jerr);

    list = json_object_get(root, "deploys");

    if (root == NULL || !json_is_array(list)) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tce admin: deploys file \"%V\" not read: %s: no "
                      "deploy resumes", &amcf->deploys->path,
                      root ? "no \"deploys\" array" : jerr.text);
        json_decref(root);
        return;
    }

    n = json_array_size(list);
    k = 0;

    for (i = 0; i < n && k < NGX_HTTP_TCE_ADMIN_DEPLOYS; i++) {
        d = &amcf->sh->deploys[k];

        if (ngx_http_tce_admin_deploy_decode(json_array_get(list, i), d, err,
                                             sizeof(err))
            != 0)
        {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "tce admin: deploys file \"%V\": deploy %uz "
                          "left out: %s", &amcf->deploys->path, i, err);
            ngx_memzero(d, sizeof(ngx_http_tce_admin_deploy_t));
            continue;
        }

        d->rev = 1;

        if (d->id > amcf->sh->deploy_next_id) {
            amcf->sh->deploy_next_id = d->id;
        }

        k++;
    }

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "tce admin: %uz deploy(s) read from \"%V\"", k,
                  &amcf->deploys->path);

    json_decref(root);
}
