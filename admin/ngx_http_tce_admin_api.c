/*
 * ngx_http_tce_admin_api_module: the admin API's directives, routes and
 * answers.
 *
 *   location /api/ {
 *       tce_admin;
 *       tce_admin_token_file conf/admin.tokens;
 *       tce_admin_read_auth off;
 *   }
 *
 * answers /api/ (the versions) and /api/v1/... (the routes below).
 * Every answer, errors too, is JSON with X-Request-Id ($request_id);
 * errors are {"error": {"status", "code", "text"}, "request_id"}.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_admin_inst_input.h"
#include "ngx_http_tce_metrics.h"
#include "ngx_tce_text.h"


#define NGX_HTTP_TCE_ADMIN_R_ROOT      1
#define NGX_HTTP_TCE_ADMIN_R_STATUS    2
#define NGX_HTTP_TCE_ADMIN_R_SERVICES  3
#define NGX_HTTP_TCE_ADMIN_R_SERVICE   4
#define NGX_HTTP_TCE_ADMIN_R_CANARY    5
#define NGX_HTTP_TCE_ADMIN_R_SCALE     6
#define NGX_HTTP_TCE_ADMIN_R_INSTANCES 7
#define NGX_HTTP_TCE_ADMIN_R_INSTANCE  8
#define NGX_HTTP_TCE_ADMIN_R_ENV_INSTS 9
#define NGX_HTTP_TCE_ADMIN_R_DIFF      10
#define NGX_HTTP_TCE_ADMIN_R_DEPLOYS   11

#define NGX_HTTP_TCE_ADMIN_MAX_SEGS    8

#define NGX_HTTP_TCE_ADMIN_SHM_SIZE                                       \
    (8 * ngx_pagesize + sizeof(ngx_http_tce_admin_shctx_t))


/* a service held until the request ends (its pool's cleanup) */
typedef struct {
    ngx_tce_zone_t             *zone;
    ngx_tce_service_t          *svc;
} ngx_http_tce_admin_held_t;


