/*
 * probe.c - confirming what the Sentinels say with ROLE on the instances.
 *
 * No address becomes the master before ROLE on it says "master", and a
 * replica is used only when ROLE says it replicates from that master with its
 * link up ("connected"). If ROLE on the master we are using contradicts the
 * Sentinels, writes are put on hold: a write must never reach a node that the
 * Sentinels and ROLE do not both agree is the master.
 */
#include <stdlib.h>
#include <string.h>

#include "conf/config.h"
#include "lib/log.h"
#include "lib/topology.h"
#include "sentinel/engine_int.h"

#define PROBE_INST_IDLE 120.0 /* seconds before an unused instance link is dropped */

struct probe_arg {
    struct engine *e;
    uint64_t seq;
    long idx; /* -1: the candidate master, else index into e->cr */
    /* e->probe_args: a link freed at shutdown drops its callbacks */
    struct probe_arg *prev, *next;
};

static void probe_arg_free(struct engine *e, struct probe_arg *a)
{
    if (a->prev != NULL) {
        a->prev->next = a->next;
    } else {
        e->probe_args = a->next;
    }
    if (a->next != NULL) {
        a->next->prev = a->prev;
    }
    free(a);
}

static struct link *probe_link(struct engine *e, const struct addr *a)
{
    struct engine_inst *in;
    struct link_options o;
    char name[ADDR_TEXT_MAX + 16], text[ADDR_TEXT_MAX];

    for (in = e->insts; in != NULL; in = in->next) {
        if (addr_same(&in->addr, a)) {
            in->last_used = ev_now(e->loop);
            return in->link;
        }
    }
    in = calloc(1, sizeof(*in));
    if (in == NULL) {
        return NULL;
    }
    memset(&o, 0, sizeof(o));
    addr_format(a, text, sizeof(text));
    snprintf(name, sizeof(name), "instance %s", text);
    o.name = name;
    o.timeout = (double)e->cfg->sentinel_timeout_ms / 1000.0;
    o.username = e->cfg->backend_username;
    o.password = e->cfg->backend_password;
    o.tls = e->tls.servers;
    o.resolver = e->resolver;
    in->link = link_new(e->loop, a, &o);
    if (in->link == NULL) {
        free(in);
        return NULL;
    }
    in->addr = *a;
    in->last_used = ev_now(e->loop);
    in->next = e->insts;
    e->insts = in;
    return in->link;
}

/* Drop links to instances that no decision has needed for a while. */
static void probe_gc(struct engine *e)
{
    double now = ev_now(e->loop);
    struct engine_inst **pp = &e->insts;

    while (*pp != NULL) {
        struct engine_inst *in = *pp;
        if (now - in->last_used > PROBE_INST_IDLE && link_pending(in->link) == 0) {
            *pp = in->next;
            link_free(in->link);
            free(in);
            continue;
        }
        pp = &in->next;
    }
}

void probe_free_all(struct engine *e)
{
    while (e->insts != NULL) {
        struct engine_inst *in = e->insts;
        e->insts = in->next;
        link_free(in->link);
        free(in);
    }
    while (e->probe_args != NULL) {
        probe_arg_free(e, e->probe_args);
    }
    free(e->cr);
    e->cr = NULL;
    e->ncr = 0;
}

static bool probe_is(const redisReply *r, size_t i, const char *s)
{
    return i < r->elements &&
           (r->element[i]->type == REDIS_REPLY_STRING ||
            r->element[i]->type == REDIS_REPLY_STATUS) &&
           strcmp(r->element[i]->str, s) == 0;
}

static long long probe_int(const redisReply *r, size_t i)
{
    if (i >= r->elements) {
        return -1;
    }
    if (r->element[i]->type == REDIS_REPLY_INTEGER) {
        return r->element[i]->integer;
    }
    if (r->element[i]->type == REDIS_REPLY_STRING) {
        return strtoll(r->element[i]->str, NULL, 10);
    }
    return -1;
}

/* A replica's ROLE names m as its master: the same host text, or a name
 * that resolves to the same address ("localhost" for "127.0.0.1"). */
