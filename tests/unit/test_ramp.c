/*
 * Slow start: the zone's stamps (who ramps after a change), the ramp's
 * fraction, and the admission that gives a ramping instance exactly
 * the share of its scaled weight over a schedule.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_tce_sched.h"
#include "ngx_tce_sched_ramp.h"


static void inst_set(ngx_tce_instance_t *in, const char *id,
    const char *cluster, unsigned env, const char *addr, unsigned weight);
static void test_stamp(void **state);
static void test_fraction(void **state);
static void test_admit_share(void **state);


static void
inst_set(ngx_tce_instance_t *in, const char *id, const char *cluster,
    unsigned env, const char *addr, unsigned weight)
{
    memset(in, 0, sizeof(ngx_tce_instance_t));
    snprintf(in->id, sizeof(in->id), "%s", id);
    snprintf(in->cluster, sizeof(in->cluster), "%s", cluster);
    snprintf(in->addr, sizeof(in->addr), "%s", addr);
    in->env = (uint8_t) env;
    in->weight = (uint16_t) weight;
}


static void
test_stamp(void **state)
{
    ngx_tce_instance_t  old[3], in[5];

    (void) state;

    inst_set(&old[0], "a", "default", 0, "10.0.0.1:80", 1);
    inst_set(&old[1], "b", "default", 0, "10.0.0.2:80", 1);
    old[1].op_down = 1;
    inst_set(&old[2], "c", "default", 0, "10.0.0.3:80", 1);
    old[2].since_ms = 777;

    inst_set(&in[0], "a", "default", 0, "10.0.0.1:80", 1);   /* kept */
    inst_set(&in[1], "b", "default", 0, "10.0.0.2:80", 1);   /* back */
    inst_set(&in[2], "c", "default", 0, "10.0.0.3:80", 1);   /* ramping */
    inst_set(&in[3], "d", "default", 0, "10.0.0.4:80", 1);   /* new */
    inst_set(&in[4], "e", "other", 1, "10.0.0.5:80", 1);     /* new group */

    ngx_tce_ramp_stamp(old, 3, in, 5, 5000);

    assert_true(in[0].since_ms == 0);
    assert_true(in[1].since_ms == 5000);
    assert_true(in[2].since_ms == 777);
    assert_true(in[3].since_ms == 5000);
    assert_true(in[4].since_ms == 0);

    /* a first set: nobody ramps; moved address: ramps */
    ngx_tce_ramp_stamp(NULL, 0, in, 5, 6000);
    assert_true(in[3].since_ms == 0);

    inst_set(&in[0], "a", "default", 0, "10.0.0.9:80", 1);
    ngx_tce_ramp_stamp(old, 3, in, 1, 7000);
    assert_true(in[0].since_ms == 7000);

    /* not routable: no stamp */
    in[0].op_drain = 1;
    ngx_tce_ramp_stamp(old, 3, in, 1, 8000);
    assert_true(in[0].since_ms == 0);
}


static void
test_fraction(void **state)
{
    (void) state;

    assert_int_equal(ngx_tce_ramp_fraction(0, 5000), 1);
    assert_int_equal(ngx_tce_ramp_fraction(2500, 5000),
                     NGX_TCE_RAMP_ONE / 2);
    assert_int_equal(ngx_tce_ramp_fraction(5000, 5000), NGX_TCE_RAMP_ONE);
    assert_int_equal(ngx_tce_ramp_fraction(9000, 5000), NGX_TCE_RAMP_ONE);
}


/*
 * Weights 1:1:1, the third at f = 1/4: over many cycles it gets
 * f / (2 + f) = 1/9 of the picks, as with weights 1:1:0.25.
 */
static void
test_admit_share(void **state)
{
    uint32_t         w[3] = { 1, 1, 1 }, credit, pos, idx, got[3];
    unsigned         k;
    ngx_tce_sched_t  s;

    (void) state;

    assert_int_equal(ngx_tce_sched_build(&s, w, 3), 0);

    credit = 0;
    pos = 0;
    memset(got, 0, sizeof(got));

    for (k = 0; k < 9000; k++) {
        for ( ;; ) {
            idx = s.seq[pos];
            pos = (pos + 1) % s.len;

            if (idx != 2
                || ngx_tce_ramp_admit(&credit, NGX_TCE_RAMP_ONE / 4))
            {
                break;
            }
        }

        got[idx]++;
    }

    assert_int_equal(got[2], 1000);
    assert_int_equal(got[0], 4000);
    assert_int_equal(got[1], 4000);

    ngx_tce_sched_free(&s);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_stamp),
        cmocka_unit_test(test_fraction),
        cmocka_unit_test(test_admit_share),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
