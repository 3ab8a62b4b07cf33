/*
 * bconn.c - connections to backend servers: connecting, writing queued
 * requests with one writev, scanning replies and matching them to requests
 * in order, streaming replies to a subscribed owner, and handing requests
 * back when a connection fails.
 */
#include "proxy/bconn.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/config.h"
#include "lib/evio.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/tls.h"
#include "proxy/backend.h"
#include "proxy/client.h"
#include "proxy/commands.h"
#include "proxy/offsets.h"
#include "proxy/proxy.h"
#include "proxy/req.h"
#include "proxy/resub.h"
#include "proxy/router.h"
#include "proxy/session.h"
#include "proxy/worker.h"

#define BCONN_READS_PER_EVENT 32
#define BCONN_IOV_MAX         IOV_MAX
#define BCONN_FILL_EXTRA      3 /* chunks a bulk read may fill beyond the current one */
#define BCONN_MAX_BULK        ((uint64_t)1 << 40) /* replies are bounded by client-output-limit */
#define BCONN_SUSPECT_TIME    0.2        /* seconds a backend that refused a command is avoided */
#define BCONN_HELLO_MAX       (1u << 20) /* largest HELLO reply read (modules listed) */

static void bconn_io_cb(struct ev_loop *loop, ev_io *io, int revents);
static void bconn_timer_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void bconn_close_how(struct bconn *bc, const char *why, bool abort);

static const struct config *bconn_cfg(const struct bconn *bc)
{
    return bc->w->cfg;
}

static void bconn_hand_back(struct bconn *bc, struct backend *be, struct req *r, const char *addr);
static struct req *bconn_unqueue(struct bconn *bc, struct req *prev);

void bconn_take_back_unsent(struct bconn *bc)
{
    struct req *prev = NULL, *r = bc->head, *cut_prev;

    while (r != NULL && r != bc->unsent) {
        prev = r;
        r = r->bnext;
    }
    if (r != NULL && r->sent > 0) {
        prev = r; /* partly written: it must be answered or reset */
        r = r->bnext;
    }
    cut_prev = prev;
    for (; r != NULL; r = r->bnext) {
        if (r->flags & REQ_NOREPLY) {
            cut_prev = r;
        }
    }
    /* One at a time: those still queued stay dispatched, so that a client
     * closed by a hand-back only orphans them (its other requests). */
    while (bc->state != BC_CLOSED && (cut_prev != NULL ? cut_prev->bnext : bc->head) != NULL) {
        r = bconn_unqueue(bc, cut_prev);
        bconn_hand_back(bc, bc->be, r, bc->be->name);
    }
}

/* ---- connections ------------------------------------------------------- */

/* The events a connection waits for: readable unless paused, writable while
 * something is left to write. */
static unsigned bconn_wanted(const struct bconn *bc)
{
    bool more = bc->unsent != NULL && bc->nwritten < bc->window &&
                (bc->gate == NULL || bc->gate->sent < bc->gate->in.bytes);

    more |= transport_out_pending(&bc->t); /* TLS: encrypted bytes still to send */
    return (bc->paused ? 0u : (unsigned)EV_READ) | (more ? (unsigned)EV_WRITE : 0u);
}

static void bconn_set_events(struct bconn *bc, unsigned ev)
{
    if (bc->state != BC_CLOSED) {
        evio_arm(bc->w->loop, &bc->io, bc->t.fd, &bc->io_events, ev);
        if (ev & EV_READ) {
            evio_feed_pending(bc->w->loop, &bc->io, &bc->t);
        }
    }
}

/* The proxy's own first requests on a new connection: credentials for the
 * backend, the protocol of a RESP3 pool's connection (its reply tells the
 * proxy what the server is: hello.h), and a name that shows in CLIENT
 * LIST. */
static bool bconn_handshake(struct bconn *bc)
{
    const struct config *cfg = bconn_cfg(bc);
    struct worker *w = bc->w;
    struct req *r;

    if (cfg->backend_password != NULL) {
        const char *argv[3] = {"AUTH", NULL, NULL};
        size_t argl[3] = {4, 0, 0};
        int argc = 2;
        if (cfg->backend_username != NULL) {
            argv[1] = cfg->backend_username;
            argl[1] = strlen(cfg->backend_username);
            argc = 3;
        }
        argv[argc - 1] = cfg->backend_password;
        argl[argc - 1] = strlen(cfg->backend_password);
        r = req_internal(&w->reqs, argc, argv, argl);
        if (r == NULL) {
            return false;
        }
        bconn_enqueue(bc, r);
    }
    if (bc->resp == 3) {
        const char *argv[] = {"HELLO", "3"};
        size_t argl[] = {5, 1};
        r = req_internal(&w->reqs, 2, argv, argl);
        if (r == NULL) {
            return false;
        }
        r->flags |= REQ_HELLO;
        bconn_enqueue(bc, r);
    }
    if (!bc->dedicated) {
        const char *argv[] = {"CLIENT", "SETNAME", "sentinel-proxy"};
        size_t argl[] = {6, 7, 14};
        r = req_internal(&w->reqs, 3, argv, argl);
        if (r == NULL) {
            return false;
        }
        r->flags |= REQ_NAME;
        bconn_enqueue(bc, r);
        /* Clients' requests are written once it is answered: a server that
         * refuses the connection (maxclients, credentials) has then run
         * none of them, and they can go elsewhere. */
        bconn_gate_after(bc, NULL);
    }
    return true;
}

struct bconn *bconn_connect(struct backend *be, bool dedicated, int resp)
{
    struct worker *w = be->w;
    struct tls_ctx *tls = w->px->tls.servers;
    char err[256];
    struct bconn *bc;
    int fd;

