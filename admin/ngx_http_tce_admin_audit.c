/*
 * The admin API's audit log: one JSON line per accepted change.
 *
 *   tce_admin_audit logs/tce_admin_audit.log;   (http, server, location)
 *
 *   {"time": "2026-12-01T06:40:00.123Z", "principal": "deployer",
 *    "addr": "10.0.0.7", "method": "PUT",
 *    "path": "/api/v1/services/demo.web.api/clusters/default/canary",
 *    "status": 200, "service": "demo.web.api", "generation_before": 7,
 *    "generation_after": 8, "body_sha256": "9f86d0...",
 *    "request_id": "5f0c..."}
 *
 * The master opens the file, as it opens nginx's own logs (so USR1
 * reopens it after a rotation); the workers append to it with
 * O_APPEND, each line in one write(2), and fsync it, on nginx's thread
 * pool: the event loop only builds the line.  A refused request writes
 * nothing.  With tce_redis the line is also added to the fleet's stream
 * <prefix>audit (ngx_tce_module/ngx_tce_redis_audit.c).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#if (NGX_OPENSSL)
#include <openssl/evp.h>
#endif

#include "ngx_http_tce_admin_api.h"
#include "ngx_tce_redis.h"
#include "ngx_tce_background.h"


#define NGX_HTTP_TCE_ADMIN_AUDIT_ERR_LEN  160


typedef struct {
    ngx_http_request_t             *r;          /* NULL: nobody waits */
    void                          (*done)(ngx_http_request_t *r);
    ngx_http_tce_admin_shctx_t     *sh;
    ngx_open_file_t                *file;
    ngx_fd_t                        fd;         /* a dup of file->fd */
    char                           *line;       /* malloc */
    size_t                          len;
    ngx_err_t                       err;
    const char                     *step;       /* NULL: written */
    ngx_uint_t                      own;        /* the task is ngx_alloc */
} ngx_http_tce_admin_audit_task_t;


static json_t *ngx_http_tce_admin_audit_line(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, ngx_uint_t status);
static json_t *ngx_http_tce_admin_audit_sha256(u_char *data, size_t len);
static void ngx_http_tce_admin_audit_write(ngx_http_tce_admin_audit_task_t *t);
static ngx_http_tce_admin_audit_task_t *ngx_http_tce_admin_audit_alloc(
    ngx_log_t *log);
#if (NGX_THREADS)
static void ngx_http_tce_admin_audit_thread(void *data, ngx_log_t *log);
static void ngx_http_tce_admin_audit_event(ngx_event_t *ev);
#endif
static void ngx_http_tce_admin_audit_done(ngx_http_tce_admin_audit_task_t *t,
    ngx_log_t *log);


#if (NGX_THREADS)
#endif


char *
ngx_http_tce_admin_audit_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_tce_admin_loc_conf_t *alcf = conf;

    ngx_fd_t    fd;
    ngx_str_t  *value, full;

    if (alcf->audit) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "needs a path";
    }

    full = value[1];

    if (ngx_conf_full_name(cf->cycle, &full, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /*
     * nginx opens it again (ngx_init_cycle) and says only "open()
     * failed": this says which directive, before anything starts
     */
    fd = ngx_open_file(full.data, NGX_FILE_APPEND, NGX_FILE_CREATE_OR_OPEN,
                       NGX_FILE_DEFAULT_ACCESS);

    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "tce_admin_audit \"%V\": the audit log cannot be "
                           "opened for appending by the master process",
                           &full);
        return NGX_CONF_ERROR;
    }

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " \"%V\" failed", &full);
    }

    alcf->audit = ngx_conf_open_file(cf->cycle, &value[1]);
    if (alcf->audit == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_tce_admin_audit(ngx_http_request_t *r, ngx_http_tce_admin_ctx_t *ctx,
    ngx_uint_t status, void (*done)(ngx_http_request_t *r))
{
    char                             *text;
    json_t                           *line;
    ngx_http_tce_admin_audit_task_t  *t;
    ngx_http_tce_admin_loc_conf_t    *alcf;
    ngx_http_tce_admin_main_conf_t   *amcf;
#if (NGX_THREADS)
    ngx_thread_task_t                *task;
    ngx_http_tce_admin_audit_task_t  *own;
#endif

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_tce_admin_api_module);
    amcf = ngx_http_get_module_main_conf(r, ngx_http_tce_admin_api_module);

    if (alcf->audit == NULL) {
        return NGX_DECLINED;
    }

    line = ngx_http_tce_admin_audit_line(r, ctx, status);
    text = line ? json_dumps(line, JSON_COMPACT) : NULL;
    json_decref(line);

    if (text == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "tce admin: no memory for the audit line of "
                      "request %V", &ctx->request_id);
        (void) ngx_atomic_fetch_add(&amcf->sh->audit_errors, 1);
        return NGX_ERROR;
    }

    /* with tce_redis the fleet's stream has it too */
    ngx_tce_redis_audit((ngx_cycle_t *) ngx_cycle, text, ngx_strlen(text),
                        r->connection->log);

