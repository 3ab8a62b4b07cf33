/*
 * offsets.c - ROLE probes and read-your-writes bookkeeping (see offsets.h).
 */
#include "proxy/offsets.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "conf/config.h"
#include "lib/log.h"
#include "proxy/acks.h"
#include "proxy/backend.h"
#include "proxy/bconn.h"
#include "proxy/client.h"
#include "proxy/commands.h"
#include "proxy/proxy.h"
#include "proxy/req.h"
#include "proxy/resp.h"
#include "proxy/worker.h"

#define OFFSETS_REPLICA_PERIOD 0.005 /* seconds between ROLE probes of one replica, at least */
#define OFFSETS_REPLY_MAX      65536 /* bytes of a ROLE reply looked at */
#define OFFSETS_CHECK_MISSES   8     /* checked reads that found a replica behind, in a row */
#define OFFSETS_ROLE_REPLY     128 /* bytes a replica's ROLE reply takes, about (backend_shared) */

bool offsets_init(struct worker *w)
{
    w->ofs.probes = calloc(OFFSETS_PROBES, sizeof(*w->ofs.probes));
    return w->ofs.probes != NULL;
}

void offsets_free(struct worker *w)
{
    free(w->ofs.probes);
    w->ofs.probes = NULL;
}

static struct offsets_probe *offsets_slot(struct worker *w, uint64_t seq)
{
    return &w->ofs.probes[seq & (OFFSETS_PROBES - 1)];
}

static bool offsets_is_write(const struct req *r)
{
    return r->client != NULL && !(r->flags & REQ_INTERNAL) && !cmd_is_read(r->ci);
}

static struct req *offsets_role_req(struct worker *w)
{
    static const char *const argv[] = {"ROLE"};
    static const size_t argl[] = {4};
    struct req *r = req_internal(&w->reqs, 1, argv, argl);

    if (r != NULL) {
        r->flags |= REQ_PROBE;
    }
    return r;
}

void offsets_before_flush(struct bconn *bc)
{
    struct worker *w = bc->w;
    bool need = w->ofs.probe_wanted;
    struct req *r, *probe, *start;
    uint64_t seq;

    /* Without reads on replicas there is nothing to wait for, unless write
     * replies wait for replicas (acks.c). */
    if ((w->cfg->ack_after_replicas == 0 &&
         (!w->cfg->read_your_writes || !w->replica_reads || w->nreplicas == 0)) ||
        bc->dedicated || bc->be == NULL || bc->be->role != BACKEND_MASTER ||
        w->ofs.probes == NULL) {
        return;
    }
    /* Requests are looked at once: from the one after the last looked at
     * (what waits in the connection's window was seen by earlier passes). */
    start = bc->probed != NULL ? bc->probed->bnext : bc->unsent;
    for (r = start; r != NULL && !need; r = r->bnext) {
        need = offsets_is_write(r) && r->probe == 0;
    }
    if (!need || (probe = offsets_role_req(w)) == NULL) {
        bc->probed = need ? bc->probed : bc->tail;
        return;
    }
    seq = ++w->ofs.probe_seq;
    for (r = start; r != NULL; r = r->bnext) {
        if (offsets_is_write(r) && r->probe == 0) {
            r->probe = seq;
        }
    }
    probe->probe = seq;
    *offsets_slot(w, seq) = (struct offsets_probe){seq, 0, PROBE_PENDING};
    w->ofs.probe_wanted = false;
    bconn_enqueue(bc, probe);
    bc->probed = probe;
}

bool offsets_probe_replica(struct worker *w, struct backend *be)
{
    struct bconn *bc = backend_shared(be, 0, 2, OFFSETS_ROLE_REPLY);
    struct req *r;

    if (bc == NULL || (r = offsets_role_req(w)) == NULL) {
        return false;
    }
    be->ofs.probe_pending = true;
    bconn_enqueue(bc, r);
    return true;
}

