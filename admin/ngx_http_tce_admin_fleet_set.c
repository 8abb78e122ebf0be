/*
 * Instance sets in the fleet store (tce_redis): the instances added and
 * removed through the admin API (POST, DELETE of an instance, PUT of an
 * env's set) and the removals of drained instances live in Redis, in
 * <prefix>inst ("<service>" -> a state document of that one service,
 * ngx_tce_fleet.h), so that every node routes with the same set.
 *
 * A change is optimistic: one EVAL reads the service's revision and
 * set; the edit runs here, on the event loop, with the state file's
 * pure edits (microseconds for sets of hundreds); a second EVAL writes
 * the new set only if the service's revision is still the one read,
 * bumps it and the fleet version, and publishes the version: atomic in
 * Redis.  If another node wrote the service in between, the change is
 * read and edited again (at most NGX_HTTP_TCE_ADMIN_FSET_TRIES times);
 * with If-Match, the revision read must be the client's, else 412.  A
 * service without a set in Redis starts from the set this node routes
 * with (its state file's): the first change copies it into the fleet.
 *
 * With replicas=<n>, WAIT follows the write, as for canary writes.  The
 * node that took the write applies the set at once; the others through
 * their syncer (ngx_tce_redis_sync.c), which also keeps it in the
 * fleet cache file.  The state file is not written.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_admin_fleet_set.h"
#include "ngx_http_tce_admin_inst_edit.h"
#include "ngx_tce_fleet.h"


#define NGX_HTTP_TCE_ADMIN_FSET_TRIES  16


/* a request waiting for its change */
typedef struct {
    ngx_http_request_t             *r;
    ngx_http_tce_admin_ctx_t       *ctx;
    ngx_http_tce_admin_change_t    *ch;
    ngx_http_tce_admin_fset_t      *fs;
} ngx_http_tce_admin_fset_link_t;


static ngx_int_t ngx_http_tce_admin_fset_read(ngx_http_tce_admin_fset_t *fs);
static void ngx_http_tce_admin_fset_got(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data);
static ngx_int_t ngx_http_tce_admin_fset_base(ngx_http_tce_admin_fset_t *fs,
    redisReply *set);
static ngx_int_t ngx_http_tce_admin_fset_write(ngx_http_tce_admin_fset_t *fs);
static void ngx_http_tce_admin_fset_written(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data);
static void ngx_http_tce_admin_fset_waited(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data);
static void ngx_http_tce_admin_fset_end(ngx_http_tce_admin_fset_t *fs,
    ngx_uint_t result, const char *why);
static ngx_int_t ngx_http_tce_admin_fset_eval(ngx_http_tce_admin_fset_t *fs,
    ngx_tce_redis_reply_pt handler, const char *script, ngx_uint_t nkeys,
    ngx_str_t *args, ngx_uint_t nargs);
static ngx_int_t ngx_http_tce_admin_fset_keys(ngx_http_tce_admin_fset_t *fs,
    ngx_str_t *keys);
static void ngx_http_tce_admin_fleet_change_gone(void *data);
static void ngx_http_tce_admin_fleet_change_done(
    ngx_http_tce_admin_fset_t *fs);


/* KEYS: inst, rev.  ARGV: service.  Returns {rev, set or ""} */
static const char  ngx_http_tce_admin_fset_read_script[] =
    "return {tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0'), "
    "redis.call('HGET', KEYS[1], ARGV[1]) or ''}";

/*
 * KEYS: inst, rev, version.  ARGV: service, the revision read, the new
 * set, channel.  Returns {1, rev, version}, or {0, rev} when the
 * service was written since it was read (nothing changed).
 */
static const char  ngx_http_tce_admin_fset_write_script[] =
    "local rev = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')\n"
    "if rev ~= tonumber(ARGV[2]) then\n"
    "  return {0, rev}\n"
    "end\n"
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])\n"
    "rev = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)\n"
    "local v = redis.call('INCR', KEYS[3])\n"
    "redis.call('PUBLISH', ARGV[4], tostring(v))\n"
    "return {1, rev, v}\n";


