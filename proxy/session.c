/*
 * session.c - session state tracking, dedicated-connection decisions and
 * state replay.
 *
 * State changes are applied when the reply says the command succeeded, in
 * reply order, so the proxy's view matches the server's. Commands that only
 * read or reset session state are kept on shared connections where that is
 * indistinguishable from a direct connection (SELECT 0, HELLO 2, the name).
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
#include "proxy/client.h"
#include "proxy/commands.h"
#include "proxy/nameset.h"
#include "proxy/proxy.h"
#include "proxy/req.h"
#include "proxy/resp.h"
#include "proxy/worker.h"

#define SESSION_ARGS_MAX 16 /* arguments looked at in session commands */
#define SESSION_KINDS    3  /* channels, patterns, shard channels */

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

bool session_is_clean(const struct session *s)
{
    return s->db == 0 && !s->multi && !s->watching && !s->streaming && !s->tracking && !s->sticky &&
           s->auth == NULL && s->hello == NULL;
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

/* Arguments of a request, flattened (cold path: session commands only). */
struct session_args {
    char *buf;
    int argc;
    const char *argv[SESSION_ARGS_MAX];
    size_t argl[SESSION_ARGS_MAX];
};

static bool session_args(struct req *r, struct session_args *a)
{
    size_t len = 0;

    a->argc = 0;
    a->buf = req_flatten(r, SESSION_REQ_MAX, &len);
    if (a->buf == NULL) {
        return false;
    }
    a->argc = req_split(a->buf, len, a->argv, a->argl, SESSION_ARGS_MAX);
    return a->argc >= 0;
}

static bool session_arg_is(const struct session_args *a, int i, const char *word)
{
    return i < a->argc && a->argl[i] == strlen(word) &&
           strncasecmp(a->argv[i], word, a->argl[i]) == 0;
}

bool session_auth_matches(struct client *c, struct req *r)
{
    const struct config *cfg = c->w->px->cfg;
    const char *user = cfg->backend_username != NULL ? cfg->backend_username : "default";
    struct session_args a;
    bool match = false;

    if (cfg->backend_password == NULL) {
        return false;
    }
    if (!session_args(r, &a)) {
        free(a.buf);
        return false;
    }
    if (a.argc == 2) {
        match = strcmp(user, "default") == 0 && a.argl[1] == strlen(cfg->backend_password) &&
                memcmp(a.argv[1], cfg->backend_password, a.argl[1]) == 0;
    } else if (a.argc == 3) {
        match = a.argl[1] == strlen(user) && memcmp(a.argv[1], user, a.argl[1]) == 0 &&
                a.argl[2] == strlen(cfg->backend_password) &&
                memcmp(a.argv[2], cfg->backend_password, a.argl[2]) == 0;
    }
    free(a.buf);
    return match;
}

/* HELLO carries an AUTH option, found as redis-server walks the options
 * (AUTH takes two arguments, SETNAME one). */
static bool session_hello_has_auth(struct req *r)
{
    struct session_args a;
    bool found = false;

    if (session_args(r, &a)) {
        for (int j = 2; j < a.argc && !found; j++) {
            int more = a.argc - 1 - j;
            if (session_arg_is(&a, j, "auth") && more >= 2) {
                found = true;
            } else if (session_arg_is(&a, j, "setname") && more >= 1) {
                j++;
            } else {
                break; /* a syntax error: nothing runs */
            }
        }
    }
    free(a.buf);
    return found;
}

/* XREAD and XREADGROUP block only with a BLOCK option. */
static bool session_xread_blocks(struct req *r)
{
    struct session_args a;
    bool blocks = false;

    if (session_args(r, &a)) {
        for (int i = 1; i < a.argc && !blocks; i++) {
            blocks = session_arg_is(&a, i, "block");
            if (session_arg_is(&a, i, "streams")) {
                break;
            }
        }
    }
    free(a.buf);
    return blocks;
}

static int session_route_session_cmd(struct client *c, struct req *r, bool pinned)
{
    const struct cmd_info *ci = r->ci;

    switch (ci->id) {
    case CMD_SELECT:
        /* Only "SELECT 0" is certain to leave a shared connection unchanged. */
        if (!pinned && r->argc == 2 && r->intarg == 0) {
            return SESSION_SHARED;
        }
        return SESSION_DEDICATED;
    case CMD_AUTH:
        return !pinned && session_auth_matches(c, r) ? SESSION_LOCAL : SESSION_DEDICATED;
    case CMD_HELLO:
        /* HELLO or HELLO 2 without options only reports server facts. */
        if (!pinned && (r->argc == 1 || (r->argc == 2 && r->intarg == 2))) {
            return SESSION_SHARED;
        }
        return SESSION_DEDICATED;
    default:
        return SESSION_DEDICATED;
    }
}

/* With backend-password set, the proxy's shared connections are
 * authenticated, so clients must authenticate to the proxy as they would to
 * redis-server: AUTH with the proxy's credentials is answered here and keeps
 * the client on shared connections; other credentials go to a dedicated
 * connection where the server checks them. Before that, commands get
 * NOAUTH (answered by local.c). -1: route as usual. */
static int session_route_unauthenticated(struct client *c, struct req *r)
{
    int id = r->ci != NULL ? r->ci->id : CMD_OTHER;
    int arity = r->ci != NULL ? r->ci->arity : 0;

    /* redis-server rejects unknown commands and wrong argument counts before
     * it looks at authentication; the server gives those errors itself (it
     * executes nothing). */
    if (r->ci == NULL) {
        return SESSION_LOCAL; /* never to an authenticated connection (local.c answers) */
    }
    if ((arity > 0 && r->argc != (uint32_t)arity) || (arity < 0 && r->argc < (uint32_t)-arity)) {
        return -1;
    }

    if (id == CMD_AUTH) {
        return session_auth_matches(c, r) ? SESSION_LOCAL : SESSION_DEDICATED;
    }
    if (id == CMD_HELLO && session_hello_has_auth(r)) {
        /* HELLO ... AUTH user pass: the server checks it. Any other HELLO
         * would succeed there (the proxy's connections are logged in), so
         * local.c refuses it as redis-server refuses a HELLO without AUTH. */
        return SESSION_DEDICATED;
    }
    if (id == CMD_QUIT || id == CMD_RESET) {
        return -1;
    }
    return SESSION_LOCAL;
}

/* UNSUBSCRIBE, PUNSUBSCRIBE or SUNSUBSCRIBE. */
static bool session_is_unsubscribe(const struct cmd_info *ci)
{
    return ci != NULL &&
           (ci->id == CMD_UNSUBSCRIBE || ci->id == CMD_PUNSUBSCRIBE || ci->id == CMD_SUNSUBSCRIBE);
}

int session_route(struct client *c, struct req *r)
{
    const struct cmd_info *ci = r->ci;
    /* A session with state lives on a dedicated connection, also after that
     * connection was lost (the next one gets the state replayed). */
    bool pinned = c->ded != NULL || !session_is_clean(&c->sess);

    if (c->sess.lost_multi && ci != NULL && (ci->id == CMD_QUIT || ci->id == CMD_RESET)) {
        /* Run at once inside MULTI by redis-server too: the lost
         * transaction is over. */
        c->sess.lost_multi = c->sess.lost_watch = false;
    } else if (c->sess.lost_multi) {
        return SESSION_LOCAL; /* the transaction is answered by local.c until EXEC/DISCARD */
    }
    if (c->w->px->cfg->backend_password != NULL && !c->sess.authed) {
        if (c->inflight > 0) {
            return SESSION_WAIT; /* an AUTH or HELLO in flight may log the client in */
        }
        int need = session_route_unauthenticated(c, r);
        if (need >= 0) {
            return need;
        }
    }
    if (ci == NULL) {
        return pinned ? SESSION_DEDICATED : SESSION_SHARED;
    }
    if (session_is_unsubscribe(ci) && !c->sess.streaming && !c->sess.multi_sent) {
        /* Not subscribed: redis-server confirms every name given with a reply
         * of its own, more replies than requests; local.c answers the same. */
        return SESSION_LOCAL;
    }
    switch (ci->proxy) {
    case CMDP_CLOSE:
    case CMDP_REFUSE:
        return SESSION_LOCAL;
    case CMDP_LOCAL:
        /* On a dedicated connection the server keeps the session itself. */
        if (pinned && (ci->id == CMD_RESET || ci->id == CMD_CLIENT)) {
            return SESSION_DEDICATED;
        }
        return SESSION_LOCAL;
    case CMDP_BLOCKING:
    case CMDP_STREAM:
        return SESSION_DEDICATED;
    case CMDP_SESSION:
        return session_route_session_cmd(c, r, pinned);
    default:
        break;
    }
    if ((ci->id == CMD_XREAD || ci->id == CMD_XREADGROUP) && !pinned && session_xread_blocks(r)) {
        return SESSION_DEDICATED;
    }
    return pinned ? SESSION_DEDICATED : SESSION_SHARED;
}

static bool session_queue(struct worker *w, struct bconn *bc, int argc, const char *const *argv,
                          const size_t *argl)
{
    struct req *r = req_internal(w, argc, argv, argl);

    if (r == NULL) {
        return false;
    }
    bconn_enqueue(bc, r);
    return true;
}

/* Queue a session's own AUTH or HELLO again, as it sent it. */
static bool session_queue_credentials(struct worker *w, struct bconn *bc, const char *raw,
                                      size_t len)
{
    struct req *r = req_new(w);

    if (r == NULL) {
        return false;
    }
    r->flags = REQ_INTERNAL | REQ_CREDENTIALS;
    if (!req_spans_copy_in(w, &r->in, raw, len)) {
        req_free(w, r);
        return false;
    }
    bconn_enqueue(bc, r);
    return true;
}

bool session_replay(struct client *c, struct bconn *bc)
{
    struct session *s = &c->sess;
    struct worker *w = c->w;
    char db[16];

    if (s->auth != NULL && !session_queue_credentials(w, bc, s->auth, s->auth_len)) {
        return false;
    }
    if (s->hello != NULL && !session_queue_credentials(w, bc, s->hello, s->hello_len)) {
        return false;
    }
    if (s->auth != NULL || s->hello != NULL) {
        bc->tainted = true;
        bc->resp = s->resp;
    }
    if (s->name != NULL) {
        const char *argv[] = {"CLIENT", "SETNAME", s->name};
        size_t argl[] = {6, 7, s->name_len};
        if (!session_queue(w, bc, 3, argv, argl)) {
            return false;
        }
        bc->tainted = true;
    }
    if (s->db != 0) {
        int n = snprintf(db, sizeof(db), "%d", s->db);
        const char *argv[] = {"SELECT", db};
        size_t argl[] = {6, (size_t)n};
        if (!session_queue(w, bc, 2, argv, argl)) {
            return false;
        }
        bc->db = s->db;
    }
    if (s->reply_off) {
        const char *argv[] = {"CLIENT", "REPLY", "OFF"};
        size_t argl[] = {6, 5, 3};
        struct req *r = req_internal(w, 3, argv, argl);
        if (r == NULL) {
            return false;
        }
        r->flags |= REQ_NOREPLY; /* from here on the connection streams */
        bconn_enqueue(bc, r);
        bc->tainted = true;
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

#define SESSION_MARKER "__sentinel-proxy__:end-of-stream"

/* out starts with text (and is no longer than max bytes). */
static bool session_reply_is(struct spans *out, const char *text, size_t max)
{
    char got[96];
    size_t n = strlen(text);

    return out->bytes >= n && out->bytes <= max && spans_copy(out, 0, got, n) == n &&
           memcmp(got, text, n) == 0;
}

enum session_marker {
    MARKER_NONE = 0,    /* not the marker's reply */
    MARKER_ECHOED = 1,  /* its echo: the stream ended before it */
    MARKER_REFUSED = 2, /* a RESP2 connection still subscribed refused it: still streaming */
};

/* What a streamed reply says about the end-of-stream marker. */
static enum session_marker session_is_marker(struct spans *out)
{
    char echo[64];

    snprintf(echo, sizeof(echo), "$%zu\r\n%s\r\n", strlen(SESSION_MARKER), SESSION_MARKER);
    if (session_reply_is(out, echo, strlen(echo))) {
        return MARKER_ECHOED;
    }
    return session_reply_is(out, "-ERR Can't execute 'echo'", 256) ? MARKER_REFUSED : MARKER_NONE;
}

static void session_send_marker(struct client *c, struct bconn *bc)
{
    const char *argv[] = {"ECHO", SESSION_MARKER};
    size_t argl[] = {4, strlen(SESSION_MARKER)};
    struct req *r = req_internal(c->w, 2, argv, argl);

    if (r == NULL) {
        return; /* the session stays on its connection: harmless */
    }
    r->flags |= REQ_NOREPLY;
    bconn_enqueue(bc, r);
    bc->marker_sent = true;
    bc->marker_last = true;
}

bool session_is_confirmation(struct spans *out)
{
    static const char *const heads[] = {"3\r\n$9\r\nsubscribe\r\n", "3\r\n$10\r\npsubscribe\r\n",
                                        "3\r\n$10\r\nssubscribe\r\n"};
    char first = spans_first_byte(out);

    if (first == '+') {
        return session_reply_is(out, "+OK\r\n", 5); /* MONITOR */
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

int session_stream_reply(struct client *c, struct bconn *bc, struct spans *out)
{
    struct session *s = &c->sess;

    if (!s->streaming) {
        return SESSION_STREAM_PASS;
    }
    enum session_marker marker = bc->marker_sent ? session_is_marker(out) : MARKER_NONE;

    if (marker == MARKER_REFUSED) {
        return SESSION_STREAM_DROP; /* and no more markers here (marker_sent stays) */
    }
    if (marker == MARKER_ECHOED) {
        bc->marker_sent = false;
        if (session_has_streams(s) || s->reply_off) {
            return SESSION_STREAM_DROP; /* subscribed again meanwhile */
        }
        if (!bc->marker_last || bc->nqueued != 0 || bc->swallow != 0) {
            session_send_marker(c, bc); /* more was sent: wait for that too */
            return SESSION_STREAM_DROP;
        }
        bc->streaming = false;
        s->streaming = false;
        return SESSION_STREAM_ENDED;
    }
    if (session_reply_is(out, "+RESET\r\n", 8)) {
        /* RESET ended subscriptions, MONITOR and CLIENT REPLY OFF on the
         * server: none of it may come back on a new connection. */
        session_reset(s);
        bc->tainted = true;
        bc->db = 0;
        bc->resp = 2;
    }
    /* Nothing left that streams (the last UNSUBSCRIBE's confirmation, the
     * +OK of CLIENT REPLY ON, +RESET...): find where the stream ends. */
    if (!bc->marker_sent && !s->monitor && !s->reply_off && !session_has_streams(s)) {
        session_send_marker(c, bc);
    }
    return SESSION_STREAM_PASS;
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

bool session_resubscribe(struct client *c, struct bconn *bc)
{
    struct session *s = &c->sess;

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
        r = req_internal(c->w, (int)set->n + 1, argv, argl);
        free(argv);
        free(argl);
        if (r == NULL) {
            return false;
        }
        r->flags |= REQ_NOREPLY;
        bconn_enqueue(bc, r);
        bc->swallow += (uint32_t)set->n;
    }
    if (s->monitor) {
        const char *argv[] = {"MONITOR"};
        size_t argl[] = {7};
        struct req *r = req_internal(c->w, 1, argv, argl);
        if (r == NULL) {
            return false;
        }
        r->flags |= REQ_NOREPLY;
        bconn_enqueue(bc, r);
        bc->swallow++;
    }
    bc->tainted = true;
    return true;
}

/* CLIENT REPLY ON|OFF|SKIP: OFF lasts until ON or RESET, and is replayed on
 * a new connection (a direct connection would stay silent too). */
static void session_track_reply_mode(struct client *c, struct req *r)
{
    struct session_args a;

    if (session_args(r, &a) && a.argc == 3) {
        if (session_arg_is(&a, 2, "off")) {
            c->sess.reply_off = true;
        } else if (session_arg_is(&a, 2, "on")) {
            c->sess.reply_off = false;
        }
    }
    free(a.buf);
}

void session_before_send(struct client *c, struct req *r, struct bconn *bc)
{
    const struct cmd_info *ci = r->ci;

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
            bc->tainted = true;
        }
        return;
    }
    if (session_is_unsubscribe(ci)) {
        /* Queued inside MULTI (otherwise local.c answers): EXEC then brings
         * one confirmation per name, more than its count of replies. */
        bc->tainted = true;
    }
    if (ci != NULL && ci->id == CMD_WAIT && bc->dedicated && !c->sess.multi_sent) {
        /* WAIT counts replicas that acknowledged this connection's last
         * write; the client's writes went over shared connections. A write
         * that nobody sees (a message on a shard channel of the proxy's own,
         * which no pattern can match) first makes this connection's offset
         * cover them. */
        const char *argv[] = {"SPUBLISH", "__sentinel-proxy__:wait", ""};
        size_t argl[] = {8, 23, 0};
        if (!session_queue(c->w, bc, 3, argv, argl)) {
            log_warn("client %llu: out of memory before WAIT", (unsigned long long)c->id);
        }
    }
    if (ci != NULL && ci->id == CMD_EXEC && c->sess.lost_watch) {
        /* Keys watched on a connection that was lost may have changed
         * unseen: the transaction must not run. DISCARD ends it on the
         * server, and the client gets the nil reply of a failed WATCH. */
        const char *argv[] = {"DISCARD"};
        size_t argl[] = {7};
        struct req *d = req_internal(c->w, 1, argv, argl);
        if (d != NULL) {
            struct spans tmp = r->in;
            r->in = d->in;
            d->in = tmp;
            c->backlog += r->in.bytes; /* the client's backlog now holds DISCARD */
            c->backlog -= d->in.bytes;
            r->flags |= REQ_EXEC_NIL;
            req_free(c->w, d);
        }
    }
    (void)bc;
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

static void session_after_hello(struct client *c, struct req *r)
{
    struct session_args a;

    session_keep(r, &c->sess.hello, &c->sess.hello_len);
    if (r->intarg == 2 || r->intarg == 3) {
        c->sess.resp = (uint8_t)r->intarg;
    }
    if (c->ded != NULL) {
        c->ded->resp = c->sess.resp;
        c->ded->tainted = true;
    }
    if (!session_args(r, &a)) {
        free(a.buf);
        return;
    }
    for (int i = 2; i + 1 < a.argc; i++) {
        if (session_arg_is(&a, i, "setname") &&
            !session_set_name(&c->sess, a.argv[i + 1], a.argl[i + 1])) {
            log_warn("client %llu: out of memory keeping its name", (unsigned long long)c->id);
        }
    }
    free(a.buf);
}

static void session_after_client(struct client *c, struct req *r)
{
    const char *sub = strchr(r->ci->name, '|');
    struct session_args a;

    if (sub == NULL) {
        return;
    }
    sub++;
    if (c->ded != NULL) {
        c->ded->tainted = true;
    }
    if (strcmp(sub, "setname") == 0) {
        if (session_args(r, &a) && a.argc == 3 &&
            !session_set_name(&c->sess, a.argv[2], a.argl[2])) {
            log_warn("client %llu: out of memory keeping its name", (unsigned long long)c->id);
        }
        free(a.buf);
    } else if (strcmp(sub, "tracking") == 0) {
        if (session_args(r, &a)) {
            c->sess.tracking = session_arg_is(&a, 2, "on");
        }
        free(a.buf);
    } else if (strcmp(sub, "caching") == 0 || strcmp(sub, "no-evict") == 0 ||
               strcmp(sub, "no-touch") == 0 || strcmp(sub, "id") == 0) {
        /* CLIENT ID: the id stays valid (for CLIENT UNBLOCK, CLIENT KILL ID,
         * TRACKING REDIRECT) while the session keeps this connection. */
        c->sess.sticky = true;
    }
}

/* A session command EXEC ran without error: apply it as if it had just
 * been answered outside the transaction. */
static void session_apply_queued(void *arg, const struct txn_entry *e)
{
    struct client *c = arg;
    struct req *r = req_new(c->w);

    if (r == NULL || !req_spans_copy_in(c->w, &r->in, e->buf, e->len)) {
        log_warn("client %llu: out of memory applying its transaction's session changes",
                 (unsigned long long)c->id);
        if (r != NULL) {
            req_free(c->w, r);
        }
        return;
    }
    r->ci = e->ci;
    r->intarg = e->intarg;
    r->argc = e->argc;
    session_after_reply(c, r);
    req_free(c->w, r);
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

void session_after_reply(struct client *c, struct req *r)
{
    const struct cmd_info *ci = r->ci;
    bool ok = !(r->flags & REQ_ERROR);

    if (ci == NULL || (r->flags & REQ_PUSH) || session_in_multi(c, r)) {
        return;
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
            txn_applied(&c->sess.txn, r, session_apply_queued, c);
        }
        txn_clear(&c->sess.txn);
        if ((r->flags & REQ_EXEC_NIL) && ok &&
            !req_reply_raw(c->w, r, c->sess.resp == 3 ? "_\r\n" : "*-1\r\n",
                           c->sess.resp == 3 ? 3 : 5)) {
            r->flags |= REQ_DONE;
        }
        return;
    case CMD_SELECT:
        if (ok && r->intarg >= 0) {
            c->sess.db = r->intarg;
            if (c->ded != NULL) {
                c->ded->db = r->intarg;
            }
        }
        return;
    case CMD_AUTH:
        if (ok) {
            c->sess.authed = true;
            session_keep(r, &c->sess.auth, &c->sess.auth_len);
            if (c->ded != NULL) {
                c->ded->tainted = true;
            }
        }
        return;
    case CMD_HELLO:
        if (ok && c->ded != NULL) {
            c->sess.authed = true;
            session_after_hello(c, r);
        }
        return;
    case CMD_MULTI:
        if (ok && !c->sess.multi) {
            txn_clear(&c->sess.txn);
        }
        c->sess.multi = c->sess.multi || ok;
        return;
    case CMD_WATCH:
        c->sess.watching = c->sess.watching || ok;
        return;
    case CMD_UNWATCH:
        c->sess.watching = false;
        c->sess.lost_watch = false;
        return;
    case CMD_RESET:
        if (ok) {
            session_reset(&c->sess);
            if (c->ded != NULL) {
                /* The server logged the connection out (and back to db 0,
                 * RESP2): it must not be lent to anyone else. */
                c->ded->tainted = true;
                c->ded->db = 0;
                c->ded->resp = 2;
            }
        }
        return;
    case CMD_CLIENT:
        if (ok) {
            session_after_client(c, r);
        }
        return;
    default:
        return;
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
