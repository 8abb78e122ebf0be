/*
 * API diff (tce_diff): the outcomes of comparing a canary's answers
 * with prod's, for other modules (deploy gates, the admin API, the
 * metrics).
 */

#ifndef _NGX_TCE_DIFF_H_INCLUDED_
#define _NGX_TCE_DIFF_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <jansson.h>

#include "ngx_tce.h"
#include "ngx_tce_prom.h"


/*
 * Cumulative API diff outcomes for a service's cluster, summed over its
 * tce_diff locations; NGX_DECLINED when no tce_diff covers it (the
 * outputs are then left unchanged), NGX_OK otherwise.  Reads the zone's
 * atomic counters, takes no lock.
 */
ngx_int_t ngx_tce_diff_totals(ngx_str_t *service, ngx_str_t *cluster,
    uint64_t *match, uint64_t *mismatch, uint64_t *error);

/*
 * The API diff of a service's cluster as a JSON object (the admin API's
 * GET .../clusters/<cluster>/diff): totals, match_ratio (matches over
 * matches and mismatches, null before any), per location counts, and
 * the last mismatches, newest first (at most 8 per location).  NULL
 * with *declined set when no tce_diff covers it, NULL alone when out of
 * memory.  Copies the mismatches under the zone's lock.
 */
json_t *ngx_tce_diff_json(ngx_str_t *service, ngx_str_t *cluster,
    ngx_uint_t *declined);

/*
 * Adds the tce_diff_requests_total series to a metrics snapshot
 * (allocated from pool).  Returns NGX_OK or NGX_ERROR.
 */
ngx_int_t ngx_tce_diff_prom(ngx_tce_zone_t *zone, ngx_tce_prom_snapshot_t *s,
    ngx_pool_t *pool);


#endif /* _NGX_TCE_DIFF_H_INCLUDED_ */
