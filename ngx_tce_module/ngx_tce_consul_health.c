/*
 * Consul /v1/health/service bodies into instances (pure C, no nginx):
 * see ngx_tce_consul_parse_health() in ngx_tce_consul_parse.h.
 *
 * A small scanner splits the body into its top-level entries, and each
 * entry is read on its own (ngx_tce_consul_entry.c), for the few
 * values routing uses, without building the rest: memory is the body
 * plus one entry's decoded strings plus the instances, however many
 * entries there are, and a bad entry costs only itself.  Skipped
 * entries are collected and reported at the end, in entry order, so
 * that a body refused late (a syntax error in its last entry) has
 * reported nothing.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_tce_instance.h"
#include "ngx_tce_consul_parse.h"
#include "ngx_tce_consul_entry.h"
#include "ngx_tce_consul_split.h"
#include "ngx_tce_consul_memo.h"


#define NGX_TCE_CONSUL_ID_CUT    (NGX_TCE_ID_LEN - 18)  /* + "~" 16 hex */


/* an instance id being built: the start kept, the whole hashed */
typedef struct {
    char                      buf[NGX_TCE_ID_LEN];
    size_t                    len;          /* of the whole id */
    uint64_t                  hash;         /* FNV-1a 64 of the whole */
} ngx_tce_consul_id_t;


typedef struct {
    size_t                    pos;
    char                      id[NGX_TCE_ID_LEN];
    char                      reason[NGX_TCE_CONSUL_ERR_LEN];
} ngx_tce_consul_skip_t;


typedef struct {
    const char               *id;
    size_t                    k;
} ngx_tce_consul_ref_t;


/* everything one answer builds before it is handed out */
typedef struct {
    ngx_tce_instance_t       *insts;
    uint64_t                 *weights;      /* Consul's, per instance */
    size_t                   *pos;          /* entry of each instance */
    size_t                    n;

    ngx_tce_consul_skip_t    *skips;
    size_t                    nskips;
    size_t                    skips_size;

    size_t                    nexcluded;
    size_t                    nwarning;
} ngx_tce_consul_answer_t;


static void ngx_tce_consul_read(ngx_tce_consul_span_t *span, char *scratch,
    ngx_tce_consul_memo_entry_t *e, char *reason, size_t rlen);
static int ngx_tce_consul_entry(ngx_tce_consul_fields_t *f,
    ngx_tce_instance_t *inst, uint64_t *weight, ngx_tce_consul_id_t *id,
    char *reason, size_t rlen);
static int ngx_tce_consul_state(ngx_tce_consul_fields_t *f, char *reason,
    size_t rlen);
static int ngx_tce_consul_weight(ngx_tce_consul_fields_t *f,
    uint64_t *weight, char *reason, size_t rlen);
static int ngx_tce_consul_identity(ngx_tce_consul_fields_t *f,
    ngx_tce_consul_id_t *id, char *reason, size_t rlen);
static int ngx_tce_consul_qualifier(ngx_tce_json_value_t *v,
    const char *key, const char *prefix, ngx_tce_consul_id_t *id,
    char *reason, size_t rlen);
static void ngx_tce_consul_id_add(ngx_tce_consul_id_t *id, const char *s,
    size_t len, int escape);
static void ngx_tce_consul_id_byte(ngx_tce_consul_id_t *id, int c);
static void ngx_tce_consul_id_done(ngx_tce_consul_id_t *id);
static int ngx_tce_consul_meta(ngx_tce_json_value_t *v, const char *key,
    const char **val, size_t *len, char *reason, size_t rlen);
static int ngx_tce_consul_fields(ngx_tce_consul_fields_t *f,
    ngx_tce_instance_t *inst, char *reason, size_t rlen);
static int ngx_tce_consul_skipped(ngx_tce_consul_answer_t *a, size_t pos,
    const char *id, const char *reason);
static int ngx_tce_consul_ref_cmp(const void *one, const void *two);
static int ngx_tce_consul_skip_cmp(const void *one, const void *two);
static int ngx_tce_consul_dedup(ngx_tce_consul_answer_t *a);
static uint64_t ngx_tce_consul_gcd(uint64_t a, uint64_t b);
static uint64_t ngx_tce_consul_scale(ngx_tce_consul_answer_t *a);
static void ngx_tce_consul_answer_free(ngx_tce_consul_answer_t *a);


