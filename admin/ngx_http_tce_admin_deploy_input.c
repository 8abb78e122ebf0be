/*
 * Progressive deploys: the checks of a POST .../deploys body and the
 * JSON of a record (see ngx_http_tce_admin_deploy.h).  Pure C.
 */

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ngx_http_tce_admin_deploy.h"
#include "ngx_tce_text.h"


static int ngx_http_tce_admin_deploy_number(json_t *v, const char *name,
    double lo, double hi, double *out, ngx_http_tce_admin_err_t *err);
static int ngx_http_tce_admin_deploy_steps(json_t *v,
    ngx_http_tce_admin_deploy_conf_t *conf, ngx_http_tce_admin_err_t *err);
static int ngx_http_tce_admin_deploy_gates(json_t *v,
    ngx_tce_judge_gates_t *g, ngx_http_tce_admin_err_t *err);
static json_t *ngx_http_tce_admin_deploy_fig_json(
    const ngx_tce_judge_figures_t *f);
static int ngx_http_tce_admin_deploy_fig_decode(json_t *j,
    ngx_tce_judge_figures_t *f);
static double ngx_http_tce_admin_deploy_real(json_t *j, const char *key,
    double dflt);
static uint64_t ngx_http_tce_admin_deploy_uint(json_t *j, const char *key);
static int ngx_http_tce_admin_deploy_str(json_t *j, const char *key,
    char *out, size_t size);


static const char  *ngx_http_tce_admin_deploy_states[] = {
    "free", "running", "paused", "promoted", "rolled_back", "failed"
};

static const char  *ngx_http_tce_admin_deploy_verdicts[] = {
    "pending", "running", "passed", "failed", "inconclusive", "stopped"
};


const char *
ngx_http_tce_admin_deploy_state_name(uint32_t state)
{
    return state <= NGX_HTTP_TCE_ADMIN_DEPLOY_FAILED
           ? ngx_http_tce_admin_deploy_states[state] : "free";
}


const char *
ngx_http_tce_admin_deploy_verdict_name(uint32_t verdict)
{
    return verdict <= NGX_HTTP_TCE_ADMIN_STEP_STOPPED
           ? ngx_http_tce_admin_deploy_verdicts[verdict] : "pending";
}


int
ngx_http_tce_admin_deploy_active(const ngx_http_tce_admin_deploy_t *d)
{
    return d->id && (d->state == NGX_HTTP_TCE_ADMIN_DEPLOY_RUNNING
                     || d->state == NGX_HTTP_TCE_ADMIN_DEPLOY_PAUSED);
}


