/*
 * client.c - client connections: read, scan, dispatch in order, write back.
 *
 * Life of a request: bytes are read into the client's chunk; the request
 * scanner marks where each request ends and the request keeps a span over
 * those bytes (a small partial request at a chunk's end is moved to the next
 * chunk, a large one keeps spans over several). Complete requests join the
 * client's queue and are dispatched in order: answered locally, queued on a
 * shared or dedicated backend connection, or held while no backend can take
 * them. Replies are written back from the head of the queue, in order, with
 * one writev per flush.
 */
#include "proxy/client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conf/config.h"
#include "lib/evio.h"
#include "lib/log.h"
#include "lib/tls.h"
#include "proxy/acks.h"
#include "proxy/backend.h"
#include "proxy/bconn.h"
#include "proxy/commands.h"
#include "proxy/listener.h"
#include "proxy/local.h"
#include "proxy/offsets.h"
#include "proxy/proxy.h"
#include "proxy/reader.h"
#include "proxy/req.h"
#include "proxy/resub.h"
#include "proxy/router.h"
#include "proxy/session.h"
#include "proxy/worker.h"

#define CLIENT_READS_PER_EVENT 16   /* fairness: reads per readiness event */
#define CLIENT_FILL_EXTRA      1    /* chunks a bulk client's read may fill beyond the current */
#define CLIENT_IOV_MAX         512  /* iovecs per writev */
#define CLIENT_INFLIGHT_MAX    128  /* requests of one client in flight at once */
#define CLIENT_WINDOW_START    8    /* ... for a new client: one more per reply seen */
#define CLIENT_COMPACT_MAX     1024 /* replies up to this are copied for a slow reader */
#define REQ_OVERHEAD           ((uint64_t)sizeof(struct req))

_Static_assert(SESSION_RESUB_CMDS <= BCONN_RESUB_CMDS, "a connection counts each replayed command");

enum dispatch_result {
    DISPATCH_SENT = 0,  /* queued on a backend connection */
    DISPATCH_LOCAL = 1, /* answered (or refused) by the proxy */
    DISPATCH_WAIT = 2,  /* cannot be dispatched yet */
};

static void client_io_cb(struct ev_loop *loop, ev_io *io, int revents);
static void client_hs_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents);

static const struct config *client_cfg(const struct client *c)
{
    return c->w->cfg;
}

static void client_set_events(struct client *c, bool want_write)
{
    unsigned ev = 0;

    if (c->flags & CL_CLOSING) {
        return;
    }
    if (!(c->flags & (CL_PAUSED | CL_CLOSE_AFTER))) {
        ev |= EV_READ;
    }
    if (want_write || transport_out_pending(&c->t)) {
        ev |= EV_WRITE;
    }
    evio_arm(c->w->loop, &c->io, c->t.fd, &c->io_events, ev);
    if (ev & EV_READ) {
        evio_feed_pending(c->w->loop, &c->io, &c->t);
    }
}

struct client *client_new(struct worker *w, struct listener *l, int fd)
{
    struct client *c = calloc(1, sizeof(*c));
    char err[256];

    if (c == NULL) {
        return NULL;
    }
    if (l->tls == NULL) {
        transport_plain(&c->t, fd);
    } else if (transport_tls(&c->t, fd, l->tls, NULL, err, sizeof(err))) {
        c->flags |= CL_HANDSHAKE;
        ev_timer_init(&c->hs, client_hs_timeout_cb,
                      (double)w->cfg->tls_handshake_timeout_ms / 1000.0, 0);
        c->hs.data = c;
        ev_timer_start(w->loop, &c->hs);
    } else {
        log_warn("TLS client refused: %s", err);
        free(c);
        return NULL;
    }
    c->w = w;
    c->listener = l;
    c->window = CLIENT_WINDOW_START;
    l->refs++;
    c->id = proxy_next_client_id(w->px);
    reqscan_init(&c->scan, &w->px->limits);
    session_init(&c->sess);
    c->last_active = ev_now(w->loop);
    ev_io_init(&c->io, client_io_cb, fd, EV_READ);
    c->io.data = c;
    ev_io_start(w->loop, &c->io);
    c->io_events = EV_READ;
    c->next = w->clients;
    if (w->clients != NULL) {
        w->clients->prev = c;
    }
    w->clients = c;
    w->nclients++;
    WORKER_COUNT(w, connections, 1);
    return c;
}

/* ---- queue bookkeeping ------------------------------------------------ */

/* r's reply now waits to be written: count it in the client's output and
 * backlog, and queue the client for the flush pass. */
static void client_output_ready(struct client *c, struct req *r)
{
    c->outbytes += r->out.bytes;
    c->backlog += r->out.bytes;
    worker_mark_client(c->w, c);
}

/* Give the dedicated connection back once the session left nothing on it
 * (kept as a spare for reuse). A closing client lets go of it in any case:
 * one that still carries state is closed. */
static void client_give_back(struct client *c, bool closing)
{
    struct bconn *bc = c->ded;
    bool clean;

    if (bc == NULL || (!closing && c->inflight > 0)) {
        return;
    }
    clean = bc->nqueued == 0 && session_is_clean(&c->sess);
    if (!clean && !closing) {
        return;
    }
    c->ded = NULL;
    c->last = NULL;
    bc->owner = NULL;
    if (clean) {
        backend_return(bc);
    } else {
        bconn_close(bc, "dedicated session ended");
    }
}

static bool client_is_auth(const struct req *r)
{
    return r->ci != NULL && (r->ci->id == CMD_AUTH || r->ci->id == CMD_HELLO);
}

