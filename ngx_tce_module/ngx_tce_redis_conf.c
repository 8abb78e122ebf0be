/*
 * ngx_tce_redis_module: the fleet store's directive (http{}) and
 * process hooks (ngx_tce_redis.h).
 *
 *   tce_redis 127.0.0.1:6379 password_file=conf/redis.pass;
 *   tce_redis unix:/run/redis/redis.sock db=2 prefix=edge:;
 *
 * A host name is resolved when the configuration is read; hiredis then
 * connects to the address, so nothing resolves on a worker's loop.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_tce_redis.h"
#include "ngx_tce_persist.h"


#define NGX_TCE_REDIS_PASSWORD_MAX  512


typedef struct {
    ngx_tce_redis_main_conf_t  *rmcf;
    char                       *text;        /* the snapshot, JSON */
} ngx_tce_redis_cache_job_t;


static void *ngx_tce_redis_create_main_conf(ngx_conf_t *cf);
static char *ngx_tce_redis_init_main_conf(ngx_conf_t *cf, void *conf);
static char *ngx_tce_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_tce_redis_server(ngx_conf_t *cf,
    ngx_tce_redis_main_conf_t *rmcf, ngx_str_t *value);
static char *ngx_tce_redis_sentinels(ngx_conf_t *cf,
    ngx_tce_redis_main_conf_t *rmcf, ngx_str_t *value);
static char *ngx_tce_redis_password(ngx_conf_t *cf,
    ngx_tce_redis_main_conf_t *rmcf, ngx_str_t *path);
static ngx_int_t ngx_tce_redis_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_tce_redis_init_process(ngx_cycle_t *cycle);
static void ngx_tce_redis_exit_process(ngx_cycle_t *cycle);
static ngx_tce_redis_main_conf_t *ngx_tce_redis_get_conf(ngx_cycle_t *cycle);
static void ngx_tce_redis_cache_load(ngx_tce_redis_main_conf_t *rmcf,
    ngx_log_t *log);
static void *ngx_tce_redis_cache_collect(void *data, ngx_log_t *log);
static char *ngx_tce_redis_cache_encode(void *job, size_t *len, char *err,
    size_t errlen);
static void ngx_tce_redis_cache_free(void *job);


