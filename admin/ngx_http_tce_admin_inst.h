/*
 * What the admin API's instance files share
 * (ngx_http_tce_admin_instance.c, _desired.c, _drain.c).
 */

#ifndef _NGX_HTTP_TCE_ADMIN_INST_H_INCLUDED_
#define _NGX_HTTP_TCE_ADMIN_INST_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_tce_state.h"
#include "ngx_http_tce_metrics.h"
#include "ngx_http_tce_admin_inst_input.h"


/* an instance as the reads show it, rec its recent figures or NULL
 * (ngx_http_tce_admin_read.c) */
json_t *ngx_http_tce_admin_instance(ngx_tce_instance_t *inst,
    ngx_http_tce_metrics_recent_t *rec);


/*
 * Copies the instance id of the route's service and cluster into *out.
 * Returns NGX_OK, NGX_DONE once the 404 is sent, or an HTTP error.
 */
ngx_int_t ngx_http_tce_admin_inst_find(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, const char *id, ngx_tce_instance_t *out);

/* 1 when Consul feeds (or watches) the service: its instances are
 * added and removed in Consul */
ngx_uint_t ngx_http_tce_admin_consul_fed(ngx_tce_service_t *svc);

/* sends the 409 saying so; returns NGX_DONE (or an HTTP error) */
ngx_int_t ngx_http_tce_admin_consul_refuse(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx);

/* an instance as the reads show it, with cluster, env and in_flight
 * (summed over every worker) */
json_t *ngx_http_tce_admin_inst_json(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, ngx_tce_instance_t *inst);

/* answers {"instance", "service", "generation"[, "status": outcome]}
 * with the ETag */
ngx_int_t ngx_http_tce_admin_inst_show(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, ngx_tce_instance_t *inst,
    ngx_uint_t status, const char *outcome);

/* GET of the route's cluster's instances (of ctx->env when set) */
ngx_int_t ngx_http_tce_admin_inst_list_env(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx);

/*
 * Runs an instance write as a change of the admin store
 * (ngx_http_tce_admin_inst_write.c): a PATCH of id's overrides (req), a
 * DELETE of id (drain, removed within timeout ms), or a POST of inst.
 * Returns NGX_DONE or an answer's status, as the handlers do.
 */
ngx_int_t ngx_http_tce_admin_inst_write(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, const char *id,
    const ngx_http_tce_admin_patch_req_t *req, uint64_t timeout,
    const ngx_tce_instance_t *inst);

/*
 * The ETag of a service's instances: generation, or with tce_redis the
 * service's fleet revision (If-Match of a PATCH is checked in Redis
 * against it; the other writes check it on this node).
 */
ngx_atomic_uint_t ngx_http_tce_admin_inst_tag(ngx_http_request_t *r,
    ngx_tce_service_t *svc, ngx_atomic_uint_t generation);

/* the wall clock in ms, as removals count (Unix time) */
uint64_t ngx_http_tce_admin_now_ms(void);

/* *ms = ?timeout= or tce_admin_drain_timeout; NGX_OK, or NGX_DONE once
 * a 400 is sent */
ngx_int_t ngx_http_tce_admin_timeout(ngx_http_request_t *r, uint64_t *ms);


#endif /* _NGX_HTTP_TCE_ADMIN_INST_H_INCLUDED_ */
