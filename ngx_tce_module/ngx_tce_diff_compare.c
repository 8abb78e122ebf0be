/*
 * API diff: comparing three answers (pure C, no nginx; see
 * ngx_tce_diff_compare.h).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ngx_tce_diff_compare.h"
#include "ngx_tce_text.h"


/* deeper JSON is compared as one value */
#define NGX_TCE_DIFF_MAX_DEPTH  32


typedef struct {
    ngx_tce_diff_outcome_t   *out;
    char                      path[NGX_TCE_DIFF_WHAT_LEN - 8];
    size_t                    len;
    int                       found;        /* a difference recorded */
} ngx_tce_diff_walk_t;


static void ngx_tce_diff_headers(const ngx_tce_diff_answer_t *a,
    const ngx_tce_diff_answer_t *b, const ngx_tce_diff_answer_t *c,
    const ngx_tce_diff_ignore_t *ignore, ngx_tce_diff_outcome_t *out);
static int ngx_tce_diff_header_skip(const ngx_tce_diff_header_t *h,
    const ngx_tce_diff_ignore_t *ignore);
static int ngx_tce_diff_header_seen(const ngx_tce_diff_answer_t *x,
    size_t upto, const ngx_tce_diff_header_t *h);
static int ngx_tce_diff_header_same(const ngx_tce_diff_answer_t *x,
    const ngx_tce_diff_answer_t *y, const ngx_tce_diff_header_t *h);
static size_t ngx_tce_diff_header_value(const ngx_tce_diff_answer_t *x,
    const ngx_tce_diff_header_t *h, const char **first);
static void ngx_tce_diff_body(const ngx_tce_diff_answer_t *a,
    const ngx_tce_diff_answer_t *b, const ngx_tce_diff_answer_t *c,
    ngx_tce_diff_outcome_t *out);
static json_t *ngx_tce_diff_json(const ngx_tce_diff_answer_t *x);
static void ngx_tce_diff_walk(ngx_tce_diff_walk_t *w, json_t *a, json_t *b,
    json_t *c, int depth);
static void ngx_tce_diff_walk_key(ngx_tce_diff_walk_t *w, json_t *a,
    json_t *b, json_t *c, const char *key, int depth);
static int ngx_tce_diff_json_same(json_t *x, json_t *y);
static void ngx_tce_diff_snip_json(char *dst, json_t *v);
static void ngx_tce_diff_record(ngx_tce_diff_outcome_t *out,
    const char *what, const char *p, size_t plen, const char *c,
    size_t clen);


/* never compared: hop-by-hop, or nginx's own in the client's answer */
static const char  *ngx_tce_diff_skipped[] = {
    "connection", "keep-alive", "transfer-encoding", "content-length",
    "date", "server", "te", "trailer", "upgrade", "proxy-connection",
    "x-pad", NULL
};


int
ngx_tce_diff_compare(const ngx_tce_diff_answer_t *prod,
    const ngx_tce_diff_answer_t *prod2, const ngx_tce_diff_answer_t *canary,
    const ngx_tce_diff_ignore_t *ignore, ngx_tce_diff_outcome_t *out)
{
    char  p[16], c[16];

    memset(out, 0, sizeof(ngx_tce_diff_outcome_t));

    out->result = NGX_TCE_DIFF_MATCH;
    out->prod_digest = ngx_tce_diff_digest(prod->body, prod->len);
    out->canary_digest = ngx_tce_diff_digest(canary->body, canary->len);

    if (prod->status != canary->status) {
        if (prod->status != prod2->status) {
            out->noise++;

        } else {
            (void) snprintf(p, sizeof(p), "%u", prod->status);
            (void) snprintf(c, sizeof(c), "%u", canary->status);
            ngx_tce_diff_record(out, "status", p, strlen(p), c, strlen(c));
        }
    }

    ngx_tce_diff_headers(prod, prod2, canary, ignore, out);
    ngx_tce_diff_body(prod, prod2, canary, out);

    return out->result;
}


uint64_t
ngx_tce_diff_digest(const char *p, size_t len)
{
    size_t    i;
    uint64_t  h;

    h = 0xcbf29ce484222325ULL;

    for (i = 0; i < len; i++) {
        h ^= (unsigned char) p[i];
        h *= 0x100000001b3ULL;
    }

    return h;
}


