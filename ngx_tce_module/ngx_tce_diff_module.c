/*
 * ngx_tce_diff_module: "tce_diff" (the API diff of a canary against
 * prod, see ngx_tce_diff_mirror.h).  The directive, and the two filters
 * on the client's answer: the header filter decides whether a request
 * is mirrored and starts its job; the body filter copies the answer's
 * first max_body bytes into the job as they pass.  Neither ever holds
 * the answer back.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_tce_diff_mirror.h"
#include "ngx_http_tce_upstream.h"


static void *ngx_tce_diff_create_main_conf(ngx_conf_t *cf);
static void *ngx_tce_diff_create_loc_conf(ngx_conf_t *cf);
static char *ngx_tce_diff_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_tce_diff(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_tce_diff_param(ngx_conf_t *cf, ngx_tce_diff_conf_t *dc,
    ngx_str_t *v);
static char *ngx_tce_diff_methods(ngx_conf_t *cf, ngx_tce_diff_conf_t *dc,
    ngx_str_t *v);
static char *ngx_tce_diff_ignore(ngx_conf_t *cf, ngx_tce_diff_conf_t *dc,
    ngx_str_t *v);
static ngx_int_t ngx_tce_diff_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_tce_diff_init_module(ngx_cycle_t *cycle);
static void ngx_tce_diff_exit_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_tce_diff_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_tce_diff_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_tce_diff_sample(ngx_http_request_t *r,
    ngx_tce_diff_conf_t *conf);
static ngx_int_t ngx_tce_diff_prod_headers(ngx_http_request_t *r,
    ngx_tce_diff_job_t *job);
static void ngx_tce_diff_cleanup(void *data);


static ngx_command_t  ngx_tce_diff_commands[] = {

    { ngx_string("tce_diff"),
      NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_tce_diff,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_tce_diff_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_tce_diff_postconfiguration,        /* postconfiguration */

    ngx_tce_diff_create_main_conf,         /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_tce_diff_create_loc_conf,          /* create location configuration */
    ngx_tce_diff_merge_loc_conf            /* merge location configuration */
};


ngx_module_t  ngx_tce_diff_module = {
    NGX_MODULE_V1,
    &ngx_tce_diff_module_ctx,              /* module context */
    ngx_tce_diff_commands,                 /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_tce_diff_init_module,              /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_tce_diff_exit_process,             /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* the proxy module's (not in a header of its own) */
extern ngx_module_t  ngx_http_proxy_module;


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/* the methods safe to send twice */
static ngx_str_t  ngx_tce_diff_safe[] = {
    ngx_string("GET"), ngx_string("HEAD"), ngx_string("OPTIONS")
};

static ngx_uint_t  ngx_tce_diff_safe_bits[] = {
    NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_OPTIONS
};


static void *
ngx_tce_diff_create_main_conf(ngx_conf_t *cf)
{
    ngx_tce_diff_main_conf_t  *dmcf;

    dmcf = ngx_pcalloc(cf->pool, sizeof(ngx_tce_diff_main_conf_t));
    if (dmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&dmcf->services, cf->pool, 4, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NULL;
    }

    return dmcf;
}


static void *
ngx_tce_diff_create_loc_conf(ngx_conf_t *cf)
{
    /* set by ngx_pcalloc(): diff = NULL (off) */
    return ngx_pcalloc(cf->pool, sizeof(ngx_tce_diff_loc_conf_t));
}


/*
 * Not inherited: a location nested in a tce_diff one proxies where it
 * says.  The check needs proxy_pass's upstream, merged already (the
 * proxy module comes before this one): the first member of the proxy
 * module's location conf is its ngx_http_upstream_conf_t, whose first
 * member is the upstream proxy_pass named.
 */
static char *
ngx_tce_diff_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_tce_diff_loc_conf_t *conf = child;

    ngx_str_t                         *s;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_tce_diff_main_conf_t          *dmcf;
    ngx_http_upstream_conf_t          *ucf;
    ngx_http_upstream_srv_conf_t      *uscf;
    ngx_http_tce_upstream_srv_conf_t  *tucf;

    if (conf->diff == NULL) {
        return NGX_CONF_OK;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    ucf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_proxy_module);
    uscf = ucf ? ucf->upstream : NULL;

    if (clcf->handler == NULL || uscf == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tce_diff\" name=%V in location \"%V\" needs "
                           "\"proxy_pass\" to an upstream with "
                           "\"tce_service\" in the same location",
                           &conf->diff->name, &clcf->name);
        return NGX_CONF_ERROR;
    }

    tucf = uscf->srv_conf
           ? ngx_http_conf_upstream_srv_conf(uscf,
                                             ngx_http_tce_upstream_module)
           : NULL;

    if (tucf == NULL
        || (tucf->service_name.len == 0 && tucf->service_cv == NULL))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tce_diff\" name=%V in location \"%V\": "
                           "upstream \"%V\" has no \"tce_service\": the "
                           "API diff needs a service with canary "
                           "instances", &conf->diff->name, &clcf->name,
                           &uscf->host);
        return NGX_CONF_ERROR;
    }

    conf->diff->service = tucf->service_name;

    if (tucf->service_name.len) {
        dmcf = ngx_http_conf_get_module_main_conf(cf, ngx_tce_diff_module);

        s = ngx_array_push(&dmcf->services);
        if (s == NULL) {
            return NGX_CONF_ERROR;
        }

        *s = tucf->service_name;
    }

    return NGX_CONF_OK;
}


