/*
 * engine.c - the Sentinel engine: polling rounds, decisions, confirmation by
 * ROLE, and publication of topology snapshots.
 *
 * A round asks every known Sentinel, in parallel and each with its own
 * timeout, for SENTINEL MASTER, SENTINEL REPLICAS and SENTINEL SENTINELS.
 * When every Sentinel has answered or timed out, quorum.c decides the master;
 * ROLE is then asked of the candidate master and of every replica the
 * Sentinels consider healthy, and only what ROLE confirms is published.
 * Events from the Sentinels' pub/sub channels (events.c) start a round at
 * once and can put writes on hold before a failover completes; polling
 * continues regardless, because pub/sub messages can be lost.
 */
#include "sentinel/engine.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/config.h"
#include "lib/log.h"
#include "lib/topology.h"
#include "sentinel/engine_int.h"
#include "sentinel/quorum.h"

static void engine_poll_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void engine_soon_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void engine_kick_cb(struct ev_loop *loop, ev_async *a, int revents);
static void engine_decide(struct engine *e);
static void engine_restate(struct engine *e);

/* ---- reply helpers -------------------------------------------------------- */

const char *engine_field(const redisReply *r, const char *key)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        return NULL;
    }
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && strcmp(k->str, key) == 0 &&
            (v->type == REDIS_REPLY_STRING || v->type == REDIS_REPLY_STATUS)) {
            return v->str;
        }
    }
    return NULL;
}

/* A decimal without sign or other characters that fits in 64 bits. */
static bool engine_parse_u64(const char *s, uint64_t *v)
{
    uint64_t n = 0;

    if (s == NULL || *s == '\0') {
        return false;
    }
    for (; *s != '\0'; s++) {
        unsigned d = (unsigned)(unsigned char)*s - '0';
        if (d > 9 || n > (UINT64_MAX - d) / 10) {
            return false;
        }
        n = n * 10 + d;
    }
    *v = n;
    return true;
}

int engine_field_addr(struct engine *e, const redisReply *r, const char *ipkey, const char *portkey,
                      struct addr *a, char *err, size_t errlen)
{
    const char *ip = engine_field(r, ipkey), *port = engine_field(r, portkey);
    char *end;
    long p;

    if (ip == NULL || port == NULL) {
        return ENGINE_ADDR_BAD;
    }
    p = strtol(port, &end, 10);
    if (*end != '\0' || p <= 0 || p > 65535 || !addr_from_host_port(a, ip, (int)p, err, errlen)) {
        return ENGINE_ADDR_BAD;
    }
    /* Never blocks: a name not known yet is skipped this round, and the
     * resolver's answer starts another (engine_resolved_cb). */
    return (int)resolve_lookup(e->resolver, a, err, errlen);
}

/* ---- Sentinel nodes ---------------------------------------------------------- */

static struct engine_node *engine_find_node(struct engine *e, const struct addr *a)
{
    for (struct engine_node *n = e->nodes; n != NULL; n = n->next) {
        if (addr_same(&n->addr, a)) {
            return n;
        }
    }
    return NULL;
}

static struct engine_node *engine_add_node(struct engine *e, const struct addr *a, bool configured)
{
    struct engine_node *n = calloc(1, sizeof(*n));
    struct link_options o;
    char name[ADDR_TEXT_MAX + 16];

    if (n == NULL) {
        return NULL;
    }
    n->e = e;
    n->addr = *a;
    addr_format(a, n->name, sizeof(n->name));
    n->configured = configured;
    n->added = ev_now(e->loop);
    n->last_listed = n->added;
    memset(&o, 0, sizeof(o));
    o.timeout = (double)e->cfg->sentinel_timeout_ms / 1000.0;
    o.username = e->cfg->sentinel_username;
    o.password = e->cfg->sentinel_password;
    o.tls = e->tls.sentinels;
    o.resolver = e->resolver;
    snprintf(name, sizeof(name), "sentinel %s", n->name);
    o.name = name;
    n->cmd = link_new(e->loop, a, &o);
    o.on_push = events_on_push;
    o.udata = n;
    n->sub = link_new(e->loop, a, &o);
    if (n->cmd == NULL || n->sub == NULL) {
        link_free(n->cmd);
        link_free(n->sub);
        free(n);
        return NULL;
    }
    n->next = e->nodes;
    e->nodes = n;
    if (!configured) {
        log_info("learnt Sentinel %s from SENTINEL SENTINELS", n->name);
    }
    return n;
}

