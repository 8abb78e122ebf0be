/*
 * How much tce_zone a registry needs (pure C, no nginx), from figures
 * measured with the module (README, "Sizing the zone"): 2 workers,
 * every service routed once so that its views and metric series exist,
 * zone usage read from tce_zone_used_bytes.  Each figure is the
 * measured one rounded up; the estimate errs on the large side.
 */

#ifndef _NGX_TCE_ZONE_SIZE_H_INCLUDED_
#define _NGX_TCE_ZONE_SIZE_H_INCLUDED_


#include <stddef.h>

#include "ngx_tce_state.h"


/* the zone's own: 24 KB and 1% of its size (the service index...) */
#define NGX_TCE_ZONE_SIZE_BASE              (24 * 1024)
#define NGX_TCE_ZONE_SIZE_BASE_PERCENT      1

/* a service (its entry, schedules' headers, status): measured 4.85 KB */
#define NGX_TCE_ZONE_SIZE_SERVICE           5120

/*
 * an instance in its set (384 B, 10 a page): measured 414 B; and as a
 * member of its group's cycle (132 B, 31 a page: 133 B)
 */
#define NGX_TCE_ZONE_SIZE_INSTANCE          550

/* an entry of a group's weighted cycle (sum of weights / gcd) */
#define NGX_TCE_ZONE_SIZE_ENTRY             4

/*
 * tce_metrics' series, and each worker's cells of them once it routed
 * there: measured 1.29 KB + 0.31 KB a worker per service, 1.03 KB +
 * 0.13 KB a worker per instance (1, 2 and 4 workers)
 */
#define NGX_TCE_ZONE_SIZE_METRICS_SERVICE   1400
#define NGX_TCE_ZONE_SIZE_WORKER_SERVICE    330
#define NGX_TCE_ZONE_SIZE_METRICS_INSTANCE  1100
#define NGX_TCE_ZONE_SIZE_WORKER_INSTANCE   140

/* a reload stores the new set of a service before it frees the old */
#define NGX_TCE_ZONE_SIZE_RELOAD_SERVICE    512

/* advised sizes are whole multiples of this */
#define NGX_TCE_ZONE_SIZE_ROUND             (64 * 1024)


typedef struct {
    size_t                    services;
    size_t                    instances;
    size_t                    entries;     /* of the weighted cycles */

    size_t                    need;        /* bytes, in a zone of
                                              size advised */
    size_t                    advised;     /* a zone holding the registry
                                              and a reload changing every
                                              set of it */
} ngx_tce_zone_size_t;


/*
 * Estimates the zone the services of st need, plus more_services
 * named by nginx.conf only (empty), with tce_metrics' series when
 * metrics is not 0, for that many worker processes.  st may be NULL
 * (no state file).
 */
void ngx_tce_zone_size(const ngx_tce_state_t *st, size_t more_services,
    int metrics, size_t workers, ngx_tce_zone_size_t *zs);


#endif /* _NGX_TCE_ZONE_SIZE_H_INCLUDED_ */
