/*
 * Recent-window counters (pure C, no nginx): per second, how many
 * attempts an instance got, how many failed, and how long they took,
 * kept for the last NGX_TCE_WINDOW_SLOTS seconds in the zone and
 * summed over the NGX_TCE_WINDOW_SECONDS complete seconds before now.
 *
 * Each slot is one 64-bit word: the second it counts in the high 32
 * bits, the count in the low 32.  A writer that finds a slot of an
 * older second starts it over; a compare-and-set of the whole word
 * makes that exact across workers without a lock.
 */

#ifndef _NGX_TCE_WINDOW_H_INCLUDED_
#define _NGX_TCE_WINDOW_H_INCLUDED_


#include <stdint.h>


#define NGX_TCE_WINDOW_SLOTS    16      /* a power of 2, > SECONDS */
#define NGX_TCE_WINDOW_SECONDS  10


typedef struct {
    uint64_t                  requests[NGX_TCE_WINDOW_SLOTS];
    uint64_t                  errors[NGX_TCE_WINDOW_SLOTS];
    uint64_t                  busy_ms[NGX_TCE_WINDOW_SLOTS];
} ngx_tce_window_t;


/* what a window holds, summed */
typedef struct {
    uint64_t                  requests;
    uint64_t                  errors;
    uint64_t                  busy_ms;    /* sum of attempt durations */
    uint32_t                  seconds;    /* the window's length */
} ngx_tce_window_sum_t;


/* the slot word a second maps to: word[ngx_tce_window_slot(now)] */
#define ngx_tce_window_slot(now)  ((now) & (NGX_TCE_WINDOW_SLOTS - 1))


/*
 * The value a slot word takes when v is added to it at second now: the
 * word's count plus v if it counts that second, v alone otherwise (an
 * older second is started over).  The count saturates at 2^32 - 1.
 */
static inline uint64_t
ngx_tce_window_next(uint64_t word, uint32_t now, uint32_t v)
{
    uint64_t  count;

    count = ((uint32_t) (word >> 32) == now) ? (word & 0xffffffff) : 0;
    count += v;

    if (count > 0xffffffff) {
        count = 0xffffffff;
    }

    return ((uint64_t) now << 32) | count;
}


/*
 * Sums the slots of the seconds now - NGX_TCE_WINDOW_SECONDS .. now - 1
 * (the current second, still counting, is left out; slots of other
 * seconds count nothing) into *sum.
 */
void ngx_tce_window_sum(const ngx_tce_window_t *w, uint32_t now,
    ngx_tce_window_sum_t *sum);

/* adds a window's sum to *acc (seconds kept) */
void ngx_tce_window_acc(ngx_tce_window_sum_t *acc,
    const ngx_tce_window_sum_t *s);


#endif /* _NGX_TCE_WINDOW_H_INCLUDED_ */