static void client_append(struct client *c, struct req *r)
{
    r->client = c;
    r->seq = ++c->seq;
    r->since = c->w->now;
    r->arrived = c->w->now_us;
    WORKER_COUNT(c->w, bytes_in, r->in.bytes);
    r->cprev = c->tail;
    r->cnext = NULL;
    if (c->tail != NULL) {
        c->tail->cnext = r;
    } else {
        c->head = r;
    }
    c->tail = r;
    c->nreqs++;
    c->backlog += r->in.bytes + REQ_OVERHEAD;
    if (r->flags & REQ_DONE) {
        client_output_ready(c, r);
    }
    if (client_is_auth(r)) {
        c->auth_queued++;
    }
    if (c->undisp == NULL) {
        c->undisp = r;
    }
    if (c->backlog > client_cfg(c)->client_backlog_limit) {
        c->flags |= CL_PAUSED;
    }
}

static void client_unhold(struct client *c, struct req *r)
{
    if (r->flags & REQ_HELD) {
        c->w->held_bytes -= r->in.bytes;
        c->w->held_reqs--;
        r->flags &= ~REQ_HELD;
    }
}

/* Take r off the client's queue; it is freed unless a backend connection
 * still holds it (the connection frees it when it lets go). */
static void client_unlink(struct client *c, struct req *r)
{
    if (r->cprev != NULL) {
        r->cprev->cnext = r->cnext;
    } else {
        c->head = r->cnext;
    }
    if (r->cnext != NULL) {
        r->cnext->cprev = r->cprev;
    } else {
        c->tail = r->cprev;
    }
    if (c->undisp == r) {
        c->undisp = r->cnext;
    }
    c->nreqs--;
    if (client_is_auth(r)) {
        c->auth_queued--;
    }
    c->backlog -= r->in.bytes + REQ_OVERHEAD;
    if (r->flags & REQ_DONE) {
        c->backlog -= r->out.bytes;
        c->outbytes -= r->out.bytes - r->written;
    } else if (r->flags & REQ_ACK_WAIT) {
        c->backlog -= r->out.bytes;
        if (--c->nacks == 0) {
            acks_forget(c);
        }
    }
    client_unhold(c, r);
    r->client = NULL;
    r->cprev = r->cnext = NULL;
    if (!(r->flags & REQ_DISPATCHED)) {
        req_free(&c->w->reqs, r);
    }
}

/* ---- reading and scanning --------------------------------------------- */

/* An idle connection holds no buffer. One with requests in progress keeps
 * reading into the same chunk, so that requests arriving one read at a time
 * share it instead of pinning a chunk each. */
static void client_release_chunk(struct client *c)
{
    if (c->cur == NULL && c->head == NULL) {
        reader_release_idle(&c->rd);
    }
}

/* The scanner found malformed input: answer as redis-server does, then close
 * once everything before it has been answered. */
static void client_protocol_error(struct client *c)
{
    struct req *r = c->cur;

    c->cur = NULL;
    spans_clear(&r->in);
    req_reply_errorf(&c->w->reqs, r, "ERR %s", c->scan.err);
    r->flags |= REQ_CLOSE_AFTER;
    client_append(c, r);
    c->flags |= CL_CLOSE_AFTER;
    worker_mark_client(c->w, c);
    WORKER_COUNT(c->w, protocol_errors, 1);
    log_debug("client %llu: %s", (unsigned long long)c->id, c->scan.err);
}

/* Turn a complete inline request into multibulk (backends get one protocol),
 * recording its command name. False when the line must be ignored (no
 * arguments), was refused (error queued), or the client was closed. */
static bool client_inline(struct client *c, struct req *r)
{
    size_t eol = reqscan_inline_eol(&c->scan), len = 0, enclen = 0;
    char *line = req_flatten(r, c->w->px->limits.max_inline_len + 2, &len);
    enum reqscan_inline st = REQSCAN_INLINE_NOMEM;
    const char *argv[2];
    size_t argl[2];
    char *enc = NULL;
    int argc = 0, nargs = 0;

    if (line != NULL && len >= eol) {
        st = reqscan_inline_encode(line, len - eol, &enc, &enclen, &nargs);
    }
    free(line);
    switch (st) {
    case REQSCAN_INLINE_EMPTY:
        req_free(&c->w->reqs, r);
        return false;
    case REQSCAN_INLINE_UNBALANCED:
        snprintf(c->scan.err, sizeof(c->scan.err), "Protocol error: unbalanced quotes in request");
        c->cur = r;
        client_protocol_error(c);
        return false;
    case REQSCAN_INLINE_NOMEM:
        req_free(&c->w->reqs, r);
        client_close(c, "out of memory");
        return false;
    case REQSCAN_INLINE_OK:
        break;
    }
    spans_clear(&r->in);
    argc = req_split(enc, enclen, argv, argl, 2);
    if (argc <= 0 || !req_spans_copy_in(&c->w->reqs, &r->in, enc, enclen)) {
        free(enc);
        req_free(&c->w->reqs, r);
        client_close(c, "out of memory");
        return false;
    }
    r->argc = (uint32_t)nargs;
    r->ci = cmdtable_find(proxy_cmds(c->w->px), argv[0], argl[0], argc > 1 ? argv[1] : NULL,
                          argc > 1 ? argl[1] : 0);
    if (r->ci != NULL && (r->ci->id == CMD_SELECT || r->ci->id == CMD_HELLO) && argc > 1) {
        r->intarg = session_parse_int(argv[1], argl[1]);
    }
    free(enc);
    return true;
}

