/*
 * The embedded default store's state file: decoding with validation,
 * encoding, atomic write (pure C, no nginx; see ngx_tce_state.h).
 */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <jansson.h>

#include "ngx_tce_instance.h"
#include "ngx_tce_state.h"


#define NGX_TCE_STATE_PATH_LEN  512     /* longest path in an error */
#define NGX_TCE_STATE_GOT_LEN   48      /* a value quoted in an error */
#define NGX_TCE_STATE_QUOTE     32      /* bytes of that value shown */

#define ngx_tce_state_str_args(v)  json_string_value(v), json_string_length(v)


typedef struct {
    char                     *err;
    size_t                    errlen;
    size_t                    nclusters;    /* file-wide totals so far */
    size_t                    ninstances;
    size_t                    cap;          /* of the service's array */
    char                      path[NGX_TCE_STATE_PATH_LEN];
} ngx_tce_state_ctx_t;


/* an instance of a service, for the duplicate id check */
typedef struct {
    const char               *id;
    const char               *cluster;
    size_t                    index;        /* in its cluster */
    size_t                    order;        /* in the service */
} ngx_tce_state_ref_t;


static int ngx_tce_state_fail(ngx_tce_state_ctx_t *ctx, const char *key,
    const char *fmt, ...);
static int ngx_tce_state_bad(ngx_tce_state_ctx_t *ctx, const char *key,
    const json_t *v, const char *want);
static void ngx_tce_state_quote(const char *s, size_t len, char *buf);
static size_t ngx_tce_state_push(ngx_tce_state_ctx_t *ctx, const char *fmt,
    ...);
static int ngx_tce_state_depth(ngx_tce_state_ctx_t *ctx, const char *buf,
    size_t len);
static int ngx_tce_state_object(ngx_tce_state_ctx_t *ctx, const char *key,
    json_t *v, const char *const *allowed);
static int ngx_tce_state_str(ngx_tce_state_ctx_t *ctx, json_t *obj,
    const char *key, int required, json_t **v);
static int ngx_tce_state_weight(ngx_tce_state_ctx_t *ctx, json_t *obj,
    const char *key, uint16_t *weight);
static int ngx_tce_state_flag(ngx_tce_state_ctx_t *ctx, json_t *obj,
    const char *key, uint8_t *flag);
static int ngx_tce_state_root(ngx_tce_state_ctx_t *ctx, json_t *root,
    ngx_tce_state_t *st);
static int ngx_tce_state_version(ngx_tce_state_ctx_t *ctx, json_t *root);
static int ngx_tce_state_service(ngx_tce_state_ctx_t *ctx, json_t *v,
    ngx_tce_state_service_t *svc);
static int ngx_tce_state_cluster(ngx_tce_state_ctx_t *ctx, json_t *v,
    ngx_tce_state_service_t *svc, ngx_tce_state_cluster_t *cl);
static int ngx_tce_state_instance(ngx_tce_state_ctx_t *ctx, json_t *v,
    const char *cluster, ngx_tce_instance_t *inst);
static int ngx_tce_state_removing(ngx_tce_state_ctx_t *ctx, json_t *rm,
    ngx_tce_instance_t *inst);
static int ngx_tce_state_unique(ngx_tce_state_ctx_t *ctx,
    ngx_tce_state_service_t *svc);
static int ngx_tce_state_cmp_name(const void *a, const void *b);
static int ngx_tce_state_cmp_ref(const void *a, const void *b);


static const char *const  ngx_tce_state_root_keys[] = {
    "version", "services", NULL
};

static const char *const  ngx_tce_state_service_keys[] = {
    "clusters", NULL
};

static const char *const  ngx_tce_state_cluster_keys[] = {
    "canary", "instances", NULL
};

static const char *const  ngx_tce_state_instance_keys[] = {
    "id", "address", "weight", "env", "version", "state", "override",
    "removing", NULL
};

static const char *const  ngx_tce_state_override_keys[] = {
    "weight", "drain", "down", NULL
};

static const char *const  ngx_tce_state_removing_keys[] = {
    "since", "deadline", NULL
};


