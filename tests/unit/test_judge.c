/*
 * The deploy judge: its tests against values worked out by hand or
 * found in textbooks, and a simulation of whole deploys that measures
 * the false-rollback rate of a healthy canary (same error ratio and
 * durations as prod) and the share of bad canaries caught, with the
 * controller's look schedule (a look every 250 ms, alpha per look,
 * and the error clock's quick looks every 50 ms between them); and the
 * time a canary failing every answer takes to be rolled back at a 1%
 * step of 100 requests/s.
 */

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_tce_judge.h"


#define SIM_DEPLOYS   2000
#define SIM_RATE      200       /* requests per second, both envs */
#define SIM_STEP_MS   10000
#define SIM_TICK_MS   250
#define SIM_QUICK_MS  50
#define SIM_BAD_RUNS  200
#define SIM_MIN_REQ   50


typedef struct {
    double    error;             /* 5xx probability */
    double    bucket[NGX_TCE_HIST_NBUCKETS];  /* duration law */
} sim_env_t;


static void test_binomial(void **state);
static void test_fisher(void **state);
static void test_mann_whitney(void **state);
static void test_quantile(void **state);
static void test_gates(void **state);
static void test_alpha_look(void **state);
static void test_alphas(void **state);
static void test_simulation(void **state);
static double sim_uniform(void);
static void sim_requests(const sim_env_t *e, uint64_t n,
    ngx_tce_judge_sample_t *s);
static int sim_deploy(const sim_env_t *canary, const sim_env_t *prod);
static int sim_steps(const sim_env_t *canary, const sim_env_t *prod,
    const double *weights, unsigned nsteps, double rate, uint64_t good,
    uint64_t *ms);
static void test_error_clock(void **state);


static uint64_t  sim_state = 0x9e3779b97f4a7c15ULL;

static const double  sim_weights[] = { 0.01, 0.05, 0.25, 0.50 };


static void
test_binomial(void **state)
{
    (void) state;

    /* P(X >= 8), X ~ B(10, 1/2) = (45 + 10 + 1) / 1024 */
    assert_true(fabs(ngx_tce_judge_binom_sf(8, 10, 0.5) - 56.0 / 1024)
                < 1e-12);
    /* P(X >= 3), X ~ B(100, 0.01) = 1 - 0.99^100 - 100 * 0.01 * 0.99^99
     * - 4950 * 0.0001 * 0.99^98 = 0.0793732 */
    assert_true(fabs(ngx_tce_judge_binom_sf(3, 100, 0.01) - 0.0793732)
                < 1e-6);
    /* P(X = 20), X ~ B(20, 0.05): every request failed */
    assert_true(fabs(ngx_tce_judge_binom_sf(20, 20, 0.05) - pow(0.05, 20))
                < 1e-30);
    assert_true(ngx_tce_judge_binom_sf(0, 10, 0.5) == 1);
    assert_true(ngx_tce_judge_binom_sf(1, 100, 0.05) == 1);   /* <= np */
    assert_true(ngx_tce_judge_binom_sf(11, 10, 0.5) == 0);
    assert_true(ngx_tce_judge_binom_sf(1, 10, 0) == 0);
    /* large counts stay quick and in range */
    assert_true(ngx_tce_judge_binom_sf(12000, 1000000, 0.01) < 1e-9);
}


static void
test_fisher(void **state)
{
    (void) state;

    /* the lady tasting tea: 4 of 4 right among 8 cups, 1/70 */
    assert_true(fabs(ngx_tce_judge_fisher(4, 4, 4, 4) - 1.0 / 70) < 1e-12);
    /* 3 of 4: (16 + 1) / 70 */
    assert_true(fabs(ngx_tce_judge_fisher(3, 4, 4, 4) - 17.0 / 70)
                < 1e-12);
    /* canary 6 errors of 200, prod 0 of 1000: C(200,6) / C(1200,6) */
    assert_true(fabs(ngx_tce_judge_fisher(6, 200, 6, 1000) - 2.01212e-5)
                < 1e-9);
    /* at or below the expectation: no evidence */
    assert_true(ngx_tce_judge_fisher(1, 100, 10, 900) == 1);
    assert_true(ngx_tce_judge_fisher(0, 100, 0, 900) == 1);
    assert_true(ngx_tce_judge_fisher(5, 100, 5, 0) == 1);
    assert_true(ngx_tce_judge_fisher(30000, 100000, 40000, 1000000)
                < 1e-12);
}


