/*
 * Canary routing without nginx: buckets, split, policy parsing.
 * See ngx_tce_canary.h for the definitions every node shares.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "ngx_tce_canary.h"


#define NGX_TCE_MURMUR_M  0xc6a4a7935bd1e995ULL
#define NGX_TCE_MURMUR_R  47


static int ngx_tce_canary_fail(char *err, size_t errlen, const char *fmt,
    ...);


/*
 * MurmurHash64A's block mixing (Austin Appleby, public domain) over
 * 64-bit little-endian blocks, the epoch as its seed.  Two changes
 * for short keys, whose bytes differ at the end: the last, partial
 * block is mixed like the others, and murmur3's fmix64 finishes.
 * A few instructions per 8 bytes: FNV-1a costs that per byte.
 */
uint32_t
ngx_tce_canary_bucket(const void *key, size_t len, uint64_t epoch)
{
    size_t          i, n;
    uint64_t        h, k;
    const uint8_t  *p;

    p = key;
    h = epoch ^ (len * NGX_TCE_MURMUR_M);
    n = len / 8;

    for (i = 0; i < n; i++, p += 8) {
        memcpy(&k, p, 8);
#if (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
        k = __builtin_bswap64(k);
#endif

        k *= NGX_TCE_MURMUR_M;
        k ^= k >> NGX_TCE_MURMUR_R;
        k *= NGX_TCE_MURMUR_M;

        h ^= k;
        h *= NGX_TCE_MURMUR_M;
    }

    n = len & 7;

    if (n) {
        k = 0;

        switch (n) {
        case 7:
            k |= (uint64_t) p[6] << 48;
            /* fall through */
        case 6:
            k |= (uint64_t) p[5] << 40;
            /* fall through */
        case 5:
            k |= (uint64_t) p[4] << 32;
            /* fall through */
        case 4:
            k |= (uint64_t) p[3] << 24;
            /* fall through */
        case 3:
            k |= (uint64_t) p[2] << 16;
            /* fall through */
        case 2:
            k |= (uint64_t) p[1] << 8;
            /* fall through */
        default:
            k |= p[0];
        }

        k *= NGX_TCE_MURMUR_M;
        k ^= k >> NGX_TCE_MURMUR_R;
        k *= NGX_TCE_MURMUR_M;

        h ^= k;
        h *= NGX_TCE_MURMUR_M;
    }

    /* fmix64 */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;

    return (uint32_t) (h % NGX_TCE_CANARY_SCALE);
}


unsigned
ngx_tce_canary_sticky(const ngx_tce_canary_policy_t *p, const void *key,
    size_t len)
{
    /* the ends need no hash: no bucket is below 0, all are below SCALE */
    if (p->weight == 0) {
        return NGX_TCE_ENV_PROD;
    }

    if (p->weight >= NGX_TCE_CANARY_SCALE) {
        return NGX_TCE_ENV_CANARY;
    }

    return ngx_tce_canary_bucket(key, len, p->epoch) < p->weight
           ? NGX_TCE_ENV_CANARY : NGX_TCE_ENV_PROD;
}


void
ngx_tce_canary_split_init(ngx_tce_canary_split_t *s, uint32_t seed)
{
    s->acc = seed % NGX_TCE_CANARY_SCALE;
}


unsigned
ngx_tce_canary_split_next(ngx_tce_canary_split_t *s, uint32_t weight)
{
    if (weight > NGX_TCE_CANARY_SCALE) {
        weight = NGX_TCE_CANARY_SCALE;
    }

    /*
     * After n requests the canary count is floor((acc0 + n * w) / SCALE):
     * any SCALE consecutive requests hold exactly w canary ones.
     */

    s->acc += weight;

    if (s->acc >= NGX_TCE_CANARY_SCALE) {
        s->acc -= NGX_TCE_CANARY_SCALE;
        return NGX_TCE_ENV_CANARY;
    }

    return NGX_TCE_ENV_PROD;
}


int
ngx_tce_canary_weight_parse(const char *s, size_t len)
{
    size_t  i, ndec;
    int     v, dot;

    if (len == 0 || s[0] == '.') {
        return -1;
    }

    v = 0;
    dot = 0;
    ndec = 0;

    for (i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (dot) {
                return -1;
            }

            dot = 1;
            continue;
        }

        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }

        if (dot && ++ndec > 2) {
            return -1;
        }

        v = v * 10 + (s[i] - '0');

        if (v > NGX_TCE_CANARY_SCALE) {
            return -1;
        }
    }

    if (dot && ndec == 0) {
        return -1;          /* "5." */
    }

    while (ndec++ < 2) {
        v *= 10;
    }

    return v <= NGX_TCE_CANARY_SCALE ? v : -1;
}


