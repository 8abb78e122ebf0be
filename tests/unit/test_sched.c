/*
 * The weighted schedule against nginx's smooth weighted round robin
 * (reimplemented here as the reference): same picks per full cycle,
 * and picks as evenly spread.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_tce_sched.h"


#define MAXN  64


static void swrr_seq(const uint32_t *w, uint32_t n, uint32_t steps,
    uint32_t *seq);
static double discrepancy(const uint32_t *seq, uint32_t len,
    const uint32_t *w, uint32_t n);
static uint32_t gcd(uint32_t a, uint32_t b);
static void random_weights(uint32_t *w, uint32_t n);
static void check_against_swrr(const uint32_t *w, uint32_t n);
static void check_capped(const uint32_t *w, uint32_t n);


/* nginx's algorithm, step by step (ngx_http_upstream_get_peer) */
static void
swrr_seq(const uint32_t *w, uint32_t n, uint32_t steps, uint32_t *seq)
{
    int64_t   cur[MAXN], total;
    uint32_t  i, t, best;

    memset(cur, 0, sizeof(cur));

    for (t = 0; t < steps; t++) {
        total = 0;
        best = n;

        for (i = 0; i < n; i++) {
            if (w[i] == 0) {
                continue;
            }

            cur[i] += w[i];
            total += w[i];

            if (best == n || cur[i] > cur[best]) {
                best = i;
            }
        }

        cur[best] -= total;
        seq[t] = best;
    }
}


/*
 * Smoothness: the largest distance, at any point of the sequence,
 * between how often an instance was picked and its share w / sum(w) of
 * the picks so far.  An instance's distance only falls between two of
 * its picks, so looking just before and just after each pick (and at
 * the end) finds the largest.
 */
static double
discrepancy(const uint32_t *seq, uint32_t len, const uint32_t *w,
    uint32_t n)
{
    double    d, worst, sum, share;
    uint32_t  i, t, k[MAXN];

    memset(k, 0, sizeof(k));
    sum = 0;
    worst = 0;

    for (i = 0; i < n; i++) {
        sum += w[i];
    }

    for (t = 0; t < len; t++) {
        i = seq[t];
        share = w[i] / sum;

        d = t * share - k[i];
        worst = d > worst ? d : worst;

        k[i]++;

        d = k[i] - (t + 1) * share;
        worst = d > worst ? d : worst;
    }

    for (i = 0; i < n; i++) {
        d = len * (w[i] / sum) - k[i];
        d = d < 0 ? -d : d;
        worst = d > worst ? d : worst;
    }

    return worst;
}


static uint32_t
gcd(uint32_t a, uint32_t b)
{
    uint32_t  t;

    while (b) {
        t = a % b;
        a = b;
        b = t;
    }

    return a;
}


/* mostly small weights, some zero, some large */
static void
random_weights(uint32_t *w, uint32_t n)
{
    uint32_t  i;

    for (i = 0; i < n; i++) {
        switch (rand() % 4) {
        case 0:  w[i] = 0; break;
        case 1:  w[i] = 1 + rand() % 1000; break;
        default: w[i] = 1 + rand() % 10; break;
        }
    }
}


/*
 * The oracle is nginx's smooth weighted round robin run on the original
 * weights for one full cycle of sum(w) picks: it picks each instance
 * exactly w times.  The schedule must give the same proportions in a
 * cycle of sum(w) / gcd(w) picks, and stay within one pick of every
 * instance's share at every point (nginx itself may stray further).
 */
