/*
 * A libcurl client of the Consul HTTP API (pure C, no nginx): see
 * ngx_tce_consul_client.h for each contract.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* strncasecmp() and friends */
#endif

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ngx_tce_text.h"
#include "ngx_tce_consul_parse.h"
#include "ngx_tce_consul_client.h"


#define NGX_TCE_CONSUL_URL_LEN    2048
#define NGX_TCE_CONSUL_INDEX_LEN  64
#define NGX_TCE_CONSUL_BODY_INIT  16384

/* sets one option unless an earlier one failed (rc, req in scope) */
#define ngx_tce_consul_setopt(opt, val)                                      \
    if (rc == CURLE_OK) {                                                    \
        rc = curl_easy_setopt(req->easy, opt, val);                          \
    }


struct ngx_tce_consul_client_s {
    char                     *urls[NGX_TCE_CONSUL_MAX_URLS];
    char                     *secrets[NGX_TCE_CONSUL_MAX_URLS];
                                        /* "user:pass" of a URL, or NULL */
    size_t                    nurls;
    size_t                    current;
    char                     *token_header;     /* "X-Consul-Token: t" */
    char                     *dc;
    char                     *cafile;
    uint64_t                  connect_timeout_ms;
    uint64_t                  request_timeout_ms;
    uint64_t                  wait_ms;
    size_t                    max_body;
    int                       consistency;
};


struct ngx_tce_consul_request_s {
    ngx_tce_consul_client_t  *client;
    CURL                     *easy;
    struct curl_slist        *headers;
    size_t                    server;           /* index into urls */
    void                     *data;             /* the caller's */
    ngx_tce_consul_body_t     b;
    unsigned                  too_large:1;
    unsigned                  has_index:1;
    unsigned                  probe:1;          /* never fails over */
    unsigned                  local:1;          /* failed on our side */
    unsigned                  raw:1;            /* gzip kept as it came */
    unsigned                  bad_encoding:1;
    char                      index[NGX_TCE_CONSUL_INDEX_LEN];
    char                      url[NGX_TCE_CONSUL_URL_LEN];
    char                      error[CURL_ERROR_SIZE];
};


static void ngx_tce_consul_client_err(char *err, size_t errlen,
    const char *fmt, ...);
static char *ngx_tce_consul_strdup(const char *s);
static int ngx_tce_consul_add_consistency(ngx_tce_consul_client_t *c,
    char *url, size_t size);
static int ngx_tce_consul_printable(const char *s);
static int ngx_tce_consul_authority(const char *url, const char **host,
    const char **at);
static char *ngx_tce_consul_userinfo(const char *url);
static void ngx_tce_consul_scrub(char *text, const char *secret);
static int ngx_tce_consul_sockopt(void *clientp, curl_socket_t fd,
    curlsocktype purpose);
static const char *ngx_tce_consul_header_value(const char *line, size_t n,
    const char *name, size_t len, const char **last);
static void ngx_tce_consul_encoding(ngx_tce_consul_request_t *req,
    const char *line, size_t n);
static void ngx_tce_consul_decode_error(ngx_tce_consul_request_t *req);
static ngx_tce_consul_request_t *ngx_tce_consul_request_create(
    ngx_tce_consul_client_t *c, const char *method, uint64_t timeout_ms,
    char *err, size_t errlen);
static size_t ngx_tce_consul_write(char *ptr, size_t size, size_t nmemb,
    void *data);
static size_t ngx_tce_consul_header(char *ptr, size_t size, size_t nmemb,
    void *data);


static void
ngx_tce_consul_client_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list  args;

    if (err == NULL || errlen == 0) {
        return;
    }

    va_start(args, fmt);
    vsnprintf(err, errlen, fmt, args);
    va_end(args);
}


static char *
ngx_tce_consul_strdup(const char *s)
{
    char    *p;
    size_t   len;

    len = strlen(s) + 1;
    p = malloc(len);

    if (p != NULL) {
        memcpy(p, s, len);
    }

    return p;
}


/*
 * Appends Consul's consistency mode to a read URL: "?stale" or
 * "?consistent" (after any query already there).  Returns 0, or -1
 * when it does not fit.
 */

static int
ngx_tce_consul_add_consistency(ngx_tce_consul_client_t *c, char *url,
    size_t size)
{
    int          n;
    size_t       len;
    const char  *mode;

    switch (c->consistency) {
    case NGX_TCE_CONSUL_READ_STALE:
        mode = "stale";
        break;
    case NGX_TCE_CONSUL_READ_CONSISTENT:
        mode = "consistent";
        break;
    default:
        return 0;
    }

    len = strlen(url);
    n = snprintf(url + len, size - len, "%c%s",
                 strchr(url, '?') ? '&' : '?', mode);

    if (n < 0 || (size_t) n >= size - len) {
        url[len] = '\0';
        return -1;
    }

    return 0;
}


