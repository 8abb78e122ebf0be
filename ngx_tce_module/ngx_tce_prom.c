/*
 * The exposition of the request metrics: Prometheus text 0.0.4,
 * OpenMetrics 1.0.0 and JSON (see ngx_tce_prom.h).
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "ngx_tce_types.h"
#include "ngx_tce_instance.h"
#include "ngx_tce_prom.h"


#define NGX_TCE_PROM_COUNTER    "counter"
#define NGX_TCE_PROM_GAUGE      "gauge"
#define NGX_TCE_PROM_HISTOGRAM  "histogram"
#define NGX_TCE_PROM_SUMMARY    "summary"


/* one family being written: dropped again if it got no sample */
typedef struct {
    ngx_tce_buf_t            *b;
    unsigned                  format;
    size_t                    mark;
    unsigned                  samples;
    const char               *name;
} ngx_tce_prom_family_t;


static int ngx_tce_buf_reserve(ngx_tce_buf_t *b, size_t n);
static void ngx_tce_prom_begin(ngx_tce_prom_family_t *f, ngx_tce_buf_t *b,
    unsigned format, const char *name, const char *type, const char *help);
static void ngx_tce_prom_end(ngx_tce_prom_family_t *f);
static void ngx_tce_prom_sample(ngx_tce_prom_family_t *f,
    const char *suffix);
static void ngx_tce_prom_label(ngx_tce_buf_t *b, const char *name,
    const char *value, int first);
static void ngx_tce_prom_group_labels(ngx_tce_buf_t *b,
    const ngx_tce_prom_group_t *g);
static void ngx_tce_prom_instance_labels(ngx_tce_buf_t *b,
    const ngx_tce_prom_instance_t *in);
static void ngx_tce_prom_seconds(ngx_tce_buf_t *b, uint64_t ms);
static void ngx_tce_prom_groups(const ngx_tce_prom_snapshot_t *s,
    ngx_tce_buf_t *b, unsigned format);
static void ngx_tce_prom_group_counter(const ngx_tce_prom_snapshot_t *s,
    ngx_tce_buf_t *b, unsigned format, const char *name, const char *help,
    size_t offset);
static void ngx_tce_prom_histograms(const ngx_tce_prom_snapshot_t *s,
    ngx_tce_buf_t *b, unsigned format, const char *name, const char *help,
    size_t offset);
static void ngx_tce_prom_instances(const ngx_tce_prom_snapshot_t *s,
    ngx_tce_buf_t *b, unsigned format);
static void ngx_tce_prom_discovery(const ngx_tce_prom_snapshot_t *s,
    ngx_tce_buf_t *b, unsigned format);
static void ngx_tce_prom_diff(const ngx_tce_prom_snapshot_t *s,
    ngx_tce_buf_t *b, unsigned format);
static void ngx_tce_prom_canary(const ngx_tce_prom_snapshot_t *s,
    ngx_tce_buf_t *b, unsigned format);
static void ngx_tce_prom_scale(const ngx_tce_prom_snapshot_t *s,
    ngx_tce_buf_t *b, unsigned format);
static void ngx_tce_prom_persist(const ngx_tce_prom_snapshot_t *s,
    ngx_tce_buf_t *b, unsigned format);
static int ngx_tce_prom_json_persist(const ngx_tce_prom_snapshot_t *s,
    json_t *root);
static void ngx_tce_prom_process(const ngx_tce_prom_snapshot_t *s,
    ngx_tce_buf_t *b, unsigned format);
static void ngx_tce_prom_webhook(const ngx_tce_prom_snapshot_t *s,
    ngx_tce_buf_t *b, unsigned format);
static void ngx_tce_prom_fleet(const ngx_tce_prom_snapshot_t *s,
    ngx_tce_buf_t *b, unsigned format);
static int ngx_tce_prom_json(const ngx_tce_prom_snapshot_t *s,
    ngx_tce_buf_t *b);
static json_t *ngx_tce_prom_json_hist(const ngx_tce_histogram_t *h);


static const char  *ngx_tce_prom_classes[NGX_TCE_PROM_NCLASSES] = {
    "1xx", "2xx", "3xx", "4xx", "5xx", "other"
};

static const char  *ngx_tce_prom_sources[NGX_TCE_PROM_NSOURCES] = {
    "upstream", "nginx"
};


static int
ngx_tce_buf_reserve(ngx_tce_buf_t *b, size_t n)
{
    char    *p;
    size_t   cap;

    if (b->failed) {
        return -1;
    }

    if (b->len + n <= b->cap) {
        return 0;
    }

    cap = b->cap ? b->cap : 4096;

    while (cap < b->len + n) {
        cap *= 2;
    }

    p = realloc(b->data, cap);
    if (p == NULL) {
        b->failed = 1;
        return -1;
    }

    b->data = p;
    b->cap = cap;

    return 0;
}


int
ngx_tce_buf_append(ngx_tce_buf_t *b, const char *s, size_t len)
{
    if (ngx_tce_buf_reserve(b, len) != 0) {
        return -1;
    }

    memcpy(b->data + b->len, s, len);
    b->len += len;

    return 0;
}


int
ngx_tce_buf_printf(ngx_tce_buf_t *b, const char *fmt, ...)
{
    int      n;
    va_list  ap;

    if (ngx_tce_buf_reserve(b, 64) != 0) {
        return -1;
    }

    for ( ;; ) {
        va_start(ap, fmt);
        n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);

        if (n < 0) {
            b->failed = 1;
            return -1;
        }

        if ((size_t) n < b->cap - b->len) {
            b->len += n;
            return 0;
        }

        if (ngx_tce_buf_reserve(b, n + 1) != 0) {
            return -1;
        }
    }
}


void
ngx_tce_buf_free(ngx_tce_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}


