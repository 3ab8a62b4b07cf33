/*
 * link.c - control-plane connections: hiredis reader and formatter over a
 * non-blocking transport, with per-command deadlines.
 */
#include "sentinel/link.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/evio.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/resolve.h"
#include "lib/tls.h"
#include "lib/transport.h"

#define LINK_READ_CHUNK   16384
#define LINK_MAX_PENDING  1024        /* commands in flight on one link */
#define LINK_MAX_UNPARSED (16u << 20) /* bytes of one unfinished reply */
#define LINK_MAX_ARGS     16

enum link_state {
    LINK_IDLE = 0,
    LINK_CONNECTING = 1,
    LINK_CONNECTED = 2,
    LINK_HANDSHAKE = 3, /* connected, TLS handshake under way */
    LINK_RESOLVING = 4, /* waiting for the resolver before connecting */
};

struct link_cmd {
    link_reply_fn *cb;
    void *arg;
    double deadline;
};

struct link {
    struct ev_loop *loop;
    struct addr addr;
    struct link_options opt;
    char name[96];
    char *username; /* copies of the credentials (any length) */
    char *password;
    bool auth_failed; /* the connection up now was refused its AUTH */
    bool relogin;     /* ... and new credentials came: close it (from the timer) */
    char last_error[256];
    struct transport t;
    ev_io io;
    ev_timer timer;
    ev_idle reaper;
    int state;
    bool subscriber;
    bool in_callback;
    bool doomed; /* freed once the current callback returns */
    bool silent; /* being destroyed: pending callbacks are not called */
    unsigned io_events;
    struct resolve_waiter rw; /* watching the resolver (LINK_RESOLVING) */
    redisReader *reader;
    size_t unparsed;
    char *out;
    size_t out_len, out_cap, out_sent;
    struct link_cmd *cmds; /* ring of pending commands */
    size_t ncmds, cmd_head, cmd_cap;
};

static void link_io_cb(struct ev_loop *loop, ev_io *io, int revents);
static void link_timer_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void link_arm_timer(struct link *l, double deadline);
static void link_reaper_cb(struct ev_loop *loop, ev_idle *idle, int revents);
static void link_resolved_cb(void *arg);

struct link *link_new(struct ev_loop *loop, const struct addr *a, const struct link_options *o)
{
    struct link *l = calloc(1, sizeof(*l));

    if (l == NULL) {
        return NULL;
    }
    l->loop = loop;
    l->addr = *a;
    l->opt = *o;
    snprintf(l->name, sizeof(l->name), "%s", o->name != NULL ? o->name : "link");
    if ((o->username != NULL && (l->username = strdup(o->username)) == NULL) ||
        (o->password != NULL && (l->password = strdup(o->password)) == NULL)) {
        free(l->username);
        free(l);
        return NULL;
    }
    l->opt.name = l->name;
    l->opt.username = l->username;
    l->opt.password = l->password;
    l->subscriber = o->on_push != NULL;
    l->t.fd = -1;
    ev_init(&l->timer, link_timer_cb);
    l->timer.data = l;
    ev_idle_init(&l->reaper, link_reaper_cb);
    l->reaper.data = l;
    return l;
}

bool link_set_options(struct link *l, double timeout, const char *username, const char *password)
{
    char *u = username != NULL ? strdup(username) : NULL;
    char *p = password != NULL ? strdup(password) : NULL;

    if ((username != NULL && u == NULL) || (password != NULL && p == NULL)) {
        free(u);
        free(p);
        return false;
    }
    bool same = ((u == NULL) == (l->username == NULL)) && (u == NULL || !strcmp(u, l->username)) &&
                ((p == NULL) == (l->password == NULL)) && (p == NULL || !strcmp(p, l->password));

    free(l->username);
    free(l->password);
    l->username = u;
    l->password = p;
    l->opt.username = u;
    l->opt.password = p;
    l->opt.timeout = timeout;
    if (!same && l->auth_failed) {
        /* Left connected without a login, it would never use them: closed
         * from the timer, outside the caller's loop (closing calls back). */
        l->relogin = true;
        link_arm_timer(l, ev_now(l->loop));
    }
    return true;
}

const struct addr *link_addr(const struct link *l)
{
    return &l->addr;
}

