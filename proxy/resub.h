/*
 * resub.h - subscribers first after a master switch.
 *
 * When the master changes, the subscribers' connections to the old one are
 * closed (its drain) and each is subscribed again on the new master
 * (client_resubscribe) as the waiting clients are woken. A message published
 * on the new master before a subscriber's SUBSCRIBE is confirmed there is
 * lost to that subscriber; so every request for the new master waits
 * (client_route, resub_holds) until this worker has no client left
 * to subscribe again and every resubscription it queued is confirmed (or
 * refused, or its connection closed), and until every other worker says as
 * much of its own clients (resub_done, the topology version it has settled
 * at): a PUBLISH from any client of the proxy then reaches the subscribers
 * of all of them. The wait is bounded by RESUB_WAIT, 1 s (half of
 * hold-timeout when that is shorter; none with hold-timeout 0): then
 * requests go anyway, and the log says who was not back.
 */
#ifndef SP_RESUB_H
#define SP_RESUB_H

#include <stdbool.h>
#include <stdint.h>

#include "proxy/worker.h"

/* Set up the worker's bound on the wait (worker_init). */
void resub_init(struct worker *w);

/* True while requests for the master must wait for subscriptions to be
 * re-established after a switch. Every request to the master asks: inline. */
static inline bool resub_holds(const struct worker *w)
{
    return w->resub_version != 0;
}

/* The master changed (the topology of the given version): its requests wait
 * for the subscribers. */
void resub_arm(struct worker *w, uint64_t version);

/* Nothing of this worker's is waited for up to the topology it follows: say
 * so to the other workers, and wake those that wait. */
void resub_settled(struct worker *w);

/* Look whether the wait is over (end of the loop turn, when resub_check). */
void resub_evaluate(struct worker *w);

/* A resubscription was queued on one of the worker's connections: it counts
 * until its confirmations are in (resub_ended). */
void resub_started(struct worker *w);

/* A resubscription counted by resub_started is confirmed, refused, or its
 * connection closed. */
void resub_ended(struct worker *w);

/* Something the wait for resubscriptions depends on changed (a subscriber
 * left): look again at the end of the loop turn. */
void resub_recheck(struct worker *w);

#endif