static void
test_mann_whitney(void **state)
{
    uint64_t  a[NGX_TCE_HIST_NBUCKETS], b[NGX_TCE_HIST_NBUCKETS];
    double    p;

    (void) state;

    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));

    /*
     * 20 canary requests in bucket 2, 20 prod requests in bucket 1:
     * U = 400, mean 200, ties 2 * (20^3 - 20), var = 400/12 * (41 -
     * 15960/1560) = 1025.64, z = 199.5 / 32.026 = 6.229, p = 2.35e-10
     */
    a[2] = 20;
    b[1] = 20;
    p = ngx_tce_judge_mann_whitney(a, b, NGX_TCE_HIST_NBUCKETS);
    assert_true(p > 2.0e-10 && p < 2.7e-10);

    /* the other way round: no evidence the canary is slower */
    p = ngx_tce_judge_mann_whitney(b, a, NGX_TCE_HIST_NBUCKETS);
    assert_true(p > 0.999);

    /* the same law: about one half */
    a[1] = 20;
    a[2] = 0;
    p = ngx_tce_judge_mann_whitney(a, b, NGX_TCE_HIST_NBUCKETS);
    assert_true(p == 1);   /* every request in one bucket */

    a[1] = 50;
    a[2] = 50;
    b[1] = 50;
    b[2] = 50;
    p = ngx_tce_judge_mann_whitney(a, b, NGX_TCE_HIST_NBUCKETS);
    assert_true(p > 0.45 && p < 0.55);

    /* too few requests */
    a[1] = 5;
    a[2] = 5;
    p = ngx_tce_judge_mann_whitney(a, b, NGX_TCE_HIST_NBUCKETS);
    assert_true(p == 1);
}


static void
test_quantile(void **state)
{
    uint64_t  h[NGX_TCE_HIST_NBUCKETS];

    (void) state;

    memset(h, 0, sizeof(h));
    assert_true(ngx_tce_judge_quantile(h, 0.99) == -1);

    /* 100 requests in (10, 25] ms: p99 = 10 + 15 * 0.99 */
    h[2] = 100;
    assert_true(fabs(ngx_tce_judge_quantile(h, 0.99) - 24.85) < 1e-9);

    /* 98 in (0, 5], 2 in (50, 100]: the 99th is in the second */
    h[2] = 0;
    h[0] = 98;
    h[4] = 2;
    assert_true(fabs(ngx_tce_judge_quantile(h, 0.99) - 75) < 1e-9);

    /* the +Inf bucket: its lower bound, 60 s */
    h[13] = 1000;
    assert_true(ngx_tce_judge_quantile(h, 0.99) == 60000);
}


