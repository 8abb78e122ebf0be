/*
 * The change detector of the Consul watcher (pure C, no nginx): see
 * ngx_tce_consul_detect.h for each contract.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ngx_tce_consul_detect.h"


/* one check: its service (empty for a node check) and its hash */
typedef struct {
    char                      name[NGX_TCE_SERVICE_LEN];
    uint64_t                  hash;
} ngx_tce_consul_check_t;


static void ngx_tce_consul_detect_err(char *err, size_t errlen,
    const char *fmt, ...);
static const char *ngx_tce_consul_detect_blank(const char *p,
    const char *last);
static int ngx_tce_consul_detect_next(const char **pp, const char *last,
    size_t n, const char **start, size_t *len);
static uint64_t ngx_tce_consul_fnv(uint64_t h, const char *s);
static uint64_t ngx_tce_consul_mix(uint64_t x);
static int ngx_tce_consul_check_cmp(const void *one, const void *two);
static int ngx_tce_consul_digest_cmp(const void *key, const void *elt);


static void
ngx_tce_consul_detect_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list  args;

    if (err == NULL || errlen == 0) {
        return;
    }

    va_start(args, fmt);
    (void) vsnprintf(err, errlen, fmt, args);
    va_end(args);
}


static const char *
ngx_tce_consul_detect_blank(const char *p, const char *last)
{
    while (p < last && (*p == ' ' || *p == '\t' || *p == '\r'
                        || *p == '\n'))
    {
        p++;
    }

    return p;
}


/*
 * The next element of the top-level array: 1 with its bytes, 0 at the
 * closing ']' (nothing may follow), -1 when broken.  Strings, escapes
 * and brackets are followed with a counter (no recursion); jansson
 * checks each element.
 */

static int
ngx_tce_consul_detect_next(const char **pp, const char *last, size_t n,
    const char **start, size_t *len)
{
    int          in_string;
    size_t       level;
    const char  *p;

    p = ngx_tce_consul_detect_blank(*pp, last);

    if (p < last && *p == ']') {
        p = ngx_tce_consul_detect_blank(p + 1, last);
        *pp = p;
        return p == last ? 0 : -1;
    }

    if (n > 0) {
        if (p == last || *p != ',') {
            return -1;
        }

        p = ngx_tce_consul_detect_blank(p + 1, last);
    }

    if (p == last || *p != '{') {
        return -1;
    }

    *start = p;
    in_string = 0;
    level = 0;

    for ( /* void */ ; p < last; p++) {
        if (in_string) {
            if (*p == '\\') {
                p++;

            } else if (*p == '"') {
                in_string = 0;
            }

            continue;
        }

        if (*p == '"') {
            in_string = 1;

        } else if (*p == '{' || *p == '[') {
            level++;

        } else if ((*p == '}' || *p == ']') && --level == 0) {
            p++;
            break;
        }
    }

    if (level != 0 || p > last) {
        return -1;
    }

    *len = (size_t) (p - *start);
    *pp = p;

    return 1;
}


static uint64_t
ngx_tce_consul_fnv(uint64_t h, const char *s)
{
    for ( /* void */ ; *s; s++) {
        h ^= (unsigned char) *s;
        h *= 0x100000001b3ULL;
    }

    /* a separator, so that ("ab", "c") and ("a", "bc") differ */
    h ^= 0xff;
    h *= 0x100000001b3ULL;

    return h;
}


/* splitmix64's finalizer: sums of mixed hashes do not cancel out */

static uint64_t
ngx_tce_consul_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;

    return x;
}


static int
ngx_tce_consul_check_cmp(const void *one, const void *two)
{
    const ngx_tce_consul_check_t  *a = one, *b = two;

    return strcmp(a->name, b->name);
}


static int
ngx_tce_consul_digest_cmp(const void *key, const void *elt)
{
    const ngx_tce_consul_digest_t  *d = elt;

    return strcmp(key, d->name);
}


