/*
 * Duration histograms of the request metrics (pure C, no nginx).
 *
 * Durations are counted in milliseconds, nginx's own resolution, into
 * fixed buckets whose upper bounds are, in seconds: 0.005 0.01 0.025
 * 0.05 0.1 0.25 0.5 1 2.5 5 10 30 60 and +Inf.  Buckets are stored
 * apart (not cumulative), so that one observation is one increment;
 * they are made cumulative when rendered.
 */

#ifndef _NGX_TCE_HISTOGRAM_H_INCLUDED_
#define _NGX_TCE_HISTOGRAM_H_INCLUDED_


#include <stdint.h>


#define NGX_TCE_HIST_NBUCKETS  14          /* the last one is +Inf */


typedef struct {
    uint64_t                  bucket[NGX_TCE_HIST_NBUCKETS];
    uint64_t                  sum_ms;
} ngx_tce_histogram_t;


/* bucket bounds in ms, the last one UINT64_MAX (+Inf) */
extern const uint64_t  ngx_tce_histogram_bounds[NGX_TCE_HIST_NBUCKETS];


/*
 * The index of the bucket that counts a duration of ms milliseconds.
 * Inline, for the request path: a linear scan is shortest for the
 * usual durations, which fall in the first buckets.
 */
static inline unsigned
ngx_tce_histogram_bucket(uint64_t ms)
{
    unsigned  i;

    for (i = 0; ms > ngx_tce_histogram_bounds[i]; i++) { /* void */ }

    return i;
}

/* upper bound of bucket i in shortest form ("0.005", "1", "+Inf") */
const char *ngx_tce_histogram_le(unsigned i);

/* upper bound of bucket i in milliseconds; UINT64_MAX for +Inf */
uint64_t ngx_tce_histogram_bound_ms(unsigned i);

/*
 * Writes the cumulative counts of h into cum[0..NBUCKETS-1] and
 * returns the total count (cum[NBUCKETS-1]).
 */
uint64_t ngx_tce_histogram_cumulate(const ngx_tce_histogram_t *h,
    uint64_t *cum);

/* adds src into dst (to sum series) */
void ngx_tce_histogram_add(ngx_tce_histogram_t *dst,
    const ngx_tce_histogram_t *src);


#endif /* _NGX_TCE_HISTOGRAM_H_INCLUDED_ */
