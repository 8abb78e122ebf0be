/*
 * The background threads.
 *
 * nginx's thread pools run their tasks at the workers' own priority:
 * a schedule build of tens of milliseconds on a pool thread competes
 * for the cores with the event loops, and on a busy machine requests
 * wait behind it (the p99 of bench/rebuild_bench.py).  This worker's
 * background thread runs at nice 19 and in the SCHED_IDLE class: the
 * scheduler gives it a core when the event loops leave one idle, and
 * takes it back as soon as a loop wakes.  Nice 19 alone is not that: an
 * event loop that wakes on its core may wait for the thread's slice to
 * end (about a millisecond, EEVDF's run to parity), and a core running
 * it does not count as idle when the kernel places a waking task
 * (docs/architecture.md has that bench's figures).  Any thread may move
 * itself to SCHED_IDLE without privileges.  The work is never urgent:
 * until a build is published, workers route on the schedule they had,
 * less the instances that left (docs/architecture.md).
 *
 * A second lane, at the workers' own priority, takes the disk writes
 * (snapshots, the state file, the audit log): they wait on the disk,
 * not on a core, and must not queue behind a parse.
 *
 * Each lane's thread starts at its first task: a worker that never
 * needs one stays a single thread, and glibc's system call wrappers
 * (recv, writev, epoll_wait...) then skip the cancellation bookkeeping
 * they do in every multi-threaded process, about 1% of the
 * instructions of a proxied request (bench/bench.py, callgrind).  The
 * lanes' pipes are made at init_process (ngx_tce_background_init), so
 * that a worker's descriptors stay the same over its life, whichever
 * worker becomes the Consul watcher.
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
    int                         nice;
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
#define NGX_TCE_BACKGROUND_READY    1       /* its pipe, no thread yet */
#define NGX_TCE_BACKGROUND_RUNNING  2
#define NGX_TCE_BACKGROUND_FAILED   3       /* not tried again */

#define NGX_TCE_BACKGROUND_CPU      0       /* the lanes */
#define NGX_TCE_BACKGROUND_IO       1


static ngx_int_t ngx_tce_background_lane(ngx_tce_background_t *bg,
    ngx_thread_task_t *task, ngx_log_t *log);
static ngx_int_t ngx_tce_background_ready(ngx_tce_background_t *bg,
    ngx_log_t *log);
static ngx_int_t ngx_tce_background_start(ngx_tce_background_t *bg,
    ngx_log_t *log);
static ngx_int_t ngx_tce_background_pipe(ngx_tce_background_t *bg,
    ngx_log_t *log);
static void *ngx_tce_background_cycle(void *data);
#if (NGX_LINUX)
static void ngx_tce_background_lower(ngx_tce_background_t *bg);
#endif
static void ngx_tce_background_handler(ngx_event_t *ev);
static void ngx_tce_background_push(ngx_tce_background_list_t *list,
    ngx_thread_task_t *task);
static void ngx_tce_background_stop(ngx_tce_background_t *bg);


static ngx_tce_background_t  ngx_tce_bg[2];


ngx_int_t
ngx_tce_background_post(ngx_thread_task_t *task, ngx_log_t *log)
{
    return ngx_tce_background_lane(&ngx_tce_bg[NGX_TCE_BACKGROUND_CPU],
                                   task, log);
}


ngx_int_t
ngx_tce_background_post_io(ngx_thread_task_t *task, ngx_log_t *log)
{
    return ngx_tce_background_lane(&ngx_tce_bg[NGX_TCE_BACKGROUND_IO],
                                   task, log);
}


static ngx_int_t
ngx_tce_background_lane(ngx_tce_background_t *bg, ngx_thread_task_t *task,
    ngx_log_t *log)
{
    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return NGX_DECLINED;
    }

    ngx_tce_background_init(log);

    if (bg->state == NGX_TCE_BACKGROUND_READY) {
        bg->state = ngx_tce_background_start(bg, log) == NGX_OK
                    ? NGX_TCE_BACKGROUND_RUNNING
                    : NGX_TCE_BACKGROUND_FAILED;
    }

    if (bg->state != NGX_TCE_BACKGROUND_RUNNING) {
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

    pthread_mutex_lock(&bg->mtx);
    ngx_tce_background_push(&bg->queue, task);
    pthread_cond_signal(&bg->cond);
    pthread_mutex_unlock(&bg->mtx);

    return NGX_OK;
}


void
ngx_tce_background_init(ngx_log_t *log)
{
    ngx_uint_t  i;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return;
    }

    for (i = 0; i < 2; i++) {
        if (ngx_tce_bg[i].state == NGX_TCE_BACKGROUND_NONE) {
            ngx_tce_bg[i].nice = i == NGX_TCE_BACKGROUND_CPU
                                 ? NGX_TCE_BACKGROUND_NICE : 0;
            ngx_tce_bg[i].state = ngx_tce_background_ready(&ngx_tce_bg[i],
                                                           log)
                                  == NGX_OK
                                  ? NGX_TCE_BACKGROUND_READY
                                  : NGX_TCE_BACKGROUND_FAILED;
        }
    }
}


/* the lane's pipe, mutex and lists: all but the thread */

