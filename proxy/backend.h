/*
 * backend.h - Redis servers seen from one worker, and the connections to them.
 *
 * A backend is one server address (the master, or a replica). For each, a
 * worker keeps a few shared connections that many clients' requests are
 * multiplexed over (written together with one writev, replies matched back in
 * order), plus dedicated connections lent to one client at a time while its
 * session holds server-side state (MULTI, SELECT, SUBSCRIBE, a blocking
 * command...). Clean dedicated connections are kept as spares for reuse.
 *
 * A connection that fails hands its requests back: requests not yet sent and
 * read-only requests are dispatched again, writes whose outcome is unknown are
 * answered with an error. Connections are never freed inside their own
 * callbacks: they are marked closed and reaped by the worker.
 */
#ifndef SP_BACKEND_H
#define SP_BACKEND_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/addr.h"
#include "lib/transport.h"
#include "proxy/chunk.h"
#include "proxy/replyscan.h"

struct worker;
struct client;
struct req;

enum bconn_state {
    BC_CONNECTING = 0, /* TCP connect in progress */
    BC_READY = 1,      /* usable (handshake requests may still be queued first) */
    BC_CLOSED = 2,     /* failed or retired; waiting to be reaped */
};

enum backend_role {
    BACKEND_MASTER = 0,
    BACKEND_REPLICA = 1,
    BACKEND_RETIRED = 2, /* no longer in the topology: drains, then goes away */
};

enum backend_state {
    BE_UNKNOWN = 0, /* no connection attempt finished yet */
    BE_UP = 1,      /* a connection succeeded since the last failure */
    BE_DOWN = 2,    /* the last attempt failed; retrying with backoff */
};

struct bconn {
    struct backend *be;
    struct worker *w;
    struct transport t;
    ev_io io;
    ev_timer timer; /* connect timeout */
    uint64_t id;
    uint8_t state;      /* enum bconn_state */
    bool dedicated;     /* lent to one client (owner) */
    bool streaming;     /* replies are not matched to requests (SUBSCRIBE, MONITOR...) */
    uint32_t swallow;   /* stream replies to drop: confirmations of a resubscription */
    bool marker_sent;   /* streaming: the proxy's end-of-stream marker is on its way */
    bool marker_last;   /* ... and nothing was queued after it */
    bool dirty;         /* on the worker's flush list */
    bool tainted;       /* carries state that makes it unfit to lend again */
    bool reaped;        /* on the worker's reap list */
    bool retiring;      /* takes no new requests; closes once everything is answered */
    bool paused;        /* dedicated: not read while its owner is over its backlog limit */
    bool lagging;       /* ... and not read to the end since: the server may have given up */
    bool bulk;          /* replies come more than a chunk at a time: reads span chunks */
    uint8_t resp;       /* protocol version spoken (2 or 3) */
    int db;             /* selected database */
    unsigned io_events; /* events io is armed with */
    struct client *owner;
    struct req *head, *tail; /* queue: head is the oldest request awaiting its reply */
    struct req *unsent;      /* first request not completely written */
    uint32_t nqueued;
    struct chunk *rchunk; /* chunk being read into */
    uint32_t rpos;        /* bytes of rchunk scanned */
    uint32_t rstart;      /* where the reply in progress starts in rchunk */
    struct spans cur;     /* earlier parts of the reply in progress */
    struct replyscan rs;
    struct bconn *dnext;       /* worker flush list */
    struct bconn *rnext;       /* worker reap list */
    struct bconn *prev, *next; /* backend's list of connections */
    struct bconn *spare_next;  /* backend's spare list */
};

struct backend {
    struct worker *w;
    uint64_t id; /* unique in its worker (backends come and go) */
    struct addr addr;
    char name[ADDR_TEXT_MAX];
    uint8_t role;  /* enum backend_role */
    uint8_t state; /* enum backend_state */
    int nshared;
    struct bconn **shared;
    struct bconn *spare;
    int nspare;
    struct bconn *conns; /* every connection of this backend */
    ev_timer retry;
    ev_timer drain;        /* grace for requests in flight after losing the master role */
    double suspect_until;  /* answered READONLY/LOADING/MASTERDOWN: avoided until then */
    double switch_started; /* new master: when its switch was first signalled (0 = logged) */
    /* as a replica: from the topology and this worker's own ROLE probes */
    bool healthy;       /* the Sentinels and ROLE agree it may serve reads */
    bool probe_pending; /* a ROLE probe is in flight */
    int weight;         /* for balance: weighted */
    int64_t wrr;        /* smooth weighted round-robin state */
    uint64_t offset;    /* replication offset it has processed (0 = unknown) */
    double offset_at;   /* when offset was learnt */
    char zone[32];
    double backoff;       /* seconds before the next connection attempt */
    double down_since;    /* when it went down (0 = up) */
    uint64_t nrequests;   /* requests forwarded */
    uint64_t nerrors;     /* connection failures */
    uint32_t inflight;    /* requests awaiting replies (for balancing) */
    struct backend *next; /* worker's list */
};

/* Create the worker's view of a server (no connection is opened yet). */
struct backend *backend_new(struct worker *w, const struct addr *a, int role);

/* Close every connection (their requests are handed back) and free. */
void backend_free(struct backend *be);

/* The backend lost its role (no longer the master, or gone from the
 * topology): requests not yet written go back to their clients, idle
 * connections close now, busy ones take nothing new and close once answered;
 * what is still unanswered after a grace period is reset, so that a stalled
 * server never executes it later. */
void backend_drain(struct backend *be, double grace);

/* Cancel a drain in progress (the backend got its role back). */
void backend_undrain(struct backend *be);

/* Open the shared connections now rather than on the first request. */
void backend_warm(struct backend *be);

/* True when requests may be queued on it now (not known to be down, not
 * suspect). */
bool backend_usable(const struct backend *be);

/* The shared connection for a client with the given id, connecting it if
 * needed; NULL when the backend is down. */
struct bconn *backend_shared(struct backend *be, uint64_t client_id);

/* Lend a dedicated connection to a client: a clean spare or a new one. NULL
 * when the backend is down or memory ran out. */
struct bconn *backend_dedicated(struct backend *be, struct client *owner);

/* Give a dedicated connection back: kept as a spare when clean and idle,
 * otherwise closed. */
void backend_return(struct bconn *bc);

/* Open a new connection (shared or dedicated) to be; NULL when the attempt
 * failed at once (the backend is then marked down). */
struct bconn *bconn_connect(struct backend *be, bool dedicated);

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

#endif