static ngx_command_t  ngx_tce_redis_commands[] = {

    { ngx_string("tce_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_tce_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_tce_redis_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_tce_redis_create_main_conf,        /* create main configuration */
    ngx_tce_redis_init_main_conf,          /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_tce_redis_module = {
    NGX_MODULE_V1,
    &ngx_tce_redis_module_ctx,             /* module context */
    ngx_tce_redis_commands,                /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_tce_redis_init_module,             /* init module */
    ngx_tce_redis_init_process,            /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_tce_redis_exit_process,            /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_tce_redis_create_main_conf(ngx_conf_t *cf)
{
    ngx_tce_redis_main_conf_t  *rmcf;

    rmcf = ngx_pcalloc(cf->pool, sizeof(ngx_tce_redis_main_conf_t));
    if (rmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     rmcf->unix_path = { 0, NULL };
     *     rmcf->username = { 0, NULL };
     *     rmcf->password = { 0, NULL };
     *     rmcf->cache = { 0, NULL };
     *     rmcf->enabled = 0;
     *     rmcf->ctx = NULL;
     */

    rmcf->db = NGX_CONF_UNSET;
    rmcf->timeout = NGX_CONF_UNSET_MSEC;
    rmcf->resync = NGX_CONF_UNSET_MSEC;
    rmcf->drain_settle = NGX_CONF_UNSET_MSEC;
    rmcf->replicas = NGX_CONF_UNSET;
    rmcf->audit_maxlen = NGX_CONF_UNSET;

    return rmcf;
}


static char *
ngx_tce_redis_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_tce_redis_main_conf_t *rmcf = conf;

    ngx_str_t             path;
    ngx_tce_main_conf_t  *tmcf;

    if (!rmcf->enabled) {
        return NGX_CONF_OK;
    }

    ngx_conf_init_value(rmcf->db, 0);
    ngx_conf_init_msec_value(rmcf->timeout, 1000);
    ngx_conf_init_msec_value(rmcf->resync, 5000);
    ngx_conf_init_msec_value(rmcf->drain_settle, 1000);

    /* with Sentinel, a write is answered once a replica has it */
    ngx_conf_init_value(rmcf->replicas, rmcf->sentinels ? 1 : 0);
    ngx_conf_init_value(rmcf->audit_maxlen, 10000);

    if (rmcf->prefix.data == NULL) {
        ngx_str_set(&rmcf->prefix, "tce:");
    }

    rmcf->channel.len = rmcf->prefix.len + sizeof("events") - 1;
    rmcf->channel.data = ngx_pnalloc(cf->pool, rmcf->channel.len + 1);
    if (rmcf->channel.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(rmcf->channel.data, "%Vevents%Z", &rmcf->prefix);

    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_tce_module);

    if (tmcf->zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tce_redis\" needs a \"tce_zone\"");
        return NGX_CONF_ERROR;
    }

    rmcf->zone = tmcf->zone;
    rmcf->tmcf = tmcf;
    tmcf->fleet = 1;

    if (rmcf->cache.len == 0 && tmcf->state_path.len) {
        /* the state file's full name is set by ngx_tce_module */
        path.len = tmcf->state_path.len + sizeof(".fleet") - 1;
        path.data = ngx_pnalloc(cf->pool, path.len + 1);
        if (path.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_sprintf(path.data, "%V.fleet%Z", &tmcf->state_path);
        rmcf->cache = path;
    }

    if (rmcf->cache.len == 0) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"tce_redis\" without cache= (or \"tce_state\"):"
                           " a restart while Redis is unreachable starts "
                           "without the fleet's canary policies");
        return NGX_CONF_OK;
    }

    rmcf->persist = ngx_tce_persist_add(cf, tmcf, &rmcf->cache,
                                        "fleet cache");
    if (rmcf->persist == NULL) {
        return NGX_CONF_ERROR;
    }

    if (rmcf->persist->path.len == tmcf->state_path.len
        && ngx_strncmp(rmcf->persist->path.data, tmcf->state_path.data,
                       tmcf->state_path.len) == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tce_redis\" cache \"%V\" is the \"tce_state\" "
                           "file: the cache needs a file of its own (the "
                           "default is \"%V.fleet\")",
                           &rmcf->persist->path, &tmcf->state_path);
        return NGX_CONF_ERROR;
    }

    rmcf->cache = rmcf->persist->path;        /* full, NUL-terminated */
    rmcf->persist->collect = ngx_tce_redis_cache_collect;
    rmcf->persist->encode = ngx_tce_redis_cache_encode;
    rmcf->persist->free = ngx_tce_redis_cache_free;
    rmcf->persist->data = rmcf;

    return NGX_CONF_OK;
}


static char *
ngx_tce_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_tce_redis_main_conf_t *rmcf = conf;

    u_char      *p;
    ngx_str_t   *value, v;
    ngx_int_t    n;
    ngx_uint_t   i;

    if (rmcf->enabled) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len >= 9 && ngx_strncmp(value[1].data, "sentinel=", 9) == 0)
    {
        if (ngx_tce_redis_sentinels(cf, rmcf, &value[1]) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }

    } else if (ngx_tce_redis_server(cf, rmcf, &value[1]) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {
        p = (u_char *) ngx_strchr(value[i].data, '=');

        if (p == NULL) {
            goto invalid;
        }

        v.data = p + 1;
        v.len = value[i].data + value[i].len - v.data;

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            n = ngx_atoi(v.data, v.len);
            if (n == NGX_ERROR || n > 1000000) {
                goto invalid;
            }

            rmcf->db = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "username=", 9) == 0) {
            if (v.len == 0 || v.len > 128) {
                goto invalid;
            }

            rmcf->username = v;
            continue;
        }

        if (ngx_strncmp(value[i].data, "password_file=", 14) == 0) {
            if (ngx_tce_redis_password(cf, rmcf, &v) != NGX_CONF_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "prefix=", 7) == 0) {
            if (v.len == 0 || v.len > NGX_TCE_REDIS_PREFIX_MAX) {
                goto invalid;
            }

            for (p = v.data; p < v.data + v.len; p++) {
                if (*p <= ' ' || *p >= 0x7f) {
                    goto invalid;
                }
            }

            rmcf->prefix = v;
            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            rmcf->timeout = ngx_parse_time(&v, 0);
            if (rmcf->timeout == (ngx_msec_t) NGX_ERROR
                || rmcf->timeout == 0)
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "resync=", 7) == 0) {
            rmcf->resync = ngx_parse_time(&v, 0);
            if (rmcf->resync == (ngx_msec_t) NGX_ERROR
                || rmcf->resync < 100)
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "drain_settle=", 13) == 0) {
            rmcf->drain_settle = ngx_parse_time(&v, 0);
            if (rmcf->drain_settle == (ngx_msec_t) NGX_ERROR
                || rmcf->drain_settle < 100
                || rmcf->drain_settle > 600000)
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "master=", 7) == 0) {
            if (v.len == 0 || v.len > NGX_TCE_REDIS_NAME_MAX) {
                goto invalid;
            }

            for (p = v.data; p < v.data + v.len; p++) {
                if (*p <= ' ' || *p >= 0x7f) {
                    goto invalid;
                }
            }

            rmcf->master_name = v;      /* NUL-terminated by nginx */
            continue;
        }

        if (ngx_strncmp(value[i].data, "replicas=", 9) == 0) {
            rmcf->replicas = ngx_atoi(v.data, v.len);
            if (rmcf->replicas == NGX_ERROR || rmcf->replicas > 64) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "audit_maxlen=", 13) == 0) {
            rmcf->audit_maxlen = ngx_atoi(v.data, v.len);
            if (rmcf->audit_maxlen == NGX_ERROR
                || rmcf->audit_maxlen > 100000000)
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "cache=", 6) == 0) {
            if (v.len == 0) {
                goto invalid;
            }

            rmcf->cache = v;
            continue;
        }

        goto invalid;
    }

    if ((rmcf->sentinels == NULL) != (rmcf->master_name.len == 0)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tce_redis\": \"sentinel=\" and \"master=\" "
                           "go together");
        return NGX_CONF_ERROR;
    }

    rmcf->enabled = 1;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in \"tce_redis\"",
                       &value[i]);

    return NGX_CONF_ERROR;
}


