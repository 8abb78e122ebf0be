/*
 * The admin API's checks of instance operations (pure C, no nginx):
 * see ngx_http_tce_admin_inst_input.h.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ngx_http_tce_admin_inst_input.h"
#include "ngx_tce_instance.h"
#include "ngx_tce_text.h"


#define NGX_HTTP_TCE_ADMIN_QUOTE_LEN  64


static void ngx_http_tce_admin_ierr(ngx_http_tce_admin_err_t *err,
    const char *code, const char *where, const char *fmt, const char *arg,
    size_t len);
static json_t *ngx_http_tce_admin_object(const char *buf, size_t len,
    ngx_http_tce_admin_err_t *err);
static int ngx_http_tce_admin_flag(json_t *v, const char *key, int *to,
    ngx_http_tce_admin_err_t *err);
static int ngx_http_tce_admin_inst(json_t *o, int with_env,
    const char *where, ngx_tce_instance_t *inst,
    ngx_http_tce_admin_err_t *err);
static int ngx_http_tce_admin_id_cmp(const void *a, const void *b);


/* "<where><fmt>" with fmt's one %s the quoted input, escaped and cut */
static void
ngx_http_tce_admin_ierr(ngx_http_tce_admin_err_t *err, const char *code,
    const char *where, const char *fmt, const char *arg, size_t len)
{
    int   n;
    char  quoted[NGX_HTTP_TCE_ADMIN_QUOTE_LEN];

    (void) ngx_tce_text_escape(quoted, sizeof(quoted), arg ? arg : "",
                               arg ? len : 0);

    err->code = code;

    n = snprintf(err->text, sizeof(err->text), "%s", where);

    if (n >= 0 && (size_t) n < sizeof(err->text)) {
        (void) snprintf(err->text + n, sizeof(err->text) - n, fmt, quoted);
    }
}


static json_t *
ngx_http_tce_admin_object(const char *buf, size_t len,
    ngx_http_tce_admin_err_t *err)
{
    json_t        *root;
    json_error_t   jerr;

    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        ngx_http_tce_admin_ierr(err, "invalid_json", "", "body: %s",
                                jerr.text, strlen(jerr.text));
        return NULL;
    }

    if (!json_is_object(root)) {
        ngx_http_tce_admin_ierr(err, "wrong_type", "",
                                "body: must be a JSON object%s", NULL, 0);
        json_decref(root);
        return NULL;
    }

    return root;
}


/* true: 1; false or null: 0 */
static int
ngx_http_tce_admin_flag(json_t *v, const char *key, int *to,
    ngx_http_tce_admin_err_t *err)
{
    if (!json_is_boolean(v) && !json_is_null(v)) {
        ngx_http_tce_admin_ierr(err, "wrong_type", key,
                                ": must be true, false or null%s", NULL, 0);
        return -1;
    }

    *to = json_is_true(v);

    return 0;
}


int
ngx_http_tce_admin_patch_parse(const char *buf, size_t len,
    ngx_http_tce_admin_patch_req_t *req, ngx_http_tce_admin_err_t *err)
{
    int          rc;
    json_t      *root, *v;
    json_int_t   w;
    const char  *key;

    req->weight = -1;
    req->drain = -1;
    req->down = -1;

    root = ngx_http_tce_admin_object(buf, len, err);
    if (root == NULL) {
        return -1;
    }

    rc = -1;

    if (json_object_size(root) == 0) {
        ngx_http_tce_admin_ierr(err, "missing_field", "",
                                "body: needs \"weight\", \"drain\" or "
                                "\"down\"%s", NULL, 0);
        goto done;
    }

    json_object_foreach(root, key, v) {

        if (strcmp(key, "weight") == 0) {
            if (json_is_null(v)) {
                req->weight = 0;
                continue;
            }

            if (!json_is_integer(v)) {
                ngx_http_tce_admin_ierr(err, "wrong_type", "weight",
                                        ": must be an integer 1..1000 or "
                                        "null%s", NULL, 0);
                goto done;
            }

            w = json_integer_value(v);

            if (w < NGX_TCE_WEIGHT_MIN || w > NGX_TCE_WEIGHT_MAX) {
                err->code = "out_of_range";
                (void) snprintf(err->text, sizeof(err->text),
                                "weight: must be 1..1000 (null clears "
                                "the override), got %lld", (long long) w);
                goto done;
            }

            req->weight = (int) w;

        } else if (strcmp(key, "drain") == 0) {
            if (ngx_http_tce_admin_flag(v, key, &req->drain, err) != 0) {
                goto done;
            }

        } else if (strcmp(key, "down") == 0) {
            if (ngx_http_tce_admin_flag(v, key, &req->down, err) != 0) {
                goto done;
            }

        } else {
            ngx_http_tce_admin_ierr(err, "unknown_field", "",
                                    "body: unknown field \"%s\" (known: "
                                    "weight, drain, down)", key,
                                    strlen(key));
            goto done;
        }
    }

    rc = 0;

done:

    json_decref(root);

    return rc;
}


