/*
 * admin.c - the admin HTTP/1.1 endpoints on their own port, served by the
 * control thread's loop (never by a worker):
 *
 *   GET /metrics    Prometheus text exposition (proxy/metrics.c)
 *   GET /healthz    200 while the process serves
 *   GET /readyz     200 once a master is confirmed, else 503 and why
 *   GET /topology   the topology and the Sentinels' view as JSON
 *
 * Plain HTTP, GET and HEAD only, no request bodies; keep-alive as HTTP/1.1
 * has it. Every input is bounded: ADMIN_CONNS_MAX connections (more are
 * closed at once), ADMIN_HEAD_MAX bytes of request head, and ADMIN_TIMEOUT
 * seconds for a request to arrive whole and its answer to leave.
 */
#include "proxy/admin.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "conf/config.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/strbuf.h"
#include "proxy/listener.h"
#include "proxy/metrics.h"
#include "proxy/proxy.h"

#define ADMIN_CONNS_MAX 32
#define ADMIN_HEAD_MAX  8192
#define ADMIN_TIMEOUT   10.0 /* seconds */
#define ADMIN_LINGER    2.0  /* seconds to wait for the client's close after ours */

struct admin_conn {
    struct admin *a;
    int fd;
    ev_io io;
    ev_timer timer;
    char in[ADMIN_HEAD_MAX];
    size_t in_len;
    struct strbuf out;
    size_t out_sent;
    bool close_after; /* close once out is written */
    bool lingering;   /* answered and shut for writing: reading to the client's close */
    bool http10;      /* the request being answered is HTTP/1.0 */
    struct admin_conn *prev, *next;
};

struct admin {
    struct ev_loop *loop;
    struct proxy *px;
    struct listener *l; /* accepts, pausing when out of descriptors */
    struct admin_conn *conns;
    int nconns;
};

/* A parsed request head. */
struct admin_req {
    char method[8];
    char path[128];
    bool http10;
    bool keep_alive; /* as the version and Connection header say */
    bool has_body;   /* Content-Length > 0 or Transfer-Encoding */
};

static void admin_conn_cb(struct ev_loop *loop, ev_io *io, int revents);

static void admin_close(struct admin_conn *c)
{
    struct admin *a = c->a;

    ev_io_stop(a->loop, &c->io);
    ev_timer_stop(a->loop, &c->timer);
    close(c->fd);
    strbuf_free(&c->out);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        a->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    a->nconns--;
    free(c);
}

static void admin_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    admin_close(t->data);
}

static void admin_arm(struct admin_conn *c, int events)
{
    ev_io_stop(c->a->loop, &c->io);
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(c->a->loop, &c->io);
}

/* Queue a whole response; HEAD gets the headers only. */
static void admin_respond(struct admin_conn *c, const struct admin_req *rq, int status,
                          const char *reason, const char *type, const char *extra,
                          const struct strbuf *body)
{
    size_t len = body != NULL ? body->len : 0;

    strbuf_printf(&c->out,
                  "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                  "Cache-Control: no-store\r\n%s%s\r\n",
                  status, reason, type, len, extra != NULL ? extra : "",
                  c->close_after ? "Connection: close\r\n"
                  : c->http10    ? "Connection: keep-alive\r\n"
                                 : "");
    if (len > 0 && (rq == NULL || strcmp(rq->method, "HEAD") != 0)) {
        strbuf_append(&c->out, body->buf, len);
    }
}

/* An error answer in plain text; the connection closes after it. */
static void admin_error(struct admin_conn *c, const struct admin_req *rq, int status,
                        const char *reason, const char *extra)
{
    struct strbuf body;

    strbuf_init(&body);
    strbuf_printf(&body, "%d %s\n", status, reason);
    c->close_after = true;
    admin_respond(c, rq, status, reason, "text/plain; charset=utf-8", extra, &body);
    strbuf_free(&body);
}

/* The value of a header line "Name: value" if name matches (NULL if not). */
static const char *admin_header(const char *line, const char *name)
{
    size_t n = strlen(name);

    if (strncasecmp(line, name, n) != 0 || line[n] != ':') {
        return NULL;
    }
    line += n + 1;
    while (*line == ' ' || *line == '\t') {
        line++;
    }
    return line;
}

