/*
 * backend.c - backend servers as one worker sees them: their connections
 * (shared slots, lent dedicated ones, spares), up and down with backoff, and
 * losing a role (draining).
 */
#include "proxy/backend.h"

#include <math.h>
#include <stdlib.h>

#include "conf/config.h"
#include "lib/log.h"
#include "lib/net.h"
#include "proxy/bconn.h"
#include "proxy/proxy.h"
#include "proxy/worker.h"

#define BACKEND_RELEASED   "blocked when its server lost the master role (sent to the new master)"
#define BACKEND_QUIET      1.0 /* seconds awaiting replies with nothing sent before a PING nudge */
#define BACKEND_DEEP_BYTES (1u << 20) /* expected reply bytes ahead that make a queue deep... */
#define BACKEND_HEAVIER    8 /* ... for requests this many times smaller than its replies */
#define BACKEND_LARGE      (16u << 10) /* replies this large or more are kept off small ones' */

static void backend_retry_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void backend_drain_cb(struct ev_loop *loop, ev_timer *t, int revents);

static const struct config *backend_cfg(const struct backend *be)
{
    return be->w->cfg;
}

void backend_adopt(struct backend *be, struct bconn *bc)
{
    bc->prev = NULL;
    bc->next = be->conns;
    if (be->conns != NULL) {
        be->conns->prev = bc;
    }
    be->conns = bc;
}

struct backend *backend_new(struct worker *w, const struct addr *a, enum backend_role role)
{
    struct backend *be = calloc(1, sizeof(*be));

    if (be == NULL) {
        return NULL;
    }
    be->w = w;
    be->loop = w->loop;
    be->id = ++w->next_backend_id;
    be->addr = *a;
    addr_format(a, be->name, sizeof(be->name));
    be->role = (uint8_t)role;
    be->nshared = w->cfg->backend_connections;
    be->nslots = w->cfg->backend_connections_max;
    be->stall_after =
        w->cfg->stall_threshold_ms > 0 ? (double)w->cfg->stall_threshold_ms / 1000.0 : HUGE_VAL;
    be->shared = calloc((size_t)backend_all_slots(be), sizeof(*be->shared));
    if (be->shared == NULL) {
        free(be);
        return NULL;
    }
    be->backoff = (double)backend_cfg(be)->reconnect_min_ms / 1000.0;
    ev_timer_init(&be->retry, backend_retry_cb, 0, 0);
    be->retry.data = be;
    ev_timer_init(&be->drain, backend_drain_cb, 0, 0);
    be->drain.data = be;
    be->next = w->backends;
    w->backends = be;
    return be;
}

void backend_free(struct backend *be)
{
    struct worker *w = be->w;
    struct backend **pp;

    while (be->conns != NULL) {
        bconn_close(be->conns, "backend removed");
    }
    worker_backend_gone(w, be);
    ev_timer_stop(w->loop, &be->retry);
    ev_timer_stop(w->loop, &be->drain);
    for (pp = &w->backends; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == be) {
            *pp = be->next;
            break;
        }
    }
    if (w->master == be) {
        w->master = NULL;
    }
    if (w->commands_from == be) {
        w->commands_from = NULL;
    }
    hello_forget(&be->hello);
    free(be->shared);
    free(be);
}

void backend_drain(struct backend *be, double grace)
{
    struct bconn *bc, *next;
    bool busy = false;

    for (bc = be->conns; bc != NULL; bc = next) {
        next = bc->next;
        bconn_take_back_unsent(bc);
        if (bc->nqueued == 0) {
            bconn_close(bc, NULL);
            continue;
        }
        busy = true;
        bc->retiring = true;
        for (int i = 0; i < backend_all_slots(be); i++) {
            if (be->shared[i] == bc) {
                be->shared[i] = NULL; /* new requests get a new connection */
            }
        }
    }
    if (busy && !ev_is_active(&be->drain)) {
        ev_timer_set(&be->drain, grace, 0);
        ev_timer_start(be->w->loop, &be->drain);
    }
}

void backend_undrain(struct backend *be)
{
    ev_timer_stop(be->w->loop, &be->drain);
    be->drain_late = false;
}

