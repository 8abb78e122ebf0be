/*
 * Canary routing in the balancer: which env a request goes to.
 *
 *   upstream backend {
 *       tce_service demo.web.api;
 *       tce_canary weight=12.5 key=$cookie_uid header=X-Canary
 *                  cookie=canary override_from=10.0.0.0/8
 *                  fallback=on;
 *   }
 *   tce_canary_header on;      (http, server, location: X-TCE-Env)
 *
 * Decision per request, in this order:
 *
 *   1. override: the header (or cookie) says canary|always or
 *      prod|never, and the socket peer is in override_from;
 *   2. sticky: the key is not empty: bucket(key, epoch) < weight;
 *   3. the worker's exact split (ngx_tce_canary_split_next);
 *   4. fallback: the chosen env has no usable instance and the policy
 *      allows it: the other env serves; otherwise the foundation's 503.
 *
 * The peer of an override is the address the kernel gives for the
 * connection's socket (getpeername()), not r->connection->sockaddr:
 * the realip module rewrites that one from X-Forwarded-For, X-Real-IP
 * or the PROXY protocol, which a client can forge.  Behind a load
 * balancer, list the balancer's address in override_from.
 *
 * Without tce_canary and without a policy in the zone, requests go to
 * prod with no fallback, as the foundation did.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tce_upstream.h"


static ngx_int_t ngx_http_tce_upstream_canary_override(ngx_http_request_t *r,
    ngx_http_tce_upstream_canary_conf_t *ccf);
static ngx_uint_t ngx_http_tce_upstream_canary_trusted(ngx_http_request_t *r,
    ngx_http_tce_upstream_canary_conf_t *ccf);
static ngx_int_t ngx_http_tce_upstream_canary_header(ngx_http_request_t *r,
    ngx_str_t *name, ngx_uint_t hash, ngx_str_t *value);
static char *ngx_http_tce_upstream_canary_cidr(ngx_conf_t *cf,
    ngx_http_tce_upstream_canary_conf_t *ccf, ngx_str_t *value);
static ngx_uint_t ngx_http_tce_upstream_canary_token(ngx_str_t *s);
static ngx_int_t ngx_http_tce_upstream_canary_key(ngx_http_request_t *r,
    ngx_http_tce_upstream_canary_conf_t *ccf, ngx_str_t *key);
static ngx_int_t ngx_http_tce_upstream_canary_header_filter(
    ngx_http_request_t *r);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


char *
ngx_http_tce_upstream_canary(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tce_upstream_srv_conf_t *ucf = conf;

    ngx_int_t                             w;
    ngx_str_t                            *value, s;
    ngx_uint_t                            i, n;
    ngx_http_tce_upstream_canary_conf_t  *ccf;

    if (ucf->canary) {
        return "is duplicate";
    }

    if (ucf->service_name.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tce_canary\" must come after \"tce_service\" "
                           "in the upstream");
        return NGX_CONF_ERROR;
    }

    ccf = ngx_pcalloc(cf->pool, sizeof(ngx_http_tce_upstream_canary_conf_t));
    if (ccf == NULL) {
        return NGX_CONF_ERROR;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     ccf->policy.weight = 0;
     *     ccf->policy.epoch = 0;
     *     ccf->key = NULL;
     *     ccf->header = { 0, NULL };
     *     ccf->cookie = { 0, NULL };
     *     ccf->override_from = NULL;
     */

    ccf->policy.fallback = 1;
    ccf->key_index = NGX_ERROR;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "weight=", 7) == 0) {
            w = ngx_tce_canary_weight_parse((char *) value[i].data + 7,
                                            value[i].len - 7);
            if (w < 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid canary weight \"%V\": expected "
                                   "a percentage 0..100 with at most 2 "
                                   "decimals", &value[i]);
                return NGX_CONF_ERROR;
            }

            ccf->policy.weight = (uint32_t) w;
            continue;
        }

        if (ngx_strncmp(value[i].data, "key=", 4) == 0) {
            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

            if (s.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "empty canary key in \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            /*
             * The usual key is one variable ($cookie_uid): read it by
             * its index, which costs far less per request than running
             * a complex value's script.
             */

            ccf->key = NULL;
            ccf->key_index = NGX_ERROR;

            if (s.len > 1 && s.data[0] == '$') {
                s.data++;
                s.len--;

                if (ngx_http_tce_upstream_canary_token(&s)
                    && ngx_strlchr(s.data, s.data + s.len, '.') == NULL
                    && ngx_strlchr(s.data, s.data + s.len, '-') == NULL)
                {
                    ccf->key_index = ngx_http_get_variable_index(cf, &s);
                    if (ccf->key_index == NGX_ERROR) {
                        return NGX_CONF_ERROR;
                    }

                    /* $cookie_name: what its handler does, called direct */
                    ngx_str_null(&ccf->key_cookie);

                    if (s.len > 7 && ngx_strncmp(s.data, "cookie_", 7) == 0) {
                        ccf->key_cookie.data = s.data + 7;
                        ccf->key_cookie.len = s.len - 7;
                    }

                    continue;
                }

                s.data--;
                s.len++;
            }

            /* "key=uid": one constant, so every request one bucket */
            if (ngx_http_script_variables_count(&s) == 0) {
                ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                                   "canary \"%V\" has no variable: every "
                                   "request gets the same bucket, so all "
                                   "or none go to the canary (meant "
                                   "key=$cookie_%V?)", &value[i], &s);
            }

            ccf->key = ngx_http_tce_upstream_complex(cf, &s);
            if (ccf->key == NULL) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "header=", 7) == 0) {
            ccf->header.data = value[i].data + 7;
            ccf->header.len = value[i].len - 7;

            if (!ngx_http_tce_upstream_canary_token(&ccf->header)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid canary override header \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            /* the hash nginx gives every request header (lowercase) */
            ccf->header_hash = 0;

            for (n = 0; n < ccf->header.len; n++) {
                ccf->header_hash = ngx_hash(ccf->header_hash,
                                            ngx_tolower(ccf->header.data[n]));
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "cookie=", 7) == 0) {
            ccf->cookie.data = value[i].data + 7;
            ccf->cookie.len = value[i].len - 7;

            if (!ngx_http_tce_upstream_canary_token(&ccf->cookie)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid canary override cookie \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "override_from=", 14) == 0) {
            s.data = value[i].data + 14;
            s.len = value[i].len - 14;

            if (ngx_http_tce_upstream_canary_cidr(cf, ccf, &s)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "fallback=on") == 0) {
            ccf->policy.fallback = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "fallback=off") == 0) {
            ccf->policy.fallback = 0;
            continue;
        }

        if (ngx_strncmp(value[i].data, "fallback=", 9) == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid canary fallback \"%V\": expected "
                               "\"fallback=on\" or \"fallback=off\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"tce_canary\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if ((ccf->header.len || ccf->cookie.len) && ccf->override_from == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "canary \"header\" or \"cookie\" needs "
                           "\"override_from\": the addresses allowed to "
                           "force an env");
        return NGX_CONF_ERROR;
    }

    if (ccf->override_from && ccf->header.len == 0 && ccf->cookie.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "canary \"override_from\" needs \"header\" or "
                           "\"cookie\"");
        return NGX_CONF_ERROR;
    }

    ucf->canary = ccf;

    return NGX_CONF_OK;
}


