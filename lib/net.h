/*
 * net.h - socket helpers: listening and non-blocking connecting sockets for
 * TCP and unix addresses, and the socket options the proxy uses.
 */
#ifndef SP_NET_H
#define SP_NET_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/addr.h"

/* Open a non-blocking listening socket on a resolved address; reuseport sets
 * SO_REUSEPORT so that each worker can bind its own socket. A unix socket
 * path left over by a previous run is removed first. -1 with err set. */
int net_listen(const struct addr *a, int backlog, bool reuseport, char *err, size_t errlen);

/* Start a non-blocking connect to a resolved address; the socket is ready to
 * watch for writability (EINPROGRESS is not an error). -1 with err set. */
int net_connect(const struct addr *a, char *err, size_t errlen);

/* After writability: 0 when the connect succeeded, else the errno of the
 * failure. */
int net_connect_result(int fd);

/* Accept one connection as a non-blocking, close-on-exec socket; -1 with
 * errno (EAGAIN when none is waiting). */
int net_accept(int lfd);

/* Tune an accepted or connected TCP socket: TCP_NODELAY and, when
 * keepalive_s > 0, keepalive probes after that many idle seconds. */
void net_tune(int fd, int keepalive_s);

/* True when the kernel is retransmitting what was sent on TCP socket fd
 * (nothing acknowledges it: a peer cut off without a reset). A busy peer
 * with a full receive buffer acknowledges, with a zero window: false. */
bool net_retransmitting(int fd);

/* Write the peer's address as text ("1.2.3.4:5", "unix") into buf. */
void net_peer_name(int fd, char *buf, size_t len);

#endif