    fd = net_connect(&be->addr, err, sizeof(err));
    if (fd < 0) {
        backend_mark_down(be, err);
        return NULL;
    }
    bc = calloc(1, sizeof(*bc));
    if (bc == NULL) {
        close(fd);
        return NULL;
    }
    if (tls == NULL) {
        transport_plain(&bc->t, fd);
    } else if (!transport_tls(&bc->t, fd, tls, be->addr.host, err, sizeof(err))) {
        free(bc);
        close(fd);
        backend_mark_down(be, err);
        return NULL;
    }
    WORKER_COUNT(w, backend_connects, 1);
    bc->be = be;
    bc->w = w;
    bc->id = ++w->next_bconn_id;
    bc->dedicated = dedicated;
    bc->window = dedicated || bconn_cfg(bc)->backend_window == 0
                     ? UINT32_MAX
                     : (uint32_t)bconn_cfg(bc)->backend_window;
    bc->resp = (uint8_t)resp;
    replyscan_init(&bc->rs, BCONN_MAX_BULK);
    spans_init(&bc->cur);
    ev_io_init(&bc->io, bconn_io_cb, fd, EV_WRITE);
    bc->io.data = bc;
    ev_io_start(w->loop, &bc->io);
    bc->io_events = EV_WRITE;
    ev_timer_init(&bc->timer, bconn_timer_cb, (double)bconn_cfg(bc)->connect_timeout_ms / 1000.0,
                  0);
    bc->timer.data = bc;
    ev_timer_start(w->loop, &bc->timer);
    backend_adopt(be, bc);
    if (!bconn_handshake(bc)) {
        bconn_close(bc, "out of memory");
        return NULL;
    }
    return bc;
}

void bconn_enqueue(struct bconn *bc, struct req *r)
{
    r->bc = bc;
    r->bnext = NULL;
    r->sent = 0;
    r->flags |= REQ_DISPATCHED;
    if (bc->dedicated) {
        r->flags |= REQ_DEDICATED;
    } else {
        r->flags &= ~REQ_DEDICATED;
    }
    if (bc->tail != NULL) {
        bc->tail->bnext = r;
    } else {
        bc->head = r;
        bc->progress_at = bc->w->now; /* it waits from now */
    }
    bc->tail = r;
    if (bc->unsent == NULL) {
        bc->unsent = r;
    }
    bc->nqueued++;
    /* What its client's replies have been, or (none yet) the server's
     * lately; the proxy's own count nothing. */
    r->expect = r->client == NULL            ? 0
                : r->client->reply_size != 0 ? r->client->reply_size
                                             : bc->be->reply_avg;
    bc->expect += r->expect;
    bc->marker_last = false; /* session_send_marker sets it again for its marker */
    if (!(r->flags & REQ_INTERNAL)) {
        bc->be->nrequests++;
    }
    if (!(r->flags & REQ_NOREPLY)) {
        bc->be->inflight++;
    }
    if (bc->state == BC_READY) {
        worker_mark_bconn(bc->w, bc);
    }
}

/* Take the request after prev (the head when prev is NULL) off the queue;
 * the caller decides its fate. With bconn_enqueue, the only place that
 * counts what is queued. */
static struct req *bconn_unqueue(struct bconn *bc, struct req *prev)
{
    struct req *r = prev != NULL ? prev->bnext : bc->head;

    if (prev != NULL) {
        prev->bnext = r->bnext;
    } else {
        bc->head = r->bnext;
    }
    if (bc->tail == r) {
        bc->tail = prev;
    }
    if (bc->gate == r) {
        bc->gate = NULL; /* answered or gone: what follows may be written */
    }
    if (bc->probed == r) {
        bc->probed = NULL; /* looked at again from the first unsent */
    }
    if (bc->unsent == r) {
        bc->unsent = r->bnext; /* not written completely */
    } else if (r->sent == r->in.bytes && bc->nwritten > 0) {
        bc->nwritten--;
    }
    bc->nqueued--;
    bc->expect -= r->expect;
    r->expect = 0;
    if (!(r->flags & REQ_NOREPLY)) {
        bc->be->inflight--;
    }
    r->bnext = NULL;
    r->bc = NULL;
    r->flags &= ~REQ_DISPATCHED;
    return r;
}

/* Take the head request off the queue. */
static struct req *bconn_pop(struct bconn *bc)
{
    return bconn_unqueue(bc, NULL);
}

/* A request that expects no reply (sent on a streaming session) leaves the
 * queue once written and once everything before it was answered; from then
 * on every reply on this connection streams to its owner. */
static void bconn_pop_noreply(struct bconn *bc)
{
    while (bc->head != NULL && (bc->head->flags & REQ_NOREPLY) && bc->head != bc->unsent) {
        struct req *r = bconn_pop(bc);
        bc->streaming = true;
        if (r->client == NULL) {
            req_free(&bc->w->reqs, r);
        }
    }
}

/* Worker 0 asks each new master for its command table (COMMAND), so that
 * commands of newer servers and modules are routed by their real flags. */
static void bconn_ask_commands(struct bconn *bc)
{
    static const char *const argv[] = {"COMMAND"};
    static const size_t argl[] = {7};
    struct worker *w = bc->w;
    struct req *r;

    if (w->id != 0 || bc->dedicated || bc->resp != 2 || bc->be->role != BACKEND_MASTER ||
        w->commands_from == bc->be || (r = req_internal(&w->reqs, 1, argv, argl)) == NULL) {
        return;
    }
    r->flags |= REQ_COMMANDS;
    w->commands_from = bc->be;
    bconn_enqueue(bc, r);
}

static void bconn_commands_reply(struct bconn *bc, struct req *r)
{
    struct cmdtable *t = NULL;
    size_t len = 0;
    char *buf = (r->flags & REQ_ERROR) ? NULL : req_flatten_out(r, 64u << 20, &len);

    if (buf != NULL) {
        t = cmdtable_from_reply(buf, len);
        free(buf);
    }
    if (t == NULL) {
        log_warn("backend %s: could not read its COMMAND table; keeping the built-in one",
                 bc->be->name);
        return;
    }
    log_info("command table: %zu commands and sub-commands from %s", cmdtable_size(t),
             bc->be->name);
    proxy_set_cmds(bc->w->px, t);
}

