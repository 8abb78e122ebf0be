/*
 * The admin API (tce_admin): the types its files share.
 *
 *   ngx_http_tce_admin_api.c     directives, routing, answers, errors
 *   ngx_http_tce_admin_auth.c    bearer tokens (tce_admin_token_file)
 *   ngx_http_tce_admin_read.c    GET services, a service, status
 *   ngx_http_tce_admin_policy.c  a cluster's canary policy
 *   ngx_http_tce_admin_scale.c   an env's scaling signal
 *   ngx_http_tce_admin_diff.c    a cluster's API diff (tce_diff)
 *   ngx_http_tce_admin_store.c   the state file as the API's store,
 *                                written on the thread pool
 *   ngx_http_tce_admin_audit.c   the audit log (tce_admin_audit)
 *   ngx_http_tce_admin_fleet.c   canary writes to Redis (tce_redis)
 *   ngx_http_tce_admin_fleet_inst.c  instance overrides to Redis
 *   ngx_http_tce_admin_fleet_set.c   instance sets to Redis
 *   ngx_http_tce_admin_input.c   body and token checks (pure C)
 *   ngx_http_tce_admin_instance.c  an instance: read, overrides, add,
 *                                remove (drain first)
 *   ngx_http_tce_admin_desired.c an env's desired instance set
 *   ngx_http_tce_admin_drain.c   removals completed when drained
 *   ngx_http_tce_admin_inst_input.c, _inst_edit.c  their pure parts
 *   ngx_http_tce_admin_deploy.c  progressive deploys: the routes
 *   ngx_http_tce_admin_deploy_ctl.c  their controller, their file
 *   ngx_http_tce_admin_deploy_input.c  their pure parts
 *   ngx_http_tce_admin_deploy_fleet.c  the controller's lease in Redis
 */

#ifndef _NGX_HTTP_TCE_ADMIN_API_H_INCLUDED_
#define _NGX_HTTP_TCE_ADMIN_API_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_tce.h"
#include "ngx_http_tce_admin_input.h"
#include "ngx_http_tce_admin_deploy.h"
#include "ngx_tce_persist.h"
#include "ngx_http_tce_metrics.h"


#define NGX_HTTP_TCE_ADMIN_BODY_MAX  (64 * 1024)
#define NGX_HTTP_TCE_ADMIN_LEASE_LEN 128    /* "<hostname>:<pid>" */


typedef struct {
    ngx_str_t                   token;
    ngx_str_t                   name;        /* principal; "" if none */
} ngx_http_tce_admin_token_t;


/* the state file's fingerprint when last loaded or written */
typedef struct {
    ngx_uint_t                  exists;
    ino_t                       ino;
    off_t                       size;
    time_t                      mtime;
    long                        mtime_ns;
} ngx_http_tce_admin_fp_t;


/* a deploy's canary policy waiting to be written to the fleet */
typedef struct {
    char                        service[NGX_TCE_SERVICE_LEN];
    char                        cluster[NGX_TCE_CLUSTER_LEN];
    uint32_t                    weight_bp;
    uint32_t                    fallback;
    uint64_t                    epoch;
} ngx_http_tce_admin_fpol_t;