static bool probe_names_master(struct engine *e, const redisReply *r, const struct addr *m)
{
    struct addr a;
    char err[192];

    if (r->elements < 3 || r->element[1]->type != REDIS_REPLY_STRING ||
        probe_int(r, 2) != m->port) {
        return false;
    }
    if (strcmp(r->element[1]->str, m->host) == 0) {
        return true;
    }
    /* A name not resolved yet is not confirmed this round; its answer
     * starts another. */
    return addr_from_host_port(&a, r->element[1]->str, m->port, err, sizeof(err)) &&
           resolve_lookup(e->resolver, &a, err, sizeof(err)) == RESOLVE_OK && addr_same(&a, m);
}

/* ROLE of a replica: ["slave", master-host, master-port, state, offset]. */
static bool probe_replica_ok(struct engine *e, const redisReply *r, uint64_t *offset)
{
    const struct addr *m = &e->cand.master;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || !probe_is(r, 0, "slave")) {
        return false;
    }
    if (!probe_names_master(e, r, m) || !probe_is(r, 3, "connected")) {
        return false;
    }
    *offset = (uint64_t)(probe_int(r, 4) > 0 ? probe_int(r, 4) : 0);
    return true;
}

static void probe_apply_prefs(const struct config *cfg, struct topology_replica *rp)
{
    char text[ADDR_TEXT_MAX];

    rp->weight = 1;
    addr_format(&rp->addr, text, sizeof(text));
    for (size_t i = 0; i < cfg->nreplica_prefs; i++) {
        if (strcmp(cfg->replica_prefs[i].address, text) == 0) {
            rp->weight = cfg->replica_prefs[i].weight;
            if (cfg->replica_prefs[i].zone != NULL) {
                snprintf(rp->zone, sizeof(rp->zone), "%s", cfg->replica_prefs[i].zone);
            }
        }
    }
}

/* max-replica-lag: how far behind the master's offset a replica may be. */
static bool probe_lag_ok(const struct engine *e, const struct engine_cand *c)
{
    uint64_t max = e->cfg->max_replica_lag;

    return max == 0 || c->offset + max >= e->cand_offset;
}

static void probe_finish(struct engine *e)
{
    char m[ADDR_TEXT_MAX];
    struct topology *t;

    addr_format(&e->cand.master, m, sizeof(m));
    if (!e->cand_ok && !e->cand_answered && e->topo != NULL && e->topo->has_master &&
        addr_same(&e->topo->master, &e->cand.master)) {
        /* No answer is not a contradiction: a busy master (a long script, a
         * slow command) stays the master as long as the Sentinels say so;
         * holding or resetting its requests would only add errors. */
        char why[ADDR_TEXT_MAX + CTL_ERROR_MAX + 96];
        snprintf(why, sizeof(why), "ROLE on the master %s: %s", m, e->cand_error);
        if (strcmp(why, e->why) != 0) {
            log_info("%s; still using it while the Sentinels name it", why);
        }
        snprintf(e->why, sizeof(e->why), "%s", why); /* not a hold: the master stays */
    } else if (!e->cand_ok) {
        char why[ADDR_TEXT_MAX + CTL_ERROR_MAX + 96];
        snprintf(why, sizeof(why),
                 "ROLE on %s does not confirm it as master, though the Sentinels name it "
                 "(%s)",
                 m, e->cand_error[0] != '\0' ? e->cand_error : "it answered another role");
        if (e->topo != NULL && e->topo->has_master) {
            engine_hold(e, why);
        }
        engine_set_why(e, why);
    } else if (e->fenced) {
        /* The fence closed while ROLE was asked: only a majority opens it. */
    } else if (e->alarm_at > e->cand_round_at) {
        /* The Sentinels were asked before the alarm came (a round waiting
         * for a silent one): what they said then cannot settle it. */
        e->round_again = true;
    } else {
        if (e->topo != NULL && e->topo->has_master &&
            addr_same(&e->topo->master, &e->cand.master)) {
            e->switch_started = 0; /* no switch after all */
        }
        engine_alarm_settled(e, &e->cand.master);
        t = topology_new();
        t->has_master = true;
        t->master = e->cand.master;
        t->epoch = e->cand.epoch;
        t->master_offset = e->cand_offset;
        for (size_t i = 0; i < e->ncr; i++) {
            struct topology_replica rp;
            memset(&rp, 0, sizeof(rp));
            rp.addr = e->cr[i].addr;
            rp.healthy = e->cr[i].ok && e->cr[i].confirmed && probe_lag_ok(e, &e->cr[i]);
            rp.offset = e->cr[i].offset;
            probe_apply_prefs(e->cfg, &rp);
            if (!topology_add_replica(t, &rp)) {
                log_error("out of memory building the topology");
            }
        }
        engine_set_why(e, ""); /* confirmed, even if nothing changed */
        engine_publish(e, t, e->force_publish);
        e->force_publish = false;
    }
    probe_gc(e);
    if (e->round_again) {
        engine_round_soon(e);
    }
}

