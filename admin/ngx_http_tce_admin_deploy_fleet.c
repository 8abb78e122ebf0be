/*
 * Deploys in the fleet (tce_redis): one node of the fleet drives them
 * at a time, and their records and policies are in Redis, so that the
 * node taking over goes on at the step the deploy was in.
 *
 * The lease.  The key <prefix>deploy_lease holds the holder's name,
 * "<hostname>:<master pid>", with an expiry of
 * NGX_HTTP_TCE_ADMIN_LEASE_TTL ms.  At every tick the worker
 * controlling deploys on a node (the election in the tce_admin zone,
 * ngx_http_tce_admin_deploy_ctl.c) sends one Lua script: the holder
 * renews its expiry (PEXPIRE); when the key is gone (its holder stopped
 * renewing) SET NX PX takes it; otherwise the answer names the holder.
 * The name is the node's, not the worker's, so a new controlling
 * worker of the same node (a reload, a crash) renews the lease at once.
 * A node drives deploys only while its lease is valid here: until the
 * time the renewing command was sent plus
 * NGX_HTTP_TCE_ADMIN_LEASE_VALID (less than the TTL, which Redis counts
 * from the command's arrival), so the lease has ended here before
 * another node can take it.  Redis unreachable: no renewal, the node
 * stops driving when its validity ends.
 *
 * The records.  The holder writes the zone's deploy records (the
 * deploys file's JSON) to <prefix>deploys, bumping
 * <prefix>deploys_version, and the canary policies its deploys set to
 * the fleet's canary hash (as an admin write does: the service's
 * revision, the fleet version, published), in one script that writes
 * only while the lease is the writer's.  Every change goes through the
 * controlling worker at its tick (the routes mark the records dirty and
 * queue their policies), so the writes reach Redis in order.  The other
 * nodes read the records at every tick when their version moved (their
 * API answers show the deploy; writes there answer 409 naming the
 * holder); a node that takes the lease reads them before it drives, and
 * goes on at their step in a fresh window (the counters are a node's).
 *
 * The judge's sample.  Every node that does not drive sends, at each
 * tick, its own requests of each running deploy's step since it first
 * saw that step (canary and prod: requests, 5xx, the duration
 * histogram; the API diff's outcomes) to <prefix>deploy_counters:<id>:
 * <node> (expiring after 3 s) and names itself in <prefix>deploy_nodes:
 * <id>; the holder reads the others' at each tick and adds those of the
 * deploy's current step to its own window's at its next look, so the
 * gates judge the fleet's traffic, not one node's.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_tce_redis.h"


#define NGX_HTTP_TCE_ADMIN_LEASE_TTL    3000   /* ms, in Redis */
#define NGX_HTTP_TCE_ADMIN_LEASE_VALID  2000   /* ms, here */
#define NGX_HTTP_TCE_ADMIN_PUSH_ARGS    (3 + 3 * NGX_HTTP_TCE_ADMIN_DEPLOYS)

/* a node's counters of a step: step, 2 x (requests, 5xx, buckets), diff */
#define NGX_HTTP_TCE_ADMIN_SHARE_NUMS   (1 + 2 * (2 + NGX_TCE_HIST_NBUCKETS) \
                                         + 4)
#define NGX_HTTP_TCE_ADMIN_SHARE_LEN    (NGX_HTTP_TCE_ADMIN_SHARE_NUMS * 22)


/* this node's counters when it first saw a deploy's step (not driving) */
typedef struct {
    uint64_t                    id;
    ngx_uint_t                  step;
    ngx_tce_judge_sample_t      canary;
    ngx_tce_judge_sample_t      prod;
    ngx_tce_judge_diff_t        diff;
} ngx_http_tce_admin_fbase_t;


/* the holder's: the other nodes' requests of a deploy's step, summed */
typedef struct {
    uint64_t                    id;
    ngx_uint_t                  step;
    ngx_uint_t                  nodes;
    ngx_msec_t                  got;
    ngx_tce_judge_sample_t      canary;
    ngx_tce_judge_sample_t      prod;
    ngx_tce_judge_diff_t        diff;
} ngx_http_tce_admin_others_t;


static void ngx_http_tce_admin_deploy_lease_reply(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data);
static void ngx_http_tce_admin_deploy_lease_holder(
    ngx_http_tce_admin_main_conf_t *amcf, const char *name, size_t len);
static void ngx_http_tce_admin_deploy_read(
    ngx_http_tce_admin_main_conf_t *amcf, ngx_tce_redis_main_conf_t *rmcf,
    ngx_log_t *log);
static void ngx_http_tce_admin_deploy_read_reply(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data);
static ngx_int_t ngx_http_tce_admin_deploy_import(
    ngx_http_tce_admin_main_conf_t *amcf, const char *text, size_t len,
    ngx_log_t *log);
static void ngx_http_tce_admin_deploy_push(
    ngx_http_tce_admin_main_conf_t *amcf, ngx_tce_redis_main_conf_t *rmcf,
    ngx_log_t *log);
static void ngx_http_tce_admin_deploy_push_reply(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data);
static u_char *ngx_http_tce_admin_deploy_key(u_char *p,
    ngx_tce_redis_main_conf_t *rmcf, const char *name, ngx_str_t *key);
static ngx_uint_t ngx_http_tce_admin_lease_valid(
    ngx_http_tce_admin_shctx_t *sh);
static void ngx_http_tce_admin_deploy_share_reply(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data);
static void ngx_http_tce_admin_deploy_gather_reply(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data);


