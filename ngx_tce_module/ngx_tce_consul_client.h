/*
 * A libcurl client of the Consul HTTP API, usable without nginx.  It
 * builds configured CURL easy handles (blocking health query, catalog
 * services, agent register/deregister) that an nginx-side driver adds
 * to a curl multi handle run on nginx events, collects the body and
 * X-Consul-Index into bounded memory, and reports the result; a
 * blocking perform helper serves tests and tools.
 *
 * The process calls curl_global_init() once before any client is
 * created (nginx: at module init).  A client outlives its requests.
 * The token travels in the X-Consul-Token header, never in the URL,
 * and never in clear to another host: a client with a token and an
 * http:// URL whose host is not a loopback address is refused unless
 * token_over_http is set.  Credentials in a URL (http://user:pass@h)
 * never reach an error text: use ngx_tce_consul_url_mask() to print
 * a URL.
 *
 * Connections: TCP keepalive probes start after
 * NGX_TCE_CONSUL_KEEPIDLE seconds of silence, NGX_TCE_CONSUL_KEEPINTVL
 * apart, NGX_TCE_CONSUL_KEEPCNT of them: an agent that died without a
 * word (host gone, cable cut) is detected within
 * NGX_TCE_CONSUL_DEAD_AFTER seconds, well before a blocking query's
 * read timeout.
 */

#ifndef _NGX_TCE_CONSUL_CLIENT_H_INCLUDED_
#define _NGX_TCE_CONSUL_CLIENT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>


#define NGX_TCE_CONSUL_MAX_URLS         8
/*
 * 10,000 instances (NGX_TCE_CONSUL_MAX_ENTRIES) of real entries weigh
 * 15-60 MB with their checks' output (1.5-6 KB each): a body is bounded
 * by that, and its parse by its structure (ngx_tce_consul_parse_health
 * holds one entry's tree at a time)
 */
#define NGX_TCE_CONSUL_MAX_BODY         (128 * 1024 * 1024)
#define NGX_TCE_CONSUL_CONNECT_TIMEOUT  2000        /* ms */
#define NGX_TCE_CONSUL_REQUEST_TIMEOUT  10000       /* ms */
#define NGX_TCE_CONSUL_CLIENT_ERR_LEN   256
#define NGX_TCE_CONSUL_KEEPIDLE         10          /* s */
#define NGX_TCE_CONSUL_KEEPINTVL        5           /* s */
#define NGX_TCE_CONSUL_KEEPCNT          3
#define NGX_TCE_CONSUL_DEAD_AFTER                                           \
    (NGX_TCE_CONSUL_KEEPIDLE                                                \
     + NGX_TCE_CONSUL_KEEPINTVL * NGX_TCE_CONSUL_KEEPCNT)

/* Consul's read consistency modes (?stale, ?consistent) */
#define NGX_TCE_CONSUL_READ_DEFAULT     0
#define NGX_TCE_CONSUL_READ_STALE       1
#define NGX_TCE_CONSUL_READ_CONSISTENT  2


typedef struct {
    const char *const        *urls;     /* "http[s]://host:port", in order */
    size_t                    nurls;    /* 1..NGX_TCE_CONSUL_MAX_URLS */
    const char               *token;    /* ACL token, NULL or "": none */
    const char               *dc;       /* NULL or "": the agent's own */
    const char               *cafile;   /* NULL: system CAs */
    uint64_t                  connect_timeout_ms;  /* 0: default */
    uint64_t                  request_timeout_ms;  /* 0: default */
    uint64_t                  wait_ms;  /* blocking wait, 0: Consul's 5m */
    size_t                    max_body; /* 0: NGX_TCE_CONSUL_MAX_BODY */
    int                       consistency;  /* NGX_TCE_CONSUL_READ_* */
    int                       token_over_http;  /* 1: allowed anywhere */
} ngx_tce_consul_conf_t;


typedef struct ngx_tce_consul_client_s   ngx_tce_consul_client_t;
typedef struct ngx_tce_consul_request_s  ngx_tce_consul_request_t;


/* a response body as it was received (ngx_tce_consul_body.c) */
typedef struct {
    char                     *data;     /* NUL-terminated, or NULL */
    size_t                    len;      /* bytes before the NUL */
    size_t                    size;     /* allocated */
    size_t                    limit;    /* bytes allowed once decoded */
    unsigned                  mapped:1; /* an mmap()ed region */
    unsigned                  gzip:1;   /* still gzip-encoded */
} ngx_tce_consul_body_t;


