/*
 * The pull JSON reader: see ngx_tce_json.h.  No recursion: a skipped
 * value's nesting is kept in a fixed stack, so no input can exhaust
 * the thread's stack.
 */

#include <string.h>

#include "ngx_tce_json.h"


static void ngx_tce_json_blank(ngx_tce_json_t *j);
static int ngx_tce_json_string(ngx_tce_json_t *j, char *dst, size_t size,
    size_t *len);
static int ngx_tce_json_hex4(const char *p, const char *last,
    unsigned *cp);
static size_t ngx_tce_json_utf8(unsigned cp, char *out);
static int ngx_tce_json_number(ngx_tce_json_t *j, ngx_tce_json_value_t *v);
static int ngx_tce_json_literal(ngx_tce_json_t *j, const char *word,
    size_t len);
static int ngx_tce_json_scalar(ngx_tce_json_t *j, unsigned type,
    ngx_tce_json_value_t *v);
static int ngx_tce_json_key(ngx_tce_json_t *j, char *key, size_t ksize,
    size_t *klen);
static int ngx_tce_json_next(ngx_tce_json_t *j, size_t *n, char open,
    char close);
static int ngx_tce_json_fail(ngx_tce_json_t *j, const char *err);


/* 1: a byte a string may hold as it is (not '"', '\\', control) */
static const unsigned char  ngx_tce_json_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
};


void
ngx_tce_json_init(ngx_tce_json_t *j, const char *s, size_t len,
    char *scratch, size_t size)
{
    j->start = s;
    j->p = s;
    j->last = s + len;
    j->scratch = scratch;
    j->used = 0;
    j->size = size;
    j->err = NULL;
}


static void
ngx_tce_json_blank(ngx_tce_json_t *j)
{
    while (j->p < j->last
           && (*j->p == ' ' || *j->p == '\t' || *j->p == '\r'
               || *j->p == '\n'))
    {
        j->p++;
    }
}


static int
ngx_tce_json_fail(ngx_tce_json_t *j, const char *err)
{
    if (j->err == NULL) {
        j->err = err;
    }

    return -1;
}


unsigned
ngx_tce_json_type(ngx_tce_json_t *j)
{
    ngx_tce_json_blank(j);

    if (j->p == j->last) {
        (void) ngx_tce_json_fail(j, "a value expected, the end found");
        return NGX_TCE_JSON_ABSENT;
    }

    switch (*j->p) {
    case '{':
        return NGX_TCE_JSON_OBJECT;
    case '[':
        return NGX_TCE_JSON_ARRAY;
    case '"':
        return NGX_TCE_JSON_STRING;
    case 't':
    case 'f':
        return NGX_TCE_JSON_BOOL;
    case 'n':
        return NGX_TCE_JSON_NULL;
    case '-':
        return NGX_TCE_JSON_NUMBER;
    default:
        if (*j->p >= '0' && *j->p <= '9') {
            return NGX_TCE_JSON_NUMBER;
        }
    }

    (void) ngx_tce_json_fail(j, "a value cannot start with this byte");

    return NGX_TCE_JSON_ABSENT;
}


/*
 * The string at j->p (its opening quote): checked, and decoded into
 * dst (cut to size - 1 bytes, NUL-ended) unless dst is NULL; *len the
 * whole decoded length.  A lone UTF-16 surrogate decodes as U+FFFD,
 * as Go writes it.
 */