/*
 * The authority of an http[s]:// URL: *at points to the '@' ending its
 * userinfo (NULL when none), *host to the host that follows.  Returns
 * the length of the scheme's "xxx://" prefix, 0 when there is none.
 */

static int
ngx_tce_consul_authority(const char *url, const char **host,
    const char **at)
{
    size_t       skip, n;
    const char  *p;

    if (strncasecmp(url, "http://", 7) == 0) {
        skip = 7;

    } else if (strncasecmp(url, "https://", 8) == 0) {
        skip = 8;

    } else {
        return 0;
    }

    /* the authority ends at the first '/', '?' or '#' */
    n = strcspn(url + skip, "/?#");
    *at = NULL;

    for (p = url + skip; p < url + skip + n; p++) {
        if (*p == '@') {
            *at = p;
        }
    }

    *host = *at ? *at + 1 : url + skip;

    return (int) skip;
}


char *
ngx_tce_consul_url_mask(char *dst, size_t size, const char *url)
{
    int          skip;
    const char  *host, *at;

    if (size == 0) {
        return dst;
    }

    if (url == NULL) {
        url = "(null)";
    }

    skip = ngx_tce_consul_authority(url, &host, &at);

    if (skip == 0 || at == NULL) {
        snprintf(dst, size, "%s", url);

    } else {
        snprintf(dst, size, "%.*s***@%s", skip, url, host);
    }

    return dst;
}


int
ngx_tce_consul_url_cleartext(const char *url)
{
    int              skip;
    char             name[64];
    size_t           n;
    const char      *host, *at, *end;
    struct in_addr   a4;
    struct in6_addr  a6;

    skip = ngx_tce_consul_authority(url, &host, &at);

    if (skip != 7) {
        return 0;                           /* https://, or not a URL */
    }

    if (host[0] == '[') {
        end = strchr(host, ']');

        if (end == NULL || (size_t) (end - host - 1) >= sizeof(name)) {
            return 1;
        }

        n = end - host - 1;
        memcpy(name, host + 1, n);
        name[n] = '\0';

        return !(inet_pton(AF_INET6, name, &a6) == 1
                 && IN6_IS_ADDR_LOOPBACK(&a6));
    }

    n = strcspn(host, ":/?#");

    if (n >= sizeof(name)) {
        return 1;
    }

    memcpy(name, host, n);
    name[n] = '\0';

    /* libcurl resolves "localhost" to a loopback address itself */
    if (strcasecmp(name, "localhost") == 0) {
        return 0;
    }

    return !(inet_pton(AF_INET, name, &a4) == 1
             && (ntohl(a4.s_addr) >> 24) == 127);
}


/* "user:pass" of a URL's authority, malloc'd; NULL when none or no mem */

static char *
ngx_tce_consul_userinfo(const char *url)
{
    int          skip;
    char        *p;
    const char  *host, *at;

    skip = ngx_tce_consul_authority(url, &host, &at);

    if (skip == 0 || at == NULL || at == url + skip) {
        return NULL;
    }

    p = malloc(at - url - skip + 1);

    if (p != NULL) {
        memcpy(p, url + skip, at - url - skip);
        p[at - url - skip] = '\0';
    }

    return p;
}


/* replaces every occurrence of secret (and of its password) by "***" */

static void
ngx_tce_consul_scrub(char *text, const char *secret)
{
    int          round;
    char        *p, *from;
    size_t       len, tail;
    const char  *pass, *cur;

    pass = strchr(secret, ':');

    for (round = 0; round < 2; round++) {
        cur = round == 0 ? secret : (pass ? pass + 1 : NULL);

        if (cur == NULL || cur[0] == '\0') {
            continue;
        }

        len = strlen(cur);
        from = text;

        while ((p = strstr(from, cur)) != NULL) {
            tail = strlen(p + len);

            if (len >= 3) {
                memcpy(p, "***", 3);
                memmove(p + 3, p + len, tail + 1);
                from = p + 3;

            } else {
                memset(p, '*', len);
                from = p + len;
            }
        }
    }
}


/*
 * CURLOPT_SOCKOPTFUNCTION: the count of keepalive probes (libcurl
 * 7.88 sets only their idle time and interval).
 */