/*
 * Reads one entry into e: rc 0 (routed: inst, weight, state), 1
 * (excluded by its state or a weight of 0) or -1 (skipped: inst.id what
 * could be built of its id, reason why).
 */

static void
ngx_tce_consul_read(ngx_tce_consul_span_t *span, char *scratch,
    ngx_tce_consul_memo_entry_t *e, char *reason, size_t rlen)
{
    ngx_tce_consul_id_t      id;
    ngx_tce_consul_fields_t  f;

    memset(e, 0, sizeof(ngx_tce_consul_memo_entry_t));
    memset(&id, 0, sizeof(ngx_tce_consul_id_t));
    reason[0] = '\0';
    e->reason = reason;
    e->rc = -1;

    if (span->len > NGX_TCE_CONSUL_MAX_ENTRY) {
        ngx_tce_consul_err(reason, rlen, "entry of %zu bytes, more than %d",
                           span->len, NGX_TCE_CONSUL_MAX_ENTRY);
        return;
    }

    if (span->depth > NGX_TCE_CONSUL_MAX_DEPTH) {
        ngx_tce_consul_err(reason, rlen, "entry nested deeper than %d",
                           NGX_TCE_CONSUL_MAX_DEPTH);
        return;
    }

    /*
     * the scanner found the entry whole (a truncated body fails there):
     * a bad token, or a key read twice, spoils this entry only; Output,
     * Notes, tags and other Meta are free text
     */
    if (ngx_tce_consul_entry_read(span->start, span->len, scratch, &f,
                                  reason, rlen)
        != 0)
    {
        return;
    }

    e->rc = ngx_tce_consul_entry(&f, &e->inst, &e->weight, &id, reason,
                                 rlen);

    if (e->rc == 0) {
        e->state = f.state;
        return;
    }

    memset(&e->inst, 0, sizeof(ngx_tce_instance_t));

    if (e->rc == -1) {
        memcpy(e->inst.id, id.buf, sizeof(e->inst.id));
    }
}


/*
 * Fills inst and the Consul weight from one entry's values.  Returns 0
 * (to route, f->state says at which weight), 1 (excluded by its state
 * or a weight of 0) or -1 with a reason; id holds what could be built
 * of the instance id ("" if nothing).
 */

static int
ngx_tce_consul_entry(ngx_tce_consul_fields_t *f, ngx_tce_instance_t *inst,
    uint64_t *weight, ngx_tce_consul_id_t *id, char *reason, size_t rlen)
{
    if (f->entry != NGX_TCE_JSON_OBJECT) {
        ngx_tce_consul_err(reason, rlen, "entry is not an object");
        return -1;
    }

    if (f->service != NGX_TCE_JSON_OBJECT) {
        ngx_tce_consul_err(reason, rlen, "Service is not an object");
        return -1;
    }

    if (ngx_tce_consul_identity(f, id, reason, rlen) != 0
        || ngx_tce_consul_state(f, reason, rlen) != 0
        || ngx_tce_consul_weight(f, weight, reason, rlen) != 0)
    {
        return -1;
    }

    if (f->state == NGX_TCE_CONSUL_EXCLUDED || *weight == 0) {
        return 1;
    }

    memcpy(inst->id, id->buf, strlen(id->buf) + 1);

    if (ngx_tce_consul_fields(f, inst, reason, rlen) != 0) {
        return -1;
    }

    return 0;
}


/* the checks' verdict, judged as they were read (api.HealthChecks) */

static int
ngx_tce_consul_state(ngx_tce_consul_fields_t *f, char *reason, size_t rlen)
{
    if (f->checks == NGX_TCE_JSON_ABSENT || f->checks == NGX_TCE_JSON_NULL)
    {
        return 0;                       /* no check: passing */
    }

    if (f->checks != NGX_TCE_JSON_ARRAY) {
        ngx_tce_consul_err(reason, rlen, "Checks is not an array");
        return -1;
    }

    if (f->check_err[0] != '\0') {
        ngx_tce_consul_err(reason, rlen, "%s", f->check_err);
        return -1;
    }

    return 0;
}


/* Weights.Passing or Weights.Warning by state; Consul's default 1 */

