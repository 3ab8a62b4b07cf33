/*
 * local.h - commands the proxy answers itself: QUIT, RESET and the client
 * name while the client shares connections, PROXY (the proxy's own status
 * command), refused commands, and the rest of a transaction whose connection
 * was lost.
 */
#ifndef SP_LOCAL_H
#define SP_LOCAL_H

struct client;
struct req;

/* Answer r (it is marked done, or the client is closed). */
void local_handle(struct client *c, struct req *r);

#endif