ngx_http_tce_admin_fset_t *
ngx_http_tce_admin_fset_create(ngx_tce_redis_main_conf_t *rmcf,
    ngx_tce_service_t *svc, ngx_log_t *log)
{
    ngx_http_tce_admin_fset_t  *fs;

    fs = ngx_calloc(sizeof(ngx_http_tce_admin_fset_t), log);
    if (fs == NULL) {
        return NULL;
    }

    if (ngx_tce_zone_hold(rmcf->zone, svc) != NGX_OK) {
        ngx_free(fs);
        return NULL;
    }

    fs->rmcf = rmcf;
    fs->zone = rmcf->zone;
    fs->svc = svc;
    fs->log = log;

    return fs;
}


void
ngx_http_tce_admin_fset_free(ngx_http_tce_admin_fset_t *fs)
{
    ngx_tce_state_free(&fs->st);
    ngx_tce_zone_release(fs->zone, fs->svc);
    ngx_free(fs);
}


ngx_int_t
ngx_http_tce_admin_fset_run(ngx_http_tce_admin_fset_t *fs)
{
    if (fs->rmcf->ctx == NULL) {
        ngx_cpystrn((u_char *) fs->why, (u_char *) "not started",
                    sizeof(fs->why));
        return NGX_ERROR;
    }

    return ngx_http_tce_admin_fset_read(fs);
}


static ngx_int_t
ngx_http_tce_admin_fset_keys(ngx_http_tce_admin_fset_t *fs, ngx_str_t *keys)
{
    ngx_uint_t   i;
    ngx_str_t   *prefix;

    static const char  *names[3] = { "inst", "rev", "version" };

    prefix = &fs->rmcf->prefix;

    for (i = 0; i < 3; i++) {
        keys[i].data = ngx_alloc(prefix->len + 8, fs->log);
        if (keys[i].data == NULL) {
            while (i--) {
                ngx_free(keys[i].data);
            }

            return NGX_ERROR;
        }

        keys[i].len = ngx_sprintf(keys[i].data, "%V%s", prefix, names[i])
                      - keys[i].data;
    }

    return NGX_OK;
}


/*
 * EVAL of script with the first nkeys of the keys inst, rev, version,
 * and args; NGX_ERROR when not sent, fs->why then says why
 */
static ngx_int_t
ngx_http_tce_admin_fset_eval(ngx_http_tce_admin_fset_t *fs,
    ngx_tce_redis_reply_pt handler, const char *script, ngx_uint_t nkeys,
    ngx_str_t *args, ngx_uint_t nargs)
{
    ngx_int_t   rc;
    ngx_str_t   keys[3];
    ngx_uint_t  i;

    if (ngx_http_tce_admin_fset_keys(fs, keys) != NGX_OK) {
        ngx_cpystrn((u_char *) fs->why, (u_char *) "no memory",
                    sizeof(fs->why));
        return NGX_ERROR;
    }

    rc = ngx_tce_redis_eval(&fs->rmcf->ctx->cmd, handler, fs, script, keys,
                            nkeys, args, nargs);

    if (rc != NGX_OK) {
        ngx_cpystrn((u_char *) fs->why, fs->rmcf->ctx->cmd.err,
                    sizeof(fs->why));
    }

    for (i = 0; i < 3; i++) {
        ngx_free(keys[i].data);
    }

    return rc;
}


static ngx_int_t
ngx_http_tce_admin_fset_read(ngx_http_tce_admin_fset_t *fs)
{
    ngx_str_t  name;

    name.data = fs->svc->name;
    name.len = fs->svc->name_len;

    return ngx_http_tce_admin_fset_eval(fs, ngx_http_tce_admin_fset_got,
                                        ngx_http_tce_admin_fset_read_script,
                                        2, &name, 1);
}


