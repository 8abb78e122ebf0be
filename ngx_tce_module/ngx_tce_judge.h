/*
 * The judge of a progressive deploy (pure C, no nginx): compares the
 * canary's requests of one step with prod's over the same window and
 * says whether a gate fails, with a statistical test per gate, so that
 * a few unlucky requests do not roll a healthy canary back and a
 * clearly bad one does not pass because its counts were small.
 *
 *   error ratio, absolute   exact one-sided binomial test of the
 *                           canary's 5xx count against max_error_ratio
 *   error ratio vs prod     one-sided Fisher exact test (canary's 5xx
 *                           proportion greater than prod's), and the
 *                           difference above max_error_increase
 *   p99, absolute           exact one-sided binomial test of the
 *                           canary's requests slower than max_p99_ms
 *                           (rounded up to a bucket bound) against 1%
 *   p99 vs prod             one-sided Mann-Whitney U test on the
 *                           duration histograms (midranks for the ties
 *                           of a bucket, tie-corrected variance, normal
 *                           approximation), and the canary's p99 above
 *                           max_p99_ratio times prod's
 *   API diff match ratio    exact one-sided binomial test of the
 *                           mismatches against 1 - min_match_ratio
 *
 * A gate fails when its p-value is below alpha (and, for the relative
 * gates, the observed difference is beyond its margin).
 *
 * The looks at a step and their alphas (a step's alpha is a gate's
 * bound on a healthy canary's chance to fail it in that step):
 *
 *   the tick          every tick_ms, each gate gets alpha divided by
 *                     the step's looks (Bonferroni over fixed times);
 *                     error_ratio_vs_prod only half of that
 *   the error clock   error_ratio_vs_prod is also judged at the m-th
 *                     5xx of the window (canary and prod together):
 *                     under a healthy canary each 5xx is the canary's
 *                     with the canary's share of the requests, whenever
 *                     it comes, so the m-th 5xx is a fixed point of
 *                     this clock; it gets alpha / 2^m (m >= 2: the
 *                     other half of alpha in all), judged once, however
 *                     often the caller looks.  Two 5xx of the canary
 *                     and none of prod's at a 1% step: p about 1e-4,
 *                     under alpha / 4 = 2.5e-4 at the default alpha.
 */

#ifndef _NGX_TCE_JUDGE_H_INCLUDED_
#define _NGX_TCE_JUDGE_H_INCLUDED_


#include <stdint.h>

#include "ngx_tce_histogram.h"


#define NGX_TCE_JUDGE_PASS          0
#define NGX_TCE_JUDGE_FAIL          1

#define NGX_TCE_JUDGE_GATE_NONE     0
#define NGX_TCE_JUDGE_GATE_ERROR    1   /* "error_ratio" */
#define NGX_TCE_JUDGE_GATE_ERROR_REL 2  /* "error_ratio_vs_prod" */
#define NGX_TCE_JUDGE_GATE_P99      3   /* "p99" */
#define NGX_TCE_JUDGE_GATE_P99_REL  4   /* "p99_vs_prod" */
#define NGX_TCE_JUDGE_GATE_DIFF     5   /* "diff_match_ratio" */
#define NGX_TCE_JUDGE_GATE_MIN_REQ  6   /* "min_requests" (the caller's) */
#define NGX_TCE_JUDGE_NGATES        7

/* the Mann-Whitney test needs that many requests on each side */
#define NGX_TCE_JUDGE_MW_MIN        20


/* one env's requests over a window (differences of cumulative counters) */
typedef struct {
    uint64_t                  requests;
    uint64_t                  errors;      /* 5xx */
    uint64_t                  bucket[NGX_TCE_HIST_NBUCKETS];
} ngx_tce_judge_sample_t;


typedef struct {
    double                    alpha;
    double                    max_error_ratio;     /* 0..1 */
    double                    max_error_increase;  /* 0..1, vs prod */
    double                    max_p99_ratio;       /* vs prod, 0: off */
    double                    min_match_ratio;     /* 0..1, 0: off */
    uint64_t                  max_p99_ms;          /* 0: off */
} ngx_tce_judge_gates_t;


/* the API diff's outcomes over the window; have 0: no tce_diff */
typedef struct {
    uint64_t                  match;
    uint64_t                  mismatch;
    uint64_t                  error;
    unsigned                  have;
} ngx_tce_judge_diff_t;


