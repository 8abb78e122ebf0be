/*
 * Unit tests of the state file (ngx_tce_state.c): valid documents,
 * every invalid field, hostile input, limits, round trip, load and
 * atomic write.  Run from the repository root (fixtures are found
 * relative to this file's path as compiled).
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/stat.h>

#include "ngx_tce_instance.h"
#include "ngx_tce_state.h"


#define ERRLEN  256

#define assert_contains(hay, needle)                                         \
    do {                                                                      \
        if (strstr((hay), (needle)) == NULL) {                                \
            fail_msg("\"%s\" does not contain \"%s\"", (hay), (needle));      \
        }                                                                     \
    } while (0)


typedef struct {
    const char               *json;
    const char               *want;     /* a part of the error */
} bad_case_t;


static char *fixture_path(const char *name);
static char *read_text(const char *path, size_t *len);
static void write_text(const char *path, const char *text, size_t len);
static char *make_tmpdir(void);
static void remove_tree(const char *dir);
static int count_entries(const char *dir);
static char *instances_doc(size_t n);
static char *nested_doc(size_t depth);
static void expect_error(const char *json, size_t len, const char *want);
static const ngx_tce_state_service_t *find_service(const ngx_tce_state_t *st,
    const char *name);
static const ngx_tce_instance_t *find_instance(
    const ngx_tce_state_service_t *svc, const char *id);
static void assert_state_equal(const ngx_tce_state_t *a,
    const ngx_tce_state_t *b);
static void assert_printable(const char *s);
static void test_minimal(void **state);
static void test_empty_documents(void **state);
static void test_version_required(void **state);
static void test_full(void **state);
static void test_defaults(void **state);
static void test_ipv6(void **state);
static void test_overrides(void **state);
static void test_round_trip(void **state);
static void test_encode_empty(void **state);
static void test_encode_omits_unset_override(void **state);
static void test_encode_instance_without_cluster(void **state);
static void test_invalid_fields(void **state);
static void test_error_path_example(void **state);
static void test_duplicate_ids(void **state);
static void test_truncated(void **state);
static void test_deep_nesting(void **state);
static void test_huge_strings(void **state);
static void test_nul_bytes(void **state);
static void test_non_object_root(void **state);
static void test_garbage(void **state);
static void test_limits(void **state);
static void test_small_err_buffer(void **state);
static void test_load(void **state);
static void test_load_missing(void **state);
static void test_load_not_regular(void **state);
static void test_load_too_large(void **state);
static void test_write_replaces(void **state);
static void test_write_missing_dir(void **state);
static void test_write_failure_keeps_old(void **state);
static void test_free_empty(void **state);


/* instance i of a document: a valid base the cases below spoil */
#define DOC(inst)                                                            \
    "{\"version\": 1, "                                                      \
    "\"services\": {\"demo.web.api\": {\"clusters\": {\"default\": "         \
    "{\"instances\": [" inst "]}}}}}"

#define INST(extra)                                                          \
    "{\"id\": \"a\", \"address\": \"127.0.0.1:80\"" extra "}"

#define IPATH  "services.demo.web.api.clusters.default.instances[0]"


