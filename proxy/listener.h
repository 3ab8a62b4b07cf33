/*
 * listener.h - listening sockets and the accept loop.
 *
 * TCP listeners get one socket per worker with SO_REUSEPORT, so the kernel
 * spreads connections over the workers and a new process can take the same
 * address before this one drains; unix sockets are opened once and watched
 * by every worker. Each accepted socket goes to the callback the
 * owner gave; running out of descriptors pauses accepting for a moment.
 *
 * A listener outlives its socket while clients accepted on it are connected
 * (they read its read-from mode), so that closing one, at a drain or a
 * reload, leaves them alone.
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
    int fd;                          /* its own descriptor; -1 once closed */
    enum config_read_from read_from; /* for clients of this listener (changes on reload) */
    struct tls_ctx *tls;             /* clients speak TLS with this context (NULL: plain) */
    unsigned refs;                   /* clients accepted here and still connected */
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

/* The read-from mode of cfg's listener i (its own, or the global one). */
enum config_read_from listener_read_from(const struct config *cfg, size_t i);

/* Whether reads from some listener of cfg may go to replicas. */
bool listener_reads_replicas(const struct config *cfg);

/* Start accepting on fd, bound to addr, for clients reading from
 * read_from, with TLS context tls (NULL: plain): on fd itself, which the
 * listener then owns, or on a duplicate of it when shared (a unix socket
 * every worker watches; its owner closes fd). NULL if out of memory or out
 * of descriptors (fd untouched). */
struct listener *listener_new(struct ev_loop *loop, const struct addr *addr, int fd, bool shared,
                              enum config_read_from read_from, struct tls_ctx *tls,
                              listener_accept_fn *on_accept, void *ctx);

/* Set up one worker's listeners on loop (TCP sockets bound with
 * SO_REUSEPORT, unix ones from the shared fds) and start watching them;
 * accepted sockets go to on_accept(ctx, ...); tls[i] is listener i's TLS
 * context (tls or tls[i] NULL: plain). Returns an array of cfg->nlisteners
 * in *out (*n of them started); false with err set. */
bool listener_start(struct ev_loop *loop, const struct config *cfg, const int *shared_fds,
                    struct tls_ctx *const *tls, listener_accept_fn *on_accept, void *ctx,
                    struct listener ***out, size_t *n, char *err, size_t errlen);

/* Stop accepting on l and close its descriptor; l itself is freed once no
 * client of it is left (listener_release). */
void listener_close(struct listener *l);

/* A client of l is gone (NULL is fine). */
void listener_release(struct listener *l);

/* listener_close the n listeners of ls (NULL entries skipped) and free the
 * array. */
void listener_stop(struct listener **ls, size_t n);

#endif
