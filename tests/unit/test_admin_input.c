/*
 * The admin API's pure checks: canary bodies (every accepted form and
 * every refusal class, texts printable), the next policy of a request,
 * token comparison and token-file lines, If-Match, and the state-file
 * edit of a cluster's canary (sorted insertion, removal, round trip
 * through the state encoder and decoder).
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_http_tce_admin_input.h"
#include "ngx_http_tce_admin_edit.h"


static int parse(const char *body, ngx_http_tce_admin_canary_req_t *req,
    ngx_http_tce_admin_err_t *err);
static void assert_printable(const char *s);
static void test_canary_accepts(void **state);
static void test_canary_refuses(void **state);
static void test_canary_apply(void **state);
static void test_token_equal(void **state);
static void test_token_line(void **state);
static void test_if_match(void **state);
static void test_edit_canary(void **state);


static int
parse(const char *body, ngx_http_tce_admin_canary_req_t *req,
    ngx_http_tce_admin_err_t *err)
{
    return ngx_http_tce_admin_canary_parse(body, strlen(body), req, err);
}


static void
assert_printable(const char *s)
{
    assert_true(strlen(s) > 0);

    for (; *s; s++) {
        assert_true(*s >= 0x20 && *s <= 0x7e);
    }
}


static void
test_canary_accepts(void **state)
{
    ngx_http_tce_admin_err_t         err;
    ngx_http_tce_admin_canary_req_t  req;

    (void) state;

    assert_int_equal(parse("{\"weight\": 12.5}", &req, &err), 0);
    assert_int_equal(req.weight, 1250);
    assert_int_equal(req.fallback, -1);
    assert_int_equal(req.rollback, 0);

    assert_int_equal(parse("{\"weight\": 0.07}", &req, &err), 0);
    assert_int_equal(req.weight, 7);

    assert_int_equal(parse("{\"weight\": 33.33}", &req, &err), 0);
    assert_int_equal(req.weight, 3333);

    assert_int_equal(parse("{\"weight\": 100}", &req, &err), 0);
    assert_int_equal(req.weight, 10000);

    assert_int_equal(parse("{\"weight\": \"99.99\"}", &req, &err), 0);
    assert_int_equal(req.weight, 9999);

    assert_int_equal(parse("{\"weight_bp\": 1, \"fallback\": false}", &req,
                           &err), 0);
    assert_int_equal(req.weight, 1);
    assert_int_equal(req.fallback, 0);

    assert_int_equal(parse("{\"fallback\": true}", &req, &err), 0);
    assert_int_equal(req.weight, -1);
    assert_int_equal(req.fallback, 1);

    assert_int_equal(parse("{\"rollback\": true}", &req, &err), 0);
    assert_int_equal(req.rollback, 1);
    assert_int_equal(req.weight, -1);
}


static void
test_canary_refuses(void **state)
{
    size_t                           i;
    ngx_http_tce_admin_err_t         err;
    ngx_http_tce_admin_canary_req_t  req;

    static const struct {
        const char  *body;
        const char  *code;
    } bad[] = {
        { "", "invalid_json" },
        { "{", "invalid_json" },
        { "{\"weight\": 1, \"weight\": 2}", "invalid_json" },
        { "[1]", "wrong_type" },
        { "{}", "missing_field" },
        { "{\"weight\": 12.345}", "out_of_range" },
        { "{\"weight\": 100.01}", "out_of_range" },
        { "{\"weight\": -0.01}", "out_of_range" },
        { "{\"weight\": \"12.345\"}", "out_of_range" },
        { "{\"weight\": null}", "wrong_type" },
        { "{\"weight_bp\": -1}", "out_of_range" },
        { "{\"weight_bp\": 10001}", "out_of_range" },
        { "{\"weight_bp\": 5.0}", "wrong_type" },
        { "{\"weight_bp\": 5, \"weight\": 5}", "conflict" },
        { "{\"rollback\": true, \"weight_bp\": 0}", "conflict" },
        { "{\"rollback\": false}", "out_of_range" },
        { "{\"rollback\": 1}", "wrong_type" },
        { "{\"fallback\": 0}", "wrong_type" },
        { "{\"epoch\": 3}", "unknown_field" },
        { "{\"\\u001b[2J\\n\": 3}", "unknown_field" },
    };

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        assert_int_equal(parse(bad[i].body, &req, &err), -1);
        assert_string_equal(err.code, bad[i].code);
        assert_printable(err.text);
    }

    /* the unknown key is quoted, escaped */
    assert_int_equal(parse("{\"\\u001bX\": 1}", &req, &err), -1);
    assert_non_null(strstr(err.text, "\\x1BX"));
}


