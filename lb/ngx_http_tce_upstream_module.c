/*
 * ngx_http_tce_upstream_module: an upstream{} whose peers are the
 * registry's instances of one service.
 *
 *   upstream backend {
 *       tce_service demo.web.api [cluster=<name|$var>] [max_fails=1]
 *                   [fail_timeout=10s] [slow_start=30s]
 *                   [discovery=state|consul];
 *       tce_scale_target [rps=<n>] [inflight=<n>];
 *       keepalive 32;         (or tce_keepalive 32;)
 *   }
 *
 * The balancer hook shape is nginx's own: init_upstream -> init_peer ->
 * get/free.  A pick is one read of the group's precomputed schedule.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_upstream.h"
#include "ngx_http_tce_metrics.h"


static void *ngx_http_tce_upstream_create_srv_conf(ngx_conf_t *cf);
static char *ngx_http_tce_upstream_service(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_tce_upstream_scale_target(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_tce_upstream_init(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_tce_upstream_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_tce_upstream_get_peer(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_tce_upstream_free_peer(ngx_peer_connection_t *pc,
    void *data, ngx_uint_t state);
static ngx_http_tce_upstream_peer_t *ngx_http_tce_upstream_pick(
    ngx_http_tce_upstream_peer_data_t *pd);
static ngx_uint_t ngx_http_tce_upstream_usable(
    ngx_http_tce_upstream_peer_data_t *pd, uint32_t idx, time_t now);
static ngx_uint_t ngx_http_tce_upstream_stale(ngx_peer_connection_t *pc,
    ngx_http_tce_upstream_peer_data_t *pd);
static ngx_int_t ngx_http_tce_upstream_unavailable(
    ngx_http_tce_upstream_peer_data_t *pd);
static void ngx_http_tce_upstream_cleanup(void *data);
static ngx_int_t ngx_http_tce_upstream_init_process(ngx_cycle_t *cycle);
static void ngx_http_tce_upstream_sweep(ngx_event_t *ev);
static void ngx_http_tce_upstream_exit(void *data);
static ngx_int_t ngx_http_tce_upstream_preconf(ngx_conf_t *cf);
static ngx_int_t ngx_http_tce_upstream_postconf(ngx_conf_t *cf);


#define NGX_HTTP_TCE_UPSTREAM_METHODS                                       \
    "a load balancing method (\"hash\", \"ip_hash\", \"least_conn\", "     \
    "\"random\")"


static ngx_command_t  ngx_http_tce_upstream_commands[] = {

    { ngx_string("tce_service"),
      NGX_HTTP_UPS_CONF|NGX_CONF_1MORE,
      ngx_http_tce_upstream_service,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tce_canary"),
      NGX_HTTP_UPS_CONF|NGX_CONF_ANY,
      ngx_http_tce_upstream_canary,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tce_keepalive"),
      NGX_HTTP_UPS_CONF|NGX_CONF_TAKE123,
      ngx_http_tce_upstream_keepalive,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tce_scale_target"),
      NGX_HTTP_UPS_CONF|NGX_CONF_TAKE12,
      ngx_http_tce_upstream_scale_target,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tce_canary_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tce_upstream_loc_conf_t, canary_header),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_tce_upstream_module_ctx = {
    ngx_http_tce_upstream_preconf,         /* preconfiguration */
    ngx_http_tce_upstream_postconf,        /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_http_tce_upstream_create_srv_conf, /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_tce_upstream_create_loc_conf, /* create location configuration */
    ngx_http_tce_upstream_merge_loc_conf   /* merge location configuration */
};


