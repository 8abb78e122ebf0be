/*
 * ngx_tce_module: the core of the suite in nginx.conf's http{} block.
 *
 *   tce_zone <name> <size>;    the shared zone holding the registry
 *   tce_state <path>;          the embedded default store (JSON file)
 *   tce_state_allow_empty on|off;
 *                              whether a reload may leave a service fed
 *                              by the file without any instance
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_tce.h"
#include "ngx_tce_background.h"
#include "ngx_tce_sched_zone.h"
#include "ngx_tce_state.h"
#include "ngx_tce_persist.h"
#include "ngx_tce_consul.h"
#include "ngx_tce_closest.h"
#include "ngx_tce_reload_log.h"
#include "ngx_tce_zone_size.h"


#define NGX_TCE_ZONE_MIN_SIZE  (64 * 1024)

/* services named in the message of a refused reload */
#define NGX_TCE_STATE_GUARD_NAMES  5

/* names offered for a tce_service name the state file lacks */
#define NGX_TCE_STATE_NAMES_CLOSEST  3


typedef struct {
    ngx_tce_zone_t        zone;
    ngx_tce_main_conf_t  *tmcf;
    ngx_cycle_t          *cycle;     /* the one configured: its workers */
    ngx_tce_state_t       state;     /* parsed at configuration time */
    ngx_uint_t            loaded;    /* tce_state given and file present */
    ngx_uint_t            missing;   /* tce_state given, no such file */
} ngx_tce_zone_ctx_t;


static void *ngx_tce_create_main_conf(ngx_conf_t *cf);
static char *ngx_tce_init_main_conf(ngx_conf_t *cf, void *conf);
static char *ngx_tce_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_tce_init_zone(ngx_shm_zone_t *shm_zone, void *data);
static ngx_int_t ngx_tce_apply_state(ngx_tce_zone_t *zone,
    ngx_tce_main_conf_t *tmcf, ngx_log_t *log);
static void ngx_tce_state_cleanup(void *data);
static ngx_tce_main_conf_t *ngx_tce_get_main_conf(ngx_cycle_t *cycle);
static ngx_int_t ngx_tce_persist_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_tce_init_process(ngx_cycle_t *cycle);
static void ngx_tce_persist_exit_process(ngx_cycle_t *cycle);
static void ngx_tce_state_check_dir(ngx_conf_t *cf, ngx_str_t *path);
static void ngx_tce_state_check_names(ngx_conf_t *cf,
    ngx_tce_main_conf_t *tmcf, ngx_tce_state_t *st);
static u_char *ngx_tce_state_closest(u_char *p, u_char *last,
    ngx_str_t *name, const char *const *names, size_t n);
static ngx_int_t ngx_tce_state_guard(ngx_tce_zone_ctx_t *ctx,
    ngx_log_t *log);
static int ngx_libc_cdecl ngx_tce_state_service_cmp(const void *key,
    const void *elt);


