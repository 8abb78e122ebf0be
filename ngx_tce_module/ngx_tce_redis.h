/*
 * The fleet store: canary policies shared by every nginx node through
 * Redis (hiredis async on nginx's event loop).
 *
 *   tce_redis <host:port | unix:/path> [db=<n>] [username=<name>]
 *       [password_file=<path>] [prefix=tce:] [timeout=<time>]
 *       [resync=<time>] [cache=<path>] [replicas=<n>]
 *       [drain_settle=<time>];
 *   tce_redis sentinel=<host:port>[,<host:port>...] master=<name> ...;
 *
 * Files:
 *
 *   ngx_tce_redis_adapter.c  one Redis connection: hiredis's async
 *                            context on an nginx connection, the
 *                            handshake, a FIFO of commands, timeouts,
 *                            reconnection with backoff and jitter
 *   ngx_tce_redis_conf.c     the directive, the module, process hooks,
 *                            the cache file read at start
 *   ngx_tce_redis_sync.c     the elected syncer: subscriber, resync,
 *                            applying the fleet's policy to the zone
 *   ngx_tce_redis_sentinel.c the master's address from Redis Sentinel
 *                            (asked, then +switch-master followed)
 *   ngx_tce_redis_eval.c     EVAL of a Lua script with its keys and
 *                            arguments, on a connection
 *   admin/ngx_http_tce_admin_fleet*.c  a policy, override or
 *                            instance set write from any worker (Lua)
 *   admin/ngx_http_tce_admin_drain_busy.c  what each node has in
 *                            flight on a draining instance (its busy
 *                            marks), read before a fleet removal
 *   ngx_tce_redis_audit.c    audit lines to the <prefix>audit stream
 *   ngx_tce_fleet.c          the fleet's data in C (pure: unit tests)
 *
 * Connections per nginx instance: the elected worker (the syncer) holds
 * two, a subscriber and a command connection (three with Sentinel: one
 * to a sentinel, subscribed to +switch-master); any other worker opens a
 * command connection on its first admin write and closes it after
 * NGX_TCE_REDIS_IDLE without one.
 */

#ifndef _NGX_TCE_REDIS_H_INCLUDED_
#define _NGX_TCE_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <jansson.h>

#include "ngx_tce.h"
#include "ngx_tce_fleet.h"
#include "ngx_tce_prom.h"


#define NGX_TCE_REDIS_ERR_LEN      160
#define NGX_TCE_REDIS_TICK         500      /* ms, election and resync */
#define NGX_TCE_REDIS_STALE        1500     /* ms, syncer presumed dead */
#define NGX_TCE_REDIS_IDLE         60000    /* ms, a writer's connection */
#define NGX_TCE_REDIS_BACKOFF_MIN  100      /* ms */
#define NGX_TCE_REDIS_BACKOFF_MAX  5000     /* ms */
#define NGX_TCE_REDIS_MAX_REPLY    (8 * 1024 * 1024)  /* buffered bytes */
#define NGX_TCE_REDIS_HOST_LEN     (NGX_SOCKADDR_STRLEN + 1)
#define NGX_TCE_REDIS_NAME_MAX     128      /* a Sentinel master name */
#define NGX_TCE_REDIS_PREFIX_MAX   64       /* prefix= */
#define NGX_TCE_REDIS_REPLID_LEN   40       /* INFO's master_replid */

/* connection states (also the syncer's, in the zone) */
#define NGX_TCE_REDIS_DOWN         0
#define NGX_TCE_REDIS_CONNECTING   1
#define NGX_TCE_REDIS_UP           2


typedef struct ngx_tce_redis_conn_s  ngx_tce_redis_conn_t;
typedef struct ngx_tce_redis_ctx_s   ngx_tce_redis_ctx_t;

/*
 * A command's reply: reply NULL when the command failed (connection
 * lost, timed out, closed), err then says why.  The reply is freed
 * after the handler returns.
 */
typedef void (*ngx_tce_redis_reply_pt)(ngx_tce_redis_conn_t *rc,
    redisReply *reply, const char *err, void *data);


/* a sentinel of sentinel=, resolved when the configuration is read */
typedef struct {
    ngx_str_t                   text;        /* as written, for logs */
    u_char                      host[NGX_TCE_REDIS_HOST_LEN];
    in_port_t                   port;
} ngx_tce_redis_addr_t;


