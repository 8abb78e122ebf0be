/*
 * A fixture file read whole, for the unit tests that parse recorded
 * (or synthetic) payloads.  The including test defines FIXTURES, the
 * directory the names are relative to, and includes cmocka first.
 */

#ifndef _UNIT_FIXTURE_H_INCLUDED_
#define _UNIT_FIXTURE_H_INCLUDED_


#include <stdio.h>
#include <stdlib.h>


/* the file's bytes, NUL-terminated (malloc: the caller frees them) */
static char *load(const char *name, size_t *len);


static char *
load(const char *name, size_t *len)
{
    long   size;
    char  *buf, path[256];
    FILE  *f;

    snprintf(path, sizeof(path), "%s%s", FIXTURES, name);
    f = fopen(path, "rb");
    assert_non_null(f);

    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    assert_true(size > 0);
    rewind(f);

    buf = malloc(size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, size, f), (size_t) size);
    buf[size] = '\0';
    fclose(f);

    *len = (size_t) size;

    return buf;
}


#endif /* _UNIT_FIXTURE_H_INCLUDED_ */
