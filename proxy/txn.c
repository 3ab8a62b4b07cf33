/*
 * txn.c - session commands queued inside MULTI, applied after EXEC (see
 * txn.h).
 */
#include "proxy/txn.h"

#include <stdlib.h>
#include <string.h>

#include "proxy/chunk.h"
#include "proxy/req.h"
#include "proxy/resp.h"

#define TXN_KEEP_MAX  (1u << 20)  /* bytes of one kept request */
#define TXN_REPLY_MAX (64u << 20) /* bytes of an EXEC reply looked at */

void txn_clear(struct txn *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->e[i].buf);
    }
    free(t->e);
    memset(t, 0, sizeof(*t));
}

bool txn_is_queued_reply(struct req *r)
{
    char buf[9];

    return r->out.bytes == 9 && spans_copy(&r->out, 0, buf, 9) == 9 &&
           memcmp(buf, "+QUEUED\r\n", 9) == 0;
}

void txn_defer(struct txn *t, struct req *r)
{
    struct txn_entry *e;
    size_t len = 0;
    char *copy;

    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 4;
        struct txn_entry *ne = realloc(t->e, cap * sizeof(*ne));
        if (ne == NULL) {
            t->lossy = true;
            t->queued++;
            return;
        }
        t->e = ne;
        t->cap = cap;
    }
    copy = req_flatten(r, TXN_KEEP_MAX, &len);
    if (copy == NULL) {
        t->lossy = true;
        t->queued++;
        return;
    }
    e = &t->e[t->n++];
    e->buf = copy;
    e->len = len;
    e->ci = r->ci;
    e->intarg = r->intarg;
    e->argc = r->argc;
    e->at = t->queued++;
}

/* Whether element i of EXEC's reply is an error. The reader walks the
 * elements once, in order: *next is the index it is at; *bad is set when the
 * reply cannot be read. */
static bool txn_element_failed(struct resp_reader *rd, int64_t *next, uint32_t i, bool *bad)
{
    while (*next < (int64_t)i) {
        if (!resp_skip(rd)) {
            *bad = true;
            return false;
        }
        (*next)++;
    }
    if (rd->p >= rd->end) {
        *bad = true;
        return false;
    }
    return *rd->p == '-' || *rd->p == '!';
}

void txn_applied(struct txn *t, struct req *exec, void (*fn)(void *arg, const struct txn_entry *e),
                 void *arg)
{
    struct resp_reader rd;
    struct resp_value v;
    size_t len = 0;
    char *buf;
    int64_t next = 0;
    bool bad = false;

    if (t->n == 0) {
        return;
    }
    buf = req_flatten_out(exec, TXN_REPLY_MAX, &len);
    if (buf == NULL) {
        for (size_t k = 0; k < t->n; k++) {
            fn(arg, &t->e[k]);
        }
        return;
    }
    resp_reader_init(&rd, buf, len);
    if (resp_next(&rd, &v) && v.type == '*' && v.n >= 0) {
        for (size_t k = 0; k < t->n && !bad; k++) {
            if (t->e[k].at < (uint64_t)v.n && !txn_element_failed(&rd, &next, t->e[k].at, &bad) &&
                !bad) {
                fn(arg, &t->e[k]);
            }
        }
    }
    free(buf);
}
