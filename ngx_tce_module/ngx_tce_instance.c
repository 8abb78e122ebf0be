/*
 * Validation of the registry's names and values (pure C, no nginx).
 */

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_tce_instance.h"


static int ngx_tce_name_char(int c);
static int ngx_tce_label_valid(const char *s, size_t len);
static int ngx_tce_instance_cmp(const void *a, const void *b);


static const char  *ngx_tce_env_names[] = { "prod", "canary" };
static const char  *ngx_tce_state_names[] = { "up", "draining", "down" };


static int
ngx_tce_name_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
           || c == '_' || c == '-';
}


int
ngx_tce_service_name_valid(const char *name, size_t len)
{
    size_t  i, part, dots;

    if (len == 0 || len >= NGX_TCE_SERVICE_LEN) {
        return 0;
    }

    part = 0;
    dots = 0;

    for (i = 0; i < len; i++) {
        if (name[i] == '.') {
            if (part == 0) {
                return 0;
            }

            dots++;
            part = 0;
            continue;
        }

        if (!ngx_tce_name_char((unsigned char) name[i])) {
            return 0;
        }

        part++;
    }

    return dots == 2 && part > 0;
}


int
ngx_tce_cluster_name_valid(const char *name, size_t len)
{
    size_t  i;
    int     c;

    if (len == 0 || len >= NGX_TCE_CLUSTER_LEN) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = (unsigned char) name[i];

        if (!ngx_tce_name_char(c) && !(c >= 'A' && c <= 'Z') && c != '.') {
            return 0;
        }
    }

    return 1;
}


int
ngx_tce_id_valid(const char *id, size_t len)
{
    return len > 0 && len < NGX_TCE_ID_LEN && ngx_tce_label_valid(id, len);
}


int
ngx_tce_version_valid(const char *v, size_t len)
{
    /* 0..63 as documented: 64..127 used to pass (the id's bound) */
    return len < NGX_TCE_VERSION_LEN && ngx_tce_label_valid(v, len);
}


/* the alphabet of ids and versions; the caller checks the length */

static int
ngx_tce_label_valid(const char *s, size_t len)
{
    size_t  i;
    int     c;

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        /* printable ASCII, no characters that need escaping anywhere */
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '\''
            || c == '{' || c == '}' || c == ',' || c == '=')
        {
            return 0;
        }
    }

    return 1;
}


int
ngx_tce_addr_set(const char *host, size_t len, long port,
    ngx_tce_instance_t *inst)
{
    char                 buf[INET6_ADDRSTRLEN + 1];
    struct in_addr       a4;
    struct in6_addr      a6;

    if (len == 0 || len >= sizeof(buf) || port < 1 || port > 65535) {
        return -1;
    }

    /* inet_pton() would stop at a NUL: "::\0junk" is not "::" */
    if (memchr(host, '\0', len) != NULL) {
        return -1;
    }

    memcpy(buf, host, len);
    buf[len] = '\0';

    if (inet_pton(AF_INET, buf, &a4) == 1) {
        memset(&inst->sockaddr, 0, sizeof(inst->sockaddr));
        inst->sockaddr.sin.sin_family = AF_INET;
        inst->sockaddr.sin.sin_port = htons((uint16_t) port);
        inst->sockaddr.sin.sin_addr = a4;
        inst->socklen = sizeof(struct sockaddr_in);

        inet_ntop(AF_INET, &a4, buf, sizeof(buf));
        snprintf(inst->addr, sizeof(inst->addr), "%s:%ld", buf, port);
        return 0;
    }

    if (inet_pton(AF_INET6, buf, &a6) == 1) {
        memset(&inst->sockaddr, 0, sizeof(inst->sockaddr));
        inst->sockaddr.sin6.sin6_family = AF_INET6;
        inst->sockaddr.sin6.sin6_port = htons((uint16_t) port);
        inst->sockaddr.sin6.sin6_addr = a6;
        inst->socklen = sizeof(struct sockaddr_in6);

        inet_ntop(AF_INET6, &a6, buf, sizeof(buf));
        snprintf(inst->addr, sizeof(inst->addr), "[%s]:%ld", buf, port);
        return 0;
    }

    return -1;
}


