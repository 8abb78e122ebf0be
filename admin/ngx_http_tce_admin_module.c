/*
 * ngx_http_tce_admin_module: the read side of the admin API.
 *
 *   location = /tce/status { tce_status; }
 *
 * GET answers the registry as JSON: the zone, and per service its
 * generation and instances.  The zone is read service by service, each
 * copied under the zone's mutex, so traffic is never held up for long.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_tce.h"
#include "ngx_tce_text.h"
#include "ngx_tce_persist.h"
#include "ngx_tce_redis.h"
#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_admin_webhook.h"
#include "ngx_http_tce_upstream.h"


/* an escaped string: up to 4 bytes per byte of the longest one */
#define NGX_HTTP_TCE_ADMIN_STR_LEN  1024


static char *ngx_http_tce_admin_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_tce_admin_status_handler(ngx_http_request_t *r);
static json_t *ngx_http_tce_admin_status_json(ngx_tce_zone_t *zone,
    ngx_log_t *log);
static json_t *ngx_http_tce_admin_policies_json(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_log_t *log);
static json_t *ngx_http_tce_admin_service_json(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_log_t *log);
static json_t *ngx_http_tce_admin_instance_json(ngx_tce_instance_t *inst);
static ngx_int_t ngx_http_tce_admin_discovery_json(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, json_t *sj);
static ngx_int_t ngx_http_tce_admin_persist_json(ngx_tce_zone_t *zone,
    json_t *root);
static ngx_int_t ngx_http_tce_admin_send_json(ngx_http_request_t *r,
    ngx_uint_t status, json_t *json);