void bconn_flush(struct bconn *bc)
{
    struct iovec iov[BCONN_IOV_MAX];
    struct req *r;
    ssize_t n;
    int k = 0;
    uint32_t ahead;
    bool clients = false;

    if (bc->state != BC_READY) {
        return;
    }
    offsets_before_flush(bc);
    bconn_ask_commands(bc);
    r = bc->gate != NULL && bc->gate->sent == bc->gate->in.bytes ? NULL : bc->unsent;
    for (ahead = bc->nwritten; r != NULL && k < BCONN_IOV_MAX && ahead < bc->window;
         r = r->bnext, ahead++) {
        k = spans_iov(&r->in, r->sent, iov, k, BCONN_IOV_MAX);
        clients |= !(r->flags & REQ_INTERNAL);
        if (r == bc->gate) {
            break;
        }
    }
    if (k == 0) {
        /* TLS: what the transport holds still goes out. */
        if (transport_out_pending(&bc->t) && transport_writev(&bc->t, iov, 0) < 0 &&
            errno != EAGAIN && errno != EWOULDBLOCK) {
            bconn_lost(bc, strerror(errno));
            return;
        }
        bconn_set_events(bc, bconn_wanted(bc));
        return;
    }
    n = transport_writev(&bc->t, iov, k);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            bconn_set_events(bc, bconn_wanted(bc));
            return;
        }
        bconn_lost(bc, strerror(errno));
        return;
    }
    WORKER_COUNT(bc->w, backend_writes, 1);
    if (bc->be->switch_started > 0 && clients && bc->be->role == BACKEND_MASTER) {
        log_info("first request forwarded to the new master %s, %.0f ms after the first signal "
                 "of the switch",
                 bc->be->name, (ev_time() - bc->be->switch_started) * 1000);
        bc->be->switch_started = 0;
    }
    while (bc->unsent != NULL && n > 0) {
        r = bc->unsent;
        uint64_t left = r->in.bytes - r->sent;
        uint64_t take = (uint64_t)n < left ? (uint64_t)n : left;
        r->sent += take;
        n -= (ssize_t)take;
        if (r->sent == r->in.bytes) {
            bc->unsent = r->bnext;
            bc->nwritten++;
        }
    }
    bconn_pop_noreply(bc);
    bconn_set_events(bc, bconn_wanted(bc));
}

void bconn_resume(struct bconn *bc)
{
    if (bc->paused && bc->state == BC_READY) {
        bc->paused = false;
        bconn_set_events(bc, bconn_wanted(bc));
    }
}

/* A dedicated connection whose owner does not read its replies is not read
 * either: the server holds the output (and applies its own limits to it, as
 * it would to a client connected directly). */
static bool bconn_owner_full(struct bconn *bc)
{
    if (bc->owner == NULL || bc->owner->outbytes <= bconn_cfg(bc)->client_backlog_limit) {
        return false;
    }
    bc->paused = true;
    bc->lagging = true;
    bconn_set_events(bc, bconn_wanted(bc));
    return true;
}

/* ---- replies ------------------------------------------------------------- */

/* The server refused a new shared connection's handshake (credentials,
 * maxclients...): nothing of the clients' was written behind it (the gate),
 * so their requests go elsewhere as never sent. */
static void bconn_refused(struct bconn *bc, struct req *r, const char *text)
{
    struct backend *be = bc->be;
    bool credentials = strstr(text, "WRONGPASS") != NULL || strstr(text, "NOAUTH") != NULL ||
                       strstr(text, "password") != NULL;
    char why[192];

    req_free(&bc->w->reqs, r);
    snprintf(why, sizeof(why), "handshake refused: %s%s", text,
             credentials ? " (check backend-username/backend-password)" : "");
    bconn_close(bc, why);
    backend_mark_down(be, why);
}

static bool bconn_has_noreply(const struct bconn *bc)
{
    for (const struct req *q = bc->head; q != NULL; q = q->bnext) {
        if (q->flags & REQ_NOREPLY) {
            return true;
        }
    }
    return false;
}

/* A session's database could not be selected on a new dedicated
 * connection; nothing of the session's was written behind it (the gate). A
 * server busy with a script, or loading, may take it in a moment: the
 * requests go back to the client and the session moves to another
 * connection once the server has been avoided for a moment. Otherwise (no
 * such database now) the client is closed, as a direct connection whose
 * server went away would be, and would find its SELECT refused. */
static void bconn_state_refused(struct bconn *bc, struct req *r, const char *text)
{
    struct client *owner = bc->owner;

    req_free(&bc->w->reqs, r);
    if (owner != NULL && strncmp(text, "-BUSY ", 6) != 0 && strncmp(text, "-LOADING ", 9) != 0) {
        log_warn("client %llu closed: its database could not be selected on a new connection "
                 "to %s (%s)",
                 (unsigned long long)owner->id, bc->be->name, text);
        bc->owner = NULL;
        owner->ded = NULL;
        bconn_close(bc, NULL);
        client_close(owner, NULL);
        return;
    }
    bc->be->suspect_until = bc->w->now + BCONN_SUSPECT_TIME;
    if (bc->streaming || bconn_has_noreply(bc)) {
        /* A streaming session (subscriptions replayed, CLIENT REPLY OFF):
         * what it queued expects no reply and must not be written here
         * either; the session is replayed on a new connection (its
         * subscriptions re-established) once the server is usable. */
        bconn_close(bc, "the session's database could not be selected yet");
        return;
    }
    bc->retiring = true;
    bc->tainted = true;
    bconn_take_back_unsent(bc);
}

void bconn_gate_after(struct bconn *bc, struct req *before)
{
    struct req *gate = NULL;

    for (struct req *r = before != NULL ? before->bnext : bc->head; r != NULL; r = r->bnext) {
        if (!(r->flags & REQ_NOREPLY)) {
            gate = r;
        }
    }
    if (gate != NULL) {
        bc->gate = gate;
    }
}

/* The server answered a new shared connection's handshake: it took the
 * connection, and the backend is up. */
static void bconn_greeted(struct bconn *bc)
{
    bc->greeted = true;
    backend_mark_up(bc->be);
}

/* The first line of r's reply, without its CRLF, into text (size bytes). */
static void bconn_reply_text(struct req *r, char *text, size_t size)
{
    size_t n = spans_copy(&r->out, 0, text, size - 1);

    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r')) {
        n--;
    }
    text[n] = '\0';
}

/* True when an error refuses the connection itself (credentials,
 * maxclients), not just the command it answers. */
