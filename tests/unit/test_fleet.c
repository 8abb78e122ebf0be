/*
 * The fleet's data (ngx_tce_fleet.c): what Redis holds is checked
 * before anything is applied, and the cache file reads back what was
 * written.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_tce_fleet.h"


static void test_uint(void **state);
static void test_policy_checks(void **state);
static void test_rev_checks(void **state);
static void test_cache_round_trip(void **state);
static void test_cache_refused(void **state);
static void test_if_match(void **state);
static void test_override_checks(void **state);
static void test_set_checks(void **state);


#define ADD(f, k, v, err)                                                    \
    ngx_tce_fleet_add_policy(f, k, strlen(k), v, strlen(v), err,             \
                             sizeof(err))


static void
test_uint(void **state)
{
    uint64_t  v;

    (void) state;

    assert_int_equal(ngx_tce_fleet_uint("0", 1, &v), 0);
    assert_true(v == 0);
    assert_int_equal(ngx_tce_fleet_uint("18446744073709551615", 20, &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(ngx_tce_fleet_uint("18446744073709551616", 20, &v), -1);
    assert_int_equal(ngx_tce_fleet_uint("", 0, &v), -1);
    assert_int_equal(ngx_tce_fleet_uint("-1", 2, &v), -1);
    assert_int_equal(ngx_tce_fleet_uint("12 ", 3, &v), -1);
    assert_int_equal(ngx_tce_fleet_uint("123456789012345678901", 21, &v),
                     -1);
}


static void
test_policy_checks(void **state)
{
    char             err[256];
    ngx_tce_fleet_t  f;

    (void) state;

    memset(&f, 0, sizeof(f));

    assert_int_equal(ADD(&f, "demo.web.api/default",
                         "{\"epoch\":2,\"fallback\":false,\"weight_bp\":2500}",
                         err), 0);
    assert_int_equal(f.npolicies, 1);
    assert_string_equal(f.policies[0].service, "demo.web.api");
    assert_string_equal(f.policies[0].cluster, "default");
    assert_int_equal(f.policies[0].policy.weight, 2500);
    assert_true(f.policies[0].policy.epoch == 2);
    assert_int_equal(f.policies[0].policy.fallback, 0);

    /* every refusal names the field and adds nothing */
    assert_int_equal(ADD(&f, "demo.web.api", "{\"weight_bp\":1}", err), -1);
    assert_non_null(strstr(err, "<service>/<cluster>"));
    assert_int_equal(ADD(&f, "Demo/default", "{\"weight_bp\":1}", err), -1);
    assert_non_null(strstr(err, "bad service name"));
    assert_int_equal(ADD(&f, "demo.web.api/", "{\"weight_bp\":1}", err), -1);
    assert_non_null(strstr(err, "bad cluster name"));
    assert_int_equal(ADD(&f, "demo.web.api/default",
                         "{\"weight_bp\":10001}", err), -1);
    assert_non_null(strstr(err, "demo.web.api/default: weight_bp"));
    assert_int_equal(ADD(&f, "demo.web.api/default", "[1]", err), -1);
    assert_int_equal(ADD(&f, "demo.web.api/default",
                         "{\"weight_bp\":1,\"x\":1}", err), -1);
    assert_int_equal(ADD(&f, "demo.web.api/default\x01", "{}", err), -1);
    assert_non_null(strstr(err, "\\x01"));

    /* a NUL inside, or a value too long to be a policy */
    assert_int_equal(ngx_tce_fleet_add_policy(&f, "a.b.c/d", 7,
                                              "{\"weight_bp\":1}\0x", 17,
                                              err, sizeof(err)), -1);
    {
        char  big[NGX_TCE_FLEET_VALUE_MAX + 2];

        memset(big, ' ', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        big[0] = '{';
        assert_int_equal(ADD(&f, "a.b.c/d", big, err), -1);
    }

    assert_int_equal(f.npolicies, 1);

    ngx_tce_fleet_free(&f);
    assert_null(f.policies);
}


static void
test_rev_checks(void **state)
{
    char             err[256];
    ngx_tce_fleet_t  f;

    (void) state;

    memset(&f, 0, sizeof(f));

    assert_int_equal(ngx_tce_fleet_add_rev(&f, "a.b.c", 5, "42", 2, err,
                                           sizeof(err)), 0);
    assert_int_equal(ngx_tce_fleet_add_rev(&f, "a.b.c", 5, "x", 1, err,
                                           sizeof(err)), -1);
    assert_non_null(strstr(err, "a.b.c: revision"));
    assert_int_equal(ngx_tce_fleet_add_rev(&f, "ab", 2, "1", 1, err,
                                           sizeof(err)), -1);
    assert_true(ngx_tce_fleet_rev(&f, "a.b.c", 5) == 42);
    assert_true(ngx_tce_fleet_rev(&f, "a.b.cd", 6) == 0);
    assert_true(ngx_tce_fleet_rev(&f, "a.b", 3) == 0);

    ngx_tce_fleet_free(&f);
}


