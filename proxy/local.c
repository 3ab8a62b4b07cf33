/*
 * local.c - replies the proxy writes itself.
 *
 * PROXY is the proxy's own command:
 *   PROXY TOPOLOGY  master, replicas, their health, the epoch and Sentinels
 *   PROXY STATS     request and connection counters of the whole process
 *   PROXY VERSION   the version
 *   PROXY CONFIG RELOAD  read the configuration again and apply it
 *   PROXY HELP      this list
 * Its replies are bulk strings of "key:value" lines, like INFO.
 */
#include "proxy/local.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/config.h"
#include "lib/log.h"
#include "lib/strbuf.h"
#include "lib/topology.h"
#include "proxy/backend.h"
#include "proxy/bconn.h"
#include "proxy/client.h"
#include "proxy/commands.h"
#include "proxy/hello.h"
#include "proxy/proxy.h"
#include "proxy/reload.h"
#include "proxy/req.h"
#include "proxy/session.h"
#include "proxy/worker.h"

static void local_reply(struct client *c, struct req *r, const char *resp, size_t len)
{
    if (!req_reply_raw(&c->w->reqs, r, resp, len)) {
        client_close(c, "out of memory");
    }
}

static void local_reply_sb(struct client *c, struct req *r, struct strbuf *sb)
{
    if (sb->oom) {
        req_reply_error(&c->w->reqs, r, "ERR sentinel-proxy: out of memory");
    } else {
        local_reply(c, r, sb->buf, sb->len);
    }
    strbuf_free(sb);
}

static void local_reply_bulk_text(struct client *c, struct req *r, struct strbuf *text)
{
    struct strbuf sb;

    strbuf_init(&sb);
    strbuf_bulk(&sb, text->buf != NULL ? text->buf : "", text->len);
    sb.oom = sb.oom || text->oom;
    strbuf_free(text);
    local_reply_sb(c, r, &sb);
}

static void local_wrong_arity(struct client *c, struct req *r)
{
    req_reply_errorf(&c->w->reqs, r, "ERR wrong number of arguments for '%s' command",
                     r->ci != NULL ? r->ci->name : "?");
}

/* ---- PROXY ---------------------------------------------------------------- */

static const char *local_backend_state(const struct backend *be)
{
    switch (be->state) {
    case BE_UP:
        return "up";
    case BE_DOWN:
        return "down";
    default:
        return "connecting";
    }
}

static const char *local_role(enum backend_role role)
{
    return role == BACKEND_MASTER ? "master" : role == BACKEND_REPLICA ? "replica" : "retired";
}

/* Requests routed to each backend by every worker (the read/write split):
 * this worker's live counters plus the others' from their last tick. */
static void local_backend_totals(struct worker *w, struct strbuf *sb)
{
    struct proxy *px = w->px;
    size_t n = 0;
    struct worker_backend_snap *all = worker_backend_totals(px, w, &n);

    if (all == NULL) {
        sb->oom = true;
        return;
    }
    strbuf_printf(sb, "# Backends (all %d workers)\r\n", px->nworkers);
    for (size_t j = 0; j < n; j++) {
        strbuf_printf(sb, "routed%zu:addr=%s,role=%s,requests=%llu,inflight=%u,failures=%llu\r\n",
                      j, all[j].name, local_role(all[j].role), (unsigned long long)all[j].requests,
                      all[j].inflight, (unsigned long long)all[j].failures);
    }
    free(all);
}