/* err = "<path>.<key>: <text>", printable ASCII; returns -1 */

static int
ngx_tce_state_fail(ngx_tce_state_ctx_t *ctx, const char *key,
    const char *fmt, ...)
{
    int       n;
    char     *p;
    va_list   args;

    if (ctx->err == NULL || ctx->errlen == 0) {
        return -1;
    }

    n = snprintf(ctx->err, ctx->errlen, "%s%s%s%s", ctx->path,
                 ctx->path[0] != '\0' && key != NULL ? "." : "",
                 key != NULL ? key : "",
                 ctx->path[0] != '\0' || key != NULL ? ": " : "");

    if (n >= 0 && (size_t) n < ctx->errlen) {
        va_start(args, fmt);
        vsnprintf(ctx->err + n, ctx->errlen - n, fmt, args);
        va_end(args);
    }

    /* the text quotes bytes from the file: keep log lines clean */
    for (p = ctx->err; *p != '\0'; p++) {
        if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7f) {
            *p = '?';
        }
    }

    return -1;
}


/* "<path>.<key>: must be <want>, got <v>" */

static int
ngx_tce_state_bad(ngx_tce_state_ctx_t *ctx, const char *key, const json_t *v,
    const char *want)
{
    size_t  n;
    char    got[NGX_TCE_STATE_GOT_LEN];

    if (json_is_string(v)) {
        ngx_tce_state_quote(ngx_tce_state_str_args(v), got);

    } else if (json_is_object(v) || json_is_array(v)) {
        snprintf(got, sizeof(got), "%s",
                 json_is_object(v) ? "an object" : "an array");

    } else {
        /* a number, true, false or null: short */
        n = json_dumpb(v, got, sizeof(got) - 1, JSON_ENCODE_ANY);
        got[n < sizeof(got) ? n : 0] = '\0';
    }

    return ngx_tce_state_fail(ctx, key, "must be %s, got %s", want, got);
}


/* buf: NGX_TCE_STATE_GOT_LEN bytes */

static void
ngx_tce_state_quote(const char *s, size_t len, char *buf)
{
    int  n;

    n = len > NGX_TCE_STATE_QUOTE ? NGX_TCE_STATE_QUOTE : (int) len;

    snprintf(buf, NGX_TCE_STATE_GOT_LEN, "\"%.*s\"%s", n, s,
             len > NGX_TCE_STATE_QUOTE ? "..." : "");
}


/* appends to the error path; returns the length to cut it back to */

static size_t
ngx_tce_state_push(ngx_tce_state_ctx_t *ctx, const char *fmt, ...)
{
    size_t   len;
    va_list  args;

    len = strlen(ctx->path);

    va_start(args, fmt);
    vsnprintf(ctx->path + len, sizeof(ctx->path) - len, fmt, args);
    va_end(args);

    return len;
}


/*
 * Rejects nesting deeper than NGX_TCE_STATE_FILE_MAX_DEPTH before
 * jansson builds anything: the opaque canary object could otherwise
 * hold thousands of levels.  Malformed input is left to jansson.
 */

static int
ngx_tce_state_depth(ngx_tce_state_ctx_t *ctx, const char *buf, size_t len)
{
    int          in_string;
    size_t       depth, line, column;
    const char  *p, *last;

    in_string = 0;
    depth = 0;
    line = 1;
    column = 0;
    last = buf + len;

    for (p = buf; p < last; p++) {
        column++;

        if (*p == '\n') {
            line++;
            column = 0;

        } else if (in_string) {
            if (*p == '\\' && p + 1 < last) {
                p++;
                column++;

            } else if (*p == '"') {
                in_string = 0;
            }

        } else if (*p == '"') {
            in_string = 1;

        } else if (*p == '[' || *p == '{') {
            if (++depth > NGX_TCE_STATE_FILE_MAX_DEPTH) {
                return ngx_tce_state_fail(ctx, NULL, "line %zu, column %zu: "
                                          "nesting deeper than %d levels",
                                          line, column,
                                          NGX_TCE_STATE_FILE_MAX_DEPTH);
            }

        } else if ((*p == ']' || *p == '}') && depth > 0) {
            depth--;
        }
    }

    return 0;
}


