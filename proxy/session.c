/*
 * session.c - session state tracking, dedicated-connection decisions and
 * state replay.
 *
 * State changes are applied when the reply says the command succeeded, in
 * reply order, so the proxy's view matches the server's. Commands that only
 * read or reset session state are kept on shared connections where that is
 * indistinguishable from a direct connection (SELECT 0, HELLO, the name).
 */
#include "proxy/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "conf/config.h"
#include "lib/log.h"
#include "proxy/backend.h"
#include "proxy/bconn.h"
#include "proxy/client.h"
#include "proxy/commands.h"
#include "proxy/hello.h"
#include "proxy/nameset.h"
#include "proxy/proxy.h"
#include "proxy/req.h"
#include "proxy/resp.h"
#include "proxy/worker.h"

#define SESSION_KINDS 3 /* channels, patterns, shard channels */

_Static_assert(SESSION_KINDS + 1 <= SESSION_RESUB_CMDS, "a resubscription: each kind, MONITOR");
static const char *const session_sub_cmd[SESSION_KINDS] = {"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE"};
#define SESSION_REQ_MAX (1u << 20)

void session_init(struct session *s)
{
    memset(s, 0, sizeof(*s));
    s->resp = 2;
}

static void session_subs_free(struct session *s)
{
    if (s->subs != NULL) {
        for (int k = 0; k < SESSION_KINDS; k++) {
            nameset_clear(&s->subs[k]);
        }
        free(s->subs);
        s->subs = NULL;
    }
    s->monitor = false;
}

void session_free(struct session *s)
{
    session_subs_free(s);
    txn_clear(&s->txn);
    free(s->auth);
    free(s->hello);
    free(s->name);
    s->auth = s->hello = s->name = NULL;
    s->auth_len = s->hello_len = s->name_len = 0;
}

void session_reset(struct session *s)
{
    bool streaming = s->streaming;

    session_free(s); /* RESET ends subscriptions and MONITOR and clears the name too */
    session_init(s);
    /* A streaming connection stays streaming for the proxy: its replies keep
     * flowing through in order, whatever mode the server is in. */
    s->streaming = streaming;
}

int32_t session_parse_int(const char *p, size_t len)
{
    int64_t v = 0;
    size_t i = 0;
    bool neg = false;

    if (len == 0 || len > 11) {
        return -1;
    }
    if (p[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i == len) {
        return -1;
    }
    for (; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }
        v = v * 10 + (p[i] - '0');
    }
    if (neg || v > INT32_MAX) {
        return -1;
    }
    return (int32_t)v;
}

bool session_set_name(struct session *s, const char *name, size_t len)
{
    char *copy = NULL;

    if (len > 0) {
        copy = malloc(len);
        if (copy == NULL) {
            return false;
        }
        memcpy(copy, name, len);
    }
    free(s->name);
    s->name = copy;
    s->name_len = len;
    return true;
}

/* UNSUBSCRIBE, PUNSUBSCRIBE or SUNSUBSCRIBE. */
static bool session_is_unsubscribe(const struct cmd_info *ci)
{
    return ci != NULL &&
           (ci->id == CMD_UNSUBSCRIBE || ci->id == CMD_PUNSUBSCRIBE || ci->id == CMD_SUNSUBSCRIBE);
}

void session_login(struct session *s)
{
    s->authed = true;
}

void session_before_dispatch(struct session *s, const struct req *r)
{
    if (s->lost_multi && r->ci != NULL && (r->ci->id == CMD_QUIT || r->ci->id == CMD_RESET)) {
        /* Run at once inside MULTI by redis-server too: the lost
         * transaction is over. */
        s->lost_multi = s->lost_watch = false;
    }
}

void session_lost_multi_over(struct session *s)
{
    s->lost_multi = s->lost_watch = false;
}

