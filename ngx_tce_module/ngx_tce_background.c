/*
 * The background thread.
 *
 * nginx's thread pools run their tasks at the workers' own priority:
 * a schedule build of tens of milliseconds on a pool thread competes
 * for the cores with the event loops, and on a busy machine requests
 * wait behind it (the p99 of bench/rebuild_bench.py).  This worker's
 * background thread runs at nice 19: the scheduler gives it a core
 * when an event loop leaves one idle, and takes it back as soon as a
 * loop has something to do.  The work is never urgent: until a build
 * is published, workers route on the schedule they had, less the
 * instances that left (docs/architecture.md).
 *
 * One thread per worker of a configuration with a tce zone, started
 * at init_process (ngx_tce_background_init), so that its descriptors
 * do not appear later in the worker's life; otherwise at the first
 * task.
 * Tasks queue under a mutex; a finished task goes to the done list and
 * a byte down a pipe wakes the event loop, which runs the task's event
 * handler, as nginx's thread pools do with their notify.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_thread_pool.h>

#include "ngx_tce_background.h"

#if (NGX_THREADS)

#include <pthread.h>
#if (NGX_LINUX)
#include <sys/resource.h>
#include <sys/syscall.h>
#endif


#define NGX_TCE_BACKGROUND_NICE  19


typedef struct {
    ngx_thread_task_t    *first;
    ngx_thread_task_t   **last;
} ngx_tce_background_list_t;


typedef struct {
    ngx_uint_t                  state;      /* see below */
    pthread_t                   tid;
    pthread_mutex_t             mtx;
    pthread_cond_t              cond;
    ngx_tce_background_list_t   queue;      /* to run */
    ngx_tce_background_list_t   done;       /* to hand back */
    ngx_uint_t                  stop;
    ngx_fd_t                    fd[2];      /* done: thread -> loop */
    ngx_connection_t           *c;
    ngx_log_t                  *log;
} ngx_tce_background_t;


#define NGX_TCE_BACKGROUND_NONE     0
#define NGX_TCE_BACKGROUND_RUNNING  1
#define NGX_TCE_BACKGROUND_FAILED   2       /* not tried again */


static ngx_int_t ngx_tce_background_start(ngx_log_t *log);
static ngx_int_t ngx_tce_background_pipe(ngx_log_t *log);
static void *ngx_tce_background_cycle(void *data);
static void ngx_tce_background_handler(ngx_event_t *ev);
static void ngx_tce_background_push(ngx_tce_background_list_t *list,
    ngx_thread_task_t *task);


static ngx_tce_background_t  ngx_tce_bg;


ngx_int_t
ngx_tce_background_post(ngx_thread_task_t *task, ngx_log_t *log)
{
    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return NGX_DECLINED;
    }

    ngx_tce_background_init(log);

    if (ngx_tce_bg.state != NGX_TCE_BACKGROUND_RUNNING) {
        return NGX_DECLINED;
    }

    if (task->event.active) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "tce: background task already queued");
        return NGX_ERROR;
    }

    task->event.active = 1;
    task->event.complete = 0;
    task->next = NULL;

    pthread_mutex_lock(&ngx_tce_bg.mtx);
    ngx_tce_background_push(&ngx_tce_bg.queue, task);
    pthread_cond_signal(&ngx_tce_bg.cond);
    pthread_mutex_unlock(&ngx_tce_bg.mtx);

    return NGX_OK;
}


void
ngx_tce_background_init(ngx_log_t *log)
{
    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return;
    }

    if (ngx_tce_bg.state == NGX_TCE_BACKGROUND_NONE) {
        ngx_tce_bg.state = ngx_tce_background_start(log) == NGX_OK
                           ? NGX_TCE_BACKGROUND_RUNNING
                           : NGX_TCE_BACKGROUND_FAILED;
    }
}