static int
ngx_tce_consul_sockopt(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
#ifdef TCP_KEEPCNT
    int  cnt;
#endif

    (void) clientp;

#ifdef TCP_KEEPCNT
    if (purpose == CURLSOCKTYPE_IPCXN) {
        cnt = NGX_TCE_CONSUL_KEEPCNT;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    }
#endif

    return CURL_SOCKOPT_OK;
}


/* 1 when s holds printable ASCII only: it goes into a header or URL */

static int
ngx_tce_consul_printable(const char *s)
{
    for ( /* void */ ; *s; s++) {
        if ((unsigned char) *s < 0x20 || (unsigned char) *s >= 0x7f) {
            return 0;
        }
    }

    return 1;
}


ngx_tce_consul_client_t *
ngx_tce_consul_client_create(const ngx_tce_consul_conf_t *conf, char *err,
    size_t errlen)
{
    char                      probe[NGX_TCE_CONSUL_URL_LEN];
    char                      masked[NGX_TCE_CONSUL_URL_LEN];
    size_t                    i, len;
    ngx_tce_consul_client_t  *c;

    if (conf == NULL || conf->urls == NULL || conf->nurls == 0
        || conf->nurls > NGX_TCE_CONSUL_MAX_URLS)
    {
        ngx_tce_consul_client_err(err, errlen, "1 to %d Consul URLs are "
                                  "needed", NGX_TCE_CONSUL_MAX_URLS);
        return NULL;
    }

    for (i = 0; i < conf->nurls; i++) {
        if (conf->urls[i] == NULL
            || ngx_tce_consul_path_url(probe, sizeof(probe), conf->urls[i],
                                       "/", NULL)
               < 0)
        {
            ngx_tce_consul_client_err(err, errlen, "invalid Consul URL "
                                      "\"%.128s\"",
                                      ngx_tce_consul_url_mask(masked,
                                          sizeof(masked), conf->urls[i]));
            return NULL;
        }

        if (conf->token && conf->token[0] && !conf->token_over_http
            && ngx_tce_consul_url_cleartext(conf->urls[i]))
        {
            ngx_tce_consul_client_err(err, errlen, "the token would travel "
                                      "in clear to \"%.128s\" (http:// to "
                                      "a host that is not a loopback "
                                      "address): use https://, or allow "
                                      "it with token_over_http=on",
                                      ngx_tce_consul_url_mask(masked,
                                          sizeof(masked), conf->urls[i]));
            return NULL;
        }
    }

    if (conf->consistency < NGX_TCE_CONSUL_READ_DEFAULT
        || conf->consistency > NGX_TCE_CONSUL_READ_CONSISTENT)
    {
        ngx_tce_consul_client_err(err, errlen, "unknown consistency mode");
        return NULL;
    }

    if ((conf->token && !ngx_tce_consul_printable(conf->token))
        || (conf->dc && !ngx_tce_consul_printable(conf->dc)))
    {
        ngx_tce_consul_client_err(err, errlen, "token or dc holds control "
                                  "characters");
        return NULL;
    }

    c = calloc(1, sizeof(ngx_tce_consul_client_t));

    if (c == NULL) {
        goto nomem;
    }

    for (i = 0; i < conf->nurls; i++) {
        c->urls[i] = ngx_tce_consul_strdup(conf->urls[i]);

        if (c->urls[i] == NULL) {
            goto nomem;
        }

        c->nurls++;

        c->secrets[i] = ngx_tce_consul_userinfo(conf->urls[i]);

        if (c->secrets[i] == NULL
            && ngx_tce_consul_client_has_userinfo(c, i))
        {
            goto nomem;
        }
    }

    if (conf->token && conf->token[0]) {
        len = sizeof("X-Consul-Token: ") + strlen(conf->token);
        c->token_header = malloc(len);

        if (c->token_header == NULL) {
            goto nomem;
        }

        snprintf(c->token_header, len, "X-Consul-Token: %s", conf->token);
    }

    if (conf->dc && conf->dc[0]) {
        c->dc = ngx_tce_consul_strdup(conf->dc);

        if (c->dc == NULL) {
            goto nomem;
        }
    }

    if (conf->cafile && conf->cafile[0]) {
        c->cafile = ngx_tce_consul_strdup(conf->cafile);

        if (c->cafile == NULL) {
            goto nomem;
        }
    }

    c->connect_timeout_ms = conf->connect_timeout_ms
                            ? conf->connect_timeout_ms
                            : NGX_TCE_CONSUL_CONNECT_TIMEOUT;
    c->request_timeout_ms = conf->request_timeout_ms
                            ? conf->request_timeout_ms
                            : NGX_TCE_CONSUL_REQUEST_TIMEOUT;
    c->wait_ms = ngx_tce_consul_wait(conf->wait_ms);
    c->max_body = conf->max_body ? conf->max_body : NGX_TCE_CONSUL_MAX_BODY;
    c->consistency = conf->consistency;

    return c;

nomem:

    ngx_tce_consul_client_destroy(c);
    ngx_tce_consul_client_err(err, errlen, "out of memory");

    return NULL;
}