/* A request was scanned completely: classify it and queue it. */
static void client_request_done(struct client *c, struct req *r)
{
    const struct reqscan *s = &c->scan;

    WORKER_COUNT(c->w, requests, 1);
    if (s->kind == REQSCAN_INLINE) {
        if (client_inline(c, r)) {
            client_append(c, r);
        }
        return;
    }
    if (s->argc == 0) {
        req_free(&c->w->reqs, r); /* "*0" and "*-1" are ignored, as by redis-server */
        return;
    }
    r->argc = (uint32_t)s->argc;
    if (!s->name_trunc) {
        bool sub = s->argc > 1 && !s->arg1_trunc;
        r->ci = cmdtable_find(proxy_cmds(c->w->px), s->name, s->name_len, sub ? s->arg1 : NULL,
                              sub ? s->arg1_len : 0);
    }
    if (r->ci != NULL && (r->ci->id == CMD_SELECT || r->ci->id == CMD_HELLO) && s->argc > 1 &&
        !s->arg1_trunc) {
        r->intarg = session_parse_int(s->arg1, s->arg1_len);
    }
    client_append(c, r);
}

/* Scan what was read; complete requests are queued. */
static void client_scan(struct client *c)
{
    struct reader *rd = &c->rd;
    struct chunk *ch = rd->chunk;

    while (rd->pos < ch->len && !(c->flags & (CL_CLOSE_AFTER | CL_CLOSING))) {
        enum reqscan_status st;
        size_t used = 0;
        if (c->cur == NULL) {
            c->cur = req_new(&c->w->reqs);
            if (c->cur == NULL) {
                client_close(c, "out of memory");
                return;
            }
            rd->start = rd->pos;
        }
        /* redis-server's limits for clients that must authenticate first,
         * unless an AUTH is on its way (it may succeed). */
        c->scan.preauth =
            client_cfg(c)->backend_password != NULL && !c->sess.authed && c->auth_queued == 0;
        st = reqscan_feed(&c->scan, ch->data + rd->pos, ch->len - rd->pos, &used);
        rd->pos += (uint32_t)used;
        if (st == REQSCAN_MORE) {
            if (c->scan.bytes > client_cfg(c)->client_query_buffer_limit) {
                client_close(c, "request larger than client-query-buffer-limit");
            }
            return;
        }
        if (st == REQSCAN_ERROR) {
            client_protocol_error(c);
            return;
        }
        if (!spans_add(&c->cur->in, ch, rd->start, rd->pos - rd->start)) {
            client_close(c, "out of memory");
            return;
        }
        struct req *r = c->cur;
        c->cur = NULL;
        rd->start = rd->pos;
        client_request_done(c, r);
    }
}

static bool client_may_read(void *conn)
{
    const struct client *c = conn;

    return !(c->flags & (CL_PAUSED | CL_CLOSE_AFTER | CL_CLOSING));
}

static struct spans *client_partial(void *conn)
{
    struct client *c = conn;

    return c->cur != NULL ? &c->cur->in : NULL;
}

static void client_scan_cb(void *conn)
{
    client_scan(conn);
}

static bool client_stopped(void *conn)
{
    const struct client *c = conn;

    return (c->flags & (CL_CLOSE_AFTER | CL_CLOSING)) != 0;
}

static const struct reader_ops client_reader_ops = {
    .may_read = client_may_read,
    .partial = client_partial,
    .scan = client_scan_cb,
    .stopped = client_stopped,
};

static void client_read(struct client *c)
{
    uint64_t nreads = 0;
    enum reader_status st = reader_read(&c->rd, &c->w->pool, &c->t, &client_reader_ops, c,
                                        CLIENT_READS_PER_EVENT, CLIENT_FILL_EXTRA, &nreads);

    if (nreads > 0) {
        WORKER_COUNT(c->w, client_reads, nreads);
        c->last_active = c->w->now;
    }
    switch (st) {
    case READER_EOF:
        client_close(c, NULL);
        return;
    case READER_ERROR:
        client_close(c, strerror(errno));
        return;
    case READER_NOMEM:
        client_close(c, "out of memory");
        return;
    default:
        break;
    }
    if (c->flags & CL_CLOSING) {
        return;
    }
    client_dispatch(c);
    if (!(c->flags & CL_CLOSING)) {
        client_release_chunk(c);
        client_set_events(c, c->io_events & EV_WRITE);
    }
}

/* ---- dispatching -------------------------------------------------------- */

/* r cannot be dispatched because no backend can take it: hold it, bounded in
 * memory per worker and in time (client_tick). */
static enum dispatch_result client_hold(struct client *c, struct req *r, const char *what)
{
    const struct config *cfg = client_cfg(c);

    if (!(r->flags & REQ_HELD)) {
        if (c->w->held_bytes + r->in.bytes > cfg->hold_memory) {
            req_reply_errorf(&c->w->reqs, r,
                             "ERR sentinel-proxy: no %s available and hold-memory is full", what);
            return DISPATCH_LOCAL;
        }
        r->flags |= REQ_HELD;
        c->w->held_bytes += r->in.bytes;
        c->w->held_reqs++;
    }
    worker_wait(c->w, c);
    return DISPATCH_WAIT;
}

/* A dedicated connection to the master (be) for a session that needs one,
 * with the session's state replayed on it first. False when none can be
 * had now (the request waits); the client is closed if memory ran out. */
static bool client_pin(struct client *c, struct backend *be)
{
    unsigned effects;
    struct req *before;

    c->ded = backend_dedicated(be, c);
    if (c->ded == NULL) {
        return false;
    }
    before = c->ded->tail;
    if (!session_replay(c, c->ded, &effects)) {
        client_close(c, "out of memory");
        return false;
    }
    bconn_gate_after(c->ded, before);
    bconn_follow_session(c->ded, &c->sess, effects);
    return true;
}

