/*
 * EVAL of a Lua script on a Redis connection: the suite's writes and
 * reads that must be atomic in Redis (the fleet's policies, instance
 * sets, snapshot, the deploy lease and records) are each one script,
 * sent as EVAL <script> <number of keys> <keys> <args>.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_tce_redis.h"


ngx_int_t
ngx_tce_redis_eval(ngx_tce_redis_conn_t *rc, ngx_tce_redis_reply_pt handler,
    void *data, const char *script, const ngx_str_t *keys, ngx_uint_t nkeys,
    const ngx_str_t *args, ngx_uint_t nargs)
{
    int           argc;
    u_char        num[NGX_INT_T_LEN];
    size_t       *argl;
    ngx_int_t     sent;
    ngx_uint_t    i;
    const char  **argv;

    argc = (int) (3 + nkeys + nargs);

    argv = ngx_alloc(argc * (sizeof(char *) + sizeof(size_t)), rc->log);
    if (argv == NULL) {
        return NGX_ERROR;
    }

    argl = (size_t *) &argv[argc];

    argv[0] = "EVAL";
    argl[0] = 4;
    argv[1] = script;
    argl[1] = ngx_strlen(script);
    argv[2] = (char *) num;
    argl[2] = ngx_sprintf(num, "%ui", nkeys) - num;

    for (i = 0; i < nkeys; i++) {
        argv[3 + i] = (char *) keys[i].data;
        argl[3 + i] = keys[i].len;
    }

    for (i = 0; i < nargs; i++) {
        argv[3 + nkeys + i] = (char *) args[i].data;
        argl[3 + nkeys + i] = args[i].len;
    }

    sent = ngx_tce_redis_command(rc, handler, data, argc, argv, argl);

    ngx_free(argv);

    return sent;
}
