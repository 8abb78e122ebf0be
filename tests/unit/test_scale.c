/*
 * The scaling signal: HPA's formula with its tolerance band, the
 * largest proposal over the metrics, the floor of 1.
 */

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ngx_tce_scale.h"


static void test_one_metric(void **state);
static void test_max_over_metrics(void **state);
static void test_edges(void **state);


static void
test_one_metric(void **state)
{
    ngx_tce_scale_metric_t  m;

    (void) state;

    /* 4 instances at 150 rps each for a target of 100: ceil(6) = 6 */
    m.observed = 150;
    m.target = 100;
    assert_int_equal(ngx_tce_scale_desired(4, &m, 1, 0.1, NULL), 6);

    /* 4 at 130 / 100: ceil(5.2) = 6 */
    m.observed = 130;
    assert_int_equal(ngx_tce_scale_desired(4, &m, 1, 0.1, NULL), 6);

    /* within 10%: stay */
    m.observed = 109;
    assert_int_equal(ngx_tce_scale_desired(4, &m, 1, 0.1, NULL), 4);
    m.observed = 91;
    assert_int_equal(ngx_tce_scale_desired(4, &m, 1, 0.1, NULL), 4);

    /* below the band: scale in, ceil(4 * 0.5) = 2 */
    m.observed = 50;
    assert_int_equal(ngx_tce_scale_desired(4, &m, 1, 0.1, NULL), 2);
}


static void
test_max_over_metrics(void **state)
{
    uint32_t                p[2];
    ngx_tce_scale_metric_t  m[2];

    (void) state;

    m[0].observed = 50;         /* rps: wants 2 */
    m[0].target = 100;
    m[1].observed = 3;          /* in-flight: wants ceil(4 * 1.5) = 6 */
    m[1].target = 2;

    assert_int_equal(ngx_tce_scale_desired(4, m, 2, 0.1, p), 6);
    assert_int_equal(p[0], 2);
    assert_int_equal(p[1], 6);

    /* a metric without target proposes nothing */
    m[1].target = 0;
    assert_int_equal(ngx_tce_scale_desired(4, m, 2, 0.1, p), 2);
    assert_int_equal(p[1], 0);
}


static void
test_edges(void **state)
{
    ngx_tce_scale_metric_t  m;

    (void) state;

    /* no traffic: not below 1 */
    m.observed = 0;
    m.target = 100;
    assert_int_equal(ngx_tce_scale_desired(4, &m, 1, 0.1, NULL), 1);

    /* no instance: nothing to scale from */
    m.observed = 500;
    assert_int_equal(ngx_tce_scale_desired(0, &m, 1, 0.1, NULL), 0);

    /* no target at all: current */
    m.target = 0;
    assert_int_equal(ngx_tce_scale_desired(3, &m, 1, 0.1, NULL), 3);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_one_metric),
        cmocka_unit_test(test_max_over_metrics),
        cmocka_unit_test(test_edges),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
