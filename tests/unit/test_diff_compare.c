/*
 * The API diff's comparison: status, headers, bytes and JSON bodies,
 * and Diffy's noise rule (a difference between the two prods is not
 * counted against the canary).
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_tce_diff_compare.h"


static void answer(ngx_tce_diff_answer_t *a, unsigned status,
    const char *body, const ngx_tce_diff_header_t *h, size_t nh);
static void test_status(void **state);
static void test_bytes(void **state);
static void test_json(void **state);
static void test_headers(void **state);


static void
answer(ngx_tce_diff_answer_t *a, unsigned status, const char *body,
    const ngx_tce_diff_header_t *h, size_t nh)
{
    memset(a, 0, sizeof(ngx_tce_diff_answer_t));
    a->status = status;
    a->body = body;
    a->len = strlen(body);
    a->headers = h;
    a->nheaders = nh;
}


static void
test_status(void **state)
{
    ngx_tce_diff_answer_t   p, p2, c;
    ngx_tce_diff_outcome_t  o;

    (void) state;

    answer(&p, 200, "x", NULL, 0);
    answer(&p2, 200, "x", NULL, 0);
    answer(&c, 200, "x", NULL, 0);
    assert_int_equal(ngx_tce_diff_compare(&p, &p2, &c, NULL, &o),
                     NGX_TCE_DIFF_MATCH);
    assert_int_equal(o.prod_digest, o.canary_digest);

    c.status = 500;
    assert_int_equal(ngx_tce_diff_compare(&p, &p2, &c, NULL, &o),
                     NGX_TCE_DIFF_MISMATCH);
    assert_string_equal(o.what, "status");
    assert_string_equal(o.prod, "200");
    assert_string_equal(o.canary, "500");

    /* the prods disagree on the status: noise */
    p2.status = 503;
    assert_int_equal(ngx_tce_diff_compare(&p, &p2, &c, NULL, &o),
                     NGX_TCE_DIFF_MATCH);
    assert_int_equal(o.noise, 1);
}


static void
test_bytes(void **state)
{
    ngx_tce_diff_answer_t   p, p2, c;
    ngx_tce_diff_outcome_t  o;

    (void) state;

    answer(&p, 200, "hello prod\n", NULL, 0);
    answer(&p2, 200, "hello prod\n", NULL, 0);
    answer(&c, 200, "hello canary\x01\n", NULL, 0);
    assert_int_equal(ngx_tce_diff_compare(&p, &p2, &c, NULL, &o),
                     NGX_TCE_DIFF_MISMATCH);
    assert_string_equal(o.what, "body at byte 6");
    assert_string_equal(o.prod, "prod\\x0A");
    assert_string_equal(o.canary, "canary\\x01\\x0A");
    assert_true(o.prod_digest != o.canary_digest);

    /* a body that differs between the prods is noise as a whole */
    answer(&p2, 200, "hello prod 2\n", NULL, 0);
    assert_int_equal(ngx_tce_diff_compare(&p, &p2, &c, NULL, &o),
                     NGX_TCE_DIFF_MATCH);

    /* FNV-1a 64 of "" and "a" */
    assert_true(ngx_tce_diff_digest("", 0) == 0xcbf29ce484222325ULL);
    assert_true(ngx_tce_diff_digest("a", 1) == 0xaf63dc4c8601ec8cULL);
}


