/*
 * A JSON array split into its top-level values (pure C, no nginx), for
 * Consul answers read entry by entry.
 */

#ifndef _NGX_TCE_CONSUL_SPLIT_H_INCLUDED_
#define _NGX_TCE_CONSUL_SPLIT_H_INCLUDED_


#include <stddef.h>
#include <sys/types.h>


typedef struct {
    const char               *start;
    size_t                    len;
    size_t                    depth;        /* nesting: 0 for a scalar */
} ngx_tce_consul_span_t;


/*
 * Splits body [body, body + len), a JSON array with blanks around, into
 * its top-level values: *spans (malloc'd, NULL when the array is empty)
 * and *n.  The strings, their escapes and the brackets are followed,
 * nothing else is checked.  Returns 0, or -1 with err when the body is
 * empty, not an array, truncated, broken ("after entry N"), followed by
 * anything but blanks, or has more than max values; nothing is
 * allocated then.
 */
int ngx_tce_consul_split(const char *body, size_t len, size_t max,
    ngx_tce_consul_span_t **spans, size_t *n, char *err, size_t errlen);


/*
 * Where ngx_tce_consul_split_from() starts and may stop, for a body
 * that differs from an earlier one only in a middle part.
 */
typedef struct {
    size_t                    first;        /* values before from: 0 to
                                               start at the body's head */
    size_t                    from;         /* just after value first-1 */
    ssize_t                 (*join)(void *data, size_t end);
                                            /* NULL, or called at each
                                               value's end (an offset):
                                               >= 0 stops the split */
    void                     *data;
    ssize_t                   joined;       /* join's answer that
                                               stopped it, else -1 */
} ngx_tce_consul_resume_t;


/*
 * ngx_tce_consul_split() from r->from, the values before it already
 * known (r->first of them; the count in messages and max includes
 * them), stopping where r->join says the rest is known too.  *spans
 * holds the values split here only.
 */
int ngx_tce_consul_split_from(const char *body, size_t len, size_t max,
    ngx_tce_consul_resume_t *r, ngx_tce_consul_span_t **spans, size_t *n,
    char *err, size_t errlen);


#endif /* _NGX_TCE_CONSUL_SPLIT_H_INCLUDED_ */
