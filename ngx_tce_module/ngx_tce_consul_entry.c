/*
 * One health entry read with the pull reader (ngx_tce_json.c): only the
 * members routing uses are decoded, everything else is checked and
 * skipped.  See ngx_tce_consul_entry_read() in ngx_tce_consul_entry.h.
 */

#include <stdio.h>
#include <string.h>

#include "ngx_tce_consul_entry.h"


#define NGX_TCE_CONSUL_KEY_LEN   32     /* longer keys are none we read */


/* the members one object has that are read, in a table's order */
typedef struct {
    const char               *name;
    size_t                    len;
} ngx_tce_consul_key_t;


static int ngx_tce_consul_entry_members(ngx_tce_json_t *j,
    ngx_tce_consul_fields_t *f, char *reason, size_t rlen);
static int ngx_tce_consul_entry_service(ngx_tce_json_t *j,
    ngx_tce_consul_fields_t *f, char *reason, size_t rlen);
static int ngx_tce_consul_entry_checks(ngx_tce_json_t *j,
    ngx_tce_consul_fields_t *f, char *reason, size_t rlen);
static void ngx_tce_consul_entry_check(ngx_tce_consul_fields_t *f,
    size_t i, ngx_tce_json_value_t *v);
static int ngx_tce_consul_entry_scalars(ngx_tce_json_t *j,
    const ngx_tce_consul_key_t *keys, ngx_tce_json_value_t **values,
    char *reason, size_t rlen);
static int ngx_tce_consul_entry_key(const ngx_tce_consul_key_t *keys,
    const char *key, size_t klen);
static int ngx_tce_consul_entry_dup(unsigned *seen, int k,
    const ngx_tce_consul_key_t *keys, char *reason, size_t rlen);
static int ngx_tce_consul_entry_is(ngx_tce_json_value_t *v, const char *s,
    size_t len);


#define ngx_tce_consul_key(s)  { s, sizeof(s) - 1 }

static const ngx_tce_consul_key_t  ngx_tce_consul_entry_keys[] = {
    ngx_tce_consul_key("Node"),
    ngx_tce_consul_key("Service"),
    ngx_tce_consul_key("Checks"),
    { NULL, 0 }
};

static const ngx_tce_consul_key_t  ngx_tce_consul_node_keys[] = {
    ngx_tce_consul_key("Node"),
    ngx_tce_consul_key("Address"),
    { NULL, 0 }
};

static const ngx_tce_consul_key_t  ngx_tce_consul_service_keys[] = {
    ngx_tce_consul_key("ID"),
    ngx_tce_consul_key("Service"),
    ngx_tce_consul_key("PeerName"),
    ngx_tce_consul_key("Partition"),
    ngx_tce_consul_key("Namespace"),
    ngx_tce_consul_key("Port"),
    ngx_tce_consul_key("Address"),
    ngx_tce_consul_key("Weights"),
    ngx_tce_consul_key("Meta"),
    { NULL, 0 }
};

static const ngx_tce_consul_key_t  ngx_tce_consul_weights_keys[] = {
    ngx_tce_consul_key("Passing"),
    ngx_tce_consul_key("Warning"),
    { NULL, 0 }
};

static const ngx_tce_consul_key_t  ngx_tce_consul_meta_keys[] = {
    ngx_tce_consul_key("cluster"),
    ngx_tce_consul_key("env"),
    ngx_tce_consul_key("version"),
    { NULL, 0 }
};

static const ngx_tce_consul_key_t  ngx_tce_consul_check_keys[] = {
    ngx_tce_consul_key("CheckID"),
    ngx_tce_consul_key("Status"),
    { NULL, 0 }
};


int
ngx_tce_consul_entry_read(const char *s, size_t len, char *scratch,
    ngx_tce_consul_fields_t *f, char *reason, size_t rlen)
{
    ngx_tce_json_t  j;

    memset(f, 0, sizeof(ngx_tce_consul_fields_t));
    f->state = NGX_TCE_CONSUL_PASSING;

    ngx_tce_json_init(&j, s, len, scratch, len + 1);

    f->entry = ngx_tce_json_type(&j);

    if (f->entry == NGX_TCE_JSON_OBJECT) {
        if (ngx_tce_consul_entry_members(&j, f, reason, rlen) != 0) {
            return -1;
        }

    } else if (ngx_tce_json_skip(&j) != 0) {
        goto invalid;
    }

    if (ngx_tce_json_end(&j) == 0) {
        return 0;
    }

invalid:

    ngx_tce_consul_err(reason, rlen, "invalid JSON at column %zu: %s",
                       ngx_tce_json_column(&j), j.err);
    return -1;
}


