/*
 * The admin API's checks of instance operations (pure C, no nginx):
 * PATCH of an instance's overrides, POST of a new instance, PUT of an
 * env's desired instance set, and the query of a DELETE or PUT
 * (?timeout=).  Every refusal fills a ngx_http_tce_admin_err_t.
 */

#ifndef _NGX_HTTP_TCE_ADMIN_INST_INPUT_H_INCLUDED_
#define _NGX_HTTP_TCE_ADMIN_INST_INPUT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "ngx_tce_types.h"
#include "ngx_http_tce_admin_input.h"


/* the longest drain timeout a request may ask for: one day, in ms */
#define NGX_HTTP_TCE_ADMIN_DRAIN_MAX  (24 * 3600 * 1000ULL)


/* a PATCH of an instance's overrides: -1 not given, 0 clear, else set */
typedef struct ngx_http_tce_admin_patch_req_s {
    int                       weight;       /* 1..1000 */
    int                       drain;
    int                       down;
} ngx_http_tce_admin_patch_req_t;


/*
 * Parses a PATCH body: {"weight": 1..1000 | null, "drain": true |
 * false | null, "down": true | false | null}, at least one key; false
 * and null both clear.  Returns 0 and fills *req, or -1 with *err
 * ("invalid_json", "wrong_type", "unknown_field", "out_of_range",
 * "missing_field").
 */
int ngx_http_tce_admin_patch_parse(const char *buf, size_t len,
    ngx_http_tce_admin_patch_req_t *req, ngx_http_tce_admin_err_t *err);

/*
 * Parses a POST body: {"id", "address", "weight", "env", "version"}
 * (id and address required; weight 1..1000, default 1; env "prod"
 * (default) or "canary"; version 0..63 of an id's alphabet) into
 * *inst, zeroed first, cluster left empty.  Returns 0, or -1 with *err
 * ("bad_id" and "bad_address" besides the classes above).
 */
int ngx_http_tce_admin_add_parse(const char *buf, size_t len,
    ngx_tce_instance_t *inst, ngx_http_tce_admin_err_t *err);

/*
 * Parses a PUT body of an env's desired set: {"instances": [{"id",
 * "address", "weight", "version"}, ...]} (the env is the route's; ids
 * unique, "duplicate_id" otherwise).  Returns 0 with *inst a malloc'd
 * array of *n instances (NULL when empty; the caller frees it), env
 * set, cluster empty; or -1 with *err and nothing allocated.
 */
int ngx_http_tce_admin_set_parse(const char *buf, size_t len,
    unsigned env, ngx_tce_instance_t **inst, size_t *n,
    ngx_http_tce_admin_err_t *err);

/*
 * Parses a request's query string (without '?'): only "timeout=<t>",
 * <t> being digits with an optional unit ms, s (default), m or h, at
 * most NGX_HTTP_TCE_ADMIN_DRAIN_MAX.  Returns 1 with *ms when a timeout
 * is given, 0 when the query is empty, -1 with *err
 * ("unknown_field", "out_of_range").
 */
int ngx_http_tce_admin_query_parse(const char *q, size_t len, uint64_t *ms,
    ngx_http_tce_admin_err_t *err);


#endif /* _NGX_HTTP_TCE_ADMIN_INST_INPUT_H_INCLUDED_ */