typedef struct {
    ngx_str_t                   server;      /* as written, for logs */
    ngx_str_t                   host;        /* numeric, NUL-terminated */
    in_port_t                   port;
    ngx_str_t                   unix_path;   /* NUL-terminated or empty */
    ngx_int_t                   db;          /* -1: none */
    ngx_str_t                   username;
    ngx_str_t                   password;
    ngx_str_t                   prefix;
    ngx_str_t                   channel;     /* <prefix>events */
    ngx_msec_t                  timeout;
    ngx_msec_t                  resync;
    ngx_msec_t                  drain_settle; /* a removal's first wait */
    ngx_str_t                   cache;       /* NUL-terminated or empty */
    ngx_array_t                *sentinels;   /* ngx_tce_redis_addr_t */
    ngx_str_t                   master_name; /* NUL-terminated or empty */
    ngx_int_t                   replicas;    /* WAIT for them; 0: not */
    ngx_int_t                   audit_maxlen; /* <prefix>audit, ~; 0: no
                                                 stream */
    struct ngx_tce_persist_s   *persist;     /* the cache's writer */
    ngx_tce_zone_t             *zone;
    ngx_tce_main_conf_t        *tmcf;
    ngx_uint_t                  enabled;

    /* this worker's state (ngx_tce_redis_sync.c), NULL if none */
    ngx_tce_redis_ctx_t        *ctx;
} ngx_tce_redis_main_conf_t;


/* in the tce zone (ngx_tce_shctx_t.redis), written by the syncer */
typedef struct {
    ngx_atomic_t                owner;        /* the syncer's pid */
    ngx_atomic_t                heartbeat;    /* ngx_current_msec */
    ngx_atomic_t                state;        /* NGX_TCE_REDIS_* */
    uint64_t                    version;      /* fleet version applied */
    uint64_t                    seen;         /* highest version seen */
    time_t                      last_sync;    /* last snapshot applied */
    time_t                      last_error_time;
    time_t                      up_since;
    ngx_atomic_t                syncs;        /* snapshots applied */
    ngx_atomic_t                messages;     /* pub/sub messages */
    ngx_atomic_t                errors;       /* connection, protocol */
    ngx_atomic_t                rejected;     /* snapshots refused */
    ngx_atomic_t                writes;       /* accepted, any worker */
    ngx_atomic_t                write_errors; /* 503s, any worker */
    ngx_atomic_t                conflicts;    /* If-Match refused */
    ngx_atomic_t                audit_added;  /* XADDs answered */
    ngx_atomic_t                audit_errors; /* XADDs failed */
    u_char                      last_error[NGX_TCE_REDIS_ERR_LEN];

    /* with Sentinel: the master, under the zone's mutex */
    ngx_atomic_t                master_epoch; /* bumped when it moves */
    ngx_atomic_t                switches;     /* moves seen */
    ngx_atomic_t                not_replicated; /* WAIT short of replicas */
    ngx_atomic_t                sentinel_state; /* NGX_TCE_REDIS_* */
    ngx_uint_t                  with_sentinel;
    time_t                      master_since;
    in_port_t                   master_port;  /* 0: not known yet */
    u_char                      master_host[NGX_TCE_REDIS_HOST_LEN];
} ngx_tce_redis_sh_t;


struct ngx_tce_redis_conn_s {
    redisAsyncContext          *ac;          /* NULL: not connected */
    ngx_connection_t           *c;           /* on ac's fd */
    ngx_tce_redis_main_conf_t  *rmcf;
    ngx_log_t                  *log;
    ngx_event_t                 timer;       /* handshake, command */
    ngx_event_t                 retry;       /* reconnection */
    ngx_event_t                 idle;        /* close when unused */
    ngx_queue_t                 pending;     /* ngx_tce_redis_cmd_t */
    ngx_uint_t                  npending;
    ngx_uint_t                  state;       /* NGX_TCE_REDIS_* */
    ngx_uint_t                  handshake;   /* replies still owed */
    ngx_uint_t                  failures;    /* in a row: the backoff */
    ngx_uint_t                  serial;      /* bumped on every close */
    ngx_uint_t                  reconnect;   /* 1: retry when lost */
    ngx_uint_t                  subscriber;  /* 1: replies are pushes */
    ngx_uint_t                  sentinel;    /* 1: to a sentinel */
    ngx_uint_t                  next;        /* the sentinel to try */
    ngx_uint_t                  quiet;       /* 1: this close is routine */
    ngx_atomic_uint_t           epoch;       /* master_epoch connected to */
    ngx_str_t                   channel;     /* SUBSCRIBE to it */
    ngx_msec_t                  idle_time;   /* 0: never closed idle */
    const char                 *name;        /* "subscriber"... */
    void                       *data;