static void *ngx_http_tce_admin_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_tce_admin_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_tce_admin_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_tce_admin(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_tce_admin_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_tce_admin_init_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_tce_admin_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_tce_admin_route(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx);
static ngx_int_t ngx_http_tce_admin_deploys_route(
    ngx_http_tce_admin_ctx_t *ctx, ngx_str_t *seg, ngx_uint_t n);
static ngx_int_t ngx_http_tce_admin_lookup(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx);
static ngx_int_t ngx_http_tce_admin_hold(ngx_http_request_t *r,
    ngx_tce_zone_t *zone, ngx_tce_service_t *svc);
static void ngx_http_tce_admin_release(void *data);
static ngx_int_t ngx_http_tce_admin_not_allowed(ngx_http_request_t *r,
    const char *allow);
static ngx_int_t ngx_http_tce_admin_content_type(ngx_http_request_t *r);
static void ngx_http_tce_admin_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_tce_admin_dispatch(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len);
static ngx_int_t ngx_http_tce_admin_header(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);


static ngx_command_t  ngx_http_tce_admin_api_commands[] = {

    { ngx_string("tce_admin"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_tce_admin,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tce_admin_token_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tce_admin_loc_conf_t, token_file),
      NULL },

    { ngx_string("tce_admin_drain_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tce_admin_loc_conf_t, drain_timeout),
      NULL },

    { ngx_string("tce_admin_read_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tce_admin_loc_conf_t, read_auth),
      NULL },

    { ngx_string("tce_admin_audit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tce_admin_audit_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_tce_admin_api_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_tce_admin_create_main_conf,   /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_tce_admin_create_loc_conf,    /* create location configuration */
    ngx_http_tce_admin_merge_loc_conf      /* merge location configuration */
};


ngx_module_t  ngx_http_tce_admin_api_module = {
    NGX_MODULE_V1,
    &ngx_http_tce_admin_api_module_ctx,    /* module context */
    ngx_http_tce_admin_api_commands,       /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_tce_admin_init_process,       /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_tce_admin_request_id = ngx_string("request_id");


static void *
ngx_http_tce_admin_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_tce_admin_main_conf_t  *amcf;

    amcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_tce_admin_main_conf_t));
    if (amcf == NULL) {
        return NULL;
    }

    amcf->request_id = NGX_ERROR;

    return amcf;
}


static void *
ngx_http_tce_admin_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_tce_admin_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_tce_admin_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->token_file = { 0, NULL };
     *     conf->tokens = NULL;
     *     conf->audit = NULL;
     */

    conf->enable = NGX_CONF_UNSET;
    conf->read_auth = NGX_CONF_UNSET;
    conf->drain_timeout = NGX_CONF_UNSET_MSEC;

    return conf;
}


static char *
ngx_http_tce_admin_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_tce_admin_loc_conf_t *prev = parent;
    ngx_http_tce_admin_loc_conf_t *conf = child;

    ngx_http_tce_admin_main_conf_t  *amcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_value(conf->read_auth, prev->read_auth, 0);
    ngx_conf_merge_msec_value(conf->drain_timeout, prev->drain_timeout,
                              30000);

    if (conf->drain_timeout > NGX_HTTP_TCE_ADMIN_DRAIN_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tce_admin_drain_timeout\" must be at most "
                           "24h");
        return NGX_CONF_ERROR;
    }
    ngx_conf_merge_str_value(conf->token_file, prev->token_file, "");

    if (conf->audit == NULL) {
        conf->audit = prev->audit;
    }

    /* the controller's events go to the first API location's audit log */
    if (conf->enable && conf->audit) {
        amcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_tce_admin_api_module);
        if (amcf->audit == NULL) {
            amcf->audit = conf->audit;
        }
    }

    if (conf->token_file.len == 0 || !conf->enable) {
        return NGX_CONF_OK;
    }

    if (prev->tokens && prev->token_file.len == conf->token_file.len
        && ngx_strncmp(prev->token_file.data, conf->token_file.data,
                       conf->token_file.len) == 0)
    {
        conf->tokens = prev->tokens;
        return NGX_CONF_OK;
    }

    return ngx_http_tce_admin_auth_load(cf, conf);
}