/*
 * KEYS: the lease, the queue of relayed deploy commands.  ARGV: this
 * node's name, the TTL (ms), "1" when this node drives (it takes up to
 * 16 commands off the queue).  Returns {1, name, commands...} renewed,
 * {2, name} taken, {0, holder} held by another.
 */
static const char  ngx_http_tce_admin_deploy_lease_script[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v == ARGV[1] then\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "  local out = {1, v}\n"
    "  if ARGV[3] == '1' then\n"
    "    for _, c in ipairs(redis.call('LRANGE', KEYS[2], 0, 15)) do\n"
    "      out[#out + 1] = c\n"
    "    end\n"
    "    if #out > 2 then redis.call('LTRIM', KEYS[2], #out - 2, -1) end\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "if not v and redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX',\n"
    "                        ARGV[2]) then\n"
    "  return {2, ARGV[1]}\n"
    "end\n"
    "return {0, v or ''}\n";


/*
 * KEYS: the records, their version.  ARGV: the version this worker
 * has.  Returns {version} when it is that one, else {version, records}
 * ("" when none); version 0: nothing stored yet.
 */
static const char  ngx_http_tce_admin_deploy_read_script[] =
    "local v = tonumber(redis.call('GET', KEYS[2]) or '0')\n"
    "if tostring(v) == ARGV[1] then return {v} end\n"
    "return {v, redis.call('GET', KEYS[1]) or ''}\n";


/*
 * KEYS: the lease, the records, their version, the canary hash, the rev
 * hash, the fleet version.  ARGV: this node's name, the records, the
 * channel, then per policy: field, service, policy.  Only the lease's
 * holder writes: {0, holder} otherwise.  A policy that changed bumps
 * its service's revision and the fleet version, published as an admin
 * write's.  Returns {1, the records' version}.
 */
static const char  ngx_http_tce_admin_deploy_push_script[] =
    "local h = redis.call('GET', KEYS[1])\n"
    "if h ~= ARGV[1] then return {0, h or ''} end\n"
    "redis.call('SET', KEYS[2], ARGV[2])\n"
    "local dv = redis.call('INCR', KEYS[3])\n"
    "local changed = false\n"
    "for i = 4, #ARGV, 3 do\n"
    "  if redis.call('HGET', KEYS[4], ARGV[i]) ~= ARGV[i + 2] then\n"
    "    redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 2])\n"
    "    redis.call('HINCRBY', KEYS[5], ARGV[i + 1], 1)\n"
    "    changed = true\n"
    "  end\n"
    "end\n"
    "if changed then\n"
    "  local v = redis.call('INCR', KEYS[6])\n"
    "  redis.call('PUBLISH', ARGV[3], tostring(v))\n"
    "end\n"
    "return {1, dv}\n";


/*
 * KEYS: this node's counters of a deploy, the deploy's set of nodes.
 * ARGV: this node's name, the counters, their TTL (ms).
 */
static const char  ngx_http_tce_admin_deploy_share_script[] =
    "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])\n"
    "redis.call('SADD', KEYS[2], ARGV[1])\n"
    "redis.call('PEXPIRE', KEYS[2], 600000)\n"
    "return 1\n";


/*
 * KEYS: a deploy's set of nodes.  ARGV: the prefix of their counters'
 * keys, this node's name.  Returns the other nodes' counters; a node
 * whose counters expired leaves the set.
 */
static const char  ngx_http_tce_admin_deploy_gather_script[] =
    "local out = {}\n"
    "for _, n in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
    "  if n ~= ARGV[2] then\n"
    "    local v = redis.call('GET', ARGV[1] .. n)\n"
    "    if v then out[#out + 1] = v\n"
    "    else redis.call('SREM', KEYS[1], n) end\n"
    "  end\n"
    "end\n"
    "return out\n";


/* this worker's: commands in flight, who we are, the records' version */
static ngx_uint_t  ngx_http_tce_admin_lease_busy;
static ngx_msec_t  ngx_http_tce_admin_lease_sent;
static ngx_uint_t  ngx_http_tce_admin_lease_failing;
static ngx_uint_t  ngx_http_tce_admin_read_busy;
static ngx_uint_t  ngx_http_tce_admin_push_busy;
static uint64_t    ngx_http_tce_admin_records_version;
static size_t      ngx_http_tce_admin_lease_me_len;
static u_char      ngx_http_tce_admin_lease_me[NGX_HTTP_TCE_ADMIN_LEASE_LEN];
static ngx_uint_t  ngx_http_tce_admin_gather_busy;
static ngx_uint_t  ngx_http_tce_admin_push_seq;

static ngx_http_tce_admin_fbase_t
    ngx_http_tce_admin_fbases[NGX_HTTP_TCE_ADMIN_DEPLOYS];
static ngx_http_tce_admin_others_t
    ngx_http_tce_admin_others[NGX_HTTP_TCE_ADMIN_DEPLOYS];


ngx_uint_t
ngx_http_tce_admin_deploy_lease(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_log_t *log)
{
    u_char                       key[NGX_TCE_REDIS_PREFIX_MAX + 16];
    u_char                       cmds[NGX_TCE_REDIS_PREFIX_MAX + 24];
    u_char                       ttl[NGX_INT_T_LEN];
    ngx_str_t                    keys[2], args[3];
    ngx_pid_t                    master;
    ngx_uint_t                   held;
    ngx_tce_redis_main_conf_t   *rmcf;
    ngx_http_tce_admin_shctx_t  *sh;

    if (!amcf->tmcf->fleet) {
        return 1;
    }

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_tce_redis_module);

    if (rmcf == NULL || !rmcf->enabled || rmcf->ctx == NULL) {
        return 0;
    }

    sh = amcf->sh;

    if (ngx_http_tce_admin_lease_me_len == 0) {
        /* the master's pid: the node, across its workers and reloads */
        master = (ngx_process == NGX_PROCESS_WORKER) ? getppid() : ngx_pid;

        ngx_http_tce_admin_lease_me_len =
            ngx_snprintf(ngx_http_tce_admin_lease_me,
                         NGX_HTTP_TCE_ADMIN_LEASE_LEN - 1, "%V:%P",
                         &ngx_cycle->hostname, master)
            - ngx_http_tce_admin_lease_me;
    }

    if (!ngx_http_tce_admin_lease_busy) {
        (void) ngx_http_tce_admin_deploy_key(key, rmcf, "deploy_lease",
                                             &keys[0]);
        (void) ngx_http_tce_admin_deploy_key(cmds, rmcf, "deploy_commands",
                                             &keys[1]);
        args[0].data = ngx_http_tce_admin_lease_me;
        args[0].len = ngx_http_tce_admin_lease_me_len;
        args[1].data = ttl;
        args[1].len = ngx_sprintf(ttl, "%d", NGX_HTTP_TCE_ADMIN_LEASE_TTL)
                      - ttl;
        /* relayed commands are taken once this node drives */
        args[2].data = (u_char *) (ngx_http_tce_admin_deploy_fleet_drives(amcf)
                                   ? "1" : "0");
        args[2].len = 1;

        ngx_http_tce_admin_lease_sent = ngx_current_msec;

        if (ngx_tce_redis_eval(&rmcf->ctx->cmd,
                               ngx_http_tce_admin_deploy_lease_reply, amcf,
                               ngx_http_tce_admin_deploy_lease_script,
                               keys, 2, args, 3)
            == NGX_OK)
        {
            ngx_http_tce_admin_lease_busy = 1;

        } else if (!ngx_http_tce_admin_lease_failing) {
            ngx_http_tce_admin_lease_failing = 1;
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "tce admin: the deploy lease cannot be renewed: "
                          "%s", rmcf->ctx->cmd.err[0]
                                ? (char *) rmcf->ctx->cmd.err
                                : "not connected");
        }
    }

    held = ngx_http_tce_admin_lease_valid(sh);

    /* the others follow the records; a new holder reads them first */
    if (!held || !sh->deploy_lease_synced) {
        ngx_http_tce_admin_deploy_read(amcf, rmcf, log);
    }

    return held && sh->deploy_lease_synced;
}


