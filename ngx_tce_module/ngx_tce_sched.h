/*
 * The weighted schedule (pure C, no nginx): one full cycle of instance
 * indices in which instance i appears exactly w[i] / gcd times, spread
 * as evenly as nginx's smooth weighted round robin spreads them.  A pick
 * is one array read, whatever the number of instances.
 */

#ifndef _NGX_TCE_SCHED_H_INCLUDED_
#define _NGX_TCE_SCHED_H_INCLUDED_


#include <stdint.h>


/* a cycle never holds more entries than this; see ngx_tce_sched_build */
#define NGX_TCE_SCHED_MAX  (1u << 20)


typedef struct ngx_tce_sched_build_s  ngx_tce_sched_build_t;


typedef struct {
    uint32_t   *seq;        /* instance indices, len entries */
    uint32_t    len;        /* 0: nothing routable */
} ngx_tce_sched_t;


/*
 * Builds the cycle for n weights (0 = instance left out).  Weights are
 * divided by their gcd first; instance i then appears exactly w[i] / gcd
 * times, and after any number of picks t its count is t * w[i] / sum
 * rounded down or up (never a whole pick away from its share).  If the
 * cycle would still be longer than NGX_TCE_SCHED_MAX (L), each instance
 * gets its exact share of L picks, w[i] * L / sum, rounded down or up
 * (largest remainders first; at least 1): off by less than one pick in
 * L (about 1/1,000,000 of the traffic), which is a relative error below
 * 1/1000 for every instance with at least 1/1000 of the total weight.
 * Returns 0, or -1 on allocation failure leaving *s empty.
 */
int ngx_tce_sched_build(ngx_tce_sched_t *s, const uint32_t *w, uint32_t n);

/*
 * The same build in slices.  ngx_tce_sched_start prepares it (the cycle
 * as above; *len its length, 0 when nothing is routable) and returns
 * NULL on allocation failure; ngx_tce_sched_run writes the next entries,
 * at most max of them, into seq (which holds *len entries; each call
 * goes on where the last stopped) and returns how many are still to
 * write; ngx_tce_sched_done frees the build (NULL is fine).
 */
ngx_tce_sched_build_t *ngx_tce_sched_start(const uint32_t *w, uint32_t n,
    uint32_t *len);
uint32_t ngx_tce_sched_run(ngx_tce_sched_build_t *b, uint32_t *seq,
    uint32_t max);
void ngx_tce_sched_done(ngx_tce_sched_build_t *b);

void ngx_tce_sched_free(ngx_tce_sched_t *s);

/*
 * Frees the bucket lists kept from the last build for the next one
 * (up to 8 MB): by a process that builds no more (the master after the
 * state file, a worker at exit).
 */
void ngx_tce_sched_spare_free(void);


#endif /* _NGX_TCE_SCHED_H_INCLUDED_ */
