/*
 * The fleet drain's busy marks (tce_redis).  A removal in a fleet is
 * completed by whichever node's syncer finds the instance drained
 * (ngx_http_tce_admin_drain.c); the other nodes may still have requests
 * in flight on it.  So every node says what it has:
 *
 *   <prefix>drain_busy:<service>/<id>:<node>   its count, PX 3 x settle
 *   <prefix>drain_nodes:<service>/<id>         the set of such <node>s
 *
 * <node> is "<hostname>:<master pid>", as the deploy lease names it.
 * The syncer worker of each node writes its marks at its removal tick
 * (ngx_http_tce_admin_busy_mark()): a draining instance with requests
 * of this node in flight (summed over its workers, from the metric
 * series) gets its mark, rewritten when the count changes and every
 * drain_settle= so that it does not expire; a count back at 0, or an
 * instance no longer draining here (removed, restored), has its mark
 * deleted.  A node that dies leaves marks that expire on their own.
 *
 * The node about to remove an instance reads the others' marks first
 * (ngx_http_tce_admin_busy_read()): any left holds the removal back
 * until its deadline.  No node routes a new request to the instance
 * once drain_settle= has passed since the drain began (every node has
 * the marker and has written its mark by then), so a mark absent at
 * that read cannot appear afterwards.  Both are one Lua script each,
 * atomic in Redis, sent on the worker's command connection without
 * waiting.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_admin_drain.h"
#include "ngx_http_tce_metrics.h"


#define NGX_HTTP_TCE_ADMIN_BUSY_TTL   3     /* x drain_settle= */
#define NGX_HTTP_TCE_ADMIN_BUSY_KEY   (NGX_TCE_REDIS_PREFIX_MAX            \
                                       + sizeof("drain_nodes:/:")          \
                                       + NGX_TCE_SERVICE_LEN               \
                                       + NGX_TCE_ID_LEN                    \
                                       + NGX_HTTP_TCE_ADMIN_LEASE_LEN)


/* a mark of this node, as this worker last asked Redis to hold it */
typedef struct {
    char                            service[NGX_TCE_SERVICE_LEN];
    char                            id[NGX_TCE_ID_LEN];
    int64_t                         count;      /* 0: to delete */
    ngx_msec_t                      written;    /* when Redis took it */
    ngx_uint_t                      dirty;      /* to send */
    ngx_uint_t                      seen;       /* draining, this tick */
    ngx_uint_t                      sending;    /* in the command */
} ngx_http_tce_admin_mark_t;


/* a read of the other nodes' marks */
typedef struct {
    ngx_http_tce_admin_removal_t   *items;
    ngx_uint_t                      n;
    ngx_http_tce_admin_busy_pt      done;
    void                           *data;
} ngx_http_tce_admin_busy_q_t;


static void ngx_http_tce_admin_busy_node(void);
static ngx_http_tce_admin_mark_t *ngx_http_tce_admin_busy_find(
    ngx_tce_service_t *svc, const char *id, ngx_uint_t add, ngx_log_t *log);
static void ngx_http_tce_admin_busy_send(ngx_tce_redis_main_conf_t *rmcf,
    ngx_uint_t n, ngx_log_t *log);
static void ngx_http_tce_admin_busy_marked(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data);
static void ngx_http_tce_admin_busy_got(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data);
static size_t ngx_http_tce_admin_busy_key(u_char *p,
    ngx_tce_redis_main_conf_t *rmcf, const char *kind, const char *service,
    const char *id, ngx_uint_t node);


/*
 * KEYS: per mark, its key and its set of nodes.  ARGV: this node's
 * name, the marks' TTL (ms), per mark its count (0: delete it).  A set
 * expires with the last of its marks (its TTL only ever raised).
 */