/* {rev, set}: the change is edited on it */
static void
ngx_http_tce_admin_fset_got(ngx_tce_redis_conn_t *rc, redisReply *reply,
    const char *err, void *data)
{
    ngx_http_tce_admin_fset_t *fs = data;

    if (reply == NULL) {
        ngx_http_tce_admin_fset_end(fs, NGX_HTTP_TCE_ADMIN_FSET_UNAVAILABLE,
                                    err);
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_snprintf((u_char *) fs->why, sizeof(fs->why) - 1, "Redis: %*s%Z",
                     (size_t) ngx_min(reply->len, 120), reply->str);
        ngx_http_tce_admin_fset_end(fs, NGX_HTTP_TCE_ADMIN_FSET_UNAVAILABLE,
                                    NULL);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_INTEGER
        || reply->element[0]->integer < 0
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        ngx_http_tce_admin_fset_end(fs, NGX_HTTP_TCE_ADMIN_FSET_UNAVAILABLE,
                                    "unexpected answer of Redis to the "
                                    "read of the instance set");
        return;
    }

    fs->rev_read = (uint64_t) reply->element[0]->integer;

    if (fs->has_if_match && fs->if_match != fs->rev_read) {
        fs->rev = fs->rev_read;
        ngx_http_tce_admin_fset_end(fs, NGX_HTTP_TCE_ADMIN_FSET_CONFLICT,
                                    NULL);
        return;
    }

    if (ngx_http_tce_admin_fset_base(fs, reply->element[1]) != NGX_OK) {
        ngx_http_tce_admin_fset_end(fs, NGX_HTTP_TCE_ADMIN_FSET_UNAVAILABLE,
                                    NULL);
        return;
    }

    fs->status = 0;

    if (fs->edit(&fs->st, fs->data, &fs->status, &fs->err) != 0) {
        ngx_http_tce_admin_fset_end(fs, NGX_HTTP_TCE_ADMIN_FSET_REFUSED,
                                    NULL);
        return;
    }

    if (ngx_http_tce_admin_fset_write(fs) != NGX_OK) {
        ngx_http_tce_admin_fset_end(fs, NGX_HTTP_TCE_ADMIN_FSET_UNAVAILABLE,
                                    NULL);
    }
}


/*
 * fs->st: the fleet's set of the service, or, when Redis has none yet,
 * the one this node routes with (its state file's), overrides left out
 */
static ngx_int_t
ngx_http_tce_admin_fset_base(ngx_http_tce_admin_fset_t *fs, redisReply *set)
{
    char                      why[256];
    ngx_uint_t                i, n;
    ngx_atomic_uint_t         generation;
    ngx_tce_instance_t       *inst;
    ngx_tce_state_service_t  *ss;

    ngx_tce_state_free(&fs->st);

    if (set->len) {
        if (ngx_tce_fleet_set_decode((char *) fs->svc->name,
                                     fs->svc->name_len, set->str, set->len,
                                     &fs->st, why, sizeof(why))
            == 0)
        {
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_ERR, fs->log, 0,
                      "tce admin: the instance set of \"%s\" in Redis "
                      "cannot be read: %s", fs->svc->name, why);

        ngx_snprintf((u_char *) fs->why, sizeof(fs->why) - 1,
                     "the instance set stored in Redis for this service "
                     "is not valid (see the error log): fix or delete it "
                     "there%Z");
        return NGX_ERROR;
    }

    if (ngx_tce_zone_copy(fs->zone, fs->svc, &inst, &n, &generation,
                          fs->log)
        != NGX_OK)
    {
        ngx_cpystrn((u_char *) fs->why, (u_char *) "no memory",
                    sizeof(fs->why));
        return NGX_ERROR;
    }

    ss = calloc(1, sizeof(ngx_tce_state_service_t));
    if (ss == NULL) {
        if (inst) {
            ngx_free(inst);
        }

        ngx_cpystrn((u_char *) fs->why, (u_char *) "no memory",
                    sizeof(fs->why));
        return NGX_ERROR;
    }

    ngx_memcpy(ss->name, fs->svc->name, fs->svc->name_len);
    ss->instances = inst;          /* from malloc(): ngx_tce_state_free() */
    ss->ninstances = n;

    for (i = 0; i < n; i++) {
        inst[i].op_weight = 0;
        inst[i].op_drain = 0;
        inst[i].op_down = 0;
    }

    fs->st.services = ss;
    fs->st.nservices = 1;

    return NGX_OK;
}


