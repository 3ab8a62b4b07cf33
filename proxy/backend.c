/*
 * backend.c - backend servers and connections: connecting with backoff,
 * writing queued requests with one writev, scanning replies and matching
 * them to requests in order, and handing requests back when a connection
 * fails.
 */
#include "proxy/backend.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/config.h"
#include "lib/log.h"
#include "lib/net.h"
#include "proxy/client.h"
#include "proxy/commands.h"
#include "proxy/offsets.h"
#include "proxy/proxy.h"
#include "proxy/req.h"
#include "proxy/session.h"
#include "proxy/worker.h"

#define BCONN_READS_PER_EVENT 32
#define BCONN_IOV_MAX         IOV_MAX
#define BCONN_TAIL_COPY_MAX   4096
#define BCONN_FILL_EXTRA      3 /* chunks a bulk read may fill beyond the current one */
#define BCONN_MAX_BULK        ((uint64_t)1 << 40) /* replies are bounded by client-output-limit */
#define BACKEND_SUSPECT_TIME  0.2 /* seconds a backend that refused a command is avoided */

static void bconn_io_cb(struct ev_loop *loop, ev_io *io, int revents);
static void bconn_timer_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void backend_retry_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void backend_drain_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void bconn_close_how(struct bconn *bc, const char *why, bool abort);

static const struct config *backend_cfg(const struct backend *be)
{
    return be->w->px->cfg;
}

struct backend *backend_new(struct worker *w, const struct addr *a, int role)
{
    struct backend *be = calloc(1, sizeof(*be));

    if (be == NULL) {
        return NULL;
    }
    be->w = w;
    be->id = ++w->next_backend_id;
    be->addr = *a;
    addr_format(a, be->name, sizeof(be->name));
    be->role = (uint8_t)role;
    be->nshared = w->px->cfg->backend_connections;
    be->shared = calloc((size_t)be->nshared, sizeof(*be->shared));
    if (be->shared == NULL) {
        free(be);
        return NULL;
    }
    be->backoff = (double)backend_cfg(be)->reconnect_min_ms / 1000.0;
    ev_timer_init(&be->retry, backend_retry_cb, 0, 0);
    be->retry.data = be;
    ev_timer_init(&be->drain, backend_drain_cb, 0, 0);
    be->drain.data = be;
    be->next = w->backends;
    w->backends = be;
    return be;
}

void backend_free(struct backend *be)
{
    struct worker *w = be->w;
    struct backend **pp;

    while (be->conns != NULL) {
        bconn_close(be->conns, "backend removed");
    }
    ev_timer_stop(w->loop, &be->retry);
    ev_timer_stop(w->loop, &be->drain);
    for (pp = &w->backends; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == be) {
            *pp = be->next;
            break;
        }
    }
    if (w->master == be) {
        w->master = NULL;
    }
    if (w->commands_from == be) {
        w->commands_from = NULL;
    }
    free(be->shared);
    free(be);
}

bool backend_usable(const struct backend *be)
{
    return be->state != BE_DOWN && be->role != BACKEND_RETIRED &&
           (be->suspect_until == 0 || ev_now(be->w->loop) >= be->suspect_until);
}

static void bconn_hand_back(struct bconn *bc, struct backend *be, struct req *r, const char *addr);

/* Hand the requests not written at all back to their clients, so that they
 * go wherever they belong now (the proxy's own are dropped). Requests that
 * expect no matched reply (streaming) stay, with everything queued before
 * them. */
static void bconn_take_back_unsent(struct bconn *bc)
{
    struct req *prev = NULL, *r = bc->head, *cut_prev = NULL, *cut = NULL;

    while (r != NULL && r != bc->unsent) {
        prev = r;
        r = r->bnext;
    }
    if (r != NULL && r->sent > 0) {
        prev = r; /* partly written: it must be answered or reset */
        r = r->bnext;
    }
    cut_prev = prev;
    cut = r;
    for (; r != NULL; r = r->bnext) {
        if (r->flags & REQ_NOREPLY) {
            cut_prev = r;
            cut = r->bnext;
        }
    }
    if (cut == NULL) {
        return;
    }
    if (cut_prev != NULL) {
        cut_prev->bnext = NULL;
    } else {
        bc->head = NULL;
    }
    bc->tail = cut_prev;
    if (bc->unsent == cut) {
        bc->unsent = NULL;
    }
    for (r = cut; r != NULL;) {
        struct req *next = r->bnext;
        bc->nqueued--;
        if (bc->be != NULL) {
            bc->be->inflight--;
        }
        r->bnext = NULL;
        r->bc = NULL;
        r->flags &= ~REQ_DISPATCHED;
        bconn_hand_back(bc, bc->be, r, bc->be != NULL ? bc->be->name : "?");
        r = next;
    }
}

