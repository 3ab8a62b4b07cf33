/*
 * router.c - every routing rule in one place: where a request goes, and what
 * becomes of a request whose reply says it must go elsewhere or whose
 * connection was lost.
 *
 * Forward (router_route): a session with server-side state lives on a
 * dedicated connection to the master; commands that only read or reset
 * session state stay on shared connections where that is indistinguishable
 * from a direct connection (SELECT 0, HELLO, the proxy's own AUTH); some
 * commands are answered by the proxy (local.c). On shared connections,
 * writes and everything that is not a read-only command go to the master;
 * read-only commands follow the listener's read-from policy: "master",
 * "replicas" (wait for a usable replica), or "prefer-replicas" (the master
 * when no replica can take the read). A replica can take a read when the
 * topology says it is healthy, this worker can reach it, and, with
 * read-your-writes, it has processed the client's last acknowledged write.
 * Among those, replicas in the proxy's zone come first; then the balance
 * policy picks one.
 *
 * Back (router_reply_verdict, router_lost_verdict): pure functions of the
 * facts about a reply or a lost connection, so that the rules can be read,
 * and tested, as a table.
 */
#include "proxy/router.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/config.h"
#include "proxy/backend.h"
#include "proxy/bconn.h"
#include "proxy/client.h"
#include "proxy/commands.h"
#include "proxy/hello.h"
#include "proxy/listener.h"
#include "proxy/offsets.h"
#include "proxy/proxy.h"
#include "proxy/req.h"
#include "proxy/session.h"
#include "proxy/worker.h"

#define ROUTER_CANDIDATES  64
#define ROUTER_SILENT      1.0         /* seconds a replica may leave a ROLE probe unanswered */
#define ROUTER_CURSOR_ARGS 3           /* HSCAN key cursor: the cursor is argument 2 */
#define ROUTER_HELLO_MAX   (64u << 10) /* largest HELLO read here (larger: the server's) */

/* ---- session commands: which need a dedicated connection ----------------- */

/* True when user (NULL: AUTH with a password only) and pass are the
 * proxy's backend credentials. */
static bool router_creds_are_proxys(const struct config *cfg, const char *user, size_t ulen,
                                    const char *pass, size_t plen)
{
    const char *mine = cfg->backend_username != NULL ? cfg->backend_username : "default";

    if (cfg->backend_password == NULL || plen != strlen(cfg->backend_password) ||
        memcmp(pass, cfg->backend_password, plen) != 0) {
        return false;
    }
    return user == NULL ? strcmp(mine, "default") == 0
                        : ulen == strlen(mine) && memcmp(user, mine, ulen) == 0;
}

bool router_auth_is_proxys(const struct config *cfg, struct req *r)
{
    struct req_first_args a;
    bool match = false;

    if (req_args_first(r, &a)) {
        if (a.argc == 2) {
            match = router_creds_are_proxys(cfg, NULL, 0, a.argv[1], a.argl[1]);
        } else if (a.argc == 3) {
            match = router_creds_are_proxys(cfg, a.argv[1], a.argl[1], a.argv[2], a.argl[2]);
        }
    }
    free(a.buf);
    return match;
}

/* How an XREAD or XREADGROUP reads, from its options walked as redis-server
 * walks them (BLOCK, COUNT, GROUP, NOACK in any order, up to STREAMS). */
struct router_xread {
    bool blocks;   /* it has BLOCK (or cannot be told: assume it may block) */
    bool from_now; /* an id is $ or + (or cannot be told) */
};

static bool router_xread_word(const struct req_args *a, int i, const char *word)
{
    return a->argl[i] == strlen(word) && strncasecmp(a->argv[i], word, a->argl[i]) == 0;
}

static struct router_xread router_xread(struct req *r)
{
    struct router_xread x = {true, true};
    struct req_args a;
    int streams = -1;

