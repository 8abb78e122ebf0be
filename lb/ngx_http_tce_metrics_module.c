/*
 * ngx_http_tce_metrics_module: request metrics of the tce upstreams.
 *
 *   http {
 *       tce_metrics_expire 5m;     series of departed instances
 *       ...
 *       location = /metrics { tce_metrics; }
 *   }
 *
 * Counting is on as soon as one location has tce_metrics.  The log
 * phase adds each request to its group's and instances' series through
 * pointers its view resolved at build time: atomic additions, no lock,
 * no lookup.  The handler answers Prometheus text 0.0.4, OpenMetrics
 * when the Accept header asks for it, JSON with ?format=json.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <nginx.h>

#include "ngx_http_tce_metrics.h"
#include "ngx_tce_persist.h"
#include "ngx_tce_redis.h"
#include "ngx_tce_diff.h"
#include "ngx_http_tce_admin_webhook.h"


#define NGX_HTTP_TCE_METRICS_TICK_MIN  200       /* ms */
#define NGX_HTTP_TCE_METRICS_TICK_MAX  30000


static void *ngx_http_tce_metrics_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_tce_metrics_init_main_conf(ngx_conf_t *cf,
    void *conf);
static char *ngx_http_tce_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_tce_metrics_postconf(ngx_conf_t *cf);
static ngx_int_t ngx_http_tce_metrics_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_tce_metrics_init_process(ngx_cycle_t *cycle);
static void ngx_http_tce_metrics_tick(ngx_event_t *ev);
static void ngx_http_tce_metrics_refresh(ngx_cycle_t *cycle,
    ngx_log_t *log);
static ngx_msec_t ngx_http_tce_metrics_interval(
    ngx_http_tce_metrics_main_conf_t *mmcf);
static ngx_int_t ngx_http_tce_metrics_log_handler(ngx_http_request_t *r);
static void ngx_http_tce_metrics_attempts(ngx_http_request_t *r,
    ngx_http_tce_upstream_peer_data_t *pd, ngx_http_tce_metrics_group_t *g,
    ngx_http_tce_metrics_sh_t *sh, ngx_uint_t *answered);
static ngx_int_t ngx_http_tce_metrics_handler(ngx_http_request_t *r);
static unsigned ngx_http_tce_metrics_format(ngx_http_request_t *r);
static void ngx_http_tce_metrics_free_buf(void *data);


static ngx_command_t  ngx_http_tce_metrics_commands[] = {

    { ngx_string("tce_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_tce_metrics,
      0,
      0,
      NULL },

    { ngx_string("tce_metrics_expire"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_tce_metrics_main_conf_t, expire),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_tce_metrics_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_tce_metrics_postconf,         /* postconfiguration */

    ngx_http_tce_metrics_create_main_conf, /* create main configuration */
    ngx_http_tce_metrics_init_main_conf,   /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_tce_metrics_module = {
    NGX_MODULE_V1,
    &ngx_http_tce_metrics_module_ctx,      /* module context */
    ngx_http_tce_metrics_commands,         /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_tce_metrics_init_module,      /* init module */
    ngx_http_tce_metrics_init_process,     /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_tce_metrics_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_tce_metrics_main_conf_t  *mmcf;

    mmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_tce_metrics_main_conf_t));
    if (mmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     mmcf->enabled = 0;
     *     mmcf->zone = NULL;
     *     mmcf->sh = NULL;
     *     mmcf->timer = NULL;
     */

    mmcf->expire = NGX_CONF_UNSET;

    return mmcf;
}


static char *
ngx_http_tce_metrics_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_tce_metrics_main_conf_t *mmcf = conf;

    ngx_conf_init_value(mmcf->expire, 300);

    if (mmcf->expire < 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tce_metrics_expire\" must be at least 1s");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_tce_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_tce_main_conf_t               *tmcf;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_tce_metrics_main_conf_t  *mmcf;

    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_tce_module);

    if (tmcf->zone == NULL) {
        return "needs a \"tce_zone\" in http{} before it";
    }

    mmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_tce_metrics_module);
    mmcf->enabled = 1;
    mmcf->zone = tmcf->zone;

    /* the zone's sizing counts the series (ngx_tce_zone_advice()) */
    tmcf->metrics = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_tce_metrics_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_tce_metrics_postconf(ngx_conf_t *cf)
{
    ngx_http_handler_pt               *h;
    ngx_http_core_main_conf_t         *cmcf;
    ngx_http_tce_metrics_main_conf_t  *mmcf;

    mmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_tce_metrics_module);

    /* no tce_metrics anywhere: nothing is counted, nothing costs */
    if (!mmcf->enabled) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_tce_metrics_log_handler;

    return NGX_OK;
}