/* v must be an object with none but the allowed keys */

static int
ngx_tce_state_object(ngx_tce_state_ctx_t *ctx, const char *key, json_t *v,
    const char *const *allowed)
{
    char                *p;
    void                *it;
    const char          *name;
    const char *const   *a;
    char                 q[NGX_TCE_STATE_GOT_LEN], known[128];

    if (!json_is_object(v)) {
        return ngx_tce_state_bad(ctx, key, v, "an object");
    }

    for (it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
        name = json_object_iter_key(it);

        for (a = allowed; *a != NULL && strcmp(name, *a) != 0; a++) {
            /* void */
        }

        if (*a != NULL) {
            continue;
        }

        p = known;

        for (a = allowed; *a != NULL; a++) {
            p += snprintf(p, known + sizeof(known) - p, "%s%s",
                          a == allowed ? "" : ", ", *a);
        }

        ngx_tce_state_quote(name, strlen(name), q);

        return ngx_tce_state_fail(ctx, key, "unknown key %s (known: %s)",
                                  q, known);
    }

    return 0;
}


/* *v = the string at key, or NULL when it is absent and optional */

static int
ngx_tce_state_str(ngx_tce_state_ctx_t *ctx, json_t *obj, const char *key,
    int required, json_t **v)
{
    *v = json_object_get(obj, key);

    if (*v == NULL) {
        return required ? ngx_tce_state_fail(ctx, NULL, "missing required "
                                             "key \"%s\"", key)
                        : 0;
    }

    return json_is_string(*v) ? 0 : ngx_tce_state_bad(ctx, key, *v,
                                                      "a string");
}


static int
ngx_tce_state_weight(ngx_tce_state_ctx_t *ctx, json_t *obj, const char *key,
    uint16_t *weight)
{
    json_t  *v;

    v = json_object_get(obj, key);

    if (v == NULL) {
        return 0;
    }

    if (!json_is_integer(v) || json_integer_value(v) < NGX_TCE_WEIGHT_MIN
        || json_integer_value(v) > NGX_TCE_WEIGHT_MAX)
    {
        return ngx_tce_state_bad(ctx, key, v, "an integer 1..1000");
    }

    *weight = (uint16_t) json_integer_value(v);

    return 0;
}


static int
ngx_tce_state_flag(ngx_tce_state_ctx_t *ctx, json_t *obj, const char *key,
    uint8_t *flag)
{
    json_t  *v;

    v = json_object_get(obj, key);

    if (v == NULL) {
        return 0;
    }

    if (!json_is_boolean(v)) {
        return ngx_tce_state_bad(ctx, key, v, "true or false");
    }

    *flag = json_is_true(v);

    return 0;
}


int
ngx_tce_state_decode(const char *buf, size_t len, ngx_tce_state_t *st,
    char *err, size_t errlen)
{
    int                  rc;
    json_t              *root;
    json_error_t         jerr;
    ngx_tce_state_t      tmp;
    ngx_tce_state_ctx_t  ctx;

    memset(st, 0, sizeof(ngx_tce_state_t));
    memset(&tmp, 0, sizeof(ngx_tce_state_t));
    memset(&ctx, 0, sizeof(ngx_tce_state_ctx_t));
    ctx.err = err;
    ctx.errlen = errlen;

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }

    if (len > NGX_TCE_STATE_FILE_MAX_SIZE) {
        return ngx_tce_state_fail(&ctx, "document", "larger than %d MiB",
                                  NGX_TCE_STATE_FILE_MAX_SIZE >> 20);
    }

    if (ngx_tce_state_depth(&ctx, buf, len) != 0) {
        return -1;
    }

    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);

    if (root == NULL) {
        return ngx_tce_state_fail(&ctx, NULL, "line %d, column %d: %s",
                                  jerr.line, jerr.column, jerr.text);
    }

    rc = ngx_tce_state_root(&ctx, root, &tmp);

    json_decref(root);

    if (rc != 0) {
        ngx_tce_state_free(&tmp);
        return -1;
    }

    *st = tmp;

    return 0;
}


