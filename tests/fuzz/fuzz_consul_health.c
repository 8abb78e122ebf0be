/*
 * libFuzzer target: Consul /v1/health/service bodies
 * (ngx_tce_consul_parse_health) and X-Consul-Index values
 * (ngx_tce_consul_next_index).  Invariants: a failed parse leaves the
 * result untouched; every instance kept is valid (id, cluster,
 * version, weight, env, state, an address whose canonical text parses
 * back to the same socket address), ids are unique, each skipped
 * entry was reported once, in entry order, and routed, skipped and
 * excluded entries never outnumber the array.  Texts that reach the
 * error log (err, the reasons, a skipped entry's id) are printable
 * ASCII.  An index that
 * parses obeys Consul's reset rules.  Read with the memo of an earlier
 * answer (the input with a byte changed, or itself), a body gives what
 * it gives read whole (ngx_tce_consul_parse_health_memo).
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_tce_instance.h"
#include "ngx_tce_consul_parse.h"
#include "ngx_tce_consul_memo.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
static void fuzz_skip(void *data, size_t n, const char *id,
    const char *reason);
static void fuzz_check_text(const char *s, size_t size);
static void fuzz_check_instance(const ngx_tce_instance_t *inst);
static void fuzz_check_index(const uint8_t *data, size_t size);
static void fuzz_check_memo(const uint8_t *data, size_t size);
static void fuzz_same(const char *body, size_t size,
    ngx_tce_consul_memo_t **memo);


static void
fuzz_skip(void *data, size_t n, const char *id, const char *reason)
{
    size_t  *count;

    fuzz_check_text(id, NGX_TCE_ID_LEN);
    fuzz_check_text(reason, NGX_TCE_CONSUL_ERR_LEN);

    if (reason[0] == '\0') {
        abort();
    }

    /* count[0] reports, count[1] the next position allowed */
    count = data;

    if (n < count[1]) {
        abort();
    }

    count[0]++;
    count[1] = n + 1;
}


/* NUL-terminated within size bytes, printable ASCII */

static void
fuzz_check_text(const char *s, size_t size)
{
    size_t  i;

    for (i = 0; i < size && s[i] != '\0'; i++) {
        if ((unsigned char) s[i] < 0x20 || (unsigned char) s[i] >= 0x7f) {
            abort();
        }
    }

    if (i == size) {
        abort();
    }
}


static void
fuzz_check_instance(const ngx_tce_instance_t *inst)
{
    ngx_tce_instance_t  back;

    if (!ngx_tce_id_valid(inst->id, strlen(inst->id))
        || !ngx_tce_cluster_name_valid(inst->cluster, strlen(inst->cluster))
        || !ngx_tce_version_valid(inst->version, strlen(inst->version))
        || strlen(inst->version) >= NGX_TCE_VERSION_LEN
        || inst->weight < NGX_TCE_WEIGHT_MIN
        || inst->weight > NGX_TCE_WEIGHT_MAX
        || inst->env >= NGX_TCE_NENVS || inst->state != NGX_TCE_STATE_UP
        || inst->op_weight || inst->op_drain || inst->op_down)
    {
        abort();
    }

    memset(&back, 0, sizeof(ngx_tce_instance_t));

    if (ngx_tce_addr_parse(inst->addr, strlen(inst->addr), &back) != 0
        || strcmp(back.addr, inst->addr) != 0
        || back.socklen != inst->socklen
        || memcmp(&back.sockaddr, &inst->sockaddr, inst->socklen) != 0)
    {
        abort();
    }
}


static void
fuzz_check_index(const uint8_t *data, size_t size)
{
    size_t    i;
    uint64_t  prev, next;

    for (i = 0; i < 3; i++) {
        prev = i == 0 ? 0 : (i == 1 ? 1000 : UINT64_MAX);
        next = 42;

        if (ngx_tce_consul_next_index(prev, (const char *) data, size, &next)
            != 0)
        {
            if (next != 42) {
                abort();
            }

            continue;
        }

        /* 0 only after a reset; 1 for an index 0; else not backwards */
        if (next == 0 ? prev == 0 : next != 1 && next < prev) {
            abort();
        }
    }
}


