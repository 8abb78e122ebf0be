/*
 * The notice lines of a reload: one per service whose generation the
 * reload moved, saying how its set changed (ngx_tce_change.h):
 *
 *   tce: service "demo.web.api" generation 3 -> 4: +1 instance (p3),
 *   -1 instance (p1), 1 draining (p2)
 *   tce: service "demo.web.new" new, generation 2: +2 instances (a, b)
 */

#ifndef _NGX_TCE_RELOAD_LOG_H_INCLUDED_
#define _NGX_TCE_RELOAD_LOG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_tce.h"


typedef struct ngx_tce_reload_log_s  ngx_tce_reload_log_t;


/*
 * Before a reload changes the zone: the generation, instance set and
 * canary policies of every service, copied into memory from ngx_alloc.
 * Returns NULL when that memory is short (logged; the reload then logs
 * no change lines, and goes on).
 */
ngx_tce_reload_log_t *ngx_tce_reload_log_before(ngx_tce_zone_t *zone,
    ngx_log_t *log);

/*
 * After it: logs at notice level one line per service whose generation
 * moved and whose set or policies changed (a service new to the zone
 * counts from an empty set), then frees rl.  rl NULL: nothing.
 */
void ngx_tce_reload_log_after(ngx_tce_reload_log_t *rl,
    ngx_tce_zone_t *zone, ngx_log_t *log);

/* frees rl without logging (a refused reload); rl may be NULL */
void ngx_tce_reload_log_free(ngx_tce_reload_log_t *rl);


#endif /* _NGX_TCE_RELOAD_LOG_H_INCLUDED_ */