static int
ngx_tce_state_root(ngx_tce_state_ctx_t *ctx, json_t *root,
    ngx_tce_state_t *st)
{
    void        *it;
    size_t       i, n, old;
    json_t      *v, *services;
    const char  *name;
    char         q[NGX_TCE_STATE_GOT_LEN];

    if (ngx_tce_state_object(ctx, "document", root, ngx_tce_state_root_keys)
        != 0)
    {
        return -1;
    }

    v = json_object_get(root, "version");

    if (v != NULL && (!json_is_integer(v)
                      || json_integer_value(v) != NGX_TCE_STATE_FILE_VERSION))
    {
        return ngx_tce_state_bad(ctx, "version", v, "1 (the only version)");
    }

    services = json_object_get(root, "services");

    if (services == NULL) {
        return ngx_tce_state_version(ctx, root);
    }

    if (!json_is_object(services)) {
        return ngx_tce_state_bad(ctx, "services", services, "an object");
    }

    n = json_object_size(services);

    if (n > NGX_TCE_STATE_FILE_MAX_ITEMS) {
        return ngx_tce_state_fail(ctx, "services", "more than %d services",
                                  NGX_TCE_STATE_FILE_MAX_ITEMS);
    }

    if (n == 0) {
        return ngx_tce_state_version(ctx, root);
    }

    st->services = calloc(n, sizeof(ngx_tce_state_service_t));
    if (st->services == NULL) {
        return ngx_tce_state_fail(ctx, "services", "out of memory");
    }

    for (it = json_object_iter(services);
         it != NULL;
         it = json_object_iter_next(services, it))
    {
        name = json_object_iter_key(it);

        if (!ngx_tce_service_name_valid(name, strlen(name))) {
            ngx_tce_state_quote(name, strlen(name), q);
            return ngx_tce_state_fail(ctx, "services", "invalid service name "
                                      "%s (want product.subsystem.module, "
                                      "each part [a-z0-9_-]+)", q);
        }

        /* cannot fail: a valid name is shorter than NGX_TCE_SERVICE_LEN */
        (void) ngx_tce_strlcpy(st->services[st->nservices++].name,
                               NGX_TCE_SERVICE_LEN, name, strlen(name));
    }

    qsort(st->services, st->nservices, sizeof(ngx_tce_state_service_t),
          ngx_tce_state_cmp_name);

    for (i = 0; i < st->nservices; i++) {
        v = json_object_get(services, st->services[i].name);
        old = ngx_tce_state_push(ctx, "services.%s", st->services[i].name);

        if (ngx_tce_state_service(ctx, v, &st->services[i]) != 0) {
            return -1;
        }

        ctx->path[old] = '\0';
    }

    return ngx_tce_state_version(ctx, root);
}


/*
 * "version" is required: a file without it ("{}", a stray JSON file
 * named by mistake) is not taken for an empty registry.  Checked after
 * the rest, so that a document's first real mistake is the one shown.
 */

static int
ngx_tce_state_version(ngx_tce_state_ctx_t *ctx, json_t *root)
{
    if (json_object_get(root, "version") == NULL) {
        return ngx_tce_state_fail(ctx, "document", "missing required key "
                                  "\"version\" (the first line of a state "
                                  "file is {\"version\": %d, ...)",
                                  NGX_TCE_STATE_FILE_VERSION);
    }

    return 0;
}


