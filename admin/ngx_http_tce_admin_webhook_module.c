/*
 * The deploy webhook (see ngx_http_tce_admin_webhook.h): the directive,
 * its shared zone and queue, the status and the metrics.
 *
 * The queue is a ring of capacity (queue=) events whose JSON bodies are
 * in the zone's slab.  Any worker adds (an API action, the controller's
 * look); a full ring, or a slab without room, loses its oldest event
 * (dropped).  Sequence numbers are given in the order events enter the
 * ring, so the receiver sees them increase by one, a gap telling it how
 * many were dropped.  The zone keeps its queue across a reload when the
 * directive does not change.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_webhook.h"


static void *ngx_http_tce_admin_webhook_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_tce_admin_webhook(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_tce_admin_webhook_url(ngx_conf_t *cf,
    ngx_http_tce_admin_webhook_main_conf_t *wmcf, ngx_str_t *value);
static ngx_int_t ngx_http_tce_admin_webhook_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_tce_admin_webhook_init_process(ngx_cycle_t *cycle);
static void ngx_http_tce_admin_webhook_drop_locked(
    ngx_http_tce_admin_webhook_main_conf_t *wmcf);
static json_t *ngx_http_tce_admin_webhook_body(const char *event,
    const ngx_http_tce_admin_deploy_t *d, ngx_str_t *by);
static ngx_http_tce_admin_webhook_main_conf_t *
    ngx_http_tce_admin_webhook_conf(void);


static ngx_command_t  ngx_http_tce_admin_webhook_commands[] = {

    { ngx_string("tce_deploy_webhook"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_tce_admin_webhook,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_tce_admin_webhook_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_tce_admin_webhook_create_main_conf, /* create main conf */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_tce_admin_webhook_module = {
    NGX_MODULE_V1,
    &ngx_http_tce_admin_webhook_module_ctx, /* module context */
    ngx_http_tce_admin_webhook_commands,   /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_tce_admin_webhook_init_process, /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_tce_admin_webhook_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_tce_admin_webhook_main_conf_t  *wmcf;

    wmcf = ngx_pcalloc(cf->pool,
                       sizeof(ngx_http_tce_admin_webhook_main_conf_t));
    if (wmcf == NULL) {
        return NULL;
    }

    return wmcf;
}


/* tce_deploy_webhook <url> [timeout=<time>] [retries=<n>] [queue=<n>] */

static char *
ngx_http_tce_admin_webhook(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tce_admin_webhook_main_conf_t *wmcf = conf;

    size_t       size;
    ngx_int_t    n;
    ngx_str_t   *value, name, v;
    ngx_uint_t   i;

    if (wmcf->url.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_tce_admin_webhook_url(cf, wmcf, &value[1]) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    wmcf->timeout = 5000;
    wmcf->retries = 5;
    wmcf->queue = 64;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            v.data = value[i].data + 8;
            v.len = value[i].len - 8;
            n = ngx_parse_time(&v, 0);

            if (n == NGX_ERROR || n == 0 || n > 600000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "tce_deploy_webhook: invalid timeout "
                                   "\"%V\" (a time above 0, at most 10m)",
                                   &v);
                return NGX_CONF_ERROR;
            }

            wmcf->timeout = (ngx_msec_t) n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "retries=", 8) == 0) {
            n = ngx_atoi(value[i].data + 8, value[i].len - 8);

            if (n == NGX_ERROR || n > 100) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "tce_deploy_webhook: invalid \"%V\" "
                                   "(0 to 100)", &value[i]);
                return NGX_CONF_ERROR;
            }

            wmcf->retries = (ngx_uint_t) n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "queue=", 6) == 0) {
            n = ngx_atoi(value[i].data + 6, value[i].len - 6);

            if (n == NGX_ERROR || n < 1 || n > 4096) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "tce_deploy_webhook: invalid \"%V\" "
                                   "(1 to 4096)", &value[i]);
                return NGX_CONF_ERROR;
            }

            wmcf->queue = (ngx_uint_t) n;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tce_deploy_webhook: invalid parameter \"%V\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    /* the ring, and about 8 KB of JSON per event (16 steps' figures) */
    size = sizeof(ngx_http_tce_admin_webhook_sh_t)
           + wmcf->queue * (sizeof(ngx_http_tce_admin_webhook_event_t)
                            + 8192)
           + 8 * ngx_pagesize;
    size = ngx_align(size, ngx_pagesize);

    ngx_str_set(&name, "tce_deploy_webhook");

    wmcf->shm_zone = ngx_shared_memory_add(cf, &name, size,
                                           &ngx_http_tce_admin_webhook_module);
    if (wmcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    wmcf->shm_zone->init = ngx_http_tce_admin_webhook_init_zone;
    wmcf->shm_zone->data = wmcf;

    return NGX_CONF_OK;
}