static ngx_command_t  ngx_http_tce_admin_commands[] = {

    { ngx_string("tce_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_tce_admin_status,
      0,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_tce_admin_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_tce_admin_module = {
    NGX_MODULE_V1,
    &ngx_http_tce_admin_module_ctx,        /* module context */
    ngx_http_tce_admin_commands,           /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static char *
ngx_http_tce_admin_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_tce_main_conf_t       *tmcf;
    ngx_http_core_loc_conf_t  *clcf;

    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_tce_module);

    if (tmcf->zone == NULL) {
        return "needs a \"tce_zone\" in http{} before it";
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_tce_admin_status_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_tce_admin_status_handler(ngx_http_request_t *r)
{
    json_t               *json;
    ngx_int_t             rc;
    ngx_tce_main_conf_t  *tmcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    json = ngx_http_tce_admin_status_json(tmcf->zone, r->connection->log);
    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_tce_admin_send_json(r, NGX_HTTP_OK, json);
}


/*
 * Every builder below hands each new value to its parent at once
 * (json_object_set_new() and json_array_append_new() take the reference
 * even when they fail, and fail on a NULL value), and on failure drops
 * only the one root it owns: nothing is freed twice.
 */

static json_t *
ngx_http_tce_admin_status_json(ngx_tce_zone_t *zone, ngx_log_t *log)
{
    char                key[NGX_HTTP_TCE_ADMIN_STR_LEN];
    json_t             *root, *zj, *services, *wj;
    ngx_tce_service_t  *svc;

    root = json_object();
    if (root == NULL) {
        goto failed;
    }

    zj = json_object();
    services = json_object();

    /* from here zj and services belong to root */
    if (json_object_set_new(root, "zone", zj) != 0
        || json_object_set_new(root, "services", services) != 0)
    {
        goto failed;
    }

    if (json_object_set_new(zj, "name",
                            ngx_http_tce_admin_jstr(
                                (char *) zone->shm_zone->shm.name.data,
                                zone->shm_zone->shm.name.len))
        != 0
        || json_object_set_new(zj, "size",
                               json_integer(zone->shm_zone->shm.size)) != 0
        || json_object_set_new(zj, "created",
                               json_integer(zone->sh->created)) != 0
        || json_object_set_new(zj, "services",
                               json_integer(zone->sh->nservices)) != 0
        || json_object_set_new(zj, "services_skipped",
                               json_integer(zone->sh->services_skipped))
           != 0
        || json_object_set_new(zj, "services_reclaimed",
                               json_integer(zone->sh->services_reclaimed))
           != 0
        || json_object_set_new(zj, "writes_refused",
                               json_integer(zone->sh->writes_refused))
           != 0)
    {
        goto failed;
    }

    for (svc = zone->sh->services; svc; svc = svc->next) {
        (void) ngx_tce_text_escape(key, sizeof(key), (char *) svc->name,
                                   svc->name_len);

        if (json_object_set_new(services, key,
                                ngx_http_tce_admin_service_json(zone, svc,
                                                                log))
            != 0)
        {
            goto failed;
        }
    }

    wj = ngx_http_tce_admin_webhook_json();

    if (ngx_http_tce_admin_persist_json(zone, root) != NGX_OK
        || (zone->sh->redis
            && json_object_set_new(root, "fleet", ngx_tce_redis_json(zone))
               != 0)
        || (wj && json_object_set_new(root, "deploy_webhook", wj) != 0))
    {
        goto failed;
    }

    return root;

failed:

    ngx_log_error(NGX_LOG_ERR, log, 0, "tce admin: cannot build the status");

    json_decref(root);

    return NULL;
}


static json_t *
ngx_http_tce_admin_service_json(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_log_t *log)
{
    json_t              *sj, *list;
    ngx_uint_t           i, n;
    ngx_atomic_uint_t    generation;
    ngx_tce_instance_t  *inst;

    if (ngx_tce_zone_copy(zone, svc, &inst, &n, &generation, log) != NGX_OK) {
        return NULL;
    }

    sj = json_object();
    if (sj == NULL) {
        goto failed;
    }

    list = json_array();

    /* from here list belongs to sj */
    if (json_object_set_new(sj, "instances", list) != 0
        || ngx_http_tce_admin_discovery_json(zone, svc, sj) != NGX_OK
        || json_object_set_new(sj, "generation", json_integer(generation))
           != 0
        || json_object_set_new(sj, "updated", json_integer(svc->updated))
           != 0
        || json_object_set_new(sj, "canary",
                               ngx_http_tce_admin_policies_json(zone, svc,
                                                                log))
           != 0)
    {
        goto failed;
    }

    for (i = 0; i < n; i++) {
        if (json_array_append_new(list,
                                  ngx_http_tce_admin_instance_json(&inst[i]))
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


/*
 * The canary policy in effect per cluster: {"<cluster>": {"weight_bp",
 * "epoch", "fallback", "source"}}, source "nginx.conf", "state",
 * "admin" or "fleet".
 */
static json_t *
ngx_http_tce_admin_policies_json(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_log_t *log)
{
    char                     key[NGX_HTTP_TCE_ADMIN_STR_LEN];
    json_t                  *obj;
    ngx_uint_t               i;
    ngx_pool_t              *pool;
    ngx_array_t              a;
    ngx_tce_policy_entry_t  *e;

    pool = ngx_create_pool(1024, log);
    if (pool == NULL) {
        return NULL;
    }

    obj = NULL;

    if (ngx_array_init(&a, pool, 4, sizeof(ngx_tce_policy_entry_t))
        != NGX_OK
        || ngx_http_tce_upstream_policy_effective(zone, svc, &a, log)
           != NGX_OK)
    {
        goto done;
    }

    obj = json_object();
    e = a.elts;

    for (i = 0; obj && i < a.nelts; i++) {
        (void) ngx_tce_text_escape(key, sizeof(key), (char *) e[i].cluster,
                                   ngx_strlen(e[i].cluster));

        if (json_object_set_new(obj, key,
                json_pack("{s:I, s:I, s:b, s:s}",
                          "weight_bp", (json_int_t) e[i].canary.weight,
                          "epoch", (json_int_t) e[i].canary.epoch,
                          "fallback", (int) e[i].canary.fallback,
                          "source",
                          ngx_tce_policy_source_name(e[i].source)))
            != 0)
        {
            json_decref(obj);
            obj = NULL;
        }
    }

done:

    ngx_destroy_pool(pool);

    return obj;
}


static json_t *
ngx_http_tce_admin_instance_json(ngx_tce_instance_t *inst)
{
    json_t  *ij;

    ij = json_object();
    if (ij == NULL) {
        return NULL;
    }

    if (json_object_set_new(ij, "id",
                            ngx_http_tce_admin_jstr(inst->id,
                                                   ngx_strlen(inst->id)))
        != 0
        || json_object_set_new(ij, "cluster",
                               ngx_http_tce_admin_jstr(inst->cluster,
                                   ngx_strlen(inst->cluster)))
           != 0
        || json_object_set_new(ij, "env",
                               json_string(ngx_tce_env_name(inst->env)))
           != 0
        || json_object_set_new(ij, "address",
                               ngx_http_tce_admin_jstr(inst->addr,
                                   ngx_strlen(inst->addr)))
           != 0
        || json_object_set_new(ij, "weight", json_integer(inst->weight))
           != 0
        || json_object_set_new(ij, "effective_weight",
                               json_integer(ngx_tce_instance_weight(inst)))
           != 0
        || json_object_set_new(ij, "state",
                               json_string(ngx_tce_state_name(
                                   ngx_tce_instance_state(inst))))
           != 0
        || json_object_set_new(ij, "version",
                               ngx_http_tce_admin_jstr(inst->version,
                                   ngx_strlen(inst->version)))
           != 0)
    {
        json_decref(ij);
        return NULL;
    }

    return ij;
}


/* Consul discovery's status of the service (ngx_tce.h) */

static ngx_int_t
ngx_http_tce_admin_discovery_json(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, json_t *sj)
{
    u_char        error[NGX_TCE_DISC_ERR_LEN];
    json_t       *dj;
    const char   *source;

    source = svc->source == NGX_TCE_SOURCE_CONSUL ? "consul"
             : svc->source == NGX_TCE_SOURCE_STATE ? "state" : "none";

    if (json_object_set_new(sj, "source", json_string(source)) != 0) {
        return NGX_ERROR;
    }

    if (!svc->disc_watched && svc->source != NGX_TCE_SOURCE_CONSUL) {
        return NGX_OK;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);
    (void) ngx_cpystrn(error, svc->disc_error, NGX_TCE_DISC_ERR_LEN);
    ngx_shmtx_unlock(&zone->shpool->mutex);

    dj = json_object();

    /* from here dj belongs to sj */
    if (json_object_set_new(sj, "discovery", dj) != 0
        || json_object_set_new(dj, "watched",
                               json_boolean(svc->disc_watched)) != 0
        || json_object_set_new(dj, "last_success",
                               json_integer(svc->disc_success)) != 0
        || json_object_set_new(dj, "last_failure",
                               json_integer(svc->disc_failure)) != 0
        || json_object_set_new(dj, "last_error",
                               ngx_http_tce_admin_jstr((char *) error,
                                   ngx_strlen(error)))
           != 0
        || json_object_set_new(dj, "index",
                               json_integer(svc->disc_index)) != 0
        || json_object_set_new(dj, "syncs",
                               json_integer(svc->disc_syncs)) != 0
        || json_object_set_new(dj, "errors",
                               json_integer(svc->disc_errors)) != 0
        || json_object_set_new(dj, "empty_answers",
                               json_integer(svc->disc_empty)) != 0)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A JSON string of bytes that should be printable already (validated on
 * the way in); any that are not are escaped (ngx_tce_text.h) rather
 * than failing the whole answer.
 */

/* "persistence": the files the workers write, keyed by path */

static ngx_int_t
ngx_http_tce_admin_persist_json(ngx_tce_zone_t *zone, json_t *root)
{
    json_t  *pj;

    pj = ngx_tce_persist_json(zone);

    if (pj == NULL || json_object_set_new(root, "persistence", pj) != 0) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_tce_admin_send_json(ngx_http_request_t *r, ngx_uint_t status,
    json_t *json)
{
    char         *text;
    size_t        len;
    ngx_buf_t    *b;
    ngx_int_t     rc;
    ngx_chain_t   out;

    text = json_dumps(json, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(json);

    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_strlen(text);

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        free(text);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, text, len);
    *b->last++ = '\n';
    free(text);

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