void
ngx_http_tce_admin_deploy_fleet_flush(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_log_t *log)
{
    ngx_tce_redis_main_conf_t  *rmcf;

    if (!amcf->tmcf->fleet || !ngx_http_tce_admin_deploy_fleet_drives(amcf)
        || !amcf->sh->deploy_fleet_dirty || ngx_http_tce_admin_push_busy)
    {
        return;
    }

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_tce_redis_module);

    if (rmcf == NULL || !rmcf->enabled || rmcf->ctx == NULL) {
        return;
    }

    ngx_http_tce_admin_deploy_push(amcf, rmcf, log);
}


ngx_uint_t
ngx_http_tce_admin_deploy_fleet_drives(ngx_http_tce_admin_main_conf_t *amcf)
{
    ngx_http_tce_admin_shctx_t  *sh;

    if (!amcf->tmcf->fleet) {
        return 1;
    }

    sh = amcf->sh;

    return ngx_http_tce_admin_lease_valid(sh)
           && sh->deploy_lease_synced;
}


void
ngx_http_tce_admin_deploy_fleet_policy_locked(
    ngx_http_tce_admin_main_conf_t *amcf, ngx_http_tce_admin_deploy_t *d)
{
    ngx_uint_t                   i, n;
    ngx_http_tce_admin_fpol_t   *p;
    ngx_http_tce_admin_shctx_t  *sh;

    if (!amcf->tmcf->fleet) {
        return;
    }

    sh = amcf->sh;
    n = sh->deploy_npolicies;

    for (i = 0; i < n; i++) {
        p = &sh->deploy_policies[i];

        if (ngx_strcmp(p->service, d->service) == 0
            && ngx_strcmp(p->cluster, d->cluster) == 0)
        {
            break;
        }
    }

    if (i == NGX_HTTP_TCE_ADMIN_DEPLOYS) {
        /* as many clusters as records queued: the oldest gives way */
        ngx_memmove(&sh->deploy_policies[0], &sh->deploy_policies[1],
                    (n - 1) * sizeof(ngx_http_tce_admin_fpol_t));
        i = n - 1;

    } else if (i == n) {
        sh->deploy_npolicies = n + 1;
    }

    p = &sh->deploy_policies[i];

    (void) ngx_cpystrn((u_char *) p->service, (u_char *) d->service,
                       sizeof(p->service));
    (void) ngx_cpystrn((u_char *) p->cluster, (u_char *) d->cluster,
                       sizeof(p->cluster));
    p->weight_bp = d->weight_bp;
    p->epoch = d->epoch;
    p->fallback = d->fallback;
}


