/*
 * A response body of the Consul client: grown as it arrives, freed
 * from any thread, and decoded from gzip off the event loop.
 *
 * The watches ask for gzip and take their answers as they came (a 1.3
 * MB answer of 1,000 instances is 38 KB on the wire): decoding it on
 * the event loop, into fresh pages, cost the watcher's worker several
 * milliseconds per answer.  ngx_tce_consul_body_gunzip() does it on
 * the background thread, into memory sized once from the gzip trailer.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* mremap() */
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "ngx_tce_consul_client.h"


/*
 * Bodies past this size grow in an anonymous mapping with mremap():
 * growing never copies.  A realloc() of a 16 MB body would copy it
 * into fresh pages in one go, tens of milliseconds on the event loop;
 * below 1 MB the copies still cost a 1.3 MB answer about 1 ms.  Each
 * part of a mapping is prefaulted in one call (MADV_POPULATE_WRITE),
 * not page by page as the body is written.
 */
#define NGX_TCE_CONSUL_BODY_MAP   (64 * 1024)


int
ngx_tce_consul_body_grow(ngx_tce_consul_body_t *b, size_t want)
{
    char    *p;
    size_t   page, had;

#ifdef MREMAP_MAYMOVE

    if (want > NGX_TCE_CONSUL_BODY_MAP) {
        page = (size_t) sysconf(_SC_PAGESIZE);
        want = (want + page - 1) / page * page;

        had = 0;

        if (b->mapped) {
            p = mremap(b->data, b->size, want, MREMAP_MAYMOVE);
            had = b->size;

        } else {
            p = mmap(NULL, want, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        }

        if (p == MAP_FAILED) {
            return -1;
        }

#ifdef MADV_POPULATE_WRITE
        /* best effort: an older kernel faults the pages in as usual */
        (void) madvise(p + had, want - had, MADV_POPULATE_WRITE);
#endif
        (void) had;

        if (!b->mapped) {
            if (b->len) {
                memcpy(p, b->data, b->len + 1);
            }

            free(b->data);
            b->mapped = 1;
        }

        b->data = p;
        b->size = want;

        return 0;
    }

#endif

    (void) page;

    p = realloc(b->data, want);

    if (p == NULL) {
        return -1;
    }

    b->data = p;
    b->size = want;

    return 0;
}


void
ngx_tce_consul_body_free(ngx_tce_consul_body_t *b)
{
#ifdef MREMAP_MAYMOVE
    if (b->mapped) {
        (void) munmap(b->data, b->size);

    } else
#endif
    {
        free(b->data);
    }

    memset(b, 0, sizeof(ngx_tce_consul_body_t));
}


int
ngx_tce_consul_body_gunzip(ngx_tce_consul_body_t *b, char *err,
    size_t errlen)
{
    int                     rc;
    size_t                  want, max;
    uint32_t                isize;
    z_stream                z;
    const unsigned char    *t;
    ngx_tce_consul_body_t   o;

    max = b->limit;
    memset(&o, 0, sizeof(ngx_tce_consul_body_t));
    memset(&z, 0, sizeof(z_stream));

    if (b->len < 18) {
        snprintf(err, errlen, "gzip body: truncated");
        goto failed;
    }

    /* the trailer's size (mod 2^32): a hint, the limit still applies */
    t = (const unsigned char *) b->data + b->len - 4;
    isize = (uint32_t) t[0] | (uint32_t) t[1] << 8 | (uint32_t) t[2] << 16
            | (uint32_t) t[3] << 24;

    want = (isize < max ? isize : max) + 1;

    if (ngx_tce_consul_body_grow(&o, want < 64 ? 64 : want) != 0) {
        snprintf(err, errlen, "out of memory");
        goto failed;
    }

    /* 16 + window bits: a gzip header and trailer, checked */
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
        snprintf(err, errlen, "out of memory");
        goto failed;
    }

    z.next_in = (Bytef *) b->data;
    z.avail_in = (uInt) b->len;

    for ( ;; ) {
        if (o.size - 1 - o.len == 0) {
            if (o.len > max) {
                snprintf(err, errlen, "body larger than %zu bytes", max);
                goto failed;
            }

            /* one byte past max is room enough to see the limit passed */
            want = o.size * 2 < max + 2 ? o.size * 2 : max + 2;

            if (ngx_tce_consul_body_grow(&o, want) != 0) {
                snprintf(err, errlen, "out of memory");
                goto failed;
            }
        }

        z.next_out = (Bytef *) o.data + o.len;
        z.avail_out = (uInt) (o.size - 1 - o.len);

        rc = inflate(&z, Z_NO_FLUSH);

        o.len = (char *) z.next_out - o.data;

        if (rc == Z_STREAM_END) {
            if (z.avail_in == 0) {
                break;
            }

            /* another gzip member follows */
            if (inflateReset(&z) != Z_OK) {
                snprintf(err, errlen, "gzip body: cannot go on");
                goto failed;
            }

            continue;
        }

        if (rc == Z_BUF_ERROR && z.avail_in == 0) {
            snprintf(err, errlen, "gzip body: truncated");
            goto failed;
        }

        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            snprintf(err, errlen, "gzip body: %s",
                     z.msg ? z.msg : "invalid");
            goto failed;
        }
    }

    (void) inflateEnd(&z);

    if (o.len > max) {
        snprintf(err, errlen, "body larger than %zu bytes", max);
        ngx_tce_consul_body_free(&o);
        ngx_tce_consul_body_free(b);
        return -1;
    }

    o.data[o.len] = '\0';
    o.limit = max;

    ngx_tce_consul_body_free(b);
    *b = o;

    return 0;

failed:

    (void) inflateEnd(&z);
    ngx_tce_consul_body_free(&o);
    ngx_tce_consul_body_free(b);

    return -1;
}
