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

/* Request latency, from arrival to the last byte of the reply leaving: fixed
 * buckets, counted per worker and summed at scrape (proxy/metrics.c). The
 * bounds are powers of two microseconds, 2^WORKER_LAT_LOG_MIN (64 us) to
 * 2^(WORKER_LAT_LOG_MIN + WORKER_LAT_NBUCKETS - 1) (8.4 s), so that the
 * bucket is a count of leading zeros, whatever the latency. */
#define WORKER_LAT_NBUCKETS 18
#define WORKER_LAT_LOG_MIN  6

/* The bucket of a latency of us microseconds (WORKER_LAT_NBUCKETS: above
 * every bound). */
static inline unsigned worker_lat_bucket(uint64_t us)
{
    unsigned k = us > 1 ? 64u - (unsigned)__builtin_clzll(us - 1) : 0u; /* us <= 2^k */
    unsigned b = k > WORKER_LAT_LOG_MIN ? k - WORKER_LAT_LOG_MIN : 0u;

    return b < WORKER_LAT_NBUCKETS ? b : WORKER_LAT_NBUCKETS;
}

struct worker_latency {
    uint64_t bucket[WORKER_LAT_NBUCKETS + 1]; /* not cumulative; the last: above every bound */
    uint64_t sum_us;
    uint64_t pad_[32 - WORKER_LAT_NBUCKETS - 2]; /* a power of two in size: cheap to index */
};

/* Requests by what they are (metrics); worker_kind_of maps a command's
 * CMDF_WRITE | CMDF_READONLY bits to one. */
enum worker_kind {
    WORKER_KIND_READ = 0,  /* read-only commands */
    WORKER_KIND_WRITE = 1, /* commands that may write */
    WORKER_KIND_OTHER = 2, /* the rest: connection, admin, pub/sub, unknown */
    WORKER_NKIND = 3,
};
extern const uint8_t worker_kind_of[4];

/* How a request ended (metrics). */
enum worker_outcome {
    WORKER_OUT_OK = 0,
    WORKER_OUT_SERVER_ERROR = 1, /* the server answered with an error */
    WORKER_OUT_PROXY_ERROR = 2,  /* the proxy answered with an error of its own */
    WORKER_NOUT = 3,
};

struct worker_stats {
    uint64_t connections;      /* clients accepted */
    uint64_t requests;         /* requests received */
    uint64_t local;            /* answered by the proxy */
    uint64_t retried;          /* requests dispatched again after a failure */
    uint64_t unknown;          /* writes whose outcome was unknown */
    uint64_t held_timeouts;    /* requests failed after waiting too long */
    uint64_t acks_waited;      /* write replies kept until replicas had processed them */
    uint64_t acks_failed;      /* ... that replicas did not confirm: outcome unknown */
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
    uint64_t deep_conns_opened;  /* extra shared connections opened for small requests */
    uint64_t deep_conns_closed;  /* ... and closed */
    uint64_t client_reads;
    uint64_t client_writes;
    uint64_t tls_handshakes;         /* TLS clients whose handshake completed */
    uint64_t tls_handshake_failures; /* ... that failed or timed out */
    uint64_t refused;                /* clients refused at max-clients */
    uint64_t protocol_errors;        /* clients closed for malformed requests */
    uint64_t bytes_in;               /* request bytes read (requests queued) */
    uint64_t bytes_out;              /* bytes written to clients */
    uint64_t outcome[WORKER_NOUT];   /* requests answered, by outcome */
    /* requests answered, by destination and kind: their latency */
    struct worker_latency lat[REQ_NDEST][WORKER_NKIND];
};

/* A worker's levels (not counters), published every tick for other threads. */
struct worker_gauges {
    uint64_t held_bytes;
    uint32_t held_reqs;
    uint32_t bconns_ready;      /* backend connections usable */
    uint32_t bconns_connecting; /* ... connecting (or in their TLS handshake) */
    uint32_t dedicated_lent;
    uint32_t dedicated_spare;
    uint32_t clients;
    size_t chunks_live;
    size_t chunks_pooled;
};

/* A configuration handed to a worker by a reload (proxy/reload.c); the
 * worker owns it, and the sockets in it, once handed over. */
struct worker_conf {
    uint64_t gen;             /* acknowledged through worker_conf_gen once applied */
    const struct config *cfg; /* stays valid until every worker has acknowledged */
    int *fds;             /* per listener of cfg: a socket for this worker, or -1: the one it has */
    bool *shared;         /* per listener: fds[i] is shared with other workers (unix) */
    struct tls_ctx **tls; /* per listener: its TLS context (NULL: plain); the reload's */
    struct listener **ls; /* room for the worker's new listener array */
};

