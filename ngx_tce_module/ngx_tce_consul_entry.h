/*
 * One entry of a /v1/health/service answer, read for the values the
 * suite routes by (pure C, no nginx): see ngx_tce_consul_entry_read().
 */

#ifndef _NGX_TCE_CONSUL_ENTRY_H_INCLUDED_
#define _NGX_TCE_CONSUL_ENTRY_H_INCLUDED_


#include "ngx_tce_json.h"
#include "ngx_tce_consul_parse.h"


/* an entry's state, from its checks (api.HealthChecks.AggregatedStatus) */
#define NGX_TCE_CONSUL_PASSING   0
#define NGX_TCE_CONSUL_WARNING   1
#define NGX_TCE_CONSUL_EXCLUDED  2


/* what an entry holds that routing reads; the rest is skipped */
typedef struct {
    unsigned                  entry;        /* types (NGX_TCE_JSON_*) */
    unsigned                  node;
    unsigned                  service;
    unsigned                  weights;
    unsigned                  meta;
    unsigned                  checks;

    ngx_tce_json_value_t      node_name;    /* Node.Node */
    ngx_tce_json_value_t      node_address; /* Node.Address */

    ngx_tce_json_value_t      id;           /* Service.* */
    ngx_tce_json_value_t      name;
    ngx_tce_json_value_t      peer;
    ngx_tce_json_value_t      partition;
    ngx_tce_json_value_t      ns;
    ngx_tce_json_value_t      port;
    ngx_tce_json_value_t      address;

    ngx_tce_json_value_t      passing;      /* Service.Weights.* */
    ngx_tce_json_value_t      warning;

    ngx_tce_json_value_t      cluster;      /* Service.Meta.* */
    ngx_tce_json_value_t      env;
    ngx_tce_json_value_t      version;

    int                       state;        /* NGX_TCE_CONSUL_PASSING.. */
    char                      check_err[NGX_TCE_CONSUL_ERR_LEN];
} ngx_tce_consul_fields_t;


/*
 * Reads the entry [s, s + len) into *f.  The whole entry is checked
 * against the JSON grammar; the objects read (the entry, Node,
 * Service, Weights, Meta, each check) may not repeat a key read; every
 * other value (check Output, tags, other Meta, ...) is only checked
 * and skipped, and may hold anything, NULs, numbers of any size and
 * repeated keys included.  The checks are judged as they are read:
 * f->state, and the first bad check in f->check_err ("" if none).
 * Strings are decoded into scratch, which must hold len + 1 bytes.
 *
 * Returns 0; -1 with reason when the entry is not JSON or repeats a
 * key read.  A used value of the wrong type is not an error here: its
 * type is in *f for the caller to judge.
 */
int ngx_tce_consul_entry_read(const char *s, size_t len, char *scratch,
    ngx_tce_consul_fields_t *f, char *reason, size_t rlen);


#endif /* _NGX_TCE_CONSUL_ENTRY_H_INCLUDED_ */