static int
ngx_tce_consul_weight(ngx_tce_consul_fields_t *f, uint64_t *weight,
    char *reason, size_t rlen)
{
    const char            *key;
    ngx_tce_json_value_t  *v;

    *weight = 1;

    if (f->weights == NGX_TCE_JSON_ABSENT || f->weights == NGX_TCE_JSON_NULL)
    {
        return 0;
    }

    if (f->weights != NGX_TCE_JSON_OBJECT) {
        ngx_tce_consul_err(reason, rlen, "Service.Weights is not an "
                           "object");
        return -1;
    }

    if (f->state == NGX_TCE_CONSUL_WARNING) {
        key = "Warning";
        v = &f->warning;

    } else {
        key = "Passing";
        v = &f->passing;
    }

    if (v->type == NGX_TCE_JSON_ABSENT || v->type == NGX_TCE_JSON_NULL) {
        return 0;
    }

    if (v->type != NGX_TCE_JSON_NUMBER || !v->integer || v->i < 0) {
        ngx_tce_consul_err(reason, rlen, "Weights.%s is not an integer "
                           ">= 0", key);
        return -1;
    }

    *weight = (uint64_t) v->i;

    return 0;
}


/* the instance id: [peer:P/][ap:A/][ns:N/]<node>/<service id> */

static int
ngx_tce_consul_identity(ngx_tce_consul_fields_t *f, ngx_tce_consul_id_t *id,
    char *reason, size_t rlen)
{
    ngx_tce_json_value_t  *v;

    /* for the report until the whole id is known */

    if (f->id.type == NGX_TCE_JSON_STRING) {
        snprintf(id->buf, sizeof(id->buf), "%s", f->id.s);
        ngx_tce_consul_make_printable(id->buf);
    }

    if (ngx_tce_consul_qualifier(&f->peer, "PeerName", "peer:", id, reason,
                                 rlen)
        != 0
        || ngx_tce_consul_qualifier(&f->partition, "Partition", "ap:", id,
                                    reason, rlen)
           != 0
        || ngx_tce_consul_qualifier(&f->ns, "Namespace", "ns:", id, reason,
                                    rlen)
           != 0)
    {
        return -1;
    }

    v = &f->node_name;

    if (f->node != NGX_TCE_JSON_OBJECT || v->type != NGX_TCE_JSON_STRING
        || v->len == 0)
    {
        ngx_tce_consul_err(reason, rlen, "no Node.Node");
        return -1;
    }

    ngx_tce_consul_id_add(id, v->s, v->len, 1);
    ngx_tce_consul_id_add(id, "/", 1, 0);

    /* an ID is unique per node only; without one it is the name */

    v = &f->id;

    if (v->type == NGX_TCE_JSON_ABSENT || v->type == NGX_TCE_JSON_NULL
        || (v->type == NGX_TCE_JSON_STRING && v->len == 0))
    {
        v = &f->name;
    }

    if (v->type != NGX_TCE_JSON_STRING || v->len == 0) {
        ngx_tce_consul_err(reason, rlen, "invalid Service.ID");
        return -1;
    }

    ngx_tce_consul_id_add(id, v->s, v->len, 1);
    ngx_tce_consul_id_done(id);

    return 0;
}


/* a peer, partition or namespace, when set and not "default" */

static int
ngx_tce_consul_qualifier(ngx_tce_json_value_t *v, const char *key,
    const char *prefix, ngx_tce_consul_id_t *id, char *reason, size_t rlen)
{
    if (v->type == NGX_TCE_JSON_ABSENT || v->type == NGX_TCE_JSON_NULL) {
        return 0;
    }

    if (v->type != NGX_TCE_JSON_STRING) {
        ngx_tce_consul_err(reason, rlen, "Service.%s is not a string", key);
        return -1;
    }

    if (v->len == 0 || (v->len == 7 && memcmp(v->s, "default", 7) == 0)) {
        return 0;
    }

    ngx_tce_consul_id_add(id, prefix, strlen(prefix), 0);
    ngx_tce_consul_id_add(id, v->s, v->len, 1);
    ngx_tce_consul_id_add(id, "/", 1, 0);

    return 0;
}


/*
 * Appends s to the id; with escape, the bytes an id may not hold (see
 * ngx_tce_id_valid), '%' and '/' are written %XX, so that ids stay
 * distinct and their parts stay apart.
 */