/*
 * tce_diff [sample=<percent>] [methods=GET,HEAD] [ignore_headers=a,b]
 *          [max_body=<size>] [timeout=<time>] name=<label>;
 */
static char *
ngx_tce_diff(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_tce_diff_loc_conf_t *dlcf = conf;

    char                 *rv;
    ngx_str_t            *value;
    ngx_uint_t            i;
    ngx_tce_diff_conf_t  *dc;

    if (dlcf->diff) {
        return "is duplicate";
    }

    dc = ngx_pcalloc(cf->pool, sizeof(ngx_tce_diff_conf_t));
    if (dc == NULL) {
        return NGX_CONF_ERROR;
    }

    dc->sample = 1000;
    dc->methods = NGX_HTTP_GET | NGX_HTTP_HEAD;
    dc->max_body = 64 * 1024;
    dc->timeout = 10000;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        rv = ngx_tce_diff_param(cf, dc, &value[i]);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    if (dc->name.len == 0) {
        return "needs name=<label> (a label of the metrics)";
    }

    dlcf->diff = dc;

    return NGX_CONF_OK;
}


static char *
ngx_tce_diff_param(ngx_conf_t *cf, ngx_tce_diff_conf_t *dc, ngx_str_t *v)
{
    u_char     *p, *dot;
    ssize_t     size;
    ngx_str_t   s;
    ngx_int_t   n, frac;
    ngx_msec_t  ms;

    if (v->len > 5 && ngx_strncmp(v->data, "name=", 5) == 0) {
        s.data = v->data + 5;
        s.len = v->len - 5;

        if (s.len >= NGX_TCE_DIFF_NAME_LEN) {
            goto invalid;
        }

        for (p = s.data; p < s.data + s.len; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'
                  || *p == '.'))
            {
                goto invalid;
            }
        }

        dc->name = s;
        return NGX_CONF_OK;
    }

    if (v->len > 7 && ngx_strncmp(v->data, "sample=", 7) == 0) {
        /* a percent with up to two decimals, "%" allowed */
        s.data = v->data + 7;
        s.len = v->len - 7;

        if (s.data[s.len - 1] == '%') {
            s.len--;
        }

        dot = ngx_strlchr(s.data, s.data + s.len, '.');
        frac = 0;

        if (dot) {
            if (dot == s.data + s.len - 1 || s.data + s.len - dot > 3) {
                goto invalid;
            }

            frac = ngx_atoi(dot + 1, s.data + s.len - dot - 1);
            if (frac == NGX_ERROR) {
                goto invalid;
            }

            if (s.data + s.len - dot == 2) {
                frac *= 10;
            }

            s.len = dot - s.data;
        }

        n = ngx_atoi(s.data, s.len);

        if (n == NGX_ERROR || n * 100 + frac > 10000 || n * 100 + frac == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"tce_diff\": invalid \"%V\" (a percent "
                               "above 0, up to 100)", v);
            return NGX_CONF_ERROR;
        }

        dc->sample = n * 100 + frac;
        return NGX_CONF_OK;
    }

    if (v->len > 8 && ngx_strncmp(v->data, "methods=", 8) == 0) {
        return ngx_tce_diff_methods(cf, dc, v);
    }

    if (v->len > 15 && ngx_strncmp(v->data, "ignore_headers=", 15) == 0) {
        return ngx_tce_diff_ignore(cf, dc, v);
    }

    if (v->len > 9 && ngx_strncmp(v->data, "max_body=", 9) == 0) {
        s.data = v->data + 9;
        s.len = v->len - 9;
        size = ngx_parse_size(&s);

        if (size <= 0 || size > 1024 * 1024) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"tce_diff\": invalid \"%V\" (a size "
                               "above 0, up to 1m)", v);
            return NGX_CONF_ERROR;
        }

        dc->max_body = size;
        return NGX_CONF_OK;
    }

    if (v->len > 8 && ngx_strncmp(v->data, "timeout=", 8) == 0) {
        s.data = v->data + 8;
        s.len = v->len - 8;
        ms = ngx_parse_time(&s, 0);

        if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
            goto invalid;
        }

        dc->timeout = ms;
        return NGX_CONF_OK;
    }

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"tce_diff\": invalid parameter \"%V\"", v);

    return NGX_CONF_ERROR;
}


