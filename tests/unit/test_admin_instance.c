/*
 * The admin API's pure parts of instance operations: PATCH, POST and
 * PUT bodies (every accepted form, every refusal class, texts
 * printable), the ?timeout= query, and the state-file edits (add,
 * remove, the desired set of an env: added, updated, kept, draining,
 * a removal cancelled, a conflicting id refused with nothing changed),
 * with the "removing" marker through the state encoder and decoder.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_http_tce_admin_inst_input.h"
#include "ngx_http_tce_admin_inst_edit.h"
#include "ngx_http_tce_admin_edit.h"
#include "ngx_tce_instance.h"


static void assert_printable(const char *s);
static void test_patch(void **state);
static void test_add(void **state);
static void test_set(void **state);
static void test_query(void **state);
static void test_edit_add_remove(void **state);
static void test_edit_desired(void **state);
static void test_removing_round_trip(void **state);


static void
assert_printable(const char *s)
{
    assert_true(strlen(s) > 0);

    for (; *s; s++) {
        assert_true(*s >= 0x20 && *s <= 0x7e);
    }
}


#define PATCH(b)  ngx_http_tce_admin_patch_parse(b, strlen(b), &req, &err)

static void
test_patch(void **state)
{
    size_t                          i;
    ngx_http_tce_admin_err_t        err;
    ngx_http_tce_admin_patch_req_t  req;

    static const struct {
        const char  *body;
        const char  *code;
    } bad[] = {
        { "{}", "missing_field" },
        { "[]", "wrong_type" },
        { "{\"weight\": 0}", "out_of_range" },
        { "{\"weight\": 1001}", "out_of_range" },
        { "{\"weight\": -3}", "out_of_range" },
        { "{\"weight\": 2.0}", "wrong_type" },
        { "{\"weight\": \"2\"}", "wrong_type" },
        { "{\"drain\": 1}", "wrong_type" },
        { "{\"down\": \"true\"}", "wrong_type" },
        { "{\"state\": \"down\"}", "unknown_field" },
        { "{\"weight\": 1, \"weight\": 2}", "invalid_json" },
        { "{\"drain\": tr", "invalid_json" },
        { "{\"\\u0001\\u00ff\": true}", "unknown_field" },
    };

    (void) state;

    assert_int_equal(PATCH("{\"weight\": 7}"), 0);
    assert_int_equal(req.weight, 7);
    assert_int_equal(req.drain, -1);
    assert_int_equal(req.down, -1);

    assert_int_equal(PATCH("{\"weight\": null, \"drain\": true, "
                           "\"down\": false}"), 0);
    assert_int_equal(req.weight, 0);
    assert_int_equal(req.drain, 1);
    assert_int_equal(req.down, 0);

    assert_int_equal(PATCH("{\"down\": null, \"weight\": 1000}"), 0);
    assert_int_equal(req.down, 0);
    assert_int_equal(req.weight, 1000);

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(PATCH(bad[i].body), -1);
        assert_string_equal(err.code, bad[i].code);
        assert_printable(err.text);
    }
}


#define ADD(b)  ngx_http_tce_admin_add_parse(b, strlen(b), &inst, &err)

static void
test_add(void **state)
{
    size_t                    i;
    ngx_tce_instance_t        inst;
    ngx_http_tce_admin_err_t  err;

    static const struct {
        const char  *body;
        const char  *code;
    } bad[] = {
        { "{\"id\": \"a\"}", "missing_field" },
        { "{\"address\": \"127.0.0.1:80\"}", "missing_field" },
        { "{\"id\": \"a b\", \"address\": \"127.0.0.1:80\"}", "bad_id" },
        { "{\"id\": \"\", \"address\": \"127.0.0.1:80\"}", "bad_id" },
        { "{\"id\": \"a\\\"\", \"address\": \"127.0.0.1:80\"}", "bad_id" },
        { "{\"id\": 1, \"address\": \"127.0.0.1:80\"}", "wrong_type" },
        { "{\"id\": \"a\", \"address\": \"example.com:80\"}", "bad_address" },
        { "{\"id\": \"a\", \"address\": \"127.0.0.1:0\"}", "bad_address" },
        { "{\"id\": \"a\", \"address\": \"127.0.0.1:80\", \"weight\": 0}",
          "out_of_range" },
        { "{\"id\": \"a\", \"address\": \"127.0.0.1:80\", \"weight\": null}",
          "wrong_type" },
        { "{\"id\": \"a\", \"address\": \"127.0.0.1:80\", \"env\": \"dev\"}",
          "out_of_range" },
        { "{\"id\": \"a\", \"address\": \"127.0.0.1:80\", "
          "\"version\": \"v 2\"}", "out_of_range" },
        { "{\"id\": \"a\", \"address\": \"127.0.0.1:80\", "
          "\"override\": {}}", "unknown_field" },
        { "[1]", "wrong_type" },
    };

    (void) state;

    assert_int_equal(ADD("{\"id\": \"node1/api-1\", "
                         "\"address\": \"[::1]:8080\", \"weight\": 9, "
                         "\"env\": \"canary\", \"version\": \"v2\"}"), 0);
    assert_string_equal(inst.id, "node1/api-1");
    assert_string_equal(inst.addr, "[::1]:8080");
    assert_int_equal(inst.weight, 9);
    assert_int_equal(inst.env, NGX_TCE_ENV_CANARY);
    assert_string_equal(inst.version, "v2");
    assert_string_equal(inst.cluster, "");
    assert_int_equal(inst.rm_deadline, 0);

    assert_int_equal(ADD("{\"id\": \"a\", \"address\": \"127.0.0.1:80\"}"),
                     0);
    assert_int_equal(inst.weight, 1);
    assert_int_equal(inst.env, NGX_TCE_ENV_PROD);

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ADD(bad[i].body), -1);
        assert_string_equal(err.code, bad[i].code);
        assert_printable(err.text);
    }
}


#define SET(b)  ngx_http_tce_admin_set_parse(b, strlen(b), NGX_TCE_ENV_PROD, \
                                             &list, &n, &err)

static void
test_set(void **state)
{
    size_t                    n, i;
    ngx_tce_instance_t       *list;
    ngx_http_tce_admin_err_t  err;

    static const struct {
        const char  *body;
        const char  *code;
        const char  *text;
    } bad[] = {
        { "{}", "missing_field", "body: needs \"instances\"" },
        { "{\"instances\": {}}", "wrong_type", "instances: must be" },
        { "{\"instances\": [], \"env\": \"prod\"}", "unknown_field",
          "body: unknown field \"env\"" },
        { "{\"instances\": [1]}", "wrong_type", "instances[0].instance" },
        { "{\"instances\": [{\"id\": \"a\", \"address\": \"127.0.0.1:1\"}, "
          "{\"id\": \"b\", \"address\": \"127.0.0.1:2\", \"weight\": 0}]}",
          "out_of_range", "instances[1].weight: must be 1..1000, got 0" },
        { "{\"instances\": [{\"id\": \"a\", \"address\": \"127.0.0.1:1\", "
          "\"env\": \"prod\"}]}", "unknown_field",
          "instances[0].instance: unknown field \"env\"" },
        { "{\"instances\": [{\"id\": \"a\", \"address\": \"127.0.0.1:1\"}, "
          "{\"id\": \"a\", \"address\": \"127.0.0.1:2\"}]}",
          "duplicate_id", "id \"a\" is given more than once" },
    };

    (void) state;

    assert_int_equal(SET("{\"instances\": []}"), 0);
    assert_int_equal(n, 0);
    assert_null(list);

    assert_int_equal(SET("{\"instances\": ["
                         "{\"id\": \"b\", \"address\": \"127.0.0.1:2\"}, "
                         "{\"id\": \"a\", \"address\": \"127.0.0.1:1\", "
                         "\"weight\": 3, \"version\": \"v1\"}]}"), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].id, "b");   /* the request's order */
    assert_string_equal(list[1].version, "v1");
    assert_int_equal(list[1].weight, 3);
    assert_int_equal(list[0].env, NGX_TCE_ENV_PROD);
    free(list);

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(SET(bad[i].body), -1);
        assert_string_equal(err.code, bad[i].code);
        assert_non_null(strstr(err.text, bad[i].text));
        assert_printable(err.text);
        assert_null(list);
    }
}


