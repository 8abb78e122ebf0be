/*
 * ngx_tce_consul_module: Consul discovery's directives (http{}) and
 * process hooks.  See ngx_tce_consul.h for the directives; the watcher
 * is in ngx_tce_consul_watch.c, the snapshot in
 * ngx_tce_consul_snapshot.c.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_tce_consul.h"
#include "ngx_tce_consul_parse.h"
#include "ngx_tce_consul_client.h"
#include "ngx_tce_persist.h"


#define NGX_TCE_CONSUL_TOKEN_MAX  4096


static void *ngx_tce_consul_create_main_conf(ngx_conf_t *cf);
static char *ngx_tce_consul_init_main_conf(ngx_conf_t *cf, void *conf);
static char *ngx_tce_consul(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_tce_consul_param(ngx_conf_t *cf,
    ngx_tce_consul_main_conf_t *cmcf, ngx_str_t *value);
static char *ngx_tce_consul_token_file(ngx_conf_t *cf,
    ngx_tce_consul_main_conf_t *cmcf, ngx_str_t *path);
static char *ngx_tce_consul_check(ngx_conf_t *cf,
    ngx_tce_consul_main_conf_t *cmcf);
static char *ngx_tce_consul_services(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_tce_consul_snapshot_conf(ngx_conf_t *cf,
    ngx_tce_consul_main_conf_t *cmcf, ngx_tce_main_conf_t *tmcf);
static ngx_int_t ngx_tce_consul_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_tce_consul_init_process(ngx_cycle_t *cycle);
static void ngx_tce_consul_exit_process(ngx_cycle_t *cycle);
static ngx_tce_consul_main_conf_t *ngx_tce_consul_get_conf(
    ngx_cycle_t *cycle);


static ngx_command_t  ngx_tce_consul_commands[] = {

    { ngx_string("tce_consul"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_tce_consul,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tce_consul_services"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_tce_consul_services,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tce_consul_snapshot"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_tce_consul_main_conf_t, snapshot),
      NULL },

    { ngx_string("tce_consul_allow_empty"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_tce_consul_main_conf_t, allow_empty),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_tce_consul_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_tce_consul_create_main_conf,       /* create main configuration */
    ngx_tce_consul_init_main_conf,         /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_tce_consul_module = {
    NGX_MODULE_V1,
    &ngx_tce_consul_module_ctx,            /* module context */
    ngx_tce_consul_commands,               /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_tce_consul_init_module,            /* init module */
    ngx_tce_consul_init_process,           /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_tce_consul_exit_process,           /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_tce_consul_create_main_conf(ngx_conf_t *cf)
{
    ngx_tce_consul_main_conf_t  *cmcf;

    cmcf = ngx_pcalloc(cf->pool, sizeof(ngx_tce_consul_main_conf_t));
    if (cmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     cmcf->urls = NULL;
     *     cmcf->token = { 0, NULL };
     *     cmcf->dc = { 0, NULL };
     *     cmcf->ca = { 0, NULL };
     *     cmcf->tag = { 0, NULL };
     *     cmcf->snapshot = { 0, NULL };
     *     cmcf->consistency = NGX_TCE_CONSUL_READ_DEFAULT;
     *     cmcf->ctx = NULL;
     */

    cmcf->wait = NGX_CONF_UNSET_MSEC;
    cmcf->timeout = NGX_CONF_UNSET_MSEC;
    cmcf->resync = NGX_CONF_UNSET_MSEC;
    cmcf->catalog = NGX_CONF_UNSET;
    cmcf->allow_empty = NGX_CONF_UNSET;

    return cmcf;
}


static char *
ngx_tce_consul_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_tce_consul_main_conf_t *cmcf = conf;

    ngx_tce_main_conf_t  *tmcf;

    ngx_conf_init_msec_value(cmcf->wait, 60000);
    ngx_conf_init_msec_value(cmcf->timeout, NGX_TCE_CONSUL_REQUEST_TIMEOUT);
    ngx_conf_init_msec_value(cmcf->resync, NGX_TCE_CONSUL_RESYNC);
    ngx_conf_init_value(cmcf->catalog, 0);
    ngx_conf_init_value(cmcf->allow_empty, 0);

    if (cmcf->urls == NULL) {
        if (cmcf->catalog || cmcf->snapshot.len) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"tce_consul_services\" and "
                               "\"tce_consul_snapshot\" need \"tce_consul\"");
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_tce_module);

    if (tmcf->zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tce_consul\" needs a \"tce_zone\"");
        return NGX_CONF_ERROR;
    }

    cmcf->zone = tmcf->zone;
    cmcf->tmcf = tmcf;

    if (ngx_tce_consul_snapshot_conf(cf, cmcf, tmcf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    return ngx_tce_consul_check(cf, cmcf);
}


static char *
ngx_tce_consul(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_tce_consul_main_conf_t *cmcf = conf;

    char        *rv, **url;
    u_char      *p;
    ngx_str_t   *value;
    ngx_uint_t   i;

    if (cmcf->urls) {
        return "is duplicate";
    }

    cmcf->urls = ngx_array_create(cf->pool, 2, sizeof(char *));
    if (cmcf->urls == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "http://", 7) == 0
            || ngx_strncmp(value[i].data, "https://", 8) == 0)
        {
            if (cmcf->urls->nelts == NGX_TCE_CONSUL_MAX_URLS) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "too many URLs in \"tce_consul\", "
                                   "at most %d", NGX_TCE_CONSUL_MAX_URLS);
                return NGX_CONF_ERROR;
            }

            url = ngx_array_push(cmcf->urls);
            p = ngx_pnalloc(cf->pool, value[i].len + 1);
            if (url == NULL || p == NULL) {
                return NGX_CONF_ERROR;
            }

            (void) ngx_cpystrn(p, value[i].data, value[i].len + 1);
            *url = (char *) p;
            continue;
        }

        rv = ngx_tce_consul_param(cf, cmcf, &value[i]);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    if (cmcf->urls->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tce_consul\" needs at least one "
                           "http:// or https:// URL");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_tce_consul_param(ngx_conf_t *cf, ngx_tce_consul_main_conf_t *cmcf,
    ngx_str_t *value)
{
    char         masked[256];
    u_char      *eq;
    ngx_str_t    name, arg, *dst;
    ngx_msec_t   ms;

    eq = ngx_strlchr(value->data, value->data + value->len, '=');

    if (eq == NULL || eq + 1 == value->data + value->len) {
        goto invalid;
    }

    name.data = value->data;
    name.len = eq - value->data;
    arg.data = eq + 1;
    arg.len = value->data + value->len - arg.data;

    if (name.len == 4 && ngx_strncmp(name.data, "wait", 4) == 0) {
        ms = ngx_parse_time(&arg, 0);

        if (ms == (ngx_msec_t) NGX_ERROR || ms < 1000
            || ms > NGX_TCE_CONSUL_WAIT_MAX_MS)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"%V\" in \"tce_consul\": "
                               "wait is 1s..10m", value);
            return NGX_CONF_ERROR;
        }

        cmcf->wait = ms;
        return NGX_CONF_OK;
    }

    if (name.len == 6 && ngx_strncmp(name.data, "resync", 6) == 0) {
        ms = ngx_parse_time(&arg, 0);

        if (ms == (ngx_msec_t) NGX_ERROR || ms < 1000 || ms > 86400000) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"%V\" in \"tce_consul\": "
                               "resync is 1s..1d", value);
            return NGX_CONF_ERROR;
        }

        cmcf->resync = ms;
        return NGX_CONF_OK;
    }

    if (name.len == 7 && ngx_strncmp(name.data, "timeout", 7) == 0) {
        ms = ngx_parse_time(&arg, 0);

        if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
            goto invalid;
        }

        cmcf->timeout = ms;
        return NGX_CONF_OK;
    }

    if (name.len == 11 && ngx_strncmp(name.data, "consistency", 11) == 0) {
        if (arg.len == 7 && ngx_strncmp(arg.data, "default", 7) == 0) {
            cmcf->consistency = NGX_TCE_CONSUL_READ_DEFAULT;

        } else if (arg.len == 5 && ngx_strncmp(arg.data, "stale", 5) == 0) {
            cmcf->consistency = NGX_TCE_CONSUL_READ_STALE;

        } else if (arg.len == 10
                   && ngx_strncmp(arg.data, "consistent", 10) == 0)
        {
            cmcf->consistency = NGX_TCE_CONSUL_READ_CONSISTENT;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"%V\" in \"tce_consul\": "
                               "consistency is default, stale or "
                               "consistent", value);
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    if (name.len == 15
        && ngx_strncmp(name.data, "token_over_http", 15) == 0)
    {
        if (arg.len == 2 && ngx_strncmp(arg.data, "on", 2) == 0) {
            cmcf->token_over_http = 1;

        } else if (arg.len == 3 && ngx_strncmp(arg.data, "off", 3) == 0) {
            cmcf->token_over_http = 0;

        } else {
            goto invalid;
        }

        return NGX_CONF_OK;
    }

    if (name.len == 10 && ngx_strncmp(name.data, "token_file", 10) == 0) {
        if (cmcf->token.data) {
            goto twice;
        }

        return ngx_tce_consul_token_file(cf, cmcf, &arg);
    }

    if (name.len == 5 && ngx_strncmp(name.data, "token", 5) == 0) {
        if (cmcf->token.data) {
            goto twice;
        }

        dst = &cmcf->token;

    } else if (name.len == 2 && ngx_strncmp(name.data, "dc", 2) == 0) {
        dst = &cmcf->dc;

    } else if (name.len == 2 && ngx_strncmp(name.data, "ca", 2) == 0) {
        if (ngx_conf_full_name(cf->cycle, &arg, 1) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        dst = &cmcf->ca;

    } else {
        goto invalid;
    }

    /* the value ends the argument: NUL-terminated already */
    *dst = arg;

    return NGX_CONF_OK;

twice:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"tce_consul\" takes one of token= and "
                       "token_file=, once");
    return NGX_CONF_ERROR;

invalid:

    /* "HTTP://user:pass@host" lands here: never print its credentials */
    (void) ngx_tce_consul_url_mask(masked, sizeof(masked),
                                   (char *) value->data);

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%s\" in \"tce_consul\"",
                       masked);
    return NGX_CONF_ERROR;
}


