/*
 * The snapshot of Consul's last known good sets: a state file (see
 * ngx_tce_state.h) written atomically by the watcher after changes,
 * read by the master at start so that nginx serves while Consul is
 * unreachable.  By default it is the tce_state file itself: then it
 * holds the whole registry (every service with instances, with the
 * canary policy of each of their clusters), so that the state file
 * keeps what it held.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_tce_consul.h"
#include "ngx_tce_state.h"


static ngx_int_t ngx_tce_consul_snapshot_service(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_tce_state_service_t *ss, ngx_log_t *log);


void
ngx_tce_consul_snapshot_load(ngx_tce_consul_main_conf_t *cmcf,
    ngx_log_t *log)
{
    int                       rc;
    char                      err[512];
    size_t                    i, len;
    ngx_tce_state_t           st;
    ngx_tce_service_t        *svc;
    ngx_tce_state_service_t  *ss;

    if (cmcf->snapshot.len == 0) {
        return;
    }

    rc = ngx_tce_state_load((char *) cmcf->snapshot.data, &st, err,
                            sizeof(err));

    if (rc == -2) {
        return;
    }

    if (rc != 0) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tce consul: snapshot \"%V\" not used: %s",
                      &cmcf->snapshot, err);
        return;
    }

    for (i = 0; i < st.nservices; i++) {
        ss = &st.services[i];
        len = ngx_strlen(ss->name);

        if (ss->ninstances == 0
            || (!cmcf->catalog
                && !ngx_tce_consul_named(cmcf, (u_char *) ss->name, len)))
        {
            continue;
        }

        svc = ngx_tce_zone_service(cmcf->zone, (u_char *) ss->name, len,
                                   cmcf->catalog);

        /* only where nothing is known yet: a fresh start, not a reload */
        if (svc == NULL || svc->ninstances || svc->disc_success) {
            continue;
        }

        if (ngx_tce_zone_set(cmcf->zone, svc, ss->instances, ss->ninstances,
                             NGX_TCE_SOURCE_CONSUL, log)
            == NGX_OK)
        {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "tce consul: service \"%s\": %uz instance(s) "
                          "from the snapshot until Consul answers",
                          ss->name, ss->ninstances);

            (void) ngx_cpystrn(svc->disc_error,
                               (u_char *) "from the snapshot, not yet "
                               "in sync with Consul", NGX_TCE_DISC_ERR_LEN);
        }
    }

    ngx_tce_state_free(&st);
}


ngx_int_t
ngx_tce_consul_snapshot_write(ngx_tce_consul_main_conf_t *cmcf,
    ngx_log_t *log)
{
    char                     *text, err[256];
    size_t                    i, n;
    ngx_int_t                 rc;
    ngx_uint_t                all;
    ngx_tce_state_t           st;
    ngx_tce_service_t        *svc;
    ngx_tce_state_service_t  *ss;

    if (cmcf->snapshot.len == 0) {
        return NGX_OK;
    }

    /* the state file keeps every service; a snapshot Consul's own */
    all = cmcf->tmcf->state_path.len == cmcf->snapshot.len
          && ngx_strncmp(cmcf->tmcf->state_path.data, cmcf->snapshot.data,
                         cmcf->snapshot.len) == 0;

    n = 0;

    for (svc = cmcf->zone->sh->services; svc; svc = svc->next) {
        n++;
    }

    st.services = ngx_calloc((n ? n : 1) * sizeof(ngx_tce_state_service_t),
                             log);
    if (st.services == NULL) {
        return NGX_ERROR;
    }

    st.nservices = 0;
    rc = NGX_OK;

    /* newest first in the zone; the encoder sorts by name */

    for (svc = cmcf->zone->sh->services; svc && st.nservices < n;
         svc = svc->next)
    {
        if (!all && svc->source != NGX_TCE_SOURCE_CONSUL) {
            continue;
        }

        ss = &st.services[st.nservices];

        if (ngx_tce_consul_snapshot_service(cmcf->zone, svc, ss, log)
            != NGX_OK)
        {
            rc = NGX_ERROR;
            break;
        }

        if (ss->ninstances == 0 && ss->nclusters == 0) {
            continue;
        }

        st.nservices++;
    }

    text = NULL;

    if (rc == NGX_OK) {
        text = ngx_tce_state_encode(&st);
    }

    if (text == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tce consul: cannot encode the snapshot");
        rc = NGX_ERROR;

    } else if (ngx_tce_state_write((char *) cmcf->snapshot.data, text,
                                   ngx_strlen(text), err, sizeof(err))
               != 0)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tce consul: cannot write snapshot \"%V\": %s",
                      &cmcf->snapshot, err);
        rc = NGX_ERROR;
    }

    free(text);

    for (i = 0; i <= st.nservices && i < n; i++) {
        ngx_tce_state_service_t  *s = &st.services[i];
        size_t                    j;

        for (j = 0; j < s->nclusters; j++) {
            free(s->clusters[j].canary);
        }

        if (s->clusters) {
            ngx_free(s->clusters);
        }

        if (s->instances) {
            ngx_free(s->instances);
        }
    }

    ngx_free(st.services);

    return rc;
}


/*
 * Copies a service's instances and the canary policy of each cluster
 * they name into ss (memory from ngx_alloc, the policy from malloc).
 */
static ngx_int_t
ngx_tce_consul_snapshot_service(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_tce_state_service_t *ss, ngx_log_t *log)
{
    size_t                    i, j;
    ngx_str_t                 name;
    ngx_uint_t                n;
    ngx_atomic_uint_t         generation;
    ngx_tce_instance_t       *inst;
    ngx_tce_canary_policy_t   policy;

    ngx_memzero(ss, sizeof(ngx_tce_state_service_t));
    (void) ngx_cpystrn((u_char *) ss->name, svc->name, sizeof(ss->name));

    if (ngx_tce_zone_copy(zone, svc, &inst, &n, &generation, log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ss->instances = inst;
    ss->ninstances = n;

    if (n == 0 || svc->policies == NULL) {
        return NGX_OK;
    }

    ss->clusters = ngx_calloc(n * sizeof(ngx_tce_state_cluster_t), log);
    if (ss->clusters == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        for (j = 0; j < ss->nclusters; j++) {
            if (ngx_strcmp(ss->clusters[j].cluster, inst[i].cluster) == 0) {
                break;
            }
        }

        if (j < ss->nclusters) {
            continue;
        }

        name.data = (u_char *) inst[i].cluster;
        name.len = ngx_strlen(inst[i].cluster);

        if (ngx_tce_zone_policy_get(zone, svc, &name, &policy) != NGX_OK) {
            continue;
        }

        ss->clusters[j].canary = ngx_tce_canary_encode_json(&policy);
        if (ss->clusters[j].canary == NULL) {
            return NGX_ERROR;
        }

        (void) ngx_cpystrn((u_char *) ss->clusters[j].cluster,
                           (u_char *) inst[i].cluster,
                           NGX_TCE_CLUSTER_LEN);
        ss->nclusters++;
    }

    return NGX_OK;
}