int
ngx_http_tce_admin_deploy_parse(const char *buf, size_t len,
    ngx_http_tce_admin_deploy_conf_t *conf, ngx_http_tce_admin_err_t *err)
{
    int            rc, inconclusive;
    double         d;
    json_t        *root, *v;
    const char    *key;
    json_error_t   jerr;

    memset(conf, 0, sizeof(ngx_http_tce_admin_deploy_conf_t));

    conf->nsteps = 5;
    conf->steps_bp[0] = 100;
    conf->steps_bp[1] = 500;
    conf->steps_bp[2] = 2500;
    conf->steps_bp[3] = 5000;
    conf->steps_bp[4] = 10000;
    conf->step_ms = 60000;
    conf->min_requests = 200;
    ngx_tce_judge_defaults(&conf->gates);

    inconclusive = 0;

    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);

    if (root == NULL || !json_is_object(root)) {
        err->code = "invalid_json";
        (void) snprintf(err->text, sizeof(err->text),
                        "body: not a JSON object%s%.120s",
                        root ? "" : ": ", root ? "" : jerr.text);
        json_decref(root);
        return -1;
    }

    rc = -1;

    json_object_foreach(root, key, v) {

        if (strcmp(key, "steps") == 0) {
            if (ngx_http_tce_admin_deploy_steps(v, conf, err) != 0) {
                goto done;
            }

        } else if (strcmp(key, "step_seconds") == 0) {
            if (ngx_http_tce_admin_deploy_number(v, key, 0.5, 86400, &d, err)
                != 0)
            {
                goto done;
            }

            conf->step_ms = (uint64_t) llround(d * 1000);

        } else if (strcmp(key, "min_requests") == 0) {
            if (!json_is_integer(v)) {
                err->code = "wrong_type";
                (void) snprintf(err->text, sizeof(err->text),
                                "min_requests: must be an integer");
                goto done;
            }

            if (json_integer_value(v) < 0
                || json_integer_value(v) > 1000000000)
            {
                err->code = "out_of_range";
                (void) snprintf(err->text, sizeof(err->text),
                                "min_requests: must be 0..1000000000, "
                                "got %lld",
                                (long long) json_integer_value(v));
                goto done;
            }

            conf->min_requests = (uint64_t) json_integer_value(v);

        } else if (strcmp(key, "inconclusive_seconds") == 0) {
            if (ngx_http_tce_admin_deploy_number(v, key, 0.5, 86400, &d, err)
                != 0)
            {
                goto done;
            }

            conf->inconclusive_ms = (uint64_t) llround(d * 1000);
            inconclusive = 1;

        } else if (strcmp(key, "gates") == 0) {
            if (ngx_http_tce_admin_deploy_gates(v, &conf->gates, err) != 0) {
                goto done;
            }

        } else {
            err->code = "unknown_field";
            (void) snprintf(err->text, sizeof(err->text),
                            "body: unknown field (known: steps, "
                            "step_seconds, min_requests, "
                            "inconclusive_seconds, gates)");
            goto done;
        }
    }

    if (!inconclusive) {
        conf->inconclusive_ms = 3 * conf->step_ms;

    } else if (conf->inconclusive_ms < conf->step_ms) {
        err->code = "out_of_range";
        (void) snprintf(err->text, sizeof(err->text),
                        "inconclusive_seconds: must be at least "
                        "step_seconds");
        goto done;
    }

    rc = 0;

done:

    json_decref(root);

    return rc;
}


/* a JSON number (not a boolean) within lo..hi */
static int
ngx_http_tce_admin_deploy_number(json_t *v, const char *name, double lo,
    double hi, double *out, ngx_http_tce_admin_err_t *err)
{
    double  d;

    if (!json_is_number(v)) {
        err->code = "wrong_type";
        (void) snprintf(err->text, sizeof(err->text),
                        "%.40s: must be a number", name);
        return -1;
    }

    d = json_number_value(v);

    if (!(d >= lo && d <= hi)) {
        err->code = "out_of_range";
        (void) snprintf(err->text, sizeof(err->text),
                        "%.40s: must be %g..%g, got %g", name, lo, hi, d);
        return -1;
    }

    *out = d;

    return 0;
}


static int
ngx_http_tce_admin_deploy_steps(json_t *v,
    ngx_http_tce_admin_deploy_conf_t *conf, ngx_http_tce_admin_err_t *err)
{
    size_t    i, n;
    double    d, bp;
    uint32_t  prev;

    if (!json_is_array(v)) {
        err->code = "wrong_type";
        (void) snprintf(err->text, sizeof(err->text),
                        "steps: must be an array of percentages");
        return -1;
    }

    n = json_array_size(v);

    if (n == 0 || n > NGX_HTTP_TCE_ADMIN_DEPLOY_STEPS) {
        err->code = "out_of_range";
        (void) snprintf(err->text, sizeof(err->text),
                        "steps: must hold 1..%d percentages, got %zu",
                        NGX_HTTP_TCE_ADMIN_DEPLOY_STEPS, n);
        return -1;
    }

    prev = 0;

    for (i = 0; i < n; i++) {
        if (ngx_http_tce_admin_deploy_number(json_array_get(v, i), "steps",
                                             0.01, 100, &d, err)
            != 0)
        {
            return -1;
        }

        bp = d * 100;

        if (fabs(bp - llround(bp)) > 1e-6) {
            err->code = "out_of_range";
            (void) snprintf(err->text, sizeof(err->text),
                            "steps: at most 2 decimals, got %g", d);
            return -1;
        }

        if ((uint32_t) llround(bp) <= prev) {
            err->code = "out_of_range";
            (void) snprintf(err->text, sizeof(err->text),
                            "steps: must increase strictly, got %g after "
                            "%g", d, prev / 100.0);
            return -1;
        }

        prev = (uint32_t) llround(bp);
        conf->steps_bp[i] = prev;
    }

    conf->nsteps = (uint32_t) n;

    return 0;
}


