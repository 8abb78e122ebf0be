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
 * Due instances leave the state file (one write for all of them), then
 * the zone.  The state (file and zone) outlives a reload, and the new
 * workers go on with it; after a restart nothing is in flight and the
 * removals complete at the first tick.  A state file edited by hand
 * since it was loaded is not overwritten: removals wait for a reload.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_admin_edit.h"
#include "ngx_http_tce_admin_inst.h"
#include "ngx_http_tce_admin_inst_edit.h"
#include "ngx_http_tce_metrics.h"


#define NGX_HTTP_TCE_ADMIN_DRAIN_TICK    100    /* ms */
#define NGX_HTTP_TCE_ADMIN_DRAIN_SETTLE  200    /* ms */


static void ngx_http_tce_admin_drain_tick(ngx_event_t *ev);
static void ngx_http_tce_admin_drain_run(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_log_t *log);
static ngx_uint_t ngx_http_tce_admin_drain_due(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_tce_state_service_t *ss, uint64_t now,
    ngx_log_t *log);


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
        || amcf->tmcf->state_path.len == 0)
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
        return;
    }

    ngx_http_tce_admin_drain_run(amcf, ev->log);

    ngx_add_timer(ev, NGX_HTTP_TCE_ADMIN_DRAIN_TICK);
}


static void
ngx_http_tce_admin_drain_run(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_log_t *log)
{
    int                       rc;
    char                     *data;
    char                      err[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    uint64_t                  now;
    ngx_str_t                *path;
    ngx_uint_t                pending, removed;
    ngx_tce_zone_t           *zone;
    ngx_tce_state_t           st;
    ngx_tce_service_t        *svc;
    ngx_tce_state_service_t  *ss;
    ngx_http_tce_admin_fp_t   fp;

    zone = amcf->tmcf->zone;
    path = &amcf->tmcf->state_path;

    pending = 0;

    for (svc = zone->sh->services; svc; svc = svc->next) {
        pending += svc->removals;
    }

    if (pending == 0 || !ngx_http_tce_admin_turn_try(amcf, log)) {
        return;
    }

    st.services = NULL;
    st.nservices = 0;

    now = ngx_http_tce_admin_now_ms();

    /* anything due at all?  (no file read otherwise) */

    removed = 0;

    for (svc = zone->sh->services; svc; svc = svc->next) {
        if (svc->removals) {
            removed += ngx_http_tce_admin_drain_due(zone, svc, NULL, now,
                                                    log);
        }
    }

    if (removed == 0) {
        goto unlock;
    }

    if (ngx_http_tce_admin_fp(path, &fp) != NGX_OK
        || !ngx_http_tce_admin_fp_equal(&fp, &amcf->sh->fp))
    {
        if (!amcf->drain_warned) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "tce admin: the state file \"%V\" changed on disk "
                          "since it was loaded: instances drained for "
                          "removal stay (draining) until nginx is reloaded",
                          path);
            amcf->drain_warned = 1;
        }

        goto unlock;
    }

    amcf->drain_warned = 0;

    rc = ngx_tce_state_load((char *) path->data, &st, err, sizeof(err));
    if (rc != 0) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tce admin: state file \"%V\": %s: removals wait",
                      path, err);
        goto unlock;
    }

    removed = 0;

    for (svc = zone->sh->services; svc; svc = svc->next) {
        if (svc->removals == 0) {
            continue;
        }

        ss = ngx_http_tce_admin_edit_service(&st, (char *) svc->name,
                                             svc->name_len);
        if (ss) {
            removed += ngx_http_tce_admin_drain_due(zone, svc, ss, now, log);
        }
    }

    if (removed == 0) {
        goto unlock;
    }

    data = ngx_tce_state_encode(&st);
    if (data == NULL) {
        goto unlock;
    }

    rc = ngx_tce_state_write((char *) path->data, data, ngx_strlen(data),
                             err, sizeof(err));
    free(data);

    (void) ngx_http_tce_admin_fp(path, &amcf->sh->fp);

    if (rc != 0) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tce admin: state file \"%V\" not written: %s: "
                      "removals wait", path, err);
        goto unlock;
    }

    /* the zone follows the file */

    for (svc = zone->sh->services; svc; svc = svc->next) {
        if (svc->removals == 0 || ngx_http_tce_admin_consul_fed(svc)) {
            continue;
        }

        ss = ngx_http_tce_admin_edit_service(&st, (char *) svc->name,
                                             svc->name_len);
        if (ss
            && ngx_tce_zone_set(zone, svc, ss->instances, ss->ninstances,
                                NGX_TCE_SOURCE_STATE, log)
               == NGX_ERROR)
        {
            ngx_log_error(NGX_LOG_ALERT, log, 0,
                          "tce admin: drained instances of \"%s\" left the "
                          "state file but the zone could not take the "
                          "set: they stay, draining", svc->name);
        }
    }

unlock:

    ngx_tce_state_free(&st);

    ngx_http_tce_admin_turn_release(amcf);
}


/*
 * The number of svc's instances due for removal; with ss, they are
 * removed from it (and logged).
 */
static ngx_uint_t
ngx_http_tce_admin_drain_due(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_tce_state_service_t *ss, uint64_t now, ngx_log_t *log)
{
    int64_t              in_flight;
    ngx_str_t            name;
    ngx_uint_t           i, n, due;
    ngx_atomic_uint_t    generation;
    ngx_tce_instance_t  *inst, *fi;

    if (ngx_http_tce_admin_consul_fed(svc)
        || ngx_tce_zone_copy(zone, svc, &inst, &n, &generation, log)
           != NGX_OK)
    {
        return 0;
    }

    name.data = svc->name;
    name.len = svc->name_len;

    due = 0;

    for (i = 0; i < n; i++) {
        if (inst[i].rm_deadline == 0
            || now < inst[i].rm_since + NGX_HTTP_TCE_ADMIN_DRAIN_SETTLE)
        {
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

        if (ss == NULL) {
            due++;
            continue;
        }

        fi = ngx_http_tce_admin_edit_find(ss, inst[i].id);

        if (fi == NULL || fi->rm_deadline == 0) {
            continue;
        }

        (void) ngx_http_tce_admin_edit_remove(ss, inst[i].id);
        due++;

        if (in_flight > 0) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "tce admin: instance \"%s\" of \"%s\" cluster "
                          "\"%s\" removed at its drain timeout (%uLms) with "
                          "%L requests in flight", inst[i].id, svc->name,
                          inst[i].cluster, now - inst[i].rm_since, in_flight);

        } else {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "tce admin: instance \"%s\" of \"%s\" cluster "
                          "\"%s\" removed, drained in %uLms", inst[i].id,
                          svc->name, inst[i].cluster, now - inst[i].rm_since);
        }
    }

    if (inst) {
        ngx_free(inst);
    }

    return due;
}