int
ngx_tce_prom_escape(ngx_tce_buf_t *b, const char *s)
{
    size_t       n;
    const char  *p;

    for (p = s; *p; p++) { /* void */ }

    if (ngx_tce_buf_reserve(b, 2 * (p - s)) != 0) {
        return -1;
    }

    for (n = b->len; *s; s++) {
        switch (*s) {

        case '\\':
            b->data[n++] = '\\';
            b->data[n++] = '\\';
            break;

        case '"':
            b->data[n++] = '\\';
            b->data[n++] = '"';
            break;

        case '\n':
            b->data[n++] = '\\';
            b->data[n++] = 'n';
            break;

        default:
            b->data[n++] = *s;
        }
    }

    b->len = n;

    return 0;
}


const char *
ngx_tce_prom_class_name(unsigned cls)
{
    return cls < NGX_TCE_PROM_NCLASSES ? ngx_tce_prom_classes[cls] : "other";
}


const char *
ngx_tce_prom_content_type(unsigned format)
{
    switch (format) {

    case NGX_TCE_PROM_OPENMETRICS:
        return "application/openmetrics-text; version=1.0.0; charset=utf-8";

    case NGX_TCE_PROM_JSON:
        return "application/json";

    default:
        return "text/plain; version=0.0.4; charset=utf-8";
    }
}


unsigned
ngx_tce_prom_negotiate(const char *accept, size_t len)
{
    size_t       i, j, k;
    const char  *om = "application/openmetrics-text";

    /* each comma-separated media range: type, then ";q=" if any */

    for (i = 0; i < len; i = j + 1) {
        for (j = i; j < len && accept[j] != ','; j++) { /* void */ }

        for (k = i; k < j && (accept[k] == ' ' || accept[k] == '\t'); k++) {
            /* void */
        }

        if (j - k < 28 || strncasecmp(accept + k, om, 28) != 0) {
            continue;
        }

        for (k += 28; k + 3 <= j; k++) {
            if (accept[k] == ';') {
                while (k + 1 < j && accept[k + 1] == ' ') {
                    k++;
                }

                if (k + 3 <= j && (accept[k + 1] == 'q' || accept[k + 1] == 'Q')
                    && accept[k + 2] == '=')
                {
                    if (strtod(accept + k + 3, NULL) <= 0.0) {
                        goto next;
                    }
                }
            }
        }

        return NGX_TCE_PROM_OPENMETRICS;

    next:

        continue;
    }

    return NGX_TCE_PROM_TEXT;
}


static void
ngx_tce_prom_begin(ngx_tce_prom_family_t *f, ngx_tce_buf_t *b,
    unsigned format, const char *name, const char *type, const char *help)
{
    size_t  len;

    f->b = b;
    f->format = format;
    f->mark = b->len;
    f->samples = 0;
    f->name = name;

    /* OpenMetrics names a counter family without its _total suffix */
    len = strlen(name);

    if (format == NGX_TCE_PROM_OPENMETRICS
        && strcmp(type, NGX_TCE_PROM_COUNTER) == 0
        && len > 6 && strcmp(name + len - 6, "_total") == 0)
    {
        len -= 6;
    }

    (void) ngx_tce_buf_printf(b, "# HELP %.*s %s\n# TYPE %.*s %s\n",
                              (int) len, name, help, (int) len, name, type);
}


static void
ngx_tce_prom_end(ngx_tce_prom_family_t *f)
{
    if (f->samples == 0 && !f->b->failed) {
        f->b->len = f->mark;
    }
}


/* starts a sample line: the name, a suffix, and the opening brace */
static void
ngx_tce_prom_sample(ngx_tce_prom_family_t *f, const char *suffix)
{
    f->samples++;

    (void) ngx_tce_buf_printf(f->b, "%s%s{", f->name, suffix);
}


static void
ngx_tce_prom_label(ngx_tce_buf_t *b, const char *name, const char *value,
    int first)
{
    (void) ngx_tce_buf_printf(b, first ? "%s=\"" : ",%s=\"", name);
    (void) ngx_tce_prom_escape(b, value);
    (void) ngx_tce_buf_append(b, "\"", 1);
}


static void
ngx_tce_prom_group_labels(ngx_tce_buf_t *b, const ngx_tce_prom_group_t *g)
{
    ngx_tce_prom_label(b, "service", g->service, 1);
    ngx_tce_prom_label(b, "cluster", g->cluster, 0);
    ngx_tce_prom_label(b, "env", g->env, 0);
}


static void
ngx_tce_prom_instance_labels(ngx_tce_buf_t *b,
    const ngx_tce_prom_instance_t *in)
{
    ngx_tce_prom_label(b, "service", in->service, 1);
    ngx_tce_prom_label(b, "cluster", in->cluster, 0);
    ngx_tce_prom_label(b, "env", in->env, 0);
    ngx_tce_prom_label(b, "instance", in->instance, 0);
}


/* milliseconds as seconds, exactly: "1.234" */
static void
ngx_tce_prom_seconds(ngx_tce_buf_t *b, uint64_t ms)
{
    (void) ngx_tce_buf_printf(b, "%llu.%03llu",
                              (unsigned long long) (ms / 1000),
                              (unsigned long long) (ms % 1000));
}


int
ngx_tce_prom_render(const ngx_tce_prom_snapshot_t *s, unsigned format,
    ngx_tce_buf_t *b)
{
    if (format == NGX_TCE_PROM_JSON) {
        return ngx_tce_prom_json(s, b);
    }

    ngx_tce_prom_groups(s, b, format);
    ngx_tce_prom_instances(s, b, format);
    ngx_tce_prom_discovery(s, b, format);
    ngx_tce_prom_persist(s, b, format);
    ngx_tce_prom_fleet(s, b, format);
    ngx_tce_prom_scale(s, b, format);
    ngx_tce_prom_diff(s, b, format);
    ngx_tce_prom_webhook(s, b, format);
    ngx_tce_prom_canary(s, b, format);
    ngx_tce_prom_process(s, b, format);

    if (format == NGX_TCE_PROM_OPENMETRICS) {
        (void) ngx_tce_buf_append(b, "# EOF\n", 6);
    }

    return b->failed ? -1 : 0;
}


