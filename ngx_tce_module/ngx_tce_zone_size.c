/*
 * How much tce_zone a registry needs (pure C): see ngx_tce_zone_size.h.
 */

#include <string.h>

#include "ngx_tce_zone_size.h"
#include "ngx_tce_sched.h"


static size_t ngx_tce_zone_size_entries(const ngx_tce_state_service_t *ss);
static size_t ngx_tce_zone_size_gcd(size_t a, size_t b);


void
ngx_tce_zone_size(const ngx_tce_state_t *st, size_t more_services,
    int metrics, size_t workers, ngx_tce_zone_size_t *zs)
{
    size_t  i, core, reload, base, total;

    memset(zs, 0, sizeof(ngx_tce_zone_size_t));

    zs->services = more_services;

    for (i = 0; st && i < st->nservices; i++) {
        zs->services++;
        zs->instances += st->services[i].ninstances;
        zs->entries += ngx_tce_zone_size_entries(&st->services[i]);
    }

    core = zs->services * NGX_TCE_ZONE_SIZE_SERVICE
           + zs->instances * NGX_TCE_ZONE_SIZE_INSTANCE
           + zs->entries * NGX_TCE_ZONE_SIZE_ENTRY;

    if (metrics) {
        core += zs->services * (NGX_TCE_ZONE_SIZE_METRICS_SERVICE
                                + workers * NGX_TCE_ZONE_SIZE_WORKER_SERVICE)
                + zs->instances
                  * (NGX_TCE_ZONE_SIZE_METRICS_INSTANCE
                     + workers * NGX_TCE_ZONE_SIZE_WORKER_INSTANCE);
    }

    reload = zs->services * NGX_TCE_ZONE_SIZE_RELOAD_SERVICE
             + zs->instances * NGX_TCE_ZONE_SIZE_INSTANCE;

    /* the base grows with the zone: solve size = rest + 1% of size */
    total = core + reload + NGX_TCE_ZONE_SIZE_BASE;
    total = total * 100 / (100 - NGX_TCE_ZONE_SIZE_BASE_PERCENT) + 1;

    zs->advised = (total + NGX_TCE_ZONE_SIZE_ROUND - 1)
                  / NGX_TCE_ZONE_SIZE_ROUND * NGX_TCE_ZONE_SIZE_ROUND;

    base = NGX_TCE_ZONE_SIZE_BASE
           + zs->advised / 100 * NGX_TCE_ZONE_SIZE_BASE_PERCENT;

    zs->need = core + base;
}


/*
 * The entries of the service's weighted cycles: per cluster and env,
 * the sum of the weights (an override's when set) over their gcd, at
 * most NGX_TCE_SCHED_MAX.  Instances of a cluster are contiguous.
 */
static size_t
ngx_tce_zone_size_entries(const ngx_tce_state_service_t *ss)
{
    size_t                     i, j, env, total, w, sum[NGX_TCE_NENVS],
                               gcd[NGX_TCE_NENVS];
    const ngx_tce_instance_t  *inst;

    total = 0;
    inst = ss->instances;

    for (i = 0; i < ss->ninstances; i = j) {
        sum[0] = sum[1] = 0;
        gcd[0] = gcd[1] = 0;

        for (j = i; j < ss->ninstances
                    && strcmp(inst[j].cluster, inst[i].cluster) == 0; j++)
        {
            env = (inst[j].env == NGX_TCE_ENV_CANARY);
            w = inst[j].op_weight ? inst[j].op_weight : inst[j].weight;
            w = w ? w : 1;

            sum[env] += w;
            gcd[env] = ngx_tce_zone_size_gcd(gcd[env], w);
        }

        for (env = 0; env < NGX_TCE_NENVS; env++) {
            if (sum[env]) {
                w = sum[env] / gcd[env];
                total += (w < NGX_TCE_SCHED_MAX) ? w : NGX_TCE_SCHED_MAX;
            }
        }
    }

    return total;
}


static size_t
ngx_tce_zone_size_gcd(size_t a, size_t b)
{
    size_t  t;

    while (b) {
        t = a % b;
        a = b;
        b = t;
    }

    return a;
}