/*
 * The URL must be http or https with a host; the message never shows
 * the URL itself (it may hold credentials or a secret path), only the
 * part at fault.
 */
static char *
ngx_http_tce_admin_webhook_url(ngx_conf_t *cf,
    ngx_http_tce_admin_webhook_main_conf_t *wmcf, ngx_str_t *value)
{
    char       *scheme, *host, *port;
    u_char     *p;
    CURLU      *u;
    CURLUcode   rc;

    scheme = NULL;
    host = NULL;
    port = NULL;

    wmcf->url.data = ngx_pnalloc(cf->pool, value->len + 1);
    if (wmcf->url.data == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn(wmcf->url.data, value->data, value->len + 1);
    wmcf->url.len = value->len;

    if (ngx_strlen(wmcf->url.data) != value->len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tce_deploy_webhook: the URL holds a NUL byte");
        return NGX_CONF_ERROR;
    }

    u = curl_url();
    if (u == NULL) {
        return NGX_CONF_ERROR;
    }

    rc = curl_url_set(u, CURLUPART_URL, (char *) wmcf->url.data, 0);

    if (rc == CURLUE_OK) {
        rc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    }

    if (rc == CURLUE_OK) {
        rc = curl_url_get(u, CURLUPART_HOST, &host, 0);
    }

    if (rc != CURLUE_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tce_deploy_webhook: invalid URL: %s "
                           "(an absolute http:// or https:// URL)",
                           curl_url_strerror(rc));
        goto failed;
    }

    if (ngx_strcmp(scheme, "http") != 0 && ngx_strcmp(scheme, "https") != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tce_deploy_webhook: invalid URL scheme \"%s\" "
                           "(http or https)", scheme);
        goto failed;
    }

    if (host[0] == '\0') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tce_deploy_webhook: the URL has no host");
        goto failed;
    }

    (void) curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);

    /* what the logs show: no user, password, path or query */
    wmcf->target.data = ngx_pnalloc(cf->pool, ngx_strlen(scheme)
                                              + ngx_strlen(host)
                                              + (port ? ngx_strlen(port) : 0)
                                              + sizeof("://:"));
    if (wmcf->target.data == NULL) {
        goto failed;
    }

    p = ngx_sprintf(wmcf->target.data, "%s://%s%s%s", scheme, host,
                    port ? ":" : "", port ? port : "");
    wmcf->target.len = p - wmcf->target.data;

    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);

    return NGX_CONF_OK;

failed:

    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);

    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_tce_admin_webhook_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_tce_admin_webhook_main_conf_t *owmcf = data;

    size_t                                   size;
    ngx_http_tce_admin_webhook_main_conf_t  *wmcf;

    wmcf = shm_zone->data;

    if (owmcf) {
        /* a reload with the same directive: the queue goes on */
        wmcf->shpool = owmcf->shpool;
        wmcf->sh = owmcf->sh;
        return NGX_OK;
    }

    wmcf->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        wmcf->sh = wmcf->shpool->data;
        return NGX_OK;
    }

    size = sizeof(ngx_http_tce_admin_webhook_sh_t)
           + (wmcf->queue - 1) * sizeof(ngx_http_tce_admin_webhook_event_t);

    wmcf->sh = ngx_slab_calloc(wmcf->shpool, size);
    if (wmcf->sh == NULL) {
        return NGX_ERROR;
    }

    wmcf->sh->capacity = wmcf->queue;
    wmcf->shpool->data = wmcf->sh;
    wmcf->shpool->log_nomem = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_tce_admin_webhook_init_process(ngx_cycle_t *cycle)
{
    ngx_http_tce_admin_webhook_main_conf_t  *wmcf;

    if ((ngx_process != NGX_PROCESS_WORKER
         && ngx_process != NGX_PROCESS_SINGLE)
        || cycle->conf_ctx[ngx_http_module.index] == NULL)
    {
        return NGX_OK;
    }

    wmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                            ngx_http_tce_admin_webhook_module);

    if (wmcf == NULL || wmcf->sh == NULL) {
        return NGX_OK;
    }

    return ngx_http_tce_admin_webhook_sender_init(cycle, wmcf);
}