    req_args_all(r, 1u << 20, &a);
    if (a.argc > 0) {
        x.blocks = false;
        for (int i = 1; i < a.argc; i++) {
            int more = a.argc - i - 1;
            if (router_xread_word(&a, i, "block") && more >= 1) {
                x.blocks = true;
                i++;
            } else if (router_xread_word(&a, i, "count") && more >= 1) {
                i++;
            } else if (router_xread_word(&a, i, "group") && more >= 2) {
                i += 2;
            } else if (router_xread_word(&a, i, "noack")) {
                continue;
            } else {
                streams = router_xread_word(&a, i, "streams") ? i : -1;
                break; /* STREAMS, or a syntax error that runs nothing */
            }
        }
    }
    if (streams > 0 && (a.argc - streams - 1) % 2 == 0) {
        int nkeys = (a.argc - streams - 1) / 2;
        x.from_now = false;
        for (int i = streams + 1 + nkeys; i < a.argc && !x.from_now; i++) {
            x.from_now = a.argl[i] == 1 && (a.argv[i][0] == '$' || a.argv[i][0] == '+');
        }
    }
    req_args_free(&a);
    return x;
}

/* What a request needs, from the session's point of view. */
enum router_need {
    NEED_SHARED = 0,    /* any shared connection */
    NEED_DEDICATED = 1, /* the client's dedicated connection */
    NEED_LOCAL = 2,     /* answered by the proxy (local.c) */
    NEED_WAIT = 3,      /* wait for in-flight replies first */
    NEED_FACTS = 4,     /* answered by the proxy once the master's HELLO facts are known */
};

/* A client's HELLO. The proxy answers it (local.c, hello.h) from what the
 * master said to the proxy's own HELLO 3, keeping the client on shared
 * connections of its protocol; redis-server's own errors too. The server
 * answers it on a dedicated connection when the session is there already,
 * when the HELLO carries other credentials than the proxy's (the server
 * checks them), and when the master does not speak RESP3. */
static enum router_need router_hello(struct client *c, struct req *r, bool pinned)
{
    const struct config *cfg = c->w->cfg;
    const struct backend *master = c->w->master;
    struct req_args a;
    struct hello_args h;
    bool other_creds;
    int facts = master != NULL ? master->hello.resp3 : HELLO_UNKNOWN;
    bool plain; /* HELLO or HELLO 2 without options: reports facts only */

    if (pinned) {
        return NEED_DEDICATED;
    }
    req_args_all(r, ROUTER_HELLO_MAX, &a);
    if (a.argc < 1) {
        req_args_free(&a);
        /* Too large to read here: the server reads it, but only for a client
         * logged in (the proxy's connections are; local.c refuses it). */
        return cfg->backend_password != NULL && !c->sess.authed ? NEED_LOCAL : NEED_DEDICATED;
    }
    hello_parse(&a, &h);
    other_creds = h.auth != 0 && !router_creds_are_proxys(cfg, a.argv[h.auth], a.argl[h.auth],
                                                          a.argv[h.auth + 1], a.argl[h.auth + 1]);
    plain = a.argc == 1 || (a.argc == 2 && h.proto == 2);
    req_args_free(&a);
    if (h.error[0] != '\0') {
        return NEED_LOCAL; /* refused as the server refuses it: nothing changes */
    }
    if (other_creds) {
        return NEED_DEDICATED;
    }
    if (cfg->backend_password != NULL && !c->sess.authed && h.auth == 0) {
        return NEED_LOCAL; /* NOAUTH */
    }
    if (facts == HELLO_RESP3) {
        /* A new protocol applies to what follows: requests in flight, which
         * may yet be sent again, keep theirs until they are answered. */
        return c->inflight > 0 && h.proto != 0 && h.proto != c->sess.resp ? NEED_WAIT : NEED_LOCAL;
    }
    if (plain && (facts == HELLO_NO_RESP3 || c->sess.resp == 2)) {
        return NEED_SHARED; /* the server's own answer changes nothing */
    }
    return facts == HELLO_NO_RESP3 ? NEED_DEDICATED : NEED_FACTS;
}

