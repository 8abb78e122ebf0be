/*
 * Tests of ngx_tce_consul_client against the Consul API double
 * (tests/doubles/consul_double.py, started once for the group on an
 * ephemeral port; its first output line says where).  Conditions are
 * polled with deadlines through the double's /_double/state, never
 * waited for with fixed sleeps.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <cmocka.h>
#include <jansson.h>

#include "ngx_tce_consul_parse.h"
#include "ngx_tce_consul_client.h"


#define PYTHON    "/usr/bin/python3"
#define DOUBLE    "tests/doubles/consul_double.py"
#define TOKEN     "s3cret-token"
#define SVC       "shop.cart.api"
#define WAIT_MS   300


static int setup(void **state);
static int teardown(void **state);
static uint64_t now_ms(void);
static ngx_tce_consul_client_t *client(const char *url, const char *token,
    size_t max_body);
static long control(const char *path, const char *body, json_t **state);
static long open_requests(const char *service);
static void register_instance(const char *id, const char *addr, int port,
    const char *status);
static int dead_port(void);
static void test_register_and_health(void **state);
static void test_blocking_on_multi(void **state);
static void test_blocking_times_out(void **state);
static void test_acl_token_in_header(void **state);
static void test_faults(void **state);
static void test_failover(void **state);
static void test_body_limit(void **state);
static void test_index_backwards(void **state);
static void test_catalog_and_deregister(void **state);
static void test_url_secrets(void **state);
static void test_leader_probe(void **state);
static void test_raw_answers(void **state);


static pid_t  double_pid;
static char   double_url[128];


static int
setup(void **state)
{
    int     fds[2];
    char    line[256], *p;
    FILE   *f;

    (void) state;

    if (pipe(fds) != 0) {
        return -1;
    }

    double_pid = fork();

    if (double_pid < 0) {
        return -1;
    }

    if (double_pid == 0) {
        /* the double dies with the test, even when the test aborts */
        prctl(PR_SET_PDEATHSIG, SIGKILL);

        if (getppid() == 1) {
            _exit(127);
        }

        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl(PYTHON, PYTHON, "-B", DOUBLE, "--port", "0", "--token",
              TOKEN, "--no-jitter", (char *) NULL);
        _exit(127);
    }

    close(fds[1]);
    f = fdopen(fds[0], "r");

    /* the double prints its URL once it listens: no sleep needed */
    if (f == NULL || fgets(line, sizeof(line), f) == NULL) {
        return -1;
    }

    fclose(f);

    p = strstr(line, "http://");

    if (p == NULL) {
        return -1;
    }

    p[strcspn(p, "\r\n")] = '\0';
    snprintf(double_url, sizeof(double_url), "%s", p);

    curl_global_init(CURL_GLOBAL_DEFAULT);

    return 0;
}


static int
teardown(void **state)
{
    (void) state;

    kill(double_pid, SIGTERM);
    waitpid(double_pid, NULL, 0);
    curl_global_cleanup();

    return 0;
}


static uint64_t
now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


static ngx_tce_consul_client_t *
client(const char *url, const char *token, size_t max_body)
{
    char                      err[NGX_TCE_CONSUL_CLIENT_ERR_LEN];
    const char               *urls[1];
    ngx_tce_consul_conf_t     conf;
    ngx_tce_consul_client_t  *c;

    urls[0] = url;

    memset(&conf, 0, sizeof(conf));
    conf.urls = urls;
    conf.nurls = 1;
    conf.token = token;
    conf.wait_ms = WAIT_MS;
    conf.max_body = max_body;

    c = ngx_tce_consul_client_create(&conf, err, sizeof(err));
    assert_non_null(c);

    return c;
}


/* POSTs body to the double's control API (GET when body is NULL) */

