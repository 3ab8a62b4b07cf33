/*
 * offsets.h - replication offsets in the data plane, for read-your-writes and
 * replica lag.
 *
 * After a batch of writes on a shared master connection, the proxy appends
 * its own ROLE to the same batch: executed after those writes on the same
 * connection, its reply gives a master offset at least as high as theirs.
 * Each replica is asked ROLE every few milliseconds while it serves reads, so
 * its processed offset is known. A client whose writes reached offset X reads
 * only from replicas known to have processed X; until X is known its reads
 * stay on the master (or, with read-from replicas, wait). A read that would
 * wait only because a replica has not been seen at X yet is sent to it right
 * behind a ROLE of its own: executed in that order, the ROLE's offset tells
 * whether the read saw X; if not, its reply is dropped and it is sent again.
 * So a read after a write waits for no timer, only for replication. The cost
 * is one small command per write batch per master connection, a few per
 * second per replica, and one per read sent that way.
 */
#ifndef SP_OFFSETS_H
#define SP_OFFSETS_H

#include <stdbool.h>
#include <stdint.h>

#define OFFSETS_PROBES 4096 /* ring of recent master ROLE probes (power of two) */

enum offsets_probe_state {
    PROBE_FREE = 0,
    PROBE_PENDING = 1,
    PROBE_DONE = 2,
    PROBE_FAILED = 3,
};

/* One ROLE probe sent after writes on a master connection. */
struct offsets_probe {
    uint64_t seq;
    uint64_t offset; /* master replication offset it reported */
    enum offsets_probe_state state;
};

/* A worker's view of the master's offsets. */
struct offsets_worker {
    struct offsets_probe *probes; /* ring of OFFSETS_PROBES */
    uint64_t probe_seq;           /* last probe created */
    uint64_t probe_done_max;      /* highest probe seq answered */
    uint64_t master_offset;       /* highest offset seen of the current master */
    uint64_t master_gen;          /* changes with the master: offsets of another one are void */
    bool probe_wanted;            /* send a master ROLE probe soon, even without writes */
};

/* What a client's reads must wait for after its writes. */
struct offsets_client {
    uint64_t offset; /* master offset replicas must have reached */
    uint64_t probe;  /* ... or the probe after its last write, still unanswered */
    uint64_t after;  /* ... or any probe created after this one (0 = none) */
    uint64_t gen;    /* the worker's master_gen when these were recorded */
};

/* A replica's progress, as this worker's probes last saw it. */
struct offsets_replica {
    bool probe_pending; /* a ROLE probe is in flight */
    uint64_t offset;    /* replication offset it has processed (0 = unknown) */
    double at;          /* when offset was learnt */
    uint32_t misses;    /* checked reads in a row that found it behind */
    double missed_at;   /* when the last of them did */
    uint64_t ack_need;  /* acks.c: the offset it was last asked again for at once */
    uint64_t ack_seen;  /* ... and the offset it had then */
};

struct worker;
struct bconn;
struct backend;
struct client;
struct req;

/* Allocate the worker's probe ring; false if out of memory. */
bool offsets_init(struct worker *w);

/* Free the probe ring. */
void offsets_free(struct worker *w);

/* Before bc is written: on a shared master connection with unprobed writes
 * (or a probe wanted), tag them and queue a ROLE probe after them. */
void offsets_before_flush(struct bconn *bc);

/* Ask replica be for its offset now; false when no request or connection
 * could be had (the next tick tries again). */
bool offsets_probe_replica(struct worker *w, struct backend *be);

/* Have a master ROLE probe sent with the master connection's next flush
 * (what a write without a probe of its own waits for). */
void offsets_probe_master(struct worker *w);

/* What became of master probe seq: PROBE_DONE with *offset set,
 * PROBE_PENDING, or PROBE_FAILED (lost, or so old it was forgotten). */
enum offsets_probe_state offsets_probe_result(struct worker *w, uint64_t seq, uint64_t *offset);

/* Worker tick: ask replicas for their offsets (ROLE) when due. */
void offsets_tick(struct worker *w, double now);

/* A read needs replica be to have reached offset need, which it has not
 * been seen to reach (UINT64_MAX: the master's offset after the client's
 * write is not known yet; a probe of the master is asked for if none is in
 * flight). True when the read may be sent to be right behind a ROLE of its
 * own (offsets_send_check), to be checked on its reply. */
bool offsets_demand(struct worker *w, struct backend *be, uint64_t need);

/* Queue on replica connection bc the ROLE that the checked read queued next
 * is judged by; false if out of memory. */
bool offsets_send_check(struct bconn *bc);

/* The reply of checked read r (REQ_RYW_CHECK) came on bc: true when the ROLE
 * before it showed the replica had processed r->need; false when the reply
 * may be stale and the read must be sent again. */
bool offsets_check_read(struct bconn *bc, struct req *r);

/* A probe's reply is complete (r is the probe; bc its connection). */
void offsets_probe_reply(struct bconn *bc, struct req *r);

/* A probe was lost with its connection. */
void offsets_probe_lost(struct worker *w, struct backend *be, struct req *r);

/* A client's request completed: after a write, remember what its reads must
 * wait for. */
void offsets_after_reply(struct client *c, struct req *r, bool dedicated);

/* The offset a replica must have processed to serve this client's reads, or
 * UINT64_MAX when that is not known yet (its reads must go to the master). */
uint64_t offsets_required(struct client *c);

#endif
