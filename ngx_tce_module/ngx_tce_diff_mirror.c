/*
 * API diff: a job (see ngx_tce_diff_mirror.h).
 *
 * The mirror requests do not go through nginx's subrequests: a
 * subrequest, even a background one (ngx_http_mirror_module), holds a
 * count on the main request, so the client's request is not finalized
 * (no log line, no keepalive, no next request on the connection) until
 * the slowest mirror is done.  Here a job belongs to the worker, with
 * its own pool; the two mirrors are libcurl easy handles on the
 * worker's multi handle, driven by nginx events (ngx_tce_curl.c).
 * The client's request only feeds its answer into the job and leaves.
 *
 * When the three answers are in, they are compared on nginx's thread
 * pool (JSON parsing of up to 3 x max_body bytes), and the outcome is
 * counted on the event loop.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_tce_diff_mirror.h"
#include "ngx_tce_persist.h"


static ngx_int_t ngx_tce_diff_side_start(ngx_tce_diff_job_t *job,
    ngx_uint_t k, ngx_buf_t *req, const char *addr);
static ngx_int_t ngx_tce_diff_request_headers(ngx_tce_diff_job_t *job,
    ngx_buf_t *req);
static size_t ngx_tce_diff_on_header(char *buf, size_t size, size_t n,
    void *data);
static size_t ngx_tce_diff_on_body(char *buf, size_t size, size_t n,
    void *data);
static void ngx_tce_diff_side_done(ngx_tce_diff_side_t *side,
    const char *error);
static void ngx_tce_diff_job_ready(ngx_tce_diff_job_t *job);
static void ngx_tce_diff_job_compare(void *data, ngx_log_t *log);
static void ngx_tce_diff_job_compared(ngx_event_t *ev);
static void ngx_tce_diff_job_free(ngx_tce_diff_job_t *job);
static void ngx_tce_diff_done(ngx_tce_curl_t *cu, CURL *easy, CURLcode rc,
    const char *error);
static void ngx_tce_diff_exiting(ngx_tce_curl_t *cu);
static void ngx_tce_diff_abort(ngx_tce_diff_worker_t *w, ngx_uint_t final);


/* request headers a mirror does not copy: curl manages them */
static ngx_str_t  ngx_tce_diff_hop[] = {
    ngx_string("connection"), ngx_string("keep-alive"),
    ngx_string("content-length"), ngx_string("transfer-encoding"),
    ngx_string("te"), ngx_string("upgrade"), ngx_string("expect"),
    ngx_string("proxy-connection"), ngx_null_string
};


ngx_tce_diff_job_t *
ngx_tce_diff_job_start(ngx_http_request_t *r, ngx_tce_diff_conf_t *conf,
    ngx_tce_diff_worker_t *w, ngx_buf_t *req, ngx_str_t *service,
    ngx_str_t *cluster, const char *prod2, const char *canary)
{
    ngx_uint_t           k;
    ngx_pool_t          *pool;
    ngx_tce_diff_job_t  *job;

    pool = ngx_create_pool(4096, w->log);
    if (pool == NULL) {
        return NULL;
    }

    job = ngx_pcalloc(pool, sizeof(ngx_tce_diff_job_t));
    if (job == NULL) {
        goto failed;
    }

    job->pool = pool;
    job->worker = w;
    job->conf = conf;

    job->service.data = ngx_pstrdup(pool, service);
    job->service.len = service->len;
    job->cluster.data = ngx_pstrdup(pool, cluster);
    job->cluster.len = cluster->len;

    if (job->service.data == NULL || job->cluster.data == NULL) {
        goto failed;
    }

    for (k = 0; k < NGX_TCE_DIFF_NSIDES; k++) {
        job->side[k].job = job;
        job->side[k].hdrs = ngx_palloc(pool, NGX_TCE_DIFF_MAX_HEADERS
                                       * sizeof(ngx_tce_diff_header_t));
        if (job->side[k].hdrs == NULL) {
            goto failed;
        }
    }

    job->side[NGX_TCE_DIFF_PROD].body = ngx_palloc(pool, conf->max_body);

    if (job->side[NGX_TCE_DIFF_PROD].body == NULL
        || ngx_tce_diff_request_headers(job, req) != NGX_OK)
    {
        goto failed;
    }

    ngx_queue_insert_tail(&w->jobs, &job->queue);
    w->njobs++;
    job->pending = NGX_TCE_DIFF_NSIDES;

    if (ngx_tce_diff_side_start(job, NGX_TCE_DIFF_PROD2, req, prod2)
        != NGX_OK
        || ngx_tce_diff_side_start(job, NGX_TCE_DIFF_CANARY, req, canary)
           != NGX_OK)
    {
        ngx_tce_diff_job_free(job);
        return NULL;
    }

    return job;

failed:

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "tce diff: a mirror could not start");
    ngx_destroy_pool(pool);

    return NULL;
}