static void local_topology(struct client *c, struct strbuf *sb)
{
    struct worker *w = c->w;
    struct topology *t = w->topo;
    struct proxy *px = w->px;
    char addr[ADDR_TEXT_MAX];
    int i = 0;

    strbuf_printf(sb, "# Topology\r\n");
    strbuf_printf(sb, "mode:%s\r\n", w->cfg->has_sentinel ? "sentinel" : "fixed");
    if (w->cfg->has_sentinel) {
        strbuf_printf(sb, "master_name:%s\r\n", w->cfg->master_name);
    }
    strbuf_printf(sb, "epoch:%llu\r\n", t != NULL ? (unsigned long long)t->epoch : 0ULL);
    strbuf_printf(sb, "version:%llu\r\n", t != NULL ? (unsigned long long)t->version : 0ULL);
    if (t != NULL && t->has_master) {
        addr_format(&t->master, addr, sizeof(addr));
        strbuf_printf(sb, "master:%s\r\n", addr);
    } else {
        strbuf_printf(sb, "master:none\r\n");
    }
    strbuf_printf(sb, "replicas:%zu\r\n", t != NULL ? t->nreplicas : 0);
    for (size_t k = 0; t != NULL && k < t->nreplicas; k++) {
        const struct topology_replica *rp = &t->replicas[k];
        addr_format(&rp->addr, addr, sizeof(addr));
        strbuf_printf(sb, "replica%zu:addr=%s,healthy=%d,offset=%llu,weight=%d,zone=%s\r\n", k,
                      addr, rp->healthy ? 1 : 0, (unsigned long long)rp->offset, rp->weight,
                      rp->zone[0] != '\0' ? rp->zone : "-");
    }
    pthread_mutex_lock(&px->status_lock);
    if (px->control_status != NULL) {
        strbuf_append(sb, px->control_status, strlen(px->control_status));
    }
    pthread_mutex_unlock(&px->status_lock);
    local_backend_totals(w, sb);
    strbuf_printf(sb, "# Backends (worker %d)\r\n", w->id);
    for (struct backend *be = w->backends; be != NULL; be = be->next, i++) {
        int shared = 0, stalled = 0, resp3 = 0;
        for (int k = 0; k < backend_all_slots(be); k++) {
            shared += be->shared[k] != NULL;
            resp3 += be->shared[k] != NULL && k >= be->nslots;
            stalled += be->shared[k] != NULL && be->shared[k]->stalled;
        }
        strbuf_printf(sb,
                      "backend%d:addr=%s,role=%s,state=%s,shared=%d,resp3=%d,stalled=%d,"
                      "requests=%llu,inflight=%u,failures=%llu,healthy=%d,offset=%llu\r\n",
                      i, be->name, local_role(be->role), local_backend_state(be), shared, resp3,
                      stalled, (unsigned long long)be->nrequests, be->inflight,
                      (unsigned long long)be->nerrors,
                      be->role == BACKEND_MASTER ? 1 : (int)be->healthy,
                      (unsigned long long)(be->role == BACKEND_MASTER ? w->ofs.master_offset
                                                                      : be->ofs.offset));
    }
}

/* A counter summed over every worker: name, and its place in a worker. */
#define LOCAL_SUM(name, member)                                                                    \
    do {                                                                                           \
        uint64_t sum = 0;                                                                          \
        for (int k = 0; k < px->nworkers; k++) {                                                   \
            sum += __atomic_load_n(&px->workers[k].member, __ATOMIC_RELAXED);                      \
        }                                                                                          \
        strbuf_printf(sb, name ":%llu\r\n", (unsigned long long)sum);                              \
    } while (0)
#define LOCAL_STAT(field) LOCAL_SUM(#field, stats.field)

/* The longest stall any worker saw, in milliseconds. */
static void local_stall_longest(struct proxy *px, struct strbuf *sb)
{
    uint64_t most = 0;

    for (int k = 0; k < px->nworkers; k++) {
        uint64_t us = __atomic_load_n(&px->workers[k].stats.stall_longest_us, __ATOMIC_RELAXED);
        most = us > most ? us : most;
    }
    strbuf_printf(sb, "stall_longest_ms:%llu\r\n", (unsigned long long)(most / 1000));
}

/* Dedicated connections of this worker: lent to a client, or spare. */
static void local_dedicated(struct worker *w, struct strbuf *sb)
{
    int lent = 0, spare = 0;

    for (struct backend *be = w->backends; be != NULL; be = be->next) {
        spare += be->nspare;
        for (struct bconn *bc = be->conns; bc != NULL; bc = bc->next) {
            lent += bc->dedicated && bc->owner != NULL;
        }
    }
    strbuf_printf(sb, "dedicated_lent_worker:%d\r\ndedicated_spare_worker:%d\r\n", lent, spare);
}

