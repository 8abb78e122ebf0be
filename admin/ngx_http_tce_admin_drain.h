/*
 * Removals of drained instances (ngx_http_tce_admin_drain.c) and, with
 * tce_redis, the busy marks by which every node of the fleet tells the
 * others what it still has in flight on a draining instance
 * (ngx_http_tce_admin_drain_busy.c).
 */

#ifndef _NGX_HTTP_TCE_ADMIN_DRAIN_H_INCLUDED_
#define _NGX_HTTP_TCE_ADMIN_DRAIN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_tce_redis.h"


/* an instance due for removal */
typedef struct {
    char                            service[NGX_TCE_SERVICE_LEN];
    char                            id[NGX_TCE_ID_LEN];
    char                            cluster[NGX_TCE_CLUSTER_LEN];
    ngx_tce_service_t              *svc;
    int64_t                         in_flight;  /* this node's, or all */
    int64_t                         others;     /* the other nodes' */
    ngx_uint_t                      nodes;      /* how many of them */
    uint64_t                        drained_ms;
    ngx_atomic_uint_t               generation;
    uint64_t                        since;      /* rm_since */
    uint64_t                        deadline;   /* rm_deadline */
    ngx_uint_t                      removed;    /* left the file */
    ngx_uint_t                      fleet;      /* the fleet's set */
} ngx_http_tce_admin_removal_t;


/* the other nodes' marks are read: err NULL, or why they could not be */
typedef void (*ngx_http_tce_admin_busy_pt)(void *data, const char *err);


/*
 * The syncer worker's tick: for every draining instance of a service
 * whose set is the fleet's, this node's requests in flight on it
 * (summed over its workers) are written to Redis as its busy mark,
 * <prefix>drain_busy:<service>/<id>:<node> (the count, expiring after
 * 3 x drain_settle= unless rewritten), with <node> in the set
 * <prefix>drain_nodes:<service>/<id>; rewritten when the count changes
 * and every drain_settle=, deleted once the count is 0 or the instance
 * no longer drains here.  One command in flight at a time; a failure
 * is retried at the next tick (a mark that could not be deleted
 * expires).  Changes nothing in the zone.
 */
void ngx_http_tce_admin_busy_mark(ngx_tce_redis_main_conf_t *rmcf,
    ngx_log_t *log);

/*
 * Reads the other nodes' marks of the n removals (this node's own are
 * left out; an expired one leaves its set) into their others and nodes,
 * then calls done(data, NULL); done(data, why) when Redis did not
 * answer (others and nodes unset).  Returns NGX_OK (done will run), or
 * NGX_ERROR when the command cannot be sent (done will not run).
 */
ngx_int_t ngx_http_tce_admin_busy_read(ngx_tce_redis_main_conf_t *rmcf,
    ngx_http_tce_admin_removal_t *items, ngx_uint_t n,
    ngx_http_tce_admin_busy_pt done, void *data, ngx_log_t *log);

/* this worker's record of its marks is forgotten (exit, not the syncer) */
void ngx_http_tce_admin_busy_forget(void);


#endif /* _NGX_HTTP_TCE_ADMIN_DRAIN_H_INCLUDED_ */
