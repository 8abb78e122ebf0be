/*
 * Unit tests of ngx_tce_consul_parse_health against what real Consul
 * agents send (tests/unit/fixtures/consul/health_agents.json, written
 * in the shape of open-source Consul's CheckServiceNode; see the
 * fixtures' README): identity per node, check states and weights,
 * free text with NUL bytes, null fields, large weights, long ids, and
 * a 10,000-instance answer.
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

/* one entry on node <n>, service id <id>, the rest given */
#define ENTRY(node, id, more)                                               \
    "{\"Node\": {\"Node\": \"" node "\", \"Address\": \"10.0.0.1\"},"     \
    " \"Service\": {\"ID\": \"" id "\", \"Service\": \"a.b.c\","          \
    " \"Port\": 80" more "}}"

#include "unit_fixture.h"


typedef struct {
    size_t                    n;
    char                      id[8][NGX_TCE_ID_LEN];
    char                      reason[8][NGX_TCE_CONSUL_ERR_LEN];
} skips_t;


static void on_skip(void *data, size_t n, const char *id,
    const char *reason);
static const ngx_tce_instance_t *find(const ngx_tce_consul_health_t *res,
    const char *id);
static void parse(const char *body, ngx_tce_consul_health_t *res,
    skips_t *skips);
static void test_agents(void **state);
static void test_identity(void **state);
static void test_long_ids(void **state);
static void test_states(void **state);
static void test_weights(void **state);
static void test_loose(void **state);
static void test_ten_thousand(void **state);


