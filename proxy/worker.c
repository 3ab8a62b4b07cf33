/*
 * worker.c - data-plane threads: the loop, the once-per-turn flush, deferred
 * frees, held-request timeouts, and applying topology snapshots.
 */
#include "proxy/worker.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/config.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/topology.h"
#include "proxy/acks.h"
#include "proxy/backend.h"
#include "proxy/bconn.h"
#include "proxy/client.h"
#include "proxy/commands.h"
#include "proxy/listener.h"
#include "proxy/offsets.h"
#include "proxy/proxy.h"
#include "proxy/req.h"
#include "proxy/resub.h"

#define WORKER_TICK         0.1  /* seconds between housekeeping passes */
#define WORKER_POOL_CHUNKS  4096 /* idle chunks kept per worker (64 MiB) */
#define WORKER_FLUSH_ROUNDS 8
#define WORKER_DRAIN_GRACE  1.0  /* seconds for requests in flight on a demoted master */
#define WORKER_PROBE_PERIOD 0.01 /* seconds between replica offset probes */
#define WORKER_REPORT_EVERY 10.0 /* seconds between lines on refusals and hold timeouts */

_Static_assert(sizeof(struct worker_latency) == 256, "a histogram is indexed by shifting");
_Static_assert(CMDF_WRITE == 1 && CMDF_READONLY == 2, "worker_kind_of is indexed by these");
const uint8_t worker_kind_of[4] = {WORKER_KIND_OTHER, WORKER_KIND_WRITE, WORKER_KIND_READ,
                                   WORKER_KIND_WRITE};

static void worker_flush_cb(struct ev_loop *loop, ev_prepare *p, int revents);
static void worker_clock_cb(struct ev_loop *loop, ev_check *c, int revents);
static void worker_async_cb(struct ev_loop *loop, ev_async *a, int revents);
static void worker_tick_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void worker_probe_cb(struct ev_loop *loop, ev_timer *t, int revents);

bool worker_init(struct worker *w, struct proxy *px, int id, char *err, size_t errlen)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->snap_lock, NULL);
    w->id = id;
    w->px = px;
    w->cfg = px->cfg;
    w->replica_reads = listener_reads_replicas(w->cfg);
    w->loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
    if (w->loop == NULL) {
        w->loop = ev_loop_new(EVFLAG_AUTO);
    }
    if (w->loop == NULL) {
        snprintf(err, errlen, "worker %d: cannot create an event loop", id);
        return false;
    }
    chunk_pool_init(&w->pool, WORKER_POOL_CHUNKS);
    req_pool_init(&w->reqs, &w->pool);
    if (!offsets_init(w)) {
        snprintf(err, errlen, "worker %d: out of memory", id);
        return false;
    }
    ev_async_init(&w->wake, worker_async_cb);
    w->wake.data = w;
    ev_async_start(w->loop, &w->wake);
    ev_prepare_init(&w->flush, worker_flush_cb);
    w->flush.data = w;
    ev_prepare_start(w->loop, &w->flush);
    ev_check_init(&w->clock, worker_clock_cb);
    w->clock.data = w;
    ev_check_start(w->loop, &w->clock);
    w->now = ev_now(w->loop);
    w->now_us = (uint64_t)(w->now * 1e6);
    ev_timer_init(&w->tick, worker_tick_cb, WORKER_TICK, WORKER_TICK);
    w->tick.data = w;
    ev_timer_start(w->loop, &w->tick);
    ev_timer_init(&w->probe, worker_probe_cb, WORKER_PROBE_PERIOD, WORKER_PROBE_PERIOD);
    w->probe.data = w;
    resub_init(w);
    return true;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char name[16];

    snprintf(name, sizeof(name), "w%d", w->id);
    log_set_thread_name(name);
    ev_run(w->loop, 0);
    return NULL;
}

bool worker_start(struct worker *w)
{
    w->running = pthread_create(&w->thread, NULL, worker_main, w) == 0;
    return w->running;
}

