/*
 * Unit tests of ngx_tce_consul_parse: health and catalog bodies
 * (synthetic payloads in tests/unit/fixtures/consul/, see its README),
 * hostile bodies, the blocking-query index rules, timeouts, backoff
 * and URLs.  test_consul_health.c covers what real agents send.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_tce_instance.h"
#include "ngx_tce_consul_parse.h"


#define FIXTURES  "tests/unit/fixtures/consul/"
#define NSKIPS    32

#include "unit_fixture.h"


typedef struct {
    size_t                    n;
    size_t                    pos[NSKIPS];
    char                      id[NSKIPS][NGX_TCE_ID_LEN];
    char                      reason[NSKIPS][NGX_TCE_CONSUL_ERR_LEN];
} skips_t;


static void on_skip(void *data, size_t n, const char *id,
    const char *reason);
static const ngx_tce_instance_t *find(const ngx_tce_consul_health_t *res,
    const char *id);
static void expect_error(const char *body, size_t len);
static char *repeat(const char *head, const char *unit, size_t n,
    const char *tail);
static void test_health_passing(void **state);
static void test_health_mixed(void **state);
static void test_health_empty(void **state);
static void test_health_hostile(void **state);
static void test_health_wrong_types(void **state);
static void test_health_huge(void **state);
static void test_services(void **state);
static void test_services_hostile(void **state);
static void test_next_index(void **state);
static void test_timeouts(void **state);
static void test_backoff(void **state);
static void test_urls(void **state);
static void test_escape(void **state);
static void test_texts_printable(void **state);
static void assert_printable(const char *s);


static void
on_skip(void *data, size_t n, const char *id, const char *reason)
{
    skips_t  *s;

    s = data;
    assert_true(s->n < NSKIPS);

    s->pos[s->n] = n;
    snprintf(s->id[s->n], NGX_TCE_ID_LEN, "%s", id);
    snprintf(s->reason[s->n], NGX_TCE_CONSUL_ERR_LEN, "%s", reason);
    s->n++;
}


static const ngx_tce_instance_t *
find(const ngx_tce_consul_health_t *res, const char *id)
{
    size_t  i;

    for (i = 0; i < res->ninstances; i++) {
        if (strcmp(res->instances[i].id, id) == 0) {
            return &res->instances[i];
        }
    }

    return NULL;
}


/* a body that must be refused whole, leaving the result untouched */

static void
expect_error(const char *body, size_t len)
{
    char                     err[NGX_TCE_CONSUL_ERR_LEN];
    ngx_tce_consul_health_t  res;

    memset(&res, 0xa5, sizeof(res));
    err[0] = '\0';

    assert_int_equal(ngx_tce_consul_parse_health(body, len, NULL, NULL,
                                                 &res, err, sizeof(err)),
                     -1);
    assert_true(err[0] != '\0');
    assert_int_equal(res.ninstances, (size_t) 0xa5a5a5a5a5a5a5a5ULL);
}


static char *
repeat(const char *head, const char *unit, size_t n, const char *tail)
{
    char    *buf, *p;
    size_t   hl, ul, tl, i;

    hl = strlen(head);
    ul = strlen(unit);
    tl = strlen(tail);

    buf = malloc(hl + ul * n + tl + 1);
    assert_non_null(buf);

    p = buf;
    memcpy(p, head, hl);
    p += hl;

    for (i = 0; i < n; i++) {
        memcpy(p, unit, ul);
        p += ul;
    }

    memcpy(p, tail, tl + 1);

    return buf;
}


static void
test_health_passing(void **state)
{
    char                       *body, err[NGX_TCE_CONSUL_ERR_LEN];
    size_t                      len;
    skips_t                     skips;
    const ngx_tce_instance_t   *i;
    ngx_tce_consul_health_t     res;

    (void) state;

    body = load("health_passing.json", &len);
    memset(&skips, 0, sizeof(skips));

    assert_int_equal(ngx_tce_consul_parse_health(body, len, on_skip,
                                                 &skips, &res, err,
                                                 sizeof(err)),
                     0);
    assert_int_equal(res.ninstances, 3);
    assert_int_equal(res.nskipped, 0);
    assert_int_equal(skips.n, 0);
    assert_string_equal(res.reason, "");

    i = find(&res, "node1/shop.cart.api-10.0.1.5-8080");
    assert_non_null(i);
    assert_string_equal(i->addr, "10.0.1.5:8080");
    assert_int_equal(i->sockaddr.sa.sa_family, AF_INET);
    assert_int_equal(ntohs(i->sockaddr.sin.sin_port), 8080);
    assert_int_equal(i->socklen, sizeof(struct sockaddr_in));
    assert_int_equal(i->weight, 10);
    assert_string_equal(i->cluster, "east");
    assert_int_equal(i->env, NGX_TCE_ENV_PROD);
    assert_string_equal(i->version, "2.3.1");
    assert_int_equal(i->state, NGX_TCE_STATE_UP);
    assert_int_equal(i->op_weight, 0);
    assert_int_equal(i->op_drain, 0);
    assert_int_equal(i->op_down, 0);

    i = find(&res, "node1/shop.cart.api-canary-1");
    assert_non_null(i);
    assert_string_equal(i->addr, "[fd00::1:6]:8080");
    assert_int_equal(i->sockaddr.sa.sa_family, AF_INET6);
    assert_int_equal(i->weight, 5);
    assert_int_equal(i->env, NGX_TCE_ENV_CANARY);
    assert_string_equal(i->version, "2.4.0-rc1");

    /* registered through the catalog without an address: the node's */
    i = find(&res, "worker-7/shop.cart.api-legacy");
    assert_non_null(i);
    assert_string_equal(i->addr, "10.0.2.7:9000");
    assert_int_equal(i->weight, 1);
    assert_string_equal(i->cluster, "default");
    assert_int_equal(i->env, NGX_TCE_ENV_PROD);
    assert_string_equal(i->version, "");

    ngx_tce_consul_health_free(&res);
    assert_null(res.instances);
    assert_int_equal(res.ninstances, 0);

    free(body);
}


