/*
 * The zone a registry needs: the weighted cycles' entries per cluster
 * and env (sum of weights / gcd, capped), and the figures' sums.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_tce_zone_size.h"
#include "ngx_tce_sched.h"


static void inst(ngx_tce_instance_t *i, const char *cluster, int env,
    int weight);
static void test_zone_size_entries(void **state);
static void test_zone_size_figures(void **state);


static void
inst(ngx_tce_instance_t *i, const char *cluster, int env, int weight)
{
    memset(i, 0, sizeof(ngx_tce_instance_t));
    snprintf(i->cluster, sizeof(i->cluster), "%s", cluster);
    i->env = (uint8_t) env;
    i->weight = (uint16_t) weight;
}


static void
test_zone_size_entries(void **state)
{
    ngx_tce_instance_t        in[6];
    ngx_tce_state_t           st;
    ngx_tce_zone_size_t       zs;
    ngx_tce_state_service_t   ss;

    (void) state;

    /* a: prod 2+4+6 over gcd 2 = 6, canary 3 = 1; b: prod 5 = 1 ... */
    inst(&in[0], "a", NGX_TCE_ENV_PROD, 2);
    inst(&in[1], "a", NGX_TCE_ENV_PROD, 4);
    inst(&in[2], "a", NGX_TCE_ENV_PROD, 6);
    inst(&in[3], "a", NGX_TCE_ENV_CANARY, 3);
    inst(&in[4], "b", NGX_TCE_ENV_PROD, 5);

    /* ... and an override's weight counts: 5 + 7 = 12, gcd 1 */
    inst(&in[5], "b", NGX_TCE_ENV_PROD, 1);
    in[5].op_weight = 7;

    memset(&ss, 0, sizeof(ss));
    ss.instances = in;
    ss.ninstances = 6;
    st.services = &ss;
    st.nservices = 1;

    ngx_tce_zone_size(&st, 2, 0, 2, &zs);

    assert_int_equal(zs.services, 3);
    assert_int_equal(zs.instances, 6);
    assert_int_equal(zs.entries, 6 + 1 + 12);

    /* no metrics: the service, instance and entry figures, the base */
    assert_int_equal(zs.need, 3 * NGX_TCE_ZONE_SIZE_SERVICE
                     + 6 * NGX_TCE_ZONE_SIZE_INSTANCE
                     + 19 * NGX_TCE_ZONE_SIZE_ENTRY
                     + NGX_TCE_ZONE_SIZE_BASE + zs.advised / 100);
    assert_true(zs.advised % NGX_TCE_ZONE_SIZE_ROUND == 0);
    assert_true(zs.advised >= zs.need + 6 * NGX_TCE_ZONE_SIZE_INSTANCE);
}


static void
test_zone_size_figures(void **state)
{
    size_t                    i;
    ngx_tce_instance_t        in[100];
    ngx_tce_state_t           st;
    ngx_tce_zone_size_t       zs, zm;
    ngx_tce_state_service_t   ss;

    (void) state;

    for (i = 0; i < 100; i++) {
        inst(&in[i], "default", NGX_TCE_ENV_PROD, 1000 - (int) i);
    }

    memset(&ss, 0, sizeof(ss));
    ss.instances = in;
    ss.ninstances = 100;
    st.services = &ss;
    st.nservices = 1;

    ngx_tce_zone_size(&st, 0, 0, 2, &zs);

    /* 1000 + 999 + ... + 901 = 95050 entries */
    assert_int_equal(zs.entries, 95050);

    /* the metrics add their series, more with more workers */
    ngx_tce_zone_size(&st, 0, 1, 2, &zm);
    assert_true(zm.need > zs.need + 100 * 1100);

    ngx_tce_zone_size(&st, 0, 1, 4, &zs);
    assert_true(zs.need > zm.need);

    /* nothing at all: the base only, in the smallest zone */
    ngx_tce_zone_size(NULL, 0, 0, 1, &zs);
    assert_int_equal(zs.advised, NGX_TCE_ZONE_SIZE_ROUND);
    assert_int_equal(zs.need, NGX_TCE_ZONE_SIZE_BASE
                              + NGX_TCE_ZONE_SIZE_ROUND / 100);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_zone_size_entries),
        cmocka_unit_test(test_zone_size_figures),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
