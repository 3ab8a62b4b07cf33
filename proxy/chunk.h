/*
 * chunk.h - fixed-size, reference-counted I/O buffers and spans over them.
 *
 * Every socket read lands in a chunk. Requests and replies are not copied out
 * of it: they are described by spans (chunk, offset, length) that hold a
 * reference, and bytes go from the chunk they were read into straight to the
 * peer socket with writev. A chunk returns to its pool when the last span and
 * the connection reading into it let go. Each worker owns a pool; chunks never
 * cross workers, so no locking is needed.
 */
#ifndef SP_CHUNK_H
#define SP_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "lib/transport.h"

#define CHUNK_SIZE  16384u /* bytes per allocation, header included */
#define CHUNK_SPANS 2      /* spans kept inline before a span list allocates */

#define CHUNK_FILL_MAX 4 /* chunks one read may fill beyond the current one */

struct chunk_pool;

struct chunk {
    struct chunk_pool *pool;
    struct chunk *next; /* free-list link while pooled */
    uint32_t refs;
    uint32_t len; /* bytes filled */
    uint32_t cap; /* bytes of data[] */
    char data[];
};

struct chunk_pool {
    struct chunk *free;
    size_t nfree;
    size_t max_free; /* pooled chunks kept before memory goes back to malloc */
    size_t live;     /* chunks handed out and not yet returned */
    size_t live_peak;
    uint64_t allocs; /* malloc calls, for the stats */
};

/* A byte range inside one chunk; holds one reference on the chunk. */
struct span {
    struct chunk *c;
    uint32_t off;
    uint32_t len;
};

/* The bytes of one request or reply: usually one span, rarely many. */
struct spans {
    struct span one[CHUNK_SPANS];
    struct span *more; /* spans beyond CHUNK_SPANS, malloc'd */
    uint32_t n;        /* spans in use */
    uint32_t cap_more;
    uint64_t bytes; /* total bytes */
};

/* Initialise an empty pool that keeps at most max_free idle chunks. */
void chunk_pool_init(struct chunk_pool *p, size_t max_free);

/* Free every pooled chunk (chunks still referenced are not touched). */
void chunk_pool_drain(struct chunk_pool *p);

/* Take an empty chunk with one reference; NULL only if malloc fails. */
struct chunk *chunk_get(struct chunk_pool *p);

/* The chunks one chunk_fill call filled beyond the one it started in, in
 * order; the caller owns their references. */
struct chunk_fill {
    struct chunk *more[CHUNK_FILL_MAX];
    int n;
};

/* chunk_fill with extra > 0 (the part that is not inline). */
ssize_t chunk_fill_many(struct chunk_pool *p, struct transport *t, struct chunk *cur, int extra,
                        struct chunk_fill *out, size_t *room);

/* Add a reference. */
static inline void chunk_ref(struct chunk *c)
{
    c->refs++;
}

/* Release the chunk to its pool (or to malloc); the caller then holds none. */
void chunk_release(struct chunk *c);

/* Drop a reference; the chunk is released when it was the last one. */
static inline void chunk_unref(struct chunk *c)
{
    if (--c->refs == 0) {
        chunk_release(c);
    }
}

/* Bytes still free at the end of the chunk. */
static inline uint32_t chunk_room(const struct chunk *c)
{
    return c->cap - c->len;
}

/* Empty span list. */
static inline void spans_init(struct spans *s)
{
    s->n = 0;
    s->more = NULL;
    s->cap_more = 0;
    s->bytes = 0;
}

/* The i-th span. */
static inline struct span *spans_at(struct spans *s, uint32_t i)
{
    return i < CHUNK_SPANS ? &s->one[i] : &s->more[i - CHUNK_SPANS];
}

/* Append [off, off+len) of c, taking a reference; extends the last span when
 * it ends exactly where this one starts. False if memory ran out. */
bool spans_add(struct spans *s, struct chunk *c, uint32_t off, uint32_t len)
    __attribute__((warn_unused_result));

/* The first byte of the bytes (0 when empty). */
static inline char spans_first_byte(struct spans *s)
{
    return s->n > 0 && s->one[0].len > 0 ? s->one[0].c->data[s->one[0].off] : 0;
}

/* Drop every reference and empty the list. */
void spans_clear(struct spans *s);

/* Add the bytes from offset skip onwards to iov, which holds n entries and has
 * room for max; bytes that continue the last entry extend it. Returns the new
 * number of entries. */
int spans_iov(struct spans *s, uint64_t skip, struct iovec *iov, int n, int max);

/* Copy up to len bytes starting at offset skip into dst; returns bytes copied. */
size_t spans_copy(struct spans *s, uint64_t skip, char *dst, size_t len);

/* True when the bytes start with text (at most 96 bytes) and are at most max
 * bytes long. */
bool spans_starts_with(struct spans *s, const char *text, size_t max);

/* Whether a connection's next reads should go on into fresh chunks: yes
 * after an event whose reads filled their room, no after one that read less
 * than a quarter chunk, unchanged in between. */
static inline bool chunk_fill_bulk(bool bulk, bool filled, size_t got)
{
    return filled || (bulk && got >= CHUNK_SIZE / 4);
}

/* One read from t into the room left in cur and, when extra > 0, on into up
 * to extra (at most CHUNK_FILL_MAX) fresh chunks from p: lengths are updated
 * and chunks that received nothing go back. Returns what the read returned;
 * *room is set to the bytes the read could have taken. */
static inline ssize_t chunk_fill(struct chunk_pool *p, struct transport *t, struct chunk *cur,
                                 int extra, struct chunk_fill *out, size_t *room)
{
    ssize_t n;

    if (extra > 0 || chunk_room(cur) == 0) {
        return chunk_fill_many(p, t, cur, extra, out, room);
    }
    out->n = 0;
    *room = chunk_room(cur);
    n = transport_read(t, cur->data + cur->len, *room);
    if (n > 0) {
        cur->len += (uint32_t)n;
    }
    return n;
}

#endif
