/*
 * Duration histograms: bucket math (see ngx_tce_histogram.h).
 */

#include <stddef.h>
#include <stdint.h>

#include "ngx_tce_histogram.h"


const uint64_t  ngx_tce_histogram_bounds[NGX_TCE_HIST_NBUCKETS] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    UINT64_MAX
};

static const char  *ngx_tce_histogram_names[NGX_TCE_HIST_NBUCKETS] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5",
    "5", "10", "30", "60", "+Inf"
};


const char *
ngx_tce_histogram_le(unsigned i)
{
    return i < NGX_TCE_HIST_NBUCKETS ? ngx_tce_histogram_names[i] : NULL;
}


uint64_t
ngx_tce_histogram_bound_ms(unsigned i)
{
    return i < NGX_TCE_HIST_NBUCKETS ? ngx_tce_histogram_bounds[i]
                                     : UINT64_MAX;
}


uint64_t
ngx_tce_histogram_cumulate(const ngx_tce_histogram_t *h, uint64_t *cum)
{
    unsigned  i;
    uint64_t  total;

    total = 0;

    for (i = 0; i < NGX_TCE_HIST_NBUCKETS; i++) {
        total += h->bucket[i];
        cum[i] = total;
    }

    return total;
}


void
ngx_tce_histogram_add(ngx_tce_histogram_t *dst, const ngx_tce_histogram_t *src)
{
    unsigned  i;

    for (i = 0; i < NGX_TCE_HIST_NBUCKETS; i++) {
        dst->bucket[i] += src->bucket[i];
    }

    dst->sum_ms += src->sum_ms;
}