static void
check_against_swrr(const uint32_t *w, uint32_t n)
{
    double           ours_d, ref_d;
    uint32_t         i, g, sum, ours[MAXN], ref[MAXN];
    uint32_t        *seq;
    ngx_tce_sched_t  s;

    g = 0;
    sum = 0;

    for (i = 0; i < n; i++) {
        g = gcd(w[i], g);
        sum += w[i];
    }

    assert_int_equal(ngx_tce_sched_build(&s, w, n), 0);

    if (sum == 0) {
        assert_int_equal(s.len, 0);
        ngx_tce_sched_free(&s);
        return;
    }

    assert_int_equal(s.len, sum / g);

    memset(ours, 0, sizeof(ours));

    for (i = 0; i < s.len; i++) {
        assert_true(s.seq[i] < n);
        ours[s.seq[i]]++;
    }

    seq = malloc(sum * sizeof(uint32_t));
    assert_non_null(seq);
    swrr_seq(w, n, sum, seq);
    memset(ref, 0, sizeof(ref));

    for (i = 0; i < sum; i++) {
        ref[seq[i]]++;
    }

    for (i = 0; i < n; i++) {
        /* nginx: w[i] picks in sum(w); ours: the same share of s.len */
        assert_int_equal(ref[i], w[i]);
        assert_true((uint64_t) ours[i] * sum == (uint64_t) ref[i] * s.len);
    }

    ours_d = discrepancy(s.seq, s.len, w, n);
    ref_d = discrepancy(seq, sum, w, n);

    if (ours_d >= 1.0 - 1e-9 && ours_d > ref_d + 1e-9) {
        print_error("n=%u: schedule strays %.3f picks, nginx %.3f\n",
                    n, ours_d, ref_d);
    }

    assert_true(ours_d < 1.0 - 1e-9 || ours_d <= ref_d + 1e-9);

    free(seq);
    ngx_tce_sched_free(&s);
}


/*
 * A cycle with members masked (the zone keeps a service's cycle when a
 * later set lacks only a few of its members, at most 8 and 1/8 of the
 * weight; views skip their entries).  Over one pass each other instance
 * gets exactly its entries, and its distance from its share of the
 * picks so far grows from the cycle's D to at most D (1 + k w / W'):
 * k masked members whose counts each stray less than D, W' the weight
 * left, w the heaviest left.
 */
static void
test_masked_cycle_stays_near_shares(void **state)
{
    double           d, dm, bound;
    uint32_t         i, j, n, k, t, len, g, wmax, mw, sum, *seq;
    uint32_t         w[MAXN], left[MAXN], got[MAXN];
    ngx_tce_sched_t  s;

    (void) state;

    srand(17);

    for (t = 0; t < 400; t++) {
        n = 2 + rand() % 30;
        sum = 0;
        g = 0;

        for (i = 0; i < n; i++) {
            w[i] = 1 + rand() % (t % 2 ? 10 : 300);
            sum += w[i];
            g = gcd(w[i], g);
        }

        assert_int_equal(ngx_tce_sched_build(&s, w, n), 0);
        assert_int_equal(s.len, sum / g);

        /* up to 8 masked, within 1/8 of the weight */
        memcpy(left, w, n * sizeof(uint32_t));
        k = 0;
        mw = 0;

        for (j = rand() % 9; j && k + 1 < n; j--) {
            i = rand() % n;

            if (left[i] && (uint64_t) (mw + w[i]) * 8 <= sum) {
                left[i] = 0;
                mw += w[i];
                k++;
            }
        }

        seq = malloc(s.len * sizeof(uint32_t));
        assert_non_null(seq);
        memset(got, 0, sizeof(got));
        len = 0;
        wmax = 0;

        for (i = 0; i < s.len; i++) {
            if (left[s.seq[i]]) {
                seq[len++] = s.seq[i];
                got[s.seq[i]]++;
            }
        }

        for (i = 0; i < n; i++) {
            assert_int_equal(got[i], left[i] / g);
            wmax = left[i] > wmax ? left[i] : wmax;
        }

        d = discrepancy(s.seq, s.len, w, n);
        dm = discrepancy(seq, len, left, n);
        bound = d * (1.0 + (double) k * wmax / (sum - mw));

        if (dm > bound + 1e-9) {
            print_error("n=%u k=%u: masked strays %.3f, bound %.3f\n",
                        n, k, dm, bound);
        }

        assert_true(dm <= bound + 1e-9);

        free(seq);
        ngx_tce_sched_free(&s);
    }
}


static void
test_random_sets_match_swrr(void **state)
{
    int       round;
    uint32_t  n, w[MAXN];

    (void) state;
    srand(12345);

    for (round = 0; round < 300; round++) {
        n = 1 + rand() % 40;
        random_weights(w, n);
        check_against_swrr(w, n);
    }
}


