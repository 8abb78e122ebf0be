/*
 * The admin API's reads:
 *
 *   GET v1/services          every service: clusters, envs, instance
 *                            counts, generation, source, discovery's
 *                            status and staleness
 *   GET v1/services/<psm>    per cluster and env the instances, with
 *                            each value's origin (discovery or operator
 *                            override), the canary policy, discovery's
 *                            status and staleness
 *   GET v1/status            the zone's usage, the Consul watcher and
 *                            discovery summed over the services, the
 *                            generation each worker applied per
 *                            service, the API's writes
 *
 * Each service is copied under the zone's mutex (ngx_tce_zone_copy), so
 * traffic is never held up for long.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_admin_inst.h"
#include "ngx_tce_redis.h"
#include "ngx_http_tce_metrics.h"


static json_t *ngx_http_tce_admin_summary(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_log_t *log);
static ngx_int_t ngx_http_tce_admin_recent(json_t *ij,
    ngx_http_tce_metrics_recent_t *rec);
static json_t *ngx_http_tce_admin_discovery(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc);
static json_t *ngx_http_tce_admin_cluster_obj(json_t *clusters,
    const char *name);
static const char *ngx_http_tce_admin_source(ngx_tce_service_t *svc);
static json_t *ngx_http_tce_admin_disc_summary(ngx_tce_zone_t *zone);
static json_t *ngx_http_tce_admin_writes(ngx_http_request_t *r);
static json_t *ngx_http_tce_admin_applied(ngx_tce_zone_t *zone);
static json_t *ngx_http_tce_admin_applied_one(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_tce_applied_slot_t *slots,
    ngx_uint_t workers);


static const char *
ngx_http_tce_admin_source(ngx_tce_service_t *svc)
{
    return svc->source == NGX_TCE_SOURCE_CONSUL ? "consul"
           : svc->source == NGX_TCE_SOURCE_STATE ? "state" : "none";
}


ngx_uint_t
ngx_http_tce_admin_has_cluster(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_str_t *cluster, ngx_log_t *log)
{
    ngx_uint_t                i, n, found;
    ngx_atomic_uint_t         generation;
    ngx_tce_instance_t       *inst;
    ngx_tce_canary_policy_t   pol;

    if (ngx_tce_zone_policy_get(zone, svc, cluster, &pol) == NGX_OK) {
        return 1;
    }

    if (ngx_tce_zone_copy(zone, svc, &inst, &n, &generation, log)
        != NGX_OK)
    {
        return 0;
    }

    found = 0;

    for (i = 0; i < n; i++) {
        if (ngx_strlen(inst[i].cluster) == cluster->len
            && ngx_strncmp(inst[i].cluster, cluster->data, cluster->len)
               == 0)
        {
            found = 1;
            break;
        }
    }

    if (inst) {
        ngx_free(inst);
    }

    return found;
}


/* the object of a cluster in clusters, made on first use */
static json_t *
ngx_http_tce_admin_cluster_obj(json_t *clusters, const char *name)
{
    json_t  *cj, *envs, *ej;

    cj = json_object_get(clusters, name);
    if (cj) {
        return cj;
    }

    cj = json_object();
    envs = json_object();

    if (json_object_set_new(clusters, name, cj) != 0
        || json_object_set_new(cj, "envs", envs) != 0)
    {
        return NULL;
    }

    ej = json_object();

    if (json_object_set_new(envs, "prod", ej) != 0
        || json_object_set_new(ej, "instances", json_array()) != 0)
    {
        return NULL;
    }

    ej = json_object();

    if (json_object_set_new(envs, "canary", ej) != 0
        || json_object_set_new(ej, "instances", json_array()) != 0)
    {
        return NULL;
    }

    return cj;
}


