/*
 * The fleet's shared policy as data: checks of what Redis holds, the
 * cache file's JSON (ngx_tce_fleet.h).  No nginx header: unit tests
 * link it.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ngx_tce_fleet.h"
#include "ngx_tce_instance.h"
#include "ngx_tce_text.h"


static int ngx_tce_fleet_grow(void **a, size_t *cap, size_t n, size_t size);
static void ngx_tce_fleet_err(char *err, size_t errlen, const char *what,
    size_t wlen, const char *reason);


static int
ngx_tce_fleet_grow(void **a, size_t *cap, size_t n, size_t size)
{
    void    *p;
    size_t   ncap;

    if (n < *cap) {
        return 0;
    }

    if (n >= NGX_TCE_FLEET_MAX) {
        return -1;
    }

    ncap = *cap ? *cap * 2 : 16;

    p = realloc(*a, ncap * size);
    if (p == NULL) {
        return -1;
    }

    *a = p;
    *cap = ncap;

    return 0;
}


/* err = "<what, escaped>: reason" */
static void
ngx_tce_fleet_err(char *err, size_t errlen, const char *what, size_t wlen,
    const char *reason)
{
    char  q[200];

    if (err == NULL || errlen == 0) {
        return;
    }

    (void) ngx_tce_text_escape(q, sizeof(q), what, wlen < 128 ? wlen : 128);

    snprintf(err, errlen, "%s: %s", q, reason);
}


int
ngx_tce_fleet_uint(const char *s, size_t len, uint64_t *v)
{
    size_t    i;
    uint64_t  n;

    if (len == 0 || len > 20) {
        return -1;
    }

    n = 0;

    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }

        if (n > (UINT64_MAX - (uint64_t) (s[i] - '0')) / 10) {
            return -1;
        }

        n = n * 10 + (uint64_t) (s[i] - '0');
    }

    *v = n;

    return 0;
}


int
ngx_tce_fleet_add_policy(ngx_tce_fleet_t *f, const char *field, size_t flen,
    const char *value, size_t vlen, char *err, size_t errlen)
{
    char                     buf[NGX_TCE_FLEET_VALUE_MAX + 1], why[128];
    const char              *slash;
    size_t                   slen, clen;
    ngx_tce_canary_policy_t  pol;
    ngx_tce_fleet_policy_t  *p;

    slash = memchr(field, '/', flen);

    if (slash == NULL) {
        ngx_tce_fleet_err(err, errlen, field, flen,
                          "not \"<service>/<cluster>\"");
        return -1;
    }

    slen = slash - field;
    clen = flen - slen - 1;

    if (!ngx_tce_service_name_valid(field, slen)
        || slen >= NGX_TCE_SERVICE_LEN)
    {
        ngx_tce_fleet_err(err, errlen, field, flen, "bad service name");
        return -1;
    }

    if (!ngx_tce_cluster_name_valid(slash + 1, clen)
        || clen >= NGX_TCE_CLUSTER_LEN)
    {
        ngx_tce_fleet_err(err, errlen, field, flen, "bad cluster name");
        return -1;
    }

    if (vlen > NGX_TCE_FLEET_VALUE_MAX || memchr(value, '\0', vlen)) {
        ngx_tce_fleet_err(err, errlen, field, flen,
                          "policy value too long or not text");
        return -1;
    }

    memcpy(buf, value, vlen);
    buf[vlen] = '\0';

    if (ngx_tce_canary_parse_json(buf, &pol, why, sizeof(why)) != 0) {
        ngx_tce_fleet_err(err, errlen, field, flen, why);
        return -1;
    }

    if (ngx_tce_fleet_grow((void **) &f->policies, &f->npolicies_cap,
                           f->npolicies, sizeof(ngx_tce_fleet_policy_t))
        != 0)
    {
        ngx_tce_fleet_err(err, errlen, field, flen,
                          "too many policies or out of memory");
        return -1;
    }

    p = &f->policies[f->npolicies++];

    memset(p, 0, sizeof(ngx_tce_fleet_policy_t));
    memcpy(p->service, field, slen);
    memcpy(p->cluster, slash + 1, clen);
    p->policy = pol;

    return 0;
}


int
ngx_tce_fleet_add_rev(ngx_tce_fleet_t *f, const char *service, size_t slen,
    const char *value, size_t vlen, char *err, size_t errlen)
{
    uint64_t              rev;
    ngx_tce_fleet_rev_t  *r;

    if (!ngx_tce_service_name_valid(service, slen)
        || slen >= NGX_TCE_SERVICE_LEN)
    {
        ngx_tce_fleet_err(err, errlen, service, slen, "bad service name");
        return -1;
    }

    if (ngx_tce_fleet_uint(value, vlen, &rev) != 0) {
        ngx_tce_fleet_err(err, errlen, service, slen,
                          "revision is not an unsigned integer");
        return -1;
    }

    if (ngx_tce_fleet_grow((void **) &f->revs, &f->nrevs_cap, f->nrevs,
                           sizeof(ngx_tce_fleet_rev_t))
        != 0)
    {
        ngx_tce_fleet_err(err, errlen, service, slen,
                          "too many revisions or out of memory");
        return -1;
    }

    r = &f->revs[f->nrevs++];

    memset(r, 0, sizeof(ngx_tce_fleet_rev_t));
    memcpy(r->service, service, slen);
    r->rev = rev;

    return 0;
}


