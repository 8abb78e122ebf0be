/*
 * Progressive deploys (pure C, no nginx): the record of a deploy as the
 * tce_admin zone holds it, the checks of a POST .../deploys body and
 * the JSON of a record (the API's answers and the deploys file).
 *
 *   ngx_http_tce_admin_deploy_input.c  this header's functions
 *   ngx_http_tce_admin_deploy.c        the routes
 *   ngx_http_tce_admin_deploy_ctl.c    the controller: election, looks
 *                                      at each step, the deploys file
 */

#ifndef _NGX_HTTP_TCE_ADMIN_DEPLOY_H_INCLUDED_
#define _NGX_HTTP_TCE_ADMIN_DEPLOY_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ngx_tce_types.h"
#include "ngx_tce_judge.h"
#include "ngx_http_tce_admin_input.h"


#define NGX_HTTP_TCE_ADMIN_DEPLOYS          16   /* records, all clusters */
#define NGX_HTTP_TCE_ADMIN_DEPLOY_STEPS     16
#define NGX_HTTP_TCE_ADMIN_DEPLOY_TICK      250  /* ms between looks */
#define NGX_HTTP_TCE_ADMIN_DEPLOY_QUICK     50   /* ms, the error clock's */
#define NGX_HTTP_TCE_ADMIN_DEPLOY_NAME_LEN  64
#define NGX_HTTP_TCE_ADMIN_DEPLOY_WHY_LEN   256

/* states; FREE: an unused record */
#define NGX_HTTP_TCE_ADMIN_DEPLOY_FREE         0
#define NGX_HTTP_TCE_ADMIN_DEPLOY_RUNNING      1
#define NGX_HTTP_TCE_ADMIN_DEPLOY_PAUSED       2
#define NGX_HTTP_TCE_ADMIN_DEPLOY_PROMOTED     3
#define NGX_HTTP_TCE_ADMIN_DEPLOY_ROLLED_BACK  4
#define NGX_HTTP_TCE_ADMIN_DEPLOY_FAILED       5

/* a step's verdict */
#define NGX_HTTP_TCE_ADMIN_STEP_PENDING       0
#define NGX_HTTP_TCE_ADMIN_STEP_RUNNING       1
#define NGX_HTTP_TCE_ADMIN_STEP_PASSED        2
#define NGX_HTTP_TCE_ADMIN_STEP_FAILED        3
#define NGX_HTTP_TCE_ADMIN_STEP_INCONCLUSIVE  4   /* too few, waiting */
#define NGX_HTTP_TCE_ADMIN_STEP_STOPPED       5   /* by an operator */


typedef struct {
    uint32_t                  nsteps;
    uint32_t                  steps_bp[NGX_HTTP_TCE_ADMIN_DEPLOY_STEPS];
    uint64_t                  step_ms;
    uint64_t                  min_requests;
    uint64_t                  inconclusive_ms;  /* a step waits this long
                                                   for min_requests */
    ngx_tce_judge_gates_t     gates;
} ngx_http_tce_admin_deploy_conf_t;


typedef struct {
    uint32_t                  weight_bp;
    uint32_t                  verdict;
    uint64_t                  started_ms;      /* Unix ms */
    uint64_t                  ended_ms;        /* 0: not ended */
    uint32_t                  figures;         /* fig set */
    ngx_tce_judge_figures_t   fig;             /* the last look's */
} ngx_http_tce_admin_deploy_step_t;


typedef struct {
    uint64_t                  id;              /* 0: free */
    uint32_t                  state;
    uint32_t                  step;            /* the current step */
    uint64_t                  created_ms;
    uint64_t                  updated_ms;
    uint64_t                  rev;             /* bumped by each change */

    char                      service[NGX_TCE_SERVICE_LEN];
    char                      cluster[NGX_TCE_CLUSTER_LEN];
    char                      principal[NGX_HTTP_TCE_ADMIN_DEPLOY_NAME_LEN];

    ngx_http_tce_admin_deploy_conf_t  conf;

    /* the canary policy it set last; owns: no other write since */
    uint32_t                  weight_bp;
    uint32_t                  fallback;
    uint64_t                  epoch;
    uint32_t                  owns;

    char                      gate[32];        /* that failed, "" none */
    char                      why[NGX_HTTP_TCE_ADMIN_DEPLOY_WHY_LEN];

    ngx_http_tce_admin_deploy_step_t  steps[NGX_HTTP_TCE_ADMIN_DEPLOY_STEPS];

    /* the controller's: the counters when the step began (zone only) */
    uint32_t                  base_valid;
    ngx_tce_judge_sample_t    base_canary;
    ngx_tce_judge_sample_t    base_prod;
    ngx_tce_judge_diff_t      base_diff;
    uint64_t                  err_looked;      /* the error clock's last
                                                  5xx judged (window) */
} ngx_http_tce_admin_deploy_t;


/*
 * Parses a POST .../deploys body:
 *
 *   {"steps": [1, 5, 25, 50, 100], "step_seconds": 60,
 *    "min_requests": 200, "inconclusive_seconds": 180,
 *    "gates": {"alpha": 0.001, "max_error_ratio": 0.05,
 *              "max_error_increase": 0.01, "max_p99_ms": 0,
 *              "max_p99_ratio": 1.5, "min_diff_match_ratio": 0.99}}
 *
 * every key optional (the defaults shown; inconclusive_seconds is
 * 3 step_seconds), no other key.  Steps: 1..16 percentages, up to two
 * decimals, strictly increasing, above 0, at most 100.  Returns 0 and
 * fills *conf, or -1 with *err ("invalid_json", "unknown_field",
 * "wrong_type", "out_of_range").
 */
int ngx_http_tce_admin_deploy_parse(const char *buf, size_t len,
    ngx_http_tce_admin_deploy_conf_t *conf, ngx_http_tce_admin_err_t *err);

/* the name of a state ("running", ...) and of a step's verdict */
const char *ngx_http_tce_admin_deploy_state_name(uint32_t state);
const char *ngx_http_tce_admin_deploy_verdict_name(uint32_t verdict);

/* 1 while a deploy drives its cluster (running or paused) */
int ngx_http_tce_admin_deploy_active(const ngx_http_tce_admin_deploy_t *d);

/* the JSON of a record (the API's and the deploys file's); NULL: memory */
json_t *ngx_http_tce_admin_deploy_json(const ngx_http_tce_admin_deploy_t *d);

/*
 * Reads a record back from the deploys file's JSON (as written by
 * ngx_http_tce_admin_deploy_json).  Returns 0, or -1 with err set and
 * *d unspecified.
 */
int ngx_http_tce_admin_deploy_decode(json_t *j, ngx_http_tce_admin_deploy_t *d,
    char *err, size_t errlen);


#endif /* _NGX_HTTP_TCE_ADMIN_DEPLOY_H_INCLUDED_ */