void worker_publish(struct worker *w, struct topology *t)
{
    struct topology *old;

    topology_ref(t);
    old = __atomic_exchange_n(&w->mailbox, t, __ATOMIC_ACQ_REL);
    topology_unref(old);
    ev_async_send(w->loop, &w->wake);
}

static void worker_reject(int fd, bool tls)
{
    static const char msg[] = "-ERR max number of clients reached\r\n";

    /* Best effort: the connection is closed whether or not this is read. A
     * TLS client could not read it (it expects a handshake): it is closed. */
    if (!tls && write(fd, msg, sizeof(msg) - 1) < 0) {
        log_debug("could not tell a rejected client why");
    }
    close(fd);
}

/* A listener of this worker accepted a connection: a client, unless the
 * process is at max-clients. */
static void worker_accept(void *ctx, struct listener *l, int fd)
{
    struct worker *w = ctx;
    struct proxy *px = w->px;

    if (__atomic_add_fetch(&px->nclients, 1, __ATOMIC_RELAXED) > w->cfg->max_clients) {
        __atomic_sub_fetch(&px->nclients, 1, __ATOMIC_RELAXED);
        WORKER_COUNT(w, refused, 1);
        worker_reject(fd, l->tls != NULL);
        return;
    }
    net_tune(fd, (int)(w->cfg->tcp_keepalive_ms / 1000));
    if (client_new(w, l, fd) == NULL) {
        __atomic_sub_fetch(&px->nclients, 1, __ATOMIC_RELAXED);
        close(fd);
    }
}

bool worker_listen(struct worker *w, const int *shared_fds, char *err, size_t errlen)
{
    return listener_start(w->loop, w->cfg, shared_fds, w->px->tls.listeners, worker_accept, w,
                          &w->listeners, &w->nlisteners, err, errlen);
}

/* ---- flush lists ------------------------------------------------------- */

void worker_mark_client(struct worker *w, struct client *c)
{
    if (!(c->flags & CL_DIRTY)) {
        c->flags |= CL_DIRTY;
        c->dnext = w->dirty_clients;
        w->dirty_clients = c;
    }
}

void worker_mark_bconn(struct worker *w, struct bconn *bc)
{
    if (!bc->dirty) {
        bc->dirty = true;
        bc->dnext = w->dirty_bconns;
        w->dirty_bconns = bc;
    }
}

void worker_reap_client(struct worker *w, struct client *c)
{
    c->rnext = w->reap_clients;
    w->reap_clients = c;
}

void worker_reap_bconn(struct worker *w, struct bconn *bc)
{
    if (!bc->reaped) {
        bc->reaped = true;
        bc->rnext = w->reap_bconns;
        w->reap_bconns = bc;
    }
}

void worker_wait(struct worker *w, struct client *c)
{
    if (c->flags & (CL_WAITING | CL_CLOSING)) {
        return;
    }
    c->flags |= CL_WAITING;
    c->wprev = NULL;
    c->wnext = w->waiting;
    if (w->waiting != NULL) {
        w->waiting->wprev = c;
    }
    w->waiting = c;
}

void worker_unwait(struct worker *w, struct client *c)
{
    if (!(c->flags & CL_WAITING)) {
        return;
    }
    c->flags &= ~CL_WAITING;
    if (c->wprev != NULL) {
        c->wprev->wnext = c->wnext;
    } else {
        w->waiting = c->wnext;
    }
    if (c->wnext != NULL) {
        c->wnext->wprev = c->wprev;
    }
    c->wprev = c->wnext = NULL;
}

void worker_wake_async(struct worker *w)
{
    __atomic_store_n(&w->wake_asked, true, __ATOMIC_RELEASE);
    ev_async_send(w->loop, &w->wake);
}

void worker_wake_later(struct worker *w)
{
    w->wake_pending = true;
}