static char *
ngx_http_tce_upstream_canary_cidr(ngx_conf_t *cf,
    ngx_http_tce_upstream_canary_conf_t *ccf, ngx_str_t *value)
{
    ngx_int_t    rc;
    ngx_cidr_t  *cidr;

    if (ccf->override_from == NULL) {
        ccf->override_from = ngx_array_create(cf->pool, 2,
                                              sizeof(ngx_cidr_t));
        if (ccf->override_from == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    cidr = ngx_array_push(ccf->override_from);
    if (cidr == NULL) {
        return NGX_CONF_ERROR;
    }

    rc = ngx_ptocidr(value, cidr);

    if (rc == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid canary override_from \"%V\": expected "
                           "an address or CIDR (no host names)", value);
        return NGX_CONF_ERROR;
    }

    if (rc == NGX_DONE) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "low address bits of \"%V\" are meaningless",
                           value);
    }

    return NGX_CONF_OK;
}


static ngx_uint_t
ngx_http_tce_upstream_canary_token(ngx_str_t *s)
{
    size_t  i;

    if (s->len == 0 || s->len > 64) {
        return 0;
    }

    for (i = 0; i < s->len; i++) {
        if (!((s->data[i] >= 'a' && s->data[i] <= 'z')
              || (s->data[i] >= 'A' && s->data[i] <= 'Z')
              || (s->data[i] >= '0' && s->data[i] <= '9')
              || s->data[i] == '-' || s->data[i] == '_'
              || s->data[i] == '.'))
        {
            return 0;
        }
    }

    return 1;
}