typedef struct {
    ngx_http_tce_admin_fp_t     fp;

    /* the pid of the process whose writer has the turn, 0: none */
    ngx_atomic_t                turn;

    /* accepted writes, the event-loop time they took (ns) in total
     * (wall clock and CPU) and at most, and the time of their
     * state-file writes (threads, wall clock) */
    ngx_atomic_t                writes;
    ngx_atomic_t                loop_ns;
    ngx_atomic_t                loop_cpu_ns;
    ngx_atomic_t                loop_ns_max;
    ngx_atomic_t                store_ns;

    /* audit lines written, and not written (the error log says why) */
    ngx_atomic_t                audit_lines;
    ngx_atomic_t                audit_errors;

    /* progressive deploys (ngx_http_tce_admin_deploy_ctl.c): the
     * controller's election, as the Consul watcher's, and the records */
    ngx_atomic_t                deploy_owner;      /* pid, 0: none */
    ngx_atomic_t                deploy_heartbeat;  /* ngx_current_msec */
    uint64_t                    deploy_next_id;
    ngx_http_tce_admin_deploy_t deploys[NGX_HTTP_TCE_ADMIN_DEPLOYS];

    /* with tce_redis: the fleet's deploy lease (_deploy_fleet.c); the
     * node drives deploys while ngx_current_msec is before until */
    ngx_atomic_t                deploy_lease_until;
    ngx_atomic_t                deploy_lease_taken;  /* times taken */
    ngx_atomic_t                deploy_lease_synced; /* records read since
                                                        it was taken */
    ngx_atomic_t                deploy_fleet_dirty;  /* records to write */
    ngx_uint_t                  deploy_npolicies;    /* to write, queued */
    ngx_http_tce_admin_fpol_t   deploy_policies[NGX_HTTP_TCE_ADMIN_DEPLOYS];
    u_char                      deploy_lease_holder[
                                    NGX_HTTP_TCE_ADMIN_LEASE_LEN];
} ngx_http_tce_admin_shctx_t;


typedef struct {
    ngx_shm_zone_t             *shm_zone;    /* NULL: no tce_admin */
    ngx_http_tce_admin_shctx_t *sh;
    ngx_slab_pool_t            *shpool;
    ngx_tce_main_conf_t        *tmcf;
    ngx_int_t                   request_id;  /* $request_id's index */
    ngx_uint_t                  drain_warned;  /* this process logged a
                                                  hand edit holding up
                                                  removals */
    ngx_open_file_t            *audit;       /* the first tce_admin
                                                location's: the
                                                controller's events */
    ngx_tce_persist_t          *deploys;     /* <tce_state>.deploys */
    ngx_uint_t                  deploy_owner;  /* this worker controls */
} ngx_http_tce_admin_main_conf_t;


typedef struct {
    ngx_flag_t                  enable;
    ngx_flag_t                  read_auth;
    ngx_msec_t                  drain_timeout;
    ngx_str_t                   token_file;
    ngx_array_t                *tokens;      /* ngx_http_tce_admin_token_t */
    ngx_open_file_t            *audit;       /* NULL: no audit log */
} ngx_http_tce_admin_loc_conf_t;


/* one request: the route's parts, who asked */
typedef struct {
    ngx_str_t                   request_id;
    ngx_str_t                   principal;
    ngx_str_t                   service;
    ngx_str_t                   cluster;
    ngx_str_t                   instance;    /* an instance's id */
    ngx_str_t                   env;
    ngx_str_t                   action;      /* deploys/current/<action> */
    ngx_uint_t                  route;
    ngx_tce_service_t          *svc;

    /* the body as read (NULL: none), for the audit log's digest */
    u_char                     *body;
    size_t                      body_len;

    /* an accepted write: the service's generation before and after */
    ngx_atomic_uint_t           gen_before;
    ngx_atomic_uint_t           gen_after;

    /* the write in progress (ngx_http_tce_admin_store.c) */
    void                       *change;
} ngx_http_tce_admin_ctx_t;


/*
 * Sends json (its reference is taken, whatever happens) as the answer
 * with status, Content-Type application/json and X-Request-Id.
 * Returns what the handler returns.
 */
ngx_int_t ngx_http_tce_admin_send(ngx_http_request_t *r, ngx_uint_t status,
    json_t *json);

/*
 * Sends the error answer {"error": {"status", "code", "text"},
 * "request_id"}; text must be printable already.
 */
ngx_int_t ngx_http_tce_admin_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *text);

/*
 * The same for a check that refuses (auth, lookup, preconditions): it
 * returns NGX_DONE, not NGX_OK, once the error is sent, so that its
 * caller stops; the handler returns NGX_OK for NGX_DONE.
 */
ngx_int_t ngx_http_tce_admin_refuse(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *text);

/* sets ETag: "<generation>" on the answer; NGX_OK or NGX_ERROR */
ngx_int_t ngx_http_tce_admin_etag(ngx_http_request_t *r,
    ngx_atomic_uint_t generation);

/* a JSON string of bytes made printable (ngx_tce_text.h) */
json_t *ngx_http_tce_admin_jstr(const void *s, size_t len);

