/*
 * The change detector of the Consul watcher (pure C, no nginx): a
 * /v1/health/state/any body (every check of the datacenter, node
 * checks included) folded into one digest per service, so that a
 * blocking query on it tells which services' health changed without
 * one open query per service.  See docs/consul.md.
 */

#ifndef _NGX_TCE_CONSUL_DETECT_H_INCLUDED_
#define _NGX_TCE_CONSUL_DETECT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "ngx_tce_types.h"


typedef struct {
    char                      name[NGX_TCE_SERVICE_LEN];
    uint64_t                  digest;
} ngx_tce_consul_digest_t;


typedef struct {
    ngx_tce_consul_digest_t  *services;     /* malloc'd, sorted by name */
    size_t                    nservices;
    uint64_t                  nodes;        /* digest of the node checks */
    size_t                    nchecks;
} ngx_tce_consul_digests_t;


/*
 * Parses a /v1/health/state/<state> body (a JSON array of checks) into
 * one digest per ServiceName: a function of the set of its checks'
 * (Node, CheckID, Status, ModifyIndex), whatever their order; the
 * checks without a service (node checks) make res->nodes.  A service
 * name too long for the registry is ignored.  Memory is bounded by one
 * check's tree at a time plus the result.
 *
 * Returns 0 and fills *res (free it with ngx_tce_consul_digests_free);
 * -1 with a message in err when the body is not a JSON array of
 * objects, a check lacks a string Node/CheckID/Status or a numeric
 * ModifyIndex, or memory runs out: then *res is untouched.
 */
int ngx_tce_consul_parse_checks(const char *body, size_t len,
    ngx_tce_consul_digests_t *res, char *err, size_t errlen);

/*
 * The digest of service name in res: NGX_TCE_CONSUL_NO_CHECKS when it
 * has no check (then no answer can tell that it changed).  Never 0, so
 * that 0 can mean "never fetched".  O(log n).
 */
uint64_t ngx_tce_consul_digest(const ngx_tce_consul_digests_t *res,
    const char *name);

/* frees what ngx_tce_consul_parse_checks allocated; res is zeroed */
void ngx_tce_consul_digests_free(ngx_tce_consul_digests_t *res);


#define NGX_TCE_CONSUL_NO_CHECKS  0x9e3779b97f4a7c15ULL


#endif /* _NGX_TCE_CONSUL_DETECT_H_INCLUDED_ */