void worker_wake_waiting(struct worker *w)
{
    struct client **list;
    size_t n = 0, i = 0;

    for (struct client *c = w->waiting; c != NULL; c = c->wnext) {
        n++;
    }
    if (n == 0) {
        return;
    }
    /* Dispatching can put clients back on the list: work from a copy. */
    list = malloc(n * sizeof(*list));
    if (list == NULL) {
        w->wake_pending = true;
        return;
    }
    for (struct client *c = w->waiting; c != NULL; c = c->wnext) {
        list[i++] = c;
    }
    for (i = 0; i < n; i++) {
        worker_unwait(w, list[i]);
    }
    for (i = 0; i < n; i++) {
        if (!(list[i]->flags & CL_CLOSING)) {
            client_dispatch(list[i]);
        }
    }
    free(list);
}

/* Draining, and the last client gone: the control thread, which polls
 * worker_drained, may stop. */
static void worker_check_drained(struct worker *w)
{
    if (w->draining && w->nclients == 0 && !w->drained) {
        __atomic_store_n(&w->drained, true, __ATOMIC_RELEASE);
    }
}

static void worker_reap(struct worker *w)
{
    /* The flush pass may have stopped with closed connections still on its
     * lists: they must be off them before they are freed. */
    if (w->reap_clients != NULL) {
        for (struct client **pp = &w->dirty_clients; *pp != NULL;) {
            if ((*pp)->flags & CL_CLOSING) {
                (*pp)->flags &= ~CL_DIRTY;
                *pp = (*pp)->dnext;
            } else {
                pp = &(*pp)->dnext;
            }
        }
    }
    if (w->reap_bconns != NULL) {
        for (struct bconn **pp = &w->dirty_bconns; *pp != NULL;) {
            if ((*pp)->state == BC_CLOSED) {
                (*pp)->dirty = false;
                *pp = (*pp)->dnext;
            } else {
                pp = &(*pp)->dnext;
            }
        }
    }
    while (w->reap_clients != NULL) {
        struct client *c = w->reap_clients;
        w->reap_clients = c->rnext;
        client_destroy(c);
    }
    while (w->reap_bconns != NULL) {
        struct bconn *bc = w->reap_bconns;
        w->reap_bconns = bc->rnext;
        bconn_destroy(bc);
    }
    worker_check_drained(w);
}

/* Right after each poll, before any other callback of the turn. */
static void worker_clock_cb(struct ev_loop *loop, ev_check *c, int revents)
{
    struct worker *w = c->data;

    (void)revents;
    w->now = ev_now(loop);
    w->now_us = (uint64_t)(w->now * 1e6);
}

/* Once per loop turn, before sleeping: everything queued during the turn is
 * written, backends first so that requests leave as early as possible. */
static void worker_flush_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    struct worker *w = p->data;

    (void)loop;
    (void)revents;
    for (int round = 0; round < WORKER_FLUSH_ROUNDS; round++) {
        if (w->wake_pending) {
            w->wake_pending = false;
            worker_wake_waiting(w);
            /* Subscribers may have started their resubscriptions, and
             * other workers may have finished theirs (resub_settled). */
            w->resub_check = w->resub_version != 0;
        }
        if (w->resub_check) {
            resub_evaluate(w); /* may release requests: wake_pending */
        }
        while (w->dirty_bconns != NULL) {
            struct bconn *bc = w->dirty_bconns;
            w->dirty_bconns = bc->dnext;
            bc->dnext = NULL;
            bc->dirty = false;
            bconn_flush(bc);
        }
        while (w->dirty_clients != NULL) {
            struct client *c = w->dirty_clients;
            w->dirty_clients = c->dnext;
            c->dnext = NULL;
            c->flags &= ~CL_DIRTY;
            client_flush(c);
        }
        if (!w->wake_pending && w->dirty_bconns == NULL) {
            break;
        }
    }
    worker_reap(w);
}

/* ---- topology ------------------------------------------------------------- */

