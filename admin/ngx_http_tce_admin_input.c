/*
 * The admin API's input checks (pure C, no nginx): see
 * ngx_http_tce_admin_input.h.
 */

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "ngx_http_tce_admin_input.h"
#include "ngx_tce_text.h"


#define NGX_HTTP_TCE_ADMIN_QUOTE_LEN  64


static void ngx_http_tce_admin_err(ngx_http_tce_admin_err_t *err,
    const char *code, const char *fmt, const char *arg, size_t len);
static int ngx_http_tce_admin_weight_json(json_t *v, int32_t *bp,
    ngx_http_tce_admin_err_t *err);


/* fmt has one %s: the quoted input, escaped and cut */
static void
ngx_http_tce_admin_err(ngx_http_tce_admin_err_t *err, const char *code,
    const char *fmt, const char *arg, size_t len)
{
    char  quoted[NGX_HTTP_TCE_ADMIN_QUOTE_LEN];

    (void) ngx_tce_text_escape(quoted, sizeof(quoted), arg ? arg : "",
                               arg ? len : 0);

    err->code = code;
    (void) snprintf(err->text, sizeof(err->text), fmt, quoted);
}


static int
ngx_http_tce_admin_weight_json(json_t *v, int32_t *bp,
    ngx_http_tce_admin_err_t *err)
{
    int     n;
    double  d, scaled;

    if (json_is_string(v)) {
        n = ngx_tce_canary_weight_parse(json_string_value(v),
                                        json_string_length(v));
        if (n < 0) {
            ngx_http_tce_admin_err(err, "out_of_range",
                                   "weight: must be a percentage 0..100 "
                                   "with at most 2 decimals, got \"%s\"",
                                   json_string_value(v),
                                   json_string_length(v));
            return -1;
        }

        *bp = n;
        return 0;
    }

    if (!json_is_number(v)) {
        ngx_http_tce_admin_err(err, "wrong_type",
                               "weight: must be a number (percent)%s",
                               NULL, 0);
        return -1;
    }

    d = json_number_value(v);
    scaled = d * 100.0;

    if (!(d >= 0.0 && d <= 100.0)
        || fabs(scaled - floor(scaled + 0.5)) > 1e-6)
    {
        err->code = "out_of_range";
        (void) snprintf(err->text, sizeof(err->text),
                        "weight: must be a percentage 0..100 with at most "
                        "2 decimals, got %.17g", d);
        return -1;
    }

    *bp = (int32_t) floor(scaled + 0.5);

    return 0;
}


int
ngx_http_tce_admin_canary_parse(const char *buf, size_t len,
    ngx_http_tce_admin_canary_req_t *req, ngx_http_tce_admin_err_t *err)
{
    int            rc;
    json_t        *root, *v;
    json_int_t     n;
    const char    *key;
    json_error_t   jerr;

    req->weight = -1;
    req->fallback = -1;
    req->rollback = 0;

    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        ngx_http_tce_admin_err(err, "invalid_json", "body: %s", jerr.text,
                               strlen(jerr.text));
        return -1;
    }

    rc = -1;

    if (!json_is_object(root)) {
        ngx_http_tce_admin_err(err, "wrong_type",
                               "body: must be a JSON object%s", NULL, 0);
        goto done;
    }

    if (json_object_size(root) == 0) {
        ngx_http_tce_admin_err(err, "missing_field",
                               "body: needs \"weight\", \"weight_bp\", "
                               "\"fallback\" or \"rollback\"%s", NULL, 0);
        goto done;
    }

    json_object_foreach(root, key, v) {

        if (strcmp(key, "weight") == 0) {
            if (req->weight >= 0) {
                goto both;
            }

            if (ngx_http_tce_admin_weight_json(v, &req->weight, err) != 0) {
                goto done;
            }

        } else if (strcmp(key, "weight_bp") == 0) {
            if (req->weight >= 0) {
                goto both;
            }

            if (!json_is_integer(v)) {
                ngx_http_tce_admin_err(err, "wrong_type",
                                       "weight_bp: must be an integer%s",
                                       NULL, 0);
                goto done;
            }

            n = json_integer_value(v);

            if (n < 0 || n > NGX_TCE_CANARY_SCALE) {
                err->code = "out_of_range";
                (void) snprintf(err->text, sizeof(err->text),
                                "weight_bp: must be 0..10000, got %lld",
                                (long long) n);
                goto done;
            }

            req->weight = (int32_t) n;

        } else if (strcmp(key, "fallback") == 0) {
            if (!json_is_boolean(v)) {
                ngx_http_tce_admin_err(err, "wrong_type",
                                       "fallback: must be true or false%s",
                                       NULL, 0);
                goto done;
            }

            req->fallback = json_is_true(v);

        } else if (strcmp(key, "rollback") == 0) {
            if (!json_is_true(v)) {
                ngx_http_tce_admin_err(err, json_is_boolean(v)
                                            ? "out_of_range" : "wrong_type",
                                       "rollback: must be true%s", NULL, 0);
                goto done;
            }

            req->rollback = 1;

        } else {
            ngx_http_tce_admin_err(err, "unknown_field",
                                   "body: unknown field \"%s\" (known: "
                                   "weight, weight_bp, fallback, rollback)",
                                   key, strlen(key));
            goto done;
        }
    }

    if (req->rollback && req->weight >= 0) {
        ngx_http_tce_admin_err(err, "conflict",
                               "body: \"rollback\" sets the weight to 0: "
                               "give no weight with it%s", NULL, 0);
        goto done;
    }

    rc = 0;
    goto done;