/* the canary policy in effect, per service and cluster */
static void
ngx_tce_prom_canary(const ngx_tce_prom_snapshot_t *s, ngx_tce_buf_t *b,
    unsigned format)
{
    size_t                        i;
    ngx_tce_prom_family_t         f;
    const ngx_tce_prom_canary_t  *c;

    ngx_tce_prom_begin(&f, b, format, "tce_canary_weight_basis_points",
                       NGX_TCE_PROM_GAUGE,
                       "Canary share of the cluster's requests in basis "
                       "points (0..10000), as routed now.");

    for (i = 0; i < s->ncanary; i++) {
        c = &s->canary[i];
        ngx_tce_prom_sample(&f, "");
        ngx_tce_prom_label(b, "service", c->service, 1);
        ngx_tce_prom_label(b, "cluster", c->cluster, 0);
        (void) ngx_tce_buf_printf(b, "} %u\n", (unsigned) c->weight);
    }

    ngx_tce_prom_end(&f);

    ngx_tce_prom_begin(&f, b, format, "tce_canary_epoch",
                       NGX_TCE_PROM_GAUGE,
                       "Epoch of the cluster's canary policy (a rollback "
                       "makes a new one).");

    for (i = 0; i < s->ncanary; i++) {
        c = &s->canary[i];
        ngx_tce_prom_sample(&f, "");
        ngx_tce_prom_label(b, "service", c->service, 1);
        ngx_tce_prom_label(b, "cluster", c->cluster, 0);
        (void) ngx_tce_buf_printf(b, "} %llu\n",
                                  (unsigned long long) c->epoch);
    }

    ngx_tce_prom_end(&f);
}


/* labels like the groups': service, cluster, env */
static void
ngx_tce_prom_scale(const ngx_tce_prom_snapshot_t *s, ngx_tce_buf_t *b,
    unsigned format)
{
    size_t                       i;
    ngx_tce_prom_family_t        f;
    const ngx_tce_prom_scale_t  *sc;

    ngx_tce_prom_begin(&f, b, format, "tce_scale_desired_instances",
                       NGX_TCE_PROM_GAUGE,
                       "Instances the env needs for its tce_scale_target, "
                       "as Kubernetes' HPA computes it over the last 10 s.");

    for (i = 0; i < s->nscale; i++) {
        sc = &s->scale[i];
        ngx_tce_prom_sample(&f, "");
        ngx_tce_prom_label(b, "service", sc->service, 1);
        ngx_tce_prom_label(b, "cluster", sc->cluster, 0);
        ngx_tce_prom_label(b, "env", sc->env, 0);
        (void) ngx_tce_buf_printf(b, "} %u\n", (unsigned) sc->desired);
    }

    ngx_tce_prom_end(&f);
}


/* the API diff: one series per location, cluster and result */
static void
ngx_tce_prom_diff(const ngx_tce_prom_snapshot_t *s, ngx_tce_buf_t *b,
    unsigned format)
{
    size_t                      i, k;
    ngx_tce_prom_family_t       f;
    const ngx_tce_prom_diff_t  *d;

    static const char  *results[] = { "match", "mismatch", "error" };

    ngx_tce_prom_begin(&f, b, format, "tce_diff_requests_total",
                       NGX_TCE_PROM_COUNTER,
                       "Requests of a tce_diff location whose answer was "
                       "compared with a canary's, by outcome.");

    for (i = 0; i < s->ndiff; i++) {
        d = &s->diff[i];

        for (k = 0; k < 3; k++) {
            ngx_tce_prom_sample(&f, "");
            ngx_tce_prom_label(b, "service", d->service, 1);
            ngx_tce_prom_label(b, "cluster", d->cluster, 0);
            ngx_tce_prom_label(b, "location", d->location, 0);
            ngx_tce_prom_label(b, "result", results[k], 0);
            (void) ngx_tce_buf_printf(b, "} %llu\n",
                                      (unsigned long long) d->results[k]);
        }
    }

    ngx_tce_prom_end(&f);
}