const char *link_name(const struct link *l)
{
    return l->name;
}

const char *link_last_error(const struct link *l)
{
    return l->last_error;
}

bool link_active(const struct link *l)
{
    return l->state != LINK_IDLE;
}

size_t link_pending(const struct link *l)
{
    return l->ncmds;
}

static void link_set_events(struct link *l, unsigned ev)
{
    evio_arm(l->loop, &l->io, l->t.fd, &l->io_events, ev);
    if (l->state == LINK_CONNECTED && (ev & EV_READ)) {
        evio_feed_pending(l->loop, &l->io, &l->t);
    }
}

/* Re-arm the timer for the earliest deadline (connect or oldest command). */
static void link_arm_timer(struct link *l, double deadline)
{
    double now = ev_now(l->loop);

    ev_timer_stop(l->loop, &l->timer);
    if (l->relogin) {
        deadline = now; /* to be closed: soon, whatever else waits */
    }
    if (deadline <= 0) {
        return;
    }
    ev_timer_set(&l->timer, deadline > now ? deadline - now : 0.001, 0);
    ev_timer_start(l->loop, &l->timer);
}

static void link_arm_for_commands(struct link *l)
{
    if (l->ncmds > 0) {
        link_arm_timer(l, l->cmds[l->cmd_head].deadline);
    } else {
        link_arm_timer(l, 0);
    }
}

static bool link_push_cmd(struct link *l, link_reply_fn *cb, void *arg)
{
    struct link_cmd *slot;

    if (l->ncmds == l->cmd_cap) {
        size_t cap = l->cmd_cap ? l->cmd_cap * 2 : 8;
        struct link_cmd *n;
        if (l->ncmds >= LINK_MAX_PENDING) {
            return false;
        }
        n = malloc(cap * sizeof(*n));
        if (n == NULL) {
            return false;
        }
        for (size_t i = 0; i < l->ncmds; i++) {
            n[i] = l->cmds[(l->cmd_head + i) % l->cmd_cap];
        }
        free(l->cmds);
        l->cmds = n;
        l->cmd_cap = cap;
        l->cmd_head = 0;
    }
    slot = &l->cmds[(l->cmd_head + l->ncmds) % l->cmd_cap];
    slot->cb = cb;
    slot->arg = arg;
    /* The loop's cached time may be stale after a long callback (a large
     * reply, a slow resolver): deadlines count from now. */
    ev_now_update(l->loop);
    slot->deadline = ev_now(l->loop) + l->opt.timeout;
    l->ncmds++;
    return true;
}

static struct link_cmd link_pop_cmd(struct link *l)
{
    struct link_cmd c = l->cmds[l->cmd_head];

    l->cmd_head = (l->cmd_head + 1) % l->cmd_cap;
    l->ncmds--;
    return c;
}

static bool link_append(struct link *l, const char *data, size_t len)
{
    if (l->out_len + len > l->out_cap) {
        size_t cap = l->out_cap ? l->out_cap : 256;
        char *n;
        while (cap < l->out_len + len) {
            cap *= 2;
        }
        n = realloc(l->out, cap);
        if (n == NULL) {
            return false;
        }
        l->out = n;
        l->out_cap = cap;
    }
    memcpy(l->out + l->out_len, data, len);
    l->out_len += len;
    return true;
}

static void link_flush(struct link *l)
{
    /* A TLS transport may hold encrypted bytes of its own to send. */
    while (l->out_sent < l->out_len || transport_out_pending(&l->t)) {
        struct iovec iov = {l->out + l->out_sent, l->out_len - l->out_sent};
        ssize_t n = transport_writev(&l->t, &iov, l->out_sent < l->out_len ? 1 : 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                link_set_events(l, EV_READ | EV_WRITE);
                return;
            }
            link_close(l, strerror(errno));
            return;
        }
        l->out_sent += (size_t)n;
    }
    l->out_len = l->out_sent = 0;
    link_set_events(l, EV_READ);
}

/* Open the socket to l->addr (resolved); LINK_IDLE with last_error set if
 * that fails at once. */