static void
test_cache_round_trip(void **state)
{
    int              i;
    char             err[256], key[64], *text, *again;
    ngx_tce_fleet_t  f, g;

    (void) state;

    memset(&f, 0, sizeof(f));
    f.version = 1234567890123ULL;

    /* past the first growth of the arrays */
    for (i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "svc%d.web.api/c%d", i % 7, i);
        assert_int_equal(ADD(&f, key, "{\"weight_bp\":10000,\"epoch\":9}",
                             err), 0);
        snprintf(key, sizeof(key), "svc%d.web.api", i);
        assert_int_equal(ngx_tce_fleet_add_rev(&f, key, strlen(key), "7", 1,
                                               err, sizeof(err)), 0);
        snprintf(key, sizeof(key), "svc%d.web.api/i-%d", i % 5, i);
        assert_int_equal(ngx_tce_fleet_add_override(&f, key, strlen(key),
                             "{\"drain\":true}", 14, err, sizeof(err)), 0);
    }

    text = ngx_tce_fleet_encode(&f);
    assert_non_null(text);

    assert_int_equal(ngx_tce_fleet_decode(text, strlen(text), &g, err,
                                          sizeof(err)), 0);
    assert_true(g.version == f.version);
    assert_int_equal(g.npolicies, 40);
    assert_int_equal(g.nrevs, 40);
    assert_int_equal(g.noverrides, 40);
    assert_int_equal(g.overrides[0].drain, 1);

    /* the same text again: nothing lost or changed on the way */
    again = ngx_tce_fleet_encode(&g);
    assert_non_null(again);
    assert_string_equal(text, again);

    free(text);
    free(again);
    ngx_tce_fleet_free(&f);
    ngx_tce_fleet_free(&g);
}


static void
test_cache_refused(void **state)
{
    size_t           i;
    char             err[256];
    ngx_tce_fleet_t  f;

    static const char  *bad[] = {
        "",
        "[]",
        "{\"version\":1,\"policies\":{},\"revs\":{},\"x\":1}",
        "{\"version\":-1,\"policies\":{},\"revs\":{}}",
        "{\"version\":1,\"policies\":[],\"revs\":{}}",
        "{\"version\":1,\"policies\":{\"a.b.c/d\":1},\"revs\":{}}",
        "{\"version\":1,\"policies\":{\"a.b.c/d\":{\"weight_bp\":-1}},"
        "\"revs\":{}}",
        "{\"version\":1,\"policies\":{},\"revs\":{\"a.b.c\":\"1\"}}",
        "{\"version\":1,\"policies\":{},\"revs\":{\"A.b.c\":1}}",
        "{\"version\":1,\"version\":2,\"policies\":{},\"revs\":{}}",
        "{\"version\":1,\"policies\":{},\"revs\":{},\"overrides\":[]}",
        "{\"version\":1,\"policies\":{},\"revs\":{},"
        "\"overrides\":{\"a.b.c/i\":{\"drain\":1}}}",
    };

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(ngx_tce_fleet_decode(bad[i], strlen(bad[i]), &f,
                                              err, sizeof(err)), -1);
        assert_true(err[0] != '\0');
        assert_null(f.policies);
        assert_int_equal(f.npolicies, 0);
        assert_null(f.overrides);
    }

    /* a cache written before overrides were shared */
    assert_int_equal(ngx_tce_fleet_decode("{\"version\":3,\"policies\":{},"
                                          "\"revs\":{}}", 37, &f, err,
                                          sizeof(err)), 0);
    assert_int_equal(f.noverrides, 0);
    ngx_tce_fleet_free(&f);
}


/* an override in Redis: "<service>/<id>" -> a small, strict object */
static void
test_override_checks(void **state)
{
    size_t           i;
    char             err[256];
    ngx_tce_fleet_t  f;

    static const char  *bad[][2] = {
        { "a.b.c", "{}" },
        { "A.b.c/i", "{}" },
        { "a.b.c/", "{}" },
        { "a.b.c/i d", "{}" },
        { "a.b.c/i", "[]" },
        { "a.b.c/i", "{\"weight\":1001}" },
        { "a.b.c/i", "{\"weight\":-1}" },
        { "a.b.c/i", "{\"weight\":1.5}" },
        { "a.b.c/i", "{\"drain\":\"yes\"}" },
        { "a.b.c/i", "{\"down\":null}" },
        { "a.b.c/i", "{\"drained\":true}" },
        { "a.b.c/i", "{\"drain\":true,\"drain\":false}" },
        { "a.b.c/i", "not json" },
    };

    (void) state;

    memset(&f, 0, sizeof(f));

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(ngx_tce_fleet_add_override(&f, bad[i][0],
                             strlen(bad[i][0]), bad[i][1], strlen(bad[i][1]),
                             err, sizeof(err)), -1);
        assert_true(err[0] != '\0');
        assert_int_equal(f.noverrides, 0);
    }

    assert_int_equal(ngx_tce_fleet_add_override(&f, "a.b.c/i-1", 9,
                         "{\"down\":true,\"drain\":false,\"weight\":7}", 38,
                         err, sizeof(err)), 0);
    assert_int_equal(f.noverrides, 1);
    assert_string_equal(f.overrides[0].service, "a.b.c");
    assert_string_equal(f.overrides[0].id, "i-1");
    assert_int_equal(f.overrides[0].weight, 7);
    assert_int_equal(f.overrides[0].drain, 0);
    assert_int_equal(f.overrides[0].down, 1);

    ngx_tce_fleet_free(&f);
}


