/*
 * The snapshot of Consul's last known good sets: a state file (see
 * ngx_tce_state.h) of its own, never the operator's tce_state, holding
 * the services Consul feeds (with the canary policy of each of their
 * clusters).  The watcher asks for it after changes; it is encoded and
 * written atomically on nginx's thread pool (ngx_tce_persist.h).  The
 * master reads it at start so that nginx serves while Consul is
 * unreachable.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_tce_consul.h"
#include "ngx_tce_persist.h"
#include "ngx_tce_state.h"


typedef struct {
    ngx_tce_state_t           st;
    size_t                    size;        /* services allocated */
    size_t                    left_out;    /* over the loader's limits */
} ngx_tce_consul_snapshot_job_t;


static void *ngx_tce_consul_snapshot_collect(void *data, ngx_log_t *log);
static char *ngx_tce_consul_snapshot_encode(void *data, size_t *len,
    char *err, size_t errlen);
static void ngx_tce_consul_snapshot_free(void *data);
static void ngx_tce_consul_snapshot_clear(ngx_tce_state_service_t *ss);
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
                && !ngx_tce_consul_named(cmcf, (u_char *) ss->name, len))
            || ngx_tce_service_state_only(cmcf->tmcf, (u_char *) ss->name,
                                          len))
        {
            continue;
        }

        svc = ngx_tce_zone_service(cmcf->zone, (u_char *) ss->name, len,
                                   cmcf->catalog);

        /*
         * Only where Consul has not spoken yet: a fresh start, not a
         * reload.  Consul's last word wins over the tce_state file's
         * instances of a service it watches.
         */
        if (svc == NULL || svc->source == NGX_TCE_SOURCE_CONSUL
            || svc->disc_success)
        {
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


void
ngx_tce_consul_snapshot_write(ngx_tce_consul_main_conf_t *cmcf,
    ngx_log_t *log)
{
    if (cmcf->persist != NULL) {
        ngx_tce_persist_write(cmcf->persist, log);
    }
}


void
ngx_tce_consul_snapshot_init(ngx_tce_consul_main_conf_t *cmcf)
{
    if (cmcf->persist != NULL) {
        cmcf->persist->collect = ngx_tce_consul_snapshot_collect;
        cmcf->persist->encode = ngx_tce_consul_snapshot_encode;
        cmcf->persist->free = ngx_tce_consul_snapshot_free;
        cmcf->persist->data = cmcf;
    }
}


/*
 * On the event loop: copies the Consul-owned services (memcpy under the
 * zone's lock, service by service), whole services only while the
 * file stays within what the loader accepts.
 */
static void *
ngx_tce_consul_snapshot_collect(void *data, ngx_log_t *log)
{
    ngx_tce_consul_main_conf_t *cmcf = data;

    size_t                          n, ninstances;
    ngx_tce_service_t              *svc;
    ngx_tce_state_service_t        *ss;
    ngx_tce_consul_snapshot_job_t  *job;

    job = ngx_calloc(sizeof(ngx_tce_consul_snapshot_job_t), log);
    if (job == NULL) {
        return NULL;
    }

    n = 0;

    for (svc = cmcf->zone->sh->services; svc; svc = svc->next) {
        n++;
    }

    job->st.services = ngx_calloc((n ? n : 1)
                                  * sizeof(ngx_tce_state_service_t), log);
    if (job->st.services == NULL) {
        ngx_free(job);
        return NULL;
    }

    job->size = n;
    ninstances = 0;

    /* newest first in the zone; the encoder sorts by name */

    for (svc = cmcf->zone->sh->services; svc && job->st.nservices < n;
         svc = svc->next)
    {
        if (svc->source != NGX_TCE_SOURCE_CONSUL) {
            continue;
        }

        ss = &job->st.services[job->st.nservices];

        if (ngx_tce_consul_snapshot_service(cmcf->zone, svc, ss, log)
            != NGX_OK)
        {
            /* what ss holds goes with the job */
            job->st.nservices++;
            ngx_tce_consul_snapshot_free(job);
            return NULL;
        }

        if (ss->ninstances == 0 && ss->nclusters == 0) {
            ngx_tce_consul_snapshot_clear(ss);
            continue;
        }

        /* a cluster comes from an instance: its count is bounded too */

        if (ninstances + ss->ninstances > NGX_TCE_STATE_FILE_MAX_ITEMS
            || job->st.nservices + 1 > NGX_TCE_STATE_FILE_MAX_ITEMS)
        {
            ngx_tce_consul_snapshot_clear(ss);
            job->left_out++;
            continue;
        }

        ninstances += ss->ninstances;
        job->st.nservices++;
    }

    return job;
}


/* on a thread: the file's text, within the loader's size limit */

static char *
ngx_tce_consul_snapshot_encode(void *data, size_t *len, char *err,
    size_t errlen)
{
    ngx_tce_consul_snapshot_job_t *job = data;

    char  *text;

    text = ngx_tce_state_encode(&job->st);

    if (text == NULL) {
        ngx_snprintf((u_char *) err, errlen, "cannot encode it%Z");
        return NULL;
    }

    *len = ngx_strlen(text);

    if (*len > NGX_TCE_STATE_FILE_MAX_SIZE) {
        free(text);
        ngx_snprintf((u_char *) err, errlen,
                     "larger than the %d MiB the loader accepts%Z",
                     NGX_TCE_STATE_FILE_MAX_SIZE >> 20);
        return NULL;
    }

    if (job->left_out) {
        ngx_snprintf((u_char *) err, errlen,
                     "%uz service(s) left out: more than the %d instances "
                     "the loader accepts%Z", job->left_out,
                     NGX_TCE_STATE_FILE_MAX_ITEMS);
    }

    return text;
}


static void
ngx_tce_consul_snapshot_free(void *data)
{
    ngx_tce_consul_snapshot_job_t *job = data;

    size_t  i;

    for (i = 0; i < job->st.nservices; i++) {
        ngx_tce_consul_snapshot_clear(&job->st.services[i]);
    }

    ngx_free(job->st.services);
    ngx_free(job);
}


static void
ngx_tce_consul_snapshot_clear(ngx_tce_state_service_t *ss)
{
    size_t  j;

    for (j = 0; j < ss->nclusters; j++) {
        free(ss->clusters[j].canary);
    }

    if (ss->clusters) {
        ngx_free(ss->clusters);
    }

    if (ss->instances) {
        ngx_free(ss->instances);
    }

    ngx_memzero(ss, sizeof(ngx_tce_state_service_t));
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