#define QUERY(q)  ngx_http_tce_admin_query_parse(q, strlen(q), &ms, &err)

static void
test_query(void **state)
{
    uint64_t                  ms;
    ngx_http_tce_admin_err_t  err;

    (void) state;

    ms = 7;
    assert_int_equal(QUERY(""), 0);
    assert_int_equal(ms, 7);
    assert_int_equal(QUERY("timeout=30s"), 1);
    assert_int_equal(ms, 30000);
    assert_int_equal(QUERY("timeout=45"), 1);
    assert_int_equal(ms, 45000);
    assert_int_equal(QUERY("timeout=250ms"), 1);
    assert_int_equal(ms, 250);
    assert_int_equal(QUERY("timeout=2m"), 1);
    assert_int_equal(ms, 120000);
    assert_int_equal(QUERY("timeout=24h"), 1);
    assert_int_equal(ms, 86400000);
    assert_int_equal(QUERY("timeout=0"), 1);
    assert_int_equal(ms, 0);

    assert_int_equal(QUERY("timeout=25h"), -1);
    assert_string_equal(err.code, "out_of_range");
    assert_int_equal(QUERY("timeout=-1"), -1);
    assert_string_equal(err.code, "out_of_range");
    assert_int_equal(QUERY("timeout="), -1);
    assert_int_equal(QUERY("timeout=5x"), -1);
    assert_int_equal(QUERY("timeout=99999999999999999s"), -1);
    assert_printable(err.text);
    assert_int_equal(QUERY("timeout=1s&timeout=2s"), -1);
    assert_string_equal(err.code, "unknown_field");
    assert_int_equal(QUERY("force=1"), -1);
    assert_string_equal(err.code, "unknown_field");
    assert_non_null(strstr(err.text, "\"force=1\""));
    assert_int_equal(QUERY("timeout=1s&x"), -1);
}