static void
ngx_tce_consul_id_add(ngx_tce_consul_id_t *id, const char *s, size_t len,
    int escape)
{
    size_t               i;
    unsigned char        c;
    static const char    hex[] = "0123456789ABCDEF";

    if (id->len == 0) {
        /* the Service.ID kept for a report goes */
        memset(id->buf, 0, sizeof(id->buf));
        id->hash = 0xcbf29ce484222325ULL;
    }

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if (escape
            && (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\'
                || c == '\'' || c == '{' || c == '}' || c == ','
                || c == '=' || c == '%' || c == '/'))
        {
            ngx_tce_consul_id_byte(id, '%');
            ngx_tce_consul_id_byte(id, hex[c >> 4]);
            ngx_tce_consul_id_byte(id, hex[c & 0xf]);
            continue;
        }

        ngx_tce_consul_id_byte(id, c);
    }
}


static void
ngx_tce_consul_id_byte(ngx_tce_consul_id_t *id, int c)
{
    if (id->len < sizeof(id->buf) - 1) {
        id->buf[id->len] = (char) c;
    }

    id->len++;
    id->hash = (id->hash ^ (unsigned char) c) * 0x100000001b3ULL;
}


/* NUL-terminates; too long, keeps the start and adds the hash */

static void
ngx_tce_consul_id_done(ngx_tce_consul_id_t *id)
{
    if (id->len < sizeof(id->buf)) {
        id->buf[id->len] = '\0';
        return;
    }

    snprintf(id->buf + NGX_TCE_CONSUL_ID_CUT,
             sizeof(id->buf) - NGX_TCE_CONSUL_ID_CUT, "~%016llx",
             (unsigned long long) id->hash);
}


/*
 * A Meta value: sets *val and *len ("" when absent or null); returns -1
 * when the value is not a string.
 */

static int
ngx_tce_consul_meta(ngx_tce_json_value_t *v, const char *key,
    const char **val, size_t *len, char *reason, size_t rlen)
{
    *val = "";
    *len = 0;

    if (v->type == NGX_TCE_JSON_ABSENT || v->type == NGX_TCE_JSON_NULL) {
        return 0;
    }

    if (v->type != NGX_TCE_JSON_STRING) {
        ngx_tce_consul_err(reason, rlen, "Meta.%s is not a string", key);
        return -1;
    }

    *val = v->s;
    *len = v->len;

    return 0;
}


/* address, port, cluster, env, version of a routed entry */

static int
ngx_tce_consul_fields(ngx_tce_consul_fields_t *f, ngx_tce_instance_t *inst,
    char *reason, size_t rlen)
{
    int                    env;
    size_t                 len;
    const char            *s;
    ngx_tce_json_value_t  *v;

    v = &f->port;

    if (v->type == NGX_TCE_JSON_ABSENT || v->type == NGX_TCE_JSON_NULL) {
        /* Go leaves a port of 0 out (omitempty) */
        ngx_tce_consul_err(reason, rlen, "no Service.Port");
        return -1;
    }

    if (v->type != NGX_TCE_JSON_NUMBER || !v->integer) {
        ngx_tce_consul_err(reason, rlen, "Service.Port is not an integer");
        return -1;
    }

    if (v->i < 1 || v->i > 65535) {
        ngx_tce_consul_err(reason, rlen, "Service.Port %lld outside "
                           "1..65535", (long long) v->i);
        return -1;
    }

    /* address: the service's own, else the node's */

    v = &f->address;

    if (v->type != NGX_TCE_JSON_ABSENT && v->type != NGX_TCE_JSON_NULL
        && v->type != NGX_TCE_JSON_STRING)
    {
        ngx_tce_consul_err(reason, rlen, "Service.Address is not a string");
        return -1;
    }

    if (v->type != NGX_TCE_JSON_STRING || v->len == 0) {
        v = &f->node_address;

        if (f->node != NGX_TCE_JSON_OBJECT
            || v->type != NGX_TCE_JSON_STRING || v->len == 0)
        {
            ngx_tce_consul_err(reason, rlen, "no Service.Address and no "
                               "Node.Address");
            return -1;
        }
    }

    if (ngx_tce_addr_set(v->s, v->len, (long) f->port.i, inst) != 0) {
        ngx_tce_consul_err(reason, rlen, "address \"%.64s\" is not a "
                           "numeric IPv4/IPv6 address", v->s);
        return -1;
    }

    /* Meta: cluster, env, version */

    if (f->meta != NGX_TCE_JSON_ABSENT && f->meta != NGX_TCE_JSON_NULL
        && f->meta != NGX_TCE_JSON_OBJECT)
    {
        ngx_tce_consul_err(reason, rlen, "Service.Meta is not an object");
        return -1;
    }

    if (ngx_tce_consul_meta(&f->cluster, "cluster", &s, &len, reason, rlen)
        != 0)
    {
        return -1;
    }

    if (len == 0) {
        s = NGX_TCE_DEFAULT_CLUSTER;
        len = sizeof(NGX_TCE_DEFAULT_CLUSTER) - 1;
    }

    if (!ngx_tce_cluster_name_valid(s, len)) {
        ngx_tce_consul_err(reason, rlen, "invalid Meta.cluster");
        return -1;
    }

    memcpy(inst->cluster, s, len);
    inst->cluster[len] = '\0';

    if (ngx_tce_consul_meta(&f->env, "env", &s, &len, reason, rlen) != 0) {
        return -1;
    }

    env = len ? ngx_tce_env_parse(s, len) : NGX_TCE_ENV_PROD;

    if (env < 0) {
        ngx_tce_consul_err(reason, rlen, "Meta.env \"%.16s\" is not "
                           "\"prod\" or \"canary\"", s);
        return -1;
    }

    inst->env = (uint8_t) env;

    if (ngx_tce_consul_meta(&f->version, "version", &s, &len, reason, rlen)
        != 0)
    {
        return -1;
    }

    if (!ngx_tce_version_valid(s, len) || len >= NGX_TCE_VERSION_LEN) {
        ngx_tce_consul_err(reason, rlen, "invalid Meta.version");
        return -1;
    }

    memcpy(inst->version, s, len);
    inst->version[len] = '\0';

    inst->state = NGX_TCE_STATE_UP;

    return 0;
}