void
ngx_tce_consul_client_destroy(ngx_tce_consul_client_t *c)
{
    size_t  i;

    if (c == NULL) {
        return;
    }

    for (i = 0; i < c->nurls; i++) {
        free(c->urls[i]);
        free(c->secrets[i]);
    }

    free(c->token_header);
    free(c->dc);
    free(c->cafile);
    free(c);
}


const char *
ngx_tce_consul_client_server(const ngx_tce_consul_client_t *c)
{
    return c->urls[c->current];
}


size_t
ngx_tce_consul_client_current(const ngx_tce_consul_client_t *c)
{
    return c->current;
}


void
ngx_tce_consul_client_use(ngx_tce_consul_client_t *c, size_t i)
{
    if (i < c->nurls) {
        c->current = i;
    }
}


int
ngx_tce_consul_client_has_userinfo(const ngx_tce_consul_client_t *c,
    size_t i)
{
    int          skip;
    const char  *host, *at;

    if (i >= c->nurls) {
        return 0;
    }

    skip = ngx_tce_consul_authority(c->urls[i], &host, &at);

    return skip != 0 && at != NULL && at != c->urls[i] + skip;
}


void
ngx_tce_consul_client_failover(ngx_tce_consul_client_t *c)
{
    c->current = (c->current + 1) % c->nurls;
}


static size_t
ngx_tce_consul_write(char *ptr, size_t size, size_t nmemb, void *data)
{
    size_t                     n, want;
    ngx_tce_consul_request_t  *req;

    req = data;
    n = size * nmemb;

    if (n > req->client->max_body - req->b.len) {
        /* returning less than given makes curl fail the transfer */
        req->too_large = 1;
        return 0;
    }

    if (req->b.len + n + 1 > req->b.size) {
        want = req->b.size ? req->b.size : NGX_TCE_CONSUL_BODY_INIT;

        while (want < req->b.len + n + 1) {
            want *= 2;
        }

        if (want > req->client->max_body + 1) {
            want = req->client->max_body + 1;
        }

        if (ngx_tce_consul_body_grow(&req->b, want) != 0) {
            return 0;
        }
    }

    memcpy(req->b.data + req->b.len, ptr, n);
    req->b.len += n;
    req->b.data[req->b.len] = '\0';

    return n;
}


static size_t
ngx_tce_consul_header(char *ptr, size_t size, size_t nmemb, void *data)
{
    size_t                     n, len;
    const char                *v, *last;
    ngx_tce_consul_request_t  *req;

    static const char          name[] = "X-Consul-Index:";

    req = data;
    n = size * nmemb;

    /* a new header block (after 100 Continue): forget the last one */
    if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0) {
        req->has_index = 0;
        req->index[0] = '\0';
        req->b.gzip = 0;
        req->bad_encoding = 0;
        return n;
    }

    if (req->raw) {
        ngx_tce_consul_encoding(req, ptr, n);
    }

    v = ngx_tce_consul_header_value(ptr, n, name, sizeof(name) - 1, &last);

    if (v == NULL) {
        return n;
    }

    len = last - v;

    if (len >= sizeof(req->index)) {
        /* no index is that long: keep something that will not parse */
        v = "overlong";
        len = sizeof("overlong") - 1;
    }

    memcpy(req->index, v, len);
    req->index[len] = '\0';
    req->has_index = 1;

    return n;
}


/*
 * The value of header line (n bytes) if it is the header name (of len
 * bytes, with its colon), blanks and CRLF trimmed: [v, *last); or NULL.
 */

static const char *
ngx_tce_consul_header_value(const char *line, size_t n, const char *name,
    size_t len, const char **last)
{
    const char  *v, *end;

    if (n < len || strncasecmp(line, name, len) != 0) {
        return NULL;
    }

    v = line + len;
    end = line + n;

    while (v < end && (*v == ' ' || *v == '\t')) {
        v++;
    }

    while (end > v && (end[-1] == '\r' || end[-1] == '\n'
                       || end[-1] == ' ' || end[-1] == '\t'))
    {
        end--;
    }

    *last = end;

    return v;
}


/* a raw request's Content-Encoding: gzip (asked for) or none */