void backend_drain(struct backend *be, double grace)
{
    struct bconn *bc, *next;
    bool busy = false;

    for (bc = be->conns; bc != NULL; bc = next) {
        next = bc->next;
        bconn_take_back_unsent(bc);
        if (bc->nqueued == 0) {
            bconn_close(bc, NULL);
            continue;
        }
        busy = true;
        bc->retiring = true;
        for (int i = 0; i < be->nshared; i++) {
            if (be->shared[i] == bc) {
                be->shared[i] = NULL; /* new requests get a new connection */
            }
        }
    }
    if (busy && !ev_is_active(&be->drain)) {
        ev_timer_set(&be->drain, grace, 0);
        ev_timer_start(be->w->loop, &be->drain);
    }
}

void backend_undrain(struct backend *be)
{
    ev_timer_stop(be->w->loop, &be->drain);
}

static void backend_drain_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct backend *be = t->data;
    struct bconn *bc, *next;

    (void)loop;
    (void)revents;
    for (bc = be->conns; bc != NULL; bc = next) {
        next = bc->next;
        if (bc->nqueued > 0) {
            bconn_close_how(bc, "still unanswered after the switch (connection reset)", true);
        }
    }
}

static bool backend_has_ready(const struct backend *be)
{
    for (const struct bconn *bc = be->conns; bc != NULL; bc = bc->next) {
        if (bc->state == BC_READY) {
            return true;
        }
    }
    return false;
}

/* A connection attempt failed: retry later, with exponential backoff. A
 * failed extra connection (a dedicated one, say) while another is up says
 * nothing about the server: only that attempt fails. */
static void backend_mark_down(struct backend *be, const char *why)
{
    const struct config *cfg = backend_cfg(be);
    double max = (double)cfg->reconnect_max_ms / 1000.0;

    if (backend_has_ready(be)) {
        log_warn("backend %s: a connection attempt failed (%s); the server is still reachable",
                 be->name, why);
        return;
    }
    if (be->state != BE_DOWN) {
        log_warn("backend %s is down: %s", be->name, why);
        be->down_since = ev_now(be->w->loop);
    }
    be->state = BE_DOWN;
    be->nerrors++;
    if (!ev_is_active(&be->retry) && be->role != BACKEND_RETIRED) {
        ev_timer_set(&be->retry, be->backoff, 0);
        ev_timer_start(be->w->loop, &be->retry);
        be->backoff = be->backoff * 2 > max ? max : be->backoff * 2;
    }
}

static void backend_mark_up(struct backend *be)
{
    if (be->state == BE_DOWN) {
        log_info("backend %s is up again after %.1fs", be->name,
                 ev_now(be->w->loop) - be->down_since);
    }
    be->state = BE_UP;
    be->down_since = 0;
    be->backoff = (double)backend_cfg(be)->reconnect_min_ms / 1000.0;
    ev_timer_stop(be->w->loop, &be->retry);
    worker_wake_later(be->w);
}

static void backend_retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct backend *be = t->data;

    (void)loop;
    (void)revents;
    if (backend_has_ready(be)) {
        backend_mark_up(be);
        return;
    }
    /* One probe connection; the others follow once it succeeds (one still
     * connecting reports its own outcome). */
    if (be->shared[0] == NULL) {
        be->shared[0] = bconn_connect(be, false);
    }
}

/* ---- connections ------------------------------------------------------- */

/* The events a connection waits for: readable unless paused, writable while
 * something is left to write. */
static unsigned bconn_wanted(const struct bconn *bc)
{
    return (bc->paused ? 0u : (unsigned)EV_READ) | (bc->unsent != NULL ? (unsigned)EV_WRITE : 0u);
}

static void bconn_set_events(struct bconn *bc, unsigned ev)
{
    if (bc->state == BC_CLOSED || ev == bc->io_events) {
        return;
    }
    ev_io_stop(bc->w->loop, &bc->io);
    if (ev != 0) {
        ev_io_set(&bc->io, bc->t.fd, (int)ev);
        ev_io_start(bc->w->loop, &bc->io);
    }
    bc->io_events = ev;
}

