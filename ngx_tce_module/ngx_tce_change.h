/*
 * How an instance set changed, for the log line of a change (pure C,
 * no nginx): instances added, removed, newly draining, newly down,
 * back up, or changed otherwise (weight, address, version, env), with
 * the first few ids of each kind.  Both sets are sorted by id, as the
 * zone stores them.
 *
 *   +1 instance (p3), -1 (p1), 1 draining (p2)
 */

#ifndef _NGX_TCE_CHANGE_H_INCLUDED_
#define _NGX_TCE_CHANGE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "ngx_tce_types.h"


#define NGX_TCE_CHANGE_ADDED     0
#define NGX_TCE_CHANGE_REMOVED   1
#define NGX_TCE_CHANGE_DRAINING  2
#define NGX_TCE_CHANGE_DOWN      3
#define NGX_TCE_CHANGE_UP        4
#define NGX_TCE_CHANGE_OTHER     5
#define NGX_TCE_CHANGE_KINDS     6

/* ids listed per kind, and the bytes kept of each (then "...") */
#define NGX_TCE_CHANGE_IDS       3
#define NGX_TCE_CHANGE_ID_CUT    40

/* room for the text of a change: longer ones are cut (see below) */
#define NGX_TCE_CHANGE_TEXT_LEN  1024


typedef struct {
    uint64_t                  gen_before;  /* set by the zone's writer */
    uint64_t                  gen_after;
    size_t                    count[NGX_TCE_CHANGE_KINDS];
    char                      id[NGX_TCE_CHANGE_KINDS][NGX_TCE_CHANGE_IDS]
                                [NGX_TCE_CHANGE_ID_CUT + 1];
    size_t                    id_len[NGX_TCE_CHANGE_KINDS]
                                    [NGX_TCE_CHANGE_IDS];
    unsigned char             id_cut[NGX_TCE_CHANGE_KINDS]
                                    [NGX_TCE_CHANGE_IDS];
} ngx_tce_change_t;


/*
 * Compares old[0..nold-1] with cur[0..ncur-1] (each sorted by id) into
 * *c (zeroed first).  An instance is draining when its state is
 * draining, an override drains it or the admin API is removing it;
 * down when its state or an override says so.  Returns the number of
 * instances that changed in any way (0: the sets route alike).
 */
size_t ngx_tce_change_diff(const ngx_tce_instance_t *old, size_t nold,
    const ngx_tce_instance_t *cur, size_t ncur, ngx_tce_change_t *c);

/*
 * Writes the change as text into buf (size > 0), NUL-terminated, ids
 * escaped (ngx_tce_text_escape()) and cut: "+2 instances (a, b),
 * -1 (c), 1 draining (d), 1 down (e), 1 back up (f), 1 changed (g)",
 * with ", ..." after the listed ids when there are more.  "" when
 * nothing changed.  Text past size is cut at the end of a whole id or
 * label.  Returns the length written.
 */
size_t ngx_tce_change_text(char *buf, size_t size, const ngx_tce_change_t *c);


#endif /* _NGX_TCE_CHANGE_H_INCLUDED_ */
