/*
 * net.c - socket helpers.
 */
#include "lib/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static void net_remove_stale_socket(const char *path)
{
    struct stat st;

    /* Only a socket is removed: a regular file at that path is a mistake in
     * the configuration, and bind() will report it. */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        unlink(path);
    }
}

int net_listen(const struct addr *a, int backlog, bool reuseport, char *err, size_t errlen)
{
    char text[ADDR_TEXT_MAX];
    int one = 1;
    int fd;

    addr_format(a, text, sizeof(text));
    fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "%s: socket: %s", text, strerror(errno));
        return -1;
    }
    if (a->family == AF_UNIX) {
        net_remove_stale_socket(a->host);
    } else {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (reuseport) {
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        }
        if (a->family == AF_INET6) {
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        }
    }
    if (bind(fd, (const struct sockaddr *)&a->sa, a->salen) < 0) {
        snprintf(err, errlen, "%s: bind: %s", text, strerror(errno));
        close(fd);
        return -1;
    }
    if (listen(fd, backlog) < 0) {
        snprintf(err, errlen, "%s: listen: %s", text, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int net_connect(const struct addr *a, char *err, size_t errlen)
{
    char text[ADDR_TEXT_MAX];
    int fd;

    fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        addr_format(a, text, sizeof(text));
        snprintf(err, errlen, "%s: socket: %s", text, strerror(errno));
        return -1;
    }
    if (connect(fd, (const struct sockaddr *)&a->sa, a->salen) < 0 && errno != EINPROGRESS) {
        addr_format(a, text, sizeof(text));
        snprintf(err, errlen, "%s: connect: %s", text, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int net_connect_result(int fd)
{
    int soerr = 0;
    socklen_t len = sizeof(soerr);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) {
        return errno;
    }
    return soerr;
}

int net_accept(int lfd)
{
    int fd;

    do {
        fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    return fd;
}

void net_tune(int fd, int keepalive_s)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int one = 1;

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 || ss.ss_family == AF_UNIX) {
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (keepalive_s > 0) {
        int interval = keepalive_s / 3 > 0 ? keepalive_s / 3 : 1;
        int count = 3;
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &keepalive_s, sizeof(keepalive_s));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
    }
}

bool net_retransmitting(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    memset(&ti, 0, sizeof(ti));
    return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_retransmits > 0;
}

void net_peer_name(int fd, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t slen = sizeof(ss);
    char host[INET6_ADDRSTRLEN];

    if (getpeername(fd, (struct sockaddr *)&ss, &slen) < 0) {
        snprintf(buf, len, "?");
        return;
    }
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%d", host, ntohs(sin->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%d", host, ntohs(sin6->sin6_port));
    } else {
        snprintf(buf, len, "unix");
    }
}