static const char  ngx_http_tce_admin_busy_mark_script[] =
    "for i = 1, #KEYS / 2 do\n"
    "  local mark, set = KEYS[2 * i - 1], KEYS[2 * i]\n"
    "  if ARGV[2 + i] == '0' then\n"
    "    redis.call('DEL', mark)\n"
    "    redis.call('SREM', set, ARGV[1])\n"
    "  else\n"
    "    redis.call('SET', mark, ARGV[2 + i], 'PX', ARGV[2])\n"
    "    redis.call('SADD', set, ARGV[1])\n"
    "    if redis.call('PTTL', set) < tonumber(ARGV[2]) then\n"
    "      redis.call('PEXPIRE', set, ARGV[2])\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return 1\n";

/*
 * KEYS: per instance, its set of nodes.  ARGV: this node's name, per
 * instance the prefix of its marks' keys.  Returns per instance the
 * other nodes' count in flight and how many nodes have one; a node
 * whose mark expired leaves the set.
 */
static const char  ngx_http_tce_admin_busy_read_script[] =
    "local out = {}\n"
    "for i = 1, #KEYS do\n"
    "  local sum, nodes = 0, 0\n"
    "  for _, n in ipairs(redis.call('SMEMBERS', KEYS[i])) do\n"
    "    if n ~= ARGV[1] then\n"
    "      local v = redis.call('GET', ARGV[1 + i] .. n)\n"
    "      if v then\n"
    "        sum = sum + (tonumber(v) or 1)\n"
    "        nodes = nodes + 1\n"
    "      else\n"
    "        redis.call('SREM', KEYS[i], n)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  out[2 * i - 1] = sum\n"
    "  out[2 * i] = nodes\n"
    "end\n"
    "return out\n";


/* this worker's (the syncer's): its marks, a command in flight, who */
static ngx_http_tce_admin_mark_t  *ngx_http_tce_admin_marks;
static ngx_uint_t                  ngx_http_tce_admin_nmarks;
static ngx_uint_t                  ngx_http_tce_admin_marks_cap;
static ngx_uint_t                  ngx_http_tce_admin_marks_busy;
static ngx_uint_t                  ngx_http_tce_admin_marks_failing;
static size_t                      ngx_http_tce_admin_node_len;
static u_char  ngx_http_tce_admin_node[NGX_HTTP_TCE_ADMIN_LEASE_LEN];


void
ngx_http_tce_admin_busy_mark(ngx_tce_redis_main_conf_t *rmcf,
    ngx_log_t *log)
{
    int64_t                     count;
    ngx_str_t                   name;
    ngx_uint_t                  i, n, nsend;
    ngx_msec_t                  now;
    ngx_tce_zone_t             *zone;
    ngx_atomic_uint_t           generation;
    ngx_tce_service_t          *svc;
    ngx_tce_instance_t         *inst;
    ngx_http_tce_admin_mark_t  *m;

    if (ngx_http_tce_admin_marks_busy) {
        return;
    }

    ngx_http_tce_admin_busy_node();

    zone = rmcf->zone;
    now = ngx_current_msec;

    for (i = 0; i < ngx_http_tce_admin_nmarks; i++) {
        ngx_http_tce_admin_marks[i].seen = 0;
    }

    for (svc = zone->sh->services; svc; svc = svc->next) {
        if (!svc->fleet_set || svc->removals == 0) {
            continue;
        }

        if (ngx_tce_zone_copy(zone, svc, &inst, &n, &generation, log)
            != NGX_OK)
        {
            return;     /* nothing is known: the next tick */
        }

        name.data = svc->name;
        name.len = svc->name_len;

        for (i = 0; i < n; i++) {
            if (inst[i].rm_deadline == 0) {
                continue;
            }

            if (ngx_http_tce_metrics_in_flight(zone, &name, &inst[i], &count)
                != NGX_OK)
            {
                count = 0;
            }

            m = ngx_http_tce_admin_busy_find(svc, inst[i].id, count > 0,
                                             log);
            if (m == NULL) {
                continue;
            }

            m->seen = 1;

            if (count < 0) {
                count = 0;
            }

            if (m->count != count) {
                m->count = count;
                m->dirty = 1;
            }
        }

        if (inst) {
            ngx_free(inst);
        }
    }

    nsend = 0;

    for (i = 0; i < ngx_http_tce_admin_nmarks; i++) {
        m = &ngx_http_tce_admin_marks[i];

        if (!m->seen) {
            /* removed, restored, or no longer the fleet's: delete it */
            m->count = 0;
            m->dirty = 1;
        }

        if (m->count > 0
            && now - m->written >= rmcf->drain_settle)
        {
            m->dirty = 1;
        }

        if (m->dirty) {
            m->sending = 1;
            nsend++;
        }
    }

    if (nsend) {
        ngx_http_tce_admin_busy_send(rmcf, nsend, log);
    }
}