static ngx_http_tce_admin_webhook_main_conf_t *
ngx_http_tce_admin_webhook_conf(void)
{
    ngx_http_tce_admin_webhook_main_conf_t  *wmcf;

    if (ngx_cycle->conf_ctx == NULL
        || ngx_cycle->conf_ctx[ngx_http_module.index] == NULL)
    {
        return NULL;
    }

    wmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                            ngx_http_tce_admin_webhook_module);

    return (wmcf && wmcf->sh) ? wmcf : NULL;
}


uint64_t
ngx_http_tce_admin_webhook_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


void
ngx_http_tce_admin_webhook_deploy(const char *event,
    const ngx_http_tce_admin_deploy_t *d, ngx_str_t *by, ngx_log_t *log)
{
    char                                    *text;
    u_char                                  *body, *p;
    size_t                                   len, size;
    uint64_t                                 seq;
    json_t                                  *j;
    ngx_uint_t                               k;
    ngx_http_tce_admin_webhook_sh_t         *sh;
    ngx_http_tce_admin_webhook_event_t      *e;
    ngx_http_tce_admin_webhook_main_conf_t  *wmcf;

    wmcf = ngx_http_tce_admin_webhook_conf();

    if (wmcf == NULL) {
        return;
    }

    sh = wmcf->sh;

    j = ngx_http_tce_admin_webhook_body(event, d, by);
    text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);

    if (text == NULL || text[0] != '{' || text[1] == '}') {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "tce webhook: no memory for the %s event of deploy "
                      "%uL: not sent", event, d->id);
        free(text);
        return;
    }

    /* {"seq":<n>, then the object's members: seq is given under the lock */
    len = ngx_strlen(text);
    size = sizeof("{\"seq\":,") - 1 + NGX_INT64_LEN + len - 1;

    ngx_shmtx_lock(&wmcf->shpool->mutex);

    if (sh->n == sh->capacity) {
        ngx_http_tce_admin_webhook_drop_locked(wmcf);
    }

    for ( ;; ) {
        body = ngx_slab_alloc_locked(wmcf->shpool, size);

        if (body || sh->n == 0) {
            break;
        }

        ngx_http_tce_admin_webhook_drop_locked(wmcf);
    }

    if (body == NULL) {
        sh->dropped++;
        ngx_shmtx_unlock(&wmcf->shpool->mutex);

        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tce webhook: the %s event of deploy %uL (%uz bytes) "
                      "does not fit in the tce_deploy_webhook zone: dropped",
                      event, d->id, len);
        free(text);
        return;
    }

    seq = ++sh->next_seq;

    p = ngx_sprintf(body, "{\"seq\":%uL,", seq);
    p = ngx_cpymem(p, text + 1, len - 1);

    k = (sh->head + sh->n) % sh->capacity;
    e = &sh->ring[k];
    e->seq = seq;
    e->body = body;
    e->len = p - body;

    if (sh->n == 0) {
        sh->attempts = 0;
        sh->retry_at = 0;
    }

    sh->n++;
    sh->queued++;

    ngx_shmtx_unlock(&wmcf->shpool->mutex);

    free(text);

    ngx_http_tce_admin_webhook_kick(wmcf);
}


/* the oldest event goes, counted as dropped; the mutex is held */
static void
ngx_http_tce_admin_webhook_drop_locked(
    ngx_http_tce_admin_webhook_main_conf_t *wmcf)
{
    ngx_http_tce_admin_webhook_sh_t     *sh;
    ngx_http_tce_admin_webhook_event_t  *e;

    sh = wmcf->sh;
    e = &sh->ring[sh->head];

    ngx_slab_free_locked(wmcf->shpool, e->body);
    ngx_memzero(e, sizeof(ngx_http_tce_admin_webhook_event_t));

    sh->head = (sh->head + 1) % sh->capacity;
    sh->n--;
    sh->dropped++;
    sh->attempts = 0;
    sh->retry_at = 0;
}


/*
 * {"event", "time_ms", "service", "cluster", "deploy_id", "state",
 *  "step", "weight_bp", "by", "manual", "failed_gate", "reason",
 *  "figures" (the current step's, null before its first look),
 *  "deploy" (the record as GET .../deploys/current shows it)}
 */
