/*
 * The weighted schedule.
 *
 * Smooth weighted round robin picks, at every step, the instance whose
 * "current weight" is highest; over a cycle of W = sum(w) steps each
 * instance is picked w times, and no instance ever runs more than about
 * one pick ahead of or behind its share.  Doing that per request costs
 * O(n).  Here the cycle is computed once, when a worker builds its read
 * view, in O(W log n), by the rule of WF2Q fair queueing: the k-th pick
 * of instance i is due between k*W/w and (k+1)*W/w; at step t, among
 * the instances already due (k*W/w <= t), take the one with the
 * earliest end.  That keeps every instance within one pick of its share
 * at every point of the cycle, as smooth weighted round robin does.  A
 * pick is then seq[pos++].
 */

#include <stdlib.h>
#include <string.h>

#include "ngx_tce_sched.h"


typedef struct {
    uint32_t    idx;
    uint32_t    w;
    uint32_t    k;          /* picks so far */
} ngx_tce_sched_node_t;


typedef struct {
    uint64_t    rem;
    uint32_t    pos;
} ngx_tce_sched_rem_t;


typedef int (*ngx_tce_sched_less_pt)(const ngx_tce_sched_node_t *a,
    const ngx_tce_sched_node_t *b);

typedef struct {
    ngx_tce_sched_node_t   *h;
    uint32_t                n;
    ngx_tce_sched_less_pt   less;
} ngx_tce_sched_heap_t;


static uint32_t ngx_tce_gcd(uint32_t a, uint32_t b);
static int ngx_tce_sched_start_before(const ngx_tce_sched_node_t *a,
    const ngx_tce_sched_node_t *b);
static int ngx_tce_sched_end_before(const ngx_tce_sched_node_t *a,
    const ngx_tce_sched_node_t *b);
static void ngx_tce_sched_push(ngx_tce_sched_heap_t *hp,
    ngx_tce_sched_node_t *node);
static void ngx_tce_sched_pop(ngx_tce_sched_heap_t *hp,
    ngx_tce_sched_node_t *node);
static int ngx_tce_sched_rem_cmp(const void *a, const void *b);
static int ngx_tce_sched_round(ngx_tce_sched_node_t *nodes, uint32_t m,
    const uint32_t *w, uint32_t g, uint64_t sum, uint64_t extra);


static uint32_t
ngx_tce_gcd(uint32_t a, uint32_t b)
{
    uint32_t  t;

    while (b) {
        t = a % b;
        a = b;
        b = t;
    }

    return a;
}


/* start of the next pick: k_a / w_a < k_b / w_b */
static int
ngx_tce_sched_start_before(const ngx_tce_sched_node_t *a,
    const ngx_tce_sched_node_t *b)
{
    uint64_t  l, r;

    l = (uint64_t) a->k * b->w;
    r = (uint64_t) b->k * a->w;

    return l < r || (l == r && a->idx < b->idx);
}


/* end of the next pick: (k_a + 1) / w_a < (k_b + 1) / w_b */
static int
ngx_tce_sched_end_before(const ngx_tce_sched_node_t *a,
    const ngx_tce_sched_node_t *b)
{
    uint64_t  l, r;

    l = ((uint64_t) a->k + 1) * b->w;
    r = ((uint64_t) b->k + 1) * a->w;

    return l < r || (l == r && a->idx < b->idx);
}


static void
ngx_tce_sched_push(ngx_tce_sched_heap_t *hp, ngx_tce_sched_node_t *node)
{
    uint32_t               i, p;
    ngx_tce_sched_node_t  *h;

    h = hp->h;
    i = hp->n++;

    while (i > 0) {
        p = (i - 1) / 2;

        if (!hp->less(node, &h[p])) {
            break;
        }

        h[i] = h[p];
        i = p;
    }

    h[i] = *node;
}


static void
ngx_tce_sched_pop(ngx_tce_sched_heap_t *hp, ngx_tce_sched_node_t *node)
{
    uint32_t               i, c, n;
    ngx_tce_sched_node_t  *h, last;

    h = hp->h;
    *node = h[0];
    n = --hp->n;
    last = h[n];
    i = 0;

    for ( ;; ) {
        c = 2 * i + 1;

        if (c >= n) {
            break;
        }

        if (c + 1 < n && hp->less(&h[c + 1], &h[c])) {
            c++;
        }

        if (!hp->less(&h[c], &last)) {
            break;
        }

        h[i] = h[c];
        i = c;
    }

    if (n > 0) {
        h[i] = last;
    }
}