/* The grace is over: what is still unanswered is reset, so that a stalled
 * server never executes it later. A connection where only blocking commands
 * wait (BLPOP...) is not: its commands go to the new master, now if one is
 * known, or once one is (backend_release_blocked), or fail at hold-timeout
 * if none is. */
/* The backend's connections as they are now. Acting on one reads it, and
 * what its replies let clients do may close others (their memory stays until
 * the worker's reap pass, off the backend's list): loops that act walk this
 * copy, and skip what closed meanwhile. NULL (with *n = 0) if out of
 * memory. */
static struct bconn **backend_conns_now(struct backend *be, size_t *n)
{
    struct bconn **all;
    size_t k = 0;

    *n = 0;
    for (struct bconn *bc = be->conns; bc != NULL; bc = bc->next) {
        k++;
    }
    all = calloc(k > 0 ? k : 1, sizeof(*all));
    if (all == NULL) {
        return NULL;
    }
    for (struct bconn *bc = be->conns; bc != NULL; bc = bc->next) {
        all[(*n)++] = bc;
    }
    return all;
}

static void backend_drain_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct backend *be = t->data;
    bool spared = false, moved = be->w->master != NULL && be->w->master != be;
    size_t n;
    struct bconn **all = backend_conns_now(be, &n);

    (void)revents;
    for (size_t i = 0; i < n; i++) {
        struct bconn *bc = all[i];
        /* Connections opened since (to it as a replica, say) are not its. */
        if (bc->state == BC_CLOSED || !bc->retiring || bc->nqueued == 0) {
            continue;
        }
        if (!be->drain_late && bconn_only_blocked(bc)) {
            if (!moved || !bconn_release(bc, BACKEND_RELEASED)) {
                spared = spared || bc->state != BC_CLOSED;
            }
            continue;
        }
        bconn_expire(bc, "still unanswered after the switch (connection reset)");
    }
    free(all);
    if (n == 0 && be->conns != NULL) {
        ev_timer_set(&be->drain, 0.1, 0); /* out of memory: try again shortly */
        ev_timer_start(loop, &be->drain);
        return;
    }
    be->drain_late = spared;
    if (spared) {
        ev_timer_set(&be->drain, (double)backend_cfg(be)->hold_timeout_ms / 1000.0, 0);
        ev_timer_start(loop, &be->drain);
    }
}

void backend_release_blocked(struct backend *be)
{
    bool spared = false;
    size_t n;
    struct bconn **all;

    if (!be->drain_late) {
        return; /* still within the grace: a reply may be on its way */
    }
    all = backend_conns_now(be, &n);
    if (all == NULL) {
        return; /* out of memory: hold-timeout ends the drain */
    }
    for (size_t i = 0; i < n; i++) {
        struct bconn *bc = all[i];
        if (bc->state != BC_CLOSED && bc->retiring && bc->nqueued > 0 &&
            (!bconn_only_blocked(bc) || !bconn_release(bc, BACKEND_RELEASED))) {
            spared = spared || bc->state != BC_CLOSED;
        }
    }
    free(all);
    if (!spared) {
        /* Nothing of the drain is left: no timer may reset what is opened
         * to this server from now on. */
        backend_undrain(be);
    }
}

/* A connection the server took: connected, and a shared one's handshake
 * answered (one still waiting may yet be refused). */
static bool backend_has_ready(const struct backend *be)
{
    for (const struct bconn *bc = be->conns; bc != NULL; bc = bc->next) {
        if (bc->state == BC_READY && (bc->dedicated || bc->greeted)) {
            return true;
        }
    }
    return false;
}

/* A connection attempt failed: retry later, with exponential backoff. A
 * failed extra connection (a dedicated one, say) while another is up says
 * nothing about the server: only that attempt fails. */
