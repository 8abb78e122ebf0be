/*
 * The state file (tce_state) as the admin API's store.
 *
 * A write loads the file, changes it, writes it whole (atomically:
 * ngx_tce_state_write) and only then changes the zone.  The file's
 * fingerprint (inode, size, mtime) when this configuration loaded it,
 * or when the API last wrote it, is kept in the tce_admin zone: a file
 * that differs (an operator's hand edit not yet reloaded) is never
 * overwritten; the write answers 409 and the operator reloads first.
 * Writers of every worker take turns on the tce_admin zone's mutex.
 *
 * The write (with its fsyncs) runs on the event loop of the worker
 * that serves the request: not yet in a thread pool.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_admin_store.h"


ngx_int_t
ngx_http_tce_admin_fp(ngx_str_t *path, ngx_http_tce_admin_fp_t *fp)
{
    struct stat  sb;

    ngx_memzero(fp, sizeof(ngx_http_tce_admin_fp_t));

    if (stat((char *) path->data, &sb) != 0) {
        return ngx_errno == NGX_ENOENT ? NGX_OK : NGX_ERROR;
    }

    fp->exists = 1;
    fp->ino = sb.st_ino;
    fp->size = sb.st_size;
    fp->mtime = sb.st_mtim.tv_sec;
    fp->mtime_ns = sb.st_mtim.tv_nsec;

    return NGX_OK;
}


ngx_uint_t
ngx_http_tce_admin_fp_equal(ngx_http_tce_admin_fp_t *a,
    ngx_http_tce_admin_fp_t *b)
{
    return a->exists == b->exists
           && (!a->exists
               || (a->ino == b->ino && a->size == b->size
                   && a->mtime == b->mtime && a->mtime_ns == b->mtime_ns));
}


void
ngx_http_tce_admin_store_lock(ngx_http_request_t *r)
{
    ngx_http_tce_admin_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_tce_admin_api_module);

    ngx_shmtx_lock(&amcf->shpool->mutex);
}


void
ngx_http_tce_admin_store_unlock(ngx_http_request_t *r)
{
    ngx_http_tce_admin_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_tce_admin_api_module);

    ngx_shmtx_unlock(&amcf->shpool->mutex);
}


ngx_int_t
ngx_http_tce_admin_store_load(ngx_http_request_t *r, ngx_tce_state_t *st)
{
    int                              rc;
    char                             err[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    u_char                           text[NGX_HTTP_TCE_ADMIN_TEXT_LEN + 64];
    ngx_http_tce_admin_fp_t          now;
    ngx_http_tce_admin_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_tce_admin_api_module);

    st->services = NULL;
    st->nservices = 0;

    if (amcf->tmcf->state_path.len == 0) {
        return ngx_http_tce_admin_refuse(r, NGX_HTTP_CONFLICT, "no_store",
                   "changes are kept in the state file and none is "
                   "configured: add \"tce_state <path>;\" to http{}");
    }

    if (ngx_http_tce_admin_fp(&amcf->tmcf->state_path, &now) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, ngx_errno,
                      "tce admin: stat(\"%V\") failed",
                      &amcf->tmcf->state_path);
        return ngx_http_tce_admin_refuse(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                        "store_error",
                                        "the state file cannot be read");
    }

    if (!ngx_http_tce_admin_fp_equal(&now, &amcf->sh->fp)) {
        return ngx_http_tce_admin_refuse(r, NGX_HTTP_CONFLICT,
                   "state_file_changed",
                   "the state file changed on disk since it was last "
                   "loaded (a hand edit?): reload nginx to apply it, "
                   "then retry; it is not overwritten");
    }

    if (!now.exists) {
        return NGX_OK;
    }

    rc = ngx_tce_state_load((char *) amcf->tmcf->state_path.data, st, err,
                            sizeof(err));
    if (rc != 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tce admin: state file \"%V\": %s",
                      &amcf->tmcf->state_path, err);
        ngx_snprintf(text, sizeof(text) - 1,
                     "the state file cannot be loaded: %s%Z", err);
        return ngx_http_tce_admin_refuse(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                        "store_error", (char *) text);
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_tce_admin_store_save(ngx_http_request_t *r, ngx_tce_state_t *st)
{
    char                            *data;
    char                             err[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    ngx_int_t                        rc;
    ngx_http_tce_admin_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_tce_admin_api_module);

    data = ngx_tce_state_encode(st);
    if (data == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_OK;

    if (ngx_tce_state_write((char *) amcf->tmcf->state_path.data, data,
                            ngx_strlen(data), err, sizeof(err))
        != 0)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tce admin: state file \"%V\" not written: %s",
                      &amcf->tmcf->state_path, err);
        rc = NGX_ERROR;
    }

    free(data);

    /* what is on disk now is the API's own */
    (void) ngx_http_tce_admin_fp(&amcf->tmcf->state_path, &amcf->sh->fp);

    return rc;
}