/* Send DISCARD in the place of EXEC r (its watched keys were lost with a
 * connection): the transaction ends on the server, and the client gets the
 * nil reply of a failed WATCH. False if out of memory. */
static bool client_exec_as_discard(struct client *c, struct req *r)
{
    static const char *const argv[] = {"DISCARD"};
    static const size_t argl[] = {7};
    struct req *d = req_internal(&c->w->reqs, 1, argv, argl);
    struct spans tmp;

    if (d == NULL) {
        return false;
    }
    tmp = r->in;
    r->in = d->in;
    d->in = tmp;
    c->backlog += r->in.bytes; /* the client's backlog now holds DISCARD */
    c->backlog -= d->in.bytes;
    r->flags |= REQ_EXEC_NIL;
    req_free(&c->w->reqs, d);
    return true;
}

/* Queue r on bc: the session sees it go first. False when the client was
 * closed (out of memory). */
static bool client_send(struct client *c, struct req *r, struct bconn *bc)
{
    unsigned effects = session_before_send(c, r, bc);

    if ((effects & SESSION_SEND_AS_DISCARD) && !client_exec_as_discard(c, r)) {
        client_close(c, "out of memory"); /* EXEC must not run */
        return false;
    }
    if (effects != 0) {
        bconn_follow_session(bc, &c->sess, effects);
    }
    r->dest = bc->be->role == BACKEND_REPLICA ? REQ_DEST_REPLICA : REQ_DEST_MASTER;
    bconn_enqueue(bc, r);
    if (!(r->flags & REQ_NOREPLY)) {
        c->inflight++;
    }
    c->last = bc;
    return true;
}

/* A shared connection to be, of the client's protocol, for c's next
 * request: while its requests are in flight on one, that one, even stalled,
 * so that they run in the order sent (backend_shared picks another only for
 * a client with nothing in flight, by the size of its recent replies). */
static struct bconn *client_shared(struct client *c, struct backend *be)
{
    struct bconn *last = c->last;

    if (c->inflight > 0 && last->state != BC_CLOSED && last->be == be && !last->dedicated &&
        !last->retiring && last->resp == c->sess.resp) {
        return last;
    }
    return backend_shared(be, c->id, c->sess.resp,
                          c->reply_size != 0 ? c->reply_size : be->reply_avg);
}

/* True when rt sends r to the master while, after a switch, the proxy's
 * subscribers are not all subscribed again there (resub_holds): it
 * waits, so that nothing it publishes (or triggers) is missed by them. */
static bool client_behind_resubscriptions(const struct client *c, const struct route *rt)
{
    const struct worker *w = c->w;
    const struct backend *be = NULL;

    if (!resub_holds(w)) {
        return false;
    }
    switch (rt->kind) {
    case ROUTE_DEDICATED:
        be = c->ded->be;
        break;
    case ROUTE_PIN:
    case ROUTE_SHARED:
        be = rt->be;
        break;
    default:
        break;
    }
    return be != NULL && be == w->master;
}

/* Decide where r goes (router.c) and queue it there. */
static enum dispatch_result client_route(struct client *c, struct req *r)
{
    struct route rt;
    struct bconn *bc = NULL;

    if (c->flags & CL_RYW_CHECK) {
        return DISPATCH_WAIT; /* the checked read may have to be sent again first */
    }
    if (c->sess.lost_multi) {
        session_before_dispatch(&c->sess, r);
    }
    router_route(c, r, &rt);
    if (client_behind_resubscriptions(c, &rt)) {
        return client_hold(c, r, "master");
    }
    switch (rt.kind) {
    case ROUTE_LOCAL:
        if (!local_handle(c, r)) {
            /* Waiting for the control thread, not for a backend: no
             * hold-timeout or hold-memory (it may have been held before,
             * behind a resubscription), woken when the reload has run. */
            client_unhold(c, r);
            worker_wait(c->w, c);
            return DISPATCH_WAIT;
        }
        if (c->sess.reply_off && (r->flags & REQ_DONE) && !req_reply_raw(&c->w->reqs, r, "", 0)) {
            client_close(c, "out of memory"); /* (CLIENT REPLY OFF: the server says nothing) */
        }
        WORKER_COUNT(c->w, local, 1);
        return DISPATCH_LOCAL;
    case ROUTE_WAIT:
        return DISPATCH_WAIT;
    case ROUTE_HOLD:
        return client_hold(c, r, rt.what);
    case ROUTE_PIN:
        if (!client_pin(c, rt.be)) {
            return (c->flags & CL_CLOSING) ? DISPATCH_LOCAL
                                           : client_hold(c, r, "master connection");
        }
        bc = c->ded;
        break;
    case ROUTE_DEDICATED:
        bc = c->ded;
        break;
    case ROUTE_SHARED:
        bc = client_shared(c, rt.be);
        if (bc == NULL) {
            return client_hold(c, r, "backend");
        }
        break;
    }
    if (c->inflight > 0 && bc != c->last) {
        return DISPATCH_WAIT; /* keep this client's commands in order */
    }
    if (rt.check != 0) {
        if (!offsets_send_check(bc)) {
            return client_hold(c, r, "backend");
        }
        WORKER_COUNT(c->w, ryw_checked, 1);
        r->flags |= REQ_RYW_CHECK;
        r->need = rt.check;
        c->flags |= CL_RYW_CHECK;
    }
    client_unhold(c, r);
    return client_send(c, r, bc) ? DISPATCH_SENT : DISPATCH_LOCAL;
}