void offsets_probe_master(struct worker *w)
{
    if (w->master != NULL && backend_usable(w->master)) {
        struct bconn *mc = backend_shared(w->master, 0, 2, 0);
        if (mc != NULL && mc->state == BC_READY) {
            worker_mark_bconn(w, mc); /* its flush adds the probe */
        }
    }
}

void offsets_tick(struct worker *w, double now)
{
    if (w->ofs.probe_wanted) {
        offsets_probe_master(w);
    }
    for (size_t i = 0; i < w->nreplicas; i++) {
        struct backend *be = w->replicas[i];
        if (be->ofs.probe_pending || now - be->ofs.at < OFFSETS_REPLICA_PERIOD ||
            !backend_usable(be)) {
            continue;
        }
        (void)offsets_probe_replica(w, be);
    }
}

bool offsets_demand(struct worker *w, struct backend *be, uint64_t need)
{
    double now = ev_now(w->loop);

    if (need == UINT64_MAX) {
        if (w->ofs.probe_wanted) {
            offsets_probe_master(w);
        }
        return false; /* or the master's probe is in flight: its reply wakes the read */
    }
    /* A read that finds the replica behind too often is not sent there
     * again until the periodic probes have had time to see it catch up:
     * a replica far behind is not asked for every waiting read. */
    return be->ofs.offset < need && backend_usable(be) &&
           (be->ofs.misses < OFFSETS_CHECK_MISSES ||
            now - be->ofs.missed_at >= OFFSETS_REPLICA_PERIOD);
}

bool offsets_send_check(struct bconn *bc)
{
    struct req *r = offsets_role_req(bc->w);

    if (r == NULL) {
        return false;
    }
    r->flags |= REQ_CHECK_ROLE;
    bconn_enqueue(bc, r);
    return true;
}

bool offsets_check_read(struct bconn *bc, struct req *r)
{
    struct offsets_replica *o = &bc->be->ofs;

    if (bc->role_offset >= r->need) {
        o->misses = 0;
        return true;
    }
    if (o->misses < OFFSETS_CHECK_MISSES) {
        o->misses++;
    }
    o->missed_at = ev_now(bc->w->loop);
    WORKER_COUNT(bc->w, ryw_again, 1);
    return false;
}

/* The replica backend at host:port, if this worker knows it. */
static struct backend *offsets_replica(struct worker *w, const char *host, size_t hlen,
                                       int64_t port)
{
    for (size_t i = 0; i < w->nreplicas; i++) {
        struct backend *be = w->replicas[i];
        if (be->addr.port == port && strlen(be->addr.host) == hlen &&
            memcmp(be->addr.host, host, hlen) == 0) {
            return be;
        }
    }
    return NULL;
}

/* ["master", offset, [[ip, port, ack-offset], ...]] */
static void offsets_master_role(struct worker *w, struct resp_reader *rd, struct req *r)
{
    struct resp_value v, ip, port, off;
    int64_t offset, n;

    if (!resp_next(rd, &v) || !resp_int(&v, &offset) || offset < 0) {
        return;
    }
    if (r->probe != 0) {
        struct offsets_probe *slot = offsets_slot(w, r->probe);
        if (slot->seq == r->probe) {
            slot->offset = (uint64_t)offset;
            slot->state = PROBE_DONE;
        }
        if (r->probe > w->ofs.probe_done_max) {
            w->ofs.probe_done_max = r->probe;
        }
    }
    if ((uint64_t)offset > w->ofs.master_offset) {
        w->ofs.master_offset = (uint64_t)offset;
    }
    if (!resp_next(rd, &v) || v.type != '*') {
        return;
    }
    for (n = v.n; n > 0; n--) {
        struct backend *be;
        int64_t p, o;
        if (!resp_next(rd, &v) || v.type != '*' || v.n != 3 || !resp_next(rd, &ip) ||
            !resp_next(rd, &port) || !resp_next(rd, &off)) {
            return;
        }
        be = resp_int(&port, &p) && resp_int(&off, &o) ? offsets_replica(w, ip.s, ip.len, p) : NULL;
        /* An acknowledged offset is a lower bound of what it processed. */
        if (be != NULL && o > 0 && (uint64_t)o > be->ofs.offset) {
            be->ofs.offset = (uint64_t)o;
        }
    }
}