static void engine_node_clear_round(struct engine_node *n)
{
    free(n->replicas);
    n->replicas = NULL;
    n->nreplicas = 0;
    free(n->peers);
    n->peers = NULL;
    n->npeers = 0;
    memset(&n->report, 0, sizeof(n->report));
    n->unresolved[0] = '\0';
}

static void engine_free_node(struct engine_node *n)
{
    if (n->e->alarm == n) {
        n->e->alarm = NULL;
    }
    if (n->round == n->e->round && n->pending > 0 && n->e->round_pending > 0) {
        n->e->round_pending--; /* forgotten while asked: the round does not wait for it */
    }
    engine_node_clear_round(n);
    link_free(n->cmd);
    link_free(n->sub);
    free(n);
}

/* ---- one round ------------------------------------------------------------------ */

/* A majority of the known Sentinels have answered this round, all naming
 * the same master at the same epoch, none flagging it down or failing over:
 * what the others say later cannot change the decision (a late answer that
 * differs starts another round at once). */
static bool engine_early(const struct engine *e)
{
    const struct engine_node *first = NULL;
    size_t known = 0, agree = 0;

    /* Not while a switch is signalled (writes held on an event): the
     * Sentinel leading a failover may be the one still to answer, and only
     * it flags the failover in progress; releasing writes to the old
     * master meanwhile would lose them. */
    if (e->switch_started > 0 || e->alarm != NULL || e->fenced) {
        return false;
    }
    for (const struct engine_node *n = e->nodes; n != NULL; n = n->next) {
        known++;
        if (n->round != e->round || n->pending > 0 || !n->report.ok) {
            continue;
        }
        if (n->report.odown || n->report.failover) {
            return false;
        }
        if (first != NULL && (!addr_same(&first->report.master, &n->report.master) ||
                              first->report.epoch != n->report.epoch)) {
            return false;
        }
        first = first != NULL ? first : n;
        agree++;
    }
    return agree * 2 > known;
}

/* An answer that differs from the decision in force. */
static bool engine_news(const struct engine *e, const struct engine_node *n)
{
    return n->report.ok &&
           (!addr_same(&n->report.master, &e->last.master) || n->report.epoch != e->last.epoch ||
            n->report.odown || n->report.failover);
}

static void engine_node_done(struct engine_node *n)
{
    struct engine *e = n->e;

    if (--n->pending > 0) {
        return;
    }
    if (n->report.ok) {
        n->last_ok = ev_now(e->loop);
    }
    if (n->round != e->round) {
        /* The straggler of an earlier round: its answer counts now if it
         * brings news and nothing else will decide with it (a round still
         * undecided will: its report is not cleared, it was not asked). */
        if (engine_news(e, n) && (e->round_pending == 0 || e->round_decided)) {
            engine_decide(e);
        }
        return;
    }
    if (--e->round_pending == 0) {
        if (!e->round_decided || engine_news(e, n)) {
            engine_decide(e);
            return;
        }
        engine_restate(e);
        if (e->round_again) {
            engine_round_soon(e);
        }
    } else if (e->round_decided) {
        if (engine_news(e, n)) {
            engine_decide(e); /* a higher epoch, an alarm: decided again, with it */
        }
    } else if (engine_early(e)) {
        /* One hung Sentinel does not hold the decision for sentinel.timeout. */
        e->round_decided = true;
        engine_decide(e);
    }
}

static void engine_master_cb(struct link *l, redisReply *r, void *arg)
{
    struct engine_node *n = arg;
    const char *flags, *epoch;
    char why[sizeof(n->unresolved)];
    int st = ENGINE_ADDR_BAD;

    (void)l;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY &&
        (st = engine_field_addr(n->e, r, "ip", "port", &n->report.master, why, sizeof(why))) ==
            RESOLVE_OK) {
        flags = engine_field(r, "flags");
        epoch = engine_field(r, "config-epoch");
        n->report.ok = true;
        n->report.epoch = 0;
        if (epoch != NULL && !engine_parse_u64(epoch, &n->report.epoch)) {
            /* A wrong epoch would outvote every honest Sentinel. */
            log_warn("%s: SENTINEL MASTER %s: ignored, config-epoch '%.32s' is not a number",
                     link_name(l), n->e->cfg->master_name, epoch);
            n->report.ok = false;
        }
        if (flags != NULL) {
            n->report.odown = quorum_has_flag(flags, "o_down");
            n->report.sdown = quorum_has_flag(flags, "s_down");
            n->report.failover = quorum_has_flag(flags, "failover_in_progress");
        }
    } else if (st == RESOLVE_PENDING || st == RESOLVE_FAILED) {
        /* Not counted this round; the resolver logs failures, once each. */
        snprintf(n->unresolved, sizeof(n->unresolved), "%s", why);
    } else if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        if (strncmp(n->answer, r->str, sizeof(n->answer) - 1) != 0) {
            log_warn("%s: SENTINEL MASTER %s: %s", link_name(l), n->e->cfg->master_name, r->str);
        }
        snprintf(n->answer, sizeof(n->answer), "%s", r->str);
    }
    if (n->report.ok) {
        n->answer[0] = '\0';
    }
    engine_node_done(n);
}