int
ngx_tce_consul_parse_checks(const char *body, size_t len,
    ngx_tce_consul_digests_t *res, char *err, size_t errlen)
{
    char                      num[32];
    json_t                   *check, *node, *id, *status, *svc, *mod;
    size_t                    n, nchecks, size, elen, i, j, k;
    uint64_t                  h, sum, nodes;
    const char               *p, *last, *start;
    json_error_t              jerr;
    ngx_tce_consul_check_t   *checks, *tmp;
    ngx_tce_consul_digest_t  *out;
    int                       rc;

    if (body == NULL) {
        ngx_tce_consul_detect_err(err, errlen, "no body");
        return -1;
    }

    p = ngx_tce_consul_detect_blank(body, body + len);
    last = body + len;

    if (p == last || *p != '[') {
        ngx_tce_consul_detect_err(err, errlen, "invalid JSON: the checks "
                                  "are not an array");
        return -1;
    }

    p++;
    checks = NULL;
    nchecks = 0;
    size = 0;
    nodes = 0;
    n = 0;

    for ( ;; ) {
        rc = ngx_tce_consul_detect_next(&p, last, n, &start, &elen);

        if (rc == 0) {
            break;
        }

        if (rc < 0) {
            ngx_tce_consul_detect_err(err, errlen, "invalid JSON: truncated "
                                      "or broken after check %zu", n);
            goto failed;
        }

        /* Output holds any bytes: Go writes a NUL as \u0000 */
        check = json_loadb(start, elen,
                           JSON_DISABLE_EOF_CHECK | JSON_ALLOW_NUL, &jerr);

        if (check == NULL) {
            ngx_tce_consul_detect_err(err, errlen, "invalid JSON in check "
                                      "%zu", n);
            goto failed;
        }

        node = json_object_get(check, "Node");
        id = json_object_get(check, "CheckID");
        status = json_object_get(check, "Status");
        svc = json_object_get(check, "ServiceName");
        mod = json_object_get(check, "ModifyIndex");

        if (!json_is_string(node) || !json_is_string(id)
            || !json_is_string(status) || !json_is_integer(mod)
            || (svc != NULL && !json_is_string(svc) && !json_is_null(svc)))
        {
            json_decref(check);
            ngx_tce_consul_detect_err(err, errlen, "check %zu lacks Node, "
                                      "CheckID, Status or ModifyIndex", n);
            goto failed;
        }

        (void) snprintf(num, sizeof(num), "%lld",
                        (long long) json_integer_value(mod));

        h = ngx_tce_consul_fnv(0xcbf29ce484222325ULL,
                               json_string_value(node));
        h = ngx_tce_consul_fnv(h, json_string_value(id));
        h = ngx_tce_consul_fnv(h, json_string_value(status));
        h = ngx_tce_consul_mix(ngx_tce_consul_fnv(h, num));

        if (!json_is_string(svc) || json_string_length(svc) == 0) {
            nodes += h;

        } else if (json_string_length(svc) < NGX_TCE_SERVICE_LEN) {
            if (nchecks == size) {
                size = size ? size * 2 : 256;
                tmp = realloc(checks, size * sizeof(ngx_tce_consul_check_t));

                if (tmp == NULL) {
                    json_decref(check);
                    ngx_tce_consul_detect_err(err, errlen, "out of memory");
                    goto failed;
                }

                checks = tmp;
            }

            (void) snprintf(checks[nchecks].name, NGX_TCE_SERVICE_LEN, "%s",
                            json_string_value(svc));
            checks[nchecks].hash = h;
            nchecks++;
        }

        json_decref(check);
        n++;
    }

    if (nchecks > 1) {
        /* checks is NULL when there are none: qsort() must not see it */
        qsort(checks, nchecks, sizeof(ngx_tce_consul_check_t),
              ngx_tce_consul_check_cmp);
    }

    out = malloc((nchecks ? nchecks : 1) * sizeof(ngx_tce_consul_digest_t));

    if (out == NULL) {
        ngx_tce_consul_detect_err(err, errlen, "out of memory");
        goto failed;
    }

    /* one digest per service: the mixed sum of its checks and their count */

    k = 0;

    for (i = 0; i < nchecks; i = j) {
        sum = 0;

        for (j = i; j < nchecks && strcmp(checks[j].name, checks[i].name) == 0;
             j++)
        {
            sum += checks[j].hash;
        }

        memcpy(out[k].name, checks[i].name, NGX_TCE_SERVICE_LEN);
        out[k].digest = ngx_tce_consul_mix(sum ^ ((uint64_t) (j - i) << 48));

        if (out[k].digest == 0 || out[k].digest == NGX_TCE_CONSUL_NO_CHECKS) {
            out[k].digest = 1;
        }

        k++;
    }

    free(checks);

    res->services = out;
    res->nservices = k;
    res->nodes = ngx_tce_consul_mix(nodes) | 1;
    res->nchecks = n;

    return 0;

failed:

    free(checks);
    return -1;
}


uint64_t
ngx_tce_consul_digest(const ngx_tce_consul_digests_t *res, const char *name)
{
    ngx_tce_consul_digest_t  *d;

    if (res->nservices == 0) {
        return NGX_TCE_CONSUL_NO_CHECKS;
    }

    d = bsearch(name, res->services, res->nservices,
                sizeof(ngx_tce_consul_digest_t), ngx_tce_consul_digest_cmp);

    return d ? d->digest : NGX_TCE_CONSUL_NO_CHECKS;
}


void
ngx_tce_consul_digests_free(ngx_tce_consul_digests_t *res)
{
    free(res->services);
    memset(res, 0, sizeof(ngx_tce_consul_digests_t));
}