static ngx_command_t  ngx_tce_commands[] = {

    { ngx_string("tce_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_tce_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tce_state"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_tce_main_conf_t, state_path),
      NULL },

    { ngx_string("tce_state_allow_empty"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_tce_main_conf_t, state_allow_empty),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_tce_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_tce_create_main_conf,              /* create main configuration */
    ngx_tce_init_main_conf,                /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_tce_module = {
    NGX_MODULE_V1,
    &ngx_tce_module_ctx,                   /* module context */
    ngx_tce_commands,                      /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_tce_persist_init_module,           /* init module */
    ngx_tce_init_process,                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_tce_persist_exit_process,          /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_tce_create_main_conf(ngx_conf_t *cf)
{
    ngx_tce_main_conf_t  *tmcf;

    tmcf = ngx_pcalloc(cf->pool, sizeof(ngx_tce_main_conf_t));
    if (tmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     tmcf->zone = NULL;
     *     tmcf->state_path = { 0, NULL };
     */

    tmcf->state_allow_empty = NGX_CONF_UNSET;

    if (ngx_array_init(&tmcf->refs, cf->pool, 4,
                       sizeof(ngx_tce_service_ref_t))
        != NGX_OK)
    {
        return NULL;
    }

    return tmcf;
}


static char *
ngx_tce_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_tce_main_conf_t *tmcf = conf;

    int                  rc;
    char                 err[512];
    ngx_pool_cleanup_t  *cln;
    ngx_tce_zone_ctx_t  *ctx;

    ngx_conf_init_value(tmcf->state_allow_empty, 0);

    if (tmcf->state_path.len == 0) {
        return NGX_CONF_OK;
    }

    if (tmcf->zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tce_state\" needs a \"tce_zone\"");
        return NGX_CONF_ERROR;
    }

    if (ngx_conf_full_name(cf->cycle, &tmcf->state_path, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ctx = (ngx_tce_zone_ctx_t *) tmcf->zone;

    /* validated here, so that a bad file fails "nginx -t" */
    rc = ngx_tce_state_load((char *) tmcf->state_path.data, &ctx->state,
                            err, sizeof(err));

    if (rc == -2) {
        ngx_conf_log_error(NGX_LOG_NOTICE, cf, 0,
                           "tce_state \"%V\" does not exist yet: "
                           "the registry starts empty", &tmcf->state_path);
        ngx_tce_state_check_dir(cf, &tmcf->state_path);
        ctx->missing = 1;
        return NGX_CONF_OK;
    }

    if (rc != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tce_state \"%V\": %s", &tmcf->state_path, err);
        return NGX_CONF_ERROR;
    }

    if (ngx_tce_canary_check_state(&ctx->state, err, sizeof(err)) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tce_state \"%V\": %s", &tmcf->state_path, err);
        ngx_tce_state_free(&ctx->state);
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_tce_state_free(&ctx->state);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_tce_state_cleanup;
    cln->data = &ctx->state;
    ctx->loaded = 1;

    ngx_tce_state_check_names(cf, tmcf, &ctx->state);

    return NGX_CONF_OK;
}


/*
 * A tce_service name or cluster= the state file does not have is a
 * typo more often than not, and would show only as 503s: said at
 * "nginx -t" with the closest names the file has.  In embedded mode
 * for every tce_service; with Consul only for discovery=state ones
 * (Consul may well know the others).
 */
static void
ngx_tce_state_check_names(ngx_conf_t *cf, ngx_tce_main_conf_t *tmcf,
    ngx_tce_state_t *st)
{
    u_char                       *p, *last;
    size_t                        j;
    ngx_uint_t                    i, k, consul;
    const char                  **names, **cnames;
    ngx_tce_service_ref_t        *ref;
    ngx_tce_state_service_t      *ss;
    ngx_tce_consul_main_conf_t   *cmcf;
    u_char                        text[512];

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_tce_consul_module);
    consul = (cmcf != NULL && cmcf->urls != NULL);

    names = NULL;
    ref = tmcf->refs.elts;

    for (i = 0; i < tmcf->refs.nelts; i++) {
        if (consul && !ref[i].state_only) {
            continue;
        }

        /* each name and cluster once, however many upstreams name it */
        for (k = 0; k < i; k++) {
            if (ref[k].name.len == ref[i].name.len
                && ngx_memcmp(ref[k].name.data, ref[i].name.data,
                              ref[i].name.len) == 0
                && ref[k].cluster.len == ref[i].cluster.len
                && ngx_memcmp(ref[k].cluster.data, ref[i].cluster.data,
                              ref[i].cluster.len) == 0)
            {
                break;
            }
        }

        if (k < i) {
            continue;
        }

        ss = NULL;

        for (j = 0; j < st->nservices; j++) {
            if (ngx_strlen(st->services[j].name) == ref[i].name.len
                && ngx_memcmp(st->services[j].name, ref[i].name.data,
                              ref[i].name.len) == 0)
            {
                ss = &st->services[j];
                break;
            }
        }

        p = text;
        last = text + sizeof(text);

        if (ss == NULL) {
            if (names == NULL) {
                names = ngx_palloc(cf->temp_pool,
                                   (st->nservices + 1) * sizeof(char *));
                if (names == NULL) {
                    return;
                }

                for (j = 0; j < st->nservices; j++) {
                    names[j] = st->services[j].name;
                }
            }

            p = ngx_tce_state_closest(p, last, &ref[i].name, names,
                                      st->nservices);

            ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                          "tce_service \"%V\" in %s:%ui: tce_state \"%V\" "
                          "has no such service, its requests will get 503; "
                          "it has %*s", &ref[i].name, ref[i].file,
                          ref[i].line, &tmcf->state_path, p - text, text);
            continue;
        }

        if (ref[i].cluster.len == 0) {
            continue;               /* cluster=$variable */
        }

        for (j = 0; j < ss->nclusters; j++) {
            if (ngx_strlen(ss->clusters[j].cluster) == ref[i].cluster.len
                && ngx_memcmp(ss->clusters[j].cluster, ref[i].cluster.data,
                              ref[i].cluster.len) == 0)
            {
                break;
            }
        }

        if (j < ss->nclusters) {
            continue;
        }

        cnames = ngx_palloc(cf->temp_pool,
                            (ss->nclusters + 1) * sizeof(char *));
        if (cnames == NULL) {
            return;
        }

        for (j = 0; j < ss->nclusters; j++) {
            cnames[j] = ss->clusters[j].cluster;
        }

        p = ngx_tce_state_closest(p, last, &ref[i].cluster, cnames,
                                  ss->nclusters);

        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "tce_service \"%V\" cluster=%V in %s:%ui: tce_state "
                      "\"%V\" has no such cluster of this service, its "
                      "requests will get 503; it has %*s", &ref[i].name,
                      &ref[i].cluster, ref[i].file, ref[i].line,
                      &tmcf->state_path, p - text, text);
    }
}