/* The proxy's own first requests on a new connection: credentials for the
 * backend, and a name that shows in CLIENT LIST. */
static bool bconn_handshake(struct bconn *bc)
{
    const struct config *cfg = backend_cfg(bc->be);
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
        r = req_internal(w, argc, argv, argl);
        if (r == NULL) {
            return false;
        }
        bconn_enqueue(bc, r);
    }
    if (!bc->dedicated) {
        const char *argv[] = {"CLIENT", "SETNAME", "sentinel-proxy"};
        size_t argl[] = {6, 7, 14};
        r = req_internal(w, 3, argv, argl);
        if (r == NULL) {
            return false;
        }
        bconn_enqueue(bc, r);
    }
    return true;
}

struct bconn *bconn_connect(struct backend *be, bool dedicated)
{
    struct worker *w = be->w;
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
    bc->be = be;
    bc->w = w;
    bc->id = ++w->next_bconn_id;
    bc->dedicated = dedicated;
    bc->resp = 2;
    transport_plain(&bc->t, fd);
    replyscan_init(&bc->rs, BCONN_MAX_BULK);
    spans_init(&bc->cur);
    ev_io_init(&bc->io, bconn_io_cb, fd, EV_WRITE);
    bc->io.data = bc;
    ev_io_start(w->loop, &bc->io);
    bc->io_events = EV_WRITE;
    ev_timer_init(&bc->timer, bconn_timer_cb, (double)backend_cfg(be)->connect_timeout_ms / 1000.0,
                  0);
    bc->timer.data = bc;
    ev_timer_start(w->loop, &bc->timer);
    bc->next = be->conns;
    if (be->conns != NULL) {
        be->conns->prev = bc;
    }
    be->conns = bc;
    if (!bconn_handshake(bc)) {
        bconn_close(bc, "out of memory");
        return NULL;
    }
    return bc;
}

void backend_warm(struct backend *be)
{
    for (int i = 0; i < be->nshared && backend_usable(be); i++) {
        if (be->shared[i] == NULL) {
            be->shared[i] = bconn_connect(be, false);
        }
    }
}

struct bconn *backend_shared(struct backend *be, uint64_t client_id)
{
    int slot = (int)(client_id % (uint64_t)be->nshared);

    if (!backend_usable(be)) {
        return NULL;
    }
    if (be->shared[slot] == NULL) {
        be->shared[slot] = bconn_connect(be, false);
    }
    return be->shared[slot];
}

struct bconn *backend_dedicated(struct backend *be, struct client *owner)
{
    struct bconn *bc;

    if (!backend_usable(be)) {
        return NULL;
    }
    bc = be->spare;
    if (bc != NULL) {
        be->spare = bc->spare_next;
        bc->spare_next = NULL;
        be->nspare--;
    } else {
        bc = bconn_connect(be, true);
        if (bc == NULL) {
            return NULL;
        }
    }
    bc->owner = owner;
    return bc;
}

void backend_return(struct bconn *bc)
{
    struct backend *be = bc->be;

    bc->owner = NULL;
    if (bc->state == BC_READY && !bc->tainted && !bc->streaming && bc->db == 0 && bc->resp == 2 &&
        bc->nqueued == 0 && be->role != BACKEND_RETIRED &&
        be->nspare < backend_cfg(be)->dedicated_spare) {
        bc->spare_next = be->spare;
        be->spare = bc;
        be->nspare++;
        return;
    }
    bconn_close(bc, NULL);
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
    }
    bc->tail = r;
    if (bc->unsent == NULL) {
        bc->unsent = r;
    }
    bc->nqueued++;
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

/* Take the head request off the queue; the caller decides its fate. */
static struct req *bconn_pop(struct bconn *bc)
{
    struct req *r = bc->head;

    bc->head = r->bnext;
    if (bc->head == NULL) {
        bc->tail = NULL;
    }
    if (bc->unsent == r) {
        bc->unsent = r->bnext;
    }
    bc->nqueued--;
    if (!(r->flags & REQ_NOREPLY) && bc->be != NULL) {
        bc->be->inflight--;
    }
    r->bnext = NULL;
    r->bc = NULL;
    r->flags &= ~REQ_DISPATCHED;
    return r;
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
            req_free(bc->w, r);
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