static void
test_health_mixed(void **state)
{
    char                       *body, err[NGX_TCE_CONSUL_ERR_LEN];
    size_t                      len, k;
    skips_t                     skips;
    const ngx_tce_instance_t   *i;
    ngx_tce_consul_health_t     res;

    static const size_t  skipped[] = { 5, 6, 7, 8, 10, 11, 12, 13 };

    (void) state;

    body = load("health_mixed.json", &len);
    memset(&skips, 0, sizeof(skips));

    assert_int_equal(ngx_tce_consul_parse_health(body, len, on_skip,
                                                 &skips, &res, err,
                                                 sizeof(err)),
                     0);

    /* weight 0 is excluded (not routed, not an error); 1001 is fine */
    assert_int_equal(res.ninstances, 7);
    assert_int_equal(res.nskipped, 8);
    assert_int_equal(res.nexcluded, 1);
    assert_int_equal(skips.n, 8);

    for (k = 0; k < 8; k++) {
        assert_int_equal(skips.pos[k], skipped[k]);
    }

    assert_string_equal(res.reason, "entry 5: Meta.env \"staging\" is not "
                        "\"prod\" or \"canary\"");
    assert_string_equal(skips.id[0], "node1/bad-5-env");
    assert_string_equal(skips.reason[1], "Service.Port is not an integer");
    assert_non_null(strstr(skips.reason[2], "web-1.internal"));
    assert_string_equal(skips.id[3], "node1/good-0");
    assert_string_equal(skips.reason[3],
                        "duplicate instance id (Node.Node and Service.ID)");
    assert_string_equal(skips.id[4], "");
    assert_string_equal(skips.reason[4], "Service is not an object");
    assert_string_equal(skips.reason[5], "invalid Meta.cluster");
    assert_non_null(strstr(skips.reason[6], "70000"));
    assert_string_equal(skips.reason[7], "invalid Meta.version");

    /* the good ones, in order, the first good-0 kept */
    assert_string_equal(res.instances[0].id, "node1/good-0");
    assert_string_equal(res.instances[1].id, "node1/good-1-node-addr");
    assert_string_equal(res.instances[1].addr, "10.0.2.7:8080");

    /* 1001 is the largest: every weight scaled by 1000/1001 */
    assert_int_equal(res.weight_max, 1001);
    assert_int_equal(res.instances[0].weight, 10);
    assert_int_equal(find(&res, "node1/bad-3-weight-1001")->weight, 1000);

    i = find(&res, "node1/good-4-weight-1000");
    assert_non_null(i);
    assert_int_equal(i->weight, 999);

    i = find(&res, "node1/good-9-defaults");
    assert_non_null(i);
    assert_int_equal(i->weight, 1);
    assert_string_equal(i->cluster, "default");
    assert_int_equal(i->env, NGX_TCE_ENV_PROD);
    assert_string_equal(i->version, "");

    i = find(&res, "node1/good-14-nulls");
    assert_non_null(i);
    assert_int_equal(i->weight, 1);
    assert_string_equal(i->cluster, "default");

    i = find(&res, "node1/good-15-empty-env");
    assert_non_null(i);
    assert_int_equal(i->env, NGX_TCE_ENV_PROD);
    assert_string_equal(i->cluster, "default");

    ngx_tce_consul_health_free(&res);
    free(body);
}


static void
test_health_empty(void **state)
{
    char                     err[NGX_TCE_CONSUL_ERR_LEN];
    ngx_tce_consul_health_t  res;

    (void) state;

    assert_int_equal(ngx_tce_consul_parse_health("[]", 2, NULL, NULL,
                                                 &res, err, sizeof(err)),
                     0);
    assert_null(res.instances);
    assert_int_equal(res.ninstances, 0);
    assert_int_equal(res.nskipped, 0);
    ngx_tce_consul_health_free(&res);

    /* every entry bad: success, nothing to apply, all reported */
    assert_int_equal(ngx_tce_consul_parse_health("[1, \"x\", null, {}]",
                                                 18, NULL, NULL, &res, err,
                                                 sizeof(err)),
                     0);
    assert_null(res.instances);
    assert_int_equal(res.ninstances, 0);
    assert_int_equal(res.nskipped, 4);
    assert_string_equal(res.reason, "entry 0: entry is not an object");
    ngx_tce_consul_health_free(&res);
}


