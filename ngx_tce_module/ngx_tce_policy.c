/*
 * Canary policies in the shared zone, per service and cluster.
 *
 * A policy written here (admin API, state file) overrides the default
 * of nginx.conf (tce_canary) for one cluster.  Writers take the zone's
 * lock and bump the service's generation; workers copy the policy into
 * their read view when they rebuild it, so the request path reads it
 * from the view, without a lock.  Entries are never freed (a cleared
 * one is reused): clusters are few.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_tce.h"


struct ngx_tce_policy_s {
    ngx_tce_policy_t           *next;
    ngx_tce_canary_policy_t     canary;
    ngx_uint_t                  set;        /* 0: cleared */
    ngx_uint_t                  source;     /* NGX_TCE_POLICY_* */
    size_t                      cluster_len;
    u_char                      cluster[NGX_TCE_CLUSTER_LEN];
};


static ngx_tce_policy_t *ngx_tce_policy_find(ngx_tce_service_t *svc,
    ngx_str_t *cluster);


static ngx_tce_policy_t *
ngx_tce_policy_find(ngx_tce_service_t *svc, ngx_str_t *cluster)
{
    ngx_tce_policy_t  *p;

    for (p = svc->policies; p; p = p->next) {
        if (p->cluster_len == cluster->len
            && ngx_memcmp(p->cluster, cluster->data, cluster->len) == 0)
        {
            return p;
        }
    }

    return NULL;
}


