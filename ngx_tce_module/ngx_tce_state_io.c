/*
 * The state file on disk: reading it whole (bounded) and writing it
 * atomically (temp file, fsync, rename, fsync of the directory).
 */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "ngx_tce_state.h"


typedef struct {
    char                     *err;
    size_t                    errlen;
} ngx_tce_state_io_err_t;


static int ngx_tce_state_io_fail(ngx_tce_state_io_err_t *ctx,
    const char *step, const char *fmt, ...);
static int ngx_tce_state_write_all(int fd, const char *data, size_t len);
static int ngx_tce_state_replace(const char *path, const char *data,
    size_t len, uint64_t seq, volatile uint64_t *last, char *err,
    size_t errlen);


/* err = "<step>: <text>"; returns -1 */

static int
ngx_tce_state_io_fail(ngx_tce_state_io_err_t *ctx, const char *step,
    const char *fmt, ...)
{
    int       n;
    va_list   args;

    if (ctx->err == NULL || ctx->errlen == 0) {
        return -1;
    }

    n = snprintf(ctx->err, ctx->errlen, "%s%s", step ? step : "",
                 step ? ": " : "");

    if (n >= 0 && (size_t) n < ctx->errlen) {
        va_start(args, fmt);
        vsnprintf(ctx->err + n, ctx->errlen - n, fmt, args);
        va_end(args);
    }

    return -1;
}


int
ngx_tce_state_load(const char *path, ngx_tce_state_t *st, char *err,
    size_t errlen)
{
    int                  fd, rc;
    char                *buf;
    size_t               n, size;
    ssize_t              r;
    struct stat          sb;
    ngx_tce_state_io_err_t  ctx;

    memset(st, 0, sizeof(ngx_tce_state_t));
    memset(&ctx, 0, sizeof(ngx_tce_state_io_err_t));
    ctx.err = err;
    ctx.errlen = errlen;

    fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd == -1) {
        rc = (errno == ENOENT) ? -2 : -1;
        ngx_tce_state_io_fail(&ctx, "open", "%s", strerror(errno));
        return rc;
    }

    buf = NULL;

    if (fstat(fd, &sb) == -1) {
        rc = ngx_tce_state_io_fail(&ctx, "fstat", "%s", strerror(errno));
        goto done;
    }

    if (!S_ISREG(sb.st_mode)) {
        rc = ngx_tce_state_io_fail(&ctx, NULL, "not a regular file");
        goto done;
    }

    if (sb.st_size > NGX_TCE_STATE_FILE_MAX_SIZE) {
        rc = ngx_tce_state_io_fail(&ctx, NULL, "larger than %d MiB",
                                NGX_TCE_STATE_FILE_MAX_SIZE >> 20);
        goto done;
    }

    size = (size_t) sb.st_size;

    buf = malloc(size + 1);
    if (buf == NULL) {
        rc = ngx_tce_state_io_fail(&ctx, NULL, "out of memory");
        goto done;
    }

    n = 0;

    while (n < size) {
        r = read(fd, buf + n, size - n);

        if (r > 0) {
            n += r;
            continue;
        }

        if (r == 0) {
            break;      /* the file shrank meanwhile: decode what is there */
        }

        if (errno != EINTR) {
            rc = ngx_tce_state_io_fail(&ctx, "read", "%s", strerror(errno));
            goto done;
        }
    }

    rc = ngx_tce_state_decode(buf, n, st, err, errlen);

done:

    close(fd);
    free(buf);

    return rc;
}


static int
ngx_tce_state_write_all(int fd, const char *data, size_t len)
{
    ssize_t  n;

    while (len > 0) {
        n = write(fd, data, len);

        if (n > 0) {
            data += n;
            len -= n;
            continue;
        }

        if (n == 0) {
            errno = EIO;                /* no progress: do not spin */
            return -1;
        }

        if (errno != EINTR) {
            return -1;
        }
    }

    return 0;
}


int
ngx_tce_state_write(const char *path, const char *data, size_t len,
    char *err, size_t errlen)
{
    return ngx_tce_state_replace(path, data, len, 0, NULL, err, errlen);
}


int
ngx_tce_state_write_ordered(const char *path, const char *data, size_t len,
    uint64_t seq, volatile uint64_t *done, char *err, size_t errlen)
{
    return ngx_tce_state_replace(path, data, len, seq, done, err, errlen);
}


static int
ngx_tce_state_replace(const char *path, const char *data, size_t len,
    uint64_t seq, volatile uint64_t *last, char *err, size_t errlen)
{
    int                  fd, dfd, rc;
    char                *tmp, *dir, *slash;
    size_t               plen;
    const char          *step;
    ngx_tce_state_io_err_t  ctx;

    memset(&ctx, 0, sizeof(ngx_tce_state_io_err_t));
    ctx.err = err;
    ctx.errlen = errlen;

    plen = strlen(path);
    tmp = malloc(plen + 32);            /* ".tmp." and a pid */
    dir = malloc(plen + 2);             /* at least "." */

    if (tmp == NULL || dir == NULL) {
        free(tmp);
        free(dir);
        return ngx_tce_state_io_fail(&ctx, NULL, "out of memory");
    }

    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long) getpid());

    memcpy(dir, path, plen + 1);
    slash = strrchr(dir, '/');

    if (slash == NULL) {
        memcpy(dir, ".", 2);

    } else if (slash == dir) {
        dir[1] = '\0';                  /* "/f": the root directory */

    } else {
        *slash = '\0';
    }

    dfd = -1;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
              0644);

    if (fd == -1) {
        /* not created by us: nothing to remove */
        rc = ngx_tce_state_io_fail(&ctx, "open temp file", "%s",
                                strerror(errno));
        goto done;
    }

    step = "write";

    if (ngx_tce_state_write_all(fd, data, len) != 0) {
        goto failed;
    }

    step = "fsync";

    if (fsync(fd) != 0) {
        goto failed;
    }

    step = "close";
    rc = close(fd);
    fd = -1;

    if (rc != 0) {
        goto failed;
    }

    /* opened before the rename: once path is replaced, it is too late */
    step = "open directory";
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (dfd == -1) {
        goto failed;
    }

    if (last != NULL) {
        /*
         * Writers of one path in other processes (a watcher that moved)
         * take the same lock: the newest content is the last renamed.
         */
        step = "lock directory";

        while (flock(dfd, LOCK_EX) != 0) {
            if (errno != EINTR) {
                goto failed;
            }
        }

        if (*last > seq) {
            unlink(tmp);
            rc = 1;
            goto done;
        }
    }

    step = "rename";

    if (rename(tmp, path) != 0) {
        goto failed;
    }

    if (last != NULL) {
        *last = seq;
    }

    /* path holds the new data now; this makes the rename durable */
    rc = 0;

    if (fsync(dfd) != 0) {
        rc = ngx_tce_state_io_fail(&ctx, "fsync directory", "%s",
                                strerror(errno));
    }

    goto done;

failed:

    rc = ngx_tce_state_io_fail(&ctx, step, "%s", strerror(errno));

    if (fd != -1) {
        close(fd);
    }

    unlink(tmp);

done:

    if (dfd != -1) {
        close(dfd);
    }

    free(tmp);
    free(dir);

    return rc;
}
