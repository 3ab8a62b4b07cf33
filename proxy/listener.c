/*
 * listener.c - listening sockets and the accept loop.
 */
#include "proxy/listener.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/config.h"
#include "lib/log.h"
#include "lib/net.h"
#include "proxy/client.h"
#include "proxy/proxy.h"
#include "proxy/worker.h"

#define LISTENER_ACCEPTS_PER_EVENT 64
#define LISTENER_PAUSE             0.1  /* seconds without accepting when out of descriptors */
#define LISTENER_WARN_EVERY        10.0 /* seconds between warnings about it */

bool listener_open_shared(struct proxy *px, int *fds, char *err, size_t errlen)
{
    const struct config *cfg = px->cfg;

    for (size_t i = 0; i < cfg->nlisteners; i++) {
        fds[i] = -1;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct addr *a = &cfg->listeners[i].addr;
        /* Unix sockets cannot be bound twice: one socket, watched by all
         * workers. TCP listeners are opened per worker (SO_REUSEPORT). */
        if (a->family != AF_UNIX && px->nworkers > 1) {
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

static void listener_reject(int fd)
{
    static const char msg[] = "-ERR max number of clients reached\r\n";

    /* Best effort: the connection is closed whether or not this is read. */
    if (write(fd, msg, sizeof(msg) - 1) < 0) {
        log_debug("could not tell a rejected client why");
    }
    close(fd);
}

static void listener_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct listener *l = io->data;
    struct worker *w = l->w;
    struct proxy *px = w->px;

    (void)loop;
    (void)revents;
    for (int i = 0; i < LISTENER_ACCEPTS_PER_EVENT; i++) {
        int fd = net_accept(l->fd);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* The pending connection stays in the backlog and the socket
                 * stays readable: stop watching it for a moment rather than
                 * spin on it. */
                if (ev_now(loop) - l->warned_fds >= LISTENER_WARN_EVERY) {
                    log_warn("accept: %s (raise the open file limit or lower max-clients)",
                             strerror(errno));
                    l->warned_fds = ev_now(loop);
                }
                ev_io_stop(loop, &l->io);
                ev_timer_set(&l->pause, LISTENER_PAUSE, 0);
                ev_timer_start(loop, &l->pause);
            }
            break;
        }
        if (__atomic_add_fetch(&px->nclients, 1, __ATOMIC_RELAXED) > px->cfg->max_clients) {
            __atomic_sub_fetch(&px->nclients, 1, __ATOMIC_RELAXED);
            listener_reject(fd);
            continue;
        }
        net_tune(fd, (int)(px->cfg->tcp_keepalive_ms / 1000));
        if (client_new(w, l, fd) == NULL) {
            __atomic_sub_fetch(&px->nclients, 1, __ATOMIC_RELAXED);
            close(fd);
        }
    }
}

static void listener_resume_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct listener *l = t->data;

    (void)revents;
    ev_io_start(loop, &l->io);
}

bool listener_start(struct worker *w, const int *shared_fds, char *err, size_t errlen)
{
    const struct config *cfg = w->px->cfg;

    w->listeners = calloc(cfg->nlisteners, sizeof(*w->listeners));
    if (w->listeners == NULL) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        struct listener *l = &w->listeners[i];
        l->w = w;
        l->addr = cfg->listeners[i].addr;
        l->read_from =
            cfg->listeners[i].read_from >= 0 ? cfg->listeners[i].read_from : cfg->read_from;
        if (shared_fds[i] >= 0) {
            l->fd = shared_fds[i];
            l->owns_fd = false;
        } else {
            l->fd = net_listen(&l->addr, cfg->tcp_backlog, true, err, errlen);
            if (l->fd < 0) {
                return false;
            }
            l->owns_fd = true;
        }
        ev_io_init(&l->io, listener_cb, l->fd, EV_READ);
        l->io.data = l;
        ev_io_start(w->loop, &l->io);
        ev_timer_init(&l->pause, listener_resume_cb, LISTENER_PAUSE, 0);
        l->pause.data = l;
        w->nlisteners++;
    }
    return true;
}

void listener_stop(struct worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++) {
        struct listener *l = &w->listeners[i];
        ev_io_stop(w->loop, &l->io);
        ev_timer_stop(w->loop, &l->pause);
        if (l->owns_fd) {
            close(l->fd);
        }
    }
    free(w->listeners);
    w->listeners = NULL;
    w->nlisteners = 0;
}
