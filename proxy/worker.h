/*
 * worker.h - a data-plane thread: its own libev loop, listeners, clients,
 * backend connections, buffer pool and request free list. Workers share
 * nothing on the request path; they learn about topology changes from an
 * immutable snapshot handed over through an ev_async wake-up.
 *
 * Output is batched: handlers only queue bytes and mark connections dirty,
 * and a prepare watcher flushes every dirty connection once per loop turn, so
 * requests that many clients sent in the same turn leave in one writev.
 */
#ifndef SP_WORKER_H
#define SP_WORKER_H

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/addr.h"
#include "proxy/backend.h"
#include "proxy/chunk.h"
#include "proxy/offsets.h"
#include "proxy/req.h"

struct proxy;
struct client;
struct bconn;
struct backend;
struct req;
struct topology;
struct listener;

#define WORKER_SNAP_MAX 64 /* backends in a worker's published counters */

/* A backend's counters as its worker last published them (every tick), so
 * that PROXY TOPOLOGY can show the whole process. */
struct worker_backend_snap {
    char name[ADDR_TEXT_MAX];
    enum backend_role role;
    uint64_t requests;
    uint64_t failures;
    uint32_t inflight;
};

/* Add n to a counter of w->stats. Only w's thread writes its counters and
 * other threads read them (PROXY STATS): a relaxed atomic store of the sum
 * is enough, and costs what a plain increment does. */
#define WORKER_COUNT(w, field, n)                                                                  \
    __atomic_store_n(&(w)->stats.field, (w)->stats.field + (n), __ATOMIC_RELAXED)

struct worker_stats {
    uint64_t connections;      /* clients accepted */
    uint64_t requests;         /* requests received */
    uint64_t local;            /* answered by the proxy */
    uint64_t retried;          /* requests dispatched again after a failure */
    uint64_t unknown;          /* writes whose outcome was unknown */
    uint64_t held_timeouts;    /* requests failed after waiting too long */
    uint64_t backend_connects; /* backend connections opened */
    uint64_t backend_closes;   /* backend connections closed, for any reason */
    uint64_t backend_lost;     /* ... of them closed by the server, or failed */
    uint64_t backend_reads;    /* read syscalls on backends */
    uint64_t backend_writes;
    uint64_t reads_master;       /* read-only requests sent to the master */
    uint64_t reads_replicas;     /* read-only requests sent to replicas */
    uint64_t ryw_to_master;      /* reads kept off lagging replicas by read-your-writes */
    uint64_t ryw_checked;        /* reads sent to a replica behind a ROLE of their own */
    uint64_t ryw_again;          /* ... whose ROLE showed the replica behind: sent again */
    uint64_t stalls;             /* shared connections seen stalled (once per episode) */
    uint64_t stall_conns_opened; /* extra shared connections opened around stalls */
    uint64_t stall_conns_closed; /* ... and closed */
    uint64_t stall_longest_us;   /* the longest stall seen to its end (a maximum, not a sum) */
    uint64_t client_reads;
    uint64_t client_writes;
    uint64_t tls_handshakes;         /* TLS clients whose handshake completed */
    uint64_t tls_handshake_failures; /* ... that failed or timed out */
};

struct worker {
    int id;
    struct proxy *px;
    struct ev_loop *loop;
    pthread_t thread;
    ev_async wake;
    ev_prepare flush;
    ev_check clock; /* sets now after each poll */
    double now;     /* the loop's time this turn (ev_now without a call), for the hot path */
    ev_timer tick;
    ev_timer probe; /* replica offset probes */
    struct chunk_pool pool;
    struct req_pool reqs; /* requests, and the chunk of the proxy's own bytes */
    struct listener *listeners;
    size_t nlisteners;
    struct client *clients; /* all clients */
    uint32_t nclients;
    struct client *dirty_clients;
    struct bconn *dirty_bconns;
    struct client *waiting; /* clients with held requests */
    struct client *reap_clients;
    struct bconn *reap_bconns;
    struct backend *backends;
    struct backend *master; /* NULL while no master is confirmed */
    struct topology *topo;
    struct topology *mailbox; /* next snapshot, swapped atomically */
    uint64_t held_bytes;
    uint64_t next_bconn_id;
    uint64_t next_backend_id;
    bool stopping;
    bool running; /* the thread was started */
    bool wake_pending;
    struct offsets_worker ofs; /* read-your-writes: the master's offsets */
    struct backend **replicas; /* the replicas of the current topology */
    size_t nreplicas;
    uint64_t rr;                   /* round-robin position */
    struct backend *commands_from; /* worker 0: master the command table was asked of */
    struct worker_stats stats;
    pthread_mutex_t snap_lock; /* guards snap/nsnap (read by other workers) */
    struct worker_backend_snap snap[WORKER_SNAP_MAX];
    size_t nsnap;
};

/* Create a worker (loop, pool, listeners); false with err set. */
bool worker_init(struct worker *w, struct proxy *px, int id, char *err, size_t errlen);

/* Open (or take from shared_fds) the worker's listening sockets and start
 * accepting clients on them; false with err set. */
bool worker_listen(struct worker *w, const int *shared_fds, char *err, size_t errlen);

/* Start the worker's thread. */
bool worker_start(struct worker *w);

/* Hand a topology snapshot to the worker (any thread); takes a reference. */
void worker_publish(struct worker *w, struct topology *t);

/* Ask the worker to stop and wait for its thread. */
void worker_stop(struct worker *w);

/* Free a stopped worker's resources. Every worker must be stopped first: a
 * running one may still read another's published counters. */
void worker_free(struct worker *w);

/* Queue a client for the flush pass. */
void worker_mark_client(struct worker *w, struct client *c);

/* Queue a backend connection for the flush pass. */
void worker_mark_bconn(struct worker *w, struct bconn *bc);

/* Put a client on / take it off the list of clients holding requests. */
void worker_wait(struct worker *w, struct client *c);
void worker_unwait(struct worker *w, struct client *c);

/* Wake every waiting client (a backend came up, the topology changed). */
void worker_wake_waiting(struct worker *w);

/* Wake waiting clients at the end of this loop turn (safe inside callbacks). */
void worker_wake_later(struct worker *w);

/* Copy w's backend counters into out (at most max, any thread); returns the
 * count. The worker's own thread gets live values. */
size_t worker_backend_counters(struct worker *w, bool own, struct worker_backend_snap *out,
                               size_t max);

/* The backend for an address in the current topology (NULL if none). */
struct backend *worker_backend(struct worker *w, const struct addr *a);

/* Defer freeing to the end of the loop turn. */
void worker_reap_client(struct worker *w, struct client *c);
void worker_reap_bconn(struct worker *w, struct bconn *bc);

#endif
