/*
 * resolve.h - host names resolved off the event loop.
 *
 * A cache of host name -> address (the port is the caller's), filled by one
 * background thread that runs getaddrinfo. Lookups never block: a name not
 * known yet is asked for and reported pending, and the loop's watchers are
 * called once its answer (or any later change) is in. Answers are refreshed
 * in the background once older than a TTL and kept, if refreshes fail, up to
 * a maximum age; failures are retried with a growing delay; the least
 * recently used names are dropped past a bound. IP literals and unix socket
 * paths never reach the thread.
 *
 * Lookups, watchers and resolve_free belong to the loop's thread.
 */
#ifndef SP_RESOLVE_H
#define SP_RESOLVE_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "lib/addr.h"

struct addrinfo;
struct resolve;

enum resolve_status {
    RESOLVE_OK = 0,      /* the address is filled in */
    RESOLVE_PENDING = 1, /* asked for: the watchers are called when it is known */
    RESOLVE_FAILED = 2,  /* the last attempt failed (retried later); err says why */
};

/* getaddrinfo, or a stand-in with its contract (tests). */
typedef int resolve_gai_fn(const char *node, const char *service, const struct addrinfo *hints,
                           struct addrinfo **res);

struct resolve_options {
    double ttl;          /* seconds before an answer is refreshed (default 5) */
    double max_age;      /* seconds an answer is used while refreshes fail (default 60) */
    double retry_min;    /* first delay before a failed name is tried again (default 1) */
    double retry_max;    /* ... doubling up to this (default 30) */
    size_t max_names;    /* names kept (default 1024) */
    resolve_gai_fn *gai; /* NULL: getaddrinfo */
};

typedef void resolve_notify_fn(void *arg);

/* A watcher, owned by its user: called on the loop's thread after answers
 * changed (a name's first answer, a new address, a new error). */
struct resolve_waiter {
    resolve_notify_fn *fn;
    void *arg;
    struct resolve_waiter *next, **pprev; /* NULL pprev: not watching */
};

/* A resolver on loop with its thread running (o NULL or zero fields:
 * defaults). NULL with err set if it cannot start. */
struct resolve *resolve_new(struct ev_loop *loop, const struct resolve_options *o, char *err,
                            size_t errlen);

/* Stop the thread and free everything (NULL is fine); a lookup still under
 * way after a second is left to finish on its own, and the thread frees the
 * rest then. Watchers must have been removed. */
void resolve_free(struct resolve *r);

/* Fill a's socket address from the cache (a's port applied): OK, PENDING
 * (asked for), or FAILED with the reason in err. Never blocks. */
enum resolve_status resolve_lookup(struct resolve *r, struct addr *a, char *err, size_t errlen);

/* Resolve a literal IP address (or accept a unix socket) at once: false if
 * a's host is a name. */
bool resolve_numeric(struct addr *a);

/* Call w->fn(arg) after each change from now on (until resolve_unwatch); w
 * is zeroed before its first use. */
void resolve_watch(struct resolve *r, struct resolve_waiter *w, resolve_notify_fn *fn, void *arg);

/* Stop calling w (fine when it is not watching). */
void resolve_unwatch(struct resolve_waiter *w);

/* Names in the cache now. */
size_t resolve_count(struct resolve *r);

#endif