static char *
ngx_http_tce_admin(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tce_admin_loc_conf_t *alcf = conf;

    ngx_str_t                          name;
    ngx_tce_main_conf_t               *tmcf;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_tce_admin_main_conf_t    *amcf;
    ngx_http_tce_metrics_main_conf_t  *mmcf;

    if (alcf->enable != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_tce_module);

    if (tmcf->zone == NULL) {
        return "needs a \"tce_zone\" in http{} before it";
    }

    amcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_tce_admin_api_module);

    /* drains wait for the in-flight gauges tce_metrics keeps */
    mmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_tce_metrics_module);
    mmcf->enabled = 1;
    mmcf->zone = tmcf->zone;

    if (amcf->shm_zone == NULL) {
        ngx_str_set(&name, "tce_admin");

        amcf->shm_zone = ngx_shared_memory_add(cf, &name,
                                               NGX_HTTP_TCE_ADMIN_SHM_SIZE,
                                               &ngx_http_tce_admin_api_module);
        if (amcf->shm_zone == NULL) {
            return NGX_CONF_ERROR;
        }

        amcf->shm_zone->init = ngx_http_tce_admin_init_zone;
        amcf->tmcf = tmcf;
        amcf->shm_zone->data = amcf;

        amcf->request_id = ngx_http_get_variable_index(cf,
                                               &ngx_http_tce_admin_request_id);
        if (amcf->request_id == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }

        if (ngx_http_tce_admin_deploy_conf(cf, amcf) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    alcf->enable = 1;

    /* the reads show the instances' recent figures: count them */
    if (ngx_http_tce_metrics_enable(cf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_tce_admin_handler;

    return NGX_CONF_OK;
}


/*
 * The zone holds the state file's fingerprint as this configuration
 * loaded it (at every start and reload), and its mutex serializes the
 * API's writes across workers.
 */
static ngx_int_t
ngx_http_tce_admin_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_tce_admin_main_conf_t *oamcf = data;

    ngx_uint_t                       fresh;
    ngx_http_tce_admin_main_conf_t  *amcf;

    amcf = shm_zone->data;
    amcf->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    fresh = 0;

    if (oamcf) {
        amcf->sh = oamcf->sh;

    } else if (shm_zone->shm.exists) {
        amcf->sh = amcf->shpool->data;

    } else {
        fresh = 1;

        amcf->sh = ngx_slab_calloc(amcf->shpool,
                                   sizeof(ngx_http_tce_admin_shctx_t));
        if (amcf->sh == NULL) {
            return NGX_ERROR;
        }

        amcf->shpool->data = amcf->sh;
    }

    /* the file ngx_tce_module loaded for this configuration */
    if (amcf->tmcf->state_path.len
        && ngx_http_tce_admin_fp(&amcf->tmcf->state_path, &amcf->sh->fp)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_tce_admin_deploy_init_zone(amcf, fresh,
                                               shm_zone->shm.log);
}


static ngx_int_t
ngx_http_tce_admin_init_process(ngx_cycle_t *cycle)
{
    if (ngx_http_tce_admin_drain_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_tce_admin_deploy_init_process(cycle);
}


static ngx_int_t
ngx_http_tce_admin_handler(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_http_variable_value_t       *vv;
    ngx_http_tce_admin_ctx_t        *ctx;
    ngx_http_tce_admin_loc_conf_t   *alcf;
    ngx_http_tce_admin_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_tce_admin_api_module);
    alcf = ngx_http_get_module_loc_conf(r, ngx_http_tce_admin_api_module);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_tce_admin_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_tce_admin_api_module);

    vv = ngx_http_get_indexed_variable(r, amcf->request_id);
    if (vv && !vv->not_found) {
        ctx->request_id.data = vv->data;
        ctx->request_id.len = vv->len;
    }

    /* the dashboard's page and files, a browser sent to it */
    rc = ngx_http_tce_admin_dashboard(r);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    if (ngx_http_tce_admin_route(r, ctx) != NGX_OK) {
        return ngx_http_tce_admin_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                        "no such route");
    }

    switch (ctx->route) {

    case NGX_HTTP_TCE_ADMIN_R_CANARY:
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_PUT
                           |NGX_HTTP_DELETE)))
        {
            return ngx_http_tce_admin_not_allowed(r,
                                                  "GET, HEAD, PUT, DELETE");
        }
        break;

    case NGX_HTTP_TCE_ADMIN_R_INSTANCES:
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST))) {
            return ngx_http_tce_admin_not_allowed(r, "GET, HEAD, POST");
        }
        break;

    case NGX_HTTP_TCE_ADMIN_R_INSTANCE:
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_PATCH
                           |NGX_HTTP_DELETE)))
        {
            return ngx_http_tce_admin_not_allowed(r,
                                                  "GET, HEAD, PATCH, DELETE");
        }
        break;

    case NGX_HTTP_TCE_ADMIN_R_ENV_INSTS:
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_PUT))) {
            return ngx_http_tce_admin_not_allowed(r, "GET, HEAD, PUT");
        }
        break;

    case NGX_HTTP_TCE_ADMIN_R_DEPLOYS:
        if (ctx->action.len) {
            if (!(r->method & NGX_HTTP_POST)) {
                return ngx_http_tce_admin_not_allowed(r, "POST");
            }

        } else if (ctx->env.len) {
            if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
                return ngx_http_tce_admin_not_allowed(r, "GET, HEAD");
            }

        } else if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST)))
        {
            return ngx_http_tce_admin_not_allowed(r, "GET, HEAD, POST");
        }
        break;

    default:
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return ngx_http_tce_admin_not_allowed(r, "GET, HEAD");
        }
    }

    rc = ngx_http_tce_admin_auth(r, alcf, ctx,
                                 !(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)));
    if (rc != NGX_OK) {
        return rc == NGX_DONE ? NGX_OK : rc;
    }

    rc = ngx_http_tce_admin_lookup(r, ctx);
    if (rc != NGX_OK) {
        return rc == NGX_DONE ? NGX_OK : rc;
    }

    if (!(r->method & (NGX_HTTP_PUT|NGX_HTTP_POST|NGX_HTTP_PATCH))) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_tce_admin_dispatch(r, ctx, NULL, 0);
    }

    rc = ngx_http_tce_admin_content_type(r);
    if (rc != NGX_OK) {
        return rc == NGX_DONE ? NGX_OK : rc;
    }

    if (r->headers_in.content_length_n > NGX_HTTP_TCE_ADMIN_BODY_MAX) {
        return ngx_http_tce_admin_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                        "body_too_large",
                                        "body: more than 65536 bytes");
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r,
                                           ngx_http_tce_admin_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/*
 * The URI below the location, split at '/':
 *
 *   ""                                        the versions
 *   v1/status
 *   v1/services
 *   v1/services/<psm>
 *   v1/services/<psm>/clusters/<cluster>/canary
 *   v1/services/<psm>/clusters/<cluster>/diff
 *   v1/services/<psm>/clusters/<cluster>/envs/<env>/scale
 *   v1/services/<psm>/clusters/<cluster>/instances
 *   v1/services/<psm>/clusters/<cluster>/instances/<id>  (the id may
 *                                          hold '/', as Consul's do)
 *   v1/services/<psm>/clusters/<cluster>/envs/<env>/instances
 *   v1/services/<psm>/clusters/<cluster>/deploys
 *   v1/services/<psm>/clusters/<cluster>/deploys/current
 *   v1/services/<psm>/clusters/<cluster>/deploys/current/<action>
 */
