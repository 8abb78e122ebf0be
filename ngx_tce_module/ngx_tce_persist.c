/*
 * Files the workers write: thread-pool writes, their status in the
 * zone, the start-time check of their directory.  See ngx_tce_persist.h.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <grp.h>
#include <pwd.h>

#include "ngx_tce_persist.h"
#include "ngx_tce_background.h"
#include "ngx_tce_state.h"


#define NGX_TCE_PERSIST_NGROUPS    256
#define NGX_TCE_PERSIST_MAX_SHOWN  16
#define NGX_TCE_PERSIST_PATH_SHOWN 512


typedef struct {
    ngx_tce_persist_t          *p;
    void                       *job;
    uint64_t                    seq;
    int                         rc;
    char                        err[NGX_TCE_PERSIST_ERR_LEN];
} ngx_tce_persist_task_t;


/* a configured file's status, copied out of the zone */
typedef struct {
    uint64_t                    writes;
    uint64_t                    errors;
    time_t                      last_success;
    time_t                      last_error_time;
    u_char                      what[32];
    u_char                      last_error[NGX_TCE_PERSIST_ERR_LEN];
    u_char                      path[NGX_TCE_PERSIST_PATH_SHOWN];
} ngx_tce_persist_view_t;


static int ngx_tce_persist_run(ngx_tce_persist_t *p, void *job,
    uint64_t seq, char *err, size_t errlen);
static void ngx_tce_persist_record(ngx_tce_persist_t *p, int rc,
    const char *err, ngx_log_t *log);
static ngx_int_t ngx_tce_persist_start(ngx_tce_persist_t *p,
    ngx_log_t *log);
#if (NGX_THREADS)
static void ngx_tce_persist_thread(void *data, ngx_log_t *log);
static void ngx_tce_persist_done(ngx_event_t *ev);
#endif
static void ngx_tce_persist_check_one(ngx_cycle_t *cycle,
    ngx_tce_persist_t *p, ngx_core_conf_t *ccf);
static int ngx_tce_persist_access_as(ngx_core_conf_t *ccf, const char *dir,
    ngx_err_t *err, ngx_log_t *log);
static ngx_uint_t ngx_tce_persist_copy(ngx_tce_zone_t *zone,
    ngx_tce_persist_view_t *out, ngx_uint_t max);


ngx_tce_persist_t *
ngx_tce_persist_add(ngx_conf_t *cf, ngx_tce_main_conf_t *tmcf,
    ngx_str_t *path, const char *what)
{
    ngx_str_t           full;
    ngx_tce_persist_t  *p, **pp;

    full = *path;

    if (ngx_conf_full_name(cf->cycle, &full, 0) != NGX_OK) {
        return NULL;
    }

    p = ngx_pcalloc(cf->pool, sizeof(ngx_tce_persist_t));
    if (p == NULL) {
        return NULL;
    }

    p->path.data = ngx_pnalloc(cf->pool, full.len + 1);
    if (p->path.data == NULL) {
        return NULL;
    }

    (void) ngx_cpystrn(p->path.data, full.data, full.len + 1);
    p->path.len = full.len;
    p->what = what;
    p->zone = tmcf->zone;
    p->tmcf = tmcf;

    if (tmcf->persist.elts == NULL
        && ngx_array_init(&tmcf->persist, cf->pool, 2,
                          sizeof(ngx_tce_persist_t *))
           != NGX_OK)
    {
        return NULL;
    }

    pp = ngx_array_push(&tmcf->persist);
    if (pp == NULL) {
        return NULL;
    }

    *pp = p;

    return p;
}


#if (NGX_THREADS)

ngx_int_t
ngx_tce_thread_post(ngx_tce_main_conf_t *tmcf, ngx_thread_task_t *task)
{
    /* an exiting worker's threads are being joined */
    if (tmcf->exiting) {
        return NGX_DECLINED;
    }

    return ngx_tce_background_post_io(task, ngx_cycle->log);
}

#endif


