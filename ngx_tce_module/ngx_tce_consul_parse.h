/*
 * Consul payloads and the blocking-query loop as pure functions (no
 * nginx, no I/O): /v1/health/service and /v1/catalog/services bodies,
 * the index to send next, timeouts, backoff, and request URLs.
 * docs/consul.md states the Consul API rules implemented here.
 */

#ifndef _NGX_TCE_CONSUL_PARSE_H_INCLUDED_
#define _NGX_TCE_CONSUL_PARSE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ngx_tce_types.h"


#define NGX_TCE_CONSUL_ERR_LEN          160
#define NGX_TCE_CONSUL_MAX_ENTRIES      10000
#define NGX_TCE_CONSUL_MAX_ENTRY        (1024 * 1024)   /* bytes */
#define NGX_TCE_CONSUL_MAX_DEPTH        32

#define NGX_TCE_CONSUL_WAIT_DEFAULT_MS  300000      /* Consul: 5 min */
#define NGX_TCE_CONSUL_WAIT_MAX_MS      600000      /* Consul: 10 min */
#define NGX_TCE_CONSUL_TIMEOUT_MARGIN   5000        /* ms, see timeout */


/*
 * Called once per skipped entry of a health body, in entry order: n is
 * the entry's position in the array (0-based), id its instance id when
 * one could be built, else its Service.ID made printable and cut
 * short, else ""; reason a short English text.
 */
typedef void (*ngx_tce_consul_skip_pt)(void *data, size_t n,
    const char *id, const char *reason);


typedef struct {
    ngx_tce_instance_t       *instances;    /* malloc'd, or NULL if none */
    size_t                    ninstances;
    size_t                    nskipped;     /* bad entries, reported */
    size_t                    nexcluded;    /* critical, maintenance or
                                               weight 0: not routed */
    size_t                    nwarning;     /* routed at Weights.Warning */
    uint64_t                  weight_max;   /* largest Consul weight of
                                               the routed instances */
    char                      reason[NGX_TCE_CONSUL_ERR_LEN];
                                            /* first skip, "" if none */
} ngx_tce_consul_health_t;


typedef struct {
    char                    (*names)[NGX_TCE_SERVICE_LEN];
                                            /* malloc'd, sorted */
    size_t                    nnames;
    size_t                    nskipped;     /* tagged, not a P.S.M */
} ngx_tce_consul_names_t;


/*
 * Parses a /v1/health/service/<name> body (a JSON array of entries
 * {Node, Service, Checks}, fetched without passing=1) into the
 * instances to route, the way Consul DNS reads the same entries:
 *   state    from every check of the entry (node and service): all
 *            passing (or none) -> Weights.Passing; a warning and no
 *            critical -> Weights.Warning; a critical, or a maintenance
 *            check (_node_maintenance, _service_maintenance:*), or a
 *            weight of 0 -> excluded (counted in nexcluded, no error)
 *   id       "[peer:P/][ap:A/][ns:N/]<Node.Node>/<Service.ID>", the
 *            peer, partition and namespace only when set and not
 *            "default", Service.ID falling back to Service.Service;
 *            bytes outside the id alphabet, '%' and '/' written %XX;
 *            longer than NGX_TCE_ID_LEN - 1: cut to 110 bytes plus
 *            "~" and 16 hex digits of a hash of the whole id
 *   address  Service.Address, or Node.Address when that is empty;
 *            numeric IPv4/IPv6 only
 *   port     Service.Port (1..65535)
 *   weight   Service.Weights (Consul's 1/1 when absent or null; a
 *            missing member counts as 1); when the answer's largest
 *            routed weight exceeds NGX_TCE_WEIGHT_MAX, every weight
 *            is divided by their gcd and, if still too large, scaled
 *            so that the largest is NGX_TCE_WEIGHT_MAX (each >= 1);
 *            weights are never refused for being large
 *   cluster  Service.Meta.cluster, "default" when absent or empty
 *   env      Service.Meta.env "prod"/"canary", prod when absent/empty
 *   version  Service.Meta.version, "" when absent
 * state is up and the operator overrides are zero.  Only these fields
 * are checked; the rest (check Output, Notes, tags, other Meta) may
 * hold anything, NUL bytes included.  An entry with a bad or
 * mistyped used value, an unknown check status, invalid JSON inside
 * it (a bad token, a duplicate key, a NUL in a key), more than
 * NGX_TCE_CONSUL_MAX_ENTRY bytes, nesting deeper than
 * NGX_TCE_CONSUL_MAX_DEPTH, or an id that repeats an earlier entry's,
 * is skipped: reported through skip (may be NULL), counted in
 * res->nskipped, the first reason kept in res->reason; the rest is
 * applied.
 *
 * Memory: the body is split into entries by a scanner and each entry
 * parsed on its own, so beyond the body it takes one entry's tree
 * plus the instances.  Time: O(bytes + n log n).
 *
 * Returns 0 and fills *res (free it with ngx_tce_consul_health_free);
 * returns -1 when the body's structure is broken (truncated, strings
 * or brackets unbalanced, data after the array), its root is not an
 * array, it has more than NGX_TCE_CONSUL_MAX_ENTRIES entries, or
 * memory runs out: then err holds a message, *res is untouched,
 * nothing was reported and nothing is allocated.
 */
