/*
 * router.h - which backend a request goes to: writes and everything else to
 * the confirmed master; read-only commands to a healthy replica when the
 * listener's read-from policy allows it.
 */
#ifndef SP_ROUTER_H
#define SP_ROUTER_H

struct client;
struct req;
struct backend;

/* The backend for r, or NULL when none can take it now (the request waits). */
struct backend *router_pick(struct client *c, struct req *r);

#endif
