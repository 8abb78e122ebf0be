/*
 * Canary routing's pure part: sticky buckets (determinism, known
 * values any node must reproduce, monotonicity, epoch reshuffle), the
 * exact split over windows, the ends 0 and 10000, and the parsers.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_tce_canary.h"


#define NKEYS  20000


static size_t key_of(uint32_t i, char *buf, size_t size);
static uint32_t window_count(const uint8_t *seq, uint32_t from,
    uint32_t n);
static void test_parse_json_err_printable(void **state);


static size_t
key_of(uint32_t i, char *buf, size_t size)
{
    return (size_t) snprintf(buf, size, "user-%u", i);
}


static uint32_t
window_count(const uint8_t *seq, uint32_t from, uint32_t n)
{
    uint32_t  i, c;

    c = 0;

    for (i = from; i < from + n; i++) {
        c += seq[i];
    }

    return c;
}


/* values computed independently (tests/integration/test_canary.py) */
static void
test_bucket_known_values(void **state)
{
    (void) state;

    assert_int_equal(ngx_tce_canary_bucket("", 0, 0), 0);
    assert_int_equal(ngx_tce_canary_bucket("user-42", 7, 0), 1757);
    assert_int_equal(ngx_tce_canary_bucket("user-42", 7, 1), 5509);
    assert_int_equal(ngx_tce_canary_bucket("uid=abc", 7, 7), 4621);
    assert_int_equal(ngx_tce_canary_bucket("a-sixteen-bytes!", 16, 3),
                     7798);
    assert_int_equal(ngx_tce_canary_bucket("seventeen-bytes-k", 17, 3),
                     7892);
}


static void
test_bucket_uniform(void **state)
{
    char      key[32];
    size_t    len;
    uint32_t  i, b, hist[10];

    (void) state;

    memset(hist, 0, sizeof(hist));

    for (i = 0; i < NKEYS; i++) {
        len = key_of(i, key, sizeof(key));
        b = ngx_tce_canary_bucket(key, len, 3);
        assert_true(b < NGX_TCE_CANARY_SCALE);
        assert_int_equal(b, ngx_tce_canary_bucket(key, len, 3));
        hist[b / 1000]++;
    }

    /* each tenth of the range holds 10% of the keys, within 1% */
    for (i = 0; i < 10; i++) {
        assert_in_range(hist[i], NKEYS / 10 - NKEYS / 100,
                        NKEYS / 10 + NKEYS / 100);
    }
}


static void
test_sticky_monotonic(void **state)
{
    char                     key[32];
    size_t                   len;
    uint32_t                 i, w, n, prev_n;
    static uint8_t           prev[NKEYS];
    ngx_tce_canary_policy_t  p;

    (void) state;

    memset(prev, 0, sizeof(prev));
    p.epoch = 11;
    p.fallback = 1;
    prev_n = 0;

    for (w = 0; w <= NGX_TCE_CANARY_SCALE; w += 125) {
        p.weight = w;
        n = 0;

        for (i = 0; i < NKEYS; i++) {
            len = key_of(i, key, sizeof(key));

            if (ngx_tce_canary_sticky(&p, key, len) == NGX_TCE_ENV_CANARY) {
                n++;
                prev[i] = 1;

            } else {
                /* a key once in the canary never goes back as w rises */
                assert_int_equal(prev[i], 0);
            }
        }

        assert_true(n >= prev_n);
        prev_n = n;

        /* the share follows the weight, within 1% of the keys */
        assert_in_range(n, (uint64_t) NKEYS * w / NGX_TCE_CANARY_SCALE
                           - (w ? NKEYS / 100 : 0),
                        (uint64_t) NKEYS * w / NGX_TCE_CANARY_SCALE
                           + NKEYS / 100);
    }

    assert_int_equal(prev_n, NKEYS);
}