ngx_int_t
ngx_tce_zone_policy_set(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_str_t *cluster, const ngx_tce_canary_policy_t *policy,
    ngx_uint_t source, ngx_log_t *log)
{
    ngx_tce_policy_t  *p;

    if (cluster->len >= NGX_TCE_CLUSTER_LEN) {
        return NGX_ERROR;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    p = ngx_tce_policy_find(svc, cluster);

    if (policy == NULL) {
        if (p == NULL || !p->set) {
            ngx_shmtx_unlock(&zone->shpool->mutex);
            return NGX_DECLINED;
        }

        p->set = 0;
        goto changed;
    }

    if (p && p->set
        && p->canary.weight == policy->weight
        && p->canary.epoch == policy->epoch
        && p->canary.fallback == policy->fallback)
    {
        /* the same policy, now said by this writer: no new generation */
        p->source = source;
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    if (p == NULL) {
        p = ngx_slab_calloc_locked(zone->shpool, sizeof(ngx_tce_policy_t));

        if (p == NULL) {
            ngx_shmtx_unlock(&zone->shpool->mutex);
            (void) ngx_atomic_fetch_add(&zone->sh->writes_refused, 1);

            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "tce zone \"%V\" is full: canary policy of "
                          "service \"%s\" cluster \"%V\" not stored",
                          &zone->shm_zone->shm.name, svc->name, cluster);
            return NGX_ERROR;
        }

        ngx_memcpy(p->cluster, cluster->data, cluster->len);
        p->cluster_len = cluster->len;
        p->next = svc->policies;
        svc->policies = p;
    }

    p->canary = *policy;
    p->set = 1;
    p->source = source;

changed:

    svc->updated = ngx_time();
    svc->generation++;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_log_error(NGX_LOG_INFO, log, 0,
                  "tce: canary policy of service \"%s\" cluster \"%V\": %s",
                  svc->name, cluster, policy ? "set" : "cleared");

    return NGX_OK;
}


ngx_uint_t
ngx_tce_policy_any(ngx_tce_service_t *svc)
{
    ngx_tce_policy_t  *p;

    for (p = svc->policies; p; p = p->next) {
        if (p->set) {
            return 1;
        }
    }

    return 0;
}


void
ngx_tce_policy_free_locked(ngx_tce_zone_t *zone, ngx_tce_service_t *svc)
{
    ngx_tce_policy_t  *p, *next;

    for (p = svc->policies; p; p = next) {
        next = p->next;
        ngx_slab_free_locked(zone->shpool, p);
    }

    svc->policies = NULL;
}


ngx_uint_t
ngx_tce_zone_policy_list(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_tce_policy_entry_t *out, ngx_uint_t max)
{
    ngx_uint_t         n;
    ngx_tce_policy_t  *p;

    if (svc->policies == NULL) {
        return 0;
    }

    n = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (p = svc->policies; p && n < max; p = p->next) {
        if (!p->set) {
            continue;
        }

        ngx_memcpy(out[n].cluster, p->cluster, p->cluster_len);
        out[n].cluster[p->cluster_len] = '\0';
        out[n].canary = p->canary;
        out[n].source = p->source;
        n++;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return n;
}


const char *
ngx_tce_policy_source_name(ngx_uint_t source)
{
    switch (source) {
    case NGX_TCE_POLICY_STATE:
        return "state";
    case NGX_TCE_POLICY_ADMIN:
        return "admin";
    case NGX_TCE_POLICY_FLEET:
        return "fleet";
    case NGX_TCE_POLICY_DEPLOY:
        return "deploy";
    default:
        return "nginx.conf";
    }
}


ngx_int_t
ngx_tce_zone_policy_get(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_str_t *cluster, ngx_tce_canary_policy_t *policy)
{
    ngx_int_t          rc;
    ngx_tce_policy_t  *p;

    /* most services never get one: no lock for them */
    if (svc->policies == NULL) {
        return NGX_DECLINED;
    }

    rc = NGX_DECLINED;

    ngx_shmtx_lock(&zone->shpool->mutex);

    p = ngx_tce_policy_find(svc, cluster);

    if (p && p->set) {
        *policy = p->canary;
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return rc;
}


ngx_int_t
ngx_tce_policy_apply_state(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    const ngx_tce_state_service_t *ss, ngx_log_t *log)
{
    size_t                          i;
    ngx_str_t                       name;
    ngx_uint_t                      keep;
    ngx_tce_policy_t               *p;
    ngx_tce_canary_policy_t         pol;
    const ngx_tce_state_cluster_t  *cl;

    /* clusters whose "canary" left the file go back to nginx.conf's */

    for (p = svc->policies; p; p = p->next) {
        keep = 0;

        for (i = 0; ss && i < ss->nclusters; i++) {
            if (ss->clusters[i].canary
                && ngx_strlen(ss->clusters[i].cluster) == p->cluster_len
                && ngx_memcmp(ss->clusters[i].cluster, p->cluster,
                              p->cluster_len) == 0)
            {
                keep = 1;
                break;
            }
        }

        if (!keep) {
            name.data = p->cluster;
            name.len = p->cluster_len;
            (void) ngx_tce_zone_policy_set(zone, svc, &name, NULL, 0, log);
        }
    }

    for (i = 0; ss && i < ss->nclusters; i++) {
        cl = &ss->clusters[i];

        /* checked when the file was loaded (ngx_tce_canary_check_state) */
        if (cl->canary == NULL
            || ngx_tce_canary_parse_json(cl->canary, &pol, NULL, 0) != 0)
        {
            continue;
        }

        name.data = (u_char *) cl->cluster;
        name.len = ngx_strlen(cl->cluster);

        if (ngx_tce_zone_policy_set(zone, svc, &name, &pol,
                                    NGX_TCE_POLICY_STATE, log)
            == NGX_ERROR)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_tce_policy_apply_fleet(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_str_t *cluster, const ngx_tce_canary_policy_t *policy, ngx_uint_t n,
    uint64_t rev, ngx_log_t *log)
{
    ngx_str_t          name;
    ngx_uint_t         i, keep;
    ngx_tce_policy_t  *p;

    for (p = svc->policies; p; p = p->next) {
        if (!p->set) {
            continue;
        }

        keep = 0;

        for (i = 0; i < n; i++) {
            if (cluster[i].len == p->cluster_len
                && ngx_memcmp(cluster[i].data, p->cluster, p->cluster_len)
                   == 0)
            {
                keep = 1;
                break;
            }
        }

        if (!keep) {
            name.data = p->cluster;
            name.len = p->cluster_len;
            (void) ngx_tce_zone_policy_set(zone, svc, &name, NULL, 0, log);
        }
    }

    for (i = 0; i < n; i++) {
        if (ngx_tce_zone_policy_set(zone, svc, &cluster[i], &policy[i],
                                    NGX_TCE_POLICY_FLEET, log)
            == NGX_ERROR)
        {
            return NGX_ERROR;
        }
    }

    ngx_shmtx_lock(&zone->shpool->mutex);
    svc->fleet_rev = rev;
    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_OK;
}


void
ngx_tce_policy_fleet_rev(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    uint64_t rev)
{
    ngx_shmtx_lock(&zone->shpool->mutex);

    if (rev > svc->fleet_rev) {
        svc->fleet_rev = rev;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}
