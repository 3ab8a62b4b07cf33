/*
 * link.h - a control-plane connection to a Sentinel or a Redis instance.
 *
 * Commands are formatted by hiredis and replies parsed by hiredis's reader,
 * over the proxy's own non-blocking transport (so that TLS can be added in one
 * place). Every command has a deadline: a peer that hangs, or answers
 * garbage, fails only its own link, and every pending callback is called with
 * a NULL reply. A link in subscriber mode hands every message to its push
 * callback.
 *
 * Callbacks may close the link but must not free it; a link is freed with
 * link_free() from outside its callbacks (or it defers the free itself).
 */
#ifndef SP_LINK_H
#define SP_LINK_H

#include <ev.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

#include "lib/addr.h"

struct link;
struct resolve;
struct tls_ctx;

/* A reply (NULL when the command failed: timeout, connection lost, garbage). */
typedef void link_reply_fn(struct link *l, redisReply *reply, void *arg);

/* A message on a subscriber link (NULL when the link went down). */
typedef void link_push_fn(struct link *l, redisReply *msg, void *udata);

struct link_options {
    double timeout;       /* seconds allowed for connect and for each reply */
    const char *username; /* AUTH sent first when password is set */
    const char *password;
    link_push_fn *on_push; /* set for a subscriber link */
    void *udata;
    const char *name;    /* for log lines, e.g. "sentinel 127.0.0.1:26379" */
    struct tls_ctx *tls; /* connect with TLS (NULL: plain); must outlive the link */
    /* Each connection resolves the host name again through this cache (NULL:
     * the address given is used as is); must outlive the link. */
    struct resolve *resolver;
};

/* A disconnected link to an address (resolved, or a name for o->resolver);
 * it connects on the first command, once the name is resolved: commands sent
 * meanwhile wait, within their timeout. NULL if out of memory. */
struct link *link_new(struct ev_loop *loop, const struct addr *a, const struct link_options *o);

/* New credentials (copied) for the link's next connection, and a new
 * timeout for commands sent from now on; the connection up now stays,
 * unless it was refused its AUTH and the credentials changed (it is closed
 * soon, from the loop: the next command connects with them). False if out
 * of memory (nothing changed). */
bool link_set_options(struct link *l, double timeout, const char *username, const char *password);

/* Send a command; cb gets its reply (or NULL), never before this returns.
 * False if it cannot be sent (out of memory, connection refused at once): cb
 * is then not called. */
bool link_command(struct link *l, link_reply_fn *cb, void *arg, int argc, const char **argv,
                  const size_t *argl);

/* Send a command given as NUL-terminated words (a NULL ends the list). */
bool link_commandv(struct link *l, link_reply_fn *cb, void *arg, const char *first, ...);

/* Drop the connection: pending callbacks get NULL, subscriber links get a
 * NULL push. The link can connect again with the next command. */
void link_close(struct link *l, const char *why);

/* Close and free (safe inside a callback of this link: the free is deferred). */
void link_free(struct link *l);

/* True while connected or connecting. */
bool link_active(const struct link *l);

/* Commands sent and not yet answered. */
size_t link_pending(const struct link *l);

/* The peer's address and the link's log name. */
const struct addr *link_addr(const struct link *l);
const char *link_name(const struct link *l);

/* Why the link last failed ("" if it never did). */
const char *link_last_error(const struct link *l);

#endif