static char *
ngx_tce_consul_token_file(ngx_conf_t *cf, ngx_tce_consul_main_conf_t *cmcf,
    ngx_str_t *path)
{
    u_char           *buf;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_file_t        file;
    ngx_file_info_t   fi;

    if (ngx_conf_full_name(cf->cycle, path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"tce_consul\" cannot open token_file \"%V\"",
                           path);
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.fd = fd;
    file.name = *path;
    file.log = cf->log;

    buf = NULL;
    n = NGX_ERROR;

    if (ngx_fd_info(fd, &fi) != NGX_FILE_ERROR
        && ngx_file_size(&fi) <= NGX_TCE_CONSUL_TOKEN_MAX)
    {
        buf = ngx_pnalloc(cf->pool, ngx_file_size(&fi) + 1);

        if (buf) {
            n = ngx_read_file(&file, buf, ngx_file_size(&fi), 0);
        }
    }

    (void) ngx_close_file(fd);

    if (n == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tce_consul\" cannot read token_file \"%V\" "
                           "(at most %d bytes)", path,
                           NGX_TCE_CONSUL_TOKEN_MAX);
        return NGX_CONF_ERROR;
    }

    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'
                     || buf[n - 1] == ' '))
    {
        n--;
    }

    if (n == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tce_consul\" token_file \"%V\" is empty",
                           path);
        return NGX_CONF_ERROR;
    }

    buf[n] = '\0';
    cmcf->token.data = buf;
    cmcf->token.len = n;

    return NGX_CONF_OK;
}


