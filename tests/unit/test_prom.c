/*
 * The exposition: label escaping, families whole and once, cumulative
 * buckets consistent with _count, OpenMetrics naming and "# EOF",
 * content negotiation, JSON; and, when promtool is installed, the text
 * passes "promtool check metrics" with no warning.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "ngx_tce_types.h"
#include "ngx_tce_prom.h"


#define PROMTOOL  "/usr/bin/promtool"


static void snapshot(ngx_tce_prom_snapshot_t *s, ngx_tce_prom_group_t *g,
    ngx_tce_prom_instance_t *in, ngx_tce_prom_discovery_t *d);
static char *render(const ngx_tce_prom_snapshot_t *s, unsigned format);
static unsigned count(const char *text, const char *needle);
static void test_escape(void **state);
static void test_class(void **state);
static void test_text(void **state);
static void test_histogram_consistent(void **state);
static void test_openmetrics(void **state);
static void test_negotiate(void **state);
static void test_json(void **state);
static void test_empty(void **state);
static void test_promtool(void **state);


static void
snapshot(ngx_tce_prom_snapshot_t *s, ngx_tce_prom_group_t *g,
    ngx_tce_prom_instance_t *in, ngx_tce_prom_discovery_t *d)
{
    memset(s, 0, sizeof(*s));
    memset(g, 0, 2 * sizeof(*g));
    memset(in, 0, 3 * sizeof(*in));
    memset(d, 0, sizeof(*d));

    g[0].service = "demo.web.api";
    g[0].cluster = "default";
    g[0].env = "prod";
    g[0].c.requests[1][NGX_TCE_PROM_SRC_UPSTREAM] = 10;
    g[0].c.requests[4][NGX_TCE_PROM_SRC_UPSTREAM] = 2;
    g[0].c.requests[4][NGX_TCE_PROM_SRC_NGINX] = 3;
    g[0].c.bytes_in = 1000;
    g[0].c.bytes_out = 5000;
    g[0].c.retries = 1;
    g[0].c.in_flight = (uint64_t) -1;   /* a transient negative gauge */
    g[0].c.request_time.bucket[0] = 10;
    g[0].c.request_time.bucket[3] = 4;
    g[0].c.request_time.bucket[13] = 1;
    g[0].c.request_time.sum_ms = 61234;

    /* a weird cluster name cannot come from the registry: escaping */
    g[1].service = "demo.web.api";
    g[1].cluster = "a\"b\\c\nd";
    g[1].env = "canary";

    in[0].service = "demo.web.api";
    in[0].cluster = "default";
    in[0].env = "prod";
    in[0].instance = "api-1";
    in[0].state = NGX_TCE_STATE_UP;
    in[0].weight = 5;
    in[0].c.requests[1] = 7;
    in[0].c.time_sum_ms = 12;
    in[0].c.time_count = 7;

    in[1] = in[0];
    in[1].instance = "api-2";
    in[1].state = NGX_TCE_STATE_DRAINING;
    in[1].weight = 0;

    in[2] = in[0];
    in[2].instance = "api-gone";
    in[2].state = NGX_TCE_PROM_DEPARTED;

    d[0].service = "demo.web.api";
    d[0].c.ok = 3;
    d[0].c.failures = 1;
    d[0].c.last_success = 1700000000;
    d[0].c.index = 42;

    s->groups = g;
    s->ngroups = 2;
    s->instances = in;
    s->ninstances = 3;
    s->discovery = d;
    s->ndiscovery = 1;
    s->zone_name = "tce";
    s->zone_size = 1048576;
    s->zone_used = 65536;
    s->zone_free = 983040;
    s->dropped = 0;
    s->start_time = 1700000000;
    s->version = "0.1.0";
    s->server_version = "1.22.1";
}


static char *
render(const ngx_tce_prom_snapshot_t *s, unsigned format)
{
    ngx_tce_buf_t  b;

    memset(&b, 0, sizeof(b));

    assert_int_equal(ngx_tce_prom_render(s, format, &b), 0);
    assert_int_equal(ngx_tce_buf_append(&b, "", 1), 0);

    return b.data;
}


