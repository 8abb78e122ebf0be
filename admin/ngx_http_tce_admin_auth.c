/*
 * The admin API's bearer tokens.
 *
 *   tce_admin_token_file <path>;   one token a line, optionally followed
 *                                  by a name: the principal in the audit
 *                                  log ('#' starts a comment line)
 *
 * Writes always need a token; with no token file they are refused
 * (403) with a text saying how to configure one: there is no default
 * token.  tce_admin_read_auth on asks one for reads too.  Only the
 * Authorization header counts: no forwarded header, no socket address
 * grants anything here (nginx's allow/deny do that part).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"


#define NGX_HTTP_TCE_ADMIN_TOKEN_FILE_MAX  (1024 * 1024)


static ngx_int_t ngx_http_tce_admin_unauthorized(ngx_http_request_t *r,
    const char *text);


char *
ngx_http_tce_admin_auth_load(ngx_conf_t *cf,
    ngx_http_tce_admin_loc_conf_t *conf)
{
    u_char                      *buf, *p, *end, *eol;
    size_t                       tok, tok_len, name, name_len;
    ssize_t                      n;
    ngx_fd_t                     fd;
    ngx_int_t                    rc;
    ngx_uint_t                   line;
    ngx_file_t                   file;
    ngx_file_info_t              fi;
    ngx_http_tce_admin_err_t     err;
    ngx_http_tce_admin_token_t  *t;

    if (ngx_conf_full_name(cf->cycle, &conf->token_file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(conf->token_file.data, NGX_FILE_RDONLY,
                       NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "tce_admin_token_file \"%V\" cannot be opened",
                           &conf->token_file);
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.fd = fd;
    file.name = conf->token_file;
    file.log = cf->log;

    buf = NULL;
    n = 0;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || !ngx_is_file(&fi)
        || ngx_file_size(&fi) > NGX_HTTP_TCE_ADMIN_TOKEN_FILE_MAX)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tce_admin_token_file \"%V\" is not a regular "
                           "file of at most 1 MiB", &conf->token_file);
        goto failed;
    }

    buf = ngx_pnalloc(cf->pool, ngx_file_size(&fi) + 1);
    if (buf == NULL) {
        goto failed;
    }

    n = ngx_read_file(&file, buf, ngx_file_size(&fi), 0);
    if (n == NGX_ERROR) {
        goto failed;
    }

    (void) ngx_close_file(fd);
    fd = NGX_INVALID_FILE;

    conf->tokens = ngx_array_create(cf->pool, 4,
                                    sizeof(ngx_http_tce_admin_token_t));
    if (conf->tokens == NULL) {
        return NGX_CONF_ERROR;
    }

    p = buf;
    end = buf + n;
    line = 0;

    while (p < end) {
        line++;

        eol = ngx_strlchr(p, end, '\n');
        if (eol == NULL) {
            eol = end;
        }

        rc = ngx_http_tce_admin_token_line((char *) p, eol - p, &tok,
                                           &tok_len, &name, &name_len, &err);
        if (rc < 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "tce_admin_token_file \"%V\", line %ui: %s",
                               &conf->token_file, line, err.text);
            return NGX_CONF_ERROR;
        }

        if (rc == 1) {
            t = ngx_array_push(conf->tokens);
            if (t == NULL) {
                return NGX_CONF_ERROR;
            }

            t->token.data = p + tok;
            t->token.len = tok_len;
            t->name.data = p + name;
            t->name.len = name_len;
        }

        p = eol + 1;
    }

    if (conf->tokens->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tce_admin_token_file \"%V\" holds no token",
                           &conf->token_file);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

failed:

    if (fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(fd);
    }

    return NGX_CONF_ERROR;
}


ngx_int_t
ngx_http_tce_admin_auth(ngx_http_request_t *r,
    ngx_http_tce_admin_loc_conf_t *conf, ngx_http_tce_admin_ctx_t *ctx,
    ngx_uint_t write)
{
    u_char                      *p;
    size_t                       len;
    ngx_uint_t                   i, found;
    ngx_table_elt_t             *h;
    ngx_http_tce_admin_token_t  *t;

    if (!write && !conf->read_auth) {
        return NGX_OK;
    }

    if (conf->tokens == NULL) {
        return ngx_http_tce_admin_refuse(r, NGX_HTTP_FORBIDDEN,
                   "no_token_file",
                   write ? "writes are refused: no token is configured; "
                           "add \"tce_admin_token_file <path>;\" (one token "
                           "a line, optionally followed by a name) to this "
                           "location and send Authorization: Bearer <token>"
                         : "reads need a token (tce_admin_read_auth on) and "
                           "none is configured: add \"tce_admin_token_file "
                           "<path>;\" to this location");
    }

    h = r->headers_in.authorization;

    if (h == NULL) {
        return ngx_http_tce_admin_unauthorized(r,
                   "this needs Authorization: Bearer <token>");
    }

    p = h->value.data;
    len = h->value.len;

    if (len < 7 || ngx_strncasecmp(p, (u_char *) "Bearer ", 7) != 0) {
        return ngx_http_tce_admin_unauthorized(r,
                   "the Authorization header must be \"Bearer <token>\"");
    }

    p += 7;
    len -= 7;

    while (len && *p == ' ') {
        p++;
        len--;
    }

    /* every token is compared, each in constant time */
    found = (ngx_uint_t) -1;
    t = conf->tokens->elts;

    for (i = 0; i < conf->tokens->nelts; i++) {
        if (ngx_http_tce_admin_token_equal((char *) p, len,
                                           (char *) t[i].token.data,
                                           t[i].token.len)
            && found == (ngx_uint_t) -1)
        {
            found = i;
        }
    }

    if (found == (ngx_uint_t) -1) {
        return ngx_http_tce_admin_unauthorized(r, "the token is not valid");
    }

    if (t[found].name.len) {
        ctx->principal = t[found].name;

    } else {
        ngx_str_set(&ctx->principal, "token");
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_tce_admin_unauthorized(ngx_http_request_t *r, const char *text)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");
    ngx_str_set(&h->value, "Bearer realm=\"tce_admin\"");

    return ngx_http_tce_admin_refuse(r, NGX_HTTP_UNAUTHORIZED,
                                    "unauthorized", text);
}