#if (NGX_THREADS)
    task = ngx_thread_task_alloc(r->pool,
                                 sizeof(ngx_http_tce_admin_audit_task_t));
    if (task == NULL) {
        free(text);
        return NGX_ERROR;
    }

    t = task->ctx;
#else
    t = ngx_pcalloc(r->pool, sizeof(ngx_http_tce_admin_audit_task_t));
    if (t == NULL) {
        free(text);
        return NGX_ERROR;
    }
#endif

    t->sh = amcf->sh;
    t->file = alcf->audit;
    t->line = text;
    t->len = ngx_strlen(text);
    t->line[t->len++] = '\n';       /* over the NUL: the length is kept */
    t->r = done ? r : NULL;
    t->done = done;

    /* the worker's fd may be reopened (USR1) while a thread writes */
    t->fd = dup(alcf->audit->fd);

    if (t->fd == NGX_INVALID_FILE) {
        t->err = ngx_errno;
        t->step = "dup()";
        ngx_http_tce_admin_audit_done(t, r->connection->log);
        return NGX_ERROR;
    }

#if (NGX_THREADS)

    if (!ngx_exiting) {
        if (done == NULL) {
            /* nobody waits and the request may go: a task of its own */
            own = ngx_http_tce_admin_audit_alloc(r->connection->log);
            if (own == NULL) {
                ngx_http_tce_admin_audit_write(t);
                ngx_http_tce_admin_audit_done(t, r->connection->log);
                return NGX_OK;
            }

            ngx_memcpy(own, t, sizeof(ngx_http_tce_admin_audit_task_t));
            t = own;
            t->own = 1;
            task = (ngx_thread_task_t *) t - 1;
        }

        task->handler = ngx_http_tce_admin_audit_thread;
        task->event.handler = ngx_http_tce_admin_audit_event;
        task->event.data = task;

        if (ngx_tce_background_post_io(task, r->connection->log) == NGX_OK)
        {
            if (done) {
                r->main->blocked++;
            }

            return NGX_OK;
        }

        /* no thread: written here, as without threads */
    }

#endif

    ngx_http_tce_admin_audit_write(t);
    ngx_http_tce_admin_audit_done(t, r->connection->log);

    return NGX_OK;
}