static json_t *
ngx_http_tce_admin_summary(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_log_t *log)
{
    json_t             *sj, *clusters, *cj, *ej, *count;
    ngx_uint_t          i, n;
    ngx_atomic_uint_t   generation;
    ngx_tce_instance_t *inst;

    if (ngx_tce_zone_copy(zone, svc, &inst, &n, &generation, log)
        != NGX_OK)
    {
        return NULL;
    }

    sj = json_object();
    clusters = json_object();

    if (sj == NULL
        || json_object_set_new(sj, "clusters", clusters) != 0
        || json_object_set_new(sj, "name",
                               ngx_http_tce_admin_jstr(svc->name,
                                                       svc->name_len))
           != 0
        || json_object_set_new(sj, "generation", json_integer(generation))
           != 0
        || json_object_set_new(sj, "source",
                               json_string(ngx_http_tce_admin_source(svc)))
           != 0
        || json_object_set_new(sj, "instances", json_integer(n)) != 0
        || json_object_set_new(sj, "discovery",
                               ngx_http_tce_admin_discovery(zone, svc))
           != 0)
    {
        goto failed;
    }

    for (i = 0; i < n; i++) {
        cj = ngx_http_tce_admin_cluster_obj(clusters, inst[i].cluster);
        if (cj == NULL) {
            goto failed;
        }

        ej = json_object_get(json_object_get(cj, "envs"),
                             ngx_tce_env_name(inst[i].env));
        if (ej == NULL) {
            goto failed;
        }

        /* the summary counts instead of listing */
        count = json_object_get(ej, "count");

        if (json_object_set_new(ej, "count",
                                json_integer(count
                                             ? json_integer_value(count) + 1
                                             : 1))
            != 0)
        {
            goto failed;
        }

        if (ngx_tce_instance_weight(&inst[i])
            && json_object_set_new(ej, "routable",
                   json_integer(json_integer_value(
                                    json_object_get(ej, "routable")) + 1))
               != 0)
        {
            goto failed;
        }
    }

    if (inst) {
        ngx_free(inst);
    }

    return sj;

failed:

    json_decref(sj);

    if (inst) {
        ngx_free(inst);
    }

    return NULL;
}


