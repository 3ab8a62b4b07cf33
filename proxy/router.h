/*
 * router.h - where a request goes (router_route), and what becomes of it when
 * its reply says it must go elsewhere or its connection is lost
 * (router_reply_verdict, router_lost_verdict). Every routing rule lives in
 * router.c; client.c and bconn.c carry the decisions out.
 */
#ifndef SP_ROUTER_H
#define SP_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct backend;
struct client;
struct config;
struct req;

enum route_kind {
    ROUTE_LOCAL = 0,     /* answered (or refused) by the proxy */
    ROUTE_WAIT = 1,      /* not yet: replies in flight must come first */
    ROUTE_HOLD = 2,      /* no backend can take it now: held (what says which) */
    ROUTE_PIN = 3,       /* the session needs a dedicated connection to be (the master) */
    ROUTE_DEDICATED = 4, /* the client's dedicated connection */
    ROUTE_SHARED = 5,    /* a shared connection to be */
};

struct route {
    enum route_kind kind;
    struct backend *be; /* ROUTE_PIN, ROUTE_SHARED */
    const char *what;   /* ROUTE_HOLD: "master" or "backend" */
    uint64_t check;     /* ROUTE_SHARED to a replica not yet seen at the offset the
                         * client's writes reached: that offset (0 = none); the read
                         * goes behind a ROLE and is checked (offsets_send_check) */
};

/* Decide where r, the next request of c to dispatch, goes. */
void router_route(struct client *c, struct req *r, struct route *rt);

/* True when AUTH request r carries the proxy's own backend credentials. */
bool router_auth_is_proxys(const struct config *cfg, struct req *r);

/* True when r is a command blocked waiting for data (BLPOP, XREAD BLOCK
 * from a given id...) that did nothing until data came: if its server lost
 * the master role, it may be sent to the new master. Cold path. */
bool router_blocked_may_move(struct req *r);

/* False for a read whose meaning depends on when it runs (XREAD BLOCK from
 * $): it must not be sent again after its reply was lost. Cold path. */
bool router_read_may_repeat(struct req *r);

/* What an error reply says about whether the command ran. */
enum router_refusal {
    REFUSAL_NONE = 0,
    REFUSAL_NOT_EXECUTED = 1, /* LOADING; with Sentinel also READONLY, MASTERDOWN */
    REFUSAL_NOSCRIPT = 2,     /* a replica lacks the script */
    REFUSAL_UNBLOCKED = 3,    /* with Sentinel: a blocked command released as its master
                                 turned into a replica (not by CLIENT UNBLOCK) */
};

/* Classify the head of a '-' error reply (its first len bytes). */
enum router_refusal router_refusal(const char *head, size_t len, bool follows_sentinel);

/* The facts about a request whose reply came back or whose connection was
 * lost. */
struct router_fate {
    bool internal;   /* the proxy's own request */
    bool orphan;     /* its client is gone */
    bool dedicated;  /* it was on a dedicated connection */
    bool can_resend; /* the session allows sending it again (session_can_resend) */
    /* replies */
    bool from_replica;           /* the server is a replica */
    bool master_only;            /* a replica already sent it to the master */
    bool within_hold;            /* it arrived less than hold-timeout ago */
    bool blocked_may_move;       /* router_blocked_may_move */
    enum router_refusal refusal; /* what an error reply says */
    /* lost connections */
    bool streamed;   /* sent on a streaming connection: no reply was matched to it */
    bool unsent;     /* not a byte of it was written */
    bool is_read;    /* a read-only command */
    unsigned lost;   /* connections lost under it before, this one not counted */
    bool released;   /* a blocking command dropped unexecuted by a former master */
    bool repeatable; /* a read that means the same when sent again (router_read_may_repeat) */
};

enum router_reply {
    REPLY_DELIVER = 0,   /* to its client */
    REPLY_INTERNAL = 1,  /* the proxy's own request: its handler takes it */
    REPLY_DISCARD = 2,   /* its client is gone */
    REPLY_TO_MASTER = 3, /* a replica refused a read: the master answers it */
    REPLY_RETRY = 4,     /* not executed (the server is not a usable master yet): send again */
    REPLY_STALE = 5,     /* a checked read that may not have seen its client's writes: send again
                          * (decided by offsets_check_read, not router_reply_verdict) */
};

/* What to do with a reply. */
enum router_reply router_reply_verdict(const struct router_fate *f);

/* A read is sent this many times at most when its connections keep being
 * lost: a master killed under it, then a connection to it made while it was
 * dying, then the elected successor. A read that makes its server close the
 * connection (a reply over client-output-buffer-limit) costs every request
 * in flight on that shared connection each time: it cannot loop. */
#define ROUTER_READ_ATTEMPTS 3

enum router_lost {
    LOST_DROP = 0,       /* the proxy's own, or its client is gone */
    LOST_KEEP = 1,       /* already answered (streamed): nothing to do */
    LOST_RESEND = 2,     /* never written: dispatch it again */
    LOST_RETRY_READ = 3, /* a read whose reply was lost: dispatch it again (until hold-timeout,
                          * ROUTER_READ_ATTEMPTS times at most) */
    LOST_FAIL_READ = 4,  /* a read that cannot be sent again: an error */
    LOST_FAIL_WRITE = 5, /* a write whose outcome is unknown: an error that says so */
};

/* What to do with a request whose connection was lost before its reply. */
enum router_lost router_lost_verdict(const struct router_fate *f);

#endif