static void
test_health_hostile(void **state)
{
    char    *body, *deep;
    size_t   len;

    (void) state;

    body = load("health_passing.json", &len);

    /* truncated anywhere: refused whole */
    expect_error(body, len / 2);
    expect_error(body, len - 3);
    expect_error(body, 1);
    expect_error(body, 0);

    /* trailing garbage, raw NUL bytes (an escaped one is text) */
    expect_error("[] x", 4);
    expect_error("[]\0[]", 5);
    expect_error("[{}, ]", 6);
    expect_error("[, {}]", 6);
    expect_error("[{}} ]", 6);
    expect_error("[{\"a\": \"\\\"]", 11);

    /* not an array */
    expect_error("{}", 2);
    expect_error("null", 4);
    expect_error("\"str\"", 5);
    expect_error("42", 2);
    expect_error("not json", 8);
    expect_error(NULL, 0);


    /* nesting far deeper than any real body */
    deep = repeat("", "[", 100000, "");
    expect_error(deep, strlen(deep));
    free(deep);

    deep = repeat("[{\"Service\": ", "{\"a\": ", 5000, "");
    expect_error(deep, strlen(deep));
    free(deep);

    free(body);
}


/* each entry on a node of its own: only the fields under test differ */
#define N  "{\"Node\": {\"Node\": \"n\"}, "

static void
test_health_wrong_types(void **state)
{
    char                     err[NGX_TCE_CONSUL_ERR_LEN];
    size_t                   k;
    skips_t                  skips;
    ngx_tce_consul_health_t  res;

    static const char  *entries[] = {
        N "\"Service\": {\"ID\": 7, \"Port\": 80, "
            "\"Address\": \"1.2.3.4\"}}",
        N "\"Service\": {\"ID\": \"\", \"Port\": 80, "
            "\"Address\": \"1.2.3.4\"}}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": 80.5, "
            "\"Address\": \"1.2.3.4\"}}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": 0, "
            "\"Address\": \"1.2.3.4\"}}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": -1, "
            "\"Address\": \"1.2.3.4\"}}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": 80, \"Address\": 5}}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": 80}}",
        "{\"Service\": {\"ID\": \"a\", \"Port\": 80, \"Address\": \"\"}, "
            "\"Node\": {\"Node\": \"n\", \"Address\": []}}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": 80, "
            "\"Address\": \"1.2.3.4\", \"Weights\": \"10\"}}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": 80, "
            "\"Address\": \"1.2.3.4\", \"Weights\": {\"Passing\": \"3\"}}}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": 80, "
            "\"Address\": \"1.2.3.4\", \"Weights\": {\"Passing\": -5}}}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": 80, "
            "\"Address\": \"1.2.3.4\", \"Meta\": [\"env\", \"canary\"]}}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": 80, "
            "\"Address\": \"1.2.3.4\", \"Meta\": {\"cluster\": 1}}}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": 80, "
            "\"Address\": \"1.2.3.4\", \"Meta\": {\"env\": true}}}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": 80, "
            "\"Address\": \"1.2.3.4\", \"Meta\": {\"env\": \"PROD\"}}}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": 80, "
            "\"Address\": \"1.2.3.4\", \"Meta\": {\"version\": {}}}}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": 80, "
            "\"Address\": \"::ffff:1.2.3.4:80\"}}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": 80, "
            "\"Address\": \"1.2.3.4 \"}}",
        "{\"Service\": [], \"Node\": {\"Address\": \"1.2.3.4\"}}",
        "[]",
        /* the fields real agents send, mistyped */
        "{\"Service\": {\"ID\": \"a\", \"Port\": 80, "
            "\"Address\": \"1.2.3.4\"}}",
        "{\"Node\": {\"Node\": 5}, \"Service\": {\"ID\": \"a\", "
            "\"Port\": 80, \"Address\": \"1.2.3.4\"}}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": 80, "
            "\"Address\": \"1.2.3.4\"}, \"Checks\": {}}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": 80, "
            "\"Address\": \"1.2.3.4\"}, \"Checks\": [1]}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": 80, "
            "\"Address\": \"1.2.3.4\"}, \"Checks\": [{\"Status\": "
            "\"Passing\"}]}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": 80, "
            "\"Address\": \"1.2.3.4\"}, \"Checks\": [{}]}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": 80, "
            "\"Address\": \"1.2.3.4\", \"Weights\": {\"Warning\": 1.5}}, "
            "\"Checks\": [{\"Status\": \"warning\"}]}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": 80, "
            "\"Address\": \"1.2.3.4\", \"Namespace\": 5}}",
        N "\"Service\": {\"ID\": \"a\", \"Port\": 80, "
            "\"Address\": \"1.2.3.4\", \"Meta\": {\"version\": \"1\", "
            "\"version\": \"2\"}}}",
    };

    char    body[8192];
    size_t  pos;

    (void) state;

    pos = 0;
    body[pos++] = '[';

    for (k = 0; k < sizeof(entries) / sizeof(entries[0]); k++) {
        pos += snprintf(body + pos, sizeof(body) - pos, "%s%s",
                        k ? "," : "", entries[k]);
        assert_true(pos < sizeof(body) - 2);
    }

    body[pos++] = ']';
    body[pos] = '\0';

    memset(&skips, 0, sizeof(skips));

    assert_int_equal(ngx_tce_consul_parse_health(body, pos, on_skip,
                                                 &skips, &res, err,
                                                 sizeof(err)),
                     0);
    assert_int_equal(res.ninstances, 0);
    assert_int_equal(res.nskipped, sizeof(entries) / sizeof(entries[0]));
    assert_int_equal(skips.n, sizeof(entries) / sizeof(entries[0]));

    for (k = 0; k < skips.n; k++) {
        assert_int_equal(skips.pos[k], k);
        assert_true(skips.reason[k][0] != '\0');
    }

    assert_string_equal(skips.reason[0], "invalid Service.ID");
    assert_string_equal(skips.reason[1], "invalid Service.ID");
    assert_string_equal(skips.reason[7],
                        "no Service.Address and no Node.Address");
    assert_string_equal(skips.reason[20], "no Node.Node");
    assert_string_equal(skips.reason[21], "no Node.Node");
    assert_string_equal(skips.reason[22], "Checks is not an array");
    assert_string_equal(skips.reason[23], "Checks[0] is not an object");
    assert_non_null(strstr(skips.reason[24], "\"Passing\""));
    assert_non_null(strstr(skips.reason[25], "\"\" is not passing"));
    assert_string_equal(skips.reason[26],
                        "Weights.Warning is not an integer >= 0");
    assert_string_equal(skips.reason[27], "Service.Namespace is not a "
                        "string");
    assert_non_null(strstr(skips.reason[28], "duplicate"));

    ngx_tce_consul_health_free(&res);
}