static json_t *
ngx_http_tce_admin_webhook_body(const char *event,
    const ngx_http_tce_admin_deploy_t *d, ngx_str_t *by)
{
    json_t  *j, *deploy, *fig;

    deploy = ngx_http_tce_admin_deploy_json(d);
    if (deploy == NULL) {
        return NULL;
    }

    fig = json_object_get(json_array_get(json_object_get(deploy, "steps"),
                                         d->step),
                          "figures");

    j = json_object();

    if (j == NULL
        || json_object_set_new(j, "event", json_string(event)) != 0
        || json_object_set_new(j, "time_ms", json_integer((json_int_t)
                                   ngx_http_tce_admin_webhook_now()))
           != 0
        || json_object_set_new(j, "service", json_string(d->service)) != 0
        || json_object_set_new(j, "cluster", json_string(d->cluster)) != 0
        || json_object_set_new(j, "deploy_id",
                               json_integer((json_int_t) d->id)) != 0
        || json_object_set_new(j, "state", json_string(
                                   ngx_http_tce_admin_deploy_state_name(
                                       d->state)))
           != 0
        || json_object_set_new(j, "step", json_integer(d->step)) != 0
        || json_object_set_new(j, "weight_bp", json_integer(d->weight_bp))
           != 0
        || json_object_set_new(j, "by", by ? json_stringn((char *) by->data,
                                                          by->len)
                                           : json_string("deploy-controller"))
           != 0
        || json_object_set_new(j, "manual", json_boolean(by != NULL)) != 0
        || json_object_set_new(j, "failed_gate", d->gate[0]
                                   ? json_string(d->gate) : json_null())
           != 0
        || json_object_set_new(j, "reason", d->why[0]
                                   ? json_string(d->why) : json_null())
           != 0
        || json_object_set_new(j, "figures", fig ? json_incref(fig)
                                                 : json_null())
           != 0
        || json_object_set_new(j, "deploy", deploy) != 0)
    {
        json_decref(j);
        return NULL;
    }

    return j;
}


json_t *
ngx_http_tce_admin_webhook_json(void)
{
    json_t                                  *j;
    ngx_http_tce_admin_webhook_sh_t          sh;
    ngx_http_tce_admin_webhook_main_conf_t  *wmcf;

    wmcf = ngx_http_tce_admin_webhook_conf();

    if (wmcf == NULL) {
        return NULL;
    }

    ngx_shmtx_lock(&wmcf->shpool->mutex);
    sh = *wmcf->sh;
    ngx_shmtx_unlock(&wmcf->shpool->mutex);

    j = json_object();

    if (j == NULL
        || json_object_set_new(j, "target",
                               json_stringn((char *) wmcf->target.data,
                                            wmcf->target.len))
           != 0
        || json_object_set_new(j, "queue", json_integer(sh.n)) != 0
        || json_object_set_new(j, "queue_capacity", json_integer(sh.capacity))
           != 0
        || json_object_set_new(j, "queued", json_integer(sh.queued)) != 0
        || json_object_set_new(j, "delivered", json_integer(sh.delivered))
           != 0
        || json_object_set_new(j, "dropped", json_integer(sh.dropped)) != 0
        || json_object_set_new(j, "abandoned", json_integer(sh.abandoned))
           != 0
        || json_object_set_new(j, "failures", json_integer(sh.failures)) != 0
        || json_object_set_new(j, "attempts", json_integer(sh.attempts)) != 0
        || json_object_set_new(j, "last_success_ms",
                               json_integer((json_int_t) sh.last_success))
           != 0
        || json_object_set_new(j, "last_failure_ms",
                               json_integer((json_int_t) sh.last_failure))
           != 0
        || json_object_set_new(j, "last_error",
                               sh.last_error[0] ? json_string(sh.last_error)
                                                : json_null())
           != 0)
    {
        json_decref(j);
        return NULL;
    }

    return j;
}


void
ngx_http_tce_admin_webhook_prom(ngx_tce_prom_webhook_t *w)
{
    ngx_http_tce_admin_webhook_sh_t         *sh;
    ngx_http_tce_admin_webhook_main_conf_t  *wmcf;

    ngx_memzero(w, sizeof(ngx_tce_prom_webhook_t));

    wmcf = ngx_http_tce_admin_webhook_conf();

    if (wmcf == NULL) {
        return;
    }

    sh = wmcf->sh;

    ngx_shmtx_lock(&wmcf->shpool->mutex);

    w->present = 1;
    w->queue = sh->n;
    w->queued = sh->queued;
    w->delivered = sh->delivered;
    w->dropped = sh->dropped;
    w->abandoned = sh->abandoned;
    w->failures = sh->failures;
    w->last_success = sh->last_success / 1000;

    ngx_shmtx_unlock(&wmcf->shpool->mutex);
}
