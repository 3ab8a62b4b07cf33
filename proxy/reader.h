/*
 * reader.h - reading a connection into pooled chunks, for clients (requests)
 * and backend connections (replies) alike.
 *
 * Reads land in the connection's current chunk; a read that fills it goes on
 * into fresh chunks when the connection is "bulk" (its frames come more than
 * a chunk at a time). After each read the connection's scanner walks the new
 * bytes and turns complete frames into spans. When a chunk is full, the frame
 * in progress at its end is copied to the next chunk if it is small (most
 * frames stay one span), or keeps a span over the old chunk if not. An idle
 * connection holds no chunk.
 */
#ifndef SP_READER_H
#define SP_READER_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/transport.h"
#include "proxy/chunk.h"

#define READER_TAIL_COPY_MAX 4096 /* partial frames up to this move to the next chunk */

struct reader {
    struct chunk *chunk; /* chunk being read into (NULL when idle) */
    uint32_t pos;        /* bytes of chunk scanned */
    uint32_t start;      /* where the frame in progress starts in chunk (pos between frames) */
    bool bulk;           /* frames come more than a chunk at a time: reads span chunks */
};

/* What a connection does with what is read. */
struct reader_ops {
    /* Whether it may read now (not paused, not closing). */
    bool (*may_read)(void *conn);
    /* Where the frame in progress keeps its earlier parts; NULL when no frame
     * is in progress. */
    struct spans *(*partial)(void *conn);
    /* Scan the chunk from pos, advancing pos (and start after each frame). */
    void (*scan)(void *conn);
    /* Whether scanning closed it, or ended its reading for good. */
    bool (*stopped)(void *conn);
};

enum reader_status {
    READER_AGAIN = 0,   /* the socket has nothing more for now (EAGAIN) */
    READER_DRAINED = 1, /* a read took less than it could: the socket is drained */
    READER_YIELD = 2,   /* the read budget is used up, or may_read said no */
    READER_STOPPED = 3, /* scanning stopped it (ops->stopped) */
    READER_EOF = 4,     /* the peer closed the connection */
    READER_ERROR = 5,   /* a read failed (errno says why) */
    READER_NOMEM = 6,   /* out of memory */
};

/* A fresh chunk in place of a full one, with the frame in progress carried
 * over. False if out of memory. */
bool reader_next_chunk(struct reader *rd, struct chunk_pool *pool, struct spans *partial)
    __attribute__((warn_unused_result));

/* Room to read into: the current chunk while it has room; a fresh one for an
 * idle connection (the common case: inline) or in place of a full one (only
 * then is the frame in progress asked for). False if out of memory. */
static inline __attribute__((always_inline)) bool
reader_room(struct reader *rd, struct chunk_pool *pool, const struct reader_ops *ops, void *conn)
{
    if (rd->chunk == NULL) {
        rd->chunk = chunk_get(pool);
        rd->pos = rd->start = 0;
        return rd->chunk != NULL;
    }
    return chunk_room(rd->chunk) > 0 || reader_next_chunk(rd, pool, ops->partial(conn));
}

/* A read went on past the current chunk into nc: the frame in progress keeps
 * a span over the old chunk's tail, and scanning goes on in nc. False if out
 * of memory. */
bool reader_next(struct reader *rd, struct chunk *nc, struct spans *partial)
    __attribute__((warn_unused_result));

/* Scan the current chunk, then each one the read went on into (their
 * references pass to rd). READER_YIELD when scanning may go on. */
static inline __attribute__((always_inline)) enum reader_status
reader_scan(struct reader *rd, const struct reader_ops *ops, void *conn, struct chunk_fill *more)
{
    for (int j = -1; j < more->n; j++) {
        if (j >= 0 && (ops->stopped(conn) || !reader_next(rd, more->more[j], ops->partial(conn)))) {
            bool stopped = ops->stopped(conn);
            while (j < more->n) {
                chunk_unref(more->more[j++]);
            }
            return stopped ? READER_STOPPED : READER_NOMEM;
        }
        ops->scan(conn);
    }
    return ops->stopped(conn) ? READER_STOPPED : READER_YIELD;
}

/* Read and scan up to max_reads times, going on into up to extra fresh
 * chunks per read while rd->bulk; *nreads counts the reads that returned
 * data. The caller closes the connection on EOF, ERROR and NOMEM.
 *
 * Inline, with ops a constant, so that each connection type gets its own
 * copy with direct calls: this runs once per read on the hot path. */
static inline __attribute__((always_inline)) enum reader_status
reader_read(struct reader *rd, struct chunk_pool *pool, struct transport *t,
            const struct reader_ops *ops, void *conn, int max_reads, int extra, uint64_t *nreads)
{
    enum reader_status st = READER_YIELD;
    size_t got = 0;
    bool filled = false;

    for (int i = 0; i < max_reads; i++) {
        struct chunk_fill more;
        size_t room;
        ssize_t n;
        if (!ops->may_read(conn)) {
            st = READER_YIELD;
            break;
        }
        if (!reader_room(rd, pool, ops, conn)) {
            return READER_NOMEM;
        }
        n = chunk_fill(pool, t, rd->chunk, rd->bulk ? extra : 0, &more, &room);
        if (n == 0) {
            return READER_EOF;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                st = READER_AGAIN;
                break;
            }
            return READER_ERROR;
        }
        (*nreads)++;
        got += (size_t)n;
        filled |= (size_t)n == room || more.n > 0;
        st = reader_scan(rd, ops, conn, &more);
        if (st == READER_NOMEM) {
            return st;
        }
        if (st != READER_YIELD) {
            break;
        }
        if ((size_t)n < room && transport_pending(t) == 0) {
            st = READER_DRAINED;
            break;
        }
    }
    /* Connections that send more than a chunk at a time read into several. */
    rd->bulk = chunk_fill_bulk(rd->bulk, filled, got);
    return st;
}

/* Let go of the chunk (the connection is closing). */
void reader_free(struct reader *rd);

/* Let go of the chunk when nothing in it is unscanned or in progress. */
static inline void reader_release_idle(struct reader *rd)
{
    if (rd->chunk != NULL && rd->start == rd->chunk->len) {
        reader_free(rd);
    }
}

#endif
