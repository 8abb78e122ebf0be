/*
 * Validation of the registry's names and values (pure C, no nginx).
 * Every input from outside goes through these before it reaches the
 * zone: state file, Consul bodies, admin requests, Redis replies.
 */

#ifndef _NGX_TCE_INSTANCE_H_INCLUDED_
#define _NGX_TCE_INSTANCE_H_INCLUDED_


#include "ngx_tce_types.h"


/* returns 1 when name is a P.S.M ("a.b.c": [a-z0-9_-]+, three parts) */
int ngx_tce_service_name_valid(const char *name, size_t len);

/* returns 1 for a cluster name: [A-Za-z0-9_.-]{1,63} */
int ngx_tce_cluster_name_valid(const char *name, size_t len);

/* returns 1 for an instance id: printable, no space/quote, 1..127 */
int ngx_tce_id_valid(const char *id, size_t len);

/* returns 1 for a version label: same alphabet as an id, 0..63 */
int ngx_tce_version_valid(const char *v, size_t len);

/*
 * Parses a numeric "IPv4:port" or "[IPv6]:port" (no host names: the
 * request path never resolves).  On success fills inst->sockaddr,
 * inst->socklen and inst->addr (canonical text) and returns 0; on
 * error returns -1 and changes nothing.
 */
int ngx_tce_addr_parse(const char *text, size_t len,
    ngx_tce_instance_t *inst);

/* same, from a host (IPv4/IPv6 literal, no brackets) and a port */
int ngx_tce_addr_set(const char *host, size_t len, long port,
    ngx_tce_instance_t *inst);

/* sorts inst[0..n-1] by id (strcmp): the order a zone stores a set in */
void ngx_tce_instance_sort(ngx_tce_instance_t *inst, size_t n);

/* "prod"/"canary" -> NGX_TCE_ENV_*, or -1 */
int ngx_tce_env_parse(const char *s, size_t len);
const char *ngx_tce_env_name(unsigned env);

/* "up"/"draining"/"down" -> NGX_TCE_STATE_*, or -1 */
int ngx_tce_state_parse(const char *s, size_t len);
const char *ngx_tce_state_name(unsigned state);

/* copies a bounded string, NUL-terminated; returns -1 if it won't fit */
int ngx_tce_strlcpy(char *dst, size_t size, const char *src, size_t len);

/* the weight routing uses: operator override first, 0 if not routable */
unsigned ngx_tce_instance_weight(const ngx_tce_instance_t *inst);

/* the state after overrides: down > draining (or being removed) > up */
unsigned ngx_tce_instance_state(const ngx_tce_instance_t *inst);


#endif /* _NGX_TCE_INSTANCE_H_INCLUDED_ */
