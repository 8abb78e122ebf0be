/*
 * A JSON array split into its top-level values (pure C, no nginx), for
 * Consul answers read entry by entry.
 */

#ifndef _NGX_TCE_CONSUL_SPLIT_H_INCLUDED_
#define _NGX_TCE_CONSUL_SPLIT_H_INCLUDED_


#include <stddef.h>


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


#endif /* _NGX_TCE_CONSUL_SPLIT_H_INCLUDED_ */
