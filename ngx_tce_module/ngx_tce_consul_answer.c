/*
 * A finished Consul query's answer, off the event loop: nothing that
 * can take milliseconds runs there, and parsing a 10,000-instance
 * answer of real agents (about 2 KB per entry with its checks' output)
 * takes jansson and the conversion to instances about a second of CPU.
 *
 * On the event loop: the transfer's outcome and X-Consul-Index are
 * checked (errors go to the watch's backoff at once); the body is
 * taken from the request, which is freed, still gzip as it came.  On
 * the worker's background thread (ngx_tce_background.c, at the lowest
 * CPU priority): the body is decoded and parsed (health: into
 * instances, sorted by id; catalog: into names; checks: into digests).
 * Back on the event loop: the result is applied (the zone, under its
 * lock), the watch's state updated and its next query started.
 *
 * A health watch keeps what each entry of its last answer gave (its
 * memo, ngx_tce_consul_memo.c): the next answer reads only the entries
 * whose bytes differ.  The job takes the memo to the thread and gives
 * it back with the answer's; a job orphaned frees it.
 *
 * While its answer is parsed a watch has no query in flight, starts
 * none and is not queued for a fetch; a change detection fetch keeps
 * its slot, so at most NGX_TCE_CONSUL_FETCHES answers of fetches are
 * parsed at once.  A watch freed meanwhile (takeover, catalog change,
 * exit) leaves its job orphaned: the job is freed, unapplied, when the
 * thread hands it back.
 *
 * Without that thread, the parse runs in place, as the snapshot writes
 * do: an nginx built without threads, an exiting worker, or a thread
 * that could not be started.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_tce_consul.h"
#include "ngx_tce_background.h"
#include "ngx_tce_consul_watch.h"
#include "ngx_tce_consul_memo.h"
#include "ngx_tce_persist.h"


struct ngx_tce_consul_job_s {
    ngx_tce_consul_watch_t     *w;          /* NULL: orphaned */
    ngx_uint_t                  kind;       /* NGX_TCE_CONSUL_W_* */
    ngx_tce_consul_body_t       body;       /* the answer's */
    const char                 *tag;        /* catalog mode's, or NULL */
    uint64_t                    next;       /* the index to send next */
    int                         rc;         /* the parse's: 0 or -1 */
    ngx_tce_consul_health_t     health;
    ngx_tce_consul_memo_t      *memo;       /* the watch's, while here */
    ngx_tce_consul_names_t      names;
    ngx_tce_consul_digests_t    digests;
    char                        err[NGX_TCE_DISC_ERR_LEN];
#if (NGX_THREADS)
    ngx_thread_task_t           task;
#endif
};


static void ngx_tce_consul_job_parse(void *data, ngx_log_t *log);
#if (NGX_THREADS)
static void ngx_tce_consul_job_done(ngx_event_t *ev);
#endif
static void ngx_tce_consul_apply(ngx_tce_consul_watch_t *w,
    ngx_tce_consul_job_t *job);
static void ngx_tce_consul_job_free(ngx_tce_consul_job_t *job);


void
ngx_tce_consul_done(ngx_tce_consul_watch_t *w, ngx_tce_consul_request_t *req,
    CURLcode code)
{
    uint64_t                 next;
    ngx_tce_consul_job_t    *job;
    ngx_tce_consul_result_t  res;

    if (ngx_tce_consul_request_done(req, code, &res) != 0) {
        ngx_tce_consul_fetch_done(w);
        ngx_tce_consul_failed(w, res.error);
        ngx_tce_consul_pump(w->ctx);
        return;
    }

    if (res.index == NULL
        || ngx_tce_consul_next_index(w->sent, res.index,
                                     ngx_strlen(res.index), &next)
           != 0)
    {
        ngx_tce_consul_fetch_done(w);
        ngx_tce_consul_failed(w, "answer without a valid X-Consul-Index");
        ngx_tce_consul_pump(w->ctx);
        return;
    }

    job = ngx_calloc(sizeof(ngx_tce_consul_job_t), w->ctx->log);
    if (job == NULL) {
        ngx_tce_consul_fetch_done(w);
        ngx_tce_consul_failed(w, "out of memory");
        ngx_tce_consul_pump(w->ctx);
        return;
    }

    job->w = w;
    job->kind = w->kind;
    job->next = next;
    job->tag = w->ctx->cmcf->catalog ? (char *) w->ctx->cmcf->tag.data
                                     : NULL;
    ngx_tce_consul_request_take_body(req, &job->body);

    job->memo = w->memo;
    w->memo = NULL;

#if (NGX_THREADS)

    job->task.ctx = job;
    job->task.handler = ngx_tce_consul_job_parse;
    job->task.event.handler = ngx_tce_consul_job_done;
    job->task.event.data = job;
    job->task.event.log = w->ctx->log;

    if (ngx_tce_background_post(&job->task, w->ctx->log) == NGX_OK) {
        w->job = job;
        return;
    }

#endif

    /* no thread to hand it to: parsed here */

    ngx_tce_consul_job_parse(job, w->ctx->log);
    ngx_tce_consul_apply(w, job);
    ngx_tce_consul_job_free(job);
}


