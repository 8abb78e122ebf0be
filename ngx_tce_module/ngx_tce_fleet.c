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
ngx_tce_fleet_override_parse(const char *value, size_t vlen,
    ngx_tce_fleet_override_t *o, char *why, size_t whylen)
{
    json_t       *root, *v;
    const char   *key;
    json_int_t    w;
    json_error_t  jerr;

    root = json_loadb(value, vlen, JSON_REJECT_DUPLICATES, &jerr);

    if (root == NULL || !json_is_object(root)) {
        snprintf(why, whylen, "not a JSON object");
        json_decref(root);
        return -1;
    }

    o->weight = 0;
    o->drain = 0;
    o->down = 0;

    json_object_foreach(root, key, v) {
        if (strcmp(key, "weight") == 0) {
            w = json_is_integer(v) ? json_integer_value(v) : -1;

            if (w < 0 || w > 1000) {
                snprintf(why, whylen, "weight is not an integer 0..1000");
                goto failed;
            }

            o->weight = (uint16_t) w;

        } else if (strcmp(key, "drain") == 0 || strcmp(key, "down") == 0) {
            if (!json_is_boolean(v)) {
                snprintf(why, whylen, "%s is not a boolean", key);
                goto failed;
            }

            if (key[1] == 'r') {
                o->drain = json_is_true(v);

            } else {
                o->down = json_is_true(v);
            }

        } else {
            snprintf(why, whylen, "unknown key (weight, drain, down)");
            goto failed;
        }
    }

    json_decref(root);

    return 0;

failed:

    json_decref(root);

    return -1;
}


int
ngx_tce_fleet_add_override(ngx_tce_fleet_t *f, const char *field,
    size_t flen, const char *value, size_t vlen, char *err, size_t errlen)
{
    char                       why[128];
    const char                *slash;
    size_t                     slen, ilen;
    ngx_tce_fleet_override_t   o, *p;

    slash = memchr(field, '/', flen);

    if (slash == NULL) {
        ngx_tce_fleet_err(err, errlen, field, flen,
                          "not \"<service>/<instance id>\"");
        return -1;
    }

    slen = slash - field;
    ilen = flen - slen - 1;

    if (!ngx_tce_service_name_valid(field, slen)
        || slen >= NGX_TCE_SERVICE_LEN)
    {
        ngx_tce_fleet_err(err, errlen, field, flen, "bad service name");
        return -1;
    }

    if (!ngx_tce_id_valid(slash + 1, ilen) || ilen >= NGX_TCE_ID_LEN) {
        ngx_tce_fleet_err(err, errlen, field, flen, "bad instance id");
        return -1;
    }

    if (vlen > NGX_TCE_FLEET_VALUE_MAX
        || ngx_tce_fleet_override_parse(value, vlen, &o, why, sizeof(why))
           != 0)
    {
        ngx_tce_fleet_err(err, errlen, field, flen,
                          vlen > NGX_TCE_FLEET_VALUE_MAX
                          ? "override value too long" : why);
        return -1;
    }

    if (ngx_tce_fleet_grow((void **) &f->overrides, &f->noverrides_cap,
                           f->noverrides, sizeof(ngx_tce_fleet_override_t))
        != 0)
    {
        ngx_tce_fleet_err(err, errlen, field, flen,
                          "too many overrides or out of memory");
        return -1;
    }

    p = &f->overrides[f->noverrides++];

    memset(p, 0, sizeof(ngx_tce_fleet_override_t));
    memcpy(p->service, field, slen);
    memcpy(p->id, slash + 1, ilen);
    p->weight = o.weight;
    p->drain = o.drain;
    p->down = o.down;

    return 0;
}


int
ngx_tce_fleet_set_decode(const char *service, size_t slen, const char *value,
    size_t vlen, ngx_tce_state_t *st, char *why, size_t whylen)
{
    size_t                    i;
    ngx_tce_state_service_t  *ss;

    if (ngx_tce_state_decode(value, vlen, st, why, whylen) != 0) {
        return -1;
    }

    ss = st->services;

    if (st->nservices != 1 || strlen(ss->name) != slen
        || memcmp(ss->name, service, slen) != 0)
    {
        snprintf(why, whylen, "not a state document of this one service");
        goto failed;
    }

    for (i = 0; i < ss->nclusters; i++) {
        if (ss->clusters[i].canary != NULL) {
            snprintf(why, whylen, "a canary object (the fleet's policies "
                     "are in the canary hash)");
            goto failed;
        }
    }

    for (i = 0; i < ss->ninstances; i++) {
        ss->instances[i].op_weight = 0;
        ss->instances[i].op_drain = 0;
        ss->instances[i].op_down = 0;
    }

    return 0;

failed:

    ngx_tce_state_free(st);

    return -1;
}