int ngx_tce_consul_parse_health(const char *body, size_t len,
    ngx_tce_consul_skip_pt skip, void *data, ngx_tce_consul_health_t *res,
    char *err, size_t errlen);

/* the entries of a service's last answer (ngx_tce_consul_memo.h) */
typedef struct ngx_tce_consul_memo_s  ngx_tce_consul_memo_t;

/*
 * ngx_tce_consul_parse_health() with the last answer's memo in *memo
 * (NULL: none): an entry whose bytes are those of an entry of the last
 * answer is taken from it, not read again.  When the body is parsed,
 * *memo is replaced by this answer's (NULL when it could not be made:
 * the next answer is read whole); when it is refused, *memo is left as
 * it was.  Free it with ngx_tce_consul_memo_free().
 */
int ngx_tce_consul_parse_health_memo(const char *body, size_t len,
    ngx_tce_consul_skip_pt skip, void *data, ngx_tce_consul_memo_t **memo,
    ngx_tce_consul_health_t *res, char *err, size_t errlen);

void ngx_tce_consul_memo_free(ngx_tce_consul_memo_t *memo);

/* frees what ngx_tce_consul_parse_health allocated; res is zeroed */
void ngx_tce_consul_health_free(ngx_tce_consul_health_t *res);

/*
 * Parses a /v1/catalog/services body ({"name": ["tag", ...], ...})
 * into the sorted names that carry tag (every name when tag is NULL;
 * compared as Consul's tag filter does, ignoring ASCII case; a null
 * tag list counts as no tag).
 * Tagged names that are not valid P.S.M service names are counted in
 * res->nskipped, not returned.  Returns 0 and fills *res (free it with
 * ngx_tce_consul_names_free); returns -1 with a message in err when
 * the body is not a JSON object of string arrays or memory runs out:
 * then *res is untouched and nothing is allocated.
 */
int ngx_tce_consul_parse_services(const char *body, size_t len,
    const char *tag, ngx_tce_consul_names_t *res, char *err,
    size_t errlen);

/* frees what ngx_tce_consul_parse_services allocated; res is zeroed */
void ngx_tce_consul_names_free(ngx_tce_consul_names_t *res);

/*
 * Formats a message into err (errlen may be 0), its bytes made
 * printable with ngx_tce_consul_make_printable(): the texts quote bodies.
 */
void ngx_tce_consul_err(char *err, size_t errlen, const char *fmt, ...);

