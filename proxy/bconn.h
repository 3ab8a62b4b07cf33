/*
 * bconn.h - one connection to a backend server.
 *
 * Requests queued on a connection are written together with one writev at
 * the worker's flush pass; replies are scanned and matched back to them in
 * order. A connection that streams (SUBSCRIBE, MONITOR, CLIENT REPLY OFF)
 * hands every reply to its owner instead, and finds where the stream ends
 * with a marker of its own (an ECHO the client never sees).
 *
 * A connection that fails hands its requests back: requests not yet sent and
 * read-only requests are dispatched again, writes whose outcome is unknown are
 * answered with an error (router_lost_verdict). Connections are never freed
 * inside their own callbacks: they are marked closed and reaped by the worker.
 */
#ifndef SP_BCONN_H
#define SP_BCONN_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/transport.h"
#include "proxy/chunk.h"
#include "proxy/reader.h"
#include "proxy/replyscan.h"

struct backend;
struct client;
struct req;
struct session;
struct worker;

#define BCONN_RESUB_CMDS 4 /* SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE, MONITOR */

/* Why a shared connection beyond backend-connections was opened. */
enum bconn_extra {
    BCONN_EXTRA_NONE = 0,
    BCONN_EXTRA_STALL = 1, /* the others were stalled */
    BCONN_EXTRA_DEEP = 2,  /* small requests would have queued behind large replies */
};

enum bconn_state {
    BC_CONNECTING = 0, /* TCP connect in progress */
    BC_READY = 1,      /* usable (handshake requests may still be queued first) */
    BC_CLOSED = 2,     /* failed or retired; waiting to be reaped */
};

struct bconn {
    struct backend *be;
    struct worker *w;
    struct transport t;
    ev_io io;
    ev_timer timer; /* connect timeout */
    uint64_t id;
    enum bconn_state state;
    bool dedicated; /* lent to one client (owner) */
    bool streaming; /* replies are not matched to requests (SUBSCRIBE, MONITOR...) */
    /* stream replies to drop: the confirmations of a resubscription, per
     * command replayed, in order (an error stands for all of one's) */
    uint32_t swallow[BCONN_RESUB_CMDS];
    uint8_t nswallow;   /* commands whose confirmations are still awaited */
    bool resubscribing; /* ... counted by the worker until they are all in (worker_resub_*) */
    bool marker_sent;   /* streaming: the proxy's end-of-stream marker is on its way */
    bool marker_last;   /* ... and nothing was queued after it */
    bool dirty;         /* on the worker's flush list */
    bool tainted;       /* carries state that makes it unfit to lend again */
    bool reaped;        /* on the worker's reap list */
    bool retiring;      /* takes no new requests; closes once everything is answered */
    bool released;      /* reset with its blocked commands unexecuted (bconn_release) */
    bool paused;        /* dedicated: not read while its owner is over its backlog limit */
    bool lagging;       /* ... and not read to the end since: the server may have given up */
    bool stalled;       /* shared: seen stalled (bconn_stalled), and nothing read since */
    bool nudged;        /* a PING was sent to it since it last read something */
    uint8_t extra;      /* shared, beyond backend-connections: why (enum bconn_extra) */
    bool greeted;       /* shared: the server answered its handshake (it took the connection) */
    bool handshaking;   /* connecting: TCP is up, the TLS handshake is under way */
    uint8_t resp;       /* protocol version spoken (2 or 3) */
    int db;             /* selected database */
    unsigned io_events; /* events io is armed with */
    struct client *owner;
    struct req *head, *tail; /* queue: head is the oldest request awaiting its reply */
    struct req *unsent;      /* first request not completely written */
    struct req *gate;        /* nothing after it is written before its reply (set-up) */
    struct req *probed;      /* the last request offsets_before_flush looked at */
    uint64_t role_offset;    /* replica offset in the last ROLE answered here */
    uint32_t nqueued;
    uint32_t nwritten;  /* ... of them written completely (awaiting their reply) */
    uint32_t window;    /* most written ahead of their replies (backend-window; dedicated: all) */
    uint32_t reply_avg; /* running average of its clients' replies, in bytes (backend_shared) */
    uint64_t expect;    /* reply bytes expected for its queue: the sum of the requests' own */
    double progress_at; /* last read, or when a request was queued on an empty queue */
    struct reader rd;   /* its replies' bytes as they are read */
    struct spans cur;   /* earlier parts of the reply in progress */
    struct replyscan rs;
    struct bconn *dnext;       /* worker flush list */
    struct bconn *rnext;       /* worker reap list */
    struct bconn *prev, *next; /* backend's list of connections */
    struct bconn *spare_next;  /* backend's spare list */
};