/*
 * Loads a token file at configuration time into conf->tokens.
 * Returns NGX_CONF_OK or an error text for nginx -t.
 */
char *ngx_http_tce_admin_auth_load(ngx_conf_t *cf,
    ngx_http_tce_admin_loc_conf_t *conf);

/*
 * Checks the request's Authorization header for a write (or a read
 * with tce_admin_read_auth on).  Sets ctx->principal.  Returns NGX_OK,
 * or NGX_DONE once an error answer is sent
 * (ngx_http_tce_admin_refuse).
 */
ngx_int_t ngx_http_tce_admin_auth(ngx_http_request_t *r,
    ngx_http_tce_admin_loc_conf_t *conf, ngx_http_tce_admin_ctx_t *ctx,
    ngx_uint_t write);

/* GET handlers of ngx_http_tce_admin_read.c */
ngx_int_t ngx_http_tce_admin_services(ngx_http_request_t *r);
ngx_int_t ngx_http_tce_admin_service(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx);
ngx_int_t ngx_http_tce_admin_status_v1(ngx_http_request_t *r);

/*
 * 1 when the service has the cluster: an instance in it, or a canary
 * policy set for it.
 */
/* a file of the dashboard (ngx_http_tce_admin_dashboard_assets.c) */
typedef struct {
    ngx_str_t                   name;
    ngx_str_t                   type;
    u_char                     *data;
    size_t                      len;
} ngx_http_tce_admin_asset_t;

/* the dashboard's files, ended by an empty name */
extern ngx_http_tce_admin_asset_t  ngx_http_tce_admin_dashboard_assets[];

/*
 * Serves the dashboard (ngx_http_tce_admin_dashboard.c): <loc>dashboard/
 * and its files, and redirects a browser's GET <loc> (Accept: text/html)
 * there.  NGX_DECLINED when the request is for the API.
 */
ngx_int_t ngx_http_tce_admin_dashboard(ngx_http_request_t *r);

/*
 * Sets "traffic" (cumulative request counters of the metrics series,
 * ngx_http_tce_admin_traffic.c) in each env object of clusters, the
 * "clusters" object of GET v1/services/<psm>.  NGX_ERROR on no memory.
 */
ngx_int_t ngx_http_tce_admin_traffic(json_t *clusters, ngx_tce_service_t *svc,
    ngx_log_t *log);

ngx_uint_t ngx_http_tce_admin_has_cluster(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_str_t *cluster, ngx_log_t *log);

/* GET .../envs/<env>/scale (ngx_http_tce_admin_scale.c) */
ngx_int_t ngx_http_tce_admin_scale(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx);

/* GET .../clusters/<cluster>/diff (ngx_http_tce_admin_diff.c) */
ngx_int_t ngx_http_tce_admin_diff(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx);

/* canary handlers of ngx_http_tce_admin_policy.c; body may be NULL */
ngx_int_t ngx_http_tce_admin_canary(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len);

/*
 * Sends a cluster's canary policy as it is in the zone, with its ETag
 * (the service's generation, or its fleet revision with tce_redis).
 */
ngx_int_t ngx_http_tce_admin_canary_show(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, ngx_uint_t status);

/*
 * A canary write (req NULL: DELETE) through the fleet store, Redis
 * (ngx_http_tce_admin_fleet.c).  Returns NGX_DONE when the answer will
 * come with Redis's reply (the request's count is taken), or the
 * answer's status once sent.
 */
ngx_int_t ngx_http_tce_admin_fleet_canary(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx,
    const ngx_http_tce_admin_canary_req_t *req);

#define NGX_HTTP_TCE_ADMIN_FLEET_CANARY    0
#define NGX_HTTP_TCE_ADMIN_FLEET_OVERRIDE  1

/*
 * Runs a fleet write: EVAL script with KEYS <prefix><hash>, <prefix>rev,
 * <prefix>version and ARGV field, the service, If-Match's revision (""
 * for none), args[0..nargs-1] (at most 8), the channel.  The script
 * answers {1, rev, version, value}, {0, rev} (If-Match refused) or
 * {2, text} (the stored value is bad).  kind (and id, an instance's)
 * say how the value is applied and answered.  Returns as
 * ngx_http_tce_admin_fleet_canary() does.
 */