char *
ngx_tce_fleet_set_encode(ngx_tce_state_t *st)
{
    char     *text, *compact;
    size_t    i, j;
    json_t   *doc;

    ngx_tce_state_service_t  *ss;

    for (i = 0; i < st->nservices; i++) {
        ss = &st->services[i];

        for (j = 0; j < ss->nclusters; j++) {
            free(ss->clusters[j].canary);
            ss->clusters[j].canary = NULL;
        }

        for (j = 0; j < ss->ninstances; j++) {
            ss->instances[j].op_weight = 0;
            ss->instances[j].op_drain = 0;
            ss->instances[j].op_down = 0;
        }
    }

    text = ngx_tce_state_encode(st);
    if (text == NULL) {
        return NULL;
    }

    doc = json_loads(text, 0, NULL);
    free(text);

    if (doc == NULL) {
        return NULL;
    }

    compact = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(doc);

    return compact;
}


int
ngx_tce_fleet_add_set(ngx_tce_fleet_t *f, const char *field, size_t flen,
    const char *value, size_t vlen, char *err, size_t errlen)
{
    char                  why[256];
    ngx_tce_state_t       st;
    ngx_tce_fleet_set_t  *p;

    if (!ngx_tce_service_name_valid(field, flen)
        || flen >= NGX_TCE_SERVICE_LEN)
    {
        ngx_tce_fleet_err(err, errlen, field, flen, "bad service name");
        return -1;
    }

    if (ngx_tce_fleet_set_decode(field, flen, value, vlen, &st, why,
                                 sizeof(why))
        != 0)
    {
        ngx_tce_fleet_err(err, errlen, field, flen, why);
        return -1;
    }

    if (ngx_tce_fleet_grow((void **) &f->sets, &f->nsets_cap, f->nsets,
                           sizeof(ngx_tce_fleet_set_t))
        != 0)
    {
        ngx_tce_state_free(&st);
        ngx_tce_fleet_err(err, errlen, field, flen,
                          "too many instance sets or out of memory");
        return -1;
    }

    p = &f->sets[f->nsets++];

    memset(p, 0, sizeof(ngx_tce_fleet_set_t));
    memcpy(p->service, field, flen);
    p->st = st;

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
    char    *text, *pol, field[NGX_TCE_SERVICE_LEN + NGX_TCE_ID_LEN + 2];
    size_t   i;
    json_t  *root, *pols, *revs, *ovs, *sets, *pj;

    const ngx_tce_fleet_override_t  *o;

    root = json_object();
    pols = json_object();
    revs = json_object();
    ovs = json_object();
    sets = json_object();

    /* set_new takes the reference whatever happens, root NULL too */
    if (json_object_set_new(root, "policies", pols) != 0
        || json_object_set_new(root, "revs", revs) != 0
        || json_object_set_new(root, "overrides", ovs) != 0
        || json_object_set_new(root, "sets", sets) != 0
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

    for (i = 0; i < f->noverrides; i++) {
        o = &f->overrides[i];

        snprintf(field, sizeof(field), "%s/%s", o->service, o->id);

        if (json_object_set_new(ovs, field,
                                json_pack("{s:i, s:b, s:b}",
                                          "weight", (int) o->weight,
                                          "drain", (int) o->drain,
                                          "down", (int) o->down))
            != 0)
        {
            goto failed;
        }
    }

    for (i = 0; i < f->nsets; i++) {
        /* already checked: encoded again as it was read */
        text = ngx_tce_state_encode(&f->sets[i].st);
        if (text == NULL) {
            goto failed;
        }

        pj = json_loads(text, 0, NULL);
        free(text);

        if (json_object_set_new(sets, f->sets[i].service, pj) != 0) {
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
    json_t       *root, *pols, *revs, *ovs, *sets, *v, *pj;
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
    ovs = json_object_get(root, "overrides");
    sets = json_object_get(root, "sets");

    if (!json_is_object(root) || !json_is_integer(v)
        || json_integer_value(v) < 0 || !json_is_object(pols)
        || !json_is_object(revs)
        || (ovs != NULL && !json_is_object(ovs))
        || (sets != NULL && !json_is_object(sets))
        || json_object_size(root) != 3u + (ovs != NULL) + (sets != NULL))
    {
        snprintf(err, errlen, "not {\"version\", \"policies\", \"revs\", "
                 "\"overrides\", \"sets\"}");
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

    json_object_foreach(ovs, key, pj) {
        pol = json_is_object(pj) ? json_dumps(pj, JSON_COMPACT) : NULL;

        if (pol == NULL) {
            ngx_tce_fleet_err(err, errlen, key, strlen(key),
                              "not an object");
            goto failed;
        }

        if (ngx_tce_fleet_add_override(f, key, strlen(key), pol,
                                       strlen(pol), err, errlen)
            != 0)
        {
            free(pol);
            goto failed;
        }

        free(pol);
    }

    json_object_foreach(sets, key, pj) {
        pol = json_is_object(pj) ? json_dumps(pj, JSON_COMPACT) : NULL;

        if (pol == NULL) {
            ngx_tce_fleet_err(err, errlen, key, strlen(key),
                              "not an object");
            goto failed;
        }

        if (ngx_tce_fleet_add_set(f, key, strlen(key), pol, strlen(pol),
                                  err, errlen)
            != 0)
        {
            free(pol);
            goto failed;
        }

        free(pol);
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
    size_t  i;

    for (i = 0; i < f->nsets; i++) {
        ngx_tce_state_free(&f->sets[i].st);
    }

    free(f->policies);
    free(f->revs);
    free(f->overrides);
    free(f->sets);
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