struct backend *worker_backend(struct worker *w, const struct addr *a)
{
    for (struct backend *be = w->backends; be != NULL; be = be->next) {
        if (addr_same_place(&be->addr, a)) {
            return be;
        }
    }
    return NULL;
}

static bool worker_in_topology(const struct topology *t, const struct backend *be)
{
    if (t->has_master && addr_same_place(&t->master, &be->addr)) {
        return true;
    }
    for (size_t i = 0; i < t->nreplicas; i++) {
        if (addr_same_place(&t->replicas[i].addr, &be->addr)) {
            return true;
        }
    }
    return false;
}

static struct backend *worker_ensure(struct worker *w, const struct addr *a, enum backend_role role)
{
    struct backend *be = worker_backend(w, a);

    if (be == NULL) {
        be = backend_new(w, a, role);
        if (be == NULL) {
            log_error("out of memory creating backend");
            return NULL;
        }
    }
    if (be->role == BACKEND_RETIRED) {
        be->state = BE_UNKNOWN;
    }
    if (role == BACKEND_MASTER) {
        backend_undrain(be);
    } else if (be->role == BACKEND_MASTER) {
        /* No writes may reach a node that is no longer the master: what it
         * has not answered within the grace is reset, and sessions pinned to
         * it move to the new master with their state. */
        backend_drain(be, WORKER_DRAIN_GRACE);
    }
    be->role = (uint8_t)role;
    be->suspect_until = 0;
    return be;
}

/* The replicas of t, with what the topology says of them, as this worker's
 * list for routing reads. */
static void worker_set_replicas(struct worker *w, const struct topology *t)
{
    struct backend **list = t->nreplicas > 0 ? calloc(t->nreplicas, sizeof(*list)) : NULL;
    size_t n = 0;

    for (size_t i = 0; i < t->nreplicas && (list != NULL); i++) {
        const struct topology_replica *rp = &t->replicas[i];
        struct backend *be = worker_ensure(w, &rp->addr, BACKEND_REPLICA);
        if (be == NULL) {
            continue;
        }
        be->healthy = rp->healthy;
        be->weight = rp->weight > 0 ? rp->weight : 1;
        snprintf(be->zone, sizeof(be->zone), "%s", rp->zone);
        if (rp->offset > be->ofs.offset) {
            be->ofs.offset = rp->offset;
        }
        list[n++] = be;
    }
    free(w->replicas);
    w->replicas = list;
    w->nreplicas = n;
    /* Replica offsets are refreshed only while there are replicas that reads
     * may go to, or that writes wait for (acks.c). */
    if (n > 0 && (w->replica_reads || acks_pending(w)) && !ev_is_active(&w->probe)) {
        ev_timer_start(w->loop, &w->probe);
    } else if (n == 0) {
        ev_timer_stop(w->loop, &w->probe);
    }
}

static void worker_probe_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    offsets_tick(t->data, ev_now(loop));
}

static void worker_apply(struct worker *w, struct topology *t)
{
    struct backend *be, *next, *master = NULL;
    bool switched;

    if (t->has_master) {
        master = worker_ensure(w, &t->master, BACKEND_MASTER);
    }
    worker_set_replicas(w, t);
    if (t->master_offset > w->ofs.master_offset) {
        w->ofs.master_offset = t->master_offset;
    }
    for (be = w->backends; be != NULL; be = next) {
        next = be->next;
        if (be->role != BACKEND_RETIRED && !worker_in_topology(t, be)) {
            be->role = BACKEND_RETIRED;
            ev_timer_stop(w->loop, &be->retry);
            backend_drain(be, WORKER_DRAIN_GRACE);
        } else if (be != master && be->role == BACKEND_MASTER) {
            worker_ensure(w, &be->addr, BACKEND_REPLICA);
        }
    }
    switched = w->master != master && master != NULL;
    if (switched) {
        /* Writes that wait for replicas are judged before the offsets are
         * the new master's. */
        acks_switch(w, master);
        /* Replication offsets are the new master's from now on (a promoted
         * replica may be behind what the old master had reached). */
        w->ofs.master_gen++;
        w->ofs.master_offset = t->master_offset;
        if (t->switch_started > 0) {
            master->switch_started = t->switch_started;
        }
        w->master = master;
        /* Blocking commands still waiting on a former master go to this
         * one: they did not run there, and never will. (After the master
         * is set: a reply read on the way may let its client go on.) */
        for (be = w->backends; be != NULL; be = next) {
            next = be->next;
            if (be != master) {
                backend_release_blocked(be);
            }
        }
    }
    w->master = master;
    if (master != NULL) {
        backend_warm(master);
    }
    topology_unref(w->topo);
    w->topo = t;
    if (switched) {
        /* The subscribers that were on the old master (their connections
         * closed above, with its drain) are subscribed again on this one
         * before anything else reaches it. */
        resub_arm(w, t->version);
    } else if (w->resub_version == 0) {
        resub_settled(w);
    }
    worker_wake_later(w);
}