/* one instance object; where prefixes the texts ("", "instances[3].") */
static int
ngx_http_tce_admin_inst(json_t *o, int with_env, const char *where,
    ngx_tce_instance_t *inst, ngx_http_tce_admin_err_t *err)
{
    int          n;
    char         at[64];
    json_t      *v;
    json_int_t   w;
    const char  *key;

    memset(inst, 0, sizeof(ngx_tce_instance_t));
    inst->weight = 1;
    inst->env = NGX_TCE_ENV_PROD;
    inst->state = NGX_TCE_STATE_UP;

    if (!json_is_object(o)) {
        ngx_http_tce_admin_ierr(err, "wrong_type", where,
                                "instance: must be a JSON object%s",
                                NULL, 0);
        return -1;
    }

    json_object_foreach(o, key, v) {

        (void) snprintf(at, sizeof(at), "%s%s", where, key);

        if (strcmp(key, "id") == 0 || strcmp(key, "address") == 0
            || strcmp(key, "version") == 0
            || (with_env && strcmp(key, "env") == 0))
        {
            if (!json_is_string(v)) {
                ngx_http_tce_admin_ierr(err, "wrong_type", at,
                                        ": must be a string%s", NULL, 0);
                return -1;
            }
        }

        if (strcmp(key, "id") == 0) {
            if (!ngx_tce_id_valid(json_string_value(v), json_string_length(v))
                || ngx_tce_strlcpy(inst->id, NGX_TCE_ID_LEN,
                                   json_string_value(v),
                                   json_string_length(v))
                   != 0)
            {
                ngx_http_tce_admin_ierr(err, "bad_id", at,
                                        ": must be 1..127 printable "
                                        "characters without spaces or "
                                        "quotes, got \"%s\"",
                                        json_string_value(v),
                                        json_string_length(v));
                return -1;
            }

        } else if (strcmp(key, "address") == 0) {
            if (ngx_tce_addr_parse(json_string_value(v),
                                   json_string_length(v), inst)
                != 0)
            {
                ngx_http_tce_admin_ierr(err, "bad_address", at,
                                        ": must be a numeric IPv4:port or "
                                        "[IPv6]:port, got \"%s\"",
                                        json_string_value(v),
                                        json_string_length(v));
                return -1;
            }

        } else if (strcmp(key, "version") == 0) {
            if (!ngx_tce_version_valid(json_string_value(v),
                                       json_string_length(v))
                || ngx_tce_strlcpy(inst->version, NGX_TCE_VERSION_LEN,
                                   json_string_value(v),
                                   json_string_length(v))
                   != 0)
            {
                ngx_http_tce_admin_ierr(err, "out_of_range", at,
                                        ": must be 0..63 printable "
                                        "characters without spaces or "
                                        "quotes, got \"%s\"",
                                        json_string_value(v),
                                        json_string_length(v));
                return -1;
            }

        } else if (with_env && strcmp(key, "env") == 0) {
            n = ngx_tce_env_parse(json_string_value(v),
                                  json_string_length(v));
            if (n < 0) {
                ngx_http_tce_admin_ierr(err, "out_of_range", at,
                                        ": must be \"prod\" or \"canary\", "
                                        "got \"%s\"", json_string_value(v),
                                        json_string_length(v));
                return -1;
            }

            inst->env = (uint8_t) n;

        } else if (strcmp(key, "weight") == 0) {
            if (!json_is_integer(v)) {
                ngx_http_tce_admin_ierr(err, "wrong_type", at,
                                        ": must be an integer 1..1000%s",
                                        NULL, 0);
                return -1;
            }

            w = json_integer_value(v);

            if (w < NGX_TCE_WEIGHT_MIN || w > NGX_TCE_WEIGHT_MAX) {
                err->code = "out_of_range";
                (void) snprintf(err->text, sizeof(err->text),
                                "%s: must be 1..1000, got %lld", at,
                                (long long) w);
                return -1;
            }

            inst->weight = (uint16_t) w;

        } else {
            ngx_http_tce_admin_ierr(err, "unknown_field", where,
                                    with_env
                                    ? "instance: unknown field \"%s\" "
                                      "(known: id, address, weight, env, "
                                      "version)"
                                    : "instance: unknown field \"%s\" "
                                      "(known: id, address, weight, "
                                      "version)", key, strlen(key));
            return -1;
        }
    }

    if (inst->id[0] == '\0' || inst->addr[0] == '\0') {
        ngx_http_tce_admin_ierr(err, "missing_field", where,
                                "instance: needs \"id\" and "
                                "\"address\"%s", NULL, 0);
        return -1;
    }

    return 0;
}


int
ngx_http_tce_admin_add_parse(const char *buf, size_t len,
    ngx_tce_instance_t *inst, ngx_http_tce_admin_err_t *err)
{
    int      rc;
    json_t  *root;

    root = ngx_http_tce_admin_object(buf, len, err);
    if (root == NULL) {
        return -1;
    }

    rc = ngx_http_tce_admin_inst(root, 1, "", inst, err);

    json_decref(root);

    return rc;
}