ngx_int_t ngx_http_tce_admin_fleet_send(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, ngx_uint_t kind, const char *id,
    const char *script, const char *hash, ngx_str_t *field, ngx_str_t *args,
    ngx_uint_t nargs);

/* answers 503 redis_unavailable with err, counted in the status */
ngx_int_t ngx_http_tce_admin_fleet_unavailable(ngx_http_request_t *r,
    const char *err);

struct ngx_http_tce_admin_patch_req_s;    /* _inst_input.h */

/*
 * A PATCH of an instance's overrides through the fleet store
 * (ngx_http_tce_admin_fleet_inst.c); req as parsed.  Returns as
 * ngx_http_tce_admin_fleet_canary() does.
 */
ngx_int_t ngx_http_tce_admin_fleet_override(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, const char *id,
    const struct ngx_http_tce_admin_patch_req_s *req);

/* the accepted override (value: its JSON, "" when cleared) in the zone */
ngx_int_t ngx_http_tce_admin_fleet_inst_apply(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, const char *id, const char *value,
    size_t len);

/* answers 200 with the instance as it is now, ETag its fleet revision */
ngx_int_t ngx_http_tce_admin_fleet_inst_show(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, const char *id);

/*
 * tce_admin_audit <path>: the file is opened by the master (as nginx's
 * logs are: reopened on USR1), after a check that names the directive
 * when it cannot be.  NGX_CONF_OK or an error text for nginx -t.
 */
char *ngx_http_tce_admin_audit_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/*
 * Appends the audit line of an accepted change to the location's audit
 * log, if it has one: time, principal, socket address, method, path,
 * status, service, generation before and after (ctx->gen_before,
 * ctx->gen_after), the body's SHA-256 (ctx->body) and the request id.
 * Call it once per accepted change, after the change took effect; the
 * line is written (and fsynced) on the thread pool.  With done not
 * NULL, done(r) runs on the event loop once the line is written or
 * failed (the request must be kept alive until then: r->main->count);
 * with done NULL nothing waits for it.  A line that cannot be written
 * is logged and counted in v1/status; the change stands.  Returns
 * NGX_OK (done will run), NGX_DECLINED (no audit log: done will not
 * run) or NGX_ERROR (done will not run; logged).
 */
ngx_int_t ngx_http_tce_admin_audit(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, ngx_uint_t status,
    void (*done)(ngx_http_request_t *r));

/* instance handlers (ngx_http_tce_admin_instance.c): GET a cluster's
 * instances, POST one; GET, PATCH, DELETE one; body may be NULL */
ngx_int_t ngx_http_tce_admin_instance_op(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len);

/*
 * The deploy routes (ngx_http_tce_admin_deploy.c): GET and POST of
 * .../deploys, GET .../deploys/current, POST .../deploys/current/<action>.
 */
ngx_int_t ngx_http_tce_admin_deploy(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len);

/* a deploy write: a route's, or relayed from another fleet node */
typedef struct {
    ngx_str_t                         service;
    ngx_str_t                         cluster;
    ngx_str_t                         principal;
    ngx_str_t                         action;    /* "": a start */
    ngx_http_tce_admin_deploy_conf_t  conf;      /* a start's */
} ngx_http_tce_admin_deploy_cmd_t;

/* its outcome: the status, and the record or the error (code not NULL) */
typedef struct {
    ngx_uint_t                        status;
    const char                       *code;
    const char                       *text;      /* static */
    ngx_http_tce_admin_deploy_t       copy;
} ngx_http_tce_admin_deploy_res_t;

/*
 * Applies a start or an action to the zone's records, on the node that
 * drives deploys: the policy, the log line, the deploys file and fleet
 * write, the webhook event (not the audit line: the route's).  Fills
 * *res: 201 or 200 with the record, or an error (status, code, text)
 * and nothing changed.
 */
void ngx_http_tce_admin_deploy_apply(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_http_tce_admin_deploy_cmd_t *cmd, ngx_http_tce_admin_deploy_res_t *res,
    ngx_log_t *log);