/*
 * The request line and headers nginx sent to prod (the start of the
 * upstream's request, as built by the proxy module; nginx resets pos to
 * start for a retry), as curl options: the mirrors get the same.
 */
static ngx_int_t
ngx_tce_diff_request_headers(ngx_tce_diff_job_t *job, ngx_buf_t *req)
{
    u_char     *p, *last, *eol, *sp, *colon;
    ngx_str_t  *h;

    p = req->start;
    last = req->last;

    eol = ngx_strlcasestrn(p, last, (u_char *) "\r\n", 2 - 1);
    if (eol == NULL) {
        return NGX_ERROR;
    }

    sp = ngx_strlchr(p, eol, ' ');
    if (sp == NULL) {
        return NGX_ERROR;
    }

    job->method.data = ngx_pnalloc(job->pool, sp - p + 1);
    if (job->method.data == NULL) {
        return NGX_ERROR;
    }

    job->method.len = sp - p;
    ngx_memcpy(job->method.data, p, job->method.len);
    job->method.data[job->method.len] = '\0';

    p = sp + 1;

    for (sp = eol; sp > p && *sp != ' '; sp--) {
        /* void */
    }

    if (sp == p || *p != '/') {
        return NGX_ERROR;
    }

    job->uri.data = ngx_pnalloc(job->pool, sp - p + 1);
    if (job->uri.data == NULL) {
        return NGX_ERROR;
    }

    job->uri.len = sp - p;
    ngx_memcpy(job->uri.data, p, job->uri.len);
    job->uri.data[job->uri.len] = '\0';

    /* header lines, kept as they are, NUL-terminated, for curl */

    job->reqh = ngx_array_create(job->pool, 16, sizeof(ngx_str_t));
    if (job->reqh == NULL) {
        return NGX_ERROR;
    }

    for (p = eol + 2; p < last; p = eol + 2) {
        eol = ngx_strlcasestrn(p, last, (u_char *) "\r\n", 2 - 1);

        if (eol == NULL || eol == p) {
            break;
        }

        colon = ngx_strlchr(p, eol, ':');
        if (colon == NULL) {
            continue;
        }

        for (h = ngx_tce_diff_hop; h->len; h++) {
            if ((size_t) (colon - p) == h->len
                && ngx_strncasecmp(p, h->data, h->len) == 0)
            {
                break;
            }
        }

        if (h->len) {
            continue;
        }

        h = ngx_array_push(job->reqh);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->len = eol - p;
        h->data = ngx_pnalloc(job->pool, h->len + 2);
        if (h->data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(h->data, p, h->len);

        /* "Name:" would make curl drop the header: "Name;" sends it empty */
        if (colon == eol - 1) {
            h->data[h->len - 1] = ';';
        }

        h->data[h->len] = '\0';
    }

    return NGX_OK;
}


static ngx_int_t
ngx_tce_diff_side_start(ngx_tce_diff_job_t *job, ngx_uint_t k,
    ngx_buf_t *req, const char *addr)
{
    u_char                 *url, *last;
    CURL                   *easy;
    ngx_str_t              *h;
    ngx_uint_t              i, accept;
    struct curl_slist      *list;
    ngx_tce_diff_side_t    *side;
    ngx_tce_diff_worker_t  *w;

    w = job->worker;
    side = &job->side[k];

    (void) ngx_cpystrn((u_char *) side->addr, (u_char *) addr,
                       sizeof(side->addr));

    url = ngx_pnalloc(job->pool, sizeof("http://") + ngx_strlen(addr)
                                 + job->uri.len);
    if (url == NULL) {
        return NGX_ERROR;
    }

    last = ngx_sprintf(url, "http://%s%V", addr, &job->uri);
    *last = '\0';

    easy = curl_easy_init();
    if (easy == NULL) {
        return NGX_ERROR;
    }

    side->easy = easy;
    accept = 0;
    h = job->reqh->elts;

    for (i = 0; i < job->reqh->nelts; i++) {
        if (h[i].len > 7 && ngx_strncasecmp(h[i].data, (u_char *) "accept:",
                                            7) == 0)
        {
            accept = 1;
        }

        list = curl_slist_append(side->headers, (char *) h[i].data);
        if (list == NULL) {
            return NGX_ERROR;
        }

        side->headers = list;
    }

    if (!accept) {
        /* curl would add "Accept: * / *" where prod got none */
        list = curl_slist_append(side->headers, "Accept:");
        if (list == NULL) {
            return NGX_ERROR;
        }

        side->headers = list;
    }

    if (curl_easy_setopt(easy, CURLOPT_URL, url) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_HTTPHEADER, side->headers)
           != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_PRIVATE, side) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION,
                            ngx_tce_diff_on_header)
           != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_HEADERDATA, side) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, ngx_tce_diff_on_body)
           != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_WRITEDATA, side) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS,
                            (long) job->conf->timeout)
           != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_PATH_AS_IS, 1L) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http") != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_HTTP_VERSION,
                            (long) CURL_HTTP_VERSION_1_1)
           != CURLE_OK)
    {
        return NGX_ERROR;
    }

    if (job->method.len == 4
        && ngx_strncmp(job->method.data, "HEAD", 4) == 0)
    {
        if (curl_easy_setopt(easy, CURLOPT_NOBODY, 1L) != CURLE_OK) {
            return NGX_ERROR;
        }

    } else if (job->method.len != 3
               || ngx_strncmp(job->method.data, "GET", 3) != 0)
    {
        if (curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, job->method.data)
            != CURLE_OK)
        {
            return NGX_ERROR;
        }
    }

    /* NOSIGNAL and the close callback are set there */
    if (ngx_tce_curl_add(w->curl, easy) != NGX_OK) {
        return NGX_ERROR;
    }

    (void) req;

    return NGX_OK;
}


