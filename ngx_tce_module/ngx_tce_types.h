/*
 * Types shared by every part of the suite: the registry's data model
 * (docs/architecture.md, "Data model").  No nginx header here: the pure C
 * parts (state file, Consul payloads, schedule) and their unit tests
 * use it directly.
 */

#ifndef _NGX_TCE_TYPES_H_INCLUDED_
#define _NGX_TCE_TYPES_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>


#define NGX_TCE_SERVICE_LEN     128     /* "product.subsystem.module" */
#define NGX_TCE_CLUSTER_LEN     64
#define NGX_TCE_ID_LEN          128
#define NGX_TCE_VERSION_LEN     64
#define NGX_TCE_ADDR_LEN        64      /* "1.2.3.4:80", "[::1]:80" */

#define NGX_TCE_WEIGHT_MIN      1
#define NGX_TCE_WEIGHT_MAX      1000

#define NGX_TCE_ENV_PROD        0
#define NGX_TCE_ENV_CANARY      1
#define NGX_TCE_NENVS           2

#define NGX_TCE_STATE_UP        0
#define NGX_TCE_STATE_DRAINING  1
#define NGX_TCE_STATE_DOWN      2

#define NGX_TCE_DEFAULT_CLUSTER "default"


/*
 * One instance as discovery (state file, Consul) reports it, plus the
 * operator's overrides, kept apart so that a discovery update does not
 * wipe them.  Plain fixed-size data: it is copied by memcpy into the
 * shared zone and into each worker's read view.
 */
typedef struct {
    char                      id[NGX_TCE_ID_LEN];
    char                      cluster[NGX_TCE_CLUSTER_LEN];
    char                      version[NGX_TCE_VERSION_LEN];
    char                      addr[NGX_TCE_ADDR_LEN];  /* canonical text */

    union {
        struct sockaddr       sa;
        struct sockaddr_in    sin;
        struct sockaddr_in6   sin6;
    }                         sockaddr;
    socklen_t                 socklen;

    uint16_t                  weight;          /* 1..1000 */
    uint8_t                   env;             /* NGX_TCE_ENV_* */
    uint8_t                   state;           /* NGX_TCE_STATE_* */

    /* operator overrides: 0 means "not set" */
    uint16_t                  op_weight;
    uint8_t                   op_drain;
    uint8_t                   op_down;

    /*
     * Set by the zone, not by discovery: when (unix ms) the instance
     * became routable beside others of its group (added, or back from
     * down or draining), for slow_start; 0: routable from the start
     * (ngx_tce_sched_ramp.h).
     */
    uint64_t                  since_ms;

    /*
     * a removal asked through the admin API, Unix times in ms (0: none):
     * the instance drains from rm_since and leaves the set when its
     * requests in flight have ended, at the latest at rm_deadline
     */
    uint64_t                  rm_since;
    uint64_t                  rm_deadline;
} ngx_tce_instance_t;


#endif /* _NGX_TCE_TYPES_H_INCLUDED_ */