static int
ngx_http_tce_admin_deploy_gates(json_t *v, ngx_tce_judge_gates_t *g,
    ngx_http_tce_admin_err_t *err)
{
    double       d;
    json_t      *x;
    const char  *key;

    if (!json_is_object(v)) {
        err->code = "wrong_type";
        (void) snprintf(err->text, sizeof(err->text),
                        "gates: must be an object");
        return -1;
    }

    json_object_foreach(v, key, x) {

        if (strcmp(key, "alpha") == 0) {
            if (ngx_http_tce_admin_deploy_number(x, key, 1e-9, 0.2, &d, err)
                != 0)
            {
                return -1;
            }

            g->alpha = d;

        } else if (strcmp(key, "max_error_ratio") == 0) {
            if (ngx_http_tce_admin_deploy_number(x, key, 0, 1, &d, err)
                != 0)
            {
                return -1;
            }

            g->max_error_ratio = d;

        } else if (strcmp(key, "max_error_increase") == 0) {
            if (ngx_http_tce_admin_deploy_number(x, key, 0, 1, &d, err)
                != 0)
            {
                return -1;
            }

            g->max_error_increase = d;

        } else if (strcmp(key, "max_p99_ms") == 0) {
            if (ngx_http_tce_admin_deploy_number(x, key, 0, 3600000, &d, err)
                != 0)
            {
                return -1;
            }

            g->max_p99_ms = (uint64_t) llround(d);

        } else if (strcmp(key, "max_p99_ratio") == 0) {
            if (ngx_http_tce_admin_deploy_number(x, key, 0, 1000, &d, err)
                != 0)
            {
                return -1;
            }

            if (d > 0 && d < 1) {
                err->code = "out_of_range";
                (void) snprintf(err->text, sizeof(err->text),
                                "max_p99_ratio: 0 (off) or at least 1, "
                                "got %g", d);
                return -1;
            }

            g->max_p99_ratio = d;

        } else if (strcmp(key, "min_diff_match_ratio") == 0) {
            if (ngx_http_tce_admin_deploy_number(x, key, 0, 1, &d, err)
                != 0)
            {
                return -1;
            }

            g->min_match_ratio = d;

        } else {
            err->code = "unknown_field";
            (void) snprintf(err->text, sizeof(err->text),
                            "gates: unknown field (known: alpha, "
                            "max_error_ratio, max_error_increase, "
                            "max_p99_ms, max_p99_ratio, "
                            "min_diff_match_ratio)");
            return -1;
        }
    }

    return 0;
}