static bool bconn_refuses_connection(const char *text)
{
    return strncmp(text, "-NOAUTH", 7) == 0 || strstr(text, "max number of clients") != NULL;
}

/* The reply to a RESP3 pool connection's HELLO 3: what the server is, or
 * that it does not speak RESP3 (RESP3 clients then get dedicated
 * connections, where the server answers their HELLO itself). */
static void bconn_hello_reply(struct bconn *bc, struct req *r)
{
    struct backend *be = bc->be;
    size_t len = 0;
    char *buf = (r->flags & REQ_ERROR) ? NULL : req_flatten_out(r, BCONN_HELLO_MAX, &len);
    bool learnt = buf != NULL && hello_learn(&be->hello, buf, len);
    char text[128];

    free(buf);
    if (learnt) {
        req_free(&bc->w->reqs, r);
        return;
    }
    bconn_reply_text(r, text, sizeof(text));
    if ((r->flags & REQ_ERROR) && bconn_refuses_connection(text)) {
        bconn_refused(bc, r, text);
        return;
    }
    req_free(&bc->w->reqs, r);
    log_warn("backend %s does not speak RESP3 (HELLO 3: %s): RESP3 clients get dedicated "
             "connections",
             be->name, text);
    be->hello.resp3 = HELLO_NO_RESP3;
    bconn_close(bc, "the server does not speak RESP3");
    worker_wake_later(bc->w); /* HELLO requests waiting for the answer */
}

void bconn_nudge(struct bconn *bc)
{
    static const char *const argv[] = {"PING"};
    static const size_t argl[] = {4};
    struct req *r;

    if (bc->nudged || bc->dedicated || bc->state != BC_READY ||
        (r = req_internal(&bc->w->reqs, 1, argv, argl)) == NULL) {
        return;
    }
    r->flags |= REQ_NUDGE;
    bc->nudged = true;
    bconn_enqueue(bc, r);
}

static void bconn_internal_reply(struct bconn *bc, struct req *r)
{
    if (r->flags & REQ_NUDGE) {
        req_free(&bc->w->reqs, r); /* it was sent to be acknowledged, not answered */
        return;
    }
    if (r->flags & REQ_PROBE) {
        offsets_probe_reply(bc, r);
        req_free(&bc->w->reqs, r);
        return;
    }
    if (r->flags & REQ_COMMANDS) {
        bconn_commands_reply(bc, r);
        req_free(&bc->w->reqs, r);
        return;
    }
    if (r->flags & REQ_HELLO) {
        bconn_hello_reply(bc, r);
        return;
    }
    if ((r->flags & REQ_NAME) && !(r->flags & REQ_ERROR)) {
        bconn_greeted(bc);
        req_free(&bc->w->reqs, r);
        return;
    }
    if (r->flags & REQ_ERROR) {
        char text[128];
        bconn_reply_text(r, text, sizeof(text));
        if ((r->flags & REQ_NAME) && !bconn_refuses_connection(text)) {
            /* Only the name (a server busy with a script or loading, or an
             * ACL user without CLIENT SETNAME, refuses it): the connection
             * works without it. */
            log_debug("backend %s: CLIENT SETNAME refused: %s", bc->be->name, text);
            bconn_greeted(bc);
            req_free(&bc->w->reqs, r);
            return;
        }
        log_warn("backend %s: the proxy's own command failed: %s", bc->be->name, text);
        if (bc->dedicated && (r->flags & REQ_STATE)) {
            bconn_state_refused(bc, r, text);
            return;
        }
        if (bc->dedicated && (r->flags & REQ_CREDENTIALS) && bc->owner != NULL) {
            /* The client's own credentials were refused on a new
             * connection: it must not go on with the proxy's. */
            struct client *owner = bc->owner;
            req_free(&bc->w->reqs, r);
            client_close(owner, "its credentials were refused on a new connection");
            return;
        }
        if (!bc->dedicated) {
            bconn_refused(bc, r, text);
            return;
        }
    }
    req_free(&bc->w->reqs, r);
}

/* The facts about r, whose reply is complete, for router_reply_verdict. */
static enum router_reply bconn_reply_verdict(const struct bconn *bc, struct req *r,
                                             enum router_refusal *refusal)
{
    const struct replyscan *rs = &bc->rs;
    struct router_fate f = {
        .internal = (r->flags & REQ_INTERNAL) != 0,
        .orphan = r->client == NULL,
        .dedicated = bc->dedicated,
        .from_replica = bc->be->role == BACKEND_REPLICA,
        .master_only = (r->flags & REQ_MASTER_ONLY) != 0,
    };

    if (rs->is_error && rs->type == '-') {
        f.refusal = router_refusal(rs->head, rs->head_len, !bconn_cfg(bc)->has_backend);
    }
    if (f.refusal != REFUSAL_NONE && !f.internal && !f.orphan) {
        f.can_resend = session_can_resend(r->client);
        f.within_hold =
            ev_now(bc->w->loop) - r->since < (double)bconn_cfg(bc)->hold_timeout_ms / 1000.0;
        f.blocked_may_move = f.refusal == REFUSAL_UNBLOCKED && router_blocked_may_move(r);
    }
    *refusal = f.refusal;
    return router_reply_verdict(&f);
}

/* r was refused as "not executed": send it again once the backend is usable
 * (the control plane is asked to check the topology now). */
static void bconn_retry_refused(struct bconn *bc, struct req *r)
{
    struct backend *be = bc->be;
    struct worker *w = bc->w;

    if (be->suspect_until <= ev_now(w->loop)) {
        const char *sp = memchr(bc->rs.head, ' ', bc->rs.head_len);
        int code = sp != NULL ? (int)(sp - bc->rs.head) : bc->rs.head_len;
        log_warn("backend %s answered %.*s: holding its requests and checking the topology",
                 be->name, code, bc->rs.head);
    }
    be->suspect_until = ev_now(w->loop) + BCONN_SUSPECT_TIME;
    if (bc->dedicated) {
        bc->retiring = true; /* the session continues on a new connection */
    }
    WORKER_COUNT(w, retried, 1);
    spans_clear(&r->out);
    r->flags &= ~REQ_ERROR;
    client_undispatch(r->client, r);
    proxy_check_topology(w->px);
}