static int
ngx_tce_json_string(ngx_tce_json_t *j, char *dst, size_t size, size_t *len)
{
    char         buf[4];
    size_t       n, k, i;
    unsigned     cp, lo;
    const char  *p, *last, *run;

    p = j->p + 1;
    last = j->last;
    n = 0;

    for ( ;; ) {
        run = p;

        while (p < last && ngx_tce_json_plain[(unsigned char) *p]) {
            p++;
        }

        if (dst != NULL && p > run) {
            k = (size_t) (p - run);

            if (n < size - 1) {
                memcpy(dst + n, run, k < size - 1 - n ? k : size - 1 - n);
            }

            n += k;

        } else {
            n += (size_t) (p - run);
        }

        if (p == last) {
            j->p = p;
            return ngx_tce_json_fail(j, "a string not closed");
        }

        if (*p == '"') {
            break;
        }

        if (*p != '\\') {
            j->p = p;
            return ngx_tce_json_fail(j, "a control byte in a string");
        }

        if (last - p < 2) {
            j->p = p;
            return ngx_tce_json_fail(j, "a string not closed");
        }

        k = 1;

        switch (p[1]) {
        case '"':
        case '\\':
        case '/':
            buf[0] = p[1];
            break;
        case 'b':
            buf[0] = '\b';
            break;
        case 'f':
            buf[0] = '\f';
            break;
        case 'n':
            buf[0] = '\n';
            break;
        case 'r':
            buf[0] = '\r';
            break;
        case 't':
            buf[0] = '\t';
            break;

        case 'u':
            if (ngx_tce_json_hex4(p + 2, last, &cp) != 0) {
                j->p = p;
                return ngx_tce_json_fail(j, "a \\u escape without 4 hex "
                                         "digits");
            }

            p += 4;

            if (cp >= 0xd800 && cp <= 0xdbff && last - p >= 8
                && p[2] == '\\' && p[3] == 'u'
                && ngx_tce_json_hex4(p + 4, last, &lo) == 0
                && lo >= 0xdc00 && lo <= 0xdfff)
            {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;

            } else if (cp >= 0xd800 && cp <= 0xdfff) {
                cp = 0xfffd;
            }

            k = ngx_tce_json_utf8(cp, buf);
            break;

        default:
            j->p = p;
            return ngx_tce_json_fail(j, "an invalid escape in a string");
        }

        for (i = 0; i < k; i++, n++) {
            if (dst != NULL && n < size - 1) {
                dst[n] = buf[i];
            }
        }

        p += 2;
    }

    if (dst != NULL) {
        dst[n < size - 1 ? n : size - 1] = '\0';
    }

    *len = n;
    j->p = p + 1;

    return 0;
}


/* 4 hex digits at p; -1 when there are not */

static int
ngx_tce_json_hex4(const char *p, const char *last, unsigned *cp)
{
    int       i;
    unsigned  c, v;

    if (last - p < 4) {
        return -1;
    }

    v = 0;

    for (i = 0; i < 4; i++) {
        c = (unsigned char) p[i];

        if (c >= '0' && c <= '9') {
            c -= '0';

        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            c = (c | 0x20) - 'a' + 10;

        } else {
            return -1;
        }

        v = (v << 4) | c;
    }

    *cp = v;

    return 0;
}


static size_t
ngx_tce_json_utf8(unsigned cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char) cp;
        return 1;
    }

    if (cp < 0x800) {
        out[0] = (char) (0xc0 | (cp >> 6));
        out[1] = (char) (0x80 | (cp & 0x3f));
        return 2;
    }

    if (cp < 0x10000) {
        out[0] = (char) (0xe0 | (cp >> 12));
        out[1] = (char) (0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char) (0x80 | (cp & 0x3f));
        return 3;
    }

    out[0] = (char) (0xf0 | (cp >> 18));
    out[1] = (char) (0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char) (0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char) (0x80 | (cp & 0x3f));

    return 4;
}


/* a number; v (may be NULL) says whether it is an int64 integer */