static void
test_sticky_ends(void **state)
{
    char                     key[32];
    size_t                   len;
    uint32_t                 i;
    ngx_tce_canary_policy_t  p;

    (void) state;

    p.epoch = 5;
    p.fallback = 0;

    for (i = 0; i < NKEYS; i++) {
        len = key_of(i, key, sizeof(key));

        p.weight = 0;
        assert_int_equal(ngx_tce_canary_sticky(&p, key, len),
                         NGX_TCE_ENV_PROD);

        p.weight = NGX_TCE_CANARY_SCALE;
        assert_int_equal(ngx_tce_canary_sticky(&p, key, len),
                         NGX_TCE_ENV_CANARY);
    }
}


static void
test_epoch_reshuffles(void **state)
{
    char                     key[32];
    size_t                   len;
    uint32_t                 i, moved, c1, c2;
    unsigned                 e1, e2;
    ngx_tce_canary_policy_t  p;

    (void) state;

    p.weight = 5000;
    p.fallback = 1;
    moved = 0;
    c1 = 0;
    c2 = 0;

    for (i = 0; i < NKEYS; i++) {
        len = key_of(i, key, sizeof(key));

        p.epoch = 1;
        e1 = ngx_tce_canary_sticky(&p, key, len);
        p.epoch = 2;
        e2 = ngx_tce_canary_sticky(&p, key, len);

        moved += (e1 != e2);
        c1 += (e1 == NGX_TCE_ENV_CANARY);
        c2 += (e2 == NGX_TCE_ENV_CANARY);
    }

    /* independent deals: half of the keys change side, shares stay */
    assert_in_range(moved, NKEYS / 2 - NKEYS / 50, NKEYS / 2 + NKEYS / 50);
    assert_in_range(c1, NKEYS / 2 - NKEYS / 100, NKEYS / 2 + NKEYS / 100);
    assert_in_range(c2, NKEYS / 2 - NKEYS / 100, NKEYS / 2 + NKEYS / 100);
}


static void
test_split_exact_over_windows(void **state)
{
    uint8_t                 *seq;
    uint32_t                 i, k, s, n, w, c, len;
    ngx_tce_canary_split_t   sp;
    static const uint32_t    weights[] = { 0, 1, 7, 500, 1250, 3333, 5000,
                                           9999, 10000 };
    static const uint32_t    seeds[] = { 0, 1, 4999, 9999, 123456789 };

    (void) state;

    len = 3 * NGX_TCE_CANARY_SCALE;
    seq = malloc(len);
    assert_non_null(seq);

    for (k = 0; k < sizeof(weights) / sizeof(weights[0]); k++) {
        w = weights[k];

        for (s = 0; s < sizeof(seeds) / sizeof(seeds[0]); s++) {
            ngx_tce_canary_split_init(&sp, seeds[s]);

            for (i = 0; i < len; i++) {
                seq[i] = ngx_tce_canary_split_next(&sp, w)
                         == NGX_TCE_ENV_CANARY;
            }

            /* every window of 10,000: exactly the weight (sliding) */
            c = window_count(seq, 0, NGX_TCE_CANARY_SCALE);
            assert_int_equal(c, w);

            for (i = 1; i + NGX_TCE_CANARY_SCALE <= len; i++) {
                c += seq[i + NGX_TCE_CANARY_SCALE - 1];
                c -= seq[i - 1];
                assert_int_equal(c, w);
            }

            /* and smooth: any window of n is within 1 of n * w / SCALE */
            for (n = 1; n <= 200; n += 13) {
                for (i = 0; i + n <= 2000; i++) {
                    c = window_count(seq, i, n);
                    assert_true((uint64_t) c * NGX_TCE_CANARY_SCALE
                                + NGX_TCE_CANARY_SCALE
                                > (uint64_t) n * w);
                    assert_true((uint64_t) c * NGX_TCE_CANARY_SCALE
                                < (uint64_t) n * w + NGX_TCE_CANARY_SCALE);
                }
            }
        }
    }

    free(seq);
}