static long
control(const char *path, const char *body, json_t **state)
{
    long                      status;
    char                      url[256];
    CURL                     *easy;
    json_t                   *root;
    ngx_tce_consul_result_t   res;
    ngx_tce_consul_client_t  *c;
    ngx_tce_consul_request_t *req;

    /* reuse the client's body collection through a register request */
    c = client(double_url, NULL, 0);
    req = ngx_tce_consul_register_request(c, body ? body : "{}",
                                          body ? strlen(body) : 2, NULL, 0);
    assert_non_null(req);

    easy = ngx_tce_consul_request_handle(req);
    snprintf(url, sizeof(url), "%s%s", double_url, path);
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, body ? "POST" : "GET");

    if (body == NULL) {
        curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    }

    ngx_tce_consul_perform(req, &res);
    status = res.status;

    if (state) {
        root = json_loads(res.body, 0, NULL);
        assert_non_null(root);
        *state = root;
    }

    ngx_tce_consul_request_free(req);
    ngx_tce_consul_client_destroy(c);

    return status;
}


static long
open_requests(const char *service)
{
    long     n;
    json_t  *st;

    assert_int_equal(control("/_double/state", NULL, &st), 200);
    n = (long) json_integer_value(json_object_get(json_object_get(st,
                                                                  "open"),
                                                  service));
    json_decref(st);

    return n;
}


static void
register_instance(const char *id, const char *addr, int port,
    const char *status)
{
    char                       body[512];
    ngx_tce_consul_result_t    res;
    ngx_tce_consul_client_t   *c;
    ngx_tce_consul_request_t  *req;

    snprintf(body, sizeof(body),
             "{\"Name\": \"" SVC "\", \"ID\": \"%s\", \"Address\": \"%s\", "
             "\"Port\": %d, \"Meta\": {\"env\": \"canary\", \"version\": "
             "\"1.2\"}, \"Weights\": {\"Passing\": 3, \"Warning\": 1}, "
             "\"Check\": {\"TTL\": \"30s\", \"Status\": \"%s\"}}",
             id, addr, port, status);

    c = client(double_url, TOKEN, 0);
    req = ngx_tce_consul_register_request(c, body, strlen(body), NULL, 0);
    assert_non_null(req);
    assert_int_equal(ngx_tce_consul_perform(req, &res), 0);
    assert_int_equal(res.status, 200);
    ngx_tce_consul_request_free(req);
    ngx_tce_consul_client_destroy(c);
}


/* a local port nobody listens on */

static int
dead_port(void)
{
    int                 s, port;
    socklen_t           len;
    struct sockaddr_in  sin;

    s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(sin);

    assert_int_equal(bind(s, (struct sockaddr *) &sin, len), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *) &sin, &len), 0);
    port = ntohs(sin.sin_port);
    close(s);

    return port;
}