ngx_module_t  ngx_http_tce_upstream_module = {
    NGX_MODULE_V1,
    &ngx_http_tce_upstream_module_ctx,     /* module context */
    ngx_http_tce_upstream_commands,        /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_tce_upstream_init_process,    /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* tce_service $var: idle entries of departed services dropped */
static ngx_event_t  ngx_http_tce_upstream_sweep_event;


static ngx_int_t
ngx_http_tce_upstream_preconf(ngx_conf_t *cf)
{
    return ngx_http_tce_upstream_add_variables(cf);
}


/*
 * A balancing method given after tce_service replaced its init: nginx
 * ran the method's (on the placeholder's address) instead of ours.
 * Said here, since nginx itself only warns "load balancing method
 * redefined".
 */
static ngx_int_t
ngx_http_tce_upstream_postconf(ngx_conf_t *cf)
{
    ngx_uint_t                          i;
    ngx_http_upstream_srv_conf_t      **uscfp;
    ngx_http_upstream_main_conf_t      *umcf;
    ngx_http_tce_upstream_srv_conf_t   *ucf;

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);
    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {
        if (uscfp[i]->srv_conf == NULL) {
            continue;
        }

        ucf = ngx_http_conf_upstream_srv_conf(uscfp[i],
                                              ngx_http_tce_upstream_module);

        if (ucf->service_name.data == NULL || ucf->inited) {
            continue;
        }

        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      NGX_HTTP_TCE_UPSTREAM_METHODS " cannot be combined "
                      "with \"tce_service\" in upstream \"%V\" in %s:%ui",
                      &uscfp[i]->host, uscfp[i]->file_name, uscfp[i]->line);
        return NGX_ERROR;
    }

    return ngx_http_tce_upstream_canary_init(cf);
}