    /* the owner's hooks; each may be NULL */
    void                      (*ready)(ngx_tce_redis_conn_t *rc);
    void                      (*down)(ngx_tce_redis_conn_t *rc,
                                      const char *err);
    ngx_int_t                 (*push)(ngx_tce_redis_conn_t *rc,
                                      redisReply *reply);
    /* a sentinel's answer to get-master-addr-by-name, in the handshake */
    ngx_int_t                 (*hello)(ngx_tce_redis_conn_t *rc,
                                      redisReply *reply, u_char *err,
                                      size_t len);

    u_char                      host[NGX_TCE_REDIS_HOST_LEN];
    in_port_t                   port;
    u_char                      target[NGX_TCE_REDIS_HOST_LEN + 8];
    u_char                      err[NGX_TCE_REDIS_ERR_LEN];
};


struct ngx_tce_redis_ctx_s {
    ngx_tce_redis_main_conf_t  *rmcf;
    ngx_tce_redis_sh_t         *sh;
    ngx_log_t                  *log;
    ngx_tce_redis_conn_t        cmd;         /* commands of this worker */
    ngx_tce_redis_conn_t        sub;         /* the syncer's subscriber */
    ngx_tce_redis_conn_t        sentinel;    /* the syncer's, Sentinel */
    ngx_event_t                 tick;
    ngx_msec_t                  last_check;  /* version compared */
    ngx_uint_t                  owner;       /* 1: this is the syncer */
    ngx_uint_t                  pulling;     /* a snapshot read in flight */
    ngx_uint_t                  again;       /* pull again after it */
    ngx_uint_t                  whole;       /* next snapshot: forced */
    ngx_uint_t                  checking;    /* a GET version in flight */
    char                       *cache_text;  /* the last applied, JSON */
    size_t                      replid_len;  /* 0: none seen yet */
    u_char                      replid[NGX_TCE_REDIS_REPLID_LEN];
                                             /* Redis's master_replid,
                                                read before the last
                                                snapshot or check */
};


/* ngx_tce_redis_adapter.c */

/*
 * Prepares a connection (nothing is opened).  Returns nothing; the
 * owner sets the hooks and data afterwards.
 */
void ngx_tce_redis_conn_init(ngx_tce_redis_conn_t *rc,
    ngx_tce_redis_main_conf_t *rmcf, const char *name, ngx_log_t *log);

/*
 * Starts connecting (non-blocking) unless connecting or connected.
 * The handshake (AUTH, SELECT, then PING or the subscription) is
 * queued at once; ready() runs once it is answered.  Returns NGX_OK,
 * or NGX_ERROR with the connection down (down() called, a retry
 * scheduled when reconnect is set).
 */
ngx_int_t ngx_tce_redis_connect(ngx_tce_redis_conn_t *rc);

/*
 * Queues a command (connecting first when down).  handler runs once
 * with the reply, or with NULL and the reason.  Returns NGX_OK, or
 * NGX_ERROR when the command cannot be queued (handler not called).
 */
ngx_int_t ngx_tce_redis_command(ngx_tce_redis_conn_t *rc,
    ngx_tce_redis_reply_pt handler, void *data, int argc,
    const char **argv, const size_t *argvlen);

/*
 * Closes the connection: every queued command's handler runs with
 * NULL and err, down() runs, and with reconnect set a retry is
 * scheduled with backoff and jitter.  Safe on a closed connection.
 */
void ngx_tce_redis_close(ngx_tce_redis_conn_t *rc, const char *err);

/* closes for good: no retry, timers removed (exit, takeover) */
void ngx_tce_redis_shutdown(ngx_tce_redis_conn_t *rc);

/* the state's name: "down", "connecting", "up" */
const char *ngx_tce_redis_state_name(ngx_uint_t state);


/*
 * Queues a command on the connection as it is (WAIT after a write: it
 * concerns this connection's writes).  NGX_ERROR when it is not up; no
 * reconnection, handler not called.
 */