int
ngx_tce_addr_parse(const char *text, size_t len, ngx_tce_instance_t *inst)
{
    size_t       i, hlen;
    long         port;
    const char  *host, *p, *last;

    if (len == 0 || len >= NGX_TCE_ADDR_LEN) {
        return -1;
    }

    last = text + len;

    if (text[0] == '[') {
        p = memchr(text, ']', len);

        if (p == NULL || p + 1 >= last || p[1] != ':') {
            return -1;
        }

        host = text + 1;
        hlen = p - host;
        p += 2;

        /* brackets are for IPv6 only: "[192.0.2.1]:80" is refused */
        if (memchr(host, ':', hlen) == NULL) {
            return -1;
        }

    } else {
        p = NULL;

        for (i = len; i > 0; i--) {
            if (text[i - 1] == ':') {
                p = text + i - 1;
                break;
            }
        }

        if (p == NULL || memchr(text, ':', p - text) != NULL) {
            /* no port, or a bare IPv6 address without brackets */
            return -1;
        }

        host = text;
        hlen = p - text;
        p++;
    }

    if (p == last || last - p > 5) {
        return -1;
    }

    port = 0;

    for ( /* void */ ; p < last; p++) {
        if (*p < '0' || *p > '9') {
            return -1;
        }

        port = port * 10 + (*p - '0');
    }

    return ngx_tce_addr_set(host, hlen, port, inst);
}


static int
ngx_tce_instance_cmp(const void *a, const void *b)
{
    return strcmp(((const ngx_tce_instance_t *) a)->id,
                  ((const ngx_tce_instance_t *) b)->id);
}


void
ngx_tce_instance_sort(ngx_tce_instance_t *inst, size_t n)
{
    if (n > 1) {
        qsort(inst, n, sizeof(ngx_tce_instance_t), ngx_tce_instance_cmp);
    }
}


int
ngx_tce_env_parse(const char *s, size_t len)
{
    if (len == 4 && memcmp(s, "prod", 4) == 0) {
        return NGX_TCE_ENV_PROD;
    }

    if (len == 6 && memcmp(s, "canary", 6) == 0) {
        return NGX_TCE_ENV_CANARY;
    }

    return -1;
}


const char *
ngx_tce_env_name(unsigned env)
{
    return env < NGX_TCE_NENVS ? ngx_tce_env_names[env] : "unknown";
}


int
ngx_tce_state_parse(const char *s, size_t len)
{
    unsigned  i;

    for (i = 0; i < 3; i++) {
        if (strlen(ngx_tce_state_names[i]) == len
            && memcmp(s, ngx_tce_state_names[i], len) == 0)
        {
            return (int) i;
        }
    }

    return -1;
}


const char *
ngx_tce_state_name(unsigned state)
{
    return state <= NGX_TCE_STATE_DOWN ? ngx_tce_state_names[state]
                                       : "unknown";
}


int
ngx_tce_strlcpy(char *dst, size_t size, const char *src, size_t len)
{
    if (len >= size) {
        return -1;
    }

    memcpy(dst, src, len);
    dst[len] = '\0';

    return 0;
}


unsigned
ngx_tce_instance_state(const ngx_tce_instance_t *inst)
{
    if (inst->op_down || inst->state == NGX_TCE_STATE_DOWN) {
        return NGX_TCE_STATE_DOWN;
    }

    if (inst->op_drain || inst->rm_deadline
        || inst->state == NGX_TCE_STATE_DRAINING)
    {
        return NGX_TCE_STATE_DRAINING;
    }

    return NGX_TCE_STATE_UP;
}


unsigned
ngx_tce_instance_weight(const ngx_tce_instance_t *inst)
{
    if (ngx_tce_instance_state(inst) != NGX_TCE_STATE_UP) {
        return 0;
    }

    return inst->op_weight ? inst->op_weight : inst->weight;
}