/* the marks being sent: one EVAL */
static void
ngx_http_tce_admin_busy_send(ngx_tce_redis_main_conf_t *rmcf, ngx_uint_t n,
    ngx_log_t *log)
{
    u_char                     *buf, *p;
    ngx_str_t                  *keys, *args;
    ngx_uint_t                  i, k;
    ngx_http_tce_admin_mark_t  *m;

    /* keys: a mark and its set per mark; args: node, TTL, the counts */
    keys = ngx_alloc((3 * n + 2) * sizeof(ngx_str_t), log);
    buf = ngx_alloc(2 * n * NGX_HTTP_TCE_ADMIN_BUSY_KEY
                    + (n + 1) * NGX_INT64_LEN, log);

    if (keys == NULL || buf == NULL) {
        goto failed;
    }

    args = keys + 2 * n;
    p = buf;

    args[0].data = ngx_http_tce_admin_node;
    args[0].len = ngx_http_tce_admin_node_len;
    args[1].data = p;
    args[1].len = ngx_sprintf(p, "%M", NGX_HTTP_TCE_ADMIN_BUSY_TTL
                                       * rmcf->drain_settle)
                  - p;
    p += args[1].len;

    k = 0;

    for (i = 0; i < ngx_http_tce_admin_nmarks; i++) {
        m = &ngx_http_tce_admin_marks[i];

        if (!m->sending) {
            continue;
        }

        keys[2 * k].data = p;
        keys[2 * k].len = ngx_http_tce_admin_busy_key(p, rmcf, "drain_busy",
                                                      m->service, m->id, 1);
        p += keys[2 * k].len;

        keys[2 * k + 1].data = p;
        keys[2 * k + 1].len = ngx_http_tce_admin_busy_key(p, rmcf,
                                                          "drain_nodes",
                                                          m->service, m->id,
                                                          0);
        p += keys[2 * k + 1].len;

        args[2 + k].data = p;
        args[2 + k].len = ngx_sprintf(p, "%L", m->count) - p;
        p += args[2 + k].len;

        k++;
    }

    if (ngx_tce_redis_eval(&rmcf->ctx->cmd, ngx_http_tce_admin_busy_marked,
                           NULL, ngx_http_tce_admin_busy_mark_script, keys,
                           2 * n, args, 2 + n)
        == NGX_OK)
    {
        ngx_http_tce_admin_marks_busy = 1;
        ngx_free(keys);
        ngx_free(buf);
        return;
    }

failed:

    if (keys) {
        ngx_free(keys);
    }

    if (buf) {
        ngx_free(buf);
    }

    /* tried again at the next tick */
    ngx_http_tce_admin_busy_marked(NULL, NULL, "not sent", NULL);
}


