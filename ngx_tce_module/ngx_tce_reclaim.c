/*
 * Reclaim of registry services (catalog mode): a service no longer
 * watched nor named by the configuration, empty and held by nobody is
 * unlinked from the zone's list and index, then freed once it is sure
 * no process still walks past it.
 *
 * Readers look services up and walk the list without the lock, so an
 * entry cannot be freed when it is unlinked: a worker may be standing
 * on it.  The scheme is quiescent-state reclaim: a reader never keeps a
 * pointer found that way beyond the event handler it runs in (one kept
 * longer takes a hold, ngx_tce_zone_hold(), and a held service is never
 * unlinked).  Every worker runs the Consul election tick; at each tick
 * it records, in a slot of its own, the reclaim epoch it saw.  An
 * unlinked service carries the epoch of its unlink (the epoch then
 * moves on); it is freed once every live worker's slot shows that
 * epoch or a later one, i.e. each of them has come back to its event
 * loop since, and at least NGX_TCE_RECLAIM_GRACE seconds have passed
 * (the master walks the list when it applies a reload, for far less).
 * A worker whose schedule builds are in flight (they hold a service)
 * records nothing until they are done; an exiting worker stops ticking
 * and holds reclaim back until it has gone.
 *
 * Only the watcher unlinks and frees, under the zone's lock.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_tce.h"
#include "ngx_tce_sched_zone.h"


#define NGX_TCE_RECLAIM_SLOTS   64
#define NGX_TCE_RECLAIM_GRACE   2       /* seconds, at least */


typedef struct {
    ngx_pid_t                   pid;         /* 0: free */
    ngx_atomic_uint_t           epoch;
} ngx_tce_reclaim_slot_t;


/* a process's holds on one service, so that a dead one's are undone */
typedef struct ngx_tce_reclaim_hold_s  ngx_tce_reclaim_hold_t;

struct ngx_tce_reclaim_hold_s {
    ngx_tce_reclaim_hold_t     *next;
    ngx_pid_t                   pid;
    ngx_tce_service_t          *svc;
    ngx_uint_t                  count;
};


typedef struct {
    ngx_atomic_uint_t           epoch;       /* fits svc->retired */
    ngx_tce_reclaim_hold_t     *holders;     /* by process and service */
    ngx_tce_service_t          *limbo;       /* unlinked, not freed yet */
    ngx_uint_t                  full;        /* a worker found no slot */
    ngx_tce_reclaim_slot_t      slot[NGX_TCE_RECLAIM_SLOTS];
} ngx_tce_reclaim_sh_t;


static ngx_tce_reclaim_sh_t *ngx_tce_reclaim_sh(ngx_tce_zone_t *zone);
static void ngx_tce_reclaim_record(ngx_tce_zone_t *zone,
    ngx_tce_reclaim_sh_t *rs);
static ngx_uint_t ngx_tce_reclaim_candidate(ngx_tce_service_t *svc);
static void ngx_tce_reclaim_unlink_locked(ngx_tce_zone_t *zone,
    ngx_tce_reclaim_sh_t *rs, ngx_tce_service_t *svc);
static void ngx_tce_reclaim_free_locked(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc);
static ngx_uint_t ngx_tce_reclaim_alive(ngx_pid_t pid);
static void ngx_tce_reclaim_dead_holds_locked(ngx_tce_zone_t *zone,
    ngx_tce_reclaim_sh_t *rs, ngx_log_t *log);


/*
 * A hold is counted in the service and, per process, in a record of the
 * reclaim state: the watcher's tick gives back the holds of a process
 * that died without releasing them (SIGKILL, a crash).  A hold whose
 * record could not be allocated is counted in the service only.
 */