/* "none" or the closest names, quoted: "a", "b", "c" (3 of 12) */
static u_char *
ngx_tce_state_closest(u_char *p, u_char *last, ngx_str_t *name,
    const char *const *names, size_t n)
{
    size_t  i, m;
    size_t  out[NGX_TCE_STATE_NAMES_CLOSEST];
    char    key[NGX_TCE_SERVICE_LEN];

    if (n == 0) {
        return ngx_slprintf(p, last, "none");
    }

    (void) ngx_cpystrn((u_char *) key, name->data,
                       ngx_min(name->len + 1, sizeof(key)));

    m = ngx_tce_closest(key, names, n, out, NGX_TCE_STATE_NAMES_CLOSEST);

    for (i = 0; i < m; i++) {
        p = ngx_slprintf(p, last, "%s\"%s\"", i ? ", " : "", names[out[i]]);
    }

    if (m < n) {
        p = ngx_slprintf(p, last, " (the closest %uz of %uz)", m, n);
    }

    return p;
}


static void
ngx_tce_state_cleanup(void *data)
{
    ngx_tce_state_free(data);
}


/* a path with a typo in a directory: said at "nginx -t" */

static void
ngx_tce_state_check_dir(ngx_conf_t *cf, ngx_str_t *path)
{
    u_char           *dir, *slash;
    ngx_file_info_t   fi;

    dir = ngx_pstrdup(cf->temp_pool, path);
    if (dir == NULL) {
        return;
    }

    /* a full name (ngx_conf_full_name): it has a slash */
    for (slash = dir + path->len; slash > dir && slash[-1] != '/'; slash--) {
        /* void */
    }

    if (slash <= dir + 1) {
        return;                         /* in the root directory */
    }

    slash[-1] = '\0';

    if (ngx_file_info(dir, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, ngx_errno,
                           "tce_state \"%V\": its directory \"%s\" cannot "
                           "be used: a typo?  Nothing can be loaded from "
                           "this path, and Consul snapshots cannot be "
                           "written there", path, dir);

    } else if (!ngx_is_dir(&fi)) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "tce_state \"%V\": \"%s\" is not a directory",
                           path, dir);
    }
}