static void
test_health_huge(void **state)
{
    char                     err[NGX_TCE_CONSUL_ERR_LEN], *body, *big;
    ngx_tce_consul_health_t  res;

    (void) state;

    /* more entries than allowed: refused whole */
    body = repeat("[{}", ",{}", NGX_TCE_CONSUL_MAX_ENTRIES, "]");
    expect_error(body, strlen(body));
    free(body);

    /* exactly the limit: accepted, every entry skipped */
    body = repeat("[{}", ",{}", NGX_TCE_CONSUL_MAX_ENTRIES - 1, "]");
    assert_int_equal(ngx_tce_consul_parse_health(body, strlen(body), NULL,
                                                 NULL, &res, err,
                                                 sizeof(err)),
                     0);
    assert_int_equal(res.nskipped, NGX_TCE_CONSUL_MAX_ENTRIES);
    ngx_tce_consul_health_free(&res);
    free(body);

    /* a megabyte id, a megabyte version: entries over the size limit,
     * skipped unparsed; the next kept */
    big = repeat("", "v", 1 << 20, "");
    body = malloc((2 << 20) + 512);
    assert_non_null(body);
    snprintf(body, (2 << 20) + 512,
             "[" N "\"Service\": {\"ID\": \"%s\", \"Port\": 1, "
             "\"Address\": \"1.1.1.1\"}},"
             N "\"Service\": {\"ID\": \"b\", \"Port\": 1, "
             "\"Address\": \"1.1.1.1\", \"Meta\": {\"version\": \"%s\"}}},"
             N "\"Service\": {\"ID\": \"c\", \"Port\": 1, "
             "\"Address\": \"1.1.1.1\"}}]", big, big);

    assert_int_equal(ngx_tce_consul_parse_health(body, strlen(body), NULL,
                                                 NULL, &res, err,
                                                 sizeof(err)),
                     0);
    assert_int_equal(res.ninstances, 1);
    assert_int_equal(res.nskipped, 2);
    assert_string_equal(res.instances[0].id, "n/c");
    assert_non_null(strstr(res.reason, "more than 1048576"));
    ngx_tce_consul_health_free(&res);

    free(body);
    free(big);
}