/* only methods that are safe to send twice: a POST is never mirrored */
static char *
ngx_tce_diff_methods(ngx_conf_t *cf, ngx_tce_diff_conf_t *dc, ngx_str_t *v)
{
    u_char      *p, *last, *comma;
    ngx_str_t    m;
    ngx_uint_t   i, bits;

    bits = 0;
    p = v->data + 8;
    last = v->data + v->len;

    while (p < last) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        m.data = p;
        m.len = comma - p;

        for (i = 0; i < sizeof(ngx_tce_diff_safe_bits) / sizeof(ngx_uint_t);
             i++)
        {
            if (m.len == ngx_tce_diff_safe[i].len
                && ngx_strncmp(m.data, ngx_tce_diff_safe[i].data, m.len) == 0)
            {
                bits |= ngx_tce_diff_safe_bits[i];
                break;
            }
        }

        if (i == sizeof(ngx_tce_diff_safe_bits) / sizeof(ngx_uint_t)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"tce_diff\": method \"%V\" cannot be "
                               "mirrored: only GET, HEAD and OPTIONS are "
                               "safe to send twice", &m);
            return NGX_CONF_ERROR;
        }

        p = comma + 1;
    }

    if (bits == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tce_diff\": invalid \"%V\"", v);
        return NGX_CONF_ERROR;
    }

    dc->methods = bits;

    return NGX_CONF_OK;
}


static char *
ngx_tce_diff_ignore(ngx_conf_t *cf, ngx_tce_diff_conf_t *dc, ngx_str_t *v)
{
    u_char      *p, *last, *comma, *name;
    size_t       len;
    ngx_uint_t   n, i;

    p = v->data + 15;
    last = v->data + v->len;

    n = 1;
    for (name = p; name < last; name++) {
        n += (*name == ',');
    }

    dc->ignore.names = ngx_palloc(cf->pool, n * sizeof(char *));
    dc->ignore.lens = ngx_palloc(cf->pool, n * sizeof(size_t));

    if (dc->ignore.names == NULL || dc->ignore.lens == NULL) {
        return NGX_CONF_ERROR;
    }

    while (p < last) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        len = comma - p;
        name = ngx_pnalloc(cf->pool, len + 1);
        if (name == NULL) {
            return NGX_CONF_ERROR;
        }

        for (i = 0; i < len; i++) {
            if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z')
                  || (p[i] >= '0' && p[i] <= '9') || p[i] == '-'
                  || p[i] == '_'))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"tce_diff\": invalid header name in "
                                   "\"%V\"", v);
                return NGX_CONF_ERROR;
            }

            name[i] = ngx_tolower(p[i]);
        }

        if (len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"tce_diff\": empty header name in \"%V\"",
                               v);
            return NGX_CONF_ERROR;
        }

        name[len] = '\0';
        dc->ignore.names[dc->ignore.n] = (char *) name;
        dc->ignore.lens[dc->ignore.n++] = len;

        p = comma + 1;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_tce_diff_postconfiguration(ngx_conf_t *cf)
{
    ngx_tce_main_conf_t       *tmcf;
    ngx_tce_diff_main_conf_t  *dmcf;

    dmcf = ngx_http_conf_get_module_main_conf(cf, ngx_tce_diff_module);
    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_tce_module);

    dmcf->tmcf = tmcf;
    dmcf->zone = tmcf->zone;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_tce_diff_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_tce_diff_body_filter;

    return NGX_OK;
}