static void
ngx_tce_prom_groups(const ngx_tce_prom_snapshot_t *s, ngx_tce_buf_t *b,
    unsigned format)
{
    size_t                       i;
    unsigned                     cls, src;
    ngx_tce_prom_family_t        f;
    const ngx_tce_prom_group_t  *g;

    ngx_tce_prom_begin(&f, b, format, "tce_requests_total",
                       NGX_TCE_PROM_COUNTER,
                       "Requests by final status class and by who "
                       "answered: the upstream, or nginx (502/503/504 "
                       "with no upstream answer).");

    for (i = 0; i < s->ngroups; i++) {
        g = &s->groups[i];

        for (cls = 0; cls < NGX_TCE_PROM_NCLASSES; cls++) {
            for (src = 0; src < NGX_TCE_PROM_NSOURCES; src++) {
                if (g->c.requests[cls][src] == 0) {
                    continue;
                }

                ngx_tce_prom_sample(&f, "");
                ngx_tce_prom_group_labels(b, g);
                ngx_tce_prom_label(b, "class", ngx_tce_prom_classes[cls], 0);
                ngx_tce_prom_label(b, "source", ngx_tce_prom_sources[src],
                                   0);
                (void) ngx_tce_buf_printf(b, "} %llu\n",
                              (unsigned long long) g->c.requests[cls][src]);
            }
        }
    }

    ngx_tce_prom_end(&f);

    ngx_tce_prom_group_counter(s, b, format, "tce_received_bytes_total",
                               "Bytes received from clients.",
                               offsetof(ngx_tce_group_counters_t, bytes_in));
    ngx_tce_prom_group_counter(s, b, format, "tce_sent_bytes_total",
                               "Bytes sent to clients.",
                               offsetof(ngx_tce_group_counters_t,
                                        bytes_out));

    ngx_tce_prom_histograms(s, b, format, "tce_request_duration_seconds",
                            "Request duration, from the first byte read "
                            "to the last byte sent.",
                            offsetof(ngx_tce_group_counters_t,
                                     request_time));
    ngx_tce_prom_histograms(s, b, format,
                            "tce_upstream_response_duration_seconds",
                            "Upstream response duration, one observation "
                            "per attempt that reached an instance.",
                            offsetof(ngx_tce_group_counters_t,
                                     upstream_time));

    ngx_tce_prom_group_counter(s, b, format,
                               "tce_upstream_connect_failures_total",
                               "Attempts whose connection to the instance "
                               "failed or timed out.",
                               offsetof(ngx_tce_group_counters_t,
                                        connect_failures));
    ngx_tce_prom_group_counter(s, b, format, "tce_upstream_timeouts_total",
                               "Attempts that timed out (connect, send or "
                               "read).",
                               offsetof(ngx_tce_group_counters_t,
                                        timeouts));
    ngx_tce_prom_group_counter(s, b, format, "tce_upstream_retries_total",
                               "Attempts followed by another attempt on "
                               "another instance (not final responses).",
                               offsetof(ngx_tce_group_counters_t, retries));

    ngx_tce_prom_begin(&f, b, format, "tce_requests_in_flight",
                       NGX_TCE_PROM_GAUGE,
                       "Requests holding an upstream attempt now.");

    for (i = 0; i < s->ngroups; i++) {
        g = &s->groups[i];
        ngx_tce_prom_sample(&f, "");
        ngx_tce_prom_group_labels(b, g);
        (void) ngx_tce_buf_printf(b, "} %lld\n",
                                  (long long) (int64_t) g->c.in_flight);
    }

    ngx_tce_prom_end(&f);
}


static void
ngx_tce_prom_group_counter(const ngx_tce_prom_snapshot_t *s,
    ngx_tce_buf_t *b, unsigned format, const char *name, const char *help,
    size_t offset)
{
    size_t                       i;
    uint64_t                     v;
    ngx_tce_prom_family_t        f;
    const ngx_tce_prom_group_t  *g;

    ngx_tce_prom_begin(&f, b, format, name, NGX_TCE_PROM_COUNTER, help);

    for (i = 0; i < s->ngroups; i++) {
        g = &s->groups[i];
        v = *(const uint64_t *) ((const char *) &g->c + offset);

        ngx_tce_prom_sample(&f, "");
        ngx_tce_prom_group_labels(b, g);
        (void) ngx_tce_buf_printf(b, "} %llu\n", (unsigned long long) v);
    }

    ngx_tce_prom_end(&f);
}


static void
ngx_tce_prom_histograms(const ngx_tce_prom_snapshot_t *s, ngx_tce_buf_t *b,
    unsigned format, const char *name, const char *help, size_t offset)
{
    size_t                       i;
    unsigned                     k;
    uint64_t                     cum[NGX_TCE_HIST_NBUCKETS], total;
    ngx_tce_prom_family_t        f;
    const ngx_tce_histogram_t   *h;
    const ngx_tce_prom_group_t  *g;

    ngx_tce_prom_begin(&f, b, format, name, NGX_TCE_PROM_HISTOGRAM, help);

    for (i = 0; i < s->ngroups; i++) {
        g = &s->groups[i];
        h = (const ngx_tce_histogram_t *) ((const char *) &g->c + offset);

        total = ngx_tce_histogram_cumulate(h, cum);

        for (k = 0; k < NGX_TCE_HIST_NBUCKETS; k++) {
            ngx_tce_prom_sample(&f, "_bucket");
            ngx_tce_prom_group_labels(b, g);
            ngx_tce_prom_label(b, "le", ngx_tce_histogram_le(k), 0);
            (void) ngx_tce_buf_printf(b, "} %llu\n",
                                      (unsigned long long) cum[k]);
        }

        ngx_tce_prom_sample(&f, "_sum");
        ngx_tce_prom_group_labels(b, g);
        (void) ngx_tce_buf_append(b, "} ", 2);
        ngx_tce_prom_seconds(b, h->sum_ms);
        (void) ngx_tce_buf_append(b, "\n", 1);

        ngx_tce_prom_sample(&f, "_count");
        ngx_tce_prom_group_labels(b, g);
        (void) ngx_tce_buf_printf(b, "} %llu\n",
                                  (unsigned long long) total);
    }

    ngx_tce_prom_end(&f);
}