static void
test_skewed_sets_match_swrr(void **state)
{
    uint32_t  i, w[MAXN];

    (void) state;

    /* one heavy instance among many light ones, and the reverse */
    for (i = 0; i < MAXN; i++) {
        w[i] = 1;
    }

    w[0] = 1000;
    check_against_swrr(w, MAXN);

    for (i = 0; i < MAXN; i++) {
        w[i] = 997;
    }

    w[MAXN - 1] = 1;
    check_against_swrr(w, MAXN);

    /* coprime weights: gcd 1, nothing reduced */
    for (i = 0; i < MAXN; i++) {
        w[i] = 1000 - i;
    }

    check_against_swrr(w, MAXN);
}


static void
test_equal_weights_interleave(void **state)
{
    uint32_t         i, w[4] = { 7, 7, 7, 7 };
    ngx_tce_sched_t  s;

    (void) state;

    assert_int_equal(ngx_tce_sched_build(&s, w, 4), 0);
    assert_int_equal(s.len, 4);           /* reduced by the gcd */

    for (i = 0; i < 4; i++) {
        assert_int_equal(s.seq[i], i);
    }

    ngx_tce_sched_free(&s);
}


static void
test_smooth_like_nginx_example(void **state)
{
    /* nginx's own example {5, 1, 1}: a a b a c a a */
    uint32_t         i, n_a, w[3] = { 5, 1, 1 };
    ngx_tce_sched_t  s;

    (void) state;

    assert_int_equal(ngx_tce_sched_build(&s, w, 3), 0);
    assert_int_equal(s.len, 7);

    n_a = 0;

    for (i = 0; i < 7; i++) {
        n_a += s.seq[i] == 0;
        /* never three picks of a in a row (nginx: at most two) */
        if (i >= 2) {
            assert_false(s.seq[i] == 0 && s.seq[i - 1] == 0
                         && s.seq[i - 2] == 0);
        }
    }

    assert_int_equal(n_a, 5);
    ngx_tce_sched_free(&s);
}


/*
 * A cycle over NGX_TCE_SCHED_MAX: the header promises every instance
 * its exact share of L = NGX_TCE_SCHED_MAX picks, w * L / sum, rounded
 * down or up (at least 1), and so a relative error below 1/1000 for any
 * instance with at least 1/1000 of the total weight.  Checked against
 * the original weights, in exact integer arithmetic.
 */
static void
check_capped(const uint32_t *w, uint32_t n)
{
    uint32_t         i, *count;
    uint64_t         sum, exact_floor, l;
    ngx_tce_sched_t  s;

    sum = 0;
    l = NGX_TCE_SCHED_MAX;

    for (i = 0; i < n; i++) {
        sum += w[i];
    }

    assert_int_equal(ngx_tce_sched_build(&s, w, n), 0);
    assert_true(s.len >= l && s.len <= l + n);

    count = calloc(n, sizeof(uint32_t));
    assert_non_null(count);

    for (i = 0; i < s.len; i++) {
        assert_true(s.seq[i] < n);
        count[s.seq[i]]++;
    }

    for (i = 0; i < n; i++) {
        if (w[i] == 0) {
            assert_int_equal(count[i], 0);
            continue;
        }

        /* count is floor(w L / sum) or the next integer, and never 0 */
        exact_floor = w[i] * l / sum;

        if (count[i] != exact_floor
            && count[i] != exact_floor + 1)
        {
            print_error("instance %u weight %u: %u picks, share %.3f\n",
                        i, w[i], count[i], (double) w[i] * l / sum);
        }

        assert_true(count[i] == exact_floor || count[i] == exact_floor + 1);
        assert_true(count[i] >= 1);

        if (w[i] * 1000 >= sum) {
            /* |count - w L / sum| < 1 <= (w L / sum) / 1000 */
            assert_true((uint64_t) count[i] * sum * 1000
                        > w[i] * l * 999);
            assert_true((uint64_t) count[i] * sum * 1000
                        < w[i] * l * 1001);
        }
    }

    free(count);
    ngx_tce_sched_free(&s);
}