ngx_int_t
ngx_tce_persist_init_zone(ngx_tce_zone_t *zone, ngx_tce_main_conf_t *tmcf,
    ngx_log_t *log)
{
    ngx_uint_t             i;
    ngx_tce_persist_t    **pp, *p;
    ngx_tce_persist_sh_t  *sh;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (sh = zone->sh->persist; sh; sh = sh->next) {
        sh->configured = 0;
    }

    pp = tmcf->persist.elts;

    for (i = 0; i < tmcf->persist.nelts; i++) {
        p = pp[i];

        for (sh = zone->sh->persist; sh; sh = sh->next) {
            if (sh->path_len == p->path.len
                && ngx_memcmp(sh->path, p->path.data, p->path.len) == 0)
            {
                break;
            }
        }

        if (sh == NULL) {
            sh = ngx_slab_calloc_locked(zone->shpool,
                                        sizeof(ngx_tce_persist_sh_t)
                                        + p->path.len);
            if (sh == NULL) {
                ngx_shmtx_unlock(&zone->shpool->mutex);
                ngx_log_error(NGX_LOG_EMERG, log, 0,
                              "tce zone \"%V\" is too small for the status "
                              "of \"%V\"", &zone->shm_zone->shm.name,
                              &p->path);
                return NGX_ERROR;
            }

            ngx_memcpy(sh->path, p->path.data, p->path.len);
            sh->path_len = p->path.len;
            sh->next = zone->sh->persist;

            /* readers walk the list without the lock: publish it whole */
            ngx_memory_barrier();

            zone->sh->persist = sh;
        }

        (void) ngx_cpystrn(sh->what, (u_char *) p->what, sizeof(sh->what));
        sh->configured = 1;
        p->sh = sh;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_OK;
}


void
ngx_tce_persist_write(ngx_tce_persist_t *p, ngx_log_t *log)
{
    p->dirty = 1;

    if (p->busy && !p->tmcf->exiting) {
        return;                 /* collected again when it ends */
    }

    (void) ngx_tce_persist_start(p, log);
}


static ngx_int_t
ngx_tce_persist_start(ngx_tce_persist_t *p, ngx_log_t *log)
{
    int                      rc;
    void                    *job;
    uint64_t                 seq;
    ngx_tce_persist_task_t  *t;
    char                     err[NGX_TCE_PERSIST_ERR_LEN];
#if (NGX_THREADS)
    ngx_int_t                posted;
    ngx_thread_task_t       *task;
#endif

    if (p->sh == NULL) {
        return NGX_ERROR;
    }

    p->dirty = 0;

    job = p->collect(p->data, log);

    if (job == NULL) {
        ngx_tce_persist_record(p, -1, "cannot collect the content", log);
        return NGX_ERROR;
    }

    seq = (uint64_t) ngx_atomic_fetch_add(&p->sh->seq, 1) + 1;

#if (NGX_THREADS)

    task = p->task;

    if (task == NULL) {
        task = ngx_thread_task_alloc(ngx_cycle->pool,
                                     sizeof(ngx_tce_persist_task_t));
        if (task == NULL) {
            p->free(job);
            return NGX_ERROR;
        }

        task->handler = ngx_tce_persist_thread;
        task->event.handler = ngx_tce_persist_done;
        task->event.data = p;
        p->task = task;
    }

    t = task->ctx;
    t->p = p;
    t->job = job;
    t->seq = seq;
    t->rc = -1;
    t->err[0] = '\0';

    /* an exiting worker (no pool any more) writes here */
    posted = ngx_tce_thread_post(p->tmcf, task);

    if (posted == NGX_OK) {
        p->busy = 1;
        return NGX_OK;
    }

    if (posted == NGX_ERROR) {
        /* queue full: the next request tries again */
        p->free(job);
        p->dirty = 1;
        ngx_tce_persist_record(p, -1, "the thread pool's queue is full",
                               log);
        return NGX_ERROR;
    }

#endif

    (void) t;

    err[0] = '\0';
    rc = ngx_tce_persist_run(p, job, seq, err, sizeof(err));
    ngx_tce_persist_record(p, rc, err, log);

    return rc == -1 ? NGX_ERROR : NGX_OK;
}


#if (NGX_THREADS)

static void
ngx_tce_persist_thread(void *data, ngx_log_t *log)
{
    ngx_tce_persist_task_t *t = data;

    t->rc = ngx_tce_persist_run(t->p, t->job, t->seq, t->err,
                                sizeof(t->err));
}


static void
ngx_tce_persist_done(ngx_event_t *ev)
{
    ngx_tce_persist_t *p = ev->data;

    ngx_thread_task_t       *task;
    ngx_tce_persist_task_t  *t;

    task = p->task;
    t = task->ctx;

    p->busy = 0;
    ngx_tce_persist_record(p, t->rc, t->err, ngx_cycle->log);

    if (p->dirty && !ngx_terminate) {
        (void) ngx_tce_persist_start(p, ngx_cycle->log);
    }
}

#endif


/*
 * Encodes and writes (any thread).  Returns 0 (written, or superseded
 * by a newer content), 2 (written, with a note in err), -1 (err).
 * Frees the job.
 */
static int
ngx_tce_persist_run(ngx_tce_persist_t *p, void *job, uint64_t seq,
    char *err, size_t errlen)
{
    int      rc;
    char    *text, note[NGX_TCE_PERSIST_ERR_LEN];
    size_t   len;

    note[0] = '\0';
    len = 0;

    text = p->encode(job, &len, note, sizeof(note));
    p->free(job);

    if (text == NULL) {
        (void) ngx_cpystrn((u_char *) err, (u_char *) note, errlen);
        return -1;
    }

    rc = ngx_tce_state_write_ordered((char *) p->path.data, text, len, seq,
                                     (volatile uint64_t *) &p->sh->done,
                                     err, errlen);
    free(text);

    if (rc == -1) {
        return -1;
    }

    if (note[0]) {
        (void) ngx_cpystrn((u_char *) err, (u_char *) note, errlen);
        return 2;
    }

    return 0;
}


static void
ngx_tce_persist_record(ngx_tce_persist_t *p, int rc, const char *err,
    ngx_log_t *log)
{
    ngx_tce_persist_sh_t  *sh;

    sh = p->sh;

    if (rc == 0) {
        (void) ngx_atomic_fetch_add(&sh->writes, 1);
        sh->last_success = ngx_time();

        if (p->failing) {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "tce: %s \"%V\" written again", p->what,
                          &p->path);
            p->failing = 0;
        }

        return;
    }

    if (rc == 2) {
        (void) ngx_atomic_fetch_add(&sh->writes, 1);
        sh->last_success = ngx_time();
    }

    (void) ngx_atomic_fetch_add(&sh->errors, 1);

    ngx_shmtx_lock(&p->zone->shpool->mutex);
    sh->last_error_time = ngx_time();
    (void) ngx_cpystrn(sh->last_error, (u_char *) err, sizeof(sh->last_error));
    ngx_shmtx_unlock(&p->zone->shpool->mutex);

    /* once per failing spell: the status and the metrics count them all */

    if (!p->failing) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tce: %s \"%V\" %s: %s", p->what, &p->path,
                      rc == 2 ? "written incomplete" : "not written", err);
        p->failing = 1;
    }
}


