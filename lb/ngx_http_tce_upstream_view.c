/*
 * Per-worker read views of a service (see ngx_http_tce_upstream.h).
 *
 * A rebuild costs O(n) in the number of instances and nothing in the
 * length of the weighted schedules: those are built once per change,
 * by the process that made it, and shared in the zone
 * (ngx_tce_module/ngx_tce_sched_zone.c).  A view points at its set's
 * schedules when they are ready; until then each group keeps the
 * previous view's schedule through a map that drops the instances that
 * left (so a removal or an address change applies at once, new
 * instances and weights when the build is published, a few ms later),
 * and a group with nothing to keep goes round robin over its members.
 * When the schedules are published, nothing else having changed, the
 * view takes them in place (ngx_http_tce_upstream_view_attach): a change
 * of the set costs each worker one rebuild, not two.  A set that kept
 * the cycles of an earlier one (members masked: a flapping check) is
 * mapped to them by id (ngx_http_tce_upstream_view_masked).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_upstream.h"
#include "ngx_http_tce_metrics.h"


static ngx_http_tce_upstream_view_t *ngx_http_tce_upstream_view_build(
    ngx_http_tce_upstream_srv_conf_t *ucf, ngx_http_tce_upstream_view_t *old,
    ngx_log_t *log);
static ngx_int_t ngx_http_tce_upstream_view_attach(
    ngx_http_tce_upstream_srv_conf_t *ucf, ngx_http_tce_upstream_view_t *view);
static void ngx_http_tce_upstream_view_carry(
    ngx_http_tce_upstream_view_t *view, ngx_http_tce_upstream_view_t *old,
    uint32_t *xlat);
static ngx_int_t ngx_http_tce_upstream_view_group(
    ngx_http_tce_upstream_srv_conf_t *ucf,
    ngx_http_tce_upstream_view_t *view, ngx_http_tce_upstream_cluster_t *cl,
    ngx_uint_t env, ngx_http_tce_upstream_view_t *old,
    ngx_tce_sched_set_t *set, uint32_t *xlat, ngx_log_t *log);
static ngx_uint_t ngx_http_tce_upstream_view_member(
    ngx_http_tce_upstream_peer_t *peer, ngx_http_tce_upstream_cluster_t *cl,
    ngx_uint_t env);
static void ngx_http_tce_upstream_view_free(
    ngx_http_tce_upstream_view_t *view);
static ngx_int_t ngx_http_tce_upstream_view_masked(
    ngx_http_tce_upstream_view_t *view, ngx_http_tce_upstream_group_t *g,
    ngx_tce_sched_group_t *sg, ngx_log_t *log);
static uint32_t ngx_http_tce_upstream_view_spread(uint32_t len);


ngx_http_tce_upstream_view_t *
ngx_http_tce_upstream_view_get(ngx_http_tce_upstream_srv_conf_t *ucf,
    ngx_log_t *log)
{
    ngx_http_tce_upstream_view_t  *view;

    view = ucf->view;

    if (view && view->generation == ucf->service->generation) {
        return view;
    }

    if (view && ngx_http_tce_upstream_view_attach(ucf, view) == NGX_OK) {
        ngx_tce_zone_applied(ucf->zone, ucf->service, view->generation);
        return view;
    }

    view = ngx_http_tce_upstream_view_build(ucf, ucf->view, log);

    if (view == NULL) {
        /* keep serving the last good view */
        return ucf->view;
    }

    if (ucf->view) {
        /* idle connections, TLS sessions: nothing may point into it */
        ngx_http_tce_upstream_carry(view, ucf->view);

        ngx_http_tce_upstream_view_release(ucf->view);
    }

    ucf->view = view;

    /* what admin API v1/status shows as this worker's generation */
    ngx_tce_zone_applied(ucf->zone, ucf->service, view->generation);

    return view;
}


void
ngx_http_tce_upstream_view_release(ngx_http_tce_upstream_view_t *view)
{
    if (--view->refs == 0) {
        ngx_http_tce_upstream_view_free(view);
    }
}


ngx_http_tce_upstream_cluster_t *
ngx_http_tce_upstream_view_cluster(ngx_http_tce_upstream_view_t *view,
    ngx_str_t *name)
{
    ngx_uint_t  i;

    for (i = 0; i < view->nclusters; i++) {
        if (view->clusters[i].name.len == name->len
            && ngx_memcmp(view->clusters[i].name.data, name->data, name->len)
               == 0)
        {
            return &view->clusters[i];
        }
    }

    return NULL;
}