static void local_stats(struct client *c, struct strbuf *sb)
{
    struct proxy *px = c->w->px;

    strbuf_printf(sb, "# Stats\r\n");
    strbuf_printf(sb, "version:%s\r\n", PROXY_VERSION);
    strbuf_printf(sb, "workers:%d\r\n", px->nworkers);
    strbuf_printf(sb, "commands:%zu\r\ncommands_source:%s\r\n", cmdtable_size(proxy_cmds(px)),
                  cmdtable_from_server(proxy_cmds(px)) ? "master" : "built-in");
    strbuf_printf(sb, "connected_clients:%d\r\n", __atomic_load_n(&px->nclients, __ATOMIC_RELAXED));
    LOCAL_STAT(connections);
    LOCAL_STAT(refused);
    LOCAL_STAT(protocol_errors);
    LOCAL_STAT(requests);
    LOCAL_STAT(local);
    LOCAL_SUM("errors_sent", reqs.errors_sent);
    LOCAL_STAT(retried);
    LOCAL_STAT(unknown);
    LOCAL_STAT(acks_waited);
    LOCAL_STAT(acks_failed);
    LOCAL_STAT(held_timeouts);
    LOCAL_STAT(client_reads);
    LOCAL_STAT(client_writes);
    LOCAL_STAT(tls_handshakes);
    LOCAL_STAT(tls_handshake_failures);
    LOCAL_STAT(backend_connects);
    LOCAL_STAT(backend_closes);
    LOCAL_STAT(backend_lost);
    LOCAL_STAT(backend_reads);
    LOCAL_STAT(backend_writes);
    LOCAL_STAT(reads_master);
    LOCAL_STAT(reads_replicas);
    LOCAL_STAT(ryw_to_master);
    LOCAL_STAT(ryw_checked);
    LOCAL_STAT(ryw_again);
    LOCAL_STAT(stalls);
    LOCAL_STAT(stall_conns_opened);
    LOCAL_STAT(stall_conns_closed);
    local_stall_longest(px, sb);
    LOCAL_STAT(deep_conns_opened);
    LOCAL_STAT(deep_conns_closed);
    strbuf_printf(sb, "held_bytes_worker:%llu\r\n", (unsigned long long)c->w->held_bytes);
    local_dedicated(c->w, sb);
    strbuf_printf(sb, "chunks_live_worker:%zu\r\n", c->w->pool.live);
    strbuf_printf(sb, "chunks_pooled_worker:%zu\r\n", c->w->pool.nfree);
}

/* PROXY CONFIG RELOAD: the control thread reloads; the request waits (no
 * thread does) among the worker's waiting clients, and is answered when
 * they are woken after the reload. False while it waits. */
static bool local_reload(struct client *c, struct req *r)
{
    char msg[CONFIG_ERR_MAX * 3];
    struct strbuf sb;
    bool ok;

    if (c->reload_ticket == 0) {
        c->reload_ticket = reload_ask_async(c->w->px->reload);
        return false;
    }
    if (!reload_outcome(c->w->px->reload, c->reload_ticket, msg, sizeof(msg), &ok)) {
        return false;
    }
    c->reload_ticket = 0;
    for (char *p = msg; *p != '\0'; p++) {
        *p = *p == '\r' || *p == '\n' ? ' ' : *p; /* one RESP line */
    }
    strbuf_init(&sb);
    if (ok) {
        strbuf_printf(&sb, "+%s\r\n", msg);
        local_reply_sb(c, r, &sb);
    } else {
        req_reply_errorf(&c->w->reqs, r, "ERR %s", msg);
    }
    return true;
}

