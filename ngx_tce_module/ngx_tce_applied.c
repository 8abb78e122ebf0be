/*
 * The generation each worker has applied per service: what its current
 * view of the service was built from.  A worker rebuilds a view at its
 * next request after a change, and on the metrics timer (a second or
 * so) when it has none, so a caller that reads these after a change
 * can tell when every worker routes by it (admin API v1/status).
 *
 * The slots of a service live in the zone, allocated at the first
 * record (one per worker of the running configuration), grown when a
 * reload adds workers.  Writers and readers take the zone's lock; a
 * record happens only when a view is rebuilt.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_tce.h"


struct ngx_tce_applied_s {
    ngx_uint_t                  nslots;
    ngx_tce_applied_slot_t      slot[1];
};


void
ngx_tce_zone_applied(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_atomic_uint_t generation)
{
    ngx_uint_t          n;
    ngx_core_conf_t    *ccf;
    ngx_tce_applied_t  *a, *old;

    if ((ngx_process != NGX_PROCESS_WORKER
         && ngx_process != NGX_PROCESS_SINGLE)
        || ngx_exiting || ngx_quit || ngx_terminate)
    {
        return;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    a = svc->applied;

    if (a == NULL || ngx_worker >= a->nslots) {
        ccf = (ngx_core_conf_t *) ngx_get_conf(ngx_cycle->conf_ctx,
                                               ngx_core_module);

        n = ngx_max((ngx_uint_t) ccf->worker_processes, ngx_worker + 1);

        a = ngx_slab_calloc_locked(zone->shpool,
                                   sizeof(ngx_tce_applied_t)
                                   + (n - 1) * sizeof(ngx_tce_applied_slot_t));
        if (a == NULL) {
            ngx_shmtx_unlock(&zone->shpool->mutex);
            return;
        }

        a->nslots = n;
        old = svc->applied;

        if (old) {
            ngx_memcpy(a->slot, old->slot,
                       old->nslots * sizeof(ngx_tce_applied_slot_t));
            ngx_slab_free_locked(zone->shpool, old);
        }

        svc->applied = a;
    }

    a->slot[ngx_worker].pid = ngx_pid;
    a->slot[ngx_worker].generation = generation;

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


ngx_uint_t
ngx_tce_zone_applied_copy(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_tce_applied_slot_t *out, ngx_uint_t max)
{
    ngx_uint_t          n;
    ngx_tce_applied_t  *a;

    n = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    a = svc->applied;

    if (a) {
        n = ngx_min(a->nslots, max);
        ngx_memcpy(out, a->slot, n * sizeof(ngx_tce_applied_slot_t));
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return n;
}
