/*
 * libFuzzer target: the state file decoder (ngx_tce_state_decode).
 * Invariants: the error text is NUL-terminated printable ASCII and a
 * failed decode leaves the registry empty; a document that decodes
 * encodes, decodes again to an equal registry, and encodes again to
 * the same bytes.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_tce_instance.h"
#include "ngx_tce_state.h"


#define FUZZ_ERRLEN  256


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
static void fuzz_check_err(const char *err);
static void fuzz_check_equal(const ngx_tce_state_t *a,
    const ngx_tce_state_t *b);
static void fuzz_check_instance(const ngx_tce_instance_t *a,
    const ngx_tce_instance_t *b);


static void
fuzz_check_err(const char *err)
{
    size_t  i;

    for (i = 0; i < FUZZ_ERRLEN && err[i] != '\0'; i++) {
        if ((unsigned char) err[i] < 0x20 || (unsigned char) err[i] >= 0x7f) {
            abort();
        }
    }

    if (i == FUZZ_ERRLEN) {
        abort();
    }
}


static void
fuzz_check_instance(const ngx_tce_instance_t *a, const ngx_tce_instance_t *b)
{
    if (strcmp(a->id, b->id) != 0 || strcmp(a->cluster, b->cluster) != 0
        || strcmp(a->version, b->version) != 0
        || strcmp(a->addr, b->addr) != 0 || a->socklen != b->socklen
        || memcmp(&a->sockaddr, &b->sockaddr, a->socklen) != 0
        || a->weight != b->weight || a->env != b->env
        || a->state != b->state || a->op_weight != b->op_weight
        || a->op_drain != b->op_drain || a->op_down != b->op_down)
    {
        abort();
    }
}


static void
fuzz_check_equal(const ngx_tce_state_t *a, const ngx_tce_state_t *b)
{
    size_t                          i, j;
    const ngx_tce_state_cluster_t  *ca, *cb;
    const ngx_tce_state_service_t  *sa, *sb;

    if (a->nservices != b->nservices) {
        abort();
    }

    for (i = 0; i < a->nservices; i++) {
        sa = &a->services[i];
        sb = &b->services[i];

        if (strcmp(sa->name, sb->name) != 0
            || sa->nclusters != sb->nclusters
            || sa->ninstances != sb->ninstances)
        {
            abort();
        }

        for (j = 0; j < sa->nclusters; j++) {
            ca = &sa->clusters[j];
            cb = &sb->clusters[j];

            if (strcmp(ca->cluster, cb->cluster) != 0
                || (ca->canary == NULL) != (cb->canary == NULL)
                || (ca->canary && strcmp(ca->canary, cb->canary) != 0))
            {
                abort();
            }
        }

        for (j = 0; j < sa->ninstances; j++) {
            fuzz_check_instance(&sa->instances[j], &sb->instances[j]);
        }
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char             *text, *again;
    ngx_tce_state_t   st, st2;
    char              err[FUZZ_ERRLEN];

    memset(err, 'x', sizeof(err));

    if (ngx_tce_state_decode((const char *) data, size, &st, err,
                             sizeof(err))
        != 0)
    {
        fuzz_check_err(err);

        if (st.services != NULL || st.nservices != 0) {
            abort();
        }

        return 0;
    }

    text = ngx_tce_state_encode(&st);
    if (text == NULL) {
        abort();
    }

    if (ngx_tce_state_decode(text, strlen(text), &st2, err, sizeof(err))
        != 0)
    {
        abort();
    }

    fuzz_check_equal(&st, &st2);

    again = ngx_tce_state_encode(&st2);
    if (again == NULL || strcmp(text, again) != 0) {
        abort();
    }

    free(again);
    free(text);
    ngx_tce_state_free(&st2);
    ngx_tce_state_free(&st);

    return 0;
}