static void
ngx_http_tce_admin_busy_marked(ngx_tce_redis_conn_t *rc, redisReply *reply,
    const char *err, void *data)
{
    ngx_uint_t                  i, j, ok;
    ngx_http_tce_admin_mark_t  *m;

    ngx_http_tce_admin_marks_busy = 0;

    ok = (reply != NULL && reply->type != REDIS_REPLY_ERROR);

    if (!ok && !ngx_http_tce_admin_marks_failing) {
        ngx_http_tce_admin_marks_failing = 1;
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "tce admin: the busy marks of draining instances "
                      "cannot be written: %s: removals of the other nodes "
                      "may not wait for this node's requests in flight",
                      reply ? "Redis answered an error" : err);
    }

    if (ok) {
        ngx_http_tce_admin_marks_failing = 0;
    }

    j = 0;

    for (i = 0; i < ngx_http_tce_admin_nmarks; i++) {
        m = &ngx_http_tce_admin_marks[i];

        if (m->sending) {
            m->sending = 0;

            if (ok) {
                m->dirty = 0;
                m->written = ngx_current_msec;

                if (m->count == 0) {
                    continue;       /* deleted: forgotten */
                }
            }
        }

        if (i != j) {
            ngx_http_tce_admin_marks[j] = *m;
        }

        j++;
    }

    ngx_http_tce_admin_nmarks = j;
}


/* the mark of svc's id; with add, a new one (count 0) when none */
static ngx_http_tce_admin_mark_t *
ngx_http_tce_admin_busy_find(ngx_tce_service_t *svc, const char *id,
    ngx_uint_t add, ngx_log_t *log)
{
    ngx_uint_t                  i, cap;
    ngx_http_tce_admin_mark_t  *m;

    for (i = 0; i < ngx_http_tce_admin_nmarks; i++) {
        m = &ngx_http_tce_admin_marks[i];

        if (ngx_strcmp(m->id, id) == 0
            && ngx_strlen(m->service) == svc->name_len
            && ngx_strncmp(m->service, svc->name, svc->name_len) == 0)
        {
            return m;
        }
    }

    if (!add) {
        return NULL;
    }

    if (ngx_http_tce_admin_nmarks == ngx_http_tce_admin_marks_cap) {
        cap = ngx_max(2 * ngx_http_tce_admin_marks_cap, 8);

        m = ngx_alloc(cap * sizeof(ngx_http_tce_admin_mark_t), log);
        if (m == NULL) {
            return NULL;
        }

        if (ngx_http_tce_admin_marks) {
            ngx_memcpy(m, ngx_http_tce_admin_marks,
                       ngx_http_tce_admin_nmarks
                       * sizeof(ngx_http_tce_admin_mark_t));
            ngx_free(ngx_http_tce_admin_marks);
        }

        ngx_http_tce_admin_marks = m;
        ngx_http_tce_admin_marks_cap = cap;
    }

    m = &ngx_http_tce_admin_marks[ngx_http_tce_admin_nmarks++];
    ngx_memzero(m, sizeof(ngx_http_tce_admin_mark_t));

    ngx_memcpy(m->service, svc->name,
               ngx_min(svc->name_len, NGX_TCE_SERVICE_LEN - 1));
    ngx_cpystrn((u_char *) m->id, (u_char *) id, NGX_TCE_ID_LEN);

    return m;
}


void
ngx_http_tce_admin_busy_forget(void)
{
    if (ngx_http_tce_admin_marks) {
        ngx_free(ngx_http_tce_admin_marks);
    }

    /* a reply still owed finds nothing to update */
    ngx_http_tce_admin_marks = NULL;
    ngx_http_tce_admin_nmarks = 0;
    ngx_http_tce_admin_marks_cap = 0;
}


