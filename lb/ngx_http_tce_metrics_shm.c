/*
 * The series of the request metrics in the tce zone (see
 * ngx_http_tce_metrics.h): created when a view is built, released when
 * it is freed, expired by a timer, copied by a scrape.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_metrics.h"


static ngx_http_tce_metrics_svc_t *ngx_http_tce_metrics_svc_locked(
    ngx_tce_zone_t *zone, ngx_http_tce_metrics_sh_t *sh, u_char *name,
    size_t len);
static ngx_http_tce_metrics_group_t *ngx_http_tce_metrics_group_locked(
    ngx_tce_zone_t *zone, ngx_http_tce_metrics_svc_t *svc, u_char *cluster,
    size_t len, ngx_uint_t env);
static ngx_http_tce_metrics_peer_t *ngx_http_tce_metrics_peer_locked(
    ngx_tce_zone_t *zone, ngx_http_tce_metrics_svc_t *svc,
    ngx_http_tce_upstream_peer_t *peer);
static uint32_t ngx_http_tce_metrics_peer_hash(u_char *cluster, size_t clen,
    ngx_uint_t env, u_char *id, size_t idlen);
static void ngx_http_tce_metrics_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_int_t ngx_http_tce_metrics_peer_cmp(
    ngx_http_tce_metrics_peer_t *a, ngx_http_tce_metrics_peer_t *b);
static void ngx_http_tce_metrics_unref(ngx_atomic_t *refs, time_t *unused);
static ngx_http_tce_metrics_group_t *ngx_http_tce_metrics_group_bind(
    ngx_tce_zone_t *zone, ngx_http_tce_metrics_svc_t *svc, u_char *cluster,
    size_t len, ngx_uint_t env, ngx_http_tce_metrics_cell_t **cell);
static ngx_http_tce_metrics_peer_t *ngx_http_tce_metrics_peer_bind(
    ngx_tce_zone_t *zone, ngx_http_tce_metrics_svc_t *svc,
    ngx_http_tce_upstream_peer_t *peer);
static ngx_int_t ngx_http_tce_metrics_copy_discovery(ngx_tce_zone_t *zone,
    ngx_array_t *a, ngx_pool_t *pool);
static ngx_int_t ngx_http_tce_metrics_copy_svc(ngx_tce_zone_t *zone,
    ngx_http_tce_metrics_sh_t *sh, ngx_http_tce_metrics_svc_t *svc,
    ngx_array_t *arrays, ngx_pool_t *pool, ngx_queue_t **next);
static void ngx_http_tce_metrics_registry(ngx_tce_zone_t *zone,
    ngx_http_tce_metrics_svc_t *svc, ngx_tce_prom_instance_t *in,
    ngx_uint_t n, ngx_log_t *log);
static int ngx_libc_cdecl ngx_http_tce_metrics_inst_cmp(const void *key,
    const void *elt);
static ngx_uint_t ngx_http_tce_metrics_unused(ngx_tce_group_counters_t *c);
static char *ngx_http_tce_metrics_pstr(ngx_pool_t *pool, u_char *s,
    size_t len);


ngx_http_tce_metrics_sh_t *
ngx_http_tce_metrics_init_zone(ngx_tce_zone_t *zone, ngx_log_t *log)
{
    u_char                     *advice;
    ngx_http_tce_metrics_sh_t  *sh;
    u_char                      buf[256];

    ngx_shmtx_lock(&zone->shpool->mutex);

    sh = zone->sh->metrics;

    if (sh == NULL) {
        sh = ngx_slab_calloc_locked(zone->shpool,
                                    sizeof(ngx_http_tce_metrics_sh_t));
        if (sh != NULL) {
            ngx_queue_init(&sh->services);
            ngx_queue_init(&sh->slots);
            zone->sh->metrics = sh;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (sh == NULL) {
        advice = ngx_tce_zone_advice(zone, buf, buf + sizeof(buf));

        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "tce metrics: zone \"%V\" is full%*s",
                      &zone->shm_zone->shm.name, advice - buf, buf);
    }

    return sh;
}


void
ngx_http_tce_metrics_view_bind(ngx_http_tce_upstream_srv_conf_t *ucf,
    ngx_http_tce_upstream_view_t *view, ngx_log_t *log)
{
    u_char                            *name;
    size_t                             len;
    ngx_uint_t                         i, env, missed;
    ngx_tce_zone_t                    *zone;
    ngx_http_tce_metrics_sh_t         *sh;
    ngx_http_tce_metrics_svc_t        *svc;
    ngx_http_tce_upstream_peer_t      *peer;
    ngx_http_tce_upstream_cluster_t   *cl;
    ngx_http_tce_metrics_main_conf_t  *mmcf;

    mmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_tce_metrics_module);

    if (mmcf == NULL || !mmcf->enabled || mmcf->sh == NULL) {
        return;
    }

    sh = mmcf->sh;
    zone = ucf->zone;
    missed = 0;
    view->mzone = zone;

    /* one hold of the mutex for the whole view: only lookups and slab */

    ngx_shmtx_lock(&zone->shpool->mutex);

    svc = ngx_http_tce_metrics_svc_locked(zone, sh, ucf->service_name.data,
                                          ucf->service_name.len);
    if (svc == NULL) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "tce metrics: zone \"%V\" is full, service \"%V\" "
                      "is not counted (see tce_metrics_dropped_total)",
                      &zone->shm_zone->shm.name, &ucf->service_name);
        return;
    }

    for (i = 0; i < view->nclusters; i++) {
        cl = &view->clusters[i];

        for (env = 0; env < NGX_TCE_NENVS; env++) {
            cl->env[env].metrics = ngx_http_tce_metrics_group_bind(zone,
                                      svc, cl->name.data, cl->name.len, env,
                                      &cl->env[env].mcell);
            missed += (cl->env[env].metrics == NULL);
        }
    }

    /* the labels of requests that find no group come from nginx.conf */

    if (ucf->cluster) {
        name = (u_char *) NGX_HTTP_TCE_METRICS_UNKNOWN;
        len = sizeof(NGX_HTTP_TCE_METRICS_UNKNOWN) - 1;

    } else {
        name = ucf->cluster_name.data;
        len = ucf->cluster_name.len;
    }

    view->metrics = ngx_http_tce_metrics_group_bind(zone, svc, name, len,
                                                    NGX_TCE_ENV_PROD,
                                                    &view->mcell);
    missed += (view->metrics == NULL);

    for (i = 0; i < view->npeers; i++) {
        peer = &view->peers[i];
        peer->metrics = ngx_http_tce_metrics_peer_bind(zone, svc, peer);
        missed += (peer->metrics == NULL);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (missed) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "tce metrics: zone \"%V\" is full, %ui series of "
                      "service \"%V\" not stored: their observations are "
                      "counted in tce_metrics_dropped_total",
                      &zone->shm_zone->shm.name, missed, &ucf->service_name);
    }
}


