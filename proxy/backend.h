/*
 * backend.h - Redis servers seen from one worker.
 *
 * A backend is one server address (the master, or a replica). For each, a
 * worker keeps a few shared connections that many clients' requests are
 * multiplexed over (bconn.h), plus dedicated connections lent to one client
 * at a time while its session holds server-side state (MULTI, SELECT,
 * SUBSCRIBE, a blocking command...). Clean dedicated connections are kept as
 * spares for reuse.
 *
 * Shared connections come in two pools, one per protocol (RESP2 and RESP3),
 * so that a reply is only ever read by a client that speaks its protocol.
 *
 * A shared connection whose server has answered nothing on it for
 * stall-threshold while a request waits is stalled (a paused write, a busy
 * script, a slow command): clients take another shared connection, and
 * while every one is stalled more are opened, up to backend-connections-max;
 * those close again once idle.
 */
#ifndef SP_BACKEND_H
#define SP_BACKEND_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/addr.h"
#include "proxy/hello.h"
#include "proxy/offsets.h"

struct worker;
struct client;
struct bconn;

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

struct backend {
    struct worker *w;
    struct ev_loop *loop; /* the worker's */
    uint64_t id;          /* unique in its worker (backends come and go) */
    struct addr addr;
    char name[ADDR_TEXT_MAX];
    enum backend_role role;
    enum backend_state state;
    int nshared;              /* home slots per pool: clients are spread over these */
    int nslots;               /* ... and extra ones opened around stalls, up to this */
    struct bconn **shared;    /* 2 * nslots: the RESP2 pool, then the RESP3 pool (NULL: none) */
    struct hello_facts hello; /* what its HELLO 3 said (RESP3, version...) */
    double stall_after;       /* seconds without an answer that make a stall (HUGE_VAL: off) */
    double connect_after;     /* no new shared connection before then (the last was refused) */
    struct bconn *spare;
    int nspare;
    struct bconn *conns; /* every connection of this backend */
    ev_timer retry;
    ev_timer drain;        /* grace for requests in flight after losing the master role */
    bool drain_late;       /* the grace is over; blocked commands wait until hold-timeout */
    double suspect_until;  /* answered READONLY/LOADING/MASTERDOWN: avoided until then */
    double switch_started; /* new master: when its switch was first signalled (0 = logged) */
    /* as a replica: from the topology and this worker's own ROLE probes */
    bool healthy;               /* the Sentinels and ROLE agree it may serve reads */
    struct offsets_replica ofs; /* its replication offset */
    int weight;                 /* for balance: weighted */
    int64_t wrr;                /* smooth weighted round-robin state */
    char zone[32];
    double backoff;       /* seconds before the next connection attempt */
    double down_since;    /* when it went down (0 = up) */
    double down_logged;   /* when that was last logged (once a minute while down) */
    uint32_t down_tries;  /* connection attempts failed since */
    uint64_t nrequests;   /* requests forwarded */
    uint64_t nerrors;     /* connection failures */
    uint32_t inflight;    /* requests awaiting replies (for balancing) */
    uint32_t reply_avg;   /* running average of its clients' replies, bytes (backend_shared) */
    struct backend *next; /* worker's list */
};

/* Create the worker's view of a server (no connection is opened yet). */
struct backend *backend_new(struct worker *w, const struct addr *a, enum backend_role role);

/* Close every connection (their requests are handed back) and free. */
void backend_free(struct backend *be);

/* The backend lost its role (no longer the master, or gone from the
 * topology): requests not yet written go back to their clients, idle
 * connections close now, busy ones take nothing new and close once answered;
 * what is still unanswered after a grace period is reset, so that a stalled
 * server never executes it later. */
void backend_drain(struct backend *be, double grace);

/* Another server became the master: once the drain's grace is over,
 * connections of this one where only blocking commands still wait are
 * reset, and their commands go to the new master (bconn_release). */
void backend_release_blocked(struct backend *be);

/* Cancel a drain in progress (the backend got its role back). */
void backend_undrain(struct backend *be);

/* Open the shared connections now rather than on the first request. */
void backend_warm(struct backend *be);

/* True when requests may be queued on it now (not known to be down, not
 * suspect). Every request asks: inline. */
static inline bool backend_usable(const struct backend *be)
{
    return be->state != BE_DOWN && be->role != BACKEND_RETIRED &&
           (be->suspect_until == 0 || ev_now(be->loop) >= be->suspect_until);
}

/* Shared slots of both pools (the index bound of be->shared). */
static inline int backend_all_slots(const struct backend *be)
{
    return 2 * be->nslots;
}

/* The shared connection of the resp (2 or 3) pool for a client with the
 * given id whose replies run about hint bytes (0: not known): its home
 * slot, connected if needed, or another when that one is stalled or deep in
 * far larger replies; NULL when the backend is down or does not speak RESP3. */
struct bconn *backend_shared(struct backend *be, uint64_t client_id, int resp, uint32_t hint);

/* Worker tick: close the extra shared connections that have been idle for
 * a while, and find stalls that no dispatch saw where requests wait in a
 * connection's window. */
void backend_tick(struct backend *be, double now);

/* Lend a dedicated connection to a client: a clean spare or a new one. NULL
 * when the backend is down or memory ran out. */
struct bconn *backend_dedicated(struct backend *be, struct client *owner);

/* Give a dedicated connection back: kept as a spare when clean and idle,
 * otherwise closed. */
void backend_return(struct bconn *bc);

/* A connection attempt failed: retry later, with exponential backoff. A
 * failed extra connection while another is up says nothing about the
 * server: only that attempt fails. */
void backend_mark_down(struct backend *be, const char *why);

/* A connection succeeded: the backend is up; held requests may go. */
void backend_mark_up(struct backend *be);

/* Add a new connection to the backend's list. */
void backend_adopt(struct backend *be, struct bconn *bc);

/* Take a connection off every list of the backend (it is closing), so that
 * nothing new is queued on it. */
void backend_forget(struct backend *be, struct bconn *bc);

#endif