    if (w->id != 0 || bc->dedicated || bc->be->role != BACKEND_MASTER ||
        w->commands_from == bc->be || (r = req_internal(w, 1, argv, argl)) == NULL) {
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
    bool clients = false;

    if (bc->state != BC_READY) {
        return;
    }
    offsets_before_flush(bc);
    bconn_ask_commands(bc);
    for (r = bc->unsent; r != NULL && k < BCONN_IOV_MAX; r = r->bnext) {
        k = spans_iov(&r->in, r->sent, iov, k, BCONN_IOV_MAX);
        clients |= !(r->flags & REQ_INTERNAL);
    }
    if (k == 0) {
        bconn_set_events(bc, bconn_wanted(bc));
        return;
    }
    n = transport_writev(&bc->t, iov, k);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            bconn_set_events(bc, bconn_wanted(bc));
            return;
        }
        bconn_close(bc, strerror(errno));
        return;
    }
    bc->w->stats.backend_writes++;
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
    if (bc->owner == NULL || bc->owner->outbytes <= backend_cfg(bc->be)->client_backlog_limit) {
        return false;
    }
    bc->paused = true;
    bc->lagging = true;
    bconn_set_events(bc, bconn_wanted(bc));
    return true;
}

/* ---- replies ------------------------------------------------------------- */

static bool bconn_prepare_chunk(struct bconn *bc)
{
    struct chunk *old = bc->rchunk, *nc;
    uint32_t keep = 0;

    if (old != NULL && chunk_room(old) > 0) {
        return true;
    }
    nc = chunk_get(&bc->w->pool);
    if (nc == NULL) {
        return false;
    }
    if (old != NULL && old->len > bc->rstart) {
        uint32_t part = old->len - bc->rstart;
        if (bc->cur.n == 0 && part <= BCONN_TAIL_COPY_MAX) {
            memcpy(nc->data, old->data + bc->rstart, part);
            nc->len = keep = part;
        } else if (!spans_add(&bc->cur, old, bc->rstart, part)) {
            chunk_unref(nc);
            return false;
        }
    }
    if (old != NULL) {
        chunk_unref(old);
    }
    bc->rchunk = nc;
    bc->rpos = keep;
    bc->rstart = 0;
    return true;
}

static void bconn_internal_reply(struct bconn *bc, struct req *r)
{
    if (r->flags & REQ_PROBE) {
        offsets_probe_reply(bc, r);
        req_free(bc->w, r);
        return;
    }
    if (r->flags & REQ_COMMANDS) {
        bconn_commands_reply(bc, r);
        req_free(bc->w, r);
        return;
    }
    if (r->flags & REQ_ERROR) {
        char text[128];
        size_t n = spans_copy(&r->out, 0, text, sizeof(text) - 1);
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r')) {
            n--;
        }
        text[n] = '\0';
        log_warn("backend %s: the proxy's own command failed: %s", bc->be->name, text);
        if (bc->dedicated && (r->flags & REQ_CREDENTIALS) && bc->owner != NULL) {
            /* The client's own credentials were refused on a new
             * connection: it must not go on with the proxy's. */
            struct client *owner = bc->owner;
            req_free(bc->w, r);
            client_close(owner, "its credentials were refused on a new connection");
            return;
        }
        if (!bc->dedicated) {
            struct backend *be = bc->be;
            req_free(bc->w, r);
            bconn_close(bc, "handshake failed");
            backend_mark_down(be, "handshake failed (check backend-username/backend-password)");
            return;
        }
    }
    req_free(bc->w, r);
}

/* Errors that mean the command was not executed: the server is not (or not
 * yet) a usable master. With a fixed backend only LOADING is worth waiting
 * for; READONLY from it is a configuration problem the client must see. */
static bool bconn_not_executed(const struct bconn *bc)
{
    static const char *const codes[] = {"LOADING ", "READONLY ", "MASTERDOWN "};
    const struct replyscan *rs = &bc->rs;
    size_t ncodes = backend_cfg(bc->be)->has_backend ? 1 : 3;

    if (!rs->is_error || rs->type != '-') {
        return false;
    }
    for (size_t i = 0; i < ncodes; i++) {
        size_t n = strlen(codes[i]);
        if (rs->head_len >= n && memcmp(rs->head, codes[i], n) == 0) {
            return true;
        }
    }
    return false;
}