static ngx_int_t
ngx_http_tce_admin_route(ngx_http_request_t *r, ngx_http_tce_admin_ctx_t *ctx)
{
    u_char                    *p, *end, *s;
    ngx_str_t                  seg[NGX_HTTP_TCE_ADMIN_MAX_SEGS];
    ngx_uint_t                 n;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    p = r->uri.data;
    end = r->uri.data + r->uri.len;

    if (r->uri.len >= clcf->name.len
        && ngx_strncmp(p, clcf->name.data, clcf->name.len) == 0)
    {
        p += clcf->name.len;
    }

    while (p < end && *p == '/') {
        p++;
    }

    if (p == end) {
        ctx->route = NGX_HTTP_TCE_ADMIN_R_ROOT;
        return NGX_OK;
    }

    n = 0;

    while (p < end) {
        if (n == NGX_HTTP_TCE_ADMIN_MAX_SEGS) {
            return NGX_DECLINED;
        }

        s = p;

        /* an instance's id: the rest, less one trailing slash */
        if (n == 6 && seg[5].len == 9
            && ngx_strncmp(seg[5].data, "instances", 9) == 0)
        {
            p = (end - s > 1 && end[-1] == '/') ? end - 1 : end;

        } else {
            while (p < end && *p != '/') {
                p++;
            }
        }

        seg[n].data = s;
        seg[n].len = p - s;

        if (seg[n].len == 0) {
            return NGX_DECLINED;
        }

        n++;

        /* one trailing slash is tolerated */
        if (p < end) {
            p++;
        }
    }

    if (seg[0].len != 2 || ngx_strncmp(seg[0].data, "v1", 2) != 0) {
        return NGX_DECLINED;
    }

    if (n == 2 && seg[1].len == 6
        && ngx_strncmp(seg[1].data, "status", 6) == 0)
    {
        ctx->route = NGX_HTTP_TCE_ADMIN_R_STATUS;
        return NGX_OK;
    }

    if (n < 2 || seg[1].len != 8
        || ngx_strncmp(seg[1].data, "services", 8) != 0)
    {
        return NGX_DECLINED;
    }

    if (n == 2) {
        ctx->route = NGX_HTTP_TCE_ADMIN_R_SERVICES;
        return NGX_OK;
    }

    ctx->service = seg[2];

    if (n == 3) {
        ctx->route = NGX_HTTP_TCE_ADMIN_R_SERVICE;
        return NGX_OK;
    }

    if (n == 6
        && seg[3].len == 8 && ngx_strncmp(seg[3].data, "clusters", 8) == 0
        && seg[5].len == 6 && ngx_strncmp(seg[5].data, "canary", 6) == 0)
    {
        ctx->cluster = seg[4];
        ctx->route = NGX_HTTP_TCE_ADMIN_R_CANARY;
        return NGX_OK;
    }

    if (n == 6
        && seg[3].len == 8 && ngx_strncmp(seg[3].data, "clusters", 8) == 0
        && seg[5].len == 4 && ngx_strncmp(seg[5].data, "diff", 4) == 0)
    {
        ctx->cluster = seg[4];
        ctx->route = NGX_HTTP_TCE_ADMIN_R_DIFF;
        return NGX_OK;
    }

    if (n == 8
        && seg[3].len == 8 && ngx_strncmp(seg[3].data, "clusters", 8) == 0
        && seg[5].len == 4 && ngx_strncmp(seg[5].data, "envs", 4) == 0
        && seg[7].len == 5 && ngx_strncmp(seg[7].data, "scale", 5) == 0)
    {
        ctx->cluster = seg[4];
        ctx->env = seg[6];
        ctx->route = NGX_HTTP_TCE_ADMIN_R_SCALE;
        return NGX_OK;
    }

    if (n < 6
        || seg[3].len != 8 || ngx_strncmp(seg[3].data, "clusters", 8) != 0)
    {
        return NGX_DECLINED;
    }

    ctx->cluster = seg[4];

    if ((n == 6 || n == 7)
        && seg[5].len == 9 && ngx_strncmp(seg[5].data, "instances", 9) == 0)
    {
        ctx->route = NGX_HTTP_TCE_ADMIN_R_INSTANCES;

        if (n == 7) {
            ctx->instance = seg[6];
            ctx->route = NGX_HTTP_TCE_ADMIN_R_INSTANCE;
        }

        return NGX_OK;
    }

    if (n == 8
        && seg[5].len == 4 && ngx_strncmp(seg[5].data, "envs", 4) == 0
        && seg[7].len == 9 && ngx_strncmp(seg[7].data, "instances", 9) == 0)
    {
        ctx->env = seg[6];
        ctx->route = NGX_HTTP_TCE_ADMIN_R_ENV_INSTS;
        return NGX_OK;
    }

    if (seg[5].len == 7 && ngx_strncmp(seg[5].data, "deploys", 7) == 0
        && ngx_http_tce_admin_deploys_route(ctx, &seg[6], n - 6) == NGX_OK)
    {
        return NGX_OK;
    }

    ctx->cluster.len = 0;

    return NGX_DECLINED;
}


