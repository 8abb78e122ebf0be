/*
 * Tests of ngx_tce_consul_detect.c: /v1/health/state/any bodies folded
 * into one digest per service.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_tce_consul_detect.h"


static uint64_t digest_of(const char *body, const char *name);
static void test_digest_per_service(void **state);
static void test_order_and_other_fields_ignored(void **state);
static void test_bad_bodies(void **state);


#define CHECK(node, id, svc, status, idx)                                    \
    "{\"Node\":\"" node "\",\"CheckID\":\"" id "\",\"Name\":\"n\","        \
    "\"Status\":\"" status "\",\"Output\":\"x\\u0000[{\\\"\","            \
    "\"ServiceID\":\"" svc "\",\"ServiceName\":\"" svc "\","              \
    "\"ServiceTags\":[],\"CreateIndex\":1,\"ModifyIndex\":" idx "}"


static uint64_t
digest_of(const char *body, const char *name)
{
    char                      err[160];
    uint64_t                  d;
    ngx_tce_consul_digests_t  res;

    assert_int_equal(ngx_tce_consul_parse_checks(body, strlen(body), &res,
                                                 err, sizeof(err)),
                     0);
    d = ngx_tce_consul_digest(&res, name);
    ngx_tce_consul_digests_free(&res);

    return d;
}


static void
test_digest_per_service(void **state)
{
    uint64_t  a, b;

    (void) state;

    a = digest_of("[" CHECK("n1", "c1", "a.b.c", "passing", "5") ","
                  CHECK("n1", "c2", "x.y.z", "passing", "6") "]", "a.b.c");

    /* another service's change does not move it */
    b = digest_of("[" CHECK("n1", "c1", "a.b.c", "passing", "5") ","
                  CHECK("n1", "c2", "x.y.z", "critical", "9") "]", "a.b.c");
    assert_true(a == b);

    /* its own status, index, node or a new check does */
    assert_true(a != digest_of("[" CHECK("n1", "c1", "a.b.c", "critical",
                                         "5") "]", "a.b.c"));
    assert_true(a != digest_of("[" CHECK("n1", "c1", "a.b.c", "passing",
                                         "7") "]", "a.b.c"));
    assert_true(a != digest_of("[" CHECK("n2", "c1", "a.b.c", "passing",
                                         "5") "]", "a.b.c"));
    assert_true(a != digest_of("[" CHECK("n1", "c1", "a.b.c", "passing", "5")
                               "," CHECK("n2", "c1", "a.b.c", "passing",
                                         "5") "]", "a.b.c"));

    /* no check: the constant, never 0 */
    assert_true(digest_of("[]", "a.b.c") == NGX_TCE_CONSUL_NO_CHECKS);
    assert_true(a != 0 && a != NGX_TCE_CONSUL_NO_CHECKS);
}


static void
test_order_and_other_fields_ignored(void **state)
{
    char                      err[160];
    const char               *one, *two;
    ngx_tce_consul_digests_t  r1, r2;

    (void) state;

    one = "[" CHECK("n1", "c1", "a.b.c", "passing", "5") ","
              CHECK("n2", "serfHealth", "", "passing", "3") ","
              CHECK("n1", "c2", "a.b.c", "warning", "8") "]";
    two = " [ " CHECK("n1", "c2", "a.b.c", "warning", "8") " , "
              CHECK("n1", "c1", "a.b.c", "passing", "5") ","
              CHECK("n2", "serfHealth", "", "passing", "3") " ] ";

    assert_int_equal(ngx_tce_consul_parse_checks(one, strlen(one), &r1, err,
                                                 sizeof(err)),
                     0);
    assert_int_equal(ngx_tce_consul_parse_checks(two, strlen(two), &r2, err,
                                                 sizeof(err)),
                     0);
    assert_int_equal(r1.nservices, 1);
    assert_int_equal(r1.nchecks, 3);
    assert_true(ngx_tce_consul_digest(&r1, "a.b.c")
                == ngx_tce_consul_digest(&r2, "a.b.c"));
    assert_true(r1.nodes == r2.nodes);
    ngx_tce_consul_digests_free(&r1);
    ngx_tce_consul_digests_free(&r2);

    /* a node check moves the nodes' digest only */
    two = "[" CHECK("n1", "c1", "a.b.c", "passing", "5") ","
              CHECK("n2", "serfHealth", "", "critical", "4") ","
              CHECK("n1", "c2", "a.b.c", "warning", "8") "]";
    assert_int_equal(ngx_tce_consul_parse_checks(one, strlen(one), &r1, err,
                                                 sizeof(err)),
                     0);
    assert_int_equal(ngx_tce_consul_parse_checks(two, strlen(two), &r2, err,
                                                 sizeof(err)),
                     0);
    assert_true(r1.nodes != r2.nodes);
    assert_true(ngx_tce_consul_digest(&r1, "a.b.c")
                == ngx_tce_consul_digest(&r2, "a.b.c"));
    ngx_tce_consul_digests_free(&r1);
    ngx_tce_consul_digests_free(&r2);
}


static void
test_bad_bodies(void **state)
{
    char                      err[160];
    size_t                    i;
    ngx_tce_consul_digests_t  res;

    static const char        *bad[] = {
        "", "{}", "[", "[{}]", "[1]", "[{\"Node\":\"n\"}]",
        "[" CHECK("n1", "c1", "a.b.c", "passing", "5"),
        "[" CHECK("n1", "c1", "a.b.c", "passing", "5") "] x",
        "[" CHECK("n1", "c1", "a.b.c", "passing", "5") " "
            CHECK("n1", "c1", "a.b.c", "passing", "5") "]",
        "[{\"Node\":\"n\",\"CheckID\":\"c\",\"Status\":\"passing\","
        "\"ModifyIndex\":\"5\"}]",
    };

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&res, 0xaa, sizeof(res));
        err[0] = '\0';
        assert_int_equal(ngx_tce_consul_parse_checks(bad[i], strlen(bad[i]),
                                                     &res, err, sizeof(err)),
                         -1);
        assert_true(err[0] != '\0');
    }

    assert_int_equal(ngx_tce_consul_parse_checks(NULL, 0, &res, err,
                                                 sizeof(err)),
                     -1);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_digest_per_service),
        cmocka_unit_test(test_order_and_other_fields_ignored),
        cmocka_unit_test(test_bad_bodies),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
