/*
 * req.h - one client request on its way through the proxy: its bytes (spans
 * over the client's read chunks), where it was sent, and its reply (spans
 * over the backend's read chunks, or a reply the proxy wrote itself).
 *
 * A request sits on two queues: its client's queue, in the order the client
 * sent it (replies go back in that order), and, once dispatched, the queue
 * of the backend connection it was written to (replies come back in that
 * order). Requests are recycled through a per-worker pool.
 */
#ifndef SP_REQ_H
#define SP_REQ_H

#include <stdbool.h>
#include <stdint.h>

#include "proxy/chunk.h"

struct client;
struct bconn;
struct cmd_info;

enum {
    REQ_DONE = 1u << 0,         /* reply complete: may be written to the client */
    REQ_DISPATCHED = 1u << 1,   /* queued on a backend connection */
    REQ_INTERNAL = 1u << 2,     /* the proxy's own command (handshake, state replay) */
    REQ_CLOSE_AFTER = 1u << 3,  /* close the client once this reply is written */
    REQ_PUSH = 1u << 4,         /* unsolicited output: push, pub/sub message, MONITOR line */
    REQ_NOREPLY = 1u << 5,      /* sent on a streaming connection: no reply is matched to it */
    REQ_HELD = 1u << 6,         /* counted in the worker's held bytes */
    REQ_ERROR = 1u << 7,        /* the reply is an error */
    REQ_NUDGE = 1u << 8,        /* the proxy's PING on a quiet connection (bconn_nudge) */
    REQ_EXEC_NIL = 1u << 9,     /* EXEC sent as DISCARD: watched keys were lost; reply nil */
    REQ_PROBE = 1u << 10,       /* the proxy's ROLE probe: its reply updates offsets */
    REQ_MASTER_ONLY = 1u << 11, /* a replica lacked something (NOSCRIPT): go to the master */
    REQ_DEDICATED = 1u << 12,   /* queued on a dedicated connection */
    REQ_COMMANDS = 1u << 13,    /* the proxy's COMMAND: its reply becomes the command table */
    REQ_CREDENTIALS = 1u << 14, /* a session's AUTH/HELLO replayed on a new connection */
    REQ_STATE = 1u << 15,      /* a session's SELECT replayed: the connection is unfit without it */
    REQ_NAME = 1u << 16,       /* the proxy's CLIENT SETNAME on a new shared connection */
    REQ_HELLO = 1u << 17,      /* the proxy's HELLO 3 on a new RESP3 shared connection */
    REQ_RYW_CHECK = 1u << 18,  /* a read sent behind a ROLE that says whether it saw need */
    REQ_CHECK_ROLE = 1u << 19, /* that ROLE (a probe of the client's connection) */
    REQ_PROXY_ERROR = 1u << 20, /* the error reply is the proxy's own, not a server's */
    REQ_ACK_WAIT = 1u << 21,    /* reply complete, kept until replicas processed it (acks.c) */
    REQ_ACK_AFTER = 1u << 22,   /* ... with no probe of its own: any probe after probe tells */
};

/* Where a request was answered (metrics). */
enum req_dest {
    REQ_DEST_LOCAL = 0, /* by the proxy: never sent, or failed before a reply */
    REQ_DEST_MASTER = 1,
    REQ_DEST_REPLICA = 2,
    REQ_NDEST = 3,
};

struct req {
    struct req *cprev, *cnext; /* client queue */
    struct req *bnext;         /* backend connection queue */
    struct client *client;     /* NULL once the client is gone (reply discarded) */
    struct bconn *bc;          /* where it was sent, while dispatched */
    const struct cmd_info *ci; /* NULL for unknown commands */
    struct spans in;           /* request bytes, exactly as the client sent them */
    struct spans out;          /* reply bytes */
    uint64_t sent;             /* bytes of in written to the backend */
    uint64_t written;          /* bytes of out written to the client */
    double since;              /* when it became ready to dispatch (ev_now) */
    uint32_t flags;
    int32_t intarg;   /* a parsed argument (SELECT db, HELLO version) or -1 */
    uint32_t argc;    /* argument count */
    uint8_t dest;     /* enum req_dest: the last backend role it was sent to */
    uint8_t lost;     /* connections lost under it (a read is sent again: router.c) */
    uint32_t expect;  /* reply bytes expected, while queued on a connection (bconn.c) */
    uint64_t arrived; /* when it was read, in microseconds (latency counts from here) */
    uint64_t seq;     /* position in the client's stream */
    uint64_t probe;   /* write: the ROLE probe sent after it on its connection (0 = none) */
    uint64_t need;    /* REQ_RYW_CHECK: the offset its replica must have processed;
                         REQ_ACK_WAIT: the offset replicas must reach (UINT64_MAX: unknown) */
};

