/*
 * The weighted schedule.
 *
 * Smooth weighted round robin picks, at every step, the instance whose
 * "current weight" is highest; over a cycle of W = sum(w) steps each
 * instance is picked w times, and no instance runs far ahead of or
 * behind its share.  Doing that per request costs O(n).  Here the
 * whole cycle is computed once, and a pick is then seq[pos++].
 *
 * The cycle is built as earliest-deadline-first over unit tasks: the
 * k-th pick of instance i (k = 0 .. w-1) may happen at a step s with
 * floor(k W / w) <= s < ceil((k + 1) W / w).  Every interval of steps
 * [a, b) contains at most b - a such windows entirely (per instance at
 * most (b - a) w / W of them, and the w sum to W), so a schedule
 * meeting every window exists, and EDF, which always takes the released
 * pick with the earliest deadline, finds one (any tie order).  Meeting
 * the windows means that after t steps instance i has been picked
 * floor(t w / W) or ceil(t w / W) times: never a whole pick away from
 * its share, at any point of the cycle.
 *
 * Deadlines and release times are integers below W + 1, so EDF runs on
 * bucket lists (one per step) instead of heaps: a pick is a find-first
 * in a hierarchical bitmap of the non-empty deadline buckets, and the
 * next window of the instance comes from two additions (its W / w
 * kept as quotient and remainder).  O(W + n) time, 30 to 40 ns per
 * entry at half a million (two cache misses per pick: the bucket
 * writes land anywhere in the cycle); memory 8 (W + 1) bytes, kept
 * after a build for the next one (ngx_tce_sched_lists_t).  The build can run in
 * slices (ngx_tce_sched_run with a bound) so that a caller on an event
 * loop never runs one for long.
 */

#include <stdlib.h>
#include <string.h>

#include "ngx_tce_sched.h"


#define NGX_TCE_SCHED_NONE    0xffffffff
#define NGX_TCE_SCHED_LEVELS  5          /* 64^5 > NGX_TCE_SCHED_MAX * 2 */


typedef struct {
    uint32_t    idx;        /* the caller's index */
    uint32_t    w;          /* picks per cycle */
    uint32_t    left;       /* picks still to place */
    uint32_t    div;        /* W / w */
    uint32_t    mod;        /* W % w */
    uint32_t    q;          /* floor((k + 1) W / w), k: next pick */
    uint32_t    rem;        /* (k + 1) W % w */
    uint32_t    next;       /* in a bucket list */
} ngx_tce_sched_node_t;


typedef struct {
    uint64_t    rem;
    uint32_t    pos;
} ngx_tce_sched_rem_t;


/*
 * The bucket lists and the bitmap of their deadlines, for cycles of up
 * to cap entries.  A finished build leaves every list empty and every
 * bit clear: the arrays are kept for the next build (one set per
 * process, ngx_tce_sched_spare), which then needs neither to clear 8
 * bytes per entry nor to fault fresh pages in (a third of a build's
 * time at half a million entries).
 */
typedef struct {
    uint32_t               cap;
    uint32_t               nlevels;
    uint32_t              *release;    /* cap + 1 list heads, by step */
    uint32_t              *deadline;   /* cap + 1 list heads, by step */
    uint64_t              *bits[NGX_TCE_SCHED_LEVELS];
} ngx_tce_sched_lists_t;


struct ngx_tce_sched_build_s {
    uint32_t               total;      /* W */
    uint32_t               t;          /* entries written */
    uint32_t               n;
    ngx_tce_sched_node_t  *nodes;
    uint32_t              *release;    /* lists->release */
    uint32_t              *deadline;   /* lists->deadline */
    uint64_t             **bits;       /* lists->bits */
    uint32_t               nlevels;
    ngx_tce_sched_lists_t *lists;
};


static uint32_t ngx_tce_gcd(uint32_t a, uint32_t b);
static int ngx_tce_sched_rem_cmp(const void *a, const void *b);
static int ngx_tce_sched_round(ngx_tce_sched_node_t *nodes, uint32_t m,
    const uint32_t *w, uint32_t g, uint64_t sum, uint64_t extra);
static void ngx_tce_sched_set(ngx_tce_sched_build_t *b, uint32_t d);
static void ngx_tce_sched_clear(ngx_tce_sched_build_t *b, uint32_t d);
static uint32_t ngx_tce_sched_first(ngx_tce_sched_build_t *b);
static void ngx_tce_sched_due(ngx_tce_sched_build_t *b, uint32_t i);
static ngx_tce_sched_lists_t *ngx_tce_sched_lists_get(uint32_t cap);
static void ngx_tce_sched_lists_put(ngx_tce_sched_lists_t *l, int clean);
static void ngx_tce_sched_lists_free(ngx_tce_sched_lists_t *l);


/* the lists of the last finished build, clean; taken atomically */
static ngx_tce_sched_lists_t  *ngx_tce_sched_spare;


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


