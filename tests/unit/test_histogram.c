/*
 * Histogram bucket math: bounds, bucket choice at and around each
 * bound, cumulative counts.
 */

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_tce_histogram.h"


static void test_bounds(void **state);
static void test_bounds_match_labels(void **state);
static void test_bucket_edges(void **state);
static void test_cumulate(void **state);


static void
test_bounds(void **state)
{
    unsigned     i;
    const char  *want[] = { "0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
                            "0.5", "1", "2.5", "5", "10", "30", "60",
                            "+Inf" };

    (void) state;

    for (i = 0; i < NGX_TCE_HIST_NBUCKETS; i++) {
        assert_string_equal(ngx_tce_histogram_le(i), want[i]);

        if (i > 0) {
            assert_true(ngx_tce_histogram_bound_ms(i)
                        > ngx_tce_histogram_bound_ms(i - 1));
        }
    }

    assert_null(ngx_tce_histogram_le(NGX_TCE_HIST_NBUCKETS));
    assert_int_equal(ngx_tce_histogram_bound_ms(NGX_TCE_HIST_NBUCKETS - 1),
                     UINT64_MAX);
}


/*
 * The bound that decides the bucket (ms) is the one the label tells
 * the scraper (seconds): a bound moved without its label (or the other
 * way round) would put durations in the wrong le bucket silently.
 * Both are checked against the label text parsed as a number, and
 * against a table written here.
 */
static void
test_bounds_match_labels(void **state)
{
    char           *end;
    double          sec, ms;
    unsigned        i;
    const char     *le;
    const uint64_t  want_ms[] = { 5, 10, 25, 50, 100, 250, 500, 1000,
                                  2500, 5000, 10000, 30000, 60000 };

    (void) state;

    assert_int_equal(sizeof(want_ms) / sizeof(want_ms[0]),
                     NGX_TCE_HIST_NBUCKETS - 1);

    for (i = 0; i < NGX_TCE_HIST_NBUCKETS - 1; i++) {
        le = ngx_tce_histogram_le(i);
        assert_non_null(le);

        sec = strtod(le, &end);
        assert_true(*end == '\0' && end != le);

        ms = sec * 1000.0;
        assert_true(fabs(ms - nearbyint(ms)) < 1e-6);

        assert_int_equal(ngx_tce_histogram_bound_ms(i),
                         (uint64_t) llround(ms));
        assert_int_equal(ngx_tce_histogram_bounds[i], want_ms[i]);
        assert_int_equal(ngx_tce_histogram_bound_ms(i), want_ms[i]);
    }

    assert_string_equal(ngx_tce_histogram_le(NGX_TCE_HIST_NBUCKETS - 1),
                        "+Inf");
    assert_int_equal(ngx_tce_histogram_bounds[NGX_TCE_HIST_NBUCKETS - 1],
                     UINT64_MAX);
}


static void
test_bucket_edges(void **state)
{
    unsigned  i;
    uint64_t  b;

    (void) state;

    assert_int_equal(ngx_tce_histogram_bucket(0), 0);

    /* le is inclusive: a value equal to a bound goes in that bucket */
    for (i = 0; i < NGX_TCE_HIST_NBUCKETS - 1; i++) {
        b = ngx_tce_histogram_bound_ms(i);
        assert_int_equal(ngx_tce_histogram_bucket(b), i);
        assert_int_equal(ngx_tce_histogram_bucket(b + 1), i + 1);

        if (b > 5) {
            assert_int_equal(ngx_tce_histogram_bucket(b - 1),
                             b - 1 > ngx_tce_histogram_bound_ms(i - 1)
                             ? i : i - 1);
        }
    }

    assert_int_equal(ngx_tce_histogram_bucket(3600 * 1000),
                     NGX_TCE_HIST_NBUCKETS - 1);
    assert_int_equal(ngx_tce_histogram_bucket(UINT64_MAX),
                     NGX_TCE_HIST_NBUCKETS - 1);
}


static void
test_cumulate(void **state)
{
    unsigned             i;
    uint64_t             cum[NGX_TCE_HIST_NBUCKETS], total, ms;
    ngx_tce_histogram_t  h, h2;

    (void) state;

    memset(&h, 0, sizeof(h));

    for (ms = 0; ms < 70000; ms += 7) {
        h.bucket[ngx_tce_histogram_bucket(ms)]++;
        h.sum_ms += ms;
    }

    total = ngx_tce_histogram_cumulate(&h, cum);
    assert_int_equal(total, 10000);
    assert_int_equal(cum[NGX_TCE_HIST_NBUCKETS - 1], total);

    for (i = 1; i < NGX_TCE_HIST_NBUCKETS; i++) {
        assert_true(cum[i] >= cum[i - 1]);
    }

    /* le=0.005 holds 0 ms only (the next value is 7 ms) */
    assert_int_equal(cum[0], 1);
    /* le=1: ms <= 1000 -> 0, 7, ..., 994: 143 values */
    assert_int_equal(cum[7], 143);

    memset(&h2, 0, sizeof(h2));
    ngx_tce_histogram_add(&h2, &h);
    ngx_tce_histogram_add(&h2, &h);
    assert_int_equal(ngx_tce_histogram_cumulate(&h2, cum), 20000);
    assert_int_equal(h2.sum_ms, 2 * h.sum_ms);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_bounds_match_labels),
        cmocka_unit_test(test_bucket_edges),
        cmocka_unit_test(test_cumulate),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