json_t *
ngx_http_tce_admin_deploy_json(const ngx_http_tce_admin_deploy_t *d)
{
    json_t                                  *root, *steps, *conf, *gates,
                                            *sj, *policy;
    uint32_t                                 i;
    const ngx_http_tce_admin_deploy_step_t  *s;

    root = json_object();
    if (root == NULL) {
        return NULL;
    }

    conf = json_object();
    gates = json_object();
    steps = json_array();
    policy = json_object();

    if (json_object_set_new(root, "config", conf) != 0
        || json_object_set_new(conf, "gates", gates) != 0
        || json_object_set_new(root, "steps", steps) != 0
        || json_object_set_new(root, "canary", policy) != 0)
    {
        goto failed;
    }

    sj = json_array();

    if (json_object_set_new(conf, "steps", sj) != 0) {
        goto failed;
    }

    for (i = 0; i < d->conf.nsteps && i < NGX_HTTP_TCE_ADMIN_DEPLOY_STEPS;
         i++)
    {
        if (json_array_append_new(sj, json_real(d->conf.steps_bp[i] / 100.0))
            != 0)
        {
            goto failed;
        }
    }

    if (json_object_set_new(conf, "step_seconds",
                            json_real(d->conf.step_ms / 1000.0)) != 0
        || json_object_set_new(conf, "min_requests",
                               json_integer((json_int_t)
                                            d->conf.min_requests)) != 0
        || json_object_set_new(conf, "inconclusive_seconds",
                               json_real(d->conf.inconclusive_ms / 1000.0))
           != 0
        || json_object_set_new(gates, "alpha",
                               json_real(d->conf.gates.alpha)) != 0
        || json_object_set_new(gates, "max_error_ratio",
                               json_real(d->conf.gates.max_error_ratio)) != 0
        || json_object_set_new(gates, "max_error_increase",
                               json_real(d->conf.gates.max_error_increase))
           != 0
        || json_object_set_new(gates, "max_p99_ms",
                               json_integer((json_int_t)
                                            d->conf.gates.max_p99_ms)) != 0
        || json_object_set_new(gates, "max_p99_ratio",
                               json_real(d->conf.gates.max_p99_ratio)) != 0
        || json_object_set_new(gates, "min_diff_match_ratio",
                               json_real(d->conf.gates.min_match_ratio)) != 0
        || json_object_set_new(root, "id", json_integer((json_int_t) d->id))
           != 0
        || json_object_set_new(root, "state", json_string(
               ngx_http_tce_admin_deploy_state_name(d->state))) != 0
        || json_object_set_new(root, "step", json_integer(d->step)) != 0
        || json_object_set_new(root, "service", json_string(d->service)) != 0
        || json_object_set_new(root, "cluster", json_string(d->cluster)) != 0
        || json_object_set_new(root, "principal", json_string(d->principal))
           != 0
        || json_object_set_new(root, "created_ms",
                               json_integer((json_int_t) d->created_ms)) != 0
        || json_object_set_new(root, "updated_ms",
                               json_integer((json_int_t) d->updated_ms)) != 0
        || json_object_set_new(root, "failed_gate",
                               d->gate[0] ? json_string(d->gate)
                                          : json_null()) != 0
        || json_object_set_new(root, "reason", json_string(d->why)) != 0
        || json_object_set_new(policy, "weight_bp",
                               json_integer(d->weight_bp)) != 0
        || json_object_set_new(policy, "epoch",
                               json_integer((json_int_t) d->epoch)) != 0
        || json_object_set_new(policy, "fallback",
                               json_boolean(d->fallback)) != 0
        || json_object_set_new(policy, "owned", json_boolean(d->owns)) != 0)
    {
        goto failed;
    }

    for (i = 0; i < d->conf.nsteps && i < NGX_HTTP_TCE_ADMIN_DEPLOY_STEPS;
         i++)
    {
        s = &d->steps[i];

        sj = json_object();

        if (json_array_append_new(steps, sj) != 0
            || json_object_set_new(sj, "weight",
                                   json_real(s->weight_bp / 100.0)) != 0
            || json_object_set_new(sj, "verdict", json_string(
                   ngx_http_tce_admin_deploy_verdict_name(s->verdict)))
               != 0
            || json_object_set_new(sj, "started_ms",
                                   json_integer((json_int_t) s->started_ms))
               != 0
            || json_object_set_new(sj, "ended_ms",
                                   json_integer((json_int_t) s->ended_ms))
               != 0
            || json_object_set_new(sj, "figures",
                                   s->figures
                                   ? ngx_http_tce_admin_deploy_fig_json(
                                         &s->fig)
                                   : json_null())
               != 0)
        {
            goto failed;
        }
    }

    return root;

failed:

    json_decref(root);

    return NULL;
}