static ngx_http_tce_upstream_view_t *
ngx_http_tce_upstream_view_build(ngx_http_tce_upstream_srv_conf_t *ucf,
    ngx_http_tce_upstream_view_t *old, ngx_log_t *log)
{
    uint32_t                          *xlat;
    uint64_t                           now;
    ngx_str_t                          cname;
    ngx_uint_t                         i, j, n, env, state;
    ngx_atomic_uint_t                  generation;
    ngx_tce_instance_t                *inst;
    ngx_tce_sched_set_t               *set;
    ngx_http_tce_upstream_peer_t      *peer;
    ngx_http_tce_upstream_view_t      *view;
    ngx_http_tce_upstream_cluster_t   *cl;

    if (ngx_tce_zone_copy(ucf->zone, ucf->service, &inst, &n, &generation,
                          log)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tce: cannot copy service \"%V\", "
                      "the previous instance set is kept",
                      &ucf->service_name);
        return NULL;
    }

    xlat = NULL;

    /* the set's shared schedules, if built (a reference) */
    set = ngx_tce_sched_zone_get(ucf->zone, ucf->service, generation,
                                 &state);

    if (state == NGX_TCE_SCHED_LOCAL && n) {
        /* the zone could not hold them: this worker builds its own */
        set = ngx_tce_sched_local(inst, n, log);
    }

    view = ngx_calloc(sizeof(ngx_http_tce_upstream_view_t), log);
    if (view == NULL) {
        goto failed;
    }

    view->refs = 1;
    view->generation = generation;
    view->zone = ucf->zone;

    if (n) {
        view->peers = ngx_calloc(n * sizeof(ngx_http_tce_upstream_peer_t),
                                 log);
        view->clusters = ngx_calloc(n
                                   * sizeof(ngx_http_tce_upstream_cluster_t),
                                   log);
        if (view->peers == NULL || view->clusters == NULL) {
            goto failed;
        }
    }

    now = ngx_http_tce_upstream_now_ms();

    for (i = 0; i < n; i++) {
        peer = &view->peers[i];
        peer->inst = inst[i];

        /* slow_start: a ramp the zone stamped and not over yet */
        if (ucf->slow_start && inst[i].since_ms
            && now < inst[i].since_ms + ucf->slow_start)
        {
            peer->ss_start = inst[i].since_ms;
        }
        peer->name.data = (u_char *) peer->inst.addr;
        peer->name.len = ngx_strlen(peer->inst.addr);
        peer->id.data = (u_char *) peer->inst.id;
        peer->id.len = ngx_strlen(peer->inst.id);
        ngx_queue_init(&peer->idle);

        cname.data = (u_char *) peer->inst.cluster;
        cname.len = ngx_strlen(peer->inst.cluster);

        /* clusters are few: a linear search is the cheapest here */
        if (ngx_http_tce_upstream_view_cluster(view, &cname) == NULL) {
            view->clusters[view->nclusters++].name = cname;
        }
    }

    view->npeers = n;
    ngx_free(inst);
    inst = NULL;

    if (old) {
        /* old peer index -> new one, for the schedules kept meanwhile */
        xlat = ngx_alloc((old->npeers + 1) * sizeof(uint32_t), log);
        if (xlat == NULL) {
            goto failed;
        }

        ngx_http_tce_upstream_view_carry(view, old, xlat);
    }

    for (j = 0; j < view->nclusters; j++) {
        cl = &view->clusters[j];

        for (env = 0; env < NGX_TCE_NENVS; env++) {
            if (ngx_http_tce_upstream_view_group(ucf, view, cl, env, old,
                                                 set, xlat, log)
                != NGX_OK)
            {
                goto failed;
            }
        }

        ngx_http_tce_upstream_canary_view(ucf, cl, old);
    }

    if (ucf->cluster == NULL) {
        view->static_cluster = ngx_http_tce_upstream_view_cluster(view,
                                                        &ucf->cluster_name);
    }

    /* the series the request path adds to: resolved here, once */
    ngx_http_tce_metrics_view_bind(ucf, view, log);

    if (xlat) {
        ngx_free(xlat);
    }

    if (set) {
        /* the groups hold their own references */
        ngx_tce_sched_release(ucf->zone, set);
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, log, 0,
                   "tce view of \"%V\": %ui instances, generation %uA, "
                   "schedules %ui", &ucf->service_name, n, generation,
                   state);

    return view;

