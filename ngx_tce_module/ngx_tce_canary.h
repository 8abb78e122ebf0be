/*
 * Canary routing, the part that needs no nginx (pure C): the policy of
 * a service+cluster, the sticky bucket of a key, the exact per-worker
 * split, and the policy's JSON form (state file, admin API).
 *
 * The sticky bucket is defined so that any node, in any language,
 * computes the same one:
 *
 *   h = epoch ^ (len * M)             M = 0xc6a4a7935bd1e995
 *   for each 8-byte block k of the key, read little-endian, the last
 *   one padded with zero bytes:
 *       k *= M; k ^= k >> 47; k *= M; h ^= k; h *= M
 *   bucket = fmix64(h) mod 10000      (murmur3's finalizer)
 *
 * (MurmurHash64A with its tail mixed as a block and a stronger
 * finalizer).  A key goes to the canary if and only if bucket <
 * weight, so that raising the weight only moves keys from prod to
 * canary, and a new epoch deals the keys out afresh.
 */

#ifndef _NGX_TCE_CANARY_H_INCLUDED_
#define _NGX_TCE_CANARY_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "ngx_tce_types.h"
#include "ngx_tce_state.h"


#define NGX_TCE_CANARY_SCALE  10000     /* basis points in 100% */


typedef struct {
    uint64_t    epoch;          /* salt of the sticky buckets */
    uint32_t    weight;         /* canary share, 0..NGX_TCE_CANARY_SCALE */
    uint32_t    fallback;       /* 1: the other env serves when the
                                   chosen one has no usable instance */
} ngx_tce_canary_policy_t;


/*
 * The exact split of one worker: an accumulator in 0..SCALE-1 that
 * gains the weight on every request and gives SCALE back on every
 * canary request.  Over any SCALE consecutive requests with one weight
 * the canary count is exactly the weight (within 1 across a change of
 * weight), spread as evenly as it can be.
 */
typedef struct {
    uint32_t    acc;
} ngx_tce_canary_split_t;


/* the sticky bucket of a key under an epoch, 0..NGX_TCE_CANARY_SCALE-1 */
uint32_t ngx_tce_canary_bucket(const void *key, size_t len, uint64_t epoch);

/* NGX_TCE_ENV_CANARY iff the key's bucket is below the policy's weight */
unsigned ngx_tce_canary_sticky(const ngx_tce_canary_policy_t *p,
    const void *key, size_t len);

/* starts a split at a position of its own (seed: e.g. a random number) */
void ngx_tce_canary_split_init(ngx_tce_canary_split_t *s, uint32_t seed);

/* the env of the next request of the split, weight in basis points */
unsigned ngx_tce_canary_split_next(ngx_tce_canary_split_t *s,
    uint32_t weight);

/*
 * Parses a percentage "0".."100" with at most 2 decimals ("12.5",
 * "0.05", "100.00") into basis points.  Returns 0..10000, or -1.
 */
int ngx_tce_canary_weight_parse(const char *s, size_t len);

/*
 * An override value: "canary"/"always" -> NGX_TCE_ENV_CANARY,
 * "prod"/"never" -> NGX_TCE_ENV_PROD (case-insensitive), otherwise -1.
 */
int ngx_tce_canary_override_parse(const char *s, size_t len);

/*
 * Parses a policy object, e.g. the state file's per-cluster "canary":
 *
 *   { "weight_bp": 2500, "epoch": 3, "fallback": true }
 *
 * weight_bp (basis points, 0..10000) is required; epoch (integer >= 0)
 * defaults to 0, fallback to true; any other key is an error.  Returns
 * 0 and fills *p, or -1 with err = "key: reason" and *p untouched.
 * err may be NULL; it is always NUL-terminated.
 */
int ngx_tce_canary_parse_json(const char *text, ngx_tce_canary_policy_t *p,
    char *err, size_t errlen);

/*
 * The policy as a compact JSON object with sorted keys, in the form
 * ngx_tce_canary_parse_json() reads.  Returns a malloc'd string (free()
 * it), or NULL on allocation failure.
 */
char *ngx_tce_canary_encode_json(const ngx_tce_canary_policy_t *p);

/*
 * Checks every cluster's "canary" object of a decoded state file.
 * Returns 0, or -1 with err = "services.<svc>.clusters.<cl>.canary.
 * <key>: reason" for the first bad one.
 */
int ngx_tce_canary_check_state(const ngx_tce_state_t *st, char *err,
    size_t errlen);


#endif /* _NGX_TCE_CANARY_H_INCLUDED_ */