static void link_open(struct link *l)
{
    char err[256];
    int fd = net_connect(&l->addr, err, sizeof(err));

    if (fd < 0) {
        snprintf(l->last_error, sizeof(l->last_error), "%s", err);
        return;
    }
    if (l->opt.tls == NULL) {
        transport_plain(&l->t, fd);
    } else if (!transport_tls(&l->t, fd, l->opt.tls, l->addr.host, err, sizeof(err))) {
        snprintf(l->last_error, sizeof(l->last_error), "%s", err);
        close(fd);
        return;
    }
    l->reader = redisReaderCreate();
    if (l->reader == NULL) {
        transport_close(&l->t);
        return;
    }
    l->unparsed = 0;
    l->state = LINK_CONNECTING;
    ev_io_init(&l->io, link_io_cb, fd, EV_WRITE);
    l->io.data = l;
    ev_io_start(l->loop, &l->io);
    l->io_events = EV_WRITE;
    ev_now_update(l->loop);
    link_arm_timer(l, ev_now(l->loop) + l->opt.timeout);
}

/* Connect, the host name resolved again first (a name may now point
 * elsewhere): at once from the cache, or once the resolver has it
 * (LINK_RESOLVING, within the connect timeout). */
static void link_connect(struct link *l)
{
    char err[256];

    if (l->opt.resolver != NULL) {
        switch (resolve_lookup(l->opt.resolver, &l->addr, err, sizeof(err))) {
        case RESOLVE_OK:
            break;
        case RESOLVE_PENDING:
            l->state = LINK_RESOLVING;
            resolve_watch(l->opt.resolver, &l->rw, link_resolved_cb, l);
            ev_now_update(l->loop);
            link_arm_timer(l, ev_now(l->loop) + l->opt.timeout);
            return;
        default:
            snprintf(l->last_error, sizeof(l->last_error), "%s", err);
            return;
        }
    }
    link_open(l);
}

/* The resolver has news: connect if this link's name is known now. */
static void link_resolved_cb(void *arg)
{
    struct link *l = arg;
    char err[256];

    if (l->state != LINK_RESOLVING || l->doomed) {
        resolve_unwatch(&l->rw);
        return;
    }
    switch (resolve_lookup(l->opt.resolver, &l->addr, err, sizeof(err))) {
    case RESOLVE_PENDING:
        return;
    case RESOLVE_OK:
        resolve_unwatch(&l->rw);
        ev_timer_stop(l->loop, &l->timer);
        l->state = LINK_IDLE;
        link_open(l);
        if (l->state == LINK_IDLE) {
            /* Set aside by link_open: what waited fails now. */
            char why[sizeof(l->last_error)];
            snprintf(why, sizeof(why), "%s", l->last_error);
            l->state = LINK_RESOLVING;
            link_close(l, why);
        }
        return;
    default:
        link_close(l, err);
        return;
    }
}

static void link_auth_cb(struct link *l, redisReply *reply, void *arg)
{
    (void)arg;
    l->auth_failed = reply != NULL && reply->type == REDIS_REPLY_ERROR;
    if (l->auth_failed) {
        log_warn("%s: AUTH failed: %s", l->name, reply->str);
    }
}

static bool link_send_raw(struct link *l, link_reply_fn *cb, void *arg, int argc, const char **argv,
                          const size_t *argl)
{
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argl);
    bool ok;

    if (len < 0 || cmd == NULL) {
        return false;
    }
    /* A command without a callback expects no matched reply (SUBSCRIBE:
     * its confirmations arrive as messages). */
    ok = cb == NULL || link_push_cmd(l, cb, arg);
    if (ok && !link_append(l, cmd, (size_t)len)) {
        if (cb != NULL) {
            l->ncmds--; /* undo the push: the command never left */
        }
        ok = false;
    }
    redisFreeCommand(cmd);
    return ok;
}