ngx_int_t
ngx_http_tce_admin_services(ngx_http_request_t *r)
{
    json_t               *root, *list, *sj, *cj, *ej;
    const char           *cname, *ename;
    ngx_tce_service_t    *svc;
    ngx_tce_main_conf_t  *tmcf;

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    root = json_object();
    list = json_array();

    if (root == NULL || json_object_set_new(root, "services", list) != 0) {
        goto failed;
    }

    for (svc = tmcf->zone->sh->services; svc; svc = svc->next) {
        sj = ngx_http_tce_admin_summary(tmcf->zone, svc, r->connection->log);

        if (json_array_append_new(list, sj) != 0) {
            goto failed;
        }

        /* counts only: drop the per-env instance lists */
        json_object_foreach(json_object_get(sj, "clusters"), cname, cj) {
            json_object_foreach(json_object_get(cj, "envs"), ename, ej) {
                (void) json_object_del(ej, "instances");

                if ((json_object_get(ej, "count") == NULL
                     && json_object_set_new(ej, "count", json_integer(0))
                        != 0)
                    || (json_object_get(ej, "routable") == NULL
                        && json_object_set_new(ej, "routable",
                                               json_integer(0)) != 0))
                {
                    goto failed;
                }
            }
        }
    }

    return ngx_http_tce_admin_send(r, NGX_HTTP_OK, root);

failed:

    json_decref(root);

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


json_t *
ngx_http_tce_admin_instance(ngx_tce_instance_t *inst,
    ngx_http_tce_metrics_recent_t *rec)
{
    json_t  *ij, *ov, *src;

    ij = json_object();
    ov = json_object();
    src = json_object();

    if (ij == NULL
        || json_object_set_new(ij, "overrides", ov) != 0
        || json_object_set_new(ij, "sources", src) != 0
        || json_object_set_new(ij, "id",
                               ngx_http_tce_admin_jstr(inst->id,
                                   ngx_strlen(inst->id)))
           != 0
        || json_object_set_new(ij, "address",
                               ngx_http_tce_admin_jstr(inst->addr,
                                   ngx_strlen(inst->addr)))
           != 0
        || json_object_set_new(ij, "version",
                               ngx_http_tce_admin_jstr(inst->version,
                                   ngx_strlen(inst->version)))
           != 0
        || json_object_set_new(ij, "weight", json_integer(inst->weight))
           != 0
        || json_object_set_new(ij, "routable_since_ms",
                               inst->since_ms
                               ? json_integer((json_int_t) inst->since_ms)
                               : json_null())
           != 0
        || json_object_set_new(ij, "effective_weight",
                               json_integer(ngx_tce_instance_weight(inst)))
           != 0
        || json_object_set_new(ij, "state",
                               json_string(ngx_tce_state_name(
                                   ngx_tce_instance_state(inst))))
           != 0
        || json_object_set_new(ij, "discovery_state",
                               json_string(ngx_tce_state_name(inst->state)))
           != 0
        || json_object_set_new(ov, "weight",
                               inst->op_weight
                               ? json_integer(inst->op_weight)
                               : json_null())
           != 0
        || json_object_set_new(ov, "drain",
                               inst->op_drain ? json_true() : json_null())
           != 0
        || json_object_set_new(ov, "down",
                               inst->op_down ? json_true() : json_null())
           != 0
        || json_object_set_new(src, "weight",
                               json_string(inst->op_weight ? "override"
                                                           : "discovery"))
           != 0
        || json_object_set_new(src, "state",
                               json_string((inst->op_down
                                            || ((inst->op_drain
                                                 || inst->rm_deadline)
                                                && inst->state
                                                   == NGX_TCE_STATE_UP))
                                           ? "override" : "discovery"))
           != 0
        || ngx_http_tce_admin_recent(ij, rec) != NGX_OK)
    {
        json_decref(ij);
        return NULL;
    }

    /* a removal under way (ngx_http_tce_admin_drain.c) */
    if (json_object_set_new(ij, "removal",
                            inst->rm_deadline
                            ? json_pack("{s:s, s:I, s:I}",
                                        "status", "draining",
                                        "since",
                                        (json_int_t) inst->rm_since,
                                        "deadline",
                                        (json_int_t) inst->rm_deadline)
                            : json_null())
        != 0)
    {
        json_decref(ij);
        return NULL;
    }

    return ij;
}


/*
 * in_flight (attempts on it now, every worker's), requests_per_second
 * and error_ratio (5xx answers and failed attempts) over the last
 * window_seconds complete seconds; null when nothing is counted.
 */
static ngx_int_t
ngx_http_tce_admin_recent(json_t *ij, ngx_http_tce_metrics_recent_t *rec)
{
    json_t  *inflight, *rate, *ratio;

    if (rec == NULL) {
        inflight = json_null();
        rate = json_null();
        ratio = json_null();

    } else {
        inflight = json_integer(rec->found ? rec->in_flight : 0);
        rate = json_real((double) rec->w.requests / rec->w.seconds);
        ratio = rec->w.requests
                ? json_real((double) rec->w.errors / rec->w.requests)
                : json_null();
    }

    if (json_object_set_new(ij, "in_flight", inflight) != 0
        || json_object_set_new(ij, "requests_per_second", rate) != 0
        || json_object_set_new(ij, "error_ratio", ratio) != 0
        || json_object_set_new(ij, "window_seconds",
                               json_integer(NGX_TCE_WINDOW_SECONDS))
           != 0)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static json_t *
ngx_http_tce_admin_discovery(ngx_tce_zone_t *zone, ngx_tce_service_t *svc)
{
    u_char   error[NGX_TCE_DISC_ERR_LEN];
    json_t  *dj;
    time_t   now;

    dj = json_object();
    if (dj == NULL) {
        return NULL;
    }

    now = ngx_time();

    ngx_shmtx_lock(&zone->shpool->mutex);
    (void) ngx_cpystrn(error, svc->disc_error, NGX_TCE_DISC_ERR_LEN);
    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (json_object_set_new(dj, "watched",
                            json_boolean(svc->disc_watched)) != 0
        || json_object_set_new(dj, "in_sync",
                               json_boolean(svc->disc_watched
                                            && error[0] == '\0'))
           != 0
        || json_object_set_new(dj, "last_success",
                               svc->disc_success
                               ? json_integer(svc->disc_success)
                               : json_null())
           != 0
        || json_object_set_new(dj, "staleness_seconds",
                               svc->disc_success
                               ? json_integer(now - svc->disc_success)
                               : json_null())
           != 0
        || json_object_set_new(dj, "last_error",
                               error[0]
                               ? ngx_http_tce_admin_jstr(error,
                                                         ngx_strlen(error))
                               : json_null())
           != 0)
    {
        json_decref(dj);
        return NULL;
    }

    return dj;
}


ngx_int_t
ngx_http_tce_admin_service(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx)
{
    json_t                         *root, *clusters, *cj, *ej, *pj;
    ngx_str_t                       cname, name;
    ngx_uint_t                      i, n;
    const char                     *key;
    ngx_atomic_uint_t               generation;
    ngx_tce_instance_t             *inst;
    ngx_tce_main_conf_t            *tmcf;
    ngx_tce_canary_policy_t         pol;
    ngx_http_tce_metrics_recent_t  *rec;

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    if (ngx_tce_zone_copy(tmcf->zone, ctx->svc, &inst, &n, &generation,
                          r->connection->log)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    root = json_object();
    clusters = json_object();

    if (root == NULL
        || json_object_set_new(root, "clusters", clusters) != 0
        || json_object_set_new(root, "name",
                               ngx_http_tce_admin_jstr(ctx->svc->name,
                                   ctx->svc->name_len))
           != 0
        || json_object_set_new(root, "generation", json_integer(generation))
           != 0
        || json_object_set_new(root, "updated",
                               json_integer(ctx->svc->updated)) != 0
        || json_object_set_new(root, "source",
                               json_string(ngx_http_tce_admin_source(
                                   ctx->svc)))
           != 0
        || json_object_set_new(root, "discovery",
                               ngx_http_tce_admin_discovery(tmcf->zone,
                                                            ctx->svc))
           != 0)
    {
        goto failed;
    }

    rec = n ? ngx_pcalloc(r->pool,
                          n * sizeof(ngx_http_tce_metrics_recent_t))
            : NULL;

    if (n && rec == NULL) {
        goto failed;
    }

    name.data = ctx->svc->name;
    name.len = ctx->svc->name_len;

    if (n && ngx_http_tce_metrics_recent(&name, inst, n, rec) != NGX_OK) {
        rec = NULL;
    }

    for (i = 0; i < n; i++) {
        cj = ngx_http_tce_admin_cluster_obj(clusters, inst[i].cluster);
        ej = json_object_get(json_object_get(cj, "envs"),
                             ngx_tce_env_name(inst[i].env));

        if (ej == NULL
            || json_array_append_new(json_object_get(ej, "instances"),
                                     ngx_http_tce_admin_instance(&inst[i],
                                         rec ? &rec[i] : NULL))
               != 0)
        {
            goto failed;
        }
    }

    if (ngx_http_tce_admin_traffic(clusters, ctx->svc, r->connection->log)
        != NGX_OK)
    {
        goto failed;
    }

    json_object_foreach(clusters, key, cj) {
        cname.data = (u_char *) key;
        cname.len = ngx_strlen(key);

        if (ngx_tce_zone_policy_get(tmcf->zone, ctx->svc, &cname, &pol)
            != NGX_OK)
        {
            pj = json_null();

        } else {
            pj = json_pack("{s:I, s:I, s:b}", "weight_bp",
                           (json_int_t) pol.weight, "epoch",
                           (json_int_t) pol.epoch, "fallback",
                           (int) pol.fallback);
        }

        if (json_object_set_new(cj, "canary", pj) != 0) {
            goto failed;
        }
    }

    if (inst) {
        ngx_free(inst);
        inst = NULL;
    }

    /* with tce_redis: the fleet revision, as the writes check it */
    if (ngx_http_tce_admin_etag(r, ngx_http_tce_admin_inst_tag(r, ctx->svc,
                                                               generation))
        != NGX_OK)
    {
        json_decref(root);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_tce_admin_send(r, NGX_HTTP_OK, root);

failed:

    json_decref(root);

    if (inst) {
        ngx_free(inst);
    }

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


ngx_int_t
ngx_http_tce_admin_status_v1(ngx_http_request_t *r)
{
    json_t                          *root, *zj, *cj, *lj;
    size_t                           total, used;
    ngx_pid_t                        owner;
    ngx_msec_int_t                   age;
    ngx_slab_pool_t                 *shpool;
    ngx_tce_zone_t                  *zone;
    ngx_tce_main_conf_t             *tmcf;
    ngx_http_tce_admin_main_conf_t  *amcf;

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);
    zone = tmcf->zone;
    shpool = zone->shpool;

    ngx_shmtx_lock(&shpool->mutex);
    total = (shpool->end - shpool->start) / ngx_pagesize;
    used = total > shpool->pfree ? total - shpool->pfree : 0;
    ngx_shmtx_unlock(&shpool->mutex);

    owner = (ngx_pid_t) zone->sh->consul_owner;
    age = (ngx_msec_int_t) (ngx_current_msec - zone->sh->consul_heartbeat);

    amcf = ngx_http_get_module_main_conf(r, ngx_http_tce_admin_api_module);

    /* with tce_redis: which node drives deploys */
    lj = ngx_http_tce_admin_deploy_lease_json(amcf);

    root = json_object();
    zj = json_object();
    cj = json_object();

    if (root == NULL
        || (lj && json_object_set_new(root, "deploy_lease", lj) != 0)
        || json_object_set_new(root, "zone", zj) != 0
        || json_object_set_new(root, "consul_watch", cj) != 0
        || json_object_set_new(zj, "name",
                               ngx_http_tce_admin_jstr(
                                   zone->shm_zone->shm.name.data,
                                   zone->shm_zone->shm.name.len))
           != 0
        || json_object_set_new(zj, "size",
                               json_integer(zone->shm_zone->shm.size)) != 0
        || json_object_set_new(zj, "pages", json_integer(total)) != 0
        || json_object_set_new(zj, "pages_used", json_integer(used)) != 0
        || json_object_set_new(zj, "services",
                               json_integer(zone->sh->nservices)) != 0
        || json_object_set_new(cj, "owner_pid",
                               owner ? json_integer(owner) : json_null())
           != 0
        || json_object_set_new(cj, "heartbeat_age_ms",
                               owner ? json_integer(age) : json_null())
           != 0
        || json_object_set_new(root, "discovery",
                               ngx_http_tce_admin_disc_summary(zone))
           != 0
        || json_object_set_new(root, "pid", json_integer(ngx_pid)) != 0
        || json_object_set_new(root, "writes",
                               ngx_http_tce_admin_writes(r))
           != 0
        || json_object_set_new(root, "applied",
                               ngx_http_tce_admin_applied(zone))
           != 0
        || (zone->sh->redis
            && json_object_set_new(root, "fleet",
                                   ngx_tce_redis_json(zone))
               != 0))
    {
        json_decref(root);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_tce_admin_send(r, NGX_HTTP_OK, root);
}


/*
 * Consul discovery summed over the services watched: how many, how
 * many in sync (their last answer good) and failing, the largest
 * staleness (of those answered once), the newest good and failed
 * answers, and whether Consul
 * is reachable: the newest answer over all of them was a good one
 * (null while no service is watched: no Consul, or not yet asked).
 */
static json_t *
ngx_http_tce_admin_disc_summary(ngx_tce_zone_t *zone)
{
    time_t              now, success, failure, oldest;
    ngx_uint_t          watched, failing;
    ngx_tce_service_t  *svc;

    now = ngx_time();
    watched = 0;
    failing = 0;
    success = 0;
    failure = 0;
    oldest = 0;

    /* the error texts are written under the mutex */
    ngx_shmtx_lock(&zone->shpool->mutex);

    for (svc = zone->sh->services; svc; svc = svc->next) {
        if (!svc->disc_watched) {
            continue;
        }

        watched++;

        if (svc->disc_error[0] != '\0') {
            failing++;
        }

        success = ngx_max(success, svc->disc_success);
        failure = ngx_max(failure, svc->disc_failure);

        if (svc->disc_success
            && (oldest == 0 || svc->disc_success < oldest))
        {
            oldest = svc->disc_success;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return json_pack("{s:I, s:I, s:I, s:o, s:o, s:o, s:o}",
                     "services_watched", (json_int_t) watched,
                     "in_sync", (json_int_t) (watched - failing),
                     "failing", (json_int_t) failing,
                     "max_staleness_seconds",
                     oldest ? json_integer(now - oldest) : json_null(),
                     "last_success",
                     success ? json_integer(success) : json_null(),
                     "last_failure",
                     failure ? json_integer(failure) : json_null(),
                     "consul_reachable",
                     watched && (success || failure)
                     ? json_boolean(success >= failure) : json_null());
}


/*
 * The API's accepted writes since the tce_admin zone was created: how
 * long each held its worker's event loop (the state file and the audit
 * line are written on threads), in wall-clock time (preemption by other
 * processes included) and in CPU time, and how long the state file's
 * reading, encoding and writing (fsyncs) took on its thread.
 */
static json_t *
ngx_http_tce_admin_writes(ngx_http_request_t *r)
{
    uint64_t                         n;
    ngx_http_tce_admin_shctx_t      *sh;
    ngx_http_tce_admin_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_tce_admin_api_module);
    sh = amcf->sh;
    n = sh->writes;

    return json_pack("{s:I, s:f, s:f, s:f, s:f, s:I, s:I, s:o}",
                     "accepted", (json_int_t) n,
                     "event_loop_us_avg",
                     n ? (double) sh->loop_ns / n / 1000.0 : 0.0,
                     "event_loop_cpu_us_avg",
                     n ? (double) sh->loop_cpu_ns / n / 1000.0 : 0.0,
                     "event_loop_us_max", (double) sh->loop_ns_max / 1000.0,
                     "store_us_avg",
                     n ? (double) sh->store_ns / n / 1000.0 : 0.0,
                     "audit_lines", (json_int_t) sh->audit_lines,
                     "audit_errors", (json_int_t) sh->audit_errors,
                     "turn_pid",
                     sh->turn ? json_integer((json_int_t) sh->turn)
                              : json_null());
}


/*
 * Per service: its generation, each worker's (the view it routes on:
 * ngx_tce_applied.c) and "everywhere", true when every worker that
 * routes to the service has a view of the current generation.  A
 * worker of the running configuration that is listed under no service
 * has no view of it: it builds one from the current generation at its
 * first request.  Slots of workers gone (a reload with fewer workers,
 * a respawn) are left out.
 */
static json_t *
ngx_http_tce_admin_applied(ngx_tce_zone_t *zone)
{
    json_t                  *root, *one;
    ngx_uint_t               workers;
    ngx_core_conf_t         *ccf;
    ngx_tce_service_t       *svc;
    ngx_tce_applied_slot_t  *slots;

    ccf = (ngx_core_conf_t *) ngx_get_conf(ngx_cycle->conf_ctx,
                                           ngx_core_module);
    workers = ngx_max(ccf->worker_processes, 1);

    root = json_object();
    slots = ngx_alloc(workers * sizeof(ngx_tce_applied_slot_t),
                      ngx_cycle->log);

    if (root == NULL || slots == NULL) {
        json_decref(root);
        ngx_free(slots);
        return NULL;
    }

    /* services are never unlinked: the list is walked without the lock */
    for (svc = zone->sh->services; svc; svc = svc->next) {
        one = ngx_http_tce_admin_applied_one(zone, svc, slots, workers);

        if (one == NULL
            || json_object_set_new(root, (char *) svc->name, one) != 0)
        {
            json_decref(root);
            ngx_free(slots);
            return NULL;
        }
    }

    ngx_free(slots);

    return root;
}


static json_t *
ngx_http_tce_admin_applied_one(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_tce_applied_slot_t *slots, ngx_uint_t workers)
{
    json_t             *one, *list;
    ngx_uint_t          i, n, everywhere;
    ngx_atomic_uint_t   generation;

    generation = svc->generation;
    n = ngx_tce_zone_applied_copy(zone, svc, slots, workers);

    one = json_object();
    list = json_array();

    if (one == NULL || list == NULL) {
        json_decref(one);
        json_decref(list);
        return NULL;
    }

    everywhere = 1;

    for (i = 0; i < n; i++) {
        if (slots[i].pid == 0
            || (kill(slots[i].pid, 0) == -1 && ngx_errno == NGX_ESRCH))
        {
            continue;
        }

        if (slots[i].generation < generation) {
            everywhere = 0;
        }

        if (json_array_append_new(list,
                json_pack("{s:i, s:i, s:I}",
                          "worker", (int) i,
                          "pid", (int) slots[i].pid,
                          "generation", (json_int_t) slots[i].generation))
            != 0)
        {
            json_decref(one);
            json_decref(list);
            return NULL;
        }
    }

    if (json_object_set_new(one, "workers", list) != 0
        || json_object_set_new(one, "generation", json_integer(generation))
           != 0
        || json_object_set_new(one, "everywhere", json_boolean(everywhere))
           != 0)
    {
        json_decref(one);
        return NULL;
    }

    return one;
}
