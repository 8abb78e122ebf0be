/*
 * Consul payloads and the blocking-query loop as pure functions (pure
 * C, no nginx): see ngx_tce_consul_parse.h for each contract.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "ngx_tce_instance.h"
#include "ngx_tce_consul_parse.h"


static json_t *ngx_tce_consul_load(const char *body, size_t len,
    char *err, size_t errlen);
static int ngx_tce_consul_name_cmp(const void *a, const void *b);
static int ngx_tce_consul_has_tag(json_t *tags, const char *tag,
    size_t len);
static int ngx_tce_consul_base(const char *base, size_t *len);
static int ngx_tce_consul_add(char *buf, size_t size, size_t *pos,
    const char *s, size_t len);
static int ngx_tce_consul_add_esc(char *buf, size_t size,
    size_t *pos, const char *s);
static int ngx_tce_consul_add_wait(char *buf, size_t size,
    size_t *pos, uint64_t index, uint64_t wait_ms);


void
ngx_tce_consul_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list  args;

    if (err == NULL || errlen == 0) {
        return;
    }

    va_start(args, fmt);
    vsnprintf(err, errlen, fmt, args);
    va_end(args);

    /* the text quotes bytes from the body: keep log lines clean */
    ngx_tce_consul_make_printable(err);
}


void
ngx_tce_consul_make_printable(char *s)
{
    for ( /* void */ ; *s != '\0'; s++) {
        if ((unsigned char) *s < 0x20 || (unsigned char) *s >= 0x7f) {
            *s = '?';
        }
    }
}


static json_t *
ngx_tce_consul_load(const char *body, size_t len, char *err,
    size_t errlen)
{
    json_t        *root;
    json_error_t   jerr;

    if (body == NULL) {
        ngx_tce_consul_err(err, errlen, "no body");
        return NULL;
    }

    /*
     * duplicate keys are never sent by Consul: refuse the ambiguity;
     * tags are free text, and Go writes a NUL in them as \u0000
     */
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
                      &jerr);

    if (root == NULL) {
        ngx_tce_consul_err(err, errlen, "invalid JSON at line %d column "
                           "%d: %s", jerr.line, jerr.column, jerr.text);
    }

    return root;
}


static int
ngx_tce_consul_name_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}


/* Consul's own tag filter: case-insensitive, whole tag */