/* The reply is an error from a replica that the master may not give:
 * NOSCRIPT, or a refusal that says nothing ran (READONLY, LOADING...). */
static bool bconn_master_answers(const struct bconn *bc)
{
    const struct replyscan *rs = &bc->rs;

    return bconn_not_executed(bc) || (rs->is_error && rs->type == '-' && rs->head_len >= 9 &&
                                      memcmp(rs->head, "NOSCRIPT ", 9) == 0);
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
    be->suspect_until = ev_now(w->loop) + BACKEND_SUSPECT_TIME;
    if (bc->dedicated) {
        bc->retiring = true; /* the session continues on a new connection */
    }
    w->stats.retried++;
    spans_clear(&r->out);
    r->flags &= ~REQ_ERROR;
    client_undispatch(r->client, r);
    proxy_check_topology(w->px);
}

/* A complete reply is in bc->cur: give it to whoever it belongs to. */
static void bconn_deliver(struct bconn *bc)
{
    struct spans out = bc->cur;
    struct req *r;

    spans_init(&bc->cur);
    bconn_pop_noreply(bc);
    if (bc->streaming || (bc->rs.is_push && bc->resp == 3)) {
        if (bc->swallow > 0 && bc->streaming && session_is_confirmation(&out)) {
            /* A resubscription's confirmations: the client saw its own
             * before the connection was lost. */
            bc->swallow--;
            spans_clear(&out);
        } else if (bc->owner != NULL) {
            struct client *owner = bc->owner;
            int what = session_stream_reply(owner, bc, &out);
            if (what == SESSION_STREAM_PASS) {
                client_push(owner, &out);
            } else {
                spans_clear(&out);
            }
            if (what == SESSION_STREAM_ENDED) {
                client_stream_ended(owner);
            }
        } else {
            spans_clear(&out);
        }
        return;
    }
    if (bc->head == NULL || bc->head == bc->unsent) {
        spans_clear(&out);
        bconn_close(bc, "reply without a request");
        return;
    }
    r = bconn_pop(bc);
    r->out = out;
    if (bc->rs.is_error) {
        r->flags |= REQ_ERROR;
    }
    if (r->client != NULL && !(r->flags & REQ_INTERNAL) && !bc->dedicated &&
        bc->be->role == BACKEND_REPLICA && !(r->flags & REQ_MASTER_ONLY) &&
        bconn_master_answers(bc)) {
        /* A read the replica cannot answer, though the topology is fine: a
         * script it lacks, a function that may write (READONLY), a replica
         * loading or cut off from its master. The master answers it. */
        spans_clear(&r->out);
        r->flags = (uint16_t)((r->flags & ~REQ_ERROR) | REQ_MASTER_ONLY);
        client_undispatch(r->client, r);
    } else if (r->client != NULL && !(r->flags & REQ_INTERNAL) &&
               (!bc->dedicated || session_can_resend(r->client)) && bconn_not_executed(bc) &&
               ev_now(bc->w->loop) - r->since <
                   (double)backend_cfg(bc->be)->hold_timeout_ms / 1000.0) {
        /* Sent again until hold-timeout from its arrival; a server that
         * still refuses then (a master loading its data) answers it. */
        bconn_retry_refused(bc, r);
    } else if (r->flags & REQ_INTERNAL) {
        bconn_internal_reply(bc, r);
    } else if (r->client == NULL) {
        req_free(bc->w, r);
    } else {
        client_reply_done(r->client, r);
    }
    if (bc->state != BC_CLOSED && bc->nqueued == 0 &&
        (bc->retiring ||
         (bc->be != NULL && bc->be->role == BACKEND_RETIRED && bc->owner == NULL))) {
        /* A dedicated session moves on: its state is replayed on a new
         * connection to the master in use. */
        bconn_close(bc, NULL);
    }
}

