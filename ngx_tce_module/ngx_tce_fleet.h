/*
 * The fleet's shared policy as data (pure C, no nginx: unit tests link
 * it): what a snapshot read from Redis holds, its checks, and the cache
 * file's JSON form.
 *
 * In Redis, under the configured prefix P:
 *
 *   P canary    hash  "<service>/<cluster>" -> a policy object
 *                     {"epoch":0,"fallback":true,"weight_bp":2500}
 *   P override  hash  "<service>/<instance id>" -> the operator's
 *                     override of one instance
 *                     {"down":false,"drain":true,"weight":0}
 *                     (weight 0: none; an entry with nothing set is
 *                     deleted, not stored)
 *   P rev       hash  "<service>" -> its revision (the API's ETag),
 *                     bumped by a write of its policies or overrides
 *   P inst      hash  "<service>" -> the service's instance set as
 *                     written through the admin API (POST, DELETE, PUT
 *                     of an env's set): a state document of that one
 *                     service (ngx_tce_state.h), without overrides or
 *                     canary objects; a service without an entry keeps
 *                     the set of each node's state file
 *   P version   string, the fleet version: +1 on every write
 *   P events    pub/sub channel: the new version after each write
 *
 * Everything read from Redis is checked here; one bad entry refuses
 * the whole snapshot (the last applied one stays).
 */

#ifndef _NGX_TCE_FLEET_H_INCLUDED_
#define _NGX_TCE_FLEET_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "ngx_tce_types.h"
#include "ngx_tce_canary.h"
#include "ngx_tce_state.h"


#define NGX_TCE_FLEET_MAX        100000   /* entries of one kind */
#define NGX_TCE_FLEET_VALUE_MAX  512      /* bytes of one policy */


typedef struct {
    char                      service[NGX_TCE_SERVICE_LEN];
    char                      cluster[NGX_TCE_CLUSTER_LEN];
    ngx_tce_canary_policy_t   policy;
} ngx_tce_fleet_policy_t;


typedef struct {
    char                      service[NGX_TCE_SERVICE_LEN];
    uint64_t                  rev;
} ngx_tce_fleet_rev_t;


typedef struct ngx_tce_fleet_override_s {
    char                      service[NGX_TCE_SERVICE_LEN];
    char                      id[NGX_TCE_ID_LEN];
    uint16_t                  weight;       /* 0: none, else 1..1000 */
    uint8_t                   drain;
    uint8_t                   down;
} ngx_tce_fleet_override_t;


/* a service's instance set: st holds that one service */
typedef struct {
    char                      service[NGX_TCE_SERVICE_LEN];
    ngx_tce_state_t           st;
} ngx_tce_fleet_set_t;


typedef struct {
    uint64_t                  version;
    ngx_tce_fleet_policy_t   *policies;
    size_t                    npolicies;
    size_t                    npolicies_cap;
    ngx_tce_fleet_rev_t      *revs;
    size_t                    nrevs;
    size_t                    nrevs_cap;
    ngx_tce_fleet_override_t *overrides;
    size_t                    noverrides;
    size_t                    noverrides_cap;
    ngx_tce_fleet_set_t      *sets;
    size_t                    nsets;
    size_t                    nsets_cap;
} ngx_tce_fleet_t;


/*
 * Parses a decimal unsigned integer of len bytes (1..20 digits, no
 * sign, no blank, no overflow).  Returns 0 and *v, or -1.
 */
int ngx_tce_fleet_uint(const char *s, size_t len, uint64_t *v);

/*
 * Adds the policy of field "<service>/<cluster>" from its stored JSON
 * value.  Returns 0, or -1 with err ("<field>: reason", printable) and
 * nothing added.
 */
int ngx_tce_fleet_add_policy(ngx_tce_fleet_t *f, const char *field,
    size_t flen, const char *value, size_t vlen, char *err, size_t errlen);

/*
 * Parses an override's stored JSON value (vlen bytes): an object with
 * "weight" (0..1000), "drain" and "down" (booleans), each optional,
 * nothing else.  Returns 0 with *o's weight, drain and down set, or -1
 * with why (printable).
 */
int ngx_tce_fleet_override_parse(const char *value, size_t vlen,
    ngx_tce_fleet_override_t *o, char *why, size_t whylen);

/*
 * Adds the override of field "<service>/<instance id>" from its stored
 * JSON value.  Returns 0, or -1 with err and nothing added.
 */
int ngx_tce_fleet_add_override(ngx_tce_fleet_t *f, const char *field,
    size_t flen, const char *value, size_t vlen, char *err, size_t errlen);

/*
 * Decodes a service's instance set as stored in P inst: a state
 * document holding that one service (named service, slen bytes) and no
 * canary object; overrides in it are dropped (the fleet's are in P
 * override).  Returns 0 and *st, or -1 with why (printable) and *st
 * empty.
 */
int ngx_tce_fleet_set_decode(const char *service, size_t slen,
    const char *value, size_t vlen, ngx_tce_state_t *st, char *why,
    size_t whylen);

/*
 * The stored form of st's service (st holds one service): compact JSON
 * of a state document, keys sorted, overrides and canary objects left
 * out (st is changed so: its instances lose their overrides, its
 * clusters their canary).  Returns a malloc'd string, NULL when out of
 * memory.
 */
char *ngx_tce_fleet_set_encode(ngx_tce_state_t *st);

/*
 * Adds the instance set of field "<service>" from its stored value.
 * Returns 0, or -1 with err and nothing added.
 */
int ngx_tce_fleet_add_set(ngx_tce_fleet_t *f, const char *field,
    size_t flen, const char *value, size_t vlen, char *err, size_t errlen);

/* adds a service's revision; 0, or -1 with err */
int ngx_tce_fleet_add_rev(ngx_tce_fleet_t *f, const char *service,
    size_t slen, const char *value, size_t vlen, char *err, size_t errlen);

/* the revision of a service in the snapshot, 0 when it has none */
uint64_t ngx_tce_fleet_rev(const ngx_tce_fleet_t *f, const char *service,
    size_t len);

/*
 * The snapshot as the cache file's JSON text:
 *   {"version": V, "policies": {"<svc>/<cl>": {...}}, "revs": {...},
 *    "overrides": {"<svc>/<id>": {...}}, "sets": {"<svc>": {...}}}
 * Returns a malloc'd string (free it), NULL when out of memory.
 */
char *ngx_tce_fleet_encode(const ngx_tce_fleet_t *f);

/*
 * Reads the cache file's text (len bytes) into an empty *f with the
 * same checks as a snapshot from Redis ("overrides" and "sets" may be
 * absent: a cache written before they were shared).  Returns 0, or -1
 * with err and *f empty.
 */
int ngx_tce_fleet_decode(const char *text, size_t len, ngx_tce_fleet_t *f,
    char *err, size_t errlen);

/* frees what *f holds and empties it */
void ngx_tce_fleet_free(ngx_tce_fleet_t *f);

/*
 * An If-Match value for a fleet write: "\"<n>\"" (or W/"<n>") gives
 * 1 and *rev; "*" gives 0 (any); anything else -1.
 */
int ngx_tce_fleet_if_match(const char *v, size_t len, uint64_t *rev);


#endif /* _NGX_TCE_FLEET_H_INCLUDED_ */