/* CURLOPT_HEADERFUNCTION: one line of the answer's head */
static size_t
ngx_tce_diff_on_header(char *buf, size_t size, size_t n, void *data)
{
    ngx_tce_diff_side_t *side = data;

    u_char                 *p, *last, *colon, *v;
    ngx_tce_diff_job_t     *job;
    ngx_tce_diff_header_t  *h;

    job = side->job;
    p = (u_char *) buf;
    last = p + size * n;

    if (last - p >= 5 && ngx_strncmp(p, "HTTP/", 5) == 0) {
        /* a status line: after a 1xx, the headers start again */
        side->nhdrs = 0;
        return size * n;
    }

    while (last > p && (last[-1] == '\r' || last[-1] == '\n')) {
        last--;
    }

    colon = ngx_strlchr(p, last, ':');

    if (colon == NULL || side->nhdrs == NGX_TCE_DIFF_MAX_HEADERS) {
        return size * n;
    }

    v = colon + 1;

    while (v < last && (*v == ' ' || *v == '\t')) {
        v++;
    }

    while (last > v && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    h = &side->hdrs[side->nhdrs];

    h->name = ngx_pnalloc(job->pool, (colon - p) + (last - v) + 1);
    if (h->name == NULL) {
        return 0;
    }

    ngx_strlow((u_char *) h->name, p, colon - p);
    h->name_len = colon - p;
    h->value = h->name + h->name_len;
    h->value_len = last - v;
    ngx_memcpy((char *) h->value, v, h->value_len);

    side->nhdrs++;

    return size * n;
}


/* CURLOPT_WRITEFUNCTION: the body's first max_body bytes, then stop */
static size_t
ngx_tce_diff_on_body(char *buf, size_t size, size_t n, void *data)
{
    ngx_tce_diff_side_t *side = data;

    size_t               len, room;
    ngx_tce_diff_job_t  *job;

    job = side->job;
    len = size * n;

    if (side->body == NULL) {
        side->body = ngx_palloc(job->pool, job->conf->max_body);
        if (side->body == NULL) {
            return 0;
        }
    }

    room = job->conf->max_body - side->len;

    if (len > room) {
        ngx_memcpy(side->body + side->len, buf, room);
        side->len += room;
        side->cut = 1;

        /* the rest is not compared: curl ends the transfer */
        return 0;
    }

    ngx_memcpy(side->body + side->len, buf, len);
    side->len += len;

    return len;
}


void
ngx_tce_diff_job_prod_done(ngx_tce_diff_job_t *job, const char *error)
{
    job->ctx = NULL;
    ngx_tce_diff_side_done(&job->side[NGX_TCE_DIFF_PROD], error);
}


static void
ngx_tce_diff_side_done(ngx_tce_diff_side_t *side, const char *error)
{
    ngx_tce_diff_job_t  *job;

    job = side->job;

    if (side->done) {
        return;
    }

    side->done = 1;

    if (error) {
        (void) ngx_cpystrn((u_char *) side->error, (u_char *) error,
                           sizeof(side->error));
    }

    if (side->easy) {
        ngx_tce_curl_remove(job->worker->curl, side->easy);
        curl_easy_cleanup(side->easy);
        side->easy = NULL;
    }

    if (side->headers) {
        curl_slist_free_all(side->headers);
        side->headers = NULL;
    }

    if (--job->pending == 0) {
        ngx_tce_diff_job_ready(job);
    }
}


/* every answer is in: compare them on the thread pool */
static void
ngx_tce_diff_job_ready(ngx_tce_diff_job_t *job)
{
    ngx_uint_t                 k;
    ngx_event_t                ev;
    ngx_tce_diff_worker_t     *w;
#if (NGX_THREADS)
    ngx_thread_task_t         *task;
#endif

    w = job->worker;

    for (k = 0; k < NGX_TCE_DIFF_NSIDES; k++) {
        if (job->side[k].error[0]) {
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, w->log, 0,
                           "tce diff: not compared: %s: %s",
                           job->side[k].addr, job->side[k].error);
            ngx_tce_diff_zone_count(w->dmcf->zone, job, NGX_TCE_DIFF_ERROR,
                                    w->log);
            ngx_tce_diff_job_free(job);
            return;
        }
    }

#if (NGX_THREADS)

    task = ngx_thread_task_alloc(job->pool, sizeof(ngx_tce_diff_job_t *));

    if (task) {
        *(ngx_tce_diff_job_t **) task->ctx = job;
        task->handler = ngx_tce_diff_job_compare;
        task->event.handler = ngx_tce_diff_job_compared;
        task->event.data = job;
        task->event.log = w->log;

        if (ngx_tce_thread_post(w->dmcf->tmcf, task) == NGX_OK) {
            job->in_thread = 1;
            return;
        }
    }

#endif

    /* no pool to post to: in place */
    ngx_tce_diff_job_compare(&job, w->log);

    ngx_memzero(&ev, sizeof(ngx_event_t));
    ev.data = job;
    ngx_tce_diff_job_compared(&ev);
}