void
ngx_tce_persist_check(ngx_cycle_t *cycle, ngx_tce_main_conf_t *tmcf)
{
    ngx_uint_t          i;
    ngx_core_conf_t    *ccf;
    ngx_tce_persist_t **pp;

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);
    pp = tmcf->persist.elts;

    for (i = 0; i < tmcf->persist.nelts; i++) {
        ngx_tce_persist_check_one(cycle, pp[i], ccf);
    }
}


static void
ngx_tce_persist_check_one(ngx_cycle_t *cycle, ngx_tce_persist_t *p,
    ngx_core_conf_t *ccf)
{
    u_char           *dir, *slash;
    ngx_err_t         err;
    const char       *user;
    struct passwd    *pw;
    ngx_file_info_t   fi;

    dir = ngx_alloc(p->path.len + 2, cycle->log);
    if (dir == NULL) {
        return;
    }

    (void) ngx_cpystrn(dir, p->path.data, p->path.len + 1);
    slash = (u_char *) ngx_strlchr(dir, dir + p->path.len, '/');

    /* the last slash: the path is absolute, so there is one */
    while (slash && ngx_strlchr(slash + 1, dir + p->path.len, '/')) {
        slash = ngx_strlchr(slash + 1, dir + p->path.len, '/');
    }

    if (slash == dir) {
        dir[1] = '\0';

    } else if (slash) {
        *slash = '\0';
    }

    if (ngx_file_info(dir, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                      "tce: the directory \"%s\" of the %s \"%V\" is not "
                      "usable: the file will not be written",
                      dir, p->what, &p->path);
        goto done;
    }

    if (!ngx_is_dir(&fi)) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "tce: \"%s\" (for the %s \"%V\") is not a directory",
                      dir, p->what, &p->path);
        goto done;
    }

    if (ngx_tce_persist_access_as(ccf, (char *) dir, &err, cycle->log)
        == 0)
    {
        goto done;
    }

    if (geteuid() == 0 && ccf->username) {
        user = ccf->username;

    } else {
        pw = getpwuid(geteuid());
        user = pw ? pw->pw_name : "?";
    }

    ngx_log_error(NGX_LOG_WARN, cycle->log, err,
                  "tce: the worker user \"%s\" cannot write the "
                  "directory \"%s\", so the %s \"%V\" will not be "
                  "written: give the user the directory, e.g. "
                  "\"chown %s: %s\"",
                  user, dir, p->what, &p->path, user, dir);