/* largest remainder first, then lowest index */
static int
ngx_tce_sched_rem_cmp(const void *a, const void *b)
{
    const ngx_tce_sched_rem_t  *x = a, *y = b;

    if (x->rem != y->rem) {
        return x->rem > y->rem ? -1 : 1;
    }

    return x->pos < y->pos ? -1 : (x->pos > y->pos);
}


/*
 * Largest remainder rounding: nodes hold floor(w * L / sum) (w reduced
 * by g); the extra picks left to reach L go one each to the nodes with
 * the largest remainders, so that every count is its exact share of L
 * rounded down or up.
 */
static int
ngx_tce_sched_round(ngx_tce_sched_node_t *nodes, uint32_t m,
    const uint32_t *w, uint32_t g, uint64_t sum, uint64_t extra)
{
    uint32_t              i;
    ngx_tce_sched_rem_t  *r;

    if (extra == 0) {
        return 0;
    }

    r = malloc((size_t) m * sizeof(ngx_tce_sched_rem_t));
    if (r == NULL) {
        return -1;
    }

    for (i = 0; i < m; i++) {
        r[i].rem = (uint64_t) (w[nodes[i].idx] / g) * NGX_TCE_SCHED_MAX
                   % sum;
        r[i].pos = i;
    }

    qsort(r, m, sizeof(ngx_tce_sched_rem_t), ngx_tce_sched_rem_cmp);

    for (i = 0; i < extra && i < m; i++) {
        nodes[r[i].pos].w++;
    }

    free(r);

    return 0;
}


int
ngx_tce_sched_build(ngx_tce_sched_t *s, const uint32_t *w, uint32_t n)
{
    uint32_t               i, m, g, t;
    uint64_t               sum, total;
    ngx_tce_sched_heap_t   due, waiting;
    ngx_tce_sched_node_t  *mem, node;

    s->seq = NULL;
    s->len = 0;

    g = 0;
    sum = 0;
    m = 0;

    for (i = 0; i < n; i++) {
        if (w[i]) {
            g = ngx_tce_gcd(w[i], g);
            sum += w[i];
            m++;
        }
    }

    if (m == 0) {
        return 0;
    }

    mem = malloc(2 * (size_t) m * sizeof(ngx_tce_sched_node_t));
    if (mem == NULL) {
        return -1;
    }

    due.h = mem;
    due.n = 0;
    due.less = ngx_tce_sched_end_before;
    waiting.h = mem + m;
    waiting.n = 0;
    waiting.less = ngx_tce_sched_start_before;

    sum /= g;
    total = 0;

    for (i = 0; i < n; i++) {
        if (w[i] == 0) {
            continue;
        }

        node.idx = i;
        node.w = w[i] / g;
        node.k = 0;

        if (sum > NGX_TCE_SCHED_MAX) {
            /*
             * the cycle would be too long: each instance gets its share
             * of NGX_TCE_SCHED_MAX picks, rounded down here, up below
             * for the largest remainders; never 0
             */
            node.w = (uint32_t) ((uint64_t) node.w * NGX_TCE_SCHED_MAX
                                 / sum);
        }

        total += node.w;
        due.h[due.n++] = node;
    }

    if (sum > NGX_TCE_SCHED_MAX) {
        if (ngx_tce_sched_round(due.h, due.n, w, g, sum,
                                NGX_TCE_SCHED_MAX - total)
            != 0)
        {
            free(mem);
            return -1;
        }

        total = 0;

        for (i = 0; i < due.n; i++) {
            if (due.h[i].w == 0) {
                due.h[i].w = 1;
            }

            total += due.h[i].w;
        }
    }

    /* a heap again: nodes in index order are one already (ties) */
    m = due.n;
    due.n = 0;

    for (i = 0; i < m; i++) {
        node = due.h[i];
        ngx_tce_sched_push(&due, &node);
    }

    s->seq = malloc(total * sizeof(uint32_t));
    if (s->seq == NULL) {
        free(mem);
        return -1;
    }

    for (t = 0; t < total; t++) {

        /* instances whose next pick is due by now: k * total <= t * w */
        while (waiting.n
               && (uint64_t) waiting.h[0].k * total
                  <= (uint64_t) t * waiting.h[0].w)
        {
            ngx_tce_sched_pop(&waiting, &node);
            ngx_tce_sched_push(&due, &node);
        }

        /* one is always due: the picks so far sum to t */
        ngx_tce_sched_pop(&due, &node);
        s->seq[t] = node.idx;

        if (++node.k < node.w) {
            ngx_tce_sched_push(&waiting, &node);
        }
    }

    s->len = (uint32_t) total;
    free(mem);

    return 0;
}


void
ngx_tce_sched_free(ngx_tce_sched_t *s)
{
    free(s->seq);
    s->seq = NULL;
    s->len = 0;
}
