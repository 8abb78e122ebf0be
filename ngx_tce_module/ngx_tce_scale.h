/*
 * The scaling signal (pure C, no nginx): how many instances an env
 * needs for its targets, as Kubernetes' Horizontal Pod Autoscaler
 * computes it.
 */

#ifndef _NGX_TCE_SCALE_H_INCLUDED_
#define _NGX_TCE_SCALE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* HPA's default --horizontal-pod-autoscaler-tolerance */
#define NGX_TCE_SCALE_TOLERANCE  0.1


typedef struct {
    double                    observed;   /* per instance */
    double                    target;     /* per instance; <= 0: unset */
} ngx_tce_scale_metric_t;


/*
 * Per metric with a target, HPA's proposal: ratio = observed / target;
 * current when |ratio - 1| <= tolerance, else ceil(ratio * current).
 * Returns the largest proposal (current when no metric has a target),
 * at least 1 when current is (HPA's default minReplicas), 0 when
 * current is 0 (nothing observed to scale from).  *proposals, when not
 * NULL, gets each metric's (0 for one without target).
 */
uint32_t ngx_tce_scale_desired(uint32_t current,
    const ngx_tce_scale_metric_t *m, size_t n, double tolerance,
    uint32_t *proposals);


#endif /* _NGX_TCE_SCALE_H_INCLUDED_ */