/* Draining: nothing new is accepted, idle clients go now, the others as
 * soon as their last reply is out (client_flush asks worker_drain_client). */
static void worker_start_drain(struct worker *w)
{
    struct client *c, *next;

    w->draining = true;
    listener_stop(w->listeners, w->nlisteners);
    w->listeners = NULL;
    w->nlisteners = 0;
    for (c = w->clients; c != NULL; c = next) {
        next = c->next;
        worker_drain_client(w, c);
    }
    worker_check_drained(w);
}

void worker_conf_free(struct worker_conf *m)
{
    if (m == NULL) {
        return;
    }
    for (size_t i = 0; i < m->cfg->nlisteners; i++) {
        if (m->fds[i] >= 0 && !m->shared[i]) {
            close(m->fds[i]);
        }
    }
    free(m->fds);
    free(m->shared);
    free(m->ls);
    free(m);
}

/* m comes after old, which the worker never took: the sockets old had for
 * listeners that m keeps go to m (m's -1 meant "the one the worker has"). */
static void worker_conf_merge(struct worker_conf *m, struct worker_conf *old)
{
    for (size_t i = 0; i < m->cfg->nlisteners; i++) {
        const struct addr *a = &m->cfg->listeners[i].addr;
        for (size_t j = 0; m->fds[i] < 0 && j < old->cfg->nlisteners; j++) {
            const struct addr *b = &old->cfg->listeners[j].addr;
            if (old->fds[j] >= 0 && a->family == b->family && a->port == b->port &&
                strcmp(a->host, b->host) == 0) {
                m->fds[i] = old->fds[j];
                old->fds[j] = -1;
            }
        }
    }
}

void worker_reconfigure(struct worker *w, struct worker_conf *m)
{
    struct worker_conf *old = __atomic_exchange_n(&w->conf_mailbox, NULL, __ATOMIC_ACQ_REL);

    if (old != NULL) {
        worker_conf_merge(m, old);
        worker_conf_free(old);
    }
    __atomic_store_n(&w->conf_mailbox, m, __ATOMIC_RELEASE);
    ev_async_send(w->loop, &w->wake);
}

uint64_t worker_conf_gen(struct worker *w)
{
    return __atomic_load_n(&w->conf_gen, __ATOMIC_ACQUIRE);
}

/* The listener of the worker at a (NULL if none), taken out of the array. */
static struct listener *worker_take_listener(struct worker *w, const struct addr *a)
{
    for (size_t i = 0; i < w->nlisteners; i++) {
        struct listener *l = w->listeners[i];
        if (l != NULL && l->addr.family == a->family && l->addr.port == a->port &&
            strcmp(l->addr.host, a->host) == 0) {
            w->listeners[i] = NULL;
            return l;
        }
    }
    return NULL;
}