static char *
ngx_tce_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_tce_main_conf_t *tmcf = conf;

    ssize_t              size;
    ngx_str_t           *value;
    ngx_shm_zone_t      *shm_zone;
    ngx_tce_zone_ctx_t  *ctx;

    if (tmcf->zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    size = ngx_parse_size(&value[2]);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid size \"%V\" in \"tce_zone\"",
                           &value[2]);
        return NGX_CONF_ERROR;
    }

    if (size < NGX_TCE_ZONE_MIN_SIZE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "size \"%V\" of \"tce_zone\" \"%V\" is too "
                           "small, at least 64k",
                           &value[2], &value[1]);
        return NGX_CONF_ERROR;
    }

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_tce_zone_ctx_t));
    if (ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &value[1], size, &ngx_tce_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used by another module",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_tce_init_zone;
    shm_zone->data = ctx;

    ctx->zone.shm_zone = shm_zone;
    ctx->tmcf = tmcf;
    ctx->cycle = cf->cycle;
    tmcf->zone = &ctx->zone;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_tce_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_tce_zone_ctx_t *octx = data;

    u_char                 *p;
    size_t                  len;
    ngx_uint_t              i;
    ngx_slab_pool_t        *shpool;
    ngx_tce_zone_ctx_t     *ctx;
    ngx_tce_reload_log_t   *rl;
    ngx_tce_service_ref_t  *ref;
    u_char                  buf[256];

    ctx = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    ctx->zone.shpool = shpool;

    if (octx) {
        /* reload with the same name and size: keep the registry */
        ctx->zone.sh = octx->zone.sh;

    } else if (shm_zone->shm.exists) {
        ctx->zone.sh = shpool->data;

    } else {
        ctx->zone.sh = ngx_slab_calloc(shpool, sizeof(ngx_tce_shctx_t));
        if (ctx->zone.sh == NULL) {
            return NGX_ERROR;
        }

        ctx->zone.sh->created = ngx_time();
        shpool->data = ctx->zone.sh;

        len = sizeof(" in tce zone \"\"") + shm_zone->shm.name.len;

        shpool->log_ctx = ngx_slab_alloc(shpool, len);
        if (shpool->log_ctx == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(shpool->log_ctx, " in tce zone \"%V\"%Z",
                    &shm_zone->shm.name);

        shpool->log_nomem = 0;
    }

    rl = NULL;

    /* a reload: the zone holds what is served now */
    if (octx) {
        if (ngx_tce_state_guard(ctx, shm_zone->shm.log) != NGX_OK) {
            return NGX_ERROR;
        }

        /* what each service holds now, for the lines of its changes */
        rl = ngx_tce_reload_log_before(&ctx->zone, shm_zone->shm.log);
    }

    if (ngx_tce_apply_state(&ctx->zone, ctx->tmcf, shm_zone->shm.log)
        != NGX_OK
        || ngx_tce_persist_init_zone(&ctx->zone, ctx->tmcf,
                                     shm_zone->shm.log)
           != NGX_OK)
    {
        ngx_tce_reload_log_free(rl);
        return NGX_ERROR;
    }

    ngx_tce_reload_log_after(rl, &ctx->zone, shm_zone->shm.log);

    ref = ctx->tmcf->refs.elts;

    for (i = 0; i < ctx->tmcf->refs.nelts; i++) {
        *ref[i].service = ngx_tce_zone_service(&ctx->zone, ref[i].name.data,
                                               ref[i].name.len, 1);
        if (*ref[i].service == NULL) {
            p = ngx_tce_zone_advice(&ctx->zone, buf, buf + sizeof(buf));

            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "tce zone \"%V\" is too small for the services "
                          "of the configuration%*s", &shm_zone->shm.name,
                          p - buf, buf);
            return NGX_ERROR;
        }

        ngx_tce_zone_pin(*ref[i].service);
    }

    return NGX_OK;
}


/*
 * The state file is applied at every start and reload; only services
 * whose content changed get a new generation.  A service the file held
 * before and no longer holds is emptied.  The room of every set that
 * changes is reserved before any is stored: a file the zone cannot
 * hold is refused whole, the old workers going on with the registry
 * as it was (a reload needs room for the old and the new sets of the
 * services it changes).
 */