static void engine_replicas_cb(struct link *l, redisReply *r, void *arg)
{
    struct engine_node *n = arg;

    (void)l;
    free(n->replicas);
    n->replicas = NULL;
    n->nreplicas = 0;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        size_t max = r->elements < ENGINE_MAX_REPLICAS ? r->elements : ENGINE_MAX_REPLICAS;
        if (r->elements > max) {
            log_warn("%s: SENTINEL REPLICAS %s: %zu replicas, only the first %zu are used",
                     link_name(l), n->e->cfg->master_name, r->elements, max);
        }
        n->replicas = calloc(max, sizeof(*n->replicas));
        for (size_t i = 0; n->replicas != NULL && i < max; i++) {
            struct engine_replica *rp = &n->replicas[n->nreplicas];
            const char *flags = engine_field(r->element[i], "flags");
            const char *link = engine_field(r->element[i], "master-link-status");
            const char *off = engine_field(r->element[i], "slave-repl-offset");
            char why[192];
            /* A replica whose name is not resolved yet is listed from the
             * round after its answer. */
            if (engine_field_addr(n->e, r->element[i], "ip", "port", &rp->addr, why, sizeof(why)) !=
                RESOLVE_OK) {
                continue;
            }
            rp->ok = quorum_replica_ok(flags, link);
            if (off == NULL || !engine_parse_u64(off, &rp->offset)) {
                rp->offset = 0;
            }
            n->nreplicas++;
        }
    }
    engine_node_done(n);
}

static void engine_sentinels_cb(struct link *l, redisReply *r, void *arg)
{
    struct engine_node *n = arg;

    (void)l;
    free(n->peers);
    n->peers = NULL;
    n->npeers = 0;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        size_t max = r->elements < ENGINE_MAX_PEERS ? r->elements : ENGINE_MAX_PEERS;
        n->peers = calloc(max, sizeof(*n->peers));
        for (size_t i = 0; n->peers != NULL && i < r->elements && n->npeers < max; i++) {
            /* Sentinels keep listing peers that died (flagged s_down or
             * disconnected): such a listing must not keep them known. */
            const char *flags = engine_field(r->element[i], "flags");
            char why[192];
            if (flags != NULL &&
                (quorum_has_flag(flags, "s_down") || quorum_has_flag(flags, "o_down") ||
                 quorum_has_flag(flags, "disconnected"))) {
                continue;
            }
            if (engine_field_addr(n->e, r->element[i], "ip", "port", &n->peers[n->npeers], why,
                                  sizeof(why)) == RESOLVE_OK) {
                n->npeers++;
            }
        }
    }
    engine_node_done(n);
}

void engine_round(struct engine *e)
{
    const char *name = e->cfg->master_name;

    if ((e->round_pending > 0 && !e->round_decided) || e->confirm_pending > 0) {
        e->round_again = true;
        return;
    }
    e->round++;
    e->round_at = ev_now(e->loop);
    e->round_again = false;
    e->round_decided = false;
    e->round_pending = 0; /* those of a round decided early are stragglers now */
    for (struct engine_node *n = e->nodes; n != NULL; n = n->next) {
        char err[192];
        /* A Sentinel named by host is known by its current address (peers
         * list it by IP), and its name stays fresh in the cache for its
         * links' next connections. */
        (void)resolve_lookup(e->resolver, &n->addr, err, sizeof(err));
        events_subscribe(n);
        if (n->pending > 0) {
            continue; /* still silent since an earlier round: not asked twice */
        }
        engine_node_clear_round(n);
        n->round = e->round;
        n->pending += link_commandv(n->cmd, engine_master_cb, n, "SENTINEL", "MASTER", name, NULL);
        n->pending +=
            link_commandv(n->cmd, engine_replicas_cb, n, "SENTINEL", "REPLICAS", name, NULL);
        n->pending +=
            link_commandv(n->cmd, engine_sentinels_cb, n, "SENTINEL", "SENTINELS", name, NULL);
        if (n->pending > 0) {
            e->round_pending++;
        }
    }
    if (e->round_pending == 0) {
        engine_decide(e);
    }
}

