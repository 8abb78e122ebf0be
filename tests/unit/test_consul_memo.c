/*
 * Unit tests of ngx_tce_consul_parse_health_memo: an answer read with
 * the last answer's memo gives exactly what the same answer read whole
 * gives (ngx_tce_consul_parse_health, the oracle: its own tests are in
 * test_consul_health.c), over runs of answers that change as Consul's
 * do (a check flips, a weight or an output changes, instances come and
 * go, entries are bad or repeat an id, answers are refused), and the
 * memo is used: an entry whose bytes did not change is not read again.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_tce_instance.h"
#include "ngx_tce_consul_parse.h"
#include "ngx_tce_consul_memo.h"


#define POOL      40        /* instances an answer draws from */
#define ANSWERS   400
#define BODY_MAX  (POOL * 2 * 1024)
#define SKIPS_MAX 64


/* one instance as the double or an agent would list it */
typedef struct {
    unsigned                  node;
    unsigned                  id;
    unsigned                  weight;
    unsigned                  warning;
    unsigned                  status;     /* 0 passing, 1 warning,
                                             2 critical */
    unsigned                  output;     /* a check output's version */
    unsigned                  bad;        /* 1: a token broken, 2: a
                                             number, not an object */
} inst_t;


typedef struct {
    size_t                    n;
    size_t                    pos[SKIPS_MAX];
    char                      id[SKIPS_MAX][NGX_TCE_ID_LEN];
    char                      reason[SKIPS_MAX][NGX_TCE_CONSUL_ERR_LEN];
} skips_t;


static void on_skip(void *data, size_t n, const char *id,
    const char *reason);
static size_t body_of(char *buf, inst_t *set, size_t n);
static void mutate(inst_t *set, size_t *n, unsigned *seed);
static void same(const char *body, size_t len,
    ngx_tce_consul_memo_t **memo);
static void test_memo_reads_as_whole(void **state);
static void test_memo_skips_unchanged(void **state);


static void
on_skip(void *data, size_t n, const char *id, const char *reason)
{
    skips_t  *s;

    s = data;

    if (s->n < SKIPS_MAX) {
        s->pos[s->n] = n;
        snprintf(s->id[s->n], NGX_TCE_ID_LEN, "%s", id);
        snprintf(s->reason[s->n], NGX_TCE_CONSUL_ERR_LEN, "%s", reason);
    }

    s->n++;
}


static size_t
body_of(char *buf, inst_t *set, size_t n)
{
    size_t         i, len;
    static const char  *status[] = { "passing", "warning", "critical" };

    len = (size_t) snprintf(buf, BODY_MAX, "[");

    for (i = 0; i < n; i++) {
        if (set[i].bad == 2) {
            /* 7 then 71: a value the next one's bytes start with */
            len += (size_t) snprintf(buf + len, BODY_MAX - len, "%s%u",
                                     i ? "," : "", set[i].id);
            continue;
        }

        len += (size_t) snprintf(buf + len, BODY_MAX - len,
            "%s{\"Node\": {\"Node\": \"node%u\", \"Address\": "
            "\"10.0.%u.1\", \"Meta\": null},"
            " \"Service\": {\"ID\": \"svc-%u\", \"Service\": \"a.b.c\","
            " \"Tags\": [\"x\"], \"Port\": %s,"
            " \"Address\": \"10.1.%u.%u\","
            " \"Meta\": {\"cluster\": \"default\", \"env\": \"%s\"},"
            " \"Weights\": {\"Passing\": %u, \"Warning\": %u}},"
            " \"Checks\": [{\"CheckID\": \"service:svc-%u\","
            " \"Status\": \"%s\", \"Output\": \"v%u \\u0000 \\\"q\\\"\"}]}",
            i ? ", " : "", set[i].node, set[i].node, set[i].id,
            set[i].bad ? "8O" : "80", set[i].node, set[i].id % 250 + 1,
            set[i].id % 5 ? "prod" : "canary", set[i].weight,
            set[i].warning, set[i].id, status[set[i].status],
            set[i].output);
    }

    len += (size_t) snprintf(buf + len, BODY_MAX - len, "]");

    return len;
}


/* one change of the kind Consul's answers see */
static void
mutate(inst_t *set, size_t *n, unsigned *seed)
{
    size_t   k;
    inst_t   t;

    k = *n ? (size_t) rand_r(seed) % *n : 0;

    switch (rand_r(seed) % 10) {

    case 0:     /* an instance registers, in id order or not */
        if (*n < POOL) {
            memmove(&set[k + 1], &set[k], (*n - k) * sizeof(inst_t));
            set[k].node = (unsigned) rand_r(seed) % 4;
            set[k].id = (unsigned) rand_r(seed) % 60;
            set[k].weight = 1 + (unsigned) rand_r(seed) % 20000;
            set[k].warning = (unsigned) rand_r(seed) % 3;
            set[k].status = 0;
            set[k].output = 0;
            set[k].bad = 0;
            (*n)++;
        }
        break;

    case 1:     /* one leaves */
        if (*n) {
            memmove(&set[k], &set[k + 1], (*n - k - 1) * sizeof(inst_t));
            (*n)--;
        }
        break;

    case 2:     /* a weight */
        if (*n) {
            set[k].weight = 1 + (unsigned) rand_r(seed) % 20000;
        }
        break;

    case 3:     /* a token broken, a number, or mended */
        if (*n) {
            set[k].bad = (set[k].bad + 1) % 3;
        }
        break;

    case 4:     /* two swap */
        if (*n > 1) {
            t = set[k];
            set[k] = set[(k + 1) % *n];
            set[(k + 1) % *n] = t;
        }
        break;

    case 5:     /* an id another entry has (a duplicate) */
        if (*n > 1) {
            set[k].id = set[(k + 1) % *n].id;
            set[k].node = set[(k + 1) % *n].node;
        }
        break;

    case 8:     /* an id with a digit more or less */
        if (*n) {
            set[k].id = set[k].id < 10 ? set[k].id * 10 + 1 : set[k].id / 10;
        }
        break;

    case 6:     /* a check's output */
        if (*n) {
            set[k].output++;
        }
        break;

    default:    /* a check flips */
        if (*n) {
            set[k].status = (unsigned) rand_r(seed) % 3;
        }
    }
}