void backend_mark_down(struct backend *be, const char *why)
{
    const struct config *cfg = backend_cfg(be);
    double max = (double)cfg->reconnect_max_ms / 1000.0;

    if (backend_has_ready(be)) {
        log_warn("backend %s: a connection attempt failed (%s); the server is still reachable",
                 be->name, why);
        return;
    }
    if (be->state != BE_DOWN) {
        log_warn("backend %s is down: %s (retrying quietly; once a minute it is logged)", be->name,
                 why);
        be->down_since = be->down_logged = ev_now(be->w->loop);
        be->down_tries = 0;
    } else if (ev_now(be->w->loop) - be->down_logged >= 60) {
        log_warn("backend %s still down after %.0fs and %u attempts: %s", be->name,
                 ev_now(be->w->loop) - be->down_since, be->down_tries + 1, why);
        be->down_logged = ev_now(be->w->loop);
    }
    be->down_tries++;
    be->state = BE_DOWN;
    be->nerrors++;
    if (!ev_is_active(&be->retry) && be->role != BACKEND_RETIRED) {
        ev_timer_set(&be->retry, be->backoff, 0);
        ev_timer_start(be->w->loop, &be->retry);
        be->backoff = be->backoff * 2 > max ? max : be->backoff * 2;
    }
}

void backend_mark_up(struct backend *be)
{
    if (be->state == BE_DOWN) {
        log_info("backend %s is up again after %.1fs and %u failed attempt(s)", be->name,
                 ev_now(be->w->loop) - be->down_since, be->down_tries);
    }
    be->state = BE_UP;
    be->down_since = 0;
    be->backoff = (double)backend_cfg(be)->reconnect_min_ms / 1000.0;
    ev_timer_stop(be->w->loop, &be->retry);
    worker_wake_later(be->w);
}

static void backend_retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct backend *be = t->data;

    (void)loop;
    (void)revents;
    if (backend_has_ready(be)) {
        backend_mark_up(be);
        return;
    }
    /* One probe connection; the others follow once it succeeds (one still
     * connecting or greeting reports its own outcome, but is looked at
     * again in case it never does). */
    if (be->shared[0] == NULL) {
        be->shared[0] = bconn_connect(be, false, 2);
    } else {
        ev_timer_set(&be->retry, be->backoff, 0);
        ev_timer_start(be->w->loop, &be->retry);
    }
}

void backend_warm(struct backend *be)
{
    /* The RESP2 pool: RESP3 connections open when RESP3 clients come. */
    for (int i = 0; i < be->nshared && backend_usable(be); i++) {
        if (be->shared[i] == NULL) {
            be->shared[i] = bconn_connect(be, false, 2);
        }
    }
}

/* The pool's first slot in be->shared. */
static int backend_pool(const struct backend *be, int resp)
{
    return resp == 3 ? be->nslots : 0;
}

/* True when a request whose replies run about hint bytes would queue on bc
 * behind replies far larger than its own: more than BACKEND_DEEP_BYTES
 * expected ahead (what each queued request's client has been receiving),
 * averaging BACKEND_HEAVIER times its size or more. (Not for hint 0, a
 * size not known yet.) A client that only asks for small replies is then
 * not kept waiting while the server and the proxy move the large ones of
 * others; clients whose replies are all alike share the connection however
 * deep its queue. */
static bool backend_deep(const struct bconn *bc, uint32_t hint)
{
    return hint > 0 && bc->expect > BACKEND_DEEP_BYTES &&
           bc->expect / BACKEND_HEAVIER >= (uint64_t)hint * bc->nqueued;
}

/* The size of the replies bc carries: those expected for its queue, or
 * (nothing queued) those it delivered lately. */
static uint64_t backend_typical(const struct bconn *bc)
{
    return bc->nqueued > 0 && bc->expect > 0 ? bc->expect / bc->nqueued : bc->reply_avg;
}

/* True when bc carries replies far smaller than a request of hint bytes
 * (0: not known), or none seen yet (it was just opened, for a small
 * request perhaps), and the request's are large enough that its client (up
 * to client-backlog-limit in flight) could make bc deep for the clients
 * that use it (backend_deep): a moved request avoids it. */
static bool backend_lighter(const struct bconn *bc, uint32_t hint)
{
    return hint >= BACKEND_LARGE && hint / BACKEND_HEAVIER >= backend_typical(bc);
}

/* What a request of hint bytes would wait behind on bc, for the choice
 * among connections none of which suits it: the reply bytes expected
 * ahead, and a connection of far smaller replies last. */
