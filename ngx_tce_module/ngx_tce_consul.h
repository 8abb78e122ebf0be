/*
 * Consul discovery inside nginx: the ngx_tce_consul_module's
 * configuration, the watcher run by one elected worker, and the
 * snapshot of the last known good sets.
 *
 *   tce_consul <url> [<url> ...] [token=<t> | token_file=<path>]
 *              [dc=<dc>] [wait=60s] [timeout=<t>] [ca=<file>]
 *              [consistency=default | stale | consistent]
 *              [token_over_http=on] [resync=5m];
 *   tce_consul_services tag=<tag>;
 *   tce_consul_snapshot <path>;
 *   tce_consul_allow_empty on | off;
 *
 * tce_consul_allow_empty is off by default: a 200 [] for a service
 * that has instances keeps the last good set (counted as an empty
 * answer in the status), because an ACL or agent mistake must not
 * empty production.  The snapshot defaults to "<tce_state>.consul"
 * next to the tce_state file (never the file itself: the operator's
 * files are the operator's), none without tce_state (a warning); it is
 * loaded at start into the watched services Consul has not fed yet, so
 * nginx serves when Consul is unreachable; the workers' user must be
 * able to write its directory (checked at start).
 */

#ifndef _NGX_TCE_CONSUL_H_INCLUDED_
#define _NGX_TCE_CONSUL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_tce.h"


#define NGX_TCE_CONSUL_TICK           500     /* ms, election timer */
#define NGX_TCE_CONSUL_STALE          1500    /* ms, owner presumed gone */
#define NGX_TCE_CONSUL_RATE           50      /* ms between two queries */
#define NGX_TCE_CONSUL_BACKOFF_BASE   250     /* ms */
#define NGX_TCE_CONSUL_BACKOFF_CAP    15000   /* ms */
#define NGX_TCE_CONSUL_SNAPSHOT_DELAY 1000    /* ms, writes coalesced */
#define NGX_TCE_CONSUL_MAX_SERVICES   4096    /* catalog mode */
#define NGX_TCE_CONSUL_FAILBACK       5000    /* ms, first URL probed */
#define NGX_TCE_CONSUL_DIRECT_MAX     8       /* one blocking query each */
#define NGX_TCE_CONSUL_FETCHES        4       /* change detection */
/*
 * Connections to Consul per nginx instance, at most: DIRECT_MAX
 * blocking queries (or the 2 detectors and FETCHES fetches) and the
 * probe of the first URL; libcurl enforces it too.
 */
#define NGX_TCE_CONSUL_MAX_CONNS      10
#define NGX_TCE_CONSUL_RESYNC         300000  /* ms, default resync= */


typedef struct ngx_tce_consul_ctx_s  ngx_tce_consul_ctx_t;


typedef struct {
    ngx_array_t                *urls;        /* NUL-terminated char * */
    ngx_str_t                   token;       /* NUL-terminated or empty */
    ngx_str_t                   dc;
    ngx_str_t                   ca;
    ngx_msec_t                  wait;
    ngx_msec_t                  timeout;
    ngx_uint_t                  consistency; /* NGX_TCE_CONSUL_READ_* */
    ngx_flag_t                  token_over_http;
    ngx_msec_t                  resync;      /* change detection */
    ngx_str_t                   tag;         /* catalog mode */
    ngx_flag_t                  catalog;
    ngx_str_t                   snapshot;    /* NUL-terminated or empty */
    struct ngx_tce_persist_s   *persist;     /* the snapshot's writer */
    ngx_flag_t                  allow_empty;
    ngx_tce_zone_t             *zone;
    ngx_tce_main_conf_t        *tmcf;

    /* this worker's watcher (ngx_tce_consul_watch.c), NULL if none */
    ngx_tce_consul_ctx_t       *ctx;
} ngx_tce_consul_main_conf_t;


/*
 * Starts the election timer of this worker (watching starts when it
 * wins).  Returns NGX_OK or NGX_ERROR.
 */
ngx_int_t ngx_tce_consul_watch_init(ngx_cycle_t *cycle,
    ngx_tce_consul_main_conf_t *cmcf);

/*
 * Stops watching at once: closes every Consul connection, frees the
 * watcher and gives up ownership.  Safe when nothing runs.
 */
void ngx_tce_consul_watch_exit(ngx_tce_consul_main_conf_t *cmcf);

/*
 * Fills the zone from the snapshot for the services discovery owns
 * that are still empty (a fresh start: nginx serves while Consul is
 * unreachable).  Errors are logged, never fatal.
 */
void ngx_tce_consul_snapshot_load(ngx_tce_consul_main_conf_t *cmcf,
    ngx_log_t *log);

/*
 * Asks for the Consul-owned services to be written to the snapshot:
 * encoded and written atomically on nginx's thread pool, never on the
 * event loop (in place only in an exiting worker); a write already in
 * flight is followed by one more with the latest content.  Outcomes
 * are logged and shown in tce_status and the metrics.  Called at most
 * once per NGX_TCE_CONSUL_SNAPSHOT_DELAY.
 */
void ngx_tce_consul_snapshot_write(ngx_tce_consul_main_conf_t *cmcf,
    ngx_log_t *log);

/* sets the snapshot's callbacks (configuration time) */
void ngx_tce_consul_snapshot_init(ngx_tce_consul_main_conf_t *cmcf);

/* 1 when the service is watched by name (tce_service) */
ngx_uint_t ngx_tce_consul_named(ngx_tce_consul_main_conf_t *cmcf,
    u_char *name, size_t len);


extern ngx_module_t  ngx_tce_consul_module;


#endif /* _NGX_TCE_CONSUL_H_INCLUDED_ */
