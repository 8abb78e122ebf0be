/*
 * The names closest to a mistyped one: a bounded Levenshtein distance,
 * one row of the table at a time.
 */

#include <string.h>

#include "ngx_tce_closest.h"


size_t
ngx_tce_closest_distance(const char *a, size_t alen, const char *b,
    size_t blen)
{
    size_t  i, j, diag, up, best;
    size_t  row[NGX_TCE_CLOSEST_LEN + 1];

    if (alen > NGX_TCE_CLOSEST_LEN) {
        alen = NGX_TCE_CLOSEST_LEN;
    }

    if (blen > NGX_TCE_CLOSEST_LEN) {
        blen = NGX_TCE_CLOSEST_LEN;
    }

    for (j = 0; j <= blen; j++) {
        row[j] = j;
    }

    for (i = 1; i <= alen; i++) {
        diag = row[0];
        row[0] = i;

        for (j = 1; j <= blen; j++) {
            up = row[j];

            best = diag + (a[i - 1] != b[j - 1]);

            if (up + 1 < best) {
                best = up + 1;
            }

            if (row[j - 1] + 1 < best) {
                best = row[j - 1] + 1;
            }

            diag = up;
            row[j] = best;
        }
    }

    return row[blen];
}


size_t
ngx_tce_closest(const char *name, const char *const *names, size_t n,
    size_t *out, size_t max)
{
    size_t  i, k, m, len, d;
    size_t  dist[16];

    if (max > sizeof(dist) / sizeof(dist[0])) {
        max = sizeof(dist) / sizeof(dist[0]);
    }

    len = strlen(name);
    m = 0;

    for (i = 0; i < n; i++) {
        d = ngx_tce_closest_distance(name, len, names[i], strlen(names[i]));

        /* insertion into the sorted out[0..m-1]; ties keep their order */
        for (k = m; k > 0 && dist[k - 1] > d; k--) {
            if (k < max) {
                dist[k] = dist[k - 1];
                out[k] = out[k - 1];
            }
        }

        if (k < max) {
            dist[k] = d;
            out[k] = i;

            if (m < max) {
                m++;
            }
        }
    }

    return m;
}