/* curl's global state is counted: one more user per configuration */
static ngx_int_t
ngx_tce_diff_init_module(ngx_cycle_t *cycle)
{
    CURLcode  rc;

    rc = curl_global_init(CURL_GLOBAL_DEFAULT);

    if (rc != CURLE_OK) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "tce diff: curl_global_init() failed: %s",
                      curl_easy_strerror(rc));
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_tce_diff_exit_process(ngx_cycle_t *cycle)
{
    ngx_tce_diff_main_conf_t  *dmcf;

    dmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_tce_diff_module);

    if (dmcf && dmcf->worker) {
        ngx_tce_diff_worker_free(dmcf->worker);
        dmcf->worker = NULL;
    }
}


static ngx_int_t
ngx_tce_diff_header_filter(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_tce_diff_ctx_t       *ctx;
    ngx_tce_diff_job_t       *job;
    ngx_tce_diff_loc_conf_t  *dlcf;

    if (r != r->main || r->upstream == NULL) {
        return ngx_http_next_header_filter(r);
    }

    dlcf = ngx_http_get_module_loc_conf(r, ngx_tce_diff_module);

    if (dlcf->diff) {
        ngx_tce_diff_sample(r, dlcf->diff);
    }

    rc = ngx_http_next_header_filter(r);

    /*
     * nginx's own header filter, further down, decides that an answer
     * has no body (HEAD, 204, 304): no last buffer will pass then
     */
    ctx = ngx_http_get_module_ctx(r, ngx_tce_diff_module);

    if (ctx && ctx->job && r->header_only) {
        job = ctx->job;
        ctx->job = NULL;
        ngx_tce_diff_job_prod_done(job, NULL);
    }

    return rc;
}


/*
 * A request is mirrored when its method is listed, it has no body, it is
 * sampled, the worker has room for a job, and prod answered it in a
 * cluster that has a routable canary instance.  The second prod answer
 * comes from another prod instance when there is one (round robin over
 * the group's members), else from the same one: its noise (timestamps,
 * ids, order) shows all the same.
 */
