/*
 * resub.c - after a master switch, requests for the new master wait until
 * the subscribers are subscribed again there (see resub.h).
 */
#include "proxy/resub.h"

#include <stdio.h>

#include "conf/config.h"
#include "lib/log.h"
#include "lib/topology.h"
#include "proxy/backend.h"
#include "proxy/client.h"
#include "proxy/proxy.h"
#include "proxy/worker.h"

#define RESUB_WAIT 1.0 /* seconds a new master's requests wait at most for subscribers */

static void resub_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents);

void resub_init(struct worker *w)
{
    ev_timer_init(&w->resub_timer, resub_timeout_cb, RESUB_WAIT, 0);
    w->resub_timer.data = w;
}

/* Clients of this worker waiting to be subscribed again. */
static uint32_t resub_clients(const struct worker *w)
{
    uint32_t n = 0;

    for (const struct client *c = w->clients; c != NULL; c = c->next) {
        if (c->sess.resub && !(c->flags & CL_CLOSING)) {
            n++;
        }
    }
    return n;
}

/* How many other workers have not settled at version yet; their ids in buf
 * (when not NULL). */
static int resub_others(const struct worker *w, uint64_t version, char *buf, size_t len)
{
    const struct proxy *px = w->px;
    size_t used = 0;
    int n = 0;

    if (buf != NULL && len > 0) {
        buf[0] = '\0';
    }
    for (int i = 0; i < px->nworkers; i++) {
        const struct worker *o = &px->workers[i];
        if (o == w || __atomic_load_n(&o->resub_done, __ATOMIC_SEQ_CST) >= version) {
            continue;
        }
        n++;
        if (buf != NULL && used < len) {
            int k = snprintf(buf + used, len - used, "%s%d", used > 0 ? "," : "", o->id);
            used += k > 0 ? (size_t)k : 0;
        }
    }
    return n;
}

/* Nothing of this worker's is waited for up to the topology it follows: say
 * so to the other workers, and wake those that wait. */
void resub_settled(struct worker *w)
{
    uint64_t v = w->topo != NULL ? w->topo->version : 0;
    struct proxy *px = w->px;

    if (v <= __atomic_load_n(&w->resub_done, __ATOMIC_SEQ_CST)) {
        return;
    }
    __atomic_store_n(&w->resub_done, v, __ATOMIC_SEQ_CST);
    for (int i = 0; i < px->nworkers; i++) {
        struct worker *o = &px->workers[i];
        if (o != w && __atomic_load_n(&o->resub_holding, __ATOMIC_SEQ_CST)) {
            worker_wake_async(o);
        }
    }
}

/* The wait is over: requests for the master go. */
static void resub_open(struct worker *w)
{
    w->resub_version = 0;
    w->resub_check = false;
    __atomic_store_n(&w->resub_holding, false, __ATOMIC_SEQ_CST);
    ev_timer_stop(w->loop, &w->resub_timer);
    resub_settled(w);
    worker_wake_later(w);
}

/* The master changed (the topology of the given version): its requests wait
 * for the subscribers. */
void resub_arm(struct worker *w, uint64_t version)
{
    double wait = RESUB_WAIT, half_hold = (double)w->cfg->hold_timeout_ms / 2000.0;

    if (half_hold < wait) {
        wait = half_hold;
    }
    if (wait <= 0) {
        resub_open(w); /* hold-timeout 0: nothing waits */
        return;
    }
    w->resub_version = version;
    w->resub_started = 0;
    w->resub_since = ev_now(w->loop);
    w->resub_check = true;
    __atomic_store_n(&w->resub_holding, true, __ATOMIC_SEQ_CST);
    ev_timer_stop(w->loop, &w->resub_timer);
    ev_timer_set(&w->resub_timer, wait, 0);
    ev_timer_start(w->loop, &w->resub_timer);
}

void resub_evaluate(struct worker *w)
{
    w->resub_check = false;
    if (w->resub_version == 0 || w->resub_pending > 0 || resub_clients(w) > 0) {
        return;
    }
    resub_settled(w);
    if (resub_others(w, w->resub_version, NULL, 0) > 0) {
        return; /* resub_settled of the last one wakes this one */
    }
    if (w->resub_started > 0) {
        log_info("resubscriptions on the new master %s over (%u of this worker's clients) in "
                 "%.0f ms: requests for it go",
                 w->master != NULL ? w->master->name : "-", w->resub_started,
                 (ev_now(w->loop) - w->resub_since) * 1000);
    }
    resub_open(w);
}

static void resub_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = t->data;
    char others[128];
    int n = resub_others(w, w->resub_version, others, sizeof(others));

    (void)revents;
    if (w->resub_version == 0) {
        return;
    }
    log_warn("requests for the new master %s go after %.0f ms without every subscription "
             "re-established there: %u client(s) of this worker not subscribed again yet, %u "
             "resubscription(s) unconfirmed, %d other worker(s) not done%s%s; what is published "
             "now may be missed by those subscribers",
             w->master != NULL ? w->master->name : "-", (ev_now(loop) - w->resub_since) * 1000,
             resub_clients(w), w->resub_pending, n, n > 0 ? ": " : "", others);
    resub_open(w);
}

void resub_started(struct worker *w)
{
    w->resub_pending++;
    w->resub_started++;
}

void resub_ended(struct worker *w)
{
    if (w->resub_pending > 0 && --w->resub_pending == 0) {
        w->resub_check = w->resub_version != 0;
    }
}

void resub_recheck(struct worker *w)
{
    w->resub_check = w->resub_version != 0;
}