static void
test_gates(void **state)
{
    ngx_tce_judge_diff_t     d;
    ngx_tce_judge_gates_t    g;
    ngx_tce_judge_sample_t   c, p;
    ngx_tce_judge_figures_t  f;

    (void) state;

    ngx_tce_judge_defaults(&g);
    memset(&c, 0, sizeof(c));
    memset(&p, 0, sizeof(p));

    /* 3% 5xx against 0%: the relative gate */
    c.requests = 200;
    c.errors = 6;
    c.bucket[1] = 200;
    p.requests = 1000;
    p.bucket[1] = 1000;
    assert_int_equal(ngx_tce_judge(&g, g.alpha, &c, &p, NULL, &f),
                     NGX_TCE_JUDGE_FAIL);
    assert_int_equal(f.gate, NGX_TCE_JUDGE_GATE_ERROR_REL);
    assert_string_equal(ngx_tce_judge_gate_name(f.gate),
                        "error_ratio_vs_prod");
    assert_true(fabs(f.canary_error_ratio - 0.03) < 1e-12);

    /* 1 error of 200 against 0 of 1000: unlucky, not worse */
    c.errors = 1;
    assert_int_equal(ngx_tce_judge(&g, g.alpha, &c, &p, NULL, &f),
                     NGX_TCE_JUDGE_PASS);
    assert_int_equal(f.gate, NGX_TCE_JUDGE_GATE_NONE);

    /* 15% with no prod traffic: the absolute gate (5%) */
    c.errors = 30;
    p.requests = 0;
    p.bucket[1] = 0;
    assert_int_equal(ngx_tce_judge(&g, g.alpha, &c, &p, NULL, &f),
                     NGX_TCE_JUDGE_FAIL);
    assert_int_equal(f.gate, NGX_TCE_JUDGE_GATE_ERROR);

    /* three times slower: (50, 100] against (10, 25] */
    c.errors = 0;
    c.bucket[1] = 0;
    c.bucket[4] = 200;
    p.requests = 1000;
    p.bucket[2] = 1000;
    assert_int_equal(ngx_tce_judge(&g, g.alpha, &c, &p, NULL, &f),
                     NGX_TCE_JUDGE_FAIL);
    assert_int_equal(f.gate, NGX_TCE_JUDGE_GATE_P99_REL);
    assert_true(f.canary_p99_ms > 3 * 24);

    /* the absolute p99: 100 ms, every request above 50 */
    g.max_p99_ratio = 0;
    assert_int_equal(ngx_tce_judge(&g, g.alpha, &c, &p, NULL, &f),
                     NGX_TCE_JUDGE_PASS);
    g.max_p99_ms = 50;
    assert_int_equal(ngx_tce_judge(&g, g.alpha, &c, &p, NULL, &f),
                     NGX_TCE_JUDGE_FAIL);
    assert_int_equal(f.gate, NGX_TCE_JUDGE_GATE_P99);
    g.max_p99_ms = 100;
    assert_int_equal(ngx_tce_judge(&g, g.alpha, &c, &p, NULL, &f),
                     NGX_TCE_JUDGE_PASS);

    /* the API diff: 90% match against a floor of 99% */
    d.match = 180;
    d.mismatch = 20;
    d.error = 3;
    d.have = 1;
    assert_int_equal(ngx_tce_judge(&g, g.alpha, &c, &p, &d, &f),
                     NGX_TCE_JUDGE_FAIL);
    assert_int_equal(f.gate, NGX_TCE_JUDGE_GATE_DIFF);
    assert_true(fabs(f.match_ratio - 0.9) < 1e-12);
    d.match = 199;
    d.mismatch = 1;
    assert_int_equal(ngx_tce_judge(&g, g.alpha, &c, &p, &d, &f),
                     NGX_TCE_JUDGE_PASS);
}


static void
test_alpha_look(void **state)
{
    (void) state;

    assert_true(fabs(ngx_tce_judge_alpha_look(0.001, 60000, 250)
                     - 0.001 / 240) < 1e-15);
    assert_true(fabs(ngx_tce_judge_alpha_look(0.001, 1100, 250)
                     - 0.001 / 5) < 1e-15);
    assert_true(ngx_tce_judge_alpha_look(0.001, 0, 250) == 0.001);
}


static void
test_alphas(void **state)
{
    double  a[NGX_TCE_JUDGE_NGATES];

    (void) state;

    /* the error clock: alpha / 2^m from the second 5xx on */
    assert_true(ngx_tce_judge_alpha_error(0.001, 0) == 0);
    assert_true(ngx_tce_judge_alpha_error(0.001, 1) == 0);
    assert_true(fabs(ngx_tce_judge_alpha_error(0.001, 2) - 0.00025)
                < 1e-15);
    assert_true(fabs(ngx_tce_judge_alpha_error(0.001, 5) - 0.001 / 32)
                < 1e-15);

    /* a tick at the third 5xx: half the tick's alpha and the clock's */
    ngx_tce_judge_alphas(0.001, 60000, 250, 3, a);
    assert_true(fabs(a[NGX_TCE_JUDGE_GATE_ERROR] - 0.001 / 240) < 1e-15);
    assert_true(fabs(a[NGX_TCE_JUDGE_GATE_P99_REL] - 0.001 / 240) < 1e-15);
    assert_true(fabs(a[NGX_TCE_JUDGE_GATE_ERROR_REL]
                     - (0.0005 / 240 + 0.001 / 8)) < 1e-15);

    /* a quick look: the error clock's gate only */
    ngx_tce_judge_alphas(0.001, 60000, 0, 2, a);
    assert_true(a[NGX_TCE_JUDGE_GATE_ERROR] == 0);
    assert_true(a[NGX_TCE_JUDGE_GATE_DIFF] == 0);
    assert_true(fabs(a[NGX_TCE_JUDGE_GATE_ERROR_REL] - 0.00025) < 1e-15);
}


/* xorshift64*: the same draws on every run */
static double
sim_uniform(void)
{
    sim_state ^= sim_state >> 12;
    sim_state ^= sim_state << 25;
    sim_state ^= sim_state >> 27;

    return (double) ((sim_state * 0x2545f4914f6cdd1dULL) >> 11)
           / 9007199254740992.0;
}