ngx_int_t
ngx_tce_zone_hold(ngx_tce_zone_t *zone, ngx_tce_service_t *svc)
{
    ngx_int_t                rc;
    ngx_tce_reclaim_sh_t    *rs;
    ngx_tce_reclaim_hold_t  *h;

    rs = ngx_tce_reclaim_sh(zone);

    /* under the lock: the watcher unlinks only what no one holds */
    ngx_shmtx_lock(&zone->shpool->mutex);

    if (svc->retired) {
        rc = NGX_DECLINED;

    } else {
        (void) ngx_atomic_fetch_add(&svc->holds, 1);
        rc = NGX_OK;

        for (h = rs ? rs->holders : NULL; h; h = h->next) {
            if (h->pid == ngx_pid && h->svc == svc) {
                h->count++;
                break;
            }
        }

        if (h == NULL && rs) {
            h = ngx_slab_alloc_locked(zone->shpool,
                                      sizeof(ngx_tce_reclaim_hold_t));
            if (h) {
                h->pid = ngx_pid;
                h->svc = svc;
                h->count = 1;
                h->next = rs->holders;
                rs->holders = h;
            }
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return rc;
}


void
ngx_tce_zone_release(ngx_tce_zone_t *zone, ngx_tce_service_t *svc)
{
    ngx_tce_reclaim_sh_t     *rs;
    ngx_tce_reclaim_hold_t  **link, *h;

    rs = zone->sh->reclaim;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (link = rs ? &rs->holders : NULL; link && *link;
         link = &(*link)->next)
    {
        h = *link;

        if (h->pid == ngx_pid && h->svc == svc) {
            if (--h->count == 0) {
                *link = h->next;
                ngx_slab_free_locked(zone->shpool, h);
            }

            break;
        }
    }

    (void) ngx_atomic_fetch_add(&svc->holds, (ngx_atomic_int_t) -1);

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/* the holds of processes gone without releasing them: given back */

static void
ngx_tce_reclaim_dead_holds_locked(ngx_tce_zone_t *zone,
    ngx_tce_reclaim_sh_t *rs, ngx_log_t *log)
{
    ngx_tce_reclaim_hold_t  **link, *h;

    link = &rs->holders;

    while (*link) {
        h = *link;

        if (h->pid == ngx_pid || ngx_tce_reclaim_alive(h->pid)) {
            link = &h->next;
            continue;
        }

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "tce zone \"%V\": %ui hold(s) of service \"%s\" by "
                      "process %P, gone, given back",
                      &zone->shm_zone->shm.name, h->count, h->svc->name,
                      h->pid);

        (void) ngx_atomic_fetch_add(&h->svc->holds,
                                    - (ngx_atomic_int_t) h->count);
        *link = h->next;
        ngx_slab_free_locked(zone->shpool, h);
    }
}


void
ngx_tce_zone_pin(ngx_tce_service_t *svc)
{
    svc->pinned = 1;
}


void
ngx_tce_reclaim_tick(ngx_tce_zone_t *zone, ngx_uint_t owner, ngx_log_t *log)
{
    ngx_uint_t               i, n;
    ngx_atomic_uint_t        min;
    ngx_tce_service_t       *svc, **link;
    ngx_tce_reclaim_sh_t    *rs;
    ngx_tce_reclaim_slot_t  *sl;

    rs = ngx_tce_reclaim_sh(zone);

    if (rs == NULL) {
        return;
    }

    /* a build in flight holds a service: not quiescent yet */
    if (!ngx_tce_sched_zone_pending()) {
        ngx_tce_reclaim_record(zone, rs);
    }

    if (!owner) {
        return;
    }

    /* holds of dead processes first: their services may go now */

    if (rs->holders) {
        ngx_shmtx_lock(&zone->shpool->mutex);
        ngx_tce_reclaim_dead_holds_locked(zone, rs, log);
        ngx_shmtx_unlock(&zone->shpool->mutex);
    }

    /* candidates: checked without the lock first, most services are not */

    for (svc = zone->sh->services; svc; svc = svc->next) {
        if (!ngx_tce_reclaim_candidate(svc)) {
            continue;
        }

        ngx_shmtx_lock(&zone->shpool->mutex);

        if (ngx_tce_reclaim_candidate(svc)) {
            ngx_tce_reclaim_unlink_locked(zone, rs, svc);
        }

        ngx_shmtx_unlock(&zone->shpool->mutex);
    }

    if (rs->limbo == NULL || rs->full) {
        return;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    min = rs->epoch;

    for (i = 0; i < NGX_TCE_RECLAIM_SLOTS; i++) {
        sl = &rs->slot[i];

        if (sl->pid == 0) {
            continue;
        }

        if (!ngx_tce_reclaim_alive(sl->pid)) {
            sl->pid = 0;
            continue;
        }

        if (sl->epoch < min) {
            min = sl->epoch;
        }
    }

    n = 0;
    link = &rs->limbo;

    while (*link) {
        svc = *link;

        /* every live worker recorded an epoch after its unlink */
        if (min <= svc->retired
            || ngx_time() - svc->updated < NGX_TCE_RECLAIM_GRACE)
        {
            link = &svc->lnext;
            continue;
        }

        *link = svc->lnext;
        ngx_tce_reclaim_free_locked(zone, svc);
        n++;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (n) {
        (void) ngx_atomic_fetch_add(&zone->sh->services_reclaimed, n);

        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "tce zone \"%V\": %ui service(s) reclaimed",
                      &zone->shm_zone->shm.name, n);
    }
}


ngx_uint_t
ngx_tce_reclaim_evict(ngx_tce_zone_t *zone, ngx_log_t *log)
{
    ngx_uint_t          n;
    ngx_tce_service_t  *svc;

    n = 0;

    for (svc = zone->sh->services; svc; svc = svc->next) {
        if (svc->pinned || svc->disc_watched || svc->retired
            || svc->holds || svc->ninstances == 0 || svc->removals
            || svc->noverrides || svc->source != NGX_TCE_SOURCE_CONSUL)
        {
            continue;
        }

        if (ngx_tce_zone_set(zone, svc, NULL, 0, NGX_TCE_SOURCE_CONSUL, log)
            == NGX_OK)
        {
            n++;
        }
    }

    if (n) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "tce zone \"%V\" is full: %ui service(s) that left "
                      "the catalog, unused by every worker, emptied to "
                      "make room", &zone->shm_zone->shm.name, n);
    }

    return n;
}


void
ngx_tce_reclaim_exit(ngx_tce_zone_t *zone)
{
    ngx_uint_t             i;
    ngx_tce_reclaim_sh_t  *rs;

    rs = zone->sh->reclaim;

    if (rs == NULL) {
        return;
    }

    for (i = 0; i < NGX_TCE_RECLAIM_SLOTS; i++) {
        if (rs->slot[i].pid == ngx_pid) {
            rs->slot[i].pid = 0;
        }
    }
}


static ngx_tce_reclaim_sh_t *
ngx_tce_reclaim_sh(ngx_tce_zone_t *zone)
{
    ngx_tce_reclaim_sh_t  *rs;

    rs = zone->sh->reclaim;

    if (rs) {
        return rs;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    rs = zone->sh->reclaim;

    if (rs == NULL) {
        rs = ngx_slab_calloc_locked(zone->shpool,
                                    sizeof(ngx_tce_reclaim_sh_t));
        if (rs) {
            rs->epoch = 1;
            ngx_memory_barrier();
            zone->sh->reclaim = rs;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return rs;
}


/* this worker is back on its event loop: no pointer kept from before */

static void
ngx_tce_reclaim_record(ngx_tce_zone_t *zone, ngx_tce_reclaim_sh_t *rs)
{
    ngx_uint_t               i;
    ngx_tce_reclaim_slot_t  *sl, *free;

    free = NULL;

    for (i = 0; i < NGX_TCE_RECLAIM_SLOTS; i++) {
        if (rs->slot[i].pid == ngx_pid) {
            rs->slot[i].epoch = rs->epoch;
            return;
        }
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (i = 0; i < NGX_TCE_RECLAIM_SLOTS; i++) {
        sl = &rs->slot[i];

        if (sl->pid == 0 || !ngx_tce_reclaim_alive(sl->pid)) {
            free = sl;
            break;
        }
    }

    if (free) {
        free->epoch = rs->epoch;
        free->pid = ngx_pid;

    } else {
        /* more workers than slots: nothing can be proven safe to free */
        rs->full = 1;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


static ngx_uint_t
ngx_tce_reclaim_candidate(ngx_tce_service_t *svc)
{
    if (svc->pinned || svc->disc_watched || svc->retired || svc->holds
        || svc->ninstances || svc->removals || svc->noverrides
        || svc->source == NGX_TCE_SOURCE_STATE
        || svc->sched_state == NGX_TCE_SCHED_BUILDING)
    {
        return 0;
    }

    return !ngx_tce_policy_any(svc);
}


/*
 * Out of the list and its index bucket.  Its own next and hnext stay:
 * a reader standing on it goes on to the entries after it.
 */
static void
ngx_tce_reclaim_unlink_locked(ngx_tce_zone_t *zone, ngx_tce_reclaim_sh_t *rs,
    ngx_tce_service_t *svc)
{
    ngx_uint_t           masked;
    ngx_tce_service_t  **link;

    for (link = &zone->sh->services; *link; link = &(*link)->next) {
        if (*link == svc) {
            *link = svc->next;
            break;
        }
    }

    link = &zone->sh->index[ngx_crc32_short(svc->name, svc->name_len)
                            & zone->sh->index_mask];

    for ( /* void */ ; *link; link = &(*link)->hnext) {
        if (*link == svc) {
            *link = svc->hnext;
            break;
        }
    }

    zone->sh->nservices--;

    (void) ngx_tce_sched_zone_changed_locked(zone, svc, NULL, 0, &masked);

    /* readers that come back to their loop after this see a later one */
    svc->retired = (uint32_t) rs->epoch++;
    svc->updated = ngx_time();
    svc->lnext = rs->limbo;
    rs->limbo = svc;
}


static void
ngx_tce_reclaim_free_locked(ngx_tce_zone_t *zone, ngx_tce_service_t *svc)
{
    ngx_tce_policy_free_locked(zone, svc);

    if (svc->instances) {
        ngx_tce_zone_chunks_free_locked(zone->shpool, svc->instances,
                                        svc->ninstances);
    }

    if (svc->overrides) {
        ngx_slab_free_locked(zone->shpool, svc->overrides);
    }

    if (svc->applied) {
        ngx_slab_free_locked(zone->shpool, svc->applied);
    }

    ngx_slab_free_locked(zone->shpool, svc);
}


static ngx_uint_t
ngx_tce_reclaim_alive(ngx_pid_t pid)
{
    return !(kill(pid, 0) == -1 && ngx_errno == NGX_ESRCH);
}
