/*
 * API diff: comparing a canary's answer with prod's (pure C, no nginx).
 *
 * As Diffy does, three answers to the same request are compared: the
 * client's own prod answer, a second prod answer and the canary's.  A
 * part that differs between the two prod answers is prod's own noise
 * (a timestamp, a request id, a random order): a difference there
 * between canary and prod is not counted.  Compared, in order: the
 * status, the headers (but the hop-by-hop ones, those nginx replaces and
 * the ignored ones), the body; a JSON body field by field (key order
 * does not matter), any other body byte by byte.
 */

#ifndef _NGX_TCE_DIFF_COMPARE_H_INCLUDED_
#define _NGX_TCE_DIFF_COMPARE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define NGX_TCE_DIFF_MATCH      0
#define NGX_TCE_DIFF_MISMATCH   1
#define NGX_TCE_DIFF_ERROR      2
#define NGX_TCE_DIFF_NRESULTS   3

/* the answers' headers kept for the comparison */
#define NGX_TCE_DIFF_MAX_HEADERS  64

/* sizes of an outcome's texts, NUL included */
#define NGX_TCE_DIFF_WHAT_LEN   128
#define NGX_TCE_DIFF_SNIP_LEN   136     /* 32 bytes, each up to "\xHH" */
#define NGX_TCE_DIFF_SNIP_CUT   32


typedef struct {
    const char               *name;         /* lower case */
    size_t                    name_len;
    const char               *value;
    size_t                    value_len;
} ngx_tce_diff_header_t;


typedef struct {
    unsigned                  status;
    const ngx_tce_diff_header_t  *headers;
    size_t                    nheaders;
    const char               *body;         /* its first max_body bytes */
    size_t                    len;
} ngx_tce_diff_answer_t;


typedef struct {
    const char              **names;        /* lower case */
    size_t                   *lens;
    size_t                    n;
} ngx_tce_diff_ignore_t;


typedef struct {
    int                       result;       /* MATCH or MISMATCH */
    unsigned                  noise;        /* differences set aside */
    uint64_t                  prod_digest;
    uint64_t                  canary_digest;
    char                      what[NGX_TCE_DIFF_WHAT_LEN];
    char                      prod[NGX_TCE_DIFF_SNIP_LEN];
    char                      canary[NGX_TCE_DIFF_SNIP_LEN];
} ngx_tce_diff_outcome_t;


/*
 * Compares canary with prod, prod2 telling prod's noise apart.  out
 * gets the result; for a mismatch, the first difference that is not
 * noise: what ("status", "header <name>", "body at byte <n>",
 * "body $.a.b[2]"), and the prod and canary sides of it, cut to
 * NGX_TCE_DIFF_SNIP_CUT bytes and made printable.  out->noise counts
 * the differences set aside as noise.  Bodies that parse as JSON (an
 * object or an array) are compared as JSON; anything else as bytes.
 * Returns out->result.
 */
int ngx_tce_diff_compare(const ngx_tce_diff_answer_t *prod,
    const ngx_tce_diff_answer_t *prod2, const ngx_tce_diff_answer_t *canary,
    const ngx_tce_diff_ignore_t *ignore, ngx_tce_diff_outcome_t *out);

/* the digest shown for a body: 64-bit FNV-1a of its bytes */
uint64_t ngx_tce_diff_digest(const char *p, size_t len);

/* "match", "mismatch", "error" */
const char *ngx_tce_diff_result_name(int result);


#endif /* _NGX_TCE_DIFF_COMPARE_H_INCLUDED_ */