void engine_round_soon(struct engine *e)
{
    /* Also ahead of a round that a kick put off (engine_kick_cb). */
    if (ev_is_active(&e->soon)) {
        ev_timer_stop(e->loop, &e->soon);
    }
    ev_timer_set(&e->soon, 0.0, 0);
    ev_timer_start(e->loop, &e->soon);
}

/* ---- discovery ----------------------------------------------------------------- */

static void engine_discover(struct engine *e)
{
    double now = ev_now(e->loop);
    double forget = (double)e->cfg->sentinel_forget_ms / 1000.0;
    struct engine_node **pp;
    size_t known = 0;

    for (struct engine_node *n = e->nodes; n != NULL; n = n->next) {
        known++;
    }
    for (struct engine_node *n = e->nodes; n != NULL; n = n->next) {
        for (size_t i = 0; i < n->npeers; i++) {
            struct engine_node *peer = engine_find_node(e, &n->peers[i]);
            if (peer == NULL && known < ENGINE_MAX_PEERS) {
                peer = engine_add_node(e, &n->peers[i], false);
                known += peer != NULL;
            }
            if (peer != NULL) {
                peer->last_listed = now;
            }
        }
    }
    /* A learnt Sentinel that stopped answering and that no other Sentinel
     * lists any more is forgotten; configured ones are kept for ever. */
    for (pp = &e->nodes; *pp != NULL;) {
        struct engine_node *n = *pp;
        double seen = n->last_ok > n->last_listed ? n->last_ok : n->last_listed;
        if (!n->configured && now - seen > forget) {
            log_info("forgetting Sentinel %s: not seen for %.0fs", n->name, now - seen);
            *pp = n->next;
            engine_free_node(n);
            continue;
        }
        pp = &n->next;
    }
}

/* ---- publishing ------------------------------------------------------------------- */

void engine_publish(struct engine *e, struct topology *t, bool force)
{
    char was[ADDR_TEXT_MAX] = "none", now_m[ADDR_TEXT_MAX] = "none";
    bool master_changed;

    if (e->topo != NULL && topology_same(e->topo, t) && !force) {
        topology_unref(t);
        return;
    }
    if (e->topo != NULL && e->topo->has_master) {
        addr_format(&e->topo->master, was, sizeof(was));
    }
    if (t->has_master) {
        addr_format(&t->master, now_m, sizeof(now_m));
    }
    master_changed = strcmp(was, now_m) != 0;
    t->version = ++e->version;
    if (t->has_master && e->pub_known && !addr_same(&e->pub_master, &t->master)) {
        e->failovers++;
        if (e->switch_started > 0) { /* measured from its first signal, when one came */
            e->last_switch = ev_now(e->loop) - e->switch_started;
        }
    }
    if (master_changed) {
        double ms = e->switch_started > 0 ? (ev_now(e->loop) - e->switch_started) * 1000 : -1;
        char kv[2 * ADDR_TEXT_MAX + 128], after[64] = "";
        if (t->has_master && ms >= 0) {
            t->switch_started = e->switch_started;
            e->switch_started = 0;
            snprintf(after, sizeof(after), "; %.0f ms after the first signal", ms);
        }
        snprintf(kv, sizeof(kv),
                 "version=%llu old_master=%s master=%s epoch=%llu replicas=%zu switch_ms=%.0f",
                 (unsigned long long)t->version, was, now_m, (unsigned long long)t->epoch,
                 t->nreplicas, t->has_master ? ms : -1);
        log_kv(LOG_INFO, __func__, kv,
               "topology v%llu: master %s -> %s (epoch %llu), %zu replica(s)%s",
               (unsigned long long)t->version, was, now_m, (unsigned long long)t->epoch,
               t->nreplicas, after);
    } else {
        size_t healthy = 0;
        for (size_t i = 0; i < t->nreplicas; i++) {
            healthy += t->replicas[i].healthy;
        }
        log_info("topology v%llu: master %s (epoch %llu), %zu of %zu replica(s) healthy",
                 (unsigned long long)t->version, now_m, (unsigned long long)t->epoch, healthy,
                 t->nreplicas);
    }
    if (t->has_master) {
        e->pub_known = true;
        e->pub_master = t->master;
        e->pub_epoch = t->epoch;
        engine_set_why(e, "");
    }
    topology_unref(e->topo);
    e->topo = t;
    e->rx.publish(e->rx.ctx, t);
}