static void
ngx_tce_consul_encoding(ngx_tce_consul_request_t *req, const char *line,
    size_t n)
{
    const char  *v, *last;

    static const char  name[] = "Content-Encoding:";

    v = ngx_tce_consul_header_value(line, n, name, sizeof(name) - 1, &last);

    if (v == NULL) {
        return;
    }

    if ((size_t) (last - v) == 4 && strncasecmp(v, "gzip", 4) == 0) {
        req->b.gzip = 1;

    } else if (last > v
               && !((size_t) (last - v) == 8
                    && strncasecmp(v, "identity", 8) == 0))
    {
        /* not asked for: nothing here can decode it */
        req->bad_encoding = 1;
    }
}


int
ngx_tce_consul_request_raw(ngx_tce_consul_request_t *req)
{
    if (curl_easy_setopt(req->easy, CURLOPT_ACCEPT_ENCODING, "gzip")
        != CURLE_OK
        || curl_easy_setopt(req->easy, CURLOPT_HTTP_CONTENT_DECODING, 0L)
           != CURLE_OK)
    {
        return -1;
    }

    req->raw = 1;

    return 0;
}


static ngx_tce_consul_request_t *
ngx_tce_consul_request_create(ngx_tce_consul_client_t *c,
    const char *method, uint64_t timeout_ms, char *err, size_t errlen)
{
    CURLcode                   rc;
    struct curl_slist         *h;
    ngx_tce_consul_request_t  *req;

    req = calloc(1, sizeof(ngx_tce_consul_request_t));

    if (req == NULL) {
        ngx_tce_consul_client_err(err, errlen, "out of memory");
        return NULL;
    }

    req->client = c;
    req->server = c->current;

    req->easy = curl_easy_init();

    if (req->easy == NULL) {
        ngx_tce_consul_client_err(err, errlen, "curl_easy_init() failed");
        free(req);
        return NULL;
    }

    h = curl_slist_append(NULL, "Accept: application/json");
    req->headers = h;

    /* no "Expect: 100-continue" round trip on PUT */
    h = h ? curl_slist_append(h, "Expect:") : NULL;

    if (h && c->token_header) {
        h = curl_slist_append(h, c->token_header);
    }

    if (h && strcmp(method, "PUT") == 0) {
        h = curl_slist_append(h, "Content-Type: application/json");
    }

    if (h == NULL) {
        ngx_tce_consul_client_err(err, errlen, "out of memory");
        ngx_tce_consul_request_free(req);
        return NULL;
    }

    rc = CURLE_OK;

    ngx_tce_consul_setopt(CURLOPT_PRIVATE, req);
    ngx_tce_consul_setopt(CURLOPT_ERRORBUFFER, req->error);
    ngx_tce_consul_setopt(CURLOPT_NOSIGNAL, 1L);
    ngx_tce_consul_setopt(CURLOPT_PROTOCOLS_STR, "http,https");
    ngx_tce_consul_setopt(CURLOPT_FOLLOWLOCATION, 0L);
    ngx_tce_consul_setopt(CURLOPT_HTTPHEADER, req->headers);
    ngx_tce_consul_setopt(CURLOPT_USERAGENT, "tce-front-door");
    ngx_tce_consul_setopt(CURLOPT_ACCEPT_ENCODING, "");
    ngx_tce_consul_setopt(CURLOPT_TCP_KEEPALIVE, 1L);
    ngx_tce_consul_setopt(CURLOPT_TCP_KEEPIDLE,
                          (long) NGX_TCE_CONSUL_KEEPIDLE);
    ngx_tce_consul_setopt(CURLOPT_TCP_KEEPINTVL,
                          (long) NGX_TCE_CONSUL_KEEPINTVL);
    ngx_tce_consul_setopt(CURLOPT_SOCKOPTFUNCTION, ngx_tce_consul_sockopt);
    ngx_tce_consul_setopt(CURLOPT_CONNECTTIMEOUT_MS,
                          (long) c->connect_timeout_ms);
    ngx_tce_consul_setopt(CURLOPT_TIMEOUT_MS, (long) timeout_ms);
    ngx_tce_consul_setopt(CURLOPT_WRITEFUNCTION, ngx_tce_consul_write);
    ngx_tce_consul_setopt(CURLOPT_WRITEDATA, req);
    ngx_tce_consul_setopt(CURLOPT_HEADERFUNCTION, ngx_tce_consul_header);
    ngx_tce_consul_setopt(CURLOPT_HEADERDATA, req);

    /*
     * ca=: that file's CAs only.  CAINFO alone would keep libcurl's
     * built-in CAPATH (Debian: /etc/ssl/certs), so any public CA would
     * still be trusted for Consul.  Peer and host verification stay on
     * (libcurl's defaults, never changed here).
     */

    if (c->cafile) {
        ngx_tce_consul_setopt(CURLOPT_CAINFO, c->cafile);
        ngx_tce_consul_setopt(CURLOPT_CAPATH, (char *) NULL);
    }

    if (strcmp(method, "GET") != 0) {
        ngx_tce_consul_setopt(CURLOPT_CUSTOMREQUEST, method);
    }

    if (rc != CURLE_OK) {
        ngx_tce_consul_client_err(err, errlen, "curl_easy_setopt() "
                                  "failed: %s", curl_easy_strerror(rc));
        ngx_tce_consul_request_free(req);
        return NULL;
    }

    return req;
}


