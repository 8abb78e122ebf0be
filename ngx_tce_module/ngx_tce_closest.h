/*
 * The names closest to a mistyped one (pure C): for the warnings of
 * "nginx -t" that name what the state file has instead.
 */

#ifndef _NGX_TCE_CLOSEST_H_INCLUDED_
#define _NGX_TCE_CLOSEST_H_INCLUDED_


#include <stddef.h>


/* names are compared on their first bytes only: the cost stays bounded */
#define NGX_TCE_CLOSEST_LEN  64


/*
 * The edit distance (Levenshtein: insertions, deletions, substitutions)
 * between the first NGX_TCE_CLOSEST_LEN bytes of a and of b.
 */
size_t ngx_tce_closest_distance(const char *a, size_t alen, const char *b,
    size_t blen);

/*
 * Writes to out[] the indexes of the at most max names of names[0..n-1]
 * closest to name, closest first (ties in the order given).  Returns
 * how many were written: the smaller of n and max.  Changes nothing
 * else; O(n * max) beyond the distances.
 */
size_t ngx_tce_closest(const char *name, const char *const *names, size_t n,
    size_t *out, size_t max);


#endif /* _NGX_TCE_CLOSEST_H_INCLUDED_ */