/* Whether a comma-separated header value has token (any case). */
static bool admin_has_token(const char *v, const char *token)
{
    size_t n = strlen(token);

    while (*v != '\0') {
        while (*v == ' ' || *v == '\t' || *v == ',') {
            v++;
        }
        if (strncasecmp(v, token, n) == 0 &&
            (v[n] == '\0' || v[n] == ',' || v[n] == ' ' || v[n] == '\t')) {
            return true;
        }
        while (*v != '\0' && *v != ',') {
            v++;
        }
    }
    return false;
}

/* Parse the head in c->in[0..len) (NUL-terminated lines, CRs removed).
 * False when it is not a valid HTTP/1.x request. */
static bool admin_parse(char *head, struct admin_req *rq)
{
    char *save = NULL, *line = strtok_r(head, "\n", &save);
    char *sp1, *sp2, *q;
    size_t n;

    memset(rq, 0, sizeof(*rq));
    if (line == NULL || (sp1 = strchr(line, ' ')) == NULL || (sp2 = strchr(sp1 + 1, ' ')) == NULL ||
        strchr(sp2 + 1, ' ') != NULL) {
        return false;
    }
    n = (size_t)(sp1 - line);
    if (n == 0 || n >= sizeof(rq->method)) {
        return false;
    }
    memcpy(rq->method, line, n);
    if (strcmp(sp2 + 1, "HTTP/1.1") == 0) {
        rq->keep_alive = true;
    } else if (strcmp(sp2 + 1, "HTTP/1.0") == 0) {
        rq->http10 = true;
    } else {
        return false;
    }
    *sp2 = '\0';
    if ((q = strchr(sp1 + 1, '?')) != NULL) {
        *q = '\0'; /* no endpoint takes a query */
    }
    if (sp1[1] != '/' || strlen(sp1 + 1) >= sizeof(rq->path)) {
        snprintf(rq->path, sizeof(rq->path), "?");
    } else {
        snprintf(rq->path, sizeof(rq->path), "%s", sp1 + 1);
    }
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        const char *v;
        if (line[0] == ' ' || line[0] == '\t' || strchr(line, ':') == NULL) {
            return false; /* folded or malformed header line */
        }
        if ((v = admin_header(line, "Content-Length")) != NULL) {
            char *end;
            unsigned long long len = strtoull(v, &end, 10);
            end += strspn(end, " \t");
            rq->has_body = rq->has_body || end == v || *end != '\0' || len > 0 || *v == '-';
        } else if (admin_header(line, "Transfer-Encoding") != NULL) {
            rq->has_body = true;
        } else if ((v = admin_header(line, "Connection")) != NULL) {
            if (admin_has_token(v, "close")) {
                rq->keep_alive = false;
            } else if (admin_has_token(v, "keep-alive")) {
                rq->keep_alive = true;
            }
        }
    }
    return true;
}