static void
test_if_match(void **state)
{
    uint64_t  rev;

    (void) state;

    assert_int_equal(ngx_tce_fleet_if_match("\"12\"", 4, &rev), 1);
    assert_true(rev == 12);
    assert_int_equal(ngx_tce_fleet_if_match(" W/\"0\" ", 7, &rev), 1);
    assert_true(rev == 0);
    assert_int_equal(ngx_tce_fleet_if_match("*", 1, &rev), 0);
    assert_int_equal(ngx_tce_fleet_if_match("12", 2, &rev), -1);
    assert_int_equal(ngx_tce_fleet_if_match("\"\"", 2, &rev), -1);
    assert_int_equal(ngx_tce_fleet_if_match("\"1\", \"2\"", 8, &rev), -1);
    assert_int_equal(ngx_tce_fleet_if_match("\"x\"", 3, &rev), -1);
}


#define SET_OK                                                               \
    "{\"version\":1,\"services\":{\"a.b.c\":{\"clusters\":{\"default\":"       \
    "{\"instances\":[{\"id\":\"p1\",\"address\":\"127.0.0.1:1\","          \
    "\"override\":{\"drain\":true},"                                       \
    "\"removing\":{\"since\":5,\"deadline\":9}}]}}}}}"


static void
test_set_checks(void **state)
{
    char             err[256], *text, *again;
    ngx_tce_fleet_t  f, g;

    static const char  *bad[] = {
        "{",
        "[]",
        "{\"version\":1,\"services\":{}}",
        "{\"version\":1,\"services\":{\"x.y.z\":{}}}",
        "{\"version\":1,\"services\":{\"a.b.c\":{},\"x.y.z\":{}}}",
        "{\"version\":1,\"services\":{\"a.b.c\":{\"clusters\":"
        "{\"default\":{\"canary\":{\"weight\":10}}}}}}",
        NULL
    };
    const char  **b;

    (void) state;

    memset(&f, 0, sizeof(f));

    for (b = bad; *b; b++) {
        assert_int_equal(ngx_tce_fleet_add_set(&f, "a.b.c", 5, *b,
                                               strlen(*b), err, sizeof(err)),
                         -1);
        assert_non_null(strstr(err, "a.b.c"));
        assert_int_equal(f.nsets, 0);
    }

    assert_int_equal(ngx_tce_fleet_add_set(&f, "bad name", 8, SET_OK,
                                           strlen(SET_OK), err, sizeof(err)),
                     -1);

    /* the override is dropped (the fleet's are in P override) */
    assert_int_equal(ngx_tce_fleet_add_set(&f, "a.b.c", 5, SET_OK,
                                           strlen(SET_OK), err, sizeof(err)),
                     0);
    assert_int_equal(f.nsets, 1);
    assert_int_equal(f.sets[0].st.services[0].ninstances, 1);
    assert_int_equal(f.sets[0].st.services[0].instances[0].op_drain, 0);
    assert_true(f.sets[0].st.services[0].instances[0].rm_deadline == 9);

    /* the stored form reads back the same */
    text = ngx_tce_fleet_set_encode(&f.sets[0].st);
    assert_non_null(text);
    assert_null(strstr(text, "override"));
    assert_int_equal(ngx_tce_fleet_add_set(&f, "a.b.c", 5, text,
                                           strlen(text), err, sizeof(err)),
                     0);
    again = ngx_tce_fleet_set_encode(&f.sets[1].st);
    assert_string_equal(text, again);
    free(text);
    free(again);

    /* and the cache file keeps the sets (one per service) */
    text = ngx_tce_fleet_encode(&f);
    assert_non_null(text);
    assert_int_equal(ngx_tce_fleet_decode(text, strlen(text), &g, err,
                                          sizeof(err)), 0);
    assert_int_equal(g.nsets, 1);
    assert_true(g.sets[0].st.services[0].instances[0].rm_since == 5);
    free(text);

    ngx_tce_fleet_free(&f);
    ngx_tce_fleet_free(&g);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_uint),
        cmocka_unit_test(test_policy_checks),
        cmocka_unit_test(test_rev_checks),
        cmocka_unit_test(test_cache_round_trip),
        cmocka_unit_test(test_cache_refused),
        cmocka_unit_test(test_if_match),
        cmocka_unit_test(test_override_checks),
        cmocka_unit_test(test_set_checks),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
