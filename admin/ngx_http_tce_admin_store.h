/*
 * The state file as the admin API's store (ngx_http_tce_admin_store.c).
 * A write goes: lock, load (checks the file is the one last loaded or
 * written), edit (ngx_http_tce_admin_edit.h), save, change the zone,
 * unlock.
 */

#ifndef _NGX_HTTP_TCE_ADMIN_STORE_H_INCLUDED_
#define _NGX_HTTP_TCE_ADMIN_STORE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_tce_state.h"


/* takes and releases the turn of the API's writers (every worker) */
void ngx_http_tce_admin_store_lock(ngx_http_request_t *r);
void ngx_http_tce_admin_store_unlock(ngx_http_request_t *r);

/*
 * Loads the state file into *st (empty when the file does not exist
 * yet).  Returns NGX_OK, or NGX_DONE once an error answer is sent (409 when
 * no tce_state is configured or the file changed since last loaded,
 * 500 when it cannot be read); *st is then empty.
 */
ngx_int_t ngx_http_tce_admin_store_load(ngx_http_request_t *r,
    ngx_tce_state_t *st);

/*
 * Writes st as the state file and records its fingerprint.  Returns
 * NGX_OK, or NGX_ERROR (logged) with the file untouched.
 */
ngx_int_t ngx_http_tce_admin_store_save(ngx_http_request_t *r,
    ngx_tce_state_t *st);


#endif /* _NGX_HTTP_TCE_ADMIN_STORE_H_INCLUDED_ */