/* ---- streams --------------------------------------------------------------- */

#define BCONN_MARKER "__sentinel-proxy__:end-of-stream"

enum bconn_marker {
    MARKER_NONE = 0,    /* not the marker's reply */
    MARKER_ECHOED = 1,  /* its echo: the stream ended before it */
    MARKER_REFUSED = 2, /* a RESP2 connection still subscribed refused it: still streaming */
};

/* What a streamed reply says about the end-of-stream marker. */
static enum bconn_marker bconn_is_marker(struct spans *out)
{
    char echo[64];

    snprintf(echo, sizeof(echo), "$%zu\r\n%s\r\n", strlen(BCONN_MARKER), BCONN_MARKER);
    if (spans_starts_with(out, echo, strlen(echo))) {
        return MARKER_ECHOED;
    }
    return spans_starts_with(out, "-ERR Can't execute 'echo'", 256) ? MARKER_REFUSED : MARKER_NONE;
}

/* Queue the marker: an ECHO whose reply, once the server is out of
 * subscribed mode, comes back after every reply before it. */
static void bconn_send_marker(struct bconn *bc)
{
    const char *argv[] = {"ECHO", BCONN_MARKER};
    size_t argl[] = {4, strlen(BCONN_MARKER)};
    struct req *r = req_internal(&bc->w->reqs, 2, argv, argl);

    if (r == NULL) {
        return; /* the session stays on its connection: harmless */
    }
    r->flags |= REQ_NOREPLY;
    bconn_enqueue(bc, r);
    bc->marker_sent = true;
    bc->marker_last = true;
}

enum bconn_stream {
    STREAM_PASS = 0,  /* give it to the owner */
    STREAM_DROP = 1,  /* the proxy's own: the owner never sees it */
    STREAM_ENDED = 2, /* the proxy's own, and the stream is over */
};

/* A streamed reply (out) arrived for owner. It follows the session: a
 * confirmation that the last subscription is gone, or +RESET. Once nothing
 * streams any more, the marker is queued; when it comes back with nothing
 * queued after it, every reply has been seen and the connection leaves
 * streaming mode (ENDED: the session may return to shared connections). */
static enum bconn_stream bconn_stream_reply(struct bconn *bc, struct client *owner,
                                            struct spans *out)
{
    struct session *s = &owner->sess;
    enum bconn_marker marker;

    if (!s->streaming) {
        return STREAM_PASS;
    }
    marker = bc->marker_sent ? bconn_is_marker(out) : MARKER_NONE;
    if (marker == MARKER_REFUSED) {
        return STREAM_DROP; /* and no more markers here (marker_sent stays) */
    }
    if (marker == MARKER_ECHOED) {
        bc->marker_sent = false;
        if (session_streams(s)) {
            return STREAM_DROP; /* subscribed again meanwhile */
        }
        if (!bc->marker_last || bc->nqueued != 0 || bc->nswallow != 0) {
            bconn_send_marker(bc); /* more was sent: wait for that too */
            return STREAM_DROP;
        }
        bc->streaming = false;
        session_stream_over(s);
        return STREAM_ENDED;
    }
    if (spans_starts_with(out, "+RESET\r\n", 8)) {
        /* RESET ended subscriptions, MONITOR and CLIENT REPLY OFF on the
         * server: none of it may come back on a new connection. */
        session_reset(s);
        bc->tainted = true;
        bc->db = 0;
        bc->resp = 2;
    }
    /* Nothing left that streams (the last UNSUBSCRIBE's confirmation, the
     * +OK of CLIENT REPLY ON, +RESET...): find where the stream ends. */
    if (!bc->marker_sent && !session_streams(s)) {
        bconn_send_marker(bc);
    }
    return STREAM_PASS;
}

/* The worker no longer waits for this connection's resubscription. */
static void bconn_resub_over(struct bconn *bc)
{
    if (bc->resubscribing) {
        bc->resubscribing = false;
        resub_ended(bc->w);
    }
}

/* Every reply of the first replayed command still awaited is in. */
static void bconn_resub_command_over(struct bconn *bc)
{
    memmove(&bc->swallow[0], &bc->swallow[1], (size_t)(bc->nswallow - 1) * sizeof(bc->swallow[0]));
    if (--bc->nswallow == 0) {
        bconn_resub_over(bc);
    }
}

/* A reply on a streaming connection (or a RESP3 push): to the owner, unless
 * it is the proxy's own. */
static void bconn_deliver_stream(struct bconn *bc, struct spans *out)
{
    struct client *owner = bc->owner;
    enum bconn_stream what;

    if (bc->nswallow > 0 && bc->streaming && session_is_confirmation(out)) {
        /* A resubscription's confirmations: the client saw its own before
         * the connection was lost. */
        if (--bc->swallow[0] == 0) {
            bconn_resub_command_over(bc);
        }
        spans_clear(out);
        return;
    }
    if (bc->nswallow > 0 && bc->streaming && bc->rs.is_error) {
        /* A replayed command refused (the ACL no longer lets the user have
         * those channels, say): none of its subscriptions is back. The
         * client sees the error; its next confirmations are its own. */
        char text[160];
        size_t n = spans_copy(out, 0, text, sizeof(text) - 1);
        text[n] = '\0';
        text[strcspn(text, "\r\n")] = '\0';
        log_warn("client %llu: subscriptions not re-established on %s: %s",
                 owner != NULL ? (unsigned long long)owner->id : 0ULL, bc->be->name, text);
        bconn_resub_command_over(bc);
    }
    if (owner == NULL) {
        spans_clear(out);
        return;
    }
    what = bconn_stream_reply(bc, owner, out);
    if (what == STREAM_PASS) {
        client_push(owner, out);
    } else {
        spans_clear(out);
    }
    if (what == STREAM_ENDED) {
        client_stream_ended(owner);
    }
}

bool bconn_only_blocked(const struct bconn *bc)
{
    const struct reader *rd = &bc->rd;

    /* Nothing left to write, and not a byte of a reply received yet. */
    if (!bc->dedicated || bc->unsent != NULL || bc->head == NULL || bc->cur.n > 0 ||
        (rd->chunk != NULL && rd->start < rd->chunk->len)) {
        return false;
    }
    for (struct req *r = bc->head; r != NULL; r = r->bnext) {
        if (!router_blocked_may_move(r)) {
            return false;
        }
    }
    return true;
}