struct worker {
    int id;
    struct proxy *px;
    const struct config *cfg; /* the worker's view: px->cfg until a reload hands it another */
    uint64_t conf_gen;        /* the last reload applied (atomic) */
    bool replica_reads;       /* some listener may send reads to replicas (read-your-writes) */
    struct worker_conf *conf_mailbox;
    struct ev_loop *loop;
    pthread_t thread;
    ev_async wake;
    ev_prepare flush;
    ev_check clock;  /* sets now after each poll */
    double now;      /* the loop's time this turn (ev_now without a call), for the hot path */
    uint64_t now_us; /* ... in microseconds */
    ev_timer tick;
    ev_timer probe; /* replica offset probes */
    struct chunk_pool pool;
    struct req_pool reqs; /* requests, and the chunk of the proxy's own bytes */
    struct listener **listeners;
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
    uint32_t held_reqs;
    uint64_t next_bconn_id;
    uint64_t next_backend_id;
    bool stopping;
    bool drain_asked; /* set by the control thread: drain (worker_drain) */
    bool draining;    /* listeners closed; clients closed as soon as they are idle */
    bool drained;     /* draining and no client left (read by the control thread) */
    bool running;     /* the thread was started */
    bool wake_pending;
    bool wake_asked;           /* another thread asked for worker_wake_waiting (atomic) */
    struct offsets_worker ofs; /* read-your-writes: the master's offsets */
    struct client *acking;     /* clients with writes waiting for replicas (acks.c) */
    struct addr ack_master;    /* the last master in use (also while writes are held) */
    bool ack_master_set;
    struct backend **replicas; /* the replicas of the current topology */
    size_t nreplicas;
    uint64_t rr;                   /* round-robin position */
    struct backend *commands_from; /* worker 0: master the command table was asked of */
    /* After a master switch, requests for the new master wait until the
     * subscriptions of the proxy's clients, this worker's and every other
     * worker's, are re-established there, at most until resub_timer. */
    uint64_t resub_version; /* the switch waited on: its topology version (0: none) */
    bool resub_holding;     /* requests for the master wait (atomic: other workers read it) */
    bool resub_check;       /* the wait may be over: worker_flush_cb looks again */
    uint32_t resub_pending; /* connections whose resubscription is not confirmed yet */
    uint32_t resub_started; /* resubscriptions started since the switch */
    double resub_since;     /* when the switch was applied */
    ev_timer resub_timer;   /* the bound on the wait */
    uint64_t resub_done;    /* atomic: nothing of this worker's is waited for up to this version */
    struct worker_stats stats;
    pthread_mutex_t snap_lock; /* guards snap/nsnap (read by other workers) */
    struct worker_backend_snap snap[WORKER_SNAP_MAX];
    size_t nsnap;
    /* counters of backends freed, by address, so that the totals per
     * address never go down (the worker's own thread only) */
    struct worker_backend_snap gone[WORKER_SNAP_MAX];
    size_t ngone;
    struct worker_gauges gauges; /* guarded by snap_lock */
    /* refusals and hold timeouts are logged as one line with their count,
     * at most every WORKER_REPORT_EVERY seconds */
    uint64_t refused_logged, timeouts_logged;
    double refused_at, timeouts_at;
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

/* Hand the worker a new configuration (one thread only: the control
 * thread; takes m and its sockets): its listeners follow cfg's list (kept
 * where the address stays, each with its new read-from and TLS context),
 * and everything it reads from the configuration comes from cfg from then
 * on. One it has not taken yet is merged into m. */
void worker_reconfigure(struct worker *w, struct worker_conf *m);

/* The generation of the last configuration w applied (any thread). */
uint64_t worker_conf_gen(struct worker *w);

/* Free m, closing the sockets it still holds. */
void worker_conf_free(struct worker_conf *m);

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

/* Wake w's waiting clients on its own thread, soon (any thread). */
void worker_wake_async(struct worker *w);

/* Wake waiting clients at the end of this loop turn (safe inside callbacks). */
void worker_wake_later(struct worker *w);

/* Copy w's backend counters into out (at most max, any thread); returns the
 * count. The worker's own thread gets live values. */
size_t worker_backend_counters(struct worker *w, bool own, struct worker_backend_snap *out,
                               size_t max);

/* The backend for an address in the current topology (NULL if none). */
struct backend *worker_backend(struct worker *w, const struct addr *a);

/* Every worker's backend counters merged by address (own's live, the others'
 * from their last tick; own may be NULL): a malloc'd array of *n entries,
 * NULL if out of memory. */
struct worker_backend_snap *worker_backend_totals(struct proxy *px, struct worker *own, size_t *n);

/* Ask w to drain (any thread): close its listeners, close each client as
 * soon as it has no request in flight; w->drained says when none is left. */
void worker_drain(struct worker *w);

/* Whether w has drained (any thread). */
bool worker_drained(struct worker *w);

/* Draining: close c if it is idle (nothing read, queued or unsent). True
 * when it was closed. */
bool worker_drain_client(struct worker *w, struct client *c);

/* be is being freed: keep its counters under its address (w's thread). */
void worker_backend_gone(struct worker *w, const struct backend *be);

/* w's levels as it last published them (any thread; at most a tick old). */
void worker_gauges_get(struct worker *w, struct worker_gauges *out);

/* Defer freeing to the end of the loop turn. */
void worker_reap_client(struct worker *w, struct client *c);
void worker_reap_bconn(struct worker *w, struct bconn *bc);

#endif