/* a p-value of 1 means the test did not run: shown as null */
static json_t *
ngx_http_tce_admin_deploy_fig_json(const ngx_tce_judge_figures_t *f)
{
    json_t    *fj, *pj;
    unsigned   i;

    fj = json_object();
    pj = json_object();

    if (fj == NULL || pj == NULL) {
        json_decref(fj);
        json_decref(pj);
        return NULL;
    }

    if (json_object_set_new(fj, "p_values", pj) != 0) {
        json_decref(fj);
        return NULL;
    }

    for (i = 1; i < NGX_TCE_JUDGE_GATE_MIN_REQ; i++) {
        if (json_object_set_new(pj, ngx_tce_judge_gate_name(i),
                                json_real(f->p[i])) != 0)
        {
            goto failed;
        }
    }

    if (json_object_set_new(fj, "canary_requests",
                            json_integer((json_int_t) f->canary_requests))
        != 0
        || json_object_set_new(fj, "canary_errors",
                               json_integer((json_int_t) f->canary_errors))
           != 0
        || json_object_set_new(fj, "prod_requests",
                               json_integer((json_int_t) f->prod_requests))
           != 0
        || json_object_set_new(fj, "prod_errors",
                               json_integer((json_int_t) f->prod_errors))
           != 0
        || json_object_set_new(fj, "canary_error_ratio",
                               json_real(f->canary_error_ratio)) != 0
        || json_object_set_new(fj, "prod_error_ratio",
                               json_real(f->prod_error_ratio)) != 0
        || json_object_set_new(fj, "canary_p99_ms",
                               f->canary_p99_ms >= 0
                               ? json_real(f->canary_p99_ms) : json_null())
           != 0
        || json_object_set_new(fj, "prod_p99_ms",
                               f->prod_p99_ms >= 0
                               ? json_real(f->prod_p99_ms) : json_null())
           != 0
        || json_object_set_new(fj, "diff_match_ratio",
                               f->match_ratio >= 0
                               ? json_real(f->match_ratio) : json_null())
           != 0
        || json_object_set_new(fj, "diff_match",
                               json_integer((json_int_t) f->diff.match)) != 0
        || json_object_set_new(fj, "diff_mismatch",
                               json_integer((json_int_t) f->diff.mismatch))
           != 0
        || json_object_set_new(fj, "diff_error",
                               json_integer((json_int_t) f->diff.error)) != 0)
    {
        goto failed;
    }

    return fj;

failed:

    json_decref(fj);

    return NULL;
}