static void
test_services(void **state)
{
    char                    *body, err[NGX_TCE_CONSUL_ERR_LEN];
    size_t                   len;
    ngx_tce_consul_names_t   res;

    (void) state;

    body = load("catalog_services.json", &len);

    assert_int_equal(ngx_tce_consul_parse_services(body, len, "tce", &res,
                                                   err, sizeof(err)),
                     0);
    assert_int_equal(res.nnames, 2);
    assert_string_equal(res.names[0], "shop.cart.worker");
    assert_string_equal(res.names[1], "shop.order.api");
    assert_int_equal(res.nskipped, 1);     /* "redis" is not a P.S.M */
    ngx_tce_consul_names_free(&res);
    assert_null(res.names);

    assert_int_equal(ngx_tce_consul_parse_services(body, len, NULL, &res,
                                                   err, sizeof(err)),
                     0);
    assert_int_equal(res.nnames, 4);
    assert_string_equal(res.names[0], "billing.pay.api");
    assert_string_equal(res.names[1], "shop.cart.api");
    assert_string_equal(res.names[2], "shop.cart.worker");
    assert_string_equal(res.names[3], "shop.order.api");
    assert_int_equal(res.nskipped, 2);     /* consul, redis */
    ngx_tce_consul_names_free(&res);

    assert_int_equal(ngx_tce_consul_parse_services(body, len, "nope", &res,
                                                   err, sizeof(err)),
                     0);
    assert_int_equal(res.nnames, 0);
    assert_null(res.names);
    ngx_tce_consul_names_free(&res);

    assert_int_equal(ngx_tce_consul_parse_services("{}", 2, "tce", &res,
                                                   err, sizeof(err)),
                     0);
    assert_int_equal(res.nnames, 0);
    ngx_tce_consul_names_free(&res);

    /*
     * Consul's tag filter ignores case, so the catalog's must too (the
     * health query then keeps exactly these instances); a null list
     * is no tag; a NUL inside a tag is not a shorter tag
     */
    assert_int_equal(ngx_tce_consul_parse_services(
                         "{\"a.b.c\": [\"TCE\"], \"d.e.f\": null,"
                         " \"g.h.i\": [\"tce\\u0000x\", \"tc\"],"
                         " \"j.k.l\": [\"x\", \"Tce\"]}", 87, "tce",
                         &res, err, sizeof(err)),
                     0);
    assert_int_equal(res.nnames, 2);
    assert_string_equal(res.names[0], "a.b.c");
    assert_string_equal(res.names[1], "j.k.l");
    ngx_tce_consul_names_free(&res);

    free(body);
}


static void
test_services_hostile(void **state)
{
    size_t                   k;
    char                     err[NGX_TCE_CONSUL_ERR_LEN];
    ngx_tce_consul_names_t   res;

    static const char  *bad[] = {
        "[]",
        "null",
        "{\"a.b.c\": \"tce\"}",
        "{\"a.b.c\": [\"tce\", 1]}",
        "{\"a.b.c\": [\"tce\"], \"d.e.f\": {}}",
        "{\"a.b.c\": [\"tce\"]",
        "{\"a.b.c\": [\"tce\"], \"a.b.c\": []}",
        "",
    };

    (void) state;

    for (k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        memset(&res, 0x5a, sizeof(res));
        err[0] = '\0';

        assert_int_equal(ngx_tce_consul_parse_services(bad[k],
                                                       strlen(bad[k]),
                                                       "tce", &res, err,
                                                       sizeof(err)),
                         -1);
        assert_true(err[0] != '\0');
        assert_int_equal(res.nnames, (size_t) 0x5a5a5a5a5a5a5a5aULL);
    }
}


static void
test_next_index(void **state)
{
    uint64_t  next;

    (void) state;

    /* first answer */
    assert_int_equal(ngx_tce_consul_next_index(0, "42", 2, &next), 0);
    assert_int_equal(next, 42);

    /* nothing changed, moved on */
    assert_int_equal(ngx_tce_consul_next_index(42, "42", 2, &next), 0);
    assert_int_equal(next, 42);
    assert_int_equal(ngx_tce_consul_next_index(42, "1000", 4, &next), 0);
    assert_int_equal(next, 1000);

    /* went backwards: start again with a non-blocking query */
    assert_int_equal(ngx_tce_consul_next_index(1000, "7", 1, &next), 0);
    assert_int_equal(next, 0);
    assert_int_equal(ngx_tce_consul_next_index(0, "7", 1, &next), 0);
    assert_int_equal(next, 7);

    /* 0 never goes out after an answer: it would spin */
    assert_int_equal(ngx_tce_consul_next_index(0, "0", 1, &next), 0);
    assert_int_equal(next, 1);
    assert_int_equal(ngx_tce_consul_next_index(50, "0", 1, &next), 0);
    assert_int_equal(next, 1);

    /* header value with blanks and line end */
    assert_int_equal(ngx_tce_consul_next_index(0, " 12\r\n", 5, &next), 0);
    assert_int_equal(next, 12);

    assert_int_equal(ngx_tce_consul_next_index(0, "18446744073709551615",
                                               20, &next),
                     0);
    assert_int_equal(next, UINT64_MAX);

    /* unparsable: error, next unchanged */
    next = 99;
    assert_int_equal(ngx_tce_consul_next_index(0, NULL, 0, &next), -1);
    assert_int_equal(ngx_tce_consul_next_index(0, "", 0, &next), -1);
    assert_int_equal(ngx_tce_consul_next_index(0, "  ", 2, &next), -1);
    assert_int_equal(ngx_tce_consul_next_index(0, "12a", 3, &next), -1);
    assert_int_equal(ngx_tce_consul_next_index(0, "-1", 2, &next), -1);
    assert_int_equal(ngx_tce_consul_next_index(0, "+1", 2, &next), -1);
    assert_int_equal(ngx_tce_consul_next_index(0, "1 2", 3, &next), -1);
    assert_int_equal(ngx_tce_consul_next_index(0, "0x10", 4, &next), -1);
    assert_int_equal(ngx_tce_consul_next_index(0, "18446744073709551616",
                                               20, &next),
                     -1);
    assert_int_equal(next, 99);
}