both:

    ngx_http_tce_admin_err(err, "conflict",
                           "body: give \"weight\" or \"weight_bp\", "
                           "not both%s", NULL, 0);

done:

    json_decref(root);

    return rc;
}


void
ngx_http_tce_admin_canary_apply(const ngx_http_tce_admin_canary_req_t *req,
    const ngx_tce_canary_policy_t *cur, ngx_tce_canary_policy_t *next)
{
    *next = *cur;

    if (req->weight >= 0) {
        next->weight = (uint32_t) req->weight;
    }

    if (req->fallback >= 0) {
        next->fallback = (uint32_t) req->fallback;
    }

    if (req->rollback) {
        next->weight = 0;
        next->epoch = cur->epoch + 1;
    }
}


int
ngx_http_tce_admin_token_equal(const char *given, size_t glen,
    const char *token, size_t tlen)
{
    size_t         i;
    unsigned char  diff, g;

    diff = (unsigned char) (glen != tlen);

    /* every byte of the configured token is read whatever was given */
    for (i = 0; i < tlen; i++) {
        g = (unsigned char) (i < glen ? given[i] : 0);
        diff |= (unsigned char) (g ^ (unsigned char) token[i]);
    }

    return diff == 0;
}


int
ngx_http_tce_admin_token_line(const char *line, size_t len, size_t *tok,
    size_t *tok_len, size_t *name, size_t *name_len,
    ngx_http_tce_admin_err_t *err)
{
    char    c;
    size_t  i, s;

    i = 0;

    while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
    {
        i++;
    }

    if (i == len || line[i] == '#') {
        return 0;
    }

    s = i;

    while (i < len && line[i] != ' ' && line[i] != '\t' && line[i] != '\r') {
        if (line[i] < 0x21 || line[i] > 0x7e) {
            ngx_http_tce_admin_err(err, "bad_token",
                                   "a token must be printable ASCII%s",
                                   NULL, 0);
            return -1;
        }

        i++;
    }

    *tok = s;
    *tok_len = i - s;

    if (*tok_len < 16 || *tok_len > 256) {
        err->code = "bad_token";
        (void) snprintf(err->text, sizeof(err->text),
                        "a token must be 16..256 bytes long, got %zu",
                        *tok_len);
        return -1;
    }

    while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
    {
        i++;
    }

    s = i;

    while (i < len && line[i] != ' ' && line[i] != '\t' && line[i] != '\r') {
        c = line[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9')
              || c == '_' || c == '.' || c == '@' || c == '-'))
        {
            ngx_http_tce_admin_err(err, "bad_name",
                                   "a token's name is 1..64 of "
                                   "[A-Za-z0-9_.@-], got \"%s\"",
                                   line + s, len - s);
            return -1;
        }

        i++;
    }

    *name = s;
    *name_len = i - s;

    if (*name_len > 64) {
        ngx_http_tce_admin_err(err, "bad_name",
                               "a token's name is 1..64 of "
                               "[A-Za-z0-9_.@-], got \"%s\"",
                               line + s, *name_len);
        return -1;
    }

    while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
    {
        i++;
    }

    if (i != len) {
        ngx_http_tce_admin_err(err, "bad_line",
                               "a line is \"<token> [name]\", got more "
                               "after the name: \"%s\"", line + i, len - i);
        return -1;
    }

    return 1;
}


int
ngx_http_tce_admin_if_match(const char *v, size_t len, uint64_t generation)
{
    char    tag[32];
    int     n;
    size_t  i, s;

    n = snprintf(tag, sizeof(tag), "\"%llu\"",
                 (unsigned long long) generation);

    /* a list of entity tags: "a", W/"b", ... */
    i = 0;

    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == ',' || v[i] == '\t')) {
            i++;
        }

        s = i;

        while (i < len && v[i] != ',' && v[i] != ' ' && v[i] != '\t') {
            i++;
        }

        if (i - s == 1 && v[s] == '*') {
            return 1;
        }

        if (i - s == (size_t) n && memcmp(v + s, tag, n) == 0) {
            return 1;
        }
    }

    return 0;
}