/* below .../deploys: nothing, "current", "current/<action>" */
static ngx_int_t
ngx_http_tce_admin_deploys_route(ngx_http_tce_admin_ctx_t *ctx,
    ngx_str_t *seg, ngx_uint_t n)
{
    ngx_uint_t  i;

    static ngx_str_t  actions[] = {
        ngx_string("promote"), ngx_string("rollback"), ngx_string("pause"),
        ngx_string("resume")
    };

    if (n > 2
        || (n >= 1
            && (seg[0].len != 7
                || ngx_strncmp(seg[0].data, "current", 7) != 0)))
    {
        return NGX_DECLINED;
    }

    if (n == 2) {
        for (i = 0; i < sizeof(actions) / sizeof(ngx_str_t); i++) {
            if (seg[1].len == actions[i].len
                && ngx_strncmp(seg[1].data, actions[i].data, seg[1].len)
                   == 0)
            {
                break;
            }
        }

        if (i == sizeof(actions) / sizeof(ngx_str_t)) {
            return NGX_DECLINED;
        }

        ctx->action = seg[1];
    }

    if (n >= 1) {
        ctx->env = seg[0];      /* "current" */
    }

    ctx->route = NGX_HTTP_TCE_ADMIN_R_DEPLOYS;

    return NGX_OK;
}


