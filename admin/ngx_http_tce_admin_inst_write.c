/*
 * The admin API's instance writes, as changes of the admin store
 * (ngx_http_tce_admin_store.h: the writers' turn, If-Match, the state
 * file edited and written on the thread pool, the zone, the audit
 * line, the answer):
 *
 *   PATCH  v1/services/<psm>/clusters/<cluster>/instances/<id>
 *   DELETE ...instances/<id>[?timeout=30s]: drains, then removes (202)
 *   POST   ...instances: adds one (201), or keeps it (200)
 *
 * On the event loop, prepare reads the instance from the zone and
 * refuses what the zone alone shows wrong (unknown id, an instance of
 * Consul added or removed here, a PATCH of one being removed); on a
 * thread, edit changes the state file (pure C); apply gives the zone
 * the service's new set, or for a service Consul feeds its overrides.
 * With tce_redis, POST and DELETE edit the service's set in the fleet
 * store instead (ngx_http_tce_admin_fleet_set.c), the same edit.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_admin_edit.h"
#include "ngx_http_tce_admin_fleet_set.h"
#include "ngx_http_tce_admin_inst.h"
#include "ngx_http_tce_admin_inst_edit.h"
#include "ngx_http_tce_admin_inst_input.h"
#include "ngx_http_tce_admin_store.h"


typedef struct {
    ngx_http_tce_admin_ctx_t        *ctx;
    ngx_http_tce_admin_change_t      change;
    ngx_tce_state_t                  state;
    ngx_tce_state_service_t         *ss;       /* in state, once edited */
    ngx_uint_t                       method;   /* NGX_HTTP_PATCH ... */
    ngx_uint_t                       consul_fed;
    ngx_uint_t                       renew;    /* DELETE with ?timeout */
    ngx_uint_t                       status;   /* the answer's */
    ngx_tce_instance_t               inst;     /* the zone's; POST: asked */
    ngx_http_tce_admin_patch_req_t   req;
    uint64_t                         now;
    uint64_t                         timeout;
    char                             id[NGX_TCE_ID_LEN];
} ngx_http_tce_admin_inst_run_t;


static ngx_int_t ngx_http_tce_admin_inst_prepare(ngx_http_request_t *r,
    void *data);
static int ngx_http_tce_admin_inst_edit(ngx_tce_state_t *st, void *data,
    ngx_uint_t *status, ngx_http_tce_admin_err_t *err);
static int ngx_http_tce_admin_inst_edit_patch(
    ngx_http_tce_admin_inst_run_t *ir, ngx_tce_state_t *st,
    ngx_uint_t *status, ngx_http_tce_admin_err_t *err);
static int ngx_http_tce_admin_inst_edit_post(
    ngx_http_tce_admin_inst_run_t *ir, ngx_tce_state_t *st,
    ngx_uint_t *status, ngx_http_tce_admin_err_t *err);
static ngx_tce_instance_t *ngx_http_tce_admin_inst_edited(
    ngx_http_tce_admin_inst_run_t *ir, ngx_tce_state_t *st,
    ngx_uint_t *status, ngx_http_tce_admin_err_t *err);
static ngx_int_t ngx_http_tce_admin_inst_apply(ngx_http_request_t *r,
    void *data);
static ngx_int_t ngx_http_tce_admin_inst_answer(ngx_http_request_t *r,
    void *data);
static ngx_int_t ngx_http_tce_admin_inst_location(ngx_http_request_t *r,
    const char *id);


static int
ngx_http_tce_admin_inst_no_memory(ngx_uint_t *status,
    ngx_http_tce_admin_err_t *err)
{
    *status = NGX_HTTP_INTERNAL_SERVER_ERROR;
    err->code = "store_error";
    snprintf(err->text, sizeof(err->text),
             "no memory to change the state file: nothing changed");
    return -1;
}


/*
 * Runs a PATCH (req), DELETE (timeout) or POST (inst, the instance
 * asked for) of the route's instance id (NULL for a POST).
 */