static int
ngx_tce_state_service(ngx_tce_state_ctx_t *ctx, json_t *v,
    ngx_tce_state_service_t *svc)
{
    void        *it;
    size_t       i, n, old;
    json_t      *clusters;
    const char  *name;
    char         q[NGX_TCE_STATE_GOT_LEN];

    if (ngx_tce_state_object(ctx, NULL, v, ngx_tce_state_service_keys) != 0)
    {
        return -1;
    }

    clusters = json_object_get(v, "clusters");

    if (clusters == NULL) {
        return 0;
    }

    if (!json_is_object(clusters)) {
        return ngx_tce_state_bad(ctx, "clusters", clusters, "an object");
    }

    n = json_object_size(clusters);
    ctx->nclusters += n;

    if (ctx->nclusters > NGX_TCE_STATE_FILE_MAX_ITEMS) {
        return ngx_tce_state_fail(ctx, "clusters", "more than %d clusters "
                                  "in the file", NGX_TCE_STATE_FILE_MAX_ITEMS);
    }

    if (n == 0) {
        return 0;
    }

    svc->clusters = calloc(n, sizeof(ngx_tce_state_cluster_t));
    if (svc->clusters == NULL) {
        return ngx_tce_state_fail(ctx, "clusters", "out of memory");
    }

    for (it = json_object_iter(clusters);
         it != NULL;
         it = json_object_iter_next(clusters, it))
    {
        name = json_object_iter_key(it);

        if (!ngx_tce_cluster_name_valid(name, strlen(name))
            || ngx_tce_strlcpy(svc->clusters[svc->nclusters].cluster,
                               NGX_TCE_CLUSTER_LEN, name, strlen(name)) != 0)
        {
            ngx_tce_state_quote(name, strlen(name), q);
            return ngx_tce_state_fail(ctx, "clusters", "invalid cluster name "
                                      "%s (want 1..63 of [A-Za-z0-9_.-])", q);
        }

        svc->nclusters++;
    }

    qsort(svc->clusters, svc->nclusters, sizeof(ngx_tce_state_cluster_t),
          ngx_tce_state_cmp_name);

    ctx->cap = 0;

    for (i = 0; i < svc->nclusters; i++) {
        v = json_object_get(clusters, svc->clusters[i].cluster);
        old = ngx_tce_state_push(ctx, ".clusters.%s",
                                 svc->clusters[i].cluster);

        if (ngx_tce_state_cluster(ctx, v, svc, &svc->clusters[i]) != 0) {
            return -1;
        }

        ctx->path[old] = '\0';
    }

    return ngx_tce_state_unique(ctx, svc);
}


static int
ngx_tce_state_cluster(ngx_tce_state_ctx_t *ctx, json_t *v,
    ngx_tce_state_service_t *svc, ngx_tce_state_cluster_t *cl)
{
    size_t               i, n, old;
    json_t              *canary, *insts;
    ngx_tce_instance_t  *p;

    if (ngx_tce_state_object(ctx, NULL, v, ngx_tce_state_cluster_keys) != 0)
    {
        return -1;
    }

    canary = json_object_get(v, "canary");

    if (canary != NULL) {
        if (!json_is_object(canary)) {
            return ngx_tce_state_bad(ctx, "canary", canary, "an object");
        }

        cl->canary = ngx_tce_state_json_text(canary,
                                        JSON_COMPACT | JSON_SORT_KEYS, 0);
        if (cl->canary == NULL) {
            return ngx_tce_state_fail(ctx, "canary", "out of memory");
        }
    }

    insts = json_object_get(v, "instances");

    if (insts != NULL && !json_is_array(insts)) {
        return ngx_tce_state_bad(ctx, "instances", insts, "an array");
    }

    n = json_array_size(insts);
    ctx->ninstances += n;

    if (ctx->ninstances > NGX_TCE_STATE_FILE_MAX_ITEMS) {
        return ngx_tce_state_fail(ctx, "instances", "more than %d instances "
                                  "in the file", NGX_TCE_STATE_FILE_MAX_ITEMS);
    }

    /* grow by doubling: many small clusters must not cost n^2 */
    if (svc->ninstances + n > ctx->cap) {
        ctx->cap = svc->ninstances + n > 2 * ctx->cap
                   ? svc->ninstances + n : 2 * ctx->cap;

        p = realloc(svc->instances, ctx->cap * sizeof(ngx_tce_instance_t));
        if (p == NULL) {
            return ngx_tce_state_fail(ctx, "instances", "out of memory");
        }

        svc->instances = p;
    }

    for (i = 0; i < n; i++) {
        old = ngx_tce_state_push(ctx, ".instances[%zu]", i);

        if (ngx_tce_state_instance(ctx, json_array_get(insts, i), cl->cluster,
                                   &svc->instances[svc->ninstances])
            != 0)
        {
            return -1;
        }

        svc->ninstances++;
        ctx->path[old] = '\0';
    }

    return 0;
}