ngx_tce_sched_build_t *
ngx_tce_sched_start(const uint32_t *w, uint32_t n, uint32_t *len)
{
    uint32_t                i, m, g;
    uint64_t                sum, total;
    ngx_tce_sched_node_t   *node;
    ngx_tce_sched_build_t  *b;

    *len = 0;
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

    b = calloc(1, sizeof(ngx_tce_sched_build_t));
    if (b == NULL) {
        return NULL;
    }

    if (m == 0) {
        return b;
    }

    b->nodes = malloc((size_t) m * sizeof(ngx_tce_sched_node_t));
    if (b->nodes == NULL) {
        goto failed;
    }

    sum /= g;
    total = 0;

    for (i = 0; i < n; i++) {
        if (w[i] == 0) {
            continue;
        }

        node = &b->nodes[b->n++];
        node->idx = i;
        node->w = w[i] / g;

        if (sum > NGX_TCE_SCHED_MAX) {
            /*
             * the cycle would be too long: each instance gets its share
             * of NGX_TCE_SCHED_MAX picks, rounded down here, up below
             * for the largest remainders; never 0
             */
            node->w = (uint32_t) ((uint64_t) node->w * NGX_TCE_SCHED_MAX
                                  / sum);
        }

        total += node->w;
    }

    if (sum > NGX_TCE_SCHED_MAX) {
        if (ngx_tce_sched_round(b->nodes, b->n, w, g, sum,
                                NGX_TCE_SCHED_MAX - total)
            != 0)
        {
            goto failed;
        }

        total = 0;

        for (i = 0; i < b->n; i++) {
            if (b->nodes[i].w == 0) {
                b->nodes[i].w = 1;
            }

            total += b->nodes[i].w;
        }
    }

    b->total = (uint32_t) total;

    b->lists = ngx_tce_sched_lists_get(b->total);
    if (b->lists == NULL) {
        goto failed;
    }

    b->release = b->lists->release;
    b->deadline = b->lists->deadline;
    b->bits = b->lists->bits;
    b->nlevels = b->lists->nlevels;

    /*
     * Every first pick is released at step 0.  Lists are LIFO: pushed
     * in reverse index order, ties go to the lowest index first (as in
     * nginx), and LIFO twice (release list, then deadline list) keeps
     * the order of later ties.
     */

    for (i = b->n; i-- > 0; ) {
        node = &b->nodes[i];
        node->left = node->w;
        node->div = b->total / node->w;
        node->mod = b->total % node->w;
        node->q = node->div;
        node->rem = node->mod;
        ngx_tce_sched_due(b, i);
    }

    *len = b->total;

    return b;

failed:

    ngx_tce_sched_done(b);

    return NULL;
}


uint32_t
ngx_tce_sched_run(ngx_tce_sched_build_t *b, uint32_t *seq, uint32_t max)
{
    uint32_t               i, d, end, r;
    ngx_tce_sched_node_t  *node;

    end = b->total - b->t < max ? b->total : b->t + max;

    for ( /* void */ ; b->t < end; b->t++) {

        /* the picks released at this step become due */
        r = b->release[b->t];
        b->release[b->t] = NGX_TCE_SCHED_NONE;

        while (r != NGX_TCE_SCHED_NONE) {
            i = r;
            r = b->nodes[i].next;
            ngx_tce_sched_due(b, i);
        }

        /* one is always due (see above): the earliest deadline */
        d = ngx_tce_sched_first(b);
        i = b->deadline[d];
        node = &b->nodes[i];
        b->deadline[d] = node->next;

        if (node->next == NGX_TCE_SCHED_NONE) {
            ngx_tce_sched_clear(b, d);
        }

        seq[b->t] = node->idx;

        if (--node->left == 0) {
            continue;
        }

        /* pick k + 1: released at ceil((k + 1) W / w) */
        r = node->q + (node->rem != 0);

        node->q += node->div;             /* to (k + 2) W / w */
        node->rem += node->mod;

        if (node->rem >= node->w) {
            node->rem -= node->w;
            node->q++;
        }

        if (r <= b->t) {
            ngx_tce_sched_due(b, i);

        } else {
            node->next = b->release[r];
            b->release[r] = i;
        }
    }

    return b->total - b->t;
}


void
ngx_tce_sched_done(ngx_tce_sched_build_t *b)
{
    if (b == NULL) {
        return;
    }

    if (b->lists) {
        /* a build stopped half way leaves picks in the lists */
        ngx_tce_sched_lists_put(b->lists, b->t == b->total);
    }

    free(b->nodes);
    free(b);
}


/* clean lists for cycles of up to cap entries: the spare, or new ones */

