/*
 * acks.c - ack-after-replicas: write replies kept until replicas processed
 * the writes (see acks.h).
 */
#include "proxy/acks.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "conf/config.h"
#include "lib/log.h"
#include "proxy/backend.h"
#include "proxy/client.h"
#include "proxy/commands.h"
#include "proxy/offsets.h"
#include "proxy/req.h"
#include "proxy/worker.h"

bool acks_pending(const struct worker *w)
{
    return w->acking != NULL;
}

static void acks_link(struct client *c)
{
    struct worker *w = c->w;

    if (c->flags & CL_ACKING) {
        return;
    }
    c->flags |= CL_ACKING;
    c->aprev = NULL;
    c->anext = w->acking;
    if (w->acking != NULL) {
        w->acking->aprev = c;
    }
    w->acking = c;
}

void acks_forget(struct client *c)
{
    struct worker *w = c->w;

    if (!(c->flags & CL_ACKING)) {
        return;
    }
    c->flags &= ~CL_ACKING;
    if (c->aprev != NULL) {
        c->aprev->anext = c->anext;
    } else {
        w->acking = c->anext;
    }
    if (c->anext != NULL) {
        c->anext->aprev = c->aprev;
    }
    c->aprev = c->anext = NULL;
    if (w->acking == NULL && !(w->replica_reads && w->nreplicas > 0)) {
        ev_timer_stop(w->loop, &w->probe); /* offsets.c asks replicas no more */
    }
}

/* Replace r's reply with the "outcome unknown" error (r is done). */
static void acks_error(struct worker *w, struct req *r, const char *why)
{
    WORKER_COUNT(w, acks_failed, 1);
    WORKER_COUNT(w, unknown, 1);
    req_reply_errorf(&w->reqs, r,
                     "ERR sentinel-proxy: %s; the command was executed on the master but may be "
                     "lost in a failover",
                     why);
}

/* Whether r's reply says something was written that replicas must have:
 * writes, EXEC, scripts and functions, and commands the proxy does not
 * know; not errors, reads, pub/sub, the +QUEUED of a transaction, or
 * commands that change nothing replicated (WAIT, INFO, CLIENT...). */
static bool acks_wrote(const struct client *c, const struct req *r)
{
    const struct cmd_info *ci = r->ci;

    if (r->flags & (REQ_ERROR | REQ_INTERNAL | REQ_PUSH | REQ_NOREPLY | REQ_PROXY_ERROR)) {
        return false;
    }
    if (ci == NULL || ci->id == CMD_EXEC) {
        return true;
    }
    if (c->sess.multi || (ci->flags & (CMDF_READONLY | CMDF_PUBSUB))) {
        return false;
    }
    return (ci->flags & CMDF_WRITE) || strncmp(ci->name, "eval", 4) == 0 ||
           strncmp(ci->name, "fcall", 5) == 0;
}

bool acks_hold(struct client *c, struct req *r, const struct backend *from)
{
    struct worker *w = c->w;

    if (w->cfg->ack_after_replicas <= 0 || r->dest != REQ_DEST_MASTER || !acks_wrote(c, r)) {
        return false;
    }
    WORKER_COUNT(w, acks_waited, 1);
    if (from == NULL || from != w->master) {
        /* Answered by a master being replaced: its probes say nothing of
         * the new master's stream, and a switch may drop what it had. */
        acks_error(w, r, "the master was being replaced when the write was answered");
        return false;
    }
    r->flags = (r->flags & ~REQ_DONE) | REQ_ACK_WAIT;
    r->need = UINT64_MAX;
    r->since = ev_now(w->loop); /* hold-timeout counts from the reply (a BLPOP may block long) */
    c->nacks++;
    acks_link(c);
    if (r->probe == 0) {
        /* Sent on a dedicated connection (or before the setting was on):
         * any master probe sent from now on reports an offset past it. */
        r->flags |= REQ_ACK_AFTER;
        r->probe = w->ofs.probe_seq;
        w->ofs.probe_wanted = true;
        offsets_probe_master(w);
    }
    if (!ev_is_active(&w->probe)) {
        ev_timer_start(w->loop, &w->probe); /* offsets_tick: probes kept going */
    }
    return true;
}

/* The master offset r must reach on replicas: false while not known yet. */
static bool acks_offset(struct worker *w, struct req *r)
{
    uint64_t offset;

    if (r->need != UINT64_MAX) {
        return true;
    }
    if (!(r->flags & REQ_ACK_AFTER)) {
        switch (offsets_probe_result(w, r->probe, &offset)) {
        case PROBE_DONE:
            r->need = offset;
            return true;
        case PROBE_PENDING:
            return false;
        default:
            /* Its probe was lost with its connection (the write had been
             * answered, so executed): a later probe tells instead. */
            r->flags |= REQ_ACK_AFTER;
            r->probe = w->ofs.probe_seq;
            break;
        }
    }
    if (w->ofs.probe_done_max > r->probe) {
        r->need = w->ofs.master_offset;
        return true;
    }
    w->ofs.probe_wanted = true;
    return false;
}