done:

    ngx_free(dir);
}


/*
 * Checks write and search access to dir as the workers will run: the
 * user and group of the "user" directive (with the user's groups) when
 * the master runs as root, the master's own identity otherwise.
 * Returns 0 when allowed, 1 (and *err) when not, -1 when it cannot tell.
 */
static int
ngx_tce_persist_access_as(ngx_core_conf_t *ccf, const char *dir,
    ngx_err_t *err, ngx_log_t *log)
{
    int     n, saved_n, rc, switched;
    gid_t   groups[NGX_TCE_PERSIST_NGROUPS], saved[NGX_TCE_PERSIST_NGROUPS];
    gid_t   saved_gid;

    switched = 0;
    saved_gid = getegid();
    saved_n = 0;

    if (geteuid() == 0 && ccf->user != (ngx_uid_t) NGX_CONF_UNSET_UINT
        && ccf->user != 0)
    {
        n = NGX_TCE_PERSIST_NGROUPS;

        if (ccf->username == NULL
            || getgrouplist(ccf->username, ccf->group, groups, &n) == -1)
        {
            groups[0] = ccf->group;
            n = 1;
        }

        saved_n = getgroups(NGX_TCE_PERSIST_NGROUPS, saved);

        if (saved_n == -1) {
            return -1;
        }

        if (setgroups(n, groups) == -1) {
            return -1;
        }

        switched = 1;

        if (setegid(ccf->group) == -1 || seteuid(ccf->user) == -1) {
            rc = -1;
            goto restore;
        }
    }

    rc = faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS);

    if (rc == -1) {
        *err = ngx_errno;
        rc = (*err == NGX_EACCES || *err == EROFS || *err == EPERM) ? 1 : -1;
    }

    if (!switched) {
        return rc;
    }

restore:

    if (seteuid(0) == -1 || setegid(saved_gid) == -1
        || setgroups(saved_n, saved) == -1)
    {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "tce: cannot restore the master's identity after "
                      "checking \"%s\"", dir);
    }

    return rc;
}


/* copies the configured entries (at most max) under the lock */