static ngx_tce_instance_t
mk(const char *id, const char *cluster, unsigned env, const char *addr,
    unsigned weight)
{
    ngx_tce_instance_t  inst;

    memset(&inst, 0, sizeof(inst));
    strcpy(inst.id, id);
    strcpy(inst.cluster, cluster);
    inst.env = (uint8_t) env;
    inst.weight = (uint16_t) weight;
    assert_int_equal(ngx_tce_addr_parse(addr, strlen(addr), &inst), 0);

    return inst;
}


static void
test_edit_add_remove(void **state)
{
    ngx_tce_state_t           st;
    ngx_tce_instance_t        a;
    ngx_tce_state_service_t  *ss;

    (void) state;

    memset(&st, 0, sizeof(st));

    ss = ngx_http_tce_admin_edit_service_add(&st, "b.b.b", 5);
    assert_non_null(ss);
    assert_non_null(ngx_http_tce_admin_edit_service_add(&st, "a.a.a", 5));
    assert_non_null(ngx_http_tce_admin_edit_service_add(&st, "c.c.c", 5));
    assert_int_equal(st.nservices, 3);
    assert_string_equal(st.services[0].name, "a.a.a");
    assert_string_equal(st.services[2].name, "c.c.c");
    /* again: the same one */
    ss = ngx_http_tce_admin_edit_service_add(&st, "b.b.b", 5);
    assert_ptr_equal(ss, &st.services[1]);

    a = mk("x", "blue", NGX_TCE_ENV_PROD, "127.0.0.1:1", 1);
    assert_int_equal(ngx_http_tce_admin_edit_add(ss, &a), 0);
    a = mk("y", "default", NGX_TCE_ENV_PROD, "127.0.0.1:2", 1);
    assert_int_equal(ngx_http_tce_admin_edit_add(ss, &a), 0);
    assert_int_equal(ss->nclusters, 2);
    assert_string_equal(ss->clusters[0].cluster, "blue");
    assert_non_null(ngx_http_tce_admin_edit_find(ss, "y"));
    assert_null(ngx_http_tce_admin_edit_find(ss, "z"));

    assert_int_equal(ngx_http_tce_admin_edit_remove(ss, "x"), 0);
    assert_int_equal(ngx_http_tce_admin_edit_remove(ss, "x"), -1);
    assert_int_equal(ss->ninstances, 1);
    assert_string_equal(ss->instances[0].id, "y");

    ngx_tce_state_free(&st);
}