ngx_tce_consul_request_t *
ngx_tce_consul_health_request(ngx_tce_consul_client_t *c,
    const char *service, const char *tag, uint64_t index, char *err,
    size_t errlen)
{
    uint64_t                   timeout;
    ngx_tce_consul_request_t  *req;

    timeout = index ? ngx_tce_consul_read_timeout(c->wait_ms)
                    : c->request_timeout_ms;

    req = ngx_tce_consul_request_create(c, "GET", timeout, err, errlen);

    if (req == NULL) {
        return NULL;
    }

    if (ngx_tce_consul_health_url(req->url, sizeof(req->url),
                                  c->urls[req->server], service, tag,
                                  c->dc, index, c->wait_ms)
        < 0
        || ngx_tce_consul_add_consistency(c, req->url, sizeof(req->url))
           != 0
        || curl_easy_setopt(req->easy, CURLOPT_URL, req->url) != CURLE_OK)
    {
        ngx_tce_consul_client_err(err, errlen, "invalid service name or "
                                  "URL too long");
        ngx_tce_consul_request_free(req);
        return NULL;
    }

    return req;
}


ngx_tce_consul_request_t *
ngx_tce_consul_services_request(ngx_tce_consul_client_t *c, uint64_t index,
    char *err, size_t errlen)
{
    uint64_t                   timeout;
    ngx_tce_consul_request_t  *req;

    timeout = index ? ngx_tce_consul_read_timeout(c->wait_ms)
                    : c->request_timeout_ms;

    req = ngx_tce_consul_request_create(c, "GET", timeout, err, errlen);

    if (req == NULL) {
        return NULL;
    }

    if (ngx_tce_consul_services_url(req->url, sizeof(req->url),
                                    c->urls[req->server], c->dc, index,
                                    c->wait_ms)
        < 0
        || ngx_tce_consul_add_consistency(c, req->url, sizeof(req->url))
           != 0
        || curl_easy_setopt(req->easy, CURLOPT_URL, req->url) != CURLE_OK)
    {
        ngx_tce_consul_client_err(err, errlen, "URL too long");
        ngx_tce_consul_request_free(req);
        return NULL;
    }

    return req;
}


ngx_tce_consul_request_t *
ngx_tce_consul_checks_request(ngx_tce_consul_client_t *c, uint64_t index,
    char *err, size_t errlen)
{
    int                        n;
    char                       dc[256];
    size_t                     len;
    uint64_t                   timeout, wait;
    ngx_tce_consul_request_t  *req;

    timeout = index ? ngx_tce_consul_read_timeout(c->wait_ms)
                    : c->request_timeout_ms;

    req = ngx_tce_consul_request_create(c, "GET", timeout, err, errlen);

    if (req == NULL) {
        return NULL;
    }

    dc[0] = '\0';
    wait = ngx_tce_consul_wait(c->wait_ms);

    if (ngx_tce_consul_path_url(req->url, sizeof(req->url),
                                c->urls[req->server], "/v1/health/state/any",
                                NULL)
        < 0
        || (c->dc && ngx_tce_consul_escape(dc, sizeof(dc), c->dc,
                                           strlen(c->dc)) < 0))
    {
        goto failed;
    }

    len = strlen(req->url);
    n = snprintf(req->url + len, sizeof(req->url) - len, "%s%s%s",
                 dc[0] ? "?dc=" : "", dc, index ? (dc[0] ? "&" : "?") : "");

    if (n < 0 || (size_t) n >= sizeof(req->url) - len) {
        goto failed;
    }

    if (index) {
        len += n;
        n = snprintf(req->url + len, sizeof(req->url) - len,
                     wait % 1000 ? "index=%llu&wait=%llums"
                                 : "index=%llu&wait=%llus",
                     (unsigned long long) index,
                     (unsigned long long) (wait % 1000 ? wait
                                                       : wait / 1000));

        if (n < 0 || (size_t) n >= sizeof(req->url) - len) {
            goto failed;
        }
    }

    if (ngx_tce_consul_add_consistency(c, req->url, sizeof(req->url)) != 0
        || curl_easy_setopt(req->easy, CURLOPT_URL, req->url) != CURLE_OK)
    {
        goto failed;
    }

    return req;

failed:

    ngx_tce_consul_client_err(err, errlen, "URL too long");
    ngx_tce_consul_request_free(req);

    return NULL;
}


