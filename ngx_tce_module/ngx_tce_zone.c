/*
 * The registry in the shared zone: services and their instance sets.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_tce.h"
#include "ngx_tce_sched_zone.h"
#include "ngx_tce_sched_ramp.h"


/*
 * Instance sets are stored in chunks of at most a page: this many
 * instances each (a whole page), the last one holding the rest; no
 * allocation of a set ever needs more than one page in a row, so every
 * free page the zone reports can take a part of a set.
 */
#define NGX_TCE_ZONE_CHUNK                                                    \
    (ngx_pagesize / sizeof(ngx_tce_instance_t))

/* buckets of the service index: one per this many bytes of zone */
#define NGX_TCE_ZONE_INDEX_RATIO  2048
#define NGX_TCE_ZONE_INDEX_MIN    64


static ngx_tce_service_t *ngx_tce_zone_find(ngx_tce_shctx_t *sh,
    u_char *name, size_t len, ngx_uint_t hash);
static ngx_int_t ngx_tce_zone_index_init_locked(ngx_tce_zone_t *zone);
static ngx_uint_t ngx_tce_instances_equal(const ngx_tce_instance_t *a,
    const ngx_tce_instance_t *b, ngx_uint_t n);
static ngx_tce_instance_t **ngx_tce_zone_chunks_alloc_locked(
    ngx_slab_pool_t *pool, const ngx_tce_instance_t *inst, ngx_uint_t n);
static void ngx_tce_zone_chunks_copy(ngx_tce_instance_t *dst,
    ngx_tce_instance_t **chunks, ngx_uint_t n);
static ngx_int_t ngx_tce_zone_store(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_tce_instance_t *sorted, ngx_uint_t n,
    ngx_uint_t source, ngx_tce_change_t *change, ngx_log_t *log);
static ngx_tce_instance_t *ngx_tce_zone_scratch(ngx_uint_t n,
    ngx_log_t *log);


/*
 * A copy of the set a change replaces, kept from one change to the
 * next: its pages stay mapped and warm (a fresh allocation of a large
 * set costs its page faults on the event loop every time).  Only the
 * process's event loop thread changes sets.
 */
static ngx_tce_instance_t  *ngx_tce_zone_cur;
static ngx_uint_t           ngx_tce_zone_cur_size;


static ngx_uint_t
ngx_tce_instances_equal(const ngx_tce_instance_t *a,
    const ngx_tce_instance_t *b, ngx_uint_t n)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        if (ngx_strcmp(a[i].id, b[i].id) != 0
            || ngx_strcmp(a[i].cluster, b[i].cluster) != 0
            || ngx_strcmp(a[i].version, b[i].version) != 0
            || ngx_strcmp(a[i].addr, b[i].addr) != 0
            || a[i].weight != b[i].weight
            || a[i].env != b[i].env
            || a[i].state != b[i].state
            || a[i].op_weight != b[i].op_weight
            || a[i].op_drain != b[i].op_drain
            || a[i].op_down != b[i].op_down
            || a[i].rm_since != b[i].rm_since
            || a[i].rm_deadline != b[i].rm_deadline)
        {
            return 0;
        }
    }

    return 1;
}