void
ngx_http_tce_admin_audit_system(ngx_http_tce_admin_main_conf_t *amcf,
    json_t *line, ngx_log_t *log)
{
    u_char                            when[sizeof("1970-01-01T00:00:00.000Z")];
    char                             *text;
    ngx_tm_t                          tm;
    ngx_time_t                       *tp;
    ngx_http_tce_admin_audit_task_t  *t;
#if (NGX_THREADS)
    ngx_thread_task_t                *task;
#endif

    if (amcf->audit == NULL) {
        json_decref(line);
        return;
    }

    tp = ngx_timeofday();
    ngx_gmtime(tp->sec, &tm);

    (void) ngx_sprintf(when, "%4d-%02d-%02dT%02d:%02d:%02d.%03MZ%Z",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                       tp->msec);

    text = NULL;

    if (json_object_set_new(line, "time", json_string((char *) when)) == 0) {
        text = json_dumps(line, JSON_COMPACT);
    }

    json_decref(line);

    if (text) {
        ngx_tce_redis_audit((ngx_cycle_t *) ngx_cycle, text,
                            ngx_strlen(text), log);
    }

    t = text ? ngx_http_tce_admin_audit_alloc(log) : NULL;

    if (t == NULL) {
        free(text);
        (void) ngx_atomic_fetch_add(&amcf->sh->audit_errors, 1);
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "tce admin: no memory for an audit line of the "
                      "deploy controller");
        return;
    }

    t->sh = amcf->sh;
    t->file = amcf->audit;
    t->line = text;
    t->len = ngx_strlen(text);
    t->line[t->len++] = '\n';       /* over the NUL: the length is kept */
    t->own = 1;
    t->fd = dup(amcf->audit->fd);

    if (t->fd == NGX_INVALID_FILE) {
        t->err = ngx_errno;
        t->step = "dup()";
        ngx_http_tce_admin_audit_done(t, log);
        return;
    }

#if (NGX_THREADS)

    if (!ngx_exiting) {
        task = (ngx_thread_task_t *) t - 1;
        task->handler = ngx_http_tce_admin_audit_thread;
        task->event.handler = ngx_http_tce_admin_audit_event;
        task->event.data = task;

        if (ngx_tce_background_post_io(task, log) == NGX_OK) {
            return;
        }
    }

#endif

    ngx_http_tce_admin_audit_write(t);
    ngx_http_tce_admin_audit_done(t, log);
}


static json_t *
ngx_http_tce_admin_audit_line(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, ngx_uint_t status)
{
    u_char      when[sizeof("1970-01-01T00:00:00.000Z")];
    json_t     *line;
    ngx_tm_t    tm;
    ngx_time_t *tp;

    tp = ngx_timeofday();
    ngx_gmtime(tp->sec, &tm);

    (void) ngx_sprintf(when, "%4d-%02d-%02dT%02d:%02d:%02d.%03MZ%Z",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                       tp->msec);

    line = json_object();

    if (line == NULL
        || json_object_set_new(line, "time", json_string((char *) when))
           != 0
        || json_object_set_new(line, "principal",
                               ngx_http_tce_admin_jstr(ctx->principal.data,
                                                       ctx->principal.len))
           != 0
        || json_object_set_new(line, "addr",
                               ngx_http_tce_admin_jstr(
                                   r->connection->addr_text.data,
                                   r->connection->addr_text.len))
           != 0
        || json_object_set_new(line, "method",
                               ngx_http_tce_admin_jstr(r->method_name.data,
                                                       r->method_name.len))
           != 0
        || json_object_set_new(line, "path",
                               ngx_http_tce_admin_jstr(r->unparsed_uri.data,
                                                       r->unparsed_uri.len))
           != 0
        || json_object_set_new(line, "status", json_integer(status)) != 0
        || json_object_set_new(line, "service",
                               ctx->svc ? ngx_http_tce_admin_jstr(
                                              ctx->svc->name,
                                              ctx->svc->name_len)
                                        : json_null())
           != 0
        || json_object_set_new(line, "generation_before",
                               json_integer(ctx->gen_before))
           != 0
        || json_object_set_new(line, "generation_after",
                               json_integer(ctx->gen_after))
           != 0
        || json_object_set_new(line, "body_sha256",
                               ngx_http_tce_admin_audit_sha256(ctx->body,
                                                               ctx->body_len))
           != 0
        || json_object_set_new(line, "request_id",
                               ngx_http_tce_admin_jstr(ctx->request_id.data,
                                                       ctx->request_id.len))
           != 0)
    {
        json_decref(line);
        return NULL;
    }

    return line;
}