static enum router_need router_session_cmd(struct client *c, struct req *r, bool pinned)
{
    switch (r->ci->id) {
    case CMD_SELECT:
        /* Only "SELECT 0" is certain to leave a shared connection unchanged. */
        if (!pinned && r->argc == 2 && r->intarg == 0) {
            return NEED_SHARED;
        }
        return NEED_DEDICATED;
    case CMD_AUTH:
        return !pinned && router_auth_is_proxys(c->w->cfg, r) ? NEED_LOCAL : NEED_DEDICATED;
    case CMD_HELLO:
        return router_hello(c, r, pinned);
    default:
        return NEED_DEDICATED;
    }
}

/* With backend-password set, the proxy's shared connections are
 * authenticated, so clients must authenticate to the proxy as they would to
 * redis-server: AUTH with the proxy's credentials is answered here and keeps
 * the client on shared connections; other credentials go to a dedicated
 * connection where the server checks them. Before that, commands get
 * NOAUTH (answered by local.c). False when the usual rules apply. */
static bool router_unauthenticated(struct client *c, struct req *r, enum router_need *need)
{
    int id = r->ci != NULL ? r->ci->id : CMD_OTHER;
    int arity = r->ci != NULL ? r->ci->arity : 0;

    /* redis-server rejects unknown commands and wrong argument counts before
     * it looks at authentication; the server gives those errors itself (it
     * executes nothing). */
    if (r->ci == NULL) {
        *need = NEED_LOCAL; /* never to an authenticated connection (local.c answers) */
        return true;
    }
    if ((arity > 0 && r->argc != (uint32_t)arity) || (arity < 0 && r->argc < (uint32_t)-arity) ||
        id == CMD_QUIT || id == CMD_RESET) {
        return false;
    }
    if (id == CMD_AUTH) {
        *need = router_auth_is_proxys(c->w->cfg, r) ? NEED_LOCAL : NEED_DEDICATED;
    } else if (id == CMD_HELLO) {
        /* With the proxy's credentials it logs the client in; a HELLO
         * without AUTH is refused as redis-server refuses it. */
        *need = router_hello(c, r, c->ded != NULL);
    } else {
        *need = NEED_LOCAL;
    }
    return true;
}

/* UNSUBSCRIBE, PUNSUBSCRIBE or SUNSUBSCRIBE. */
static bool router_is_unsubscribe(const struct cmd_info *ci)
{
    return ci != NULL &&
           (ci->id == CMD_UNSUBSCRIBE || ci->id == CMD_PUNSUBSCRIBE || ci->id == CMD_SUNSUBSCRIBE);
}

static enum router_need router_need(struct client *c, struct req *r)
{
    const struct session *s = &c->sess;
    const struct cmd_info *ci = r->ci;
    /* A session with state lives on a dedicated connection, also after that
     * connection was lost (the next one gets the state replayed). */
    bool pinned = c->ded != NULL || !session_is_clean(s);

