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

#include <stdlib.h>
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

#define ROUTER_CANDIDATES  64
#define ROUTER_SILENT      1.0 /* seconds a replica may leave a ROLE probe unanswered */
#define ROUTER_CURSOR_ARGS 3   /* HSCAN key cursor: the cursor is argument 2 */

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

/* A SCAN-family request continuing an iteration (cursor not "0"): the
 * cursor only means something to the server that returned it. */
static bool router_continues_scan(struct req *r)
{
    int at = r->ci->id == CMD_SCAN ? 1 : 2; /* SCAN cursor; HSCAN key cursor */
    const char *argv[ROUTER_CURSOR_ARGS];
    size_t argl[ROUTER_CURSOR_ARGS], len = 0;
    char *buf = req_flatten(r, 1u << 20, &len);
    int argc = buf != NULL ? req_split(buf, len, argv, argl, ROUTER_CURSOR_ARGS) : -1;
    bool more = argc > at && !(argl[at] == 1 && argv[at][0] == '0');

    free(buf);
    return more;
}

/* Whether a replica may serve reads now, as far as this worker can tell:
 * healthy for the control plane, reachable, answering its ROLE probes, and
 * within max-replica-lag of the master's offset this worker last saw. */
static bool router_replica_ok(const struct worker *w, const struct backend *be, uint64_t max_lag)
{
    if (!be->healthy || !backend_usable(be)) {
        return false;
    }
    if (be->probe_pending && ev_now(w->loop) - be->offset_at > ROUTER_SILENT) {
        return false;
    }
    return max_lag == 0 || be->offset == 0 || w->master_offset <= be->offset + max_lag;
}

static struct backend *router_find(struct worker *w, uint64_t id)
{
    for (struct backend *be = w->backends; be != NULL; be = be->next) {
        if (be->id == id) {
            return be;
        }
    }
    return NULL;
}

/* A continued SCAN goes back to where its cursor came from, whatever
 * read-your-writes says (an iteration reports keys present from its start
 * to its end, and its start saw the client's writes); the master when that
 * server can no longer be used. */
static struct backend *router_scan_home(struct client *c)
{
    struct worker *w = c->w;
    struct backend *be = c->scan_be != 0 ? router_find(w, c->scan_be) : NULL;

    if (be != NULL && be->role == BACKEND_REPLICA &&
        router_replica_ok(w, be, w->px->cfg->max_replica_lag)) {
        w->stats.reads_replicas++;
        return be;
    }
    w->stats.reads_master++;
    return router_master(c);
}

static struct backend *router_pick_read(struct client *c, struct req *r, int mode, uint64_t prefer);

struct backend *router_pick(struct client *c, struct req *r)
{
    int mode = c->listener != NULL ? c->listener->read_from : c->w->px->cfg->read_from;
    bool scan = r->ci != NULL && (r->ci->id == CMD_SCAN || r->ci->id == CMD_XSCAN);
    struct backend *be;

    if (scan && mode != READ_FROM_MASTER && !(r->flags & REQ_MASTER_ONLY) && c->w->nreplicas > 0 &&
        router_continues_scan(r)) {
        return router_scan_home(c);
    }
    be = router_pick_read(c, r, mode, scan ? c->scan_be : 0);
    if (scan && be != NULL) {
        c->scan_be = be->id;
    }
    return be;
}

/* The backend for a request that does not continue a SCAN; among the
 * replicas that qualify, the one with id prefer when it is one of them. */
static struct backend *router_pick_read(struct client *c, struct req *r, int mode, uint64_t prefer)
{
    const struct config *cfg = c->w->px->cfg;
    struct worker *w = c->w;
    struct backend *cand[ROUTER_CANDIDATES], *zoned[ROUTER_CANDIDATES];
    size_t n = 0, nz = 0;
    uint64_t need = 0;
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
        if (!router_replica_ok(w, be, cfg->max_replica_lag)) {
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
    for (size_t i = 0; prefer != 0 && i < n; i++) {
        if (cand[i]->id == prefer) {
            return cand[i];
        }
    }
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
