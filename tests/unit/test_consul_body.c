/*
 * Tests of ngx_tce_consul_body_gunzip(): the watches' answers are
 * decoded from gzip on the background thread.  The oracle is zlib's
 * own encoder (deflateInit2 with a gzip wrapper), not the decoder
 * under test.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <zlib.h>

#include "ngx_tce_consul_client.h"


static void gzip_into(ngx_tce_consul_body_t *b, const char *text, size_t len,
    size_t limit);
static void append_gzip(ngx_tce_consul_body_t *b, const char *text,
    size_t len);
static char *json_text(size_t len);


/* a body as the client received it: gzip bytes, flagged */
static void
gzip_into(ngx_tce_consul_body_t *b, const char *text, size_t len,
    size_t limit)
{
    memset(b, 0, sizeof(ngx_tce_consul_body_t));
    append_gzip(b, text, len);
    b->gzip = 1;
    b->limit = limit;
}


/* one more gzip member after what b holds */
static void
append_gzip(ngx_tce_consul_body_t *b, const char *text, size_t len)
{
    size_t    bound;
    z_stream  z;

    memset(&z, 0, sizeof(z_stream));
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8,
                                  Z_DEFAULT_STRATEGY), Z_OK);

    bound = deflateBound(&z, len) + 32;
    assert_int_equal(ngx_tce_consul_body_grow(b, b->len + bound + 1), 0);

    z.next_in = (Bytef *) text;
    z.avail_in = (uInt) len;
    z.next_out = (Bytef *) b->data + b->len;
    z.avail_out = (uInt) bound;

    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    b->len += bound - z.avail_out;
    b->data[b->len] = '\0';

    deflateEnd(&z);
}


/* len bytes shaped like a Consul answer, not all alike */
static char *
json_text(size_t len)
{
    char    *p;
    size_t   i;

    p = malloc(len + 1);
    assert_non_null(p);

    for (i = 0; i < len; i++) {
        p[i] = "[{\"Node\":\"n\",\"ID\":\"0123456789\"}]"[i % 32]
               ^ (char) ((i / 4096) & 1);
    }

    p[len] = '\0';

    return p;
}


static void
test_small_and_large(void **state)
{
    char                    err[128], *text;
    size_t                  sizes[] = { 1, 100, 70000, 1300000 }, i;
    ngx_tce_consul_body_t   b;

    (void) state;

    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        text = json_text(sizes[i]);
        gzip_into(&b, text, sizes[i], 16 * 1024 * 1024);
        assert_true(b.len < sizes[i] + 64);

        assert_int_equal(ngx_tce_consul_body_gunzip(&b, err, sizeof(err)),
                         0);
        assert_int_equal(b.gzip, 0);
        assert_int_equal(b.len, sizes[i]);
        assert_memory_equal(b.data, text, sizes[i]);
        assert_int_equal(b.data[b.len], '\0');

        ngx_tce_consul_body_free(&b);
        free(text);
    }
}


static void
test_limit(void **state)
{
    char                    err[128], *text;
    ngx_tce_consul_body_t   b;

    (void) state;

    text = json_text(200000);

    /* exactly the limit: decoded */
    gzip_into(&b, text, 200000, 200000);
    assert_int_equal(ngx_tce_consul_body_gunzip(&b, err, sizeof(err)), 0);
    assert_int_equal(b.len, 200000);
    ngx_tce_consul_body_free(&b);

    /* one byte more: refused, the body freed */
    gzip_into(&b, text, 200000, 199999);
    assert_int_equal(ngx_tce_consul_body_gunzip(&b, err, sizeof(err)), -1);
    assert_string_equal(err, "body larger than 199999 bytes");
    assert_null(b.data);

    /* a trailer that lies about the size changes nothing */
    gzip_into(&b, text, 200000, 100000);
    b.data[b.len - 4] = 10;
    b.data[b.len - 3] = 0;
    b.data[b.len - 2] = 0;
    b.data[b.len - 1] = 0;
    assert_int_equal(ngx_tce_consul_body_gunzip(&b, err, sizeof(err)), -1);
    assert_string_equal(err, "body larger than 100000 bytes");

    free(text);
}


static void
test_bad_input(void **state)
{
    char                    err[128], *text;
    ngx_tce_consul_body_t   b;

    (void) state;

    text = json_text(5000);

    /* cut short */
    gzip_into(&b, text, 5000, 1 << 20);
    b.len /= 2;
    assert_int_equal(ngx_tce_consul_body_gunzip(&b, err, sizeof(err)), -1);
    assert_string_equal(err, "gzip body: truncated");
    assert_null(b.data);

    /* shorter than a gzip header and trailer */
    gzip_into(&b, text, 5000, 1 << 20);
    b.len = 10;
    assert_int_equal(ngx_tce_consul_body_gunzip(&b, err, sizeof(err)), -1);
    assert_string_equal(err, "gzip body: truncated");

    /* not gzip at all */
    gzip_into(&b, text, 5000, 1 << 20);
    memcpy(b.data, "<html><body>bad gateway</body></html>", 37);
    assert_int_equal(ngx_tce_consul_body_gunzip(&b, err, sizeof(err)), -1);
    assert_true(strncmp(err, "gzip body: ", 11) == 0);

    /* a damaged checksum */
    gzip_into(&b, text, 5000, 1 << 20);
    b.data[b.len - 8] ^= 0x55;
    assert_int_equal(ngx_tce_consul_body_gunzip(&b, err, sizeof(err)), -1);
    assert_string_equal(err, "gzip body: incorrect data check");

    free(text);
}


static void
test_two_members(void **state)
{
    char                    err[128];
    ngx_tce_consul_body_t   b;

    (void) state;

    gzip_into(&b, "[{\"a\":", 6, 1024);
    append_gzip(&b, "1}]", 3);

    assert_int_equal(ngx_tce_consul_body_gunzip(&b, err, sizeof(err)), 0);
    assert_string_equal(b.data, "[{\"a\":1}]");
    ngx_tce_consul_body_free(&b);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_and_large),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_two_members),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