/* "unix:/path" or "host[:port]", the host resolved now */
static char *
ngx_tce_redis_server(ngx_conf_t *cf, ngx_tce_redis_main_conf_t *rmcf,
    ngx_str_t *value)
{
    u_char     text[NGX_SOCKADDR_STRLEN + 1];
    size_t     len;
    ngx_url_t  u;

    rmcf->server = *value;

    if (value->len > 5 && ngx_strncmp(value->data, "unix:", 5) == 0) {
        rmcf->unix_path.len = value->len - 5;
        rmcf->unix_path.data = ngx_pnalloc(cf->pool, value->len - 4);
        if (rmcf->unix_path.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_cpystrn(rmcf->unix_path.data, value->data + 5, value->len - 4);
        return NGX_CONF_OK;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *value;
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tce_redis\" \"%V\": %s", value,
                           u.err ? u.err : "host not found");
        return NGX_CONF_ERROR;
    }

    /* the first address, without its port (and brackets) for hiredis */
    len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, text,
                        NGX_SOCKADDR_STRLEN, 0);

    rmcf->host.data = ngx_pnalloc(cf->pool, len + 1);
    if (rmcf->host.data == NULL) {
        return NGX_CONF_ERROR;
    }

    rmcf->host.len = len;
    ngx_cpystrn(rmcf->host.data, text, len + 1);
    rmcf->port = u.port;

    return NGX_CONF_OK;
}


