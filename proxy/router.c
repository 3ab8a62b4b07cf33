/*
 * router.c - backend choice for requests on shared connections.
 *
 * Writes, and everything that is not a read-only command, go to the master.
 * Read-only commands follow the listener's read-from policy: "master",
 * "replicas" (wait for a usable replica), or "prefer-replicas" (the master
 * when no replica can take the read). A replica can take a read when the
 * topology says it is healthy, this worker can reach it, and, with
 * read-your-writes, it has processed the client's last acknowledged write.
 * Among those, replicas in the proxy's zone come first; then the balance
 * policy picks one.
 */
#include "proxy/router.h"

#include <string.h>

#include "conf/config.h"
#include "proxy/backend.h"
#include "proxy/client.h"
#include "proxy/commands.h"
#include "proxy/listener.h"
#include "proxy/offsets.h"
#include "proxy/proxy.h"
#include "proxy/req.h"
#include "proxy/worker.h"

#define ROUTER_CANDIDATES 64

static struct backend *router_master(struct client *c)
{
    struct backend *be = c->w->master;

    return be != NULL && backend_usable(be) ? be : NULL;
}

static struct backend *router_balance(struct worker *w, struct backend **cand, size_t n, int policy)
{
    struct backend *best = NULL;
    int64_t total = 0;

    if (n == 1) {
        return cand[0];
    }
    switch (policy) {
    case BALANCE_ROUND_ROBIN:
        return cand[w->rr++ % n];
    case BALANCE_WEIGHTED:
        /* Smooth weighted round robin: everyone gains its weight, the
         * richest is chosen and pays the total. */
        for (size_t i = 0; i < n; i++) {
            cand[i]->wrr += cand[i]->weight;
            total += cand[i]->weight;
            if (best == NULL || cand[i]->wrr > best->wrr) {
                best = cand[i];
            }
        }
        best->wrr -= total;
        return best;
    default: {
        /* Least outstanding requests; ties rotate. */
        size_t start = w->rr++ % n;
        for (size_t k = 0; k < n; k++) {
            struct backend *be = cand[(start + k) % n];
            if (best == NULL || be->inflight < best->inflight) {
                best = be;
            }
        }
        return best;
    }
    }
}

struct backend *router_pick(struct client *c, struct req *r)
{
    const struct config *cfg = c->w->px->cfg;
    struct worker *w = c->w;
    struct backend *cand[ROUTER_CANDIDATES], *zoned[ROUTER_CANDIDATES];
    size_t n = 0, nz = 0;
    uint64_t need = 0;
    int mode = c->listener != NULL ? c->listener->read_from : cfg->read_from;
    bool ryw_blocked = false;

    if (mode == READ_FROM_MASTER || !cmd_is_read(r->ci) || (r->flags & REQ_MASTER_ONLY) ||
        w->nreplicas == 0) {
        if (cmd_is_read(r->ci)) {
            w->stats.reads_master++;
        }
        return mode == READ_FROM_REPLICAS && cmd_is_read(r->ci) && !(r->flags & REQ_MASTER_ONLY)
                   ? NULL
                   : router_master(c);
    }
    if (cfg->read_your_writes) {
        need = offsets_required(c);
    }
    for (size_t i = 0; i < w->nreplicas && n < ROUTER_CANDIDATES; i++) {
        struct backend *be = w->replicas[i];
        if (!be->healthy || !backend_usable(be)) {
            continue;
        }
        if (need > 0 && be->offset < need) {
            ryw_blocked = true;
            continue;
        }
        cand[n++] = be;
        if (cfg->zone != NULL && strcmp(be->zone, cfg->zone) == 0) {
            zoned[nz++] = be;
        }
    }
    if (n == 0) {
        if (ryw_blocked) {
            w->stats.ryw_to_master++;
        }
        if (mode == READ_FROM_REPLICAS) {
            return NULL; /* wait for a replica (hold-timeout bounds it) */
        }
        w->stats.reads_master++;
        return router_master(c);
    }
    w->stats.reads_replicas++;
    /* With requests in flight, stay on their replica: another one would have
     * to wait for them (a client's commands run in order), which would turn
     * a pipeline into one request at a time. */
    if (c->inflight > 0 && c->last != NULL && !c->last->dedicated) {
        for (size_t i = 0; i < n; i++) {
            if (cand[i] == c->last->be) {
                return cand[i];
            }
        }
    }
    return nz > 0 ? router_balance(w, zoned, nz, cfg->balance)
                  : router_balance(w, cand, n, cfg->balance);
}