    if (s->lost_multi) {
        return NEED_LOCAL; /* the transaction is answered by local.c until EXEC/DISCARD */
    }
    if (c->w->cfg->backend_password != NULL && !s->authed) {
        enum router_need need;
        if (c->inflight > 0) {
            return NEED_WAIT; /* an AUTH or HELLO in flight may log the client in */
        }
        if (router_unauthenticated(c, r, &need)) {
            return need;
        }
    }
    if (ci == NULL) {
        return pinned ? NEED_DEDICATED : NEED_SHARED;
    }
    if (router_is_unsubscribe(ci) && !s->streaming && !s->multi_sent) {
        /* Not subscribed: redis-server confirms every name given with a reply
         * of its own, more replies than requests; local.c answers the same. */
        return NEED_LOCAL;
    }
    switch (ci->proxy) {
    case CMDP_CLOSE:
    case CMDP_REFUSE:
        return NEED_LOCAL;
    case CMDP_LOCAL:
        /* On a dedicated connection the server keeps the session itself. */
        if (pinned && (ci->id == CMD_RESET || ci->id == CMD_CLIENT)) {
            return NEED_DEDICATED;
        }
        if (ci->id == CMD_RESET && s->resp != 2 && c->inflight > 0) {
            return NEED_WAIT; /* back to RESP2 once what is in flight is answered */
        }
        return NEED_LOCAL;
    case CMDP_BLOCKING:
    case CMDP_STREAM:
        return NEED_DEDICATED;
    case CMDP_SESSION:
        return router_session_cmd(c, r, pinned);
    case CMDP_FORWARD:
        break;
    }
    if ((ci->id == CMD_XREAD || ci->id == CMD_XREADGROUP) && !pinned && router_xread(r).blocks) {
        return NEED_DEDICATED;
    }
    return pinned ? NEED_DEDICATED : NEED_SHARED;
}

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
    if (be->ofs.probe_pending && ev_now(w->loop) - be->ofs.at > ROUTER_SILENT) {
        return false;
    }
    return max_lag == 0 || be->ofs.offset == 0 || w->ofs.master_offset <= be->ofs.offset + max_lag;
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
        router_replica_ok(w, be, w->cfg->max_replica_lag)) {
        WORKER_COUNT(w, reads_replicas, 1);
        return be;
    }
    WORKER_COUNT(w, reads_master, 1);
    return router_master(c);
}

static struct backend *router_pick_read(struct client *c, enum config_read_from mode,
                                        uint64_t prefer, uint64_t *check);

/* The backend for a request on a shared connection, or NULL when none can
 * take it now (the request waits); *check as route.check. */
static struct backend *router_pick(struct client *c, struct req *r, uint64_t *check)
{
    enum config_read_from mode =
        c->listener != NULL ? c->listener->read_from : (enum config_read_from)c->w->cfg->read_from;
    bool scan = r->ci != NULL && (r->ci->id == CMD_SCAN || r->ci->id == CMD_XSCAN);
    bool read = cmd_is_read(r->ci);
    struct backend *be;

    /* Writes, and reads that cannot go to a replica: the master. Decided
     * here, ahead of router_pick_read, which only the reads replicas may
     * take pay for. */
    if (mode == READ_FROM_MASTER || !read || (r->flags & REQ_MASTER_ONLY) || c->w->nreplicas == 0) {
        if (read) {
            WORKER_COUNT(c->w, reads_master, 1);
        }
        be = mode == READ_FROM_REPLICAS && read && !(r->flags & REQ_MASTER_ONLY) ? NULL
                                                                                 : router_master(c);
    } else if (scan && router_continues_scan(r)) {
        return router_scan_home(c);
    } else {
        be = router_pick_read(c, mode, scan ? c->scan_be : 0, check);
    }
    if (scan && be != NULL) {
        c->scan_be = be->id;
    }
    return be;
}

/* The backend for a read that a replica may take and that does not
 * continue a SCAN; among the replicas that qualify, the one with id prefer
 * when it is one of them. With read-from replicas and none known to have the
 * client's writes, the one closest to them, with *check set, if it may be
 * asked (offsets_demand). */