static void
test_timeouts(void **state)
{
    uint64_t  w;

    (void) state;

    assert_int_equal(ngx_tce_consul_wait(0), 300000);
    assert_int_equal(ngx_tce_consul_wait(1), 1);
    assert_int_equal(ngx_tce_consul_wait(600000), 600000);
    assert_int_equal(ngx_tce_consul_wait(600001), 600000);

    assert_int_equal(ngx_tce_consul_read_timeout(60000),
                     63750 + NGX_TCE_CONSUL_TIMEOUT_MARGIN);
    assert_int_equal(ngx_tce_consul_read_timeout(0),
                     318750 + NGX_TCE_CONSUL_TIMEOUT_MARGIN);
    assert_int_equal(ngx_tce_consul_read_timeout(UINT64_MAX),
                     637500 + NGX_TCE_CONSUL_TIMEOUT_MARGIN);

    /* always beyond the longest the server may hold the query */
    for (w = 1; w <= 700000; w += 997) {
        assert_true(ngx_tce_consul_read_timeout(w) * 16
                    > ngx_tce_consul_wait(w) * 17);
    }

    assert_int_equal(ngx_tce_consul_rate_delay(1000, 1000, 500), 500);
    assert_int_equal(ngx_tce_consul_rate_delay(1000, 1200, 500), 300);
    assert_int_equal(ngx_tce_consul_rate_delay(1000, 1500, 500), 0);
    assert_int_equal(ngx_tce_consul_rate_delay(1000, 9999, 500), 0);
    assert_int_equal(ngx_tce_consul_rate_delay(1000, 10, 500), 500);
    assert_int_equal(ngx_tce_consul_rate_delay(1000, 1000, 0), 0);
}


static void
test_backoff(void **state)
{
    unsigned  a;
    uint64_t  d, prev_max;

    (void) state;

    assert_int_equal(ngx_tce_consul_backoff(0, 100, 10000, 0), 50);
    assert_int_equal(ngx_tce_consul_backoff(0, 100, 10000, 50), 100);
    assert_int_equal(ngx_tce_consul_backoff(0, 100, 10000, 51), 50);
    assert_int_equal(ngx_tce_consul_backoff(3, 100, 10000, 0), 400);
    assert_int_equal(ngx_tce_consul_backoff(3, 100, 10000, 400), 800);
    assert_int_equal(ngx_tce_consul_backoff(100, 100, 10000, 0), 5000);
    assert_int_equal(ngx_tce_consul_backoff(100, 100, 10000, 5000), 10000);
    assert_int_equal(ngx_tce_consul_backoff(UINT32_MAX, UINT64_MAX / 3,
                                            UINT64_MAX, 0),
                     UINT64_MAX / 2 + 1);
    assert_int_equal(ngx_tce_consul_backoff(5, 0, 10000, 12345), 0);
    assert_int_equal(ngx_tce_consul_backoff(0, 1, 10000, 7), 1);

    /* the floor grows, the jitter is at most the floor, all capped */
    prev_max = 0;

    for (a = 0; a < 64; a++) {
        d = ngx_tce_consul_backoff(a, 250, 30000, 0);
        assert_true(d >= prev_max);
        assert_true(ngx_tce_consul_backoff(a, 250, 30000, UINT32_MAX)
                    <= 2 * d);
        assert_true(ngx_tce_consul_backoff(a, 250, 30000, UINT32_MAX)
                    <= 30000);
        prev_max = d;
    }

    assert_int_equal(prev_max, 15000);
}