static const bad_case_t  bad_cases[] = {

    /* names */
    { "{\"version\": 1, \"services\": {\"Demo.web.api\": {}}}",
      "services: invalid service name \"Demo.web.api\"" },
    { "{\"version\": 1, \"services\": {\"demo.web\": {}}}",
      "invalid service name \"demo.web\"" },
    { "{\"version\": 1, \"services\": {\"demo..api\": {}}}",
      "invalid service name \"demo..api\"" },
    { "{\"version\": 1, \"services\": {\"a.b.c.d\": {}}}",
      "invalid service name \"a.b.c.d\"" },
    { "{\"version\": 1, "
      "\"services\": {\"a.b.c\": {\"clusters\": {\"bad cluster!\": {}}}}}",
      "services.a.b.c.clusters: invalid cluster name \"bad cluster!\"" },
    { "{\"version\": 1, \"services\": {\"a.b.c\": {\"clusters\": {\"\": {}}}}}",
      "invalid cluster name \"\"" },

    /* required keys */
    { DOC("{\"address\": \"127.0.0.1:80\"}"),
      IPATH ": missing required key \"id\"" },
    { DOC("{\"id\": \"a\"}"),
      IPATH ": missing required key \"address\"" },

    /* id */
    { DOC("{\"id\": \"a b\", \"address\": \"127.0.0.1:80\"}"),
      IPATH ".id: must be 1..127 printable characters without spaces or "
      "quotes, got \"a b\"" },
    { DOC("{\"id\": \"\", \"address\": \"127.0.0.1:80\"}"),
      IPATH ".id: must be 1..127" },
    { DOC("{\"id\": 7, \"address\": \"127.0.0.1:80\"}"),
      IPATH ".id: must be a string, got 7" },

    /* address */
    { DOC("{\"id\": \"a\", \"address\": \"300.1.1.1:80\"}"),
      IPATH ".address: must be a numeric IPv4:port or [IPv6]:port, "
      "got \"300.1.1.1:80\"" },
    { DOC("{\"id\": \"a\", \"address\": \"127.0.0.1\"}"),
      IPATH ".address: must be a numeric IPv4:port or [IPv6]:port, "
      "got \"127.0.0.1\"" },
    { DOC("{\"id\": \"a\", \"address\": \"localhost:80\"}"),
      IPATH ".address: must be a numeric IPv4:port or [IPv6]:port, "
      "got \"localhost:80\"" },
    { DOC("{\"id\": \"a\", \"address\": \"127.0.0.1:0\"}"),
      IPATH ".address: must be a numeric" },
    { DOC("{\"id\": \"a\", \"address\": \"127.0.0.1:65536\"}"),
      IPATH ".address: must be a numeric" },
    { DOC("{\"id\": \"a\", \"address\": \"::1:80\"}"),
      IPATH ".address: must be a numeric" },
    { DOC("{\"id\": \"a\", \"address\": \"[::1]\"}"),
      IPATH ".address: must be a numeric" },
    { DOC("{\"id\": \"a\", \"address\": null}"),
      IPATH ".address: must be a string, got null" },

    /* weight */
    { DOC(INST(", \"weight\": 0")),
      IPATH ".weight: must be an integer 1..1000, got 0" },
    { DOC(INST(", \"weight\": 1001")),
      IPATH ".weight: must be an integer 1..1000, got 1001" },
    { DOC(INST(", \"weight\": -1")),
      IPATH ".weight: must be an integer 1..1000, got -1" },
    { DOC(INST(", \"weight\": \"5\"")),
      IPATH ".weight: must be an integer 1..1000, got \"5\"" },
    { DOC(INST(", \"weight\": 5.5")),
      IPATH ".weight: must be an integer 1..1000, got 5.5" },
    { DOC(INST(", \"weight\": true")),
      IPATH ".weight: must be an integer 1..1000, got true" },
    { DOC(INST(", \"weight\": 99999999999999999999")),
      "line 1" },

    /* env, state, version */
    { DOC(INST(", \"env\": \"staging\"")),
      IPATH ".env: must be \"prod\" or \"canary\", got \"staging\"" },
    { DOC(INST(", \"env\": \"PROD\"")),
      IPATH ".env: must be \"prod\" or \"canary\", got \"PROD\"" },
    { DOC(INST(", \"env\": 1")),
      IPATH ".env: must be a string, got 1" },
    { DOC(INST(", \"state\": \"gone\"")),
      IPATH ".state: must be \"up\", \"draining\" or \"down\", got \"gone\"" },
    { DOC(INST(", \"state\": false")),
      IPATH ".state: must be a string, got false" },
    { DOC(INST(", \"version\": \"v 1\"")),
      IPATH ".version: must be 0..63 printable characters" },
    { DOC(INST(", \"version\": "
               "\"0123456789012345678901234567890123456789012345678901234567"
               "890123\"")),
      IPATH ".version: must be 0..63 printable characters" },

    /* overrides */
    { DOC(INST(", \"override\": {\"weight\": 0}")),
      IPATH ".override.weight: must be an integer 1..1000, got 0" },
    { DOC(INST(", \"override\": {\"drain\": \"yes\"}")),
      IPATH ".override.drain: must be true or false, got \"yes\"" },
    { DOC(INST(", \"override\": {\"down\": 1}")),
      IPATH ".override.down: must be true or false, got 1" },
    { DOC(INST(", \"override\": true")),
      IPATH ".override: must be an object, got true" },

    /* a removal under way (admin API) */
    { DOC(INST(", \"removing\": {\"since\": 1}")),
      IPATH ".removing: missing required key \"deadline\"" },
    { DOC(INST(", \"removing\": {\"since\": 1, \"deadline\": 0}")),
      IPATH ".removing.deadline: must be a Unix time in milliseconds, "
      "got 0" },
    { DOC(INST(", \"removing\": {\"since\": \"now\", \"deadline\": 2}")),
      IPATH ".removing.since: must be a Unix time in milliseconds, "
      "got \"now\"" },
    { DOC(INST(", \"removing\": {\"since\": 1, \"deadline\": 2, "
               "\"by\": 3}")),
      IPATH ".removing: unknown key \"by\" (known: since, deadline)" },
    { DOC(INST(", \"removing\": [], \"weight\": 2")),
      IPATH ".removing: must be an object, got an array" },
    /* the path is cut back after "removing" */
    { DOC(INST(", \"removing\": {\"since\": 1, \"deadline\": 2}, "
               "\"override\": {\"down\": 1}")),
      IPATH ".override.down: must be true or false, got 1" },

    /* unknown keys, at every level */
    { "{\"servces\": {}}",
      "document: unknown key \"servces\" (known: version, services)" },
    { "{\"version\": 1, \"services\": {\"a.b.c\": {\"cluster\": {}}}}",
      "services.a.b.c: unknown key \"cluster\" (known: clusters)" },
    { "{\"version\": 1, \"services\": {\"a.b.c\": {\"clusters\": {\"d\": "
      "{\"instance\": []}}}}}",
      "services.a.b.c.clusters.d: unknown key \"instance\"" },
    { DOC(INST(", \"wieght\": 5")),
      IPATH ": unknown key \"wieght\" (known: id, address, weight, env, "
      "version, state, override, removing)" },
    { DOC(INST(", \"override\": {\"weigth\": 5}")),
      IPATH ".override: unknown key \"weigth\" (known: weight, drain, down)" },

    /* shapes */
    { "{\"version\": 2, \"services\": {}}",
      "version: must be 1 (the only version), got 2" },
    { "{\"version\": \"1\"}",
      "version: must be 1 (the only version), got \"1\"" },
    { "{\"version\": 1, \"services\": []}",
      "services: must be an object, got an array" },
    { "{\"version\": 1, \"services\": {\"a.b.c\": []}}",
      "services.a.b.c: must be an object, got an array" },
    { "{\"version\": 1, \"services\": {\"a.b.c\": {\"clusters\": []}}}",
      "services.a.b.c.clusters: must be an object, got an array" },
    { "{\"version\": 1, "
      "\"services\": {\"a.b.c\": {\"clusters\": {\"d\": null}}}}",
      "services.a.b.c.clusters.d: must be an object, got null" },
    { "{\"version\": 1, \"services\": {\"a.b.c\": {\"clusters\": {\"d\": "
      "{\"instances\": {}}}}}}",
      "services.a.b.c.clusters.d.instances: must be an array, got an object" },
    { "{\"version\": 1, \"services\": {\"a.b.c\": {\"clusters\": {\"d\": "
      "{\"canary\": [1]}}}}}",
      "services.a.b.c.clusters.d.canary: must be an object, got an array" },
    { DOC("\"a\""),
      IPATH ": must be an object, got \"a\"" },

    /* JSON itself */
    { "{\"version\": 1, \"services\": {}, \"services\": {}}",
      "duplicate object key" },
    { "{\"version\": 1, \"services\": {},}",
      "line 1, column " },
    { "{\"version\": 1, \"services\": {}} x",
      "line 1, column " },
    { "{\"version\": 1, \"services\": {}}\n\n   {",
      "line 3, column " },
};


static char *
fixture_path(const char *name)
{
    char        *p;
    size_t       dlen;
    const char  *slash;

    slash = strrchr(__FILE__, '/');
    dlen = slash ? (size_t) (slash - __FILE__ + 1) : 0;

    p = malloc(dlen + strlen("fixtures/state/") + strlen(name) + 1);
    assert_non_null(p);

    sprintf(p, "%.*sfixtures/state/%s", (int) dlen, __FILE__, name);

    return p;
}


static char *
read_text(const char *path, size_t *len)
{
    FILE    *f;
    char    *buf;
    long     n;

    f = fopen(path, "rb");
    assert_non_null(f);

    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n >= 0);
    rewind(f);

    buf = malloc(n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, n, f), (size_t) n);
    buf[n] = '\0';

    fclose(f);

    if (len != NULL) {
        *len = (size_t) n;
    }

    return buf;
}


static void
write_text(const char *path, const char *text, size_t len)
{
    FILE  *f;

    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}


static char *
make_tmpdir(void)
{
    char  *dir;

    dir = strdup("/tmp/test_state.XXXXXX");
    assert_non_null(dir);
    assert_non_null(mkdtemp(dir));

    return dir;
}


/* one level deep is all the tests create */

static void
remove_tree(const char *dir)
{
    DIR            *d;
    char            path[1024];
    struct dirent  *e;

    d = opendir(dir);
    assert_non_null(d);

    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }

        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);

        if (unlink(path) != 0) {
            assert_int_equal(rmdir(path), 0);
        }
    }

    closedir(d);
    assert_int_equal(rmdir(dir), 0);
}