static unsigned
count(const char *text, const char *needle)
{
    unsigned     n;
    const char  *p;

    n = 0;

    for (p = strstr(text, needle); p; p = strstr(p + 1, needle)) {
        n++;
    }

    return n;
}


static void
test_escape(void **state)
{
    ngx_tce_buf_t  b;

    (void) state;

    memset(&b, 0, sizeof(b));

    assert_int_equal(ngx_tce_prom_escape(&b, "a\"b\\c\nd\te"), 0);
    assert_int_equal(b.len, strlen("a\\\"b\\\\c\\nd\te"));
    assert_memory_equal(b.data, "a\\\"b\\\\c\\nd\te", b.len);

    ngx_tce_buf_free(&b);
}


static void
test_class(void **state)
{
    (void) state;

    assert_int_equal(ngx_tce_prom_class(100), 0);
    assert_int_equal(ngx_tce_prom_class(200), 1);
    assert_int_equal(ngx_tce_prom_class(304), 2);
    assert_int_equal(ngx_tce_prom_class(499), 3);
    assert_int_equal(ngx_tce_prom_class(502), 4);
    assert_int_equal(ngx_tce_prom_class(599), 4);
    assert_int_equal(ngx_tce_prom_class(0), 5);
    assert_int_equal(ngx_tce_prom_class(600), 5);
    assert_string_equal(ngx_tce_prom_class_name(4), "5xx");
    assert_string_equal(ngx_tce_prom_class_name(5), "other");
}


static void
test_text(void **state)
{
    char                      *t, *p, *q;
    ngx_tce_prom_group_t       g[2];
    ngx_tce_prom_instance_t    in[3];
    ngx_tce_prom_snapshot_t    s;
    ngx_tce_prom_discovery_t   d[1];

    (void) state;

    snapshot(&s, g, in, d);
    t = render(&s, NGX_TCE_PROM_TEXT);

    assert_true(strlen(t) > 0 && t[strlen(t) - 1] == '\n');

    assert_non_null(strstr(t,
        "tce_requests_total{service=\"demo.web.api\",cluster=\"default\","
        "env=\"prod\",class=\"2xx\",source=\"upstream\"} 10\n"));
    assert_non_null(strstr(t,
        "class=\"5xx\",source=\"nginx\"} 3\n"));
    /* zero series are left out */
    assert_null(strstr(t, "class=\"1xx\""));

    assert_non_null(strstr(t, "cluster=\"a\\\"b\\\\c\\nd\""));

    assert_non_null(strstr(t, "tce_requests_in_flight{service=\"demo.web."
                              "api\",cluster=\"default\",env=\"prod\"} -1"));

    /* every family exactly once, all its samples together */
    assert_int_equal(count(t, "# TYPE tce_requests_total counter\n"), 1);
    assert_int_equal(count(t, "# HELP tce_requests_total "), 1);
    assert_int_equal(count(t, "# TYPE tce_request_duration_seconds "
                              "histogram\n"), 1);

    p = strstr(t, "# TYPE tce_sent_bytes_total");
    q = strstr(t, "# TYPE tce_request_duration_seconds");
    assert_non_null(p);
    assert_non_null(q);
    assert_true(strstr(p, "tce_sent_bytes_total{") < q);
    assert_null(strstr(q, "tce_sent_bytes_total{"));

    /* departed instances keep counters but have no state or weight */
    assert_non_null(strstr(t, "instance=\"api-gone\",class=\"2xx\"} 7"));
    assert_null(strstr(t, "instance=\"api-gone\",state="));
    assert_non_null(strstr(t, "instance=\"api-2\",state=\"draining\"} 1"));
    assert_non_null(strstr(t, "tce_instance_upstream_response_seconds_sum{"
                              "service=\"demo.web.api\",cluster=\"default\""
                              ",env=\"prod\",instance=\"api-1\"} 0.012\n"));

    assert_non_null(strstr(t, "tce_discovery_syncs_total{service=\"demo.web"
                              ".api\",result=\"failure\"} 1\n"));
    assert_non_null(strstr(t, "\ntce_metrics_dropped_total 0\n"));
    assert_non_null(strstr(t, "\ntce_start_time_seconds 1700000000\n"));
    assert_null(strstr(t, "# EOF"));

    free(t);
}