static void
ngx_tce_prom_instances(const ngx_tce_prom_snapshot_t *s, ngx_tce_buf_t *b,
    unsigned format)
{
    size_t                          i;
    unsigned                        cls;
    ngx_tce_prom_family_t           f;
    const ngx_tce_prom_instance_t  *in;

    ngx_tce_prom_begin(&f, b, format, "tce_instance_requests_total",
                       NGX_TCE_PROM_COUNTER,
                       "Attempts sent to the instance, final or retried, "
                       "by the status class they got.");

    for (i = 0; i < s->ninstances; i++) {
        in = &s->instances[i];

        for (cls = 0; cls < NGX_TCE_PROM_NCLASSES; cls++) {
            if (in->c.requests[cls] == 0) {
                continue;
            }

            ngx_tce_prom_sample(&f, "");
            ngx_tce_prom_instance_labels(b, in);
            ngx_tce_prom_label(b, "class", ngx_tce_prom_classes[cls], 0);
            (void) ngx_tce_buf_printf(b, "} %llu\n",
                                 (unsigned long long) in->c.requests[cls]);
        }
    }

    ngx_tce_prom_end(&f);

    ngx_tce_prom_begin(&f, b, format, "tce_instance_requests_in_flight",
                       NGX_TCE_PROM_GAUGE,
                       "Attempts in progress on the instance.");

    for (i = 0; i < s->ninstances; i++) {
        in = &s->instances[i];
        ngx_tce_prom_sample(&f, "");
        ngx_tce_prom_instance_labels(b, in);
        (void) ngx_tce_buf_printf(b, "} %lld\n",
                                  (long long) (int64_t) in->c.in_flight);
    }

    ngx_tce_prom_end(&f);

    ngx_tce_prom_begin(&f, b, format,
                       "tce_instance_upstream_response_seconds",
                       NGX_TCE_PROM_SUMMARY,
                       "Upstream response time of the attempts sent to "
                       "the instance.");

    for (i = 0; i < s->ninstances; i++) {
        in = &s->instances[i];
        ngx_tce_prom_sample(&f, "_sum");
        ngx_tce_prom_instance_labels(b, in);
        (void) ngx_tce_buf_append(b, "} ", 2);
        ngx_tce_prom_seconds(b, in->c.time_sum_ms);
        (void) ngx_tce_buf_append(b, "\n", 1);

        ngx_tce_prom_sample(&f, "_count");
        ngx_tce_prom_instance_labels(b, in);
        (void) ngx_tce_buf_printf(b, "} %llu\n",
                                  (unsigned long long) in->c.time_count);
    }

    ngx_tce_prom_end(&f);

    ngx_tce_prom_begin(&f, b, format, "tce_instance_state",
                       NGX_TCE_PROM_GAUGE,
                       "1 for the state of a registered instance (up, "
                       "draining, down), operator overrides applied.");

    for (i = 0; i < s->ninstances; i++) {
        in = &s->instances[i];

        if (in->state == NGX_TCE_PROM_DEPARTED) {
            continue;
        }

        ngx_tce_prom_sample(&f, "");
        ngx_tce_prom_instance_labels(b, in);
        ngx_tce_prom_label(b, "state", ngx_tce_state_name(in->state), 0);
        (void) ngx_tce_buf_append(b, "} 1\n", 4);
    }

    ngx_tce_prom_end(&f);

    ngx_tce_prom_begin(&f, b, format, "tce_instance_weight",
                       NGX_TCE_PROM_GAUGE,
                       "Weight routing uses (operator override first, 0 "
                       "when not routable).");

    for (i = 0; i < s->ninstances; i++) {
        in = &s->instances[i];

        if (in->state == NGX_TCE_PROM_DEPARTED) {
            continue;
        }

        ngx_tce_prom_sample(&f, "");
        ngx_tce_prom_instance_labels(b, in);
        (void) ngx_tce_buf_printf(b, "} %u\n", in->weight);
    }

    ngx_tce_prom_end(&f);
}


static void
ngx_tce_prom_discovery(const ngx_tce_prom_snapshot_t *s, ngx_tce_buf_t *b,
    unsigned format)
{
    size_t                           i;
    unsigned                         k;
    uint64_t                         v;
    ngx_tce_prom_family_t            f;
    const ngx_tce_prom_discovery_t  *d;

    static const char  *results[] = { "ok", "failure", "empty" };

    ngx_tce_prom_begin(&f, b, format, "tce_discovery_syncs_total",
                       NGX_TCE_PROM_COUNTER,
                       "Discovery answers per service: ok, failure, or "
                       "empty (the last known set was kept).");

    for (i = 0; i < s->ndiscovery; i++) {
        d = &s->discovery[i];

        for (k = 0; k < 3; k++) {
            v = (k == 0) ? d->c.ok : (k == 1) ? d->c.failures : d->c.empty;

            ngx_tce_prom_sample(&f, "");
            ngx_tce_prom_label(b, "service", d->service, 1);
            ngx_tce_prom_label(b, "result", results[k], 0);
            (void) ngx_tce_buf_printf(b, "} %llu\n", (unsigned long long) v);
        }
    }

    ngx_tce_prom_end(&f);

    ngx_tce_prom_begin(&f, b, format,
                       "tce_discovery_last_success_timestamp_seconds",
                       NGX_TCE_PROM_GAUGE,
                       "Unix time of the last successful discovery "
                       "answer, 0 if none.");

    for (i = 0; i < s->ndiscovery; i++) {
        d = &s->discovery[i];
        ngx_tce_prom_sample(&f, "");
        ngx_tce_prom_label(b, "service", d->service, 1);
        (void) ngx_tce_buf_printf(b, "} %llu\n",
                                  (unsigned long long) d->c.last_success);
    }

    ngx_tce_prom_end(&f);

    ngx_tce_prom_begin(&f, b, format, "tce_discovery_index",
                       NGX_TCE_PROM_GAUGE,
                       "Current blocking-query index of the service.");

    for (i = 0; i < s->ndiscovery; i++) {
        d = &s->discovery[i];
        ngx_tce_prom_sample(&f, "");
        ngx_tce_prom_label(b, "service", d->service, 1);
        (void) ngx_tce_buf_printf(b, "} %llu\n",
                                  (unsigned long long) d->c.index);
    }

    ngx_tce_prom_end(&f);
}


/* the files the workers write: one series per configured path */