void *
ngx_http_tce_upstream_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_tce_upstream_loc_conf_t  *lcf;

    lcf = ngx_palloc(cf->pool, sizeof(ngx_http_tce_upstream_loc_conf_t));
    if (lcf == NULL) {
        return NULL;
    }

    lcf->canary_header = NGX_CONF_UNSET;

    return lcf;
}


char *
ngx_http_tce_upstream_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_tce_upstream_loc_conf_t *prev = parent;
    ngx_http_tce_upstream_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->canary_header, prev->canary_header, 0);

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_tce_upstream_canary_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_tce_upstream_canary_header_filter;

    return NGX_OK;
}


void
ngx_http_tce_upstream_canary_view(ngx_http_tce_upstream_srv_conf_t *ucf,
    ngx_http_tce_upstream_cluster_t *cl, ngx_http_tce_upstream_view_t *old)
{
    ngx_http_tce_upstream_cluster_t  *ocl;

    if (ngx_tce_zone_policy_get(ucf->zone, ucf->service, &cl->name,
                                &cl->canary)
        != NGX_OK)
    {
        if (ucf->canary) {
            cl->canary = ucf->canary->policy;

        } else {
            /* no canary routing: prod only, as without this file */
            cl->canary.weight = 0;
            cl->canary.epoch = 0;
            cl->canary.fallback = 0;
        }
    }

    /* the split goes on where it was: exactness holds across rebuilds */

    ocl = old ? ngx_http_tce_upstream_view_cluster(old, &cl->name) : NULL;

    if (ocl) {
        cl->split = ocl->split;

    } else {
        /* workers start at different points of the split */
        ngx_tce_canary_split_init(&cl->split, (uint32_t) ngx_random());
    }
}


ngx_int_t
ngx_http_tce_upstream_canary_choose(ngx_http_request_t *r,
    ngx_http_tce_upstream_peer_data_t *pd)
{
    ngx_int_t                             env;
    ngx_str_t                             key;
    ngx_uint_t                            other;
    ngx_tce_canary_policy_t              *pol;
    ngx_http_tce_upstream_cluster_t      *cl;
    ngx_http_tce_upstream_canary_conf_t  *ccf;

    cl = pd->cluster;
    pol = &cl->canary;
    ccf = pd->conf->canary;
    env = -1;

    if (ccf && ccf->override_from) {
        env = ngx_http_tce_upstream_canary_override(r, ccf);
    }

    if (env == -1) {
        if (pol->weight == 0) {
            env = NGX_TCE_ENV_PROD;

        } else if (pol->weight >= NGX_TCE_CANARY_SCALE) {
            env = NGX_TCE_ENV_CANARY;

        } else if (ccf && (ccf->key || ccf->key_index != NGX_ERROR)) {
            if (ngx_http_tce_upstream_canary_key(r, ccf, &key) != NGX_OK) {
                return NGX_ERROR;
            }

            /* weights 0 and 10000 were settled above, without a hash */
            if (key.len) {
                env = ngx_tce_canary_bucket(key.data, key.len, pol->epoch)
                      < pol->weight
                      ? NGX_TCE_ENV_CANARY : NGX_TCE_ENV_PROD;
            }
        }

        if (env == -1) {
            env = ngx_tce_canary_split_next(&cl->split, pol->weight);
        }
    }

    other = 1 - (ngx_uint_t) env;
    pd->spare = 0;

    if (pol->fallback) {
        if (cl->env[env].nmembers == 0 && cl->env[other].nmembers) {
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "tce canary: env %s is empty, %s serves",
                           ngx_tce_env_name(env), ngx_tce_env_name(other));
            env = other;

        } else {
            pd->spare = cl->env[other].nmembers;
        }
    }

    pd->env = env;
    pd->group = &cl->env[env];

    return NGX_OK;
}


