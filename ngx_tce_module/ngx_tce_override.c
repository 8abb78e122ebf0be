/*
 * The operator's overrides (weight, drain, down) of the state file,
 * per service, in the shared zone: applied on top of whatever source
 * feeds the instances, matched by instance id.
 *
 * For a service the state file feeds, its instances carry their
 * overrides already.  For one Consul feeds (or its snapshot), the
 * watcher's sets carry none: ngx_tce_zone_set() lays the table over
 * every set it stores, so a discovery update never wipes them, and a
 * reload that changes the table lays it over the set being served.
 *
 * With tce_redis the table is the fleet's instead (the zone's
 * fleet_overrides is set): the state file's overrides are not applied,
 * and the table is laid over every source, the state file's included.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_tce.h"
#include "ngx_tce_state.h"
#include "ngx_tce_fleet.h"


struct ngx_tce_override_s {
    char                        id[NGX_TCE_ID_LEN];
    uint16_t                    weight;
    uint8_t                     drain;
    uint8_t                     down;
};


/* ids quoted in the warning about an override matching no instance */
#define NGX_TCE_OVERRIDE_NAMES  3


static ngx_int_t ngx_tce_override_set(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, const ngx_tce_state_service_t *ss,
    ngx_log_t *log);
static ngx_int_t ngx_tce_override_table_set(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_tce_override_t *table, size_t n,
    ngx_log_t *log);
static ngx_int_t ngx_tce_override_reapply(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_log_t *log);
static void ngx_tce_override_unmatched(ngx_tce_zone_t *zone,
    ngx_tce_service_t *svc, ngx_log_t *log);
static int ngx_libc_cdecl ngx_tce_override_cmp(const void *a,
    const void *b);
static int ngx_libc_cdecl ngx_tce_override_svc_cmp(const void *key,
    const void *elt);