static int
ngx_tce_consul_entry_members(ngx_tce_json_t *j, ngx_tce_consul_fields_t *f,
    char *reason, size_t rlen)
{
    int                    k, rc;
    char                   key[NGX_TCE_CONSUL_KEY_LEN];
    size_t                 n, klen;
    unsigned               seen;
    ngx_tce_json_value_t   v;
    ngx_tce_json_value_t  *node[2];

    n = 0;
    seen = 0;
    node[0] = &f->node_name;
    node[1] = &f->node_address;

    while ((rc = ngx_tce_json_member(j, &n, key, sizeof(key), &klen)) == 1) {
        k = ngx_tce_consul_entry_key(ngx_tce_consul_entry_keys, key, klen);

        if (k < 0) {
            rc = ngx_tce_json_skip(j);

        } else if (ngx_tce_consul_entry_dup(&seen, k,
                                            ngx_tce_consul_entry_keys,
                                            reason, rlen)
                   != 0)
        {
            return -1;

        } else if (k == 0) {
            f->node = ngx_tce_json_type(j);
            rc = f->node == NGX_TCE_JSON_OBJECT
                 ? ngx_tce_consul_entry_scalars(j, ngx_tce_consul_node_keys,
                                                node, reason, rlen)
                 : ngx_tce_json_read(j, &v);

        } else if (k == 1) {
            f->service = ngx_tce_json_type(j);
            rc = f->service == NGX_TCE_JSON_OBJECT
                 ? ngx_tce_consul_entry_service(j, f, reason, rlen)
                 : ngx_tce_json_read(j, &v);

        } else {
            f->checks = ngx_tce_json_type(j);
            rc = f->checks == NGX_TCE_JSON_ARRAY
                 ? ngx_tce_consul_entry_checks(j, f, reason, rlen)
                 : ngx_tce_json_read(j, &v);
        }

        if (rc != 0) {
            break;
        }
    }

    if (rc == 0) {
        return 0;
    }

    if (j->err != NULL) {
        ngx_tce_consul_err(reason, rlen, "invalid JSON at column %zu: %s",
                           ngx_tce_json_column(j), j->err);
    }

    /* else a repeated key: reason says which */

    return -1;
}


static int
ngx_tce_consul_entry_service(ngx_tce_json_t *j, ngx_tce_consul_fields_t *f,
    char *reason, size_t rlen)
{
    int                    k, rc;
    char                   key[NGX_TCE_CONSUL_KEY_LEN];
    size_t                 n, klen;
    unsigned               seen, *type;
    ngx_tce_json_value_t   v;
    ngx_tce_json_value_t  *values[7], *weights[2], *meta[3];

    values[0] = &f->id;
    values[1] = &f->name;
    values[2] = &f->peer;
    values[3] = &f->partition;
    values[4] = &f->ns;
    values[5] = &f->port;
    values[6] = &f->address;
    weights[0] = &f->passing;
    weights[1] = &f->warning;
    meta[0] = &f->cluster;
    meta[1] = &f->env;
    meta[2] = &f->version;

    n = 0;
    seen = 0;

    while ((rc = ngx_tce_json_member(j, &n, key, sizeof(key), &klen)) == 1) {
        k = ngx_tce_consul_entry_key(ngx_tce_consul_service_keys, key,
                                     klen);
        if (k < 0) {
            rc = ngx_tce_json_skip(j);

        } else if (ngx_tce_consul_entry_dup(&seen, k,
                                            ngx_tce_consul_service_keys,
                                            reason, rlen)
                   != 0)
        {
            return -1;

        } else if (k < 7) {
            rc = ngx_tce_json_read(j, values[k]);

        } else {
            type = k == 7 ? &f->weights : &f->meta;
            *type = ngx_tce_json_type(j);

            rc = *type != NGX_TCE_JSON_OBJECT
                 ? ngx_tce_json_read(j, &v)
                 : k == 7 ? ngx_tce_consul_entry_scalars(j,
                                ngx_tce_consul_weights_keys, weights,
                                reason, rlen)
                          : ngx_tce_consul_entry_scalars(j,
                                ngx_tce_consul_meta_keys, meta, reason,
                                rlen);
        }

        if (rc != 0) {
            return -1;
        }
    }

    return rc;
}


