/*
 * How an instance set changed, for the log line of a change (pure C):
 * a merge of two sets sorted by id.
 */

#include <stdio.h>
#include <string.h>

#include "ngx_tce_change.h"
#include "ngx_tce_text.h"


#define NGX_TCE_CHANGE_IS_UP        0
#define NGX_TCE_CHANGE_IS_DRAINING  1
#define NGX_TCE_CHANGE_IS_DOWN      2


static int ngx_tce_change_routing(const ngx_tce_instance_t *inst);
static int ngx_tce_change_other(const ngx_tce_instance_t *a,
    const ngx_tce_instance_t *b);
static void ngx_tce_change_add(ngx_tce_change_t *c, int kind,
    const char *id);
static int ngx_tce_change_put(char *buf, size_t size, size_t *len,
    const char *text, size_t n);


static const char  *ngx_tce_change_labels[NGX_TCE_CHANGE_KINDS] = {
    "+%zu instance%s", "-%zu instance%s", "%zu draining", "%zu down",
    "%zu back up", "%zu changed"
};


size_t
ngx_tce_change_diff(const ngx_tce_instance_t *old, size_t nold,
    const ngx_tce_instance_t *cur, size_t ncur, ngx_tce_change_t *c)
{
    int     cmp, was, now;
    size_t  i, j, total;

    memset(c, 0, sizeof(ngx_tce_change_t));

    i = 0;
    j = 0;
    total = 0;

    while (i < nold || j < ncur) {

        if (i == nold) {
            cmp = 1;

        } else if (j == ncur) {
            cmp = -1;

        } else {
            cmp = strcmp(old[i].id, cur[j].id);
        }

        if (cmp < 0) {
            ngx_tce_change_add(c, NGX_TCE_CHANGE_REMOVED, old[i++].id);
            total++;
            continue;
        }

        if (cmp > 0) {
            ngx_tce_change_add(c, NGX_TCE_CHANGE_ADDED, cur[j++].id);
            total++;
            continue;
        }

        was = ngx_tce_change_routing(&old[i]);
        now = ngx_tce_change_routing(&cur[j]);

        if (was != now) {
            ngx_tce_change_add(c, now == NGX_TCE_CHANGE_IS_DRAINING
                                  ? NGX_TCE_CHANGE_DRAINING
                                  : now == NGX_TCE_CHANGE_IS_DOWN
                                  ? NGX_TCE_CHANGE_DOWN
                                  : NGX_TCE_CHANGE_UP, cur[j].id);
            total++;

        } else if (ngx_tce_change_other(&old[i], &cur[j])) {
            ngx_tce_change_add(c, NGX_TCE_CHANGE_OTHER, cur[j].id);
            total++;
        }

        i++;
        j++;
    }

    return total;
}


/* up, draining or down, as routing sees it (overrides included) */
static int
ngx_tce_change_routing(const ngx_tce_instance_t *inst)
{
    if (inst->state == NGX_TCE_STATE_DOWN || inst->op_down) {
        return NGX_TCE_CHANGE_IS_DOWN;
    }

    if (inst->state == NGX_TCE_STATE_DRAINING || inst->op_drain
        || inst->rm_deadline != 0)
    {
        return NGX_TCE_CHANGE_IS_DRAINING;
    }

    return NGX_TCE_CHANGE_IS_UP;
}


static int
ngx_tce_change_other(const ngx_tce_instance_t *a,
    const ngx_tce_instance_t *b)
{
    return strcmp(a->cluster, b->cluster) != 0
           || strcmp(a->version, b->version) != 0
           || strcmp(a->addr, b->addr) != 0
           || a->weight != b->weight
           || a->op_weight != b->op_weight
           || a->env != b->env;
}


static void
ngx_tce_change_add(ngx_tce_change_t *c, int kind, const char *id)
{
    size_t  k, len;

    k = c->count[kind]++;

    if (k >= NGX_TCE_CHANGE_IDS) {
        return;
    }

    len = strnlen(id, NGX_TCE_ID_LEN);

    c->id_cut[kind][k] = (len > NGX_TCE_CHANGE_ID_CUT);

    if (len > NGX_TCE_CHANGE_ID_CUT) {
        len = NGX_TCE_CHANGE_ID_CUT;
    }

    memcpy(c->id[kind][k], id, len);
    c->id[kind][k][len] = '\0';
    c->id_len[kind][k] = len;
}


size_t
ngx_tce_change_text(char *buf, size_t size, const ngx_tce_change_t *c)
{
    int     kind;
    char    piece[4 * NGX_TCE_CHANGE_ID_CUT + 64];
    size_t  k, n, len, listed;

    len = 0;
    buf[0] = '\0';

    for (kind = 0; kind < NGX_TCE_CHANGE_KINDS; kind++) {
        if (c->count[kind] == 0) {
            continue;
        }

        n = (size_t) snprintf(piece, sizeof(piece), "%s", len ? ", " : "");
        n += (size_t) snprintf(piece + n, sizeof(piece) - n,
                               ngx_tce_change_labels[kind], c->count[kind],
                               c->count[kind] == 1 ? "" : "s");
        n += (size_t) snprintf(piece + n, sizeof(piece) - n, " (");

        if (!ngx_tce_change_put(buf, size, &len, piece, n)) {
            return len;
        }

        listed = c->count[kind] < NGX_TCE_CHANGE_IDS
                 ? c->count[kind] : NGX_TCE_CHANGE_IDS;

        for (k = 0; k < listed; k++) {
            n = 0;

            if (k) {
                piece[n++] = ',';
                piece[n++] = ' ';
            }

            n += ngx_tce_text_escape(piece + n, sizeof(piece) - n - 4,
                                     c->id[kind][k], c->id_len[kind][k]);

            if (c->id_cut[kind][k]) {
                memcpy(piece + n, "...", 3);
                n += 3;
            }

            if (!ngx_tce_change_put(buf, size, &len, piece, n)) {
                return len;
            }
        }

        n = (size_t) snprintf(piece, sizeof(piece), "%s)",
                              c->count[kind] > listed ? ", ..." : "");

        if (!ngx_tce_change_put(buf, size, &len, piece, n)) {
            return len;
        }
    }

    return len;
}


/* appends text[0..n-1] if it fits whole; 0 when it does not */
static int
ngx_tce_change_put(char *buf, size_t size, size_t *len, const char *text,
    size_t n)
{
    if (*len + n + 1 > size) {
        return 0;
    }

    memcpy(buf + *len, text, n);
    *len += n;
    buf[*len] = '\0';

    return 1;
}