static ngx_tce_sched_lists_t *
ngx_tce_sched_lists_get(uint32_t cap)
{
    size_t                  words;
    uint32_t                lv;
    ngx_tce_sched_lists_t  *l;

    l = __atomic_exchange_n(&ngx_tce_sched_spare, NULL, __ATOMIC_ACQ_REL);

    if (l != NULL) {
        if (l->cap >= cap) {
            return l;
        }

        ngx_tce_sched_lists_free(l);
    }

    l = calloc(1, sizeof(ngx_tce_sched_lists_t));
    if (l == NULL) {
        return NULL;
    }

    l->cap = cap;
    l->release = malloc(((size_t) cap + 1) * sizeof(uint32_t));
    l->deadline = malloc(((size_t) cap + 1) * sizeof(uint32_t));

    if (l->release == NULL || l->deadline == NULL) {
        goto failed;
    }

    memset(l->release, 0xff, ((size_t) cap + 1) * sizeof(uint32_t));
    memset(l->deadline, 0xff, ((size_t) cap + 1) * sizeof(uint32_t));

    words = (size_t) cap + 1;

    for (lv = 0; lv < NGX_TCE_SCHED_LEVELS; lv++) {
        words = (words + 63) / 64;

        l->bits[lv] = calloc(words, sizeof(uint64_t));
        if (l->bits[lv] == NULL) {
            goto failed;
        }

        l->nlevels = lv + 1;

        if (words == 1) {
            break;
        }
    }

    return l;

failed:

    ngx_tce_sched_lists_free(l);

    return NULL;
}


void
ngx_tce_sched_spare_free(void)
{
    ngx_tce_sched_lists_t  *l;

    l = __atomic_exchange_n(&ngx_tce_sched_spare, NULL, __ATOMIC_ACQ_REL);

    if (l != NULL) {
        ngx_tce_sched_lists_free(l);
    }
}


/* kept as the spare when clean and none is kept yet; freed otherwise */

static void
ngx_tce_sched_lists_put(ngx_tce_sched_lists_t *l, int clean)
{
    ngx_tce_sched_lists_t  *none;

    none = NULL;

    if (clean
        && __atomic_compare_exchange_n(&ngx_tce_sched_spare, &none, l, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
    {
        return;
    }

    ngx_tce_sched_lists_free(l);
}


static void
ngx_tce_sched_lists_free(ngx_tce_sched_lists_t *l)
{
    uint32_t  lv;

    for (lv = 0; lv < NGX_TCE_SCHED_LEVELS; lv++) {
        free(l->bits[lv]);
    }

    free(l->release);
    free(l->deadline);
    free(l);
}


/* node i's pick k is released: into the bucket of its deadline */
static void
ngx_tce_sched_due(ngx_tce_sched_build_t *b, uint32_t i)
{
    uint32_t               d;
    ngx_tce_sched_node_t  *node;

    node = &b->nodes[i];
    d = node->q + (node->rem != 0);       /* ceil((k + 1) W / w) */

    if (b->deadline[d] == NGX_TCE_SCHED_NONE) {
        ngx_tce_sched_set(b, d);
    }

    node->next = b->deadline[d];
    b->deadline[d] = i;
}


static void
ngx_tce_sched_set(ngx_tce_sched_build_t *b, uint32_t d)
{
    uint32_t  lv;

    for (lv = 0; lv < b->nlevels; lv++) {
        b->bits[lv][d / 64] |= (uint64_t) 1 << (d % 64);
        d /= 64;
    }
}


static void
ngx_tce_sched_clear(ngx_tce_sched_build_t *b, uint32_t d)
{
    uint32_t  lv;

    for (lv = 0; lv < b->nlevels; lv++) {
        b->bits[lv][d / 64] &= ~((uint64_t) 1 << (d % 64));

        if (b->bits[lv][d / 64]) {
            break;
        }

        d /= 64;
    }
}


/* the lowest non-empty deadline bucket; there is one */
static uint32_t
ngx_tce_sched_first(ngx_tce_sched_build_t *b)
{
    uint32_t  lv, d;

    d = 0;

    for (lv = b->nlevels; lv-- > 0; ) {
        d = d * 64 + (uint32_t) __builtin_ctzll(b->bits[lv][d]);
    }

    return d;
}


int
ngx_tce_sched_build(ngx_tce_sched_t *s, const uint32_t *w, uint32_t n)
{
    uint32_t                len;
    ngx_tce_sched_build_t  *b;

    s->seq = NULL;
    s->len = 0;

    b = ngx_tce_sched_start(w, n, &len);
    if (b == NULL) {
        return -1;
    }

    if (len) {
        s->seq = malloc((size_t) len * sizeof(uint32_t));
        if (s->seq == NULL) {
            ngx_tce_sched_done(b);
            return -1;
        }

        (void) ngx_tce_sched_run(b, s->seq, len);
        s->len = len;
    }

    ngx_tce_sched_done(b);

    return 0;
}


void
ngx_tce_sched_free(ngx_tce_sched_t *s)
{
    free(s->seq);
    s->seq = NULL;
    s->len = 0;
}