/* the edited set, written if the service's revision is still rev_read */
static ngx_int_t
ngx_http_tce_admin_fset_write(ngx_http_tce_admin_fset_t *fs)
{
    char       *text;
    u_char      rev[NGX_INT64_LEN];
    ngx_int_t   rc;
    ngx_str_t   args[4];

    text = ngx_tce_fleet_set_encode(&fs->st);

    if (text == NULL) {
        ngx_cpystrn((u_char *) fs->why, (u_char *) "no memory",
                    sizeof(fs->why));
        return NGX_ERROR;
    }

    args[0].data = fs->svc->name;
    args[0].len = fs->svc->name_len;
    args[1].data = rev;
    args[1].len = ngx_sprintf(rev, "%uL", fs->rev_read) - rev;
    args[2].data = (u_char *) text;
    args[2].len = ngx_strlen(text);
    args[3] = fs->rmcf->channel;

    rc = ngx_http_tce_admin_fset_eval(fs, ngx_http_tce_admin_fset_written,
                                      ngx_http_tce_admin_fset_write_script,
                                      3, args, 4);

    free(text);

    return rc;
}


static void
ngx_http_tce_admin_fset_written(ngx_tce_redis_conn_t *rc, redisReply *reply,
    const char *err, void *data)
{
    ngx_http_tce_admin_fset_t *fs = data;

    char        ms[NGX_INT_T_LEN], n[NGX_INT_T_LEN];
    size_t      len[3];
    redisReply  *e;
    const char  *argv[3];

    if (reply == NULL) {
        ngx_http_tce_admin_fset_end(fs, NGX_HTTP_TCE_ADMIN_FSET_UNAVAILABLE,
                                    err);
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_snprintf((u_char *) fs->why, sizeof(fs->why) - 1, "Redis: %*s%Z",
                     (size_t) ngx_min(reply->len, 120), reply->str);
        ngx_http_tce_admin_fset_end(fs, NGX_HTTP_TCE_ADMIN_FSET_UNAVAILABLE,
                                    NULL);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2
        || reply->element[0]->type != REDIS_REPLY_INTEGER
        || reply->element[1]->type != REDIS_REPLY_INTEGER
        || reply->element[1]->integer < 0)
    {
        goto bad;
    }

    e = reply->element[0];

    if (e->integer == 0) {
        /* another writer came first */
        fs->rev = (uint64_t) reply->element[1]->integer;

        if (fs->has_if_match) {
            ngx_http_tce_admin_fset_end(fs, NGX_HTTP_TCE_ADMIN_FSET_CONFLICT,
                                        NULL);
            return;
        }

        if (++fs->tries >= NGX_HTTP_TCE_ADMIN_FSET_TRIES) {
            ngx_http_tce_admin_fset_end(fs,
                                        NGX_HTTP_TCE_ADMIN_FSET_UNAVAILABLE,
                                        "the service's instance set kept "
                                        "changing under this write: retry");
            return;
        }

        if (fs->reset) {
            fs->reset(fs->data);
        }

        if (ngx_http_tce_admin_fset_read(fs) != NGX_OK) {
            ngx_http_tce_admin_fset_end(fs,
                                        NGX_HTTP_TCE_ADMIN_FSET_UNAVAILABLE,
                                        NULL);
        }

        return;
    }

    if (e->integer != 1 || reply->elements != 3
        || reply->element[1]->integer < 1
        || reply->element[2]->type != REDIS_REPLY_INTEGER)
    {
        goto bad;
    }

    fs->rev = (uint64_t) reply->element[1]->integer;
    fs->version = reply->element[2]->integer;

    if (fs->rmcf->replicas == 0) {
        ngx_http_tce_admin_fset_end(fs, NGX_HTTP_TCE_ADMIN_FSET_OK, NULL);
        return;
    }

    /* accepted by the master: WAIT until a replica has it */
    argv[0] = "WAIT";
    len[0] = 4;
    argv[1] = n;
    len[1] = ngx_sprintf((u_char *) n, "%i", fs->rmcf->replicas)
             - (u_char *) n;
    argv[2] = ms;
    len[2] = ngx_sprintf((u_char *) ms, "%M",
                         ngx_max(fs->rmcf->timeout / 2, 1))
             - (u_char *) ms;

    if (ngx_tce_redis_command_same(rc, ngx_http_tce_admin_fset_waited, fs,
                                   3, argv, len)
        != NGX_OK)
    {
        ngx_http_tce_admin_fset_end(fs,
                                    NGX_HTTP_TCE_ADMIN_FSET_UNREPLICATED,
                                    "WAIT cannot be sent");
    }

    return;

bad:

    ngx_http_tce_admin_fset_end(fs, NGX_HTTP_TCE_ADMIN_FSET_UNAVAILABLE,
                                "unexpected answer of Redis to the write "
                                "of the instance set: read it back before "
                                "retrying");
}