static bool local_proxy(struct client *c, struct req *r)
{
    static const char help[] = "*6\r\n"
                               "+PROXY TOPOLOGY - master, replicas, health, epoch, Sentinels\r\n"
                               "+PROXY STATS - counters of the whole process\r\n"
                               "+PROXY VERSION - the proxy's version\r\n"
                               "+PROXY CONFIG RELOAD - read the configuration again and apply "
                               "it, as SIGHUP does\r\n"
                               "+PROXY HELP - this text\r\n"
                               "+(answered by sentinel-proxy, never forwarded)\r\n";
    struct req_first_args a;
    struct strbuf sb;
    bool done = true;

    strbuf_init(&sb);
    if (!req_args_first(r, &a) || a.argc < 2) {
        local_wrong_arity(c, r);
    } else if (req_arg_is(&a, 1, "topology")) {
        local_topology(c, &sb);
        local_reply_bulk_text(c, r, &sb);
    } else if (req_arg_is(&a, 1, "stats")) {
        local_stats(c, &sb);
        local_reply_bulk_text(c, r, &sb);
    } else if (req_arg_is(&a, 1, "version")) {
        strbuf_printf(&sb, "sentinel-proxy %s", PROXY_VERSION);
        local_reply_bulk_text(c, r, &sb);
    } else if (req_arg_is(&a, 1, "config") && a.argc == 3 && req_arg_is(&a, 2, "reload")) {
        done = local_reload(c, r);
    } else if (req_arg_is(&a, 1, "help")) {
        local_reply(c, r, help, sizeof(help) - 1);
    } else {
        req_reply_errorf(&c->w->reqs, r, "ERR unknown subcommand '%.*s'. Try PROXY HELP.",
                         (int)(a.argl[1] > 64 ? 64 : a.argl[1]), a.argv[1]);
    }
    free(a.buf);
    return done;
}

/* ---- CLIENT SETNAME / GETNAME while sharing connections ------------------ */

static void local_client(struct client *c, struct req *r)
{
    struct req_first_args a;
    bool setname = strcmp(r->ci->name, "client|setname") == 0;

    if (!req_args_first(r, &a) || a.argc != (setname ? 3 : 2)) {
        local_wrong_arity(c, r);
    } else if (!setname) {
        struct strbuf sb;
        strbuf_init(&sb);
        if (c->sess.name == NULL) {
            strbuf_append(&sb, c->sess.resp == 3 ? "_\r\n" : "$-1\r\n", c->sess.resp == 3 ? 3 : 5);
        } else {
            strbuf_bulk(&sb, c->sess.name, c->sess.name_len);
        }
        local_reply_sb(c, r, &sb);
    } else {
        bool valid = true;
        for (size_t i = 0; i < a.argl[2]; i++) {
            valid = valid && a.argv[2][i] >= '!' && a.argv[2][i] <= '~';
        }
        if (!valid) {
            req_reply_error(&c->w->reqs, r,
                            "ERR Client names cannot contain spaces, newlines or special "
                            "characters.");
        } else if (!session_set_name(&c->sess, a.argv[2], a.argl[2])) {
            req_reply_error(&c->w->reqs, r, "ERR sentinel-proxy: out of memory");
        } else {
            local_reply(c, r, "+OK\r\n", 5);
        }
    }
    free(a.buf);
}

/* ---- UNSUBSCRIBE and friends from a client with no subscriptions --------- */

#define LOCAL_UNSUBSCRIBE_MAX (64u << 20) /* largest request answered */

/* redis-server confirms every name given (or, given none, a null name) with
 * the count of subscriptions left, here 0; as push messages in RESP3. */