failed:

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "tce: no memory for a view of service \"%V\", "
                  "the previous instance set is kept", &ucf->service_name);

    if (inst) {
        ngx_free(inst);
    }

    if (xlat) {
        ngx_free(xlat);
    }

    if (set) {
        ngx_tce_sched_release(ucf->zone, set);
    }

    if (view) {
        ngx_http_tce_upstream_view_free(view);
    }

    return NULL;
}


/*
 * The set's schedules were published and nothing else changed since the
 * view was built: each group whose schedule is there moves to it, with
 * the same members, going on from where it was.  NGX_DECLINED when
 * something else changed too: the view is rebuilt.
 */
static ngx_int_t
ngx_http_tce_upstream_view_attach(ngx_http_tce_upstream_srv_conf_t *ucf,
    ngx_http_tce_upstream_view_t *view)
{
    ngx_uint_t                        j, env;
    ngx_atomic_uint_t                 generation;
    ngx_tce_sched_set_t              *set;
    ngx_tce_sched_group_t            *sg;
    ngx_http_tce_upstream_group_t    *g;
    ngx_http_tce_upstream_cluster_t  *cl;

    set = ngx_tce_sched_zone_published(ucf->zone, ucf->service,
                                       view->generation, &generation);
    if (set == NULL) {
        return NGX_DECLINED;
    }

    for (j = 0; j < view->nclusters; j++) {
        cl = &view->clusters[j];

        for (env = 0; env < NGX_TCE_NENVS; env++) {
            g = &cl->env[env];

            if (g->nmembers == 0 || g->set == set) {
                continue;
            }

            sg = ngx_tce_sched_set_group(set, &cl->name, env);

            if (sg == NULL || sg->nmembers != g->nmembers || sg->len == 0) {
                /* as a rebuild would: what the group had meanwhile */
                continue;
            }

            ngx_tce_sched_hold(ucf->zone, set);

            if (g->set) {
                ngx_tce_sched_release(ucf->zone, g->set);
            }

            if (g->own_map) {
                ngx_free(g->own_map);
                g->own_map = NULL;
            }

            g->pos = g->len ? g->pos % sg->len
                            : ngx_http_tce_upstream_view_spread(sg->len);
            g->set = set;
            g->chunks = sg->chunks;
            g->len = sg->len;
            g->map = g->members;
            g->nmap = (uint32_t) g->nmembers;
        }
    }

    ngx_tce_sched_release(ucf->zone, set);

    view->generation = generation;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "tce view of \"%V\": schedules of generation %uA "
                   "taken in place", &ucf->service_name, generation);

    return NGX_OK;
}


/*
 * Passive health state carried over by instance id: both views are
 * sorted by id, so one merge pass does it.  xlat[j] gets the new index
 * of old peer j, or NGX_HTTP_TCE_UPSTREAM_GONE.
 */
static void
ngx_http_tce_upstream_view_carry(ngx_http_tce_upstream_view_t *view,
    ngx_http_tce_upstream_view_t *old, uint32_t *xlat)
{
    ngx_int_t                      c;
    ngx_uint_t                     i, j;
    ngx_http_tce_upstream_peer_t  *p, *q;

    i = 0;
    j = 0;

    while (i < view->npeers && j < old->npeers) {
        p = &view->peers[i];
        q = &old->peers[j];

        c = ngx_strcmp(p->inst.id, q->inst.id);

        if (c == 0) {
            p->fails = q->fails;
            p->accessed = q->accessed;
            p->checked = q->checked;

            /* a ramp of this worker's (passive health) or the same one */
            if (q->ss_start >= p->ss_start && q->ss_start) {
                p->ss_start = q->ss_start;
                p->ss_credit = q->ss_credit;
            }

            /* same instance for the schedule only if same address */
            xlat[j] = (p->inst.socklen == q->inst.socklen
                       && ngx_memcmp(&p->inst.sockaddr, &q->inst.sockaddr,
                                     p->inst.socklen) == 0)
                      ? (uint32_t) i : NGX_HTTP_TCE_UPSTREAM_GONE;
            i++;
            j++;

        } else if (c < 0) {
            i++;

        } else {
            xlat[j++] = NGX_HTTP_TCE_UPSTREAM_GONE;
        }
    }

    while (j < old->npeers) {
        xlat[j++] = NGX_HTTP_TCE_UPSTREAM_GONE;
    }
}


