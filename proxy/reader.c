/*
 * reader.c - the chunk changes of the read loop shared by client and backend
 * connections (the loop itself is inline in reader.h).
 */
#include "proxy/reader.h"

#include <string.h>

bool reader_next_chunk(struct reader *rd, struct chunk_pool *pool, struct spans *partial)
{
    struct chunk *old = rd->chunk, *nc = chunk_get(pool);
    uint32_t keep = 0;

    if (nc == NULL) {
        return false;
    }
    /* The frame in progress at the old chunk's end moves to the fresh one if
     * it is small (most frames stay one span), or keeps a span over the old
     * chunk if not. */
    if (partial != NULL && old->len > rd->start) {
        uint32_t part = old->len - rd->start;
        if (partial->n == 0 && part <= READER_TAIL_COPY_MAX) {
            memcpy(nc->data, old->data + rd->start, part);
            nc->len = keep = part;
        } else if (!spans_add(partial, old, rd->start, part)) {
            chunk_unref(nc);
            return false;
        }
    }
    chunk_unref(old);
    rd->chunk = nc;
    rd->pos = keep; /* bytes carried over were scanned already */
    rd->start = 0;
    return true;
}

bool reader_next(struct reader *rd, struct chunk *nc, struct spans *partial)
{
    struct chunk *old = rd->chunk;

    if (partial != NULL && old->len > rd->start &&
        !spans_add(partial, old, rd->start, old->len - rd->start)) {
        return false;
    }
    chunk_unref(old);
    rd->chunk = nc;
    rd->pos = rd->start = 0;
    return true;
}

void reader_free(struct reader *rd)
{
    if (rd->chunk != NULL) {
        chunk_unref(rd->chunk);
        rd->chunk = NULL;
    }
    rd->pos = rd->start = 0;
}
