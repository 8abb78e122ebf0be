/*
 * Files the workers write (the Consul snapshot): written off the event
 * loop, on nginx's default thread pool, at most one write in flight per
 * file and process (a request meanwhile is coalesced: the content is
 * collected again when the write in flight ends, so the latest wins);
 * their outcome kept in the zone for tce_status and the metrics; their
 * directory checked at start for the worker user.
 *
 * Writing one file takes three callbacks of its owner: collect (on the
 * event loop: copies what is to be written, O(n) memcpy at most),
 * encode (on a thread: the text, from malloc) and free (on a thread or
 * the event loop: releases what collect returned).
 */

#ifndef _NGX_TCE_PERSIST_H_INCLUDED_
#define _NGX_TCE_PERSIST_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_tce.h"
#include "ngx_tce_prom.h"


#define NGX_TCE_PERSIST_ERR_LEN  160


typedef struct ngx_tce_persist_sh_s  ngx_tce_persist_sh_t;
typedef struct ngx_tce_persist_s     ngx_tce_persist_t;

/* event loop: a copy of the content's source, NULL on error (logged) */
typedef void *(*ngx_tce_persist_collect_pt)(void *data, ngx_log_t *log);

/*
 * any thread: the text to write (malloc), *len its size; NULL with err
 * set on error.  A note (e.g. "3 services left out") may be put in err
 * with a text: the file is written and the note counted as an error.
 */
typedef char *(*ngx_tce_persist_encode_pt)(void *job, size_t *len,
    char *err, size_t errlen);

typedef void (*ngx_tce_persist_free_pt)(void *job);


/* in the zone, one per path; never freed (paths come from config) */
struct ngx_tce_persist_sh_s {
    ngx_tce_persist_sh_t       *next;
    ngx_atomic_t                writes;      /* successful */
    ngx_atomic_t                errors;
    ngx_atomic_t                seq;         /* writes begun */
    ngx_atomic_t                done;        /* seq of the file in place */
    time_t                      last_success;
    time_t                      last_error_time;
    ngx_uint_t                  configured;  /* by the running config */
    u_char                      what[32];
    u_char                      last_error[NGX_TCE_PERSIST_ERR_LEN];
    size_t                      path_len;
    u_char                      path[1];
};


struct ngx_tce_persist_s {
    ngx_str_t                   path;        /* full, NUL-terminated */
    const char                 *what;        /* "consul snapshot" */
    ngx_tce_zone_t             *zone;
    ngx_tce_main_conf_t        *tmcf;
    ngx_tce_persist_sh_t       *sh;          /* set at init_zone */
    ngx_tce_persist_collect_pt  collect;
    ngx_tce_persist_encode_pt   encode;
    ngx_tce_persist_free_pt     free;
    void                       *data;
    void                       *task;        /* this worker's, lazily */
    ngx_uint_t                  busy;        /* a write in flight */
    ngx_uint_t                  dirty;       /* asked again meanwhile */
    ngx_uint_t                  failing;     /* the last write failed */
};


/*
 * Registers a file written by workers (configuration time, after
 * tce_zone): path is made absolute against the prefix.  Adds nginx's
 * default thread pool.  Returns the handle (its callbacks are the
 * caller's to set) or NULL on error.
 */
ngx_tce_persist_t *ngx_tce_persist_add(ngx_conf_t *cf,
    ngx_tce_main_conf_t *tmcf, ngx_str_t *path, const char *what);

/*
 * Finds or creates the zone's status entry of every registered file
 * and marks the others as no longer configured (master, init_zone).
 * Returns NGX_OK or NGX_ERROR (zone full).
 */
ngx_int_t ngx_tce_persist_init_zone(ngx_tce_zone_t *zone,
    ngx_tce_main_conf_t *tmcf, ngx_log_t *log);

/*
 * Warns, naming the user and the path, about every registered file
 * whose directory the worker user cannot write (master, at start, at
 * reload and at "nginx -t").  Never fatal.
 */
void ngx_tce_persist_check(ngx_cycle_t *cycle, ngx_tce_main_conf_t *tmcf);

/*
 * Asks for the file to be written with the latest content: posted to
 * the thread pool, or coalesced with the write in flight.  Synchronous
 * when there is no thread pool or the process is exiting.  Outcomes
 * are logged (on a change of state) and kept in the zone.
 */
void ngx_tce_persist_write(ngx_tce_persist_t *p, ngx_log_t *log);

#if (NGX_THREADS)

/*
 * Posts a disk write to the worker's thread for them
 * (ngx_tce_background_post_io(), started at its first task; no nginx
 * thread pool is needed): NGX_OK (its event handler runs on the event
 * loop once the thread is done), NGX_DECLINED when there is no thread
 * to post to (an exiting worker, or one that could not be started).
 * On anything but NGX_OK the caller does the work in place, or later.
 */
ngx_int_t ngx_tce_thread_post(ngx_tce_main_conf_t *tmcf,
    ngx_thread_task_t *task);

#endif

/* the status of the configured files as a JSON object keyed by path */
json_t *ngx_tce_persist_json(ngx_tce_zone_t *zone);

/* copies the configured files' status for the metrics (pool memory) */
ngx_int_t ngx_tce_persist_prom(ngx_tce_zone_t *zone,
    ngx_tce_prom_snapshot_t *s, ngx_pool_t *pool);


#endif /* _NGX_TCE_PERSIST_H_INCLUDED_ */
