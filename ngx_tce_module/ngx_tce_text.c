/*
 * Text from outside made printable (pure C, no nginx; see
 * ngx_tce_text.h).
 */

#include "ngx_tce_text.h"


static int ngx_tce_text_plain(unsigned char c);


static const char  ngx_tce_text_hex[] = "0123456789ABCDEF";


static int
ngx_tce_text_plain(unsigned char c)
{
    return c >= 0x20 && c < 0x7f && c != '\\';
}


size_t
ngx_tce_text_escape(char *dst, size_t size, const char *src, size_t len)
{
    size_t          i, n;
    unsigned char   c;

    if (size == 0) {
        return 0;
    }

    n = 0;

    for (i = 0; i < len; i++) {
        c = (unsigned char) src[i];

        if (ngx_tce_text_plain(c)) {
            if (n + 1 >= size) {
                break;
            }

            dst[n++] = (char) c;
            continue;
        }

        if (n + 4 >= size) {
            break;
        }

        dst[n++] = '\\';
        dst[n++] = 'x';
        dst[n++] = ngx_tce_text_hex[c >> 4];
        dst[n++] = ngx_tce_text_hex[c & 0xf];
    }

    dst[n] = '\0';

    return n;
}


int
ngx_tce_text_printable(const char *s, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if ((unsigned char) s[i] < 0x20 || (unsigned char) s[i] >= 0x7f) {
            return 0;
        }
    }

    return 1;
}
