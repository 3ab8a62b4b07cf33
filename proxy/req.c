/*
 * req.c - request objects, the proxy's own replies, and the cold-path helpers
 * that need a request's arguments.
 */
#include "proxy/req.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REQ_FREE_MAX 4096 /* requests kept on a worker's free list */

void req_pool_init(struct req_pool *p, struct chunk_pool *chunks)
{
    memset(p, 0, sizeof(*p));
    p->chunks = chunks;
}

void req_pool_free(struct req_pool *p)
{
    if (p->lchunk != NULL) {
        chunk_unref(p->lchunk);
        p->lchunk = NULL;
    }
    while (p->free != NULL) {
        struct req *r = p->free;
        p->free = r->bnext;
        free(r);
    }
    p->nfree = 0;
}

struct req *req_new(struct req_pool *p)
{
    struct req *r = p->free;

    if (r != NULL) {
        p->free = r->bnext;
        p->nfree--;
    } else {
        r = malloc(sizeof(*r));
        if (r == NULL) {
            return NULL;
        }
    }
    memset(r, 0, sizeof(*r));
    spans_init(&r->in);
    spans_init(&r->out);
    r->intarg = -1;
    return r;
}

void req_free(struct req_pool *p, struct req *r)
{
    spans_clear(&r->in);
    spans_clear(&r->out);
    if (p->nfree >= REQ_FREE_MAX) {
        free(r);
        return;
    }
    r->bnext = p->free;
    p->free = r;
    p->nfree++;
}

bool req_spans_copy_in(struct req_pool *p, struct spans *s, const char *data, size_t len)
{
    struct chunk *c = p->lchunk;

    /* Small writes share one chunk; one that does not fit in the room left
     * starts a fresh chunk, and a huge one is split over several. */
    while (len > 0) {
        uint32_t take;
        if (c == NULL || chunk_room(c) == 0 || (chunk_room(c) < len && c->len > 0)) {
            if (c != NULL) {
                chunk_unref(c);
            }
            c = p->lchunk = chunk_get(p->chunks);
            if (c == NULL) {
                return false;
            }
        }
        take = chunk_room(c) < len ? chunk_room(c) : (uint32_t)len;
        memcpy(c->data + c->len, data, take);
        if (!spans_add(s, c, c->len, take)) {
            return false;
        }
        c->len += take;
        data += take;
        len -= take;
    }
    return true;
}

bool req_reply_raw(struct req_pool *p, struct req *r, const char *resp, size_t len)
{
    spans_clear(&r->out);
    if (!req_spans_copy_in(p, &r->out, resp, len)) {
        return false;
    }
    r->flags |= REQ_DONE;
    return true;
}

void req_reply_error(struct req_pool *p, struct req *r, const char *msg)
{
    char line[512];
    size_t n = 0;

    line[n++] = '-';
    for (const char *m = msg; *m != '\0' && n < sizeof(line) - 3; m++) {
        line[n++] = (*m == '\r' || *m == '\n') ? ' ' : *m;
    }
    line[n++] = '\r';
    line[n++] = '\n';
    __atomic_store_n(&p->errors_sent, p->errors_sent + 1, __ATOMIC_RELAXED);
    if (!req_reply_raw(p, r, line, n)) {
        /* Out of memory: the request still completes, with no bytes; the
         * client sees a missing reply rather than a stalled queue. */
        r->flags |= REQ_DONE;
    }
    r->flags |= REQ_ERROR | REQ_PROXY_ERROR;
}

void req_reply_errorf(struct req_pool *p, struct req *r, const char *fmt, ...)
{
    char msg[480];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    req_reply_error(p, r, msg);
}

struct req *req_internal(struct req_pool *p, int argc, const char *const *argv, const size_t *argl)
{
    struct req *r = req_new(p);
    char head[32];
    bool ok;
    int n;

    if (r == NULL) {
        return NULL;
    }
    r->flags = REQ_INTERNAL;
    r->argc = (uint32_t)argc;
    n = snprintf(head, sizeof(head), "*%d\r\n", argc);
    ok = req_spans_copy_in(p, &r->in, head, (size_t)n);
    for (int i = 0; ok && i < argc; i++) {
        n = snprintf(head, sizeof(head), "$%zu\r\n", argl[i]);
        ok = req_spans_copy_in(p, &r->in, head, (size_t)n) &&
             req_spans_copy_in(p, &r->in, argv[i], argl[i]) &&
             req_spans_copy_in(p, &r->in, "\r\n", 2);
    }
    if (!ok) {
        req_free(p, r);
        return NULL;
    }
    return r;
}

static char *req_flatten_spans(struct spans *s, size_t max, size_t *len)
{
    char *buf;

    if (s->bytes > max) {
        return NULL;
    }
    buf = malloc(s->bytes + 1);
    if (buf == NULL) {
        return NULL;
    }
    *len = spans_copy(s, 0, buf, s->bytes);
    buf[*len] = '\0';
    return buf;
}

char *req_flatten(struct req *r, size_t max, size_t *len)
{
    return req_flatten_spans(&r->in, max, len);
}

char *req_flatten_out(struct req *r, size_t max, size_t *len)
{
    return req_flatten_spans(&r->out, max, len);
}

/* Parse a decimal count at *p up to "\r\n"; advances *p past the CRLF. */
static long req_split_number(const char **p, const char *end)
{
    long v = 0;
    bool any = false;

    while (*p < end && **p >= '0' && **p <= '9') {
        v = v * 10 + (**p - '0');
        if (v > (1L << 40)) {
            return -1;
        }
        (*p)++;
        any = true;
    }
    if (!any || end - *p < 2 || (*p)[0] != '\r') {
        return -1;
    }
    *p += 2;
    return v;
}

int req_split(const char *buf, size_t len, const char **argv, size_t *argl, int maxargs)
{
    const char *p = buf, *end = buf + len;
    long argc;

    if (len < 1 || *p != '*') {
        return -1;
    }
    p++;
    argc = req_split_number(&p, end);
    if (argc < 0) {
        return -1;
    }
    for (long i = 0; i < argc; i++) {
        long blen;
        if (p >= end || *p != '$') {
            return -1;
        }
        p++;
        blen = req_split_number(&p, end);
        if (blen < 0 || end - p < blen + 2) {
            return -1;
        }
        if (i < maxargs) {
            argv[i] = p;
            argl[i] = (size_t)blen;
        }
        p += blen + 2;
    }
    return argc > maxargs ? maxargs : (int)argc;
}

bool req_args_first(struct req *r, struct req_first_args *a)
{
    size_t len = 0;

    a->argc = 0;
    a->buf = req_flatten(r, 1u << 20, &len);
    if (a->buf == NULL) {
        return false;
    }
    a->argc = req_split(a->buf, len, a->argv, a->argl, REQ_ARGS_FIRST);
    return a->argc >= 0;
}

bool req_arg_is(const struct req_first_args *a, int i, const char *word)
{
    return i < a->argc && a->argl[i] == strlen(word) &&
           strncasecmp(a->argv[i], word, a->argl[i]) == 0;
}

void req_args_all(struct req *r, size_t max, struct req_args *a)
{
    size_t len = 0;

    a->buf = req_flatten(r, max, &len);
    a->argv = malloc(r->argc * sizeof(*a->argv));
    a->argl = malloc(r->argc * sizeof(*a->argl));
    a->argc = a->buf != NULL && a->argv != NULL && a->argl != NULL
                  ? req_split(a->buf, len, a->argv, a->argl, (int)r->argc)
                  : -1;
}

void req_args_free(struct req_args *a)
{
    free(a->buf);
    free(a->argv);
    free(a->argl);
}