static void
ngx_tce_prom_persist(const ngx_tce_prom_snapshot_t *s, ngx_tce_buf_t *b,
    unsigned format)
{
    size_t                         i;
    ngx_tce_prom_family_t          f;
    const ngx_tce_prom_persist_t  *p;

    ngx_tce_prom_begin(&f, b, format, "tce_persist_writes_total",
                       NGX_TCE_PROM_COUNTER,
                       "Successful writes of a file the workers keep "
                       "(the Consul snapshot).");

    for (i = 0; i < s->npersist; i++) {
        p = &s->persist[i];
        ngx_tce_prom_sample(&f, "");
        ngx_tce_prom_label(b, "file", p->file, 1);
        (void) ngx_tce_buf_printf(b, "} %llu\n",
                                  (unsigned long long) p->writes);
    }

    ngx_tce_prom_end(&f);

    ngx_tce_prom_begin(&f, b, format, "tce_persist_errors_total",
                       NGX_TCE_PROM_COUNTER,
                       "Failed (or incomplete) writes of a file the "
                       "workers keep.");

    for (i = 0; i < s->npersist; i++) {
        p = &s->persist[i];
        ngx_tce_prom_sample(&f, "");
        ngx_tce_prom_label(b, "file", p->file, 1);
        (void) ngx_tce_buf_printf(b, "} %llu\n",
                                  (unsigned long long) p->errors);
    }

    ngx_tce_prom_end(&f);

    ngx_tce_prom_begin(&f, b, format,
                       "tce_persist_last_success_timestamp_seconds",
                       NGX_TCE_PROM_GAUGE,
                       "Unix time of the last successful write of a file "
                       "the workers keep, 0 if none.");

    for (i = 0; i < s->npersist; i++) {
        p = &s->persist[i];
        ngx_tce_prom_sample(&f, "");
        ngx_tce_prom_label(b, "file", p->file, 1);
        (void) ngx_tce_buf_printf(b, "} %llu\n",
                                  (unsigned long long) p->last_success);
    }

    ngx_tce_prom_end(&f);
}


static int
ngx_tce_prom_json_persist(const ngx_tce_prom_snapshot_t *s, json_t *root)
{
    size_t                         i;
    json_t                        *list, *o;
    const ngx_tce_prom_persist_t  *p;

    list = json_array();
    if (list == NULL || json_object_set_new(root, "persist", list) != 0) {
        return -1;
    }

    for (i = 0; i < s->npersist; i++) {
        p = &s->persist[i];

        o = json_pack("{s:s, s:I, s:I, s:I}",
                      "file", p->file,
                      "writes", (json_int_t) p->writes,
                      "errors", (json_int_t) p->errors,
                      "last_success", (json_int_t) p->last_success);

        if (o == NULL || json_array_append_new(list, o) != 0) {
            return -1;
        }
    }

    return 0;
}


/* the fleet store: label-less series, only with tce_redis */

static void
ngx_tce_prom_fleet(const ngx_tce_prom_snapshot_t *s, ngx_tce_buf_t *b,
    unsigned format)
{
    unsigned                     k;
    uint64_t                     v, vals[9];
    ngx_tce_prom_family_t        f;
    const ngx_tce_prom_fleet_t  *fl;

    static const char  *names[] = {
        "tce_fleet_redis_up", "tce_fleet_version",
        "tce_fleet_last_sync_timestamp_seconds", "tce_fleet_syncs_total",
        "tce_fleet_messages_total", "tce_fleet_errors_total",
        "tce_fleet_snapshots_refused_total", "tce_fleet_writes_total",
        "tce_fleet_write_errors_total"
    };
    static const char  *helps[] = {
        "1 when the fleet syncer is connected to Redis.",
        "Fleet version of the policy applied to this node.",
        "Unix time of the last fleet snapshot applied, 0 if none.",
        "Fleet snapshots read and applied.",
        "Pub/sub messages received from the fleet.",
        "Redis connection and protocol errors.",
        "Fleet snapshots refused as invalid (nothing applied).",
        "Admin writes accepted by the fleet store.",
        "Admin writes refused because Redis was unavailable."
    };

    fl = &s->fleet;

    if (!fl->present) {
        return;
    }

    vals[0] = fl->up;
    vals[1] = fl->version;
    vals[2] = fl->last_sync;
    vals[3] = fl->syncs;
    vals[4] = fl->messages;
    vals[5] = fl->errors;
    vals[6] = fl->rejected;
    vals[7] = fl->writes;
    vals[8] = fl->write_errors;

    for (k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        v = vals[k];

        ngx_tce_prom_begin(&f, b, format, names[k],
                           k < 3 ? NGX_TCE_PROM_GAUGE : NGX_TCE_PROM_COUNTER,
                           helps[k]);
        f.samples++;
        (void) ngx_tce_buf_printf(b, "%s %llu\n", f.name,
                                  (unsigned long long) v);
        ngx_tce_prom_end(&f);
    }
}


/* the deploy webhook: only with tce_deploy_webhook */