static int
count_entries(const char *dir)
{
    int             n;
    DIR            *d;
    struct dirent  *e;

    n = 0;
    d = opendir(dir);
    assert_non_null(d);

    while ((e = readdir(d)) != NULL) {
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    }

    closedir(d);

    return n;
}


/* one service, one cluster, n instances */

static char *
instances_doc(size_t n)
{
    char    *buf, *p;
    size_t   i;

    buf = malloc(128 + n * 64);
    assert_non_null(buf);

    p = buf + sprintf(buf, "{\"version\": 1, "
                           "\"services\": {\"a.b.c\": {\"clusters\": "
                      "{\"d\": {\"instances\": [");

    for (i = 0; i < n; i++) {
        p += sprintf(p, "%s{\"id\": \"i%zu\", "
                     "\"address\": \"10.%zu.%zu.%zu:80\"}",
                     i ? "," : "", i, (i >> 16) & 255, (i >> 8) & 255,
                     i & 255);
    }

    strcpy(p, "]}}}}}");

    return buf;
}


/* a canary holding arrays nested so that the document is depth deep */

static char *
nested_doc(size_t depth)
{
    char    *buf, *p;
    size_t   i, inner;

    inner = depth - 6;      /* root, services, svc, clusters, c, canary */
    buf = malloc(128 + 2 * inner);
    assert_non_null(buf);

    p = buf + sprintf(buf, "{\"version\": 1, "
                           "\"services\": {\"a.b.c\": {\"clusters\": "
                      "{\"d\": {\"canary\": {\"k\": ");

    for (i = 0; i < inner; i++) {
        *p++ = '[';
    }

    for (i = 0; i < inner; i++) {
        *p++ = ']';
    }

    strcpy(p, "}}}}}}");

    return buf;
}


static void
expect_error(const char *json, size_t len, const char *want)
{
    int              rc;
    ngx_tce_state_t  st;
    char             err[ERRLEN];

    memset(&st, 0xff, sizeof(st));
    rc = ngx_tce_state_decode(json, len, &st, err, sizeof(err));

    if (rc != -1) {
        fail_msg("accepted: %.200s", json);
    }

    assert_null(st.services);
    assert_int_equal(st.nservices, 0);
    assert_contains(err, want);
    assert_printable(err);
}


static const ngx_tce_state_service_t *
find_service(const ngx_tce_state_t *st, const char *name)
{
    size_t  i;

    for (i = 0; i < st->nservices; i++) {
        if (strcmp(st->services[i].name, name) == 0) {
            return &st->services[i];
        }
    }

    fail_msg("no service %s", name);

    return NULL;
}


static const ngx_tce_instance_t *
find_instance(const ngx_tce_state_service_t *svc, const char *id)
{
    size_t  i;

    for (i = 0; i < svc->ninstances; i++) {
        if (strcmp(svc->instances[i].id, id) == 0) {
            return &svc->instances[i];
        }
    }

    fail_msg("no instance %s in %s", id, svc->name);

    return NULL;
}


static void
assert_state_equal(const ngx_tce_state_t *a, const ngx_tce_state_t *b)
{
    size_t                          i, j;
    const ngx_tce_instance_t       *x, *y;
    const ngx_tce_state_service_t  *s, *t;

    assert_int_equal(a->nservices, b->nservices);

    for (i = 0; i < a->nservices; i++) {
        s = &a->services[i];
        t = &b->services[i];

        assert_string_equal(s->name, t->name);
        assert_int_equal(s->nclusters, t->nclusters);
        assert_int_equal(s->ninstances, t->ninstances);

        for (j = 0; j < s->nclusters; j++) {
            assert_string_equal(s->clusters[j].cluster, t->clusters[j].cluster);

            if (s->clusters[j].canary == NULL) {
                assert_null(t->clusters[j].canary);

            } else {
                assert_non_null(t->clusters[j].canary);
                assert_string_equal(s->clusters[j].canary,
                                    t->clusters[j].canary);
            }
        }

        for (j = 0; j < s->ninstances; j++) {
            x = &s->instances[j];
            y = &t->instances[j];

            assert_string_equal(x->id, y->id);
            assert_string_equal(x->cluster, y->cluster);
            assert_string_equal(x->version, y->version);
            assert_string_equal(x->addr, y->addr);
            assert_int_equal(x->socklen, y->socklen);
            assert_memory_equal(&x->sockaddr, &y->sockaddr, x->socklen);
            assert_int_equal(x->weight, y->weight);
            assert_int_equal(x->env, y->env);
            assert_int_equal(x->state, y->state);
            assert_int_equal(x->op_weight, y->op_weight);
            assert_int_equal(x->op_drain, y->op_drain);
            assert_int_equal(x->op_down, y->op_down);
        }
    }
}


static void
assert_printable(const char *s)
{
    for ( /* void */ ; *s != '\0'; s++) {
        if ((unsigned char) *s < 0x20 || (unsigned char) *s >= 0x7f) {
            fail_msg("unprintable byte 0x%02x in error",
                     (unsigned char) *s);
        }
    }
}


