/*
 * listener.h - listening sockets and accepting clients.
 *
 * TCP listeners get one socket per worker with SO_REUSEPORT, so the kernel
 * spreads connections over the workers; unix sockets are opened once and
 * watched by every worker. Accepting stops while the process is at
 * max-clients (the connection is accepted and closed with an error).
 */
#ifndef SP_LISTENER_H
#define SP_LISTENER_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

#include "conf/config.h"
#include "lib/addr.h"

struct worker;
struct proxy;

struct listener {
    struct worker *w;
    struct addr addr;
    int fd;
    bool owns_fd;                    /* false when the fd is shared with other workers */
    enum config_read_from read_from; /* for clients of this listener */
    ev_io io;
    ev_timer pause;    /* out of descriptors: accepting resumes after a moment */
    double warned_fds; /* when running out of descriptors was last logged */
};

/* Open the sockets that are shared by all workers (unix listeners), once,
 * before the workers start; fds[i] is -1 for per-worker (TCP) listeners.
 * False with err set. */
bool listener_open_shared(struct proxy *px, int *fds, char *err, size_t errlen);

/* Set up this worker's listeners (TCP sockets bound with SO_REUSEPORT, unix
 * ones from the shared fds) and start watching them. */
bool listener_start(struct worker *w, const int *shared_fds, char *err, size_t errlen);

/* Stop watching and close the worker's own sockets. */
void listener_stop(struct worker *w);

#endif