ngx_uint_t
ngx_http_tce_upstream_canary_fallback(ngx_http_tce_upstream_peer_data_t *pd)
{
    ngx_uint_t  other;

    if (pd->spare == 0 || pd->cluster == NULL) {
        return 0;
    }

    other = 1 - pd->env;

    ngx_http_tce_upstream_log_tried(pd, pd->request->connection->log,
                                    (ngx_int_t) other);

    pd->spare = 0;
    pd->env = other;
    pd->group = &pd->cluster->env[other];

    return 1;
}


static ngx_int_t
ngx_http_tce_upstream_canary_key(ngx_http_request_t *r,
    ngx_http_tce_upstream_canary_conf_t *ccf, ngx_str_t *key)
{
    ngx_http_variable_value_t  *vv;

    if (ccf->key) {
        return ngx_http_complex_value(r, ccf->key, key);
    }

    if (ccf->key_cookie.len) {
        if (ngx_http_parse_multi_header_lines(&r->headers_in.cookies,
                                              &ccf->key_cookie, key)
            == NGX_DECLINED)
        {
            key->len = 0;
        }

        return NGX_OK;
    }

    vv = ngx_http_get_flushed_variable(r, ccf->key_index);

    if (vv == NULL) {
        return NGX_ERROR;
    }

    if (vv->not_found) {
        key->len = 0;
        return NGX_OK;
    }

    key->data = vv->data;
    key->len = vv->len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_tce_upstream_canary_override(ngx_http_request_t *r,
    ngx_http_tce_upstream_canary_conf_t *ccf)
{
    ngx_int_t  env;
    ngx_str_t  value;

    env = -1;

    if (ccf->header.len
        && ngx_http_tce_upstream_canary_header(r, &ccf->header,
                                               ccf->header_hash, &value)
           == NGX_OK)
    {
        env = ngx_tce_canary_override_parse((char *) value.data, value.len);
    }

    if (env == -1 && ccf->cookie.len
        && ngx_http_parse_multi_header_lines(&r->headers_in.cookies,
                                             &ccf->cookie, &value)
           != NGX_DECLINED)
    {
        env = ngx_tce_canary_override_parse((char *) value.data, value.len);
    }

    /* the peer is checked last: only requests that ask pay for it */

    if (env != -1 && !ngx_http_tce_upstream_canary_trusted(r, ccf)) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "tce canary: override from a peer not in "
                       "override_from, ignored");
        return -1;
    }

    return env;
}


static ngx_uint_t
ngx_http_tce_upstream_canary_trusted(ngx_http_request_t *r,
    ngx_http_tce_upstream_canary_conf_t *ccf)
{
    socklen_t       len;
    ngx_sockaddr_t  sa;

    /* the socket's own peer: realip cannot have rewritten this one */

    len = sizeof(ngx_sockaddr_t);

    if (getpeername(r->connection->fd, &sa.sockaddr, &len) == -1) {
        return 0;
    }

    return ngx_cidr_match(&sa.sockaddr, ccf->override_from) == NGX_OK;
}


static ngx_int_t
ngx_http_tce_upstream_canary_header(ngx_http_request_t *r, ngx_str_t *name,
    ngx_uint_t hash, ngx_str_t *value)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == hash
            && h[i].key.len == name->len
            && ngx_strncasecmp(h[i].key.data, name->data, name->len) == 0)
        {
            *value = h[i].value;
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_tce_upstream_canary_header_filter(ngx_http_request_t *r)
{
    const char                         *env;
    ngx_table_elt_t                    *h;
    ngx_http_tce_upstream_loc_conf_t   *lcf;
    ngx_http_tce_upstream_peer_data_t  *pd;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_tce_upstream_module);

    if (!lcf->canary_header) {
        return ngx_http_next_header_filter(r);
    }

    pd = ngx_http_get_module_ctx(r, ngx_http_tce_upstream_module);

    if (pd == NULL) {
        return ngx_http_next_header_filter(r);
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    env = ngx_tce_env_name(pd->env);

    h->hash = 1;
    ngx_str_set(&h->key, "X-TCE-Env");
    h->value.data = (u_char *) env;
    h->value.len = ngx_strlen(env);

    return ngx_http_next_header_filter(r);
}