static int
ngx_http_tce_admin_id_cmp(const void *a, const void *b)
{
    return strcmp(((const ngx_tce_instance_t *) a)->id,
                  ((const ngx_tce_instance_t *) b)->id);
}


int
ngx_http_tce_admin_set_parse(const char *buf, size_t len, unsigned env,
    ngx_tce_instance_t **inst, size_t *n, ngx_http_tce_admin_err_t *err)
{
    char                 where[48];
    size_t               i, count;
    json_t              *root, *list, *v;
    const char          *key;
    ngx_tce_instance_t  *a, *sorted;

    *inst = NULL;
    *n = 0;

    root = ngx_http_tce_admin_object(buf, len, err);
    if (root == NULL) {
        return -1;
    }

    a = NULL;
    sorted = NULL;
    list = NULL;

    json_object_foreach(root, key, v) {
        if (strcmp(key, "instances") != 0) {
            ngx_http_tce_admin_ierr(err, "unknown_field", "",
                                    "body: unknown field \"%s\" (known: "
                                    "instances)", key, strlen(key));
            goto failed;
        }

        list = v;
    }

    if (list == NULL) {
        ngx_http_tce_admin_ierr(err, "missing_field", "",
                                "body: needs \"instances\" (the desired "
                                "set, [] for none)%s", NULL, 0);
        goto failed;
    }

    if (!json_is_array(list)) {
        ngx_http_tce_admin_ierr(err, "wrong_type", "",
                                "instances: must be an array%s", NULL, 0);
        goto failed;
    }

    count = json_array_size(list);

    if (count) {
        a = calloc(count, sizeof(ngx_tce_instance_t));
        sorted = calloc(count, sizeof(ngx_tce_instance_t));

        if (a == NULL || sorted == NULL) {
            ngx_http_tce_admin_ierr(err, "no_memory", "",
                                    "out of memory%s", NULL, 0);
            goto failed;
        }
    }

    json_array_foreach(list, i, v) {
        (void) snprintf(where, sizeof(where), "instances[%zu].", i);

        if (ngx_http_tce_admin_inst(v, 0, where, &a[i], err) != 0) {
            goto failed;
        }

        a[i].env = (uint8_t) env;
    }

    if (count) {
        memcpy(sorted, a, count * sizeof(ngx_tce_instance_t));
        qsort(sorted, count, sizeof(ngx_tce_instance_t),
              ngx_http_tce_admin_id_cmp);

        for (i = 1; i < count; i++) {
            if (strcmp(sorted[i - 1].id, sorted[i].id) == 0) {
                ngx_http_tce_admin_ierr(err, "duplicate_id", "",
                                        "instances: id \"%s\" is given "
                                        "more than once", sorted[i].id,
                                        strlen(sorted[i].id));
                goto failed;
            }
        }
    }

    free(sorted);
    json_decref(root);

    *inst = a;
    *n = count;

    return 0;

failed:

    free(a);
    free(sorted);
    json_decref(root);

    return -1;
}


int
ngx_http_tce_admin_query_parse(const char *q, size_t len, uint64_t *ms,
    ngx_http_tce_admin_err_t *err)
{
    int         given;
    size_t      i, s, e, d;
    uint64_t    v, unit;
    const char  *p;

    given = 0;
    i = 0;

    while (i < len) {
        s = i;

        while (i < len && q[i] != '&') {
            i++;
        }

        e = i++;

        if (e == s) {
            continue;
        }

        if (e - s < 8 || memcmp(q + s, "timeout=", 8) != 0) {
            ngx_http_tce_admin_ierr(err, "unknown_field", "",
                                    "query: unknown parameter \"%s\" "
                                    "(known: timeout)", q + s, e - s);
            return -1;
        }

        if (given) {
            ngx_http_tce_admin_ierr(err, "unknown_field", "",
                                    "query: \"timeout\" given twice%s",
                                    NULL, 0);
            return -1;
        }

        p = q + s + 8;
        d = 0;
        v = 0;

        while (p + d < q + e && p[d] >= '0' && p[d] <= '9' && d < 12) {
            v = v * 10 + (uint64_t) (p[d] - '0');
            d++;
        }

        unit = 1000;

        if (p + d == q + e) {
            unit = 1000;

        } else if (q + e - (p + d) == 2 && memcmp(p + d, "ms", 2) == 0) {
            unit = 1;

        } else if (q + e - (p + d) == 1 && p[d] == 's') {
            unit = 1000;

        } else if (q + e - (p + d) == 1 && p[d] == 'm') {
            unit = 60 * 1000;

        } else if (q + e - (p + d) == 1 && p[d] == 'h') {
            unit = 3600 * 1000;

        } else {
            d = 0;
        }

        if (d == 0 || v * unit > NGX_HTTP_TCE_ADMIN_DRAIN_MAX) {
            ngx_http_tce_admin_ierr(err, "out_of_range", "",
                                    "timeout: must be a time such as 30s, "
                                    "500ms, 2m, 1h (at most 24h), got "
                                    "\"%s\"", p, q + e - p);
            return -1;
        }

        *ms = v * unit;
        given = 1;
    }

    return given;
}