/* records a skipped entry; returns -1 when memory runs out */

static int
ngx_tce_consul_skipped(ngx_tce_consul_answer_t *a, size_t pos,
    const char *id, const char *reason)
{
    size_t                  size;
    ngx_tce_consul_skip_t  *s;

    if (a->nskips == a->skips_size) {
        size = a->skips_size ? a->skips_size * 2 : 16;
        s = realloc(a->skips, size * sizeof(ngx_tce_consul_skip_t));

        if (s == NULL) {
            return -1;
        }

        a->skips = s;
        a->skips_size = size;
    }

    s = &a->skips[a->nskips++];
    s->pos = pos;

    /* printable and cut short: an invalid id may hold anything */
    snprintf(s->id, sizeof(s->id), "%s", id);
    ngx_tce_consul_make_printable(s->id);
    snprintf(s->reason, sizeof(s->reason), "%s", reason);
    ngx_tce_consul_make_printable(s->reason);

    return 0;
}


static int
ngx_tce_consul_ref_cmp(const void *one, const void *two)
{
    int                          rc;
    const ngx_tce_consul_ref_t  *a, *b;

    a = one;
    b = two;

    rc = strcmp(a->id, b->id);

    if (rc != 0) {
        return rc;
    }

    return a->k < b->k ? -1 : (a->k > b->k);
}


static int
ngx_tce_consul_skip_cmp(const void *one, const void *two)
{
    const ngx_tce_consul_skip_t  *a, *b;

    a = one;
    b = two;

    return a->pos < b->pos ? -1 : (a->pos > b->pos);
}


/*
 * Drops every instance whose id an earlier entry already has (the
 * first is kept), recording it as skipped: sort by (id, position),
 * compare neighbours, O(n log n).  Returns -1 when memory runs out.
 */

