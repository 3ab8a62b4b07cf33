/*
 * addr.c - parsing, formatting and resolution of endpoint addresses.
 */
#include "lib/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

static bool addr_parse_port(const char *s, int *port)
{
    char *end;
    long v;

    if (*s == '\0') {
        return false;
    }
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0 || v > 65535 || s[0] == '-' || s[0] == '+') {
        return false;
    }
    *port = (int)v;
    return true;
}

bool addr_from_host_port(struct addr *a, const char *host, int port, char *err, size_t errlen)
{
    size_t len = strlen(host);

    memset(a, 0, sizeof(*a));
    if (len == 0 || len >= ADDR_HOST_MAX) {
        snprintf(err, errlen, "host name empty or too long");
        return false;
    }
    if (port < 0 || port > 65535) {
        snprintf(err, errlen, "port %d out of range", port);
        return false;
    }
    memcpy(a->host, host, len + 1);
    a->port = port;
    a->family = AF_UNSPEC;
    return true;
}

bool addr_parse(struct addr *a, const char *text, char *err, size_t errlen)
{
    char host[ADDR_HOST_MAX];
    const char *colon;
    size_t hlen;
    int port;

    memset(a, 0, sizeof(*a));
    if (strncmp(text, "unix:", 5) == 0) {
        const char *path = text + 5;
        size_t plen = strlen(path);
        struct sockaddr_un *sun = (struct sockaddr_un *)&a->sa;

        if (plen == 0 || plen >= sizeof(sun->sun_path)) {
            snprintf(err, errlen, "unix socket path empty or longer than %zu bytes",
                     sizeof(sun->sun_path) - 1);
            return false;
        }
        a->family = AF_UNIX;
        memcpy(a->host, path, plen + 1);
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, path, plen + 1);
        a->salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1);
        return true;
    }
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':') {
            snprintf(err, errlen, "expected [IPv6]:PORT, got '%s'", text);
            return false;
        }
        hlen = (size_t)(close - text - 1);
        colon = close + 1;
        if (hlen >= sizeof(host)) {
            snprintf(err, errlen, "host too long in '%s'", text);
            return false;
        }
        memcpy(host, text + 1, hlen);
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL) {
            snprintf(err, errlen, "expected HOST:PORT or unix:/path, got '%s'", text);
            return false;
        }
        hlen = (size_t)(colon - text);
        if (memchr(text, ':', hlen) != NULL) {
            snprintf(err, errlen, "IPv6 addresses need brackets: [%.*s]:PORT", (int)hlen, text);
            return false;
        }
        if (hlen >= sizeof(host)) {
            snprintf(err, errlen, "host too long in '%s'", text);
            return false;
        }
        memcpy(host, text, hlen);
    }
    host[hlen] = '\0';
    if (hlen == 0) {
        snprintf(err, errlen, "missing host in '%s'", text);
        return false;
    }
    if (!addr_parse_port(colon + 1, &port)) {
        snprintf(err, errlen, "invalid port in '%s'", text);
        return false;
    }
    return addr_from_host_port(a, host, port, err, errlen);
}

bool addr_resolve(struct addr *a, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    char port[8];
    int rc;

    if (a->family == AF_UNIX) {
        return true;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%d", a->port);
    rc = getaddrinfo(a->host, port, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(err, errlen, "cannot resolve '%s': %s", a->host, gai_strerror(rc));
        return false;
    }
    memcpy(&a->sa, res->ai_addr, res->ai_addrlen);
    a->salen = res->ai_addrlen;
    a->family = res->ai_family;
    freeaddrinfo(res);
    return true;
}

void addr_format(const struct addr *a, char *buf, size_t len)
{
    if (a->family == AF_UNIX) {
        snprintf(buf, len, "unix:%s", a->host);
    } else if (strchr(a->host, ':') != NULL) {
        snprintf(buf, len, "[%s]:%d", a->host, a->port);
    } else {
        snprintf(buf, len, "%s:%d", a->host, a->port);
    }
}

bool addr_same(const struct addr *a, const struct addr *b)
{
    if ((a->family == AF_UNIX) != (b->family == AF_UNIX) || a->port != b->port) {
        return false;
    }
    if (strcmp(a->host, b->host) == 0) {
        return true;
    }
    /* "localhost:26379" and "127.0.0.1:26379" are one endpoint. */
    if (a->family == AF_UNIX || a->salen == 0 || b->salen == 0 || a->family != b->family) {
        return false;
    }
    if (a->family == AF_INET) {
        const struct sockaddr_in *x = (const void *)&a->sa, *y = (const void *)&b->sa;
        return x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)&a->sa, *y = (const void *)&b->sa;
    return memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

bool addr_same_place(const struct addr *a, const struct addr *b)
{
    if (!addr_same(a, b)) {
        return false;
    }
    if (a->family == AF_UNIX || a->salen == 0 || b->salen == 0) {
        return true; /* not both resolved: the name is all there is */
    }
    return a->family == b->family && a->salen == b->salen && memcmp(&a->sa, &b->sa, a->salen) == 0;
}

bool addr_is_loopback(const struct addr *a)
{
    struct in6_addr v6;
    struct in_addr v4;

    if (a->family == AF_UNIX || strcmp(a->host, "localhost") == 0) {
        return true;
    }
    if (inet_pton(AF_INET, a->host, &v4) == 1) {
        return (ntohl(v4.s_addr) >> 24) == 127;
    }
    if (inet_pton(AF_INET6, a->host, &v6) == 1) {
        return IN6_IS_ADDR_LOOPBACK(&v6);
    }
    return false;
}