static void
ngx_http_tce_admin_deploy_lease_reply(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data)
{
    ngx_http_tce_admin_main_conf_t *amcf = data;

    size_t                       i;
    ngx_uint_t                   held;
    redisReply                  *e0, *e1, *c;
    ngx_http_tce_admin_shctx_t  *sh;

    e0 = NULL;
    e1 = NULL;
    ngx_http_tce_admin_lease_busy = 0;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    sh = amcf->sh;
    held = ngx_http_tce_admin_lease_valid(sh);

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements < 2
        || (e0 = reply->element[0])->type != REDIS_REPLY_INTEGER
        || (e1 = reply->element[1])->type != REDIS_REPLY_STRING)
    {
        if (reply) {
            err = (reply->type == REDIS_REPLY_ERROR) ? reply->str
                                                     : "unexpected answer";
        }

        if (!ngx_http_tce_admin_lease_failing) {
            ngx_http_tce_admin_lease_failing = 1;
            ngx_log_error(NGX_LOG_WARN, rc->log, 0,
                          "tce admin: the deploy lease cannot be renewed: "
                          "%s%s", err ? err : "unknown error",
                          held ? " (deploys stop when it ends here)" : "");
        }

        return;
    }

    ngx_http_tce_admin_lease_failing = 0;

    if (e0->integer == 1 || e0->integer == 2) {
        if (e0->integer == 2 || !held) {
            /* taken afresh: the records are read before driving */
            sh->deploy_lease_synced = 0;
        }

        sh->deploy_lease_until = ngx_http_tce_admin_lease_sent
                                 + NGX_HTTP_TCE_ADMIN_LEASE_VALID;

        if (!held) {
            (void) ngx_atomic_fetch_add(&sh->deploy_lease_taken, 1);
            ngx_http_tce_admin_deploy_lease_holder(amcf, e1->str, e1->len);

            ngx_log_error(NGX_LOG_NOTICE, rc->log, 0,
                          "tce admin: node \"%*s\" holds the deploy lease: "
                          "this node drives deploys",
                          (size_t) ngx_http_tce_admin_lease_me_len,
                          ngx_http_tce_admin_lease_me);
        }

        /* the commands other nodes relayed: applied, then written out */
        for (i = 2; i < reply->elements; i++) {
            c = reply->element[i];

            if (c->type == REDIS_REPLY_STRING) {
                ngx_http_tce_admin_deploy_relay_take(amcf, c->str, c->len,
                                                     rc->log);
            }
        }

        if (reply->elements > 2) {
            ngx_http_tce_admin_deploy_fleet_flush(amcf, rc->log);
        }

        return;
    }

    sh->deploy_lease_until = 0;
    sh->deploy_lease_synced = 0;
    ngx_http_tce_admin_deploy_lease_holder(amcf, e1->str, e1->len);

    if (held) {
        ngx_log_error(NGX_LOG_WARN, rc->log, 0,
                      "tce admin: the deploy lease is held by another "
                      "node: this node stops driving deploys");
    }
}


/* notes the holder's name, made printable, for the status */
static void
ngx_http_tce_admin_deploy_lease_holder(ngx_http_tce_admin_main_conf_t *amcf,
    const char *name, size_t len)
{
    size_t   i;
    u_char  *p;

    ngx_shmtx_lock(&amcf->shpool->mutex);

    p = amcf->sh->deploy_lease_holder;

    for (i = 0; i < len && i < NGX_HTTP_TCE_ADMIN_LEASE_LEN - 1; i++) {
        p[i] = (name[i] >= 0x20 && name[i] < 0x7f) ? name[i] : '?';
    }

    p[i] = '\0';

    ngx_shmtx_unlock(&amcf->shpool->mutex);
}


/* asks Redis for the records if their version moved */
static void
ngx_http_tce_admin_deploy_read(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_tce_redis_main_conf_t *rmcf, ngx_log_t *log)
{
    u_char     k1[NGX_TCE_REDIS_PREFIX_MAX + 16];
    u_char     k2[NGX_TCE_REDIS_PREFIX_MAX + 24];
    u_char     ver[NGX_INT64_LEN];
    ngx_str_t  keys[2], arg;

    if (ngx_http_tce_admin_read_busy) {
        return;
    }

    (void) ngx_http_tce_admin_deploy_key(k1, rmcf, "deploys", &keys[0]);
    (void) ngx_http_tce_admin_deploy_key(k2, rmcf, "deploys_version",
                                         &keys[1]);
    arg.data = ver;
    arg.len = ngx_sprintf(ver, "%uL", ngx_http_tce_admin_records_version)
              - ver;

    if (ngx_tce_redis_eval(&rmcf->ctx->cmd,
                           ngx_http_tce_admin_deploy_read_reply, amcf,
                           ngx_http_tce_admin_deploy_read_script, keys, 2,
                           &arg, 1)
        == NGX_OK)
    {
        ngx_http_tce_admin_read_busy = 1;
    }
}


static void
ngx_http_tce_admin_deploy_read_reply(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data)
{
    ngx_http_tce_admin_main_conf_t *amcf = data;

    uint64_t                     version;
    redisReply                  *e;
    ngx_http_tce_admin_shctx_t  *sh;

    ngx_http_tce_admin_read_busy = 0;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    sh = amcf->sh;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements < 1 || reply->elements > 2
        || reply->element[0]->type != REDIS_REPLY_INTEGER
        || reply->element[0]->integer < 0
        || (reply->elements == 2
            && reply->element[1]->type != REDIS_REPLY_STRING))
    {
        if (reply) {
            err = (reply->type == REDIS_REPLY_ERROR) ? reply->str
                                                     : "unexpected answer";
        }

        /* the lease's own warning says Redis is failing: debug only */
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rc->log, 0,
                       "tce admin: deploy records not read: %s",
                       err ? err : "unknown error");
        return;
    }

    version = (uint64_t) reply->element[0]->integer;
    e = reply->elements == 2 ? reply->element[1] : NULL;

    if (e && e->len
        && ngx_http_tce_admin_deploy_import(amcf, e->str, e->len, rc->log)
           != NGX_OK)
    {
        return;
    }

    ngx_http_tce_admin_records_version = version;

    if (ngx_http_tce_admin_lease_valid(sh)
        && !sh->deploy_lease_synced)
    {
        sh->deploy_lease_synced = 1;

        /* the first holder of the fleet writes what this node has */
        sh->deploy_fleet_dirty = 1;

        ngx_log_error(NGX_LOG_NOTICE, rc->log, 0,
                      "tce admin: deploy records read from the fleet "
                      "(version %uL): this node goes on with them",
                      version);

        ngx_http_tce_admin_deploy_fleet_flush(amcf, rc->log);
    }
}