/* what a finished request produced; pointers live as long as the request */
typedef struct {
    int                       ok;       /* transfer done and status 2xx */
    long                      status;   /* HTTP status, 0 if no answer */
    CURLcode                  code;     /* the transfer's curl result */
    const char               *error;    /* "" when ok, else curl's text or
                                           ours ("body larger than ...",
                                           "HTTP 503: ...") */
    const char               *body;     /* NUL-terminated, "" if none */
    size_t                    len;
    int                       encoded;  /* body is gzip as received (a
                                           raw request's 2xx answer) */
    const char               *index;    /* X-Consul-Index value as sent,
                                           NULL when absent */
    const char               *url;      /* the URL that was asked */
} ngx_tce_consul_result_t;


/*
 * Creates a client from conf; every string is copied.  Returns NULL
 * with a message in err when conf is bad (no URL, a URL that is not
 * http[s]://host, a token or dc with control characters, more than
 * NGX_TCE_CONSUL_MAX_URLS URLs, a token with an http:// URL to a host
 * that is not a loopback address and token_over_http unset) or memory
 * runs out.  URLs in err are masked.
 */
ngx_tce_consul_client_t *ngx_tce_consul_client_create(
    const ngx_tce_consul_conf_t *conf, char *err, size_t errlen);

/* frees the client; its requests must have been freed before */
void ngx_tce_consul_client_destroy(ngx_tce_consul_client_t *c);

/* the base URL new requests go to: the first until one fails */
const char *ngx_tce_consul_client_server(const ngx_tce_consul_client_t *c);

/* the position of that URL in the configured list (0: the first) */
size_t ngx_tce_consul_client_current(const ngx_tce_consul_client_t *c);

/* new requests go to the URL at position i (ignored if out of range) */
void ngx_tce_consul_client_use(ngx_tce_consul_client_t *c, size_t i);

/*
 * 1 when the URL at position i was given with credentials
 * (http://user:pass@host): its masked form differs from the URL.
 */
int ngx_tce_consul_client_has_userinfo(const ngx_tce_consul_client_t *c,
    size_t i);

/*
 * Copies url into dst (NUL-terminated, cut to size) with the
 * credentials of its authority replaced: "http://user:pass@h:1/p"
 * becomes "http://" "***@h:1/p" (three stars).  Returns dst.
 */
char *ngx_tce_consul_url_mask(char *dst, size_t size, const char *url);

/*
 * 1 when url is http:// (not https://) and its host is not a loopback
 * address (127.0.0.0/8, ::1, localhost): a token sent there travels in
 * clear over the network.
 */
int ngx_tce_consul_url_cleartext(const char *url);

/*
 * Moves new requests to the next base URL, in order, wrapping around.
 * ngx_tce_consul_request_done() calls it when a request to the current
 * server got no answer or a 5xx.
 */
void ngx_tce_consul_client_failover(ngx_tce_consul_client_t *c);

/*
 * Creates a request for GET /v1/health/service/<service>
 * [?tag=][&dc=][&index=&wait=] (every state: the parser filters) to the
 * current server: a blocking
 * query when index > 0 (read timeout from the configured wait, see
 * ngx_tce_consul_read_timeout()), an immediate one when index is 0.
 * Returns NULL with a message in err on a bad argument or when memory
 * or curl fails; nothing is left allocated then.
 */
ngx_tce_consul_request_t *ngx_tce_consul_health_request(
    ngx_tce_consul_client_t *c, const char *service, const char *tag,
    uint64_t index, char *err, size_t errlen);

/* the same for GET /v1/catalog/services[?dc=][&index=&wait=] */
ngx_tce_consul_request_t *ngx_tce_consul_services_request(
    ngx_tce_consul_client_t *c, uint64_t index, char *err, size_t errlen);

/*
 * The same for GET /v1/health/state/any[?dc=][&index=&wait=]: every
 * check of the datacenter, a blocking query when index > 0.
 */
ngx_tce_consul_request_t *ngx_tce_consul_checks_request(
    ngx_tce_consul_client_t *c, uint64_t index, char *err, size_t errlen);

/*
 * GET /v1/status/leader on the URL at position server, whatever the
 * current one: a health probe of that agent (200 and a non-empty
 * leader address when it serves).  Its failure never moves the
 * client to another URL.  NULL with err on failure.
 */
ngx_tce_consul_request_t *ngx_tce_consul_leader_request(
    ngx_tce_consul_client_t *c, size_t server, char *err, size_t errlen);