static void
test_histogram_consistent(void **state)
{
    char                      *t, *p, line[512];
    unsigned                   n;
    long long                  v, prev, total;
    ngx_tce_prom_group_t       g[2];
    ngx_tce_prom_instance_t    in[3];
    ngx_tce_prom_snapshot_t    s;
    ngx_tce_prom_discovery_t   d[1];

    (void) state;

    snapshot(&s, g, in, d);
    t = render(&s, NGX_TCE_PROM_TEXT);

    prev = 0;
    n = 0;

    p = strstr(t, "tce_request_duration_seconds_bucket{service=\"demo.web"
                  ".api\",cluster=\"default\"");
    assert_non_null(p);

    while (strncmp(p, "tce_request_duration_seconds_bucket{", 36) == 0
           && strstr(p, "cluster=\"default\"") == strstr(p, "cluster="))
    {
        assert_int_equal(sscanf(p, "%511[^ ] %lld", line, &v), 2);
        assert_true(v >= prev);
        prev = v;
        n++;
        p = strchr(p, '\n') + 1;
    }

    assert_int_equal(n, NGX_TCE_HIST_NBUCKETS);
    assert_non_null(strstr(line, "le=\"+Inf\""));
    assert_int_equal(prev, 15);

    assert_int_equal(sscanf(p, "tce_request_duration_seconds_sum{%*[^}]} "
                               "%511s", line), 1);
    assert_string_equal(line, "61.234");
    p = strchr(p, '\n') + 1;
    assert_int_equal(sscanf(p, "tce_request_duration_seconds_count{%*[^}]} "
                               "%lld", &total), 1);
    assert_int_equal(total, prev);

    assert_non_null(strstr(t, "le=\"0.005\"} 10\n"));
    assert_non_null(strstr(t, "le=\"0.05\"} 14\n"));
    assert_non_null(strstr(t, "le=\"60\"} 14\n"));

    free(t);
}


static void
test_openmetrics(void **state)
{
    char                      *t;
    size_t                     len;
    ngx_tce_prom_group_t       g[2];
    ngx_tce_prom_instance_t    in[3];
    ngx_tce_prom_snapshot_t    s;
    ngx_tce_prom_discovery_t   d[1];

    (void) state;

    snapshot(&s, g, in, d);
    t = render(&s, NGX_TCE_PROM_OPENMETRICS);
    len = strlen(t);

    assert_true(len > 6);
    assert_string_equal(t + len - 6, "# EOF\n");
    assert_int_equal(count(t, "# EOF"), 1);

    /* counter families are named without _total, samples with it */
    assert_non_null(strstr(t, "# TYPE tce_requests counter\n"));
    assert_non_null(strstr(t, "# HELP tce_requests "));
    assert_null(strstr(t, "# TYPE tce_requests_total"));
    assert_non_null(strstr(t, "tce_requests_total{service="));
    assert_non_null(strstr(t, "# TYPE tce_requests_in_flight gauge\n"));

    free(t);
}