void
ngx_http_tce_metrics_view_release(ngx_http_tce_upstream_view_t *view)
{
    ngx_uint_t                        i, env;
    ngx_tce_zone_t                   *zone;
    ngx_http_tce_metrics_peer_t      *p;
    ngx_http_tce_metrics_group_t     *g;
    ngx_http_tce_upstream_group_t    *ug;

    /* not from ngx_cycle: at exit it is nginx's empty exit cycle */
    zone = view->mzone;

    if (zone == NULL) {
        return;                 /* never bound */
    }

    /* this worker's cells first (under the mutex), then the series */

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (i = 0; i < view->nclusters; i++) {
        for (env = 0; env < NGX_TCE_NENVS; env++) {
            ug = &view->clusters[i].env[env];

            if (ug->metrics) {
                ngx_http_tce_metrics_cell_release_locked(zone, ug->mcell);
            }
        }
    }

    if (view->metrics) {
        ngx_http_tce_metrics_cell_release_locked(zone, view->mcell);
    }

    for (i = 0; i < view->npeers; i++) {
        if (view->peers[i].metrics) {
            ngx_http_tce_metrics_cell_release_locked(zone,
                                                     view->peers[i].mcell);
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    for (i = 0; i < view->nclusters; i++) {
        for (env = 0; env < NGX_TCE_NENVS; env++) {
            g = view->clusters[i].env[env].metrics;

            if (g) {
                ngx_http_tce_metrics_unref(&g->refs, &g->unused);
                view->clusters[i].env[env].metrics = NULL;
                view->clusters[i].env[env].mcell = NULL;
            }
        }
    }

    if (view->metrics) {
        g = view->metrics;
        ngx_http_tce_metrics_unref(&g->refs, &g->unused);
        view->metrics = NULL;
        view->mcell = NULL;
    }

    for (i = 0; i < view->npeers; i++) {
        p = view->peers[i].metrics;

        if (p) {
            ngx_http_tce_metrics_unref(&p->refs, &p->unused);
            view->peers[i].metrics = NULL;
            view->peers[i].mcell = NULL;
        }
    }
}


/* a group's series with this worker's cell of it (under the mutex) */

static ngx_http_tce_metrics_group_t *
ngx_http_tce_metrics_group_bind(ngx_tce_zone_t *zone,
    ngx_http_tce_metrics_svc_t *svc, u_char *cluster, size_t len,
    ngx_uint_t env, ngx_http_tce_metrics_cell_t **cell)
{
    ngx_http_tce_metrics_group_t  *g;

    g = ngx_http_tce_metrics_group_locked(zone, svc, cluster, len, env);
    if (g == NULL) {
        return NULL;
    }

    *cell = ngx_http_tce_metrics_cell_locked(zone, zone->sh->metrics,
                                             &g->cells, &g->c.in_flight,
                                             &g->refs, &g->unused);
    if (*cell == NULL) {
        ngx_http_tce_metrics_unref(&g->refs, &g->unused);
        return NULL;
    }

    return g;
}


static ngx_http_tce_metrics_peer_t *
ngx_http_tce_metrics_peer_bind(ngx_tce_zone_t *zone,
    ngx_http_tce_metrics_svc_t *svc, ngx_http_tce_upstream_peer_t *peer)
{
    ngx_http_tce_metrics_peer_t  *p;

    p = ngx_http_tce_metrics_peer_locked(zone, svc, peer);
    if (p == NULL) {
        return NULL;
    }

    peer->mcell = ngx_http_tce_metrics_cell_locked(zone, zone->sh->metrics,
                                                   &p->cells,
                                                   &p->c.in_flight,
                                                   &p->refs, &p->unused);
    if (peer->mcell == NULL) {
        ngx_http_tce_metrics_unref(&p->refs, &p->unused);
        return NULL;
    }

    return p;
}


/*
 * The time is written before the reference goes: once refs is 0 the
 * series may be freed by another worker's timer at any moment.
 */
static void
ngx_http_tce_metrics_unref(ngx_atomic_t *refs, time_t *unused)
{
    *unused = ngx_time();
    ngx_memory_barrier();
    (void) ngx_atomic_fetch_add(refs, -1);
}


void
ngx_http_tce_metrics_expire(ngx_tce_zone_t *zone,
    ngx_http_tce_metrics_sh_t *sh, time_t expire, ngx_log_t *log)
{
    time_t                         now;
    ngx_uint_t                     n;
    ngx_queue_t                   *q, *sq, *next;
    ngx_http_tce_metrics_svc_t    *svc;
    ngx_http_tce_metrics_peer_t   *p;
    ngx_http_tce_metrics_group_t  *g;

    now = ngx_time();
    n = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (sq = ngx_queue_head(&sh->services);
         sq != ngx_queue_sentinel(&sh->services);
         sq = ngx_queue_next(sq))
    {
        svc = ngx_queue_data(sq, ngx_http_tce_metrics_svc_t, queue);

        for (q = ngx_queue_head(&svc->groups);
             q != ngx_queue_sentinel(&svc->groups);
             q = next)
        {
            next = ngx_queue_next(q);
            g = ngx_queue_data(q, ngx_http_tce_metrics_group_t, queue);

            /* refs only goes from 0 to 1 under this mutex */
            if (g->refs == 0 && now - g->unused >= expire) {
                ngx_queue_remove(q);
                ngx_slab_free_locked(zone->shpool, g);
                n++;
            }
        }

        for (q = ngx_queue_head(&svc->peers);
             q != ngx_queue_sentinel(&svc->peers);
             q = next)
        {
            next = ngx_queue_next(q);
            p = ngx_queue_data(q, ngx_http_tce_metrics_peer_t, queue);

            if (p->refs == 0 && now - p->unused >= expire) {
                ngx_queue_remove(q);
                ngx_rbtree_delete(&svc->tree, &p->node);
                ngx_slab_free_locked(zone->shpool, p);
                n++;
            }
        }
    }

    if (n) {
        (void) ngx_atomic_fetch_add(&sh->series, -(ngx_atomic_int_t) n);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (n) {
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "tce metrics: %ui series unused for %T s expired",
                      n, expire);
    }
}


ngx_http_tce_metrics_svc_t *
ngx_http_tce_metrics_svc_find_locked(ngx_http_tce_metrics_sh_t *sh,
    u_char *name, size_t len)
{
    ngx_queue_t                 *q;
    ngx_http_tce_metrics_svc_t  *svc;

    for (q = ngx_queue_head(&sh->services);
         q != ngx_queue_sentinel(&sh->services);
         q = ngx_queue_next(q))
    {
        svc = ngx_queue_data(q, ngx_http_tce_metrics_svc_t, queue);

        if (svc->name_len == len && ngx_memcmp(svc->name, name, len) == 0) {
            return svc;
        }
    }

    return NULL;
}


static ngx_http_tce_metrics_svc_t *
ngx_http_tce_metrics_svc_locked(ngx_tce_zone_t *zone,
    ngx_http_tce_metrics_sh_t *sh, u_char *name, size_t len)
{
    ngx_http_tce_metrics_svc_t  *svc;

    if (len >= NGX_TCE_SERVICE_LEN) {
        return NULL;
    }

    svc = ngx_http_tce_metrics_svc_find_locked(sh, name, len);
    if (svc) {
        return svc;
    }

    svc = ngx_slab_calloc_locked(zone->shpool,
                                 sizeof(ngx_http_tce_metrics_svc_t));
    if (svc == NULL) {
        return NULL;
    }

    ngx_memcpy(svc->name, name, len);
    svc->name_len = len;
    ngx_queue_init(&svc->groups);
    ngx_queue_init(&svc->peers);
    ngx_rbtree_init(&svc->tree, &svc->sentinel,
                    ngx_http_tce_metrics_rbtree_insert);

    ngx_queue_insert_tail(&sh->services, &svc->queue);

    return svc;
}


static ngx_http_tce_metrics_group_t *
ngx_http_tce_metrics_group_locked(ngx_tce_zone_t *zone,
    ngx_http_tce_metrics_svc_t *svc, u_char *cluster, size_t len,
    ngx_uint_t env)
{
    ngx_queue_t                   *q;
    ngx_http_tce_metrics_sh_t     *sh;
    ngx_http_tce_metrics_group_t  *g;

    if (len >= NGX_TCE_CLUSTER_LEN) {
        return NULL;
    }

    for (q = ngx_queue_head(&svc->groups);
         q != ngx_queue_sentinel(&svc->groups);
         q = ngx_queue_next(q))
    {
        g = ngx_queue_data(q, ngx_http_tce_metrics_group_t, queue);

        if (g->env == env && g->cluster_len == len
            && ngx_memcmp(g->cluster, cluster, len) == 0)
        {
            (void) ngx_atomic_fetch_add(&g->refs, 1);
            return g;
        }
    }

    g = ngx_slab_calloc_locked(zone->shpool,
                               sizeof(ngx_http_tce_metrics_group_t));
    if (g == NULL) {
        return NULL;
    }

    g->refs = 1;
    ngx_queue_init(&g->cells);
    g->env = env;
    g->cluster_len = len;
    ngx_memcpy(g->cluster, cluster, len);

    ngx_queue_insert_tail(&svc->groups, &g->queue);

    sh = zone->sh->metrics;
    (void) ngx_atomic_fetch_add(&sh->series, 1);

    return g;
}


ngx_http_tce_metrics_peer_t *
ngx_http_tce_metrics_peer_find_locked(ngx_http_tce_metrics_svc_t *svc,
    u_char *cluster, size_t clen, ngx_uint_t env, u_char *id, size_t idlen)
{
    uint32_t                       hash;
    ngx_int_t                      rc;
    ngx_rbtree_node_t             *node, *sentinel;
    ngx_http_tce_metrics_peer_t   *p, key;

    hash = ngx_http_tce_metrics_peer_hash(cluster, clen, env, id, idlen);

    /* a key on the stack: compared with the same function as nodes */
    key.env = env;
    key.cluster_len = clen;
    key.id_len = idlen;

    node = svc->tree.root;
    sentinel = svc->tree.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        p = (ngx_http_tce_metrics_peer_t *) node;

        rc = ngx_http_tce_metrics_peer_cmp(&key, p);

        if (rc == 0) {
            rc = ngx_memn2cmp(cluster, p->data, clen, p->cluster_len);
        }

        if (rc == 0) {
            rc = ngx_memn2cmp(id, p->data + p->cluster_len, idlen,
                              p->id_len);
        }

        if (rc == 0) {
            return p;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static ngx_http_tce_metrics_peer_t *
ngx_http_tce_metrics_peer_locked(ngx_tce_zone_t *zone,
    ngx_http_tce_metrics_svc_t *svc, ngx_http_tce_upstream_peer_t *peer)
{
    u_char                        *cluster;
    size_t                         clen;
    uint32_t                       hash;
    ngx_http_tce_metrics_sh_t     *sh;
    ngx_http_tce_metrics_peer_t   *p;

    cluster = (u_char *) peer->inst.cluster;
    clen = ngx_strlen(cluster);

    p = ngx_http_tce_metrics_peer_find_locked(svc, cluster, clen,
                                              peer->inst.env, peer->id.data,
                                              peer->id.len);
    if (p) {
        (void) ngx_atomic_fetch_add(&p->refs, 1);
        return p;
    }

    hash = ngx_http_tce_metrics_peer_hash(cluster, clen, peer->inst.env,
                                          peer->id.data, peer->id.len);

    p = ngx_slab_calloc_locked(zone->shpool,
                               offsetof(ngx_http_tce_metrics_peer_t, data)
                               + clen + peer->id.len);
    if (p == NULL) {
        return NULL;
    }

    p->node.key = hash;
    p->refs = 1;
    ngx_queue_init(&p->cells);
    p->env = peer->inst.env;
    p->cluster_len = clen;
    p->id_len = peer->id.len;
    ngx_memcpy(p->data, cluster, clen);
    ngx_memcpy(p->data + clen, peer->id.data, peer->id.len);

    ngx_rbtree_insert(&svc->tree, &p->node);
    ngx_queue_insert_tail(&svc->peers, &p->queue);

    sh = zone->sh->metrics;
    (void) ngx_atomic_fetch_add(&sh->series, 1);

    return p;
}


static uint32_t
ngx_http_tce_metrics_peer_hash(u_char *cluster, size_t clen, ngx_uint_t env,
    u_char *id, size_t idlen)
{
    u_char    e;
    uint32_t  crc;

    e = (u_char) env;

    ngx_crc32_init(crc);
    ngx_crc32_update(&crc, cluster, clen);
    ngx_crc32_update(&crc, &e, 1);
    ngx_crc32_update(&crc, id, idlen);
    ngx_crc32_final(crc);

    return crc;
}


/* the order within equal hashes: env, cluster length, id length */
static ngx_int_t
ngx_http_tce_metrics_peer_cmp(ngx_http_tce_metrics_peer_t *a,
    ngx_http_tce_metrics_peer_t *b)
{
    if (a->env != b->env) {
        return a->env < b->env ? -1 : 1;
    }

    return 0;
}


static void
ngx_http_tce_metrics_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_int_t                     rc;
    ngx_rbtree_node_t           **p;
    ngx_http_tce_metrics_peer_t  *a, *b;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            a = (ngx_http_tce_metrics_peer_t *) node;
            b = (ngx_http_tce_metrics_peer_t *) temp;

            rc = ngx_http_tce_metrics_peer_cmp(a, b);

            if (rc == 0) {
                rc = ngx_memn2cmp(a->data, b->data, a->cluster_len,
                                  b->cluster_len);
            }

            if (rc == 0) {
                rc = ngx_memn2cmp(a->data + a->cluster_len,
                                  b->data + b->cluster_len,
                                  a->id_len, b->id_len);
            }

            p = (rc < 0) ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/*
 * Discovery figures are the registry's own (ngx_tce_service_t, written
 * by the Consul watcher): read them from there, one service at a time.
 */
static ngx_int_t
ngx_http_tce_metrics_copy_discovery(ngx_tce_zone_t *zone, ngx_array_t *a,
    ngx_pool_t *pool)
{
    ngx_tce_service_t         *svc;
    ngx_tce_prom_discovery_t  *pd;

    for (svc = zone->sh->services; svc; svc = svc->next) {
        if (!svc->disc_watched) {
            continue;
        }

        pd = ngx_array_push(a);
        if (pd == NULL) {
            return NGX_ERROR;
        }

        pd->service = ngx_http_tce_metrics_pstr(pool, svc->name,
                                                svc->name_len);
        if (pd->service == NULL) {
            return NGX_ERROR;
        }

        ngx_shmtx_lock(&zone->shpool->mutex);

        pd->c.ok = svc->disc_syncs;
        pd->c.failures = svc->disc_errors;
        pd->c.empty = svc->disc_empty;
        pd->c.last_success = (uint64_t) svc->disc_success;
        pd->c.index = svc->disc_index;

        ngx_shmtx_unlock(&zone->shpool->mutex);
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_tce_metrics_snapshot(ngx_tce_zone_t *zone,
    ngx_http_tce_metrics_sh_t *sh, ngx_tce_prom_snapshot_t *s,
    ngx_pool_t *pool)
{
    ngx_queue_t                 *q;
    ngx_array_t                  arrays[3];
    ngx_http_tce_metrics_svc_t  *svc;

    if (ngx_array_init(&arrays[0], pool, 16, sizeof(ngx_tce_prom_group_t))
        != NGX_OK
        || ngx_array_init(&arrays[1], pool, 64,
                          sizeof(ngx_tce_prom_instance_t))
           != NGX_OK
        || ngx_array_init(&arrays[2], pool, 4,
                          sizeof(ngx_tce_prom_discovery_t))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* service by service, each under its own short hold of the mutex */

    ngx_shmtx_lock(&zone->shpool->mutex);
    q = ngx_queue_head(&sh->services);
    ngx_shmtx_unlock(&zone->shpool->mutex);

    while (q != ngx_queue_sentinel(&sh->services)) {
        svc = ngx_queue_data(q, ngx_http_tce_metrics_svc_t, queue);

        if (ngx_http_tce_metrics_copy_svc(zone, sh, svc, arrays, pool, &q)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_tce_metrics_copy_discovery(zone, &arrays[2], pool)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    s->groups = arrays[0].elts;
    s->ngroups = arrays[0].nelts;
    s->instances = arrays[1].elts;
    s->ninstances = arrays[1].nelts;
    s->discovery = arrays[2].elts;
    s->ndiscovery = arrays[2].nelts;

    ngx_shmtx_lock(&zone->shpool->mutex);
    s->zone_free = (uint64_t) zone->shpool->pfree * ngx_pagesize;
    ngx_shmtx_unlock(&zone->shpool->mutex);

    s->zone_size = zone->shm_zone->shm.size;
    s->zone_used = s->zone_size > s->zone_free
                   ? s->zone_size - s->zone_free : 0;
    s->dropped = sh->dropped;
    s->zone_services = zone->sh->nservices;
    s->services_skipped = zone->sh->services_skipped;
    s->services_reclaimed = zone->sh->services_reclaimed;
    s->writes_refused = zone->sh->writes_refused;
    s->start_time = (uint64_t) zone->sh->created;

    return NGX_OK;
}


/*
 * Copies one service's series; services are never freed, so *next (the
 * following service, read under the mutex) stays valid afterwards.
 */
static ngx_int_t
ngx_http_tce_metrics_copy_svc(ngx_tce_zone_t *zone,
    ngx_http_tce_metrics_sh_t *sh, ngx_http_tce_metrics_svc_t *svc,
    ngx_array_t *arrays, ngx_pool_t *pool, ngx_queue_t **next)
{
    char                          *name;
    ngx_uint_t                     first, ng, np;
    ngx_queue_t                   *q;
    ngx_tce_prom_group_t          *pg;
    ngx_tce_prom_instance_t       *pi;
    ngx_http_tce_metrics_peer_t   *p;
    ngx_http_tce_metrics_group_t  *g;

    name = ngx_http_tce_metrics_pstr(pool, svc->name, svc->name_len);
    if (name == NULL) {
        return NGX_ERROR;
    }

    first = arrays[1].nelts;

    ngx_shmtx_lock(&zone->shpool->mutex);

    ng = 0;
    np = 0;

    for (q = ngx_queue_head(&svc->groups);
         q != ngx_queue_sentinel(&svc->groups);
         q = ngx_queue_next(q))
    {
        ng++;
    }

    for (q = ngx_queue_head(&svc->peers);
         q != ngx_queue_sentinel(&svc->peers);
         q = ngx_queue_next(q))
    {
        np++;
    }

    pg = ng ? ngx_array_push_n(&arrays[0], ng) : NULL;
    pi = np ? ngx_array_push_n(&arrays[1], np) : NULL;

    if ((ng && pg == NULL) || (np && pi == NULL)) {
        goto failed;
    }

    for (q = ngx_queue_head(&svc->groups);
         q != ngx_queue_sentinel(&svc->groups);
         q = ngx_queue_next(q))
    {
        g = ngx_queue_data(q, ngx_http_tce_metrics_group_t, queue);

        /* a canary env nobody used yet: no series to show */
        if (g->env != NGX_TCE_ENV_PROD && g->c.in_flight == 0
            && ngx_http_tce_metrics_unused(&g->c))
        {
            arrays[0].nelts--;
            continue;
        }

        pg->service = name;
        pg->cluster = ngx_http_tce_metrics_pstr(pool, g->cluster,
                                                g->cluster_len);
        pg->env = ngx_tce_env_name(g->env);
        pg->c = g->c;

        if (pg->cluster == NULL) {
            goto failed;
        }

        pg++;
    }

    for (q = ngx_queue_head(&svc->peers);
         q != ngx_queue_sentinel(&svc->peers);
         q = ngx_queue_next(q))
    {
        p = ngx_queue_data(q, ngx_http_tce_metrics_peer_t, queue);

        pi->service = name;
        pi->cluster = ngx_http_tce_metrics_pstr(pool, p->data,
                                                p->cluster_len);
        pi->instance = ngx_http_tce_metrics_pstr(pool,
                                                 p->data + p->cluster_len,
                                                 p->id_len);
        pi->env = ngx_tce_env_name(p->env);
        pi->state = NGX_TCE_PROM_DEPARTED;
        pi->weight = 0;
        pi->c = p->c;

        if (pi->cluster == NULL || pi->instance == NULL) {
            goto failed;
        }

        pi++;
    }

    *next = ngx_queue_next(&svc->queue);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_http_tce_metrics_registry(zone, svc,
                                  (ngx_tce_prom_instance_t *) arrays[1].elts
                                  + first, np, pool->log);

    return NGX_OK;

failed:

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_ERROR;
}


/* state and weight of the instances the registry lists now */
static void
ngx_http_tce_metrics_registry(ngx_tce_zone_t *zone,
    ngx_http_tce_metrics_svc_t *svc, ngx_tce_prom_instance_t *in,
    ngx_uint_t n, ngx_log_t *log)
{
    ngx_uint_t            i, ninst;
    ngx_atomic_uint_t     generation;
    ngx_tce_service_t    *rs;
    ngx_tce_instance_t   *inst, *found;

    if (n == 0) {
        return;
    }

    rs = ngx_tce_zone_service(zone, svc->name, svc->name_len, 0);

    if (rs == NULL
        || ngx_tce_zone_copy(zone, rs, &inst, &ninst, &generation, log)
           != NGX_OK)
    {
        return;
    }

    for (i = 0; i < n; i++) {
        /* the registry's set is sorted by id */
        found = ninst ? bsearch(in[i].instance, inst, ninst,
                                sizeof(ngx_tce_instance_t),
                                ngx_http_tce_metrics_inst_cmp)
                      : NULL;

        if (found
            && ngx_strcmp(found->cluster, in[i].cluster) == 0
            && ngx_strcmp(ngx_tce_env_name(found->env), in[i].env) == 0)
        {
            in[i].state = (int) ngx_tce_instance_state(found);
            in[i].weight = ngx_tce_instance_weight(found);
        }
    }

    if (inst) {
        ngx_free(inst);
    }
}


static int ngx_libc_cdecl
ngx_http_tce_metrics_inst_cmp(const void *key, const void *elt)
{
    return ngx_strcmp((const char *) key,
                      ((const ngx_tce_instance_t *) elt)->id);
}


static char *
ngx_http_tce_metrics_pstr(ngx_pool_t *pool, u_char *s, size_t len)
{
    u_char  *p;

    p = ngx_pnalloc(pool, len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, s, len);
    p[len] = '\0';

    return (char *) p;
}


static ngx_uint_t
ngx_http_tce_metrics_unused(ngx_tce_group_counters_t *c)
{
    ngx_uint_t  i, j;

    for (i = 0; i < NGX_TCE_PROM_NCLASSES; i++) {
        for (j = 0; j < NGX_TCE_PROM_NSOURCES; j++) {
            if (c->requests[i][j]) {
                return 0;
            }
        }
    }

    return 1;
}


ngx_int_t
ngx_http_tce_metrics_in_flight(ngx_tce_zone_t *zone, ngx_str_t *service,
    ngx_tce_instance_t *inst, int64_t *n)
{
    size_t                             clen, idlen;
    uint32_t                           hash;
    ngx_int_t                          rc;
    ngx_queue_t                       *q;
    ngx_rbtree_node_t                 *node, *sentinel;
    ngx_http_tce_metrics_sh_t         *sh;
    ngx_http_tce_metrics_svc_t        *svc;
    ngx_http_tce_metrics_peer_t       *p, key;
    ngx_http_tce_metrics_main_conf_t  *mmcf;

    mmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_tce_metrics_module);

    if (mmcf == NULL || !mmcf->enabled || mmcf->sh == NULL) {
        return NGX_DECLINED;
    }

    sh = mmcf->sh;
    clen = ngx_strlen(inst->cluster);
    idlen = ngx_strlen(inst->id);

    hash = ngx_http_tce_metrics_peer_hash((u_char *) inst->cluster, clen,
                                          inst->env, (u_char *) inst->id,
                                          idlen);
    key.env = inst->env;

    ngx_shmtx_lock(&zone->shpool->mutex);

    svc = NULL;

    for (q = ngx_queue_head(&sh->services);
         q != ngx_queue_sentinel(&sh->services);
         q = ngx_queue_next(q))
    {
        svc = ngx_queue_data(q, ngx_http_tce_metrics_svc_t, queue);

        if (svc->name_len == service->len
            && ngx_memcmp(svc->name, service->data, service->len) == 0)
        {
            break;
        }

        svc = NULL;
    }

    node = svc ? svc->tree.root : NULL;
    sentinel = svc ? svc->tree.sentinel : NULL;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        p = (ngx_http_tce_metrics_peer_t *) node;

        rc = ngx_http_tce_metrics_peer_cmp(&key, p);

        if (rc == 0) {
            rc = ngx_memn2cmp((u_char *) inst->cluster, p->data, clen,
                              p->cluster_len);
        }

        if (rc == 0) {
            rc = ngx_memn2cmp((u_char *) inst->id, p->data + p->cluster_len,
                              idlen, p->id_len);
        }

        if (rc == 0) {
            *n = (int64_t) p->c.in_flight;
            ngx_shmtx_unlock(&zone->shpool->mutex);
            return NGX_OK;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_DECLINED;
}