static int
ngx_tce_consul_has_tag(json_t *tags, const char *tag, size_t len)
{
    size_t   i;
    json_t  *t;

    json_array_foreach(tags, i, t) {
        if (json_string_length(t) == len
            && strncasecmp(json_string_value(t), tag, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


int
ngx_tce_consul_parse_services(const char *body, size_t len,
    const char *tag, ngx_tce_consul_names_t *res, char *err,
    size_t errlen)
{
    char         (*names)[NGX_TCE_SERVICE_LEN];
    size_t         i, n, nskipped, klen;
    json_t        *root, *tags, *t;
    const char    *key;

    root = ngx_tce_consul_load(body, len, err, errlen);

    if (root == NULL) {
        return -1;
    }

    if (!json_is_object(root)) {
        ngx_tce_consul_err(err, errlen, "services body is not a JSON "
                           "object");
        json_decref(root);
        return -1;
    }

    /* validate the whole body first: one bad value changes nothing */

    json_object_foreach(root, key, tags) {
        if (json_is_null(tags)) {
            continue;           /* a nil slice: no tag */
        }

        if (!json_is_array(tags)) {
            ngx_tce_consul_err(err, errlen, "tags of \"%.64s\" are not an "
                               "array", key);
            json_decref(root);
            return -1;
        }

        json_array_foreach(tags, i, t) {
            if (!json_is_string(t)) {
                ngx_tce_consul_err(err, errlen, "a tag of \"%.64s\" is not "
                                   "a string", key);
                json_decref(root);
                return -1;
            }
        }
    }

    if (json_object_size(root) > NGX_TCE_CONSUL_MAX_ENTRIES) {
        ngx_tce_consul_err(err, errlen, "more than %d services",
                           NGX_TCE_CONSUL_MAX_ENTRIES);
        json_decref(root);
        return -1;
    }

    names = NULL;

    if (json_object_size(root) > 0) {
        names = calloc(json_object_size(root), NGX_TCE_SERVICE_LEN);

        if (names == NULL) {
            ngx_tce_consul_err(err, errlen, "out of memory");
            json_decref(root);
            return -1;
        }
    }

    n = 0;
    nskipped = 0;

    json_object_foreach(root, key, tags) {
        if (tag != NULL
            && (!json_is_array(tags)
                || !ngx_tce_consul_has_tag(tags, tag, strlen(tag))))
        {
            continue;
        }

        klen = strlen(key);

        if (!ngx_tce_service_name_valid(key, klen)) {
            nskipped++;
            continue;
        }

        memcpy(names[n++], key, klen + 1);
    }

    json_decref(root);

    if (n == 0) {
        free(names);
        names = NULL;

    } else {
        qsort(names, n, NGX_TCE_SERVICE_LEN, ngx_tce_consul_name_cmp);
    }

    res->names = names;
    res->nnames = n;
    res->nskipped = nskipped;

    return 0;
}


void
ngx_tce_consul_names_free(ngx_tce_consul_names_t *res)
{
    free(res->names);
    memset(res, 0, sizeof(ngx_tce_consul_names_t));
}


int
ngx_tce_consul_next_index(uint64_t prev, const char *value, size_t len,
    uint64_t *next)
{
    uint64_t     idx;
    const char  *p, *last;

    if (value == NULL) {
        return -1;
    }

    p = value;
    last = value + len;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t'
                        || last[-1] == '\r' || last[-1] == '\n'))
    {
        last--;
    }

    if (p == last) {
        return -1;
    }

    idx = 0;

    for ( /* void */ ; p < last; p++) {
        if (*p < '0' || *p > '9') {
            return -1;
        }

        if (idx > (UINT64_MAX - (uint64_t) (*p - '0')) / 10) {
            return -1;
        }

        idx = idx * 10 + (uint64_t) (*p - '0');
    }

    if (idx == 0) {
        /* a Consul bug: index 0 would make every query return at once */
        *next = 1;

    } else if (idx < prev) {
        /* snapshot restore, new cluster, other server: start again */
        *next = 0;

    } else {
        *next = idx;
    }

    return 0;
}


uint64_t
ngx_tce_consul_wait(uint64_t wait_ms)
{
    if (wait_ms == 0) {
        return NGX_TCE_CONSUL_WAIT_DEFAULT_MS;
    }

    return wait_ms > NGX_TCE_CONSUL_WAIT_MAX_MS ? NGX_TCE_CONSUL_WAIT_MAX_MS
                                                : wait_ms;
}


uint64_t
ngx_tce_consul_read_timeout(uint64_t wait_ms)
{
    wait_ms = ngx_tce_consul_wait(wait_ms);

    return (wait_ms * 17 + 15) / 16 + NGX_TCE_CONSUL_TIMEOUT_MARGIN;
}


uint64_t
ngx_tce_consul_backoff(unsigned attempt, uint64_t base_ms, uint64_t cap_ms,
    uint32_t rnd)
{
    uint64_t  d, half;

    d = base_ms;

    while (attempt-- > 0 && d < cap_ms) {
        if (d > cap_ms / 2) {
            d = cap_ms;
            break;
        }

        d *= 2;
    }

    if (d > cap_ms) {
        d = cap_ms;
    }

    half = d / 2;

    return d - half + rnd % (half + 1);
}


uint64_t
ngx_tce_consul_rate_delay(uint64_t last_ms, uint64_t now_ms,
    uint64_t min_ms)
{
    if (now_ms < last_ms) {
        /* clock went back: wait the full interval, never 0 forever */
        return min_ms;
    }

    return now_ms - last_ms >= min_ms ? 0 : min_ms - (now_ms - last_ms);
}


ssize_t
ngx_tce_consul_escape(char *dst, size_t size, const char *src, size_t len)
{
    size_t                i, pos;
    unsigned char         c;
    static const char     hex[] = "0123456789ABCDEF";

    pos = 0;

    for (i = 0; i < len; i++) {
        c = (unsigned char) src[i];

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
            || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
            || c == '~')
        {
            if (pos + 1 >= size) {
                goto overflow;
            }

            dst[pos++] = (char) c;
            continue;
        }

        if (pos + 3 >= size) {
            goto overflow;
        }

        dst[pos++] = '%';
        dst[pos++] = hex[c >> 4];
        dst[pos++] = hex[c & 0xf];
    }

    if (pos >= size) {
        goto overflow;
    }

    dst[pos] = '\0';

    return (ssize_t) pos;

overflow:

    if (size > 0) {
        dst[0] = '\0';
    }

    return -1;
}


/* checks base and returns its length without trailing slashes */

static int
ngx_tce_consul_base(const char *base, size_t *len)
{
    size_t  n, skip;

    if (base == NULL) {
        return -1;
    }

    n = strlen(base);

    if (strncmp(base, "http://", 7) == 0) {
        skip = 7;

    } else if (strncmp(base, "https://", 8) == 0) {
        skip = 8;

    } else {
        return -1;
    }

    while (n > skip && base[n - 1] == '/') {
        n--;
    }

    if (n == skip || memchr(base, '?', n) || memchr(base, '#', n)
        || strpbrk(base, " \r\n\t") != NULL)
    {
        return -1;
    }

    *len = n;

    return 0;
}


static int
ngx_tce_consul_add(char *buf, size_t size, size_t *pos, const char *s,
    size_t len)
{
    if (*pos + len >= size) {
        return -1;
    }

    memcpy(buf + *pos, s, len);
    *pos += len;
    buf[*pos] = '\0';

    return 0;
}


static int
ngx_tce_consul_add_esc(char *buf, size_t size, size_t *pos, const char *s)
{
    ssize_t  n;

    n = ngx_tce_consul_escape(buf + *pos, size - *pos, s, strlen(s));

    if (n < 0) {
        return -1;
    }

    *pos += n;

    return 0;
}


static int
ngx_tce_consul_add_wait(char *buf, size_t size, size_t *pos,
    uint64_t index, uint64_t wait_ms)
{
    int   n;
    char  tmp[64];

    if (index == 0) {
        return 0;
    }

    wait_ms = ngx_tce_consul_wait(wait_ms);

    if (wait_ms % 60000 == 0) {
        n = snprintf(tmp, sizeof(tmp), "index=%llu&wait=%llum",
                     (unsigned long long) index,
                     (unsigned long long) (wait_ms / 60000));

    } else if (wait_ms % 1000 == 0) {
        n = snprintf(tmp, sizeof(tmp), "index=%llu&wait=%llus",
                     (unsigned long long) index,
                     (unsigned long long) (wait_ms / 1000));

    } else {
        n = snprintf(tmp, sizeof(tmp), "index=%llu&wait=%llums",
                     (unsigned long long) index,
                     (unsigned long long) wait_ms);
    }

    /* after the '?' or a '&' the caller wrote, no separator */

    if (buf[*pos - 1] != '?' && buf[*pos - 1] != '&'
        && ngx_tce_consul_add(buf, size, pos, "&", 1) != 0)
    {
        return -1;
    }

    return ngx_tce_consul_add(buf, size, pos, tmp, (size_t) n);
}


ssize_t
ngx_tce_consul_health_url(char *buf, size_t size, const char *base,
    const char *service, const char *tag, const char *dc, uint64_t index,
    uint64_t wait_ms)
{
    size_t       blen, pos;
    const char  *sep;

    if (size > 0) {
        buf[0] = '\0';
    }

    if (ngx_tce_consul_base(base, &blen) != 0 || service == NULL
        || service[0] == '\0')
    {
        return -1;
    }

    pos = 0;

    if (ngx_tce_consul_add(buf, size, &pos, base, blen) != 0
        || ngx_tce_consul_add(buf, size, &pos, "/v1/health/service/", 19)
        || ngx_tce_consul_add_esc(buf, size, &pos, service) != 0)
    {
        goto failed;
    }

    /*
     * no passing=1: Consul would drop warning instances, which are
     * routed at Weights.Warning; the parser filters by state
     */

    sep = "?";

    if (tag != NULL && tag[0] != '\0') {
        if (ngx_tce_consul_add(buf, size, &pos, sep, 1) != 0
            || ngx_tce_consul_add(buf, size, &pos, "tag=", 4) != 0
            || ngx_tce_consul_add_esc(buf, size, &pos, tag) != 0)
        {
            goto failed;
        }

        sep = "&";
    }

    if (dc != NULL && dc[0] != '\0') {
        if (ngx_tce_consul_add(buf, size, &pos, sep, 1) != 0
            || ngx_tce_consul_add(buf, size, &pos, "dc=", 3) != 0
            || ngx_tce_consul_add_esc(buf, size, &pos, dc) != 0)
        {
            goto failed;
        }

        sep = "&";
    }

    if (index > 0 && ngx_tce_consul_add(buf, size, &pos, sep, 1) != 0) {
        goto failed;
    }

    if (ngx_tce_consul_add_wait(buf, size, &pos, index, wait_ms) != 0) {
        goto failed;
    }

    return (ssize_t) pos;

failed:

    if (size > 0) {
        buf[0] = '\0';
    }

    return -1;
}


ssize_t
ngx_tce_consul_services_url(char *buf, size_t size, const char *base,
    const char *dc, uint64_t index, uint64_t wait_ms)
{
    size_t  blen, pos;

    if (size > 0) {
        buf[0] = '\0';
    }

    if (ngx_tce_consul_base(base, &blen) != 0) {
        return -1;
    }

    pos = 0;

    if (ngx_tce_consul_add(buf, size, &pos, base, blen) != 0
        || ngx_tce_consul_add(buf, size, &pos, "/v1/catalog/services?",
                              21)
           != 0)
    {
        goto failed;
    }

    if (dc != NULL && dc[0] != '\0'
        && (ngx_tce_consul_add(buf, size, &pos, "dc=", 3) != 0
            || ngx_tce_consul_add_esc(buf, size, &pos, dc) != 0))
    {
        goto failed;
    }

    if (ngx_tce_consul_add_wait(buf, size, &pos, index, wait_ms) != 0) {
        goto failed;
    }

    /* no parameter at all: drop the lone '?' */

    if (buf[pos - 1] == '?') {
        buf[--pos] = '\0';
    }

    return (ssize_t) pos;

failed:

    if (size > 0) {
        buf[0] = '\0';
    }

    return -1;
}


ssize_t
ngx_tce_consul_path_url(char *buf, size_t size, const char *base,
    const char *path, const char *arg)
{
    size_t  blen, pos;

    if (size > 0) {
        buf[0] = '\0';
    }

    if (ngx_tce_consul_base(base, &blen) != 0 || path == NULL
        || path[0] != '/' || (arg != NULL && arg[0] == '\0'))
    {
        return -1;
    }

    pos = 0;

    if (ngx_tce_consul_add(buf, size, &pos, base, blen) != 0
        || ngx_tce_consul_add(buf, size, &pos, path, strlen(path)) != 0
        || (arg != NULL
            && ngx_tce_consul_add_esc(buf, size, &pos, arg) != 0))
    {
        if (size > 0) {
            buf[0] = '\0';
        }

        return -1;
    }

    return (ssize_t) pos;
}