/* the records from Redis replace the zone's (the deploys file's JSON) */
static ngx_int_t
ngx_http_tce_admin_deploy_import(ngx_http_tce_admin_main_conf_t *amcf,
    const char *text, size_t len, ngx_log_t *log)
{
    char                          err[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    size_t                        i, n, k;
    json_t                       *root, *list, *next;
    uint64_t                      next_id;
    json_error_t                  jerr;
    ngx_http_tce_admin_deploy_t  *recs;

    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    list = json_object_get(root, "deploys");
    next = json_object_get(root, "next_id");

    if (root == NULL || !json_is_array(list) || !json_is_integer(next)
        || json_integer_value(next) < 0)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tce admin: the fleet's deploy records not read: %s",
                      root ? "not a deploys object" : jerr.text);
        json_decref(root);
        return NGX_ERROR;
    }

    recs = ngx_alloc(NGX_HTTP_TCE_ADMIN_DEPLOYS * sizeof(*recs), log);
    if (recs == NULL) {
        json_decref(root);
        return NGX_ERROR;
    }

    ngx_memzero(recs, NGX_HTTP_TCE_ADMIN_DEPLOYS * sizeof(*recs));

    next_id = (uint64_t) json_integer_value(next);
    n = json_array_size(list);
    k = 0;

    for (i = 0; i < n && k < NGX_HTTP_TCE_ADMIN_DEPLOYS; i++) {
        if (ngx_http_tce_admin_deploy_decode(json_array_get(list, i),
                                             &recs[k], err, sizeof(err))
            != 0)
        {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "tce admin: the fleet's deploy %uz left out: %s",
                          i, err);
            ngx_memzero(&recs[k], sizeof(*recs));
            continue;
        }

        /* a fresh window: the counters noted were another node's */
        recs[k].base_valid = 0;
        recs[k].rev = 1;

        if (recs[k].id > next_id) {
            next_id = recs[k].id;
        }

        k++;
    }

    json_decref(root);

    ngx_shmtx_lock(&amcf->shpool->mutex);

    for (i = 0; i < NGX_HTTP_TCE_ADMIN_DEPLOYS; i++) {
        /* rev goes on from the zone's: a look in flight is refused */
        if (recs[i].id) {
            recs[i].rev = amcf->sh->deploys[i].rev + 1;
        }
    }

    ngx_memcpy(amcf->sh->deploys, recs, sizeof(amcf->sh->deploys));

    if (next_id > amcf->sh->deploy_next_id) {
        amcf->sh->deploy_next_id = next_id;
    }

    ngx_shmtx_unlock(&amcf->shpool->mutex);

    ngx_free(recs);

    /* this node's deploys file follows (not Redis: it came from there) */
    if (amcf->deploys) {
        ngx_tce_persist_write(amcf->deploys, log);
    }

    return NGX_OK;
}


/* the holder's write: the records and the queued policies */
static void
ngx_http_tce_admin_deploy_push(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_tce_redis_main_conf_t *rmcf, ngx_log_t *log)
{
    char                        *text;
    u_char                      *p, *buf;
    size_t                       len;
    ngx_str_t                    keys[6], args[NGX_HTTP_TCE_ADMIN_PUSH_ARGS];
    ngx_uint_t                   i, n, nargs;
    ngx_http_tce_admin_fpol_t    pols[NGX_HTTP_TCE_ADMIN_DEPLOYS];
    ngx_http_tce_admin_shctx_t  *sh;

    sh = amcf->sh;

    text = ngx_http_tce_admin_deploy_dump(amcf, &len, log);
    if (text == NULL) {
        return;
    }

    buf = ngx_alloc(NGX_HTTP_TCE_ADMIN_DEPLOYS
                    * (NGX_TCE_SERVICE_LEN + NGX_TCE_CLUSTER_LEN + 128)
                    + 6 * (NGX_TCE_REDIS_PREFIX_MAX + 24), log);

    if (buf == NULL) {
        free(text);
        return;
    }

    ngx_shmtx_lock(&amcf->shpool->mutex);

    n = sh->deploy_npolicies;
    ngx_memcpy(pols, sh->deploy_policies, n * sizeof(pols[0]));
    sh->deploy_npolicies = 0;
    sh->deploy_fleet_dirty = 0;

    ngx_shmtx_unlock(&amcf->shpool->mutex);

    p = buf;
    p = ngx_http_tce_admin_deploy_key(p, rmcf, "deploy_lease", &keys[0]);
    p = ngx_http_tce_admin_deploy_key(p, rmcf, "deploys", &keys[1]);
    p = ngx_http_tce_admin_deploy_key(p, rmcf, "deploys_version", &keys[2]);
    p = ngx_http_tce_admin_deploy_key(p, rmcf, "canary", &keys[3]);
    p = ngx_http_tce_admin_deploy_key(p, rmcf, "rev", &keys[4]);
    p = ngx_http_tce_admin_deploy_key(p, rmcf, "version", &keys[5]);

    args[0].data = ngx_http_tce_admin_lease_me;
    args[0].len = ngx_http_tce_admin_lease_me_len;
    args[1].data = (u_char *) text;
    args[1].len = len;
    args[2] = rmcf->channel;

    nargs = 3;

    for (i = 0; i < n; i++) {
        args[nargs].data = p;
        p = ngx_sprintf(p, "%s/%s", pols[i].service, pols[i].cluster);
        args[nargs].len = p - args[nargs].data;
        nargs++;

        args[nargs].data = (u_char *) pols[i].service;
        args[nargs].len = ngx_strlen(pols[i].service);
        nargs++;

        /* as the fleet's canary write stores it */
        args[nargs].data = p;
        p = ngx_sprintf(p, "{\"epoch\":%uL,\"fallback\":%s,"
                        "\"weight_bp\":%uD}", pols[i].epoch,
                        pols[i].fallback ? "true" : "false",
                        pols[i].weight_bp);
        args[nargs].len = p - args[nargs].data;
        nargs++;
    }

    if (ngx_tce_redis_eval(&rmcf->ctx->cmd,
                           ngx_http_tce_admin_deploy_push_reply, amcf,
                           ngx_http_tce_admin_deploy_push_script, keys, 6,
                           args, nargs)
        == NGX_OK)
    {
        ngx_http_tce_admin_push_busy = 1;
        ngx_http_tce_admin_push_seq =
                                  ngx_http_tce_admin_deploy_relay_push_sent();

    } else {
        /* not queued: again at the next tick, policies included */
        ngx_shmtx_lock(&amcf->shpool->mutex);
        sh->deploy_fleet_dirty = 1;

        for (i = 0; i < n; i++) {
            if (sh->deploy_npolicies < NGX_HTTP_TCE_ADMIN_DEPLOYS) {
                sh->deploy_policies[sh->deploy_npolicies++] = pols[i];
            }
        }

        ngx_shmtx_unlock(&amcf->shpool->mutex);
    }

    ngx_free(buf);
    free(text);
}