static void
ngx_http_tce_admin_fset_waited(ngx_tce_redis_conn_t *rc, redisReply *reply,
    const char *err, void *data)
{
    ngx_http_tce_admin_fset_t *fs = data;

    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER
        && reply->integer >= 0)
    {
        fs->acked = (ngx_uint_t) reply->integer;

        ngx_http_tce_admin_fset_end(fs,
                                    fs->acked >= (ngx_uint_t)
                                                 fs->rmcf->replicas
                                    ? NGX_HTTP_TCE_ADMIN_FSET_OK
                                    : NGX_HTTP_TCE_ADMIN_FSET_UNREPLICATED,
                                    NULL);
        return;
    }

    if (reply != NULL) {
        err = reply->type == REDIS_REPLY_ERROR ? "WAIT failed"
                                               : "unexpected answer to WAIT";
    }

    ngx_http_tce_admin_fset_end(fs, NGX_HTTP_TCE_ADMIN_FSET_UNREPLICATED,
                                err);
}


static void
ngx_http_tce_admin_fset_end(ngx_http_tce_admin_fset_t *fs, ngx_uint_t result,
    const char *why)
{
    fs->result = result;

    if (why) {
        ngx_cpystrn((u_char *) fs->why, (u_char *) why, sizeof(fs->why));
    }

    fs->done(fs);
}


