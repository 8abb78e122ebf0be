/*
 * The deploy webhook's sender (see ngx_http_tce_admin_webhook.h).
 *
 * Every worker has one and ticks every NGX_HTTP_TCE_ADMIN_WEBHOOK_TICK
 * ms; only the worker that controls the deploys (the tce_admin zone's
 * deploy_owner) sends.  It POSTs the queue's head, one event at a
 * time, so the receiver gets them in order; an answer 2xx takes the
 * event out and the next goes at once.  Anything else (another status,
 * no connection, the timeout) is a failed attempt: the same event is
 * tried again after 250 ms, 500 ms, 1 s... (at most 30 s) until
 * retries= attempts have failed after the first, then abandoned.  The
 * head's attempts and next time are in the zone: a new controller (a
 * reload, a crash) goes on where the previous one was, and does not
 * send while the previous one still waits for an answer.  Delivery is
 * at least once: an answer lost with its worker means the event is
 * sent again (the receiver can tell by its seq).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_admin_webhook.h"


struct ngx_http_tce_admin_webhook_sender_s {
    ngx_http_tce_admin_webhook_main_conf_t  *wmcf;
    ngx_http_tce_admin_main_conf_t          *amcf;
    ngx_tce_curl_t                          *curl;
    CURL                                    *easy;      /* in flight */
    struct curl_slist                       *headers;
    u_char                                  *body;
    size_t                                   len;
    uint64_t                                 seq;
    ngx_event_t                              tick;
    ngx_event_t                              kick;
    char                                     error[CURL_ERROR_SIZE];
};


static void ngx_http_tce_admin_webhook_tick(ngx_event_t *ev);
static void ngx_http_tce_admin_webhook_on_kick(ngx_event_t *ev);
static ngx_uint_t ngx_http_tce_admin_webhook_controls(
    ngx_http_tce_admin_webhook_sender_t *s);
static void ngx_http_tce_admin_webhook_pump(
    ngx_http_tce_admin_webhook_sender_t *s);
static ngx_int_t ngx_http_tce_admin_webhook_post(
    ngx_http_tce_admin_webhook_sender_t *s);
static void ngx_http_tce_admin_webhook_done(ngx_tce_curl_t *cu, CURL *easy,
    CURLcode rc, const char *error);
static void ngx_http_tce_admin_webhook_result(
    ngx_http_tce_admin_webhook_sender_t *s, const char *error);
static void ngx_http_tce_admin_webhook_release(
    ngx_http_tce_admin_webhook_sender_t *s);
static size_t ngx_http_tce_admin_webhook_discard(char *buf, size_t size,
    size_t n, void *data);


ngx_int_t
ngx_http_tce_admin_webhook_sender_init(ngx_cycle_t *cycle,
    ngx_http_tce_admin_webhook_main_conf_t *wmcf)
{
    ngx_http_tce_admin_webhook_sender_t  *s;

    s = ngx_pcalloc(cycle->pool, sizeof(ngx_http_tce_admin_webhook_sender_t));
    if (s == NULL) {
        return NGX_ERROR;
    }

    s->wmcf = wmcf;
    s->amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                                ngx_http_tce_admin_api_module);

    s->tick.handler = ngx_http_tce_admin_webhook_tick;
    s->tick.data = s;
    s->tick.log = cycle->log;
    s->tick.cancelable = 1;

    s->kick.handler = ngx_http_tce_admin_webhook_on_kick;
    s->kick.data = s;
    s->kick.log = cycle->log;
    s->kick.cancelable = 1;

    wmcf->sender = s;

    ngx_add_timer(&s->tick, NGX_HTTP_TCE_ADMIN_WEBHOOK_TICK);

    return NGX_OK;
}


void
ngx_http_tce_admin_webhook_kick(ngx_http_tce_admin_webhook_main_conf_t *wmcf)
{
    ngx_http_tce_admin_webhook_sender_t  *s;

    s = wmcf->sender;

    /* after the caller's handler: never inside the controller's look */
    if (s && !s->kick.posted && ngx_http_tce_admin_webhook_controls(s)) {
        ngx_post_event(&s->kick, &ngx_posted_events);
    }
}


static ngx_uint_t
ngx_http_tce_admin_webhook_controls(ngx_http_tce_admin_webhook_sender_t *s)
{
    return s->amcf && s->amcf->sh
           && (ngx_pid_t) s->amcf->sh->deploy_owner == ngx_pid;
}


static void
ngx_http_tce_admin_webhook_tick(ngx_event_t *ev)
{
    ngx_http_tce_admin_webhook_sender_t *s = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        /* the event in flight is sent again by the next controller */
        if (s->curl) {
            ngx_tce_curl_destroy(s->curl);
        }

        return;
    }

    if (ngx_http_tce_admin_webhook_controls(s)) {
        ngx_http_tce_admin_webhook_pump(s);
    }

    ngx_add_timer(ev, NGX_HTTP_TCE_ADMIN_WEBHOOK_TICK);
}