static void
ngx_http_tce_admin_deploy_push_reply(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data)
{
    ngx_http_tce_admin_main_conf_t *amcf = data;

    redisReply  *e0, *e1;

    ngx_http_tce_admin_push_busy = 0;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_INTEGER)
    {
        if (reply) {
            err = (reply->type == REDIS_REPLY_ERROR) ? reply->str
                                                     : "unexpected answer";
        }

        /* the records go again at the next tick (policies are lost) */
        amcf->sh->deploy_fleet_dirty = 1;
        ngx_http_tce_admin_deploy_relay_pushed(ngx_http_tce_admin_push_seq,
                                               0, rc->log);

        ngx_log_error(NGX_LOG_WARN, rc->log, 0,
                      "tce admin: deploy records not written to the "
                      "fleet: %s", err ? err : "unknown error");
        return;
    }

    e0 = reply->element[0];
    e1 = reply->element[1];

    if (e0->integer == 1 && e1->type == REDIS_REPLY_INTEGER) {
        ngx_http_tce_admin_records_version = (uint64_t) e1->integer;
        ngx_http_tce_admin_deploy_relay_pushed(ngx_http_tce_admin_push_seq,
                                               1, rc->log);
        return;
    }

    ngx_http_tce_admin_deploy_relay_pushed(ngx_http_tce_admin_push_seq, 0,
                                           rc->log);

    /* another node holds the lease: stop driving */
    amcf->sh->deploy_lease_until = 0;
    amcf->sh->deploy_lease_synced = 0;

    ngx_log_error(NGX_LOG_WARN, rc->log, 0,
                  "tce admin: deploy records not written to the fleet: "
                  "the deploy lease is held by another node; this node "
                  "stops driving deploys");
}


/*
 * 1 while the lease is valid here.  0 in until means not held: another
 * worker's ngx_current_msec may be older than the one that wrote until
 * (it is cached per turn of a worker's loop), so "until = now" would
 * read as held there for a while.
 */
static ngx_uint_t
ngx_http_tce_admin_lease_valid(ngx_http_tce_admin_shctx_t *sh)
{
    ngx_msec_t  until;

    until = sh->deploy_lease_until;

    return until != 0 && (ngx_msec_int_t) (until - ngx_current_msec) > 0;
}


/* key: <prefix><name>, written at p; returns the byte after it */
static u_char *
ngx_http_tce_admin_deploy_key(u_char *p, ngx_tce_redis_main_conf_t *rmcf,
    const char *name, ngx_str_t *key)
{
    key->data = p;
    p = ngx_sprintf(p, "%V%s", &rmcf->prefix, name);
    key->len = p - key->data;

    return p;
}


/* ---- the other nodes' requests: each sends its own, the holder sums ---- */