ngx_int_t
ngx_http_tce_admin_inst_write(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, const char *id,
    const ngx_http_tce_admin_patch_req_t *req, uint64_t timeout,
    const ngx_tce_instance_t *inst)
{
    ngx_tce_main_conf_t            *tmcf;
    ngx_http_tce_admin_inst_run_t  *ir;

    ir = ngx_pcalloc(r->pool, sizeof(ngx_http_tce_admin_inst_run_t));
    if (ir == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ir->ctx = ctx;
    ir->method = r->method;
    ir->timeout = timeout;
    ir->renew = (r->args.len != 0);

    if (req) {
        ir->req = *req;
    }

    if (inst) {
        ir->inst = *inst;
        ngx_memcpy(ir->id, inst->id, sizeof(ir->id));

    } else {
        (void) ngx_cpystrn((u_char *) ir->id, (u_char *) id, sizeof(ir->id));
    }

    ir->change.prepare = ngx_http_tce_admin_inst_prepare;
    ir->change.edit = ngx_http_tce_admin_inst_edit;
    ir->change.apply = ngx_http_tce_admin_inst_apply;
    ir->change.answer = ngx_http_tce_admin_inst_answer;
    ir->change.data = ir;
    ir->change.state = &ir->state;
    ir->change.status = (r->method == NGX_HTTP_DELETE) ? NGX_HTTP_ACCEPTED
                                                       : 0;

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    /* with tce_redis the fleet keeps the set (a PATCH went there before) */
    if (tmcf->fleet) {
        return ngx_http_tce_admin_fleet_change(r, ctx, &ir->change);
    }

    return ngx_http_tce_admin_store_change(r, ctx, &ir->change);
}


/* event loop, the turn held: what the zone says of the instance */
static ngx_int_t
ngx_http_tce_admin_inst_prepare(ngx_http_request_t *r, void *data)
{
    ngx_http_tce_admin_inst_run_t *ir = data;

    u_char     text[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    ngx_int_t  rc;

    ir->consul_fed = ngx_http_tce_admin_consul_fed(ir->ctx->svc);
    ir->now = ngx_http_tce_admin_now_ms();

    if (ir->method == NGX_HTTP_POST) {
        if (ir->consul_fed) {
            return ngx_http_tce_admin_consul_refuse(r, ir->ctx);
        }

        return NGX_OK;
    }

    rc = ngx_http_tce_admin_inst_find(r, ir->ctx, ir->id, &ir->inst);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ir->method == NGX_HTTP_DELETE) {
        if (ir->consul_fed) {
            return ngx_http_tce_admin_consul_refuse(r, ir->ctx);
        }

        return NGX_OK;
    }

    if (ir->inst.rm_deadline && ir->req.drain == 0) {
        ngx_snprintf(text, sizeof(text) - 1,
                     "instance \"%s\" is being removed (DELETE): POST it "
                     "again to keep it%Z", ir->id);
        return ngx_http_tce_admin_refuse(r, NGX_HTTP_CONFLICT,
                                        "being_removed", (char *) text);
    }

    return NGX_OK;
}


/* a thread: the state file's entry of the instance (pure C) */
static int
ngx_http_tce_admin_inst_edit(ngx_tce_state_t *st, void *data,
    ngx_uint_t *status, ngx_http_tce_admin_err_t *err)
{
    ngx_http_tce_admin_inst_run_t *ir = data;

    ngx_tce_instance_t  *fi;

    if (ir->method == NGX_HTTP_PATCH) {
        return ngx_http_tce_admin_inst_edit_patch(ir, st, status, err);
    }

    if (ir->method == NGX_HTTP_POST) {
        return ngx_http_tce_admin_inst_edit_post(ir, st, status, err);
    }

    /* DELETE: again, a new deadline when one is given, the start kept */
    fi = ngx_http_tce_admin_inst_edited(ir, st, status, err);
    if (fi == NULL) {
        return -1;
    }

    if (fi->rm_deadline == 0) {
        fi->rm_since = ir->now;
    }

    if (fi->rm_deadline == 0 || ir->renew) {
        fi->rm_deadline = ir->now + ir->timeout;

        if (fi->rm_deadline == 0) {
            fi->rm_deadline = 1;
        }
    }

    return 0;
}


/* the state file's instance of a state-fed service, or a 409 */
static ngx_tce_instance_t *
ngx_http_tce_admin_inst_edited(ngx_http_tce_admin_inst_run_t *ir,
    ngx_tce_state_t *st, ngx_uint_t *status, ngx_http_tce_admin_err_t *err)
{
    ngx_tce_instance_t  *fi;

    ir->ss = ngx_http_tce_admin_edit_service(st,
                                             (char *) ir->ctx->svc->name,
                                             ir->ctx->svc->name_len);
    fi = ir->ss ? ngx_http_tce_admin_edit_find(ir->ss, ir->id) : NULL;

    if (fi == NULL) {
        *status = NGX_HTTP_CONFLICT;
        err->code = "not_in_state_file";
        snprintf(err->text, sizeof(err->text),
                 "instance \"%.64s\" of service \"%.64s\" is not in the state "
                 "file, which keeps the API's changes", ir->id,
                 ir->ctx->svc->name);
    }

    return fi;
}


static int
ngx_http_tce_admin_inst_edit_patch(ngx_http_tce_admin_inst_run_t *ir,
    ngx_tce_state_t *st, ngx_uint_t *status, ngx_http_tce_admin_err_t *err)
{
    ngx_tce_instance_t  *fi, carrier;

    if (!ir->consul_fed) {
        fi = ngx_http_tce_admin_inst_edited(ir, st, status, err);
        if (fi == NULL) {
            return -1;
        }

    } else {
        ir->ss = ngx_http_tce_admin_edit_service_add(st,
                                               (char *) ir->ctx->svc->name,
                                               ir->ctx->svc->name_len);
        if (ir->ss == NULL) {
            return ngx_http_tce_admin_inst_no_memory(status, err);
        }

        fi = ngx_http_tce_admin_edit_find(ir->ss, ir->id);

        if (fi == NULL) {
            /* an entry that carries the override: Consul's address */
            carrier = ir->inst;
            carrier.op_weight = 0;
            carrier.op_drain = 0;
            carrier.op_down = 0;
            carrier.state = NGX_TCE_STATE_UP;
            carrier.rm_since = 0;
            carrier.rm_deadline = 0;

            if (ngx_http_tce_admin_edit_add(ir->ss, &carrier) != 0) {
                return ngx_http_tce_admin_inst_no_memory(status, err);
            }

            fi = ngx_http_tce_admin_edit_find(ir->ss, ir->id);
        }
    }

    if (ir->req.weight >= 0) {
        fi->op_weight = (uint16_t) ir->req.weight;
    }

    if (ir->req.drain >= 0) {
        fi->op_drain = (uint8_t) ir->req.drain;
    }

    if (ir->req.down >= 0) {
        fi->op_down = (uint8_t) ir->req.down;
    }

    /* a Consul instance's entry left without override goes */
    if (ir->consul_fed && !fi->op_weight && !fi->op_drain && !fi->op_down) {
        (void) ngx_http_tce_admin_edit_remove(ir->ss, ir->id);
    }

    return 0;
}


static int
ngx_http_tce_admin_inst_edit_post(ngx_http_tce_admin_inst_run_t *ir,
    ngx_tce_state_t *st, ngx_uint_t *status, ngx_http_tce_admin_err_t *err)
{
    ngx_tce_instance_t  *fi, *in;

    in = &ir->inst;

    ir->ss = ngx_http_tce_admin_edit_service_add(st,
                                               (char *) ir->ctx->svc->name,
                                               ir->ctx->svc->name_len);
    if (ir->ss == NULL) {
        return ngx_http_tce_admin_inst_no_memory(status, err);
    }

    fi = ngx_http_tce_admin_edit_find(ir->ss, in->id);
    ir->status = NGX_HTTP_CREATED;
    ir->change.status = NGX_HTTP_CREATED;

    if (fi == NULL) {
        if (ngx_http_tce_admin_edit_add(ir->ss, in) != 0) {
            return ngx_http_tce_admin_inst_no_memory(status, err);
        }

        return 0;
    }

    if (fi->env != in->env
        || strcmp(fi->cluster, in->cluster) != 0
        || (!fi->rm_deadline
            && (strcmp(fi->addr, in->addr) != 0
                || fi->weight != in->weight
                || strcmp(fi->version, in->version) != 0)))
    {
        *status = NGX_HTTP_CONFLICT;
        err->code = "instance_exists";
        /* ngx_snprintf: pure, and it cuts what does not fit */
        (void) ngx_snprintf((u_char *) err->text, sizeof(err->text) - 1,
                            "service \"%s\" has an instance \"%s\" already "
                            "(cluster \"%s\", env %s, %s): PATCH or "
                            "DELETE it%Z", ir->ctx->svc->name, in->id,
                            fi->cluster, ngx_tce_env_name(fi->env),
                            fi->addr);
        err->text[sizeof(err->text) - 1] = '\0';
        return -1;
    }

    /* the same again, or one being removed: kept, as asked now */
    memcpy(fi->addr, in->addr, sizeof(in->addr));
    fi->sockaddr = in->sockaddr;
    fi->socklen = in->socklen;
    fi->weight = in->weight;
    memcpy(fi->version, in->version, sizeof(in->version));
    fi->rm_since = 0;
    fi->rm_deadline = 0;
    ir->status = NGX_HTTP_OK;
    ir->change.status = NGX_HTTP_OK;

    return 0;
}


/* event loop, the file written: the zone follows it */
static ngx_int_t
ngx_http_tce_admin_inst_apply(ngx_http_request_t *r, void *data)
{
    ngx_http_tce_admin_inst_run_t *ir = data;

    ngx_int_t                 rc;
    ngx_tce_main_conf_t      *tmcf;
    ngx_tce_state_service_t  *ss;

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    ss = ir->ss;

    if (ss == NULL) {
        rc = NGX_ERROR;

    } else if (ir->consul_fed) {
        rc = ngx_tce_override_service_set(tmcf->zone, ir->ctx->svc, ss,
                                          r->connection->log);

    } else {
        rc = ngx_tce_zone_set(tmcf->zone, ir->ctx->svc, ss->instances,
                              ss->ninstances, NGX_TCE_SOURCE_STATE,
                              r->connection->log);
    }

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "tce admin: %V instance \"%s\" of \"%s\" cluster \"%V\" "
                  "by \"%V\"%s", &r->method_name, ir->id,
                  ir->ctx->svc->name, &ir->ctx->cluster,
                  &ir->ctx->principal,
                  ir->method == NGX_HTTP_DELETE ? ": draining" : "");

    return NGX_OK;
}


