/*
 * Instance sets in the fleet store (tce_redis,
 * ngx_http_tce_admin_fleet_set.c): a change of a service's instance set
 * (POST or DELETE of an instance, PUT of an env's set, a drained
 * instance's removal) read from Redis, edited here with the state
 * file's pure edits, and written back only if nobody wrote the service
 * in between (its revision compared in a Lua script), then announced.
 */

#ifndef _NGX_HTTP_TCE_ADMIN_FLEET_SET_H_INCLUDED_
#define _NGX_HTTP_TCE_ADMIN_FLEET_SET_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_admin_store.h"
#include "ngx_tce_redis.h"


/* outcomes */
#define NGX_HTTP_TCE_ADMIN_FSET_OK           0   /* written, replicated */
#define NGX_HTTP_TCE_ADMIN_FSET_UNREPLICATED 1   /* written, WAIT short */
#define NGX_HTTP_TCE_ADMIN_FSET_CONFLICT     2   /* If-Match refused */
#define NGX_HTTP_TCE_ADMIN_FSET_REFUSED      3   /* edit refused */
#define NGX_HTTP_TCE_ADMIN_FSET_UNAVAILABLE  4   /* Redis: why */


typedef struct ngx_http_tce_admin_fset_s  ngx_http_tce_admin_fset_t;

struct ngx_http_tce_admin_fset_s {
    ngx_tce_redis_main_conf_t  *rmcf;
    ngx_tce_zone_t             *zone;
    ngx_tce_service_t          *svc;         /* held until freed */
    ngx_log_t                  *log;

    /* the change: edit as ngx_http_tce_admin_change_t's (pure C) */
    int                       (*edit)(ngx_tce_state_t *st, void *data,
                                      ngx_uint_t *status,
                                      ngx_http_tce_admin_err_t *err);
    /* before an edit is run again on a newer set; may be NULL */
    void                      (*reset)(void *data);
    /* the outcome is in; done owns fs (ngx_http_tce_admin_fset_free) */
    void                      (*done)(ngx_http_tce_admin_fset_t *fs);
    void                       *data;
    void                       *owner;       /* the request's link */

    ngx_uint_t                  has_if_match;
    uint64_t                    if_match;

    /* under way */
    ngx_uint_t                  tries;
    uint64_t                    rev_read;

    /* the outcome */
    ngx_uint_t                  result;      /* NGX_HTTP_TCE_ADMIN_FSET_* */
    ngx_tce_state_t             st;          /* the edited set */
    uint64_t                    rev;         /* the service's revision */
    int64_t                     version;     /* the fleet's */
    ngx_uint_t                  acked;       /* replicas, WAIT */
    ngx_uint_t                  status;      /* REFUSED: HTTP status */
    ngx_http_tce_admin_err_t    err;         /* REFUSED: the answer's */
    char                        why[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
};


/*
 * A change of svc's set in the fleet store, from the worker's command
 * connection; the caller sets edit, reset, done and data.  Returns the
 * job (svc held), or NULL (no memory or service going: logged).
 */
ngx_http_tce_admin_fset_t *ngx_http_tce_admin_fset_create(
    ngx_tce_redis_main_conf_t *rmcf, ngx_tce_service_t *svc,
    ngx_log_t *log);

/*
 * Starts it: NGX_OK, done() will run with the outcome; NGX_ERROR, the
 * command could not be sent (fs->why), done() will not run.
 */
ngx_int_t ngx_http_tce_admin_fset_run(ngx_http_tce_admin_fset_t *fs);

/* frees the job, its set and its hold on the service */
void ngx_http_tce_admin_fset_free(ngx_http_tce_admin_fset_t *fs);

/*
 * Runs a change of the admin store (POST, DELETE, PUT of instances) in
 * the fleet store instead of the state file, when tce_redis is set:
 * prepare, then edit on the service's set as Redis has it, then apply
 * and answer as ngx_http_tce_admin_store_change() does; ch->state must
 * be set.  Returns NGX_DONE (answered when Redis has answered) or what
 * the handler returns for an answer sent at once.
 */
ngx_int_t ngx_http_tce_admin_fleet_change(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, ngx_http_tce_admin_change_t *ch);


#endif /* _NGX_HTTP_TCE_ADMIN_FLEET_SET_H_INCLUDED_ */