void engine_alarm_settled(struct engine *e, const struct addr *master)
{
    struct engine_node *n = e->alarm;
    double now = ev_now(e->loop);

    e->alarm = NULL;
    if (n == NULL) {
        return;
    }
    if (!e->pub_known || !addr_same(master, &e->pub_master)) {
        n->mute_for = 0; /* the master did change: the alarm was real */
        return;
    }
    /* A Sentinel that keeps announcing the master's end while the others
     * and ROLE say it is fine would otherwise hold writes at every message. */
    if (n->mute_for == 0 || now - n->mute_until > 10 * ENGINE_MUTE_MIN) {
        n->mute_for = ENGINE_MUTE_MIN;
    } else if ((n->mute_for *= 2) > ENGINE_MUTE_MAX) {
        n->mute_for = ENGINE_MUTE_MAX;
    }
    n->mute_until = now + n->mute_for;
    log_warn("Sentinel %s: false alarm, the master did not change; its events hold no writes for "
             "%.0f s",
             n->name, n->mute_for);
}

/* Stop writes now: the master is going away, or ROLE contradicts Sentinel. */
void engine_hold(struct engine *e, const char *why)
{
    char m[ADDR_TEXT_MAX], kv[ADDR_TEXT_MAX + 64];
    struct topology *t;

    if (e->topo == NULL || !e->topo->has_master) {
        return;
    }
    if (e->switch_started == 0) {
        e->switch_started = ev_now(e->loop);
    }
    addr_format(&e->topo->master, m, sizeof(m));
    snprintf(kv, sizeof(kv), "master=%s epoch=%llu", m, (unsigned long long)e->topo->epoch);
    log_kv(LOG_WARN, __func__, kv, "holding requests: %s", why);
    t = topology_clone(e->topo);
    t->has_master = false;
    engine_publish(e, t, false);
}

/* ---- decision and confirmation ------------------------------------------------------ */

/* Epochs only go forward: a decision for another master with an epoch
 * below the one in use (Sentinels that knew better stopped answering) is
 * taken only when a majority of every known Sentinel reports it, as after
 * the Sentinels were set up afresh. */
static bool engine_epoch_ok(struct engine *e, const struct quorum_decision *d, size_t known)
{
    char m[ADDR_TEXT_MAX], was[ADDR_TEXT_MAX];

    if (!e->pub_known || d->epoch >= e->pub_epoch || addr_same(&d->master, &e->pub_master) ||
        (size_t)d->votes * 2 > known) {
        return true;
    }
    if (ev_now(e->loop) - e->warned_epoch > 30) {
        addr_format(&d->master, m, sizeof(m));
        addr_format(&e->pub_master, was, sizeof(was));
        log_warn("ignoring %d of %zu Sentinel(s) naming %s at epoch %llu: %s has epoch %llu",
                 d->votes, known, m, (unsigned long long)d->epoch, was,
                 (unsigned long long)e->pub_epoch);
        e->warned_epoch = ev_now(e->loop);
    }
    return false;
}

/* No Sentinel named a master: say whether they answered something else
 * (a wrong master name, say) or nothing at all. */
static void engine_why_none(struct engine *e)
{
    const struct engine_node *said = NULL, *silent = NULL, *unresolved = NULL;
    char why[512];
    size_t n = 0;

    for (const struct engine_node *nd = e->nodes; nd != NULL; nd = nd->next) {
        n++;
        if (nd->unresolved[0] != '\0' && unresolved == NULL) {
            unresolved = nd;
        } else if (nd->answer[0] != '\0' && said == NULL) {
            said = nd;
        } else if (nd->answer[0] == '\0' && silent == NULL) {
            silent = nd;
        }
    }
    if (unresolved != NULL) {
        snprintf(why, sizeof(why), "the master named by Sentinel %.200s is not resolved: %s",
                 unresolved->name, unresolved->unresolved);
    } else if (said != NULL) {
        snprintf(why, sizeof(why),
                 "no Sentinel names master '%.64s' (%.200s answered '%.96s'); check "
                 "sentinel.master-name",
                 e->cfg->master_name, said->name, said->answer);
    } else if (silent != NULL) {
        const char *err = link_last_error(silent->cmd);
        snprintf(why, sizeof(why), "none of the %zu Sentinel(s) answered (%.200s: %.96s)", n,
                 silent->name, err[0] != '\0' ? err : "no answer within sentinel.timeout");
    } else {
        snprintf(why, sizeof(why), "no Sentinel is known");
    }
    engine_set_why(e, why);
}