static ngx_uint_t
ngx_http_tce_upstream_view_member(ngx_http_tce_upstream_peer_t *peer,
    ngx_http_tce_upstream_cluster_t *cl, ngx_uint_t env)
{
    return peer->inst.env == env
           && ngx_strcmp(peer->inst.cluster, cl->name.data) == 0
           && ngx_tce_instance_weight(&peer->inst);
}


static ngx_int_t
ngx_http_tce_upstream_view_group(ngx_http_tce_upstream_srv_conf_t *ucf,
    ngx_http_tce_upstream_view_t *view, ngx_http_tce_upstream_cluster_t *cl,
    ngx_uint_t env, ngx_http_tce_upstream_view_t *old,
    ngx_tce_sched_set_t *set, uint32_t *xlat, ngx_log_t *log)
{
    uint32_t                           x;
    ngx_int_t                          rc;
    ngx_uint_t                         i, n;
    ngx_tce_sched_group_t             *sg;
    ngx_http_tce_upstream_group_t     *g, *og;
    ngx_http_tce_upstream_cluster_t   *ocl;

    g = &cl->env[env];
    n = 0;

    for (i = 0; i < view->npeers; i++) {
        if (ngx_http_tce_upstream_view_member(&view->peers[i], cl, env)) {
            n++;
        }
    }

    if (n == 0) {
        return NGX_OK;
    }

    g->members = ngx_alloc(n * sizeof(uint32_t), log);
    if (g->members == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < view->npeers; i++) {
        if (ngx_http_tce_upstream_view_member(&view->peers[i], cl, env)) {
            g->members[g->nmembers++] = (uint32_t) i;
        }
    }

    ocl = old ? ngx_http_tce_upstream_view_cluster(old, &cl->name) : NULL;
    og = ocl ? &ocl->env[env] : NULL;

    sg = set ? ngx_tce_sched_set_group(set, &cl->name, env) : NULL;

    if (sg && sg->nmembers == n && sg->len) {
        /* the set's own schedule: entry p is member p */
        ngx_tce_sched_hold(ucf->zone, set);
        g->set = set;
        g->chunks = sg->chunks;
        g->len = sg->len;
        g->map = g->members;
        g->nmap = (uint32_t) n;

    } else if (sg && sg->len && sg->members
               && (rc = ngx_http_tce_upstream_view_masked(view, g, sg, log))
                  != NGX_DECLINED)
    {
        /* the schedule of an earlier set the service keeps: by id */

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        ngx_tce_sched_hold(ucf->zone, set);
        g->set = set;
        g->chunks = sg->chunks;
        g->len = sg->len;
        g->map = g->own_map;
        g->nmap = sg->nmembers;

    } else if (og && og->len) {

        /* meanwhile: the old schedule, without the instances that left */

        g->own_map = ngx_alloc(og->nmap * sizeof(uint32_t), log);
        if (g->own_map == NULL) {
            return NGX_ERROR;
        }

        for (i = 0; i < og->nmap; i++) {
            x = og->map[i];

            if (x != NGX_HTTP_TCE_UPSTREAM_GONE) {
                x = xlat[x];
            }

            if (x != NGX_HTTP_TCE_UPSTREAM_GONE
                && !ngx_http_tce_upstream_view_member(&view->peers[x], cl,
                                                      env))
            {
                x = NGX_HTTP_TCE_UPSTREAM_GONE;
            }

            g->own_map[i] = x;
        }

        ngx_tce_sched_hold(ucf->zone, og->set);
        g->set = og->set;
        g->chunks = og->chunks;
        g->len = og->len;
        g->map = g->own_map;
        g->nmap = og->nmap;
    }

    /* a rebuilt view goes on from where the old one was */

    if (og && og->len && g->len) {
        g->pos = og->pos % g->len;
        g->scan = og->scan % n;

    } else {
        g->pos = ngx_http_tce_upstream_view_spread(g->len);
        g->scan = ngx_worker % n;
    }

    return NGX_OK;
}