static ngx_int_t
ngx_tce_background_start(ngx_log_t *log)
{
    int        err;
    sigset_t   set, old;

    ngx_tce_bg.log = ngx_cycle->log;
    ngx_tce_bg.queue.last = &ngx_tce_bg.queue.first;
    ngx_tce_bg.done.last = &ngx_tce_bg.done.first;

    if (ngx_tce_background_pipe(log) != NGX_OK) {
        return NGX_ERROR;
    }

    err = pthread_mutex_init(&ngx_tce_bg.mtx, NULL);
    if (err == 0) {
        err = pthread_cond_init(&ngx_tce_bg.cond, NULL);
    }

    if (err) {
        ngx_log_error(NGX_LOG_ALERT, log, err,
                      "tce: background thread: mutex init failed");
        return NGX_ERROR;
    }

    /* signals stay with the event loop, as in nginx's thread pools */

    sigfillset(&set);
    (void) pthread_sigmask(SIG_SETMASK, &set, &old);

    err = pthread_create(&ngx_tce_bg.tid, NULL, ngx_tce_background_cycle,
                         NULL);

    (void) pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (err) {
        ngx_log_error(NGX_LOG_ALERT, log, err,
                      "tce: background thread not started, slow work "
                      "runs on the event loop");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_tce_background_pipe(ngx_log_t *log)
{
    ngx_event_t       *rev;
    ngx_connection_t  *c;

    if (pipe(ngx_tce_bg.fd) == -1) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "tce: background thread: pipe() failed");
        return NGX_ERROR;
    }

    if (ngx_nonblocking(ngx_tce_bg.fd[0]) == -1
        || ngx_nonblocking(ngx_tce_bg.fd[1]) == -1)
    {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "tce: background thread: " ngx_nonblocking_n
                      " failed");
        goto failed;
    }

    c = ngx_get_connection(ngx_tce_bg.fd[0], ngx_tce_bg.log);
    if (c == NULL) {
        goto failed;
    }

    rev = c->read;
    rev->handler = ngx_tce_background_handler;
    rev->log = ngx_tce_bg.log;

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        c->fd = (ngx_socket_t) -1;
        ngx_free_connection(c);
        goto failed;
    }

    ngx_tce_bg.c = c;

    return NGX_OK;

failed:

    (void) close(ngx_tce_bg.fd[0]);
    (void) close(ngx_tce_bg.fd[1]);

    return NGX_ERROR;
}


/* the thread: no nginx call but the tasks' own handlers */

static void *
ngx_tce_background_cycle(void *data)
{
    u_char              byte;
    ngx_thread_task_t  *task;

#if (NGX_LINUX)
    (void) setpriority(PRIO_PROCESS, (id_t) syscall(SYS_gettid),
                       NGX_TCE_BACKGROUND_NICE);
#endif

    byte = 0;

    for ( ;; ) {
        pthread_mutex_lock(&ngx_tce_bg.mtx);

        while (ngx_tce_bg.queue.first == NULL && !ngx_tce_bg.stop) {
            pthread_cond_wait(&ngx_tce_bg.cond, &ngx_tce_bg.mtx);
        }

        task = ngx_tce_bg.queue.first;

        if (task == NULL) {
            pthread_mutex_unlock(&ngx_tce_bg.mtx);
            return NULL;
        }

        ngx_tce_bg.queue.first = task->next;

        if (ngx_tce_bg.queue.first == NULL) {
            ngx_tce_bg.queue.last = &ngx_tce_bg.queue.first;
        }

        pthread_mutex_unlock(&ngx_tce_bg.mtx);

        task->handler(task->ctx, ngx_tce_bg.log);

        task->next = NULL;

        pthread_mutex_lock(&ngx_tce_bg.mtx);
        ngx_tce_background_push(&ngx_tce_bg.done, task);
        pthread_mutex_unlock(&ngx_tce_bg.mtx);

        /* a full pipe already wakes the loop: the byte is not needed */
        (void) write(ngx_tce_bg.fd[1], &byte, 1);
    }
}


/* on the event loop: the finished tasks' event handlers */

static void
ngx_tce_background_handler(ngx_event_t *ev)
{
    u_char              buf[64];
    ngx_event_t        *event;
    ngx_thread_task_t  *task;

    /* drained first: a task finished after the take below wakes us */

    while (read(ngx_tce_bg.fd[0], buf, sizeof(buf)) > 0) {
        /* void */
    }

    pthread_mutex_lock(&ngx_tce_bg.mtx);
    task = ngx_tce_bg.done.first;
    ngx_tce_bg.done.first = NULL;
    ngx_tce_bg.done.last = &ngx_tce_bg.done.first;
    pthread_mutex_unlock(&ngx_tce_bg.mtx);

    while (task) {
        event = &task->event;
        task = task->next;

        event->complete = 1;
        event->active = 0;

        event->handler(event);
    }

    if (ngx_handle_read_event(ev, 0) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, ev->log, 0,
                      "tce: background thread: cannot wait for its pipe");
    }
}


static void
ngx_tce_background_push(ngx_tce_background_list_t *list,
    ngx_thread_task_t *task)
{
    *list->last = task;
    list->last = &task->next;
}


void
ngx_tce_background_exit(void)
{
    if (ngx_tce_bg.state != NGX_TCE_BACKGROUND_RUNNING) {
        return;
    }

    pthread_mutex_lock(&ngx_tce_bg.mtx);
    ngx_tce_bg.stop = 1;
    pthread_cond_signal(&ngx_tce_bg.cond);
    pthread_mutex_unlock(&ngx_tce_bg.mtx);

    /* the thread runs what is queued first */
    (void) pthread_join(ngx_tce_bg.tid, NULL);

    ngx_tce_bg.state = NGX_TCE_BACKGROUND_FAILED;

    ngx_close_connection(ngx_tce_bg.c);
    (void) close(ngx_tce_bg.fd[1]);
}

#endif