void bconn_expect_confirmations(struct bconn *bc, const uint32_t *counts, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (counts[i] == 0) {
            continue;
        }
        if (bc->nswallow < BCONN_RESUB_CMDS) {
            bc->swallow[bc->nswallow++] = counts[i];
        } else {
            bc->swallow[BCONN_RESUB_CMDS - 1] += counts[i]; /* (never: one of each kind) */
        }
    }
    bc->tainted = true;
    if (bc->nswallow > 0 && !bc->resubscribing) {
        bc->resubscribing = true;
        resub_started(bc->w);
    }
}

void bconn_follow_session(struct bconn *bc, const struct session *s, unsigned effects)
{
    if (effects & SESSION_CONN_DB) {
        bc->db = s->db;
    }
    if (effects & SESSION_CONN_RESP) {
        bc->resp = s->resp;
    }
    if (effects & SESSION_CONN_TAINT) {
        bc->tainted = true;
    }
}

/* ---- replies ---------------------------------------------------------------- */

/* A running average of reply sizes (0: none yet) moved an eighth of the way
 * to size. */
static inline uint32_t bconn_average(uint32_t avg, uint32_t size)
{
    return avg == 0 ? size : avg - avg / 8 + size / 8;
}

/* A complete reply is in bc->cur: give it to whoever it belongs to. */
static void bconn_deliver(struct bconn *bc)
{
    struct spans out = bc->cur;
    struct req *r;
    enum router_refusal refusal = REFUSAL_NONE;
    enum router_reply verdict;

    spans_init(&bc->cur);
    bconn_pop_noreply(bc);
    if (bc->streaming || (bc->rs.is_push && bc->resp == 3)) {
        bconn_deliver_stream(bc, &out);
        return;
    }
    if (bc->head == NULL || bc->head == bc->unsent) {
        spans_clear(&out);
        bconn_lost(bc, "reply without a request");
        return;
    }
    r = bconn_pop(bc);
    r->out = out;
    if (r->client != NULL) { /* the proxy's own (COMMAND, ROLE...) say nothing of its clients */
        uint32_t size = out.bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)out.bytes;
        bc->reply_avg = bconn_average(bc->reply_avg, size);
        bc->be->reply_avg = bconn_average(bc->be->reply_avg, size);
    }
    r->flags &= ~REQ_PROXY_ERROR;
    if (bc->rs.is_error) {
        r->flags |= REQ_ERROR;
    }
    if ((r->flags & REQ_RYW_CHECK) && r->client != NULL && !offsets_check_read(bc, r)) {
        verdict = REPLY_STALE;
    } else {
        verdict = bconn_reply_verdict(bc, r, &refusal);
    }
    switch (verdict) {
    case REPLY_DELIVER:
        client_reply_done(r->client, r, bc->be);
        break;
    case REPLY_INTERNAL:
        bconn_internal_reply(bc, r);
        break;
    case REPLY_DISCARD:
        req_free(&bc->w->reqs, r);
        break;
    case REPLY_TO_MASTER:
        spans_clear(&r->out);
        r->flags = (r->flags & ~REQ_ERROR) | REQ_MASTER_ONLY;
        client_undispatch(r->client, r);
        break;
    case REPLY_RETRY:
        if (refusal == REFUSAL_UNBLOCKED) {
            r->since = ev_now(bc->w->loop); /* released unexecuted: it waited for data */
        }
        bconn_retry_refused(bc, r);
        break;
    case REPLY_STALE:
        /* It may not have seen the client's writes: dropped, sent again. */
        spans_clear(&r->out);
        r->flags &= ~REQ_ERROR;
        client_undispatch(r->client, r);
        worker_wake_later(bc->w);
        break;
    }
    if (bc->state != BC_CLOSED && bc->nqueued == 0 &&
        (bc->retiring || (bc->be->role == BACKEND_RETIRED && bc->owner == NULL))) {
        /* A dedicated session moves on: its state is replayed on a new
         * connection to the master in use. */
        bconn_close(bc, NULL);
    }
}

static void bconn_scan(struct bconn *bc)
{
    struct reader *rd = &bc->rd;
    struct chunk *ch = rd->chunk;

    /* Delivering a reply can close this connection (its client went over a
     * limit), which drops the connection's reference on the chunk. */
    chunk_ref(ch);
    while (bc->state != BC_CLOSED && rd->pos < ch->len) {
        size_t used = 0;
        enum replyscan_status st =
            replyscan_feed(&bc->rs, ch->data + rd->pos, ch->len - rd->pos, &used);
        rd->pos += (uint32_t)used;
        if (st == REPLYSCAN_MORE) {
            break;
        }
        if (st == REPLYSCAN_ERROR) {
            char why[96];
            snprintf(why, sizeof(why), "protocol error from server: %s", bc->rs.err);
            bconn_lost(bc, why);
            break;
        }
        if (!spans_add(&bc->cur, ch, rd->start, rd->pos - rd->start)) {
            bconn_close(bc, "out of memory");
            break;
        }
        rd->start = rd->pos;
        bconn_deliver(bc);
    }
    if (bc->unsent != NULL && bc->state == BC_READY) {
        worker_mark_bconn(bc->w, bc); /* replies made room in its window */
    }
    chunk_unref(ch);
}

static bool bconn_may_read(void *conn)
{
    struct bconn *bc = conn;

    return bc->state == BC_READY && !(bc->dedicated && bconn_owner_full(bc));
}

static struct spans *bconn_partial(void *conn)
{
    struct bconn *bc = conn;

    return &bc->cur;
}

static void bconn_scan_cb(void *conn)
{
    bconn_scan(conn);
}

static bool bconn_stopped(void *conn)
{
    const struct bconn *bc = conn;

    return bc->state == BC_CLOSED;
}

static const struct reader_ops bconn_reader_ops = {
    .may_read = bconn_may_read,
    .partial = bconn_partial,
    .scan = bconn_scan_cb,
    .stopped = bconn_stopped,
};

