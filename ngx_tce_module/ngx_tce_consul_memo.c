/*
 * The last answer's entries and what each gave (pure C, no nginx): see
 * ngx_tce_consul_memo.h.
 *
 * An entry is taken from the memo only when its bytes are those of an
 * entry of the last answer, compared whole (no hash that a check's
 * output could be made to collide with): reading an entry depends on
 * its bytes alone, so the result is the same.  A flapping check changes
 * one entry of a thousand; the others cost a memcmp and a copy.
 *
 * Nor is all of the answer split again: the entries that end before
 * the first byte that differs from the last answer are the same, and
 * so are those after the first entry's end found in the bytes the two
 * answers end with (from there the scanner meets the same bytes in the
 * same state).  Only the part between is scanned.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_tce_consul_memo.h"


static int ngx_tce_consul_memo_is(ngx_tce_consul_memo_t *old, size_t k,
    const char *s, size_t len);
static size_t ngx_tce_consul_memo_head(const char *a, const char *b,
    size_t n);
static size_t ngx_tce_consul_memo_tail(const char *a, const char *b,
    size_t n);
static ssize_t ngx_tce_consul_memo_join(void *data, size_t end);


ngx_tce_consul_memo_t *
ngx_tce_consul_memo_create(const char *body, size_t len, size_t n)
{
    ngx_tce_consul_memo_t  *memo;

    if (len > NGX_TCE_CONSUL_MEMO_MAX) {
        return NULL;
    }

    memo = calloc(1, sizeof(ngx_tce_consul_memo_t));
    if (memo == NULL) {
        return NULL;
    }

    memo->body = malloc(len + 1);
    memo->entries = n ? malloc(n * sizeof(ngx_tce_consul_memo_entry_t))
                      : NULL;

    if (memo->body == NULL || (n && memo->entries == NULL)) {
        ngx_tce_consul_memo_free(memo);
        return NULL;
    }

    memcpy(memo->body, body, len);
    memo->body[len] = '\0';
    memo->len = len;
    memo->size = n;

    return memo;
}


int
ngx_tce_consul_memo_split(ngx_tce_consul_memo_t *old, const char *body,
    size_t len, size_t max, ngx_tce_consul_span_t **spans,
    ngx_tce_consul_memo_entry_t ***known, size_t *n, char *err,
    size_t errlen)
{
    size_t                         i, k, head, tail, mid, rest, total, least;
    ngx_tce_consul_span_t         *s, *all;
    ngx_tce_consul_resume_t        r;
    ngx_tce_consul_memo_entry_t  **kn, *e;

    *known = NULL;

    if (old == NULL) {
        return ngx_tce_consul_split(body, len, max, spans, n, err, errlen);
    }

    memset(&r, 0, sizeof(ngx_tce_consul_resume_t));

    least = len < old->len ? len : old->len;
    head = ngx_tce_consul_memo_head(body, old->body, least);
    tail = ngx_tce_consul_memo_tail(body + len, old->body + old->len,
                                    least - head);

    /* old's entries whose bytes and end all lie in the head */

    for (k = 0; k < old->n && old->entries[k].off + old->entries[k].len
                              < head; k++)
    {
        /* void */
    }

    if (k) {
        r.first = k;
        r.from = old->entries[k - 1].off + old->entries[k - 1].len;
    }

    old->tail = len - tail;
    old->delta = (ssize_t) len - (ssize_t) old->len;
    r.join = ngx_tce_consul_memo_join;
    r.data = old;

    if (ngx_tce_consul_split_from(body, len, max, &r, &s, &mid, err, errlen)
        != 0)
    {
        return -1;
    }

    rest = r.joined >= 0 ? old->n - (size_t) r.joined - 1 : 0;
    total = k + mid + rest;

    if (total > max) {
        free(s);
        snprintf(err, errlen, "more than %zu entries", max);
        return -1;
    }

    *spans = NULL;
    *n = total;

    if (total == 0) {
        return 0;
    }

    all = malloc(total * sizeof(ngx_tce_consul_span_t));
    kn = calloc(total, sizeof(ngx_tce_consul_memo_entry_t *));

    if (all == NULL || kn == NULL) {
        free(all);
        free(kn);
        free(s);
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    for (i = 0; i < k; i++) {
        e = &old->entries[i];
        all[i].start = body + e->off;
        all[i].len = e->len;
        all[i].depth = 0;
        kn[i] = e;
    }

    if (mid) {
        memcpy(&all[k], s, mid * sizeof(ngx_tce_consul_span_t));
    }

    free(s);

    for (i = 0; i < rest; i++) {
        e = &old->entries[r.joined + 1 + i];
        all[k + mid + i].start = body + (ssize_t) e->off + old->delta;
        all[k + mid + i].len = e->len;
        all[k + mid + i].depth = 0;
        kn[k + mid + i] = e;
    }

    *spans = all;
    *known = kn;

    return 0;
}