static int
ngx_tce_consul_dedup(ngx_tce_consul_answer_t *a)
{
    size_t                 i, n;
    unsigned char         *dup;
    ngx_tce_consul_ref_t  *refs;

    if (a->n < 2) {
        return 0;
    }

    refs = malloc(a->n * sizeof(ngx_tce_consul_ref_t));
    dup = calloc(a->n, 1);

    if (refs == NULL || dup == NULL) {
        free(refs);
        free(dup);
        return -1;
    }

    for (i = 0; i < a->n; i++) {
        refs[i].id = a->insts[i].id;
        refs[i].k = i;
    }

    qsort(refs, a->n, sizeof(ngx_tce_consul_ref_t), ngx_tce_consul_ref_cmp);

    for (i = 1; i < a->n; i++) {
        if (strcmp(refs[i].id, refs[i - 1].id) == 0) {
            dup[refs[i].k] = 1;
        }
    }

    free(refs);

    n = 0;

    for (i = 0; i < a->n; i++) {
        if (dup[i]) {
            if (ngx_tce_consul_skipped(a, a->pos[i], a->insts[i].id,
                                       "duplicate instance id (Node.Node "
                                       "and Service.ID)")
                != 0)
            {
                free(dup);
                return -1;
            }

            continue;
        }

        if (n != i) {
            a->insts[n] = a->insts[i];
            a->weights[n] = a->weights[i];
            a->pos[n] = a->pos[i];
        }

        n++;
    }

    free(dup);
    a->n = n;

    return 0;
}


static uint64_t
ngx_tce_consul_gcd(uint64_t a, uint64_t b)
{
    uint64_t  t;

    while (b != 0) {
        t = a % b;
        a = b;
        b = t;
    }

    return a;
}


/*
 * Consul's weights into the schedule's 1..NGX_TCE_WEIGHT_MAX, keeping
 * their proportions; returns the largest Consul weight.
 */

static uint64_t
ngx_tce_consul_scale(ngx_tce_consul_answer_t *a)
{
    size_t    i;
    uint64_t  max, g, w;

    max = 0;
    g = 0;

    for (i = 0; i < a->n; i++) {
        if (a->weights[i] > max) {
            max = a->weights[i];
        }

        g = ngx_tce_consul_gcd(a->weights[i], g);
    }

    for (i = 0; i < a->n; i++) {
        w = a->weights[i];

        if (max > NGX_TCE_WEIGHT_MAX) {
            /* 10000:30000 stays exactly 1:3 */
            w /= g;

            if (max / g > NGX_TCE_WEIGHT_MAX) {
                w = (uint64_t) ((double) w * NGX_TCE_WEIGHT_MAX
                                / (double) (max / g) + 0.5);
            }
        }

        a->insts[i].weight = (uint16_t) (w < NGX_TCE_WEIGHT_MIN
                                         ? NGX_TCE_WEIGHT_MIN
                                         : w > NGX_TCE_WEIGHT_MAX
                                           ? NGX_TCE_WEIGHT_MAX : w);
    }

    return max;
}


static void
ngx_tce_consul_answer_free(ngx_tce_consul_answer_t *a)
{
    free(a->insts);
    free(a->weights);
    free(a->pos);
    free(a->skips);
    memset(a, 0, sizeof(ngx_tce_consul_answer_t));
}


int
ngx_tce_consul_parse_health(const char *body, size_t len,
    ngx_tce_consul_skip_pt skip, void *data, ngx_tce_consul_health_t *res,
    char *err, size_t errlen)
{
    return ngx_tce_consul_parse_health_memo(body, len, skip, data, NULL, res,
                                            err, errlen);
}