/* sentinel=host[:port][,host[:port]...], each resolved now */
static char *
ngx_tce_redis_sentinels(ngx_conf_t *cf, ngx_tce_redis_main_conf_t *rmcf,
    ngx_str_t *value)
{
    u_char                *p, *last, *comma;
    size_t                 len;
    ngx_url_t              u;
    ngx_tce_redis_addr_t  *a;

    rmcf->server = *value;

    rmcf->sentinels = ngx_array_create(cf->pool, 3,
                                       sizeof(ngx_tce_redis_addr_t));
    if (rmcf->sentinels == NULL) {
        return NGX_CONF_ERROR;
    }

    p = value->data + 9;
    last = value->data + value->len;

    while (p <= last) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        if (comma == p || rmcf->sentinels->nelts == 16) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"tce_redis\" \"%V\": 1 to 16 "
                               "comma-separated host:port", value);
            return NGX_CONF_ERROR;
        }

        a = ngx_array_push(rmcf->sentinels);
        if (a == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&u, sizeof(ngx_url_t));

        u.url.data = p;
        u.url.len = comma - p;
        u.default_port = 26379;

        if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0
            || u.family == AF_UNIX)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"tce_redis\" sentinel \"%V\": %s", &u.url,
                               u.err ? u.err : "host not found");
            return NGX_CONF_ERROR;
        }

        a->text = u.url;
        len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen,
                            a->host, NGX_TCE_REDIS_HOST_LEN - 1, 0);
        a->host[len] = '\0';
        a->port = u.port;

        p = comma + 1;
    }

    return NGX_CONF_OK;
}


/* the first line of the file, blanks around it dropped */
static char *
ngx_tce_redis_password(ngx_conf_t *cf, ngx_tce_redis_main_conf_t *rmcf,
    ngx_str_t *path)
{
    u_char     *p, *last, buf[NGX_TCE_REDIS_PASSWORD_MAX + 2];
    ssize_t     n;
    ngx_str_t   name;
    ngx_fd_t    fd;

    name = *path;

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"tce_redis\" password_file \"%V\" cannot be "
                           "opened", &name);
        return NGX_CONF_ERROR;
    }

    n = read(fd, buf, sizeof(buf));
    (void) ngx_close_file(fd);

    if (n < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"tce_redis\" password_file \"%V\" cannot be "
                           "read", &name);
        return NGX_CONF_ERROR;
    }

    p = buf;
    last = ngx_strlchr(buf, buf + n, '\n');
    if (last == NULL) {
        last = buf + n;
    }

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t'
                        || last[-1] == '\r'))
    {
        last--;
    }

    if (last == p || last - p > NGX_TCE_REDIS_PASSWORD_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tce_redis\" password_file \"%V\": the first "
                           "line must hold the password (1..512 bytes)",
                           &name);
        return NGX_CONF_ERROR;
    }

    rmcf->password.len = last - p;
    rmcf->password.data = ngx_pnalloc(cf->pool, rmcf->password.len + 1);
    if (rmcf->password.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_cpystrn(rmcf->password.data, p, rmcf->password.len + 1);
    ngx_explicit_memzero(buf, sizeof(buf));

    return NGX_CONF_OK;
}


static ngx_tce_redis_main_conf_t *
ngx_tce_redis_get_conf(ngx_cycle_t *cycle)
{
    ngx_tce_redis_main_conf_t  *rmcf;

    if (ngx_get_conf(cycle->conf_ctx, ngx_http_module) == NULL) {
        return NULL;
    }

    rmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_tce_redis_module);

    if (rmcf == NULL || !rmcf->enabled) {
        return NULL;
    }

    return rmcf;
}


/*
 * In the master, after the zones are set up: the status block, and on
 * a zone that never synced (a start) the cache file's policy, so that a
 * node restarted while Redis is unreachable serves the last fleet
 * policy it applied.
 */
static ngx_int_t
ngx_tce_redis_init_module(ngx_cycle_t *cycle)
{
    ngx_tce_zone_t             *zone;
    ngx_tce_redis_sh_t         *sh;
    ngx_tce_redis_main_conf_t  *rmcf;

    rmcf = ngx_tce_redis_get_conf(cycle);

    if (rmcf == NULL || ngx_test_config) {
        return NGX_OK;
    }

    zone = rmcf->zone;

    if (zone->sh->redis == NULL) {
        sh = ngx_slab_calloc(zone->shpool, sizeof(ngx_tce_redis_sh_t));
        if (sh == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                          "tce zone \"%V\" is too small for tce_redis",
                          &zone->shm_zone->shm.name);
            return NGX_ERROR;
        }

        zone->sh->redis = sh;
    }

    sh = zone->sh->redis;
    sh->with_sentinel = (rmcf->master_name.len != 0);

    if (sh->version == 0 && rmcf->cache.len) {
        ngx_tce_redis_cache_load(rmcf, cycle->log);
    }

    return NGX_OK;
}


