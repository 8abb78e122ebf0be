/*
 * The state file (tce_state) as the admin API's store.
 *
 * A write loads the file, changes it, writes it whole (atomically:
 * ngx_tce_state_write) and only then changes the zone.  The file's
 * fingerprint (inode, size, mtime) when this configuration loaded it,
 * or when the API last wrote it, is kept in the tce_admin zone: a file
 * that differs (an operator's hand edit not yet reloaded) is never
 * overwritten; the write answers 409 and the operator reloads first.
 *
 * Writers of every worker take turns: the tce_admin zone's "turn"
 * holds the pid of the process whose write is under way (taken with a
 * compare-and-swap; a writer that finds it taken waits on a 1 ms timer,
 * its event loop free; a dead holder's turn is taken over).  The file
 * is read, decoded, edited, encoded, written and fsynced on nginx's
 * thread pool; the event loop only checks, applies to the zone and
 * answers (its time per write is counted: v1/status "writes").
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_admin_store.h"
#include "ngx_http_tce_admin_inst.h"
#include "ngx_tce_background.h"


#define NGX_HTTP_TCE_ADMIN_STORE_WAIT   1      /* ms between tries */

#define NGX_HTTP_TCE_ADMIN_STORE_WRITE  0
#define NGX_HTTP_TCE_ADMIN_STORE_REVERT 1

#define NGX_HTTP_TCE_ADMIN_STORE_OK     0
#define NGX_HTTP_TCE_ADMIN_STORE_REFUSE 1
#define NGX_HTTP_TCE_ADMIN_STORE_FAIL   2