bool link_command(struct link *l, link_reply_fn *cb, void *arg, int argc, const char **argv,
                  const size_t *argl)
{
    bool first = l->state == LINK_IDLE;

    if (l->doomed) {
        return false;
    }
    if (first) {
        link_connect(l);
        if (l->state == LINK_IDLE) {
            return false;
        }
        if (l->opt.password != NULL) {
            const char *av[3] = {"AUTH", l->opt.username, l->opt.password};
            size_t al[3] = {4, 0, 0};
            int ac = l->opt.username != NULL ? 3 : 2;
            if (ac == 2) {
                av[1] = l->opt.password;
            }
            al[1] = strlen(av[1]);
            al[2] = ac == 3 ? strlen(av[2]) : 0;
            if (!link_send_raw(l, link_auth_cb, NULL, ac, av, al)) {
                return false;
            }
        }
    }
    if (!link_send_raw(l, cb, arg, argc, argv, argl)) {
        return false;
    }
    if (l->state == LINK_CONNECTED) {
        /* Written from the I/O callback, never from here: a failed write
         * calls every pending callback, and the caller must not be called
         * back before this returns. */
        link_set_events(l, EV_READ | EV_WRITE);
        if (l->ncmds == 1) {
            link_arm_for_commands(l);
        }
    }
    return true;
}

bool link_commandv(struct link *l, link_reply_fn *cb, void *arg, const char *first, ...)
{
    const char *argv[LINK_MAX_ARGS];
    size_t argl[LINK_MAX_ARGS];
    int argc = 0;
    va_list ap;

    va_start(ap, first);
    for (const char *w = first; w != NULL && argc < LINK_MAX_ARGS; w = va_arg(ap, const char *)) {
        argv[argc] = w;
        argl[argc] = strlen(w);
        argc++;
    }
    va_end(ap);
    return link_command(l, cb, arg, argc, argv, argl);
}

void link_close(struct link *l, const char *why)
{
    bool was_callback = l->in_callback;

    if (l->state == LINK_IDLE) {
        return;
    }
    if (why != NULL) {
        snprintf(l->last_error, sizeof(l->last_error), "%s", why);
        log_debug("%s: closed: %s", l->name, why);
    }
    resolve_unwatch(&l->rw);
    ev_io_stop(l->loop, &l->io);
    ev_timer_stop(l->loop, &l->timer);
    l->io_events = 0;
    transport_close(&l->t);
    if (l->reader != NULL) {
        redisReaderFree(l->reader);
        l->reader = NULL;
    }
    l->state = LINK_IDLE;
    l->auth_failed = false;
    l->relogin = false;
    l->out_len = l->out_sent = 0;
    l->in_callback = true;
    while (l->ncmds > 0) {
        struct link_cmd c = link_pop_cmd(l);
        if (!l->silent) {
            c.cb(l, NULL, c.arg);
        }
    }
    if (l->subscriber && l->opt.on_push != NULL && !l->silent) {
        l->opt.on_push(l, NULL, l->opt.udata);
    }
    l->in_callback = was_callback;
}

/* On a subscriber link, messages and command replies interleave: messages
 * are arrays whose first element names their kind. */