/* Admission: replies of requests in flight are expected to be as large as
 * the recent large ones (the estimate follows a larger reply at once and
 * decays slowly); requests wait in the client's queue while those and the
 * unsent replies would pass the backlog limit, so a client that asks for
 * large replies and does not read them cannot make the proxy buffer without
 * bound. Until a first reply gives an estimate, one request is in flight at
 * a time, and then a window that starts at CLIENT_WINDOW_START and grows by
 * one with each reply (a reply that small says little of the next ones). With nothing in flight one
 * request may go as long as the unsent replies are under the limit: the client makes room by
 * reading. */
static bool client_over_budget(const struct client *c)
{
    uint64_t limit = client_cfg(c)->client_backlog_limit;
    uint64_t expected = (uint64_t)c->inflight * c->reply_size + c->outbytes;

    return c->inflight >= c->window || c->outbytes >= limit ||
           (c->inflight > 0 && (c->reply_size == 0 || expected > limit));
}

/* Subscriptions lost with their connection are re-established on a new
 * dedicated connection as soon as a master is usable. False while waiting. */
static bool client_resubscribe(struct client *c)
{
    struct backend *be = c->w->master;
    uint32_t counts[SESSION_RESUB_CMDS];
    unsigned n;

    if (c->ded != NULL || c->inflight > 0) {
        return false;
    }
    if (be == NULL || !backend_usable(be) || !client_pin(c, be)) {
        if (!(c->flags & CL_CLOSING)) {
            worker_wait(c->w, c);
        }
        return false;
    }
    if (!session_resubscribe(c, c->ded, counts, &n)) {
        client_close(c, "out of memory");
        return false;
    }
    bconn_expect_confirmations(c->ded, counts, n);
    c->last = c->ded;
    return true;
}

void client_dispatch(struct client *c)
{
    if (c->reload_ticket != 0 && c->sess.resub) {
        /* Its next request is a PROXY CONFIG RELOAD that waits for the
         * control thread: answered first (client_route), never held. */
        struct req *r = c->undisp;
        if (r != NULL && client_route(c, r) == DISPATCH_LOCAL && !(c->flags & CL_CLOSING)) {
            c->undisp = r->cnext;
            client_output_ready(c, r);
        }
        if (c->reload_ticket != 0 || (c->flags & CL_CLOSING)) {
            return;
        }
    }
    if (c->sess.resub && !client_resubscribe(c)) {
        /* Waiting for a master to subscribe again on: what the client sent
         * meanwhile is held, bounded like any held request. */
        struct req *r = c->undisp;
        if (r != NULL && !(r->flags & (REQ_DONE | REQ_DISPATCHED)) && !(c->flags & CL_CLOSING) &&
            client_hold(c, r, "master") == DISPATCH_LOCAL) {
            c->undisp = r->cnext;
            client_output_ready(c, r);
        }
        return;
    }
    while (c->undisp != NULL && !(c->flags & CL_CLOSING)) {
        struct req *r = c->undisp;
        if (r->flags & (REQ_DONE | REQ_DISPATCHED)) {
            c->undisp = r->cnext;
            continue;
        }
        if (client_over_budget(c)) {
            break;
        }
        if (client_route(c, r) == DISPATCH_WAIT) {
            break;
        }
        if (c->flags & CL_CLOSING) {
            return; /* r went with the client (an HTTP probe, out of memory) */
        }
        if (c->undisp == r) {
            c->undisp = r->cnext;
        }
        if (r->flags & REQ_DONE) {
            client_output_ready(c, r);
        }
    }
    if ((c->undisp == NULL || !(c->undisp->flags & REQ_HELD)) && !c->sess.resub &&
        c->reload_ticket == 0) {
        worker_unwait(c->w, c);
    }
}

static void client_compact_reply(struct client *c, struct req *r)
{
    char buf[CLIENT_COMPACT_MAX];
    size_t n = spans_copy(&r->out, 0, buf, sizeof(buf));
    struct spans copy;

    spans_init(&copy);
    if (n == r->out.bytes && req_spans_copy_in(&c->w->reqs, &copy, buf, n)) {
        spans_clear(&r->out);
        r->out = copy;
    } else {
        spans_clear(&copy);
    }
}

/* The reply of an EXEC sent as DISCARD: nil, as for a failed WATCH. False if
 * out of memory. */
static bool client_reply_exec_nil(struct client *c, struct req *r)
{
    bool resp3 = c->sess.resp == 3;

    return req_reply_raw(&c->w->reqs, r, resp3 ? "_\r\n" : "*-1\r\n", resp3 ? 3 : 5);
}

/* r, a checked read, is answered or on its way again: the client's next
 * requests may go. */
static void client_check_over(struct client *c, struct req *r)
{
    if (r->flags & REQ_RYW_CHECK) {
        r->flags &= ~REQ_RYW_CHECK;
        c->flags &= ~CL_RYW_CHECK;
    }
}