/*
 * PUT /v1/agent/service/register with body (a JSON service
 * definition, copied; not checked here).  NULL with err on failure.
 */
ngx_tce_consul_request_t *ngx_tce_consul_register_request(
    ngx_tce_consul_client_t *c, const char *body, size_t len, char *err,
    size_t errlen);

/* PUT /v1/agent/service/deregister/<id> (escaped); NULL with err */
ngx_tce_consul_request_t *ngx_tce_consul_deregister_request(
    ngx_tce_consul_client_t *c, const char *id, char *err, size_t errlen);

/*
 * The request's easy handle, to add to a multi handle; its
 * CURLINFO_PRIVATE is the request.  Owned by the request: remove it
 * from the multi handle before ngx_tce_consul_request_free().
 */
CURL *ngx_tce_consul_request_handle(ngx_tce_consul_request_t *req);

/* the caller's pointer attached to a request (NULL until set) */
void ngx_tce_consul_request_set_data(ngx_tce_consul_request_t *req,
    void *data);
void *ngx_tce_consul_request_data(ngx_tce_consul_request_t *req);

/*
 * Marks a request failed for a reason of this side (no free connection
 * in the worker), text saying why: ngx_tce_consul_request_done() then
 * reports it whatever code it is given, and does not move the client
 * to the next server (the server is not at fault).  Returns 1 if it
 * was marked already, 0 otherwise.
 */
int ngx_tce_consul_request_local_error(ngx_tce_consul_request_t *req,
    const char *text);

/* 1 if the request was marked by ngx_tce_consul_request_local_error() */
int ngx_tce_consul_request_is_local(ngx_tce_consul_request_t *req);

/*
 * Called once the transfer finished with code (CURLMSG_DONE's result,
 * or curl_easy_perform's): fills *res and returns 0 when res->ok,
 * else -1 (res->error says why).  A transport failure or a 5xx of the
 * current server moves the client to the next server.
 */
int ngx_tce_consul_request_done(ngx_tce_consul_request_t *req,
    CURLcode code, ngx_tce_consul_result_t *res);

/*
 * 1 when a finished leader probe (ngx_tce_consul_leader_request) says
 * the agent serves: res->ok and a body other than "" (no leader).
 */
int ngx_tce_consul_leader_ok(const ngx_tce_consul_result_t *res);

/*
 * Blocking helper for tests and tools (never inside nginx): performs
 * the transfer and returns what ngx_tce_consul_request_done() returns.
 */
int ngx_tce_consul_perform(ngx_tce_consul_request_t *req,
    ngx_tce_consul_result_t *res);

/*
 * Hands the body of a finished request over to the caller, so that it
 * can outlive the request (res->body of the request is no longer valid
 * then); body->data is NULL when there was none.  Free it with
 * ngx_tce_consul_body_free(), from any thread.
 */
void ngx_tce_consul_request_take_body(ngx_tce_consul_request_t *req,
    ngx_tce_consul_body_t *body);

/*
 * Asks the server for gzip and keeps a 2xx answer as it came: the body
 * taken from the request then has body->gzip set, and the caller
 * decodes it with ngx_tce_consul_body_gunzip(), off the event loop.
 * Error bodies are decoded by ngx_tce_consul_request_done() (their
 * text goes into res->error).  Call before the transfer starts.
 */
int ngx_tce_consul_request_raw(ngx_tce_consul_request_t *req);

/* frees a body taken from a request; *b is zeroed */
void ngx_tce_consul_body_free(ngx_tce_consul_body_t *b);

/*
 * Room for want bytes in b (the NUL included): 0, or -1 with b
 * unchanged when memory runs out.  Past 64 KB the body lives in an
 * anonymous mapping that grows with mremap(), never copied, each new
 * part prefaulted in one call.
 */
int ngx_tce_consul_body_grow(ngx_tce_consul_body_t *b, size_t want);

/*
 * Replaces b, gzip as received, with its decoded bytes (at most
 * b->limit of them): 0, or -1 with b freed and a message in err
 * ("body larger than N bytes", "gzip body: ...", "out of memory").
 * Any thread.
 */
int ngx_tce_consul_body_gunzip(ngx_tce_consul_body_t *b, char *err,
    size_t errlen);

/* frees the request, its handle, body and headers; NULL is allowed */
void ngx_tce_consul_request_free(ngx_tce_consul_request_t *req);


#endif /* _NGX_TCE_CONSUL_CLIENT_H_INCLUDED_ */
