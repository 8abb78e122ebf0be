/*
 * Slow start: the zone's stamps and the ramp's fraction (see
 * ngx_tce_sched_ramp.h).
 */

#include <string.h>

#include "ngx_tce_instance.h"
#include "ngx_tce_sched_ramp.h"


/* groups remembered per stamp; beyond, a group counts as served */
#define NGX_TCE_RAMP_GROUPS  32


typedef struct {
    const char               *cluster;
    unsigned                  env;
} ngx_tce_ramp_group_t;


static int ngx_tce_ramp_served(const ngx_tce_ramp_group_t *g, size_t ng,
    int overflow, const ngx_tce_instance_t *inst);


void
ngx_tce_ramp_stamp(const ngx_tce_instance_t *old, size_t nold,
    ngx_tce_instance_t *inst, size_t n, uint64_t now_ms)
{
    int                    c, overflow;
    size_t                 i, j, k, ng;
    ngx_tce_ramp_group_t   g[NGX_TCE_RAMP_GROUPS];

    /* the groups old had routable instances in */

    ng = 0;
    overflow = 0;

    for (j = 0; j < nold; j++) {
        if (ngx_tce_instance_weight(&old[j]) == 0) {
            continue;
        }

        for (k = 0; k < ng; k++) {
            if (g[k].env == old[j].env
                && strcmp(g[k].cluster, old[j].cluster) == 0)
            {
                break;
            }
        }

        if (k < ng) {
            continue;
        }

        if (ng == NGX_TCE_RAMP_GROUPS) {
            overflow = 1;
            continue;
        }

        g[ng].cluster = old[j].cluster;
        g[ng].env = old[j].env;
        ng++;
    }

    /* both sorted by id: one merge pass */

    j = 0;

    for (i = 0; i < n; i++) {
        if (ngx_tce_instance_weight(&inst[i]) == 0) {
            inst[i].since_ms = 0;
            continue;
        }

        c = 1;

        while (j < nold && (c = strcmp(old[j].id, inst[i].id)) < 0) {
            j++;
        }

        if (j < nold && c == 0
            && ngx_tce_instance_weight(&old[j])
            && strcmp(old[j].addr, inst[i].addr) == 0)
        {
            inst[i].since_ms = old[j].since_ms;
            continue;
        }

        inst[i].since_ms = ngx_tce_ramp_served(g, ng, overflow, &inst[i])
                           ? now_ms : 0;
    }
}


static int
ngx_tce_ramp_served(const ngx_tce_ramp_group_t *g, size_t ng, int overflow,
    const ngx_tce_instance_t *inst)
{
    size_t  k;

    for (k = 0; k < ng; k++) {
        if (g[k].env == inst->env && strcmp(g[k].cluster, inst->cluster) == 0)
        {
            return 1;
        }
    }

    return overflow;
}


uint32_t
ngx_tce_ramp_fraction(uint64_t elapsed_ms, uint64_t slow_ms)
{
    uint64_t  f;

    if (slow_ms == 0 || elapsed_ms >= slow_ms) {
        return NGX_TCE_RAMP_ONE;
    }

    f = elapsed_ms * NGX_TCE_RAMP_ONE / slow_ms;

    return f ? (uint32_t) f : 1;
}
