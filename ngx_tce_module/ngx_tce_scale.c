/*
 * The scaling signal: HPA's formula (see ngx_tce_scale.h).
 */

#include <math.h>

#include "ngx_tce_scale.h"


uint32_t
ngx_tce_scale_desired(uint32_t current, const ngx_tce_scale_metric_t *m,
    size_t n, double tolerance, uint32_t *proposals)
{
    size_t    i;
    double    ratio, want;
    uint32_t  p, desired, any;

    desired = 0;
    any = 0;

    for (i = 0; i < n; i++) {
        if (proposals) {
            proposals[i] = 0;
        }

        if (!(m[i].target > 0)) {
            continue;
        }

        ratio = m[i].observed / m[i].target;

        if (fabs(ratio - 1.0) <= tolerance) {
            p = current;

        } else {
            want = ceil(ratio * (double) current);
            p = want > 4294967295.0 ? 4294967295u : (uint32_t) want;
        }

        if (current && p == 0) {
            p = 1;
        }

        if (proposals) {
            proposals[i] = p;
        }

        if (!any || p > desired) {
            desired = p;
        }

        any = 1;
    }

    return any ? desired : current;
}