uint64_t
ngx_tce_fleet_rev(const ngx_tce_fleet_t *f, const char *service, size_t len)
{
    size_t  i;

    for (i = 0; i < f->nrevs; i++) {
        if (strlen(f->revs[i].service) == len
            && memcmp(f->revs[i].service, service, len) == 0)
        {
            return f->revs[i].rev;
        }
    }

    return 0;
}


char *
ngx_tce_fleet_encode(const ngx_tce_fleet_t *f)
{
    char    *text, *pol, field[NGX_TCE_SERVICE_LEN + NGX_TCE_CLUSTER_LEN + 2];
    size_t   i;
    json_t  *root, *pols, *revs, *pj;

    root = json_object();
    pols = json_object();
    revs = json_object();

    /* set_new takes the reference whatever happens, root NULL too */
    if (json_object_set_new(root, "policies", pols) != 0
        || json_object_set_new(root, "revs", revs) != 0
        || json_object_set_new(root, "version",
                               json_integer((json_int_t) f->version))
           != 0)
    {
        goto failed;
    }

    for (i = 0; i < f->npolicies; i++) {
        snprintf(field, sizeof(field), "%s/%s", f->policies[i].service,
                 f->policies[i].cluster);

        pol = ngx_tce_canary_encode_json(&f->policies[i].policy);
        if (pol == NULL) {
            goto failed;
        }

        pj = json_loads(pol, 0, NULL);
        free(pol);

        if (json_object_set_new(pols, field, pj) != 0) {
            goto failed;
        }
    }

    for (i = 0; i < f->nrevs; i++) {
        if (json_object_set_new(revs, f->revs[i].service,
                                json_integer((json_int_t) f->revs[i].rev))
            != 0)
        {
            goto failed;
        }
    }

    text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);

    return text;

failed:

    json_decref(root);

    return NULL;
}


int
ngx_tce_fleet_decode(const char *text, size_t len, ngx_tce_fleet_t *f,
    char *err, size_t errlen)
{
    char         *pol, num[32];
    size_t        plen;
    json_t       *root, *pols, *revs, *v, *pj;
    const char   *key;
    json_error_t  jerr;

    memset(f, 0, sizeof(ngx_tce_fleet_t));

    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(err, errlen, "line %d: %s", jerr.line, jerr.text);
        return -1;
    }

    v = json_object_get(root, "version");
    pols = json_object_get(root, "policies");
    revs = json_object_get(root, "revs");

    if (!json_is_object(root) || !json_is_integer(v)
        || json_integer_value(v) < 0 || !json_is_object(pols)
        || !json_is_object(revs) || json_object_size(root) != 3)
    {
        snprintf(err, errlen, "not {\"version\", \"policies\", \"revs\"}");
        goto failed;
    }

    f->version = (uint64_t) json_integer_value(v);

    json_object_foreach(pols, key, pj) {
        if (!json_is_object(pj)) {
            ngx_tce_fleet_err(err, errlen, key, strlen(key),
                              "not an object");
            goto failed;
        }

        pol = json_dumps(pj, JSON_COMPACT);
        if (pol == NULL) {
            snprintf(err, errlen, "out of memory");
            goto failed;
        }

        plen = strlen(pol);

        if (ngx_tce_fleet_add_policy(f, key, strlen(key), pol, plen, err,
                                     errlen)
            != 0)
        {
            free(pol);
            goto failed;
        }

        free(pol);
    }

    json_object_foreach(revs, key, pj) {
        if (!json_is_integer(pj) || json_integer_value(pj) < 0) {
            ngx_tce_fleet_err(err, errlen, key, strlen(key),
                              "revision is not an unsigned integer");
            goto failed;
        }

        snprintf(num, sizeof(num), "%lld",
                 (long long) json_integer_value(pj));

        if (ngx_tce_fleet_add_rev(f, key, strlen(key), num, strlen(num), err,
                                  errlen)
            != 0)
        {
            goto failed;
        }
    }

    json_decref(root);

    return 0;

failed:

    json_decref(root);
    ngx_tce_fleet_free(f);

    return -1;
}


void
ngx_tce_fleet_free(ngx_tce_fleet_t *f)
{
    free(f->policies);
    free(f->revs);
    memset(f, 0, sizeof(ngx_tce_fleet_t));
}


int
ngx_tce_fleet_if_match(const char *v, size_t len, uint64_t *rev)
{
    while (len && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }

    while (len && (v[len - 1] == ' ' || v[len - 1] == '\t')) {
        len--;
    }

    if (len == 1 && v[0] == '*') {
        return 0;
    }

    if (len >= 2 && v[0] == 'W' && v[1] == '/') {
        v += 2;
        len -= 2;
    }

    if (len < 3 || v[0] != '"' || v[len - 1] != '"') {
        return -1;
    }

    return ngx_tce_fleet_uint(v + 1, len - 2, rev) == 0 ? 1 : -1;
}
