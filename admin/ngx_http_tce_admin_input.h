/*
 * The admin API's input checks that need no nginx (pure C): request
 * bodies, path segments, bearer tokens.  Every refusal comes with a
 * short machine code and a printable text for the error answer.
 */

#ifndef _NGX_HTTP_TCE_ADMIN_INPUT_H_INCLUDED_
#define _NGX_HTTP_TCE_ADMIN_INPUT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "ngx_tce_canary.h"


#define NGX_HTTP_TCE_ADMIN_TEXT_LEN  256


/* why an input was refused: code as in the error answer, text quoting
 * the input printable-only, NUL-terminated */
typedef struct {
    const char               *code;
    char                      text[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
} ngx_http_tce_admin_err_t;


/* a PUT of a cluster's canary policy, as asked */
typedef struct {
    int32_t                   weight;       /* basis points, -1: not given */
    int                       fallback;     /* 0, 1, -1: not given */
    int                       rollback;     /* 1: weight 0, new epoch */
} ngx_http_tce_admin_canary_req_t;


/*
 * Parses a canary PUT body of len bytes:
 *
 *   { "weight": 12.5 }            percent, up to 2 decimals (number or
 *                                 string), 0..100
 *   { "weight_bp": 1250 }         basis points, 0..10000
 *   { "fallback": false }         with either of the above, or alone
 *   { "rollback": true }          weight 0 and a new epoch
 *
 * At most one of weight and weight_bp; rollback excludes both; at
 * least one key.  Any other key is refused.  Returns 0 and fills
 * *req, or -1 with *err filled (code "invalid_json", "unknown_field",
 * "wrong_type", "out_of_range", "conflict" or "missing_field").
 */
int ngx_http_tce_admin_canary_parse(const char *buf, size_t len,
    ngx_http_tce_admin_canary_req_t *req, ngx_http_tce_admin_err_t *err);

/*
 * The policy a canary request leads to from the current one: weight
 * and fallback as asked (else kept), rollback = weight 0 and epoch + 1.
 */
void ngx_http_tce_admin_canary_apply(
    const ngx_http_tce_admin_canary_req_t *req,
    const ngx_tce_canary_policy_t *cur, ngx_tce_canary_policy_t *next);

/*
 * Compares a presented token with a configured one in time that
 * depends only on the lengths of the two (never on where they first
 * differ).  Returns 1 when equal.
 */
int ngx_http_tce_admin_token_equal(const char *given, size_t glen,
    const char *token, size_t tlen);

/*
 * Parses one line of a token file: "<token>" or "<token> <name>"
 * (spaces or tabs between, surrounding blanks ignored; a line that is
 * empty or starts with '#' is skipped).  The token is 16..256 bytes of
 * printable ASCII without blanks; the name 1..64 of [A-Za-z0-9_.@-].
 * Returns 1 with the token and name (name_len 0 when none) as offsets
 * into line, 0 for a skipped line, -1 for a bad line with *err.
 */
int ngx_http_tce_admin_token_line(const char *line, size_t len,
    size_t *tok, size_t *tok_len, size_t *name, size_t *name_len,
    ngx_http_tce_admin_err_t *err);

/*
 * Parses an If-Match value against an entity tag "\"<n>\"" (or *).
 * Returns 1 when it matches generation, 0 when not.
 */
int ngx_http_tce_admin_if_match(const char *v, size_t len,
    uint64_t generation);


#endif /* _NGX_HTTP_TCE_ADMIN_INPUT_H_INCLUDED_ */