static void
test_json(void **state)
{
    ngx_tce_diff_answer_t   p, p2, c;
    ngx_tce_diff_outcome_t  o;

    (void) state;

    /* key order does not matter */
    answer(&p, 200, "{\"a\": 1, \"b\": [1, 2]}", NULL, 0);
    answer(&p2, 200, "{\"b\": [1, 2], \"a\": 1}", NULL, 0);
    answer(&c, 200, "{\"b\":[1,2],\"a\":1}", NULL, 0);
    assert_int_equal(ngx_tce_diff_compare(&p, &p2, &c, NULL, &o),
                     NGX_TCE_DIFF_MATCH);
    assert_int_equal(o.noise, 0);

    /* a field the prods disagree on is noise, another one is not */
    answer(&p, 200, "{\"ts\": 1, \"u\": {\"n\": \"ann\"}, \"l\": [1, 2]}",
           NULL, 0);
    answer(&p2, 200, "{\"ts\": 2, \"u\": {\"n\": \"ann\"}, \"l\": [1, 2]}",
           NULL, 0);
    answer(&c, 200, "{\"ts\": 3, \"u\": {\"n\": \"ann\"}, \"l\": [1, 2]}",
           NULL, 0);
    assert_int_equal(ngx_tce_diff_compare(&p, &p2, &c, NULL, &o),
                     NGX_TCE_DIFF_MATCH);
    assert_int_equal(o.noise, 1);

    answer(&c, 200, "{\"ts\": 3, \"u\": {\"n\": \"bob\"}, \"l\": [1, 2]}",
           NULL, 0);
    assert_int_equal(ngx_tce_diff_compare(&p, &p2, &c, NULL, &o),
                     NGX_TCE_DIFF_MISMATCH);
    assert_string_equal(o.what, "body $.u.n");
    assert_string_equal(o.prod, "\"ann\"");
    assert_string_equal(o.canary, "\"bob\"");

    /* an array element, a field the canary added */
    answer(&c, 200, "{\"ts\": 3, \"u\": {\"n\": \"ann\"}, \"l\": [1, 3]}",
           NULL, 0);
    assert_int_equal(ngx_tce_diff_compare(&p, &p2, &c, NULL, &o),
                     NGX_TCE_DIFF_MISMATCH);
    assert_string_equal(o.what, "body $.l[1]");

    answer(&c, 200, "{\"ts\": 3, \"u\": {\"n\": \"ann\"}, \"l\": [1, 2],"
           " \"x\": true}", NULL, 0);
    assert_int_equal(ngx_tce_diff_compare(&p, &p2, &c, NULL, &o),
                     NGX_TCE_DIFF_MISMATCH);
    assert_string_equal(o.what, "body $.x");
    assert_string_equal(o.prod, "(absent)");
    assert_string_equal(o.canary, "true");

    /* a canary that is not JSON: compared as bytes */
    answer(&c, 200, "oops", NULL, 0);
    assert_int_equal(ngx_tce_diff_compare(&p, &p2, &c, NULL, &o),
                     NGX_TCE_DIFF_MATCH);
    answer(&p2, 200, p.body, NULL, 0);
    assert_int_equal(ngx_tce_diff_compare(&p, &p2, &c, NULL, &o),
                     NGX_TCE_DIFF_MISMATCH);
    assert_string_equal(o.what, "body at byte 0");
}


static void
test_headers(void **state)
{
    const char                   *names[] = { "x-version" };
    size_t                        lens[] = { 9 };
    ngx_tce_diff_ignore_t         ign = { names, lens, 1 };
    ngx_tce_diff_answer_t         p, p2, c;
    ngx_tce_diff_outcome_t        o;
    static ngx_tce_diff_header_t  hp[] = {
        { "content-type", 12, "text/plain", 10 },
        { "x-request-id", 12, "1", 1 },
        { "date", 4, "Mon", 3 },
    };
    static ngx_tce_diff_header_t  hp2[] = {
        { "content-type", 12, "text/plain", 10 },
        { "x-request-id", 12, "2", 1 },
    };
    static ngx_tce_diff_header_t  hc[] = {
        { "content-type", 12, "text/html", 9 },
        { "x-request-id", 12, "3", 1 },
        { "x-version", 9, "2", 1 },
        { "date", 4, "Tue", 3 },
    };

    (void) state;

    answer(&p, 200, "", hp, 3);
    answer(&p2, 200, "", hp2, 2);
    answer(&c, 200, "", hc, 4);

    /* x-request-id: noise; date: never compared; x-version: ignored */
    assert_int_equal(ngx_tce_diff_compare(&p, &p2, &c, &ign, &o),
                     NGX_TCE_DIFF_MISMATCH);
    assert_string_equal(o.what, "header content-type");
    assert_string_equal(o.prod, "text/plain");
    assert_string_equal(o.canary, "text/html");

    c.nheaders = 1;
    hc[0].value = "text/plain";
    hc[0].value_len = 10;
    assert_int_equal(ngx_tce_diff_compare(&p, &p2, &c, &ign, &o),
                     NGX_TCE_DIFF_MATCH);

    /* without the ignore list, the canary's added header counts */
    c.nheaders = 4;
    assert_int_equal(ngx_tce_diff_compare(&p, &p2, &c, NULL, &o),
                     NGX_TCE_DIFF_MISMATCH);
    assert_string_equal(o.what, "header x-version");
    assert_string_equal(o.prod, "(absent)");
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_headers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
