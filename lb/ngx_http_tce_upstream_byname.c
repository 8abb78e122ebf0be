/*
 * tce_service $variable: one upstream fronting every service of the
 * registry (e.g. with tce_consul_services, the name mapped from Host).
 * Each worker keeps, per upstream, one conf per service it has routed
 * to: a copy of the upstream's conf bound to that service, with its
 * own read view, so the balancer runs unchanged on it.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_upstream.h"


static void ngx_http_tce_upstream_byname_exit(void *data);


ngx_http_tce_upstream_srv_conf_t *
ngx_http_tce_upstream_byname(ngx_http_request_t *r,
    ngx_http_tce_upstream_srv_conf_t *ucf)
{
    ngx_str_t                           name;
    ngx_uint_t                          i;
    ngx_pool_cleanup_t                 *cln;
    ngx_tce_service_t                  *svc;
    ngx_http_tce_upstream_srv_conf_t  **conf, *c;

    if (ngx_http_complex_value(r, ucf->service_cv, &name) != NGX_OK) {
        return NULL;
    }

    if (ucf->byname) {
        conf = ucf->byname->elts;

        for (i = 0; i < ucf->byname->nelts; i++) {
            if (conf[i]->service_name.len == name.len
                && ngx_memcmp(conf[i]->service_name.data, name.data,
                              name.len) == 0)
            {
                return conf[i];
            }
        }
    }

    /* the zone's list bounds what is cached: never created from here */
    svc = ngx_tce_zone_service(ucf->zone, name.data, name.len, 0);

    if (svc == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tce: service \"%V\" named by \"tce_service\" in "
                      "this upstream is not in the registry", &name);
        return NULL;
    }

    if (ucf->byname == NULL) {
        ucf->byname = ngx_array_create(ngx_cycle->pool, 8, sizeof(c));
        if (ucf->byname == NULL) {
            return NULL;
        }
    }

    c = ngx_palloc(ngx_cycle->pool, sizeof(ngx_http_tce_upstream_srv_conf_t));
    conf = ngx_array_push(ucf->byname);
    cln = ngx_pool_cleanup_add(ngx_cycle->pool, 0);

    if (c == NULL || conf == NULL || cln == NULL) {
        if (conf) {
            ucf->byname->nelts--;
        }

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

    *conf = c;

    return c;
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
