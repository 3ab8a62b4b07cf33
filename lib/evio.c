/*
 * evio.c - I/O watcher arming (see evio.h).
 */
#include "lib/evio.h"

void evio_rearm(struct ev_loop *loop, ev_io *io, int fd, unsigned *armed, unsigned want)
{
    ev_io_stop(loop, io);
    if (want != 0) {
        ev_io_set(io, fd, (int)want);
        ev_io_start(loop, io);
    }
    *armed = want;
}
