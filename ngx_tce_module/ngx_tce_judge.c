/*
 * The judge of a progressive deploy: the tests of ngx_tce_judge.h.
 */

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "ngx_tce_judge.h"


/* a tail's term this small beside the sum no longer counts */
#define NGX_TCE_JUDGE_EPS  1e-15

#define NGX_TCE_JUDGE_SLOW_SHARE  0.01    /* the p99 gate: 1% slower */

/* the share of alpha the error clock spends on error_ratio_vs_prod */
#define NGX_TCE_JUDGE_ERROR_SHARE  0.5


static double ngx_tce_judge_lchoose(double n, double k);


static const char  *ngx_tce_judge_names[NGX_TCE_JUDGE_NGATES] = {
    "", "error_ratio", "error_ratio_vs_prod", "p99", "p99_vs_prod",
    "diff_match_ratio", "min_requests"
};


const char *
ngx_tce_judge_gate_name(unsigned gate)
{
    return gate < NGX_TCE_JUDGE_NGATES ? ngx_tce_judge_names[gate] : "";
}


void
ngx_tce_judge_defaults(ngx_tce_judge_gates_t *g)
{
    g->alpha = 0.001;
    g->max_error_ratio = 0.05;
    g->max_error_increase = 0.01;
    g->max_p99_ratio = 1.5;
    g->min_match_ratio = 0.99;
    g->max_p99_ms = 0;
}


int
ngx_tce_judge(const ngx_tce_judge_gates_t *g, double alpha,
    const ngx_tce_judge_sample_t *canary, const ngx_tce_judge_sample_t *prod,
    const ngx_tce_judge_diff_t *diff, ngx_tce_judge_figures_t *fig)
{
    double    a[NGX_TCE_JUDGE_NGATES];
    unsigned  i;

    for (i = 0; i < NGX_TCE_JUDGE_NGATES; i++) {
        a[i] = alpha;
    }

    return ngx_tce_judge_each(g, a, canary, prod, diff, fig);
}