static void
test_long_cycle_is_capped(void **state)
{
    uint32_t  i, *w, n;

    (void) state;

    /* 5000 instances of coprime-ish weights: cycle far above the cap */
    n = 5000;
    w = malloc(n * sizeof(uint32_t));
    assert_non_null(w);

    for (i = 0; i < n; i++) {
        w[i] = (i % 2) ? 997 : 499;
    }

    check_capped(w, n);

    /* random weights 1..1000, a few heavy, some instances at 0 */
    srand(777);

    for (i = 0; i < n; i++) {
        w[i] = (i % 97 == 0) ? 0 : 1 + rand() % 1000;
    }

    w[1] = 1000000;
    check_capped(w, n);

    /* tiny shares: weight 1 among heavy ones rounds up to one pick */
    for (i = 0; i < n; i++) {
        w[i] = (i % 10 == 0) ? 1 : 1000;
    }

    check_capped(w, n);

    free(w);
}


/* a build in slices writes the same cycle as one in one go */
static void
test_slices_same_cycle(void **state)
{
    uint32_t                i, n, len, left, calls, *w, *seq;
    ngx_tce_sched_t         s;
    ngx_tce_sched_build_t  *b;

    (void) state;

    n = 1000;
    w = malloc(n * sizeof(uint32_t));
    assert_non_null(w);
    srand(99);

    for (i = 0; i < n; i++) {
        w[i] = 1 + rand() % 1000;
    }

    assert_int_equal(ngx_tce_sched_build(&s, w, n), 0);

    b = ngx_tce_sched_start(w, n, &len);
    assert_non_null(b);
    assert_int_equal(len, s.len);

    seq = malloc(len * sizeof(uint32_t));
    assert_non_null(seq);
    calls = 0;

    do {
        left = ngx_tce_sched_run(b, seq, 4096);
        calls++;
    } while (left);

    assert_int_equal(calls, (len + 4095) / 4096);
    assert_memory_equal(seq, s.seq, len * sizeof(uint32_t));

    ngx_tce_sched_done(b);
    ngx_tce_sched_free(&s);
    free(seq);
    free(w);
}


static void
test_all_zero(void **state)
{
    uint32_t         w[3] = { 0, 0, 0 };
    ngx_tce_sched_t  s;

    (void) state;

    assert_int_equal(ngx_tce_sched_build(&s, w, 3), 0);
    assert_int_equal(s.len, 0);
    assert_null(s.seq);
    ngx_tce_sched_free(&s);
}


/*
 * Builds reuse the lists of the last finished build: a build stopped
 * half way (a newer change cancels it) must not hand its leftovers to
 * the next one, and a shorter cycle in longer lists must come out as
 * it would alone.  The oracle is nginx's round robin, as above.
 */
static void
test_stopped_builds_leave_nothing(void **state)
{
    uint32_t                i, len, *seq, w[MAXN], big[MAXN];
    ngx_tce_sched_build_t  *b;

    (void) state;

    for (i = 0; i < MAXN; i++) {
        w[i] = 1 + i % 7;
        big[i] = 1000 + 37 * i;
    }

    seq = malloc(NGX_TCE_SCHED_MAX * sizeof(uint32_t));
    assert_non_null(seq);

    /* a long cycle, finished: its lists are kept */
    b = ngx_tce_sched_start(big, MAXN, &len);
    assert_non_null(b);
    assert_int_equal(ngx_tce_sched_run(b, seq, len), 0);
    ngx_tce_sched_done(b);

    /* a short one in them, then stopped after 3 entries */
    b = ngx_tce_sched_start(w, MAXN, &len);
    assert_non_null(b);
    assert_true(ngx_tce_sched_run(b, seq, 3) > 0);
    ngx_tce_sched_done(b);

    /* the long one, stopped half way */
    b = ngx_tce_sched_start(big, MAXN, &len);
    assert_non_null(b);
    assert_true(ngx_tce_sched_run(b, seq, len / 2) > 0);
    ngx_tce_sched_done(b);

    free(seq);

    check_against_swrr(w, MAXN);
    check_against_swrr(big, 9);
    check_against_swrr(w, 5);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_random_sets_match_swrr),
        cmocka_unit_test(test_skewed_sets_match_swrr),
        cmocka_unit_test(test_equal_weights_interleave),
        cmocka_unit_test(test_smooth_like_nginx_example),
        cmocka_unit_test(test_long_cycle_is_capped),
        cmocka_unit_test(test_slices_same_cycle),
        cmocka_unit_test(test_all_zero),
        cmocka_unit_test(test_stopped_builds_leave_nothing),
        cmocka_unit_test(test_masked_cycle_stays_near_shares),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
