/*
 * The admin API's instance overrides with tce_redis: a PATCH of
 * .../instances/<id> (weight, drain, down; null or false clears) is a
 * fleet write (ngx_http_tce_admin_fleet_send): one Lua script checks
 * If-Match against the service's fleet revision (the same revision as
 * its canary policies), merges the request into the stored override,
 * stores it in <prefix>override (or deletes it when nothing is left
 * set), bumps the revision and the fleet version and publishes.  The
 * node that took the write lays it over its zone at once, the others
 * through their syncer; the state file is not written.
 *
 * What the zone alone shows wrong is refused before Redis is asked: an
 * unknown instance (404), a PATCH that does not drain an instance being
 * removed (409).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_admin_api.h"
#include "ngx_http_tce_admin_inst.h"
#include "ngx_tce_redis.h"


/*
 * KEYS: override hash, rev hash, version.  ARGV: "<service>/<id>",
 * service, If-Match ("" for none), weight, drain, down (-1: keep, 0:
 * clear), channel.  Returns as the canary script does; the value is ""
 * when the instance is left without override.
 */
static const char  ngx_http_tce_admin_fleet_inst_script[] =
    "local rev = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')\n"
    "if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= rev then\n"
    "  return {0, rev}\n"
    "end\n"
    "local w, d, n = 0, false, false\n"
    "local cur = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if cur then\n"
    "  local ok, o = pcall(cjson.decode, cur)\n"
    "  if not ok or type(o) ~= 'table' then\n"
    "    return {2, 'the stored override is not an override object'}\n"
    "  end\n"
    "  if type(o.weight) == 'number' then w = o.weight end\n"
    "  d = (o.drain == true)\n"
    "  n = (o.down == true)\n"
    "end\n"
    "if tonumber(ARGV[4]) >= 0 then w = tonumber(ARGV[4]) end\n"
    "if tonumber(ARGV[5]) >= 0 then d = (ARGV[5] == '1') end\n"
    "if tonumber(ARGV[6]) >= 0 then n = (ARGV[6] == '1') end\n"
    "local ov = ''\n"
    "if w == 0 and not d and not n then\n"
    "  redis.call('HDEL', KEYS[1], ARGV[1])\n"
    "else\n"
    "  ov = string.format("
    "'{\"down\":%s,\"drain\":%s,\"weight\":%d}',\n"
    "                     n and 'true' or 'false', d and 'true' or 'false',"
    " w)\n"
    "  redis.call('HSET', KEYS[1], ARGV[1], ov)\n"
    "end\n"
    "rev = redis.call('HINCRBY', KEYS[2], ARGV[2], 1)\n"
    "local v = redis.call('INCR', KEYS[3])\n"
    "redis.call('PUBLISH', ARGV[7], tostring(v))\n"
    "return {1, rev, v, ov}\n";


ngx_int_t
ngx_http_tce_admin_fleet_override(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, const char *id,
    const ngx_http_tce_admin_patch_req_t *req)
{
    u_char               text[NGX_HTTP_TCE_ADMIN_TEXT_LEN];
    ngx_int_t            rc, v[3];
    ngx_str_t            field, args[3];
    ngx_uint_t           i;
    ngx_tce_instance_t   inst;

    rc = ngx_http_tce_admin_inst_find(r, ctx, id, &inst);
    if (rc != NGX_OK) {
        return rc == NGX_DONE ? NGX_OK : rc;
    }

    if (inst.rm_deadline && req->drain == 0) {
        ngx_snprintf(text, sizeof(text) - 1,
                     "instance \"%s\" is being removed (DELETE): POST it "
                     "again to keep it%Z", id);
        return ngx_http_tce_admin_error(r, NGX_HTTP_CONFLICT,
                                        "being_removed", (char *) text);
    }

    field.len = ctx->svc->name_len + 1 + ngx_strlen(id);
    field.data = ngx_pnalloc(r->pool, field.len);
    if (field.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(field.data, "%*s/%s", ctx->svc->name_len, ctx->svc->name,
                id);

    v[0] = req->weight;
    v[1] = req->drain;
    v[2] = req->down;

    for (i = 0; i < 3; i++) {
        args[i].data = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (args[i].data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        args[i].len = ngx_sprintf(args[i].data, "%i", v[i]) - args[i].data;
    }

    return ngx_http_tce_admin_fleet_send(r, ctx,
                                         NGX_HTTP_TCE_ADMIN_FLEET_OVERRIDE,
                                         id,
                                         ngx_http_tce_admin_fleet_inst_script,
                                         "override", &field, args, 3);
}


ngx_int_t
ngx_http_tce_admin_fleet_inst_apply(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, const char *id, const char *value,
    size_t len)
{
    ngx_tce_main_conf_t       *tmcf;
    ngx_tce_fleet_override_t   o;

    tmcf = ngx_http_get_module_main_conf(r, ngx_tce_module);

    ngx_memzero(&o, sizeof(ngx_tce_fleet_override_t));

    if (len && ngx_tce_fleet_override_parse(value, len, &o, NULL, 0) != 0) {
        return NGX_ERROR;
    }

    (void) ngx_cpystrn((u_char *) o.id, (u_char *) id, NGX_TCE_ID_LEN);

    return ngx_tce_override_one(tmcf->zone, ctx->svc, &o,
                                r->connection->log);
}


ngx_int_t
ngx_http_tce_admin_fleet_inst_show(ngx_http_request_t *r,
    ngx_http_tce_admin_ctx_t *ctx, const char *id)
{
    ngx_int_t           rc;
    ngx_tce_instance_t  inst;

    rc = ngx_http_tce_admin_inst_find(r, ctx, id, &inst);
    if (rc != NGX_OK) {
        return rc == NGX_DONE ? NGX_OK : rc;
    }

    return ngx_http_tce_admin_inst_show(r, ctx, &inst, NGX_HTTP_OK, NULL);
}
