/*
 * The admin API's audit lines in a Redis stream, so that a fleet has
 * one history: XADD <prefix>audit MAXLEN ~ <audit_maxlen> * line <json>
 * on the writing worker's command connection (opened on demand, as for
 * a write).  Nobody waits for the answer: a failure (Redis down, an
 * error reply) is logged and counted in the fleet status
 * (audit_stream_errors) and not retried; the audit file, when
 * configured, keeps every line whatever Redis does.  Read it with
 * XRANGE <prefix>audit - + (oldest first) or XREVRANGE.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_tce_redis.h"


static void ngx_tce_redis_audit_reply(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data);


void
ngx_tce_redis_audit(ngx_cycle_t *cycle, const char *line, size_t len,
    ngx_log_t *log)
{
    u_char                      key[NGX_TCE_REDIS_PREFIX_MAX + 8];
    u_char                      max[NGX_INT_T_LEN];
    size_t                      argl[8];
    const char                 *argv[8];
    ngx_tce_redis_main_conf_t  *rmcf;

    if (ngx_get_conf(cycle->conf_ctx, ngx_http_module) == NULL) {
        return;
    }

    rmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_tce_redis_module);

    if (rmcf == NULL || !rmcf->enabled || rmcf->audit_maxlen == 0) {
        return;
    }

    if (rmcf->ctx == NULL) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "tce redis: audit line not added to the stream: "
                      "the fleet store is not started in this worker");
        return;
    }

    argv[0] = "XADD";
    argl[0] = 4;
    argv[1] = (char *) key;
    argl[1] = ngx_sprintf(key, "%Vaudit", &rmcf->prefix) - key;
    argv[2] = "MAXLEN";
    argl[2] = 6;
    argv[3] = "~";
    argl[3] = 1;
    argv[4] = (char *) max;
    argl[4] = ngx_sprintf(max, "%i", rmcf->audit_maxlen) - max;
    argv[5] = "*";
    argl[5] = 1;
    argv[6] = "line";
    argl[6] = 4;
    argv[7] = line;
    argl[7] = len;

    if (ngx_tce_redis_command(&rmcf->ctx->cmd, ngx_tce_redis_audit_reply,
                              rmcf->ctx, 8, argv, argl)
        != NGX_OK)
    {
        ngx_tce_redis_audit_reply(&rmcf->ctx->cmd, NULL,
                                  (char *) rmcf->ctx->cmd.err, rmcf->ctx);
    }
}


static void
ngx_tce_redis_audit_reply(ngx_tce_redis_conn_t *rc, redisReply *reply,
    const char *err, void *data)
{
    ngx_tce_redis_ctx_t *ctx = data;

    if (reply && reply->type == REDIS_REPLY_STRING) {
        (void) ngx_atomic_fetch_add(&ctx->sh->audit_added, 1);
        return;
    }

    if (reply) {
        err = (reply->type == REDIS_REPLY_ERROR) ? reply->str
                                                 : "unexpected answer";
    }

    (void) ngx_atomic_fetch_add(&ctx->sh->audit_errors, 1);

    ngx_log_error(NGX_LOG_WARN, rc->log, 0,
                  "tce redis: audit line not added to the stream "
                  "\"%Vaudit\": %s (the audit file keeps it)",
                  &rc->rmcf->prefix, err ? err : "unknown error");
}