static void local_unsubscribe(struct client *c, struct req *r)
{
    const char *kind = r->ci->id == CMD_UNSUBSCRIBE    ? "unsubscribe"
                       : r->ci->id == CMD_PUNSUBSCRIBE ? "punsubscribe"
                                                       : "sunsubscribe";
    bool resp3 = c->sess.resp == 3;
    struct req_args a;
    struct strbuf sb;

    req_args_all(r, LOCAL_UNSUBSCRIBE_MAX, &a);
    if (a.argc < 1) {
        req_reply_errorf(&c->w->reqs, r, "ERR sentinel-proxy: cannot answer this %s (too large)",
                         kind);
        req_args_free(&a);
        return;
    }
    strbuf_init(&sb);
    for (int i = 1; i < (a.argc > 1 ? a.argc : 2); i++) {
        strbuf_append(&sb, resp3 ? ">3\r\n" : "*3\r\n", 4);
        strbuf_bulk(&sb, kind, strlen(kind));
        if (a.argc == 1) {
            strbuf_append(&sb, resp3 ? "_\r\n" : "$-1\r\n", resp3 ? 3 : 5);
        } else {
            strbuf_bulk(&sb, a.argv[i], a.argl[i]);
        }
        strbuf_append(&sb, ":0\r\n", 4);
    }
    local_reply_sb(c, r, &sb);
    req_args_free(&a);
}

/* ---- a transaction whose connection was lost ----------------------------- */

static void local_lost_multi(struct client *c, struct req *r)
{
    int id = r->ci != NULL ? r->ci->id : CMD_OTHER;

    if (id == CMD_EXEC) {
        session_lost_multi_over(&c->sess);
        req_reply_error(&c->w->reqs, r,
                        "EXECABORT Transaction discarded because the connection to the master "
                        "was lost (sentinel-proxy)");
    } else if (id == CMD_DISCARD) {
        session_lost_multi_over(&c->sess);
        local_reply(c, r, "+OK\r\n", 5);
    } else {
        req_reply_error(&c->w->reqs, r,
                        "ERR sentinel-proxy: connection to the master lost inside MULTI; the "
                        "transaction will be discarded (send EXEC or DISCARD)");
    }
}

/* redis-server's error for a command it does not know (it gives it before
 * looking at authentication): the name and the first arguments, quoted,
 * at most about 128 bytes of each. */
static void local_unknown_command(struct client *c, struct req *r)
{
    struct req_first_args a;
    struct strbuf sb;

    strbuf_init(&sb);
    if (!req_args_first(r, &a) || a.argc < 1) {
        req_reply_error(&c->w->reqs, r, "ERR unknown command");
    } else {
        for (int i = 1; i < a.argc && sb.len < 128; i++) {
            strbuf_printf(&sb, "'%.*s' ",
                          (int)(a.argl[i] < 128 - sb.len ? a.argl[i] : 128 - sb.len), a.argv[i]);
        }
        req_reply_errorf(&c->w->reqs, r, "ERR unknown command '%.*s', with args beginning with: %s",
                         (int)(a.argl[0] > 128 ? 128 : a.argl[0]), a.argv[0],
                         sb.buf != NULL ? sb.buf : "");
    }
    strbuf_free(&sb);
    free(a.buf);
}

/* ---- HELLO from a client that shares connections ------------------------- */

/* Answer HELLO as the master would (router_hello sent it here: no other
 * credentials than the proxy's, and the master's facts known unless the
 * HELLO is refused). The protocol changes for the requests that follow. */
static void local_hello(struct client *c, struct req *r)
{
    const struct backend *master = c->w->master;
    struct req_args a;
    struct hello_args h;
    struct strbuf sb;

    req_args_all(r, 64u << 10, &a);
    if (a.argc < 1) {
        req_reply_error(&c->w->reqs, r, "ERR sentinel-proxy: cannot answer this HELLO");
        req_args_free(&a);
        return;
    }
    hello_parse(&a, &h);
    if (h.error[0] != '\0') {
        req_reply_error(&c->w->reqs, r, h.error);
    } else if (c->w->cfg->backend_password != NULL && !c->sess.authed && h.auth == 0) {
        req_reply_error(&c->w->reqs, r,
                        "NOAUTH HELLO must be called with the client already authenticated, "
                        "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                        "authenticate the client and select the RESP protocol version at the "
                        "same time");
    } else if (master == NULL || master->hello.resp3 != HELLO_RESP3) {
        req_reply_error(&c->w->reqs, r, "ERR sentinel-proxy: cannot answer HELLO now");
    } else if (h.name != 0 && !session_set_name(&c->sess, a.argv[h.name], a.argl[h.name])) {
        req_reply_error(&c->w->reqs, r, "ERR sentinel-proxy: out of memory");
    } else {
        if (h.auth != 0) {
            session_login(&c->sess); /* the proxy's credentials (router_hello said so) */
        }
        if (h.proto != 0) {
            c->sess.resp = (uint8_t)h.proto;
        }
        strbuf_init(&sb);
        hello_reply(&master->hello, c->sess.resp, c->id, &sb);
        local_reply_sb(c, r, &sb);
    }
    req_args_free(&a);
}