void
ngx_http_tce_admin_deploy_fleet_share(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_uint_t i, ngx_http_tce_metrics_group_copy_t *g, ngx_log_t *log)
{
    u_char                        *p, *text;
    u_char                         key[NGX_TCE_REDIS_PREFIX_MAX
                                       + NGX_HTTP_TCE_ADMIN_LEASE_LEN + 64];
    u_char                         set[NGX_TCE_REDIS_PREFIX_MAX + 64];
    ngx_str_t                      keys[2], args[3];
    ngx_uint_t                     k, b;
    ngx_tce_judge_diff_t           diff;
    ngx_tce_judge_sample_t         canary, prod, s[2];
    ngx_tce_redis_main_conf_t     *rmcf;
    ngx_http_tce_admin_deploy_t   *d;
    ngx_http_tce_admin_fbase_t    *base;
    const ngx_tce_judge_sample_t  *bs;

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_tce_redis_module);

    if (!amcf->tmcf->fleet || rmcf == NULL || !rmcf->enabled
        || rmcf->ctx == NULL || ngx_http_tce_admin_lease_me_len == 0)
    {
        return;
    }

    d = ngx_alloc(sizeof(ngx_http_tce_admin_deploy_t), log);
    text = ngx_alloc(NGX_HTTP_TCE_ADMIN_SHARE_LEN, log);

    if (d == NULL || text == NULL) {
        ngx_free(d);
        ngx_free(text);
        return;
    }

    ngx_shmtx_lock(&amcf->shpool->mutex);
    *d = amcf->sh->deploys[i];
    ngx_shmtx_unlock(&amcf->shpool->mutex);

    (void) ngx_http_tce_admin_deploy_counters(d, g, &canary, &prod, &diff);

    /* this node's counters when it first saw the step: its base */
    base = NULL;

    for (k = 0; k < NGX_HTTP_TCE_ADMIN_DEPLOYS; k++) {
        if (ngx_http_tce_admin_fbases[k].id == d->id) {
            base = &ngx_http_tce_admin_fbases[k];
            break;
        }

        if (base == NULL || ngx_http_tce_admin_fbases[k].id < base->id) {
            base = &ngx_http_tce_admin_fbases[k];
        }
    }

    if (base->id != d->id || base->step != d->step
        || canary.requests < base->canary.requests
        || prod.requests < base->prod.requests
        || canary.errors < base->canary.errors
        || prod.errors < base->prod.errors)
    {
        base->id = d->id;
        base->step = d->step;
        base->canary = canary;
        base->prod = prod;
        base->diff = diff;
    }

    s[0] = canary;
    s[1] = prod;

    p = ngx_sprintf(text, "%uD", d->step);

    for (k = 0; k < 2; k++) {
        bs = k ? &base->prod : &base->canary;

        p = ngx_sprintf(p, " %uL %uL", s[k].requests - bs->requests,
                        s[k].errors - bs->errors);

        for (b = 0; b < NGX_TCE_HIST_NBUCKETS; b++) {
            p = ngx_sprintf(p, " %uL", s[k].bucket[b] >= bs->bucket[b]
                                       ? s[k].bucket[b] - bs->bucket[b]
                                       : 0);
        }
    }

    p = ngx_sprintf(p, " %uL %uL %uL %ui",
                    diff.match >= base->diff.match
                    ? diff.match - base->diff.match : 0,
                    diff.mismatch >= base->diff.mismatch
                    ? diff.mismatch - base->diff.mismatch : 0,
                    diff.error >= base->diff.error
                    ? diff.error - base->diff.error : 0,
                    (ngx_uint_t) diff.have);

    keys[0].data = key;
    keys[0].len = ngx_sprintf(key, "%Vdeploy_counters:%uL:%*s",
                              &rmcf->prefix, d->id,
                              ngx_http_tce_admin_lease_me_len,
                              ngx_http_tce_admin_lease_me)
                  - key;
    keys[1].data = set;
    keys[1].len = ngx_sprintf(set, "%Vdeploy_nodes:%uL", &rmcf->prefix,
                              d->id)
                  - set;
    args[0].data = ngx_http_tce_admin_lease_me;
    args[0].len = ngx_http_tce_admin_lease_me_len;
    args[1].data = text;
    args[1].len = p - text;
    ngx_str_set(&args[2], "3000");

    (void) ngx_tce_redis_eval(&rmcf->ctx->cmd,
                              ngx_http_tce_admin_deploy_share_reply, NULL,
                              ngx_http_tce_admin_deploy_share_script, keys, 2,
                              args, 3);

    ngx_free(d);
    ngx_free(text);
}


static void
ngx_http_tce_admin_deploy_share_reply(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data)
{
    /* a lost share is replaced by the next tick's; the lease warns */
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rc->log, 0,
                       "tce admin: deploy counters not shared: %s",
                       reply->str);
    }
}


void
ngx_http_tce_admin_deploy_fleet_gather(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_log_t *log)
{
    u_char                      set[NGX_TCE_REDIS_PREFIX_MAX + 64];
    u_char                      pfx[NGX_TCE_REDIS_PREFIX_MAX + 64];
    uint64_t                    id;
    ngx_str_t                   key, args[2];
    ngx_uint_t                  i;
    ngx_tce_redis_main_conf_t  *rmcf;

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_tce_redis_module);

    if (!amcf->tmcf->fleet || rmcf == NULL || !rmcf->enabled
        || rmcf->ctx == NULL || ngx_http_tce_admin_gather_busy)
    {
        return;
    }

    for (i = 0; i < NGX_HTTP_TCE_ADMIN_DEPLOYS; i++) {
        if (amcf->sh->deploys[i].state != NGX_HTTP_TCE_ADMIN_DEPLOY_RUNNING) {
            continue;
        }

        id = amcf->sh->deploys[i].id;

        key.data = set;
        key.len = ngx_sprintf(set, "%Vdeploy_nodes:%uL", &rmcf->prefix, id)
                  - set;
        args[0].data = pfx;
        args[0].len = ngx_sprintf(pfx, "%Vdeploy_counters:%uL:",
                                  &rmcf->prefix, id)
                      - pfx;
        args[1].data = ngx_http_tce_admin_lease_me;
        args[1].len = ngx_http_tce_admin_lease_me_len;

        if (ngx_tce_redis_eval(&rmcf->ctx->cmd,
                               ngx_http_tce_admin_deploy_gather_reply,
                               (void *) (uintptr_t) id,
                               ngx_http_tce_admin_deploy_gather_script,
                               &key, 1, args, 2)
            == NGX_OK)
        {
            ngx_http_tce_admin_gather_busy++;
        }
    }
}