int
ngx_http_tce_admin_deploy_decode(json_t *j, ngx_http_tce_admin_deploy_t *d,
    char *err, size_t errlen)
{
    size_t                             i, n;
    json_t                            *conf, *gates, *steps, *sj, *policy;
    const char                        *state;
    ngx_http_tce_admin_deploy_step_t  *s;

    memset(d, 0, sizeof(ngx_http_tce_admin_deploy_t));

    conf = json_object_get(j, "config");
    gates = json_object_get(conf, "gates");
    steps = json_object_get(conf, "steps");
    policy = json_object_get(j, "canary");

    if (!json_is_object(j) || !json_is_object(conf) || !json_is_object(gates)
        || !json_is_array(steps) || !json_is_object(policy))
    {
        (void) snprintf(err, errlen, "a deploy lacks config, gates, steps "
                        "or canary");
        return -1;
    }

    n = json_array_size(steps);

    if (n == 0 || n > NGX_HTTP_TCE_ADMIN_DEPLOY_STEPS) {
        (void) snprintf(err, errlen, "a deploy has %zu steps", n);
        return -1;
    }

    d->conf.nsteps = (uint32_t) n;

    for (i = 0; i < n; i++) {
        d->conf.steps_bp[i] = (uint32_t) llround(
            json_number_value(json_array_get(steps, i)) * 100);

        if (d->conf.steps_bp[i] == 0 || d->conf.steps_bp[i] > 10000) {
            (void) snprintf(err, errlen, "a deploy has a step out of range");
            return -1;
        }
    }

    d->conf.step_ms = (uint64_t) llround(
        ngx_http_tce_admin_deploy_real(conf, "step_seconds", 0) * 1000);
    d->conf.inconclusive_ms = (uint64_t) llround(
        ngx_http_tce_admin_deploy_real(conf, "inconclusive_seconds", 0)
        * 1000);
    d->conf.min_requests = ngx_http_tce_admin_deploy_uint(conf,
                                                          "min_requests");
    d->conf.gates.alpha = ngx_http_tce_admin_deploy_real(gates, "alpha", 0);
    d->conf.gates.max_error_ratio = ngx_http_tce_admin_deploy_real(gates,
                                                 "max_error_ratio", 1);
    d->conf.gates.max_error_increase = ngx_http_tce_admin_deploy_real(gates,
                                                 "max_error_increase", 1);
    d->conf.gates.max_p99_ms = ngx_http_tce_admin_deploy_uint(gates,
                                                              "max_p99_ms");
    d->conf.gates.max_p99_ratio = ngx_http_tce_admin_deploy_real(gates,
                                                 "max_p99_ratio", 0);
    d->conf.gates.min_match_ratio = ngx_http_tce_admin_deploy_real(gates,
                                                 "min_diff_match_ratio", 0);

    if (d->conf.step_ms == 0 || d->conf.gates.alpha <= 0
        || d->conf.gates.alpha > 0.2)
    {
        (void) snprintf(err, errlen, "a deploy has no step_seconds or "
                        "a bad alpha");
        return -1;
    }

    d->id = ngx_http_tce_admin_deploy_uint(j, "id");
    d->step = (uint32_t) ngx_http_tce_admin_deploy_uint(j, "step");
    d->created_ms = ngx_http_tce_admin_deploy_uint(j, "created_ms");
    d->updated_ms = ngx_http_tce_admin_deploy_uint(j, "updated_ms");
    d->weight_bp = (uint32_t) ngx_http_tce_admin_deploy_uint(policy,
                                                             "weight_bp");
    d->epoch = ngx_http_tce_admin_deploy_uint(policy, "epoch");
    d->fallback = json_is_true(json_object_get(policy, "fallback"));
    d->owns = json_is_true(json_object_get(policy, "owned"));

    state = json_string_value(json_object_get(j, "state"));

    for (i = 1; state && i <= NGX_HTTP_TCE_ADMIN_DEPLOY_FAILED; i++) {
        if (strcmp(state, ngx_http_tce_admin_deploy_states[i]) == 0) {
            d->state = (uint32_t) i;
        }
    }

    if (d->id == 0 || d->state == 0 || d->step >= n
        || d->weight_bp > 10000
        || ngx_http_tce_admin_deploy_str(j, "service", d->service,
                                         sizeof(d->service)) != 0
        || ngx_http_tce_admin_deploy_str(j, "cluster", d->cluster,
                                         sizeof(d->cluster)) != 0
        || ngx_http_tce_admin_deploy_str(j, "principal", d->principal,
                                         sizeof(d->principal)) != 0
        || ngx_http_tce_admin_deploy_str(j, "reason", d->why,
                                         sizeof(d->why)) != 0)
    {
        (void) snprintf(err, errlen, "a deploy has a bad id, state, step, "
                        "weight or name");
        return -1;
    }

    if (json_is_string(json_object_get(j, "failed_gate"))
        && ngx_http_tce_admin_deploy_str(j, "failed_gate", d->gate,
                                         sizeof(d->gate)) != 0)
    {
        (void) snprintf(err, errlen, "a deploy has a bad failed_gate");
        return -1;
    }

    steps = json_object_get(j, "steps");

    if (!json_is_array(steps) || json_array_size(steps) != n) {
        (void) snprintf(err, errlen, "a deploy's steps do not match its "
                        "config");
        return -1;
    }

    for (i = 0; i < n; i++) {
        sj = json_array_get(steps, i);
        s = &d->steps[i];

        s->weight_bp = d->conf.steps_bp[i];
        s->started_ms = ngx_http_tce_admin_deploy_uint(sj, "started_ms");
        s->ended_ms = ngx_http_tce_admin_deploy_uint(sj, "ended_ms");

        state = json_string_value(json_object_get(sj, "verdict"));

        for (s->verdict = 0;
             state && s->verdict <= NGX_HTTP_TCE_ADMIN_STEP_STOPPED;
             s->verdict++)
        {
            if (strcmp(state,
                       ngx_http_tce_admin_deploy_verdicts[s->verdict])
                == 0)
            {
                break;
            }
        }

        if (state == NULL || s->verdict > NGX_HTTP_TCE_ADMIN_STEP_STOPPED) {
            (void) snprintf(err, errlen, "a deploy's step has a bad "
                            "verdict");
            return -1;
        }

        if (json_is_object(json_object_get(sj, "figures"))) {
            s->figures = (ngx_http_tce_admin_deploy_fig_decode(
                              json_object_get(sj, "figures"), &s->fig)
                          == 0);
        }
    }

    return 0;
}