static void
test_split_weight_change(void **state)
{
    uint8_t                 *seq;
    uint32_t                 i, c, len, lo, hi;
    ngx_tce_canary_split_t   sp;

    (void) state;

    len = 2 * NGX_TCE_CANARY_SCALE;
    seq = malloc(len);
    assert_non_null(seq);

    ngx_tce_canary_split_init(&sp, 777);

    /* 1% then 30%: a window across the change is within 1 of its mix */
    for (i = 0; i < len; i++) {
        seq[i] = ngx_tce_canary_split_next(&sp,
                                           i < NGX_TCE_CANARY_SCALE
                                           ? 100 : 3000)
                 == NGX_TCE_ENV_CANARY;
    }

    for (i = 0; i + NGX_TCE_CANARY_SCALE <= len; i += 97) {
        c = window_count(seq, i, NGX_TCE_CANARY_SCALE);
        lo = (NGX_TCE_CANARY_SCALE - i) * 100 / NGX_TCE_CANARY_SCALE
             + i * 3000 / NGX_TCE_CANARY_SCALE;
        hi = lo + 2;
        assert_in_range(c, lo ? lo - 1 : 0, hi);
    }

    free(seq);
}


static void
test_weight_parse(void **state)
{
    (void) state;

    assert_int_equal(ngx_tce_canary_weight_parse("0", 1), 0);
    assert_int_equal(ngx_tce_canary_weight_parse("100", 3), 10000);
    assert_int_equal(ngx_tce_canary_weight_parse("100.00", 6), 10000);
    assert_int_equal(ngx_tce_canary_weight_parse("12.5", 4), 1250);
    assert_int_equal(ngx_tce_canary_weight_parse("12.34", 5), 1234);
    assert_int_equal(ngx_tce_canary_weight_parse("0.01", 4), 1);
    assert_int_equal(ngx_tce_canary_weight_parse("07", 2), 700);
    assert_int_equal(ngx_tce_canary_weight_parse("99.99", 5), 9999);

    assert_int_equal(ngx_tce_canary_weight_parse("", 0), -1);
    assert_int_equal(ngx_tce_canary_weight_parse("100.01", 6), -1);
    assert_int_equal(ngx_tce_canary_weight_parse("101", 3), -1);
    assert_int_equal(ngx_tce_canary_weight_parse("1.234", 5), -1);
    assert_int_equal(ngx_tce_canary_weight_parse("-1", 2), -1);
    assert_int_equal(ngx_tce_canary_weight_parse(".5", 2), -1);
    assert_int_equal(ngx_tce_canary_weight_parse("5.", 2), -1);
    assert_int_equal(ngx_tce_canary_weight_parse("1.2.3", 5), -1);
    assert_int_equal(ngx_tce_canary_weight_parse("10%", 3), -1);
    assert_int_equal(ngx_tce_canary_weight_parse("99999999999", 11), -1);
    assert_int_equal(ngx_tce_canary_weight_parse("1e2", 3), -1);
}


static void
test_override_parse(void **state)
{
    (void) state;

    assert_int_equal(ngx_tce_canary_override_parse("canary", 6),
                     NGX_TCE_ENV_CANARY);
    assert_int_equal(ngx_tce_canary_override_parse("Always", 6),
                     NGX_TCE_ENV_CANARY);
    assert_int_equal(ngx_tce_canary_override_parse("prod", 4),
                     NGX_TCE_ENV_PROD);
    assert_int_equal(ngx_tce_canary_override_parse("NEVER", 5),
                     NGX_TCE_ENV_PROD);

    assert_int_equal(ngx_tce_canary_override_parse("", 0), -1);
    assert_int_equal(ngx_tce_canary_override_parse("canar", 5), -1);
    assert_int_equal(ngx_tce_canary_override_parse("canary ", 7), -1);
    assert_int_equal(ngx_tce_canary_override_parse("production", 10), -1);
    assert_int_equal(ngx_tce_canary_override_parse("1", 1), -1);
}