/* on a thread of the pool: the job's own memory only */
static void
ngx_tce_diff_job_compare(void *data, ngx_log_t *log)
{
    ngx_tce_diff_job_t *job = *(ngx_tce_diff_job_t **) data;

    ngx_uint_t             k;
    ngx_tce_diff_answer_t  a[NGX_TCE_DIFF_NSIDES];

    for (k = 0; k < NGX_TCE_DIFF_NSIDES; k++) {
        a[k].status = job->side[k].status;
        a[k].headers = job->side[k].hdrs;
        a[k].nheaders = job->side[k].nhdrs;
        a[k].body = (char *) job->side[k].body;
        a[k].len = job->side[k].len;
    }

    (void) ngx_tce_diff_compare(&a[NGX_TCE_DIFF_PROD], &a[NGX_TCE_DIFF_PROD2],
                                &a[NGX_TCE_DIFF_CANARY], &job->conf->ignore,
                                &job->outcome);
}


static void
ngx_tce_diff_job_compared(ngx_event_t *ev)
{
    ngx_tce_diff_job_t *job = ev->data;

    job->in_thread = 0;

    if (!job->aborted) {
        ngx_tce_diff_zone_count(job->worker->dmcf->zone, job,
                                job->outcome.result, job->worker->log);
    }

    ngx_tce_diff_job_free(job);
}