ngx_int_t ngx_tce_redis_command_same(ngx_tce_redis_conn_t *rc,
    ngx_tce_redis_reply_pt handler, void *data, int argc,
    const char **argv, const size_t *argvlen);

/*
 * Closes a connection to a master that is no longer the master (the
 * zone's master_epoch moved), quietly.  Returns 1 if it was closed.
 */
ngx_uint_t ngx_tce_redis_stale(ngx_tce_redis_conn_t *rc);


/* ngx_tce_redis_eval.c */

/*
 * Queues EVAL <script> <nkeys> <keys...> <args...> as
 * ngx_tce_redis_command() does (connecting first when down).  script
 * is NUL-terminated; keys and args are sent as they are (their len
 * bytes, binary-safe).  Returns NGX_OK, or NGX_ERROR when the command
 * cannot be queued (handler not called, nothing sent).
 */
ngx_int_t ngx_tce_redis_eval(ngx_tce_redis_conn_t *rc,
    ngx_tce_redis_reply_pt handler, void *data, const char *script,
    const ngx_str_t *keys, ngx_uint_t nkeys, const ngx_str_t *args,
    ngx_uint_t nargs);


/* ngx_tce_redis_sentinel.c */

/*
 * The master's address as last learnt from Sentinel (zone): host
 * (NUL-terminated, numeric), port and epoch.  Returns NGX_OK, or
 * NGX_DECLINED when not known yet.
 */
ngx_int_t ngx_tce_redis_master(ngx_tce_redis_main_conf_t *rmcf,
    u_char *host, in_port_t *port, ngx_atomic_uint_t *epoch);

/* sets up the syncer's sentinel connection (nothing is opened) */
void ngx_tce_redis_sentinel_init(ngx_tce_redis_ctx_t *ctx);

/* the status's "sentinel" object, NULL without Sentinel */
json_t *ngx_tce_redis_sentinel_json(ngx_tce_zone_t *zone,
    ngx_tce_redis_sh_t *sh);


/* ngx_tce_redis_audit.c */

/*
 * Appends an audit line (JSON text, len bytes, no newline) to the
 * stream <prefix>audit (XADD ... MAXLEN ~ audit_maxlen * line <text>)
 * on this worker's command connection, without waiting: a failure is
 * logged and counted (audit_errors), not retried (the audit file, when
 * configured, has the line).  Nothing without tce_redis or with
 * audit_maxlen=0.
 */
void ngx_tce_redis_audit(ngx_cycle_t *cycle, const char *line, size_t len,
    ngx_log_t *log);


/* ngx_tce_redis_sync.c */

/* starts the election timer of this worker; NGX_OK or NGX_ERROR */
ngx_int_t ngx_tce_redis_sync_init(ngx_cycle_t *cycle,
    ngx_tce_redis_main_conf_t *rmcf);

/* stops everything of this worker, gives up ownership */
void ngx_tce_redis_sync_exit(ngx_tce_redis_main_conf_t *rmcf);

/*
 * Applies a fleet snapshot to the zone: every service it names gets
 * its clusters' policies, every other policy is cleared (with tce_redis
 * the fleet is the store of canary policies), and every service's
 * overrides table becomes the fleet's entries for it.  With force 0 a service
 * whose fleet revision in the zone is newer than the snapshot's is left
 * alone (a write of this node applied before the snapshot was read).
 * Returns NGX_OK or NGX_ERROR (zone full, logged).
 */
ngx_int_t ngx_tce_redis_apply(ngx_tce_zone_t *zone, const ngx_tce_fleet_t *f,
    ngx_uint_t force, ngx_log_t *log);

/* the status (/api/v1/status, tce_status): an object, NULL if none */
json_t *ngx_tce_redis_json(ngx_tce_zone_t *zone);

/* copies the status for the metrics (pool memory); NGX_OK/NGX_ERROR */
ngx_int_t ngx_tce_redis_prom(ngx_tce_zone_t *zone,
    ngx_tce_prom_snapshot_t *s, ngx_pool_t *pool);

/* the zone's status block, allocated at start (NULL: no tce_redis) */
ngx_tce_redis_sh_t *ngx_tce_redis_sh(ngx_tce_zone_t *zone);


extern ngx_module_t  ngx_tce_redis_module;


#endif /* _NGX_TCE_REDIS_H_INCLUDED_ */
