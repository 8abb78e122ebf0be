/*
 * The dashboard's files under the admin location:
 *
 *   GET <loc>                   Accept: text/html -> 302 <loc>dashboard/
 *   GET <loc>dashboard          -> 301 <loc>dashboard/
 *   GET <loc>dashboard/         index.html
 *   GET <loc>dashboard/<file>   dashboard.js, dashboard.css
 *
 * The files are compiled in (admin/dashboard/, embedded by embed.py):
 * nothing to install, nothing fetched from elsewhere.  They are static
 * and public (no token): the page asks for the token when a read or a
 * write needs one.  Every answer carries a strict Content-Security-
 * Policy: scripts, styles and requests from this origin only.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"


#define NGX_HTTP_TCE_ADMIN_CSP                                               \
    "default-src 'none'; script-src 'self'; style-src 'self'; "             \
    "connect-src 'self'; img-src 'self'; base-uri 'none'; "                 \
    "form-action 'none'; frame-ancestors 'none'"


static ngx_int_t ngx_http_tce_admin_dashboard_redirect(ngx_http_request_t *r,
    ngx_str_t *loc, ngx_uint_t status);
static ngx_int_t ngx_http_tce_admin_dashboard_send(ngx_http_request_t *r,
    ngx_http_tce_admin_asset_t *a);
static ngx_int_t ngx_http_tce_admin_dashboard_header(ngx_http_request_t *r,
    const char *name, const char *value);
static ngx_uint_t ngx_http_tce_admin_wants_html(ngx_http_request_t *r);


ngx_int_t
ngx_http_tce_admin_dashboard(ngx_http_request_t *r)
{
    u_char                      *p, *end;
    ngx_str_t                    file;
    ngx_http_core_loc_conf_t    *clcf;
    ngx_http_tce_admin_asset_t  *a;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    p = r->uri.data;
    end = r->uri.data + r->uri.len;

    if (r->uri.len < clcf->name.len
        || ngx_strncmp(p, clcf->name.data, clcf->name.len) != 0)
    {
        return NGX_DECLINED;
    }

    p += clcf->name.len;

    if (clcf->name.len == 0 || clcf->name.data[clcf->name.len - 1] != '/') {
        if (p < end && *p == '/') {
            p++;
        }
    }

    if (p == end) {
        if ((r->method & NGX_HTTP_GET) && ngx_http_tce_admin_wants_html(r)) {
            return ngx_http_tce_admin_dashboard_redirect(r, &clcf->name,
                       NGX_HTTP_MOVED_TEMPORARILY);
        }

        return NGX_DECLINED;
    }

    if (end - p < 9 || ngx_strncmp(p, "dashboard", 9) != 0
        || (end - p > 9 && p[9] != '/'))
    {
        return NGX_DECLINED;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        if (ngx_http_tce_admin_dashboard_header(r, "Allow", "GET, HEAD")
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_HTTP_NOT_ALLOWED;
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (end - p == 9) {
        return ngx_http_tce_admin_dashboard_redirect(r, &clcf->name,
                   NGX_HTTP_MOVED_PERMANENTLY);
    }

    file.data = p + 10;
    file.len = end - file.data;

    if (file.len == 0) {
        ngx_str_set(&file, "index.html");
    }

    for (a = ngx_http_tce_admin_dashboard_assets; a->name.len; a++) {
        if (a->name.len == file.len
            && ngx_strncmp(a->name.data, file.data, file.len) == 0)
        {
            return ngx_http_tce_admin_dashboard_send(r, a);
        }
    }

    return NGX_HTTP_NOT_FOUND;
}


/* a browser: Accept names text/html (curl and API clients do not) */
static ngx_uint_t
ngx_http_tce_admin_wants_html(ngx_http_request_t *r)
{
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;
    ngx_uint_t        i;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return 0;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == 6
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Accept", 6) == 0
            && ngx_strlcasestrn(h[i].value.data,
                                h[i].value.data + h[i].value.len,
                                (u_char *) "text/html", 9 - 1)
               != NULL)
        {
            return 1;
        }
    }
}


static ngx_int_t
ngx_http_tce_admin_dashboard_redirect(ngx_http_request_t *r, ngx_str_t *loc,
    ngx_uint_t status)
{
    u_char           *p;
    size_t            len;
    ngx_table_elt_t  *h;

    len = loc->len + sizeof("/dashboard/") - 1;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Location");
    h->value.data = p;

    p = ngx_cpymem(p, loc->data, loc->len);

    if (loc->len == 0 || loc->data[loc->len - 1] != '/') {
        *p++ = '/';
    }

    p = ngx_cpymem(p, "dashboard/", sizeof("dashboard/") - 1);
    h->value.len = p - h->value.data;

    r->headers_out.location = h;

    return status;
}


static ngx_int_t
ngx_http_tce_admin_dashboard_send(ngx_http_request_t *r,
    ngx_http_tce_admin_asset_t *a)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = a->len;
    r->headers_out.content_type = a->type;
    r->headers_out.content_type_len = a->type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (ngx_http_tce_admin_dashboard_header(r, "Content-Security-Policy",
                                            NGX_HTTP_TCE_ADMIN_CSP)
        != NGX_OK
        || ngx_http_tce_admin_dashboard_header(r, "X-Content-Type-Options",
                                               "nosniff")
           != NGX_OK
        || ngx_http_tce_admin_dashboard_header(r, "Referrer-Policy",
                                               "no-referrer")
           != NGX_OK
        || ngx_http_tce_admin_dashboard_header(r, "Cache-Control",
                                               "no-cache")
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = a->data;
    b->last = a->data + a->len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_tce_admin_dashboard_header(ngx_http_request_t *r, const char *name,
    const char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);

    return NGX_OK;
}