static ngx_int_t
ngx_tce_background_ready(ngx_tce_background_t *bg, ngx_log_t *log)
{
    int  err;

    bg->log = ngx_cycle->log;
    bg->queue.last = &bg->queue.first;
    bg->done.last = &bg->done.first;

    err = pthread_mutex_init(&bg->mtx, NULL);
    if (err == 0) {
        err = pthread_cond_init(&bg->cond, NULL);
    }

    if (err) {
        ngx_log_error(NGX_LOG_ALERT, log, err,
                      "tce: background thread: mutex init failed");
        return NGX_ERROR;
    }

    return ngx_tce_background_pipe(bg, log);
}


static ngx_int_t
ngx_tce_background_start(ngx_tce_background_t *bg, ngx_log_t *log)
{
    int        err;
    sigset_t   set, old;

    /* signals stay with the event loop, as in nginx's thread pools */

    sigfillset(&set);
    (void) pthread_sigmask(SIG_SETMASK, &set, &old);

    err = pthread_create(&bg->tid, NULL, ngx_tce_background_cycle, bg);

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
ngx_tce_background_pipe(ngx_tce_background_t *bg, ngx_log_t *log)
{
    ngx_event_t       *rev;
    ngx_connection_t  *c;

    if (pipe(bg->fd) == -1) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "tce: background thread: pipe() failed");
        return NGX_ERROR;
    }

    if (ngx_nonblocking(bg->fd[0]) == -1
        || ngx_nonblocking(bg->fd[1]) == -1)
    {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "tce: background thread: " ngx_nonblocking_n
                      " failed");
        goto failed;
    }

    c = ngx_get_connection(bg->fd[0], bg->log);
    if (c == NULL) {
        goto failed;
    }

    c->data = bg;
    rev = c->read;
    rev->handler = ngx_tce_background_handler;
    rev->log = bg->log;

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        c->fd = (ngx_socket_t) -1;
        ngx_free_connection(c);
        goto failed;
    }

    bg->c = c;

    return NGX_OK;

failed:

    (void) close(bg->fd[0]);
    (void) close(bg->fd[1]);

    return NGX_ERROR;
}


/* the thread: no nginx call but the tasks' own handlers */

static void *
ngx_tce_background_cycle(void *data)
{
    ngx_tce_background_t *bg = data;

    u_char              byte;
    ngx_thread_task_t  *task;

#if (NGX_LINUX)
    if (bg->nice) {
        ngx_tce_background_lower(bg);
    }
#endif

    byte = 0;

    for ( ;; ) {
        pthread_mutex_lock(&bg->mtx);

        while (bg->queue.first == NULL && !bg->stop) {
            pthread_cond_wait(&bg->cond, &bg->mtx);
        }

        task = bg->queue.first;

        if (task == NULL) {
            pthread_mutex_unlock(&bg->mtx);
            return NULL;
        }

        bg->queue.first = task->next;

        if (bg->queue.first == NULL) {
            bg->queue.last = &bg->queue.first;
        }

        pthread_mutex_unlock(&bg->mtx);

        task->handler(task->ctx, bg->log);

        task->next = NULL;

        pthread_mutex_lock(&bg->mtx);
        ngx_tce_background_push(&bg->done, task);
        pthread_mutex_unlock(&bg->mtx);

        /* a full pipe already wakes the loop: the byte is not needed */
        (void) write(bg->fd[1], &byte, 1);
    }
}


#if (NGX_LINUX)

/* the CPU lane's own thread: the lowest priority there is (see above) */

static void
ngx_tce_background_lower(ngx_tce_background_t *bg)
{
    struct sched_param  sp;

    (void) setpriority(PRIO_PROCESS, (id_t) syscall(SYS_gettid), bg->nice);

    ngx_memzero(&sp, sizeof(struct sched_param));
    (void) pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
}

#endif


/* on the event loop: the finished tasks' event handlers */

static void
ngx_tce_background_handler(ngx_event_t *ev)
{
    u_char                 buf[64];
    ngx_event_t           *event;
    ngx_connection_t      *c;
    ngx_thread_task_t     *task;
    ngx_tce_background_t  *bg;

    c = ev->data;
    bg = c->data;

    /* drained first: a task finished after the take below wakes us */

    while (read(bg->fd[0], buf, sizeof(buf)) > 0) {
        /* void */
    }

    pthread_mutex_lock(&bg->mtx);
    task = bg->done.first;
    bg->done.first = NULL;
    bg->done.last = &bg->done.first;
    pthread_mutex_unlock(&bg->mtx);

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
    ngx_tce_background_stop(&ngx_tce_bg[NGX_TCE_BACKGROUND_CPU]);
    ngx_tce_background_stop(&ngx_tce_bg[NGX_TCE_BACKGROUND_IO]);
}


static void
ngx_tce_background_stop(ngx_tce_background_t *bg)
{
    if (bg->state == NGX_TCE_BACKGROUND_RUNNING) {
        pthread_mutex_lock(&bg->mtx);
        bg->stop = 1;
        pthread_cond_signal(&bg->cond);
        pthread_mutex_unlock(&bg->mtx);

        /* the thread runs what is queued first */
        (void) pthread_join(bg->tid, NULL);

    } else if (bg->state != NGX_TCE_BACKGROUND_READY) {
        return;
    }

    bg->state = NGX_TCE_BACKGROUND_FAILED;

    ngx_close_connection(bg->c);
    (void) close(bg->fd[1]);
}

#endif
