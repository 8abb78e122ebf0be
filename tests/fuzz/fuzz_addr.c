/*
 * libFuzzer target: the validators of outside names and addresses
 * (ngx_tce_instance.c).  Invariants: an address that parses has a
 * canonical text that parses back to the same socket address and
 * text; the input holds no NUL byte (a C string cut short at one
 * would name another address); brackets hold IPv6 and nothing else
 * does; an accepted name or id holds only its alphabet, within its
 * length bound.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "ngx_tce_instance.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
static void fuzz_addr(const uint8_t *data, size_t size);
static void fuzz_names(const uint8_t *data, size_t size);


static void
fuzz_addr(const uint8_t *data, size_t size)
{
    uint16_t            port;
    ngx_tce_instance_t  inst, back, orig;

    memset(&inst, 0x5a, sizeof(ngx_tce_instance_t));
    orig = inst;

    if (ngx_tce_addr_parse((const char *) data, size, &inst) != 0) {
        if (memcmp(&inst, &orig, sizeof(inst)) != 0) {
            abort();
        }

        return;
    }

    if (memchr(data, '\0', size) != NULL
        || strnlen(inst.addr, sizeof(inst.addr)) == sizeof(inst.addr))
    {
        abort();
    }

    port = ntohs(inst.sockaddr.sa.sa_family == AF_INET
                 ? inst.sockaddr.sin.sin_port : inst.sockaddr.sin6.sin6_port);

    if (port == 0
        || (inst.sockaddr.sa.sa_family == AF_INET
            && inst.socklen != sizeof(struct sockaddr_in))
        || (inst.sockaddr.sa.sa_family == AF_INET6
            && inst.socklen != sizeof(struct sockaddr_in6))
        || (inst.sockaddr.sa.sa_family != AF_INET
            && inst.sockaddr.sa.sa_family != AF_INET6)
        || (data[0] == '[') != (inst.sockaddr.sa.sa_family == AF_INET6))
    {
        abort();
    }

    memset(&back, 0, sizeof(ngx_tce_instance_t));

    if (ngx_tce_addr_parse(inst.addr, strlen(inst.addr), &back) != 0
        || strcmp(back.addr, inst.addr) != 0 || back.socklen != inst.socklen
        || memcmp(&back.sockaddr, &inst.sockaddr, inst.socklen) != 0)
    {
        abort();
    }
}


static void
fuzz_names(const uint8_t *data, size_t size)
{
    size_t  i;

    if (ngx_tce_service_name_valid((const char *) data, size)) {
        if (size >= NGX_TCE_SERVICE_LEN) {
            abort();
        }

        for (i = 0; i < size; i++) {
            if (!((data[i] >= 'a' && data[i] <= 'z')
                  || (data[i] >= '0' && data[i] <= '9')
                  || data[i] == '_' || data[i] == '-' || data[i] == '.'))
            {
                abort();
            }
        }
    }

    if (ngx_tce_cluster_name_valid((const char *) data, size)
        && (size == 0 || size >= NGX_TCE_CLUSTER_LEN
            || memchr(data, '\0', size) != NULL))
    {
        abort();
    }

    if (ngx_tce_id_valid((const char *) data, size)
        && (size == 0 || size >= NGX_TCE_ID_LEN
            || memchr(data, '\0', size) != NULL))
    {
        abort();
    }

    if (ngx_tce_version_valid((const char *) data, size)
        && (size >= NGX_TCE_VERSION_LEN || memchr(data, '\0', size) != NULL))
    {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_addr(data, size);
    fuzz_names(data, size);

    return 0;
}