/* the client is built once here so that a bad value fails "nginx -t" */

static char *
ngx_tce_consul_check(ngx_conf_t *cf, ngx_tce_consul_main_conf_t *cmcf)
{
    char                      err[NGX_TCE_CONSUL_CLIENT_ERR_LEN];
    char                      masked[256];
    char                    **url;
    ngx_uint_t                i;
    ngx_file_info_t           fi;
    ngx_tce_consul_conf_t     conf;
    ngx_tce_consul_client_t  *client;

    ngx_memzero(&conf, sizeof(ngx_tce_consul_conf_t));

    conf.urls = (const char *const *) cmcf->urls->elts;
    conf.nurls = cmcf->urls->nelts;
    conf.token = (char *) cmcf->token.data;
    conf.dc = (char *) cmcf->dc.data;
    conf.cafile = (char *) cmcf->ca.data;
    conf.consistency = (int) cmcf->consistency;
    conf.token_over_http = (int) cmcf->token_over_http;

    err[0] = '\0';

    client = ngx_tce_consul_client_create(&conf, err, sizeof(err));

    if (client == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"tce_consul\": %s", err);
        return NGX_CONF_ERROR;
    }

    ngx_tce_consul_client_destroy(client);

    url = cmcf->urls->elts;

    for (i = 0; cmcf->token.len && i < cmcf->urls->nelts; i++) {
        if (ngx_tce_consul_url_cleartext(url[i])) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "\"tce_consul\": the token travels in "
                               "clear to \"%s\" (token_over_http=on)",
                               ngx_tce_consul_url_mask(masked,
                                   sizeof(masked), url[i]));
        }
    }

    if (cmcf->ca.len && ngx_file_info(cmcf->ca.data, &fi) == NGX_FILE_ERROR)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"tce_consul\": cannot read ca file \"%V\"",
                           &cmcf->ca);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * The snapshot's path: tce_consul_snapshot, else "<tce_state>.consul"
 * (the state file is the operator's: never written), else none, with
 * a warning.
 */
static char *
ngx_tce_consul_snapshot_conf(ngx_conf_t *cf,
    ngx_tce_consul_main_conf_t *cmcf, ngx_tce_main_conf_t *tmcf)
{
    ngx_str_t  path;

    if (cmcf->snapshot.len == 0 && tmcf->state_path.len) {
        /* the state file's full name is set by ngx_tce_module */
        path.len = tmcf->state_path.len + sizeof(".consul") - 1;
        path.data = ngx_pnalloc(cf->pool, path.len + 1);
        if (path.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_sprintf(path.data, "%V.consul%Z", &tmcf->state_path);
        cmcf->snapshot = path;
    }

    if (cmcf->snapshot.len == 0) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"tce_consul\" without \"tce_consul_snapshot\" "
                           "(or \"tce_state\"): nothing is persisted, so a "
                           "restart while Consul is unreachable serves 503 "
                           "until it answers");
        return NGX_CONF_OK;
    }

    cmcf->persist = ngx_tce_persist_add(cf, tmcf, &cmcf->snapshot,
                                        "consul snapshot");
    if (cmcf->persist == NULL) {
        return NGX_CONF_ERROR;
    }

    if (cmcf->persist->path.len == tmcf->state_path.len
        && ngx_strncmp(cmcf->persist->path.data, tmcf->state_path.data,
                       tmcf->state_path.len) == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tce_consul_snapshot\" \"%V\" is the "
                           "\"tce_state\" file: the snapshot needs a file "
                           "of its own (the default is \"%V.consul\")",
                           &cmcf->persist->path, &tmcf->state_path);
        return NGX_CONF_ERROR;
    }

    cmcf->snapshot = cmcf->persist->path;     /* full, NUL-terminated */
    ngx_tce_consul_snapshot_init(cmcf);

    return NGX_CONF_OK;
}