void engine_set_why(struct engine *e, const char *why)
{
    double now = ev_now(e->loop);

    if (why[0] == '\0') {
        e->why[0] = '\0';
        return;
    }
    if (strcmp(why, e->why) != 0) {
        snprintf(e->why, sizeof(e->why), "%s", why);
        log_warn("%s; %s", e->why,
                 e->pub_known ? "serving the last confirmed master meanwhile"
                              : "no master confirmed yet: requests wait (hold-timeout)");
        e->why_logged = now;
    } else if (now - e->why_logged >= 60) {
        log_warn("still: %s", e->why);
        e->why_logged = now;
    }
}

/* ---- write fencing (sentinel.fence-after) ------------------------------------------- */

/* Whether a majority of the n known Sentinels name the master decided. */
static bool engine_majority(const struct quorum_decision *d, size_t n)
{
    return (d->status == QUORUM_AGREED || d->status == QUORUM_EPOCH) && n > 0 &&
           (size_t)d->votes * 2 > n;
}

/* Close the fence once no majority has named the master for
 * sentinel.fence-after: on the minority side of a partition, the master
 * still served may already have been replaced, and every write it takes
 * would be lost. True when writes are fenced. */
static bool engine_fence_check(struct engine *e)
{
    double after = (double)e->cfg->sentinel_fence_ms / 1000.0, now = ev_now(e->loop);
    char m[ADDR_TEXT_MAX], why[ADDR_TEXT_MAX + 160], kv[ADDR_TEXT_MAX + 64];
    size_t known = 0;

    if (after <= 0 && e->fenced) { /* turned off by a reload */
        e->fenced = false;
        log_info("writes unfenced: sentinel.fence-after is off");
        if (e->topo != NULL && !e->topo->has_master && e->pub_known &&
            addr_same(&e->topo->master, &e->pub_master)) {
            /* The last confirmed master serves again, as without a fence,
             * until the Sentinels say otherwise. */
            struct topology *t = topology_clone(e->topo);
            t->has_master = true;
            engine_publish(e, t, false);
        }
    }
    /* Closed also while writes are held for another reason: a minority's
     * decision must not open them again. */
    if (after <= 0 || e->fenced || now - e->majority_at <= after || !e->pub_known) {
        return e->fenced;
    }
    for (const struct engine_node *n = e->nodes; n != NULL; n = n->next) {
        known++;
    }
    e->fenced = true;
    addr_format(&e->pub_master, m, sizeof(m));
    snprintf(why, sizeof(why),
             "writes fenced: no majority of the %zu known Sentinel(s) has named master %s for "
             "%.1f s (sentinel.fence-after)",
             known, m, now - e->majority_at);
    snprintf(kv, sizeof(kv), "master=%s known=%zu majority_age_ms=%.0f", m, known,
             (now - e->majority_at) * 1000);
    log_kv(LOG_WARN, "engine_fence", kv, "%s", why);
    engine_hold(e, why);
    engine_set_why(e, why);
    engine_status(e, &e->last);
    return true;
}

/* A majority named the master again: writes may go on once it is confirmed. */
static void engine_fence_open(struct engine *e, const struct quorum_decision *d, size_t known)
{
    char m[ADDR_TEXT_MAX], kv[ADDR_TEXT_MAX + 64];

    e->majority_at = ev_now(e->loop);
    if (!e->fenced) {
        return;
    }
    e->fenced = false;
    addr_format(&d->master, m, sizeof(m));
    snprintf(kv, sizeof(kv), "master=%s votes=%d known=%zu", m, d->votes, known);
    log_kv(LOG_INFO, "engine_fence", kv,
           "writes unfenced: %d of %zu Sentinel(s) name master %s again", d->votes, known, m);
}

/* What the Sentinels' reports decide now; the number known in *known.
 * False if out of memory. */