int
ngx_tce_judge_each(const ngx_tce_judge_gates_t *g, const double *alpha,
    const ngx_tce_judge_sample_t *canary, const ngx_tce_judge_sample_t *prod,
    const ngx_tce_judge_diff_t *diff, ngx_tce_judge_figures_t *fig)
{
    double    p, lower;
    unsigned  i, gate;
    uint64_t  slow, total;

    for (i = 0; i < NGX_TCE_JUDGE_NGATES; i++) {
        fig->p[i] = 1;
    }

    fig->canary_requests = canary->requests;
    fig->canary_errors = canary->errors;
    fig->prod_requests = prod->requests;
    fig->prod_errors = prod->errors;
    fig->canary_error_ratio = canary->requests
                              ? (double) canary->errors / canary->requests : 0;
    fig->prod_error_ratio = prod->requests
                            ? (double) prod->errors / prod->requests : 0;
    fig->canary_p99_ms = ngx_tce_judge_quantile(canary->bucket, 0.99);
    fig->prod_p99_ms = ngx_tce_judge_quantile(prod->bucket, 0.99);
    fig->match_ratio = -1;
    fig->diff.match = 0;
    fig->diff.mismatch = 0;
    fig->diff.error = 0;
    fig->diff.have = 0;
    fig->gate = NGX_TCE_JUDGE_GATE_NONE;

    gate = NGX_TCE_JUDGE_GATE_NONE;

    /* error ratio, absolute */

    if (g->max_error_ratio < 1 && canary->requests) {
        p = ngx_tce_judge_binom_sf(canary->errors, canary->requests,
                                   g->max_error_ratio);
        fig->p[NGX_TCE_JUDGE_GATE_ERROR] = p;

        if (p < alpha[NGX_TCE_JUDGE_GATE_ERROR]
            && gate == NGX_TCE_JUDGE_GATE_NONE)
        {
            gate = NGX_TCE_JUDGE_GATE_ERROR;
        }
    }

    /* error ratio against prod's over the same window */

    if (canary->requests && prod->requests) {
        p = ngx_tce_judge_fisher(canary->errors, canary->requests,
                                 canary->errors + prod->errors,
                                 prod->requests);
        fig->p[NGX_TCE_JUDGE_GATE_ERROR_REL] = p;

        if (p < alpha[NGX_TCE_JUDGE_GATE_ERROR_REL]
            && fig->canary_error_ratio - fig->prod_error_ratio
               > g->max_error_increase
            && gate == NGX_TCE_JUDGE_GATE_NONE)
        {
            gate = NGX_TCE_JUDGE_GATE_ERROR_REL;
        }
    }

    /* p99, absolute: the requests above the bound, against 1% */

    if (g->max_p99_ms && canary->requests) {
        slow = 0;

        for (i = 1; i < NGX_TCE_HIST_NBUCKETS; i++) {
            lower = (double) ngx_tce_histogram_bounds[i - 1];

            if (lower >= (double) g->max_p99_ms) {
                slow += canary->bucket[i];
            }
        }

        p = ngx_tce_judge_binom_sf(slow, canary->requests,
                                   NGX_TCE_JUDGE_SLOW_SHARE);
        fig->p[NGX_TCE_JUDGE_GATE_P99] = p;

        if (p < alpha[NGX_TCE_JUDGE_GATE_P99]
            && gate == NGX_TCE_JUDGE_GATE_NONE)
        {
            gate = NGX_TCE_JUDGE_GATE_P99;
        }
    }

    /* durations against prod's */

    if (g->max_p99_ratio > 0 && canary->requests && prod->requests) {
        p = ngx_tce_judge_mann_whitney(canary->bucket, prod->bucket,
                                       NGX_TCE_HIST_NBUCKETS);
        fig->p[NGX_TCE_JUDGE_GATE_P99_REL] = p;

        if (p < alpha[NGX_TCE_JUDGE_GATE_P99_REL] && fig->prod_p99_ms >= 0
            && fig->canary_p99_ms > fig->prod_p99_ms * g->max_p99_ratio
            && gate == NGX_TCE_JUDGE_GATE_NONE)
        {
            gate = NGX_TCE_JUDGE_GATE_P99_REL;
        }
    }

    /* the API diff: mismatches against 1 - min_match_ratio */

    if (diff && diff->have) {
        fig->diff = *diff;
        total = diff->match + diff->mismatch;

        if (total) {
            fig->match_ratio = (double) diff->match / total;
        }

        if (total && g->min_match_ratio > 0) {
            p = ngx_tce_judge_binom_sf(diff->mismatch, total,
                                       1 - g->min_match_ratio);
            fig->p[NGX_TCE_JUDGE_GATE_DIFF] = p;

            if (p < alpha[NGX_TCE_JUDGE_GATE_DIFF]
                && gate == NGX_TCE_JUDGE_GATE_NONE)
            {
                gate = NGX_TCE_JUDGE_GATE_DIFF;
            }
        }
    }

    fig->gate = gate;

    return gate == NGX_TCE_JUDGE_GATE_NONE ? NGX_TCE_JUDGE_PASS
                                           : NGX_TCE_JUDGE_FAIL;
}


double
ngx_tce_judge_alpha_look(double alpha, uint64_t step_ms, uint64_t tick_ms)
{
    uint64_t  looks;

    looks = tick_ms ? (step_ms + tick_ms - 1) / tick_ms : 1;

    return alpha / (double) (looks ? looks : 1);
}


void
ngx_tce_judge_alphas(double alpha, uint64_t step_ms, uint64_t tick_ms,
    uint64_t m, double *a)
{
    double    tick;
    unsigned  i;

    tick = tick_ms ? ngx_tce_judge_alpha_look(alpha, step_ms, tick_ms) : 0;

    for (i = 0; i < NGX_TCE_JUDGE_NGATES; i++) {
        a[i] = tick;
    }

    a[NGX_TCE_JUDGE_GATE_ERROR_REL] = tick * (1 - NGX_TCE_JUDGE_ERROR_SHARE)
                                      + ngx_tce_judge_alpha_error(alpha, m);
}


double
ngx_tce_judge_alpha_error(double alpha, uint64_t m)
{
    if (m < 2 || m > 64) {
        return 0;
    }

    /* 1/2, 1/4, 1/8, ... of the error clock's share: a sum of 1 */
    return alpha * NGX_TCE_JUDGE_ERROR_SHARE * ldexp(1, -(int) (m - 1));
}


