/*
 * Edits of a decoded state file by the admin API (pure C, no nginx):
 * the file is the API's store, so each accepted change is made to the
 * file's own registry, which is then encoded and written whole.
 */

#ifndef _NGX_HTTP_TCE_ADMIN_EDIT_H_INCLUDED_
#define _NGX_HTTP_TCE_ADMIN_EDIT_H_INCLUDED_


#include <stddef.h>

#include "ngx_tce_state.h"
#include "ngx_tce_canary.h"


/* the service of that name in st, or NULL */
ngx_tce_state_service_t *ngx_http_tce_admin_edit_service(
    ngx_tce_state_t *st, const char *name, size_t len);

/*
 * Sets (p not NULL) or removes (NULL) the "canary" object of a
 * service's cluster, adding the cluster (without instances) when the
 * file has none of that name.  Returns 0, or -1 on allocation failure
 * with ss unchanged.
 */
int ngx_http_tce_admin_edit_canary(ngx_tce_state_service_t *ss,
    const char *cluster, size_t len, const ngx_tce_canary_policy_t *p);


#endif /* _NGX_HTTP_TCE_ADMIN_EDIT_H_INCLUDED_ */