void client_reply_done(struct client *c, struct req *r, const struct backend *from)
{
    unsigned effects;

    client_check_over(c, r);
    if (!(r->flags & REQ_NOREPLY) && c->inflight > 0) {
        c->inflight--;
    }
    /* Slow start: what a client's replies weigh is learnt from them, so a
     * new client does not get a full window of requests sent before the
     * first replies say how large they are. */
    if (c->window < CLIENT_INFLIGHT_MAX) {
        c->window++;
    }
    r->flags |= REQ_DONE;
    effects = session_after_reply(c, r);
    if (effects != 0 && c->ded != NULL) {
        bconn_follow_session(c->ded, &c->sess, effects);
    }
    if ((r->flags & (REQ_EXEC_NIL | REQ_ERROR)) == REQ_EXEC_NIL && !client_reply_exec_nil(c, r)) {
        client_close(c, "out of memory");
        return;
    }
    offsets_after_reply(c, r, (r->flags & REQ_DEDICATED) != 0);
    /* The request's bytes are no longer needed, and a small reply waiting
     * for a slow reader would keep a whole chunk of other clients' replies
     * alive: it is copied into the worker's own small-reply chunk. */
    c->backlog -= r->in.bytes;
    spans_clear(&r->in);
    if ((c->flags & CL_WBLOCKED) && r->out.bytes <= CLIENT_COMPACT_MAX && r->out.bytes > 0) {
        client_compact_reply(c, r);
    }
    {
        uint32_t size = r->out.bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)r->out.bytes;
        uint32_t decayed = c->reply_size - c->reply_size / 8;
        c->reply_size = size > decayed ? size : decayed > 0 ? decayed : 1;
    }
    if (acks_hold(c, r, from)) {
        c->backlog += r->out.bytes; /* kept, still bounded by client-backlog-limit */
    } else {
        client_output_ready(c, r);
    }
    if (c->outbytes > client_cfg(c)->client_output_limit) {
        client_close(c, "replies larger than client-output-limit");
        return;
    }
    if (c->inflight == 0) {
        c->last = NULL;
        if (c->ded != NULL) {
            client_give_back(c, false);
        }
    }
    if (c->undisp != NULL) {
        client_dispatch(c);
    }
}

void client_reply_released(struct client *c, struct req *r)
{
    client_output_ready(c, r);
}

/* Link r into c's queue before at (NULL: at the end). */
static void client_insert(struct client *c, struct req *r, struct req *at)
{
    r->client = c;
    r->cnext = at;
    r->cprev = at != NULL ? at->cprev : c->tail;
    if (r->cprev != NULL) {
        r->cprev->cnext = r;
    } else {
        c->head = r;
    }
    if (at != NULL) {
        at->cprev = r;
    } else {
        c->tail = r;
    }
    c->nreqs++;
}

void client_push(struct client *c, struct spans *out)
{
    struct req *r = req_new(&c->w->reqs), *at;

    if (r == NULL) {
        spans_clear(out);
        client_close(c, "out of memory");
        return;
    }
    r->out = *out;
    spans_init(out);
    r->flags = REQ_DONE | REQ_PUSH;
    /* Stream order: after everything answered, before what is still waiting
     * (on a streaming session everything is answered: the tail). */
    if (c->tail == NULL || (c->tail->flags & REQ_DONE)) {
        at = NULL;
    } else {
        for (at = c->head; at != NULL && (at->flags & REQ_DONE); at = at->cnext) {
        }
    }
    r->seq = at != NULL ? at->seq : c->seq + 1;
    client_insert(c, r, at);
    c->backlog += REQ_OVERHEAD;
    client_output_ready(c, r);
    if (c->outbytes > client_cfg(c)->client_output_limit) {
        client_close(c, "messages larger than client-output-limit");
    }
}

void client_undispatch(struct client *c, struct req *r)
{
    client_check_over(c, r);
    r->flags &= ~REQ_DISPATCHED;
    r->bc = NULL;
    r->sent = 0;
    r->probe = 0; /* a write is covered by the probe sent after it next time */
    if (!(r->flags & REQ_NOREPLY) && c->inflight > 0) {
        c->inflight--;
    }
    r->flags &= ~REQ_NOREPLY;
    if (c->inflight == 0) {
        c->last = NULL;
    }
    if (c->undisp == NULL || r->seq < c->undisp->seq) {
        c->undisp = r;
    }
    worker_wait(c->w, c);
}

void client_resend_streamed(struct client *c, struct req *r)
{
    struct req *at;

    r->flags &= ~(REQ_DONE | REQ_NOREPLY | REQ_DISPATCHED);
    r->bc = NULL;
    r->sent = 0;
    r->written = 0;
    if (r->client == NULL) {
        /* Already let go of as answered: back into the queue, in order. */
        for (at = c->head; at != NULL && at->seq < r->seq; at = at->cnext) {
        }
        client_insert(c, r, at);
        c->backlog += r->in.bytes + REQ_OVERHEAD;
        if (client_is_auth(r)) {
            c->auth_queued++;
        }
    }
    if (c->undisp == NULL || r->seq < c->undisp->seq) {
        c->undisp = r;
    }
    worker_wait(c->w, c);
}

void client_discard_after(struct client *c, struct req *r)
{
    while (r->cnext != NULL) {
        client_unlink(c, r->cnext);
    }
    if (c->cur != NULL) {
        req_free(&c->w->reqs, c->cur);
        c->cur = NULL;
    }
}

void client_stream_ended(struct client *c)
{
    client_give_back(c, false);
}

void client_lost_dedicated(struct client *c, struct bconn *bc)
{
    if (c->ded != bc) {
        return;
    }
    c->ded = NULL;
    if (c->sess.tracking) {
        /* Invalidations for what the client cached would never come from
         * a new connection: it must drop its cache, as it does when its own
         * connection breaks. */
        client_close(c, "CLIENT TRACKING cannot move to a new connection");
        return;
    }
    session_lost_connection(c);
    if (c->sess.resub) {
        worker_wait(c->w, c);
    }
}

/* ---- writing ------------------------------------------------------------ */

/* A reply that closes the connection (QUIT) was taken: close now, or once
 * the bytes a TLS transport still holds are written (nothing more is read,
 * and the requests behind it are dropped, as a close would). */
static void client_close_after_output(struct client *c)
{
    if (!transport_out_pending(&c->t)) {
        client_close(c, NULL);
        return;
    }
    while (c->head != NULL) {
        client_unlink(c, c->head);
    }
    c->flags |= CL_CLOSE_AFTER;
    client_set_events(c, true);
}

/* Count n requests answered now that arrived at the same time, with the
 * same command and destination: their latency by destination and kind. */
