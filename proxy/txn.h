/*
 * txn.h - session changes queued inside a transaction.
 *
 * Inside MULTI, SELECT, AUTH, HELLO and CLIENT SETNAME/TRACKING/... only
 * answer +QUEUED: they change the session only if EXEC runs them, and only if
 * their own element of EXEC's reply is not an error. The session keeps a copy
 * of each such request with its position in the transaction, and applies the
 * ones that took effect once EXEC's reply is in.
 */
#ifndef SP_TXN_H
#define SP_TXN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cmd_info;
struct req;

/* A queued session command, as the client sent it. */
struct txn_entry {
    char *buf; /* the request bytes (multibulk) */
    size_t len;
    const struct cmd_info *ci;
    int32_t intarg;
    uint32_t argc;
    uint32_t at; /* its index in EXEC's reply */
};

struct txn {
    struct txn_entry *e;
    size_t n, cap;
    uint32_t queued; /* commands answered +QUEUED so far */
    bool lossy;      /* a copy could not be kept: apply nothing, trust nothing */
};

/* Forget everything (after EXEC, DISCARD, a lost connection...). */
void txn_clear(struct txn *t);

/* True when r's reply is "+QUEUED" (r was queued by the server). */
bool txn_is_queued_reply(struct req *r);

/* r (a session command) was queued: keep a copy with its position, and
 * count it. */
void txn_defer(struct txn *t, struct req *r);

/* A command that changes nothing in the session was queued: count it. */
static inline void txn_count(struct txn *t)
{
    t->queued++;
}

/* EXEC's reply is exec (an array): call fn for every kept command whose own
 * element is not an error, in order. When the reply is too large to look at,
 * every kept command counts as applied. */
void txn_applied(struct txn *t, struct req *exec, void (*fn)(void *arg, const struct txn_entry *e),
                 void *arg);

#endif