/* Inline into the read callback: the hot path. */
static inline __attribute__((always_inline)) void bconn_read(struct bconn *bc)
{
    uint64_t nreads = 0;
    enum reader_status st = reader_read(&bc->rd, &bc->w->pool, &bc->t, &bconn_reader_ops, bc,
                                        BCONN_READS_PER_EVENT, BCONN_FILL_EXTRA, &nreads);

    WORKER_COUNT(bc->w, backend_reads, nreads);
    switch (st) {
    case READER_EOF:
        bconn_lost(bc, "connection closed by the server");
        return;
    case READER_ERROR:
        bconn_lost(bc, strerror(errno));
        return;
    case READER_NOMEM:
        bconn_close(bc, "out of memory");
        return;
    case READER_AGAIN:
        bc->lagging = false; /* caught up with the server */
        break;
    default:
        break;
    }
    /* TLS: reading may have made OpenSSL answer (it waits in the
     * transport), and decrypted bytes will not wake the socket again. */
    if (__builtin_expect(bc->t.tls != NULL, 0) && bc->state == BC_READY) {
        if (transport_out_pending(&bc->t)) {
            bconn_set_events(bc, bconn_wanted(bc));
        }
        if (!bc->paused) {
            evio_feed_pending(bc->w->loop, &bc->io, &bc->t);
        }
    }
    /* An idle connection holds no buffer. */
    if (bc->state == BC_READY && bc->cur.n == 0) {
        reader_release_idle(&bc->rd);
    }
}

/* Connecting failed (connect or TLS): the server counts as down. */
static void bconn_connect_failed(struct bconn *bc, const char *what, const char *reason)
{
    struct backend *be = bc->be;
    char why[512];

    snprintf(why, sizeof(why), "%s: %s", what, reason);
    bconn_lost(bc, why);
    backend_mark_down(be, why);
}

/* The TCP connection is up; TLS connections handshake first (the connect
 * timer covers both). True when the connection is ready for requests. */
static bool bconn_tls_ready(struct bconn *bc)
{
    char err[256];
    unsigned want = 0;

    switch (transport_handshake(&bc->t, &want, err, sizeof(err))) {
    case TLS_STEP_AGAIN:
        bc->handshaking = true;
        bconn_set_events(bc, want);
        return false;
    case TLS_STEP_FAILED:
        bconn_connect_failed(bc, "TLS handshake", err);
        return false;
    default:
        bc->handshaking = false;
        return true;
    }
}

static void bconn_connected(struct bconn *bc)
{
    if (!bc->handshaking) {
        int err = net_connect_result(bc->t.fd);
        if (err != 0) {
            bconn_connect_failed(bc, "connect", strerror(err));
            return;
        }
        net_tune(bc->t.fd, (int)(bconn_cfg(bc)->tcp_keepalive_ms / 1000));
    }
    if (bc->t.tls != NULL && !bconn_tls_ready(bc)) {
        return;
    }
    ev_timer_stop(bc->w->loop, &bc->timer);
    bc->state = BC_READY;
    bc->progress_at = bc->w->now; /* what is queued waits on the server from now */
    if (bc->dedicated) {
        backend_mark_up(bc->be); /* a shared one once the server answers its handshake */
    }
    bconn_set_events(bc, bconn_wanted(bc));
    worker_mark_bconn(bc->w, bc);
}

void bconn_note_stall(struct bconn *bc)
{
    if (bc->stalled) {
        return;
    }
    bc->stalled = true;
    WORKER_COUNT(bc->w, stalls, 1);
    log_debug("backend %s: shared connection stalled: nothing answered for %.0f ms", bc->be->name,
              (ev_now(bc->w->loop) - bc->progress_at) * 1000.0);
    if (bc->unsent != NULL) {
        /* What its window kept in the proxy is not trapped behind the
         * stall: it goes back to its clients, to be sent wherever they may
         * go now (a client with requests written here comes back here). */
        bconn_take_back_unsent(bc);
        worker_wake_later(bc->w);
    }
}

/* The server sent something on a stalled connection (or it closed): the
 * stall is over; remember the longest. */
static void bconn_stall_over(struct bconn *bc, double now)
{
    uint64_t us = (uint64_t)((now - bc->progress_at) * 1e6);

    bc->stalled = false;
    if (us > bc->w->stats.stall_longest_us) {
        __atomic_store_n(&bc->w->stats.stall_longest_us, us, __ATOMIC_RELAXED);
    }
}

static void bconn_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct bconn *bc = io->data;

    (void)loop;
    if (bc->state == BC_CONNECTING) {
        bconn_connected(bc);
        return;
    }
    if (revents & EV_READ) {
        if (__builtin_expect(bc->stalled, 0)) {
            bconn_stall_over(bc, bc->w->now);
        }
        bc->progress_at = bc->w->now;
        bc->nudged = false;
        bconn_read(bc);
    }
    if ((revents & EV_WRITE) && bc->state == BC_READY) {
        bconn_flush(bc);
    }
}

static void bconn_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct bconn *bc = t->data;

    (void)loop;
    (void)revents;
    if (bc->state == BC_CONNECTING) {
        bconn_connect_failed(bc, bc->handshaking ? "TLS handshake" : "connect", "timeout");
    }
}

/* ---- failure --------------------------------------------------------------- */

/* What becomes of a request whose connection failed before its reply; be is
 * the server it was sent to (the connection may already be unlinked from it). */