static void bconn_scan(struct bconn *bc)
{
    struct chunk *ch = bc->rchunk;

    /* Delivering a reply can close this connection (its client went over a
     * limit), which drops the connection's reference on the chunk. */
    chunk_ref(ch);
    while (bc->state != BC_CLOSED && bc->rpos < ch->len) {
        size_t used = 0;
        enum replyscan_status st =
            replyscan_feed(&bc->rs, ch->data + bc->rpos, ch->len - bc->rpos, &used);
        bc->rpos += (uint32_t)used;
        if (st == REPLYSCAN_MORE) {
            break;
        }
        if (st == REPLYSCAN_ERROR) {
            char why[96];
            snprintf(why, sizeof(why), "protocol error from server: %s", bc->rs.err);
            bconn_close(bc, why);
            break;
        }
        if (!spans_add(&bc->cur, ch, bc->rstart, bc->rpos - bc->rstart)) {
            bconn_close(bc, "out of memory");
            break;
        }
        bc->rstart = bc->rpos;
        bconn_deliver(bc);
    }
    chunk_unref(ch);
}

/* A read went on past the current chunk into nc: the reply in progress
 * keeps a span over the old chunk's tail, and scanning goes on in nc. */
static bool bconn_next_chunk(struct bconn *bc, struct chunk *nc)
{
    struct chunk *old = bc->rchunk;

    if (old->len > bc->rstart && !spans_add(&bc->cur, old, bc->rstart, old->len - bc->rstart)) {
        return false;
    }
    chunk_unref(old);
    bc->rchunk = nc;
    bc->rpos = bc->rstart = 0;
    return true;
}

static void bconn_read(struct bconn *bc)
{
    size_t got = 0;
    bool filled = false;

    for (int i = 0; i < BCONN_READS_PER_EVENT && bc->state == BC_READY; i++) {
        struct chunk_fill more;
        size_t room;
        ssize_t n;
        if (bc->dedicated && bconn_owner_full(bc)) {
            break;
        }
        if (!bconn_prepare_chunk(bc)) {
            bconn_close(bc, "out of memory");
            return;
        }
        n = chunk_fill(&bc->w->pool, &bc->t, bc->rchunk, bc->bulk ? BCONN_FILL_EXTRA : 0, &more,
                       &room);
        if (n == 0) {
            bconn_close(bc, "connection closed by the server");
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                bc->lagging = false; /* caught up with the server */
                break;
            }
            bconn_close(bc, strerror(errno));
            return;
        }
        bc->w->stats.backend_reads++;
        got += (size_t)n;
        filled |= (size_t)n == room || more.n > 0;
        /* The current chunk, then each one the read went on into. */
        for (int j = -1; j < more.n; j++) {
            if (j >= 0 && (bc->state == BC_CLOSED || !bconn_next_chunk(bc, more.more[j]))) {
                while (j < more.n) {
                    chunk_unref(more.more[j++]);
                }
                if (bc->state != BC_CLOSED) {
                    bconn_close(bc, "out of memory");
                }
                break;
            }
            bconn_scan(bc);
        }
        if ((size_t)n < room && transport_pending(&bc->t) == 0) {
            break;
        }
    }
    /* Connections whose replies come in more than a chunk at a time read
     * into several at once. */
    bc->bulk = chunk_fill_bulk(bc->bulk, filled, got);
    /* An idle connection holds no buffer. */
    if (bc->state == BC_READY && bc->rchunk != NULL && bc->cur.n == 0 &&
        bc->rstart == bc->rchunk->len) {
        chunk_unref(bc->rchunk);
        bc->rchunk = NULL;
        bc->rpos = bc->rstart = 0;
    }
}

static void bconn_connected(struct bconn *bc)
{
    int err = net_connect_result(bc->t.fd);

    if (err != 0) {
        struct backend *be = bc->be;
        char why[ADDR_TEXT_MAX + 128];
        snprintf(why, sizeof(why), "connect: %s", strerror(err));
        bconn_close(bc, why);
        backend_mark_down(be, why);
        return;
    }
    ev_timer_stop(bc->w->loop, &bc->timer);
    net_tune(bc->t.fd, (int)(backend_cfg(bc->be)->tcp_keepalive_ms / 1000));
    bc->state = BC_READY;
    backend_mark_up(bc->be);
    bconn_set_events(bc, bconn_wanted(bc));
    worker_mark_bconn(bc->w, bc);
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
        struct backend *be = bc->be;
        bconn_close(bc, "connect timeout");
        backend_mark_down(be, "connect timeout");
    }
}

/* ---- failure --------------------------------------------------------------- */

/* What becomes of a request whose connection failed before its reply; be is
 * the server it was sent to (the connection may already be unlinked from it). */