/* A worker's supply of requests: recycled request objects, and the chunk the
 * proxy writes its own requests and replies into. Owned by one worker. */
struct req_pool {
    struct req *free; /* linked by bnext */
    size_t nfree;
    struct chunk *lchunk;      /* small writes of the proxy's own */
    struct chunk_pool *chunks; /* the worker's chunks */
    uint64_t errors_sent;      /* error replies the proxy generated (read by other threads) */
};

/* An empty pool taking its chunks from chunks. */
void req_pool_init(struct req_pool *p, struct chunk_pool *chunks);

/* Free every recycled request and the proxy's chunk. */
void req_pool_free(struct req_pool *p);

/* Take a zeroed request from the pool (or malloc). NULL if out of memory. */
struct req *req_new(struct req_pool *p);

/* Release a request's spans and give it back to the pool. The request must
 * already be off every queue. */
void req_free(struct req_pool *p, struct req *r);

/* Replace the reply with the given bytes (a whole RESP reply, e.g.
 * "-ERR ...\r\n"), copied into the worker's reply chunk, and mark it done.
 * False if out of memory. */
bool req_reply_raw(struct req_pool *p, struct req *r, const char *resp, size_t len)
    __attribute__((warn_unused_result));

/* Append a copy of data to s, in the worker's small-write chunk (for the
 * proxy's own requests and replies). False if out of memory. */
bool req_spans_copy_in(struct req_pool *p, struct spans *s, const char *data, size_t len)
    __attribute__((warn_unused_result));

/* Reply with an error line: "-<msg>\r\n" (msg starts with the error code,
 * e.g. "ERR ..."); CR/LF in msg become spaces. */
void req_reply_error(struct req_pool *p, struct req *r, const char *msg);

/* Reply with a printf-formatted error line. */
void req_reply_errorf(struct req_pool *p, struct req *r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Build one of the proxy's own requests (multibulk of argv) with no client;
 * NULL if out of memory. */
struct req *req_internal(struct req_pool *p, int argc, const char *const *argv, const size_t *argl);

/* Copy the request bytes into a new contiguous malloc'd buffer (cold paths
 * that need every argument). *len receives the size; NULL if too big/OOM. */
char *req_flatten(struct req *r, size_t max, size_t *len);

/* The same for the reply bytes. */
char *req_flatten_out(struct req *r, size_t max, size_t *len);

/* Parse a flattened multibulk request into at most maxargs argument
 * pointers/lengths (pointing into buf). Returns the count, -1 if malformed. */
int req_split(const char *buf, size_t len, const char **argv, size_t *argl, int maxargs);

#define REQ_ARGS_FIRST 16 /* arguments req_args_first looks at */

/* The first arguments of a request, flattened and split (cold paths). */
struct req_first_args {
    char *buf;
    int argc; /* at most REQ_ARGS_FIRST; -1 when malformed */
    const char *argv[REQ_ARGS_FIRST];
    size_t argl[REQ_ARGS_FIRST];
};

/* Flatten r (if at most 1 MiB) and split its first REQ_ARGS_FIRST arguments
 * into a; false when too big, malformed or out of memory. Free a->buf in
 * every case. */
bool req_args_first(struct req *r, struct req_first_args *a);

/* True when argument i exists and is word (any case). */
bool req_arg_is(const struct req_first_args *a, int i, const char *word);

/* Every argument of a request, flattened and split (cold paths). */
struct req_args {
    char *buf;
    const char **argv;
    size_t *argl;
    int argc; /* -1: larger than asked for, malformed or out of memory */
};

/* Flatten r (at most max bytes) and split all its arguments into a; release
 * with req_args_free whatever a->argc says. */
void req_args_all(struct req *r, size_t max, struct req_args *a);

/* Free what req_args_all allocated. */
void req_args_free(struct req_args *a);

#endif