/* True when a request waits and the server has sent nothing on bc for
 * longer than after seconds, as of now (the loop's time); a reply already
 * waiting to be read (the read event pending in this loop turn) is progress.
 * A connection still connecting is not stalled: a server that does not
 * accept is not helped by more attempts (connect-timeout deals with it).
 * Every shared dispatch asks: inline. */
static inline bool bconn_stalled(const struct bconn *bc, double now, double after)
{
    return bc->head != NULL && now - bc->progress_at > after && !ev_is_pending(&bc->io) &&
           bc->state == BC_READY;
}

/* Count a stall once per episode (it ends at the next read), and hand the
 * requests not yet written back to their clients. May close bc (out of
 * memory in a hand-back). */
void bconn_note_stall(struct bconn *bc);

/* Open a new connection (shared or dedicated) to be, speaking protocol resp
 * (2 or 3); NULL when the attempt failed at once (the backend is then
 * marked down). */
struct bconn *bconn_connect(struct backend *be, bool dedicated, int resp);

/* Queue a request on a connection (it is written at the next flush). */
void bconn_enqueue(struct bconn *bc, struct req *r);

/* Write queued requests; called by the worker's flush pass. */
void bconn_flush(struct bconn *bc);

/* The owner of a paused dedicated connection made room: read it again. */
void bconn_resume(struct bconn *bc);

/* Close a connection: queued requests are handed back (retried or failed),
 * the descriptor is closed, and the struct is reaped later. */
void bconn_close(struct bconn *bc, const char *why);

/* Free a closed connection (worker reap pass only). */
void bconn_destroy(struct bconn *bc);

/* Close a connection that the server closed or that failed (counted as
 * lost in PROXY STATS). */
void bconn_lost(struct bconn *bc, const char *why);

/* A drain's grace is over: replies already in the socket are delivered, and
 * what is still unanswered is reset with the connection, so that a stalled
 * server never executes it later. */
void bconn_expire(struct bconn *bc, const char *why);

/* Close a connection where only blocking commands wait, on a server that
 * lost the master role, with a reset: the server drops them unexecuted, and
 * they are dispatched again (to the new master). What the socket holds is
 * read first; false (nothing released) when a reply had begun. */
bool bconn_release(struct bconn *bc, const char *why);

/* Hand the requests not written at all back to their clients, so that they
 * go wherever they belong now (the proxy's own are dropped). */
void bconn_take_back_unsent(struct bconn *bc);

/* True when everything queued on a dedicated connection was sent, no byte
 * of its reply has come, and it is a blocked command that may be sent to
 * another master (router_blocked_may_move): it waits for data, not for the
 * server. */
bool bconn_only_blocked(const struct bconn *bc);

/* Apply what a step of its owner's session did to the connection
 * (enum session_effect bits). */
void bconn_follow_session(struct bconn *bc, const struct session *s, unsigned effects);

/* Write nothing queued after the last request that expects a reply, from
 * the one after before (the head when NULL), until that reply is in: a
 * session's state replayed on a new connection must be in place before its
 * commands run there. */
void bconn_gate_after(struct bconn *bc, struct req *before);

/* A shared connection waits for replies and has had nothing to write for a
 * while: send it a PING, whose bytes the server's kernel must acknowledge,
 * so that a server cut off without a reset is found (net_user_timeout).
 * Once per quiet spell. */
void bconn_nudge(struct bconn *bc);

/* A resubscription was queued, n commands: the first counts[0] stream
 * replies confirm the first one, and so on; they are not the owner's. Until
 * they are all in (or a command is refused, or the connection closes), the
 * worker counts the resubscription as pending (resub_started). */
void bconn_expect_confirmations(struct bconn *bc, const uint32_t *counts, unsigned n);

#endif