static void
test_register_and_health(void **state)
{
    char                       err[NGX_TCE_CONSUL_ERR_LEN];
    uint64_t                   next;
    ngx_tce_consul_result_t    res;
    ngx_tce_consul_health_t    h;
    ngx_tce_consul_client_t   *c;
    ngx_tce_consul_request_t  *req;

    (void) state;

    assert_int_equal(control("/_double/restart", "{}", NULL), 200);
    register_instance("i-1", "10.0.0.1", 8080, "passing");
    register_instance("i-2", "10.0.0.2", 8080, "critical");

    c = client(double_url, TOKEN, 0);
    req = ngx_tce_consul_health_request(c, SVC, NULL, 0, err, sizeof(err));
    assert_non_null(req);
    assert_int_equal(ngx_tce_consul_perform(req, &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.error, "");
    assert_non_null(res.index);
    assert_null(strstr(res.url, "index="));
    assert_int_equal(ngx_tce_consul_next_index(0, res.index,
                                               strlen(res.index), &next),
                     0);
    assert_true(next > 1);

    /* every state is asked; the critical instance is excluded */
    assert_int_equal(ngx_tce_consul_parse_health(res.body, res.len, NULL,
                                                 NULL, &h, err, sizeof(err)),
                     0);
    assert_int_equal(h.ninstances, 1);
    assert_int_equal(h.nexcluded, 1);
    assert_string_equal(h.instances[0].id, "node1/i-1");
    assert_string_equal(h.instances[0].addr, "10.0.0.1:8080");
    assert_int_equal(h.instances[0].weight, 3);
    assert_int_equal(h.instances[0].env, NGX_TCE_ENV_CANARY);
    ngx_tce_consul_health_free(&h);

    ngx_tce_consul_request_free(req);
    ngx_tce_consul_client_destroy(c);
}


static void
test_blocking_on_multi(void **state)
{
    int                        running, left;
    char                       err[NGX_TCE_CONSUL_ERR_LEN];
    CURLM                     *multi;
    CURLMsg                   *msg;
    uint64_t                   index, next, deadline;
    ngx_tce_consul_result_t    res;
    ngx_tce_consul_health_t    h;
    ngx_tce_consul_client_t   *c;
    ngx_tce_consul_request_t  *req, *done;

    (void) state;

    assert_int_equal(control("/_double/restart", "{}", NULL), 200);
    register_instance("i-1", "10.0.0.1", 8080, "passing");

    c = client(double_url, TOKEN, 0);

    req = ngx_tce_consul_health_request(c, SVC, NULL, 0, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_perform(req, &res), 0);
    assert_int_equal(ngx_tce_consul_next_index(0, res.index,
                                               strlen(res.index), &index),
                     0);
    ngx_tce_consul_request_free(req);

    /* the query, run as the nginx driver will run it: on a multi */
    req = ngx_tce_consul_health_request(c, SVC, NULL, index, err,
                                        sizeof(err));
    assert_non_null(req);

    multi = curl_multi_init();
    assert_non_null(multi);
    assert_int_equal(curl_multi_add_handle(multi,
                                           ngx_tce_consul_request_handle(req)),
                     CURLM_OK);

    deadline = now_ms() + 5000;

    do {
        curl_multi_perform(multi, &running);
        curl_multi_poll(multi, NULL, 0, 20, NULL);
    } while (open_requests(SVC) < 1 && now_ms() < deadline);

    assert_int_equal(open_requests(SVC), 1);

    register_instance("i-2", "10.0.0.2", 8080, "passing");

    done = NULL;
    deadline = now_ms() + 5000;

    while (done == NULL && now_ms() < deadline) {
        curl_multi_perform(multi, &running);

        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            if (msg->msg == CURLMSG_DONE) {
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
                                  (char **) &done);
                assert_ptr_equal(done, req);
                curl_multi_remove_handle(multi, msg->easy_handle);
                assert_int_equal(ngx_tce_consul_request_done(done,
                                                     msg->data.result, &res),
                                 0);
            }
        }

        if (done == NULL) {
            curl_multi_poll(multi, NULL, 0, 20, NULL);
        }
    }

    assert_non_null(done);
    assert_int_equal(ngx_tce_consul_next_index(index, res.index,
                                               strlen(res.index), &next),
                     0);
    assert_true(next > index);

    assert_int_equal(ngx_tce_consul_parse_health(res.body, res.len, NULL,
                                                 NULL, &h, err, sizeof(err)),
                     0);
    assert_int_equal(h.ninstances, 2);
    ngx_tce_consul_health_free(&h);

    ngx_tce_consul_request_free(req);
    curl_multi_cleanup(multi);
    ngx_tce_consul_client_destroy(c);
}


static void
test_blocking_times_out(void **state)
{
    char                       err[NGX_TCE_CONSUL_ERR_LEN];
    uint64_t                   start, took, next;
    ngx_tce_consul_result_t    res;
    ngx_tce_consul_client_t   *c;
    ngx_tce_consul_request_t  *req;

    (void) state;

    c = client(double_url, TOKEN, 0);

    req = ngx_tce_consul_services_request(c, 0, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_perform(req, &res), 0);
    assert_int_equal(ngx_tce_consul_next_index(0, res.index,
                                               strlen(res.index), &next),
                     0);
    ngx_tce_consul_request_free(req);

    req = ngx_tce_consul_services_request(c, next, err, sizeof(err));
    assert_non_null(req);

    start = now_ms();
    assert_int_equal(ngx_tce_consul_perform(req, &res), 0);
    took = now_ms() - start;

    /* the server's wait, not the client's read timeout, ended it */
    assert_true(took >= WAIT_MS);
    assert_true(took < WAIT_MS + 2000);
    assert_non_null(strstr(res.url, "wait=300ms"));
    assert_int_equal(strtoull(res.index, NULL, 10), next);

    ngx_tce_consul_request_free(req);
    ngx_tce_consul_client_destroy(c);
}