static void
ngx_http_tce_admin_webhook_on_kick(ngx_event_t *ev)
{
    ngx_http_tce_admin_webhook_pump(ev->data);
}


/* sends the head if nothing is in flight and its time has come */
static void
ngx_http_tce_admin_webhook_pump(ngx_http_tce_admin_webhook_sender_t *s)
{
    uint64_t                                 now;
    ngx_pid_t                                sender;
    ngx_http_tce_admin_webhook_sh_t         *sh;
    ngx_http_tce_admin_webhook_event_t      *e;
    ngx_http_tce_admin_webhook_main_conf_t  *wmcf;

    wmcf = s->wmcf;
    sh = wmcf->sh;

    if (s->easy || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    if (s->curl == NULL) {
        s->curl = ngx_tce_curl_create(ngx_cycle->pool, ngx_cycle->log,
                                      "tce webhook",
                                      ngx_http_tce_admin_webhook_done, s);
        if (s->curl == NULL) {
            return;
        }
    }

    now = ngx_http_tce_admin_webhook_now();

    ngx_shmtx_lock(&wmcf->shpool->mutex);

    sender = (ngx_pid_t) sh->sender;

    if (sh->n == 0 || now < sh->retry_at
        || (sender && sender != ngx_pid
            && now < sh->sender_since + wmcf->timeout + 1000
            && !(kill(sender, 0) == -1 && ngx_errno == NGX_ESRCH)))
    {
        /* empty, backing off, or the previous controller's still out */
        ngx_shmtx_unlock(&wmcf->shpool->mutex);
        return;
    }

    e = &sh->ring[sh->head];

    s->body = ngx_alloc(e->len, ngx_cycle->log);
    if (s->body == NULL) {
        ngx_shmtx_unlock(&wmcf->shpool->mutex);
        return;
    }

    ngx_memcpy(s->body, e->body, e->len);
    s->len = e->len;
    s->seq = e->seq;

    sh->sender = (ngx_atomic_uint_t) ngx_pid;
    sh->sender_since = now;

    ngx_shmtx_unlock(&wmcf->shpool->mutex);

    if (ngx_http_tce_admin_webhook_post(s) != NGX_OK) {
        ngx_http_tce_admin_webhook_result(s, "the request could not start");
    }
}


static ngx_int_t
ngx_http_tce_admin_webhook_post(ngx_http_tce_admin_webhook_sender_t *s)
{
    u_char                                   buf[64];
    CURL                                    *easy;
    size_t                                   len;
    struct curl_slist                       *list;
    ngx_http_tce_admin_webhook_main_conf_t  *wmcf;

    static const char  *headers[] = {
        "Content-Type: application/json",
        "User-Agent: tce-front-door",
        "Expect:",      /* no 100-continue round trip */
        NULL
    };

    wmcf = s->wmcf;
    s->error[0] = '\0';

    for (len = 0; headers[len]; len++) {
        list = curl_slist_append(s->headers, headers[len]);
        if (list == NULL) {
            return NGX_ERROR;
        }

        s->headers = list;
    }

    (void) ngx_sprintf(buf, "X-TCE-Event-Seq: %uL%Z", s->seq);

    list = curl_slist_append(s->headers, (char *) buf);
    if (list == NULL) {
        return NGX_ERROR;
    }

    s->headers = list;

    easy = curl_easy_init();
    if (easy == NULL) {
        return NGX_ERROR;
    }

    s->easy = easy;

    if (curl_easy_setopt(easy, CURLOPT_URL, wmcf->url.data) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https")
           != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_POST, 1L) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_POSTFIELDS, s->body) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE,
                            (long) s->len) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_HTTPHEADER, s->headers) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) wmcf->timeout)
           != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, s->error) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION,
                            ngx_http_tce_admin_webhook_discard)
           != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_PRIVATE, s) != CURLE_OK
        || ngx_tce_curl_add(s->curl, easy) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_tce_admin_webhook_done(ngx_tce_curl_t *cu, CURL *easy, CURLcode rc,
    const char *error)
{
    ngx_http_tce_admin_webhook_sender_t *s = cu->data;

    long   status;
    char   text[NGX_HTTP_TCE_ADMIN_WEBHOOK_ERROR_LEN];

    status = 0;
    (void) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);

    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        /* the worker exits: not an attempt, sent again by the next one */
        ngx_shmtx_lock(&s->wmcf->shpool->mutex);

        if ((ngx_pid_t) s->wmcf->sh->sender == ngx_pid) {
            s->wmcf->sh->sender = 0;
        }

        ngx_shmtx_unlock(&s->wmcf->shpool->mutex);
        ngx_http_tce_admin_webhook_release(s);
        return;
    }

    if (rc != CURLE_OK) {
        /* curl's own words, more precise than its code's */
        (void) ngx_snprintf((u_char *) text, sizeof(text) - 1, "%s%Z",
                            s->error[0] ? s->error : error);

    } else if (status < 200 || status > 299) {
        (void) ngx_snprintf((u_char *) text, sizeof(text) - 1,
                            "answered %l%Z", status);

    } else {
        text[0] = '\0';
    }

    ngx_http_tce_admin_webhook_result(s, text[0] ? text : NULL);
}


