/*
 * A pull reader over one JSON text (pure C, no nginx, no allocation):
 * the caller walks the objects and arrays it uses, reads the scalars
 * it needs, and skips every other value, which is checked against the
 * JSON grammar (RFC 8259) but never built.  Reading a 1.3 MB Consul
 * answer this way costs a pass over its bytes, where building every
 * value as a tree cost about ten times as much.
 *
 * What it checks: the grammar (tokens, strings and their escapes, no
 * raw control byte in a string, numbers, nesting up to
 * NGX_TCE_JSON_MAX_DEPTH, nothing after the value).  What it leaves to
 * the caller: duplicate keys and the range of numbers, which only
 * matter in the values a caller reads; bytes that are not UTF-8,
 * which go through as they are.
 */

#ifndef _NGX_TCE_JSON_H_INCLUDED_
#define _NGX_TCE_JSON_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define NGX_TCE_JSON_MAX_DEPTH   64

/* value types; ABSENT is what a member never seen keeps (zeroed) */
#define NGX_TCE_JSON_ABSENT      0
#define NGX_TCE_JSON_NULL        1
#define NGX_TCE_JSON_BOOL        2
#define NGX_TCE_JSON_NUMBER      3
#define NGX_TCE_JSON_STRING      4
#define NGX_TCE_JSON_OBJECT      5
#define NGX_TCE_JSON_ARRAY       6


typedef struct {
    unsigned                  type;
    unsigned                  integer;  /* NUMBER: an integer in int64 */
    int64_t                   i;        /* its value */
    const char               *s;        /* STRING: decoded, NUL-ended */
    size_t                    len;      /* its bytes, NULs included */
} ngx_tce_json_value_t;


typedef struct {
    const char               *start;
    const char               *p;
    const char               *last;
    char                     *scratch;  /* decoded strings go here */
    size_t                    used;
    size_t                    size;
    const char               *err;      /* what is wrong at p, or NULL */
} ngx_tce_json_t;


/*
 * Starts reading the text [s, s + len).  Strings read as scalars are
 * decoded into scratch: size len + 1 always suffices (a decoded string
 * and its NUL never take more than its quoted form).
 */
void ngx_tce_json_init(ngx_tce_json_t *j, const char *s, size_t len,
    char *scratch, size_t size);

/*
 * The type of the next value, from its first byte, without reading it;
 * ABSENT with j->err set when no value can start there.
 */
unsigned ngx_tce_json_type(ngx_tce_json_t *j);

/*
 * Reads the next value into v: a scalar whole; an object or an array
 * only as its type, skipped (use ngx_tce_json_member/_element to go
 * in).  Returns 0, or -1 with j->err.
 */
int ngx_tce_json_read(ngx_tce_json_t *j, ngx_tce_json_value_t *v);

/* skips the next value whole; returns 0, or -1 with j->err */
int ngx_tce_json_skip(ngx_tce_json_t *j);

/*
 * Walks an object: with *n == 0 the next value must be an object, and
 * is entered.  Returns 1 with the next member's key decoded into key
 * (cut to ksize - 1 bytes, NUL-ended; *klen its whole length) and the
 * reader at its value, which the caller reads or skips; *n counts the
 * members.  Returns 0 after the closing brace, -1 with j->err.
 */
int ngx_tce_json_member(ngx_tce_json_t *j, size_t *n, char *key,
    size_t ksize, size_t *klen);

/* walks an array the same way: 1 with the reader at an element */
int ngx_tce_json_element(ngx_tce_json_t *j, size_t *n);

/* after the value: returns 0 when only blanks remain, else -1 */
int ngx_tce_json_end(ngx_tce_json_t *j);

/* where the reader stands, from 1, for messages */
size_t ngx_tce_json_column(ngx_tce_json_t *j);


#endif /* _NGX_TCE_JSON_H_INCLUDED_ */