/* Whether a replica's ROLE names m as its master: the same port, and the
 * same host text or, for an address literal, the address m resolved to (a
 * host name that differs cannot be resolved here: it is given the benefit
 * of the doubt). */
static bool offsets_names_master(const struct resp_value *host, int64_t port, const struct addr *m)
{
    char text[INET6_ADDRSTRLEN];
    unsigned char bin[sizeof(struct in6_addr)];

    if (port != m->port) {
        return false;
    }
    if (host->len == strlen(m->host) && memcmp(host->s, m->host, host->len) == 0) {
        return true;
    }
    if (host->len >= sizeof(text)) {
        return true;
    }
    memcpy(text, host->s, host->len);
    text[host->len] = '\0';
    if (inet_pton(AF_INET, text, bin) == 1) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&m->sa;
        return m->family == AF_INET && memcmp(&sin->sin_addr, bin, 4) == 0;
    }
    if (inet_pton(AF_INET6, text, bin) == 1) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&m->sa;
        return m->family == AF_INET6 && memcmp(&sin6->sin6_addr, bin, 16) == 0;
    }
    return true;
}

/* ["slave", master-host, master-port, state, processed-offset], answered
 * on bc */
static void offsets_replica_role(struct bconn *bc, struct resp_reader *rd, double now)
{
    struct backend *be = bc->be;
    struct worker *w = bc->w;
    /* (While writes are held there is no master: the last one is meant.) */
    const struct addr *m = w->master != NULL   ? &w->master->addr
                           : w->ack_master_set ? &w->ack_master
                                               : NULL;
    struct resp_value host, port, state, v;
    int64_t offset, p;

    if (!resp_next(rd, &host) || !resp_next(rd, &port) || !resp_next(rd, &state) ||
        !resp_next(rd, &v) || !resp_int(&v, &offset) || offset < 0) {
        return;
    }
    be->ofs.at = now;
    /* An offset counts only while the replica is connected to the current
     * master: one still attached to a former master (or resynchronising)
     * reports an offset of another history, which may be higher than the
     * new master's although it lacks its writes. */
    if (m == NULL || !resp_is(&state, "connected") || !resp_int(&port, &p) ||
        !offsets_names_master(&host, p, m)) {
        bc->role_offset = 0;
        be->ofs.offset = 0;
        return;
    }
    bc->role_offset = (uint64_t)offset;
    be->ofs.offset = (uint64_t)offset;
}

void offsets_probe_reply(struct bconn *bc, struct req *r)
{
    struct worker *w = bc->w;
    struct backend *be = bc->be;
    struct resp_reader rd;
    struct resp_value v;
    size_t len = 0;
    char *buf;

    if (be != NULL && r->probe == 0 && !(r->flags & REQ_CHECK_ROLE)) {
        be->ofs.probe_pending = false;
        be->ofs.at = ev_now(w->loop);
    }
    /* Reads checked on this connection from now on are judged by this
     * ROLE alone: one that gives no offset (an error, a replica in a full
     * resynchronisation reporting -1) passes none. */
    bc->role_offset = 0;
    buf = (r->flags & REQ_ERROR) ? NULL : req_flatten_out(r, OFFSETS_REPLY_MAX, &len);
    if (buf == NULL) {
        offsets_probe_lost(w, be, r);
        return;
    }
    resp_reader_init(&rd, buf, len);
    if (resp_next(&rd, &v) && v.type == '*' && resp_next(&rd, &v)) {
        if (resp_is(&v, "master") && be != NULL && be == w->master) {
            /* (A master being replaced speaks of another stream: its
             * offsets would be taken for the new master's.) */
            offsets_master_role(w, &rd, r);
        } else if (resp_is(&v, "slave") && be != NULL) {
            offsets_replica_role(bc, &rd, ev_now(w->loop));
        }
    }
    free(buf);
    if (r->probe != 0 && offsets_slot(w, r->probe)->seq == r->probe &&
        offsets_slot(w, r->probe)->state == PROBE_PENDING) {
        offsets_slot(w, r->probe)->state = PROBE_FAILED;
    }
    if (w->waiting != NULL) {
        worker_wake_later(w); /* reads waiting for a replica to catch up may go now */
    }
    acks_check(w);
}