static bool session_queue(struct worker *w, struct bconn *bc, int argc, const char *const *argv,
                          const size_t *argl, uint32_t flags)
{
    struct req *r = req_internal(&w->reqs, argc, argv, argl);

    if (r == NULL) {
        return false;
    }
    r->flags |= flags;
    bconn_enqueue(bc, r);
    return true;
}

/* Queue a session's own AUTH or HELLO again, as it sent it. */
static bool session_queue_credentials(struct worker *w, struct bconn *bc, const char *raw,
                                      size_t len)
{
    struct req *r = req_new(&w->reqs);

    if (r == NULL) {
        return false;
    }
    r->flags = REQ_INTERNAL | REQ_CREDENTIALS;
    if (!req_spans_copy_in(&w->reqs, &r->in, raw, len)) {
        req_free(&w->reqs, r);
        return false;
    }
    bconn_enqueue(bc, r);
    return true;
}

bool session_replay(struct client *c, struct bconn *bc, unsigned *effects)
{
    struct session *s = &c->sess;
    struct worker *w = c->w;
    char db[16];

    *effects = 0;
    if (s->auth != NULL && !session_queue_credentials(w, bc, s->auth, s->auth_len)) {
        return false;
    }
    if (s->hello != NULL && !session_queue_credentials(w, bc, s->hello, s->hello_len)) {
        return false;
    }
    if (s->auth != NULL || s->hello != NULL) {
        *effects |= SESSION_CONN_TAINT | SESSION_CONN_RESP;
    }
    if (s->hello != NULL || bc->resp != s->resp) {
        /* The session's protocol (a spare of the other one, or a HELLO the
         * proxy answered while the client shared connections). */
        const char *argv[] = {"HELLO", s->resp == 3 ? "3" : "2"};
        size_t argl[] = {5, 1};
        if (!session_queue(w, bc, 2, argv, argl, REQ_STATE)) {
            return false;
        }
        *effects |= SESSION_CONN_RESP;
    }
    if (s->name != NULL) {
        const char *argv[] = {"CLIENT", "SETNAME", s->name};
        size_t argl[] = {6, 7, s->name_len};
        if (!session_queue(w, bc, 3, argv, argl, 0)) {
            return false;
        }
        *effects |= SESSION_CONN_TAINT;
    }
    if (s->db != 0) {
        int n = snprintf(db, sizeof(db), "%d", s->db);
        const char *argv[] = {"SELECT", db};
        size_t argl[] = {6, (size_t)n};
        if (!session_queue(w, bc, 2, argv, argl, REQ_STATE)) {
            return false;
        }
        *effects |= SESSION_CONN_DB;
    }
    if (s->reply_off) {
        const char *argv[] = {"CLIENT", "REPLY", "OFF"};
        size_t argl[] = {6, 5, 3};
        struct req *r = req_internal(&w->reqs, 3, argv, argl);
        if (r == NULL) {
            return false;
        }
        r->flags |= REQ_NOREPLY; /* from here on the connection streams */
        bconn_enqueue(bc, r);
        *effects |= SESSION_CONN_TAINT;
    }
    return true;
}

/* Remember what a SUBSCRIBE-family command or MONITOR asks for, so that it
 * can be re-established if the connection is lost. */