static void
ngx_tce_redis_cache_load(ngx_tce_redis_main_conf_t *rmcf, ngx_log_t *log)
{
    char                 err[256];
    ssize_t              n;
    ngx_fd_t             fd;
    ngx_str_t            text;
    ngx_file_info_t      fi;
    ngx_tce_fleet_t      f;
    ngx_tce_redis_sh_t  *sh;

    fd = ngx_open_file(rmcf->cache.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        if (ngx_errno != NGX_ENOENT) {
            ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                          "tce redis: fleet cache \"%V\" cannot be opened",
                          &rmcf->cache);
        }

        return;
    }

    text.data = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 64 * 1024 * 1024)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tce redis: fleet cache \"%V\" cannot be read or is "
                      "larger than 64 MB", &rmcf->cache);
        goto done;
    }

    text.len = ngx_file_size(&fi);
    text.data = ngx_alloc(text.len + 1, log);
    if (text.data == NULL) {
        goto done;
    }

    n = read(fd, text.data, text.len);

    if (n != (ssize_t) text.len) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "tce redis: fleet cache \"%V\" cannot be read",
                      &rmcf->cache);
        goto done;
    }

    if (ngx_tce_fleet_decode((char *) text.data, text.len, &f, err,
                             sizeof(err))
        != 0)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tce redis: fleet cache \"%V\" ignored: %s",
                      &rmcf->cache, err);
        goto done;
    }

    if (ngx_tce_redis_apply(rmcf->zone, &f, 1, log) == NGX_OK) {
        sh = rmcf->zone->sh->redis;
        sh->version = f.version;
        sh->seen = f.version;

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "tce redis: fleet version %uL from the cache \"%V\" "
                      "(%uz policies)", f.version, &rmcf->cache,
                      f.npolicies);
    }

    ngx_tce_fleet_free(&f);

done:

    if (text.data) {
        ngx_free(text.data);
    }

    (void) ngx_close_file(fd);
}


/* the cache file: the JSON text kept by the syncer at its last apply */

static void *
ngx_tce_redis_cache_collect(void *data, ngx_log_t *log)
{
    ngx_tce_redis_main_conf_t *rmcf = data;

    size_t                      len;
    ngx_tce_redis_cache_job_t  *job;

    if (rmcf->ctx == NULL || rmcf->ctx->cache_text == NULL) {
        return NULL;
    }

    len = ngx_strlen(rmcf->ctx->cache_text);

    job = ngx_alloc(sizeof(ngx_tce_redis_cache_job_t) + len + 1, log);
    if (job == NULL) {
        return NULL;
    }

    job->rmcf = rmcf;
    job->text = (char *) (job + 1);
    ngx_memcpy(job->text, rmcf->ctx->cache_text, len + 1);

    return job;
}


static char *
ngx_tce_redis_cache_encode(void *data, size_t *len, char *err,
    size_t errlen)
{
    ngx_tce_redis_cache_job_t *job = data;

    char    *text;
    size_t   n;

    n = ngx_strlen(job->text);

    text = malloc(n + 1);
    if (text == NULL) {
        ngx_cpystrn((u_char *) err, (u_char *) "out of memory", errlen);
        return NULL;
    }

    ngx_memcpy(text, job->text, n + 1);
    *len = n;

    return text;
}


static void
ngx_tce_redis_cache_free(void *job)
{
    ngx_free(job);
}


static ngx_int_t
ngx_tce_redis_init_process(ngx_cycle_t *cycle)
{
    ngx_tce_redis_main_conf_t  *rmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    rmcf = ngx_tce_redis_get_conf(cycle);

    if (rmcf == NULL) {
        return NGX_OK;
    }

    return ngx_tce_redis_sync_init(cycle, rmcf);
}


static void
ngx_tce_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_tce_redis_main_conf_t  *rmcf;

    rmcf = ngx_tce_redis_get_conf(cycle);

    if (rmcf != NULL) {
        ngx_tce_redis_sync_exit(rmcf);
    }
}