static void
test_urls(void **state)
{
    char     buf[512];
    ssize_t  n;

    (void) state;

    n = ngx_tce_consul_health_url(buf, sizeof(buf), "http://127.0.0.1:8500",
                                  "shop.cart.api", NULL, NULL, 0, 0);
    assert_int_equal(n, strlen(buf));
    assert_string_equal(buf, "http://127.0.0.1:8500/v1/health/service/"
                        "shop.cart.api");

    n = ngx_tce_consul_health_url(buf, sizeof(buf),
                                  "https://consul.local:8501/", "a.b.c",
                                  "", "", 42, 60000);
    assert_true(n > 0);
    assert_string_equal(buf, "https://consul.local:8501/v1/health/service/"
                        "a.b.c?index=42&wait=1m");

    ngx_tce_consul_health_url(buf, sizeof(buf), "http://c:8500", "a.b.c",
                              "v 1/x", "dc-2", 7, 90000);
    assert_string_equal(buf, "http://c:8500/v1/health/service/a.b.c"
                        "?tag=v%201%2Fx&dc=dc-2&index=7&wait=90s");

    ngx_tce_consul_health_url(buf, sizeof(buf), "http://c", "a/b?c&d",
                              NULL, NULL, 1, 250);
    assert_string_equal(buf, "http://c/v1/health/service/a%2Fb%3Fc%26d"
                        "?index=1&wait=250ms");

    /* wait 0 is Consul's default, longer is capped */
    ngx_tce_consul_health_url(buf, sizeof(buf), "http://c", "a.b.c", NULL,
                              NULL, 9, 0);
    assert_non_null(strstr(buf, "?index=9&wait=5m"));
    ngx_tce_consul_health_url(buf, sizeof(buf), "http://c", "a.b.c", NULL,
                              NULL, 9, 7200000);
    assert_non_null(strstr(buf, "?index=9&wait=10m"));
    ngx_tce_consul_health_url(buf, sizeof(buf), "http://c", "a.b.c", NULL,
                              "dc2", 0, 0);
    assert_string_equal(buf, "http://c/v1/health/service/a.b.c?dc=dc2");

    /* bad arguments and overflow: -1 and an empty buffer */
    assert_int_equal(ngx_tce_consul_health_url(buf, sizeof(buf), "ftp://c",
                                               "a.b.c", NULL, NULL, 0, 0),
                     -1);
    assert_string_equal(buf, "");
    assert_int_equal(ngx_tce_consul_health_url(buf, sizeof(buf), "c:8500",
                                               "a.b.c", NULL, NULL, 0, 0),
                     -1);
    assert_int_equal(ngx_tce_consul_health_url(buf, sizeof(buf), "http://",
                                               "a.b.c", NULL, NULL, 0, 0),
                     -1);
    assert_int_equal(ngx_tce_consul_health_url(buf, sizeof(buf),
                                               "http://c?x=1", "a.b.c",
                                               NULL, NULL, 0, 0),
                     -1);
    assert_int_equal(ngx_tce_consul_health_url(buf, sizeof(buf),
                                               "http://c\r\nX: y", "a.b.c",
                                               NULL, NULL, 0, 0),
                     -1);
    assert_int_equal(ngx_tce_consul_health_url(buf, sizeof(buf), "http://c",
                                               "", NULL, NULL, 0, 0),
                     -1);
    assert_int_equal(ngx_tce_consul_health_url(buf, sizeof(buf), "http://c",
                                               NULL, NULL, NULL, 0, 0),
                     -1);

    n = ngx_tce_consul_health_url(buf, 50, "http://c", "a.b.c", NULL, NULL,
                                  123456789, 60000);
    assert_int_equal(n, -1);
    assert_string_equal(buf, "");

    /* exact fit: 32 characters and the NUL */
    assert_int_equal(ngx_tce_consul_health_url(buf, 33, "http://c",
                                               "a.b.c", NULL, NULL, 0, 0),
                     32);
    assert_int_equal(ngx_tce_consul_health_url(buf, 32, "http://c",
                                               "a.b.c", NULL, NULL, 0, 0),
                     -1);

    /* catalog services */
    ngx_tce_consul_services_url(buf, sizeof(buf), "http://c:8500/", NULL, 0,
                                0);
    assert_string_equal(buf, "http://c:8500/v1/catalog/services");
    ngx_tce_consul_services_url(buf, sizeof(buf), "http://c", "dc1", 5,
                                30000);
    assert_string_equal(buf, "http://c/v1/catalog/services?dc=dc1&index=5"
                        "&wait=30s");
    ngx_tce_consul_services_url(buf, sizeof(buf), "http://c", NULL, 5,
                                1500);
    assert_string_equal(buf, "http://c/v1/catalog/services?index=5"
                        "&wait=1500ms");
    assert_int_equal(ngx_tce_consul_services_url(buf, 20, "http://c", NULL,
                                                 0, 0),
                     -1);

    /* agent paths */
    ngx_tce_consul_path_url(buf, sizeof(buf), "http://c",
                            "/v1/agent/service/deregister/", "id 1/2");
    assert_string_equal(buf, "http://c/v1/agent/service/deregister/"
                        "id%201%2F2");
    ngx_tce_consul_path_url(buf, sizeof(buf), "http://c",
                            "/v1/agent/service/register", NULL);
    assert_string_equal(buf, "http://c/v1/agent/service/register");
    assert_int_equal(ngx_tce_consul_path_url(buf, sizeof(buf), "http://c",
                                             "v1/x", NULL),
                     -1);
    assert_int_equal(ngx_tce_consul_path_url(buf, sizeof(buf), "http://c",
                                             "/v1/x/", ""),
                     -1);
}