/*
 * A deploy write on a fleet node that does not drive deploys
 * (ngx_http_tce_admin_deploy_relay.c): the command goes to Redis, the
 * node holding the deploy lease applies it, and this request is
 * answered with its outcome once the fleet's records have it; 503
 * deploy_controller_unavailable when no holder took it in time (then
 * withdrawn: not applied).  NGX_DONE, or a status.
 */
ngx_int_t ngx_http_tce_admin_deploy_relay(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len);

/*
 * The holder's side (the controlling worker): applies the commands the
 * lease script took off the queue (their JSON), and writes each one's
 * outcome to Redis once the records with it are written there (at
 * once for a refusal).
 */
void ngx_http_tce_admin_deploy_relay_take(
    ngx_http_tce_admin_main_conf_t *amcf, const char *text, size_t len,
    ngx_log_t *log);

/* the holder's records write was sent (seq), answered (ok 1: written) */
ngx_uint_t ngx_http_tce_admin_deploy_relay_push_sent(void);
void ngx_http_tce_admin_deploy_relay_pushed(ngx_uint_t seq, ngx_uint_t ok,
    ngx_log_t *log);

/*
 * A canary write of the API (PUT, DELETE .../canary): NGX_OK, or
 * NGX_DONE once the 409 is sent when a deploy drives the cluster.
 */
ngx_int_t ngx_http_tce_admin_deploy_canary_check(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx);

/* a canary write took effect: the deploys of the cluster no longer own
 * its policy (not reapplied at reload or restart) */
void ngx_http_tce_admin_deploy_disown(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_tce_service_t *svc, ngx_str_t *cluster);

/*
 * Sets the canary policy of the record's cluster: weight_bp, the epoch
 * bumped when new_epoch (a rollback: every sticky user back to prod),
 * fallback as it was; records it in d (owns = 1).  The caller holds the
 * tce_admin zone's mutex.  NGX_OK, or NGX_ERROR (logged).
 */
ngx_int_t ngx_http_tce_admin_deploy_policy_locked(
    ngx_http_tce_admin_main_conf_t *amcf, ngx_http_tce_admin_deploy_t *d,
    uint32_t weight_bp, ngx_uint_t new_epoch, ngx_log_t *log);

/* registers the deploys file (tce_admin, configuration time) */
ngx_int_t ngx_http_tce_admin_deploy_conf(ngx_conf_t *cf,
    ngx_http_tce_admin_main_conf_t *amcf);

/*
 * The zone's deploys at start (a fresh zone: read from the deploys
 * file) and at every reload: the policies they own are set again over
 * the state file's (master, init_zone).  NGX_OK; a bad file is logged
 * and left out.
 */
ngx_int_t ngx_http_tce_admin_deploy_init_zone(
    ngx_http_tce_admin_main_conf_t *amcf, ngx_uint_t fresh, ngx_log_t *log);

/* starts the controller's election timer of every worker */
ngx_int_t ngx_http_tce_admin_deploy_init_process(ngx_cycle_t *cycle);

/*
 * With tce_redis, renews or takes the fleet's deploy lease (a command
 * sent, not waited for) and returns 1 while this node holds it, 0
 * otherwise.  Without tce_redis: 1.  The controlling worker's tick.
 */
ngx_uint_t ngx_http_tce_admin_deploy_lease(
    ngx_http_tce_admin_main_conf_t *amcf, ngx_log_t *log);

/* 1 when this node drives deploys: without tce_redis, or holding the
 * lease with the fleet's records read */
ngx_uint_t ngx_http_tce_admin_deploy_fleet_drives(
    ngx_http_tce_admin_main_conf_t *amcf);

/* with tce_redis: the holder writes the records and the queued policies
 * to Redis when they changed (the controlling worker's tick) */
void ngx_http_tce_admin_deploy_fleet_flush(
    ngx_http_tce_admin_main_conf_t *amcf, ngx_log_t *log);

/* with tce_redis: queues d's policy for the fleet (zone mutex held) */
void ngx_http_tce_admin_deploy_fleet_policy_locked(
    ngx_http_tce_admin_main_conf_t *amcf, ngx_http_tce_admin_deploy_t *d);