const char *
ngx_tce_diff_result_name(int result)
{
    static const char  *names[] = { "match", "mismatch", "error" };

    return (result >= 0 && result < NGX_TCE_DIFF_NRESULTS)
           ? names[result] : "error";
}


/*
 * Per header name present in prod or the canary (each name once, its
 * values joined in order): a difference between them is noise when
 * prod2's value differs from prod's too.  O(n^2) over at most
 * NGX_TCE_DIFF_MAX_HEADERS headers per answer.
 */
static void
ngx_tce_diff_headers(const ngx_tce_diff_answer_t *a,
    const ngx_tce_diff_answer_t *b, const ngx_tce_diff_answer_t *c,
    const ngx_tce_diff_ignore_t *ignore, ngx_tce_diff_outcome_t *out)
{
    char                          what[NGX_TCE_DIFF_WHAT_LEN];
    size_t                        i, k, alen, clen, nlen;
    const char                   *av, *cv;
    const ngx_tce_diff_answer_t  *x, *sides[2];
    const ngx_tce_diff_header_t  *h;

    sides[0] = a;
    sides[1] = c;

    for (k = 0; k < 2; k++) {
        x = sides[k];

        for (i = 0; i < x->nheaders; i++) {
            h = &x->headers[i];

            if (ngx_tce_diff_header_skip(h, ignore)
                || ngx_tce_diff_header_seen(x, i, h)
                || (k == 1 && ngx_tce_diff_header_seen(a, a->nheaders, h)))
            {
                continue;
            }

            if (ngx_tce_diff_header_same(a, c, h)) {
                continue;
            }

            if (!ngx_tce_diff_header_same(a, b, h)) {
                out->noise++;
                continue;
            }

            alen = ngx_tce_diff_header_value(a, h, &av);
            clen = ngx_tce_diff_header_value(c, h, &cv);

            nlen = h->name_len < 64 ? h->name_len : 64;
            (void) snprintf(what, sizeof(what), "header ");
            (void) ngx_tce_text_escape(what + 7, sizeof(what) - 7, h->name,
                                       nlen);

            ngx_tce_diff_record(out, what, av ? av : "(absent)",
                                av ? alen : 8, cv ? cv : "(absent)",
                                cv ? clen : 8);
        }
    }
}