/* what a look found: the figures and each test's p-value (1: not run) */
typedef struct {
    uint64_t                  canary_requests;
    uint64_t                  canary_errors;
    uint64_t                  prod_requests;
    uint64_t                  prod_errors;
    double                    canary_error_ratio;
    double                    prod_error_ratio;
    double                    canary_p99_ms;     /* -1: no request */
    double                    prod_p99_ms;
    double                    p[NGX_TCE_JUDGE_NGATES];
    ngx_tce_judge_diff_t      diff;
    double                    match_ratio;       /* -1: none */
    unsigned                  gate;              /* the first that failed */
} ngx_tce_judge_figures_t;


/*
 * Judges one look at a step: fills *fig and returns NGX_TCE_JUDGE_FAIL
 * (fig->gate names the first failing gate) or NGX_TCE_JUDGE_PASS.  The
 * relative gates need requests on both sides; diff may be NULL.
 */
int ngx_tce_judge(const ngx_tce_judge_gates_t *g, double alpha,
    const ngx_tce_judge_sample_t *canary, const ngx_tce_judge_sample_t *prod,
    const ngx_tce_judge_diff_t *diff, ngx_tce_judge_figures_t *fig);

/*
 * The same with an alpha per gate (alpha[NGX_TCE_JUDGE_NGATES]; 0: the
 * gate cannot fail).
 */
int ngx_tce_judge_each(const ngx_tce_judge_gates_t *g, const double *alpha,
    const ngx_tce_judge_sample_t *canary, const ngx_tce_judge_sample_t *prod,
    const ngx_tce_judge_diff_t *diff, ngx_tce_judge_figures_t *fig);

/*
 * Fills a[NGX_TCE_JUDGE_NGATES], the alphas of one look: a tick's
 * (tick_ms > 0; 0: a look between ticks, for the error clock only)
 * and, when m > 0, the error clock's for the window's m-th 5xx (the
 * caller passes each m once, at its first look that counts m 5xx,
 * and 0 at the others).
 */
void ngx_tce_judge_alphas(double alpha, uint64_t step_ms, uint64_t tick_ms,
    uint64_t m, double *a);

/* the error clock's alpha at the m-th 5xx: alpha / 2^m, 0 for m < 2 */
double ngx_tce_judge_alpha_error(double alpha, uint64_t m);

/*
 * The alpha of one look at a step: the step is looked at every tick_ms
 * (a failing canary is rolled back at once, not at the step's end), so
 * each look gets alpha divided by the looks of a step (Bonferroni): a
 * gate's chance to fail a healthy canary stays under alpha per step.
 */
double ngx_tce_judge_alpha_look(double alpha, uint64_t step_ms,
    uint64_t tick_ms);

/* the gate's name in the API ("error_ratio", ...); "" for NONE */
const char *ngx_tce_judge_gate_name(unsigned gate);

/* the defaults of the gates (alpha 0.001, see the README) */
void ngx_tce_judge_defaults(ngx_tce_judge_gates_t *g);

/*
 * P(X >= k) for X ~ Binomial(n, p), exactly (a sum of the tail's terms
 * until they no longer count); 1 when k <= n p, where the tail is at
 * least about one half and no test here could reject.
 */
double ngx_tce_judge_binom_sf(uint64_t k, uint64_t n, double p);

/*
 * One-sided Fisher exact test: P(X >= a) for the hypergeometric count
 * of errors among the n1 canary requests, given k errors in all among
 * n1 + n2; 1 when a is not above its expectation.
 */
double ngx_tce_judge_fisher(uint64_t a, uint64_t n1, uint64_t k,
    uint64_t n2);

/*
 * One-sided Mann-Whitney U test on bucketed durations: the p-value of
 * "the canary's durations are stochastically larger than prod's" (1
 * when either side has fewer than NGX_TCE_JUDGE_MW_MIN requests).
 */
double ngx_tce_judge_mann_whitney(const uint64_t *canary,
    const uint64_t *prod, unsigned nbuckets);

/*
 * The q-quantile (0..1) of a histogram in ms, interpolated inside its
 * bucket as Prometheus's histogram_quantile() does; -1 when empty.
 */
double ngx_tce_judge_quantile(const uint64_t *bucket, double q);


#endif /* _NGX_TCE_JUDGE_H_INCLUDED_ */