static void
test_minimal(void **state)
{
    char                           *path, *text, err[ERRLEN];
    ngx_tce_state_t                 st;
    const ngx_tce_instance_t       *inst;
    const ngx_tce_state_service_t  *svc;

    (void) state;

    path = fixture_path("minimal.json");
    text = read_text(path, NULL);

    assert_int_equal(ngx_tce_state_decode(text, strlen(text), &st, err,
                                          sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_int_equal(st.nservices, 1);

    svc = &st.services[0];
    assert_string_equal(svc->name, "a.b.c");
    assert_int_equal(svc->nclusters, 1);
    assert_string_equal(svc->clusters[0].cluster, "default");
    assert_null(svc->clusters[0].canary);
    assert_int_equal(svc->ninstances, 1);

    inst = &svc->instances[0];
    assert_string_equal(inst->id, "x");
    assert_string_equal(inst->cluster, "default");
    assert_string_equal(inst->addr, "192.0.2.1:8080");
    assert_int_equal(inst->sockaddr.sa.sa_family, AF_INET);
    assert_int_equal(ntohs(inst->sockaddr.sin.sin_port), 8080);
    assert_int_equal(inst->socklen, sizeof(struct sockaddr_in));

    ngx_tce_state_free(&st);
    free(text);
    free(path);
}


static void
test_empty_documents(void **state)
{
    size_t           i;
    ngx_tce_state_t  st;
    char             err[ERRLEN];

    static const char  *docs[] = {
        "{\"version\": 1}",
        "{\"version\": 1, \"services\": {}}",
        " \n\t{ \"services\" : { }, \"version\" : 1 } \n",
    };

    static const char  *doc = "{\"version\": 1, "
                              "\"services\": {\"g.h.i\": {\"clusters\": "
                              "{\"c1\": {}, \"c0\": {\"instances\": []}}}, "
                              "\"a.b.c\": {}, \"d.e.f\": {\"clusters\": {}}}}";

    (void) state;

    for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        assert_int_equal(ngx_tce_state_decode(docs[i], strlen(docs[i]), &st,
                                              err, sizeof(err)), 0);
        assert_int_equal(st.nservices, 0);
        assert_null(st.services);
        ngx_tce_state_free(&st);
    }

    /* empty services, clusters and instances are kept, sorted by name */
    assert_int_equal(ngx_tce_state_decode(doc, strlen(doc), &st, err,
                                          sizeof(err)), 0);

    assert_int_equal(st.nservices, 3);
    assert_string_equal(st.services[0].name, "a.b.c");
    assert_string_equal(st.services[1].name, "d.e.f");
    assert_string_equal(st.services[2].name, "g.h.i");
    assert_int_equal(st.services[0].nclusters, 0);
    assert_int_equal(st.services[1].nclusters, 0);
    assert_int_equal(st.services[2].nclusters, 2);
    assert_string_equal(st.services[2].clusters[0].cluster, "c0");
    assert_string_equal(st.services[2].clusters[1].cluster, "c1");
    assert_int_equal(st.services[2].ninstances, 0);

    ngx_tce_state_free(&st);
}


static void
test_full(void **state)
{
    char                           *path, err[ERRLEN];
    ngx_tce_state_t                 st;
    const ngx_tce_instance_t       *inst;
    const ngx_tce_state_service_t  *svc;

    (void) state;

    path = fixture_path("full.json");
    assert_int_equal(ngx_tce_state_load(path, &st, err, sizeof(err)), 0);

    /* services and clusters sorted by name */
    assert_int_equal(st.nservices, 3);
    assert_string_equal(st.services[0].name, "auth.idp.token_svc-2");
    assert_string_equal(st.services[1].name, "billing.core.ledger");
    assert_string_equal(st.services[2].name, "demo.web.api");
    assert_int_equal(st.services[0].nclusters, 0);
    assert_int_equal(st.services[0].ninstances, 0);

    svc = &st.services[2];
    assert_int_equal(svc->nclusters, 3);
    assert_string_equal(svc->clusters[0].cluster, "blue");
    assert_string_equal(svc->clusters[1].cluster, "default");
    assert_string_equal(svc->clusters[2].cluster, "empty");
    assert_null(svc->clusters[0].canary);
    assert_string_equal(svc->clusters[1].canary,
                        "{\"epoch\":3,\"sticky\":\"cookie:uid\","
                        "\"weight_bp\":500}");
    assert_null(svc->clusters[2].canary);

    /* grouped by cluster in cluster order, file order within one */
    assert_int_equal(svc->ninstances, 4);
    assert_string_equal(svc->instances[0].id, "api-4");
    assert_string_equal(svc->instances[1].id, "api-1");
    assert_string_equal(svc->instances[2].id, "api-2");
    assert_string_equal(svc->instances[3].id, "api-3");

    inst = find_instance(svc, "api-1");
    assert_string_equal(inst->cluster, "default");
    assert_string_equal(inst->addr, "127.0.0.1:9001");
    assert_int_equal(inst->weight, 5);
    assert_int_equal(inst->env, NGX_TCE_ENV_PROD);
    assert_string_equal(inst->version, "v1");
    assert_int_equal(inst->state, NGX_TCE_STATE_UP);

    inst = find_instance(svc, "api-2");
    assert_string_equal(inst->addr, "[::1]:9002");
    assert_int_equal(inst->weight, 1000);
    assert_int_equal(inst->env, NGX_TCE_ENV_CANARY);
    assert_string_equal(inst->version, "v2");
    assert_int_equal(inst->state, NGX_TCE_STATE_DRAINING);

    inst = find_instance(svc, "api-4");
    assert_string_equal(inst->cluster, "blue");
    assert_string_equal(inst->addr, "[2001:db8::1]:443");
    assert_int_equal(inst->state, NGX_TCE_STATE_DOWN);
    assert_int_equal(inst->op_down, 1);
    assert_int_equal(inst->op_drain, 0);
    assert_int_equal(inst->op_weight, 0);

    ngx_tce_state_free(&st);
    assert_null(st.services);
    assert_int_equal(st.nservices, 0);
    free(path);
}


static void
test_defaults(void **state)
{
    ngx_tce_state_t            st;
    const ngx_tce_instance_t  *inst;
    char                       err[ERRLEN];

    static const char  *doc = DOC(INST(""));

    (void) state;

    assert_int_equal(ngx_tce_state_decode(doc, strlen(doc), &st, err,
                                          sizeof(err)), 0);

    inst = &st.services[0].instances[0];
    assert_int_equal(inst->weight, 1);
    assert_int_equal(inst->env, NGX_TCE_ENV_PROD);
    assert_string_equal(inst->version, "");
    assert_int_equal(inst->state, NGX_TCE_STATE_UP);
    assert_int_equal(inst->op_weight, 0);
    assert_int_equal(inst->op_drain, 0);
    assert_int_equal(inst->op_down, 0);
    assert_int_equal(ngx_tce_instance_weight(inst), 1);

    ngx_tce_state_free(&st);
}


static void
test_ipv6(void **state)
{
    ngx_tce_state_t            st;
    struct in6_addr            want;
    const ngx_tce_instance_t  *inst;
    char                       err[ERRLEN];

    static const char  *doc =
        DOC("{\"id\": \"v6\", \"address\": \"[FE80:0000::0001]:65535\"}");

    (void) state;

    assert_int_equal(ngx_tce_state_decode(doc, strlen(doc), &st, err,
                                          sizeof(err)), 0);

    inst = &st.services[0].instances[0];
    assert_string_equal(inst->addr, "[fe80::1]:65535");
    assert_int_equal(inst->sockaddr.sa.sa_family, AF_INET6);
    assert_int_equal(inst->socklen, sizeof(struct sockaddr_in6));
    assert_int_equal(ntohs(inst->sockaddr.sin6.sin6_port), 65535);
    assert_int_equal(inet_pton(AF_INET6, "fe80::1", &want), 1);
    assert_memory_equal(&inst->sockaddr.sin6.sin6_addr, &want, sizeof(want));

    ngx_tce_state_free(&st);
}


static void
test_overrides(void **state)
{
    ngx_tce_state_t            st;
    const ngx_tce_instance_t  *inst;
    char                       err[ERRLEN];

    static const char  *doc =
        DOC(INST(", \"weight\": 7, \"override\": "
                 "{\"weight\": 3, \"drain\": true, \"down\": false}") ","
            "{\"id\": \"b\", \"address\": \"127.0.0.2:80\", "
            "\"override\": {}}");

    (void) state;

    assert_int_equal(ngx_tce_state_decode(doc, strlen(doc), &st, err,
                                          sizeof(err)), 0);

    inst = find_instance(&st.services[0], "a");
    assert_int_equal(inst->weight, 7);
    assert_int_equal(inst->op_weight, 3);
    assert_int_equal(inst->op_drain, 1);
    assert_int_equal(inst->op_down, 0);
    assert_int_equal(ngx_tce_instance_state(inst), NGX_TCE_STATE_DRAINING);

    inst = find_instance(&st.services[0], "b");
    assert_int_equal(inst->op_weight, 0);
    assert_int_equal(inst->op_drain, 0);
    assert_int_equal(inst->op_down, 0);

    ngx_tce_state_free(&st);
}


static void
test_round_trip(void **state)
{
    char             *path, *text, *again, *p, err[ERRLEN];
    ngx_tce_state_t   a, b;

    (void) state;

    path = fixture_path("full.json");
    assert_int_equal(ngx_tce_state_load(path, &a, err, sizeof(err)), 0);

    text = ngx_tce_state_encode(&a);
    assert_non_null(text);

    assert_int_equal(ngx_tce_state_decode(text, strlen(text), &b, err,
                                          sizeof(err)), 0);
    assert_state_equal(&a, &b);

    /* stable: encoding the decoded text gives the same bytes */
    again = ngx_tce_state_encode(&b);
    assert_non_null(again);
    assert_string_equal(text, again);

    /* indented by 2, keys sorted, defaults explicit, newline at end */
    assert_int_equal(text[strlen(text) - 1], '\n');
    assert_int_equal(strncmp(text, "{\n  \"services\": {\n",
                             strlen("{\n  \"services\": {\n")), 0);
    assert_contains(text, "\"version\": 1\n}\n");
    assert_contains(text, "\"canary\": {\n            \"epoch\": 3,");

    p = strstr(text, "\"id\": \"api-3\"");
    assert_non_null(p);
    assert_contains(text, "\"address\": \"10.0.0.3:80\",\n"
                    "              \"env\": \"prod\",\n"
                    "              \"id\": \"api-3\",\n"
                    "              \"state\": \"up\",\n"
                    "              \"version\": \"\",\n"
                    "              \"weight\": 1\n");
    assert_contains(text, "\"override\": {\n"
                    "                \"drain\": true,\n"
                    "                \"weight\": 3\n"
                    "              },\n");

    ngx_tce_state_free(&a);
    ngx_tce_state_free(&b);
    free(again);
    free(text);
    free(path);
}


static void
test_encode_empty(void **state)
{
    char             *text;
    ngx_tce_state_t   st;

    (void) state;

    memset(&st, 0, sizeof(st));

    text = ngx_tce_state_encode(&st);
    assert_non_null(text);
    assert_string_equal(text, "{\n  \"services\": {},\n  \"version\": 1\n}\n");

    free(text);
}


static void
test_encode_omits_unset_override(void **state)
{
    char             *text, err[ERRLEN];
    ngx_tce_state_t   st;

    static const char  *doc = DOC(INST(", \"override\": {}"));

    (void) state;

    assert_int_equal(ngx_tce_state_decode(doc, strlen(doc), &st, err,
                                          sizeof(err)), 0);

    text = ngx_tce_state_encode(&st);
    assert_non_null(text);
    assert_null(strstr(text, "override"));

    st.services[0].instances[0].op_down = 1;
    free(text);

    text = ngx_tce_state_encode(&st);
    assert_non_null(text);
    assert_contains(text, "\"override\": {\n                \"down\": true\n"
                    "              }");

    ngx_tce_state_free(&st);
    free(text);
}


/* a registry built by hand: instances of clusters not listed in it */

static void
test_encode_instance_without_cluster(void **state)
{
    char                     *text, err[ERRLEN];
    ngx_tce_state_t           st, back;
    ngx_tce_instance_t        inst;
    ngx_tce_state_cluster_t   cl;
    ngx_tce_state_service_t   svc;

    (void) state;

    memset(&inst, 0, sizeof(inst));
    strcpy(inst.id, "x1");
    strcpy(inst.cluster, "east");
    assert_int_equal(ngx_tce_addr_parse("10.1.1.1:81", 11, &inst), 0);
    inst.weight = 2;

    memset(&cl, 0, sizeof(cl));
    strcpy(cl.cluster, "west");
    cl.canary = "{\"weight\":10}";

    memset(&svc, 0, sizeof(svc));
    strcpy(svc.name, "p.s.m");
    svc.instances = &inst;
    svc.ninstances = 1;
    svc.clusters = &cl;
    svc.nclusters = 1;

    st.services = &svc;
    st.nservices = 1;

    text = ngx_tce_state_encode(&st);
    assert_non_null(text);

    assert_int_equal(ngx_tce_state_decode(text, strlen(text), &back, err,
                                          sizeof(err)), 0);
    assert_int_equal(back.services[0].nclusters, 2);
    assert_string_equal(back.services[0].clusters[0].cluster, "east");
    assert_string_equal(back.services[0].clusters[1].cluster, "west");
    assert_string_equal(back.services[0].clusters[1].canary, cl.canary);
    assert_string_equal(back.services[0].instances[0].cluster, "east");

    ngx_tce_state_free(&back);
    free(text);

    /* a canary that is not a JSON object cannot be encoded */
    cl.canary = "[1]";
    assert_null(ngx_tce_state_encode(&st));

    cl.canary = "{bad";
    assert_null(ngx_tce_state_encode(&st));
}


static void
test_invalid_fields(void **state)
{
    size_t  i;

    (void) state;

    for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        expect_error(bad_cases[i].json, strlen(bad_cases[i].json),
                     bad_cases[i].want);
    }
}


