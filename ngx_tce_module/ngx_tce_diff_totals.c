/*
 * Totals of the API diff per service and cluster, for the deploy gates.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_tce_diff.h"


ngx_int_t
ngx_tce_diff_totals(ngx_str_t *service, ngx_str_t *cluster,
    uint64_t *match, uint64_t *mismatch, uint64_t *error)
{
    /* no tce_diff location yet: nothing covers any service */
    return NGX_DECLINED;
}