static void bconn_hand_back(struct bconn *bc, struct backend *be, struct req *r, const char *addr)
{
    struct client *c = r->client;
    struct worker *w = bc->w;

    if (r->flags & REQ_INTERNAL || c == NULL) {
        if (r->flags & REQ_PROBE) {
            offsets_probe_lost(w, be, r); /* the server may be probed again */
        }
        if (r->flags & REQ_COMMANDS) {
            w->commands_from = NULL; /* ask again on the next connection */
        }
        req_free(w, r);
        return;
    }
    if (r->flags & REQ_NOREPLY) {
        return; /* already answered (streaming); the client still holds it */
    }
    if (r->sent == 0) {
        client_undispatch(c, r); /* never reached the server: safe to send again */
        return;
    }
    if ((!bc->dedicated || session_can_resend(c)) && cmd_is_read(r->ci) &&
        !(r->flags & REQ_RETRIED)) {
        r->flags |= REQ_RETRIED;
        w->stats.retried++;
        client_undispatch(c, r);
        return;
    }
    if (cmd_is_read(r->ci)) {
        req_reply_errorf(w, r, "ERR sentinel-proxy: connection to %s lost before the reply", addr);
    } else {
        w->stats.unknown++;
        req_reply_errorf(w, r,
                         "ERR sentinel-proxy: connection to %s lost before the reply; the "
                         "command may or may not have been executed",
                         addr);
    }
    client_reply_done(c, r);
}

static void bconn_unlink(struct bconn *bc)
{
    struct backend *be = bc->be;
    struct bconn **pp;

    if (be == NULL) {
        return;
    }
    for (int i = 0; i < be->nshared; i++) {
        if (be->shared[i] == bc) {
            be->shared[i] = NULL;
        }
    }
    for (pp = &be->spare; *pp != NULL; pp = &(*pp)->spare_next) {
        if (*pp == bc) {
            *pp = bc->spare_next;
            be->nspare--;
            break;
        }
    }
    if (bc->prev != NULL) {
        bc->prev->next = bc->next;
    } else {
        be->conns = bc->next;
    }
    if (bc->next != NULL) {
        bc->next->prev = bc->prev;
    }
    bc->prev = bc->next = NULL;
    bc->be = NULL;
}

void bconn_close(struct bconn *bc, const char *why)
{
    bconn_close_how(bc, why, false);
}

static void bconn_close_how(struct bconn *bc, const char *why, bool abort)
{
    struct worker *w = bc->w;
    char addr[ADDR_TEXT_MAX];
    struct backend *be = bc->be;
    struct req *r;

    if (bc->state == BC_CLOSED) {
        return;
    }
    snprintf(addr, sizeof(addr), "%s", bc->be != NULL ? bc->be->name : "?");
    if (why != NULL) {
        log_info("backend %s: %s connection closed: %s", addr,
                 bc->dedicated ? "dedicated" : "shared", why);
    }
    bc->state = BC_CLOSED;
    ev_io_stop(w->loop, &bc->io);
    ev_timer_stop(w->loop, &bc->timer);
    bc->io_events = 0;
    if (abort) {
        transport_abort(&bc->t);
    } else {
        transport_close(&bc->t);
    }
    if (bc->owner != NULL && bc->lagging) {
        /* Lost while its owner was not reading (the server may have dropped
         * it for that): the client loses its connection, as it would have
         * connected directly. */
        struct client *owner = bc->owner;
        bc->owner = NULL;
        owner->ded = NULL;
        client_close(owner, "its dedicated connection was lost while it did not read");
    } else if (bc->owner != NULL) {
        client_lost_dedicated(bc->owner, bc);
        bc->owner = NULL;
    }
    /* Off the backend first, so that requests handed back cannot be queued
     * here again. */
    for (r = bc->head; r != NULL && bc->be != NULL; r = r->bnext) {
        if (!(r->flags & REQ_NOREPLY)) {
            bc->be->inflight--;
        }
    }
    bconn_unlink(bc);
    while (bc->head != NULL) {
        r = bconn_pop(bc);
        bconn_hand_back(bc, be, r, addr);
    }
    spans_clear(&bc->cur);
    if (bc->rchunk != NULL) {
        chunk_unref(bc->rchunk);
        bc->rchunk = NULL;
    }
    worker_wake_later(w);
    worker_reap_bconn(w, bc);
}

void bconn_destroy(struct bconn *bc)
{
    free(bc);
}
