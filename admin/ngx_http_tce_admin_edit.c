/*
 * Edits of a decoded state file (pure C, no nginx): see
 * ngx_http_tce_admin_edit.h.
 */

#include <stdlib.h>
#include <string.h>

#include "ngx_http_tce_admin_edit.h"


ngx_tce_state_service_t *
ngx_http_tce_admin_edit_service(ngx_tce_state_t *st, const char *name,
    size_t len)
{
    size_t  i;

    for (i = 0; i < st->nservices; i++) {
        if (strlen(st->services[i].name) == len
            && memcmp(st->services[i].name, name, len) == 0)
        {
            return &st->services[i];
        }
    }

    return NULL;
}


int
ngx_http_tce_admin_edit_canary(ngx_tce_state_service_t *ss,
    const char *cluster, size_t len, const ngx_tce_canary_policy_t *p)
{
    int                       cmp;
    char                     *text;
    size_t                    i, at;
    ngx_tce_state_cluster_t  *cl, *grown;

    if (len >= NGX_TCE_CLUSTER_LEN) {
        return -1;
    }

    text = NULL;

    if (p) {
        text = ngx_tce_canary_encode_json(p);
        if (text == NULL) {
            return -1;
        }
    }

    /* clusters are sorted by name */
    at = ss->nclusters;
    cl = NULL;

    for (i = 0; i < ss->nclusters; i++) {
        cmp = strncmp(ss->clusters[i].cluster, cluster, len);

        if (cmp == 0 && ss->clusters[i].cluster[len] == '\0') {
            cl = &ss->clusters[i];
            break;
        }

        if (cmp > 0 || (cmp == 0 && ss->clusters[i].cluster[len] != '\0')) {
            at = i;
            break;
        }
    }

    if (cl == NULL) {
        if (p == NULL) {
            return 0;
        }

        grown = realloc(ss->clusters,
                        (ss->nclusters + 1) * sizeof(ngx_tce_state_cluster_t));
        if (grown == NULL) {
            free(text);
            return -1;
        }

        ss->clusters = grown;

        memmove(&grown[at + 1], &grown[at],
                (ss->nclusters - at) * sizeof(ngx_tce_state_cluster_t));
        ss->nclusters++;

        cl = &grown[at];
        memset(cl, 0, sizeof(ngx_tce_state_cluster_t));
        memcpy(cl->cluster, cluster, len);
    }

    free(cl->canary);
    cl->canary = text;

    return 0;
}
