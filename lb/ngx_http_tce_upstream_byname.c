/*
 * tce_service $variable: one upstream fronting every service of the
 * registry (e.g. with tce_consul_services, the name mapped from Host).
 * Each worker keeps, per upstream, one conf per service it has routed
 * to: a copy of the upstream's conf bound to that service, with its
 * own read view, so the balancer runs unchanged on it.  They are found
 * by name in a red-black tree: O(log n) in the services routed to.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_upstream.h"


typedef struct {
    ngx_str_node_t                      sn;     /* key: the service name */
    ngx_http_tce_upstream_srv_conf_t   *conf;
} ngx_http_tce_upstream_byname_t;


static ngx_int_t ngx_http_tce_upstream_byname_init(
    ngx_http_tce_upstream_srv_conf_t *ucf);
static void ngx_http_tce_upstream_byname_exit(void *data);


ngx_http_tce_upstream_srv_conf_t *
ngx_http_tce_upstream_byname(ngx_http_request_t *r,
    ngx_http_tce_upstream_srv_conf_t *ucf)
{
    u_char                             buf[NGX_HTTP_TCE_UPSTREAM_NAME_LEN];
    u_char                             num[NGX_INT_T_LEN + 32];
    uint32_t                           hash;
    ngx_str_t                          name, esc, more;
    ngx_uint_t                         left_out;
    ngx_pool_cleanup_t                *cln;
    ngx_tce_service_t                 *svc;
    ngx_http_tce_upstream_srv_conf_t  *c;
    ngx_http_tce_upstream_byname_t    *bn;

    if (ngx_http_complex_value(r, ucf->service_cv, &name) != NGX_OK) {
        return NULL;
    }

    if (ucf->byname == NULL && ngx_http_tce_upstream_byname_init(ucf)
                               != NGX_OK)
    {
        return NULL;
    }

    hash = ngx_crc32_short(name.data, name.len);

    bn = (ngx_http_tce_upstream_byname_t *)
             ngx_str_rbtree_lookup(ucf->byname, &name, hash);

    if (bn) {
        return bn->conf;
    }

    /* the zone's list bounds what is cached: never created from here */
    svc = ngx_tce_zone_service(ucf->zone, name.data, name.len, 0);

    if (svc == NULL) {
        if (ngx_http_tce_upstream_log_allow(ucf->log_limit, &left_out)) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "tce: service \"%V\" named by \"tce_service\" "
                          "in upstream \"%V\" is not in the registry%V",
                          ngx_http_tce_upstream_log_name(&esc, buf, &name),
                          &r->upstream->upstream->host,
                          ngx_http_tce_upstream_log_left_out(&more, num,
                                                             left_out));
        }

        /* this request only: names the service asked for ($tce_service) */
        c = ngx_palloc(r->pool, sizeof(ngx_http_tce_upstream_srv_conf_t));
        if (c == NULL) {
            return NULL;
        }

        *c = *ucf;
        c->service_cv = NULL;
        c->byname = NULL;
        c->view = NULL;
        c->service_name = name;

        return c;
    }

    c = ngx_palloc(ngx_cycle->pool, sizeof(ngx_http_tce_upstream_srv_conf_t));
    bn = ngx_palloc(ngx_cycle->pool, sizeof(ngx_http_tce_upstream_byname_t));
    cln = ngx_pool_cleanup_add(ngx_cycle->pool, 0);

    if (c == NULL || bn == NULL || cln == NULL) {
        return NULL;
    }

    *c = *ucf;
    c->service_cv = NULL;
    c->byname = NULL;
    c->view = NULL;
    c->service = svc;
    c->service_name.len = svc->name_len;
    c->service_name.data = svc->name;   /* in the zone: never freed */

    cln->handler = ngx_http_tce_upstream_byname_exit;
    cln->data = c;

    bn->sn.node.key = hash;
    bn->sn.str = c->service_name;
    bn->conf = c;
    ngx_rbtree_insert(ucf->byname, &bn->sn.node);

    return c;
}


static ngx_int_t
ngx_http_tce_upstream_byname_init(ngx_http_tce_upstream_srv_conf_t *ucf)
{
    ngx_rbtree_node_t  *sentinel;

    ucf->byname = ngx_palloc(ngx_cycle->pool, sizeof(ngx_rbtree_t));
    sentinel = ngx_palloc(ngx_cycle->pool, sizeof(ngx_rbtree_node_t));

    if (ucf->byname == NULL || sentinel == NULL) {
        ucf->byname = NULL;
        return NGX_ERROR;
    }

    ngx_rbtree_init(ucf->byname, sentinel, ngx_str_rbtree_insert_value);

    return NGX_OK;
}


void
ngx_http_tce_upstream_byname_refresh(ngx_http_tce_upstream_srv_conf_t *ucf,
    ngx_log_t *log)
{
    ngx_rbtree_node_t               *node;
    ngx_http_tce_upstream_byname_t  *bn;

    if (ucf->byname == NULL
        || ucf->byname->root == ucf->byname->sentinel)
    {
        return;
    }

    for (node = ngx_rbtree_min(ucf->byname->root, ucf->byname->sentinel);
         node;
         node = ngx_rbtree_next(ucf->byname, node))
    {
        bn = (ngx_http_tce_upstream_byname_t *) node;
        (void) ngx_http_tce_upstream_view_get(bn->conf, log);
    }
}


static void
ngx_http_tce_upstream_byname_exit(void *data)
{
    ngx_http_tce_upstream_srv_conf_t *c = data;

    if (c->view) {
        ngx_http_tce_upstream_view_release(c->view);
        c->view = NULL;
    }
}
