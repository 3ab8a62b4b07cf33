/*
 * evio.h - arming a connection's libev I/O watcher for the events it waits
 * for, restarting the watcher only when they change.
 */
#ifndef SP_EVIO_H
#define SP_EVIO_H

#include <ev.h>

/* Watch fd for want (EV_READ | EV_WRITE, or 0 for nothing); *armed holds
 * what io is armed with and is updated. */
void evio_arm(struct ev_loop *loop, ev_io *io, int fd, unsigned *armed, unsigned want);

#endif