/* the hex SHA-256 of the body (of "" when there is none) */
static json_t *
ngx_http_tce_admin_audit_sha256(u_char *data, size_t len)
{
#if (NGX_OPENSSL)
    u_char        hex[2 * EVP_MAX_MD_SIZE + 1];
    unsigned int  n;
    u_char        md[EVP_MAX_MD_SIZE];

    if (EVP_Digest(data ? data : (u_char *) "", data ? len : 0, md, &n,
                   EVP_sha256(), NULL)
        != 1)
    {
        return NULL;
    }

    *ngx_hex_dump(hex, md, n) = '\0';

    return json_string((char *) hex);
#else
    /* nginx built without OpenSSL: no digest at hand */
    return json_null();
#endif
}


/*
 * A task of its own, zeroed, freed by ngx_http_tce_admin_audit_done():
 * with thread pools, right after the ngx_thread_task_t that posts it.
 * NULL: no memory.
 */
static ngx_http_tce_admin_audit_task_t *
ngx_http_tce_admin_audit_alloc(ngx_log_t *log)
{
#if (NGX_THREADS)
    ngx_thread_task_t  *task;

    task = ngx_calloc(sizeof(ngx_thread_task_t)
                      + sizeof(ngx_http_tce_admin_audit_task_t), log);
    if (task == NULL) {
        return NULL;
    }

    task->ctx = task + 1;

    return task->ctx;
#else
    return ngx_calloc(sizeof(ngx_http_tce_admin_audit_task_t), log);
#endif
}


/* any thread: appends the line in one write, then fsyncs */
static void
ngx_http_tce_admin_audit_write(ngx_http_tce_admin_audit_task_t *t)
{
    ssize_t  n;

    n = write(t->fd, t->line, t->len);

    if (n != (ssize_t) t->len) {
        t->err = (n == -1) ? ngx_errno : NGX_ENOSPC;
        t->step = "write()";

    } else if (fdatasync(t->fd) == -1) {
        t->err = ngx_errno;
        t->step = "fdatasync()";
    }

    (void) close(t->fd);
    t->fd = NGX_INVALID_FILE;
}


#if (NGX_THREADS)

static void
ngx_http_tce_admin_audit_thread(void *data, ngx_log_t *log)
{
    ngx_http_tce_admin_audit_write(data);
}


static void
ngx_http_tce_admin_audit_event(ngx_event_t *ev)
{
    ngx_thread_task_t  *task = ev->data;

    ngx_http_tce_admin_audit_task_t  *t;

    t = task->ctx;

    if (t->r) {
        t->r->main->blocked--;
    }

    ngx_http_tce_admin_audit_done(t, t->r ? t->r->connection->log
                                          : ngx_cycle->log);
}

#endif


/* the event loop: counts, logs a failure, wakes up who waits */
static void
ngx_http_tce_admin_audit_done(ngx_http_tce_admin_audit_task_t *t,
    ngx_log_t *log)
{
    void                (*done)(ngx_http_request_t *r);
    ngx_http_request_t   *r;

    if (t->step == NULL) {
        (void) ngx_atomic_fetch_add(&t->sh->audit_lines, 1);

    } else {
        (void) ngx_atomic_fetch_add(&t->sh->audit_errors, 1);
        ngx_log_error(NGX_LOG_ALERT, log, t->err,
                      "tce admin: audit log \"%V\": %s failed, the line "
                      "of a change that took effect is lost: %*s",
                      &t->file->name, t->step, t->len - 1, t->line);
    }

    if (t->fd != NGX_INVALID_FILE) {
        (void) close(t->fd);
    }

    free(t->line);

    r = t->r;
    done = t->done;

    if (t->own) {
#if (NGX_THREADS)
        /* the task of its own: t lives right after it */
        ngx_free((ngx_thread_task_t *) t - 1);
#else
        ngx_free(t);
#endif
    }

    if (done) {
        done(r);
    }
}