ngx_int_t
ngx_http_tce_admin_busy_read(ngx_tce_redis_main_conf_t *rmcf,
    ngx_http_tce_admin_removal_t *items, ngx_uint_t n,
    ngx_http_tce_admin_busy_pt done, void *data, ngx_log_t *log)
{
    u_char                       *buf, *p;
    ngx_int_t                     rc;
    ngx_str_t                    *keys, *args;
    ngx_uint_t                    i;
    ngx_http_tce_admin_busy_q_t  *q;

    ngx_http_tce_admin_busy_node();

    /* keys: the sets of nodes; args: this node, the marks' prefixes */
    q = ngx_alloc(sizeof(ngx_http_tce_admin_busy_q_t), log);
    keys = ngx_alloc((2 * n + 1) * sizeof(ngx_str_t), log);
    buf = ngx_alloc(2 * n * NGX_HTTP_TCE_ADMIN_BUSY_KEY, log);

    rc = NGX_ERROR;

    if (q == NULL || keys == NULL || buf == NULL) {
        goto done;
    }

    q->items = items;
    q->n = n;
    q->done = done;
    q->data = data;

    args = keys + n;
    p = buf;

    args[0].data = ngx_http_tce_admin_node;
    args[0].len = ngx_http_tce_admin_node_len;

    for (i = 0; i < n; i++) {
        keys[i].data = p;
        keys[i].len = ngx_http_tce_admin_busy_key(p, rmcf, "drain_nodes",
                                                  items[i].service,
                                                  items[i].id, 0);
        p += keys[i].len;

        /* the marks' keys but the node's name, which the script adds */
        args[1 + i].data = p;
        args[1 + i].len = ngx_http_tce_admin_busy_key(p, rmcf, "drain_busy",
                                                      items[i].service,
                                                      items[i].id, 2);
        p += args[1 + i].len;
    }

    rc = ngx_tce_redis_eval(&rmcf->ctx->cmd, ngx_http_tce_admin_busy_got,
                            q, ngx_http_tce_admin_busy_read_script, keys, n,
                            args, 1 + n);

done:

    if (rc != NGX_OK && q) {
        ngx_free(q);
    }

    if (keys) {
        ngx_free(keys);
    }

    if (buf) {
        ngx_free(buf);
    }

    return rc;
}


/* {count, nodes, count, nodes, ...}, one pair per removal */
static void
ngx_http_tce_admin_busy_got(ngx_tce_redis_conn_t *rc, redisReply *reply,
    const char *err, void *data)
{
    ngx_http_tce_admin_busy_q_t *q = data;

    ngx_uint_t   i;
    redisReply  *c, *k;

    if (reply == NULL) {
        goto failed;
    }

    err = "unexpected answer of Redis to the read of the busy marks";

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 * q->n) {
        goto failed;
    }

    for (i = 0; i < q->n; i++) {
        c = reply->element[2 * i];
        k = reply->element[2 * i + 1];

        if (c->type != REDIS_REPLY_INTEGER || k->type != REDIS_REPLY_INTEGER
            || c->integer < 0 || k->integer < 0)
        {
            goto failed;
        }
    }

    for (i = 0; i < q->n; i++) {
        q->items[i].others = reply->element[2 * i]->integer;
        q->items[i].nodes = (ngx_uint_t) reply->element[2 * i + 1]->integer;
    }

    err = NULL;

failed:

    q->done(q->data, err);
    ngx_free(q);
}


/*
 * <prefix><kind>:<service>/<id>, then with node 1 ":<this node>", with
 * node 2 ":" alone; returns its length
 */
static size_t
ngx_http_tce_admin_busy_key(u_char *p, ngx_tce_redis_main_conf_t *rmcf,
    const char *kind, const char *service, const char *id, ngx_uint_t node)
{
    u_char  *last;

    last = ngx_sprintf(p, "%V%s:%s/%s", &rmcf->prefix, kind, service, id);

    if (node == 1) {
        last = ngx_sprintf(last, ":%*s", ngx_http_tce_admin_node_len,
                           ngx_http_tce_admin_node);

    } else if (node == 2) {
        *last++ = ':';
    }

    return last - p;
}


/* "<hostname>:<master pid>": the node, across its workers and reloads */
static void
ngx_http_tce_admin_busy_node(void)
{
    ngx_pid_t  master;

    if (ngx_http_tce_admin_node_len) {
        return;
    }

    master = (ngx_process == NGX_PROCESS_WORKER) ? getppid() : ngx_pid;

    ngx_http_tce_admin_node_len =
        ngx_snprintf(ngx_http_tce_admin_node,
                     NGX_HTTP_TCE_ADMIN_LEASE_LEN - 1, "%V:%P",
                     &ngx_cycle->hostname, master)
        - ngx_http_tce_admin_node;
}