/* A reload's configuration, on the worker's thread. */
static void worker_apply_conf(struct worker *w, struct worker_conf *m)
{
    const struct config *cfg = m->cfg;
    struct listener **ls = m->ls;
    size_t n = 0;

    w->cfg = cfg;
    /* Once on, it stays on: clients of a listener removed by this reload
     * may still read from replicas, and their writes must be tracked. */
    w->replica_reads = w->replica_reads || listener_reads_replicas(cfg);
    if (w->replica_reads && w->nreplicas > 0 && !ev_is_active(&w->probe)) {
        ev_timer_start(w->loop, &w->probe);
    }
    if (w->draining) {
        worker_conf_free(m); /* the listeners are closed for good */
        return;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct addr *a = &cfg->listeners[i].addr;
        struct listener *l =
            m->fds[i] < 0 ? worker_take_listener(w, a)
                          : listener_new(w->loop, a, m->fds[i], m->shared[i],
                                         listener_read_from(cfg, i), m->tls[i], worker_accept, w);
        if (l == NULL) {
            char text[ADDR_TEXT_MAX];
            addr_format(a, text, sizeof(text));
            log_error("worker %d: %s: %s", w->id, text,
                      m->fds[i] < 0 ? "no socket to keep" : "out of memory or descriptors");
            continue;
        }
        m->fds[i] = -1; /* the listener's now */
        l->read_from = listener_read_from(cfg, i);
        l->tls = m->tls[i];
        ls[n++] = l;
    }
    listener_stop(w->listeners, w->nlisteners); /* those not taken */
    w->listeners = ls;
    w->nlisteners = n;
    m->ls = NULL;
    worker_conf_free(m);
}

void worker_drain(struct worker *w)
{
    __atomic_store_n(&w->drain_asked, true, __ATOMIC_RELEASE);
    ev_async_send(w->loop, &w->wake);
}

bool worker_drained(struct worker *w)
{
    return __atomic_load_n(&w->drained, __ATOMIC_ACQUIRE);
}

bool worker_drain_client(struct worker *w, struct client *c)
{
    if (!w->draining || (c->flags & CL_CLOSING)) {
        return false;
    }
    if ((c->flags & CL_HANDSHAKE) ||
        (c->head == NULL && c->cur == NULL && !transport_out_pending(&c->t))) {
        client_close(c, "draining");
        return true;
    }
    return false;
}

static void worker_async_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    struct worker *w = a->data;
    struct worker_conf *m;
    struct topology *t;

    (void)revents;
    if (__atomic_load_n(&w->stopping, __ATOMIC_ACQUIRE)) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    m = __atomic_exchange_n(&w->conf_mailbox, NULL, __ATOMIC_ACQ_REL);
    if (m != NULL) {
        uint64_t gen = m->gen;
        worker_apply_conf(w, m);
        __atomic_store_n(&w->conf_gen, gen, __ATOMIC_RELEASE);
    }
    t = __atomic_exchange_n(&w->mailbox, NULL, __ATOMIC_ACQ_REL);
    if (t != NULL) {
        worker_apply(w, t);
    }
    if (__atomic_exchange_n(&w->wake_asked, false, __ATOMIC_ACQ_REL)) {
        worker_wake_later(w);
    }
    if (!w->draining && __atomic_load_n(&w->drain_asked, __ATOMIC_ACQUIRE)) {
        worker_start_drain(w);
    }
}

void worker_backend_gone(struct worker *w, const struct backend *be)
{
    size_t i = 0;

    while (i < w->ngone && strcmp(w->gone[i].name, be->name) != 0) {
        i++;
    }
    if (i == w->ngone) {
        if (w->ngone == WORKER_SNAP_MAX) {
            return; /* more addresses than tracked: this one's total may drop */
        }
        memset(&w->gone[i], 0, sizeof(w->gone[i]));
        snprintf(w->gone[i].name, sizeof(w->gone[i].name), "%s", be->name);
        w->gone[i].role = BACKEND_RETIRED;
        w->ngone++;
    }
    w->gone[i].requests += be->nrequests;
    w->gone[i].failures += be->nerrors;
}

/* Fill out from the live backends, plus the counters of freed ones (the
 * worker's own thread only). */
