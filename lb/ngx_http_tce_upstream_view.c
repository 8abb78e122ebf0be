/*
 * Per-worker read views of a service (see ngx_http_tce_upstream.h).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_upstream.h"
#include "ngx_http_tce_metrics.h"


static ngx_http_tce_upstream_view_t *ngx_http_tce_upstream_view_build(
    ngx_http_tce_upstream_srv_conf_t *ucf, ngx_http_tce_upstream_view_t *old,
    ngx_log_t *log);
static void ngx_http_tce_upstream_view_carry(
    ngx_http_tce_upstream_view_t *view, ngx_http_tce_upstream_view_t *old);
static ngx_int_t ngx_http_tce_upstream_view_group(
    ngx_http_tce_upstream_view_t *view, ngx_http_tce_upstream_cluster_t *cl,
    ngx_uint_t env, ngx_http_tce_upstream_view_t *old, uint32_t *w,
    ngx_log_t *log);
static void ngx_http_tce_upstream_view_free(
    ngx_http_tce_upstream_view_t *view);
static ngx_uint_t ngx_http_tce_upstream_nworkers(void);


ngx_http_tce_upstream_view_t *
ngx_http_tce_upstream_view_get(ngx_http_tce_upstream_srv_conf_t *ucf,
    ngx_log_t *log)
{
    ngx_http_tce_upstream_view_t  *view;

    view = ucf->view;

    if (view && view->generation == ucf->service->generation) {
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
    uint32_t                          *w;
    ngx_str_t                          cname;
    ngx_uint_t                         i, j, n, env;
    ngx_atomic_uint_t                  generation;
    ngx_tce_instance_t                *inst;
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

    view = ngx_calloc(sizeof(ngx_http_tce_upstream_view_t), log);
    w = ngx_alloc((n + 1) * sizeof(uint32_t), log);
    if (view == NULL || w == NULL) {
        goto failed;
    }

    view->refs = 1;
    view->generation = generation;

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

    for (i = 0; i < n; i++) {
        peer = &view->peers[i];
        peer->inst = inst[i];
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
        ngx_http_tce_upstream_view_carry(view, old);
    }

    for (j = 0; j < view->nclusters; j++) {
        cl = &view->clusters[j];

        for (env = 0; env < NGX_TCE_NENVS; env++) {
            if (ngx_http_tce_upstream_view_group(view, cl, env, old, w, log)
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

    ngx_free(w);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                   "tce view of \"%V\": %ui instances, generation %uA",
                   &ucf->service_name, n, generation);

    return view;

failed:

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "tce: no memory for a view of service \"%V\", "
                  "the previous instance set is kept", &ucf->service_name);

    if (inst) {
        ngx_free(inst);
    }

    if (w) {
        ngx_free(w);
    }

    if (view) {
        ngx_http_tce_upstream_view_free(view);
    }

    return NULL;
}


/*
 * Passive health state carried over by instance id: both views are
 * sorted by id, so one merge pass does it.
 */
static void
ngx_http_tce_upstream_view_carry(ngx_http_tce_upstream_view_t *view,
    ngx_http_tce_upstream_view_t *old)
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
            i++;
            j++;

        } else if (c < 0) {
            i++;

        } else {
            j++;
        }
    }
}


static ngx_int_t
ngx_http_tce_upstream_view_group(ngx_http_tce_upstream_view_t *view,
    ngx_http_tce_upstream_cluster_t *cl, ngx_uint_t env,
    ngx_http_tce_upstream_view_t *old, uint32_t *w, ngx_log_t *log)
{
    ngx_uint_t                         i, n;
    ngx_http_tce_upstream_group_t     *g;
    ngx_http_tce_upstream_cluster_t   *ocl;

    g = &cl->env[env];
    n = 0;

    for (i = 0; i < view->npeers; i++) {
        if (view->peers[i].inst.env == env
            && ngx_strcmp(view->peers[i].inst.cluster, cl->name.data) == 0
            && ngx_tce_instance_weight(&view->peers[i].inst))
        {
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
        if (view->peers[i].inst.env == env
            && ngx_strcmp(view->peers[i].inst.cluster, cl->name.data) == 0
            && ngx_tce_instance_weight(&view->peers[i].inst))
        {
            w[g->nmembers] = ngx_tce_instance_weight(&view->peers[i].inst);
            g->members[g->nmembers++] = (uint32_t) i;
        }
    }

    if (ngx_tce_sched_build(&g->sched, w, (uint32_t) n) != 0) {
        return NGX_ERROR;
    }

    /* the schedule holds member positions: make them peer indices */
    for (i = 0; i < g->sched.len; i++) {
        g->sched.seq[i] = g->members[g->sched.seq[i]];
    }

    /* a rebuilt view goes on from where the old one was */

    ocl = old ? ngx_http_tce_upstream_view_cluster(old, &cl->name) : NULL;

    if (ocl && ocl->env[env].sched.len) {
        g->pos = ocl->env[env].pos % g->sched.len;
        g->scan = ocl->env[env].scan % n;

    } else {
        g->pos = (uint32_t) ((uint64_t) ngx_worker * g->sched.len
                             / ngx_http_tce_upstream_nworkers());
        g->scan = ngx_worker % n;
    }

    return NGX_OK;
}


/*
 * Workers spread their start evenly over the cycle (the first request of
 * every worker must not go to the same instance).
 */
static ngx_uint_t
ngx_http_tce_upstream_nworkers(void)
{
    ngx_core_conf_t  *ccf;

    ccf = (ngx_core_conf_t *) ngx_get_conf(ngx_cycle->conf_ctx,
                                           ngx_core_module);

    if (ccf == NULL || ccf->worker_processes < 1
        || ngx_worker >= (ngx_uint_t) ccf->worker_processes)
    {
        return ngx_worker + 1;
    }

    return ccf->worker_processes;
}


static void
ngx_http_tce_upstream_view_free(ngx_http_tce_upstream_view_t *view)
{
    ngx_uint_t  i, env;

    /* idle connections, TLS sessions still held here (worker exit) */
    ngx_http_tce_upstream_drop(view);

    ngx_http_tce_metrics_view_release(view);

    for (i = 0; i < view->nclusters; i++) {
        for (env = 0; env < NGX_TCE_NENVS; env++) {
            ngx_tce_sched_free(&view->clusters[i].env[env].sched);

            if (view->clusters[i].env[env].members) {
                ngx_free(view->clusters[i].env[env].members);
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