static int
ngx_tce_state_instance(ngx_tce_state_ctx_t *ctx, json_t *v,
    const char *cluster, ngx_tce_instance_t *inst)
{
    int      n;
    json_t  *id, *addr, *env, *ver, *state, *op, *rm;

    memset(inst, 0, sizeof(ngx_tce_instance_t));
    (void) ngx_tce_strlcpy(inst->cluster, NGX_TCE_CLUSTER_LEN, cluster,
                           strlen(cluster));
    inst->weight = 1;
    inst->env = NGX_TCE_ENV_PROD;
    inst->state = NGX_TCE_STATE_UP;

    if (ngx_tce_state_object(ctx, NULL, v, ngx_tce_state_instance_keys) != 0
        || ngx_tce_state_str(ctx, v, "id", 1, &id) != 0
        || ngx_tce_state_str(ctx, v, "address", 1, &addr) != 0
        || ngx_tce_state_str(ctx, v, "env", 0, &env) != 0
        || ngx_tce_state_str(ctx, v, "version", 0, &ver) != 0
        || ngx_tce_state_str(ctx, v, "state", 0, &state) != 0
        || ngx_tce_state_weight(ctx, v, "weight", &inst->weight) != 0)
    {
        return -1;
    }

    if (!ngx_tce_id_valid(ngx_tce_state_str_args(id))
        || ngx_tce_strlcpy(inst->id, NGX_TCE_ID_LEN,
                           ngx_tce_state_str_args(id)) != 0)
    {
        return ngx_tce_state_bad(ctx, "id", id, "1..127 printable "
                                 "characters without spaces or quotes");
    }

    if (ngx_tce_addr_parse(ngx_tce_state_str_args(addr), inst) != 0) {
        return ngx_tce_state_bad(ctx, "address", addr, "a numeric "
                                 "IPv4:port or [IPv6]:port");
    }

    if (env != NULL) {
        n = ngx_tce_env_parse(ngx_tce_state_str_args(env));

        if (n < 0) {
            return ngx_tce_state_bad(ctx, "env", env,
                                     "\"prod\" or \"canary\"");
        }

        inst->env = (uint8_t) n;
    }

    if (ver != NULL
        && (!ngx_tce_version_valid(ngx_tce_state_str_args(ver))
            || ngx_tce_strlcpy(inst->version, NGX_TCE_VERSION_LEN,
                               ngx_tce_state_str_args(ver)) != 0))
    {
        return ngx_tce_state_bad(ctx, "version", ver, "0..63 printable "
                                 "characters without spaces or quotes");
    }

    if (state != NULL) {
        n = ngx_tce_state_parse(ngx_tce_state_str_args(state));

        if (n < 0) {
            return ngx_tce_state_bad(ctx, "state", state,
                                     "\"up\", \"draining\" or \"down\"");
        }

        inst->state = (uint8_t) n;
    }

    rm = json_object_get(v, "removing");

    if (rm != NULL && ngx_tce_state_removing(ctx, rm, inst) != 0) {
        return -1;
    }

    op = json_object_get(v, "override");

    if (op == NULL) {
        return 0;
    }

    if (ngx_tce_state_object(ctx, "override", op,
                             ngx_tce_state_override_keys) != 0)
    {
        return -1;
    }

    /* the caller cuts the path back */
    (void) ngx_tce_state_push(ctx, ".override");

    if (ngx_tce_state_weight(ctx, op, "weight", &inst->op_weight) != 0
        || ngx_tce_state_flag(ctx, op, "drain", &inst->op_drain) != 0
        || ngx_tce_state_flag(ctx, op, "down", &inst->op_down) != 0)
    {
        return -1;
    }

    return 0;
}


/*
 * "removing": {"since": <ms>, "deadline": <ms>}: a removal the admin
 * API started (Unix times in ms)
 */