ngx_tce_service_t *
ngx_tce_zone_service(ngx_tce_zone_t *zone, u_char *name, size_t len,
    ngx_uint_t create)
{
    ngx_uint_t           hash;
    ngx_tce_service_t   *svc, **bucket;

    if (len >= NGX_TCE_SERVICE_LEN) {
        return NULL;
    }

    hash = ngx_crc32_short(name, len);

    svc = ngx_tce_zone_find(zone->sh, name, len, hash);

    if (svc != NULL || !create) {
        return svc;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    /* another writer may have added it meanwhile */
    svc = ngx_tce_zone_find(zone->sh, name, len, hash);

    if (svc != NULL) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return svc;
    }

    if (zone->sh->index == NULL
        && ngx_tce_zone_index_init_locked(zone) != NGX_OK)
    {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NULL;
    }

    svc = ngx_slab_calloc_locked(zone->shpool, sizeof(ngx_tce_service_t));

    if (svc != NULL) {
        ngx_memcpy(svc->name, name, len);
        svc->name_len = len;
        svc->updated = ngx_time();
        svc->generation = 1;
        svc->next = zone->sh->services;

        bucket = &zone->sh->index[hash & zone->sh->index_mask];
        svc->hnext = *bucket;

        /* readers walk the list and the buckets without the lock */
        ngx_memory_barrier();

        zone->sh->services = svc;
        *bucket = svc;
        zone->sh->nservices++;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return svc;
}


/* lock-free: entries are published whole and never unlinked */

static ngx_tce_service_t *
ngx_tce_zone_find(ngx_tce_shctx_t *sh, u_char *name, size_t len,
    ngx_uint_t hash)
{
    ngx_tce_service_t  *svc, **index;

    index = sh->index;

    if (index == NULL) {
        return NULL;
    }

    for (svc = index[hash & sh->index_mask]; svc; svc = svc->hnext) {
        if (svc->name_len == len && ngx_memcmp(svc->name, name, len) == 0) {
            return svc;
        }
    }

    return NULL;
}


/*
 * The index has about one bucket per 2 KiB of zone: more than the
 * services the zone can hold (each takes more than that with its
 * instances and series), so chains stay short and the table never
 * grows (a growth would relink entries under lock-free readers).
 */
static ngx_int_t
ngx_tce_zone_index_init_locked(ngx_tce_zone_t *zone)
{
    size_t               size;
    ngx_uint_t           n;
    ngx_tce_service_t  **index;

    size = zone->shm_zone->shm.size / NGX_TCE_ZONE_INDEX_RATIO;

    for (n = NGX_TCE_ZONE_INDEX_MIN; n < size; n <<= 1) {
        /* void */
    }

    index = ngx_slab_calloc_locked(zone->shpool,
                                   n * sizeof(ngx_tce_service_t *));
    if (index == NULL) {
        return NGX_ERROR;
    }

    zone->sh->index_mask = n - 1;

    ngx_memory_barrier();

    zone->sh->index = index;

    return NGX_OK;
}


ngx_int_t
ngx_tce_zone_set(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    const ngx_tce_instance_t *inst, ngx_uint_t n, ngx_uint_t source,
    ngx_log_t *log)
{
    return ngx_tce_zone_set_change(zone, svc, inst, n, source, NULL, log);
}


ngx_int_t
ngx_tce_zone_set_change(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    const ngx_tce_instance_t *inst, ngx_uint_t n, ngx_uint_t source,
    ngx_tce_change_t *change, ngx_log_t *log)
{
    size_t               size;
    ngx_int_t            rc;
    ngx_tce_instance_t  *sorted;

    size = n * sizeof(ngx_tce_instance_t);
    sorted = NULL;

    if (n) {
        sorted = ngx_alloc(size, log);
        if (sorted == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(sorted, inst, size);
        ngx_tce_instance_sort(sorted, n);
    }

    rc = ngx_tce_zone_set_sorted(zone, svc, sorted, n, source, change, log);

    if (sorted) {
        ngx_free(sorted);
    }

    return rc;
}


ngx_int_t
ngx_tce_zone_set_sorted(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_tce_instance_t *sorted, ngx_uint_t n, ngx_uint_t source,
    ngx_tce_change_t *change, ngx_log_t *log)
{
    ngx_int_t  rc;

    rc = ngx_tce_zone_store(zone, svc, sorted, n, source, change, log);

    if (ngx_posted_next_events.next == NULL
        || (ngx_process != NGX_PROCESS_WORKER
            && ngx_process != NGX_PROCESS_SINGLE))
    {
        /*
         * a process without an event loop (the master, at start and at
         * reloads) keeps no copy: a reload may unload the module, and
         * the pointer with it (a leak under memcheck)
         */
        ngx_tce_zone_scratch_free();
    }

    return rc;
}


void
ngx_tce_zone_scratch_free(void)
{
    if (ngx_tce_zone_cur != NULL) {
        ngx_free(ngx_tce_zone_cur);
        ngx_tce_zone_cur = NULL;
        ngx_tce_zone_cur_size = 0;
    }
}


static ngx_int_t
ngx_tce_zone_store(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_tce_instance_t *sorted, ngx_uint_t n, ngx_uint_t source,
    ngx_tce_change_t *change, ngx_log_t *log)
{
    ngx_uint_t            i, removals, nold, build, masked;
    ngx_time_t           *tp;
    ngx_atomic_uint_t     generation;
    ngx_tce_instance_t   *cur, **copy, **old;

    ngx_shmtx_lock(&zone->shpool->mutex);

    /*
     * the operator's overrides apply on top of discovery's sets; the
     * fleet's (tce_redis) on top of every set, the state file's too
     */
    if (source != NGX_TCE_SOURCE_STATE || zone->sh->fleet_overrides) {
        ngx_tce_override_merge_locked(svc, sorted, n);
    }

    /* the set stored now, in one piece (its chunks are pages) */
    cur = NULL;
    nold = svc->ninstances;

    if (nold) {
        cur = ngx_tce_zone_scratch(nold, log);
        if (cur == NULL) {
            ngx_shmtx_unlock(&zone->shpool->mutex);
            return NGX_ERROR;
        }

        ngx_tce_zone_chunks_copy(cur, svc->instances, nold);
    }

    if (nold == n && svc->source == source
        && (n == 0 || ngx_tce_instances_equal(cur, sorted, n)))
    {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    /* when each instance became routable, for slow_start */
    tp = ngx_timeofday();
    ngx_tce_ramp_stamp(cur, nold, sorted, n,
                       (uint64_t) tp->sec * 1000 + tp->msec);

    copy = NULL;

    if (n) {
        copy = ngx_tce_zone_chunks_alloc_locked(zone->shpool, sorted, n);

        if (copy == NULL) {
            ngx_shmtx_unlock(&zone->shpool->mutex);
            (void) ngx_atomic_fetch_add(&zone->sh->writes_refused, 1);

            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "tce zone \"%V\" is full: %ui instances of "
                          "service \"%s\" not stored",
                          &zone->shm_zone->shm.name, n, svc->name);
            return NGX_ERROR;
        }
    }

    removals = 0;

    for (i = 0; i < n; i++) {
        removals += (sorted[i].rm_deadline != 0);
    }

    old = svc->instances;

    /*
     * Readers copy the set under this same lock, so the old set can go
     * at once; requests in flight use their worker's own copy.
     */

    svc->instances = copy;
    svc->ninstances = n;
    svc->removals = removals;
    svc->source = source;
    svc->updated = ngx_time();
    generation = svc->generation++;

    build = ngx_tce_sched_zone_changed_locked(zone, svc, sorted, n, &masked);

    if (old) {
        ngx_tce_zone_chunks_free_locked(zone->shpool, old, nold);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (change) {
        (void) ngx_tce_change_diff(cur, nold, sorted, n, change);
        change->gen_before = generation;
        change->gen_after = generation + 1;
    }

    if (build || n == 0) {
        /* the new set's schedules, built once for every worker */
        ngx_tce_sched_zone_request(zone, svc, sorted, n, log);

    } else {
        ngx_log_debug2(NGX_LOG_DEBUG_CORE, log, 0,
                       "tce: schedules of \"%s\" kept for the new set, "
                       "masked members: %ui", svc->name, masked);
    }

    return NGX_OK;
}


static ngx_tce_instance_t *
ngx_tce_zone_scratch(ngx_uint_t n, ngx_log_t *log)
{
    ngx_uint_t           size;
    ngx_tce_instance_t  *p;

    if (n > ngx_tce_zone_cur_size) {
        size = ngx_max(n, ngx_tce_zone_cur_size * 2);

        p = ngx_alloc(size * sizeof(ngx_tce_instance_t), log);
        if (p == NULL) {
            return NULL;
        }

        if (ngx_tce_zone_cur) {
            ngx_free(ngx_tce_zone_cur);
        }

        ngx_tce_zone_cur = p;
        ngx_tce_zone_cur_size = size;
    }

    return ngx_tce_zone_cur;
}


ngx_tce_instance_t **
ngx_tce_zone_reserve(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    const ngx_tce_instance_t *inst, ngx_uint_t n, ngx_int_t *rc,
    ngx_log_t *log)
{
    size_t                size;
    ngx_uint_t            nold;
    ngx_tce_instance_t   *sorted, *cur, **res;

    *rc = NGX_OK;

    if (n == 0) {
        return NULL;
    }

    size = n * sizeof(ngx_tce_instance_t);

    sorted = ngx_alloc(size, log);
    if (sorted == NULL) {
        *rc = NGX_ERROR;
        return NULL;
    }

    ngx_memcpy(sorted, inst, size);
    ngx_tce_instance_sort(sorted, n);

    ngx_shmtx_lock(&zone->shpool->mutex);

    nold = svc->ninstances;
    res = NULL;

    if (nold == n && svc->source == NGX_TCE_SOURCE_STATE) {
        cur = ngx_alloc(size, log);
        if (cur == NULL) {
            ngx_shmtx_unlock(&zone->shpool->mutex);
            ngx_free(sorted);
            *rc = NGX_ERROR;
            return NULL;
        }

        ngx_tce_zone_chunks_copy(cur, svc->instances, n);

        if (ngx_tce_instances_equal(cur, sorted, n)) {
            ngx_shmtx_unlock(&zone->shpool->mutex);
            ngx_free(cur);
            ngx_free(sorted);
            return NULL;
        }

        ngx_free(cur);
    }

    res = ngx_tce_zone_chunks_alloc_locked(zone->shpool, sorted, n);

    ngx_shmtx_unlock(&zone->shpool->mutex);
    ngx_free(sorted);

    if (res == NULL) {
        (void) ngx_atomic_fetch_add(&zone->sh->writes_refused, 1);
        *rc = NGX_ERROR;

        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tce zone \"%V\" is full: %ui instances of "
                      "service \"%s\" not stored",
                      &zone->shm_zone->shm.name, n, svc->name);
    }

    return res;
}


void
ngx_tce_zone_unreserve(ngx_tce_zone_t *zone, ngx_tce_instance_t **res,
    ngx_uint_t n)
{
    if (res == NULL) {
        return;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);
    ngx_tce_zone_chunks_free_locked(zone->shpool, res, n);
    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/*
 * The chunks of a set of n instances, filled from inst; NULL (nothing
 * left allocated) when the zone has no room.
 */
static ngx_tce_instance_t **
ngx_tce_zone_chunks_alloc_locked(ngx_slab_pool_t *pool,
    const ngx_tce_instance_t *inst, ngx_uint_t n)
{
    ngx_uint_t            i, k, nchunks;
    ngx_tce_instance_t  **chunks;

    nchunks = (n + NGX_TCE_ZONE_CHUNK - 1) / NGX_TCE_ZONE_CHUNK;

    chunks = ngx_slab_calloc_locked(pool,
                                    nchunks * sizeof(ngx_tce_instance_t *));
    if (chunks == NULL) {
        return NULL;
    }

    for (i = 0; i < nchunks; i++) {
        k = ngx_min(NGX_TCE_ZONE_CHUNK, n - i * NGX_TCE_ZONE_CHUNK);

        chunks[i] = ngx_slab_alloc_locked(pool,
                                          k * sizeof(ngx_tce_instance_t));
        if (chunks[i] == NULL) {
            ngx_tce_zone_chunks_free_locked(pool, chunks,
                                            i * NGX_TCE_ZONE_CHUNK);
            return NULL;
        }

        ngx_memcpy(chunks[i], &inst[i * NGX_TCE_ZONE_CHUNK],
                   k * sizeof(ngx_tce_instance_t));
    }

    return chunks;
}


void
ngx_tce_zone_chunks_free_locked(ngx_slab_pool_t *pool,
    ngx_tce_instance_t **chunks, ngx_uint_t n)
{
    ngx_uint_t  i, nchunks;

    nchunks = (n + NGX_TCE_ZONE_CHUNK - 1) / NGX_TCE_ZONE_CHUNK;

    for (i = 0; i < nchunks; i++) {
        ngx_slab_free_locked(pool, chunks[i]);
    }

    ngx_slab_free_locked(pool, chunks);
}


static void
ngx_tce_zone_chunks_copy(ngx_tce_instance_t *dst, ngx_tce_instance_t **chunks,
    ngx_uint_t n)
{
    ngx_uint_t  i, k;

    for (i = 0; i * NGX_TCE_ZONE_CHUNK < n; i++) {
        k = ngx_min(NGX_TCE_ZONE_CHUNK, n - i * NGX_TCE_ZONE_CHUNK);
        ngx_memcpy(&dst[i * NGX_TCE_ZONE_CHUNK], chunks[i],
                   k * sizeof(ngx_tce_instance_t));
    }
}


ngx_int_t
ngx_tce_zone_copy(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_tce_instance_t **inst, ngx_uint_t *n, ngx_atomic_uint_t *generation,
    ngx_log_t *log)
{
    size_t               size;
    ngx_uint_t           tries;
    ngx_tce_instance_t  *copy;

    copy = NULL;

    for (tries = 0; tries < 8; tries++) {

        /* allocate outside the lock, for the size seen; check under it */
        size = svc->ninstances * sizeof(ngx_tce_instance_t);

        if (size) {
            copy = ngx_alloc(size, log);
            if (copy == NULL) {
                return NGX_ERROR;
            }
        }

        ngx_shmtx_lock(&zone->shpool->mutex);

        if (svc->ninstances * sizeof(ngx_tce_instance_t) == size) {
            if (size) {
                ngx_tce_zone_chunks_copy(copy, svc->instances,
                                         svc->ninstances);
            }

            *n = svc->ninstances;
            *generation = svc->generation;
            ngx_shmtx_unlock(&zone->shpool->mutex);

            *inst = copy;
            return NGX_OK;
        }

        ngx_shmtx_unlock(&zone->shpool->mutex);

        if (copy) {
            ngx_free(copy);
            copy = NULL;
        }
    }

    return NGX_ERROR;
}
