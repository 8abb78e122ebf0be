/*
 * The names closest to a mistyped one: distances from a literal table,
 * order, ties, bounds.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_tce_closest.h"


static void test_distance(void **state);
static void test_closest(void **state);
static void test_bounds(void **state);


static void
test_distance(void **state)
{
    (void) state;

    assert_int_equal(ngx_tce_closest_distance("", 0, "", 0), 0);
    assert_int_equal(ngx_tce_closest_distance("abc", 3, "", 0), 3);
    assert_int_equal(ngx_tce_closest_distance("kitten", 6, "sitting", 7), 3);
    assert_int_equal(ngx_tce_closest_distance("demo.web.apj", 12,
                                              "demo.web.api", 12), 1);
    assert_int_equal(ngx_tce_closest_distance("flaw", 4, "lawn", 4), 2);
}


static void
test_closest(void **state)
{
    size_t             out[3], n;
    const char *const  names[] = {
        "demo.shop.cart", "demo.web.api", "demo.web.other", "demo.web.apis",
        "x.y.z"
    };

    (void) state;

    n = ngx_tce_closest("demo.web.apj", names, 5, out, 3);

    assert_int_equal(n, 3);
    assert_int_equal(out[0], 1);        /* distance 1 */
    assert_int_equal(out[1], 3);        /* 2 */
    assert_int_equal(out[2], 2);        /* 4 (cart is 6) */

    /* ties keep the given order */
    {
        const char *const  ab[] = { "b", "a", "c" };

        n = ngx_tce_closest("z", ab, 3, out, 2);
        assert_int_equal(n, 2);
        assert_int_equal(out[0], 0);
        assert_int_equal(out[1], 1);
    }
}


static void
test_bounds(void **state)
{
    size_t             out[16], n;
    char               a[300], b[300];
    const char *const  one[] = { "only" };

    (void) state;

    assert_int_equal(ngx_tce_closest("x", one, 0, out, 3), 0);

    n = ngx_tce_closest("x", one, 1, out, 3);
    assert_int_equal(n, 1);
    assert_int_equal(out[0], 0);

    /* long names compare on their first 64 bytes */
    memset(a, 'a', sizeof(a));
    memset(b, 'a', sizeof(b));
    b[200] = 'b';
    assert_int_equal(ngx_tce_closest_distance(a, sizeof(a), b, sizeof(b)),
                     0);
    b[10] = 'b';
    assert_int_equal(ngx_tce_closest_distance(a, sizeof(a), b, sizeof(b)),
                     1);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distance),
        cmocka_unit_test(test_closest),
        cmocka_unit_test(test_bounds),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
