/*
 * Slow start (pure C, no nginx): an instance that becomes routable
 * beside others of its group (added, back from down or draining) gets
 * its weight ramped from almost nothing to all of it over the
 * upstream's slow_start time, without touching the O(1) schedule.
 *
 * - The zone stamps the moment (ngx_tce_ramp_stamp, called by the
 *   writer that stores the set); workers read it with the set.
 * - A worker's pick admits a ramping instance's schedule entry with
 *   the fraction f = elapsed / slow_start of its weight (a credit
 *   counter: exactly f of its entries, evenly); a refused entry goes
 *   to the next one of the schedule.  Over a cycle the instance then
 *   gets the share of weight f * w, as if the schedule had been built
 *   with it: f * w / (W - w + f * w).
 */

#ifndef _NGX_TCE_SCHED_RAMP_H_INCLUDED_
#define _NGX_TCE_SCHED_RAMP_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "ngx_tce_types.h"


/* fractions of a weight are in 1/NGX_TCE_RAMP_ONE */
#define NGX_TCE_RAMP_ONE  1024


/*
 * Sets inst[i].since_ms for a set about to replace old (both sorted by
 * id): an instance routable in both (same address) keeps its stamp; one
 * that becomes routable (new, moved, or back from weight 0) gets now_ms
 * if its group (cluster, env) had another routable instance in old,
 * else 0 (a group starting from nothing has nobody to spare it);
 * a non-routable one gets 0.  O((n + nold) * groups).
 */
void ngx_tce_ramp_stamp(const ngx_tce_instance_t *old, size_t nold,
    ngx_tce_instance_t *inst, size_t n, uint64_t now_ms);

/*
 * The fraction of its weight a ramping instance gets elapsed_ms into a
 * ramp of slow_ms (> 0): elapsed / slow in 1/NGX_TCE_RAMP_ONE, at least
 * 1, NGX_TCE_RAMP_ONE once the ramp is over.
 */
uint32_t ngx_tce_ramp_fraction(uint64_t elapsed_ms, uint64_t slow_ms);

/*
 * One schedule entry of a ramping instance: 1 to take it, 0 to pass it
 * to the next entry.  *credit carries the fraction between entries, so
 * that exactly f of them are taken, spread evenly.
 */
static inline int
ngx_tce_ramp_admit(uint32_t *credit, uint32_t f)
{
    *credit += f;

    if (*credit >= NGX_TCE_RAMP_ONE) {
        *credit -= NGX_TCE_RAMP_ONE;
        return 1;
    }

    return 0;
}


#endif /* _NGX_TCE_SCHED_RAMP_H_INCLUDED_ */
