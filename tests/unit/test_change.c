/*
 * The text of a change of an instance set: what was added, removed,
 * drained, taken down, brought back or changed, ids cut and escaped.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_tce_change.h"


static void inst(ngx_tce_instance_t *i, const char *id, int state);
static void test_change_kinds(void **state);
static void test_change_none(void **state);
static void test_change_many_and_escaped(void **state);
static void test_change_cut_to_buffer(void **state);


static void
inst(ngx_tce_instance_t *i, const char *id, int state)
{
    memset(i, 0, sizeof(ngx_tce_instance_t));
    snprintf(i->id, sizeof(i->id), "%s", id);
    snprintf(i->addr, sizeof(i->addr), "127.0.0.1:80");
    snprintf(i->cluster, sizeof(i->cluster), "default");
    i->weight = 1;
    i->state = (uint8_t) state;
}


static void
test_change_kinds(void **state)
{
    char                 out[NGX_TCE_CHANGE_TEXT_LEN];
    size_t               n;
    ngx_tce_change_t     c;
    ngx_tce_instance_t   a[6], b[6];

    (void) state;

    /* old: p1 p2 p4 p5 p6 p7; new: p2 p3 p4 p5 p6 p7 */
    inst(&a[0], "p1", NGX_TCE_STATE_UP);
    inst(&a[1], "p2", NGX_TCE_STATE_UP);
    inst(&a[2], "p4", NGX_TCE_STATE_UP);
    inst(&a[3], "p5", NGX_TCE_STATE_DRAINING);
    inst(&a[4], "p6", NGX_TCE_STATE_UP);
    inst(&a[5], "p7", NGX_TCE_STATE_UP);

    inst(&b[0], "p2", NGX_TCE_STATE_UP);
    b[0].op_drain = 1;                       /* an override drains it */
    inst(&b[1], "p3", NGX_TCE_STATE_UP);
    inst(&b[2], "p4", NGX_TCE_STATE_DOWN);
    inst(&b[3], "p5", NGX_TCE_STATE_UP);
    inst(&b[4], "p6", NGX_TCE_STATE_UP);
    b[4].weight = 5;
    inst(&b[5], "p7", NGX_TCE_STATE_UP);

    n = ngx_tce_change_diff(a, 6, b, 6, &c);
    assert_int_equal(n, 6);

    n = ngx_tce_change_text(out, sizeof(out), &c);
    assert_string_equal(out, "+1 instance (p3), -1 instance (p1), "
                        "1 draining (p2), 1 down (p4), 1 back up (p5), "
                        "1 changed (p6)");
    assert_int_equal(n, strlen(out));

    /* a removal through the admin API drains */
    inst(&a[0], "p1", NGX_TCE_STATE_UP);
    inst(&b[0], "p1", NGX_TCE_STATE_UP);
    b[0].rm_deadline = 12345;

    assert_int_equal(ngx_tce_change_diff(a, 1, b, 1, &c), 1);
    ngx_tce_change_text(out, sizeof(out), &c);
    assert_string_equal(out, "1 draining (p1)");

    /* from empty, to empty */
    assert_int_equal(ngx_tce_change_diff(NULL, 0, b, 1, &c), 1);
    ngx_tce_change_text(out, sizeof(out), &c);
    assert_string_equal(out, "+1 instance (p1)");

    assert_int_equal(ngx_tce_change_diff(a, 1, NULL, 0, &c), 1);
    ngx_tce_change_text(out, sizeof(out), &c);
    assert_string_equal(out, "-1 instance (p1)");
}


static void
test_change_none(void **state)
{
    char                 out[16];
    ngx_tce_change_t     c;
    ngx_tce_instance_t   a[2], b[2];

    (void) state;

    inst(&a[0], "x", NGX_TCE_STATE_UP);
    inst(&a[1], "y", NGX_TCE_STATE_DRAINING);
    memcpy(b, a, sizeof(a));

    /* since_ms is the zone's, not a change */
    b[0].since_ms = 99;

    assert_int_equal(ngx_tce_change_diff(a, 2, b, 2, &c), 0);
    assert_int_equal(ngx_tce_change_text(out, sizeof(out), &c), 0);
    assert_string_equal(out, "");
}


static void
test_change_many_and_escaped(void **state)
{
    char                 out[NGX_TCE_CHANGE_TEXT_LEN], id[200];
    size_t               i;
    ngx_tce_change_t     c;
    ngx_tce_instance_t   b[5];

    (void) state;

    inst(&b[0], "a\x1b[31m\nforged", NGX_TCE_STATE_UP);

    memset(id, 'b', 100);
    id[100] = '\0';
    inst(&b[1], id, NGX_TCE_STATE_UP);

    for (i = 2; i < 5; i++) {
        snprintf(id, sizeof(id), "c%zu", i);
        inst(&b[i], id, NGX_TCE_STATE_UP);
    }

    assert_int_equal(ngx_tce_change_diff(NULL, 0, b, 5, &c), 5);
    ngx_tce_change_text(out, sizeof(out), &c);

    /* 3 ids of 5, the second cut at 40 bytes */
    assert_string_equal(out, "+5 instances (a\\x1B[31m\\x0Aforged, "
                        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb..., "
                        "c2, ...)");
}


static void
test_change_cut_to_buffer(void **state)
{
    char                 out[24];
    size_t               n;
    ngx_tce_change_t     c;
    ngx_tce_instance_t   a[1], b[1];

    (void) state;

    inst(&a[0], "old-instance", NGX_TCE_STATE_UP);
    inst(&b[0], "new-instance", NGX_TCE_STATE_UP);

    ngx_tce_change_diff(a, 1, b, 1, &c);
    n = ngx_tce_change_text(out, sizeof(out), &c);

    /* whole pieces only */
    assert_string_equal(out, "+1 instance (");
    assert_int_equal(n, strlen(out));
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_change_kinds),
        cmocka_unit_test(test_change_none),
        cmocka_unit_test(test_change_many_and_escaped),
        cmocka_unit_test(test_change_cut_to_buffer),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