/* in the master, zones mapped: the root of the series in the zone */
static ngx_int_t
ngx_http_tce_metrics_init_module(ngx_cycle_t *cycle)
{
    ngx_http_tce_metrics_main_conf_t  *mmcf;

    if (cycle->conf_ctx[ngx_http_module.index] == NULL) {
        return NGX_OK;
    }

    mmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_tce_metrics_module);

    if (!mmcf->enabled || mmcf->zone->sh == NULL) {
        return NGX_OK;
    }

    mmcf->sh = ngx_http_tce_metrics_init_zone(mmcf->zone, cycle->log);

    return mmcf->sh ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_http_tce_metrics_init_process(ngx_cycle_t *cycle)
{
    ngx_event_t                       *ev;
    ngx_http_tce_metrics_main_conf_t  *mmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    if (cycle->conf_ctx[ngx_http_module.index] == NULL) {
        return NGX_OK;
    }

    mmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_tce_metrics_module);

    if (!mmcf->enabled || mmcf->sh == NULL) {
        return NGX_OK;
    }

    /* what a worker that died in this slot held, at once */
    ngx_http_tce_metrics_reclaim(mmcf->zone, mmcf->sh, cycle->log);

    ev = ngx_pcalloc(cycle->pool, sizeof(ngx_event_t));
    if (ev == NULL) {
        return NGX_ERROR;
    }

    ev->handler = ngx_http_tce_metrics_tick;
    ev->data = mmcf;
    ev->log = cycle->log;
    ev->cancelable = 1;

    mmcf->timer = ev;

    /* the first tick builds the views at once: see the tick */
    ngx_add_timer(ev, 1);

    return NGX_OK;
}


static ngx_msec_t
ngx_http_tce_metrics_interval(ngx_http_tce_metrics_main_conf_t *mmcf)
{
    ngx_msec_t  ms;

    ms = (ngx_msec_t) mmcf->expire * 1000 / 4;

    return ngx_max(NGX_HTTP_TCE_METRICS_TICK_MIN,
                   ngx_min(ms, NGX_HTTP_TCE_METRICS_TICK_MAX));
}


/*
 * Each worker, on a timer: builds or brings up to date its views of
 * every tce upstream (for tce_service $var, of each service it routed
 * to), then frees the series unused for tce_metrics_expire.  So the
 * series of a registered instance are always referenced (after a
 * reload, the new workers take them over within a tick, long before
 * they could expire), and an idle worker does not keep departed
 * instances' series alive.
 */
static void
ngx_http_tce_metrics_tick(ngx_event_t *ev)
{
    ngx_http_tce_metrics_main_conf_t *mmcf = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_http_tce_metrics_refresh((ngx_cycle_t *) ngx_cycle, ev->log);

    ngx_http_tce_metrics_reclaim(mmcf->zone, mmcf->sh, ev->log);
    ngx_http_tce_metrics_expire(mmcf->zone, mmcf->sh, mmcf->expire, ev->log);

    ngx_add_timer(ev, ngx_http_tce_metrics_interval(mmcf));
}


static void
ngx_http_tce_metrics_refresh(ngx_cycle_t *cycle, ngx_log_t *log)
{
    ngx_uint_t                          i;
    ngx_http_upstream_srv_conf_t      **uscfp;
    ngx_http_upstream_main_conf_t      *umcf;
    ngx_http_tce_upstream_srv_conf_t   *ucf;

    umcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_upstream_module);
    if (umcf == NULL) {
        return;
    }

    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {
        if (uscfp[i]->srv_conf == NULL) {
            continue;
        }

        ucf = ngx_http_conf_upstream_srv_conf(uscfp[i],
                                              ngx_http_tce_upstream_module);

        if (ucf && ucf->service && ucf->zone) {
            (void) ngx_http_tce_upstream_view_get(ucf, log);

        } else if (ucf && ucf->service_cv) {
            /* tce_service $var: the services this worker routed to */
            ngx_http_tce_upstream_byname_refresh(ucf, log);
        }
    }
}