static void
test_acl_token_in_header(void **state)
{
    char                       err[NGX_TCE_CONSUL_ERR_LEN];
    json_t                    *st;
    ngx_tce_consul_result_t    res;
    ngx_tce_consul_client_t   *c;
    ngx_tce_consul_request_t  *req;

    (void) state;

    /* no token: Consul's anonymous token, reads filtered to nothing */
    c = client(double_url, NULL, 0);
    req = ngx_tce_consul_health_request(c, SVC, NULL, 0, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_perform(req, &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "[]");
    ngx_tce_consul_request_free(req);
    ngx_tce_consul_client_destroy(c);

    /* an unknown token: 403 */
    c = client(double_url, "not-" TOKEN, 0);
    req = ngx_tce_consul_health_request(c, SVC, NULL, 0, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_perform(req, &res), -1);
    assert_int_equal(res.status, 403);
    assert_string_equal(res.error, "HTTP 403: ACL not found");
    ngx_tce_consul_request_free(req);
    ngx_tce_consul_client_destroy(c);

    c = client(double_url, TOKEN, 0);
    req = ngx_tce_consul_health_request(c, SVC, NULL, 0, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_perform(req, &res), 0);
    assert_null(strstr(res.url, "token"));
    ngx_tce_consul_request_free(req);
    ngx_tce_consul_client_destroy(c);

    assert_int_equal(control("/_double/state", NULL, &st), 200);
    assert_string_equal(json_string_value(json_object_get(st, "last_token")),
                        TOKEN);
    json_decref(st);
}


static void
test_faults(void **state)
{
    char                       err[NGX_TCE_CONSUL_ERR_LEN];
    ngx_tce_consul_result_t    res;
    ngx_tce_consul_health_t    h;
    ngx_tce_consul_client_t   *c;
    ngx_tce_consul_request_t  *req;

    (void) state;

    c = client(double_url, TOKEN, 0);

    assert_int_equal(control("/_double/fault", "{\"kind\": \"status\", "
                             "\"status\": 503, \"body\": \"No cluster "
                             "leader\"}", NULL),
                     200);
    req = ngx_tce_consul_health_request(c, SVC, NULL, 0, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_perform(req, &res), -1);
    assert_int_equal(res.status, 503);
    assert_string_equal(res.error, "HTTP 503: No cluster leader");
    ngx_tce_consul_request_free(req);

    assert_int_equal(control("/_double/fault", "{\"kind\": \"malformed\"}",
                             NULL),
                     200);
    req = ngx_tce_consul_health_request(c, SVC, NULL, 0, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_perform(req, &res), 0);
    assert_int_equal(ngx_tce_consul_parse_health(res.body, res.len, NULL,
                                                 NULL, &h, err, sizeof(err)),
                     -1);
    ngx_tce_consul_request_free(req);

    assert_int_equal(control("/_double/fault", "{\"kind\": \"truncated\"}",
                             NULL),
                     200);
    req = ngx_tce_consul_health_request(c, SVC, NULL, 0, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_perform(req, &res), -1);
    assert_int_equal(res.code, CURLE_PARTIAL_FILE);
    assert_true(res.error[0] != '\0');
    ngx_tce_consul_request_free(req);

    assert_int_equal(control("/_double/fault", "{\"kind\": \"drop\"}",
                             NULL),
                     200);
    req = ngx_tce_consul_health_request(c, SVC, NULL, 0, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_perform(req, &res), -1);
    assert_int_equal(res.code, CURLE_GOT_NOTHING);
    assert_int_equal(res.status, 0);
    ngx_tce_consul_request_free(req);

    /* all faults consumed: back to normal */
    req = ngx_tce_consul_health_request(c, SVC, NULL, 0, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_perform(req, &res), 0);
    ngx_tce_consul_request_free(req);

    ngx_tce_consul_client_destroy(c);
}


static void
test_failover(void **state)
{
    char                       dead[64], err[NGX_TCE_CONSUL_CLIENT_ERR_LEN];
    const char                *urls[2];
    ngx_tce_consul_conf_t      conf;
    ngx_tce_consul_result_t    res;
    ngx_tce_consul_client_t   *c;
    ngx_tce_consul_request_t  *req;

    (void) state;

    snprintf(dead, sizeof(dead), "http://127.0.0.1:%d", dead_port());
    urls[0] = dead;
    urls[1] = double_url;

    memset(&conf, 0, sizeof(conf));
    conf.urls = urls;
    conf.nurls = 2;
    conf.token = TOKEN;

    c = ngx_tce_consul_client_create(&conf, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(ngx_tce_consul_client_server(c), dead);

    req = ngx_tce_consul_health_request(c, SVC, NULL, 0, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_perform(req, &res), -1);
    assert_int_equal(res.code, CURLE_COULDNT_CONNECT);
    ngx_tce_consul_request_free(req);

    /* the next request goes to the next server, and stays there */
    assert_string_equal(ngx_tce_consul_client_server(c), double_url);
    req = ngx_tce_consul_health_request(c, SVC, NULL, 0, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_perform(req, &res), 0);
    ngx_tce_consul_request_free(req);
    assert_string_equal(ngx_tce_consul_client_server(c), double_url);

    /* a 4xx is an answer, not a server failure */
    assert_int_equal(control("/_double/fault", "{\"kind\": \"status\", "
                             "\"status\": 400}", NULL),
                     200);
    req = ngx_tce_consul_health_request(c, SVC, NULL, 0, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_perform(req, &res), -1);
    ngx_tce_consul_request_free(req);
    assert_string_equal(ngx_tce_consul_client_server(c), double_url);

    ngx_tce_consul_client_destroy(c);

    /* bad configurations */
    urls[0] = "consul:8500";
    assert_null(ngx_tce_consul_client_create(&conf, err, sizeof(err)));
    assert_non_null(strstr(err, "consul:8500"));
    urls[0] = dead;
    conf.token = "bad\r\nX-Injected: 1";
    assert_null(ngx_tce_consul_client_create(&conf, err, sizeof(err)));
    conf.token = NULL;
    conf.nurls = 0;
    assert_null(ngx_tce_consul_client_create(&conf, err, sizeof(err)));
}


static void
test_body_limit(void **state)
{
    char                       err[NGX_TCE_CONSUL_ERR_LEN];
    ngx_tce_consul_result_t    res;
    ngx_tce_consul_client_t   *c;
    ngx_tce_consul_request_t  *req;

    (void) state;

    register_instance("i-1", "10.0.0.1", 8080, "passing");

    c = client(double_url, TOKEN, 100);
    req = ngx_tce_consul_health_request(c, SVC, NULL, 0, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_perform(req, &res), -1);
    assert_string_equal(res.error, "body larger than 100 bytes");
    ngx_tce_consul_request_free(req);
    ngx_tce_consul_client_destroy(c);
}


static void
test_index_backwards(void **state)
{
    char                       err[NGX_TCE_CONSUL_ERR_LEN];
    uint64_t                   index, next;
    ngx_tce_consul_result_t    res;
    ngx_tce_consul_client_t   *c;
    ngx_tce_consul_request_t  *req;

    (void) state;

    register_instance("i-3", "10.0.0.3", 8080, "passing");

    c = client(double_url, TOKEN, 0);
    req = ngx_tce_consul_health_request(c, SVC, NULL, 0, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_perform(req, &res), 0);
    assert_int_equal(ngx_tce_consul_next_index(0, res.index,
                                               strlen(res.index), &index),
                     0);
    ngx_tce_consul_request_free(req);
    assert_true(index > 2);

    /* a snapshot restore: the server's index drops below ours */
    assert_int_equal(control("/_double/index", "{\"index\": 2}", NULL),
                     200);

    req = ngx_tce_consul_health_request(c, SVC, NULL, index, err,
                                        sizeof(err));
    assert_int_equal(ngx_tce_consul_perform(req, &res), 0);
    assert_int_equal(ngx_tce_consul_next_index(index, res.index,
                                               strlen(res.index), &next),
                     0);
    assert_int_equal(next, 0);
    ngx_tce_consul_request_free(req);

    ngx_tce_consul_client_destroy(c);
}


static void
test_catalog_and_deregister(void **state)
{
    char                       err[NGX_TCE_CONSUL_ERR_LEN];
    ngx_tce_consul_names_t     names;
    ngx_tce_consul_result_t    res;
    ngx_tce_consul_client_t   *c;
    ngx_tce_consul_request_t  *req;

    (void) state;

    assert_int_equal(control("/_double/restart", "{}", NULL), 200);
    register_instance("i-1", "10.0.0.1", 8080, "passing");

    c = client(double_url, TOKEN, 0);

    req = ngx_tce_consul_services_request(c, 0, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_perform(req, &res), 0);
    assert_int_equal(ngx_tce_consul_parse_services(res.body, res.len, NULL,
                                                   &names, err,
                                                   sizeof(err)),
                     0);
    assert_int_equal(names.nnames, 1);
    assert_string_equal(names.names[0], SVC);
    ngx_tce_consul_names_free(&names);
    ngx_tce_consul_request_free(req);

    req = ngx_tce_consul_deregister_request(c, "i-1", err, sizeof(err));
    assert_non_null(req);
    assert_int_equal(ngx_tce_consul_perform(req, &res), 0);
    assert_int_equal(res.status, 200);
    ngx_tce_consul_request_free(req);

    req = ngx_tce_consul_deregister_request(c, "i-1", err, sizeof(err));
    assert_int_equal(ngx_tce_consul_perform(req, &res), -1);
    assert_int_equal(res.status, 404);
    assert_non_null(strstr(res.error, "Unknown service ID"));
    ngx_tce_consul_request_free(req);

    assert_null(ngx_tce_consul_deregister_request(c, "", err, sizeof(err)));
    assert_null(ngx_tce_consul_health_request(c, "", NULL, 0, err,
                                              sizeof(err)));

    ngx_tce_consul_client_destroy(c);
}


/* credentials in a URL: masked, scrubbed from errors; no token in clear */

static void
test_url_secrets(void **state)
{
    char                       buf[256], url[160];
    char                       err[NGX_TCE_CONSUL_CLIENT_ERR_LEN];
    const char                *urls[1];
    ngx_tce_consul_conf_t      conf;
    ngx_tce_consul_result_t    res;
    ngx_tce_consul_client_t   *c;
    ngx_tce_consul_request_t  *req;

    (void) state;

    assert_string_equal(ngx_tce_consul_url_mask(buf, sizeof(buf),
                            "http://u:p@h:1/x@y"), "http://***@h:1/x@y");
    assert_string_equal(ngx_tce_consul_url_mask(buf, sizeof(buf),
                            "HTTPS://a:b@c@d"), "HTTPS://***@d");
    assert_string_equal(ngx_tce_consul_url_mask(buf, sizeof(buf),
                            "http://h:1/p?q=a@b"), "http://h:1/p?q=a@b");
    assert_string_equal(ngx_tce_consul_url_mask(buf, sizeof(buf),
                            "token=x"), "token=x");

    assert_int_equal(ngx_tce_consul_url_cleartext("http://10.0.0.1:8500"),
                     1);
    assert_int_equal(ngx_tce_consul_url_cleartext("http://consul:8500"), 1);
    assert_int_equal(ngx_tce_consul_url_cleartext("http://127.0.0.1"), 0);
    assert_int_equal(ngx_tce_consul_url_cleartext("http://u:p@127.1.2.3:1"),
                     0);
    assert_int_equal(ngx_tce_consul_url_cleartext("http://127.0.0.1@ev.il"),
                     1);
    assert_int_equal(ngx_tce_consul_url_cleartext("http://LocalHost:1"), 0);
    assert_int_equal(ngx_tce_consul_url_cleartext("http://[::1]:8500"), 0);
    assert_int_equal(ngx_tce_consul_url_cleartext("http://[::2]:8500"), 1);
    assert_int_equal(ngx_tce_consul_url_cleartext("https://10.0.0.1"), 0);

    /* a token and a cleartext URL: refused unless allowed, URL masked */
    memset(&conf, 0, sizeof(conf));
    urls[0] = "http://u:pw-secret@10.0.0.1:8500";
    conf.urls = urls;
    conf.nurls = 1;
    conf.token = TOKEN;
    assert_null(ngx_tce_consul_client_create(&conf, err, sizeof(err)));
    assert_non_null(strstr(err, "token_over_http"));
    assert_non_null(strstr(err, "http://***@10.0.0.1:8500"));
    assert_null(strstr(err, "pw-secret"));
    conf.token_over_http = 1;
    c = ngx_tce_consul_client_create(&conf, err, sizeof(err));
    assert_non_null(c);
    ngx_tce_consul_client_destroy(c);

    /* an error text quoting the credentials has them scrubbed */
    snprintf(url, sizeof(url), "http://bob:pw-secret@%s",
             double_url + sizeof("http://") - 1);
    urls[0] = url;
    conf.token = NULL;
    c = ngx_tce_consul_client_create(&conf, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(ngx_tce_consul_client_has_userinfo(c, 0), 1);
    assert_int_equal(control("/_double/fault", "{\"kind\": \"status\", "
                             "\"status\": 403, \"body\": \"no bob:pw-secret"
                             " or pw-secret here\"}", NULL),
                     200);
    req = ngx_tce_consul_health_request(c, SVC, NULL, 0, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_perform(req, &res), -1);
    assert_null(strstr(res.error, "pw-secret"));
    assert_non_null(strstr(res.error, "no *** or *** here"));
    ngx_tce_consul_request_free(req);
    ngx_tce_consul_client_destroy(c);
}


/* the leader probe of a URL other than the current one */

static void
test_leader_probe(void **state)
{
    char                       dead[64], err[NGX_TCE_CONSUL_CLIENT_ERR_LEN];
    const char                *urls[2];
    ngx_tce_consul_conf_t      conf;
    ngx_tce_consul_result_t    res;
    ngx_tce_consul_client_t   *c;
    ngx_tce_consul_request_t  *req;

    (void) state;

    snprintf(dead, sizeof(dead), "http://127.0.0.1:%d", dead_port());
    urls[0] = double_url;
    urls[1] = dead;

    memset(&conf, 0, sizeof(conf));
    conf.urls = urls;
    conf.nurls = 2;

    c = ngx_tce_consul_client_create(&conf, err, sizeof(err));
    assert_non_null(c);
    ngx_tce_consul_client_use(c, 1);
    assert_int_equal(ngx_tce_consul_client_current(c), 1);

    req = ngx_tce_consul_leader_request(c, 0, err, sizeof(err));
    assert_non_null(req);
    assert_int_equal(ngx_tce_consul_perform(req, &res), 0);
    assert_int_equal(ngx_tce_consul_leader_ok(&res), 1);
    ngx_tce_consul_request_free(req);

    /* a failed probe of the dead one moves nothing */
    ngx_tce_consul_client_use(c, 0);
    req = ngx_tce_consul_leader_request(c, 1, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_perform(req, &res), -1);
    assert_int_equal(ngx_tce_consul_leader_ok(&res), 0);
    ngx_tce_consul_request_free(req);
    assert_int_equal(ngx_tce_consul_client_current(c), 0);

    assert_null(ngx_tce_consul_leader_request(c, 2, err, sizeof(err)));
    ngx_tce_consul_client_destroy(c);
}


/*
 * A raw request (the watches'): a 2xx answer is kept gzip as it came,
 * decoded later; an error's text is decoded at once.
 */
static void
test_raw_answers(void **state)
{
    char                       err[NGX_TCE_CONSUL_ERR_LEN];
    size_t                     plain;
    ngx_tce_consul_body_t      body;
    ngx_tce_consul_result_t    res;
    ngx_tce_consul_health_t    h;
    ngx_tce_consul_client_t   *c;
    ngx_tce_consul_request_t  *req;

    (void) state;

    assert_int_equal(control("/_double/restart", "{}", NULL), 200);
    register_instance("i-1", "10.0.0.1", 8080, "passing");
    register_instance("i-2", "10.0.0.2", 8080, "passing");

    c = client(double_url, TOKEN, 0);

    /* the oracle: the same answer decoded by curl */
    req = ngx_tce_consul_health_request(c, SVC, NULL, 0, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_perform(req, &res), 0);
    assert_int_equal(res.encoded, 0);
    plain = res.len;
    ngx_tce_consul_request_free(req);

    req = ngx_tce_consul_health_request(c, SVC, NULL, 0, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_request_raw(req), 0);
    assert_int_equal(ngx_tce_consul_perform(req, &res), 0);
    assert_int_equal(res.encoded, 1);
    assert_true(res.len < plain);
    assert_int_equal((unsigned char) res.body[0], 0x1f);

    ngx_tce_consul_request_take_body(req, &body);
    ngx_tce_consul_request_free(req);
    assert_int_equal(body.gzip, 1);
    assert_int_equal(ngx_tce_consul_body_gunzip(&body, err, sizeof(err)), 0);
    assert_int_equal(body.len, plain);
    assert_int_equal(ngx_tce_consul_parse_health(body.data, body.len, NULL,
                                                 NULL, &h, err, sizeof(err)),
                     0);
    assert_int_equal(h.ninstances, 2);
    ngx_tce_consul_health_free(&h);
    ngx_tce_consul_body_free(&body);

    /* the client's body limit applies to the decoded answer */
    ngx_tce_consul_client_destroy(c);
    c = client(double_url, TOKEN, plain - 1);
    req = ngx_tce_consul_health_request(c, SVC, NULL, 0, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_request_raw(req), 0);
    assert_int_equal(ngx_tce_consul_perform(req, &res), 0);
    ngx_tce_consul_request_take_body(req, &body);
    ngx_tce_consul_request_free(req);
    assert_int_equal(ngx_tce_consul_body_gunzip(&body, err, sizeof(err)), -1);
    snprintf(err + 64, 64, "body larger than %zu bytes", plain - 1);
    assert_string_equal(err, err + 64);

    /* an error body, gzip too: quoted decoded */
    assert_int_equal(control("/_double/fault", "{\"kind\": \"status\", "
                             "\"status\": 503, \"body\": \"No cluster "
                             "leader\"}", NULL),
                     200);
    req = ngx_tce_consul_health_request(c, SVC, NULL, 0, err, sizeof(err));
    assert_int_equal(ngx_tce_consul_request_raw(req), 0);
    assert_int_equal(ngx_tce_consul_perform(req, &res), -1);
    assert_int_equal(res.status, 503);
    assert_string_equal(res.error, "HTTP 503: No cluster leader");
    ngx_tce_consul_request_free(req);

    ngx_tce_consul_client_destroy(c);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_register_and_health),
        cmocka_unit_test(test_blocking_on_multi),
        cmocka_unit_test(test_blocking_times_out),
        cmocka_unit_test(test_acl_token_in_header),
        cmocka_unit_test(test_faults),
        cmocka_unit_test(test_failover),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_index_backwards),
        cmocka_unit_test(test_catalog_and_deregister),
        cmocka_unit_test(test_url_secrets),
        cmocka_unit_test(test_leader_probe),
        cmocka_unit_test(test_raw_answers),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