static void *
ngx_http_tce_upstream_create_srv_conf(ngx_conf_t *cf)
{
    ngx_http_tce_upstream_srv_conf_t  *ucf;

    ucf = ngx_pcalloc(cf->pool, sizeof(ngx_http_tce_upstream_srv_conf_t));
    if (ucf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     ucf->service_name = { 0, NULL };
     *     ucf->service = NULL;
     *     ucf->cluster = NULL;
     *     ucf->view = NULL;
     */

    ucf->max_fails = NGX_CONF_UNSET_UINT;
    ucf->fail_timeout = NGX_CONF_UNSET;

    return ucf;
}


static char *
ngx_http_tce_upstream_service(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_tce_upstream_srv_conf_t *ucf = conf;

    time_t                             timeout;
    ngx_int_t                          n;
    ngx_msec_t                         ms;
    ngx_str_t                         *value, s;
    ngx_uint_t                         i, state_only;
    struct sockaddr_in                *sin;
    ngx_http_upstream_server_t        *us;
    ngx_http_upstream_srv_conf_t      *uscf;

    if (ucf->service_name.data) {
        return "is duplicate";
    }

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    if (uscf->servers && uscf->servers->nelts) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tce_service\" cannot be combined with "
                           "\"server\" in one upstream");
        return NGX_CONF_ERROR;
    }

    if (uscf->peer.init_upstream) {
        /* nginx's keepalive and the methods leave no trace of which */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           NGX_HTTP_TCE_UPSTREAM_METHODS " cannot be "
                           "combined with \"tce_service\" in upstream "
                           "\"%V\", and \"keepalive\" must come after "
                           "\"tce_service\"", &uscf->host);
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    if (ngx_http_script_variables_count(&value[1])) {
        /* one upstream for every service: ngx_http_tce_upstream_byname.c */
        ucf->service_cv = ngx_http_tce_upstream_complex(cf, &value[1]);
        if (ucf->service_cv == NULL) {
            return NGX_CONF_ERROR;
        }

    } else if (!ngx_tce_service_name_valid((char *) value[1].data,
                                           value[1].len))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid service name \"%V\" in "
                           "\"tce_service\": expected "
                           "product.subsystem.module of [a-z0-9_-]",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    ucf->log_limit = ngx_pcalloc(cf->pool,
                                 sizeof(ngx_http_tce_upstream_log_limit_t));
    if (ucf->log_limit == NULL) {
        return NGX_CONF_ERROR;
    }

    ucf->service_name = value[1];
    ngx_str_set(&ucf->cluster_name, NGX_TCE_DEFAULT_CLUSTER);
    state_only = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "cluster=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            if (ngx_http_script_variables_count(&s)) {
                ucf->cluster = ngx_http_tce_upstream_complex(cf, &s);
                if (ucf->cluster == NULL) {
                    return NGX_CONF_ERROR;
                }

                continue;
            }

            if (!ngx_tce_cluster_name_valid((char *) s.data, s.len)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in \"tce_service\": "
                                   "a cluster name is [A-Za-z0-9_.-]{1,63}",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            ucf->cluster_name = s;
            continue;
        }

        if (ngx_strncmp(value[i].data, "discovery=", 10) == 0) {
            s.data = value[i].data + 10;
            s.len = value[i].len - 10;

            if (s.len == 5 && ngx_strncmp(s.data, "state", 5) == 0) {
                state_only = 1;

            } else if (s.len == 6 && ngx_strncmp(s.data, "consul", 6) == 0)
            {
                state_only = 0;

            } else {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in \"tce_service\": "
                                   "\"discovery=state\" (the state file "
                                   "only, never watched in Consul) or "
                                   "\"discovery=consul\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "max_fails=", 10) == 0) {
            n = ngx_atoi(value[i].data + 10, value[i].len - 10);

            if (n == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in \"tce_service\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            ucf->max_fails = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "slow_start=", 11) == 0) {
            s.data = value[i].data + 11;
            s.len = value[i].len - 11;

            ms = ngx_parse_time(&s, 0);

            if (ms == (ngx_msec_t) NGX_ERROR || ms > 3600000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in \"tce_service\": "
                                   "a time up to 1h", &value[i]);
                return NGX_CONF_ERROR;
            }

            ucf->slow_start = ms;
            continue;
        }

        if (ngx_strncmp(value[i].data, "fail_timeout=", 13) == 0) {
            s.data = value[i].data + 13;
            s.len = value[i].len - 13;

            timeout = ngx_parse_time(&s, 1);

            if (timeout == (time_t) NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in \"tce_service\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            ucf->fail_timeout = timeout;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"tce_service\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_uint_value(ucf->max_fails, 1);
    ngx_conf_init_value(ucf->fail_timeout, 10);

    if (ucf->service_cv && state_only) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"discovery=state\" needs a service name in "
                           "\"tce_service\", not a variable");
        return NGX_CONF_ERROR;
    }

    if (ucf->cluster) {
        ngx_str_null(&s);

    } else {
        s = ucf->cluster_name;
    }

    if (ucf->service_cv == NULL
        && ngx_tce_add_service_ref(cf, &ucf->service_name, &s, state_only,
                                   &ucf->service)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    /*
     * nginx refuses an upstream{} without servers: one placeholder
     * entry, with no address, stands for the registry's instances.
     */

    if (uscf->servers == NULL) {
        uscf->servers = ngx_array_create(cf->pool, 1,
                                         sizeof(ngx_http_upstream_server_t));
        if (uscf->servers == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    us = ngx_array_push(uscf->servers);
    if (us == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(us, sizeof(ngx_http_upstream_server_t));
    us->name = ucf->service_name;

    /*
     * An address that is never connected to: a balancing method given
     * after tce_service takes the upstream over, and nginx's round robin
     * under it would stop nginx -t with "no servers in upstream" before
     * ngx_http_tce_upstream_postconf() could say what is wrong.
     */

    us->addrs = ngx_pcalloc(cf->pool, sizeof(ngx_addr_t));
    sin = ngx_pcalloc(cf->pool, sizeof(struct sockaddr_in));
    if (us->addrs == NULL || sin == NULL) {
        return NGX_CONF_ERROR;
    }

    sin->sin_family = AF_INET;
    us->addrs->sockaddr = (struct sockaddr *) sin;
    us->addrs->socklen = sizeof(struct sockaddr_in);
    us->addrs->name = ucf->service_name;
    us->naddrs = 1;

    ucf->placeholder = us;
    uscf->peer.init_upstream = ngx_http_tce_upstream_init;

    return NGX_CONF_OK;
}


/*
 * tce_scale_target [rps=<n>] [inflight=<n>]: the per-instance request
 * rate and in-flight average an env should run at; the admin API's
 * .../scale and the gauge tce_scale_desired_instances say how many
 * instances that takes (admin/ngx_http_tce_admin_scale.c).
 */
static char *
ngx_http_tce_upstream_scale_target(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_tce_upstream_srv_conf_t *ucf = conf;

    char        *rv;
    ngx_int_t    v;
    ngx_str_t   *value, s;
    ngx_uint_t   i, *target;

    if (ucf->scale_rps || ucf->scale_inflight) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "rps=", 4) == 0) {
            s.data = value[i].data + 4;
            s.len = value[i].len - 4;
            target = &ucf->scale_rps;

        } else if (ngx_strncmp(value[i].data, "inflight=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;
            target = &ucf->scale_inflight;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in "
                               "\"tce_scale_target\": rps=<n> or "
                               "inflight=<n>", &value[i]);
            return NGX_CONF_ERROR;
        }

        /* up to 3 decimals, kept in 1/1000 */
        v = ngx_atofp(s.data, s.len, 3);

        if (v == NGX_ERROR || v == 0 || v > 1000000000 || *target) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"%V\" in \"tce_scale_target\": "
                               "a number above 0 with up to 3 decimals, "
                               "once each", &value[i]);
            return NGX_CONF_ERROR;
        }

        *target = (ngx_uint_t) v;
    }

    /* the targets are compared with the instances' recent figures */
    rv = ngx_http_tce_metrics_enable(cf);

    return rv;
}


