/*
 * API diff (tce_diff): the outcomes of comparing a canary's answers
 * with prod's, for other modules (deploy gates, the admin API).
 */

#ifndef _NGX_TCE_DIFF_H_INCLUDED_
#define _NGX_TCE_DIFF_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * Cumulative API diff outcomes for a service's cluster, summed over its
 * tce_diff locations; NGX_DECLINED when no tce_diff covers it (the
 * outputs are then left unchanged), NGX_OK otherwise.
 */
ngx_int_t ngx_tce_diff_totals(ngx_str_t *service, ngx_str_t *cluster,
    uint64_t *match, uint64_t *mismatch, uint64_t *error);


#endif /* _NGX_TCE_DIFF_H_INCLUDED_ */