static void
test_parse_json(void **state)
{
    char                     err[128], *s;
    ngx_tce_canary_policy_t  p, q;

    (void) state;

    assert_int_equal(ngx_tce_canary_parse_json(
        "{\"weight_bp\":2500,\"epoch\":3,\"fallback\":false}", &p, err,
        sizeof(err)), 0);
    assert_int_equal(p.weight, 2500);
    assert_int_equal(p.epoch, 3);
    assert_int_equal(p.fallback, 0);

    /* defaults */
    assert_int_equal(ngx_tce_canary_parse_json("{\"weight_bp\":0}", &p,
                                               err, sizeof(err)), 0);
    assert_int_equal(p.weight, 0);
    assert_int_equal(p.epoch, 0);
    assert_int_equal(p.fallback, 1);

    assert_int_equal(ngx_tce_canary_parse_json("{\"weight_bp\":10000}", &p,
                                               NULL, 0), 0);
    assert_int_equal(p.weight, 10000);

    /* round trip */
    p.weight = 1234;
    p.epoch = 9007199254740993ULL;
    p.fallback = 0;
    s = ngx_tce_canary_encode_json(&p);
    assert_non_null(s);
    assert_string_equal(s, "{\"epoch\":9007199254740993,\"fallback\":false,"
                           "\"weight_bp\":1234}");
    assert_int_equal(ngx_tce_canary_parse_json(s, &q, err, sizeof(err)), 0);
    assert_memory_equal(&p, &q, sizeof(p));
    free(s);

    /* bad inputs change nothing and say why */
    p.weight = 42;

#define BAD(text, what)                                                    \
    assert_int_equal(ngx_tce_canary_parse_json(text, &p, err, sizeof(err)), \
                     -1);                                                  \
    assert_non_null(strstr(err, what));                                    \
    assert_int_equal(p.weight, 42)

    BAD("{}", "weight_bp: missing");
    BAD("{\"weight_bp\":10001}", "weight_bp: must be");
    BAD("{\"weight_bp\":-1}", "weight_bp: must be");
    BAD("{\"weight_bp\":12.5}", "weight_bp: must be");
    BAD("{\"weight_bp\":\"50\"}", "weight_bp: must be");
    BAD("{\"weight_bp\":1,\"epoch\":-2}", "epoch: must be");
    BAD("{\"weight_bp\":1,\"epoch\":1.5}", "epoch: must be");
    BAD("{\"weight_bp\":1,\"fallback\":1}", "fallback: must be");
    BAD("{\"weight_bp\":1,\"weight\":1}", "weight: unknown key");
    BAD("{\"weight_bp\":1,\"weight_bp\":2}", "duplicate");
    BAD("[1]", "must be an object");
    BAD("{\"weight_bp\":", "line 1");
    BAD("{\"weight_bp\":1,\"epoch\":99999999999999999999}", "integer");

#undef BAD
}


/* a key or jansson's text quoting control bytes used to reach the
 * error raw (nginx -t, the admin API); fuzz_canary_policy checks it */

static void
test_parse_json_err_printable(void **state)
{
    char                     *c;
    size_t                    i;
    ngx_tce_canary_policy_t   p;
    char                      err[160];
    static const char        *bad[] = {
        "{\"a\\nb\\u001b[2J\": 1}",
        "{\"weight_bp\": 1, \"\\u00e9\": 2}",
        "{\"weight_bp\": \x01}",
        "{\"weight_bp\": \"\x7f\n",
    };

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(ngx_tce_canary_parse_json(bad[i], &p, err,
                                                   sizeof(err)),
                         -1);
        assert_true(err[0] != '\0');

        for (c = err; *c != '\0'; c++) {
            if ((unsigned char) *c < 0x20 || (unsigned char) *c >= 0x7f) {
                fail_msg("input %zu: byte 0x%02x in \"%s\"", i,
                         (unsigned char) *c, err);
            }
        }
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_bucket_known_values),
        cmocka_unit_test(test_bucket_uniform),
        cmocka_unit_test(test_sticky_monotonic),
        cmocka_unit_test(test_sticky_ends),
        cmocka_unit_test(test_epoch_reshuffles),
        cmocka_unit_test(test_split_exact_over_windows),
        cmocka_unit_test(test_split_weight_change),
        cmocka_unit_test(test_weight_parse),
        cmocka_unit_test(test_override_parse),
        cmocka_unit_test(test_parse_json),
        cmocka_unit_test(test_parse_json_err_printable),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