static ngx_int_t
ngx_http_tce_upstream_init(ngx_conf_t *cf, ngx_http_upstream_srv_conf_t *us)
{
    ngx_pool_cleanup_t                *cln;
    ngx_tce_main_conf_t               *tmcf;
    ngx_http_tce_upstream_srv_conf_t  *ucf;

    ucf = ngx_http_conf_upstream_srv_conf(us, ngx_http_tce_upstream_module);
    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_tce_module);

    if (us->servers->nelts != 1 || us->servers->elts != ucf->placeholder) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "upstream \"%V\" has both \"tce_service\" and "
                      "\"server\" in %s:%ui",
                      &us->host, us->file_name, us->line);
        return NGX_ERROR;
    }

#if (NGX_HTTP_UPSTREAM_ZONE)
    if (us->shm_zone) {
        /* nginx's zone copies round robin peers: there are none here */
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"zone\" cannot be combined with \"tce_service\" "
                      "in upstream \"%V\" in %s:%ui: the instances live "
                      "in \"tce_zone\"",
                      &us->host, us->file_name, us->line);
        return NGX_ERROR;
    }
#endif

    if (tmcf->zone == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"tce_service\" in upstream \"%V\" needs a "
                      "\"tce_zone\" in http{}, in %s:%ui",
                      &us->host, us->file_name, us->line);
        return NGX_ERROR;
    }

    if (ucf->keepalive) {
        /* nginx's keepalive wraps this init: its cache would sit on top */
        if (us->peer.init_upstream != ngx_http_tce_upstream_init) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"tce_keepalive\" cannot be combined with "
                          "\"keepalive\" in upstream \"%V\" in %s:%ui",
                          &us->host, us->file_name, us->line);
            return NGX_ERROR;
        }

        if (ngx_http_tce_upstream_keepalive_init(cf, ucf->keepalive)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    /* a worker's last view goes with the cycle */
    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_tce_upstream_exit;
    cln->data = ucf;

    ucf->zone = tmcf->zone;
    ucf->inited = 1;
    us->peer.init = ngx_http_tce_upstream_init_peer;

    return NGX_OK;
}