static void session_track_streams(struct client *c, struct req *r)
{
    int id = r->ci->id, kind;
    bool add;
    struct req_args a;

    if (id == CMD_MONITOR) {
        c->sess.monitor = true;
        return;
    }
    kind = id == CMD_SUBSCRIBE || id == CMD_UNSUBSCRIBE     ? 0
           : id == CMD_PSUBSCRIBE || id == CMD_PUNSUBSCRIBE ? 1
           : id == CMD_SSUBSCRIBE || id == CMD_SUNSUBSCRIBE ? 2
                                                            : -1;
    if (kind < 0) {
        return;
    }
    add = id == CMD_SUBSCRIBE || id == CMD_PSUBSCRIBE || id == CMD_SSUBSCRIBE;
    if (c->sess.subs == NULL &&
        (c->sess.subs = calloc(SESSION_KINDS, sizeof(*c->sess.subs))) == NULL) {
        return;
    }
    if (!add && r->argc == 1) {
        nameset_clear(&c->sess.subs[kind]);
        return;
    }
    req_args_all(r, SESSION_REQ_MAX * 64, &a);
    for (int i = 1; i < a.argc; i++) {
        if (add && !nameset_add(&c->sess.subs[kind], a.argv[i], a.argl[i])) {
            log_warn("client %llu: out of memory tracking subscriptions",
                     (unsigned long long)c->id);
        } else if (!add) {
            nameset_remove(&c->sess.subs[kind], a.argv[i], a.argl[i]);
        }
    }
    req_args_free(&a);
}

bool session_is_confirmation(struct spans *out)
{
    static const char *const heads[] = {"3\r\n$9\r\nsubscribe\r\n", "3\r\n$10\r\npsubscribe\r\n",
                                        "3\r\n$10\r\nssubscribe\r\n"};
    char first = spans_first_byte(out);

    if (first == '+') {
        return spans_starts_with(out, "+OK\r\n", 5); /* MONITOR */
    }
    if (first != '*' && first != '>') {
        return false;
    }
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        char buf[32];
        size_t n = strlen(heads[i]);
        if (spans_copy(out, 1, buf, n) == n && strncasecmp(buf, heads[i], n) == 0) {
            return true;
        }
    }
    return false;
}

bool session_streams(const struct session *s)
{
    return s->monitor || s->reply_off || session_has_streams(s);
}

void session_stream_over(struct session *s)
{
    s->streaming = false;
}

bool session_can_resend(const struct client *c)
{
    const struct session *s = &c->sess;

    return !s->multi && !s->multi_sent && !s->lost_multi && !s->streaming;
}

bool session_has_streams(const struct session *s)
{
    if (s->monitor) {
        return true;
    }
    for (int k = 0; s->subs != NULL && k < SESSION_KINDS; k++) {
        if (s->subs[k].n > 0) {
            return true;
        }
    }
    return false;
}

bool session_resubscribe(struct client *c, struct bconn *bc, uint32_t *counts, unsigned *n)
{
    struct session *s = &c->sess;

    *n = 0;
    for (int k = 0; s->subs != NULL && k < SESSION_KINDS; k++) {
        struct nameset *set = &s->subs[k];
        const char **argv;
        size_t *argl;
        struct req *r;
        if (set->n == 0) {
            continue;
        }
        argv = malloc((set->n + 1) * sizeof(*argv));
        argl = malloc((set->n + 1) * sizeof(*argl));
        if (argv == NULL || argl == NULL) {
            free(argv);
            free(argl);
            return false;
        }
        argv[0] = session_sub_cmd[k];
        argl[0] = strlen(argv[0]);
        for (size_t i = 0; i < set->n; i++) {
            argv[i + 1] = set->names[i];
            argl[i + 1] = set->lens[i];
        }
        r = req_internal(&c->w->reqs, (int)set->n + 1, argv, argl);
        free(argv);
        free(argl);
        if (r == NULL) {
            return false;
        }
        r->flags |= REQ_NOREPLY;
        bconn_enqueue(bc, r);
        counts[(*n)++] = (uint32_t)set->n;
    }
    if (s->monitor) {
        const char *argv[] = {"MONITOR"};
        size_t argl[] = {7};
        struct req *r = req_internal(&c->w->reqs, 1, argv, argl);
        if (r == NULL) {
            return false;
        }
        r->flags |= REQ_NOREPLY;
        bconn_enqueue(bc, r);
        counts[(*n)++] = 1;
    }
    s->resub = false;
    return true;
}

/* CLIENT REPLY ON|OFF|SKIP: OFF lasts until ON or RESET, and is replayed on
 * a new connection (a direct connection would stay silent too). */
