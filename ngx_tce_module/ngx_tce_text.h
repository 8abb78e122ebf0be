/*
 * Text from outside made printable before it is stored or logged
 * (pure C, no nginx): a Consul error body, a file's bytes, a value
 * taken from a request.  Control bytes, bytes above 0x7e and the
 * backslash are written as "\xHH" (upper-case hex, as nginx's access
 * log escapes), so the result is printable ASCII, valid UTF-8 and
 * JSON, fits one log line, and still shows what was sent.
 */

#ifndef _NGX_TCE_TEXT_H_INCLUDED_
#define _NGX_TCE_TEXT_H_INCLUDED_


#include <stddef.h>


/*
 * Writes src[0..len-1] escaped into dst (size bytes, size > 0),
 * NUL-terminated, cut before an escape that would not fit whole.
 * Returns the length written (without the NUL).
 */
size_t ngx_tce_text_escape(char *dst, size_t size, const char *src,
    size_t len);

/* 1 when s[0..len-1] is printable ASCII (0x20..0x7e) throughout */
int ngx_tce_text_printable(const char *s, size_t len);


#endif /* _NGX_TCE_TEXT_H_INCLUDED_ */