int
ngx_tce_canary_override_parse(const char *s, size_t len)
{
    if ((len == 6 && strncasecmp(s, "canary", 6) == 0)
        || (len == 6 && strncasecmp(s, "always", 6) == 0))
    {
        return NGX_TCE_ENV_CANARY;
    }

    if ((len == 4 && strncasecmp(s, "prod", 4) == 0)
        || (len == 5 && strncasecmp(s, "never", 5) == 0))
    {
        return NGX_TCE_ENV_PROD;
    }

    return -1;
}


static int
ngx_tce_canary_fail(char *err, size_t errlen, const char *fmt, ...)
{
    char     *p;
    va_list   args;

    if (err != NULL && errlen) {
        va_start(args, fmt);
        vsnprintf(err, errlen, fmt, args);
        va_end(args);

        /* a key or jansson's text may quote any byte of the input */
        for (p = err; *p != '\0'; p++) {
            if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7f) {
                *p = '?';
            }
        }
    }

    return -1;
}


int
ngx_tce_canary_parse_json(const char *text, ngx_tce_canary_policy_t *p,
    char *err, size_t errlen)
{
    json_t                   *root, *v;
    const char               *key;
    json_error_t              jerr;
    ngx_tce_canary_policy_t   pol;

    root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);

    if (root == NULL) {
        return ngx_tce_canary_fail(err, errlen, "line %d, column %d: %s",
                                   jerr.line, jerr.column, jerr.text);
    }

    if (!json_is_object(root)) {
        json_decref(root);
        return ngx_tce_canary_fail(err, errlen, "must be an object");
    }

    json_object_foreach(root, key, v) {
        if (strcmp(key, "weight_bp") != 0 && strcmp(key, "epoch") != 0
            && strcmp(key, "fallback") != 0)
        {
            ngx_tce_canary_fail(err, errlen, "%.64s: unknown key "
                                "(expected weight_bp, epoch, fallback)",
                                key);
            json_decref(root);
            return -1;
        }
    }

    pol.epoch = 0;
    pol.fallback = 1;

    v = json_object_get(root, "weight_bp");

    if (v == NULL) {
        json_decref(root);
        return ngx_tce_canary_fail(err, errlen, "weight_bp: missing "
                                   "(basis points, 0..10000)");
    }

    if (!json_is_integer(v) || json_integer_value(v) < 0
        || json_integer_value(v) > NGX_TCE_CANARY_SCALE)
    {
        json_decref(root);
        return ngx_tce_canary_fail(err, errlen, "weight_bp: must be an "
                                   "integer 0..10000 (basis points)");
    }

    pol.weight = (uint32_t) json_integer_value(v);

    v = json_object_get(root, "epoch");

    if (v != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            json_decref(root);
            return ngx_tce_canary_fail(err, errlen, "epoch: must be an "
                                       "integer >= 0");
        }

        pol.epoch = (uint64_t) json_integer_value(v);
    }

    v = json_object_get(root, "fallback");

    if (v != NULL) {
        if (!json_is_boolean(v)) {
            json_decref(root);
            return ngx_tce_canary_fail(err, errlen, "fallback: must be "
                                       "true or false");
        }

        pol.fallback = json_is_true(v) ? 1 : 0;
    }

    json_decref(root);

    *p = pol;

    return 0;
}


char *
ngx_tce_canary_encode_json(const ngx_tce_canary_policy_t *p)
{
    char    *s;
    json_t  *root;

    root = json_pack("{s:I, s:b, s:i}", "epoch", (json_int_t) p->epoch,
                     "fallback", p->fallback ? 1 : 0,
                     "weight_bp", (int) p->weight);
    if (root == NULL) {
        return NULL;
    }

    s = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);

    return s;
}


int
ngx_tce_canary_check_state(const ngx_tce_state_t *st, char *err,
    size_t errlen)
{
    char                            why[160];
    size_t                          i, j;
    ngx_tce_canary_policy_t         p;
    const ngx_tce_state_cluster_t  *cl;

    for (i = 0; i < st->nservices; i++) {
        for (j = 0; j < st->services[i].nclusters; j++) {
            cl = &st->services[i].clusters[j];

            if (cl->canary == NULL) {
                continue;
            }

            if (ngx_tce_canary_parse_json(cl->canary, &p, why, sizeof(why))
                != 0)
            {
                return ngx_tce_canary_fail(err, errlen,
                                           "services.%s.clusters.%s.canary."
                                           "%s", st->services[i].name,
                                           cl->cluster, why);
            }
        }
    }

    return 0;
}