/* the service and cluster of the route: 400 for a bad name, 404 */
/* the service stays in the zone until the request ends */

static ngx_int_t
ngx_http_tce_admin_hold(ngx_http_request_t *r, ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc)
{
    ngx_pool_cleanup_t         *cln;
    ngx_http_tce_admin_held_t  *held;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_tce_admin_held_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    if (ngx_tce_zone_hold(zone, svc) != NGX_OK) {
        return NGX_DECLINED;
    }

    held = cln->data;
    held->zone = zone;
    held->svc = svc;
    cln->handler = ngx_http_tce_admin_release;

    return NGX_OK;
}


static void
ngx_http_tce_admin_release(void *data)
{
    ngx_http_tce_admin_held_t *held = data;

    ngx_tce_zone_release(held->zone, held->svc);
}


static ngx_int_t
ngx_http_tce_admin_lookup(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx)
{
    char                  quoted[NGX_TCE_SERVICE_LEN + 16];
    u_char                text[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    ngx_tce_main_conf_t  *tmcf;

    if (ctx->service.len == 0) {
        return NGX_OK;
    }

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    (void) ngx_tce_text_escape(quoted, sizeof(quoted),
                               (char *) ctx->service.data,
                               ngx_min(ctx->service.len, 100));

    if (!ngx_tce_service_name_valid((char *) ctx->service.data,
                                    ctx->service.len))
    {
        ngx_snprintf(text, sizeof(text) - 1,
                     "service \"%s\": not a P.S.M name "
                     "(product.subsystem.module of [a-z0-9_-])%Z", quoted);
        return ngx_http_tce_admin_refuse(r, NGX_HTTP_BAD_REQUEST, "bad_name",
                                        (char *) text);
    }

    ctx->svc = ngx_tce_zone_service(tmcf->zone, ctx->service.data,
                                    ctx->service.len, 0);

    /* the request may wait (thread pool, Redis): held till it ends */
    if (ctx->svc != NULL
        && ngx_http_tce_admin_hold(r, tmcf->zone, ctx->svc) != NGX_OK)
    {
        ctx->svc = NULL;
    }

    if (ctx->svc == NULL) {
        ngx_snprintf(text, sizeof(text) - 1, "no service \"%s\"%Z", quoted);
        return ngx_http_tce_admin_refuse(r, NGX_HTTP_NOT_FOUND,
                                        "unknown_service", (char *) text);
    }

    if (ctx->cluster.len == 0) {
        return NGX_OK;
    }

    (void) ngx_tce_text_escape(quoted, sizeof(quoted),
                               (char *) ctx->cluster.data,
                               ngx_min(ctx->cluster.len, 100));

    if (!ngx_tce_cluster_name_valid((char *) ctx->cluster.data,
                                    ctx->cluster.len))
    {
        ngx_snprintf(text, sizeof(text) - 1,
                     "cluster \"%s\": not a cluster name "
                     "([A-Za-z0-9_.-], 1..63)%Z", quoted);
        return ngx_http_tce_admin_refuse(r, NGX_HTTP_BAD_REQUEST, "bad_name",
                                        (char *) text);
    }

    /* an instance added (POST, PUT of a set) may open a cluster */
    if (!((ctx->route == NGX_HTTP_TCE_ADMIN_R_INSTANCES
           && (r->method & NGX_HTTP_POST))
          || (ctx->route == NGX_HTTP_TCE_ADMIN_R_ENV_INSTS
              && (r->method & NGX_HTTP_PUT)))
        && !ngx_http_tce_admin_has_cluster(tmcf->zone, ctx->svc,
                                           &ctx->cluster, r->connection->log))
    {
        ngx_snprintf(text, sizeof(text) - 1,
                     "service \"%s\" has no cluster \"%s\"%Z",
                     ctx->svc->name, quoted);
        return ngx_http_tce_admin_refuse(r, NGX_HTTP_NOT_FOUND,
                                        "unknown_cluster", (char *) text);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_tce_admin_not_allowed(ngx_http_request_t *r, const char *allow)
{
    ngx_str_t  v;

    v.data = (u_char *) allow;
    v.len = ngx_strlen(allow);

    if (ngx_http_tce_admin_header(r, "Allow", &v) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_tce_admin_error(r, NGX_HTTP_NOT_ALLOWED,
                                    "method_not_allowed",
                                    "method not allowed on this route "
                                    "(see the Allow header)");
}


/* application/json, with parameters or not */
static ngx_int_t
ngx_http_tce_admin_content_type(ngx_http_request_t *r)
{
    u_char  *p;
    size_t   len;

    if (r->headers_in.content_type) {
        p = r->headers_in.content_type->value.data;
        len = r->headers_in.content_type->value.len;

        if (len >= 16 && ngx_strncasecmp(p, (u_char *) "application/json", 16)
                         == 0
            && (len == 16 || p[16] == ';' || p[16] == ' '))
        {
            return NGX_OK;
        }
    }

    return ngx_http_tce_admin_refuse(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                    "unsupported_media_type",
                                    "the body must be JSON "
                                    "(Content-Type: application/json)");
}


static void
ngx_http_tce_admin_body_handler(ngx_http_request_t *r)
{
    u_char                    *body, *p;
    size_t                     len;
    ssize_t                    n;
    ngx_buf_t                 *b;
    ngx_int_t                  rc;
    ngx_chain_t               *cl;
    ngx_http_tce_admin_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_tce_admin_api_module);

    len = 0;

    for (cl = r->request_body ? r->request_body->bufs : NULL; cl;
         cl = cl->next)
    {
        len += ngx_buf_size(cl->buf);
    }

    if (len > NGX_HTTP_TCE_ADMIN_BODY_MAX) {
        rc = ngx_http_tce_admin_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                      "body_too_large",
                                      "body: more than 65536 bytes");
        ngx_http_finalize_request(r, rc);
        return;
    }

    body = ngx_pnalloc(r->pool, len + 1);
    if (body == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = body;

    for (cl = r->request_body ? r->request_body->bufs : NULL; cl;
         cl = cl->next)
    {
        b = cl->buf;

        if (!b->in_file || b->file == NULL) {
            if (ngx_buf_in_memory(b)) {
                p = ngx_cpymem(p, b->pos, b->last - b->pos);
            }

            continue;
        }

        n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                          b->file_pos);
        if (n != b->file_last - b->file_pos) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        p += n;
    }

    *p = '\0';

    ctx->body = body;
    ctx->body_len = p - body;

    rc = ngx_http_tce_admin_dispatch(r, ctx, body, p - body);

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_http_tce_admin_dispatch(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len)
{
    json_t  *root, *versions;

    switch (ctx->route) {

    case NGX_HTTP_TCE_ADMIN_R_ROOT:
        root = json_object();
        versions = json_array();

        if (root == NULL
            || json_object_set_new(root, "versions", versions) != 0
            || json_array_append_new(versions, json_string("v1")) != 0
            || json_object_set_new(root, "current", json_string("v1")) != 0)
        {
            json_decref(root);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_tce_admin_send(r, NGX_HTTP_OK, root);

    case NGX_HTTP_TCE_ADMIN_R_STATUS:
        return ngx_http_tce_admin_status_v1(r);

    case NGX_HTTP_TCE_ADMIN_R_SERVICES:
        return ngx_http_tce_admin_services(r);

    case NGX_HTTP_TCE_ADMIN_R_SERVICE:
        return ngx_http_tce_admin_service(r, ctx);

    case NGX_HTTP_TCE_ADMIN_R_SCALE:
        return ngx_http_tce_admin_scale(r, ctx);

    case NGX_HTTP_TCE_ADMIN_R_DIFF:
        return ngx_http_tce_admin_diff(r, ctx);

    case NGX_HTTP_TCE_ADMIN_R_INSTANCES:
    case NGX_HTTP_TCE_ADMIN_R_INSTANCE:
        return ngx_http_tce_admin_instance_op(r, ctx, body, len);

    case NGX_HTTP_TCE_ADMIN_R_ENV_INSTS:
        return ngx_http_tce_admin_desired(r, ctx, body, len);

    case NGX_HTTP_TCE_ADMIN_R_DEPLOYS:
        return ngx_http_tce_admin_deploy(r, ctx, body, len);

    default: /* NGX_HTTP_TCE_ADMIN_R_CANARY */
        return ngx_http_tce_admin_canary(r, ctx, body, len);
    }
}


static ngx_int_t
ngx_http_tce_admin_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;

    return NGX_OK;
}


ngx_int_t
ngx_http_tce_admin_etag(ngx_http_request_t *r, ngx_atomic_uint_t generation)
{
    ngx_str_t  v;

    v.data = ngx_pnalloc(r->pool, NGX_ATOMIC_T_LEN + 2);
    if (v.data == NULL) {
        return NGX_ERROR;
    }

    v.len = ngx_sprintf(v.data, "\"%uA\"", generation) - v.data;

    return ngx_http_tce_admin_header(r, "ETag", &v);
}


json_t *
ngx_http_tce_admin_jstr(const void *s, size_t len)
{
    char  buf[1024];

    if (ngx_tce_text_printable(s, len)) {
        return json_stringn(s, len);
    }

    return json_stringn(buf, ngx_tce_text_escape(buf, sizeof(buf), s, len));
}


ngx_int_t
ngx_http_tce_admin_send(ngx_http_request_t *r, ngx_uint_t status,
    json_t *json)
{
    char                      *text;
    size_t                     len;
    ngx_buf_t                 *b;
    ngx_int_t                  rc;
    ngx_str_t                  v;
    ngx_chain_t                out;
    ngx_http_tce_admin_ctx_t  *ctx;

    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

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

    ctx = ngx_http_get_module_ctx(r, ngx_http_tce_admin_api_module);

    if (ctx && ctx->request_id.len
        && ngx_http_tce_admin_header(r, "X-Request-Id", &ctx->request_id)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&v, "no-store");

    if (ngx_http_tce_admin_header(r, "Cache-Control", &v) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* If-Match is the API's own (ETag = the generation before a write) */
    r->disable_not_modified = 1;

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


ngx_int_t
ngx_http_tce_admin_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *text)
{
    json_t                    *root, *ej;
    ngx_http_tce_admin_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_tce_admin_api_module);

    /* an answer before the body was read: nginx drops the body */
    if (r->request_body == NULL
        && ngx_http_discard_request_body(r) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    root = json_object();
    if (root == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ej = json_object();

    if (json_object_set_new(root, "error", ej) != 0
        || json_object_set_new(ej, "status", json_integer(status)) != 0
        || json_object_set_new(ej, "code", json_string(code)) != 0
        || json_object_set_new(ej, "text",
                               ngx_http_tce_admin_jstr(text,
                                                       ngx_strlen(text)))
           != 0
        || json_object_set_new(root, "request_id",
                               ctx ? ngx_http_tce_admin_jstr(
                                         ctx->request_id.data,
                                         ctx->request_id.len)
                                   : json_string(""))
           != 0)
    {
        json_decref(root);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_tce_admin_send(r, status, root);
}


ngx_int_t
ngx_http_tce_admin_refuse(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *text)
{
    ngx_int_t  rc;

    rc = ngx_http_tce_admin_error(r, status, code, text);

    return rc == NGX_OK ? NGX_DONE : rc;
}