/*
 * "{}" or a stray JSON file named by mistake is not an empty registry:
 * "version" is required; a document's first real mistake comes first.
 */

static void
test_version_required(void **state)
{
    size_t           i;
    ngx_tce_state_t  st;
    char             err[ERRLEN];

    static const char  *docs[] = {
        "{}",
        " \n\t{ \"services\" : { } } \n",
        "{\"services\": {\"a.b.c\": {\"clusters\": {\"default\": "
        "{\"instances\": [{\"id\": \"x\", "
        "\"address\": \"192.0.2.1:80\"}]}}}}}",
    };

    static const char  *bad = "{\"services\": {\"a.b.c\": {\"clusterz\": "
                              "{}}}}";

    (void) state;

    for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        assert_int_equal(ngx_tce_state_decode(docs[i], strlen(docs[i]), &st,
                                              err, sizeof(err)), -1);
        assert_string_equal(err, "document: missing required key "
                            "\"version\" (the first line of a state file "
                            "is {\"version\": 1, ...)");
        assert_int_equal(st.nservices, 0);
        assert_null(st.services);
    }

    assert_int_equal(ngx_tce_state_decode(bad, strlen(bad), &st, err,
                                          sizeof(err)), -1);
    assert_contains(err, "unknown key \"clusterz\"");
}


