/*
 * Error-log lines about names a request chose (tce_service $var,
 * cluster=$var), and the per-request lines naming a service (every
 * instance tried): the names are escaped to printable ASCII and cut,
 * and the lines are rate-limited per upstream and worker, so that a
 * client sending made-up names can neither forge log lines nor flood
 * the log.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_upstream.h"
#include "ngx_tce_text.h"


ngx_uint_t
ngx_http_tce_upstream_log_allow(ngx_http_tce_upstream_log_limit_t *limit,
    ngx_uint_t *left_out)
{
    time_t  now;

    now = ngx_time();

    if (now - limit->window >= NGX_HTTP_TCE_UPSTREAM_LOG_WINDOW
        || now < limit->window)
    {
        limit->window = now;
        limit->lines = 0;
    }

    if (limit->lines >= NGX_HTTP_TCE_UPSTREAM_LOG_BURST) {
        limit->left_out++;
        return 0;
    }

    limit->lines++;
    *left_out = limit->left_out;
    limit->left_out = 0;

    return 1;
}


ngx_str_t *
ngx_http_tce_upstream_log_name(ngx_str_t *out, u_char *buf, ngx_str_t *name)
{
    size_t  len;

    len = ngx_min(name->len, NGX_HTTP_TCE_UPSTREAM_NAME_CUT);

    out->data = buf;
    out->len = ngx_tce_text_escape((char *) buf,
                                   NGX_HTTP_TCE_UPSTREAM_NAME_LEN - 3,
                                   (const char *) name->data, len);

    if (len < name->len) {
        out->len = ngx_cpymem(buf + out->len, "...", 3) - buf;
    }

    return out;
}


ngx_str_t *
ngx_http_tce_upstream_log_left_out(ngx_str_t *out, u_char *buf,
    ngx_uint_t n)
{
    out->data = buf;
    out->len = (n == 0) ? 0
               : (size_t) (ngx_sprintf(buf, " (%ui like it left out)", n)
                           - buf);
    return out;
}


void
ngx_http_tce_upstream_log_tried(ngx_http_tce_upstream_peer_data_t *pd,
    ngx_log_t *log, ngx_int_t other)
{
    u_char      num[NGX_INT_T_LEN + 32];
    u_char      svc[NGX_HTTP_TCE_UPSTREAM_NAME_LEN];
    u_char      cl[NGX_HTTP_TCE_UPSTREAM_NAME_LEN];
    ngx_str_t   esvc, ecl, more;
    ngx_uint_t  left_out, level;

    /* a request chooses the names (tce_service $var, cluster=$var) */
    if (!ngx_http_tce_upstream_log_allow(pd->conf->log_limit, &left_out)) {
        return;
    }

    level = (other == NGX_ERROR) ? NGX_LOG_ERR : NGX_LOG_WARN;

    ngx_log_error(level, log, 0,
                  "tce: every instance of service \"%V\" cluster \"%V\" "
                  "env %s failed or was tried%s%s%s%V",
                  ngx_http_tce_upstream_log_name(&esvc, svc,
                                                 &pd->conf->service_name),
                  ngx_http_tce_upstream_log_name(&ecl, cl, &pd->cluster_name),
                  ngx_tce_env_name(pd->env),
                  other == NGX_ERROR ? "" : ", env ",
                  other == NGX_ERROR ? "" : ngx_tce_env_name(other),
                  other == NGX_ERROR ? "" : " serves",
                  ngx_http_tce_upstream_log_left_out(&more, num, left_out));
}