static int
ngx_tce_json_number(ngx_tce_json_t *j, ngx_tce_json_value_t *v)
{
    int          neg, integer;
    uint64_t     u, limit;
    const char  *p, *last;

    p = j->p;
    last = j->last;
    neg = 0;
    integer = 1;
    u = 0;

    if (*p == '-') {
        neg = 1;
        p++;
    }

    limit = neg ? (uint64_t) INT64_MAX + 1 : (uint64_t) INT64_MAX;

    if (p == last || *p < '0' || *p > '9') {
        j->p = p;
        return ngx_tce_json_fail(j, "a number without digits");
    }

    if (*p == '0') {
        p++;

    } else {
        while (p < last && *p >= '0' && *p <= '9') {
            if (integer
                && u <= (limit - (uint64_t) (*p - '0')) / 10)
            {
                u = u * 10 + (uint64_t) (*p - '0');

            } else {
                integer = 0;        /* out of range: a number still */
            }

            p++;
        }
    }

    if (p < last && *p == '.') {
        integer = 0;
        p++;

        if (p == last || *p < '0' || *p > '9') {
            j->p = p;
            return ngx_tce_json_fail(j, "a fraction without digits");
        }

        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < last && (*p == 'e' || *p == 'E')) {
        integer = 0;
        p++;

        if (p < last && (*p == '+' || *p == '-')) {
            p++;
        }

        if (p == last || *p < '0' || *p > '9') {
            j->p = p;
            return ngx_tce_json_fail(j, "an exponent without digits");
        }

        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    j->p = p;

    if (v != NULL) {
        v->type = NGX_TCE_JSON_NUMBER;
        v->integer = (unsigned) integer;
        v->i = !integer ? 0
               : neg ? (u == (uint64_t) INT64_MAX + 1 ? INT64_MIN
                                                      : -(int64_t) u)
                     : (int64_t) u;
    }

    return 0;
}


static int
ngx_tce_json_literal(ngx_tce_json_t *j, const char *word, size_t len)
{
    if ((size_t) (j->last - j->p) < len || memcmp(j->p, word, len) != 0) {
        return ngx_tce_json_fail(j, "an invalid literal");
    }

    j->p += len;

    return 0;
}


/* a number, null, true or false; v (may be NULL) gets its value */

static int
ngx_tce_json_scalar(ngx_tce_json_t *j, unsigned type,
    ngx_tce_json_value_t *v)
{
    int  t;

    if (type == NGX_TCE_JSON_NUMBER) {
        return ngx_tce_json_number(j, v);
    }

    if (type == NGX_TCE_JSON_NULL) {
        return ngx_tce_json_literal(j, "null", 4);
    }

    t = *j->p == 't';

    if (v != NULL) {
        v->i = t;
    }

    return t ? ngx_tce_json_literal(j, "true", 4)
             : ngx_tce_json_literal(j, "false", 5);
}


int
ngx_tce_json_read(ngx_tce_json_t *j, ngx_tce_json_value_t *v)
{
    size_t  len;

    memset(v, 0, sizeof(ngx_tce_json_value_t));

    v->type = ngx_tce_json_type(j);

    switch (v->type) {

    case NGX_TCE_JSON_ABSENT:
        return -1;

    case NGX_TCE_JSON_OBJECT:
    case NGX_TCE_JSON_ARRAY:
        return ngx_tce_json_skip(j);

    case NGX_TCE_JSON_NUMBER:
    case NGX_TCE_JSON_NULL:
    case NGX_TCE_JSON_BOOL:
        return ngx_tce_json_scalar(j, v->type, v);

    default: /* NGX_TCE_JSON_STRING */

        if (j->used >= j->size) {
            return ngx_tce_json_fail(j, "no room to decode a string");
        }

        v->s = j->scratch + j->used;

        if (ngx_tce_json_string(j, j->scratch + j->used, j->size - j->used,
                                &len)
            != 0)
        {
            return -1;
        }

        if (len >= j->size - j->used) {
            /* cannot happen with scratch sized as the header says */
            return ngx_tce_json_fail(j, "no room to decode a string");
        }

        v->len = len;
        j->used += len + 1;

        return 0;
    }
}


int
ngx_tce_json_skip(ngx_tce_json_t *j)
{
    char      stack[NGX_TCE_JSON_MAX_DEPTH];
    size_t    depth, len;
    unsigned  type;

    depth = 0;

value:

    type = ngx_tce_json_type(j);

    switch (type) {

    case NGX_TCE_JSON_ABSENT:
        return -1;

    case NGX_TCE_JSON_OBJECT:
    case NGX_TCE_JSON_ARRAY:

        if (depth == NGX_TCE_JSON_MAX_DEPTH) {
            return ngx_tce_json_fail(j, "nested too deep");
        }

        stack[depth++] = *j->p++;
        ngx_tce_json_blank(j);

        if (j->p < j->last && *j->p == (stack[depth - 1] == '{' ? '}' : ']'))
        {
            j->p++;
            depth--;
            goto next;
        }

        if (stack[depth - 1] == '{') {
            goto key;
        }

        goto value;

    case NGX_TCE_JSON_STRING:
        if (ngx_tce_json_string(j, NULL, 0, &len) != 0) {
            return -1;
        }

        goto next;

    default:
        if (ngx_tce_json_scalar(j, type, NULL) != 0) {
            return -1;
        }

        goto next;
    }

key:

    if (ngx_tce_json_key(j, NULL, 0, &len) != 0) {
        return -1;
    }

    goto value;

next:

    if (depth == 0) {
        return 0;
    }

    ngx_tce_json_blank(j);

    if (j->p == j->last) {
        return ngx_tce_json_fail(j, "an object or array not closed");
    }

    if (*j->p == ',') {
        j->p++;

        if (stack[depth - 1] == '{') {
            goto key;
        }

        goto value;
    }

    if (*j->p == (stack[depth - 1] == '{' ? '}' : ']')) {
        j->p++;
        depth--;
        goto next;
    }

    return ngx_tce_json_fail(j, stack[depth - 1] == '{'
                                ? "',' or '}' expected in an object"
                                : "',' or ']' expected in an array");
}


int
ngx_tce_json_member(ngx_tce_json_t *j, size_t *n, char *key, size_t ksize,
    size_t *klen)
{
    int  rc;

    rc = ngx_tce_json_next(j, n, '{', '}');

    if (rc != 1) {
        return rc;
    }

    return ngx_tce_json_key(j, key, ksize, klen) == 0 ? 1 : -1;
}


int
ngx_tce_json_element(ngx_tce_json_t *j, size_t *n)
{
    return ngx_tce_json_next(j, n, '[', ']');
}


/*
 * In an object or array: with *n == 0 its opening byte, then 1 when an
 * item follows (*n counts it), 0 after the closing byte, -1 with j->err
 */

static int
ngx_tce_json_next(ngx_tce_json_t *j, size_t *n, char open, char close)
{
    ngx_tce_json_blank(j);

    if (*n == 0) {
        if (j->p == j->last || *j->p != open) {
            return ngx_tce_json_fail(j, open == '{' ? "an object expected"
                                                    : "an array expected");
        }

        j->p++;
        ngx_tce_json_blank(j);

    } else if (j->p < j->last && *j->p == ',') {
        j->p++;
        (*n)++;
        return 1;

    } else if (j->p == j->last || *j->p != close) {
        return ngx_tce_json_fail(j, open == '{'
                                    ? "',' or '}' expected in an object"
                                    : "',' or ']' expected in an array");
    }

    if (j->p < j->last && *j->p == close) {
        j->p++;
        return 0;
    }

    (*n)++;

    return 1;
}


/* an object key (decoded into key unless NULL) and its ':' */

static int
ngx_tce_json_key(ngx_tce_json_t *j, char *key, size_t ksize, size_t *klen)
{
    ngx_tce_json_blank(j);

    if (j->p == j->last || *j->p != '"') {
        return ngx_tce_json_fail(j, "an object key expected");
    }

    if (ngx_tce_json_string(j, key, ksize, klen) != 0) {
        return -1;
    }

    ngx_tce_json_blank(j);

    if (j->p == j->last || *j->p != ':') {
        return ngx_tce_json_fail(j, "':' expected after an object key");
    }

    j->p++;

    return 0;
}


int
ngx_tce_json_end(ngx_tce_json_t *j)
{
    ngx_tce_json_blank(j);

    if (j->p != j->last) {
        return ngx_tce_json_fail(j, "data after the value");
    }

    return 0;
}


size_t
ngx_tce_json_column(ngx_tce_json_t *j)
{
    return (size_t) (j->p - j->start) + 1;
}