enum offsets_probe_state offsets_probe_result(struct worker *w, uint64_t seq, uint64_t *offset)
{
    const struct offsets_probe *slot = offsets_slot(w, seq);

    if (slot->seq != seq || slot->state == PROBE_FREE) {
        return PROBE_FAILED; /* long forgotten */
    }
    *offset = slot->offset;
    return slot->state;
}

void offsets_probe_lost(struct worker *w, struct backend *be, struct req *r)
{
    if (r->probe != 0) {
        struct offsets_probe *slot = offsets_slot(w, r->probe);
        if (slot->seq == r->probe && slot->state == PROBE_PENDING) {
            slot->state = PROBE_FAILED;
        }
    } else if (be != NULL && !(r->flags & REQ_CHECK_ROLE)) {
        be->ofs.probe_pending = false;
    }
}

void offsets_after_reply(struct client *c, struct req *r, bool dedicated)
{
    if (cmd_is_read(r->ci) || (r->flags & (REQ_INTERNAL | REQ_PUSH))) {
        return;
    }
    /* Settle what is recorded before it is replaced: a finished probe's
     * offset is kept, and offsets measured on another master are voided. */
    (void)offsets_required(c);
    if (!dedicated && r->probe != 0) {
        c->ofs.probe = r->probe; /* later probes report higher offsets */
        c->ofs.after = 0;
        return;
    }
    /* A write with no probe of its own (a dedicated connection): any probe
     * created from now on was sent after it was executed. */
    c->ofs.probe = 0;
    c->ofs.after = c->w->ofs.probe_seq;
    c->w->ofs.probe_wanted = true;
}

uint64_t offsets_required(struct client *c)
{
    struct worker *w = c->w;

    if (c->ofs.gen != w->ofs.master_gen) {
        /* Its last write was measured on another master: wait for a probe
         * of the new one sent from now on. */
        if (c->ofs.offset != 0 || c->ofs.probe != 0 || c->ofs.after != 0) {
            c->ofs.offset = 0;
            c->ofs.probe = 0;
            c->ofs.after = w->ofs.probe_seq;
            w->ofs.probe_wanted = true;
        }
        c->ofs.gen = w->ofs.master_gen;
    }
    if (c->ofs.probe != 0) {
        struct offsets_probe *slot = offsets_slot(w, c->ofs.probe);
        if (slot->seq == c->ofs.probe && slot->state == PROBE_PENDING) {
            return UINT64_MAX;
        }
        if (slot->seq == c->ofs.probe && slot->state == PROBE_DONE) {
            if (slot->offset > c->ofs.offset) {
                c->ofs.offset = slot->offset;
            }
            c->ofs.probe = 0;
        } else {
            /* Lost (or long forgotten): fall back on a newer probe. */
            c->ofs.after = w->ofs.probe_seq;
            c->ofs.probe = 0;
            w->ofs.probe_wanted = true;
        }
    }
    if (c->ofs.after != 0) {
        if (w->ofs.probe_done_max <= c->ofs.after) {
            w->ofs.probe_wanted = true;
            return UINT64_MAX;
        }
        if (w->ofs.master_offset > c->ofs.offset) {
            c->ofs.offset = w->ofs.master_offset;
        }
        c->ofs.after = 0;
    }
    return c->ofs.offset;
}