ngx_tce_consul_request_t *
ngx_tce_consul_leader_request(ngx_tce_consul_client_t *c, size_t server,
    char *err, size_t errlen)
{
    ngx_tce_consul_request_t  *req;

    if (server >= c->nurls) {
        ngx_tce_consul_client_err(err, errlen, "no such URL");
        return NULL;
    }

    req = ngx_tce_consul_request_create(c, "GET", c->request_timeout_ms,
                                        err, errlen);

    if (req == NULL) {
        return NULL;
    }

    req->server = server;
    req->probe = 1;

    if (ngx_tce_consul_path_url(req->url, sizeof(req->url),
                                c->urls[server], "/v1/status/leader", NULL)
        < 0
        || curl_easy_setopt(req->easy, CURLOPT_URL, req->url) != CURLE_OK)
    {
        ngx_tce_consul_client_err(err, errlen, "URL too long");
        ngx_tce_consul_request_free(req);
        return NULL;
    }

    return req;
}


int
ngx_tce_consul_leader_ok(const ngx_tce_consul_result_t *res)
{
    size_t       n;
    const char  *p;

    if (!res->ok) {
        return 0;
    }

    /* a JSON string: "" while the cluster has no leader */
    p = res->body;
    n = res->len;

    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'
                     || p[n - 1] == ' '))
    {
        n--;
    }

    return n > 2 && p[0] == '"' && p[n - 1] == '"';
}


ngx_tce_consul_request_t *
ngx_tce_consul_register_request(ngx_tce_consul_client_t *c,
    const char *body, size_t len, char *err, size_t errlen)
{
    ngx_tce_consul_request_t  *req;

    if (body == NULL) {
        ngx_tce_consul_client_err(err, errlen, "no body");
        return NULL;
    }

    req = ngx_tce_consul_request_create(c, "PUT", c->request_timeout_ms,
                                        err, errlen);

    if (req == NULL) {
        return NULL;
    }

    if (ngx_tce_consul_path_url(req->url, sizeof(req->url),
                                c->urls[req->server],
                                "/v1/agent/service/register", NULL)
        < 0
        || curl_easy_setopt(req->easy, CURLOPT_URL, req->url) != CURLE_OK
        || curl_easy_setopt(req->easy, CURLOPT_POSTFIELDSIZE_LARGE,
                            (curl_off_t) len)
           != CURLE_OK
        || curl_easy_setopt(req->easy, CURLOPT_COPYPOSTFIELDS, body)
           != CURLE_OK)
    {
        ngx_tce_consul_client_err(err, errlen, "cannot set up register "
                                  "request");
        ngx_tce_consul_request_free(req);
        return NULL;
    }

    return req;
}


ngx_tce_consul_request_t *
ngx_tce_consul_deregister_request(ngx_tce_consul_client_t *c,
    const char *id, char *err, size_t errlen)
{
    ngx_tce_consul_request_t  *req;

    req = ngx_tce_consul_request_create(c, "PUT", c->request_timeout_ms,
                                        err, errlen);

    if (req == NULL) {
        return NULL;
    }

    if (id == NULL
        || ngx_tce_consul_path_url(req->url, sizeof(req->url),
                                   c->urls[req->server],
                                   "/v1/agent/service/deregister/", id)
           < 0
        || curl_easy_setopt(req->easy, CURLOPT_URL, req->url) != CURLE_OK
        || curl_easy_setopt(req->easy, CURLOPT_POSTFIELDSIZE, 0L)
           != CURLE_OK
        || curl_easy_setopt(req->easy, CURLOPT_POSTFIELDS, "") != CURLE_OK)
    {
        ngx_tce_consul_client_err(err, errlen, "invalid service id");
        ngx_tce_consul_request_free(req);
        return NULL;
    }

    return req;
}


CURL *
ngx_tce_consul_request_handle(ngx_tce_consul_request_t *req)
{
    return req->easy;
}


void
ngx_tce_consul_request_set_data(ngx_tce_consul_request_t *req, void *data)
{
    req->data = data;
}


void *
ngx_tce_consul_request_data(ngx_tce_consul_request_t *req)
{
    return req->data;
}