static int
ngx_tce_consul_entry_checks(ngx_tce_json_t *j, ngx_tce_consul_fields_t *f,
    char *reason, size_t rlen)
{
    int                    rc;
    size_t                 n;
    ngx_tce_json_value_t   check[2], *values[2];

    values[0] = &check[0];
    values[1] = &check[1];

    n = 0;

    while ((rc = ngx_tce_json_element(j, &n)) == 1) {
        if (ngx_tce_json_type(j) != NGX_TCE_JSON_OBJECT) {
            if (f->check_err[0] == '\0') {
                ngx_tce_consul_err(f->check_err, sizeof(f->check_err),
                                   "Checks[%zu] is not an object", n - 1);
            }

            if (ngx_tce_json_skip(j) != 0) {
                return -1;
            }

            continue;
        }

        memset(check, 0, sizeof(check));

        if (ngx_tce_consul_entry_scalars(j, ngx_tce_consul_check_keys,
                                         values, reason, rlen)
            != 0)
        {
            return -1;
        }

        ngx_tce_consul_entry_check(f, n - 1, check);
    }

    return rc;
}


/* one check into the entry's state, as the checks come (the first bad
 * one is the entry's reason) */

static void
ngx_tce_consul_entry_check(ngx_tce_consul_fields_t *f, size_t i,
    ngx_tce_json_value_t *v)
{
    if (f->check_err[0] != '\0') {
        return;
    }

    if (ngx_tce_consul_entry_is(&v[0], "_node_maintenance", 17)
        || (v[0].type == NGX_TCE_JSON_STRING && v[0].len >= 21
            && memcmp(v[0].s, "_service_maintenance:", 21) == 0))
    {
        f->state = NGX_TCE_CONSUL_EXCLUDED;
        return;
    }

    if (ngx_tce_consul_entry_is(&v[1], "passing", 7)) {
        return;
    }

    if (ngx_tce_consul_entry_is(&v[1], "warning", 7)) {
        if (f->state == NGX_TCE_CONSUL_PASSING) {
            f->state = NGX_TCE_CONSUL_WARNING;
        }

        return;
    }

    if (ngx_tce_consul_entry_is(&v[1], "critical", 8)) {
        f->state = NGX_TCE_CONSUL_EXCLUDED;
        return;
    }

    ngx_tce_consul_err(f->check_err, sizeof(f->check_err),
                       "Checks[%zu].Status \"%.32s\" is not passing, "
                       "warning or critical", i,
                       v[1].type == NGX_TCE_JSON_STRING ? v[1].s : "");
}


/*
 * An object of which the members in keys are read into values (an
 * object or array there only as its type); the rest is skipped.
 */

static int
ngx_tce_consul_entry_scalars(ngx_tce_json_t *j,
    const ngx_tce_consul_key_t *keys, ngx_tce_json_value_t **values,
    char *reason, size_t rlen)
{
    int       k, rc;
    char      key[NGX_TCE_CONSUL_KEY_LEN];
    size_t    n, klen;
    unsigned  seen;

    n = 0;
    seen = 0;

    while ((rc = ngx_tce_json_member(j, &n, key, sizeof(key), &klen)) == 1) {
        k = ngx_tce_consul_entry_key(keys, key, klen);

        if (k < 0) {
            rc = ngx_tce_json_skip(j);

        } else if (ngx_tce_consul_entry_dup(&seen, k, keys, reason, rlen)
                   != 0)
        {
            return -1;

        } else {
            rc = ngx_tce_json_read(j, values[k]);
        }

        if (rc != 0) {
            return -1;
        }
    }

    return rc;
}


static int
ngx_tce_consul_entry_key(const ngx_tce_consul_key_t *keys, const char *key,
    size_t klen)
{
    int  k;

    for (k = 0; keys[k].name != NULL; k++) {
        if (keys[k].len == klen && memcmp(keys[k].name, key, klen) == 0) {
            return k;
        }
    }

    return -1;
}


/* a key read twice would be ambiguous: Consul never sends one */

static int
ngx_tce_consul_entry_dup(unsigned *seen, int k,
    const ngx_tce_consul_key_t *keys, char *reason, size_t rlen)
{
    if (*seen & (1u << k)) {
        ngx_tce_consul_err(reason, rlen, "duplicate key \"%s\"",
                           keys[k].name);
        return -1;
    }

    *seen |= 1u << k;

    return 0;
}


static int
ngx_tce_consul_entry_is(ngx_tce_json_value_t *v, const char *s, size_t len)
{
    return v->type == NGX_TCE_JSON_STRING && v->len == len
           && memcmp(v->s, s, len) == 0;
}