static ngx_uint_t
ngx_tce_persist_copy(ngx_tce_zone_t *zone, ngx_tce_persist_view_t *out,
    ngx_uint_t max)
{
    u_char                *d;
    size_t                 i, len;
    ngx_uint_t             n;
    ngx_tce_persist_sh_t  *sh;

    n = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (sh = zone->sh->persist; sh && n < max; sh = sh->next) {
        if (!sh->configured) {
            continue;
        }

        out[n].writes = sh->writes;
        out[n].errors = sh->errors;
        out[n].last_success = sh->last_success;
        out[n].last_error_time = sh->last_error_time;
        ngx_memcpy(out[n].what, sh->what, sizeof(out[n].what));
        ngx_memcpy(out[n].last_error, sh->last_error,
                   sizeof(out[n].last_error));

        /* printable ASCII, as every string the status and metrics show */
        len = ngx_min(sh->path_len, sizeof(out[n].path) - 1);
        d = out[n].path;

        for (i = 0; i < len; i++) {
            d[i] = (sh->path[i] >= 0x20 && sh->path[i] < 0x7f)
                   ? sh->path[i] : '?';
        }

        d[len] = '\0';
        n++;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    for (i = 0; i < n; i++) {
        out[i].what[sizeof(out[i].what) - 1] = '\0';
        out[i].last_error[sizeof(out[i].last_error) - 1] = '\0';

        for (d = out[i].last_error; *d; d++) {
            if (*d < 0x20 || *d >= 0x7f) {
                *d = '?';
            }
        }
    }

    return n;
}


json_t *
ngx_tce_persist_json(ngx_tce_zone_t *zone)
{
    json_t                  *root, *fj;
    ngx_uint_t               i, n;
    ngx_tce_persist_view_t  *v;

    root = json_object();
    if (root == NULL) {
        return NULL;
    }

    v = ngx_alloc(NGX_TCE_PERSIST_MAX_SHOWN * sizeof(ngx_tce_persist_view_t),
                  ngx_cycle->log);
    if (v == NULL) {
        json_decref(root);
        return NULL;
    }

    n = ngx_tce_persist_copy(zone, v, NGX_TCE_PERSIST_MAX_SHOWN);

    for (i = 0; i < n; i++) {
        fj = json_pack("{s:s, s:I, s:I, s:I, s:s, s:I}",
                       "what", (char *) v[i].what,
                       "writes", (json_int_t) v[i].writes,
                       "errors", (json_int_t) v[i].errors,
                       "last_success", (json_int_t) v[i].last_success,
                       "last_error", (char *) v[i].last_error,
                       "last_error_time", (json_int_t) v[i].last_error_time);

        if (fj == NULL
            || json_object_set_new(root, (char *) v[i].path, fj) != 0)
        {
            ngx_free(v);
            json_decref(root);
            return NULL;
        }
    }

    ngx_free(v);

    return root;
}


ngx_int_t
ngx_tce_persist_prom(ngx_tce_zone_t *zone, ngx_tce_prom_snapshot_t *s,
    ngx_pool_t *pool)
{
    ngx_uint_t               i, n;
    ngx_tce_prom_persist_t  *pp;
    ngx_tce_persist_view_t  *v;

    v = ngx_palloc(pool,
                   NGX_TCE_PERSIST_MAX_SHOWN * sizeof(ngx_tce_persist_view_t));
    pp = ngx_palloc(pool,
                    NGX_TCE_PERSIST_MAX_SHOWN * sizeof(ngx_tce_prom_persist_t));
    if (v == NULL || pp == NULL) {
        return NGX_ERROR;
    }

    n = ngx_tce_persist_copy(zone, v, NGX_TCE_PERSIST_MAX_SHOWN);

    for (i = 0; i < n; i++) {
        pp[i].file = (char *) v[i].path;
        pp[i].writes = v[i].writes;
        pp[i].errors = v[i].errors;
        pp[i].last_success = v[i].last_success;
    }

    s->persist = pp;
    s->npersist = n;

    return NGX_OK;
}