/*
 * The records as the deploys file holds them (JSON, malloc()ed: free()
 * it), *len set.  NULL: no memory, logged.
 */
char *ngx_http_tce_admin_deploy_dump(ngx_http_tce_admin_main_conf_t *amcf,
    size_t *len, ngx_log_t *log);

/*
 * The cumulative counters of a deploy's canary and prod (this node's
 * metric series of its cluster) and of the API diff, into the three
 * outputs; g is room for NGX_HTTP_TCE_ADMIN_DEPLOY_GROUPS groups.
 * Returns NGX_OK.
 */
ngx_int_t ngx_http_tce_admin_deploy_counters(ngx_http_tce_admin_deploy_t *d,
    ngx_http_tce_metrics_group_copy_t *g, ngx_tce_judge_sample_t *canary,
    ngx_tce_judge_sample_t *prod, ngx_tce_judge_diff_t *diff);

/*
 * With tce_redis, on a node that does not drive: sends this node's
 * requests of record i's step since it first saw that step to Redis
 * (<prefix>deploy_counters:<id>:<node>, 3 s).  Not waited for.
 */
void ngx_http_tce_admin_deploy_fleet_share(
    ngx_http_tce_admin_main_conf_t *amcf, ngx_uint_t i,
    ngx_http_tce_metrics_group_copy_t *g, ngx_log_t *log);

/* with tce_redis, on the holder: asks for the other nodes' counters of
 * every running deploy (kept in this worker for the next look) */
void ngx_http_tce_admin_deploy_fleet_gather(
    ngx_http_tce_admin_main_conf_t *amcf, ngx_log_t *log);

/* adds the other nodes' requests of d's step, when fresh, to a look's */
void ngx_http_tce_admin_deploy_fleet_add(ngx_http_tce_admin_deploy_t *d,
    ngx_tce_judge_sample_t *canary, ngx_tce_judge_sample_t *prod,
    ngx_tce_judge_diff_t *diff);

/* the status's "deploy_lease" object; NULL without tce_redis or memory */
json_t *ngx_http_tce_admin_deploy_lease_json(
    ngx_http_tce_admin_main_conf_t *amcf);

/* asks for the deploys file to be written (thread pool) */
void ngx_http_tce_admin_deploy_persist(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_log_t *log);

/*
 * Appends a line of the controller's own (no request) to the audit log
 * of the first tce_admin location that has one, on the thread pool.
 * line's reference is taken.  Nothing when there is no audit log.
 */
void ngx_http_tce_admin_audit_system(ngx_http_tce_admin_main_conf_t *amcf,
    json_t *line, ngx_log_t *log);

/* GET and PUT of an env's instance set (ngx_http_tce_admin_desired.c) */
ngx_int_t ngx_http_tce_admin_desired(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, u_char *body, size_t len);


/* the writers' turn without waiting (the removal timer): 1 when taken;
 * given back with ngx_http_tce_admin_turn_give (store.c) */
ngx_uint_t ngx_http_tce_admin_turn_try(ngx_http_tce_admin_main_conf_t *amcf,
    ngx_log_t *log);
void ngx_http_tce_admin_turn_release(ngx_http_tce_admin_main_conf_t *amcf);

/* starts the removal timer of every worker (ngx_http_tce_admin_drain.c) */
ngx_int_t ngx_http_tce_admin_drain_init_process(ngx_cycle_t *cycle);

/* the state file's fingerprint now (exists 0 when absent) */
ngx_int_t ngx_http_tce_admin_fp(ngx_str_t *path, ngx_http_tce_admin_fp_t *fp);

/* the same for a NUL-terminated path; any thread */
ngx_int_t ngx_http_tce_admin_fp_path(const char *path,
    ngx_http_tce_admin_fp_t *fp);

/* 1 when two fingerprints name the same file contents */
ngx_uint_t ngx_http_tce_admin_fp_equal(ngx_http_tce_admin_fp_t *a,
    ngx_http_tce_admin_fp_t *b);


extern ngx_module_t  ngx_http_tce_admin_api_module;


#endif /* _NGX_HTTP_TCE_ADMIN_API_H_INCLUDED_ */