static ngx_int_t
ngx_tce_apply_state(ngx_tce_zone_t *zone, ngx_tce_main_conf_t *tmcf,
    ngx_log_t *log)
{
    u_char                   *p;
    ngx_int_t                 rc;
    ngx_uint_t                i, found, n;
    ngx_tce_service_t        *svc, **svcs;
    ngx_tce_instance_t     ***res;
    ngx_tce_zone_ctx_t       *ctx;
    ngx_tce_state_service_t  *ss;
    u_char                    buf[256];

    ctx = (ngx_tce_zone_ctx_t *) zone;

    /* with tce_redis the overrides are the fleet's, not the file's */
    zone->sh->fleet_overrides = tmcf->fleet;

    if (tmcf->state_path.len == 0) {
        return NGX_OK;
    }

    ss = ctx->state.services;
    n = ctx->state.nservices;
    res = NULL;
    svcs = NULL;

    if (n) {
        res = ngx_calloc(n * (sizeof(*res) + sizeof(*svcs)), log);
        if (res == NULL) {
            return NGX_ERROR;
        }

        svcs = (ngx_tce_service_t **) &res[n];
    }

    /* first: room for every set that changes, or none is stored */
    for (i = 0; i < n; i++) {
        svc = ngx_tce_zone_service(zone, (u_char *) ss[i].name,
                                   ngx_strlen(ss[i].name), 1);
        if (svc == NULL) {
            goto full;
        }

        ngx_tce_zone_pin(svc);
        svcs[i] = svc;

        /*
         * Consul owns the instances (the file may be its snapshot) unless
         * nginx.conf says discovery=state
         */
        if ((svc->source == NGX_TCE_SOURCE_CONSUL
             && !ngx_tce_service_state_only(tmcf, svc->name, svc->name_len))
            || (tmcf->fleet && svc->fleet_set))
        {
            continue;
        }

        res[i] = ngx_tce_zone_reserve(zone, svc, ss[i].instances,
                                      ss[i].ninstances, &rc, log);
        if (rc == NGX_ERROR) {
            goto full;
        }
    }

    /* the instance sets stored below get the overrides laid over */
    if (!tmcf->fleet
        && ngx_tce_override_apply_state(zone, &ctx->state, log) != NGX_OK)
    {
        goto full;
    }

    for (i = 0; i < n; i++) {
        svc = svcs[i];

        /* the room reserved for this set is the room it takes now */
        ngx_tce_zone_unreserve(zone, res[i], ss[i].ninstances);
        res[i] = NULL;

        /* with tce_redis a set written through the API is the fleet's */
        if ((svc->source != NGX_TCE_SOURCE_CONSUL
             || ngx_tce_service_state_only(tmcf, svc->name, svc->name_len))
            && !(tmcf->fleet && svc->fleet_set)
            && ngx_tce_zone_set(zone, svc, ss[i].instances,
                                ss[i].ninstances, NGX_TCE_SOURCE_STATE, log)
               == NGX_ERROR)
        {
            goto full;
        }

        /* with tce_redis the fleet owns the canary policies */
        if (!tmcf->fleet
            && ngx_tce_policy_apply_state(zone, svc, &ss[i], log)
               == NGX_ERROR)
        {
            goto full;
        }
    }

    ngx_free(res);

    for (svc = zone->sh->services; svc; svc = svc->next) {
        if (svc->source != NGX_TCE_SOURCE_STATE
            || (tmcf->fleet && svc->fleet_set))
        {
            continue;
        }

        /* the file's services are sorted by name */
        found = ctx->state.nservices
                && bsearch(svc->name, ss, ctx->state.nservices,
                           sizeof(ngx_tce_state_service_t),
                           ngx_tce_state_service_cmp);

        if (!found) {
            (void) ngx_tce_zone_set(zone, svc, NULL, 0, NGX_TCE_SOURCE_STATE,
                                    log);
            if (!tmcf->fleet) {
                (void) ngx_tce_policy_apply_state(zone, svc, NULL, log);
            }
        }
    }

    return NGX_OK;

full:

    for (i = 0; i < n; i++) {
        ngx_tce_zone_unreserve(zone, res[i], ss[i].ninstances);
    }

    ngx_free(res);

    p = ngx_tce_zone_advice(zone, buf, buf + sizeof(buf));

    ngx_log_error(NGX_LOG_EMERG, log, 0,
                  "tce zone \"%V\" is too small for tce_state \"%V\"%*s",
                  &zone->shm_zone->shm.name, &tmcf->state_path, p - buf,
                  buf);
    return NGX_ERROR;
}


