/*
 * What each worker holds in the metrics series: per process and
 * series, a cell in the zone counting the process's attempts in flight
 * and its references, so that what a worker that died abnormally held
 * (SIGKILL, a crash: no cleanup ran) can be taken back out of the
 * series.  See ngx_http_tce_metrics.h.
 *
 * The cells of a process hang off its slot record (the master's process
 * slot and the pid); the cells of a series hang off the series.  A new
 * worker reclaims the records of its slot left by another pid (the
 * master gives a slot again only once its process has exited), and
 * every worker's timer reclaims those whose pid is gone.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_metrics.h"


static ngx_http_tce_metrics_slot_t *ngx_http_tce_metrics_slot_locked(
    ngx_tce_zone_t *zone, ngx_http_tce_metrics_sh_t *sh);
static ngx_uint_t ngx_http_tce_metrics_slot_free_locked(
    ngx_tce_zone_t *zone, ngx_http_tce_metrics_slot_t *slot,
    ngx_atomic_int_t *in_flight);


/* this process's slot record, for this cycle (found or made lazily) */
static ngx_http_tce_metrics_slot_t *
ngx_http_tce_metrics_slot_locked(ngx_tce_zone_t *zone,
    ngx_http_tce_metrics_sh_t *sh)
{
    ngx_queue_t                  *q;
    ngx_http_tce_metrics_slot_t  *slot;

    for (q = ngx_queue_head(&sh->slots);
         q != ngx_queue_sentinel(&sh->slots);
         q = ngx_queue_next(q))
    {
        slot = ngx_queue_data(q, ngx_http_tce_metrics_slot_t, queue);

        if (slot->pid == ngx_pid) {
            return slot;
        }
    }

    slot = ngx_slab_calloc_locked(zone->shpool,
                                  sizeof(ngx_http_tce_metrics_slot_t));
    if (slot == NULL) {
        return NULL;
    }

    slot->pid = ngx_pid;
    slot->slot = ngx_process_slot;
    ngx_queue_init(&slot->cells);
    ngx_queue_insert_tail(&sh->slots, &slot->queue);

    return slot;
}


ngx_http_tce_metrics_cell_t *
ngx_http_tce_metrics_cell_locked(ngx_tce_zone_t *zone,
    ngx_http_tce_metrics_sh_t *sh, ngx_queue_t *cells, uint64_t *in_flight,
    ngx_atomic_t *refs, time_t *unused)
{
    ngx_queue_t                  *q;
    ngx_http_tce_metrics_cell_t  *cell;
    ngx_http_tce_metrics_slot_t  *slot;

    for (q = ngx_queue_head(cells);
         q != ngx_queue_sentinel(cells);
         q = ngx_queue_next(q))
    {
        cell = ngx_queue_data(q, ngx_http_tce_metrics_cell_t, series);

        if (cell->pid == ngx_pid) {
            cell->refs++;
            return cell;
        }
    }

    slot = ngx_http_tce_metrics_slot_locked(zone, sh);
    if (slot == NULL) {
        return NULL;
    }

    cell = ngx_slab_calloc_locked(zone->shpool,
                                  sizeof(ngx_http_tce_metrics_cell_t));
    if (cell == NULL) {
        return NULL;
    }

    cell->pid = ngx_pid;
    cell->refs = 1;
    cell->total = in_flight;
    cell->series_refs = refs;
    cell->unused = unused;

    ngx_queue_insert_tail(cells, &cell->series);
    ngx_queue_insert_tail(&slot->cells, &cell->slot);

    return cell;
}


void
ngx_http_tce_metrics_cell_release_locked(ngx_tce_zone_t *zone,
    ngx_http_tce_metrics_cell_t *cell)
{
    if (--cell->refs) {
        return;
    }

    /* no view of this process refers to the series: nothing in flight */

    ngx_queue_remove(&cell->series);
    ngx_queue_remove(&cell->slot);
    ngx_slab_free_locked(zone->shpool, cell);
}


/*
 * Takes a dead process's attempts in flight and references back out of
 * its series and frees its cells and record.  Returns the number of
 * references; *in_flight gets the attempts.
 */
static ngx_uint_t
ngx_http_tce_metrics_slot_free_locked(ngx_tce_zone_t *zone,
    ngx_http_tce_metrics_slot_t *slot, ngx_atomic_int_t *in_flight)
{
    time_t                        now;
    ngx_uint_t                    refs;
    ngx_queue_t                  *q;
    ngx_http_tce_metrics_cell_t  *cell;

    now = ngx_time();
    refs = 0;

    while (!ngx_queue_empty(&slot->cells)) {
        q = ngx_queue_head(&slot->cells);
        cell = ngx_queue_data(q, ngx_http_tce_metrics_cell_t, slot);

        if (cell->in_flight) {
            ngx_http_tce_metrics_add(cell->total,
                                     -(ngx_atomic_int_t) cell->in_flight);
            *in_flight += (ngx_atomic_int_t) cell->in_flight;
        }

        /* as ngx_http_tce_metrics_unref(): the time before the refs */
        *cell->unused = now;
        ngx_memory_barrier();
        (void) ngx_atomic_fetch_add(cell->series_refs,
                                    -(ngx_atomic_int_t) cell->refs);
        refs += cell->refs;

        ngx_queue_remove(&cell->series);
        ngx_queue_remove(&cell->slot);
        ngx_slab_free_locked(zone->shpool, cell);
    }

    ngx_queue_remove(&slot->queue);
    ngx_slab_free_locked(zone->shpool, slot);

    return refs;
}


void
ngx_http_tce_metrics_reclaim(ngx_tce_zone_t *zone,
    ngx_http_tce_metrics_sh_t *sh, ngx_log_t *log)
{
    ngx_pid_t                     pid;
    ngx_uint_t                    refs, dead;
    ngx_queue_t                  *q, *next;
    ngx_atomic_int_t              in_flight;
    ngx_http_tce_metrics_slot_t  *slot;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (q = ngx_queue_head(&sh->slots);
         q != ngx_queue_sentinel(&sh->slots);
         q = next)
    {
        next = ngx_queue_next(q);
        slot = ngx_queue_data(q, ngx_http_tce_metrics_slot_t, queue);

        if (slot->pid == ngx_pid) {
            continue;
        }

        /*
         * The master gives a slot to a new process only once the old
         * one has exited; otherwise the pid tells (a worker of an older
         * generation that died while shutting down).
         */
        dead = (slot->slot == ngx_process_slot
                && ngx_process != NGX_PROCESS_SINGLE)
               || (kill(slot->pid, 0) == -1 && ngx_errno == NGX_ESRCH);

        if (!dead) {
            continue;
        }

        pid = slot->pid;
        in_flight = 0;
        refs = ngx_http_tce_metrics_slot_free_locked(zone, slot, &in_flight);

        ngx_shmtx_unlock(&zone->shpool->mutex);

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "tce metrics: worker %P is gone: the %A in-flight "
                      "count(s) and %ui reference(s) it held in the "
                      "series are taken back", pid, in_flight, refs);

        ngx_shmtx_lock(&zone->shpool->mutex);

        /* the list may have changed meanwhile: start over */
        next = ngx_queue_head(&sh->slots);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}