static void
test_negotiate(void **state)
{
    const char  *a;

    (void) state;

    a = "application/openmetrics-text;version=1.0.0,text/plain;q=0.5";
    assert_int_equal(ngx_tce_prom_negotiate(a, strlen(a)),
                     NGX_TCE_PROM_OPENMETRICS);

    a = "text/plain;version=0.0.4;q=1, application/openmetrics-text; q=0";
    assert_int_equal(ngx_tce_prom_negotiate(a, strlen(a)),
                     NGX_TCE_PROM_TEXT);

    a = "*/*";
    assert_int_equal(ngx_tce_prom_negotiate(a, strlen(a)),
                     NGX_TCE_PROM_TEXT);

    a = "Application/OpenMetrics-Text; version=0.0.1; q=0.75";
    assert_int_equal(ngx_tce_prom_negotiate(a, strlen(a)),
                     NGX_TCE_PROM_OPENMETRICS);

    assert_int_equal(ngx_tce_prom_negotiate("", 0), NGX_TCE_PROM_TEXT);

    /* a prefix only must not match */
    a = "application/openmetrics-tex";
    assert_int_equal(ngx_tce_prom_negotiate(a, strlen(a)),
                     NGX_TCE_PROM_TEXT);

    assert_string_equal(ngx_tce_prom_content_type(NGX_TCE_PROM_TEXT),
                        "text/plain; version=0.0.4; charset=utf-8");
}


static void
test_json(void **state)
{
    char                      *t;
    json_t                    *root, *g0, *req;
    json_error_t               err;
    ngx_tce_prom_group_t       g[2];
    ngx_tce_prom_instance_t    in[3];
    ngx_tce_prom_snapshot_t    s;
    ngx_tce_prom_discovery_t   d[1];

    (void) state;

    snapshot(&s, g, in, d);
    t = render(&s, NGX_TCE_PROM_JSON);

    root = json_loads(t, 0, &err);
    assert_non_null(root);

    assert_int_equal(json_array_size(json_object_get(root, "groups")), 2);
    assert_int_equal(json_array_size(json_object_get(root, "instances")), 3);

    g0 = json_array_get(json_object_get(root, "groups"), 0);
    req = json_object_get(json_object_get(g0, "requests"), "5xx");
    assert_int_equal(json_integer_value(json_object_get(req, "nginx")), 3);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(g0, "request_duration"), "count")),
                     15);
    assert_string_equal(json_string_value(json_object_get(
        json_array_get(json_object_get(root, "groups"), 1), "cluster")),
        "a\"b\\c\nd");
    assert_string_equal(json_string_value(json_object_get(
        json_array_get(json_object_get(root, "instances"), 2), "state")),
        "departed");

    json_decref(root);
    free(t);
}


static void
test_empty(void **state)
{
    char                     *t;
    ngx_tce_prom_snapshot_t   s;

    (void) state;

    memset(&s, 0, sizeof(s));
    s.zone_name = "z";
    s.version = "v";
    s.server_version = "n";

    t = render(&s, NGX_TCE_PROM_TEXT);

    /* families without samples are left out entirely */
    assert_null(strstr(t, "tce_requests_total"));
    assert_null(strstr(t, "tce_instance_"));
    assert_non_null(strstr(t, "tce_zone_size_bytes{zone=\"z\"} 0\n"));

    free(t);
}


static void
test_promtool(void **state)
{
    int                        rc;
    char                      *t, path[] = "/tmp/tce_promXXXXXX";
    char                       cmd[256], out[4096];
    FILE                      *f, *p;
    size_t                     n;
    ngx_tce_prom_group_t       g[2];
    ngx_tce_prom_instance_t    in[3];
    ngx_tce_prom_snapshot_t    s;
    ngx_tce_prom_discovery_t   d[1];

    (void) state;

    if (access(PROMTOOL, X_OK) != 0) {
        skip();
    }

    snapshot(&s, g, in, d);
    t = render(&s, NGX_TCE_PROM_TEXT);

    rc = mkstemp(path);
    assert_true(rc >= 0);
    f = fdopen(rc, "w");
    assert_non_null(f);
    fputs(t, f);
    fclose(f);
    free(t);

    snprintf(cmd, sizeof(cmd), PROMTOOL " check metrics < %s 2>&1", path);
    p = popen(cmd, "r");
    assert_non_null(p);
    n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    rc = pclose(p);
    unlink(path);

    if (rc != 0 || n != 0) {
        print_error("promtool: %s\n", out);
    }

    assert_int_equal(rc, 0);
    assert_int_equal(n, 0);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_class),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_histogram_consistent),
        cmocka_unit_test(test_openmetrics),
        cmocka_unit_test(test_negotiate),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_promtool),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