static void
test_error_path_example(void **state)
{
    ngx_tce_state_t  st;
    char             err[ERRLEN];

    static const char  *doc = DOC(INST("") "," INST("") ","
                                  "{\"id\": \"c\", \"address\": \"[::1]:1\", "
                                  "\"weight\": 0}");

    (void) state;

    assert_int_equal(ngx_tce_state_decode(doc, strlen(doc), &st, err,
                                          sizeof(err)), -1);
    assert_string_equal(err, "services.demo.web.api.clusters.default."
                        "instances[2].weight: must be an integer 1..1000, "
                        "got 0");
}


static void
test_duplicate_ids(void **state)
{
    ngx_tce_state_t  st;
    char             err[ERRLEN];

    /* the same id in another service is fine */
    static const char  *ok =
        "{\"version\": 1, \"services\": {"
        "\"a.b.c\": {\"clusters\": {\"d\": {\"instances\": ["
        "{\"id\": \"x\", \"address\": \"10.0.0.1:1\"}]}}},"
        "\"a.b.d\": {\"clusters\": {\"d\": {\"instances\": ["
        "{\"id\": \"x\", \"address\": \"10.0.0.1:1\"}]}}}}}";

    static const char  *across =
        "{\"version\": 1, \"services\": {\"a.b.c\": {\"clusters\": {"
        "\"zz\": {\"instances\": ["
        "{\"id\": \"y\", \"address\": \"10.0.0.9:1\"},"
        "{\"id\": \"dup\", \"address\": \"10.0.0.1:1\"}]},"
        "\"aa\": {\"instances\": ["
        "{\"id\": \"dup\", \"address\": \"10.0.0.2:1\"}]}}}}}";

    (void) state;

    expect_error(DOC(INST("") "," INST("")),
                 strlen(DOC(INST("") "," INST(""))),
                 "services.demo.web.api.clusters.default.instances[1].id: "
                 "duplicate id \"a\" (first at "
                 "clusters.default.instances[0])");

    /* across clusters of one service: reported in cluster order */
    expect_error(across, strlen(across),
                 "services.a.b.c.clusters.zz.instances[1].id: duplicate id "
                 "\"dup\" (first at clusters.aa.instances[0])");

    assert_int_equal(ngx_tce_state_decode(ok, strlen(ok), &st, err,
                                          sizeof(err)), 0);
    ngx_tce_state_free(&st);
}


static void
test_truncated(void **state)
{
    char    *path, *text;
    size_t   len, n;

    (void) state;

    path = fixture_path("full.json");
    text = read_text(path, &len);

    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' ')) {
        len--;
    }

    /* every proper prefix is a syntax error with a position */
    for (n = 0; n < len; n++) {
        expect_error(text, n, "line ");
    }

    free(text);
    free(path);
}


static void
test_deep_nesting(void **state)
{
    char             *doc, err[ERRLEN];
    size_t            i;
    ngx_tce_state_t   st;

    static const char  *strings =
        "{\"version\": 1, "
        "\"services\": {\"a.b.c\": {\"clusters\": {\"d\": {\"canary\": "
        "{\"k\": \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
        "[[[[[[[[[[[[[[\\\"[[[[[[[[{{{{{{\"}}}}}}";

    (void) state;

    /* the limit itself is fine */
    doc = nested_doc(NGX_TCE_STATE_FILE_MAX_DEPTH);
    assert_int_equal(ngx_tce_state_decode(doc, strlen(doc), &st, err,
                                          sizeof(err)), 0);
    assert_non_null(st.services[0].clusters[0].canary);
    ngx_tce_state_free(&st);
    free(doc);

    doc = nested_doc(NGX_TCE_STATE_FILE_MAX_DEPTH + 1);
    expect_error(doc, strlen(doc), "nesting deeper than 64 levels");
    free(doc);

    /* a million open brackets */
    doc = malloc(1000000);
    assert_non_null(doc);
    memset(doc, '[', 1000000);
    expect_error(doc, 1000000,
                 "line 1, column 65: nesting deeper than 64 levels");

    for (i = 0; i < 1000000; i += 5) {
        memcpy(doc + i, "{\"a\":", 5);
    }

    expect_error(doc, 1000000, "nesting deeper than 64 levels");
    free(doc);

    /* brackets inside strings, escaped quote included, do not count */
    assert_int_equal(ngx_tce_state_decode(strings, strlen(strings), &st, err,
                                          sizeof(err)), 0);
    ngx_tce_state_free(&st);
}


static void
test_huge_strings(void **state)
{
    char    *doc, *p;
    size_t   big;

    (void) state;

    big = 1 << 20;
    doc = malloc(big + 256);
    assert_non_null(doc);

    /* a 1 MiB id: rejected, quoted in short */
    p = doc + sprintf(doc, "{\"version\": 1, "
                           "\"services\": {\"demo.web.api\": {\"clusters\": "
                      "{\"default\": {\"instances\": [{\"address\": "
                      "\"127.0.0.1:80\", \"id\": \"");
    memset(p, 'i', big);
    strcpy(p + big, "\"}]}}}}}");

    expect_error(doc, strlen(doc),
                 IPATH ".id: must be 1..127 printable characters without "
                 "spaces or quotes, got \"iiiiiiiiiiiiiiiiiiiiiiiiiiiiiiii\""
                 "...");

    /* a 1 MiB address */
    p = doc + sprintf(doc, "{\"version\": 1, "
                           "\"services\": {\"demo.web.api\": {\"clusters\": "
                      "{\"default\": {\"instances\": [{\"id\": \"a\", "
                      "\"address\": \"");
    memset(p, '1', big);
    strcpy(p + big, "\"}]}}}}}");

    expect_error(doc, strlen(doc), IPATH ".address: must be a numeric");

    /* a 1 MiB service name */
    p = doc + sprintf(doc, "{\"version\": 1, \"services\": {\"");
    memset(p, 's', big);
    strcpy(p + big, "\": {}}}");

    expect_error(doc, strlen(doc), "services: invalid service name \"sss");

    /* a 1 MiB unknown key */
    p = doc + sprintf(doc, "{\"");
    memset(p, 'k', big);
    strcpy(p + big, "\": 1}");

    expect_error(doc, strlen(doc), "document: unknown key \"kkk");

    free(doc);
}


static void
test_nul_bytes(void **state)
{
    static const char  raw[] =
        DOC("{\"id\": \"a\0b\", \"address\": \"127.0.0.1:80\"}");
    static const char  escaped[] =
        DOC("{\"id\": \"a\\u0000b\", \"address\": \"127.0.0.1:80\"}");
    static const char  key[] = "{\"version\": 1, "
                               "\"services\": {\"a.b.c\\u0000x\": {}}}";
    static const char  outside[] = "{\"version\": 1, \"services\": {}}\0";

    (void) state;

    expect_error(raw, sizeof(raw) - 1, "line 1, column ");
    expect_error(escaped, sizeof(escaped) - 1, "\\u0000 is not allowed");
    expect_error(key, sizeof(key) - 1, "NUL byte in object key");
    expect_error(outside, sizeof(outside) - 1, "line 1, column ");
}