/* the attempt's outcome (error NULL: delivered), then the next one */
static void
ngx_http_tce_admin_webhook_result(ngx_http_tce_admin_webhook_sender_t *s,
    const char *error)
{
    uint64_t                                 now, delay, seq;
    ngx_uint_t                               log, attempts, abandoned;
    ngx_uint_t                               unlogged;
    ngx_http_tce_admin_webhook_sh_t         *sh;
    ngx_http_tce_admin_webhook_event_t      *e;
    ngx_http_tce_admin_webhook_main_conf_t  *wmcf;

    wmcf = s->wmcf;
    sh = wmcf->sh;
    seq = s->seq;
    now = ngx_http_tce_admin_webhook_now();
    log = 0;
    abandoned = 0;
    attempts = 0;
    unlogged = 0;

    ngx_shmtx_lock(&wmcf->shpool->mutex);

    if ((ngx_pid_t) sh->sender == ngx_pid) {
        sh->sender = 0;
    }

    e = sh->n ? &sh->ring[sh->head] : NULL;

    if (error == NULL) {
        sh->delivered++;
        sh->last_success = now;

    } else {
        sh->failures++;
        sh->last_failure = now;
        (void) ngx_cpystrn((u_char *) sh->last_error, (u_char *) error,
                           sizeof(sh->last_error));

        if (now >= sh->logged_at + NGX_HTTP_TCE_ADMIN_WEBHOOK_LOG_EVERY) {
            log = 1;
            unlogged = sh->unlogged;
            sh->unlogged = 0;
            sh->logged_at = now;

        } else {
            sh->unlogged++;
        }
    }

    /* the head may have been dropped meanwhile (a full queue) */
    if (e && e->seq == seq) {

        if (error) {
            attempts = ++sh->attempts;

            if (attempts > wmcf->retries) {
                abandoned = 1;
                sh->abandoned++;

            } else {
                delay = (uint64_t) NGX_HTTP_TCE_ADMIN_WEBHOOK_BACKOFF
                        << ngx_min(attempts - 1, 10);
                sh->retry_at = now + ngx_min(delay,
                                      NGX_HTTP_TCE_ADMIN_WEBHOOK_BACKOFF_MAX);
            }
        }

        if (error == NULL || abandoned) {
            ngx_slab_free_locked(wmcf->shpool, e->body);
            ngx_memzero(e, sizeof(ngx_http_tce_admin_webhook_event_t));
            sh->head = (sh->head + 1) % sh->capacity;
            sh->n--;
            sh->attempts = 0;
            sh->retry_at = 0;
        }
    }

    ngx_shmtx_unlock(&wmcf->shpool->mutex);

    ngx_http_tce_admin_webhook_release(s);

    /* the URL may hold credentials or a secret: the target only */
    if (abandoned) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "tce webhook: event %uL to %V abandoned after %ui "
                      "attempts: %s", seq, &wmcf->target, attempts, error);

    } else if (log) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "tce webhook: event %uL to %V: attempt %ui failed: "
                      "%s (%ui more failures not logged in the last %ui s)",
                      seq, &wmcf->target, attempts, error, unlogged,
                      (ngx_uint_t) NGX_HTTP_TCE_ADMIN_WEBHOOK_LOG_EVERY
                      / 1000);
    }

    if (error == NULL || abandoned) {
        /* the next event at once */
        ngx_http_tce_admin_webhook_kick(wmcf);
    }
}


static void
ngx_http_tce_admin_webhook_release(ngx_http_tce_admin_webhook_sender_t *s)
{
    if (s->easy) {
        ngx_tce_curl_remove(s->curl, s->easy);
        curl_easy_cleanup(s->easy);
        s->easy = NULL;
    }

    if (s->headers) {
        curl_slist_free_all(s->headers);
        s->headers = NULL;
    }

    if (s->body) {
        ngx_free(s->body);
        s->body = NULL;
    }
}


/* CURLOPT_WRITEFUNCTION: the receiver's answer is not kept */
static size_t
ngx_http_tce_admin_webhook_discard(char *buf, size_t size, size_t n,
    void *data)
{
    return size * n;
}
