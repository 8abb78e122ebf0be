/*
 * Replays fuzz inputs without libFuzzer: every regular file of each
 * directory (or each file) named on the command line is fed once to
 * the target's LLVMFuzzerTestOneInput().  Built with gcc and the
 * sanitizers by make unit, so the committed corpora are a regression
 * check on machines without clang.  Exits 1 if an input cannot be read
 * (a sanitizer report or abort() ends the process by itself).
 */

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
static int replay_file(const char *path);
static int replay_dir(const char *dir, size_t *n);
static int replay_cmp(const void *a, const void *b);


static int
replay_file(const char *path)
{
    FILE     *f;
    long      len;
    uint8_t  *buf;

    f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }

    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        perror(path);
        fclose(f);
        return -1;
    }

    /* an exact-size copy: ASan sees any read past the input */
    buf = malloc(len > 0 ? (size_t) len : 1);
    if (buf == NULL || fread(buf, 1, (size_t) len, f) != (size_t) len) {
        fprintf(stderr, "%s: cannot read\n", path);
        free(buf);
        fclose(f);
        return -1;
    }

    fclose(f);

    LLVMFuzzerTestOneInput(buf, (size_t) len);

    free(buf);

    return 0;
}


static int
replay_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}


/* the files of dir in name order, so that a report is reproducible */

static int
replay_dir(const char *dir, size_t *n)
{
    int             rc;
    DIR            *d;
    char          **names, **p, path[4096];
    size_t          i, count, cap;
    struct stat     sb;
    struct dirent  *de;

    d = opendir(dir);
    if (d == NULL) {
        perror(dir);
        return -1;
    }

    names = NULL;
    count = 0;
    cap = 0;
    rc = 0;

    while ((de = readdir(d)) != NULL) {
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);

        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            continue;
        }

        if (count == cap) {
            cap = cap ? 2 * cap : 64;
            p = realloc(names, cap * sizeof(char *));
            if (p == NULL) {
                rc = -1;
                break;
            }

            names = p;
        }

        names[count] = strdup(path);
        if (names[count] == NULL) {
            rc = -1;
            break;
        }

        count++;
    }

    closedir(d);

    qsort(names, count, sizeof(char *), replay_cmp);

    for (i = 0; i < count; i++) {
        if (rc == 0 && replay_file(names[i]) != 0) {
            rc = -1;
        }

        free(names[i]);
    }

    free(names);
    *n += count;

    return rc;
}


int
main(int argc, char **argv)
{
    int          i, rc;
    size_t       n;
    struct stat  sb;

    rc = 0;
    n = 0;

    for (i = 1; i < argc; i++) {
        if (stat(argv[i], &sb) != 0) {
            perror(argv[i]);
            rc = 1;

        } else if (S_ISDIR(sb.st_mode)) {
            if (replay_dir(argv[i], &n) != 0) {
                rc = 1;
            }

        } else {
            n++;

            if (replay_file(argv[i]) != 0) {
                rc = 1;
            }
        }
    }

    printf("%s: %zu inputs replayed\n", argv[0], n);

    return rc;
}
