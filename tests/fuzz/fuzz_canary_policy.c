/*
 * libFuzzer target: the canary policy's JSON form
 * (ngx_tce_canary_parse_json), the percentage of tce_canary and the
 * admin API (ngx_tce_canary_weight_parse) and override header values
 * (ngx_tce_canary_override_parse).  Invariants: a policy that parses
 * encodes and parses again to the same policy, and a failed parse
 * leaves it untouched with an error text of printable ASCII (it
 * reaches nginx -t and the admin API); a percentage is 0..10000
 * basis points and its "P.PP" form parses back to the same value.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_tce_canary.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
static void fuzz_policy(const uint8_t *data, size_t size);
static void fuzz_values(const uint8_t *data, size_t size);


static void
fuzz_policy(const uint8_t *data, size_t size)
{
    char                     *text, *json;
    size_t                    i;
    ngx_tce_canary_policy_t   p, p2, orig;
    char                      err[160];

    /* the parser takes a C string, as the state file hands it over */
    text = malloc(size + 1);
    if (text == NULL) {
        return;
    }

    memcpy(text, data, size);
    text[size] = '\0';

    memset(&p, 0x5a, sizeof(ngx_tce_canary_policy_t));
    orig = p;

    if (ngx_tce_canary_parse_json(text, &p, err, sizeof(err)) != 0) {
        if (memcmp(&p, &orig, sizeof(p)) != 0
            || strnlen(err, sizeof(err)) == sizeof(err))
        {
            abort();
        }

        for (i = 0; err[i] != '\0'; i++) {
            if ((unsigned char) err[i] < 0x20
                || (unsigned char) err[i] >= 0x7f)
            {
                abort();
            }
        }

        free(text);
        return;
    }

    free(text);

    if (p.weight > NGX_TCE_CANARY_SCALE || p.fallback > 1) {
        abort();
    }

    json = ngx_tce_canary_encode_json(&p);
    if (json == NULL) {
        abort();
    }

    memset(&p2, 0, sizeof(ngx_tce_canary_policy_t));

    if (ngx_tce_canary_parse_json(json, &p2, err, sizeof(err)) != 0
        || p2.weight != p.weight || p2.epoch != p.epoch
        || p2.fallback != p.fallback)
    {
        abort();
    }

    free(json);
}


static void
fuzz_values(const uint8_t *data, size_t size)
{
    int   w, o;
    char  buf[16];

    w = ngx_tce_canary_weight_parse((const char *) data, size);

    if (w < -1 || w > NGX_TCE_CANARY_SCALE) {
        abort();
    }

    if (w >= 0) {
        snprintf(buf, sizeof(buf), "%d.%02d", w / 100, w % 100);

        if (ngx_tce_canary_weight_parse(buf, strlen(buf)) != w) {
            abort();
        }
    }

    o = ngx_tce_canary_override_parse((const char *) data, size);

    if (o != -1 && o != NGX_TCE_ENV_PROD && o != NGX_TCE_ENV_CANARY) {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_policy(data, size);
    fuzz_values(data, size);

    return 0;
}