static void
sim_requests(const sim_env_t *e, uint64_t n, ngx_tce_judge_sample_t *s)
{
    double    u;
    unsigned  b;
    uint64_t  i;

    for (i = 0; i < n; i++) {
        s->requests++;

        if (sim_uniform() < e->error) {
            s->errors++;
        }

        u = sim_uniform();

        for (b = 0; b < NGX_TCE_HIST_NBUCKETS - 1 && u >= e->bucket[b]; b++) {
            u -= e->bucket[b];
        }

        s->bucket[b]++;
    }
}


/*
 * One deploy at SIM_RATE requests per second: steps of sim_weights,
 * SIM_STEP_MS each, looked at every SIM_TICK_MS as the controller
 * does.  Returns the step (from 1) that rolled it back, 0: promoted.
 */
static int
sim_deploy(const sim_env_t *canary, const sim_env_t *prod)
{
    uint64_t  ms;

    return sim_steps(canary, prod, sim_weights,
                     sizeof(sim_weights) / sizeof(double), SIM_RATE, 0, &ms);
}


/*
 * Steps of weights at rate requests per second, SIM_STEP_MS each, the
 * canary's requests spread evenly (one every 1 / (rate w) s, the
 * first at the step's start, as a weighted round robin sends them):
 * a tick every SIM_TICK_MS, a quick look every SIM_QUICK_MS between
 * them for the error clock, as the controller does.  The canary
 * answers its first good requests of each step as prod does (then as
 * *canary).  Returns the step (from 1) that rolled it back, 0:
 * promoted; *ms: the time from the canary's first answer as *canary
 * to the rollback's look.
 */
static int
sim_steps(const sim_env_t *canary, const sim_env_t *prod,
    const double *weights, unsigned nsteps, double rate, uint64_t good,
    uint64_t *ms)
{
    double                   a[NGX_TCE_JUDGE_NGATES], acc_c, acc_p;
    unsigned                 step, look, nlooks, tick;
    uint64_t                 nc, np, m, looked, first;
    ngx_tce_judge_gates_t    g;
    ngx_tce_judge_sample_t   c, p;
    ngx_tce_judge_figures_t  f;

    ngx_tce_judge_defaults(&g);
    nlooks = SIM_STEP_MS / SIM_QUICK_MS;

    for (step = 0; step < nsteps; step++) {
        memset(&c, 0, sizeof(c));
        memset(&p, 0, sizeof(p));
        acc_c = 1;
        acc_p = 0;
        looked = 0;
        first = 0;

        for (look = 0; look < nlooks; look++) {
            nc = (uint64_t) acc_c - c.requests;
            np = (uint64_t) acc_p - p.requests;

            while (nc--) {
                if (c.requests < good) {
                    sim_requests(prod, 1, &c);

                } else {
                    if (c.requests == good) {
                        first = (uint64_t) look * SIM_QUICK_MS;
                    }

                    sim_requests(canary, 1, &c);
                }
            }

            sim_requests(prod, np, &p);

            acc_c += rate * SIM_QUICK_MS / 1000.0 * weights[step];
            acc_p += rate * SIM_QUICK_MS / 1000.0 * (1 - weights[step]);

            tick = ((look + 1) % (SIM_TICK_MS / SIM_QUICK_MS) == 0);
            m = c.errors + p.errors;

            if (m > looked) {
                looked = m;

            } else if (!tick) {
                continue;

            } else {
                m = 0;
            }

            ngx_tce_judge_alphas(g.alpha, SIM_STEP_MS,
                                 tick ? SIM_TICK_MS : 0, m, a);

            if (ngx_tce_judge_each(&g, a, &c, &p, NULL, &f)
                == NGX_TCE_JUDGE_FAIL)
            {
                *ms = (uint64_t) look * SIM_QUICK_MS - first;
                return step + 1;
            }
        }
    }

    *ms = 0;

    return 0;
}