ngx_int_t
ngx_tce_override_apply_state(ngx_tce_zone_t *zone,
    const ngx_tce_state_t *st, ngx_log_t *log)
{
    size_t                    i;
    ngx_tce_service_t        *svc;
    ngx_tce_state_service_t  *ss;

    for (i = 0; i < st->nservices; i++) {
        svc = ngx_tce_zone_service(zone, (u_char *) st->services[i].name,
                                   ngx_strlen(st->services[i].name), 1);

        if (svc == NULL
            || ngx_tce_override_set(zone, svc, &st->services[i], log)
               == NGX_ERROR)
        {
            return NGX_ERROR;
        }
    }

    /* services that left the file lose their overrides */

    for (svc = zone->sh->services; svc; svc = svc->next) {
        if (svc->noverrides == 0) {
            continue;
        }

        ss = NULL;

        if (st->nservices) {
            ss = bsearch(svc->name, st->services, st->nservices,
                         sizeof(ngx_tce_state_service_t),
                         ngx_tce_override_svc_cmp);
        }

        if (ss == NULL
            && ngx_tce_override_set(zone, svc, NULL, log) == NGX_ERROR)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_tce_override_service_set(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    const ngx_tce_state_service_t *ss, ngx_log_t *log)
{
    return ngx_tce_override_set(zone, svc, ss, log);
}


/* replaces the table of svc by the overrides of ss (NULL: none) */

static ngx_int_t
ngx_tce_override_set(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    const ngx_tce_state_service_t *ss, ngx_log_t *log)
{
    size_t                     i, n;
    ngx_tce_override_t        *table;
    const ngx_tce_instance_t  *inst;

    n = 0;
    table = NULL;

    for (i = 0; ss && i < ss->ninstances; i++) {
        inst = &ss->instances[i];
        n += (inst->op_weight || inst->op_drain || inst->op_down);
    }

    if (n) {
        table = ngx_alloc(n * sizeof(ngx_tce_override_t), log);
        if (table == NULL) {
            return NGX_ERROR;
        }

        n = 0;

        for (i = 0; i < ss->ninstances; i++) {
            inst = &ss->instances[i];

            if (inst->op_weight || inst->op_drain || inst->op_down) {
                ngx_memzero(&table[n], sizeof(ngx_tce_override_t));
                (void) ngx_cpystrn((u_char *) table[n].id,
                                   (u_char *) inst->id, NGX_TCE_ID_LEN);
                table[n].weight = inst->op_weight;
                table[n].drain = inst->op_drain;
                table[n].down = inst->op_down;
                n++;
            }
        }
    }

    return ngx_tce_override_table_set(zone, svc, table, n, log);
}


ngx_int_t
ngx_tce_override_fleet_set(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    const ngx_tce_fleet_override_t *ov, size_t nov, ngx_log_t *log)
{
    size_t               i, n;
    ngx_tce_override_t  *table;

    n = 0;
    table = NULL;

    for (i = 0; i < nov; i++) {
        n += (ngx_strlen(ov[i].service) == svc->name_len
              && ngx_memcmp(ov[i].service, svc->name, svc->name_len) == 0
              && (ov[i].weight || ov[i].drain || ov[i].down));
    }

    if (n) {
        table = ngx_alloc(n * sizeof(ngx_tce_override_t), log);
        if (table == NULL) {
            return NGX_ERROR;
        }

        n = 0;

        for (i = 0; i < nov; i++) {
            if (ngx_strlen(ov[i].service) != svc->name_len
                || ngx_memcmp(ov[i].service, svc->name, svc->name_len) != 0
                || !(ov[i].weight || ov[i].drain || ov[i].down))
            {
                continue;
            }

            ngx_memzero(&table[n], sizeof(ngx_tce_override_t));
            (void) ngx_cpystrn((u_char *) table[n].id, (u_char *) ov[i].id,
                               NGX_TCE_ID_LEN);
            table[n].weight = ov[i].weight;
            table[n].drain = ov[i].drain;
            table[n].down = ov[i].down;
            n++;
        }
    }

    return ngx_tce_override_table_set(zone, svc, table, n, log);
}


ngx_int_t
ngx_tce_override_one(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    const ngx_tce_fleet_override_t *o, ngx_log_t *log)
{
    size_t               i, n;
    ngx_uint_t           set;
    ngx_tce_override_t  *table;

    set = (o->weight || o->drain || o->down);

    /* the table as it is, plus one */
    ngx_shmtx_lock(&zone->shpool->mutex);

    n = svc->noverrides;

    table = ngx_alloc((n + 1) * sizeof(ngx_tce_override_t), log);

    if (table == NULL) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_ERROR;
    }

    if (n) {
        ngx_memcpy(table, svc->overrides, n * sizeof(ngx_tce_override_t));
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    for (i = 0; i < n; i++) {
        if (ngx_strcmp(table[i].id, o->id) == 0) {
            break;
        }
    }

    if (i == n) {
        if (!set) {
            ngx_free(table);
            return NGX_OK;
        }

        ngx_memzero(&table[n], sizeof(ngx_tce_override_t));
        (void) ngx_cpystrn((u_char *) table[n].id, (u_char *) o->id,
                           NGX_TCE_ID_LEN);
        n++;
    }

    if (set) {
        table[i].weight = o->weight;
        table[i].drain = o->drain;
        table[i].down = o->down;

    } else {
        ngx_memmove(&table[i], &table[i + 1],
                    (n - i - 1) * sizeof(ngx_tce_override_t));
        n--;
    }

    if (n == 0) {
        ngx_free(table);
        table = NULL;
    }

    return ngx_tce_override_table_set(zone, svc, table, n, log);
}


/* the table of svc becomes table[0..n-1] (ngx_alloc'd: freed here) */

static ngx_int_t
ngx_tce_override_table_set(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_tce_override_t *table, size_t n, ngx_log_t *log)
{
    size_t               size;
    ngx_tce_override_t  *copy, *old;

    size = n * sizeof(ngx_tce_override_t);

    if (n) {
        ngx_qsort(table, n, sizeof(ngx_tce_override_t),
                  ngx_tce_override_cmp);
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (svc->noverrides == n
        && (n == 0 || ngx_memcmp(svc->overrides, table, size) == 0))
    {
        ngx_shmtx_unlock(&zone->shpool->mutex);

        if (table) {
            ngx_free(table);
        }

        if (n) {
            ngx_tce_override_unmatched(zone, svc, log);
        }

        return NGX_OK;
    }

    copy = NULL;

    if (n) {
        copy = ngx_slab_alloc_locked(zone->shpool, size);

        if (copy == NULL) {
            ngx_shmtx_unlock(&zone->shpool->mutex);
            ngx_free(table);
            (void) ngx_atomic_fetch_add(&zone->sh->writes_refused, 1);

            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "tce zone \"%V\" is full: %uz overrides of "
                          "service \"%s\" not stored",
                          &zone->shm_zone->shm.name, n, svc->name);
            return NGX_ERROR;
        }

        ngx_memcpy(copy, table, size);
    }

    old = svc->overrides;
    svc->overrides = copy;
    svc->noverrides = n;

    if (old) {
        ngx_slab_free_locked(zone->shpool, old);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (table) {
        ngx_free(table);
    }

    if (ngx_tce_override_reapply(zone, svc, log) != NGX_OK) {
        return NGX_ERROR;
    }

    if (n) {
        ngx_tce_override_unmatched(zone, svc, log);
    }

    return NGX_OK;
}


/* lays the new table over the set served now (not the file's own) */

static ngx_int_t
ngx_tce_override_reapply(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_log_t *log)
{
    ngx_int_t            rc;
    ngx_uint_t           n, source;
    ngx_atomic_uint_t    generation;
    ngx_tce_instance_t  *inst;

    source = svc->source;

    if ((source == NGX_TCE_SOURCE_STATE && !zone->sh->fleet_overrides)
        || svc->ninstances == 0)
    {
        return NGX_OK;
    }

    if (ngx_tce_zone_copy(zone, svc, &inst, &n, &generation, log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_tce_zone_set(zone, svc, inst, n, source, log);

    if (inst) {
        ngx_free(inst);
    }

    if (rc == NGX_OK) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "tce: service \"%s\": the %s overrides (%ui) "
                      "applied on top of the instances from %s",
                      svc->name,
                      zone->sh->fleet_overrides ? "fleet's" : "state file's",
                      svc->noverrides,
                      source == NGX_TCE_SOURCE_CONSUL ? "Consul"
                      : source == NGX_TCE_SOURCE_STATE ? "the state file"
                      : "nowhere");
    }

    return rc == NGX_ERROR ? NGX_ERROR : NGX_OK;
}


/* an override whose id no instance has: most likely a typo */

static void
ngx_tce_override_unmatched(ngx_tce_zone_t *zone, ngx_tce_service_t *svc,
    ngx_log_t *log)
{
    int                  c;
    u_char              *p, *last;
    ngx_uint_t           i, j, n, nomatch;
    ngx_atomic_uint_t    generation;
    ngx_tce_override_t  *ov;
    ngx_tce_instance_t  *inst;
    u_char               first[NGX_TCE_ID_LEN];
    u_char               ids[NGX_TCE_OVERRIDE_NAMES * (NGX_TCE_ID_LEN + 4)];

    if (svc->source == NGX_TCE_SOURCE_STATE && !zone->sh->fleet_overrides) {
        return;                 /* the file's own instances: they match */
    }

    if (ngx_tce_zone_copy(zone, svc, &inst, &n, &generation, log)
        != NGX_OK)
    {
        return;
    }

    if (n == 0) {
        return;                 /* not answered yet: nothing to match */
    }

    nomatch = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    ov = svc->overrides;

    for (i = 0, j = 0; i < svc->noverrides; i++) {
        c = 1;

        while (j < n && (c = ngx_strcmp(inst[j].id, ov[i].id)) < 0) {
            j++;
        }

        if (j == n || c != 0) {
            if (nomatch++ == 0) {
                (void) ngx_cpystrn(first, (u_char *) ov[i].id,
                                   NGX_TCE_ID_LEN);
            }
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (nomatch) {
        p = ids;
        last = ids + sizeof(ids);

        for (i = 0; i < n && i < NGX_TCE_OVERRIDE_NAMES; i++) {
            p = ngx_slprintf(p, last, "%s\"%s\"", i ? ", " : "",
                             inst[i].id);
        }

        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "tce_state: service \"%s\": %ui override(s) match no "
                      "instance (the first: \"%s\"); its instance ids are "
                      "like %*s%s (see tce_status)", svc->name, nomatch,
                      first, p - ids, ids,
                      n > NGX_TCE_OVERRIDE_NAMES ? ", ..." : "");
    }

    ngx_free(inst);
}


void
ngx_tce_override_merge_locked(ngx_tce_service_t *svc,
    ngx_tce_instance_t *inst, ngx_uint_t n)
{
    int                  c;
    ngx_uint_t           i, j;
    ngx_tce_override_t  *ov;

    ov = svc->overrides;

    for (i = 0, j = 0; i < n; i++) {
        inst[i].op_weight = 0;
        inst[i].op_drain = 0;
        inst[i].op_down = 0;

        c = 1;

        while (j < svc->noverrides
               && (c = ngx_strcmp(ov[j].id, inst[i].id)) < 0)
        {
            j++;
        }

        if (j < svc->noverrides && c == 0) {
            inst[i].op_weight = ov[j].weight;
            inst[i].op_drain = ov[j].drain;
            inst[i].op_down = ov[j].down;
        }
    }
}


static int ngx_libc_cdecl
ngx_tce_override_cmp(const void *a, const void *b)
{
    return ngx_strcmp(((ngx_tce_override_t *) a)->id,
                      ((ngx_tce_override_t *) b)->id);
}


static int ngx_libc_cdecl
ngx_tce_override_svc_cmp(const void *key, const void *elt)
{
    return ngx_strcmp((u_char *) key,
                      (u_char *) ((ngx_tce_state_service_t *) elt)->name);
}
