/*
 * addr.h - network addresses as written in configuration and by Sentinel:
 * "host:port", "[v6addr]:port" and "unix:/path/to/socket".
 */
#ifndef SP_ADDR_H
#define SP_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define ADDR_HOST_MAX 256
#define ADDR_TEXT_MAX (ADDR_HOST_MAX + 16)

struct addr {
    int family; /* AF_UNIX, or AF_UNSPEC until resolved, then AF_INET/AF_INET6 */
    int port;
    char host[ADDR_HOST_MAX]; /* host name or literal, or the socket path */
    struct sockaddr_storage sa;
    socklen_t salen; /* 0 until resolved */
};

/* Parse text into a (unresolved) address; false with a message in err. */
bool addr_parse(struct addr *a, const char *text, char *err, size_t errlen);

/* Build an address from a host and port as reported by Sentinel. */
bool addr_from_host_port(struct addr *a, const char *host, int port, char *err, size_t errlen);

/* Resolve host into sa/salen (blocking getaddrinfo; control thread or startup). */
bool addr_resolve(struct addr *a, char *err, size_t errlen);

/* Write the canonical text form ("h:p", "[v6]:p", "unix:/p") into buf. */
void addr_format(const struct addr *a, char *buf, size_t len);

/* True when both name the same endpoint: the same text, or, once both are
 * resolved, the same IP address and port. */
bool addr_same(const struct addr *a, const struct addr *b);

/* addr_same, and when both are resolved, to the same socket address: a
 * host name that moved is another place. */
bool addr_same_place(const struct addr *a, const struct addr *b);

/* True when the address is a unix socket, or a literal or name on loopback. */
bool addr_is_loopback(const struct addr *a);

#endif