/* how many bytes a and b start with in common, of n */
static size_t
ngx_tce_consul_memo_head(const char *a, const char *b, size_t n)
{
    size_t    i;
    uint64_t  x, y;

    i = 0;

    while (n - i >= 8) {
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);

        if (x != y) {
            break;
        }

        i += 8;
    }

    while (i < n && a[i] == b[i]) {
        i++;
    }

    return i;
}


/* how many bytes the ones before a and b end with in common, of n */
static size_t
ngx_tce_consul_memo_tail(const char *a, const char *b, size_t n)
{
    size_t    i;
    uint64_t  x, y;

    i = 0;

    while (n - i >= 8) {
        memcpy(&x, a - i - 8, 8);
        memcpy(&y, b - i - 8, 8);

        if (x != y) {
            break;
        }

        i += 8;
    }

    while (i < n && a[-1 - (ssize_t) i] == b[-1 - (ssize_t) i]) {
        i++;
    }

    return i;
}


/* the entry of old that ends where a value of the new body ends */
static ssize_t
ngx_tce_consul_memo_join(void *data, size_t end)
{
    size_t                  lo, hi, mid, at, e;
    ngx_tce_consul_memo_t  *old;

    old = data;

    if (end < old->tail) {
        return -1;
    }

    at = (size_t) ((ssize_t) end - old->delta);
    lo = 0;
    hi = old->n;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        e = old->entries[mid].off + old->entries[mid].len;

        if (e == at) {
            return (ssize_t) mid;
        }

        if (e < at) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    return -1;
}


ngx_tce_consul_memo_entry_t *
ngx_tce_consul_memo_find(ngx_tce_consul_memo_t *old, const char *s,
    size_t len)
{
    size_t  k;

    k = old->next;

    if (ngx_tce_consul_memo_is(old, k, s, len)) {
        goto found;
    }

    k = old->next + 1;

    if (ngx_tce_consul_memo_is(old, k, s, len)) {
        goto found;
    }

    if (old->next == 0) {
        return NULL;
    }

    k = old->next - 1;

    if (ngx_tce_consul_memo_is(old, k, s, len)) {
        goto found;
    }

    /* not found: the next entry is looked for after this one */
    old->next++;

    return NULL;

found:

    old->next = k + 1;
    old->hits++;

    return &old->entries[k];
}


static int
ngx_tce_consul_memo_is(ngx_tce_consul_memo_t *old, size_t k, const char *s,
    size_t len)
{
    ngx_tce_consul_memo_entry_t  *e;

    if (k >= old->n) {
        return 0;
    }

    e = &old->entries[k];

    return e->len == len && memcmp(old->body + e->off, s, len) == 0;
}


int
ngx_tce_consul_memo_add(ngx_tce_consul_memo_t *memo, size_t off,
    size_t len, const ngx_tce_consul_memo_entry_t *e)
{
    ngx_tce_consul_memo_entry_t  *to;

    if (memo->n == memo->size) {
        return -1;
    }

    to = &memo->entries[memo->n];
    *to = *e;
    to->off = off;
    to->len = len;
    to->reason = NULL;

    if (e->rc == -1) {
        to->reason = strdup(e->reason ? e->reason : "");
        if (to->reason == NULL) {
            return -1;
        }
    }

    memo->n++;

    return 0;
}


void
ngx_tce_consul_memo_free(ngx_tce_consul_memo_t *memo)
{
    size_t  i;

    if (memo == NULL) {
        return;
    }

    for (i = 0; i < memo->n; i++) {
        free(memo->entries[i].reason);
    }

    free(memo->entries);
    free(memo->body);
    free(memo);
}