static void
ngx_tce_prom_webhook(const ngx_tce_prom_snapshot_t *s, ngx_tce_buf_t *b,
    unsigned format)
{
    unsigned                       k;
    ngx_tce_prom_family_t          f;
    const ngx_tce_prom_webhook_t  *w;

    static const char  *results[] = {
        "delivered", "dropped", "abandoned"
    };

    w = &s->webhook;

    if (!w->present) {
        return;
    }

    ngx_tce_prom_begin(&f, b, format, "tce_deploy_webhook_events_total",
                       NGX_TCE_PROM_COUNTER,
                       "Deploy events out of the webhook's queue: "
                       "delivered (2xx), dropped (queue full), abandoned "
                       "(retries exhausted).");

    for (k = 0; k < 3; k++) {
        ngx_tce_prom_sample(&f, "");
        ngx_tce_prom_label(b, "result", results[k], 1);
        (void) ngx_tce_buf_printf(b, "} %llu\n", (unsigned long long)
                                  (k == 0 ? w->delivered
                                   : k == 1 ? w->dropped : w->abandoned));
    }

    ngx_tce_prom_end(&f);

    ngx_tce_prom_begin(&f, b, format,
                       "tce_deploy_webhook_attempt_failures_total",
                       NGX_TCE_PROM_COUNTER,
                       "Webhook POSTs that failed (no answer, timeout, "
                       "status not 2xx).");
    f.samples++;
    (void) ngx_tce_buf_printf(b, "%s %llu\n", f.name,
                              (unsigned long long) w->failures);
    ngx_tce_prom_end(&f);

    ngx_tce_prom_begin(&f, b, format, "tce_deploy_webhook_queue_events",
                       NGX_TCE_PROM_GAUGE,
                       "Deploy events waiting to be delivered.");
    f.samples++;
    (void) ngx_tce_buf_printf(b, "%s %llu\n", f.name,
                              (unsigned long long) w->queue);
    ngx_tce_prom_end(&f);

    ngx_tce_prom_begin(&f, b, format,
                       "tce_deploy_webhook_last_success_timestamp_seconds",
                       NGX_TCE_PROM_GAUGE,
                       "Unix time of the last event delivered, 0 if none.");
    f.samples++;
    (void) ngx_tce_buf_printf(b, "%s %llu\n", f.name,
                              (unsigned long long) w->last_success);
    ngx_tce_prom_end(&f);
}


static void
ngx_tce_prom_process(const ngx_tce_prom_snapshot_t *s, ngx_tce_buf_t *b,
    unsigned format)
{
    unsigned                k;
    uint64_t                v;
    ngx_tce_prom_family_t   f;

    static const char  *names[] = {
        "tce_zone_size_bytes", "tce_zone_used_bytes", "tce_zone_free_bytes",
        "tce_zone_services", "tce_zone_services_skipped_total",
        "tce_zone_services_reclaimed_total",
        "tce_zone_writes_refused_total"
    };
    static const char  *helps[] = {
        "Size of the shared zone.",
        "Bytes of the shared zone in use (slab pages).",
        "Bytes of the shared zone free (slab pages).",
        "Services in the registry of the zone.",
        "Names of Consul's catalog not stored: the zone had no room.",
        "Services freed from the zone: no longer watched, empty, unused.",
        "Registry writes (instance sets, canary policies, overrides) "
        "refused: the zone had no room; what was stored before stays."
    };
    const uint64_t      values[] = {
        s->zone_size, s->zone_used, s->zone_free, s->zone_services,
        s->services_skipped, s->services_reclaimed, s->writes_refused
    };

    for (k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        v = values[k];

        ngx_tce_prom_begin(&f, b, format, names[k],
                           k < 4 ? NGX_TCE_PROM_GAUGE : NGX_TCE_PROM_COUNTER,
                           helps[k]);
        ngx_tce_prom_sample(&f, "");
        ngx_tce_prom_label(b, "zone", s->zone_name, 1);
        (void) ngx_tce_buf_printf(b, "} %llu\n", (unsigned long long) v);
        ngx_tce_prom_end(&f);
    }

    ngx_tce_prom_begin(&f, b, format, "tce_metrics_dropped_total",
                       NGX_TCE_PROM_COUNTER,
                       "Observations not counted because the zone had no "
                       "room for their series.");
    f.samples++;
    (void) ngx_tce_buf_printf(b, "%s %llu\n", f.name,
                              (unsigned long long) s->dropped);
    ngx_tce_prom_end(&f);

    ngx_tce_prom_begin(&f, b, format, "tce_build_info", NGX_TCE_PROM_GAUGE,
                       "Version of the module and of nginx, value 1.");
    ngx_tce_prom_sample(&f, "");
    ngx_tce_prom_label(b, "version", s->version, 1);
    ngx_tce_prom_label(b, "nginx_version", s->server_version, 0);
    (void) ngx_tce_buf_append(b, "} 1\n", 4);
    ngx_tce_prom_end(&f);

    ngx_tce_prom_begin(&f, b, format, "tce_start_time_seconds",
                       NGX_TCE_PROM_GAUGE,
                       "Unix time the counters started from (the zone's "
                       "creation: kept across reloads).");
    f.samples++;
    (void) ngx_tce_buf_printf(b, "%s %llu\n", f.name,
                              (unsigned long long) s->start_time);
    ngx_tce_prom_end(&f);
}


static json_t *
ngx_tce_prom_json_hist(const ngx_tce_histogram_t *h)
{
    json_t    *o, *buckets;
    unsigned   k;
    uint64_t   cum[NGX_TCE_HIST_NBUCKETS], total;

    total = ngx_tce_histogram_cumulate(h, cum);

    buckets = json_object();
    if (buckets == NULL) {
        return NULL;
    }

    for (k = 0; k < NGX_TCE_HIST_NBUCKETS; k++) {
        if (json_object_set_new(buckets, ngx_tce_histogram_le(k),
                                json_integer((json_int_t) cum[k]))
            != 0)
        {
            json_decref(buckets);
            return NULL;
        }
    }

    o = json_pack("{s:o, s:I, s:f}", "buckets", buckets,
                  "count", (json_int_t) total,
                  "sum", (double) h->sum_ms / 1000.0);

    return o;
}


