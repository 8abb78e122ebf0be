/*
 * The background threads of a worker (ngx_tce_background.c): the work
 * that takes milliseconds of CPU and is no request's (a Consul answer's
 * parse, a weighted schedule's build) runs on one, at the lowest CPU
 * priority, so that it takes a core only when the workers' event loops
 * leave one idle; the disk writes (snapshots, the state file, the audit
 * log) on the other.  Each starts at its first task.
 */

#ifndef _NGX_TCE_BACKGROUND_H_INCLUDED_
#define _NGX_TCE_BACKGROUND_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#if (NGX_THREADS)

/*
 * Queues task: task->handler(task->ctx, log) runs on the background
 * thread (no nginx call, no shared memory there), then task->event's
 * handler on this worker's event loop, as with nginx's thread pools.
 * The thread is started at the first task.  NGX_OK, or NGX_DECLINED
 * when there is no thread to run it (not a worker with an event loop,
 * the thread could not be started, the worker is exiting): the caller
 * then does the work itself.
 */
ngx_int_t ngx_tce_background_post(ngx_thread_task_t *task, ngx_log_t *log);

/* the same on the disk writes' thread (the workers' own priority) */
ngx_int_t ngx_tce_background_post_io(ngx_thread_task_t *task,
    ngx_log_t *log);

/*
 * At init_process: makes the threads' pipes now rather than at their
 * first task, so that a worker's descriptors stay the same over its
 * life, whichever worker becomes the Consul watcher; the threads start
 * at their first task (a worker that needs none stays one thread).  A
 * failure is logged; tasks are then done in place.
 */
void ngx_tce_background_init(ngx_log_t *log);

/*
 * At exit_process: runs the tasks still queued (their event handlers
 * do not run any more) and joins the threads.
 */
void ngx_tce_background_exit(void);

#endif


#endif /* _NGX_TCE_BACKGROUND_H_INCLUDED_ */