static size_t worker_collect(struct worker *w, struct worker_backend_snap *out, size_t max)
{
    size_t n = 0;

    for (struct backend *be = w->backends; be != NULL && n < max; be = be->next, n++) {
        snprintf(out[n].name, sizeof(out[n].name), "%s", be->name);
        out[n].role = be->role;
        out[n].requests = be->nrequests;
        out[n].failures = be->nerrors;
        out[n].inflight = be->inflight;
    }
    for (size_t g = 0; g < w->ngone; g++) {
        size_t j = 0;
        while (j < n && strcmp(out[j].name, w->gone[g].name) != 0) {
            j++;
        }
        if (j == n) {
            if (n == max) {
                continue;
            }
            out[n++] = w->gone[g];
            continue;
        }
        out[j].requests += w->gone[g].requests;
        out[j].failures += w->gone[g].failures;
    }
    return n;
}

/* The worker's levels (its own thread only). */
static void worker_measure(struct worker *w, struct worker_gauges *g)
{
    memset(g, 0, sizeof(*g));
    g->held_bytes = w->held_bytes;
    g->held_reqs = w->held_reqs;
    g->clients = w->nclients;
    g->chunks_live = w->pool.live;
    g->chunks_pooled = w->pool.nfree;
    for (struct backend *be = w->backends; be != NULL; be = be->next) {
        g->dedicated_spare += (uint32_t)be->nspare;
        for (struct bconn *bc = be->conns; bc != NULL; bc = bc->next) {
            g->bconns_ready += bc->state == BC_READY;
            g->bconns_connecting += bc->state == BC_CONNECTING;
            g->dedicated_lent += bc->dedicated && bc->owner != NULL;
        }
    }
}

void worker_gauges_get(struct worker *w, struct worker_gauges *out)
{
    pthread_mutex_lock(&w->snap_lock);
    *out = w->gauges;
    pthread_mutex_unlock(&w->snap_lock);
}

size_t worker_backend_counters(struct worker *w, bool own, struct worker_backend_snap *out,
                               size_t max)
{
    size_t n;

    if (own) {
        return worker_collect(w, out, max);
    }
    pthread_mutex_lock(&w->snap_lock);
    n = w->nsnap < max ? w->nsnap : max;
    memcpy(out, w->snap, n * sizeof(*out));
    pthread_mutex_unlock(&w->snap_lock);
    return n;
}

struct worker_backend_snap *worker_backend_totals(struct proxy *px, struct worker *own, size_t *n)
{
    size_t cap = (size_t)px->nworkers * WORKER_SNAP_MAX;
    struct worker_backend_snap *all = calloc(cap > 0 ? cap : 1, sizeof(*all));
    struct worker_backend_snap *mine = calloc(WORKER_SNAP_MAX, sizeof(*mine));

    *n = 0;
    if (all == NULL || mine == NULL) {
        free(all);
        free(mine);
        return NULL;
    }
    for (int k = 0; k < px->nworkers; k++) {
        size_t got =
            worker_backend_counters(&px->workers[k], &px->workers[k] == own, mine, WORKER_SNAP_MAX);
        for (size_t i = 0; i < got; i++) {
            size_t j = 0;
            while (j < *n && strcmp(all[j].name, mine[i].name) != 0) {
                j++;
            }
            if (j == *n) {
                all[(*n)++] = mine[i];
                continue;
            }
            all[j].requests += mine[i].requests;
            all[j].failures += mine[i].failures;
            all[j].inflight += mine[i].inflight;
            if (mine[i].role < all[j].role) {
                all[j].role = mine[i].role; /* master before replica before retired */
            }
        }
    }
    free(mine);
    return all;
}

/* One line for the clients refused and the requests that waited out
 * hold-timeout since the last one (each at most every WORKER_REPORT_EVERY s). */
