/*
 * Edits of a decoded state file's instances by the admin API (pure C,
 * no nginx): add, find, remove, and match an env to a desired set.
 * The caller encodes and writes the file whole afterwards; a failed
 * edit (allocation) leaves the registry as it was.
 */

#ifndef _NGX_HTTP_TCE_ADMIN_INST_EDIT_H_INCLUDED_
#define _NGX_HTTP_TCE_ADMIN_INST_EDIT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "ngx_tce_state.h"


/* what a desired set did to one instance */
#define NGX_HTTP_TCE_ADMIN_ADDED     0
#define NGX_HTTP_TCE_ADMIN_UPDATED   1
#define NGX_HTTP_TCE_ADMIN_KEPT      2
#define NGX_HTTP_TCE_ADMIN_DRAINING  3


typedef struct {
    char                      id[NGX_TCE_ID_LEN];
    unsigned                  what;         /* NGX_HTTP_TCE_ADMIN_* */
} ngx_http_tce_admin_outcome_t;


/* the service of that name in st, added (sorted, empty) if absent;
 * NULL on allocation failure */
ngx_tce_state_service_t *ngx_http_tce_admin_edit_service_add(
    ngx_tce_state_t *st, const char *name, size_t len);

/* the instance of that id in ss, or NULL */
ngx_tce_instance_t *ngx_http_tce_admin_edit_find(ngx_tce_state_service_t *ss,
    const char *id);

/*
 * Appends a copy of inst (its cluster named, added to clusters[] when
 * new).  Returns 0, or -1 on allocation failure with ss unchanged.
 */
int ngx_http_tce_admin_edit_add(ngx_tce_state_service_t *ss,
    const ngx_tce_instance_t *inst);

/* removes the instance of that id; returns 0, -1 when there is none */
int ngx_http_tce_admin_edit_remove(ngx_tce_state_service_t *ss,
    const char *id);

/*
 * Makes the instances of ss in cluster and env match want[0..n-1]
 * (env and cluster of want are the caller's): an id not there is
 * added; one there gets want's address, weight and version (overrides
 * kept) and loses a removal under way; one there but not wanted starts
 * a removal (rm_since now, rm_deadline deadline) unless one is under
 * way.  *out (malloc'd, *nout entries, the caller frees it) says what
 * happened to each id, wanted ones first in want's order.  Returns 0;
 * 1 with *conflict the first wanted id that ss has in another cluster
 * or env (nothing changed); -1 on allocation failure (nothing changed).
 */
int ngx_http_tce_admin_edit_desired(ngx_tce_state_service_t *ss,
    const char *cluster, unsigned env, const ngx_tce_instance_t *want,
    size_t n, uint64_t now, uint64_t deadline,
    ngx_http_tce_admin_outcome_t **out, size_t *nout,
    const ngx_tce_instance_t **conflict);


#endif /* _NGX_HTTP_TCE_ADMIN_INST_EDIT_H_INCLUDED_ */