static int
ngx_tce_diff_header_skip(const ngx_tce_diff_header_t *h,
    const ngx_tce_diff_ignore_t *ignore)
{
    size_t  i;

    for (i = 0; ngx_tce_diff_skipped[i]; i++) {
        if (h->name_len == strlen(ngx_tce_diff_skipped[i])
            && memcmp(h->name, ngx_tce_diff_skipped[i], h->name_len) == 0)
        {
            return 1;
        }
    }

    if (h->name_len >= 8 && memcmp(h->name, "x-accel-", 8) == 0) {
        return 1;
    }

    for (i = 0; ignore && i < ignore->n; i++) {
        if (h->name_len == ignore->lens[i]
            && memcmp(h->name, ignore->names[i], h->name_len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* 1 if x has a header named as h among its first upto headers */
static int
ngx_tce_diff_header_seen(const ngx_tce_diff_answer_t *x, size_t upto,
    const ngx_tce_diff_header_t *h)
{
    size_t  i;

    for (i = 0; i < upto; i++) {
        if (x->headers[i].name_len == h->name_len
            && memcmp(x->headers[i].name, h->name, h->name_len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* 1 if x and y have the same values, in the same order, for h's name */
static int
ngx_tce_diff_header_same(const ngx_tce_diff_answer_t *x,
    const ngx_tce_diff_answer_t *y, const ngx_tce_diff_header_t *h)
{
    size_t                        i, j;
    const ngx_tce_diff_header_t  *hx, *hy;

    i = 0;
    j = 0;

    for ( ;; ) {
        while (i < x->nheaders
               && (x->headers[i].name_len != h->name_len
                   || memcmp(x->headers[i].name, h->name, h->name_len)))
        {
            i++;
        }

        while (j < y->nheaders
               && (y->headers[j].name_len != h->name_len
                   || memcmp(y->headers[j].name, h->name, h->name_len)))
        {
            j++;
        }

        if (i == x->nheaders || j == y->nheaders) {
            return i == x->nheaders && j == y->nheaders;
        }

        hx = &x->headers[i++];
        hy = &y->headers[j++];

        if (hx->value_len != hy->value_len
            || memcmp(hx->value, hy->value, hx->value_len) != 0)
        {
            return 0;
        }
    }
}


/* the first value of h's name in x (*first NULL: none) */
static size_t
ngx_tce_diff_header_value(const ngx_tce_diff_answer_t *x,
    const ngx_tce_diff_header_t *h, const char **first)
{
    size_t  i;

    for (i = 0; i < x->nheaders; i++) {
        if (x->headers[i].name_len == h->name_len
            && memcmp(x->headers[i].name, h->name, h->name_len) == 0)
        {
            *first = x->headers[i].value;
            return x->headers[i].value_len;
        }
    }

    *first = NULL;

    return 0;
}


static void
ngx_tce_diff_body(const ngx_tce_diff_answer_t *a,
    const ngx_tce_diff_answer_t *b, const ngx_tce_diff_answer_t *c,
    ngx_tce_diff_outcome_t *out)
{
    char                 what[NGX_TCE_DIFF_WHAT_LEN];
    size_t               i, n, alen, clen;
    json_t              *ja, *jb, *jc;
    ngx_tce_diff_walk_t  w;

    if (a->len == c->len && memcmp(a->body, c->body, a->len) == 0) {
        return;
    }

    ja = ngx_tce_diff_json(a);
    jc = ja ? ngx_tce_diff_json(c) : NULL;

    if (ja && jc) {
        jb = ngx_tce_diff_json(b);

        memset(&w, 0, sizeof(ngx_tce_diff_walk_t));
        w.out = out;
        w.found = (out->result == NGX_TCE_DIFF_MISMATCH);
        w.path[0] = '$';
        w.len = 1;

        ngx_tce_diff_walk(&w, ja, jb, jc, 0);

        json_decref(ja);
        json_decref(jb);
        json_decref(jc);
        return;
    }

    json_decref(ja);
    json_decref(jc);

    /* bytes: the whole body is noise when the two prods differ */

    if (a->len != b->len || memcmp(a->body, b->body, a->len) != 0) {
        out->noise++;
        return;
    }

    n = a->len < c->len ? a->len : c->len;

    for (i = 0; i < n && a->body[i] == c->body[i]; i++) {
        /* void */
    }

    alen = a->len - i;
    clen = c->len - i;

    (void) snprintf(what, sizeof(what), "body at byte %zu", i);

    ngx_tce_diff_record(out, what, alen ? a->body + i : "(end)",
                        alen ? alen : 5, clen ? c->body + i : "(end)",
                        clen ? clen : 5);
}


/* the body as JSON if it is an object or an array, else NULL */
static json_t *
ngx_tce_diff_json(const ngx_tce_diff_answer_t *x)
{
    size_t        i;
    json_error_t  err;

    for (i = 0; i < x->len; i++) {
        if (x->body[i] != ' ' && x->body[i] != '\t' && x->body[i] != '\r'
            && x->body[i] != '\n')
        {
            break;
        }
    }

    if (i == x->len || (x->body[i] != '{' && x->body[i] != '[')) {
        return NULL;
    }

    return json_loadb(x->body, x->len, JSON_REJECT_DUPLICATES, &err);
}


/*
 * a (prod), b (prod2, may be NULL), c (canary) at one path; NULL where
 * the path does not exist.  Objects are walked by key (prod's keys, then
 * the canary's that prod lacks), arrays by index; elsewhere a value of
 * prod that differs from the canary's is a mismatch unless prod2's
 * differs from prod's too (noise).
 */
static void
ngx_tce_diff_walk(ngx_tce_diff_walk_t *w, json_t *a, json_t *b, json_t *c,
    int depth)
{
    size_t       i, n, len;
    json_t      *v;
    const char  *key;

    if (w->found) {
        /* count the noise of the rest only up to the first mismatch */
        return;
    }

    if (depth < NGX_TCE_DIFF_MAX_DEPTH && json_is_object(a)
        && json_is_object(c))
    {
        json_object_foreach(a, key, v) {
            ngx_tce_diff_walk_key(w, v, json_is_object(b)
                                  ? json_object_get(b, key) : NULL,
                                  json_object_get(c, key), key, depth);
        }

        json_object_foreach(c, key, v) {
            if (json_object_get(a, key) == NULL) {
                ngx_tce_diff_walk_key(w, NULL, json_is_object(b)
                                      ? json_object_get(b, key) : NULL,
                                      v, key, depth);
            }
        }

        return;
    }

    if (depth < NGX_TCE_DIFF_MAX_DEPTH && json_is_array(a)
        && json_is_array(c))
    {
        n = json_array_size(a);

        if (json_array_size(c) > n) {
            n = json_array_size(c);
        }

        len = w->len;

        for (i = 0; i < n && !w->found; i++) {
            (void) snprintf(w->path + len, sizeof(w->path) - len, "[%zu]",
                            i);
            w->len = strlen(w->path);

            ngx_tce_diff_walk(w, json_array_get(a, i),
                              json_is_array(b) ? json_array_get(b, i) : NULL,
                              json_array_get(c, i), depth + 1);
        }

        w->len = len;
        w->path[len] = '\0';
        return;
    }

    if (ngx_tce_diff_json_same(a, c)) {
        return;
    }

    if (!ngx_tce_diff_json_same(a, b)) {
        w->out->noise++;
        return;
    }

    ngx_tce_diff_snip_json(w->out->prod, a);
    ngx_tce_diff_snip_json(w->out->canary, c);

    (void) snprintf(w->out->what, sizeof(w->out->what), "body %s", w->path);

    w->out->result = NGX_TCE_DIFF_MISMATCH;
    w->found = 1;
}


static void
ngx_tce_diff_walk_key(ngx_tce_diff_walk_t *w, json_t *a, json_t *b,
    json_t *c, const char *key, int depth)
{
    size_t  len, klen;

    len = w->len;
    klen = strlen(key);

    /* ".key", escaped, cut to the path's room */
    if (len + 2 < sizeof(w->path)) {
        w->path[len] = '.';
        w->len = len + 1
                 + ngx_tce_text_escape(w->path + len + 1,
                                       sizeof(w->path) - len - 1, key,
                                       klen < 48 ? klen : 48);
    }

    ngx_tce_diff_walk(w, a, b, c, depth + 1);

    w->len = len;
    w->path[len] = '\0';
}


/* NULL (absent) equals only NULL */
static int
ngx_tce_diff_json_same(json_t *x, json_t *y)
{
    if (x == NULL || y == NULL) {
        return x == y;
    }

    return json_equal(x, y);
}


static void
ngx_tce_diff_snip_json(char *dst, json_t *v)
{
    char    *s;
    size_t   len;

    if (v == NULL) {
        (void) snprintf(dst, NGX_TCE_DIFF_SNIP_LEN, "(absent)");
        return;
    }

    s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);

    if (s == NULL) {
        (void) snprintf(dst, NGX_TCE_DIFF_SNIP_LEN, "(?)");
        return;
    }

    len = strlen(s);

    (void) ngx_tce_text_escape(dst, NGX_TCE_DIFF_SNIP_LEN, s,
                               len < NGX_TCE_DIFF_SNIP_CUT
                               ? len : NGX_TCE_DIFF_SNIP_CUT);
    free(s);
}


/* the first mismatch only: the result tells the rest */
static void
ngx_tce_diff_record(ngx_tce_diff_outcome_t *out, const char *what,
    const char *p, size_t plen, const char *c, size_t clen)
{
    if (out->result == NGX_TCE_DIFF_MISMATCH) {
        return;
    }

    out->result = NGX_TCE_DIFF_MISMATCH;

    (void) snprintf(out->what, sizeof(out->what), "%s", what);
    (void) ngx_tce_text_escape(out->prod, sizeof(out->prod), p,
                               plen < NGX_TCE_DIFF_SNIP_CUT
                               ? plen : NGX_TCE_DIFF_SNIP_CUT);
    (void) ngx_tce_text_escape(out->canary, sizeof(out->canary), c,
                               clen < NGX_TCE_DIFF_SNIP_CUT
                               ? clen : NGX_TCE_DIFF_SNIP_CUT);
}