static void session_track_reply_mode(struct client *c, struct req *r)
{
    struct req_first_args a;

    if (req_args_first(r, &a) && a.argc == 3) {
        if (req_arg_is(&a, 2, "off")) {
            c->sess.reply_off = true;
        } else if (req_arg_is(&a, 2, "on")) {
            c->sess.reply_off = false;
        }
    }
    free(a.buf);
}

unsigned session_before_send(struct client *c, struct req *r, struct bconn *bc)
{
    const struct cmd_info *ci = r->ci;
    unsigned effects = 0;

    if (ci != NULL && (ci->proxy == CMDP_STREAM || session_is_unsubscribe(ci))) {
        session_track_streams(c, r);
    }
    if (ci != NULL && ci->id == CMD_MULTI) {
        c->sess.multi_sent = true;
    } else if (ci != NULL && (ci->id == CMD_EXEC || ci->id == CMD_DISCARD || ci->id == CMD_RESET)) {
        c->sess.multi_sent = false;
    }

    if (ci != NULL && ci->id == CMD_CLIENT && ci->proxy == CMDP_STREAM) {
        session_track_reply_mode(c, r);
    }
    /* RESP3 confirms (un)subscriptions with push messages, also outside
     * subscribed mode: an UNSUBSCRIBE then gets no reply of its own. */
    bool push_only = bc->resp == 3 && session_is_unsubscribe(ci);
    if (c->sess.streaming || (ci != NULL && ci->proxy == CMDP_STREAM) || push_only) {
        /* From here on the connection's replies are streamed to the client
         * as they come; the request itself expects no matched reply. */
        c->sess.streaming = true;
        r->flags |= REQ_NOREPLY | REQ_DONE;
        if (ci != NULL && (ci->proxy == CMDP_SESSION || ci->proxy == CMDP_LOCAL)) {
            /* A session command's reply is not seen here, so its effect (a
             * database, a user, a transaction...) is unknown: the session
             * keeps this connection, which no other client may have. */
            c->sess.sticky = true;
            effects |= SESSION_CONN_TAINT;
        }
        return effects;
    }
    if (session_is_unsubscribe(ci)) {
        /* Queued inside MULTI (otherwise local.c answers): EXEC then brings
         * one confirmation per name, more than its count of replies. */
        effects |= SESSION_CONN_TAINT;
    }
    if (ci != NULL && ci->id == CMD_WAIT && bc->dedicated && !c->sess.multi_sent) {
        /* WAIT counts replicas that acknowledged this connection's last
         * write; the client's writes went over shared connections. A write
         * that nobody sees (a message on a shard channel of the proxy's own,
         * which no pattern can match) first makes this connection's offset
         * cover them. */
        const char *argv[] = {"SPUBLISH", "__sentinel-proxy__:wait", ""};
        size_t argl[] = {8, 23, 0};
        if (!session_queue(c->w, bc, 3, argv, argl, 0)) {
            log_warn("client %llu: out of memory before WAIT", (unsigned long long)c->id);
        }
    }
    if (ci != NULL && ci->id == CMD_EXEC && c->sess.lost_watch) {
        /* Keys watched on a connection that was lost may have changed
         * unseen: the transaction must not run. DISCARD ends it on the
         * server, and the client gets the nil reply of a failed WATCH. */
        effects |= SESSION_SEND_AS_DISCARD;
    }
    return effects;
}

/* Keep a copy of a successful AUTH or HELLO for replay. */
static void session_keep(struct req *r, char **dst, size_t *dlen)
{
    size_t len = 0;
    char *copy = req_flatten(r, SESSION_REQ_MAX, &len);

    if (copy == NULL) {
        return;
    }
    free(*dst);
    *dst = copy;
    *dlen = len;
}