static void
test_edit_desired(void **state)
{
    size_t                         nout;
    ngx_tce_state_t                st;
    ngx_tce_instance_t             a, want[3], *i;
    ngx_tce_state_service_t       *ss;
    const ngx_tce_instance_t      *conflict;
    ngx_http_tce_admin_outcome_t  *out;

    (void) state;

    memset(&st, 0, sizeof(st));
    ss = ngx_http_tce_admin_edit_service_add(&st, "a.b.c", 5);

    a = mk("p1", "default", NGX_TCE_ENV_PROD, "127.0.0.1:1", 5);
    a.op_weight = 3;                        /* an override: kept */
    assert_int_equal(ngx_http_tce_admin_edit_add(ss, &a), 0);
    a = mk("p2", "default", NGX_TCE_ENV_PROD, "127.0.0.1:2", 5);
    assert_int_equal(ngx_http_tce_admin_edit_add(ss, &a), 0);
    a = mk("p3", "default", NGX_TCE_ENV_PROD, "127.0.0.1:3", 5);
    assert_int_equal(ngx_http_tce_admin_edit_add(ss, &a), 0);
    a = mk("c1", "default", NGX_TCE_ENV_CANARY, "127.0.0.1:4", 5);
    assert_int_equal(ngx_http_tce_admin_edit_add(ss, &a), 0);

    /* p1 moved, p2 as it is, p4 new; p3 goes */
    want[0] = mk("p1", "default", NGX_TCE_ENV_PROD, "127.0.0.1:9", 5);
    want[1] = mk("p2", "default", NGX_TCE_ENV_PROD, "127.0.0.1:2", 5);
    want[2] = mk("p4", "default", NGX_TCE_ENV_PROD, "127.0.0.1:5", 2);

    assert_int_equal(ngx_http_tce_admin_edit_desired(ss, "default",
                         NGX_TCE_ENV_PROD, want, 3, 1000, 31000, &out, &nout,
                         &conflict), 0);
    assert_int_equal(nout, 4);
    assert_string_equal(out[0].id, "p1");
    assert_int_equal(out[0].what, NGX_HTTP_TCE_ADMIN_UPDATED);
    assert_int_equal(out[1].what, NGX_HTTP_TCE_ADMIN_KEPT);
    assert_int_equal(out[2].what, NGX_HTTP_TCE_ADMIN_ADDED);
    assert_string_equal(out[3].id, "p3");
    assert_int_equal(out[3].what, NGX_HTTP_TCE_ADMIN_DRAINING);
    free(out);

    assert_int_equal(ss->ninstances, 5);
    i = ngx_http_tce_admin_edit_find(ss, "p1");
    assert_string_equal(i->addr, "127.0.0.1:9");
    assert_int_equal(i->op_weight, 3);
    i = ngx_http_tce_admin_edit_find(ss, "p3");
    assert_int_equal(i->rm_since, 1000);
    assert_int_equal(i->rm_deadline, 31000);
    i = ngx_http_tce_admin_edit_find(ss, "p4");
    assert_string_equal(i->cluster, "default");
    assert_int_equal(i->weight, 2);
    i = ngx_http_tce_admin_edit_find(ss, "c1");
    assert_int_equal(i->rm_deadline, 0);    /* the other env: untouched */

    /* the same again later: p3's removal keeps its deadline */
    assert_int_equal(ngx_http_tce_admin_edit_desired(ss, "default",
                         NGX_TCE_ENV_PROD, want, 3, 5000, 9000, &out, &nout,
                         &conflict), 0);
    assert_int_equal(out[0].what, NGX_HTTP_TCE_ADMIN_KEPT);
    assert_int_equal(out[3].what, NGX_HTTP_TCE_ADMIN_DRAINING);
    free(out);
    assert_int_equal(ngx_http_tce_admin_edit_find(ss, "p3")->rm_deadline,
                     31000);

    /* p3 wanted again: its removal is cancelled */
    want[2] = mk("p3", "default", NGX_TCE_ENV_PROD, "127.0.0.1:3", 5);
    assert_int_equal(ngx_http_tce_admin_edit_desired(ss, "default",
                         NGX_TCE_ENV_PROD, want, 3, 6000, 9000, &out, &nout,
                         &conflict), 0);
    assert_int_equal(out[2].what, NGX_HTTP_TCE_ADMIN_UPDATED);
    assert_int_equal(out[3].what, NGX_HTTP_TCE_ADMIN_DRAINING);
    assert_string_equal(out[3].id, "p4");
    free(out);
    assert_int_equal(ngx_http_tce_admin_edit_find(ss, "p3")->rm_deadline, 0);

    /* c1 is canary: wanted in prod, refused, nothing changed */
    want[0] = mk("c1", "default", NGX_TCE_ENV_PROD, "127.0.0.1:4", 5);
    assert_int_equal(ngx_http_tce_admin_edit_desired(ss, "default",
                         NGX_TCE_ENV_PROD, want, 1, 7000, 9000, &out, &nout,
                         &conflict), 1);
    assert_string_equal(conflict->id, "c1");
    assert_null(out);
    assert_int_equal(ngx_http_tce_admin_edit_find(ss, "p4")->rm_since, 6000);

    /* a new cluster, empty set: nothing but the cluster */
    assert_int_equal(ngx_http_tce_admin_edit_desired(ss, "green",
                         NGX_TCE_ENV_CANARY, NULL, 0, 8000, 9000, &out,
                         &nout, &conflict), 0);
    assert_int_equal(nout, 0);
    free(out);
    assert_int_equal(ss->nclusters, 2);

    ngx_tce_state_free(&st);
}


