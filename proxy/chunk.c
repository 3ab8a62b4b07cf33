/*
 * chunk.c - the chunk pool and span lists.
 */
#include "proxy/chunk.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void chunk_pool_init(struct chunk_pool *p, size_t max_free)
{
    memset(p, 0, sizeof(*p));
    p->max_free = max_free;
}

void chunk_pool_drain(struct chunk_pool *p)
{
    while (p->free != NULL) {
        struct chunk *c = p->free;
        p->free = c->next;
        free(c);
    }
    p->nfree = 0;
}

struct chunk *chunk_get(struct chunk_pool *p)
{
    struct chunk *c = p->free;

    if (c != NULL) {
        p->free = c->next;
        p->nfree--;
    } else {
        c = malloc(CHUNK_SIZE);
        if (c == NULL) {
            return NULL;
        }
        p->allocs++;
        c->pool = p;
        c->cap = (uint32_t)(CHUNK_SIZE - sizeof(struct chunk));
    }
    c->next = NULL;
    c->refs = 1;
    c->len = 0;
    p->live++;
    if (p->live > p->live_peak) {
        p->live_peak = p->live;
    }
    return c;
}

void chunk_release(struct chunk *c)
{
    struct chunk_pool *p = c->pool;

    p->live--;
    if (p->nfree >= p->max_free) {
        free(c);
        return;
    }
    c->next = p->free;
    p->free = c;
    p->nfree++;
}

bool spans_add(struct spans *s, struct chunk *c, uint32_t off, uint32_t len)
{
    struct span *last;

    if (len == 0) {
        return true;
    }
    if (s->n > 0) {
        last = spans_at(s, s->n - 1);
        if (last->c == c && last->off + last->len == off) {
            last->len += len;
            s->bytes += len;
            return true;
        }
    }
    if (s->n >= CHUNK_SPANS && s->n - CHUNK_SPANS >= s->cap_more) {
        uint32_t cap = s->cap_more ? s->cap_more * 2 : 8;
        struct span *more = realloc(s->more, cap * sizeof(*more));
        if (more == NULL) {
            return false;
        }
        s->more = more;
        s->cap_more = cap;
    }
    last = spans_at(s, s->n);
    last->c = c;
    last->off = off;
    last->len = len;
    chunk_ref(c);
    s->n++;
    s->bytes += len;
    return true;
}

void spans_clear(struct spans *s)
{
    for (uint32_t i = 0; i < s->n; i++) {
        chunk_unref(spans_at(s, i)->c);
    }
    free(s->more);
    spans_init(s);
}

int spans_iov(struct spans *s, uint64_t skip, struct iovec *iov, int n, int max)
{
    for (uint32_t i = 0; i < s->n && n < max; i++) {
        struct span *sp = spans_at(s, i);
        char *base;
        size_t len;
        if (skip >= sp->len) {
            skip -= sp->len;
            continue;
        }
        base = sp->c->data + sp->off + skip;
        len = sp->len - skip;
        skip = 0;
        /* Pipelined requests and replies usually sit back to back in one
         * chunk: one iovec for all of them. */
        if (n > 0 && (char *)iov[n - 1].iov_base + iov[n - 1].iov_len == base) {
            iov[n - 1].iov_len += len;
            continue;
        }
        iov[n].iov_base = base;
        iov[n].iov_len = len;
        n++;
    }
    return n;
}

size_t spans_copy(struct spans *s, uint64_t skip, char *dst, size_t len)
{
    size_t done = 0;

    for (uint32_t i = 0; i < s->n && done < len; i++) {
        struct span *sp = spans_at(s, i);
        size_t take;
        if (skip >= sp->len) {
            skip -= sp->len;
            continue;
        }
        take = sp->len - skip;
        if (take > len - done) {
            take = len - done;
        }
        memcpy(dst + done, sp->c->data + sp->off + skip, take);
        done += take;
        skip = 0;
    }
    return done;
}

ssize_t chunk_fill_many(struct chunk_pool *p, struct transport *t, struct chunk *cur, int extra,
                        struct chunk_fill *out, size_t *room)
{
    struct iovec iov[1 + CHUNK_FILL_MAX];
    struct chunk *spare[CHUNK_FILL_MAX];
    int k = 0, nspare = 0;
    ssize_t n;
    size_t left;

    out->n = 0;
    *room = 0;
    if (chunk_room(cur) > 0) {
        iov[k].iov_base = cur->data + cur->len;
        iov[k].iov_len = chunk_room(cur);
        *room += iov[k++].iov_len;
    }
    if (extra > CHUNK_FILL_MAX) {
        extra = CHUNK_FILL_MAX;
    }
    while (nspare < extra && (spare[nspare] = chunk_get(p)) != NULL) {
        iov[k].iov_base = spare[nspare]->data;
        iov[k].iov_len = spare[nspare]->cap;
        *room += iov[k++].iov_len;
        nspare++;
    }
    if (k == 0) {
        errno = ENOMEM;
        return -1;
    }
    n = transport_readv(t, iov, k);
    left = n > 0 ? (size_t)n : 0;
    if (chunk_room(cur) > 0) {
        uint32_t take = left < chunk_room(cur) ? (uint32_t)left : chunk_room(cur);
        cur->len += take;
        left -= take;
    }
    for (int i = 0; i < nspare; i++) {
        if (left == 0) {
            chunk_unref(spare[i]);
            continue;
        }
        spare[i]->len = left < spare[i]->cap ? (uint32_t)left : spare[i]->cap;
        left -= spare[i]->len;
        out->more[out->n++] = spare[i];
    }
    return n;
}

bool spans_starts_with(struct spans *s, const char *text, size_t max)
{
    char got[96];
    size_t n = strlen(text);

    return n <= sizeof(got) && s->bytes >= n && s->bytes <= max && spans_copy(s, 0, got, n) == n &&
           memcmp(got, text, n) == 0;
}