/* the input after a variant of it, and after itself */

static void
fuzz_check_memo(const uint8_t *data, size_t size)
{
    char                   *variant;
    ngx_tce_consul_memo_t  *memo;

    variant = malloc(size + 1);
    if (variant == NULL) {
        return;
    }

    memcpy(variant, data, size);

    if (size) {
        variant[size / 2] ^= 1;
    }

    memo = NULL;
    fuzz_same(variant, size, &memo);
    fuzz_same((const char *) data, size, &memo);
    fuzz_same((const char *) data, size, &memo);
    ngx_tce_consul_memo_free(memo);
    free(variant);
}


static void
fuzz_same(const char *body, size_t size, ngx_tce_consul_memo_t **memo)
{
    int                      rc1, rc2;
    char                     err1[NGX_TCE_CONSUL_ERR_LEN];
    char                     err2[NGX_TCE_CONSUL_ERR_LEN];
    ngx_tce_consul_health_t  r1, r2;

    memset(&r1, 0, sizeof(r1));
    memset(&r2, 0, sizeof(r2));
    err1[0] = '\0';
    err2[0] = '\0';

    rc1 = ngx_tce_consul_parse_health_memo(body, size, NULL, NULL, memo, &r1,
                                           err1, sizeof(err1));
    rc2 = ngx_tce_consul_parse_health(body, size, NULL, NULL, &r2, err2,
                                      sizeof(err2));

    if (rc1 != rc2 || strcmp(err1, err2) != 0
        || r1.ninstances != r2.ninstances || r1.nskipped != r2.nskipped
        || r1.nexcluded != r2.nexcluded || r1.nwarning != r2.nwarning
        || r1.weight_max != r2.weight_max
        || strcmp(r1.reason, r2.reason) != 0
        || (r1.ninstances
            && memcmp(r1.instances, r2.instances,
                      r1.ninstances * sizeof(ngx_tce_instance_t)) != 0))
    {
        abort();
    }

    ngx_tce_consul_health_free(&r1);
    ngx_tce_consul_health_free(&r2);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                    i, j, nskip[2];
    ngx_tce_consul_health_t   res, orig;
    char                      err[NGX_TCE_CONSUL_ERR_LEN];

    fuzz_check_index(data, size);
    fuzz_check_memo(data, size);

    memset(&res, 0x5a, sizeof(ngx_tce_consul_health_t));
    orig = res;
    nskip[0] = 0;
    nskip[1] = 0;
    err[0] = '\0';

    if (ngx_tce_consul_parse_health((const char *) data, size, fuzz_skip,
                                    nskip, &res, err, sizeof(err))
        != 0)
    {
        if (memcmp(&res, &orig, sizeof(res)) != 0 || nskip[0] != 0
            || err[0] == '\0')
        {
            abort();
        }

        fuzz_check_text(err, sizeof(err));

        return 0;
    }

    fuzz_check_text(res.reason, sizeof(res.reason));

    if (nskip[0] != res.nskipped
        || (res.nskipped == 0) != (res.reason[0] == 0)
        || (res.ninstances == 0) != (res.instances == NULL)
        || res.ninstances + res.nskipped + res.nexcluded
           > NGX_TCE_CONSUL_MAX_ENTRIES
        || res.nwarning > res.ninstances + res.nskipped
        || (res.ninstances > 0 && res.weight_max == 0))
    {
        abort();
    }

    for (i = 0; i < res.ninstances; i++) {
        fuzz_check_instance(&res.instances[i]);

        for (j = 0; j < i; j++) {
            if (strcmp(res.instances[i].id, res.instances[j].id) == 0) {
                abort();
            }
        }
    }

    ngx_tce_consul_health_free(&res);

    return 0;
}
