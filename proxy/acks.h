/*
 * acks.h - ack-after-replicas: a write's reply is released to its client
 * only once enough replicas have processed it.
 *
 * A write answered by the master is followed on its connection by the
 * proxy's ROLE probe (offsets.c), whose reply gives a master offset at least
 * as high as the write's. Its reply is kept (not written, and nothing after
 * it is written either) until ack-after-replicas replicas of that master have
 * been seen, by their own ROLE, to have processed that offset. The probes
 * are asked for by the writes themselves: the replicas are asked again as
 * soon as the offset is known, and again while they progress. A write that
 * is not confirmed within hold-timeout, or whose master is replaced by one
 * that had not processed it, gets the "outcome unknown" error instead of its
 * reply: never a success that a failover may take back.
 */
#ifndef SP_ACKS_H
#define SP_ACKS_H

#include <stdbool.h>

struct client;
struct req;
struct worker;
struct backend;

/* r's reply from backend `from` is complete: true when it must wait for
 * replicas (it is then kept, not done; the client is on the worker's list).
 * A write answered by a node that is no longer the master gets the "outcome
 * unknown" error at once (also kept-then-released through this call). */
bool acks_hold(struct client *c, struct req *r, const struct backend *from);

/* Offsets moved (a probe answered): release the writes now confirmed and
 * ask the replicas that are still behind again. */
void acks_check(struct worker *w);

/* Worker tick: writes waiting longer than hold-timeout fail. */
void acks_tick(struct worker *w, double now);

/* The master is now master (not NULL): writes acknowledged by another one
 * are released if master had processed them as a replica, failed if not. */
void acks_switch(struct worker *w, struct backend *master);

/* The client is going away: take it off the worker's list. */
void acks_forget(struct client *c);

/* Whether writes are waiting for replicas on this worker (the probe timer
 * must run). */
bool acks_pending(const struct worker *w);

#endif
