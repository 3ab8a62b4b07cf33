/*
 * local.h - commands the proxy answers itself: QUIT, RESET and the client
 * name while the client shares connections, PROXY (the proxy's own status
 * command), refused commands, and the rest of a transaction whose connection
 * was lost.
 */
#ifndef SP_LOCAL_H
#define SP_LOCAL_H

#include <stdbool.h>

struct client;
struct req;

/* Answer r (it is marked done, or the client is closed); false when the
 * answer is not known yet (PROXY CONFIG RELOAD while the reload runs): r
 * waits, its client among the worker's waiting ones, and comes back here
 * when they are woken. */
bool local_handle(struct client *c, struct req *r);

#endif