u_char *
ngx_tce_zone_advice(ngx_tce_zone_t *zone, u_char *p, u_char *last)
{
    size_t                  more, workers;
    ngx_uint_t              i;
    ngx_core_conf_t        *ccf;
    ngx_tce_state_t        *st;
    ngx_tce_zone_ctx_t     *ctx;
    ngx_tce_main_conf_t    *tmcf;
    ngx_tce_zone_size_t     zs;
    ngx_tce_service_ref_t  *ref;

    ctx = (ngx_tce_zone_ctx_t *) zone;
    tmcf = ctx->tmcf;
    st = ctx->loaded ? &ctx->state : NULL;

    /* services nginx.conf names that the file does not have */
    more = 0;
    ref = tmcf->refs.elts;

    for (i = 0; i < tmcf->refs.nelts; i++) {
        if (st == NULL || st->nservices == 0
            || bsearch(ref[i].name.data, st->services, st->nservices,
                       sizeof(ngx_tce_state_service_t),
                       ngx_tce_state_service_cmp)
               == NULL)
        {
            more++;
        }
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(ctx->cycle->conf_ctx,
                                           ngx_core_module);
    workers = (ccf && ccf->worker_processes > 0) ? ccf->worker_processes : 1;

    ngx_tce_zone_size(st, more, tmcf->metrics != 0, workers, &zs);

    return ngx_slprintf(p, last, ": the zone has %uz KB; its %uz service%s "
                        "and %uz instance%s need about %uz KB%s and a "
                        "reload that changes them all needs more: set "
                        "\"tce_zone %V %uzk;\" or larger",
                        zone->shm_zone->shm.size / 1024,
                        zs.services, zs.services == 1 ? "" : "s",
                        zs.instances, zs.instances == 1 ? "" : "s",
                        (zs.need + 1023) / 1024,
                        tmcf->metrics ? " (their metric series included)"
                                      : "",
                        &zone->shm_zone->shm.name, zs.advised / 1024);
}


/*
 * A reload that would take a service fed by the state file from some
 * instances to none (a file gone, a path with a typo, "{"version": 1}",
 * a service left out) is refused, changing nothing, unless
 * tce_state_allow_empty is on: as with Consul's empty answers, an
 * empty service is more likely a mistake than an intent.
 */
static ngx_int_t
ngx_tce_state_guard(ngx_tce_zone_ctx_t *ctx, ngx_log_t *log)
{
    u_char                   *p, *last;
    ngx_uint_t                n, ninst;
    ngx_tce_service_t        *svc;
    ngx_tce_main_conf_t      *tmcf;
    ngx_tce_state_service_t  *ss;
    u_char                    names[1024];

    tmcf = ctx->tmcf;

    if (tmcf->state_path.len == 0 || tmcf->state_allow_empty) {
        return NGX_OK;
    }

    n = 0;
    p = names;
    last = names + sizeof(names);

    for (svc = ctx->zone.sh->services; svc; svc = svc->next) {
        ninst = svc->ninstances;

        if (svc->source != NGX_TCE_SOURCE_STATE || ninst == 0
            || (tmcf->fleet && svc->fleet_set))
        {
            continue;
        }

        ss = NULL;

        if (ctx->state.nservices) {
            ss = bsearch(svc->name, ctx->state.services,
                         ctx->state.nservices,
                         sizeof(ngx_tce_state_service_t),
                         ngx_tce_state_service_cmp);
        }

        if (ss && ss->ninstances) {
            continue;
        }

        if (++n <= NGX_TCE_STATE_GUARD_NAMES) {
            p = ngx_slprintf(p, last, "%s\"%s\" (%ui instance%s%s)",
                             n > 1 ? ", " : "", svc->name, ninst,
                             ninst == 1 ? "" : "s",
                             ctx->missing ? ""
                             : ss ? ", none in the file"
                             : ", not in the file");
        }
    }

    if (n == 0) {
        return NGX_OK;
    }

    if (n > NGX_TCE_STATE_GUARD_NAMES) {
        p = ngx_slprintf(p, last, " and %ui more",
                         n - NGX_TCE_STATE_GUARD_NAMES);
    }

    ngx_log_error(NGX_LOG_EMERG, log, 0,
                  "tce_state \"%V\"%s: reload refused, it would leave "
                  "%ui service%s without any instance: %*s; nothing was "
                  "changed.  Fix the file (or its path), or set "
                  "\"tce_state_allow_empty on;\" to empty them",
                  &tmcf->state_path,
                  ctx->missing ? " does not exist" : "",
                  n, n == 1 ? "" : "s", p - names, names);

    return NGX_ERROR;
}


void
ngx_tce_state_instances(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    const ngx_tce_instance_t **inst, ngx_uint_t *n)
{
    ngx_tce_zone_ctx_t       *ctx;
    ngx_tce_state_service_t  *ss;

    ctx = (ngx_tce_zone_ctx_t *) zone;

    *inst = NULL;
    *n = 0;

    if (ctx->state.nservices == 0) {
        return;
    }

    /* the file's services are sorted by name */
    ss = bsearch(svc->name, ctx->state.services, ctx->state.nservices,
                 sizeof(ngx_tce_state_service_t), ngx_tce_state_service_cmp);

    if (ss) {
        *inst = ss->instances;
        *n = ss->ninstances;
    }
}


static int ngx_libc_cdecl
ngx_tce_state_service_cmp(const void *key, const void *elt)
{
    return ngx_strcmp((u_char *) key,
                      (u_char *) ((ngx_tce_state_service_t *) elt)->name);
}


ngx_int_t
ngx_tce_add_service_ref(ngx_conf_t *cf, ngx_str_t *name, ngx_str_t *cluster,
    ngx_uint_t state_only, ngx_tce_service_t **service)
{
    ngx_uint_t              i;
    ngx_tce_main_conf_t    *tmcf;
    ngx_tce_service_ref_t  *ref;

    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_tce_module);

    ref = tmcf->refs.elts;

    for (i = 0; i < tmcf->refs.nelts; i++) {
        if (ref[i].name.len == name->len
            && ngx_memcmp(ref[i].name.data, name->data, name->len) == 0
            && ref[i].state_only != state_only)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "service \"%V\" is named with "
                               "\"discovery=state\" in one \"tce_service\" "
                               "and without it in another: give it to "
                               "every one or to none", name);
            return NGX_ERROR;
        }
    }

    ref = ngx_array_push(&tmcf->refs);
    if (ref == NULL) {
        return NGX_ERROR;
    }

    ref->name = *name;
    ref->cluster = *cluster;
    ref->state_only = state_only;
    ref->file = cf->conf_file->file.name.data;
    ref->line = cf->conf_file->line;
    ref->service = service;

    return NGX_OK;
}