int
ngx_tce_consul_request_done(ngx_tce_consul_request_t *req, CURLcode code,
    ngx_tce_consul_result_t *res)
{
    int       len;
    long      status;
    size_t    n;
    unsigned  failover;
    char      text[CURL_ERROR_SIZE];

    status = 0;
    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);

    if (req->b.gzip
        && (req->local || req->too_large || code != CURLE_OK
            || status < 200 || status > 299))
    {
        /* an error's text is quoted from its body: decoded here */
        ngx_tce_consul_decode_error(req);
    }

    res->status = status;
    res->code = code;
    res->body = req->b.data ? req->b.data : "";
    res->len = req->b.len;
    res->encoded = req->b.gzip;
    res->index = req->has_index ? req->index : NULL;
    res->url = req->url;
    res->ok = 0;

    failover = 0;

    if (req->local) {
        /* req->error says why; not the server's fault: no failover */

    } else if (req->too_large) {
        snprintf(req->error, sizeof(req->error), "body larger than %zu "
                 "bytes", req->client->max_body);

    } else if (code == CURLE_OK && req->bad_encoding
               && status >= 200 && status <= 299)
    {
        snprintf(req->error, sizeof(req->error), "answer in a "
                 "Content-Encoding other than the gzip asked for");
        failover = 1;

    } else if (code != CURLE_OK) {
        /* curl's text may quote the server (a certificate's names) */
        (void) snprintf(text, sizeof(text), "%s",
                        req->error[0] != '\0' ? req->error
                                               : curl_easy_strerror(code));
        (void) ngx_tce_text_escape(req->error, sizeof(req->error), text,
                                   strlen(text));

        failover = 1;

    } else if (status < 200 || status > 299) {
        /* Consul's error bodies are one line of text: quote its start */
        n = req->b.len;

        while (n > 0
               && (req->b.data[n - 1] == '\n' || req->b.data[n - 1] == '\r'))
        {
            n--;
        }

        /*
         * Any bytes, from Consul or a proxy's HTML page in front of it:
         * escaped, so that the status (JSON) and the log stay clean.
         */
        len = snprintf(req->error, sizeof(req->error), "HTTP %ld: ",
                       status);

        if (len > 0 && (size_t) len < sizeof(req->error) && req->b.data) {
            (void) ngx_tce_text_escape(req->error + len,
                                       sizeof(req->error) - len, req->b.data,
                                       n > 160 ? 160 : n);
        }

        failover = status >= 500;

    } else {
        req->error[0] = '\0';
        res->ok = 1;
    }

    /* credentials of a URL never reach an error text */
    for (n = 0; n < req->client->nurls; n++) {
        if (req->client->secrets[n]) {
            ngx_tce_consul_scrub(req->error, req->client->secrets[n]);
        }
    }

    res->error = req->error;

    if (failover && !req->probe && req->client->current == req->server) {
        ngx_tce_consul_client_failover(req->client);
    }

    return res->ok ? 0 : -1;
}


/* an error body in gzip: decoded within the limit, or dropped */

static void
ngx_tce_consul_decode_error(ngx_tce_consul_request_t *req)
{
    char  err[64];

    req->b.limit = req->client->max_body;

    if (ngx_tce_consul_body_gunzip(&req->b, err, sizeof(err)) != 0) {
        /* the status still says what happened */
        memset(&req->b, 0, sizeof(ngx_tce_consul_body_t));
    }
}


int
ngx_tce_consul_request_local_error(ngx_tce_consul_request_t *req,
    const char *text)
{
    if (req->local) {
        return 1;
    }

    req->local = 1;
    (void) snprintf(req->error, sizeof(req->error), "%s", text);

    return 0;
}


int
ngx_tce_consul_request_is_local(ngx_tce_consul_request_t *req)
{
    return req->local;
}


int
ngx_tce_consul_perform(ngx_tce_consul_request_t *req,
    ngx_tce_consul_result_t *res)
{
    return ngx_tce_consul_request_done(req, curl_easy_perform(req->easy),
                                       res);
}


void
ngx_tce_consul_request_take_body(ngx_tce_consul_request_t *req,
    ngx_tce_consul_body_t *body)
{
    *body = req->b;
    body->limit = req->client->max_body;
    memset(&req->b, 0, sizeof(ngx_tce_consul_body_t));
}


void
ngx_tce_consul_request_free(ngx_tce_consul_request_t *req)
{
    if (req == NULL) {
        return;
    }

    if (req->easy) {
        curl_easy_cleanup(req->easy);
    }

    curl_slist_free_all(req->headers);
    ngx_tce_consul_body_free(&req->b);
    free(req);
}
