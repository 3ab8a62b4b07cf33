/*
 * reload.h - live reload: the configuration read again (SIGHUP, PROXY
 * CONFIG RELOAD), checked completely, then applied without closing a client
 * connection.
 *
 * A reload is all or nothing: the file (and the command-line flags, which
 * still override it) must pass the same checks as at start-up, its TLS files
 * must load and its new listening addresses must bind, or nothing changes
 * and the error is logged. Keys that need a restart keep their running value
 * (logged). Workers switch to the new configuration on their own threads;
 * the old one is freed once every worker has.
 */
#ifndef SP_RELOAD_H
#define SP_RELOAD_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct proxy;
struct proxy_reload;

/* What reloads did so far. */
struct reload_stats {
    uint64_t applied;    /* reloads that took effect */
    uint64_t failed;     /* ... that were refused, leaving everything as it was */
    double last_applied; /* when the last one took effect (0: never) */
    bool last_ok;        /* whether the last one took effect (true before any) */
};

/* Set up reloads for px on the control loop. NULL if out of memory. */
struct proxy_reload *reload_new(struct proxy *px, struct ev_loop *loop);

/* Free what reloads left (NULL is fine); every worker must have stopped. */
void reload_free(struct proxy_reload *r);

/* Reload as soon as possible (control thread: SIGHUP). */
void reload_ask(struct proxy_reload *r);

/* Ask for a reload from a worker thread (PROXY CONFIG RELOAD): returns a
 * ticket for reload_outcome. Every worker's waiting clients are woken once
 * it has run. */
uint64_t reload_ask_async(struct proxy_reload *r);

/* Whether the reload that ticket asked for has run (any thread); if so,
 * msg gets its one-line account and *ok whether it took effect. */
bool reload_outcome(struct proxy_reload *r, uint64_t ticket, char *msg, size_t len, bool *ok);

/* A copy of the counters (any thread). */
void reload_stats_get(struct proxy_reload *r, struct reload_stats *out);

#endif