static void
test_non_object_root(void **state)
{
    (void) state;

    expect_error("[]", 2, "document: must be an object, got an array");
    expect_error("[{\"services\": {}}]", 18,
                 "document: must be an object, got an array");
    expect_error("\"x\"", 3, "line 1");
    expect_error("5", 1, "line 1");
    expect_error("null", 4, "line 1");
    expect_error("", 0, "line 1");
    expect_error("   \n  ", 6, "line 2");
}


static void
test_garbage(void **state)
{
    char      *buf;
    size_t     i, n;
    uint32_t   x;

    (void) state;

    n = 2 << 20;
    buf = malloc(n);
    assert_non_null(buf);

    /* binary noise */
    x = 12345;

    for (i = 0; i < n; i++) {
        x = x * 1103515245 + 12345;
        buf[i] = (char) (x >> 16);
    }

    expect_error(buf, n, "line ");

    /* the same after an opening brace, then as printable noise */
    buf[0] = '{';
    expect_error(buf, n, "line ");

    for (i = 1; i < n; i++) {
        buf[i] = (char) (0x20 + (unsigned char) buf[i] % 0x5f);
    }

    expect_error(buf, n, "line ");

    /* a valid document followed by noise */
    i = (size_t) sprintf(buf, "{\"version\": 1, \"services\": {}}");
    buf[i] = ',';
    expect_error(buf, n, "line 1, column ");

    free(buf);
}


static void
test_limits(void **state)
{
    char             *doc, *p, err[ERRLEN];
    size_t            i, max;
    ngx_tce_state_t   st;

    (void) state;

    max = NGX_TCE_STATE_FILE_MAX_ITEMS;

    doc = instances_doc(max);
    assert_int_equal(ngx_tce_state_decode(doc, strlen(doc), &st, err,
                                          sizeof(err)), 0);
    assert_int_equal(st.services[0].ninstances, max);
    assert_string_equal(st.services[0].instances[max - 1].id, "i99999");
    ngx_tce_state_free(&st);
    free(doc);

    doc = instances_doc(max + 1);
    expect_error(doc, strlen(doc), "services.a.b.c.clusters.d.instances: "
                 "more than 100000 instances in the file");
    free(doc);

    /* services */
    doc = malloc(64 + (max + 1) * 32);
    assert_non_null(doc);

    p = doc + sprintf(doc, "{\"version\": 1, \"services\": {");

    for (i = 0; i <= max; i++) {
        p += sprintf(p, "%s\"p.s.m%zu\": {}", i ? "," : "", i);
    }

    strcpy(p, "}}");

    expect_error(doc, strlen(doc), "services: more than 100000 services");

    /* clusters, over the whole file */
    p = doc + sprintf(doc, "{\"version\": 1, "
                           "\"services\": {\"a.b.c\": {\"clusters\": {");

    for (i = 0; i < max; i++) {
        p += sprintf(p, "%s\"c%zu\": {}", i ? "," : "", i);
    }

    strcpy(p, "}}, \"a.b.d\": {\"clusters\": {\"x\": {}}}}}");

    expect_error(doc, strlen(doc), "services.a.b.d.clusters: more than "
                 "100000 clusters in the file");

    free(doc);
}


static void
test_small_err_buffer(void **state)
{
    ngx_tce_state_t  st;
    char             err[8];

    static const char  *doc = "{\"servces\": {}}";

    (void) state;

    memset(err, 'X', sizeof(err));
    assert_int_equal(ngx_tce_state_decode(doc, strlen(doc), &st, err,
                                          sizeof(err)), -1);
    assert_string_equal(err, "documen");

    memset(err, 'X', sizeof(err));
    assert_int_equal(ngx_tce_state_decode(doc, strlen(doc), &st, err, 1),
                     -1);
    assert_int_equal(err[0], '\0');

    assert_int_equal(ngx_tce_state_decode(doc, strlen(doc), &st, NULL, 0),
                     -1);
    assert_int_equal(ngx_tce_state_decode("{", 1, &st, NULL, 0), -1);
    assert_int_equal(ngx_tce_state_load("/nonexistent/x", &st, NULL, 0), -2);
}


static void
test_load(void **state)
{
    char             *dir, path[1024], err[ERRLEN];
    ngx_tce_state_t   st;

    (void) state;

    dir = make_tmpdir();
    snprintf(path, sizeof(path), "%s/state.json", dir);

    /* an empty file is an error, not a missing one */
    write_text(path, "", 0);
    memset(&st, 0xff, sizeof(st));
    assert_int_equal(ngx_tce_state_load(path, &st, err, sizeof(err)), -1);
    assert_null(st.services);
    assert_contains(err, "line 1");

    /* semantic errors come through as they are, without the path */
    write_text(path, "{\"version\": 2}", 14);
    assert_int_equal(ngx_tce_state_load(path, &st, err, sizeof(err)), -1);
    assert_string_equal(err, "version: must be 1 (the only version), got 2");

    write_text(path, DOC(INST("")), strlen(DOC(INST(""))));
    assert_int_equal(ngx_tce_state_load(path, &st, err, sizeof(err)), 0);
    assert_int_equal(find_service(&st, "demo.web.api")->ninstances, 1);
    ngx_tce_state_free(&st);

    remove_tree(dir);
    free(dir);
}


static void
test_load_missing(void **state)
{
    char             *dir, path[1024], err[ERRLEN];
    ngx_tce_state_t   st;

    (void) state;

    dir = make_tmpdir();
    snprintf(path, sizeof(path), "%s/none.json", dir);

    memset(&st, 0xff, sizeof(st));
    assert_int_equal(ngx_tce_state_load(path, &st, err, sizeof(err)), -2);
    assert_null(st.services);
    assert_int_equal(st.nservices, 0);
    assert_contains(err, "No such file");
    assert_null(strstr(err, dir));

    snprintf(path, sizeof(path), "%s/no/dir/none.json", dir);
    assert_int_equal(ngx_tce_state_load(path, &st, err, sizeof(err)), -2);

    remove_tree(dir);
    free(dir);
}


static void
test_load_not_regular(void **state)
{
    char             *dir, path[1024], err[ERRLEN];
    ngx_tce_state_t   st;

    (void) state;

    dir = make_tmpdir();
    assert_int_equal(ngx_tce_state_load(dir, &st, err, sizeof(err)), -1);
    assert_contains(err, "not a regular file");

    /* a directory on the way is not a missing file */
    snprintf(path, sizeof(path), "%s/file", dir);
    write_text(path, "{}", 2);
    snprintf(path, sizeof(path), "%s/file/state.json", dir);
    assert_int_equal(ngx_tce_state_load(path, &st, err, sizeof(err)), -1);
    assert_contains(err, "Not a directory");

    remove_tree(dir);
    free(dir);
}


