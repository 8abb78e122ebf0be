/*
 * $tce_service, $tce_cluster, $tce_env, $tce_instance: what the
 * balancer chose for the request, for access logs.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_upstream.h"


#define NGX_HTTP_TCE_VAR_SERVICE   0
#define NGX_HTTP_TCE_VAR_CLUSTER   1
#define NGX_HTTP_TCE_VAR_ENV       2
#define NGX_HTTP_TCE_VAR_INSTANCE  3


static ngx_int_t ngx_http_tce_upstream_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_tce_upstream_vars[] = {

    { ngx_string("tce_service"), NULL, ngx_http_tce_upstream_variable,
      NGX_HTTP_TCE_VAR_SERVICE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tce_cluster"), NULL, ngx_http_tce_upstream_variable,
      NGX_HTTP_TCE_VAR_CLUSTER, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tce_env"), NULL, ngx_http_tce_upstream_variable,
      NGX_HTTP_TCE_VAR_ENV, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tce_instance"), NULL, ngx_http_tce_upstream_variable,
      NGX_HTTP_TCE_VAR_INSTANCE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_tce_upstream_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_tce_upstream_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_tce_upstream_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    const char                         *env;
    ngx_str_t                           s;
    ngx_http_tce_upstream_peer_data_t  *pd;

    pd = ngx_http_get_module_ctx(r, ngx_http_tce_upstream_module);

    if (pd == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {

    case NGX_HTTP_TCE_VAR_SERVICE:
        s = pd->conf->service_name;
        break;

    case NGX_HTTP_TCE_VAR_CLUSTER:
        s = pd->cluster_name;
        break;

    case NGX_HTTP_TCE_VAR_ENV:
        env = ngx_tce_env_name(pd->env);
        s.data = (u_char *) env;
        s.len = ngx_strlen(env);
        break;

    default: /* NGX_HTTP_TCE_VAR_INSTANCE */
        if (pd->last == NULL) {
            v->not_found = 1;
            return NGX_OK;
        }

        s = pd->last->id;
        break;
    }

    v->len = s.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = s.data;

    return NGX_OK;
}