static void
on_skip(void *data, size_t n, const char *id, const char *reason)
{
    skips_t  *s;

    (void) n;

    s = data;

    if (s->n < 8) {
        snprintf(s->id[s->n], NGX_TCE_ID_LEN, "%s", id);
        snprintf(s->reason[s->n], NGX_TCE_CONSUL_ERR_LEN, "%s", reason);
    }

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


static void
parse(const char *body, ngx_tce_consul_health_t *res, skips_t *skips)
{
    char  err[NGX_TCE_CONSUL_ERR_LEN];

    memset(skips, 0, sizeof(skips_t));
    err[0] = '\0';

    if (ngx_tce_consul_parse_health(body, strlen(body), on_skip, skips, res,
                                    err, sizeof(err))
        != 0)
    {
        fail_msg("refused: %s", err);
    }
}


/*
 * The shapes real agents send: the same service registered without an
 * ID on two nodes, check output with NULs, HTML (Go's \u003c escapes)
 * and invalid-looking text, null Tags and Meta, 10000-scale weights,
 * warning, critical, maintenance and a failing node check.
 */

static void
test_agents(void **state)
{
    char                       *body, err[NGX_TCE_CONSUL_ERR_LEN];
    size_t                      len;
    skips_t                     skips;
    ngx_tce_consul_health_t     res;
    const ngx_tce_instance_t   *a, *b, *c, *h;

    (void) state;

    body = load("health_agents.json", &len);
    memset(&skips, 0, sizeof(skips));

    assert_int_equal(ngx_tce_consul_parse_health(body, len, on_skip,
                                                 &skips, &res, err,
                                                 sizeof(err)),
                     0);

    /* Service.ID "shop.cart.api" on node-a and node-b: two instances */
    assert_int_equal(res.ninstances, 4);
    assert_int_equal(res.nskipped, 0);
    assert_int_equal(skips.n, 0);
    assert_int_equal(res.nexcluded, 4);
    assert_int_equal(res.nwarning, 1);
    assert_int_equal(res.weight_max, 30000);

    a = find(&res, "node-a/shop.cart.api");
    b = find(&res, "node-b/shop.cart.api");
    c = find(&res, "node-c/shop.cart.api");
    h = find(&res, "node-h/shop.cart.api");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_non_null(h);

    assert_string_equal(a->addr, "10.1.0.11:8080");
    assert_string_equal(b->addr, "10.1.0.12:8080");
    assert_string_equal(b->version, "2.3.1");
    assert_string_equal(h->addr, "[fd00::18]:8443");

    /* 10000 : 30000 : Warning 5000 : 1, the largest made 1000 */
    assert_int_equal(a->weight, 333);
    assert_int_equal(b->weight, 1000);
    assert_int_equal(c->weight, 167);
    assert_int_equal(h->weight, 1);

    /* critical, maintenance, serfHealth critical, Warning 0: gone */
    assert_null(find(&res, "node-d/shop.cart.api"));
    assert_null(find(&res, "node-e/shop.cart.api"));
    assert_null(find(&res, "node-f/shop.cart.api-2"));
    assert_null(find(&res, "node-g/shop.cart.api"));

    ngx_tce_consul_health_free(&res);
    free(body);
}


static void
test_identity(void **state)
{
    skips_t                   skips;
    ngx_tce_consul_health_t   res;

    (void) state;

    /*
     * no ID: the name; the same ID on one node twice: a duplicate;
     * default or empty qualifiers: not shown; others in front;
     * bytes outside the alphabet, '%' and '/' escaped
     */
    parse("[" ENTRY("n1", "web", "") ","
          "{\"Node\": {\"Node\": \"n2\", \"Address\": \"10.0.0.2\"},"
          " \"Service\": {\"Service\": \"web\", \"Port\": 80}},"
          "{\"Node\": {\"Node\": \"n3\", \"Address\": \"10.0.0.3\"},"
          " \"Service\": {\"ID\": \"\", \"Service\": \"web\", \"Port\": 80,"
          " \"Namespace\": \"default\", \"Partition\": \"\","
          " \"PeerName\": \"\"}},"
          ENTRY("n1", "web", "") ","
          ENTRY("n1", "web", ", \"Namespace\": \"team-a\"") ","
          ENTRY("n1", "web", ", \"Namespace\": \"team-a\","
                " \"Partition\": \"eu\", \"PeerName\": \"dc9\"") ","
          ENTRY("n 1", "we b/%\\\"x\\u00e9\\u0000", "") "]",
          &res, &skips);

    assert_int_equal(res.ninstances, 6);
    assert_string_equal(res.instances[0].id, "n1/web");
    assert_string_equal(res.instances[1].id, "n2/web");
    assert_string_equal(res.instances[2].id, "n3/web");
    assert_string_equal(res.instances[3].id, "ns:team-a/n1/web");
    assert_string_equal(res.instances[4].id,
                        "peer:dc9/ap:eu/ns:team-a/n1/web");
    assert_string_equal(res.instances[5].id,
                        "n%201/we%20b%2F%25%22x%C3%A9%00");
    assert_true(ngx_tce_id_valid(res.instances[5].id,
                                 strlen(res.instances[5].id)));

    assert_int_equal(skips.n, 1);
    assert_string_equal(skips.id[0], "n1/web");
    assert_string_equal(skips.reason[0],
                        "duplicate instance id (Node.Node and Service.ID)");

    ngx_tce_consul_health_free(&res);
}


/* ids past NGX_TCE_ID_LEN: kept, cut with a hash, still distinct */

static void
test_long_ids(void **state)
{
    char                      *body, big[301];
    size_t                     i;
    skips_t                    skips;
    ngx_tce_consul_health_t    res;

    (void) state;

    memset(big, 'x', 300);
    big[300] = '\0';

    body = malloc(4096);
    assert_non_null(body);

    snprintf(body, 4096, "[" ENTRY("n", "%s1", "") "," ENTRY("n", "%s2", "")
             "," ENTRY("n", "%s1", "") "]", big, big, big);

    parse(body, &res, &skips);

    assert_int_equal(res.ninstances, 2);
    assert_int_equal(skips.n, 1);           /* the same long id again */

    for (i = 0; i < 2; i++) {
        assert_int_equal(strlen(res.instances[i].id), NGX_TCE_ID_LEN - 1);
        assert_true(ngx_tce_id_valid(res.instances[i].id,
                                     strlen(res.instances[i].id)));
        assert_memory_equal(res.instances[i].id, "n/xxx", 5);
        assert_int_equal(res.instances[i].id[NGX_TCE_ID_LEN - 18], '~');
    }

    assert_string_not_equal(res.instances[0].id, res.instances[1].id);

    /* the same input gives the same id: stable across answers */
    assert_string_equal(skips.id[0], res.instances[0].id);

    ngx_tce_consul_health_free(&res);
    free(body);
}


/* Consul DNS's reading of the checks: node checks count too */

static void
test_states(void **state)
{
    skips_t                   skips;
    ngx_tce_consul_health_t   res;

    (void) state;

    parse("[" ENTRY("p", "s", ", \"Weights\": {\"Passing\": 7, "
                    "\"Warning\": 2}}, \"Checks\": [{\"Status\": "
                    "\"passing\"}, {\"Status\": \"passing\"}], \"x\": {")
          "," ENTRY("w", "s", ", \"Weights\": {\"Passing\": 7, "
                    "\"Warning\": 2}}, \"Checks\": [{\"Status\": "
                    "\"passing\"}, {\"Status\": \"warning\"}], \"x\": {")
          "," ENTRY("c", "s", "}, \"Checks\": [{\"Status\": \"warning\"}, "
                    "{\"Status\": \"critical\"}], \"x\": {")
          "," ENTRY("m", "s", "}, \"Checks\": [{\"CheckID\": "
                    "\"_node_maintenance\", \"Status\": \"critical\"}],"
                    " \"x\": {")
          "," ENTRY("e", "s", "}, \"Checks\": [], \"x\": {")
          "," ENTRY("z", "s", ", \"Weights\": {\"Passing\": 0, "
                    "\"Warning\": 1}}, \"x\": {")
          "," ENTRY("n", "s", ", \"Weights\": null}, \"Checks\": null, "
                    "\"x\": {")
          "]", &res, &skips);

    assert_int_equal(skips.n, 0);
    assert_int_equal(res.ninstances, 4);
    assert_int_equal(res.nexcluded, 3);
    assert_int_equal(res.nwarning, 1);
    assert_int_equal(find(&res, "p/s")->weight, 7);
    assert_int_equal(find(&res, "w/s")->weight, 2);
    assert_int_equal(find(&res, "e/s")->weight, 1);
    assert_int_equal(find(&res, "n/s")->weight, 1);
    assert_null(find(&res, "c/s"));
    assert_null(find(&res, "m/s"));
    assert_null(find(&res, "z/s"));

    ngx_tce_consul_health_free(&res);
}


static void
test_weights(void **state)
{
    skips_t                   skips;
    ngx_tce_consul_health_t   res;

    (void) state;

    /* up to 1000: as Consul says */
    parse("[" ENTRY("a", "s", ", \"Weights\": {\"Passing\": 1000}") ","
          ENTRY("b", "s", ", \"Weights\": {\"Passing\": 3}") "]",
          &res, &skips);
    assert_int_equal(find(&res, "a/s")->weight, 1000);
    assert_int_equal(find(&res, "b/s")->weight, 3);
    ngx_tce_consul_health_free(&res);

    /* a common divisor keeps the proportions exact */
    parse("[" ENTRY("a", "s", ", \"Weights\": {\"Passing\": 10000}") ","
          ENTRY("b", "s", ", \"Weights\": {\"Passing\": 30000}") ","
          ENTRY("c", "s", ", \"Weights\": {\"Passing\": 5000}") "]",
          &res, &skips);
    assert_int_equal(find(&res, "a/s")->weight, 2);
    assert_int_equal(find(&res, "b/s")->weight, 6);
    assert_int_equal(find(&res, "c/s")->weight, 1);
    ngx_tce_consul_health_free(&res);

    /* SRV's 65535 and beyond: scaled, the smallest kept at 1 */
    parse("[" ENTRY("a", "s", ", \"Weights\": {\"Passing\": 65535}") ","
          ENTRY("b", "s", ", \"Weights\": {\"Passing\": 1}") ","
          ENTRY("c", "s", ", \"Weights\": {\"Passing\": 32768}") ","
          ENTRY("d", "s", ", \"Weights\": {\"Passing\": "
                "9223372036854775807}") "]",
          &res, &skips);
    assert_int_equal(skips.n, 0);
    assert_int_equal(res.ninstances, 4);
    assert_int_equal(res.weight_max, 9223372036854775807ULL);
    assert_int_equal(find(&res, "d/s")->weight, 1000);
    assert_int_equal(find(&res, "a/s")->weight, 1);
    assert_int_equal(find(&res, "b/s")->weight, 1);
    ngx_tce_consul_health_free(&res);

    parse("[" ENTRY("a", "s", ", \"Weights\": {\"Passing\": 65535}") ","
          ENTRY("b", "s", ", \"Weights\": {\"Passing\": 1}") ","
          ENTRY("c", "s", ", \"Weights\": {\"Passing\": 32768}") "]",
          &res, &skips);
    assert_int_equal(find(&res, "a/s")->weight, 1000);
    assert_int_equal(find(&res, "b/s")->weight, 1);
    assert_int_equal(find(&res, "c/s")->weight, 500);
    ngx_tce_consul_health_free(&res);
}


/*
 * Free text is not checked: a NUL anywhere in Output, Notes, tags or
 * Meta used to make the whole answer unparsable (jansson refuses
 * \u0000 unless told), and the service stopped following Consul.
 */

static void
test_loose(void **state)
{
    skips_t                   skips;
    ngx_tce_consul_health_t   res;

    (void) state;

    parse("[{\"Node\": {\"Node\": \"n\", \"Address\": \"10.0.0.1\","
          "  \"Meta\": null, \"TaggedAddresses\": null},"
          " \"Service\": {\"ID\": \"s\", \"Service\": \"a.b.c\","
          "  \"Tags\": [\"a\\u0000b\", \"\\ud83d\\ude00\"],"
          "  \"Meta\": {\"k\": \"v\\u0000\", \"version\": \"2\"},"
          "  \"Port\": 80, \"Proxy\": null, \"Connect\": null},"
          " \"Checks\": [{\"Node\": \"n\", \"CheckID\": \"c\","
          "  \"Status\": \"passing\", \"Notes\": \"\\u0000\","
          "  \"Output\": \"\\u0000\\u0001\\ufffd\\u003chtml\\u003e\xc3\xa9"
          "{\\\"not\\\": json\","
          "  \"ServiceTags\": null, \"Definition\": {}}]}]",
          &res, &skips);

    assert_int_equal(skips.n, 0);
    assert_int_equal(res.ninstances, 1);
    assert_string_equal(res.instances[0].id, "n/s");
    assert_string_equal(res.instances[0].version, "2");
    ngx_tce_consul_health_free(&res);

    /*
     * What routing does not read is only checked as JSON: a NUL in a
     * key, a number of any size, a key twice; in a value routing reads
     * a key twice or a number out of range spoils that entry only, as
     * does a bad token anywhere in it
     */
    parse("[" ENTRY("a", "s", ", \"Meta\": {\"k\\u0000\": \"v\"}") ","
          ENTRY("b", "s", ", \"x\": nul") ","
          ENTRY("c", "s", ", \"x\": 1e999999, \"y\": [-0.5E+3]") ","
          ENTRY("d", "s", ", \"x\": 99999999999999999999999") ","
          ENTRY("e", "s", ", \"Port\": 81") ","
          ENTRY("f", "s", ", \"Tags\": {\"t\": 1, \"t\": 2}") ","
          ENTRY("g", "s", ", \"Weights\": {\"Passing\":"
                " 99999999999999999999}") ","
          ENTRY("h", "s", ", \"Meta\": {\"env\": \"prod\","
                " \"env\": \"canary\"}") ","
          ENTRY("i", "s", ", \"x\": \"\\q\"") ","
          ENTRY("j", "s", ", \"x\": [1,]") "]", &res, &skips);

    assert_int_equal(res.ninstances, 4);
    assert_string_equal(res.instances[0].id, "a/s");
    assert_string_equal(res.instances[1].id, "c/s");
    assert_string_equal(res.instances[2].id, "d/s");
    assert_string_equal(res.instances[3].id, "f/s");
    assert_int_equal(skips.n, 6);
    assert_non_null(strstr(skips.reason[0], "invalid JSON at column"));
    assert_string_equal(skips.reason[1], "duplicate key \"Port\"");
    assert_string_equal(skips.reason[2], "Weights.Passing is not an "
                        "integer >= 0");
    assert_string_equal(skips.reason[3], "duplicate key \"env\"");
    assert_non_null(strstr(skips.reason[4], "invalid escape"));
    assert_non_null(strstr(skips.reason[5], "invalid JSON"));
    ngx_tce_consul_health_free(&res);
}


/*
 * 10,000 instances of realistic size (about 1.6 KB each with their
 * check output) under one Service.ID on 10,000 nodes: all kept, in order;
 * and the same answer with every id repeated once: half skipped.  The
 * duplicate check sorts (O(n log n)); the old pairwise scan took 0.37 s
 * here.
 */

static void
test_ten_thousand(void **state)
{
    int                       pass;
    char                     *body, *p, out[1001];
    size_t                    i, k, size, n;
    skips_t                   skips;
    ngx_tce_consul_health_t   res;

    (void) state;

    n = NGX_TCE_CONSUL_MAX_ENTRIES;
    size = n * 2100 + 16;
    body = malloc(size);
    assert_non_null(body);

    memset(out, 'o', 1000);
    out[1000] = '\0';

    for (pass = 0; pass < 2; pass++) {
        p = body;
        *p++ = '[';

        for (i = 0; i < n; i++) {
            k = pass ? i % (n / 2) : i;
            p += snprintf(p, size - (p - body),
                "%s{\"Node\": {\"ID\": \"6b0c7f4e-0000-0000-0000-%012zu\","
                " \"Node\": \"ip-10-%zu-%zu\", \"Address\": \"10.1.%zu.%zu\","
                " \"Datacenter\": \"dc1\", \"TaggedAddresses\": {\"lan\":"
                " \"10.1.0.1\"}, \"Meta\": {\"consul-network-segment\":"
                " \"\"}}, \"Service\": {\"ID\": \"web\", \"Service\":"
                " \"web\", \"Tags\": [\"v1\", \"http\"], \"Address\": \"\","
                " \"Meta\": {\"version\": \"1.2.%zu\"}, \"Port\": 8080,"
                " \"Weights\": {\"Passing\": %zu, \"Warning\": 1},"
                " \"EnableTagOverride\": false, \"PeerName\": \"\"},"
                " \"Checks\": [{\"Node\": \"n\", \"CheckID\": \"serfHealth\","
                " \"Name\": \"Serf Health Status\", \"Status\": \"passing\","
                " \"Output\": \"Agent alive and reachable\"}, {\"Node\":"
                " \"n\", \"CheckID\": \"service:web\", \"Name\": \"web\","
                " \"Status\": \"passing\", \"Notes\": \"\", \"Output\":"
                " \"HTTP GET http://10.1.0.1:8080/health: 200 OK Output:"
                " %s\\u0000\", \"ServiceTags\": [\"v1\", \"http\"]}]}",
                i ? "," : "", i, k, k % 7,
                i % 250, i % 250, i % 100, (i % 4 + 1) * 10000, out);
        }

        *p++ = ']';
        *p = '\0';

        parse(body, &res, &skips);

        if (pass == 0) {
            assert_int_equal(res.ninstances, n);
            assert_int_equal(skips.n, 0);
            assert_string_equal(res.instances[0].id, "ip-10-0-0/web");
            assert_string_equal(res.instances[n - 1].id, "ip-10-9999-3/web");
            assert_int_equal(res.instances[0].weight, 1);
            assert_int_equal(res.instances[3].weight, 4);

        } else {
            /* node names repeat after n / 2: the later ones go */
            assert_int_equal(res.ninstances, n / 2);
            assert_int_equal(skips.n, n / 2);
            assert_string_equal(res.instances[n / 2 - 1].id,
                                "ip-10-4999-1/web");
        }

        ngx_tce_consul_health_free(&res);
    }

    free(body);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_agents),
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_long_ids),
        cmocka_unit_test(test_states),
        cmocka_unit_test(test_weights),
        cmocka_unit_test(test_loose),
        cmocka_unit_test(test_ten_thousand),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