static void
ngx_tce_diff_job_free(ngx_tce_diff_job_t *job)
{
    ngx_uint_t              k;
    ngx_tce_diff_side_t    *side;
    ngx_tce_diff_worker_t  *w;

    w = job->worker;

    if (job->in_thread) {
        /* its task still runs: freed when it comes back */
        job->aborted = 1;
        return;
    }

    for (k = 0; k < NGX_TCE_DIFF_NSIDES; k++) {
        side = &job->side[k];

        if (side->easy) {
            ngx_tce_curl_remove(w->curl, side->easy);
            curl_easy_cleanup(side->easy);
        }

        if (side->headers) {
            curl_slist_free_all(side->headers);
        }
    }

    if (job->ctx) {
        /* the request goes on without it */
        job->ctx->job = NULL;
    }

    ngx_queue_remove(&job->queue);
    w->njobs--;

    ngx_destroy_pool(job->pool);
}


ngx_tce_diff_worker_t *
ngx_tce_diff_worker(ngx_tce_diff_main_conf_t *dmcf, ngx_log_t *log)
{
    ngx_tce_diff_worker_t  *w;

    if (dmcf->worker) {
        return dmcf->worker->curl->multi ? dmcf->worker : NULL;
    }

    if (ngx_exiting || ngx_terminate) {
        return NULL;
    }

    w = ngx_calloc(sizeof(ngx_tce_diff_worker_t), log);
    if (w == NULL) {
        return NULL;
    }

    w->log = ngx_cycle->log;
    w->dmcf = dmcf;
    ngx_queue_init(&w->jobs);

    /* logged on error */
    w->curl = ngx_tce_curl_create(ngx_cycle->pool, w->log, "tce diff",
                                  ngx_tce_diff_done, w);
    if (w->curl == NULL) {
        ngx_free(w);
        return NULL;
    }

    w->curl->exiting = ngx_tce_diff_exiting;
    dmcf->worker = w;

    return w;
}


void
ngx_tce_diff_worker_free(ngx_tce_diff_worker_t *w)
{
    ngx_tce_diff_abort(w, 1);
    ngx_free(w);
}


/*
 * Every job goes, not counted (the worker is exiting), then curl's
 * cached connections.  A job on the thread pool is freed when its task
 * comes back, or with final (exit_process: nginx's thread pools are
 * destroyed, their threads joined, before this module's exit_process).
 */
static void
ngx_tce_diff_abort(ngx_tce_diff_worker_t *w, ngx_uint_t final)
{
    ngx_queue_t         *q, *next;
    ngx_tce_diff_job_t  *job;

    for (q = ngx_queue_head(&w->jobs);
         q != ngx_queue_sentinel(&w->jobs);
         q = next)
    {
        next = ngx_queue_next(q);
        job = ngx_queue_data(q, ngx_tce_diff_job_t, queue);

        if (final) {
            /* exit_process: the pool's threads are joined already */
            job->in_thread = 0;
        }

        ngx_tce_diff_job_free(job);
    }

    /* no transfer left: curl's cached connections close */
    ngx_tce_curl_destroy(w->curl);
}


/* the worker is shutting down: every job goes, not counted */
static void
ngx_tce_diff_exiting(ngx_tce_curl_t *cu)
{
    ngx_tce_diff_abort(cu->data, 0);
}


/* a mirror's transfer is over */
static void
ngx_tce_diff_done(ngx_tce_curl_t *cu, CURL *easy, CURLcode rc,
    const char *error)
{
    long                  status;
    ngx_tce_diff_side_t  *side;

    side = NULL;
    (void) curl_easy_getinfo(easy, CURLINFO_PRIVATE, &side);

    if (side == NULL) {
        return;
    }

    if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && side->cut)) {
        ngx_tce_diff_side_done(side, error);
        return;
    }

    status = 0;
    (void) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    side->status = (unsigned) status;

    ngx_tce_diff_side_done(side, NULL);
}