/* one write under way */
typedef struct {
    ngx_http_request_t             *r;
    ngx_http_tce_admin_ctx_t       *ctx;
    ngx_http_tce_admin_change_t    *ch;
    ngx_http_tce_admin_main_conf_t *amcf;
    ngx_event_t                     wait;       /* for the turn */
    ngx_uint_t                      holding;    /* the turn */
    uint64_t                        loop_ns;    /* event loop, so far */
    uint64_t                        loop_cpu_ns;  /* of it on a CPU */
    uint64_t                        t0;
    uint64_t                        t0_cpu;

    /* the thread's work: in */
    ngx_uint_t                      op;
    char                           *path;
    ngx_http_tce_admin_fp_t         expect;
    char                           *old;        /* what was there */
    size_t                          old_len;

    /* out */
    ngx_uint_t                      result;
    ngx_uint_t                      status;
    ngx_http_tce_admin_err_t        err;        /* the answer's */
    char                            why[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    ngx_http_tce_admin_fp_t         fp;         /* the file afterwards */
    uint64_t                        thread_ns;
} ngx_http_tce_admin_run_t;


static ngx_uint_t ngx_http_tce_admin_turn_take(
    ngx_http_tce_admin_main_conf_t *amcf, ngx_log_t *log);
static void ngx_http_tce_admin_turn_give(
    ngx_http_tce_admin_main_conf_t *amcf);
static void ngx_http_tce_admin_change_try(ngx_http_tce_admin_run_t *run);
static void ngx_http_tce_admin_change_wait(ngx_event_t *ev);
static void ngx_http_tce_admin_change_cleanup(void *data);
static void ngx_http_tce_admin_change_start(ngx_http_tce_admin_run_t *run);
static void ngx_http_tce_admin_change_post(ngx_http_tce_admin_run_t *run);
static void ngx_http_tce_admin_change_work(ngx_http_tce_admin_run_t *run);
static void ngx_http_tce_admin_change_store(ngx_http_tce_admin_run_t *run);
#if (NGX_THREADS)
static void ngx_http_tce_admin_change_thread(void *data, ngx_log_t *log);
static void ngx_http_tce_admin_change_event(ngx_event_t *ev);
#endif
static void ngx_http_tce_admin_change_stored(ngx_http_tce_admin_run_t *run);
static void ngx_http_tce_admin_change_audited(ngx_http_request_t *r);
static void ngx_http_tce_admin_change_finish(ngx_http_tce_admin_run_t *run,
    ngx_int_t rc, ngx_uint_t accepted);
static ngx_int_t ngx_http_tce_admin_change_refuse(
    ngx_http_tce_admin_run_t *run, ngx_uint_t status, const char *code,
    const char *text);
static uint64_t ngx_http_tce_admin_ns(clockid_t clock);
static void ngx_http_tce_admin_loop_begin(ngx_http_tce_admin_run_t *run);
static void ngx_http_tce_admin_loop_end(ngx_http_tce_admin_run_t *run);


#if (NGX_THREADS)
#endif


ngx_int_t
ngx_http_tce_admin_fp(ngx_str_t *path, ngx_http_tce_admin_fp_t *fp)
{
    return ngx_http_tce_admin_fp_path((char *) path->data, fp);
}


ngx_int_t
ngx_http_tce_admin_fp_path(const char *path, ngx_http_tce_admin_fp_t *fp)
{
    struct stat  sb;

    ngx_memzero(fp, sizeof(ngx_http_tce_admin_fp_t));

    if (stat(path, &sb) != 0) {
        return errno == ENOENT ? NGX_OK : NGX_ERROR;
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


ngx_uint_t
ngx_http_tce_admin_turn_try(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_log_t *log)
{
    return ngx_http_tce_admin_turn_take(amcf, log);
}


void
ngx_http_tce_admin_turn_release(ngx_http_tce_admin_main_conf_t *amcf)
{
    ngx_http_tce_admin_turn_give(amcf);
}


/*
 * 1 when this process got the turn.  A holder that died (its pid is
 * gone) loses it: its write may have stopped half-way, which the
 * file's fingerprint then shows (409 until a reload).
 */
static ngx_uint_t
ngx_http_tce_admin_turn_take(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_log_t *log)
{
    ngx_atomic_uint_t  pid;

    pid = amcf->sh->turn;

    if (pid == 0) {
        return ngx_atomic_cmp_set(&amcf->sh->turn, 0, ngx_pid);
    }

    if ((ngx_pid_t) pid == ngx_pid
        || kill((ngx_pid_t) pid, 0) == 0 || ngx_errno != NGX_ESRCH)
    {
        return 0;
    }

    if (!ngx_atomic_cmp_set(&amcf->sh->turn, pid, ngx_pid)) {
        return 0;
    }

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "tce admin: the writers' turn taken over from process "
                  "%P, which is gone", (ngx_pid_t) pid);

    return 1;
}


static void
ngx_http_tce_admin_turn_give(ngx_http_tce_admin_main_conf_t *amcf)
{
    (void) ngx_atomic_cmp_set(&amcf->sh->turn, ngx_pid, 0);
}


ngx_int_t
ngx_http_tce_admin_store_change(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, ngx_http_tce_admin_change_t *ch)
{
    ngx_pool_cleanup_t              *cln;
    ngx_http_tce_admin_run_t        *run;
    ngx_http_tce_admin_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_tce_admin_api_module);

    if (amcf->tmcf->state_path.len == 0) {
        return ngx_http_tce_admin_error(r, NGX_HTTP_CONFLICT, "no_store",
                   "changes are kept in the state file and none is "
                   "configured: add \"tce_state <path>;\" to http{}");
    }

    run = ngx_pcalloc(r->pool, sizeof(ngx_http_tce_admin_run_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (run == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    run->r = r;
    run->ctx = ctx;
    run->ch = ch;
    run->amcf = amcf;
    run->path = (char *) amcf->tmcf->state_path.data;
    run->wait.handler = ngx_http_tce_admin_change_wait;
    run->wait.data = run;
    run->wait.log = r->connection->log;

    cln->handler = ngx_http_tce_admin_change_cleanup;
    cln->data = run;

    ctx->change = run;

    /* the request lives until ngx_http_tce_admin_change_finish() */
    r->main->count++;

    ngx_http_tce_admin_change_try(run);

    return NGX_DONE;
}


static void
ngx_http_tce_admin_change_try(ngx_http_tce_admin_run_t *run)
{
    if (!ngx_http_tce_admin_turn_take(run->amcf, run->r->connection->log)) {
        ngx_add_timer(&run->wait, NGX_HTTP_TCE_ADMIN_STORE_WAIT);
        return;
    }

    run->holding = 1;

    ngx_http_tce_admin_change_start(run);
}


static void
ngx_http_tce_admin_change_wait(ngx_event_t *ev)
{
    ngx_http_tce_admin_change_try(ev->data);
}


/* the request's pool goes: nothing may wait or hold on its behalf */
static void
ngx_http_tce_admin_change_cleanup(void *data)
{
    ngx_http_tce_admin_run_t *run = data;

    if (run->wait.timer_set) {
        ngx_del_timer(&run->wait);
    }

    if (run->holding) {
        run->holding = 0;
        ngx_http_tce_admin_turn_give(run->amcf);
    }

    free(run->old);
    run->old = NULL;

    if (run->ch->state) {
        ngx_tce_state_free(run->ch->state);
    }
}


static void
ngx_http_tce_admin_change_start(ngx_http_tce_admin_run_t *run)
{
    u_char                     text[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    ngx_int_t                  rc;
    ngx_table_elt_t           *h;
    ngx_atomic_uint_t          tag;
    ngx_http_request_t        *r;
    ngx_http_tce_admin_ctx_t  *ctx;

    ngx_http_tce_admin_loop_begin(run);
    r = run->r;
    ctx = run->ctx;

    /*
     * If-Match against the service's generation (with tce_redis its
     * fleet revision, the instances' ETag then), under the turn
     */
    h = r->headers_in.if_match;
    tag = ngx_http_tce_admin_inst_tag(r, ctx->svc, ctx->svc->generation);

    if (h && !ngx_http_tce_admin_if_match((char *) h->value.data,
                                          h->value.len, tag))
    {
        ngx_snprintf(text, sizeof(text) - 1,
                     "If-Match does not match the service's %s "
                     "(ETag \"%uA\"): read it again and retry%Z",
                     tag == ctx->svc->generation ? "generation"
                                                 : "fleet revision", tag);
        rc = ngx_http_tce_admin_error(r, NGX_HTTP_PRECONDITION_FAILED,
                                      "precondition_failed", (char *) text);
        ngx_http_tce_admin_change_finish(run, rc, 0);
        return;
    }

    rc = run->ch->prepare ? run->ch->prepare(r, run->ch->data) : NGX_OK;

    if (rc != NGX_OK) {
        ngx_http_tce_admin_change_finish(run, rc == NGX_DONE ? NGX_OK : rc,
                                         0);
        return;
    }

    ctx->gen_before = ctx->svc->generation;

    run->op = NGX_HTTP_TCE_ADMIN_STORE_WRITE;
    run->expect = run->amcf->sh->fp;

    ngx_http_tce_admin_loop_end(run);

    ngx_http_tce_admin_change_post(run);
}


/* the file's work on the thread pool, or here if there is none */
static void
ngx_http_tce_admin_change_post(ngx_http_tce_admin_run_t *run)
{
#if (NGX_THREADS)
    ngx_thread_task_t  *task;

    if (!ngx_exiting) {
        task = ngx_thread_task_alloc(run->r->pool,
                                     sizeof(ngx_http_tce_admin_run_t *));

        if (task) {
            *(ngx_http_tce_admin_run_t **) task->ctx = run;
            task->handler = ngx_http_tce_admin_change_thread;
            task->event.handler = ngx_http_tce_admin_change_event;
            task->event.data = run;

            if (ngx_tce_background_post_io(task, run->r->connection->log)
                == NGX_OK)
            {
                run->r->main->blocked++;
                return;
            }
        }

        /* no memory or the queue is full: done here */
    }
#endif

    ngx_http_tce_admin_change_work(run);
    ngx_http_tce_admin_change_stored(run);
}


#if (NGX_THREADS)

static void
ngx_http_tce_admin_change_thread(void *data, ngx_log_t *log)
{
    ngx_http_tce_admin_change_work(*(ngx_http_tce_admin_run_t **) data);
}


static void
ngx_http_tce_admin_change_event(ngx_event_t *ev)
{
    ngx_http_tce_admin_run_t *run = ev->data;

    run->r->main->blocked--;

    ngx_http_tce_admin_change_stored(run);
}

#endif


/* any thread: no nginx pool, log or zone here */
static void
ngx_http_tce_admin_change_work(ngx_http_tce_admin_run_t *run)
{
    uint64_t  t0;

    t0 = ngx_http_tce_admin_ns(CLOCK_MONOTONIC);

    if (run->op == NGX_HTTP_TCE_ADMIN_STORE_REVERT) {
        run->result = NGX_HTTP_TCE_ADMIN_STORE_OK;

        if (ngx_tce_state_write(run->path, run->old, run->old_len,
                                run->why, sizeof(run->why))
            != 0)
        {
            run->result = NGX_HTTP_TCE_ADMIN_STORE_FAIL;
        }

    } else {
        ngx_http_tce_admin_change_store(run);
    }

    /* what is on disk now is the API's own */
    (void) ngx_http_tce_admin_fp_path(run->path, &run->fp);

    run->thread_ns += ngx_http_tce_admin_ns(CLOCK_MONOTONIC) - t0;
}


static void
ngx_http_tce_admin_change_store(ngx_http_tce_admin_run_t *run)
{
    int                      fd;
    char                    *text, err[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    size_t                   got;
    ssize_t                  n;
    struct stat              sb;
    ngx_tce_state_t          st;
    ngx_http_tce_admin_fp_t  now;

    st.services = NULL;
    st.nservices = 0;

    run->result = NGX_HTTP_TCE_ADMIN_STORE_FAIL;
    run->status = NGX_HTTP_INTERNAL_SERVER_ERROR;
    run->err.code = "store_error";
    (void) ngx_cpystrn((u_char *) run->err.text,
                       (u_char *) "the state file cannot be read (see the "
                       "error log): nothing changed", sizeof(run->err.text));

    fd = open(run->path, O_RDONLY | O_CLOEXEC);

    ngx_memzero(&now, sizeof(ngx_http_tce_admin_fp_t));

    if (fd == -1 && errno != ENOENT) {
        snprintf(run->why, sizeof(run->why), "open: %s", strerror(errno));
        return;
    }

    if (fd != -1) {
        if (fstat(fd, &sb) != 0) {
            snprintf(run->why, sizeof(run->why), "fstat: %s",
                     strerror(errno));
            goto failed;
        }

        now.exists = 1;
        now.ino = sb.st_ino;
        now.size = sb.st_size;
        now.mtime = sb.st_mtim.tv_sec;
        now.mtime_ns = sb.st_mtim.tv_nsec;
    }

    if (!ngx_http_tce_admin_fp_equal(&now, &run->expect)) {
        run->result = NGX_HTTP_TCE_ADMIN_STORE_REFUSE;
        run->status = NGX_HTTP_CONFLICT;
        run->err.code = "state_file_changed";
        (void) ngx_cpystrn((u_char *) run->err.text,
                           (u_char *) "the state file changed on disk since "
                           "it was last loaded (a hand edit?): reload nginx "
                           "to apply it, then retry; it is not overwritten",
                           sizeof(run->err.text));
        goto failed;
    }

    if (fd != -1) {
        if (sb.st_size > NGX_TCE_STATE_FILE_MAX_SIZE) {
            snprintf(run->why, sizeof(run->why), "larger than %d bytes",
                     NGX_TCE_STATE_FILE_MAX_SIZE);
            goto failed;
        }

        run->old = malloc(sb.st_size + 1);
        if (run->old == NULL) {
            snprintf(run->why, sizeof(run->why), "no memory");
            goto failed;
        }

        for (got = 0; got < (size_t) sb.st_size; got += n) {
            n = read(fd, run->old + got, sb.st_size - got);

            if (n <= 0) {
                snprintf(run->why, sizeof(run->why), "read: %s",
                         n == 0 ? "file shrank" : strerror(errno));
                goto failed;
            }
        }

        run->old_len = got;
        (void) close(fd);
        fd = -1;

        if (ngx_tce_state_decode(run->old, run->old_len, &st, err,
                                 sizeof(err))
            != 0)
        {
            snprintf(run->why, sizeof(run->why), "%s", err);
            snprintf(run->err.text, sizeof(run->err.text),
                     "the state file cannot be loaded: %.200s", err);
            return;
        }
    }

    if (run->ch->edit(&st, run->ch->data, &run->status, &run->err) != 0) {
        run->result = NGX_HTTP_TCE_ADMIN_STORE_REFUSE;
        ngx_tce_state_free(&st);
        return;
    }

    (void) ngx_cpystrn((u_char *) run->err.text,
                       (u_char *) "the state file could not be written "
                       "(see the error log): nothing changed",
                       sizeof(run->err.text));

    text = ngx_tce_state_encode(&st);

    if (run->ch->state) {
        *run->ch->state = st;

    } else {
        ngx_tce_state_free(&st);
    }

    if (text == NULL) {
        snprintf(run->why, sizeof(run->why), "cannot encode: no memory");
        return;
    }

    if (ngx_tce_state_write(run->path, text, strlen(text), run->why,
                            sizeof(run->why))
        == 0)
    {
        run->result = NGX_HTTP_TCE_ADMIN_STORE_OK;
    }

    free(text);

    return;

failed:

    if (fd != -1) {
        (void) close(fd);
    }
}


/* the event loop, the thread's work done */
static void
ngx_http_tce_admin_change_stored(ngx_http_tce_admin_run_t *run)
{
    ngx_int_t                  rc;
    ngx_http_request_t        *r;
    ngx_http_tce_admin_ctx_t  *ctx;

    ngx_http_tce_admin_loop_begin(run);
    r = run->r;
    ctx = run->ctx;

    if (run->result == NGX_HTTP_TCE_ADMIN_STORE_OK
        || run->op == NGX_HTTP_TCE_ADMIN_STORE_REVERT)
    {
        run->amcf->sh->fp = run->fp;
    }

    if (run->op == NGX_HTTP_TCE_ADMIN_STORE_REVERT) {
        if (run->result != NGX_HTTP_TCE_ADMIN_STORE_OK) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "tce admin: the state file \"%s\" holds a change "
                          "of \"%s\" the zone could not take, and could not "
                          "be written back: %s", run->path, ctx->svc->name,
                          run->why);
        }

        rc = ngx_http_tce_admin_change_refuse(run,
                                              NGX_HTTP_INSUFFICIENT_STORAGE,
                                              "zone_full",
                                              "the tce zone is full: "
                                              "nothing changed");
        ngx_http_tce_admin_loop_end(run);
        ngx_http_tce_admin_change_finish(run, rc, 0);
        return;
    }

    if (run->result != NGX_HTTP_TCE_ADMIN_STORE_OK) {
        if (run->result == NGX_HTTP_TCE_ADMIN_STORE_FAIL) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "tce admin: state file \"%s\": %s", run->path,
                          run->why);
        }

        rc = ngx_http_tce_admin_change_refuse(run, run->status,
                                              run->err.code, run->err.text);
        ngx_http_tce_admin_change_finish(run, rc, 0);
        return;
    }

    if (run->ch->apply(r, run->ch->data) != NGX_OK) {
        /* the zone is full: the file as it was */
        run->op = NGX_HTTP_TCE_ADMIN_STORE_REVERT;
        run->expect = run->fp;
        ngx_http_tce_admin_loop_end(run);
        ngx_http_tce_admin_change_post(run);
        return;
    }

    ctx->gen_after = ctx->svc->generation;

    ngx_http_tce_admin_loop_end(run);

    /* the answer waits for the audit line: 200 means it is on disk */
    if (ngx_http_tce_admin_audit(r, ctx,
                                 run->ch->status ? run->ch->status
                                                 : NGX_HTTP_OK,
                                 ngx_http_tce_admin_change_audited)
        != NGX_OK)
    {
        ngx_http_tce_admin_change_audited(r);
    }
}


static void
ngx_http_tce_admin_change_audited(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_http_tce_admin_ctx_t  *ctx;
    ngx_http_tce_admin_run_t  *run;

    ctx = ngx_http_get_module_ctx(r, ngx_http_tce_admin_api_module);
    run = ctx->change;

    ngx_http_tce_admin_loop_begin(run);

    rc = run->ch->answer(r, run->ch->data);

    ngx_http_tce_admin_loop_end(run);

    ngx_http_tce_admin_change_finish(run, rc, 1);
}


static ngx_int_t
ngx_http_tce_admin_change_refuse(ngx_http_tce_admin_run_t *run,
    ngx_uint_t status, const char *code, const char *text)
{
    return ngx_http_tce_admin_error(run->r, status, code, text);
}


static void
ngx_http_tce_admin_change_finish(ngx_http_tce_admin_run_t *run, ngx_int_t rc,
    ngx_uint_t accepted)
{
    uint64_t                     max;
    ngx_http_tce_admin_shctx_t  *sh;

    sh = run->amcf->sh;

    if (accepted) {
        (void) ngx_atomic_fetch_add(&sh->writes, 1);
        (void) ngx_atomic_fetch_add(&sh->loop_ns, run->loop_ns);
        (void) ngx_atomic_fetch_add(&sh->loop_cpu_ns, run->loop_cpu_ns);
        (void) ngx_atomic_fetch_add(&sh->store_ns, run->thread_ns);

        for ( ;; ) {
            max = sh->loop_ns_max;

            if (run->loop_ns <= max
                || ngx_atomic_cmp_set(&sh->loop_ns_max, max, run->loop_ns))
            {
                break;
            }
        }
    }

    free(run->old);
    run->old = NULL;

    if (run->ch->state) {
        ngx_tce_state_free(run->ch->state);
    }

    if (run->holding) {
        run->holding = 0;
        ngx_http_tce_admin_turn_give(run->amcf);
    }

    run->ctx->change = NULL;

    ngx_http_finalize_request(run->r, rc);
}


static uint64_t
ngx_http_tce_admin_ns(clockid_t clock)
{
    struct timespec  ts;

    (void) clock_gettime(clock, &ts);

    return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


/*
 * The event loop's time of a write: wall clock (what the loop could
 * not do meanwhile, preemption by other processes included) and the
 * thread's CPU time (what the write itself cost).
 */
static void
ngx_http_tce_admin_loop_begin(ngx_http_tce_admin_run_t *run)
{
    run->t0 = ngx_http_tce_admin_ns(CLOCK_MONOTONIC);
    run->t0_cpu = ngx_http_tce_admin_ns(CLOCK_THREAD_CPUTIME_ID);
}


static void
ngx_http_tce_admin_loop_end(ngx_http_tce_admin_run_t *run)
{
    run->loop_ns += ngx_http_tce_admin_ns(CLOCK_MONOTONIC) - run->t0;
    run->loop_cpu_ns += ngx_http_tce_admin_ns(CLOCK_THREAD_CPUTIME_ID)
                        - run->t0_cpu;
}