static void
test_escape(void **state)
{
    char  buf[16];

    (void) state;

    assert_int_equal(ngx_tce_consul_escape(buf, sizeof(buf), "aZ09-._~", 8),
                     8);
    assert_string_equal(buf, "aZ09-._~");
    assert_int_equal(ngx_tce_consul_escape(buf, sizeof(buf), "\xff\x01 %",
                                           4),
                     12);
    assert_string_equal(buf, "%FF%01%20%25");

    /* a NUL in the middle is data, not the end */
    assert_int_equal(ngx_tce_consul_escape(buf, sizeof(buf), "a\0b", 3), 5);
    assert_string_equal(buf, "a%00b");

    assert_int_equal(ngx_tce_consul_escape(buf, 4, "abcd", 4), -1);
    assert_string_equal(buf, "");
    assert_int_equal(ngx_tce_consul_escape(buf, 5, "abcd", 4), 4);
    assert_int_equal(ngx_tce_consul_escape(buf, 4, "a b", 3), -1);
    assert_int_equal(ngx_tce_consul_escape(buf, 6, "a b", 3), 5);
    assert_int_equal(ngx_tce_consul_escape(buf, 1, "", 0), 0);
    assert_int_equal(ngx_tce_consul_escape(buf, 0, "", 0), -1);
}


static void
assert_printable(const char *s)
{
    const char  *c;

    for (c = s; *c != '\0'; c++) {
        if ((unsigned char) *c < 0x20 || (unsigned char) *c >= 0x7f) {
            fail_msg("byte 0x%02x in \"%s\"", (unsigned char) *c, s);
        }
    }
}


/*
 * Texts for the error log quoted body bytes raw: a newline or an
 * escape sequence in Service.ID, Service.Address, a catalog key or
 * jansson's own message reached it (log forging).  Found on review;
 * fuzz_consul_health and fuzz_consul_services check it since.
 */

static void
test_texts_printable(void **state)
{
    char                     err[NGX_TCE_CONSUL_ERR_LEN];
    skips_t                  skips;
    ngx_tce_consul_names_t   names;
    ngx_tce_consul_health_t  res;
    static const char        body[] =
        "[{\"Service\": {\"ID\": \"a\\nforged\\u001b[2J\", \"Port\": 80,"
        "   \"Address\": \"10.0.0.1\"}},"
        " " N "\"Service\": {\"ID\": \"b\", \"Port\": 80,"
        "   \"Address\": \"\\n\\u00e9forged\"}},"
        " " N "\"Service\": {\"ID\": \"c\", \"Port\": 80,"
        "   \"Address\": \"10.0.0.3\","
        "   \"Meta\": {\"env\": \"\\r\\n\"}}}]";
    static const char        cat[] = "{\"a\\n\\u00e9\": 1}";
    static const char        junk[] = "[\"\x01\x1b\"]";

    (void) state;

    memset(&skips, 0, sizeof(skips));

    assert_int_equal(ngx_tce_consul_parse_health(body, sizeof(body) - 1,
                                                 on_skip, &skips, &res,
                                                 err, sizeof(err)),
                     0);
    assert_int_equal(res.ninstances, 0);
    assert_int_equal(skips.n, 3);
    assert_string_equal(skips.id[0], "a?forged?[2J");

    assert_printable(skips.reason[0]);
    assert_printable(skips.reason[1]);
    assert_printable(skips.reason[2]);
    assert_printable(res.reason);
    ngx_tce_consul_health_free(&res);

    /* control bytes raw in an entry: that entry skipped, said cleanly */
    memset(&skips, 0, sizeof(skips));
    assert_int_equal(ngx_tce_consul_parse_health(junk, sizeof(junk) - 1,
                                                 on_skip, &skips, &res, err,
                                                 sizeof(err)),
                     0);
    assert_int_equal(skips.n, 1);
    assert_printable(skips.reason[0]);
    assert_printable(res.reason);
    ngx_tce_consul_health_free(&res);

    err[0] = '\0';
    assert_int_equal(ngx_tce_consul_parse_health("[\"\x01\x1b", 4, NULL,
                                                 NULL, &res, err,
                                                 sizeof(err)),
                     -1);
    assert_true(err[0] != '\0');
    assert_printable(err);

    err[0] = '\0';
    assert_int_equal(ngx_tce_consul_parse_services(cat, sizeof(cat) - 1,
                                                   NULL, &names, err,
                                                   sizeof(err)),
                     -1);
    assert_true(err[0] != '\0');
    assert_printable(err);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_health_passing),
        cmocka_unit_test(test_health_mixed),
        cmocka_unit_test(test_health_empty),
        cmocka_unit_test(test_health_hostile),
        cmocka_unit_test(test_health_wrong_types),
        cmocka_unit_test(test_health_huge),
        cmocka_unit_test(test_services),
        cmocka_unit_test(test_services_hostile),
        cmocka_unit_test(test_next_index),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_texts_printable),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