static char *
ngx_tce_consul_services(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_tce_consul_main_conf_t *cmcf = conf;

    ngx_str_t  *value;

    if (cmcf->catalog != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len <= 4 || ngx_strncmp(value[1].data, "tag=", 4) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in "
                           "\"tce_consul_services\": expected tag=<tag>",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    cmcf->tag.data = value[1].data + 4;
    cmcf->tag.len = value[1].len - 4;
    cmcf->catalog = 1;

    return NGX_CONF_OK;
}


static ngx_tce_consul_main_conf_t *
ngx_tce_consul_get_conf(ngx_cycle_t *cycle)
{
    ngx_tce_consul_main_conf_t  *cmcf;

    if (ngx_get_conf(cycle->conf_ctx, ngx_http_module) == NULL) {
        return NULL;
    }

    cmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_tce_consul_module);

    if (cmcf == NULL || cmcf->urls == NULL) {
        return NULL;
    }

    return cmcf;
}


/* in the master, after the zones are set up and before workers start */

static ngx_int_t
ngx_tce_consul_init_module(ngx_cycle_t *cycle)
{
    CURLcode                     rc;
    ngx_tce_consul_main_conf_t  *cmcf;

    static ngx_uint_t            curl_ready;

    cmcf = ngx_tce_consul_get_conf(cycle);

    if (cmcf == NULL) {
        return NGX_OK;
    }

    if (!curl_ready) {
        rc = curl_global_init(CURL_GLOBAL_DEFAULT);

        if (rc != CURLE_OK) {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                          "tce consul: curl_global_init() failed: %s",
                          curl_easy_strerror(rc));
            return NGX_ERROR;
        }

        curl_ready = 1;
    }

    ngx_tce_consul_snapshot_load(cmcf, cycle->log);

    return NGX_OK;
}


static ngx_int_t
ngx_tce_consul_init_process(ngx_cycle_t *cycle)
{
    ngx_tce_consul_main_conf_t  *cmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    cmcf = ngx_tce_consul_get_conf(cycle);

    if (cmcf == NULL) {
        return NGX_OK;
    }

    return ngx_tce_consul_watch_init(cycle, cmcf);
}


static void
ngx_tce_consul_exit_process(ngx_cycle_t *cycle)
{
    ngx_tce_consul_main_conf_t  *cmcf;

    cmcf = ngx_tce_consul_get_conf(cycle);

    if (cmcf != NULL) {
        ngx_tce_consul_watch_exit(cmcf);

        if (cmcf->zone) {
            ngx_tce_reclaim_exit(cmcf->zone);
        }
    }
}


ngx_uint_t
ngx_tce_consul_named(ngx_tce_consul_main_conf_t *cmcf, u_char *name,
    size_t len)
{
    ngx_uint_t              i;
    ngx_tce_service_ref_t  *ref;

    ref = cmcf->tmcf->refs.elts;

    for (i = 0; i < cmcf->tmcf->refs.nelts; i++) {
        if (!ref[i].state_only && ref[i].name.len == len
            && ngx_memcmp(ref[i].name.data, name, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}
