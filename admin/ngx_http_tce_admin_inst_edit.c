/*
 * Edits of a decoded state file's instances (pure C, no nginx): see
 * ngx_http_tce_admin_inst_edit.h.
 */

#include <stdlib.h>
#include <string.h>

#include "ngx_http_tce_admin_inst_edit.h"


static int ngx_http_tce_admin_edit_cluster(ngx_tce_state_service_t *ss,
    const char *cluster);


ngx_tce_state_service_t *
ngx_http_tce_admin_edit_service_add(ngx_tce_state_t *st, const char *name,
    size_t len)
{
    size_t                    i, at;
    ngx_tce_state_service_t  *grown, *ss;

    if (len >= NGX_TCE_SERVICE_LEN) {
        return NULL;
    }

    at = st->nservices;

    for (i = 0; i < st->nservices; i++) {
        if (strlen(st->services[i].name) == len
            && memcmp(st->services[i].name, name, len) == 0)
        {
            return &st->services[i];
        }

        if (at == st->nservices
            && strncmp(st->services[i].name, name, len) > 0)
        {
            at = i;
        }
    }

    grown = realloc(st->services,
                    (st->nservices + 1) * sizeof(ngx_tce_state_service_t));
    if (grown == NULL) {
        return NULL;
    }

    st->services = grown;

    memmove(&grown[at + 1], &grown[at],
            (st->nservices - at) * sizeof(ngx_tce_state_service_t));
    st->nservices++;

    ss = &grown[at];
    memset(ss, 0, sizeof(ngx_tce_state_service_t));
    memcpy(ss->name, name, len);

    return ss;
}


ngx_tce_instance_t *
ngx_http_tce_admin_edit_find(ngx_tce_state_service_t *ss, const char *id)
{
    size_t  i;

    for (i = 0; i < ss->ninstances; i++) {
        if (strcmp(ss->instances[i].id, id) == 0) {
            return &ss->instances[i];
        }
    }

    return NULL;
}


/* the cluster in clusters[] (sorted), added without a canary if new */
static int
ngx_http_tce_admin_edit_cluster(ngx_tce_state_service_t *ss,
    const char *cluster)
{
    int                       cmp;
    size_t                    i, at;
    ngx_tce_state_cluster_t  *grown;

    at = ss->nclusters;

    for (i = 0; i < ss->nclusters; i++) {
        cmp = strcmp(ss->clusters[i].cluster, cluster);

        if (cmp == 0) {
            return 0;
        }

        if (cmp > 0) {
            at = i;
            break;
        }
    }

    grown = realloc(ss->clusters,
                    (ss->nclusters + 1) * sizeof(ngx_tce_state_cluster_t));
    if (grown == NULL) {
        return -1;
    }

    ss->clusters = grown;

    memmove(&grown[at + 1], &grown[at],
            (ss->nclusters - at) * sizeof(ngx_tce_state_cluster_t));
    ss->nclusters++;

    memset(&grown[at], 0, sizeof(ngx_tce_state_cluster_t));
    memcpy(grown[at].cluster, cluster, strlen(cluster));

    return 0;
}


int
ngx_http_tce_admin_edit_add(ngx_tce_state_service_t *ss,
    const ngx_tce_instance_t *inst)
{
    ngx_tce_instance_t  *grown;

    grown = realloc(ss->instances,
                    (ss->ninstances + 1) * sizeof(ngx_tce_instance_t));
    if (grown == NULL) {
        return -1;
    }

    ss->instances = grown;

    if (ngx_http_tce_admin_edit_cluster(ss, inst->cluster) != 0) {
        return -1;
    }

    grown[ss->ninstances++] = *inst;

    return 0;
}


int
ngx_http_tce_admin_edit_remove(ngx_tce_state_service_t *ss, const char *id)
{
    ngx_tce_instance_t  *inst;

    inst = ngx_http_tce_admin_edit_find(ss, id);
    if (inst == NULL) {
        return -1;
    }

    memmove(inst, inst + 1,
            (ss->ninstances - (inst - ss->instances) - 1)
            * sizeof(ngx_tce_instance_t));
    ss->ninstances--;

    return 0;
}