int
ngx_tce_consul_parse_health_memo(const char *body, size_t len,
    ngx_tce_consul_skip_pt skip, void *data, ngx_tce_consul_memo_t **memo,
    ngx_tce_consul_health_t *res, char *err, size_t errlen)
{
    char                          reason[NGX_TCE_CONSUL_ERR_LEN];
    char                         *scratch;
    size_t                        i, n, longest;
    uint64_t                      max;
    const char                   *p;
    ngx_tce_consul_memo_t        *prev, *kept;
    ngx_tce_consul_span_t        *spans;
    ngx_tce_consul_answer_t       a;
    ngx_tce_consul_memo_entry_t  *e, fresh, **known;

    if (body == NULL) {
        ngx_tce_consul_err(err, errlen, "no body");
        return -1;
    }

    for (p = body; p < body + len && (*p == ' ' || *p == '\t'
                                      || *p == '\r' || *p == '\n'); p++)
    {
        /* void */
    }

    if (p < body + len && *p != '[') {
        ngx_tce_consul_err(err, errlen, "health body is not a JSON array");
        return -1;
    }

    /* first: the structure, and the entries */

    prev = memo ? *memo : NULL;

    if (ngx_tce_consul_memo_split(prev, body, len, NGX_TCE_CONSUL_MAX_ENTRIES,
                                  &spans, &known, &n, err, errlen)
        != 0)
    {
        return -1;
    }

    longest = 0;

    for (i = 0; i < n; i++) {
        if (spans[i].len <= NGX_TCE_CONSUL_MAX_ENTRY
            && spans[i].len > longest)
        {
            longest = spans[i].len;
        }
    }

    memset(&a, 0, sizeof(ngx_tce_consul_answer_t));
    scratch = NULL;
    kept = NULL;

    if (n > 0) {
        a.insts = calloc(n, sizeof(ngx_tce_instance_t));
        a.weights = calloc(n, sizeof(uint64_t));
        a.pos = calloc(n, sizeof(size_t));

        /* an entry's decoded strings: never more than its bytes */
        scratch = malloc(longest + 1);

        if (a.insts == NULL || a.weights == NULL || a.pos == NULL
            || scratch == NULL)
        {
            goto nomem;
        }
    }

    /* then each entry on its own, or as the last answer read it */

    kept = memo ? ngx_tce_consul_memo_create(body, len, n) : NULL;

    if (prev) {
        prev->next = 0;
        prev->hits = 0;
    }

    for (i = 0; i < n; i++) {
        if (known && known[i]) {
            /* in the head or the tail the last answer had too */
            e = known[i];
            prev->next = (size_t) (e - prev->entries) + 1;
            prev->hits++;

        } else {
            e = prev ? ngx_tce_consul_memo_find(prev, spans[i].start,
                                                spans[i].len)
                     : NULL;
        }

        if (e == NULL) {
            e = &fresh;
            ngx_tce_consul_read(&spans[i], scratch, e, reason,
                                sizeof(reason));
        }

        if (kept
            && ngx_tce_consul_memo_add(kept, (size_t) (spans[i].start - body),
                                       spans[i].len, e)
               != 0)
        {
            /* the next answer is read whole */
            ngx_tce_consul_memo_free(kept);
            kept = NULL;
        }

        if (e->rc == 0) {
            a.insts[a.n] = e->inst;
            a.weights[a.n] = e->weight;
            a.pos[a.n] = i;
            a.n++;

            if (e->state == NGX_TCE_CONSUL_WARNING) {
                a.nwarning++;
            }

        } else if (e->rc == 1) {
            a.nexcluded++;

        } else if (ngx_tce_consul_skipped(&a, i, e->inst.id, e->reason)
                   != 0)
        {
            goto nomem;
        }
    }

    free(scratch);
    scratch = NULL;
    free(spans);
    spans = NULL;
    free(known);
    known = NULL;

    if (ngx_tce_consul_dedup(&a) != 0) {
        goto nomem;
    }

    max = ngx_tce_consul_scale(&a);

    /* done: nothing can fail from here */

    if (a.nskips > 1) {
        qsort(a.skips, a.nskips, sizeof(ngx_tce_consul_skip_t),
              ngx_tce_consul_skip_cmp);
    }

    res->reason[0] = '\0';

    for (i = 0; i < a.nskips; i++) {
        if (i == 0) {
            snprintf(res->reason, sizeof(res->reason), "entry %zu: %.120s",
                     a.skips[i].pos, a.skips[i].reason);
        }

        if (skip) {
            skip(data, a.skips[i].pos, a.skips[i].id, a.skips[i].reason);
        }
    }

    if (memo) {
        if (kept) {
            kept->hits = prev ? prev->hits : 0;
        }

        ngx_tce_consul_memo_free(*memo);
        *memo = kept;
    }

    res->instances = a.n ? a.insts : NULL;
    res->ninstances = a.n;
    res->nskipped = a.nskips;
    res->nexcluded = a.nexcluded;
    res->nwarning = a.nwarning;
    res->weight_max = max;

    if (a.n == 0) {
        free(a.insts);
    }

    free(a.weights);
    free(a.pos);
    free(a.skips);

    return 0;

nomem:

    free(scratch);
    free(spans);
    free(known);
    ngx_tce_consul_memo_free(kept);
    ngx_tce_consul_answer_free(&a);
    ngx_tce_consul_err(err, errlen, "out of memory");

    return -1;
}


void
ngx_tce_consul_health_free(ngx_tce_consul_health_t *res)
{
    free(res->instances);
    memset(res, 0, sizeof(ngx_tce_consul_health_t));
}
