/*
 * libFuzzer target: Consul /v1/catalog/services bodies
 * (ngx_tce_consul_parse_services), with no tag and with the tag
 * "tce".  Invariants: a failed parse leaves the result untouched and
 * fails for both tags alike, with an error text of printable ASCII
 * (it reaches the error log); the names are valid P.S.M names, sorted
 * and unique; the tagged names are a subset of all names.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_tce_instance.h"
#include "ngx_tce_consul_parse.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
static int fuzz_parse(const uint8_t *data, size_t size, const char *tag,
    ngx_tce_consul_names_t *res);
static int fuzz_has(const ngx_tce_consul_names_t *res, const char *name);


static int
fuzz_parse(const uint8_t *data, size_t size, const char *tag,
    ngx_tce_consul_names_t *res)
{
    size_t                  i;
    ngx_tce_consul_names_t  orig;
    char                    err[NGX_TCE_CONSUL_ERR_LEN];

    memset(res, 0x5a, sizeof(ngx_tce_consul_names_t));
    orig = *res;
    err[0] = '\0';

    if (ngx_tce_consul_parse_services((const char *) data, size, tag, res,
                                      err, sizeof(err))
        != 0)
    {
        if (memcmp(res, &orig, sizeof(orig)) != 0 || err[0] == '\0') {
            abort();
        }

        for (i = 0; i < sizeof(err) && err[i] != '\0'; i++) {
            if ((unsigned char) err[i] < 0x20
                || (unsigned char) err[i] >= 0x7f)
            {
                abort();
            }
        }

        return -1;
    }

    if ((res->nnames == 0) != (res->names == NULL)) {
        abort();
    }

    for (i = 0; i < res->nnames; i++) {
        if (!ngx_tce_service_name_valid(res->names[i],
                                        strlen(res->names[i]))
            || (i > 0 && strcmp(res->names[i - 1], res->names[i]) >= 0))
        {
            abort();
        }
    }

    return 0;
}


static int
fuzz_has(const ngx_tce_consul_names_t *res, const char *name)
{
    size_t  i;

    for (i = 0; i < res->nnames; i++) {
        if (strcmp(res->names[i], name) == 0) {
            return 1;
        }
    }

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                     rc;
    size_t                  i;
    ngx_tce_consul_names_t  all, tagged;

    rc = fuzz_parse(data, size, NULL, &all);

    if (fuzz_parse(data, size, "tce", &tagged) != rc) {
        abort();
    }

    if (rc != 0) {
        return 0;
    }

    if (tagged.nnames > all.nnames) {
        abort();
    }

    for (i = 0; i < tagged.nnames; i++) {
        if (!fuzz_has(&all, tagged.names[i])) {
            abort();
        }
    }

    ngx_tce_consul_names_free(&tagged);
    ngx_tce_consul_names_free(&all);

    return 0;
}