static inline void client_count(struct worker *w, uint64_t arrived, const struct cmd_info *ci,
                                unsigned dest, uint64_t n)
{
    int64_t d = (int64_t)(w->now_us - arrived);
    uint64_t us = d > 0 ? (uint64_t)d : 0;
    unsigned kind =
        ci != NULL ? worker_kind_of[ci->flags & (CMDF_WRITE | CMDF_READONLY)] : WORKER_KIND_OTHER;
    struct worker_latency *h = &w->stats.lat[dest][kind];
    unsigned b = worker_lat_bucket(us);

    __atomic_store_n(&h->bucket[b], h->bucket[b] + n, __ATOMIC_RELAXED);
    __atomic_store_n(&h->sum_us, h->sum_us + us * n, __ATOMIC_RELAXED);
}

/* An error reply, counted by where it came from; true if r is one. */
static inline bool client_count_error(struct worker *w, const struct req *r)
{
    if (__builtin_expect((r->flags & REQ_ERROR) != 0, 0)) {
        WORKER_COUNT(w,
                     outcome[(r->flags & REQ_PROXY_ERROR) ? WORKER_OUT_PROXY_ERROR
                                                          : WORKER_OUT_SERVER_ERROR],
                     1);
        return true;
    }
    return false;
}

/* Free the requests whose replies have been written, counting them. The
 * replies of a pipeline read at once leave together: a run of requests with
 * the same arrival, command and destination is counted in one go. */
static void client_trim_done(struct client *c)
{
    struct worker *w = c->w;
    const struct cmd_info *ci = NULL; /* the run being counted: n requests like this */
    uint64_t arrived = 0, n = 0, ok = 0;
    unsigned dest = 0;
    bool close_after = false;
    struct req *r;

    r = c->head;
    if (r->cnext == NULL || !(r->cnext->flags & REQ_DONE)) {
        /* One reply (unpipelined): no run to gather. */
        close_after = r->flags & REQ_CLOSE_AFTER;
        if (!(r->flags & (REQ_PUSH | REQ_NOREPLY))) {
            if (!client_count_error(w, r)) {
                WORKER_COUNT(w, outcome[WORKER_OUT_OK], 1);
            }
            client_count(w, r->arrived, r->ci, r->dest, 1);
        }
        client_unlink(c, r);
        if (close_after) {
            client_close_after_output(c);
        }
        return;
    }
    while (!close_after && (r = c->head) != NULL && (r->flags & REQ_DONE) &&
           r->written == r->out.bytes) {
        close_after = r->flags & REQ_CLOSE_AFTER;
        if (!(r->flags & (REQ_PUSH | REQ_NOREPLY))) { /* pushes are not requests */
            ok += !client_count_error(w, r);
            if (n > 0 && (r->arrived != arrived || r->ci != ci || r->dest != dest)) {
                client_count(w, arrived, ci, dest, n);
                n = 0;
            }
            if (n++ == 0) {
                arrived = r->arrived;
                ci = r->ci;
                dest = r->dest;
            }
        }
        client_unlink(c, r);
    }
    if (n > 0) {
        client_count(w, arrived, ci, dest, n);
    }
    WORKER_COUNT(w, outcome[WORKER_OUT_OK], ok);
    if (close_after) {
        client_close_after_output(c);
    }
}

/* Let go of the requests whose replies have been written. */
static inline void client_trim(struct client *c)
{
    struct req *r = c->head;

    if (r != NULL && (r->flags & REQ_DONE) && r->written == r->out.bytes) {
        client_trim_done(c);
    }
}

static uint64_t client_iov_bytes(const struct iovec *iov, int k)
{
    uint64_t total = 0;

    for (int i = 0; i < k; i++) {
        total += iov[i].iov_len;
    }
    return total;
}

void client_flush(struct client *c)
{
    struct iovec iov[CLIENT_IOV_MAX];
    struct req *r;
    ssize_t n;
    int k = 0;

    if (c->flags & CL_CLOSING) {
        return;
    }
    client_trim(c);
    if (c->flags & CL_CLOSING) {
        return;
    }
    for (r = c->head; r != NULL && (r->flags & REQ_DONE) && k < CLIENT_IOV_MAX; r = r->cnext) {
        k = spans_iov(&r->out, r->written, iov, k, CLIENT_IOV_MAX);
        if (r->flags & REQ_CLOSE_AFTER) {
            break;
        }
    }
    if (k == 0) {
        /* TLS: what the transport holds still goes out. */
        if (transport_out_pending(&c->t) && transport_writev(&c->t, iov, 0) < 0 &&
            errno != EAGAIN && errno != EWOULDBLOCK) {
            client_close(c, strerror(errno));
            return;
        }
        if ((c->flags & CL_CLOSE_AFTER) && c->head == NULL && !transport_out_pending(&c->t)) {
            client_close(c, NULL);
            return;
        }
        if (__builtin_expect(c->w->draining, 0) && worker_drain_client(c->w, c)) {
            return;
        }
        client_set_events(c, false);
        return;
    }
    n = transport_writev(&c->t, iov, k);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->flags |= CL_WBLOCKED;
            client_set_events(c, true);
            return;
        }
        client_close(c, strerror(errno));
        return;
    }
    WORKER_COUNT(c->w, client_writes, 1);
    WORKER_COUNT(c->w, bytes_out, (uint64_t)n);
    c->outbytes -= (uint64_t)n;
    if (client_iov_bytes(iov, k) > (uint64_t)n) {
        c->flags |= CL_WBLOCKED; /* it took less than offered */
    } else {
        c->flags &= ~CL_WBLOCKED;
    }
    if (c->ded != NULL && c->ded->paused &&
        c->outbytes <= client_cfg(c)->client_backlog_limit / 2) {
        bconn_resume(c->ded);
    }
    for (r = c->head; r != NULL && n > 0; r = r->cnext) {
        uint64_t left = r->out.bytes - r->written;
        uint64_t take = (uint64_t)n < left ? (uint64_t)n : left;
        r->written += take;
        n -= (ssize_t)take;
    }
    client_trim(c);
    if (c->flags & CL_CLOSING) {
        return;
    }
    if ((c->flags & CL_PAUSED) && c->backlog <= client_cfg(c)->client_backlog_limit / 2) {
        c->flags &= ~CL_PAUSED;
    }
    if (c->undisp != NULL) {
        client_dispatch(c); /* room was made for requests held back by admission */
    }
    r = c->head;
    client_set_events(c, r != NULL && (r->flags & REQ_DONE) && r->written < r->out.bytes);
    if ((c->flags & CL_CLOSE_AFTER) && c->head == NULL && !transport_out_pending(&c->t)) {
        client_close(c, NULL);
        return;
    }
    if (__builtin_expect(c->w->draining, 0) && worker_drain_client(c->w, c)) {
        return; /* its last reply is out */
    }
    client_release_chunk(c);
}

