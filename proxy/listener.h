/*
 * listener.h - listening sockets and the accept loop.
 *
 * TCP listeners get one socket per worker with SO_REUSEPORT, so the kernel
 * spreads connections over the workers and a new process can take the same
 * address before this one drains; unix sockets are opened once and watched
 * by every worker. Each accepted socket goes to the callback the
 * owner gave; running out of descriptors pauses accepting for a moment.
 */
#ifndef SP_LISTENER_H
#define SP_LISTENER_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

#include "conf/config.h"
#include "lib/addr.h"

struct listener;
struct tls_ctx;

/* A connection was accepted on l (a non-blocking socket the callee owns). */
typedef void listener_accept_fn(void *ctx, struct listener *l, int fd);

struct listener {
    struct ev_loop *loop;
    struct addr addr;
    int fd;
    bool owns_fd;                    /* false when the fd is shared with other workers */
    enum config_read_from read_from; /* for clients of this listener */
    struct tls_ctx *tls;             /* clients speak TLS with this context (NULL: plain) */
    ev_io io;
    ev_timer pause;    /* out of descriptors: accepting resumes after a moment */
    double warned_fds; /* when running out of descriptors was last logged */
    listener_accept_fn *on_accept;
    void *ctx;
};

/* Open the sockets that are shared by all workers (unix listeners), once,
 * before the workers start; fds[i] is -1 for per-worker (TCP) listeners.
 * False with err set. */
bool listener_open_shared(const struct config *cfg, int *fds, char *err, size_t errlen);

/* Set up one worker's listeners on loop (TCP sockets bound with
 * SO_REUSEPORT, unix ones from the shared fds) and start watching them;
 * accepted sockets go to on_accept(ctx, ...); tls[i] is listener i's TLS
 * context (tls or tls[i] NULL: plain). Returns cfg->nlisteners listeners in
 * *out (*n of them started); false with err set. */
bool listener_start(struct ev_loop *loop, const struct config *cfg, const int *shared_fds,
                    struct tls_ctx *const *tls, listener_accept_fn *on_accept, void *ctx,
                    struct listener **out, size_t *n, char *err, size_t errlen);

/* Stop watching, close the worker's own sockets and free the n listeners. */
void listener_stop(struct ev_loop *loop, struct listener *ls, size_t n);

#endif