static void bconn_hand_back(struct bconn *bc, struct backend *be, struct req *r, const char *addr)
{
    struct client *c = r->client;
    struct worker *w = bc->w;
    struct router_fate f = {
        .internal = (r->flags & REQ_INTERNAL) != 0,
        .orphan = c == NULL,
        .dedicated = bc->dedicated,
        .streamed = (r->flags & REQ_NOREPLY) != 0,
        .unsent = r->sent == 0,
        .is_read = cmd_is_read(r->ci),
        .lost = r->lost,
        /* A blocking read's wait on its server is not a wait for one. */
        .within_hold = (r->ci != NULL && (r->ci->flags & CMDF_BLOCKING)) ||
                       ev_now(w->loop) - r->since < (double)bconn_cfg(bc)->hold_timeout_ms / 1000.0,
        .released = bc->released && r->ci != NULL && (r->ci->flags & CMDF_BLOCKING),
    };

    f.can_resend = c != NULL && !f.internal && session_can_resend(c);
    f.repeatable = f.is_read && !f.unsent && c != NULL && router_read_may_repeat(r);
    switch (router_lost_verdict(&f)) {
    case LOST_DROP:
        if (r->flags & REQ_PROBE) {
            offsets_probe_lost(w, be, r); /* the server may be probed again */
        }
        if (r->flags & REQ_COMMANDS) {
            w->commands_from = NULL; /* ask again on the next connection */
        }
        req_free(&w->reqs, r);
        return;
    case LOST_KEEP:
        return;
    case LOST_RETRY_READ:
        r->lost++;
        WORKER_COUNT(w, retried, 1);
        client_undispatch(c, r);
        return;
    case LOST_RESEND:
        if (f.released) {
            r->since = ev_now(w->loop); /* it waited for data, not for a master */
        }
        client_undispatch(c, r);
        return;
    case LOST_FAIL_READ:
        req_reply_errorf(&w->reqs, r, "ERR sentinel-proxy: connection to %s lost before the reply",
                         addr);
        break;
    case LOST_FAIL_WRITE:
        WORKER_COUNT(w, unknown, 1);
        req_reply_errorf(&w->reqs, r,
                         "ERR sentinel-proxy: connection to %s lost before the reply; the "
                         "command may or may not have been executed",
                         addr);
        break;
    }
    client_reply_done(c, r, NULL);
}

void bconn_close(struct bconn *bc, const char *why)
{
    bconn_close_how(bc, why, false);
}

void bconn_lost(struct bconn *bc, const char *why)
{
    struct backend *be = bc->be;
    /* A shared connection the server dropped before answering its
     * handshake is a failed attempt, as a refused connect is. */
    bool attempt = bc->state == BC_READY && !bc->dedicated && !bc->greeted;

    if (bc->state != BC_CLOSED) {
        WORKER_COUNT(bc->w, backend_lost, 1);
    }
    bconn_close_how(bc, why, false);
    if (attempt) {
        backend_mark_down(be, why);
    }
}

void bconn_expire(struct bconn *bc, const char *why)
{
    bconn_read(bc); /* replies already in the socket are answers, not losses */
    if (bc->state != BC_CLOSED && bc->nqueued > 0) {
        bconn_close_how(bc, why, true);
    }
}

bool bconn_release(struct bconn *bc, const char *why)
{
    /* Whatever reached the socket first: a reply that came meanwhile is
     * delivered, and then nothing is released. */
    bconn_read(bc);
    if (bc->state == BC_CLOSED || !bconn_only_blocked(bc)) {
        return false;
    }
    bc->released = true;
    bconn_close_how(bc, why, true);
    return true;
}

static void bconn_close_how(struct bconn *bc, const char *why, bool abort)
{
    struct worker *w = bc->w;
    char addr[ADDR_TEXT_MAX];
    struct backend *be = bc->be;

    if (bc->state == BC_CLOSED) {
        return;
    }
    WORKER_COUNT(w, backend_closes, 1);
    snprintf(addr, sizeof(addr), "%s", be->name);
    if (why != NULL && be->state == BE_DOWN && bc->state == BC_CONNECTING) {
        /* another failed attempt on a server known to be down */
        log_debug("backend %s: %s connection closed: %s", addr,
                  bc->dedicated ? "dedicated" : "shared", why);
    } else if (why != NULL) {
        log_info("backend %s: %s connection closed: %s", addr,
                 bc->dedicated ? "dedicated" : "shared", why);
    }
    if (bc->stalled) {
        bconn_stall_over(bc, ev_now(w->loop));
    }
    if (bc->extra == BCONN_EXTRA_STALL) {
        WORKER_COUNT(w, stall_conns_closed, 1);
    } else if (bc->extra == BCONN_EXTRA_DEEP) {
        WORKER_COUNT(w, deep_conns_closed, 1);
    }
    if (!bc->dedicated && !bc->greeted) {
        /* The server did not take it: no new shared connection for a
         * moment, or every request sent back would cost one more. */
        be->connect_after = w->now + (double)bconn_cfg(bc)->reconnect_min_ms / 1000.0;
    }
    bc->state = BC_CLOSED;
    bc->nswallow = 0;
    bconn_resub_over(bc);
    ev_io_stop(w->loop, &bc->io);
    ev_timer_stop(w->loop, &bc->timer);
    bc->io_events = 0;
    if (abort) {
        transport_abort(&bc->t);
    } else {
        transport_close(&bc->t);
    }
    struct client *owner = bc->lagging ? NULL : bc->owner; /* gets its unsent requests back */
    if (bc->owner != NULL && bc->lagging) {
        /* Lost while its owner was not reading (the server may have dropped
         * it for that): the client loses its connection, as it would have
         * connected directly. */
        struct client *idle = bc->owner;
        bc->owner = NULL;
        idle->ded = NULL;
        client_close(idle, "its dedicated connection was lost while it did not read");
    } else if (bc->owner != NULL) {
        client_lost_dedicated(bc->owner, bc);
        bc->owner = NULL;
    }
    /* Off the backend first, so that requests handed back cannot be queued
     * here again; then one at a time: those still queued stay dispatched, so
     * that a client closed by a hand-back only orphans them. */
    backend_forget(be, bc);
    while (bc->head != NULL) {
        struct req *r = bconn_pop(bc);
        if (owner != NULL && !(owner->flags & CL_CLOSING) &&
            (r->flags & (REQ_NOREPLY | REQ_INTERNAL)) == REQ_NOREPLY && r->sent < r->in.bytes) {
            /* Streamed, and never reached the server whole: not run. */
            client_resend_streamed(owner, r);
            continue;
        }
        bconn_hand_back(bc, be, r, addr);
    }
    bc->be = NULL; /* closed: it belongs to no backend any more */
    spans_clear(&bc->cur);
    reader_free(&bc->rd);
    worker_wake_later(w);
    worker_reap_bconn(w, bc);
}

void bconn_destroy(struct bconn *bc)
{
    free(bc);
}