/* A TLS client's handshake; its requests are read once it is done. */
static void client_handshake(struct client *c)
{
    char err[256];
    unsigned want = 0;

    switch (transport_handshake(&c->t, &want, err, sizeof(err))) {
    case TLS_STEP_AGAIN:
        evio_arm(c->w->loop, &c->io, c->t.fd, &c->io_events, want);
        return;
    case TLS_STEP_FAILED:
        WORKER_COUNT(c->w, tls_handshake_failures, 1);
        log_info("client %llu: TLS handshake failed: %s", (unsigned long long)c->id, err);
        client_close(c, NULL);
        return;
    default:
        break;
    }
    c->flags &= ~CL_HANDSHAKE;
    ev_timer_stop(c->w->loop, &c->hs);
    WORKER_COUNT(c->w, tls_handshakes, 1);
    c->last_active = c->w->now;
    client_read(c); /* the first request may have come with the handshake */
}

static void client_hs_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct client *c = t->data;

    (void)loop;
    (void)revents;
    WORKER_COUNT(c->w, tls_handshake_failures, 1);
    log_info("client %llu: TLS handshake timeout", (unsigned long long)c->id);
    client_close(c, NULL);
}

static void client_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct client *c = io->data;

    (void)loop;
    if (__builtin_expect(c->flags & CL_HANDSHAKE, 0)) {
        client_handshake(c);
        return;
    }
    if (revents & EV_WRITE) {
        client_flush(c);
    }
    if ((revents & EV_READ) && !(c->flags & CL_CLOSING)) {
        client_read(c);
    }
}

/* ---- closing ------------------------------------------------------------- */

void client_close(struct client *c, const char *why)
{
    struct worker *w = c->w;

    if (c->flags & CL_CLOSING) {
        return;
    }
    if (why != NULL) {
        log_debug("client %llu closed: %s", (unsigned long long)c->id, why);
    }
    if (c->flags & CL_HANDSHAKE) {
        ev_timer_stop(w->loop, &c->hs);
    }
    c->flags |= CL_CLOSING;
    if (c->sess.resub) {
        resub_recheck(w); /* one subscriber fewer to wait for */
    }
    ev_io_stop(w->loop, &c->io);
    c->io_events = 0;
    transport_close(&c->t);
    worker_unwait(w, c);
    /* Requests still on backend connections stay there (their replies are
     * discarded); the client lets go of all of them now. */
    while (c->head != NULL) {
        client_unlink(c, c->head);
    }
    if (c->cur != NULL) {
        req_free(&w->reqs, c->cur);
        c->cur = NULL;
    }
    client_give_back(c, true);
    c->last = NULL;
    worker_reap_client(w, c);
}

void client_destroy(struct client *c)
{
    struct worker *w = c->w;

    reader_free(&c->rd);
    session_free(&c->sess);
    listener_release(c->listener);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        w->clients = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    w->nclients--;
    __atomic_sub_fetch(&w->px->nclients, 1, __ATOMIC_RELAXED);
    free(c);
}

void client_tick(struct client *c, double now)
{
    const struct config *cfg = client_cfg(c);
    double limit = (double)cfg->hold_timeout_ms / 1000.0;
    struct req *r;

    /* Requests wait at most hold-timeout from their arrival; everything
     * behind an expired one is tried (and, if still stuck, expires) too. */
    while (!(c->flags & CL_CLOSING) && (r = c->undisp) != NULL && (r->flags & REQ_HELD) &&
           now - r->since >= limit) {
        char why[512] = "";
        client_unhold(c, r);
        WORKER_COUNT(c->w, held_timeouts, 1);
        if (c->w->master == NULL) {
            proxy_why_no_master(c->w->px, why, sizeof(why));
        }
        req_reply_errorf(&c->w->reqs, r,
                         "ERR sentinel-proxy: no usable %s within hold-timeout (%llu ms)%s%s",
                         c->w->master == NULL ? "master" : "backend",
                         (unsigned long long)cfg->hold_timeout_ms, why[0] != '\0' ? ": " : "", why);
        c->undisp = r->cnext;
        client_output_ready(c, r);
        client_dispatch(c);
    }
    if (c->flags & CL_CLOSING) {
        return;
    }
    if (cfg->client_idle_timeout_ms > 0 && c->head == NULL && c->cur == NULL &&
        now - c->last_active >= (double)cfg->client_idle_timeout_ms / 1000.0) {
        client_close(c, "idle timeout");
    }
}