/* Answer one request. */
static void admin_serve(struct admin_conn *c, const struct admin_req *rq)
{
    struct proxy *px = c->a->px;
    struct strbuf body;

    c->close_after = !rq->keep_alive;
    c->http10 = rq->http10;
    if (strcmp(rq->method, "GET") != 0 && strcmp(rq->method, "HEAD") != 0) {
        admin_error(c, rq, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n");
        return;
    }
    if (rq->has_body) {
        admin_error(c, rq, 400, "Bad Request", NULL);
        return;
    }
    strbuf_init(&body);
    if (strcmp(rq->path, "/metrics") == 0) {
        metrics_prometheus(px, &body);
        admin_respond(c, rq, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", NULL, &body);
    } else if (strcmp(rq->path, "/healthz") == 0) {
        strbuf_printf(&body, "ok\n");
        admin_respond(c, rq, 200, "OK", "text/plain; charset=utf-8", NULL, &body);
    } else if (strcmp(rq->path, "/readyz") == 0) {
        bool ready = metrics_ready(px, &body);
        admin_respond(c, rq, ready ? 200 : 503, ready ? "OK" : "Service Unavailable",
                      "text/plain; charset=utf-8", NULL, &body);
    } else if (strcmp(rq->path, "/topology") == 0) {
        metrics_topology_json(px, &body);
        admin_respond(c, rq, 200, "OK", "application/json", NULL, &body);
    } else {
        admin_error(c, rq, 404, "Not Found", NULL);
    }
    if (body.oom || c->out.oom) {
        strbuf_free(&c->out);
        strbuf_init(&c->out);
        admin_error(c, rq, 500, "Internal Server Error", NULL);
    }
    strbuf_free(&body);
}

/* Answer the request at the start of c->in if its head is complete. True
 * when an answer was queued. */
static bool admin_process(struct admin_conn *c)
{
    struct admin_req rq;
    char head[ADMIN_HEAD_MAX + 1];
    char *end = NULL;
    size_t used, j = 0;

    for (size_t i = 0; i + 1 < c->in_len && end == NULL; i++) {
        if (c->in[i] == '\n' && c->in[i + 1] == '\n') {
            end = &c->in[i + 2];
        } else if (c->in[i] == '\n' && c->in[i + 1] == '\r' && i + 2 < c->in_len &&
                   c->in[i + 2] == '\n') {
            end = &c->in[i + 3];
        }
    }
    if (end == NULL) {
        if (c->in_len == sizeof(c->in)) {
            admin_error(c, NULL, 431, "Request Header Fields Too Large", NULL);
            return true;
        }
        return false;
    }
    used = (size_t)(end - c->in);
    for (size_t i = 0; i < used; i++) {
        if (c->in[i] == '\0') {
            admin_error(c, NULL, 400, "Bad Request", NULL);
            return true;
        }
        if (c->in[i] != '\r') {
            head[j++] = c->in[i];
        }
    }
    head[j] = '\0';
    memmove(c->in, end, c->in_len - used);
    c->in_len -= used;
    if (!admin_parse(head, &rq)) {
        admin_error(c, NULL, 400, "Bad Request", NULL);
    } else {
        admin_serve(c, &rq);
    }
    return true;
}

/* Write what is queued; then wait for the next request, or close. A
 * request already read behind it is answered on the next wake-up, after
 * the loop has polled: a pipeline of requests cannot hold the control
 * thread, which also runs the Sentinel engine. */
static void admin_write(struct admin_conn *c)
{
    if (c->out.len == 0 && !admin_process(c)) {
        admin_arm(c, EV_READ);
        return;
    }
    while (c->out_sent < c->out.len) {
        ssize_t n = write(c->fd, c->out.buf + c->out_sent, c->out.len - c->out_sent);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            admin_arm(c, EV_WRITE);
            return;
        }
        if (n <= 0) {
            admin_close(c);
            return;
        }
        c->out_sent += (size_t)n;
    }
    if (c->close_after) {
        /* Closing with unread input would reset the connection and could
         * destroy the answer before the client reads it: wait (briefly)
         * for the client to close first. */
        shutdown(c->fd, SHUT_WR);
        c->lingering = true;
        ev_timer_stop(c->a->loop, &c->timer);
        ev_timer_set(&c->timer, ADMIN_LINGER, 0);
        ev_timer_start(c->a->loop, &c->timer);
        admin_arm(c, EV_READ);
        return;
    }
    strbuf_free(&c->out);
    strbuf_init(&c->out);
    c->out_sent = 0;
    ev_timer_stop(c->a->loop, &c->timer);
    ev_timer_set(&c->timer, ADMIN_TIMEOUT, 0);
    ev_timer_start(c->a->loop, &c->timer);
    /* More already read: writable fires at the next turn. */
    admin_arm(c, c->in_len > 0 ? EV_WRITE : EV_READ);
}

static void admin_read(struct admin_conn *c)
{
    ssize_t n;

    if (c->lingering) {
        char discard[4096];
        n = read(c->fd, discard, sizeof(discard));
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            admin_close(c);
        }
        return;
    }
    if (c->out.len > 0) {
        return; /* an answer is being written: the rest waits */
    }
    n = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);

    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        admin_close(c);
        return;
    }
    c->in_len += (size_t)n;
    if (admin_process(c)) {
        admin_write(c);
    }
}

static void admin_conn_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct admin_conn *c = io->data;

    (void)loop;
    if (revents & EV_WRITE) {
        admin_write(c);
    } else if (revents & EV_READ) {
        admin_read(c);
    }
}

static void admin_accept(void *ctx, struct listener *l, int fd)
{
    struct admin *a = ctx;
    struct admin_conn *c;

    (void)l;
    if (a->nconns >= ADMIN_CONNS_MAX || (c = calloc(1, sizeof(*c))) == NULL) {
        close(fd); /* bounded: a scraper does not need more */
        return;
    }
    c->a = a;
    c->fd = fd;
    strbuf_init(&c->out);
    ev_io_init(&c->io, admin_conn_cb, fd, EV_READ);
    c->io.data = c;
    ev_io_start(a->loop, &c->io);
    ev_timer_init(&c->timer, admin_timeout_cb, ADMIN_TIMEOUT, 0);
    c->timer.data = c;
    ev_timer_start(a->loop, &c->timer);
    c->next = a->conns;
    if (a->conns != NULL) {
        a->conns->prev = c;
    }
    a->conns = c;
    a->nconns++;
}

