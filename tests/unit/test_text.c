/*
 * Text from outside made printable: every byte that is not printable
 * ASCII (and the backslash) becomes "\xHH"; cuts never split an escape.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_tce_text.h"


static void test_escape(void **state);
static void test_escape_every_byte(void **state);
static void test_escape_cut(void **state);
static void test_printable(void **state);


static void
test_escape(void **state)
{
    char         out[128];
    size_t       n;
    const char   in[] = "<p>\xff\xfe \xc3\x28 \x1b[31m\x00nul\\ \r\n";

    (void) state;

    n = ngx_tce_text_escape(out, sizeof(out), in, sizeof(in) - 1);

    assert_string_equal(out, "<p>\\xFF\\xFE \\xC3( \\x1B[31m\\x00nul\\x5C "
                        "\\x0D\\x0A");
    assert_int_equal(n, strlen(out));

    /* plain text is copied as is */
    n = ngx_tce_text_escape(out, sizeof(out), "HTTP 500: rpc error", 19);
    assert_string_equal(out, "HTTP 500: rpc error");
    assert_int_equal(n, 19);

    n = ngx_tce_text_escape(out, sizeof(out), "", 0);
    assert_string_equal(out, "");
    assert_int_equal(n, 0);
}


static void
test_escape_every_byte(void **state)
{
    char      in[256], out[1024];
    size_t    i, n;
    unsigned  c;

    (void) state;

    for (i = 0; i < 256; i++) {
        in[i] = (char) i;
    }

    n = ngx_tce_text_escape(out, sizeof(out), in, 256);

    /* 95 printable bytes minus the backslash, the rest as \xHH */
    assert_int_equal(n, 94 + 4 * (256 - 94));
    assert_int_equal(strlen(out), n);

    for (i = 0; i < n; i++) {
        c = (unsigned char) out[i];
        assert_true(c >= 0x20 && c < 0x7f);
    }

    assert_memory_equal(out, "\\x00\\x01", 8);
    assert_memory_equal(out + n - 4, "\\xFF", 4);
}


static void
test_escape_cut(void **state)
{
    char    out[8];
    size_t  n;

    (void) state;

    /* room for 7 bytes: "ab\x01" is 6, the next escape does not fit */
    n = ngx_tce_text_escape(out, sizeof(out), "ab\x01\x02", 4);
    assert_string_equal(out, "ab\\x01");
    assert_int_equal(n, 6);

    n = ngx_tce_text_escape(out, sizeof(out), "abcdefghij", 10);
    assert_string_equal(out, "abcdefg");
    assert_int_equal(n, 7);

    n = ngx_tce_text_escape(out, 1, "abc", 3);
    assert_string_equal(out, "");
    assert_int_equal(n, 0);

    out[0] = 'x';
    assert_int_equal(ngx_tce_text_escape(out, 0, "abc", 3), 0);
    assert_int_equal(out[0], 'x');
}


static void
test_printable(void **state)
{
    (void) state;

    assert_true(ngx_tce_text_printable("api-1:a\\b", 9));
    assert_true(ngx_tce_text_printable("", 0));
    assert_false(ngx_tce_text_printable("a\nb", 3));
    assert_false(ngx_tce_text_printable("a\0b", 3));
    assert_false(ngx_tce_text_printable("\xc3\xa9", 2));
    assert_false(ngx_tce_text_printable("\x7f", 1));
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_escape_every_byte),
        cmocka_unit_test(test_escape_cut),
        cmocka_unit_test(test_printable),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
