/*
 * listener.c - listening sockets and the accept loop.
 */
#include "proxy/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/net.h"

#define LISTENER_ACCEPTS_PER_EVENT 64
#define LISTENER_PAUSE             0.1  /* seconds without accepting when out of descriptors */
#define LISTENER_WARN_EVERY        10.0 /* seconds between warnings about it */

bool listener_open_shared(const struct config *cfg, int *fds, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        fds[i] = -1;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct addr *a = &cfg->listeners[i].addr;
        /* Unix sockets cannot be bound twice: one socket, watched by all
         * workers. TCP listeners are opened per worker with SO_REUSEPORT,
         * even with one worker, so that a new process can bind the same
         * address before this one drains (rolling restarts). */
        if (a->family != AF_UNIX) {
            continue;
        }
        fds[i] = net_listen(a, cfg->tcp_backlog, false, err, errlen);
        if (fds[i] < 0) {
            for (size_t k = 0; k < i; k++) {
                if (fds[k] >= 0) {
                    close(fds[k]);
                }
            }
            return false;
        }
    }
    return true;
}

static void listener_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct listener *l = io->data;
    char a[ADDR_TEXT_MAX];

    (void)revents;
    for (int i = 0; i < LISTENER_ACCEPTS_PER_EVENT; i++) {
        int fd = net_accept(l->fd);
        if (fd >= 0) {
            l->on_accept(l->ctx, l, fd);
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return;
        }
        if (errno == EINTR || errno == ECONNABORTED) {
            continue; /* that one is gone; the next may be there */
        }
        /* Out of descriptors (or memory): the pending connection stays in
         * the backlog and the socket stays readable; stop watching it for
         * a moment rather than spin on it, and say so at most every
         * LISTENER_WARN_EVERY seconds. */
        if (ev_now(loop) - l->warned_fds >= LISTENER_WARN_EVERY) {
            addr_format(&l->addr, a, sizeof(a));
            log_warn("%s: accept: %s; pausing this listener (raise the open file limit or lower "
                     "max-clients)",
                     a, strerror(errno));
            l->warned_fds = ev_now(loop);
        }
        ev_io_stop(loop, &l->io);
        ev_timer_set(&l->pause, LISTENER_PAUSE, 0);
        ev_timer_start(loop, &l->pause);
        return;
    }
}

static void listener_resume_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct listener *l = t->data;

    (void)revents;
    ev_io_start(loop, &l->io);
}

enum config_read_from listener_read_from(const struct config *cfg, size_t i)
{
    return cfg->listeners[i].read_from >= 0 ? (enum config_read_from)cfg->listeners[i].read_from
                                            : (enum config_read_from)cfg->read_from;
}

bool listener_reads_replicas(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        if (listener_read_from(cfg, i) != READ_FROM_MASTER) {
            return true;
        }
    }
    return false;
}

struct listener *listener_new(struct ev_loop *loop, const struct addr *addr, int fd, bool shared,
                              enum config_read_from read_from, struct tls_ctx *tls,
                              listener_accept_fn *on_accept, void *ctx)
{
    struct listener *l = calloc(1, sizeof(*l));

    if (l == NULL) {
        return NULL;
    }
    /* A shared socket is watched through a descriptor of the worker's own,
     * so that each worker stops watching and closes on its own thread, and
     * whoever opened the socket closes it whenever it likes. */
    if (shared && (fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        free(l);
        return NULL;
    }
    l->loop = loop;
    l->addr = *addr;
    l->tls = tls;
    l->read_from = read_from;
    l->on_accept = on_accept;
    l->ctx = ctx;
    l->fd = fd;
    ev_io_init(&l->io, listener_cb, l->fd, EV_READ);
    l->io.data = l;
    ev_io_start(loop, &l->io);
    ev_timer_init(&l->pause, listener_resume_cb, LISTENER_PAUSE, 0);
    l->pause.data = l;
    return l;
}

bool listener_start(struct ev_loop *loop, const struct config *cfg, const int *shared_fds,
                    struct tls_ctx *const *tls, listener_accept_fn *on_accept, void *ctx,
                    struct listener ***out, size_t *n, char *err, size_t errlen)
{
    struct listener **ls = calloc(cfg->nlisteners > 0 ? cfg->nlisteners : 1, sizeof(*ls));

    *out = ls;
    *n = 0;
    if (ls == NULL) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        bool shared = shared_fds[i] >= 0;
        int fd = shared ? shared_fds[i]
                        : net_listen(&cfg->listeners[i].addr, cfg->tcp_backlog, true, err, errlen);
        if (fd < 0) {
            return false;
        }
        ls[i] = listener_new(loop, &cfg->listeners[i].addr, fd, shared, listener_read_from(cfg, i),
                             tls != NULL ? tls[i] : NULL, on_accept, ctx);
        if (ls[i] == NULL) {
            if (!shared) {
                close(fd);
            }
            snprintf(err, errlen, "%s", shared ? strerror(errno) : "out of memory");
            return false;
        }
        (*n)++;
    }
    return true;
}

void listener_close(struct listener *l)
{
    if (l->fd >= 0) {
        ev_io_stop(l->loop, &l->io);
        ev_timer_stop(l->loop, &l->pause);
        close(l->fd);
        l->fd = -1;
    }
    if (l->refs == 0) {
        free(l);
    }
}

void listener_release(struct listener *l)
{
    if (l != NULL && --l->refs == 0 && l->fd < 0) {
        free(l);
    }
}

void listener_stop(struct listener **ls, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ls[i] != NULL) {
            listener_close(ls[i]);
        }
    }
    free(ls);
}