static bool engine_tally(struct engine *e, struct quorum_decision *d, size_t *known)
{
    struct quorum_report *reports;
    size_t n = 0, k = 0;

    for (struct engine_node *node = e->nodes; node != NULL; node = node->next) {
        n++;
    }
    reports = calloc(n > 0 ? n : 1, sizeof(*reports));
    if (reports == NULL) {
        return false;
    }
    for (struct engine_node *node = e->nodes; node != NULL; node = node->next) {
        reports[k++] = node->report;
    }
    quorum_decide(reports, n, d);
    free(reports);
    *known = n;
    return true;
}

/* The last answers of a round decided early brought nothing new: the status
 * shows them all the same. */
static void engine_restate(struct engine *e)
{
    struct quorum_decision d;
    size_t n;

    if (engine_tally(e, &d, &n)) {
        e->last = d;
        engine_status(e, &d);
    }
}

static void engine_decide(struct engine *e)
{
    struct quorum_decision d;
    size_t n = 0;
    char m[ADDR_TEXT_MAX];

    if (!engine_tally(e, &d, &n)) {
        return;
    }
    e->last = d;
    if (engine_majority(&d, n)) {
        engine_fence_open(e, &d, n);
    }
    engine_status(e, &d);
    if (d.status == QUORUM_NONE) {
        engine_why_none(e);
    } else if (d.status == QUORUM_SPLIT) {
        engine_set_why(e, "the Sentinels disagree on the master with equal epochs");
    }
    engine_discover(e);
    if (engine_fence_check(e)) {
        /* Nothing less than a majority opens the fence again. */
        if (e->round_again) {
            engine_round_soon(e);
        }
        return;
    }
    if (d.status != QUORUM_AGREED && d.status != QUORUM_EPOCH) {
        if (e->round_again) {
            engine_round_soon(e);
        }
        return;
    }
    if (!engine_epoch_ok(e, &d, n)) {
        if (e->round_again) {
            engine_round_soon(e);
        }
        return;
    }
    if (d.going_away) {
        addr_format(&d.master, m, sizeof(m));
        char why[ADDR_TEXT_MAX + 128];
        snprintf(why, sizeof(why), "master %s is objectively down or failing over", m);
        engine_hold(e, why);
        engine_set_why(e, why);
        if (e->round_again) {
            engine_round_soon(e);
        }
        return;
    }
    if (e->pub_known && !addr_same(&d.master, &e->pub_master) && e->switch_started == 0) {
        e->switch_started = ev_now(e->loop); /* found by polling: no event came first */
    }
    probe_confirm(e, &d);
}

/* ---- timers ----------------------------------------------------------------------- */

static void engine_poll_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    engine_fence_check(t->data); /* also while a round waits on a silent Sentinel */
    engine_round(t->data);
}

static void engine_soon_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    engine_round(t->data);
}

/* A worker saw a backend refuse a command (READONLY, LOADING...): check the
 * topology now and publish it even if unchanged, so that the workers retry
 * at once. A server that keeps refusing (a master loading its data set)
 * would keep kicking: such rounds are spaced by ENGINE_KICK_GAP. */
static void engine_kick_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    struct engine *e = a->data;
    double wait = e->kicked_at + ENGINE_KICK_GAP - ev_now(loop);

    (void)revents;
    e->force_publish = true;
    if (wait > 0) {
        if (!ev_is_active(&e->soon)) {
            ev_timer_set(&e->soon, wait, 0);
            ev_timer_start(loop, &e->soon);
            e->kicked_at = ev_now(loop) + wait; /* when that round starts */
        }
        return;
    }
    e->kicked_at = ev_now(loop);
    engine_round(e);
}

/* A host name's answer came or changed: what was skipped for want of it
 * is asked again. */
static void engine_resolved_cb(void *arg)
{
    engine_round_soon(arg);
}

/* A configured Sentinel's address: as resolved when the configuration was
 * loaded, else through the cache (a name still pending is resolved by its
 * links when they connect). */
static struct addr engine_configured_addr(struct engine *e, const struct addr *cfg_addr)
{
    struct addr a = *cfg_addr;
    char err[192];

    if (a.salen == 0) {
        (void)resolve_lookup(e->resolver, &a, err, sizeof(err));
    }
    return a;
}

void engine_kick(struct engine *e)
{
    if (e != NULL) {
        ev_async_send(e->loop, &e->kick);
    }
}

