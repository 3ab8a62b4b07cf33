/*
 * evio.h - arming a connection's libev I/O watcher for the events it waits
 * for, restarting the watcher only when they change.
 */
#ifndef SP_EVIO_H
#define SP_EVIO_H

#include <ev.h>

#include "lib/transport.h"

/* Re-arm io for want (the slow part of evio_arm). */
void evio_rearm(struct ev_loop *loop, ev_io *io, int fd, unsigned *armed, unsigned want);

/* Watch fd for want (EV_READ | EV_WRITE, or 0 for nothing); *armed holds
 * what io is armed with and is updated. Inline: it is asked after every
 * read and write, and nothing changes most of the time. */
static inline void evio_arm(struct ev_loop *loop, ev_io *io, int fd, unsigned *armed, unsigned want)
{
    if (want != *armed) {
        evio_rearm(loop, io, fd, armed, want);
    }
}

/* Feed io a read event when t holds bytes TLS decrypted already: the socket
 * will not signal them again, and re-arming a watcher drops a fed event. */
static inline void evio_feed_pending(struct ev_loop *loop, ev_io *io, struct transport *t)
{
    if (t->tls != NULL && transport_pending(t) > 0) {
        ev_feed_event(loop, io, EV_READ);
    }
}

#endif