static ngx_int_t
ngx_http_tce_metrics_log_handler(ngx_http_request_t *r)
{
    ngx_int_t                           ms;
    ngx_uint_t                          status, answered;
    ngx_time_t                         *tp;
    ngx_tce_group_counters_t           *c;
    ngx_http_tce_metrics_group_t       *g;
    ngx_http_tce_upstream_peer_data_t  *pd;
    ngx_http_tce_metrics_main_conf_t   *mmcf;

    pd = ngx_http_get_module_ctx(r, ngx_http_tce_upstream_module);

    if (pd == NULL) {
        return NGX_OK;
    }

    mmcf = ngx_http_get_module_main_conf(r, ngx_http_tce_metrics_module);

    if (mmcf->sh == NULL) {
        return NGX_OK;
    }

    /* a request that found no group: the view's fallback series */
    g = pd->group ? pd->group->metrics
                  : (pd->view ? pd->view->metrics : NULL);

    if (g == NULL) {
        ngx_http_tce_metrics_add(&mmcf->sh->dropped, 1);
        return NGX_OK;
    }

    c = &g->c;

    ngx_http_tce_metrics_attempts(r, pd, g, mmcf->sh, &answered);

    if (r->err_status) {
        status = r->err_status;

    } else {
        status = r->headers_out.status;
    }

    ngx_http_tce_metrics_add(&c->requests[ngx_tce_prom_class(status)]
                             [answered ? NGX_TCE_PROM_SRC_UPSTREAM
                                       : NGX_TCE_PROM_SRC_NGINX], 1);

    ngx_http_tce_metrics_add(&c->bytes_in, r->request_length);
    ngx_http_tce_metrics_add(&c->bytes_out, r->connection->sent);

    tp = ngx_timeofday();
    ms = (ngx_int_t) ((tp->sec - r->start_sec) * 1000
                      + (tp->msec - r->start_msec));
    ms = ngx_max(ms, 0);

    ngx_http_tce_metrics_add(
        &c->request_time.bucket[ngx_tce_histogram_bucket(ms)], 1);
    ngx_http_tce_metrics_add(&c->request_time.sum_ms, ms);

    return NGX_OK;
}


/*
 * Every attempt of the request (r->upstream_states): the instance it
 * went to is found from the state's peer name, which points into the
 * request's view (pc->name = &peer->name): a subtraction, no lookup.
 */
static void
ngx_http_tce_metrics_attempts(ngx_http_request_t *r,
    ngx_http_tce_upstream_peer_data_t *pd, ngx_http_tce_metrics_group_t *g,
    ngx_http_tce_metrics_sh_t *sh, ngx_uint_t *answered)
{
    u_char                        *base, *name;
    size_t                         off;
    uint32_t                       now;
    ngx_uint_t                     i, n, idx, tries, cls;
    ngx_tce_group_counters_t      *c;
    ngx_http_upstream_state_t     *st;
    ngx_tce_instance_counters_t   *ic;
    ngx_http_tce_metrics_peer_t   *pm;
    ngx_http_tce_upstream_view_t  *view;

    *answered = 0;

    if (r->upstream_states == NULL || r->upstream_states->nelts == 0) {
        return;
    }

    c = &g->c;
    now = (uint32_t) ngx_time();
    st = r->upstream_states->elts;
    n = r->upstream_states->nelts;
    view = pd->view;
    tries = 0;

    for (i = 0; i < n; i++) {

        /* the final answer is the last state's */
        *answered = (st[i].header_time != (ngx_msec_t) -1);

        /*
         * Only states whose peer is an instance of the view are
         * attempts; nginx also records one when the balancer has no
         * instance left to offer (pc->name is then the service's).
         */

        if (view == NULL || view->npeers == 0 || st[i].peer == NULL) {
            continue;
        }

        base = (u_char *) &view->peers[0].name;
        name = (u_char *) st[i].peer;

        if (name < base) {
            continue;
        }

        off = name - base;
        idx = off / sizeof(ngx_http_tce_upstream_peer_t);

        if (idx >= view->npeers
            || off % sizeof(ngx_http_tce_upstream_peer_t) != 0)
        {
            continue;
        }

        tries++;

        if (!*answered && st[i].status) {
            if (st[i].connect_time == (ngx_msec_t) -1) {
                ngx_http_tce_metrics_add(&c->connect_failures, 1);
            }

            if (st[i].status == NGX_HTTP_GATEWAY_TIME_OUT) {
                ngx_http_tce_metrics_add(&c->timeouts, 1);
            }
        }

        if (st[i].response_time != (ngx_msec_t) -1) {
            ngx_http_tce_metrics_add(&c->upstream_time.bucket[
                ngx_tce_histogram_bucket(st[i].response_time)], 1);
            ngx_http_tce_metrics_add(&c->upstream_time.sum_ms,
                                     st[i].response_time);
        }

        pm = view->peers[idx].metrics;

        if (pm == NULL) {
            ngx_http_tce_metrics_add(&sh->dropped, 1);
            continue;
        }

        ic = &pm->c;
        cls = ngx_tce_prom_class(st[i].status);

        ngx_http_tce_metrics_add(&ic->requests[cls], 1);

        /* the recent window: rate, errors (5xx, nginx's 502/504 of a
         * failed attempt included), time spent (in-flight average) */
        ngx_http_tce_metrics_window_add(ic->window.requests, now, 1);

        if (cls == 4) {
            ngx_http_tce_metrics_window_add(ic->window.errors, now, 1);
        }

        if (st[i].response_time != (ngx_msec_t) -1) {
            ngx_http_tce_metrics_add(&ic->time_sum_ms, st[i].response_time);
            ngx_http_tce_metrics_add(&ic->time_count, 1);
            ngx_http_tce_metrics_window_add(ic->window.busy_ms, now,
                                            (uint32_t) st[i].response_time);
        }
    }

    if (tries > 1) {
        ngx_http_tce_metrics_add(&c->retries, tries - 1);
    }
}