struct engine *engine_start(struct ev_loop *loop, const struct config *cfg,
                            const struct engine_receiver *rx, const struct engine_tls *tls,
                            char *err, size_t errlen)
{
    struct engine *e = calloc(1, sizeof(*e));
    double poll;

    if (e == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    e->loop = loop;
    e->rx = *rx;
    e->tls = *tls;
    e->cfg = cfg;
    e->last_switch = -1;
    e->majority_at = ev_now(loop);
    e->resolver = resolve_new(loop, NULL, err, errlen);
    if (e->resolver == NULL) {
        free(e);
        return NULL;
    }
    resolve_watch(e->resolver, &e->rwait, engine_resolved_cb, e);
    for (size_t i = 0; i < e->cfg->nsentinels; i++) {
        struct addr a = engine_configured_addr(e, &e->cfg->sentinels[i]);
        if (engine_find_node(e, &a) == NULL && engine_add_node(e, &a, true) == NULL) {
            snprintf(err, errlen, "out of memory");
            engine_stop(e);
            return NULL;
        }
    }
    poll = (double)e->cfg->sentinel_poll_ms / 1000.0;
    ev_timer_init(&e->poll, engine_poll_cb, poll, poll);
    e->poll.data = e;
    ev_timer_start(loop, &e->poll);
    ev_timer_init(&e->soon, engine_soon_cb, 0, 0);
    e->soon.data = e;
    ev_async_init(&e->kick, engine_kick_cb);
    e->kick.data = e;
    ev_async_start(loop, &e->kick);
    engine_round(e);
    return e;
}

/* The Sentinels' and instances' links take cfg's credentials and timeout
 * from their next connection. */
static void engine_relink(struct engine *e, const struct config *cfg)
{
    double timeout = (double)cfg->sentinel_timeout_ms / 1000.0;
    bool ok = true;

    for (struct engine_node *n = e->nodes; n != NULL; n = n->next) {
        ok = link_set_options(n->cmd, timeout, cfg->sentinel_username, cfg->sentinel_password) &&
             link_set_options(n->sub, timeout, cfg->sentinel_username, cfg->sentinel_password) &&
             ok;
    }
    for (struct engine_inst *in = e->insts; in != NULL; in = in->next) {
        ok =
            link_set_options(in->link, timeout, cfg->backend_username, cfg->backend_password) && ok;
    }
    if (!ok) {
        log_error("out of memory: some connections keep their previous credentials");
    }
}

void engine_reconfigure(struct engine *e, const struct config *cfg)
{
    double now = ev_now(e->loop), poll = (double)cfg->sentinel_poll_ms / 1000.0;

    e->cfg = cfg;
    for (struct engine_node *n = e->nodes; n != NULL; n = n->next) {
        bool still = false;
        for (size_t i = 0; i < cfg->nsentinels && !still; i++) {
            still = addr_same(&n->addr, &cfg->sentinels[i]);
        }
        if (n->configured && !still) {
            /* Kept as if learnt: forgotten once no Sentinel lists it. */
            n->configured = false;
            n->last_listed = now;
            log_info("Sentinel %s is no longer configured: kept while other Sentinels list it",
                     n->name);
        }
    }
    engine_relink(e, cfg);
    for (size_t i = 0; i < cfg->nsentinels; i++) {
        struct addr a = engine_configured_addr(e, &cfg->sentinels[i]);
        struct engine_node *n;
        if ((n = engine_find_node(e, &a)) != NULL) {
            n->configured = true;
        } else if ((n = engine_add_node(e, &a, true)) == NULL) {
            log_error("out of memory: Sentinel %s not added", cfg->sentinels[i].host);
        } else {
            log_info("asking Sentinel %s from now on", n->name);
        }
    }
    if (poll != e->poll.repeat) {
        ev_timer_stop(e->loop, &e->poll);
        ev_timer_set(&e->poll, poll, poll);
        ev_timer_start(e->loop, &e->poll);
    }
    /* Weights, zones and lag limits reach the next snapshot at once. */
    e->force_publish = true;
    engine_round_soon(e);
}

void engine_stop(struct engine *e)
{
    if (e == NULL) {
        return;
    }
    ev_timer_stop(e->loop, &e->poll);
    ev_timer_stop(e->loop, &e->soon);
    ev_async_stop(e->loop, &e->kick);
    while (e->nodes != NULL) {
        struct engine_node *n = e->nodes;
        e->nodes = n->next;
        engine_free_node(n);
    }
    probe_free_all(e);
    resolve_unwatch(&e->rwait);
    resolve_free(e->resolver);
    topology_unref(e->topo);
    free(e);
}