static bool link_is_message(const struct link *l, const redisReply *r)
{
    static const char *kinds[] = {"message",    "pmessage",    "smessage",    "subscribe",
                                  "psubscribe", "unsubscribe", "punsubscribe"};

    if (!l->subscriber || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        return false;
    }
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strcasecmp(r->element[0]->str, kinds[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* Hand each complete reply to its command (or to the push callback). */
static void link_dispatch(struct link *l)
{
    void *reply = NULL;

    while (l->state == LINK_CONNECTED) {
        if (redisReaderGetReply(l->reader, &reply) != REDIS_OK) {
            char why[ADDR_TEXT_MAX + 128];
            snprintf(why, sizeof(why), "invalid reply: %s", l->reader->errstr);
            link_close(l, why);
            return;
        }
        if (reply == NULL) {
            return;
        }
        l->unparsed = 0;
        l->in_callback = true;
        if (link_is_message(l, reply)) {
            if (l->opt.on_push != NULL) {
                l->opt.on_push(l, reply, l->opt.udata);
            }
        } else if (l->ncmds > 0) {
            struct link_cmd c = link_pop_cmd(l);
            link_arm_for_commands(l);
            c.cb(l, reply, c.arg);
        } else {
            log_warn("%s: unexpected reply, dropping the link", l->name);
            l->in_callback = false;
            freeReplyObject(reply);
            link_close(l, "unexpected reply");
            return;
        }
        l->in_callback = false;
        freeReplyObject(reply);
        if (l->doomed) {
            return;
        }
    }
}

static void link_read(struct link *l)
{
    char buf[LINK_READ_CHUNK];

    for (int i = 0; i < 8 && l->state == LINK_CONNECTED && !l->doomed; i++) {
        ssize_t n = transport_read(&l->t, buf, sizeof(buf));
        if (n == 0) {
            link_close(l, "closed by peer");
            return;
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                link_close(l, strerror(errno));
            }
            return;
        }
        l->unparsed += (size_t)n;
        if (l->unparsed > LINK_MAX_UNPARSED) {
            link_close(l, "reply too large");
            return;
        }
        if (redisReaderFeed(l->reader, buf, (size_t)n) != REDIS_OK) {
            link_close(l, "reader error");
            return;
        }
        link_dispatch(l);
        if (l->state != LINK_CONNECTED || l->doomed) {
            return; /* closed by what it read, or freed by a callback */
        }
        if ((size_t)n < sizeof(buf) && transport_pending(&l->t) == 0) {
            break;
        }
    }
    if (l->state != LINK_CONNECTED) {
        return;
    }
    /* TLS: reading may have made OpenSSL answer (it waits in the
     * transport), and decrypted bytes will not wake the socket again. */
    if (transport_out_pending(&l->t)) {
        link_set_events(l, EV_READ | EV_WRITE);
    }
    evio_feed_pending(l->loop, &l->io, &l->t);
}

/* Connected: TLS first, if the link speaks it. */
static void link_handshake(struct link *l)
{
    char err[256];
    unsigned want = 0;

    if (l->t.tls != NULL) {
        switch (transport_handshake(&l->t, &want, err, sizeof(err))) {
        case TLS_STEP_AGAIN:
            l->state = LINK_HANDSHAKE;
            link_set_events(l, want);
            return;
        case TLS_STEP_FAILED:
            log_warn("%s: TLS handshake failed: %s", l->name, err);
            link_close(l, err);
            return;
        default:
            break;
        }
    }
    l->state = LINK_CONNECTED;
    link_arm_for_commands(l);
    link_flush(l);
}

static void link_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct link *l = io->data;

    (void)loop;
    if (l->state == LINK_CONNECTING) {
        int err = net_connect_result(l->t.fd);
        if (err != 0) {
            link_close(l, strerror(err));
            return;
        }
        net_tune(l->t.fd, 60);
        link_handshake(l);
        return;
    }
    if (l->state == LINK_HANDSHAKE) {
        link_handshake(l);
        return;
    }
    if (revents & EV_READ) {
        link_read(l);
    }
    if ((revents & EV_WRITE) && l->state == LINK_CONNECTED) {
        link_flush(l);
    }
    if (l->doomed && !l->in_callback) {
        ev_idle_start(l->loop, &l->reaper);
    }
}

static void link_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct link *l = t->data;

    (void)loop;
    (void)revents;
    if (l->state == LINK_RESOLVING) {
        char why[ADDR_HOST_MAX + 64];
        snprintf(why, sizeof(why), "'%.100s' not resolved within the timeout", l->addr.host);
        link_close(l, why);
        return;
    }
    if (l->state == LINK_CONNECTING || l->state == LINK_HANDSHAKE) {
        link_close(l, l->state == LINK_CONNECTING ? "connect timeout" : "TLS handshake timeout");
        return;
    }
    if (l->relogin) {
        link_close(l, "new credentials");
        return;
    }
    /* A subscriber waits for messages forever: only its commands time out. */
    if (l->ncmds > 0 && ev_now(l->loop) >= l->cmds[l->cmd_head].deadline) {
        link_close(l, "timeout");
        return;
    }
    link_arm_for_commands(l);
}

static void link_destroy(struct link *l)
{
    l->silent = true;
    link_close(l, NULL);
    ev_idle_stop(l->loop, &l->reaper);
    free(l->cmds);
    free(l->out);
    free(l->username);
    free(l->password);
    free(l);
}

static void link_reaper_cb(struct ev_loop *loop, ev_idle *idle, int revents)
{
    (void)loop;
    (void)revents;
    link_destroy(idle->data);
}

void link_free(struct link *l)
{
    if (l == NULL) {
        return;
    }
    if (l->in_callback) {
        l->doomed = true;
        l->opt.on_push = NULL;
        ev_idle_start(l->loop, &l->reaper);
        return;
    }
    link_destroy(l);
}