struct admin *admin_start(struct ev_loop *loop, struct proxy *px, char *err, size_t errlen)
{
    const struct config *cfg = px->cfg;
    struct addr addr = cfg->admin;
    char text[ADDR_TEXT_MAX], why[256];
    struct admin *a;
    int fd;

    if (!addr_resolve(&addr, why, sizeof(why))) {
        snprintf(err, errlen, "admin.listen: %s", why);
        return NULL;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    addr_format(&addr, text, sizeof(text));
    a->loop = loop;
    a->px = px;
    fd = net_listen(&addr, 64, false, why, sizeof(why));
    if (fd < 0 || (a->l = listener_new(loop, &addr, fd, false, READ_FROM_MASTER, NULL, admin_accept,
                                       a)) == NULL) {
        snprintf(err, errlen, "admin.listen %s: %s", text, fd < 0 ? why : "out of memory");
        if (fd >= 0) {
            close(fd);
        }
        free(a);
        return NULL;
    }
    log_info("admin endpoints on http://%s (/metrics, /healthz, /readyz, /topology)", text);
    return a;
}

void admin_stop(struct admin *a)
{
    if (a == NULL) {
        return;
    }
    while (a->conns != NULL) {
        admin_close(a->conns);
    }
    listener_close(a->l);
    free(a);
}

/* ---- the probe (a client of the above) -------------------------------------- */

/* Wait until fd is ready for events or the deadline (ms, CLOCK_MONOTONIC) passes. */
static bool admin_wait(int fd, short events, double deadline)
{
    struct pollfd p = {fd, events, 0};
    struct timespec now;
    int left;

    clock_gettime(CLOCK_MONOTONIC, &now);
    left = (int)(deadline - ((double)now.tv_sec * 1000 + (double)now.tv_nsec / 1e6));
    return left > 0 && poll(&p, 1, left) == 1;
}

bool admin_probe(const char *target, int timeout_ms, char *out, size_t len)
{
    char hostport[ADDR_TEXT_MAX], req[2 * ADDR_TEXT_MAX + 128], buf[512], err[256];
    const char *slash = strchr(target, '/');
    const char *path = slash != NULL ? slash : "/healthz";
    size_t hl = slash != NULL ? (size_t)(slash - target) : strlen(target), got = 0;
    struct timespec now;
    struct addr a;
    double deadline;
    int fd, n, e = 0;
    bool ok;

    clock_gettime(CLOCK_MONOTONIC, &now);
    deadline = (double)now.tv_sec * 1000 + (double)now.tv_nsec / 1e6 + timeout_ms;
    if (hl >= sizeof(hostport) || strlen(path) > 64) {
        snprintf(out, len, "target too long (HOST:PORT[/PATH])");
        return false;
    }
    for (const char *p = path; *p != '\0'; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            snprintf(out, len, "a path is printable, without spaces");
            return false;
        }
    }
    memcpy(hostport, target, hl);
    hostport[hl] = '\0';
    if (strncmp(hostport, "unix:", 5) == 0) {
        snprintf(out, len, "the admin endpoint is HOST:PORT (TCP)");
        return false;
    }
    if (!addr_parse(&a, hostport, err, sizeof(err)) || !addr_resolve(&a, err, sizeof(err)) ||
        (fd = net_connect(&a, err, sizeof(err))) < 0) {
        snprintf(out, len, "%s", err);
        return false;
    }
    n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path,
                 hostport);
    if (n < 0 || (size_t)n >= sizeof(req)) {
        snprintf(out, len, "target too long (HOST:PORT[/PATH])");
        close(fd);
        return false;
    }
    if (!admin_wait(fd, POLLOUT, deadline) || (e = net_connect_result(fd)) != 0 ||
        send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        snprintf(out, len, "%s: %s", hostport, e != 0 ? strerror(e) : "no connection in time");
        close(fd);
        return false;
    }
    while (got < sizeof(buf) - 1 && memchr(buf, '\n', got) == NULL &&
           admin_wait(fd, POLLIN, deadline)) {
        ssize_t r = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (r <= 0) {
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    ok = (strncmp(buf, "HTTP/1.1 200", 12) == 0 || strncmp(buf, "HTTP/1.0 200", 12) == 0) &&
         (buf[12] == ' ' || buf[12] == '\0');
    snprintf(out, len, "%s%s", buf[0] != '\0' ? buf : "no answer from ",
             buf[0] != '\0' ? "" : hostport);
    return ok;
}