static ngx_int_t
ngx_http_tce_upstream_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_pool_cleanup_t                 *cln;
    ngx_http_tce_upstream_view_t       *view;
    ngx_http_tce_upstream_srv_conf_t   *ucf, *bound;
    ngx_http_tce_upstream_peer_data_t  *pd;

    ucf = ngx_http_conf_upstream_srv_conf(us, ngx_http_tce_upstream_module);

    if (ucf->service_cv) {
        bound = ngx_http_tce_upstream_byname(r, ucf);

        /* not in the registry: no view, the 503 path */
        ucf = bound ? bound : ucf;
    }

    pd = ngx_pcalloc(r->pool, sizeof(ngx_http_tce_upstream_peer_data_t));
    if (pd == NULL) {
        return NGX_ERROR;
    }

    pd->request = r;
    pd->conf = ucf;
    pd->env = NGX_TCE_ENV_PROD;

    view = ucf->service ? ngx_http_tce_upstream_view_get(ucf,
                                                         r->connection->log)
                        : NULL;

    if (view) {
        /* the view stays valid for this request whatever happens to it */
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        view->refs++;
        cln->handler = ngx_http_tce_upstream_cleanup;
        cln->data = view;
        pd->view = view;
    }

    if (ucf->cluster) {
        if (ngx_http_complex_value(r, ucf->cluster, &pd->cluster_name)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (view) {
            pd->cluster = ngx_http_tce_upstream_view_cluster(view,
                                                          &pd->cluster_name);
        }

    } else {
        pd->cluster_name = ucf->cluster_name;
        pd->cluster = view ? view->static_cluster : NULL;
    }

    if (pd->cluster
        && ngx_http_tce_upstream_canary_choose(r, pd) != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->upstream->peer.data = pd;
    r->upstream->peer.get = ngx_http_tce_upstream_get_peer;
    r->upstream->peer.free = ngx_http_tce_upstream_free_peer;
#if (NGX_HTTP_SSL)
    r->upstream->peer.set_session = ngx_http_tce_upstream_set_session;
    r->upstream->peer.save_session = ngx_http_tce_upstream_save_session;
#endif
    r->upstream->peer.tries = (pd->group && pd->group->nmembers)
                              ? pd->group->nmembers + pd->spare : 1;

    ngx_http_set_ctx(r, pd, ngx_http_tce_upstream_module);

    return NGX_OK;
}


static ngx_int_t
ngx_http_tce_upstream_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_tce_upstream_peer_data_t  *pd = data;

    ngx_http_tce_upstream_peer_t  *peer;

    pc->cached = 0;
    pc->connection = NULL;

    if (pd->group == NULL || pd->group->nmembers == 0) {
        if (pd->ntried == 0) {
            return ngx_http_tce_upstream_unavailable(pd);
        }

        return NGX_BUSY;
    }

    if (pd->again) {
        peer = pd->again;
        pd->again = NULL;

    } else {
        peer = ngx_http_tce_upstream_pick(pd);

        if (peer == NULL && ngx_http_tce_upstream_canary_fallback(pd)) {
            peer = ngx_http_tce_upstream_pick(pd);
        }
    }

    if (peer == NULL) {
        ngx_http_tce_upstream_log_tried(pd, pc->log, NGX_ERROR);
        pc->name = &pd->conf->service_name;
        return NGX_BUSY;
    }

    pd->current = peer;
    pd->last = peer;

    ngx_http_tce_metrics_attempt(pd->group, peer, 1);

    pc->sockaddr = &peer->inst.sockaddr.sa;
    pc->socklen = peer->inst.socklen;
    pc->name = &peer->name;

    if (pd->conf->keepalive && !ngx_queue_empty(&peer->idle)) {
        return ngx_http_tce_upstream_keepalive_get(pc, peer);
    }

    return NGX_OK;
}


/*
 * The next usable instance of the group's schedule.  Usually the very
 * next entry; instances failing (max_fails) or already tried for this
 * request are skipped.  After a bounded number of skips the group's
 * members are scanned once, so that a mostly failed group costs O(n)
 * only while it is failing.
 */
static ngx_http_tce_upstream_peer_t *
ngx_http_tce_upstream_pick(ngx_http_tce_upstream_peer_data_t *pd)
{
    time_t                          now;
    uint32_t                        idx;
    ngx_uint_t                      i, n;
    ngx_http_tce_upstream_peer_t   *peer;
    ngx_http_tce_upstream_group_t  *g;

    g = pd->group;
    now = ngx_time();

    n = ngx_min(g->len, 16);

    for (i = 0; i < n; i++) {
        idx = g->map[g->chunks[g->pos >> NGX_TCE_SCHED_CHUNK_SHIFT]
                              [g->pos & (NGX_TCE_SCHED_CHUNK - 1)]];

        if (++g->pos == g->len) {
            g->pos = 0;
        }

        if (idx == NGX_HTTP_TCE_UPSTREAM_GONE
            || !ngx_http_tce_upstream_usable(pd, idx, now))
        {
            continue;
        }

        peer = &pd->view->peers[idx];

        /* slow_start: a ramping instance takes only part of its entries */
        if (peer->ss_start
            && !ngx_http_tce_upstream_ramp_admit(pd->conf, peer))
        {
            continue;
        }

        return peer;
    }

    for (i = 0; i < g->nmembers; i++) {
        idx = g->members[g->scan];

        if (++g->scan == g->nmembers) {
            g->scan = 0;
        }

        if (ngx_http_tce_upstream_usable(pd, idx, now)) {
            return &pd->view->peers[idx];
        }
    }

    return NULL;
}


static ngx_uint_t
ngx_http_tce_upstream_usable(ngx_http_tce_upstream_peer_data_t *pd,
    uint32_t idx, time_t now)
{
    uintptr_t                      m;
    ngx_http_tce_upstream_peer_t  *peer;

    if (pd->ntried) {
        m = (uintptr_t) 1 << (idx % (8 * sizeof(uintptr_t)));

        if (pd->tried[idx / (8 * sizeof(uintptr_t))] & m) {
            return 0;
        }
    }

    peer = &pd->view->peers[idx];

    if (pd->conf->max_fails
        && peer->fails >= pd->conf->max_fails
        && pd->group->nmembers > 1)
    {
        if (now - peer->checked <= pd->conf->fail_timeout) {
            return 0;
        }

        /* fail_timeout passed: let this request probe it */
        peer->checked = now;
    }

    return 1;
}


