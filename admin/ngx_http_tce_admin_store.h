/*
 * The state file as the admin API's store (ngx_http_tce_admin_store.c).
 * A write (ngx_http_tce_admin_store_change) goes: the writers' turn
 * (across workers, waited for on a timer, never spun), If-Match, the
 * route's prepare (event loop: what it needs from the zone); on the
 * thread pool: load (checks the file is the one last loaded or
 * written), the route's edit (ngx_http_tce_admin_edit.h), encode,
 * write with fsync; then on the event loop the route's apply (the
 * zone; on failure the file is written back), the audit line (thread
 * pool), the route's answer, the turn released.
 */

#ifndef _NGX_HTTP_TCE_ADMIN_STORE_H_INCLUDED_
#define _NGX_HTTP_TCE_ADMIN_STORE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_tce_state.h"
#include "ngx_http_tce_admin_api.h"


typedef struct {
    /*
     * Event loop, the turn held and If-Match passed: reads from the
     * zone what edit and apply need.  NGX_OK, or NGX_DONE once it sent
     * a refusal (nothing is written), or an HTTP error status.
     */
    ngx_int_t   (*prepare)(ngx_http_request_t *r, void *data);

    /*
     * A thread: changes the loaded state file.  Pure C: no nginx
     * pool, log or zone.  Returns 0, or -1 with *status and err set
     * (a refusal: nothing is written).
     */
    int         (*edit)(ngx_tce_state_t *st, void *data, ngx_uint_t *status,
                        ngx_http_tce_admin_err_t *err);

    /*
     * Event loop, the file written: the same change in the zone.
     * NGX_OK, or NGX_ERROR (zone full: the file is written back and
     * 507 answered).
     */
    ngx_int_t   (*apply)(ngx_http_request_t *r, void *data);

    /* event loop, applied and audited: sends the answer */
    ngx_int_t   (*answer)(ngx_http_request_t *r, void *data);

    void         *data;

    /*
     * NULL: the edited state file is freed on the thread.  Else it is
     * moved here (initially empty) for apply and answer to read, and
     * freed when the write ends, accepted or not.
     */
    ngx_tce_state_t  *state;

    /* the answer's status for the audit line (0: 200); edit may set it */
    ngx_uint_t        status;

    /*
     * May be NULL.  With tce_redis the edit may run again on a newer
     * set (another node wrote the service meanwhile): reset first frees
     * what the previous edit allocated.
     */
    void        (*reset)(void *data);
} ngx_http_tce_admin_change_t;


/*
 * Runs an accepted-or-refused write of the route's service (ctx->svc)
 * as above; ch must live as long as the request.  Returns NGX_DONE
 * (the request is finalized when the change is through) or what the
 * handler returns for an answer sent at once.  Sets ctx->gen_before
 * and ctx->gen_after, counts the event-loop time it took in v1/status.
 */
ngx_int_t ngx_http_tce_admin_store_change(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, ngx_http_tce_admin_change_t *ch);


#endif /* _NGX_HTTP_TCE_ADMIN_STORE_H_INCLUDED_ */