static void
test_removing_round_trip(void **state)
{
    char                     *text, err[256];
    ngx_tce_state_t           st, back;
    ngx_tce_instance_t        a;
    ngx_tce_state_service_t  *ss;

    (void) state;

    memset(&st, 0, sizeof(st));
    ss = ngx_http_tce_admin_edit_service_add(&st, "a.b.c", 5);
    a = mk("p1", "default", NGX_TCE_ENV_PROD, "127.0.0.1:1", 5);
    a.rm_since = 1764570000123ULL;
    a.rm_deadline = 1764570030123ULL;
    assert_int_equal(ngx_http_tce_admin_edit_add(ss, &a), 0);

    text = ngx_tce_state_encode(&st);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"removing\": {\n"));
    assert_non_null(strstr(text, "\"deadline\": 1764570030123"));

    assert_int_equal(ngx_tce_state_decode(text, strlen(text), &back, err,
                                          sizeof(err)), 0);
    assert_int_equal(back.services[0].instances[0].rm_since,
                     1764570000123ULL);
    assert_int_equal(back.services[0].instances[0].rm_deadline,
                     1764570030123ULL);
    /* a removal under way drains the instance */
    assert_int_equal(ngx_tce_instance_state(&back.services[0].instances[0]),
                     NGX_TCE_STATE_DRAINING);
    assert_int_equal(ngx_tce_instance_weight(&back.services[0].instances[0]),
                     0);

    free(text);
    ngx_tce_state_free(&st);
    ngx_tce_state_free(&back);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patch),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_edit_add_remove),
        cmocka_unit_test(test_edit_desired),
        cmocka_unit_test(test_removing_round_trip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