double
ngx_tce_judge_binom_sf(uint64_t k, uint64_t n, double p)
{
    double    term, sum, r;
    uint64_t  x;

    if (k == 0) {
        return 1;
    }

    if (k > n || p <= 0) {
        return 0;
    }

    if (p >= 1 || (double) k <= (double) n * p) {
        return 1;
    }

    /* past the mode: the terms only decrease from k on */
    term = exp(ngx_tce_judge_lchoose((double) n, (double) k)
               + (double) k * log(p) + (double) (n - k) * log1p(-p));
    sum = term;
    r = p / (1 - p);

    for (x = k; x < n; x++) {
        term *= (double) (n - x) / (double) (x + 1) * r;
        sum += term;

        if (term < sum * NGX_TCE_JUDGE_EPS) {
            break;
        }
    }

    return sum < 1 ? sum : 1;
}


double
ngx_tce_judge_fisher(uint64_t a, uint64_t n1, uint64_t k, uint64_t n2)
{
    double    term, sum, n;
    uint64_t  x, max;

    n = (double) n1 + (double) n2;

    if (n1 == 0 || k == 0 || (double) a <= (double) n1 * (double) k / n) {
        return 1;
    }

    max = n1 < k ? n1 : k;

    if (a > max || n1 - a > n2) {
        return a > max ? 0 : 1;
    }

    term = exp(ngx_tce_judge_lchoose((double) k, (double) a)
               + ngx_tce_judge_lchoose(n - (double) k, (double) (n1 - a))
               - ngx_tce_judge_lchoose(n, (double) n1));
    sum = term;

    for (x = a; x < max; x++) {
        /* P(x + 1) / P(x) of the hypergeometric law */
        term *= (double) (k - x) * (double) (n1 - x)
                / ((double) (x + 1) * (n - (double) k - (double) n1
                                       + (double) x + 1));
        sum += term;

        if (term < sum * NGX_TCE_JUDGE_EPS) {
            break;
        }
    }

    return sum < 1 ? sum : 1;
}


double
ngx_tce_judge_mann_whitney(const uint64_t *canary, const uint64_t *prod,
    unsigned nbuckets)
{
    double    n1, n2, n, u, below, ties, t, mean, var, z;
    unsigned  i;

    n1 = 0;
    n2 = 0;

    for (i = 0; i < nbuckets; i++) {
        n1 += (double) canary[i];
        n2 += (double) prod[i];
    }

    if (n1 < NGX_TCE_JUDGE_MW_MIN || n2 < NGX_TCE_JUDGE_MW_MIN) {
        return 1;
    }

    /* U of the canary: pairs where it is slower, half of the ties */
    u = 0;
    below = 0;
    ties = 0;

    for (i = 0; i < nbuckets; i++) {
        u += (double) canary[i] * (below + (double) prod[i] / 2);
        below += (double) prod[i];

        t = (double) canary[i] + (double) prod[i];
        ties += t * t * t - t;
    }

    n = n1 + n2;
    mean = n1 * n2 / 2;
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)));

    if (var <= 0) {
        /* every request in one bucket: nothing tells them apart */
        return 1;
    }

    /* with the continuity correction */
    z = (u - mean - 0.5) / sqrt(var);

    return 0.5 * erfc(z / sqrt(2));
}


double
ngx_tce_judge_quantile(const uint64_t *bucket, double q)
{
    double    total, rank, cum, lower, upper;
    unsigned  i;

    total = 0;

    for (i = 0; i < NGX_TCE_HIST_NBUCKETS; i++) {
        total += (double) bucket[i];
    }

    if (total == 0) {
        return -1;
    }

    rank = q * total;
    cum = 0;

    for (i = 0; i < NGX_TCE_HIST_NBUCKETS; i++) {
        if (bucket[i] && cum + (double) bucket[i] >= rank) {
            break;
        }

        cum += (double) bucket[i];
    }

    if (i >= NGX_TCE_HIST_NBUCKETS - 1) {
        /* the +Inf bucket: its lower bound, as Prometheus answers */
        return (double) ngx_tce_histogram_bounds[NGX_TCE_HIST_NBUCKETS - 2];
    }

    lower = i ? (double) ngx_tce_histogram_bounds[i - 1] : 0;
    upper = (double) ngx_tce_histogram_bounds[i];

    return lower + (upper - lower) * (rank - cum) / (double) bucket[i];
}


static double
ngx_tce_judge_lchoose(double n, double k)
{
    return lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1);
}
