/*
 * client.h - one client connection: reading and scanning its requests,
 * dispatching them in order, and writing replies back in the same order.
 *
 * A client normally shares backend connections with everyone else. When its
 * session takes on server-side state (a transaction, a database other than 0,
 * a subscription, a blocking command, other credentials or protocol...), it
 * moves to a dedicated backend connection where that state is replayed first,
 * and it goes back to the shared ones once the state is gone.
 *
 * All of a client's requests in flight are on one backend connection at a
 * time; a request for another connection waits until they are answered, so a
 * client's commands are executed in the order it sent them.
 */
#ifndef SP_CLIENT_H
#define SP_CLIENT_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/transport.h"
#include "proxy/chunk.h"
#include "proxy/offsets.h"
#include "proxy/reader.h"
#include "proxy/reqscan.h"
#include "proxy/session.h"

struct worker;
struct bconn;
struct req;
struct listener;

enum {
    CL_CLOSING = 1u << 0,     /* closed; reaped after the current callback */
    CL_CLOSE_AFTER = 1u << 1, /* read nothing more; close once replies are written */
    CL_PAUSED = 1u << 2,      /* reading paused: backlog over the limit */
    CL_DIRTY = 1u << 3,       /* on the worker's flush list */
    CL_WAITING = 1u << 4,     /* on the worker's waiting list: requests held */
    CL_WBLOCKED = 1u << 5,    /* its socket took less than offered: it reads slowly */
    CL_RYW_CHECK = 1u << 6,   /* a checked read in flight: nothing is sent after it */
    CL_HANDSHAKE = 1u << 7,   /* TLS handshake under way (timer hs runs) */
    CL_ACKING = 1u << 8,      /* on the worker's list of clients waiting for replicas */
};

struct client {
    struct worker *w;
    struct listener *listener;
    struct transport t;
    ev_io io;
    ev_timer hs; /* TLS listeners: handshake-timeout */
    uint64_t id;
    uint64_t reload_ticket; /* its PROXY CONFIG RELOAD waits for this reload (0: none) */
    uint16_t flags;
    unsigned io_events;
    struct reader rd; /* its requests' bytes as they are read */
    struct req *cur;  /* request being scanned */
    struct reqscan scan;
    struct req *head, *tail; /* every request in order */
    struct req *undisp;      /* first request not yet dispatched */
    uint32_t nreqs;
    uint32_t inflight;         /* requests dispatched and awaiting replies */
    uint32_t window;           /* ... at most (slow start: grows with replies seen) */
    struct bconn *last;        /* connection holding the in-flight requests */
    struct bconn *ded;         /* dedicated connection, when pinned */
    uint64_t backlog;          /* bytes of queued requests and unwritten replies */
    uint64_t outbytes;         /* bytes of replies waiting to be written */
    uint64_t seq;              /* sequence number of the last request queued */
    uint32_t reply_size;       /* estimate of its reply sizes, for admission (0 = none yet) */
    uint32_t auth_queued;      /* AUTH/HELLO requests in its queue (pre-auth limits wait) */
    struct offsets_client ofs; /* read-your-writes: what its reads wait for */
    uint64_t scan_be;          /* backend id its SCAN-family cursors come from (0 = none) */
    double last_active;
    struct session sess;
    struct client *prev, *next;   /* worker's clients */
    struct client *dnext;         /* worker's flush list */
    struct client *wprev, *wnext; /* worker's waiting list */
    struct client *rnext;         /* worker's reap list */
    struct client *aprev, *anext; /* worker's list of clients waiting for replicas */
    uint32_t nacks;               /* its write replies waiting for replicas (acks.c) */
};

/* Take over an accepted socket. NULL (socket closed) if out of memory. */
struct client *client_new(struct worker *w, struct listener *l, int fd);

/* Dispatch whatever can be dispatched now (after a reply, a new topology, a
 * backend coming up). */
void client_dispatch(struct client *c);

/* A reply for r is complete, from backend `from` (NULL: the proxy's own):
 * account it and let the client write it. */
void client_reply_done(struct client *c, struct req *r, const struct backend *from);

/* r's reply, kept until replicas processed it (acks.c), may be written now
 * (r is marked done by the caller, its reply final). */
void client_reply_released(struct client *c, struct req *r);

/* Add unsolicited output (push message, pub/sub message, MONITOR line) in
 * stream order; takes ownership of the spans. */
void client_push(struct client *c, struct spans *out);

/* r was queued on c's streaming connection (no reply matched to it) and not
 * written whole when that connection was lost: the server never ran it, so
 * it is sent again, in order, once the subscriptions are back. */
void client_resend_streamed(struct client *c, struct req *r);

/* Take r back as not dispatched (its connection failed before it was
 * answered) so that it is dispatched again. */
void client_undispatch(struct client *c, struct req *r);

/* Write pending replies; called by the worker's flush pass. */
void client_flush(struct client *c);

/* Close the connection now (requests in flight are forgotten). */
void client_close(struct client *c, const char *why);

/* Free a closed client (worker reap pass only). */
void client_destroy(struct client *c);

/* Called by the worker's timer: fail held requests older than the hold
 * timeout, close idle clients. */
void client_tick(struct client *c, double now);

/* QUIT: forget every request that came after r (they are never run). */
void client_discard_after(struct client *c, struct req *r);

/* The last subscription is gone: go back to shared connections if nothing
 * else keeps the session on its dedicated one. */
void client_stream_ended(struct client *c);

/* The dedicated connection was lost: reset server-side state as a direct
 * connection would lose it, and remember what must fail (open MULTI). */
void client_lost_dedicated(struct client *c, struct bconn *bc);

#endif