static void
test_load_too_large(void **state)
{
    int               fd;
    char             *dir, path[1024], err[ERRLEN];
    ngx_tce_state_t   st;

    (void) state;

    dir = make_tmpdir();
    snprintf(path, sizeof(path), "%s/big.json", dir);

    /* sparse: costs no disk */
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd != -1);
    assert_int_equal(ftruncate(fd, NGX_TCE_STATE_FILE_MAX_SIZE + 1), 0);
    assert_int_equal(close(fd), 0);

    assert_int_equal(ngx_tce_state_load(path, &st, err, sizeof(err)), -1);
    assert_contains(err, "larger than 64 MiB");

    remove_tree(dir);
    free(dir);
}


static void
test_write_replaces(void **state)
{
    char             *dir, *text, *back, path[1024], err[ERRLEN];
    size_t            len;
    ngx_tce_state_t   st, again;

    (void) state;

    dir = make_tmpdir();
    snprintf(path, sizeof(path), "%s/state.json", dir);
    write_text(path, "old contents", 12);

    /* the encoded registry, written, loads back the same */
    assert_int_equal(ngx_tce_state_decode(DOC(INST("")),
                                          strlen(DOC(INST(""))), &st, err,
                                          sizeof(err)), 0);
    text = ngx_tce_state_encode(&st);
    assert_non_null(text);

    assert_int_equal(ngx_tce_state_write(path, text, strlen(text), err,
                                         sizeof(err)), 0);

    back = read_text(path, &len);
    assert_int_equal(len, strlen(text));
    assert_string_equal(back, text);
    free(back);

    assert_int_equal(ngx_tce_state_load(path, &again, err, sizeof(err)), 0);
    assert_state_equal(&st, &again);
    ngx_tce_state_free(&again);

    /* no temp file left behind */
    assert_int_equal(count_entries(dir), 1);

    /* replaced again, by nothing at all */
    assert_int_equal(ngx_tce_state_write(path, "", 0, err, sizeof(err)), 0);
    back = read_text(path, &len);
    assert_int_equal(len, 0);
    free(back);
    assert_int_equal(count_entries(dir), 1);

    ngx_tce_state_free(&st);
    free(text);
    remove_tree(dir);
    free(dir);
}


static void
test_write_missing_dir(void **state)
{
    char  *dir, path[1024], err[ERRLEN];

    (void) state;

    dir = make_tmpdir();
    snprintf(path, sizeof(path), "%s/nope/state.json", dir);

    assert_int_equal(ngx_tce_state_write(path, "{}\n", 3, err, sizeof(err)),
                     -1);
    assert_contains(err, "open temp file: No such file or directory");
    assert_int_equal(count_entries(dir), 0);

    remove_tree(dir);
    free(dir);
}


static void
test_write_failure_keeps_old(void **state)
{
    char    *dir, *back, path[1024], tmp[1100], err[ERRLEN];
    size_t   len;

    (void) state;

    dir = make_tmpdir();
    snprintf(path, sizeof(path), "%s/state.json", dir);
    write_text(path, "old contents", 12);

    /* the temp file cannot be created: the old file stays as it was */
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long) getpid());
    assert_int_equal(mkdir(tmp, 0755), 0);

    assert_int_equal(ngx_tce_state_write(path, "new", 3, err, sizeof(err)),
                     -1);
    assert_contains(err, "open temp file: Is a directory");

    back = read_text(path, &len);
    assert_string_equal(back, "old contents");
    free(back);
    assert_int_equal(rmdir(tmp), 0);

    /* the rename fails (path is a non-empty directory): temp removed */
    snprintf(path, sizeof(path), "%s/sub", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(tmp, sizeof(tmp), "%s/keep", path);
    write_text(tmp, "kept", 4);

    assert_int_equal(ngx_tce_state_write(path, "new", 3, err, sizeof(err)),
                     -1);
    assert_contains(err, "rename: Is a directory");
    assert_int_equal(count_entries(dir), 2);
    assert_int_equal(count_entries(path), 1);

    back = read_text(tmp, &len);
    assert_string_equal(back, "kept");
    free(back);

    remove_tree(path);
    remove_tree(dir);
    free(dir);
}


static void
test_write_ordered(void **state)
{
    char               *dir, *back, path[1024], err[ERRLEN];
    size_t              len;
    volatile uint64_t   last;

    (void) state;

    dir = make_tmpdir();
    snprintf(path, sizeof(path), "%s/snap.json", dir);
    last = 0;

    /* in order: each write replaces the file and records its number */
    assert_int_equal(ngx_tce_state_write_ordered(path, "one", 3, 1, &last,
                                                 err, sizeof(err)), 0);
    assert_int_equal(last, 1);
    assert_int_equal(ngx_tce_state_write_ordered(path, "three", 5, 3,
                                                 &last, err, sizeof(err)),
                     0);
    assert_int_equal(last, 3);

    /* an older content finishing late is dropped: path and last kept */
    assert_int_equal(ngx_tce_state_write_ordered(path, "two", 3, 2, &last,
                                                 err, sizeof(err)), 1);
    assert_int_equal(last, 3);

    back = read_text(path, &len);
    assert_string_equal(back, "three");
    free(back);
    assert_int_equal(count_entries(dir), 1);       /* no temp file left */

    remove_tree(dir);
    free(dir);
}


static void
test_free_empty(void **state)
{
    ngx_tce_state_t  st;

    (void) state;

    memset(&st, 0, sizeof(st));
    ngx_tce_state_free(&st);
    ngx_tce_state_free(&st);

    assert_null(st.services);
    assert_int_equal(st.nservices, 0);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_minimal),
        cmocka_unit_test(test_empty_documents),
        cmocka_unit_test(test_version_required),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_encode_empty),
        cmocka_unit_test(test_encode_omits_unset_override),
        cmocka_unit_test(test_encode_instance_without_cluster),
        cmocka_unit_test(test_invalid_fields),
        cmocka_unit_test(test_error_path_example),
        cmocka_unit_test(test_duplicate_ids),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_huge_strings),
        cmocka_unit_test(test_nul_bytes),
        cmocka_unit_test(test_non_object_root),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_small_err_buffer),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_load_missing),
        cmocka_unit_test(test_load_not_regular),
        cmocka_unit_test(test_load_too_large),
        cmocka_unit_test(test_write_replaces),
        cmocka_unit_test(test_write_missing_dir),
        cmocka_unit_test(test_write_failure_keeps_old),
        cmocka_unit_test(test_write_ordered),
        cmocka_unit_test(test_free_empty),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