/* Replicas of the current topology seen to have processed offset. */
static uint32_t acks_copies(const struct worker *w, uint64_t offset)
{
    uint32_t n = 0;

    for (size_t i = 0; i < w->nreplicas; i++) {
        n += w->replicas[i]->ofs.offset >= offset;
    }
    return n;
}

static void acks_release(struct client *c, struct req *r)
{
    c->backlog -= r->out.bytes;
    r->flags = (r->flags & ~(REQ_ACK_WAIT | REQ_ACK_AFTER)) | REQ_DONE;
    c->nacks--;
    client_reply_released(c, r);
}

static void acks_fail(struct client *c, struct req *r, const char *why)
{
    c->backlog -= r->out.bytes;
    r->flags &= ~(REQ_ACK_WAIT | REQ_ACK_AFTER);
    c->nacks--;
    acks_error(c->w, r, why);
    client_reply_released(c, r);
}

/* Release c's writes that are confirmed now, in order; the offset the first
 * one still waiting needs (0: none, or not known yet). */
static uint64_t acks_release_client(struct client *c, uint32_t want)
{
    struct worker *w = c->w;

    for (struct req *r = c->head; r != NULL && c->nacks > 0; r = r->cnext) {
        if (!(r->flags & REQ_ACK_WAIT)) {
            continue;
        }
        if (!acks_offset(w, r)) {
            return 0;
        }
        if (acks_copies(w, r->need) < want) {
            return r->need;
        }
        acks_release(c, r);
    }
    return 0;
}

void acks_check(struct worker *w)
{
    uint32_t want = (uint32_t)w->cfg->ack_after_replicas;
    uint64_t behind = 0;
    struct client *c, *next;

    if (w->acking == NULL) {
        return;
    }
    for (c = w->acking; c != NULL; c = next) {
        uint64_t need;
        next = c->anext;
        if (want == 0) { /* turned off by a reload: what was kept goes */
            need = 0;
            for (struct req *r = c->head; r != NULL && c->nacks > 0; r = r->cnext) {
                if (r->flags & REQ_ACK_WAIT) {
                    acks_release(c, r);
                }
            }
        } else {
            need = acks_release_client(c, want);
        }
        if (c->nacks == 0) {
            acks_forget(c);
        }
        if (need > behind) {
            behind = need;
        }
    }
    if (w->ofs.probe_wanted) {
        offsets_probe_master(w);
    }
    /* Replicas not seen at the offset waited for are asked again at once
     * for a new offset, or when they progressed: the wait is replication
     * plus a round trip, not a timer. One that does not progress is asked
     * again by the probe timer (offsets_tick), not in a tight loop. */
    for (size_t i = 0; behind > 0 && i < w->nreplicas; i++) {
        struct backend *be = w->replicas[i];
        if (be->ofs.offset < behind && !be->ofs.probe_pending && backend_usable(be) &&
            (behind > be->ofs.ack_need || be->ofs.offset > be->ofs.ack_seen)) {
            be->ofs.ack_need = behind;
            be->ofs.ack_seen = be->ofs.offset;
            (void)offsets_probe_replica(w, be);
        }
    }
}

void acks_tick(struct worker *w, double now)
{
    double limit = (double)w->cfg->hold_timeout_ms / 1000.0;
    char why[96];
    struct client *c, *next;

    snprintf(why, sizeof(why), "not confirmed by %d replica(s) within hold-timeout (%llu ms)",
             w->cfg->ack_after_replicas, (unsigned long long)w->cfg->hold_timeout_ms);
    for (c = w->acking; c != NULL; c = next) {
        next = c->anext;
        for (struct req *r = c->head; r != NULL && c->nacks > 0; r = r->cnext) {
            if ((r->flags & REQ_ACK_WAIT) && now - r->since >= limit) {
                acks_fail(c, r, why);
            }
        }
        if (c->nacks == 0) {
            acks_forget(c);
        }
    }
}

void acks_switch(struct worker *w, struct backend *master)
{
    struct client *c, *next;
    unsigned kept = 0, failed = 0;

    if (w->acking != NULL && w->ack_master_set && !addr_same(&w->ack_master, &master->addr)) {
        /* What the new master had processed as a replica survives on it. */
        for (c = w->acking; c != NULL; c = next) {
            next = c->anext;
            for (struct req *r = c->head; r != NULL && c->nacks > 0; r = r->cnext) {
                if (!(r->flags & REQ_ACK_WAIT)) {
                    continue;
                }
                if (acks_offset(w, r) && master->ofs.offset >= r->need) {
                    kept++;
                    acks_release(c, r);
                } else {
                    failed++;
                    acks_fail(c, r, "the master was replaced before replicas confirmed the write");
                }
            }
            acks_forget(c);
        }
        log_info("master %s: of the writes waiting for replicas, %u it had processed as a "
                 "replica are acknowledged, %u failed (outcome unknown)",
                 master->name, kept, failed);
    }
    w->ack_master = master->addr;
    w->ack_master_set = true;
}