static void
ngx_http_tce_upstream_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_tce_upstream_peer_data_t  *pd = data;

    size_t                         n;
    time_t                         now;
    ngx_uint_t                     idx;
    ngx_http_tce_upstream_peer_t  *peer;

    peer = pd->current;

    if (peer == NULL) {
        return;
    }

    pd->current = NULL;

    ngx_http_tce_metrics_attempt(pd->group, peer, -1);

    if ((state & NGX_PEER_FAILED) && ngx_http_tce_upstream_stale(pc, pd)) {
        /*
         * An idle connection the instance had closed meanwhile: not the
         * instance's fault.  nginx gives such a failure one more try
         * (u->peer.tries++ after this call): the same instance serves
         * it, on another connection, and the failure is not counted.
         */

        pd->again = peer;

        if (pd->conf->keepalive) {
            ngx_http_tce_upstream_keepalive_free(pc, pd, peer, state);
        }

        if (pc->tries) {
            pc->tries--;
        }

        return;
    }

    if (state & NGX_PEER_FAILED) {
        now = ngx_time();
        peer->fails++;
        peer->accessed = now;
        peer->checked = now;

    } else if (peer->accessed < peer->checked) {
        /* back from failing (a probe after fail_timeout succeeded) */
        if (pd->conf->slow_start && pd->conf->max_fails
            && peer->fails >= pd->conf->max_fails
            && pd->group && pd->group->nmembers > 1)
        {
            peer->ss_start = ngx_http_tce_upstream_now_ms();
            peer->ss_credit = 0;
        }

        peer->fails = 0;
    }

    if (pd->conf->keepalive) {
        ngx_http_tce_upstream_keepalive_free(pc, pd, peer, state);
    }

    if (pc->tries) {
        pc->tries--;
    }

    if (pc->tries == 0 || state == 0) {
        return;
    }

    /* another try may follow: remember this instance for it */

    if (pd->tried == NULL) {
        if (pd->view->npeers <= 8 * sizeof(uintptr_t)) {
            pd->tried = &pd->tried_word;

        } else {
            n = (pd->view->npeers + 8 * sizeof(uintptr_t) - 1)
                / (8 * sizeof(uintptr_t));

            pd->tried = ngx_pcalloc(pd->request->pool, n * sizeof(uintptr_t));
            if (pd->tried == NULL) {
                pc->tries = 0;
                return;
            }
        }
    }

    idx = peer - pd->view->peers;
    pd->tried[idx / (8 * sizeof(uintptr_t))]
        |= (uintptr_t) 1 << (idx % (8 * sizeof(uintptr_t)));
    pd->ntried++;
}


/*
 * A failure that only says an idle connection was stale: on a cached
 * connection, a connection error before anything of the answer came
 * (nginx's own ngx_http_upstream_next() grants one more try for a
 * cached connection and NGX_HTTP_UPSTREAM_FT_ERROR; it tells the
 * balancer nothing, so the connection's state is read here).  A
 * timeout, or anything received (a 5xx named in proxy_next_upstream,
 * an invalid header, an answer cut short), is the instance's.
 */
static ngx_uint_t
ngx_http_tce_upstream_stale(ngx_peer_connection_t *pc,
    ngx_http_tce_upstream_peer_data_t *pd)
{
    ngx_connection_t     *c;
    ngx_http_upstream_t  *u;

    c = pc->connection;
    u = pd->request->upstream;

    if (!pc->cached || c == NULL) {
        return 0;
    }

    if (c->read->timedout || c->write->timedout) {
        return 0;
    }

    /* u->state: this attempt's; bytes_received counts what it read */
    return u->state && u->state->bytes_received == 0;
}


/*
 * No instance registered for the service and cluster: answer 503.
 *
 * A balancer cannot choose the status of a request it fails: nginx
 * answers 502 whenever get() gives up.  So the request is finalized here
 * with 503, and the upstream module is made to see it as finalized
 * already (its cleanup unset, as ngx_http_upstream_finalize_request does
 * itself): it then only drops the reference taken below.
 */