/* Before a client has authenticated (backend-password set). */
static void local_unauthenticated(struct client *c, struct req *r)
{
    if (r->ci == NULL && cmdtable_from_server(proxy_cmds(c->w->px))) {
        local_unknown_command(c, r); /* unknown to the server too */
    } else if (r->ci != NULL && r->ci->id == CMD_AUTH) {
        /* The proxy's own credentials (router_auth_is_proxys said so). */
        session_login(&c->sess);
        local_reply(c, r, "+OK\r\n", 5);
    } else if (r->ci != NULL && r->ci->id == CMD_HELLO) {
        local_hello(c, r); /* refused without the proxy's credentials */
    } else {
        req_reply_error(&c->w->reqs, r, "NOAUTH Authentication required.");
    }
}

bool local_handle(struct client *c, struct req *r)
{
    const struct cmd_info *ci = r->ci;

    if (c->sess.lost_multi) {
        local_lost_multi(c, r);
        return true;
    }
    if (c->w->cfg->backend_password != NULL && !c->sess.authed &&
        (ci == NULL || (ci->id != CMD_QUIT && ci->id != CMD_RESET))) {
        local_unauthenticated(c, r);
        return true;
    }
    if (ci == NULL) {
        req_reply_error(&c->w->reqs, r, "ERR sentinel-proxy: cannot answer an unknown command");
        return true;
    }
    if ((ci->arity > 0 && r->argc != (uint32_t)ci->arity) ||
        (ci->arity < 0 && r->argc < (uint32_t)-ci->arity)) {
        local_wrong_arity(c, r);
        return true;
    }
    switch (ci->proxy) {
    case CMDP_CLOSE:
        log_warn("client %llu sent an HTTP request line ('%s'): closing the connection",
                 (unsigned long long)c->id, ci->name);
        client_close(c, "HTTP request");
        return true;
    case CMDP_REFUSE:
        req_reply_errorf(&c->w->reqs, r,
                         "ERR sentinel-proxy: '%s' is not supported through the proxy", ci->name);
        return true;
    default:
        break;
    }
    switch (ci->id) {
    case CMD_AUTH: /* the proxy's own credentials: nothing to change */
        local_reply(c, r, "+OK\r\n", 5);
        return true;
    case CMD_QUIT:
        /* Under CLIENT REPLY OFF the server would close without a word. */
        local_reply(c, r, "+OK\r\n", c->sess.reply_off ? 0 : 5);
        r->flags |= REQ_CLOSE_AFTER;
        c->flags |= CL_CLOSE_AFTER;
        client_discard_after(c, r); /* what was pipelined behind QUIT never runs */
        return true;
    case CMD_RESET:
        session_reset(&c->sess);
        local_reply(c, r, "+RESET\r\n", 8);
        return true;
    case CMD_PROXY:
        return local_proxy(c, r);
    case CMD_CLIENT:
        local_client(c, r);
        return true;
    case CMD_HELLO:
        local_hello(c, r);
        return true;
    case CMD_UNSUBSCRIBE:
    case CMD_PUNSUBSCRIBE:
    case CMD_SUNSUBSCRIBE:
        local_unsubscribe(c, r);
        return true;
    default:
        req_reply_errorf(&c->w->reqs, r, "ERR sentinel-proxy: cannot answer '%s'", ci->name);
        return true;
    }
    return true;
}