/* the other nodes' counters of one deploy: their sum for its step */
static void
ngx_http_tce_admin_deploy_gather_reply(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data)
{
    char                         *p, *end;
    uint64_t                      id, *x, v[NGX_HTTP_TCE_ADMIN_SHARE_NUMS];
    ngx_uint_t                    i, k, n, step;
    ngx_tce_judge_sample_t       *s;
    ngx_http_tce_admin_others_t  *o, *slot;

    id = (uint64_t) (uintptr_t) data;

    if (ngx_http_tce_admin_gather_busy) {
        ngx_http_tce_admin_gather_busy--;
    }

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        return;
    }

    slot = NULL;

    for (i = 0; i < NGX_HTTP_TCE_ADMIN_DEPLOYS; i++) {
        o = &ngx_http_tce_admin_others[i];

        if (o->id == id) {
            slot = o;
            break;
        }

        if (slot == NULL || o->got < slot->got) {
            slot = o;
        }
    }

    ngx_memzero(slot, sizeof(ngx_http_tce_admin_others_t));
    slot->id = id;
    slot->got = ngx_current_msec;
    slot->step = (ngx_uint_t) -1;

    for (i = 0; i < reply->elements; i++) {
        if (reply->element[i]->type != REDIS_REPLY_STRING) {
            continue;
        }

        /* "<step> <canary: requests errors buckets> <prod: ...> <diff>" */
        p = reply->element[i]->str;
        n = 0;

        while (n < NGX_HTTP_TCE_ADMIN_SHARE_NUMS) {
            errno = 0;
            v[n] = strtoull(p, &end, 10);

            if (end == p || errno) {
                break;
            }

            n++;
            p = end;
        }

        if (n != NGX_HTTP_TCE_ADMIN_SHARE_NUMS) {
            continue;
        }

        step = (ngx_uint_t) v[0];

        if (slot->step != (ngx_uint_t) -1 && slot->step != step) {
            /* nodes on different steps: the holder's step decides, at
             * the add; keep the first one met, skip the other */
            continue;
        }

        slot->step = step;
        slot->nodes++;

        for (k = 0; k < 2; k++) {
            s = k ? &slot->prod : &slot->canary;
            x = &v[1 + k * (2 + NGX_TCE_HIST_NBUCKETS)];

            s->requests += x[0];
            s->errors += x[1];

            for (n = 0; n < NGX_TCE_HIST_NBUCKETS; n++) {
                s->bucket[n] += x[2 + n];
            }
        }

        n = 1 + 2 * (2 + NGX_TCE_HIST_NBUCKETS);
        slot->diff.match += v[n];
        slot->diff.mismatch += v[n + 1];
        slot->diff.error += v[n + 2];
        slot->diff.have |= (v[n + 3] != 0);
    }
}


void
ngx_http_tce_admin_deploy_fleet_add(ngx_http_tce_admin_deploy_t *d,
    ngx_tce_judge_sample_t *canary, ngx_tce_judge_sample_t *prod,
    ngx_tce_judge_diff_t *diff)
{
    ngx_uint_t                    i, b;
    ngx_http_tce_admin_others_t  *o;

    for (i = 0; i < NGX_HTTP_TCE_ADMIN_DEPLOYS; i++) {
        o = &ngx_http_tce_admin_others[i];

        if (o->id != d->id || o->step != d->step || o->nodes == 0
            || ngx_current_msec - o->got > NGX_HTTP_TCE_ADMIN_LEASE_VALID)
        {
            continue;
        }

        canary->requests += o->canary.requests;
        canary->errors += o->canary.errors;
        prod->requests += o->prod.requests;
        prod->errors += o->prod.errors;

        for (b = 0; b < NGX_TCE_HIST_NBUCKETS; b++) {
            canary->bucket[b] += o->canary.bucket[b];
            prod->bucket[b] += o->prod.bucket[b];
        }

        diff->match += o->diff.match;
        diff->mismatch += o->diff.mismatch;
        diff->error += o->diff.error;
        diff->have |= o->diff.have;

        return;
    }
}


json_t *
ngx_http_tce_admin_deploy_lease_json(ngx_http_tce_admin_main_conf_t *amcf)
{
    u_char                       holder[NGX_HTTP_TCE_ADMIN_LEASE_LEN];
    json_t                      *j;
    ngx_msec_int_t               left;
    ngx_http_tce_admin_shctx_t  *sh;

    if (!amcf->tmcf->fleet || amcf->sh == NULL) {
        return NULL;
    }

    sh = amcf->sh;
    left = ngx_http_tce_admin_lease_valid(sh)
           ? (ngx_msec_int_t) (sh->deploy_lease_until - ngx_current_msec)
           : 0;

    ngx_shmtx_lock(&amcf->shpool->mutex);
    ngx_memcpy(holder, sh->deploy_lease_holder, sizeof(holder));
    ngx_shmtx_unlock(&amcf->shpool->mutex);

    j = json_object();

    if (j == NULL
        || json_object_set_new(j, "held", json_boolean(left > 0)) != 0
        || json_object_set_new(j, "valid_ms",
                               json_integer(left > 0 ? left : 0)) != 0
        || json_object_set_new(j, "holder",
                               holder[0] ? json_string((char *) holder)
                                         : json_null()) != 0
        || json_object_set_new(j, "taken",
                               json_integer(sh->deploy_lease_taken)) != 0
        || json_object_set_new(j, "drives",
                               json_boolean(
                                   ngx_http_tce_admin_deploy_fleet_drives(
                                       amcf)))
           != 0)
    {
        json_decref(j);
        return NULL;
    }

    return j;
}