/* A HELLO succeeded on the client's dedicated connection: its protocol and
 * name; its credentials, if it carried some, are kept for replay. Returns
 * enum session_effect bits. */
static unsigned session_after_hello(struct client *c, struct req *r)
{
    struct req_args a;
    struct hello_args h;
    unsigned effects = SESSION_CONN_RESP;

    req_args_all(r, SESSION_REQ_MAX, &a);
    if (a.argc < 1) {
        /* Too large to read again: kept whole, as the server saw it. */
        session_keep(r, &c->sess.hello, &c->sess.hello_len);
        req_args_free(&a);
        return effects | SESSION_CONN_TAINT;
    }
    hello_parse(&a, &h);
    if (h.proto != 0) {
        c->sess.resp = (uint8_t)h.proto;
    }
    if (h.auth != 0) {
        session_keep(r, &c->sess.hello, &c->sess.hello_len);
        effects |= SESSION_CONN_TAINT;
    }
    if (h.name != 0) {
        if (!session_set_name(&c->sess, a.argv[h.name], a.argl[h.name])) {
            log_warn("client %llu: out of memory keeping its name", (unsigned long long)c->id);
        }
        effects |= SESSION_CONN_TAINT;
    }
    req_args_free(&a);
    return effects;
}

static void session_after_client(struct client *c, struct req *r)
{
    const char *sub = strchr(r->ci->name, '|');
    struct req_first_args a;

    if (sub == NULL) {
        return;
    }
    sub++;
    if (strcmp(sub, "setname") == 0) {
        if (req_args_first(r, &a) && a.argc == 3 &&
            !session_set_name(&c->sess, a.argv[2], a.argl[2])) {
            log_warn("client %llu: out of memory keeping its name", (unsigned long long)c->id);
        }
        free(a.buf);
    } else if (strcmp(sub, "tracking") == 0) {
        if (req_args_first(r, &a)) {
            c->sess.tracking = req_arg_is(&a, 2, "on");
        }
        free(a.buf);
    } else if (strcmp(sub, "caching") == 0 || strcmp(sub, "no-evict") == 0 ||
               strcmp(sub, "no-touch") == 0 || strcmp(sub, "id") == 0) {
        /* CLIENT ID: the id stays valid (for CLIENT UNBLOCK, CLIENT KILL ID,
         * TRACKING REDIRECT) while the session keeps this connection. */
        c->sess.sticky = true;
    }
}

/* What EXEC's session changes did. */
struct session_exec {
    struct client *c;
    unsigned effects;
};

/* A session command EXEC ran without error: apply it as if it had just
 * been answered outside the transaction. */
static void session_apply_queued(void *arg, const struct txn_entry *e)
{
    struct session_exec *x = arg;
    struct client *c = x->c;
    struct req *r = req_new(&c->w->reqs);

    if (r == NULL || !req_spans_copy_in(&c->w->reqs, &r->in, e->buf, e->len)) {
        log_warn("client %llu: out of memory applying its transaction's session changes",
                 (unsigned long long)c->id);
        if (r != NULL) {
            req_free(&c->w->reqs, r);
        }
        return;
    }
    r->ci = e->ci;
    r->intarg = e->intarg;
    r->argc = e->argc;
    x->effects |= session_after_reply(c, r);
    req_free(&c->w->reqs, r);
}

/* Inside MULTI, commands are only queued: session commands take effect if
 * EXEC runs them. True when r was such a queued command. */
static bool session_in_multi(struct client *c, struct req *r)
{
    int id = r->ci->id;

    if (!c->sess.multi || id == CMD_EXEC || id == CMD_DISCARD || id == CMD_MULTI ||
        id == CMD_WATCH || id == CMD_RESET || id == CMD_QUIT) {
        return false;
    }
    if ((r->flags & REQ_ERROR) || !txn_is_queued_reply(r)) {
        return true; /* refused at queueing time: EXEC will abort */
    }
    if (id == CMD_SELECT || id == CMD_AUTH || id == CMD_HELLO || id == CMD_CLIENT) {
        txn_defer(&c->sess.txn, r);
    } else {
        txn_count(&c->sess.txn);
    }
    return true;
}