static int
ngx_http_tce_admin_deploy_fig_decode(json_t *j, ngx_tce_judge_figures_t *f)
{
    unsigned  i;
    json_t   *pj;

    memset(f, 0, sizeof(ngx_tce_judge_figures_t));

    pj = json_object_get(j, "p_values");

    for (i = 0; i < NGX_TCE_JUDGE_NGATES; i++) {
        f->p[i] = ngx_http_tce_admin_deploy_real(pj,
                                                 ngx_tce_judge_gate_name(i),
                                                 1);
    }

    f->canary_requests = ngx_http_tce_admin_deploy_uint(j, "canary_requests");
    f->canary_errors = ngx_http_tce_admin_deploy_uint(j, "canary_errors");
    f->prod_requests = ngx_http_tce_admin_deploy_uint(j, "prod_requests");
    f->prod_errors = ngx_http_tce_admin_deploy_uint(j, "prod_errors");
    f->canary_error_ratio = ngx_http_tce_admin_deploy_real(j,
                                                 "canary_error_ratio", 0);
    f->prod_error_ratio = ngx_http_tce_admin_deploy_real(j,
                                                 "prod_error_ratio", 0);
    f->canary_p99_ms = ngx_http_tce_admin_deploy_real(j, "canary_p99_ms", -1);
    f->prod_p99_ms = ngx_http_tce_admin_deploy_real(j, "prod_p99_ms", -1);
    f->match_ratio = ngx_http_tce_admin_deploy_real(j, "diff_match_ratio",
                                                    -1);
    f->diff.match = ngx_http_tce_admin_deploy_uint(j, "diff_match");
    f->diff.mismatch = ngx_http_tce_admin_deploy_uint(j, "diff_mismatch");
    f->diff.error = ngx_http_tce_admin_deploy_uint(j, "diff_error");

    return 0;
}


static double
ngx_http_tce_admin_deploy_real(json_t *j, const char *key, double dflt)
{
    json_t  *v;

    v = json_object_get(j, key);

    return json_is_number(v) ? json_number_value(v) : dflt;
}


static uint64_t
ngx_http_tce_admin_deploy_uint(json_t *j, const char *key)
{
    json_t  *v;

    v = json_object_get(j, key);

    return (json_is_integer(v) && json_integer_value(v) > 0)
           ? (uint64_t) json_integer_value(v) : 0;
}


/* a printable string that fits: 0, else -1 */
static int
ngx_http_tce_admin_deploy_str(json_t *j, const char *key, char *out,
    size_t size)
{
    json_t  *v;

    v = json_object_get(j, key);

    if (!json_is_string(v) || json_string_length(v) >= size
        || !ngx_tce_text_printable(json_string_value(v),
                                   json_string_length(v)))
    {
        return -1;
    }

    memcpy(out, json_string_value(v), json_string_length(v) + 1);

    return 0;
}