ngx_int_t
ngx_http_tce_admin_fleet_change(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, ngx_http_tce_admin_change_t *ch)
{
    ngx_int_t                        rc;
    ngx_table_elt_t                 *h;
    ngx_pool_cleanup_t              *cln;
    ngx_http_tce_admin_fset_t       *fs;
    ngx_tce_redis_main_conf_t       *rmcf;
    ngx_http_tce_admin_fset_link_t  *link;

    rmcf = ngx_http_get_module_main_conf(r, ngx_tce_redis_module);

    if (rmcf->ctx == NULL) {
        return ngx_http_tce_admin_fleet_unavailable(r, "not started");
    }

    fs = NULL;
    h = r->headers_in.if_match;

    link = ngx_pcalloc(r->pool, sizeof(ngx_http_tce_admin_fset_link_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (link == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ch->prepare ? ch->prepare(r, ch->data) : NGX_OK;

    if (rc != NGX_OK) {
        return rc == NGX_DONE ? NGX_OK : rc;
    }

    fs = ngx_http_tce_admin_fset_create(rmcf, ctx->svc, r->connection->log);
    if (fs == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (h) {
        switch (ngx_tce_fleet_if_match((char *) h->value.data, h->value.len,
                                       &fs->if_match))
        {
        case 1:
            fs->has_if_match = 1;
            break;

        case 0:
            break;

        default:
            ngx_http_tce_admin_fset_free(fs);
            return ngx_http_tce_admin_error(r, NGX_HTTP_PRECONDITION_FAILED,
                       "precondition_failed",
                       "If-Match is not an ETag of this API (\"<n>\")");
        }
    }

    fs->edit = ch->edit;
    fs->reset = ch->reset;
    fs->data = ch->data;
    fs->done = ngx_http_tce_admin_fleet_change_done;
    fs->owner = link;

    link->r = r;
    link->ctx = ctx;
    link->ch = ch;
    link->fs = fs;

    if (ngx_http_tce_admin_fset_run(fs) != NGX_OK) {
        rc = ngx_http_tce_admin_fleet_unavailable(r, fs->why);
        ngx_http_tce_admin_fset_free(fs);
        return rc;
    }

    cln->handler = ngx_http_tce_admin_fleet_change_gone;
    cln->data = link;

    /* answered from Redis's reply */
    r->main->count++;

    return NGX_DONE;
}


/* the request goes first: the job ends alone */
static void
ngx_http_tce_admin_fleet_change_gone(void *data)
{
    ngx_http_tce_admin_fset_link_t *link = data;

    if (link->fs) {
        link->fs->owner = NULL;
    }
}


static void
ngx_http_tce_admin_fleet_change_done(ngx_http_tce_admin_fset_t *fs)
{
    u_char                           text[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    ngx_int_t                        rc;
    ngx_uint_t                       ok, level;
    ngx_connection_t                *c;
    ngx_tce_redis_sh_t              *sh;
    ngx_http_request_t              *r;
    ngx_http_tce_admin_ctx_t        *ctx;
    ngx_http_tce_admin_change_t     *ch;
    ngx_http_tce_admin_fset_link_t  *link;

    link = fs->owner;

    if (link == NULL) {
        /* the client went; a write done stays done (the syncer applies) */
        ngx_http_tce_admin_fset_free(fs);
        return;
    }

    r = link->r;
    ctx = link->ctx;
    ch = link->ch;
    c = r->connection;
    sh = ngx_tce_redis_sh(fs->zone);

    link->fs = NULL;
    fs->owner = NULL;

    switch (fs->result) {

    case NGX_HTTP_TCE_ADMIN_FSET_OK:
    case NGX_HTTP_TCE_ADMIN_FSET_UNREPLICATED:

        /* apply and answer read the edited set, as after a file write */
        *ch->state = fs->st;
        ngx_memzero(&fs->st, sizeof(ngx_tce_state_t));

        ctx->gen_before = (ngx_atomic_uint_t) fs->svc->fleet_rev;

        if (ch->apply(r, ch->data) != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "tce admin: fleet instance set of \"%s\" stored, "
                          "but this node's zone is full: it applies at the "
                          "next resync", fs->svc->name);
        }

        fs->svc->fleet_set = 1;
        ngx_tce_policy_fleet_rev(fs->zone, fs->svc, fs->rev);
        ctx->gen_after = (ngx_atomic_uint_t) fs->rev;

        (void) ngx_atomic_fetch_add(&sh->writes, 1);

        ok = (fs->result == NGX_HTTP_TCE_ADMIN_FSET_OK);

        (void) ngx_http_tce_admin_audit(r, ctx,
                                        ok ? (ch->status ? ch->status
                                                         : NGX_HTTP_OK)
                                           : NGX_HTTP_SERVICE_UNAVAILABLE,
                                        NULL);

        level = ok ? NGX_LOG_NOTICE : NGX_LOG_WARN;

        ngx_log_error(level, c->log, 0,
                      "tce admin: %V instances of \"%s\" by \"%V\" (fleet "
                      "version %L, revision %uL)%s", &r->method_name,
                      fs->svc->name, &ctx->principal, fs->version, fs->rev,
                      ok ? "" : ": not acknowledged by the replicas");

        if (ok) {
            rc = ch->answer(r, ch->data);

        } else {
            (void) ngx_atomic_fetch_add(&sh->not_replicated, 1);

            ngx_snprintf(text, sizeof(text) - 1,
                         "the Redis master took the write (fleet revision "
                         "%uL) but %ui of %i replicas acknowledged it%s%s; "
                         "a failover could lose it: read it back before "
                         "retrying%Z", fs->rev, fs->acked,
                         fs->rmcf->replicas, fs->why[0] ? ": " : "",
                         fs->why);

            rc = ngx_http_tce_admin_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                          "not_replicated", (char *) text);
        }

        ngx_tce_state_free(ch->state);
        break;

    case NGX_HTTP_TCE_ADMIN_FSET_CONFLICT:
        (void) ngx_atomic_fetch_add(&sh->conflicts, 1);

        ngx_snprintf(text, sizeof(text) - 1,
                     "If-Match does not match the service's fleet "
                     "revision (ETag \"%uL\"): read it again and retry%Z",
                     fs->rev);

        rc = ngx_http_tce_admin_etag(r, (ngx_atomic_uint_t) fs->rev);

        if (rc == NGX_OK) {
            rc = ngx_http_tce_admin_error(r, NGX_HTTP_PRECONDITION_FAILED,
                                          "precondition_failed",
                                          (char *) text);
        } else {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        break;

    case NGX_HTTP_TCE_ADMIN_FSET_REFUSED:
        rc = ngx_http_tce_admin_error(r, fs->status, fs->err.code,
                                      fs->err.text);
        break;

    default: /* NGX_HTTP_TCE_ADMIN_FSET_UNAVAILABLE */
        rc = ngx_http_tce_admin_fleet_unavailable(r, fs->why);
        break;
    }

    ngx_http_tce_admin_fset_free(fs);

    ngx_http_finalize_request(r, rc == NGX_DONE ? NGX_OK : rc);
    ngx_http_run_posted_requests(c);
}
