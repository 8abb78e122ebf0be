/*
 * The last answer's entries and what each gave (pure C, no nginx): see
 * ngx_tce_consul_memo.h.
 *
 * An entry is taken from the memo only when its bytes are those of an
 * entry of the last answer, compared whole (no hash that a check's
 * output could be made to collide with): reading an entry depends on
 * its bytes alone, so the result is the same.  A flapping check changes
 * one entry of a thousand; the others cost a memcmp and a copy.
 */

#include <stdlib.h>
#include <string.h>

#include "ngx_tce_consul_memo.h"


static int ngx_tce_consul_memo_is(ngx_tce_consul_memo_t *old, size_t k,
    const char *s, size_t len);


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