void
ngx_tce_consul_job_drop(ngx_tce_consul_watch_t *w)
{
    if (w->job) {
        /* the thread still has it: freed when it comes back */
        w->job->w = NULL;
        w->job = NULL;
    }
}


/* on a thread (or in place): no nginx call, no shared state */

static void
ngx_tce_consul_job_parse(void *data, ngx_log_t *log)
{
    ngx_tce_consul_job_t *job = data;

    char    *err;
    size_t   errlen;

    err = job->err;
    errlen = sizeof(job->err);

    /* the watches' answers come as they were sent: gzip, mostly */
    if (job->body.gzip
        && ngx_tce_consul_body_gunzip(&job->body, err, errlen) != 0)
    {
        job->rc = -1;
        return;
    }

    switch (job->kind) {

    case NGX_TCE_CONSUL_W_CHECKS:
        job->rc = ngx_tce_consul_parse_checks(job->body.data, job->body.len,
                                              &job->digests, err, errlen);
        break;

    case NGX_TCE_CONSUL_W_CATALOG:
        job->rc = ngx_tce_consul_parse_services(job->body.data,
                                                job->body.len, job->tag,
                                                &job->names, err, errlen);
        break;

    default:
        job->rc = ngx_tce_consul_parse_health_memo(job->body.data,
                                                   job->body.len, NULL, NULL,
                                                   &job->memo, &job->health,
                                                   err, errlen);

        /* in the zone's order: the event loop stores it as it is */
        if (job->rc == 0) {
            ngx_tce_instance_sort(job->health.instances,
                                  job->health.ninstances);
        }
    }

    /* the body is done with: give its memory back now */
    ngx_tce_consul_body_free(&job->body);
}


#if (NGX_THREADS)

static void
ngx_tce_consul_job_done(ngx_event_t *ev)
{
    ngx_tce_consul_job_t *job = ev->data;

    ngx_tce_consul_watch_t  *w;

    w = job->w;

    if (w != NULL) {
        w->job = NULL;
        ngx_tce_consul_apply(w, job);
    }

    ngx_tce_consul_job_free(job);
}

#endif


/* what ngx_tce_consul_done() would do next, had the parse been there */

static void
ngx_tce_consul_apply(ngx_tce_consul_watch_t *w, ngx_tce_consul_job_t *job)
{
    char       err[NGX_TCE_DISC_ERR_LEN];
    ngx_int_t  rc;

    ngx_tce_consul_fetch_done(w);

    /* the memo is the watch's again, failed parse or not */
    ngx_tce_consul_memo_free(w->memo);
    w->memo = job->memo;
    job->memo = NULL;

    if (job->rc == 0 && w->memo && w->svc) {
        ngx_log_debug3(NGX_LOG_DEBUG_CORE, w->ctx->log, 0,
                       "tce consul: service \"%s\": answer of %uz "
                       "entries, %uz read", w->svc->name, w->memo->n,
                       w->memo->n - w->memo->hits);
    }

    if (job->rc != 0) {
        ngx_tce_consul_failed(w, job->err);
        ngx_tce_consul_pump(w->ctx);
        return;
    }

    err[0] = '\0';

    switch (job->kind) {
    case NGX_TCE_CONSUL_W_CHECKS:
        rc = ngx_tce_consul_changes(w, &job->digests, err, sizeof(err));
        break;
    case NGX_TCE_CONSUL_W_CATALOG:
        rc = ngx_tce_consul_catalog(w, &job->names, err, sizeof(err));
        break;
    default:
        rc = ngx_tce_consul_health(w, &job->health, err, sizeof(err));
    }

    if (rc == NGX_ERROR) {
        ngx_tce_consul_failed(w, err);
        ngx_tce_consul_pump(w->ctx);
        return;
    }

    w->index = job->next;
    w->attempt = 0;

    if (w->svc) {
        w->svc->disc_index = job->next;
    }

    ngx_tce_consul_success(w, rc == NGX_DECLINED ? NGX_TCE_CONSUL_EMPTY
                                                 : NGX_TCE_CONSUL_OK, err);

    if (w->ctx->detect && w->kind == NGX_TCE_CONSUL_W_SERVICE) {
        /* fetched: the checks watch says when to fetch it again */
        ngx_tce_consul_fetched(w);
        ngx_tce_consul_pump(w->ctx);
        return;
    }

    ngx_tce_consul_query(w);
}


static void
ngx_tce_consul_job_free(ngx_tce_consul_job_t *job)
{
    ngx_tce_consul_body_free(&job->body);
    ngx_tce_consul_health_free(&job->health);
    ngx_tce_consul_names_free(&job->names);
    ngx_tce_consul_digests_free(&job->digests);
    ngx_tce_consul_memo_free(job->memo);
    ngx_free(job);
}
