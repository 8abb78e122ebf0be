/*
 * The background thread of a worker (ngx_tce_background.c): the work
 * that takes milliseconds of CPU and is no request's (a Consul answer's
 * parse, a weighted schedule's build) runs there, at the lowest CPU
 * priority, so that it takes a core only when the workers' event loops
 * leave one idle.
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

/*
 * At init_process: starts the thread now rather than at the first task,
 * so that a worker's threads and descriptors (the pipe) stay the same
 * over its life, whichever worker becomes the Consul watcher.  A
 * failure is logged; tasks are then done in place.
 */
void ngx_tce_background_init(ngx_log_t *log);

/*
 * At exit_process: runs the tasks still queued (their event handlers
 * do not run any more) and joins the thread.
 */
void ngx_tce_background_exit(void);

#endif


#endif /* _NGX_TCE_BACKGROUND_H_INCLUDED_ */
