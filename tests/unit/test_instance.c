/*
 * Unit tests of the validators of ngx_tce_instance.c, one per bug the
 * fuzz target tests/fuzz/fuzz_addr.c found: a NUL inside an address,
 * IPv4 inside brackets, version labels of 64..127 characters.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <arpa/inet.h>

#include "ngx_tce_instance.h"


static void test_addr_nul(void **state);
static void test_addr_set_nul(void **state);
static void test_addr_bracketed_ipv4(void **state);
static void test_addr_valid(void **state);
static void test_version_length(void **state);
static void test_id_length(void **state);


/* "[::\0\0\0\0\0\0\0\0\0001]:9002" used to be taken as "[::]:9002" */

static void
test_addr_nul(void **state)
{
    ngx_tce_instance_t  inst;
    static const char   v6[] = "[::\0\0\0\0\0\0\0\0" "1]:9002";
    static const char   v4[] = "10.0.0.1\0junk:80";

    (void) state;

    memset(&inst, 0x5a, sizeof(inst));

    assert_int_equal(ngx_tce_addr_parse(v6, sizeof(v6) - 1, &inst), -1);
    assert_int_equal(ngx_tce_addr_parse(v4, sizeof(v4) - 1, &inst), -1);

    /* nothing changed */
    assert_int_equal((unsigned char) inst.addr[0], 0x5a);
}


static void
test_addr_set_nul(void **state)
{
    ngx_tce_instance_t  inst;

    (void) state;

    assert_int_equal(ngx_tce_addr_set("127.0.0.1\0x", 11, 80, &inst), -1);
    assert_int_equal(ngx_tce_addr_set("127.0.0.1", 9, 80, &inst), 0);
    assert_string_equal(inst.addr, "127.0.0.1:80");
}


static void
test_addr_bracketed_ipv4(void **state)
{
    ngx_tce_instance_t  inst;

    (void) state;

    assert_int_equal(ngx_tce_addr_parse("[192.0.2.1]:80", 14, &inst), -1);
    assert_int_equal(ngx_tce_addr_parse("[]:80", 5, &inst), -1);
}


static void
test_addr_valid(void **state)
{
    ngx_tce_instance_t  inst;

    (void) state;

    assert_int_equal(ngx_tce_addr_parse("192.0.2.1:80", 12, &inst), 0);
    assert_string_equal(inst.addr, "192.0.2.1:80");
    assert_int_equal(inst.sockaddr.sa.sa_family, AF_INET);

    assert_int_equal(ngx_tce_addr_parse("[::ffff:10.0.0.3]:080", 21, &inst),
                     0);
    assert_string_equal(inst.addr, "[::ffff:10.0.0.3]:80");
    assert_int_equal(inst.sockaddr.sa.sa_family, AF_INET6);
}


/* the header says 0..63; 64..127 used to pass */

static void
test_version_length(void **state)
{
    char  v[NGX_TCE_ID_LEN];

    (void) state;

    memset(v, 'v', sizeof(v));

    assert_int_equal(ngx_tce_version_valid(v, 0), 1);
    assert_int_equal(ngx_tce_version_valid(v, NGX_TCE_VERSION_LEN - 1), 1);
    assert_int_equal(ngx_tce_version_valid(v, NGX_TCE_VERSION_LEN), 0);
    assert_int_equal(ngx_tce_version_valid(v, NGX_TCE_ID_LEN - 1), 0);
}


static void
test_id_length(void **state)
{
    char  id[NGX_TCE_ID_LEN];

    (void) state;

    memset(id, 'i', sizeof(id));

    assert_int_equal(ngx_tce_id_valid(id, 0), 0);
    assert_int_equal(ngx_tce_id_valid(id, NGX_TCE_ID_LEN - 1), 1);
    assert_int_equal(ngx_tce_id_valid(id, NGX_TCE_ID_LEN), 0);
    assert_int_equal(ngx_tce_id_valid("a\"b", 3), 0);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_addr_nul),
        cmocka_unit_test(test_addr_set_nul),
        cmocka_unit_test(test_addr_bracketed_ipv4),
        cmocka_unit_test(test_addr_valid),
        cmocka_unit_test(test_version_length),
        cmocka_unit_test(test_id_length),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