static uint64_t backend_cost(const struct bconn *bc, uint32_t hint)
{
    return backend_lighter(bc, hint) ? bc->expect | (1ull << 62) : bc->expect;
}

/* The client's home connection (slot home of the pool at base) is stalled,
 * or deep for a request of hint bytes (backend_deep): the first shared
 * connection of the pool that is neither, nor of far smaller replies
 * (backend_lighter); else a new one in a free slot; else (every slot
 * taken) the one that is not stalled with the least expected ahead, or,
 * when that one is deep, a stalled one that is not; else the home one.
 * Large replies that keep the server busy make every connection look
 * stalled, so a stall does not take the last free slot when there are
 * three or more beyond backend-connections, unless the request is a small
 * one deep at home: small requests would find no room. */
static struct bconn *backend_elsewhere(struct backend *be, int base, int home, uint32_t hint,
                                       double now)
{
    bool stalled = bconn_stalled(be->shared[home], now, be->stall_after);
    struct bconn *fallback = NULL, *quiet = NULL;
    int free_slot = -1, nfree = 0;

    if (stalled) {
        bconn_note_stall(be->shared[home]);
        if (be->shared[home] == NULL) {
            return NULL; /* closed by what was handed back (out of memory) */
        }
    } else {
        fallback = be->shared[home];
    }
    for (int i = base; i < base + be->nslots; i++) {
        struct bconn *bc = be->shared[i];
        if (i == home) {
            continue;
        }
        if (bc == NULL) {
            free_slot = free_slot < 0 ? i : free_slot;
            nfree++;
        } else if (bconn_stalled(bc, now, be->stall_after)) {
            bconn_note_stall(bc);
            if (quiet == NULL && be->shared[i] != NULL && !backend_deep(bc, hint) &&
                !backend_lighter(bc, hint)) {
                quiet = bc;
            }
        } else if (!backend_deep(bc, hint) && !backend_lighter(bc, hint)) {
            return bc;
        } else if (fallback == NULL || backend_cost(bc, hint) < backend_cost(fallback, hint)) {
            fallback = bc;
        }
    }
    if (stalled && nfree == 1 && be->nslots - be->nshared >= 3 &&
        !backend_deep(be->shared[home], hint)) {
        free_slot = -1; /* kept for small requests behind large replies, as this one is not */
    }
    if (free_slot >= 0 && now >= be->connect_after) {
        struct bconn *bc = bconn_connect(be, false, base == 0 ? 2 : 3);
        if (bc != NULL) {
            be->shared[free_slot] = bc;
            if (free_slot - base >= be->nshared) {
                bc->extra = stalled ? BCONN_EXTRA_STALL : BCONN_EXTRA_DEEP;
                if (stalled) {
                    WORKER_COUNT(be->w, stall_conns_opened, 1);
                } else {
                    WORKER_COUNT(be->w, deep_conns_opened, 1);
                }
                log_debug("backend %s: shared connections %s; extra connection %d opened", be->name,
                          stalled ? "stalled" : "deep in large replies", free_slot - base + 1);
            }
            return bc;
        }
    }
    if (quiet != NULL && (fallback == NULL || backend_deep(fallback, hint))) {
        /* Late answers from a server busy with large replies stall every
         * connection: better one of them than deep in those replies. */
        return quiet;
    }
    return fallback != NULL ? fallback : be->shared[home];
}

/* Connect the client's empty home slot (of the pool at base); shortly
 * after a connection was refused, another open shared connection of the
 * pool instead (NULL if there is none), so that a refusal does not become a
 * connection attempt per request. */
static struct bconn *backend_open_slot(struct backend *be, int base, int slot)
{
    if (be->w->now < be->connect_after) {
        for (int i = base; i < base + be->nslots; i++) {
            if (be->shared[i] != NULL) {
                return be->shared[i];
            }
        }
        if (!ev_is_active(&be->retry)) {
            /* The request is held: this wakes it (backend_mark_up) or
             * connects again once the pause is over. */
            ev_timer_set(&be->retry, be->connect_after - be->w->now, 0);
            ev_timer_start(be->w->loop, &be->retry);
        }
        return NULL;
    }
    return be->shared[slot] = bconn_connect(be, false, base == 0 ? 2 : 3);
}