static ngx_int_t
ngx_http_tce_admin_inst_answer(ngx_http_request_t *r, void *data)
{
    ngx_http_tce_admin_inst_run_t *ir = data;

    ngx_int_t            rc;
    ngx_tce_instance_t   inst;

    if (ir->method == NGX_HTTP_POST
        && ngx_http_tce_admin_inst_location(r, ir->id) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_tce_admin_inst_find(r, ir->ctx, ir->id, &inst);
    if (rc != NGX_OK) {
        return rc == NGX_DONE ? NGX_OK : rc;
    }

    if (ir->method == NGX_HTTP_POST) {
        rc = ngx_http_tce_admin_inst_show(r, ir->ctx, &inst, ir->status,
                                          ir->status == NGX_HTTP_CREATED
                                          ? "added" : "kept");

    } else if (ir->method == NGX_HTTP_DELETE) {
        rc = ngx_http_tce_admin_inst_show(r, ir->ctx, &inst,
                                          NGX_HTTP_ACCEPTED, "draining");

    } else {
        rc = ngx_http_tce_admin_inst_show(r, ir->ctx, &inst, NGX_HTTP_OK,
                                          NULL);
    }

    return rc;
}


/* Location: the collection's URI and the id */
static ngx_int_t
ngx_http_tce_admin_inst_location(ngx_http_request_t *r, const char *id)
{
    ngx_str_t         loc;
    ngx_table_elt_t  *h;

    loc.len = r->uri.len + 1 + ngx_strlen(id);
    loc.data = ngx_pnalloc(r->pool, loc.len);
    h = ngx_list_push(&r->headers_out.headers);

    if (loc.data == NULL || h == NULL) {
        return NGX_ERROR;
    }

    loc.len = ngx_sprintf(loc.data, "%V%s%s", &r->uri,
                          r->uri.data[r->uri.len - 1] == '/' ? "" : "/", id)
              - loc.data;

    h->hash = 1;
    ngx_str_set(&h->key, "Location");
    h->value = loc;

    return NGX_OK;
}