unsigned session_after_reply(struct client *c, struct req *r)
{
    const struct cmd_info *ci = r->ci;
    bool ok = !(r->flags & REQ_ERROR);
    struct session_exec x = {c, 0};

    if (ci == NULL || (r->flags & REQ_PUSH) || session_in_multi(c, r)) {
        return 0;
    }
    switch (ci->id) {
    case CMD_EXEC:
    case CMD_DISCARD:
        c->sess.multi = false;
        c->sess.watching = false;
        c->sess.lost_watch = false;
        /* What the transaction queued took effect if EXEC ran it (a reply
         * array, not nil or an error), each command unless it failed. */
        if (ci->id == CMD_EXEC && ok && !(r->flags & REQ_EXEC_NIL) &&
            spans_first_byte(&r->out) == '*' && r->out.bytes > 5) {
            if (c->sess.txn.lossy) {
                log_warn("client %llu: session changes of its transaction were not kept",
                         (unsigned long long)c->id);
            }
            txn_applied(&c->sess.txn, r, session_apply_queued, &x);
        }
        txn_clear(&c->sess.txn);
        return x.effects;
    case CMD_SELECT:
        if (ok && r->intarg >= 0) {
            c->sess.db = r->intarg;
            return SESSION_CONN_DB;
        }
        return 0;
    case CMD_AUTH:
        if (ok) {
            c->sess.authed = true;
            session_keep(r, &c->sess.auth, &c->sess.auth_len);
            return SESSION_CONN_TAINT;
        }
        return 0;
    case CMD_HELLO:
        if (ok && c->ded != NULL) {
            c->sess.authed = true;
            return session_after_hello(c, r);
        }
        /* redis-server applies AUTH and SETNAME one option at a time, and
         * keeps those before a bad one: the connection may carry them. */
        return c->ded != NULL && r->argc > 2 ? SESSION_CONN_TAINT : 0;
    case CMD_MULTI:
        if (ok && !c->sess.multi) {
            txn_clear(&c->sess.txn);
        }
        c->sess.multi = c->sess.multi || ok;
        return 0;
    case CMD_WATCH:
        c->sess.watching = c->sess.watching || ok;
        return 0;
    case CMD_UNWATCH:
        c->sess.watching = false;
        c->sess.lost_watch = false;
        return 0;
    case CMD_RESET:
        if (ok) {
            /* The server logged the connection out, back to db 0 and RESP2:
             * it must not be lent to anyone else. */
            session_reset(&c->sess);
            return SESSION_CONN_TAINT | SESSION_CONN_DB | SESSION_CONN_RESP;
        }
        return 0;
    case CMD_CLIENT:
        if (ok && strchr(ci->name, '|') != NULL) {
            session_after_client(c, r);
            return SESSION_CONN_TAINT;
        }
        return 0;
    default:
        return 0;
    }
}

void session_lost_connection(struct client *c)
{
    struct session *s = &c->sess;

    if (s->multi) {
        s->lost_multi = true;
    }
    txn_clear(&s->txn);
    if (s->watching) {
        s->lost_watch = true;
    }
    s->multi = false;
    s->watching = false;
    if (s->reply_off) {
        /* Still silent: the next connection gets CLIENT REPLY OFF again. */
        s->resub = session_has_streams(s);
        return;
    }
    if (s->streaming && session_has_streams(s)) {
        /* Subscribers are subscribed again on a new connection as soon as a
         * master is usable; the client keeps its connection and sees only
         * the messages. */
        log_info("client %llu: subscriptions will be re-established on a new connection",
                 (unsigned long long)c->id);
        s->resub = true;
        return;
    }
    s->streaming = false;
}