static void
test_canary_apply(void **state)
{
    ngx_tce_canary_policy_t          cur, next;
    ngx_http_tce_admin_err_t         err;
    ngx_http_tce_admin_canary_req_t  req;

    (void) state;

    cur.weight = 2500;
    cur.epoch = 7;
    cur.fallback = 1;

    assert_int_equal(parse("{\"weight\": 5}", &req, &err), 0);
    ngx_http_tce_admin_canary_apply(&req, &cur, &next);
    assert_int_equal(next.weight, 500);
    assert_int_equal(next.epoch, 7);
    assert_int_equal(next.fallback, 1);

    assert_int_equal(parse("{\"fallback\": false}", &req, &err), 0);
    ngx_http_tce_admin_canary_apply(&req, &cur, &next);
    assert_int_equal(next.weight, 2500);
    assert_int_equal(next.fallback, 0);

    assert_int_equal(parse("{\"rollback\": true}", &req, &err), 0);
    ngx_http_tce_admin_canary_apply(&req, &cur, &next);
    assert_int_equal(next.weight, 0);
    assert_int_equal(next.epoch, 8);
}


static void
test_token_equal(void **state)
{
    (void) state;

    assert_true(ngx_http_tce_admin_token_equal("abc", 3, "abc", 3));
    assert_false(ngx_http_tce_admin_token_equal("abd", 3, "abc", 3));
    assert_false(ngx_http_tce_admin_token_equal("ab", 2, "abc", 3));
    assert_false(ngx_http_tce_admin_token_equal("abcd", 4, "abc", 3));
    assert_false(ngx_http_tce_admin_token_equal("", 0, "abc", 3));
    /* a NUL inside what was given does not end the comparison */
    assert_false(ngx_http_tce_admin_token_equal("ab\0", 3, "ab", 2));
}


static void
test_token_line(void **state)
{
    size_t                    t, tl, n, nl;
    const char               *line;
    ngx_http_tce_admin_err_t  err;

    (void) state;

    line = "  0123456789abcdefXYZ   deployer@ci \r";
    assert_int_equal(ngx_http_tce_admin_token_line(line, strlen(line), &t,
                                                   &tl, &n, &nl, &err), 1);
    assert_int_equal(tl, 19);
    assert_memory_equal(line + t, "0123456789abcdefXYZ", 19);
    assert_int_equal(nl, 11);
    assert_memory_equal(line + n, "deployer@ci", 11);

    line = "0123456789abcdef";
    assert_int_equal(ngx_http_tce_admin_token_line(line, strlen(line), &t,
                                                   &tl, &n, &nl, &err), 1);
    assert_int_equal(nl, 0);

    line = "   # a comment";
    assert_int_equal(ngx_http_tce_admin_token_line(line, strlen(line), &t,
                                                   &tl, &n, &nl, &err), 0);
    assert_int_equal(ngx_http_tce_admin_token_line("", 0, &t, &tl, &n, &nl,
                                                   &err), 0);

    line = "short";
    assert_int_equal(ngx_http_tce_admin_token_line(line, strlen(line), &t,
                                                   &tl, &n, &nl, &err), -1);
    assert_printable(err.text);

    line = "0123456789abcdef name extra";
    assert_int_equal(ngx_http_tce_admin_token_line(line, strlen(line), &t,
                                                   &tl, &n, &nl, &err), -1);

    line = "0123456789abcdef na\x01me";
    assert_int_equal(ngx_http_tce_admin_token_line(line, strlen(line), &t,
                                                   &tl, &n, &nl, &err), -1);
    assert_printable(err.text);

    line = "0123456789abc\x80" "def";
    assert_int_equal(ngx_http_tce_admin_token_line(line, strlen(line), &t,
                                                   &tl, &n, &nl, &err), -1);
}