int
ngx_http_tce_admin_edit_desired(ngx_tce_state_service_t *ss,
    const char *cluster, unsigned env, const ngx_tce_instance_t *want,
    size_t n, uint64_t now, uint64_t deadline,
    ngx_http_tce_admin_outcome_t **out, size_t *nout,
    const ngx_tce_instance_t **conflict)
{
    size_t                         i, j, k, total;
    ngx_tce_instance_t            *next, *cur;
    ngx_http_tce_admin_outcome_t  *o;

    *out = NULL;
    *nout = 0;
    *conflict = NULL;

    for (i = 0; i < n; i++) {
        cur = ngx_http_tce_admin_edit_find(ss, want[i].id);

        if (cur && (cur->env != env || strcmp(cur->cluster, cluster) != 0)) {
            *conflict = &want[i];
            return 1;
        }
    }

    /* at most: every instance there plus every wanted one */
    total = ss->ninstances + n;

    next = malloc((total ? total : 1) * sizeof(ngx_tce_instance_t));
    o = malloc((total ? total : 1) * sizeof(ngx_http_tce_admin_outcome_t));

    if (next == NULL || o == NULL
        || ngx_http_tce_admin_edit_cluster(ss, cluster) != 0)
    {
        free(next);
        free(o);
        return -1;
    }

    k = 0;

    for (i = 0; i < n; i++) {
        strcpy(o[k].id, want[i].id);

        cur = ngx_http_tce_admin_edit_find(ss, want[i].id);

        if (cur == NULL) {
            o[k++].what = NGX_HTTP_TCE_ADMIN_ADDED;
            continue;
        }

        if (strcmp(cur->addr, want[i].addr) != 0
            || cur->weight != want[i].weight
            || strcmp(cur->version, want[i].version) != 0
            || cur->rm_deadline != 0)
        {
            o[k++].what = NGX_HTTP_TCE_ADMIN_UPDATED;

        } else {
            o[k++].what = NGX_HTTP_TCE_ADMIN_KEPT;
        }
    }

    /* the new list: what stays in place, updated, then what is added */

    j = 0;

    for (i = 0; i < ss->ninstances; i++) {
        cur = &ss->instances[i];
        next[j] = *cur;

        if (cur->env == env && strcmp(cur->cluster, cluster) == 0) {

            for (k = 0; k < n; k++) {
                if (strcmp(want[k].id, cur->id) == 0) {
                    break;
                }
            }

            if (k < n) {
                memcpy(next[j].addr, want[k].addr, sizeof(cur->addr));
                next[j].sockaddr = want[k].sockaddr;
                next[j].socklen = want[k].socklen;
                next[j].weight = want[k].weight;
                memcpy(next[j].version, want[k].version,
                       sizeof(cur->version));
                next[j].rm_since = 0;
                next[j].rm_deadline = 0;

            } else {
                if (next[j].rm_deadline == 0) {
                    next[j].rm_since = now;
                    next[j].rm_deadline = deadline;
                }

                strcpy(o[n + *nout].id, cur->id);
                o[n + *nout].what = NGX_HTTP_TCE_ADMIN_DRAINING;
                (*nout)++;
            }
        }

        j++;
    }

    for (i = 0; i < n; i++) {
        if (o[i].what == NGX_HTTP_TCE_ADMIN_ADDED) {
            next[j] = want[i];
            memset(next[j].cluster, 0, sizeof(next[j].cluster));
            memcpy(next[j].cluster, cluster, strlen(cluster));
            next[j].env = (uint8_t) env;
            j++;
        }
    }

    free(ss->instances);
    ss->instances = next;
    ss->ninstances = j;

    *out = o;
    *nout += n;

    return 0;
}