static void
ngx_tce_diff_sample(ngx_http_request_t *r, ngx_tce_diff_conf_t *conf)
{
    ngx_buf_t                          *req;
    ngx_uint_t                          k;
    ngx_pool_cleanup_t                 *cln;
    ngx_tce_diff_ctx_t                 *ctx;
    ngx_tce_diff_job_t                 *job;
    ngx_tce_diff_worker_t              *w;
    ngx_tce_diff_main_conf_t           *dmcf;
    ngx_http_tce_upstream_peer_t       *canary, *prod2;
    ngx_http_tce_upstream_group_t      *g;
    ngx_http_tce_upstream_peer_data_t  *pd;

    if (!(r->method & conf->methods)
        || r->headers_in.content_length_n > 0 || r->headers_in.chunked)
    {
        return;
    }

    if (conf->sample < 10000
        && (ngx_uint_t) (ngx_random() % 10000) >= conf->sample)
    {
        return;
    }

    pd = ngx_http_get_module_ctx(r, ngx_http_tce_upstream_module);

    if (pd == NULL || pd->last == NULL || pd->cluster == NULL
        || pd->view == NULL || pd->last->inst.env != NGX_TCE_ENV_PROD)
    {
        return;
    }

    if (r->upstream->request_bufs == NULL
        || !ngx_buf_in_memory(r->upstream->request_bufs->buf))
    {
        return;
    }

    g = &pd->cluster->env[NGX_TCE_ENV_CANARY];

    if (g->nmembers == 0) {
        return;
    }

    /*
     * a mirror's sockets need nginx connections: curl fails the whole
     * multi handle when one cannot get one, so leave a margin
     */
    if (ngx_cycle->free_connection_n < 16) {
        return;
    }

    dmcf = ngx_http_get_module_main_conf(r, ngx_tce_diff_module);

    w = ngx_tce_diff_worker(dmcf, r->connection->log);

    if (w == NULL || w->njobs >= NGX_TCE_DIFF_MAX_JOBS) {
        return;
    }

    k = w->next++;

    canary = &pd->view->peers[g->members[k % g->nmembers]];

    g = &pd->cluster->env[NGX_TCE_ENV_PROD];
    prod2 = pd->last;

    if (g->nmembers > 1) {
        prod2 = &pd->view->peers[g->members[k % g->nmembers]];

        if (prod2 == pd->last) {
            prod2 = &pd->view->peers[g->members[(k + 1) % g->nmembers]];
        }
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_tce_diff_ctx_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (ctx == NULL || cln == NULL) {
        return;
    }

    /* its prod side first: nothing of the request is needed later */

    req = r->upstream->request_bufs->buf;

    job = ngx_tce_diff_job_start(r, conf, w, req, &pd->conf->service_name,
                                 &pd->cluster_name, prod2->inst.addr,
                                 canary->inst.addr);
    if (job == NULL) {
        return;
    }

    ctx->job = job;
    job->ctx = ctx;
    cln->handler = ngx_tce_diff_cleanup;
    cln->data = ctx;
    ngx_http_set_ctx(r, ctx, ngx_tce_diff_module);

    if (ngx_tce_diff_prod_headers(r, job) != NGX_OK) {
        ctx->job = NULL;
        ngx_tce_diff_job_prod_done(job, "out of memory");
    }
}


/* the client's status and headers as the upstream sent them */
static ngx_int_t
ngx_tce_diff_prod_headers(ngx_http_request_t *r, ngx_tce_diff_job_t *job)
{
    u_char               *p;
    ngx_uint_t            i;
    ngx_list_part_t      *part;
    ngx_table_elt_t      *h;
    ngx_tce_diff_side_t  *side;
    ngx_tce_diff_header_t  *dh;

    side = &job->side[NGX_TCE_DIFF_PROD];
    side->status = r->headers_out.status;

    if (r->headers_out.content_type.len) {
        dh = &side->hdrs[side->nhdrs++];
        dh->name = "content-type";
        dh->name_len = 12;
        dh->value = (char *) r->headers_out.content_type.data;
        dh->value_len = r->headers_out.content_type.len;

        /* the request's pool may go first */
        p = ngx_pnalloc(job->pool, dh->value_len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, dh->value, dh->value_len);
        dh->value = (char *) p;
    }

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0 || side->nhdrs == NGX_TCE_DIFF_MAX_HEADERS) {
            continue;
        }

        p = ngx_pnalloc(job->pool, h[i].key.len + h[i].value.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        dh = &side->hdrs[side->nhdrs++];
        ngx_strlow(p, h[i].key.data, h[i].key.len);
        dh->name = (char *) p;
        dh->name_len = h[i].key.len;

        p += h[i].key.len;
        ngx_memcpy(p, h[i].value.data, h[i].value.len);
        dh->value = (char *) p;
        dh->value_len = h[i].value.len;
    }

    return NGX_OK;
}


/* copies the answer's first max_body bytes as they pass */
static ngx_int_t
ngx_tce_diff_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    size_t                n;
    ngx_buf_t            *b;
    ngx_chain_t          *cl;
    ngx_tce_diff_ctx_t   *ctx;
    ngx_tce_diff_job_t   *job;
    ngx_tce_diff_side_t  *side;

    ctx = ngx_http_get_module_ctx(r, ngx_tce_diff_module);

    if (ctx == NULL || ctx->job == NULL || r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    job = ctx->job;
    side = &job->side[NGX_TCE_DIFF_PROD];

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (!side->cut && ngx_buf_size(b) > 0) {

            if (!ngx_buf_in_memory(b)) {
                ctx->job = NULL;
                ngx_tce_diff_job_prod_done(job, "the client's answer went "
                                           "to a temporary file");
                break;
            }

            n = ngx_min((size_t) (b->last - b->pos),
                        job->conf->max_body - side->len);

            ngx_memcpy(side->body + side->len, b->pos, n);
            side->len += n;

            if (n < (size_t) (b->last - b->pos)) {
                side->cut = 1;
            }
        }

        if (b->last_buf) {
            ctx->job = NULL;
            ngx_tce_diff_job_prod_done(job, NULL);
            break;
        }
    }

    return ngx_http_next_body_filter(r, in);
}


static void
ngx_tce_diff_cleanup(void *data)
{
    ngx_tce_diff_ctx_t  *ctx = data;

    ngx_tce_diff_job_t  *job;

    job = ctx->job;

    if (job) {
        ctx->job = NULL;
        ngx_tce_diff_job_prod_done(job, "the client's request ended before "
                                   "its answer did");
    }
}
