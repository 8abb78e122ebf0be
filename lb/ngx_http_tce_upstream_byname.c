/*
 * tce_service $variable: one upstream fronting every service of the
 * registry (e.g. with tce_consul_services, the name mapped from Host).
 * Each worker keeps, per upstream, one conf per service it has routed
 * to: a copy of the upstream's conf bound to that service, with its
 * own read view, so the balancer runs unchanged on it.  They are found
 * by name in a red-black tree: O(log n) in the services routed to.
 *
 * An entry holds its service in the zone (ngx_tce_zone_hold()), so the
 * service is not reclaimed under it.  An entry unused for
 * NGX_HTTP_TCE_UPSTREAM_BYNAME_IDLE whose service is no longer watched
 * nor named by the configuration (it left Consul's catalog) is dropped
 * by the worker's sweep timer, letting the service go; the entry itself
 * is freed when the last request using it ends.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_upstream.h"


#define NGX_HTTP_TCE_UPSTREAM_BYNAME_IDLE   2000    /* ms */


typedef struct {
    ngx_str_node_t                      sn;     /* key: the service name */
    ngx_http_tce_upstream_srv_conf_t    conf;
    ngx_rbtree_t                       *tree;
    ngx_uint_t                          refs;   /* the tree's, requests' */
    ngx_msec_t                          used;   /* its last request */
    unsigned                            dropped:1;
    u_char                              name[NGX_TCE_SERVICE_LEN];
} ngx_http_tce_upstream_byname_t;


static ngx_int_t ngx_http_tce_upstream_byname_init(
    ngx_http_tce_upstream_srv_conf_t *ucf);
static ngx_int_t ngx_http_tce_upstream_byname_use(ngx_http_request_t *r,
    ngx_http_tce_upstream_byname_t *bn);
static void ngx_http_tce_upstream_byname_done(void *data);
static void ngx_http_tce_upstream_byname_drop(
    ngx_http_tce_upstream_byname_t *bn);
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
        return ngx_http_tce_upstream_byname_use(r, bn) == NGX_OK
               ? &bn->conf : NULL;
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

    /* held while cached: not reclaimed under this worker */
    if (ngx_tce_zone_hold(ucf->zone, svc) != NGX_OK) {
        return NULL;
    }

    bn = ngx_calloc(sizeof(ngx_http_tce_upstream_byname_t),
                    r->connection->log);
    if (bn == NULL) {
        ngx_tce_zone_release(ucf->zone, svc);
        return NULL;
    }

    c = &bn->conf;
    *c = *ucf;
    c->service_cv = NULL;
    c->byname = NULL;
    c->view = NULL;
    c->service = svc;

    /* a copy: a request may outlive the entry, and the service */
    ngx_memcpy(bn->name, svc->name, svc->name_len);
    c->service_name.len = svc->name_len;
    c->service_name.data = bn->name;

    bn->tree = ucf->byname;
    bn->refs = 1;
    bn->sn.node.key = hash;
    bn->sn.str = c->service_name;
    ngx_rbtree_insert(ucf->byname, &bn->sn.node);

    return ngx_http_tce_upstream_byname_use(r, bn) == NGX_OK ? c : NULL;
}


/* the request uses bn: it stays allocated until the request ends */

static ngx_int_t
ngx_http_tce_upstream_byname_use(ngx_http_request_t *r,
    ngx_http_tce_upstream_byname_t *bn)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_tce_upstream_byname_done;
    cln->data = bn;

    bn->refs++;
    bn->used = ngx_current_msec;

    return NGX_OK;
}


static void
ngx_http_tce_upstream_byname_done(void *data)
{
    ngx_http_tce_upstream_byname_t *bn = data;

    if (--bn->refs == 0) {
        ngx_free(bn);
    }
}


/* out of the tree: its view and its hold on the service go */

static void
ngx_http_tce_upstream_byname_drop(ngx_http_tce_upstream_byname_t *bn)
{
    ngx_rbtree_delete(bn->tree, &bn->sn.node);
    bn->dropped = 1;

    if (bn->conf.view) {
        ngx_http_tce_upstream_view_release(bn->conf.view);
        bn->conf.view = NULL;
    }

    ngx_tce_zone_release(bn->conf.zone, bn->conf.service);

    ngx_http_tce_upstream_byname_done(bn);
}


void
ngx_http_tce_upstream_byname_sweep(ngx_http_tce_upstream_srv_conf_t *ucf)
{
    ngx_tce_service_t               *svc;
    ngx_rbtree_node_t               *node, *next;
    ngx_http_tce_upstream_byname_t  *bn;

    if (ucf->byname == NULL
        || ucf->byname->root == ucf->byname->sentinel)
    {
        return;
    }

    for (node = ngx_rbtree_min(ucf->byname->root, ucf->byname->sentinel);
         node;
         node = next)
    {
        next = ngx_rbtree_next(ucf->byname, node);
        bn = (ngx_http_tce_upstream_byname_t *) node;
        svc = bn->conf.service;

        if (svc->pinned || svc->disc_watched
            || ngx_current_msec - bn->used
               < NGX_HTTP_TCE_UPSTREAM_BYNAME_IDLE)
        {
            continue;
        }

        ngx_http_tce_upstream_byname_drop(bn);
    }
}


static ngx_int_t
ngx_http_tce_upstream_byname_init(ngx_http_tce_upstream_srv_conf_t *ucf)
{
    ngx_rbtree_node_t   *sentinel;
    ngx_pool_cleanup_t  *cln;

    ucf->byname = ngx_palloc(ngx_cycle->pool, sizeof(ngx_rbtree_t));
    sentinel = ngx_palloc(ngx_cycle->pool, sizeof(ngx_rbtree_node_t));
    cln = ngx_pool_cleanup_add(ngx_cycle->pool, 0);

    if (ucf->byname == NULL || sentinel == NULL || cln == NULL) {
        ucf->byname = NULL;
        return NGX_ERROR;
    }

    cln->handler = ngx_http_tce_upstream_byname_exit;
    cln->data = ucf;

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
        (void) ngx_http_tce_upstream_view_get(&bn->conf, log);
    }
}


static void
ngx_http_tce_upstream_byname_exit(void *data)
{
    ngx_http_tce_upstream_srv_conf_t *ucf = data;

    ngx_rbtree_t  *tree;

    tree = ucf->byname;

    /* the worker exits: every entry goes (no request is left) */
    while (tree && tree->root != tree->sentinel) {
        ngx_http_tce_upstream_byname_drop(
            (ngx_http_tce_upstream_byname_t *)
                ngx_rbtree_min(tree->root, tree->sentinel));
    }
}