static ngx_int_t
ngx_http_tce_upstream_unavailable(ngx_http_tce_upstream_peer_data_t *pd)
{
    u_char                num[NGX_INT_T_LEN + 32];
    u_char                svc[NGX_HTTP_TCE_UPSTREAM_NAME_LEN];
    u_char                cl[NGX_HTTP_TCE_UPSTREAM_NAME_LEN];
    ngx_str_t             esvc, ecl, more;
    ngx_uint_t            left_out;
    ngx_http_request_t   *r;
    ngx_http_upstream_t  *u;

    r = pd->request;
    u = r->upstream;

    /*
     * The names may come from the request (cluster=$var, tce_service
     * $var): escaped, and rate-limited.  A service not in the registry
     * was logged by ngx_http_tce_upstream_byname() already.
     */

    if (pd->conf->service
        && ngx_http_tce_upstream_log_allow(pd->conf->log_limit, &left_out))
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tce: no instance available for service \"%V\" "
                      "cluster \"%V\" env %s%V",
                      ngx_http_tce_upstream_log_name(&esvc, svc,
                                                     &pd->conf->service_name),
                      ngx_http_tce_upstream_log_name(&ecl, cl,
                                                     &pd->cluster_name),
                      ngx_tce_env_name(pd->env),
                      ngx_http_tce_upstream_log_left_out(&more, num,
                                                         left_out));
    }

    if (u->cleanup) {
        *u->cleanup = NULL;
        u->cleanup = NULL;
    }

    r->main->count++;

    ngx_http_finalize_request(r, NGX_HTTP_SERVICE_UNAVAILABLE);

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_tce_upstream_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                         i;
    ngx_http_upstream_main_conf_t     *umcf;
    ngx_http_upstream_srv_conf_t     **uscfp;
    ngx_http_tce_upstream_srv_conf_t  *ucf;

    umcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_upstream_module);
    if (umcf == NULL) {
        return NGX_OK;
    }

    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {
        if (uscfp[i]->srv_conf == NULL) {
            continue;
        }

        ucf = ngx_http_conf_upstream_srv_conf(uscfp[i],
                                              ngx_http_tce_upstream_module);

        if (ucf && (ucf->service_cv || (ucf->service && ucf->zone))) {
            ngx_http_tce_upstream_sweep_event.handler =
                                                 ngx_http_tce_upstream_sweep;
            ngx_http_tce_upstream_sweep_event.log = cycle->log;
            ngx_http_tce_upstream_sweep_event.data = umcf;
            ngx_http_tce_upstream_sweep_event.cancelable = 1;
            ngx_add_timer(&ngx_http_tce_upstream_sweep_event, 1000);
            break;
        }
    }

    return NGX_OK;
}


/*
 * Every second in each worker: the views of the tce upstreams brought up
 * to date, requests or not (a generation that did not move costs one
 * comparison), so that an idle worker's idle connections to an instance
 * removed, drained or moved close within a second rather than at its
 * next request (ngx_http_tce_upstream_carry.c); and the services of
 * tce_service $var not used for a while are let go.
 */
static void
ngx_http_tce_upstream_sweep(ngx_event_t *ev)
{
    ngx_http_upstream_main_conf_t *umcf = ev->data;

    ngx_uint_t                         i;
    ngx_http_upstream_srv_conf_t     **uscfp;
    ngx_http_tce_upstream_srv_conf_t  *ucf;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
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
            (void) ngx_http_tce_upstream_view_get(ucf, ev->log);

        } else if (ucf && ucf->service_cv) {
            ngx_http_tce_upstream_byname_sweep(ucf);
        }
    }

    ngx_add_timer(ev, 1000);
}


static void
ngx_http_tce_upstream_cleanup(void *data)
{
    ngx_http_tce_upstream_view_release(data);
}


static void
ngx_http_tce_upstream_exit(void *data)
{
    ngx_http_tce_upstream_srv_conf_t *ucf = data;

    if (ucf->view) {
        ngx_http_tce_upstream_view_release(ucf->view);
        ucf->view = NULL;
    }
}


ngx_http_complex_value_t *
ngx_http_tce_upstream_complex(ngx_conf_t *cf, ngx_str_t *value)
{
    ngx_http_compile_complex_value_t  ccv;

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = value;
    ccv.complex_value = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));

    if (ccv.complex_value == NULL
        || ngx_http_compile_complex_value(&ccv) != NGX_OK)
    {
        return NULL;
    }

    return ccv.complex_value;
}