struct bconn *backend_shared(struct backend *be, uint64_t client_id, int resp, uint32_t hint)
{
    int base = backend_pool(be, resp);
    int slot = base + (int)(client_id % (uint64_t)be->nshared);
    struct bconn *bc;

    if (!backend_usable(be) || (resp == 3 && be->hello.resp3 == HELLO_NO_RESP3)) {
        return NULL;
    }
    bc = be->shared[slot];
    if (bc == NULL) {
        bc = backend_open_slot(be, base, slot);
    } else if (bconn_stalled(bc, be->w->now, be->stall_after) || backend_deep(bc, hint)) {
        bc = backend_elsewhere(be, base, slot, hint, be->w->now);
    }
    return bc;
}

void backend_tick(struct backend *be, double now)
{
    double idle = (double)backend_cfg(be)->backend_connections_idle_ms / 1000.0;
    double hold = (double)backend_cfg(be)->hold_timeout_ms / 1000.0;

    for (int i = 0; i < backend_all_slots(be); i++) {
        struct bconn *bc = be->shared[i];
        if (bc == NULL) {
            continue;
        }
        if (i % be->nslots >= be->nshared && bc->state == BC_READY && bc->nqueued == 0 &&
            now - bc->progress_at >= idle) {
            bconn_close(bc, NULL);
        } else if (bc->unsent != NULL && bconn_stalled(bc, now, be->stall_after)) {
            bconn_note_stall(bc); /* no dispatch came to see it: what waits in its window goes */
        } else if (bc->state == BC_READY && bc->nqueued > 0 && hold > 0 &&
                   now - bc->progress_at >= hold && net_retransmitting(bc->t.fd)) {
            /* A server cut off without a reset (a partition): what was sent
             * would wait until TCP gives up, long after hold-timeout. (A
             * busy server acknowledges, even with a full buffer.) */
            bconn_lost(bc, "nothing read nor acknowledged within hold-timeout");
        } else if (bc->unsent == NULL && bc->nqueued > 0 &&
                   now - bc->progress_at >= BACKEND_QUIET) {
            bconn_nudge(bc); /* replies awaited, nothing to send: is the server still there? */
        }
    }
}

struct bconn *backend_dedicated(struct backend *be, struct client *owner)
{
    struct bconn *bc;

    if (!backend_usable(be)) {
        return NULL;
    }
    bc = be->spare;
    if (bc != NULL) {
        be->spare = bc->spare_next;
        bc->spare_next = NULL;
        be->nspare--;
    } else {
        bc = bconn_connect(be, true, 2);
        if (bc == NULL) {
            return NULL;
        }
    }
    bc->owner = owner;
    return bc;
}

void backend_return(struct bconn *bc)
{
    struct backend *be = bc->be;

    bc->owner = NULL;
    /* Either protocol: lent again, it is switched to the next owner's
     * (session_replay). */
    if (bc->state == BC_READY && !bc->tainted && !bc->streaming && bc->db == 0 &&
        bc->nqueued == 0 && be->role != BACKEND_RETIRED &&
        be->nspare < backend_cfg(be)->dedicated_spare) {
        bc->spare_next = be->spare;
        be->spare = bc;
        be->nspare++;
        return;
    }
    bconn_close(bc, NULL);
}

void backend_forget(struct backend *be, struct bconn *bc)
{
    struct bconn **pp;

    for (int i = 0; i < backend_all_slots(be); i++) {
        if (be->shared[i] == bc) {
            be->shared[i] = NULL;
        }
    }
    for (pp = &be->spare; *pp != NULL; pp = &(*pp)->spare_next) {
        if (*pp == bc) {
            *pp = bc->spare_next;
            be->nspare--;
            break;
        }
    }
    if (bc->prev != NULL) {
        bc->prev->next = bc->next;
    } else {
        be->conns = bc->next;
    }
    if (bc->next != NULL) {
        bc->next->prev = bc->prev;
    }
    bc->prev = bc->next = NULL;
}
