/*
 * The state file written out: the registry as indented JSON with sorted
 * keys, defaults spelled out, so that a diff of two files reads well.
 */

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ngx_tce_instance.h"
#include "ngx_tce_state.h"


static json_t *ngx_tce_state_encode_service(
    const ngx_tce_state_service_t *svc);
static json_t *ngx_tce_state_encode_instance(const ngx_tce_instance_t *inst);


char *
ngx_tce_state_json_text(const json_t *v, size_t flags, int newline)
{
    char    *p;
    size_t   n;

    n = json_dumpb(v, NULL, 0, flags);

    p = n > 0 ? malloc(n + 2) : NULL;
    if (p == NULL) {
        return NULL;
    }

    if (json_dumpb(v, p, n, flags) != n) {
        free(p);
        return NULL;
    }

    if (newline) {
        p[n++] = '\n';
    }

    p[n] = '\0';

    return p;
}


char *
ngx_tce_state_encode(const ngx_tce_state_t *st)
{
    char    *text;
    size_t   i;
    json_t  *root, *services;

    /* "o" steals services, even when packing fails */
    root = json_pack("{s:i, s:o}", "version", NGX_TCE_STATE_FILE_VERSION,
                     "services", json_object());
    if (root == NULL) {
        return NULL;
    }

    services = json_object_get(root, "services");

    for (i = 0; i < st->nservices; i++) {
        /* json_object_set_new() fails on a NULL value */
        if (json_object_set_new(services, st->services[i].name,
                                ngx_tce_state_encode_service(
                                    &st->services[i]))
            != 0)
        {
            json_decref(root);
            return NULL;
        }
    }

    text = ngx_tce_state_json_text(root, JSON_INDENT(2) | JSON_SORT_KEYS, 1);

    json_decref(root);

    return text;
}


static json_t *
ngx_tce_state_encode_service(const ngx_tce_state_service_t *svc)
{
    size_t                          i;
    json_t                         *service, *clusters, *cluster, *canary;
    const char                     *name;
    const ngx_tce_state_cluster_t  *cl;

    service = json_pack("{s:o}", "clusters", json_object());
    if (service == NULL) {
        return NULL;
    }

    clusters = json_object_get(service, "clusters");

    /* the clusters[] first, then any other cluster an instance names */

    for (i = 0; i < svc->nclusters + svc->ninstances; i++) {
        cl = i < svc->nclusters ? &svc->clusters[i] : NULL;
        name = cl ? cl->cluster : svc->instances[i - svc->nclusters].cluster;

        if (json_object_get(clusters, name) != NULL) {
            continue;
        }

        canary = NULL;

        if (cl != NULL && cl->canary != NULL) {
            canary = json_loads(cl->canary, JSON_REJECT_DUPLICATES, NULL);

            if (!json_is_object(canary)) {
                json_decref(canary);
                goto failed;
            }
        }

        cluster = json_pack("{s:[], s:o*}", "instances", "canary", canary);

        if (json_object_set_new(clusters, name, cluster) != 0) {
            goto failed;
        }
    }

    for (i = 0; i < svc->ninstances; i++) {
        cluster = json_object_get(clusters, svc->instances[i].cluster);

        if (json_array_append_new(json_object_get(cluster, "instances"),
                                  ngx_tce_state_encode_instance(
                                      &svc->instances[i]))
            != 0)
        {
            goto failed;
        }
    }

    return service;

failed:

    json_decref(service);

    return NULL;
}


static json_t *
ngx_tce_state_encode_instance(const ngx_tce_instance_t *inst)
{
    json_t  *o, *op;

    o = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s}",
                  "id", inst->id, "address", inst->addr,
                  "weight", (int) inst->weight,
                  "env", ngx_tce_env_name(inst->env),
                  "version", inst->version,
                  "state", ngx_tce_state_name(inst->state));

    if (o != NULL && inst->rm_deadline
        && json_object_set_new(o, "removing",
                               json_pack("{s:I, s:I}",
                                   "since", (json_int_t) inst->rm_since,
                                   "deadline",
                                   (json_int_t) inst->rm_deadline))
           != 0)
    {
        json_decref(o);
        return NULL;
    }

    if (o == NULL || (!inst->op_weight && !inst->op_drain && !inst->op_down))
    {
        return o;
    }

    op = json_object();

    if (json_object_set_new(o, "override", op) != 0
        || (inst->op_weight
            && json_object_set_new(op, "weight",
                                   json_integer(inst->op_weight)) != 0)
        || (inst->op_drain
            && json_object_set_new(op, "drain", json_true()) != 0)
        || (inst->op_down
            && json_object_set_new(op, "down", json_true()) != 0))
    {
        json_decref(o);
        return NULL;
    }

    return o;
}
