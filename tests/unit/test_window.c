/*
 * Recent-window counters: a slot counts its own second only, starts
 * over for a newer one, saturates; the sum covers the complete seconds
 * before now and nothing older or current.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_tce_window.h"


static void add(uint64_t *words, uint32_t now, uint32_t v);
static void test_next(void **state);
static void test_sum_window(void **state);
static void test_wrap(void **state);


static void
add(uint64_t *words, uint32_t now, uint32_t v)
{
    uint64_t  *p;

    p = &words[ngx_tce_window_slot(now)];
    *p = ngx_tce_window_next(*p, now, v);
}


static void
test_next(void **state)
{
    uint64_t  w;

    (void) state;

    w = ngx_tce_window_next(0, 1000, 3);
    assert_true(w == (((uint64_t) 1000 << 32) | 3));

    w = ngx_tce_window_next(w, 1000, 4);
    assert_true((w & 0xffffffff) == 7);

    /* a newer second starts over */
    w = ngx_tce_window_next(w, 1016, 1);
    assert_true(w == (((uint64_t) 1016 << 32) | 1));

    /* saturates instead of carrying into the second */
    w = ngx_tce_window_next(((uint64_t) 5 << 32) | 0xfffffffe, 5, 10);
    assert_true(w == (((uint64_t) 5 << 32) | 0xffffffff));
}


static void
test_sum_window(void **state)
{
    uint32_t              now, s;
    ngx_tce_window_t      w;
    ngx_tce_window_sum_t  sum;

    (void) state;

    memset(&w, 0, sizeof(w));
    now = 100000;

    /* one request in each of the 15 seconds before now, 5 now */
    for (s = now - 15; s < now; s++) {
        add(w.requests, s, 1);
        add(w.busy_ms, s, 250);
    }

    add(w.requests, now, 5);
    add(w.errors, now - 1, 2);
    add(w.errors, now - 11, 7);     /* out of the window */

    ngx_tce_window_sum(&w, now, &sum);

    assert_int_equal(sum.seconds, NGX_TCE_WINDOW_SECONDS);
    assert_int_equal(sum.requests, NGX_TCE_WINDOW_SECONDS);
    assert_int_equal(sum.errors, 2);
    assert_int_equal(sum.busy_ms, 250 * NGX_TCE_WINDOW_SECONDS);

    /* much later: slots of old seconds count nothing */
    ngx_tce_window_sum(&w, now + 40, &sum);
    assert_int_equal(sum.requests, 0);
    assert_int_equal(sum.busy_ms, 0);
}


static void
test_wrap(void **state)
{
    uint32_t              now;
    ngx_tce_window_t      w;
    ngx_tce_window_sum_t  sum;

    (void) state;

    /* seconds that wrap the 32-bit range still map and sum */
    memset(&w, 0, sizeof(w));
    now = 3;
    add(w.requests, 0xffffffff, 4);
    add(w.requests, 1, 6);
    ngx_tce_window_sum(&w, now, &sum);
    assert_int_equal(sum.requests, 10);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_next),
        cmocka_unit_test(test_sum_window),
        cmocka_unit_test(test_wrap),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