static void
test_simulation(void **state)
{
    int        i, rc, fp, caught_err, caught_mild, caught_lat, step1;
    sim_env_t  prod, prod0, same, bad_err, mild_err, bad_lat;

    (void) state;

    /* prod: 1% 5xx, durations mostly 5-25 ms with a tail */
    memset(&prod, 0, sizeof(prod));
    prod.error = 0.01;
    prod.bucket[0] = 0.20;
    prod.bucket[1] = 0.50;
    prod.bucket[2] = 0.25;
    prod.bucket[3] = 0.04;
    prod.bucket[4] = 0.01;

    same = prod;

    /* the case: 3% against 0%; and 4% against 1% */
    prod0 = prod;
    prod0.error = 0;
    bad_err = prod;
    bad_err.error = 0.03;
    mild_err = prod;
    mild_err.error = 0.04;

    /* three times slower: every request three buckets up or so */
    memset(&bad_lat, 0, sizeof(bad_lat));
    bad_lat.error = 0.01;
    bad_lat.bucket[2] = 0.20;
    bad_lat.bucket[3] = 0.50;
    bad_lat.bucket[4] = 0.25;
    bad_lat.bucket[5] = 0.05;

    fp = 0;
    caught_err = 0;
    caught_mild = 0;
    caught_lat = 0;
    step1 = 0;

    for (i = 0; i < SIM_DEPLOYS; i++) {
        fp += sim_deploy(&same, &prod) != 0;
    }

    for (i = 0; i < SIM_DEPLOYS / 4; i++) {
        caught_err += sim_deploy(&bad_err, &prod0) != 0;
        caught_mild += sim_deploy(&mild_err, &prod) != 0;
        rc = sim_deploy(&bad_lat, &prod);
        step1 += (rc == 1 || rc == 2);
        caught_lat += 1;
    }

    printf("judge simulation: %d deploys of a healthy canary (1%% 5xx as "
           "prod, same durations), %d req/s, steps 1/5/25/50%% of %d ms, "
           "a look every %d ms: %d rolled back (%.2f%%)\n",
           SIM_DEPLOYS, SIM_RATE, SIM_STEP_MS, SIM_TICK_MS, fp,
           100.0 * fp / SIM_DEPLOYS);
    printf("judge simulation: 3%% 5xx against 0%%: %d of %d rolled back; "
           "4%% against 1%%: %d of %d; 3x slower: %d of %d rolled back in "
           "the first two steps (1%%, 5%%)\n", caught_err, SIM_DEPLOYS / 4,
           caught_mild, SIM_DEPLOYS / 4, step1, caught_lat);

    /* the README states under 0.5% per deploy; measured well below */
    assert_true(fp * 200 < SIM_DEPLOYS);
    assert_true(caught_err * 100 >= 99 * (SIM_DEPLOYS / 4));
    assert_true(step1 * 100 >= 99 * caught_lat);
}


/*
 * The case: a 1% step at 100 requests/s (one canary answer a
 * second), the canary answering 500 to everything from its first
 * answer or after 5 good ones; prod at 0% or 1% of 5xx.  The time from
 * the canary's first 500 to the look that rolls it back (the answers
 * come a second apart: its second 500 at 1 s).
 */
static void
test_error_clock(void **state)
{
    int         i, k, rc;
    double      w;
    uint64_t    ms, worst[4], sum[4];
    sim_env_t   bad, prod0, prod1;

    (void) state;

    memset(&prod0, 0, sizeof(prod0));
    prod0.bucket[1] = 1;
    prod1 = prod0;
    prod1.error = 0.01;
    bad = prod0;
    bad.error = 1;
    w = 0.01;

    for (k = 0; k < 4; k++) {
        worst[k] = 0;
        sum[k] = 0;

        for (i = 0; i < SIM_BAD_RUNS; i++) {
            rc = sim_steps(&bad, (k & 1) ? &prod1 : &prod0, &w, 1, 100,
                           (k & 2) ? 5 : 0, &ms);
            assert_int_equal(rc, 1);

            worst[k] = ms > worst[k] ? ms : worst[k];
            sum[k] += ms;
        }

        printf("judge simulation: 1%% step at 100 req/s, canary 100%% 5xx "
               "%s, prod %s: rolled back %.0f ms after its first 500 on "
               "average, %d ms at most (%d runs)\n",
               (k & 2) ? "after 5 good answers" : "from its first",
               (k & 1) ? "1% 5xx" : "0% 5xx",
               (double) sum[k] / SIM_BAD_RUNS, (int) worst[k],
               SIM_BAD_RUNS);
    }

    /* prod without 5xx: at the canary's second 500 */
    assert_true(worst[0] <= 1000 + SIM_QUICK_MS);
    assert_true(worst[2] <= 1000 + SIM_QUICK_MS);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binomial),
        cmocka_unit_test(test_fisher),
        cmocka_unit_test(test_mann_whitney),
        cmocka_unit_test(test_quantile),
        cmocka_unit_test(test_gates),
        cmocka_unit_test(test_alpha_look),
        cmocka_unit_test(test_alphas),
        cmocka_unit_test(test_simulation),
        cmocka_unit_test(test_error_clock),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
