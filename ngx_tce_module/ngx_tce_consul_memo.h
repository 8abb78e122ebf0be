/*
 * What each entry of a service's last /v1/health/service answer gave
 * (pure C, no nginx), so that the next answer reads only the entries
 * that differ: see ngx_tce_consul_parse_health_memo() in
 * ngx_tce_consul_parse.h.
 */

#ifndef _NGX_TCE_CONSUL_MEMO_H_INCLUDED_
#define _NGX_TCE_CONSUL_MEMO_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "ngx_tce_types.h"
#include "ngx_tce_consul_parse.h"
#include "ngx_tce_consul_split.h"


/* an answer larger than this is read whole every time, not kept */
#define NGX_TCE_CONSUL_MEMO_MAX  (16 * 1024 * 1024)


/* what one entry gave */
typedef struct {
    size_t                    off;          /* its bytes in memo->body */
    size_t                    len;
    int                       rc;           /* 0 routed, 1 excluded,
                                               -1 skipped */
    int                       state;        /* NGX_TCE_CONSUL_PASSING.. */
    uint64_t                  weight;       /* Consul's */
    ngx_tce_instance_t        inst;         /* rc 0; rc -1: inst.id the
                                               skip's id */
    char                     *reason;       /* rc -1, malloc'd */
} ngx_tce_consul_memo_entry_t;


struct ngx_tce_consul_memo_s {
    char                         *body;     /* the answer's, a copy */
    size_t                        len;
    ngx_tce_consul_memo_entry_t  *entries;
    size_t                        n;
    size_t                        size;
    size_t                        next;     /* where the next lookup
                                               looks first */
    size_t                        tail;     /* the next body's: where
                                               the bytes it shares with
                                               this one's end start */
    ssize_t                       delta;    /* its length less ours */
    size_t                        hits;     /* entries found here by the
                                               next answer; in a new memo,
                                               how many of its entries
                                               were found in the last */
};


/*
 * A memo for an answer of len bytes, its entries recorded in order by
 * ngx_tce_consul_memo_add(); NULL when memory runs out or the answer
 * is larger than NGX_TCE_CONSUL_MEMO_MAX.
 */
ngx_tce_consul_memo_t *ngx_tce_consul_memo_create(const char *body,
    size_t len, size_t n);

/*
 * Splits body into its entries as ngx_tce_consul_split() does, but
 * with old (NULL: none) the entries in the head and the tail that body
 * shares with old's answer are not scanned again: known[i] is then
 * old's entry, else NULL (known is NULL when old is).  Both arrays are
 * malloc'd, NULL when body has no entry.
 */
int ngx_tce_consul_memo_split(ngx_tce_consul_memo_t *old, const char *body,
    size_t len, size_t max, ngx_tce_consul_span_t **spans,
    ngx_tce_consul_memo_entry_t ***known, size_t *n, char *err,
    size_t errlen);

/*
 * The entry of old whose bytes are [s, s + len) exactly, or NULL.  Looks
 * where the previous lookup's hit ends, then one entry either side (an
 * entry added or removed before it); Consul answers keep their order.
 */
ngx_tce_consul_memo_entry_t *ngx_tce_consul_memo_find(
    ngx_tce_consul_memo_t *old, const char *s, size_t len);

/*
 * Records in memo what the entry at [off, off + len) of its answer gave
 * (a copy of e, reason copied).  Returns -1 when memory runs out.
 */
int ngx_tce_consul_memo_add(ngx_tce_consul_memo_t *memo, size_t off,
    size_t len, const ngx_tce_consul_memo_entry_t *e);

void ngx_tce_consul_memo_free(ngx_tce_consul_memo_t *memo);


#endif /* _NGX_TCE_CONSUL_MEMO_H_INCLUDED_ */
