/*
 * The admin API's view of the API diff:
 *
 *   GET v1/services/<psm>/clusters/<cluster>/diff
 *
 * the cluster's tce_diff outcomes (ngx_tce_diff.h): totals, the match
 * ratio, counts per location, the last mismatches.  404 no_diff when no
 * tce_diff location covers the service.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_tce_diff.h"


ngx_int_t
ngx_http_tce_admin_diff(ngx_http_request_t *r, ngx_http_tce_admin_ctx_t *ctx)
{
    json_t      *root;
    ngx_str_t    service;
    ngx_uint_t   declined;

    service.data = (u_char *) ctx->svc->name;
    service.len = ctx->svc->name_len;

    root = ngx_tce_diff_json(&service, &ctx->cluster, &declined);

    if (root == NULL) {
        if (!declined) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_tce_admin_error(r, NGX_HTTP_NOT_FOUND, "no_diff",
                                        "no tce_diff location proxies to "
                                        "this service");
    }

    if (json_object_set_new(root, "service",
                            ngx_http_tce_admin_jstr(ctx->svc->name,
                                                    ctx->svc->name_len))
        != 0
        || json_object_set_new(root, "cluster",
                               ngx_http_tce_admin_jstr(ctx->cluster.data,
                                                       ctx->cluster.len))
           != 0)
    {
        json_decref(root);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_tce_admin_send(r, NGX_HTTP_OK, root);
}