static void worker_report(struct worker *w, double now)
{
    char kv[128], why[256];
    uint64_t n;

    n = w->stats.refused - w->refused_logged;
    if (n > 0 && now - w->refused_at >= WORKER_REPORT_EVERY) {
        snprintf(kv, sizeof(kv), "refused=%llu max_clients=%d", (unsigned long long)n,
                 w->cfg->max_clients);
        log_kv(LOG_WARN, __func__, kv,
               "refused %llu client(s): max-clients (%d) reached; raise it or add proxies",
               (unsigned long long)n, w->cfg->max_clients);
        w->refused_logged = w->stats.refused;
        w->refused_at = now;
    }
    n = w->stats.held_timeouts - w->timeouts_logged;
    if (n > 0 && now - w->timeouts_at >= WORKER_REPORT_EVERY) {
        proxy_why_no_master(w->px, why, sizeof(why));
        snprintf(kv, sizeof(kv), "hold_timeouts=%llu hold_timeout_ms=%llu", (unsigned long long)n,
                 (unsigned long long)w->cfg->hold_timeout_ms);
        log_kv(LOG_WARN, __func__, kv,
               "%llu request(s) failed after waiting hold-timeout (%llu ms) for a usable "
               "backend%s%s",
               (unsigned long long)n, (unsigned long long)w->cfg->hold_timeout_ms,
               why[0] != '\0' ? ": " : "", why);
        w->timeouts_logged = w->stats.held_timeouts;
        w->timeouts_at = now;
    }
}

static void worker_tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = t->data;
    double now = ev_now(loop);
    struct backend *be, *next;
    struct client *c, *cnext;
    struct worker_gauges g;

    (void)revents;
    for (c = w->waiting; c != NULL; c = cnext) {
        cnext = c->wnext;
        client_tick(c, now);
    }
    acks_tick(w, now);
    if (w->cfg->client_idle_timeout_ms > 0) {
        for (c = w->clients; c != NULL; c = c->next) {
            if (!(c->flags & CL_WAITING)) {
                client_tick(c, now);
            }
        }
    }
    for (be = w->backends; be != NULL; be = next) {
        next = be->next;
        if (be->role == BACKEND_RETIRED && be->conns == NULL) {
            backend_free(be);
            continue;
        }
        backend_tick(be, now);
        if (be->suspect_until > 0 && now >= be->suspect_until) {
            be->suspect_until = 0;
            worker_wake_later(w); /* requests held for it may go again */
        }
    }
    worker_report(w, now);
    worker_measure(w, &g);
    pthread_mutex_lock(&w->snap_lock);
    w->nsnap = worker_collect(w, w->snap, WORKER_SNAP_MAX);
    w->gauges = g;
    pthread_mutex_unlock(&w->snap_lock);
}

void worker_stop(struct worker *w)
{
    if (w->running) {
        __atomic_store_n(&w->stopping, true, __ATOMIC_RELEASE);
        ev_async_send(w->loop, &w->wake);
        pthread_join(w->thread, NULL);
        w->running = false;
    }
}

void worker_free(struct worker *w)
{
    struct client *c;

    listener_stop(w->listeners, w->nlisteners);
    w->listeners = NULL;
    w->nlisteners = 0;
    for (c = w->clients; c != NULL; c = c->next) {
        client_close(c, NULL);
    }
    while (w->backends != NULL) {
        backend_free(w->backends);
    }
    worker_reap(w);
    topology_unref(w->topo);
    topology_unref(__atomic_exchange_n(&w->mailbox, NULL, __ATOMIC_ACQ_REL));
    worker_conf_free(__atomic_exchange_n(&w->conf_mailbox, NULL, __ATOMIC_ACQ_REL));
    w->topo = NULL;
    req_pool_free(&w->reqs);
    chunk_pool_drain(&w->pool);
    offsets_free(w);
    free(w->replicas);
    w->replicas = NULL;
    w->nreplicas = 0;
    ev_loop_destroy(w->loop);
    w->loop = NULL;
    pthread_mutex_destroy(&w->snap_lock);
}