static ngx_int_t
ngx_http_tce_metrics_handler(ngx_http_request_t *r)
{
    unsigned                           format;
    ngx_int_t                          rc;
    ngx_buf_t                         *b;
    ngx_chain_t                        out;
    ngx_tce_buf_t                     *text;
    ngx_pool_cleanup_t                *cln;
    ngx_tce_prom_snapshot_t            s;
    ngx_http_tce_metrics_main_conf_t  *mmcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    mmcf = ngx_http_get_module_main_conf(r, ngx_http_tce_metrics_module);

    if (mmcf->sh == NULL) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    format = ngx_http_tce_metrics_format(r);

    ngx_memzero(&s, sizeof(ngx_tce_prom_snapshot_t));

    if (ngx_http_tce_metrics_snapshot(mmcf->zone, mmcf->sh, &s, r->pool)
        != NGX_OK
        || ngx_tce_persist_prom(mmcf->zone, &s, r->pool) != NGX_OK
        || ngx_tce_redis_prom(mmcf->zone, &s, r->pool) != NGX_OK
        || ngx_http_tce_metrics_scale_snapshot(mmcf->zone, &s, r->pool)
           != NGX_OK
        || ngx_tce_diff_prom(mmcf->zone, &s, r->pool) != NGX_OK
        || ngx_http_tce_upstream_policy_prom(mmcf->zone, &s, r->pool)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_tce_admin_webhook_prom(&s.webhook);

    s.zone_name = (char *) ngx_pnalloc(r->pool,
                                    mmcf->zone->shm_zone->shm.name.len + 1);
    if (s.zone_name == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy((char *) s.zone_name, mmcf->zone->shm_zone->shm.name.data,
               mmcf->zone->shm_zone->shm.name.len);
    ((char *) s.zone_name)[mmcf->zone->shm_zone->shm.name.len] = '\0';

    s.version = NGX_HTTP_TCE_METRICS_VERSION;
    s.server_version = NGINX_VERSION;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_tce_buf_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    text = cln->data;
    ngx_memzero(text, sizeof(ngx_tce_buf_t));
    cln->handler = ngx_http_tce_metrics_free_buf;

    if (ngx_tce_prom_render(&s, format, text) != 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tce metrics: no memory to render the metrics");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = (u_char *) text->data;
    b->last = b->pos + text->len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = text->len;
    r->headers_out.content_type.data =
                              (u_char *) ngx_tce_prom_content_type(format);
    r->headers_out.content_type.len =
                              ngx_strlen(r->headers_out.content_type.data);
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static unsigned
ngx_http_tce_metrics_format(ngx_http_request_t *r)
{
    ngx_str_t  value;

    if (ngx_http_arg(r, (u_char *) "format", 6, &value) == NGX_OK) {
        if (value.len == 4 && ngx_strncmp(value.data, "json", 4) == 0) {
            return NGX_TCE_PROM_JSON;
        }

        if (value.len == 11
            && ngx_strncmp(value.data, "openmetrics", 11) == 0)
        {
            return NGX_TCE_PROM_OPENMETRICS;
        }
    }

#if (NGX_HTTP_HEADERS)
    if (r->headers_in.accept) {
        return ngx_tce_prom_negotiate(
                              (char *) r->headers_in.accept->value.data,
                              r->headers_in.accept->value.len);
    }
#endif

    return NGX_TCE_PROM_TEXT;
}


static void
ngx_http_tce_metrics_free_buf(void *data)
{
    ngx_tce_buf_free(data);
}