/* replaces control and non-ASCII bytes of s with '?' */
void ngx_tce_consul_make_printable(char *s);

/*
 * The index to send with the next blocking query, from the
 * X-Consul-Index value of an answer (decimal, surrounding blanks
 * allowed) and prev, the index the answered query carried (0 for the
 * first one).  Consul's rules: an index lower than prev means the
 * server's history was reset, so the next query restarts at 0 (one
 * non-blocking query); an index of 0 is a server bug that would make
 * every query return at once, so it becomes 1.  Otherwise the next
 * index is the new one.  Returns 0 and sets *next; returns -1 when the
 * value is missing, empty, not a number or overflows, and leaves *next
 * unchanged.
 */
int ngx_tce_consul_next_index(uint64_t prev, const char *value,
    size_t len, uint64_t *next);

/*
 * The wait a query asks for: wait_ms, 0 meaning Consul's default
 * (5 min), capped at Consul's maximum (10 min).
 */
uint64_t ngx_tce_consul_wait(uint64_t wait_ms);

/*
 * The read timeout (ms) of a blocking query that asked for wait_ms:
 * the server may hold it for wait + wait/16 of jitter, so the timeout
 * is wait*17/16 (rounded up) plus NGX_TCE_CONSUL_TIMEOUT_MARGIN.
 */
uint64_t ngx_tce_consul_read_timeout(uint64_t wait_ms);

/*
 * Delay (ms) before retry number attempt (0 for the first retry) after
 * an error: min(cap, base * 2^attempt), of which the upper half is
 * jitter taken from rnd (any random value the caller supplies), so the
 * result lies in [d/2, d].  base 0 gives 0.
 */
uint64_t ngx_tce_consul_backoff(unsigned attempt, uint64_t base_ms,
    uint64_t cap_ms, uint32_t rnd);

/*
 * Rate limit of the watch loop: ms still to wait before a new query
 * may start, when the previous one started at last_ms, it is now_ms
 * and queries are at least min_ms apart.  A churning service thus
 * cannot make the loop spin.
 */
uint64_t ngx_tce_consul_rate_delay(uint64_t last_ms, uint64_t now_ms,
    uint64_t min_ms);

/*
 * URL-escapes src (RFC 3986: all but ALPHA DIGIT - . _ ~ become %XX)
 * into dst, NUL-terminated.  Returns the length written, or -1 when it
 * does not fit (dst then holds "").
 */
ssize_t ngx_tce_consul_escape(char *dst, size_t size, const char *src,
    size_t len);

/*
 * Builds
 *   <base>/v1/health/service/<service>[?tag=T][&dc=D][&index=I&wait=W]
 * (no passing=1: warning instances are routed at their Warning weight,
 * see ngx_tce_consul_parse_health)
 * base is "http[s]://host[:port]" (trailing '/' ignored), service,
 * tag and dc are escaped, index and wait only when index > 0, wait
 * from ngx_tce_consul_wait(wait_ms) in the largest exact unit ("5m",
 * "90s", "250ms").  tag and dc may be NULL or "".  Returns the length,
 * or -1 when an argument is bad or the URL does not fit in size (buf
 * then holds "").
 */
ssize_t ngx_tce_consul_health_url(char *buf, size_t size,
    const char *base, const char *service, const char *tag,
    const char *dc, uint64_t index, uint64_t wait_ms);

/* the same for <base>/v1/catalog/services[?dc=D][&index=I&wait=W] */
ssize_t ngx_tce_consul_services_url(char *buf, size_t size,
    const char *base, const char *dc, uint64_t index, uint64_t wait_ms);

/* the same for <base><path><escaped arg> (arg may be NULL), no query */
ssize_t ngx_tce_consul_path_url(char *buf, size_t size, const char *base,
    const char *path, const char *arg);


#endif /* _NGX_TCE_CONSUL_PARSE_H_INCLUDED_ */