/* body read with the memo and read whole: the same, to the byte */
static void
same(const char *body, size_t len, ngx_tce_consul_memo_t **memo)
{
    int                      rc1, rc2;
    char                     err1[NGX_TCE_CONSUL_ERR_LEN];
    char                     err2[NGX_TCE_CONSUL_ERR_LEN];
    skips_t                 *s1, *s2;
    ngx_tce_consul_memo_t   *before;
    ngx_tce_consul_health_t  r1, r2;

    s1 = calloc(1, sizeof(skips_t));
    s2 = calloc(1, sizeof(skips_t));
    assert_non_null(s1);
    assert_non_null(s2);
    memset(&r1, 0, sizeof(r1));
    memset(&r2, 0, sizeof(r2));
    err1[0] = '\0';
    err2[0] = '\0';

    before = *memo;

    rc1 = ngx_tce_consul_parse_health_memo(body, len, on_skip, s1, memo,
                                           &r1, err1, sizeof(err1));
    rc2 = ngx_tce_consul_parse_health(body, len, on_skip, s2, &r2, err2,
                                      sizeof(err2));

    assert_int_equal(rc1, rc2);
    assert_string_equal(err1, err2);

    if (rc1 != 0) {
        /* a refused answer leaves the memo as it was */
        assert_ptr_equal(*memo, before);
        free(s1);
        free(s2);
        return;
    }

    assert_non_null(*memo);
    assert_int_equal(r1.ninstances, r2.ninstances);
    assert_int_equal(r1.nskipped, r2.nskipped);
    assert_int_equal(r1.nexcluded, r2.nexcluded);
    assert_int_equal(r1.nwarning, r2.nwarning);
    assert_int_equal(r1.weight_max, r2.weight_max);
    assert_string_equal(r1.reason, r2.reason);

    if (r1.ninstances) {
        assert_memory_equal(r1.instances, r2.instances,
                            r1.ninstances * sizeof(ngx_tce_instance_t));
    }

    assert_int_equal(s1->n, s2->n);
    assert_memory_equal(s1, s2, sizeof(skips_t));

    ngx_tce_consul_health_free(&r1);
    ngx_tce_consul_health_free(&r2);
    free(s1);
    free(s2);
}


static void
test_memo_reads_as_whole(void **state)
{
    char                   *body;
    size_t                  n, len, a, cut, changes;
    inst_t                  set[POOL + 1];
    unsigned                seed;
    ngx_tce_consul_memo_t  *memo;

    (void) state;

    body = malloc(BODY_MAX);
    assert_non_null(body);

    seed = 11;
    memo = NULL;
    n = 0;

    for (a = 0; a < ANSWERS; a++) {
        changes = 1 + (size_t) rand_r(&seed) % 3;

        while (changes--) {
            mutate(set, &n, &seed);
        }

        len = body_of(body, set, n);

        if (rand_r(&seed) % 25 == 0 && len > 2) {
            /* cut short, as a transfer that broke: refused */
            cut = 1 + (size_t) rand_r(&seed) % (len - 1);
            same(body, cut, &memo);
            continue;
        }

        same(body, len, &memo);
    }

    ngx_tce_consul_memo_free(memo);
    free(body);
}


/* the memo is used: only the entries whose bytes changed are read */
static void
test_memo_skips_unchanged(void **state)
{
    char                   *body;
    size_t                  i, n, len;
    inst_t                  set[POOL];
    ngx_tce_consul_memo_t  *memo;

    (void) state;

    body = malloc(BODY_MAX);
    assert_non_null(body);

    n = 30;

    for (i = 0; i < n; i++) {
        memset(&set[i], 0, sizeof(inst_t));
        set[i].node = (unsigned) i % 3;
        set[i].id = (unsigned) i;
        set[i].weight = 1 + (unsigned) i;
    }

    memo = NULL;
    len = body_of(body, set, n);
    same(body, len, &memo);
    assert_int_equal(memo->n, n);

    /* the same answer: every entry from the memo (memo->hits: how many
     * entries the answer took from the one before) */
    same(body, len, &memo);
    assert_int_equal(memo->n, n);
    assert_int_equal(memo->hits, n);

    set[7].status = 2;
    len = body_of(body, set, n);
    same(body, len, &memo);
    assert_int_equal(memo->hits, n - 1);

    /* one removed, one added: the others are found shifted */
    memmove(&set[3], &set[4], (n - 4) * sizeof(inst_t));
    set[n - 1].id = 99;
    len = body_of(body, set, n);
    same(body, len, &memo);
    assert_int_equal(memo->hits, n - 1);

    ngx_tce_consul_memo_free(memo);
    free(body);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memo_reads_as_whole),
        cmocka_unit_test(test_memo_skips_unchanged),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