static void
test_if_match(void **state)
{
    (void) state;

    assert_true(ngx_http_tce_admin_if_match("\"12\"", 4, 12));
    assert_false(ngx_http_tce_admin_if_match("\"12\"", 4, 13));
    assert_false(ngx_http_tce_admin_if_match("12", 2, 12));
    assert_true(ngx_http_tce_admin_if_match("*", 1, 99));
    assert_true(ngx_http_tce_admin_if_match("\"3\", \"12\"", 9, 12));
    assert_false(ngx_http_tce_admin_if_match("\"123\"", 5, 12));
    assert_false(ngx_http_tce_admin_if_match("", 0, 12));
}


static void
test_edit_canary(void **state)
{
    char                      *text, err[256];
    ngx_tce_state_t            st, back;
    ngx_tce_canary_policy_t    p;
    ngx_tce_state_service_t   *ss;

    static const char  doc[] =
        "{\"version\": 1, \"services\": {\"a.b.c\": {\"clusters\": {"
        "\"b\": {\"instances\": [{\"id\": \"i1\", "
        "\"address\": \"127.0.0.1:1\"}]},"
        "\"d\": {\"canary\": {\"weight_bp\": 10}}}}}}";

    (void) state;

    assert_int_equal(ngx_tce_state_decode(doc, strlen(doc), &st, err,
                                          sizeof(err)), 0);

    assert_null(ngx_http_tce_admin_edit_service(&st, "a.b.d", 5));
    ss = ngx_http_tce_admin_edit_service(&st, "a.b.c", 5);
    assert_non_null(ss);

    p.weight = 1234;
    p.epoch = 5;
    p.fallback = 0;

    /* new clusters land in order: before, between, after */
    assert_int_equal(ngx_http_tce_admin_edit_canary(ss, "a", 1, &p), 0);
    assert_int_equal(ngx_http_tce_admin_edit_canary(ss, "c", 1, &p), 0);
    assert_int_equal(ngx_http_tce_admin_edit_canary(ss, "bb", 2, &p), 0);
    assert_int_equal(ngx_http_tce_admin_edit_canary(ss, "e", 1, &p), 0);
    assert_int_equal(ss->nclusters, 6);
    assert_string_equal(ss->clusters[0].cluster, "a");
    assert_string_equal(ss->clusters[1].cluster, "b");
    assert_string_equal(ss->clusters[2].cluster, "bb");
    assert_string_equal(ss->clusters[3].cluster, "c");
    assert_string_equal(ss->clusters[4].cluster, "d");
    assert_string_equal(ss->clusters[5].cluster, "e");

    /* an existing one is replaced, then removed; a removal of none is
     * no change */
    assert_int_equal(ngx_http_tce_admin_edit_canary(ss, "d", 1, &p), 0);
    assert_int_equal(ngx_http_tce_admin_edit_canary(ss, "b", 1, NULL), 0);
    assert_int_equal(ngx_http_tce_admin_edit_canary(ss, "zz", 2, NULL), 0);
    assert_int_equal(ss->nclusters, 6);
    assert_null(ss->clusters[1].canary);

    text = ngx_tce_state_encode(&st);
    assert_non_null(text);
    assert_int_equal(ngx_tce_state_decode(text, strlen(text), &back, err,
                                          sizeof(err)), 0);
    assert_int_equal(back.services[0].nclusters, 6);
    assert_string_equal(back.services[0].clusters[4].canary,
                        "{\"epoch\":5,\"fallback\":false,\"weight_bp\":1234}");
    assert_int_equal(back.services[0].ninstances, 1);

    free(text);
    ngx_tce_state_free(&back);
    ngx_tce_state_free(&st);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canary_accepts),
        cmocka_unit_test(test_canary_refuses),
        cmocka_unit_test(test_canary_apply),
        cmocka_unit_test(test_token_equal),
        cmocka_unit_test(test_token_line),
        cmocka_unit_test(test_if_match),
        cmocka_unit_test(test_edit_canary),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