ngx_uint_t
ngx_tce_service_state_only(ngx_tce_main_conf_t *tmcf, u_char *name,
    size_t len)
{
    ngx_uint_t              i;
    ngx_tce_service_ref_t  *ref;

    ref = tmcf->refs.elts;

    for (i = 0; i < tmcf->refs.nelts; i++) {
        if (ref[i].state_only && ref[i].name.len == len
            && ngx_memcmp(ref[i].name.data, name, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_tce_main_conf_t *
ngx_tce_get_main_conf(ngx_cycle_t *cycle)
{
    if (ngx_get_conf(cycle->conf_ctx, ngx_http_module) == NULL) {
        return NULL;
    }

    return ngx_http_cycle_get_module_main_conf(cycle, ngx_tce_module);
}


/* in the master (and at "nginx -t"): the files workers write */

static ngx_int_t
ngx_tce_persist_init_module(ngx_cycle_t *cycle)
{
    ngx_tce_main_conf_t  *tmcf;

    tmcf = ngx_tce_get_main_conf(cycle);

    if (tmcf != NULL) {
        ngx_tce_persist_check(cycle, tmcf);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_tce_init_process(ngx_cycle_t *cycle)
{
#if (NGX_THREADS)
    ngx_tce_main_conf_t  *tmcf;

    tmcf = ngx_tce_get_main_conf(cycle);

    if (tmcf != NULL && tmcf->zone != NULL) {
        ngx_tce_background_init(cycle->log);
    }
#endif

    return NGX_OK;
}


/*
 * Runs before the other modules of the suite exit (it comes first in
 * the list): the thread pool is gone by now, writes from here on are
 * made in place.
 */
static void
ngx_tce_persist_exit_process(ngx_cycle_t *cycle)
{
    ngx_tce_main_conf_t  *tmcf;

#if (NGX_THREADS)
    /* the background thread finishes what it was given, and stops */
    ngx_tce_background_exit();
#endif

    /* schedules this worker is still building: the others wait for them */
    ngx_tce_sched_zone_exit(cycle);
    ngx_tce_sched_spare_free();
    ngx_tce_zone_scratch_free();

    tmcf = ngx_tce_get_main_conf(cycle);

    if (tmcf != NULL) {
        tmcf->exiting = 1;
    }
}
