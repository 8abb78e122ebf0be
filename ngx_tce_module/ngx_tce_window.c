/*
 * Recent-window counters: the sums (see ngx_tce_window.h).  Writers
 * add with a compare-and-set in lb/ngx_http_tce_metrics.h.
 */

#include <stddef.h>

#include "ngx_tce_window.h"


static uint64_t ngx_tce_window_count(uint64_t word, uint32_t sec);


static uint64_t
ngx_tce_window_count(uint64_t word, uint32_t sec)
{
    return ((uint32_t) (word >> 32) == sec) ? (word & 0xffffffff) : 0;
}


void
ngx_tce_window_sum(const ngx_tce_window_t *w, uint32_t now,
    ngx_tce_window_sum_t *sum)
{
    uint32_t  k, sec, i;

    sum->requests = 0;
    sum->errors = 0;
    sum->busy_ms = 0;
    sum->seconds = NGX_TCE_WINDOW_SECONDS;

    for (k = 1; k <= NGX_TCE_WINDOW_SECONDS; k++) {
        sec = now - k;
        i = ngx_tce_window_slot(sec);

        sum->requests += ngx_tce_window_count(w->requests[i], sec);
        sum->errors += ngx_tce_window_count(w->errors[i], sec);
        sum->busy_ms += ngx_tce_window_count(w->busy_ms[i], sec);
    }
}


void
ngx_tce_window_acc(ngx_tce_window_sum_t *acc, const ngx_tce_window_sum_t *s)
{
    acc->requests += s->requests;
    acc->errors += s->errors;
    acc->busy_ms += s->busy_ms;
    acc->seconds = s->seconds;
}
