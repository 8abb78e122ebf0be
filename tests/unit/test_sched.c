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
 * Smoothness: the largest distance, at any point of the cycle, between
 * how often an instance was picked and its share w / W of the picks.
 */
static double
discrepancy(const uint32_t *seq, uint32_t len, const uint32_t *w,
    uint32_t n)
{
    double    d, worst, sum;
    uint32_t  i, t, k[MAXN];

    memset(k, 0, sizeof(k));
    sum = 0;
    worst = 0;

    for (i = 0; i < n; i++) {
        sum += w[i];
    }

    for (t = 0; t < len; t++) {
        k[seq[t]]++;

        for (i = 0; i < n; i++) {
            d = k[i] - (t + 1) * (w[i] / sum);
            d = d < 0 ? -d : d;
            worst = d > worst ? d : worst;
        }
    }

    return worst;
}


static void
test_random_sets_match_swrr(void **state)
{
    int              round;
    uint32_t         n, i, g, w[MAXN], wr[MAXN], ours[MAXN], ref[MAXN];
    uint32_t        *seq;
    ngx_tce_sched_t  s;

    (void) state;
    srand(12345);

    for (round = 0; round < 300; round++) {
        n = 1 + rand() % 40;
        g = 0;

        for (i = 0; i < n; i++) {
            /* mostly small weights, some zero, some large */
            switch (rand() % 4) {
            case 0:  w[i] = 0; break;
            case 1:  w[i] = 1 + rand() % 1000; break;
            default: w[i] = 1 + rand() % 10; break;
            }

            g += w[i];
        }

        assert_int_equal(ngx_tce_sched_build(&s, w, n), 0);

        if (g == 0) {
            assert_int_equal(s.len, 0);
            ngx_tce_sched_free(&s);
            continue;
        }

        /* weights as reduced by the schedule, to compare equal cycles */
        memset(ours, 0, sizeof(ours));

        for (i = 0; i < s.len; i++) {
            assert_true(s.seq[i] < n);
            ours[s.seq[i]]++;
        }

        for (i = 0; i < n; i++) {
            wr[i] = ours[i];
            /* the cycle is w reduced by the gcd: same proportions */
            assert_true((uint64_t) ours[i] * g == (uint64_t) w[i] * s.len);
        }

        seq = malloc(s.len * sizeof(uint32_t));
        assert_non_null(seq);
        swrr_seq(wr, n, s.len, seq);
        memset(ref, 0, sizeof(ref));

        for (i = 0; i < s.len; i++) {
            ref[seq[i]]++;
        }

        for (i = 0; i < n; i++) {
            /* nginx picks each instance exactly as often per cycle */
            assert_int_equal(ours[i], ref[i]);
        }

        /* and no instance strays further from its share than nginx's */
        assert_true(discrepancy(s.seq, s.len, wr, n)
                    <= discrepancy(seq, s.len, wr, n) + 1e-9
                    || discrepancy(s.seq, s.len, wr, n) <= 1.0 + 1e-9);

        free(seq);
        ngx_tce_sched_free(&s);
    }
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


static void
test_long_cycle_is_capped(void **state)
{
    uint32_t         i, *w, n;
    uint64_t         count0, count1;
    ngx_tce_sched_t  s;

    (void) state;

    /* 5000 instances of coprime-ish weights: cycle far above the cap */
    n = 5000;
    w = malloc(n * sizeof(uint32_t));
    assert_non_null(w);

    for (i = 0; i < n; i++) {
        w[i] = (i % 2) ? 997 : 499;
    }

    assert_int_equal(ngx_tce_sched_build(&s, w, n), 0);
    assert_true(s.len <= NGX_TCE_SCHED_MAX + n);

    count0 = 0;
    count1 = 0;

    for (i = 0; i < s.len; i++) {
        count0 += s.seq[i] == 0;
        count1 += s.seq[i] == 1;
    }

    /* proportions kept to within 1% */
    assert_true(count1 * 499 * 100 >= count0 * 997 * 99);
    assert_true(count1 * 499 * 100 <= count0 * 997 * 101);

    ngx_tce_sched_free(&s);
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


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_random_sets_match_swrr),
        cmocka_unit_test(test_equal_weights_interleave),
        cmocka_unit_test(test_smooth_like_nginx_example),
        cmocka_unit_test(test_long_cycle_is_capped),
        cmocka_unit_test(test_all_zero),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