/*
 * g->own_map for a schedule the service kept from an earlier set
 * (ngx_tce_sched_zone_changed_locked): member p of the cycle is the
 * group's member of the same id, or NGX_HTTP_TCE_UPSTREAM_GONE (masked:
 * its entries are skipped).  Both lists are in id order: one merge.
 * The zone checked that every member of the group is in the cycle;
 * NGX_DECLINED if one is not all the same (the group then routes as
 * while a build runs).
 */
static ngx_int_t
ngx_http_tce_upstream_view_masked(ngx_http_tce_upstream_view_t *view,
    ngx_http_tce_upstream_group_t *g, ngx_tce_sched_group_t *sg,
    ngx_log_t *log)
{
    uint32_t                *map, p, q;
    ngx_tce_sched_member_t  *m;

    map = ngx_alloc(sg->nmembers * sizeof(uint32_t), log);
    if (map == NULL) {
        return NGX_ERROR;
    }

    q = 0;

    for (p = 0; p < sg->nmembers; p++) {
        m = ngx_tce_sched_member(sg, p);
        map[p] = NGX_HTTP_TCE_UPSTREAM_GONE;

        if (q == g->nmembers) {
            continue;
        }

        if (ngx_strcmp(view->peers[g->members[q]].inst.id, m->id) == 0) {
            map[p] = g->members[q++];
        }
    }

    if (q != g->nmembers) {
        /* not the set the zone checked: must not happen */
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "tce: %uD of %uD instances of a group not in its "
                      "schedule", (uint32_t) g->nmembers - q,
                      (uint32_t) g->nmembers);
        ngx_free(map);
        return NGX_DECLINED;
    }

    g->own_map = map;

    return NGX_OK;
}


/*
 * This worker's start in a cycle of len entries: workers spread their
 * start evenly over it (the first request of every worker must not go
 * to the same instance).
 */
static uint32_t
ngx_http_tce_upstream_view_spread(uint32_t len)
{
    ngx_uint_t        nworkers;
    ngx_core_conf_t  *ccf;

    ccf = (ngx_core_conf_t *) ngx_get_conf(ngx_cycle->conf_ctx,
                                           ngx_core_module);

    if (ccf == NULL || ccf->worker_processes < 1
        || ngx_worker >= (ngx_uint_t) ccf->worker_processes)
    {
        nworkers = ngx_worker + 1;

    } else {
        nworkers = ccf->worker_processes;
    }

    return (uint32_t) ((uint64_t) ngx_worker * len / nworkers);
}


static void
ngx_http_tce_upstream_view_free(ngx_http_tce_upstream_view_t *view)
{
    ngx_uint_t                      i, env;
    ngx_http_tce_upstream_group_t  *g;

    /* idle connections, TLS sessions still held here (worker exit) */
    ngx_http_tce_upstream_drop(view);

    ngx_http_tce_metrics_view_release(view);

    for (i = 0; i < view->nclusters; i++) {
        for (env = 0; env < NGX_TCE_NENVS; env++) {
            g = &view->clusters[i].env[env];

            if (g->set) {
                ngx_tce_sched_release(view->zone, g->set);
            }

            if (g->own_map) {
                ngx_free(g->own_map);
            }

            if (g->members) {
                ngx_free(g->members);
            }
        }
    }

    if (view->clusters) {
        ngx_free(view->clusters);
    }

    if (view->peers) {
        ngx_free(view->peers);
    }

    ngx_free(view);
}


uint64_t
ngx_http_tce_upstream_now_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


ngx_uint_t
ngx_http_tce_upstream_ramp_admit(ngx_http_tce_upstream_srv_conf_t *ucf,
    ngx_http_tce_upstream_peer_t *peer)
{
    uint64_t  now, elapsed;

    now = ngx_http_tce_upstream_now_ms();
    elapsed = now > peer->ss_start ? now - peer->ss_start : 0;

    if (elapsed >= ucf->slow_start) {
        peer->ss_start = 0;
        return 1;
    }

    return ngx_tce_ramp_admit(&peer->ss_credit,
                              ngx_tce_ramp_fraction(elapsed,
                                                    ucf->slow_start));
}