static struct backend *router_pick_read(struct client *c, enum config_read_from mode,
                                        uint64_t prefer, uint64_t *check)
{
    const struct config *cfg = c->w->cfg;
    struct worker *w = c->w;
    struct backend *cand[ROUTER_CANDIDATES], *zoned[ROUTER_CANDIDATES];
    struct backend *behind[ROUTER_CANDIDATES];
    size_t n = 0, nz = 0, nb = 0;
    uint64_t need = 0;

    if (cfg->read_your_writes) {
        need = offsets_required(c);
    }
    for (size_t i = 0; i < w->nreplicas && n < ROUTER_CANDIDATES; i++) {
        struct backend *be = w->replicas[i];
        if (!router_replica_ok(w, be, cfg->max_replica_lag) ||
            (c->sess.resp == 3 && be->hello.resp3 == HELLO_NO_RESP3)) {
            continue;
        }
        if (need > 0 && be->ofs.offset < need) {
            if (nb < ROUTER_CANDIDATES) {
                behind[nb++] = be;
            }
            continue;
        }
        cand[n++] = be;
        if (cfg->zone != NULL && strcmp(be->zone, cfg->zone) == 0) {
            zoned[nz++] = be;
        }
    }
    if (n == 0) {
        if (nb > 0) {
            WORKER_COUNT(w, ryw_to_master, 1);
        }
        if (mode == READ_FROM_REPLICAS) {
            /* Wait for a replica (hold-timeout bounds it), or send the read
             * checked to one of those closest to the client's writes. */
            struct backend *best = NULL;
            size_t nc = 0;
            for (size_t i = 0; i < nb; i++) {
                if (nc > 0 && behind[i]->ofs.offset < cand[0]->ofs.offset) {
                    continue;
                }
                if (nc > 0 && behind[i]->ofs.offset > cand[0]->ofs.offset) {
                    nc = 0;
                }
                cand[nc++] = behind[i];
            }
            best = nc > 0 ? router_balance(w, cand, nc, cfg->balance) : NULL;
            if (best != NULL && offsets_demand(w, best, need)) {
                WORKER_COUNT(w, reads_replicas, 1);
                *check = need;
                return best;
            }
            return NULL;
        }
        WORKER_COUNT(w, reads_master, 1);
        return router_master(c);
    }
    WORKER_COUNT(w, reads_replicas, 1);
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

/* ---- forward --------------------------------------------------------------- */

void router_route(struct client *c, struct req *r, struct route *rt)
{
    struct backend *master = c->w->master;

    rt->be = NULL;
    rt->what = NULL;
    rt->check = 0;
    switch (router_need(c, r)) {
    case NEED_LOCAL:
        rt->kind = ROUTE_LOCAL;
        return;
    case NEED_WAIT:
        rt->kind = ROUTE_WAIT; /* a state change pending on in-flight replies */
        return;
    case NEED_FACTS:
        /* The master's facts come with the HELLO 3 of its first RESP3 shared
         * connection (opened here); its answer wakes the request. */
        if (master != NULL && backend_usable(master)) {
            (void)backend_shared(master, c->id, 3, 0);
        }
        rt->kind = ROUTE_HOLD;
        rt->what = "master";
        return;
    case NEED_DEDICATED:
        if (c->ded != NULL && c->ded->retiring) {
            /* Its server lost the master role: the session continues on a
             * new connection once this one has answered what it has. */
            rt->kind = ROUTE_HOLD;
            rt->what = "master";
        } else if (c->ded != NULL) {
            rt->kind = ROUTE_DEDICATED;
        } else if (c->inflight > 0) {
            rt->kind = ROUTE_WAIT; /* move only once the shared connection has answered */
        } else if (master == NULL || !backend_usable(master)) {
            rt->kind = ROUTE_HOLD;
            rt->what = "master";
        } else {
            rt->kind = ROUTE_PIN;
            rt->be = master;
        }
        return;
    case NEED_SHARED:
        break;
    }
    if (c->ded != NULL) {
        rt->kind = c->ded->retiring ? ROUTE_HOLD : ROUTE_DEDICATED;
        rt->what = "master";
        return;
    }
    rt->be = router_pick(c, r, &rt->check);
    rt->kind = rt->be != NULL ? ROUTE_SHARED : ROUTE_HOLD;
    rt->what = "backend";
}

/* ---- back ------------------------------------------------------------------ */

bool router_read_may_repeat(struct req *r)
{
    const struct cmd_info *ci = r->ci;

    struct router_xread x;

    if (ci == NULL || (ci->id != CMD_XREAD && ci->id != CMD_XREADGROUP)) {
        return true;
    }
    /* A blocked XREAD from $ sent again would skip what came meanwhile. */
    x = router_xread(r);
    return !x.blocks || !x.from_now;
}

bool router_blocked_may_move(struct req *r)
{
    /* The core commands that block for data and do nothing until it comes;
     * WAIT is not one (it counts what happened on its own connection), nor
     * a module's blocking command (its effects are its own). */
    static const char *const waits_for_data[] = {
        "blpop", "brpop", "blmove", "brpoplpush", "blmpop", "bzpopmin", "bzpopmax", "bzmpop",
    };
    const struct cmd_info *ci = r->ci;

    if (ci == NULL) {
        return false;
    }
    if (ci->id == CMD_XREAD || ci->id == CMD_XREADGROUP) {
        struct router_xread x = router_xread(r);
        return x.blocks && !x.from_now;
    }
    for (size_t i = 0; i < sizeof(waits_for_data) / sizeof(waits_for_data[0]); i++) {
        if (strcmp(ci->name, waits_for_data[i]) == 0) {
            return true;
        }
    }
    return false;
}

enum router_refusal router_refusal(const char *head, size_t len, bool follows_sentinel)
{
    /* With a fixed backend only LOADING is worth waiting for; READONLY from
     * it is a configuration problem the client must see. A blocking command
     * that a master turning into a replica unblocks did not run (unlike one
     * a client unblocked with CLIENT UNBLOCK ... ERROR). */
    static const char *const not_executed[] = {"LOADING ", "READONLY ", "MASTERDOWN "};
    static const char unblocked[] = "UNBLOCKED force unblock ";
    size_t n = follows_sentinel ? 3 : 1;

    for (size_t i = 0; i < n; i++) {
        size_t k = strlen(not_executed[i]);
        if (len >= k && memcmp(head, not_executed[i], k) == 0) {
            return REFUSAL_NOT_EXECUTED;
        }
    }
    if (follows_sentinel && len >= sizeof(unblocked) - 1 &&
        memcmp(head, unblocked, sizeof(unblocked) - 1) == 0) {
        return REFUSAL_UNBLOCKED;
    }
    return len >= 9 && memcmp(head, "NOSCRIPT ", 9) == 0 ? REFUSAL_NOSCRIPT : REFUSAL_NONE;
}

enum router_reply router_reply_verdict(const struct router_fate *f)
{
    if (f->internal) {
        return REPLY_INTERNAL;
    }
    if (f->orphan) {
        return REPLY_DISCARD;
    }
    if (f->from_replica && !f->dedicated && !f->master_only && f->refusal != REFUSAL_NONE) {
        /* A read the replica cannot answer, though the topology is fine: a
         * script it lacks, a function that may write (READONLY), a replica
         * loading or cut off from its master. The master answers it. */
        return REPLY_TO_MASTER;
    }
    if (f->refusal == REFUSAL_NOT_EXECUTED && (!f->dedicated || f->can_resend) && f->within_hold) {
        /* Sent again until hold-timeout from its arrival; a server that
         * still refuses then (a master loading its data) answers it. */
        return REPLY_RETRY;
    }
    if (f->refusal == REFUSAL_UNBLOCKED && f->blocked_may_move &&
        (!f->dedicated || f->can_resend)) {
        /* Released unexecuted as its master turned into a replica: it waits
         * for data on the new master (hold-timeout counts from now). */
        return REPLY_RETRY;
    }
    return REPLY_DELIVER;
}

enum router_lost router_lost_verdict(const struct router_fate *f)
{
    if (f->internal || f->orphan) {
        return LOST_DROP;
    }
    if (f->streamed) {
        return LOST_KEEP; /* already answered (streaming); the client still holds it */
    }
    if (f->unsent) {
        return LOST_RESEND; /* never reached the server: safe to send again */
    }
    if (f->released && (!f->dedicated || f->can_resend)) {
        return LOST_RESEND; /* a blocked command its former master dropped unexecuted */
    }
    if ((!f->dedicated || f->can_resend) && f->is_read && f->repeatable && f->within_hold &&
        f->lost + 1 < ROUTER_READ_ATTEMPTS) {
        /* Whatever happened to the server, a read can run again: it waits
         * for a usable server like any request, and goes to it. */
        return LOST_RETRY_READ;
    }
    return f->is_read ? LOST_FAIL_READ : LOST_FAIL_WRITE;
}