static int
ngx_tce_state_removing(ngx_tce_state_ctx_t *ctx, json_t *rm,
    ngx_tce_instance_t *inst)
{
    size_t       i, old;
    json_t      *t;
    uint64_t    *to[2];
    const char  *keys[2];

    if (ngx_tce_state_object(ctx, "removing", rm,
                             ngx_tce_state_removing_keys) != 0)
    {
        return -1;
    }

    old = ngx_tce_state_push(ctx, ".removing");

    keys[0] = "since";
    keys[1] = "deadline";
    to[0] = &inst->rm_since;
    to[1] = &inst->rm_deadline;

    for (i = 0; i < 2; i++) {
        t = json_object_get(rm, keys[i]);

        if (t == NULL) {
            return ngx_tce_state_fail(ctx, NULL, "missing required key "
                                      "\"%s\"", keys[i]);
        }

        /* 1 .. year 9999 in ms */
        if (!json_is_integer(t) || json_integer_value(t) < 1
            || json_integer_value(t) > 253402300799999LL)
        {
            return ngx_tce_state_bad(ctx, keys[i], t, "a Unix time in "
                                     "milliseconds");
        }

        *to[i] = (uint64_t) json_integer_value(t);
    }

    ctx->path[old] = '\0';

    return 0;
}


/* ids are unique within a service, across its clusters: sort and scan */

static int
ngx_tce_state_unique(ngx_tce_state_ctx_t *ctx, ngx_tce_state_service_t *svc)
{
    size_t                i, first;
    ngx_tce_state_ref_t  *refs, *a, *b;
    char                  key[NGX_TCE_STATE_PATH_LEN];

    if (svc->ninstances < 2) {
        return 0;
    }

    refs = malloc(svc->ninstances * sizeof(ngx_tce_state_ref_t));
    if (refs == NULL) {
        return ngx_tce_state_fail(ctx, NULL, "out of memory");
    }

    first = 0;

    for (i = 0; i < svc->ninstances; i++) {
        if (i > 0 && strcmp(svc->instances[i].cluster,
                            svc->instances[i - 1].cluster) != 0)
        {
            first = i;
        }

        refs[i].id = svc->instances[i].id;
        refs[i].cluster = svc->instances[i].cluster;
        refs[i].index = i - first;
        refs[i].order = i;
    }

    qsort(refs, svc->ninstances, sizeof(ngx_tce_state_ref_t),
          ngx_tce_state_cmp_ref);

    for (i = 1; i < svc->ninstances; i++) {
        a = &refs[i - 1];
        b = &refs[i];

        if (strcmp(a->id, b->id) == 0) {
            snprintf(key, sizeof(key), "clusters.%s.instances[%zu].id",
                     b->cluster, b->index);
            ngx_tce_state_fail(ctx, key, "duplicate id \"%s\" (first at "
                               "clusters.%s.instances[%zu])", b->id,
                               a->cluster, a->index);
            free(refs);
            return -1;
        }
    }

    free(refs);

    return 0;
}


/* services and clusters both start with their name */

static int
ngx_tce_state_cmp_name(const void *a, const void *b)
{
    return strcmp((const char *) a, (const char *) b);
}


static int
ngx_tce_state_cmp_ref(const void *a, const void *b)
{
    int                         rc;
    const ngx_tce_state_ref_t  *ra, *rb;

    ra = a;
    rb = b;
    rc = strcmp(ra->id, rb->id);

    /* equal ids: file order, so that the later one is reported */
    return rc != 0 ? rc : (ra->order > rb->order) - (ra->order < rb->order);
}


void
ngx_tce_state_free(ngx_tce_state_t *st)
{
    size_t                    i, j;
    ngx_tce_state_service_t  *svc;

    for (i = 0; i < st->nservices; i++) {
        svc = &st->services[i];

        for (j = 0; j < svc->nclusters; j++) {
            free(svc->clusters[j].canary);
        }

        free(svc->clusters);
        free(svc->instances);
    }

    free(st->services);

    st->services = NULL;
    st->nservices = 0;
}