static int
ngx_tce_prom_json(const ngx_tce_prom_snapshot_t *s, ngx_tce_buf_t *b)
{
    char                            *text;
    size_t                           i;
    json_t                          *root, *list, *o, *req, *by, *v;
    unsigned                         cls, src;
    const ngx_tce_prom_group_t      *g;
    const ngx_tce_prom_instance_t   *in;
    const ngx_tce_prom_discovery_t  *d;

    root = json_pack("{s:I, s:I, s:{s:s, s:I, s:I, s:I}, s:{s:s, s:s}}",
                     "start_time", (json_int_t) s->start_time,
                     "dropped", (json_int_t) s->dropped,
                     "zone", "name", s->zone_name,
                     "size", (json_int_t) s->zone_size,
                     "used", (json_int_t) s->zone_used,
                     "free", (json_int_t) s->zone_free,
                     "build", "version", s->version,
                     "nginx_version", s->server_version);
    if (root == NULL) {
        return -1;
    }

    list = json_array();
    if (list == NULL || json_object_set_new(root, "groups", list) != 0) {
        goto failed;
    }

    for (i = 0; i < s->ngroups; i++) {
        g = &s->groups[i];

        req = json_object();
        if (req == NULL) {
            goto failed;
        }

        for (cls = 0; cls < NGX_TCE_PROM_NCLASSES; cls++) {
            by = json_object();
            if (by == NULL
                || json_object_set_new(req, ngx_tce_prom_classes[cls], by)
                   != 0)
            {
                json_decref(req);
                goto failed;
            }

            for (src = 0; src < NGX_TCE_PROM_NSOURCES; src++) {
                if (json_object_set_new(by, ngx_tce_prom_sources[src],
                        json_integer((json_int_t) g->c.requests[cls][src]))
                    != 0)
                {
                    json_decref(req);
                    goto failed;
                }
            }
        }

        o = json_pack("{s:s, s:s, s:s, s:o, s:I, s:I, s:I, s:I, s:I, s:I,"
                      " s:o*, s:o*}",
                      "service", g->service, "cluster", g->cluster,
                      "env", g->env, "requests", req,
                      "received_bytes", (json_int_t) g->c.bytes_in,
                      "sent_bytes", (json_int_t) g->c.bytes_out,
                      "connect_failures", (json_int_t) g->c.connect_failures,
                      "timeouts", (json_int_t) g->c.timeouts,
                      "retries", (json_int_t) g->c.retries,
                      "in_flight", (json_int_t) (int64_t) g->c.in_flight,
                      "request_duration",
                      ngx_tce_prom_json_hist(&g->c.request_time),
                      "upstream_response_duration",
                      ngx_tce_prom_json_hist(&g->c.upstream_time));

        if (o == NULL || json_array_append_new(list, o) != 0) {
            goto failed;
        }
    }

    list = json_array();
    if (list == NULL || json_object_set_new(root, "instances", list) != 0) {
        goto failed;
    }

    for (i = 0; i < s->ninstances; i++) {
        in = &s->instances[i];

        req = json_object();
        if (req == NULL) {
            goto failed;
        }

        for (cls = 0; cls < NGX_TCE_PROM_NCLASSES; cls++) {
            v = json_integer((json_int_t) in->c.requests[cls]);

            if (json_object_set_new(req, ngx_tce_prom_classes[cls], v) != 0)
            {
                json_decref(req);
                goto failed;
            }
        }

        o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:o, s:I, s:f, s:I}",
                      "service", in->service, "cluster", in->cluster,
                      "env", in->env, "instance", in->instance,
                      "state", in->state == NGX_TCE_PROM_DEPARTED
                               ? "departed" : ngx_tce_state_name(in->state),
                      "weight", (int) in->weight, "requests", req,
                      "in_flight", (json_int_t) (int64_t) in->c.in_flight,
                      "upstream_response_seconds_sum",
                      (double) in->c.time_sum_ms / 1000.0,
                      "upstream_response_count",
                      (json_int_t) in->c.time_count);

        if (o == NULL || json_array_append_new(list, o) != 0) {
            goto failed;
        }
    }

    list = json_array();
    if (list == NULL || json_object_set_new(root, "discovery", list) != 0) {
        goto failed;
    }

    for (i = 0; i < s->ndiscovery; i++) {
        d = &s->discovery[i];

        o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}",
                      "service", d->service,
                      "ok", (json_int_t) d->c.ok,
                      "failures", (json_int_t) d->c.failures,
                      "empty", (json_int_t) d->c.empty,
                      "last_success", (json_int_t) d->c.last_success,
                      "index", (json_int_t) d->c.index);

        if (o == NULL || json_array_append_new(list, o) != 0) {
            goto failed;
        }
    }

    if (ngx_tce_prom_json_persist(s, root) != 0) {
        goto failed;
    }

    list = json_array();
    if (list == NULL || json_object_set_new(root, "scale", list) != 0) {
        goto failed;
    }

    for (i = 0; i < s->nscale; i++) {
        o = json_pack("{s:s, s:s, s:s, s:I}",
                      "service", s->scale[i].service,
                      "cluster", s->scale[i].cluster,
                      "env", s->scale[i].env,
                      "desired_instances", (json_int_t) s->scale[i].desired);

        if (o == NULL || json_array_append_new(list, o) != 0) {
            goto failed;
        }
    }

    list = json_array();
    if (list == NULL || json_object_set_new(root, "canary", list) != 0) {
        goto failed;
    }

    for (i = 0; i < s->ncanary; i++) {
        o = json_pack("{s:s, s:s, s:I, s:I}",
                      "service", s->canary[i].service,
                      "cluster", s->canary[i].cluster,
                      "weight_basis_points", (json_int_t) s->canary[i].weight,
                      "epoch", (json_int_t) s->canary[i].epoch);

        if (o == NULL || json_array_append_new(list, o) != 0) {
            goto failed;
        }
    }

    text = json_dumps(root, JSON_COMPACT);
    json_decref(root);

    if (text == NULL) {
        b->failed = 1;
        return -1;
    }

    (void) ngx_tce_buf_append(b, text, strlen(text));
    (void) ngx_tce_buf_append(b, "\n", 1);
    free(text);

    return b->failed ? -1 : 0;

failed:

    json_decref(root);
    b->failed = 1;

    return -1;
}