static void probe_role_cb(struct link *l, redisReply *r, void *arg)
{
    struct probe_arg *a = arg;
    struct engine *e = a->e;
    bool current = a->seq == e->confirm_seq;

    (void)l;
    if (current && a->idx < 0) {
        /* An error (BUSY with a script running, LOADING...) says nothing
         * about the role: it counts as no answer, not as a contradiction. */
        e->cand_answered = r != NULL && r->type != REDIS_REPLY_ERROR;
        snprintf(e->cand_error, sizeof(e->cand_error), "%s",
                 r != NULL && r->type == REDIS_REPLY_ERROR ? r->str
                 : r != NULL                               ? ""
                 : link_last_error(l)[0] != '\0'           ? link_last_error(l)
                                                           : "no answer within sentinel.timeout");
        e->cand_ok = r != NULL && r->type == REDIS_REPLY_ARRAY && probe_is(r, 0, "master");
        if (e->cand_ok) {
            e->cand_offset = (uint64_t)(probe_int(r, 1) > 0 ? probe_int(r, 1) : 0);
        }
    } else if (current && (size_t)a->idx < e->ncr) {
        struct engine_cand *c = &e->cr[a->idx];
        c->confirmed = probe_replica_ok(e, r, &c->offset);
    }
    probe_arg_free(e, a);
    if (current && --e->confirm_pending == 0) {
        probe_finish(e);
    }
}

static bool probe_send(struct engine *e, const struct addr *a, long idx)
{
    struct probe_arg *pa = malloc(sizeof(*pa));
    struct link *l = probe_link(e, a);

    if (pa == NULL || l == NULL) {
        free(pa);
        return false;
    }
    pa->e = e;
    pa->seq = e->confirm_seq;
    pa->idx = idx;
    pa->prev = NULL;
    pa->next = e->probe_args;
    if (pa->next != NULL) {
        pa->next->prev = pa;
    }
    e->probe_args = pa;
    if (!link_commandv(l, probe_role_cb, pa, "ROLE", NULL)) {
        probe_arg_free(e, pa);
        return false;
    }
    return true;
}

/* The replicas named by the Sentinels that agree with the decision. */
static void probe_collect(struct engine *e, const struct quorum_decision *d)
{
    size_t cap = 0;

    free(e->cr);
    e->cr = NULL;
    e->ncr = 0;
    for (struct engine_node *n = e->nodes; n != NULL; n = n->next) {
        if (n->report.ok && addr_same(&n->report.master, &d->master)) {
            cap += n->nreplicas;
        }
    }
    if (cap == 0 || (e->cr = calloc(cap, sizeof(*e->cr))) == NULL) {
        return;
    }
    for (struct engine_node *n = e->nodes; n != NULL; n = n->next) {
        if (!n->report.ok || !addr_same(&n->report.master, &d->master)) {
            continue;
        }
        for (size_t i = 0; i < n->nreplicas; i++) {
            size_t k = 0;
            while (k < e->ncr && !addr_same(&e->cr[k].addr, &n->replicas[i].addr)) {
                k++;
            }
            if (k == e->ncr) {
                e->cr[k].addr = n->replicas[i].addr;
                e->cr[k].ok = true;
                e->ncr++;
            }
            /* Unhealthy for one Sentinel that can see it: not used. */
            e->cr[k].ok = e->cr[k].ok && n->replicas[i].ok;
        }
    }
}

void probe_confirm(struct engine *e, const struct quorum_decision *d)
{
    e->cand_round_at = e->round_at;
    e->confirm_seq++;
    e->cand = *d;
    e->cand_ok = false;
    e->cand_answered = false;
    e->cand_offset = 0;
    probe_collect(e, d);
    e->confirm_pending = 1;
    for (size_t i = 0; i < e->ncr; i++) {
        if (e->cr[i].ok && probe_send(e, &e->cr[i].addr, (long)i)) {
            e->confirm_pending++;
        }
    }
    if (!probe_send(e, &d->master, -1)) {
        e->confirm_pending--;
        if (e->confirm_pending == 0) {
            probe_finish(e);
        }
    }
}
