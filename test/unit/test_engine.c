/*
 * test_engine.c - the Sentinel engine on its own, through the receiver the
 * proxy hands it: fake Sentinels and fake Redis instances run in the test's
 * own event loop on free loopback ports, and a fake receiver records every
 * snapshot and status the engine reports.
 */
#include "unit.h"

#include <arpa/inet.h>
#include <ev.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf/config.h"
#include "lib/ctlreport.h"
#include "lib/log.h"
#include "lib/topology.h"
#include "sentinel/engine.h"

#define FAKE_CONNS 16

/* A server that answers each command with what its answer function says. */
struct fake {
    struct ev_loop *loop;
    int lfd, port;
    ev_io accept_io;
    struct fake_conn {
        struct fake *f;
        int fd;
        ev_io io;
        redisReader *rd;
    } conns[FAKE_CONNS];
    /* Sentinel: the master it reports; instance: its ROLE. */
    int master_port;
    unsigned long long epoch;
    const char *role; /* "master" or "slave" */
    int commands;
};

static void fake_reply(struct fake_conn *fc, const char *text, size_t len)
{
    if (write(fc->fd, text, len) != (ssize_t)len) {
        fail_msg("fake server: short write");
    }
}

static void fake_printf(struct fake_conn *fc, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fake_reply(fc, buf, (size_t)n);
}

static void fake_answer(struct fake_conn *fc, redisReply *cmd)
{
    struct fake *f = fc->f;
    const char *name = cmd->element[0]->str;
    const char *sub = cmd->elements > 1 ? cmd->element[1]->str : "";
    char port[16];

    f->commands++;
    if (strcasecmp(name, "SUBSCRIBE") == 0) {
        for (size_t i = 1; i < cmd->elements; i++) {
            fake_printf(fc, "*3\r\n$9\r\nsubscribe\r\n$%zu\r\n%s\r\n:%zu\r\n",
                        strlen(cmd->element[i]->str), cmd->element[i]->str, i);
        }
    } else if (strcasecmp(name, "ROLE") == 0 && strcmp(f->role, "master") == 0) {
        fake_printf(fc, "*3\r\n$6\r\nmaster\r\n:1000\r\n*0\r\n");
    } else if (strcasecmp(name, "ROLE") == 0) {
        fake_printf(fc, "*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:1\r\n$9\r\nconnected\r\n:1\r\n");
    } else if (strcasecmp(name, "SENTINEL") == 0 && strcasecmp(sub, "MASTER") == 0) {
        snprintf(port, sizeof(port), "%d", f->master_port);
        fake_printf(fc,
                    "*8\r\n$4\r\nname\r\n$8\r\nmymaster\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
                    "$4\r\nport\r\n$%zu\r\n%s\r\n$12\r\nconfig-epoch\r\n$%d\r\n%llu\r\n",
                    strlen(port), port, snprintf(NULL, 0, "%llu", f->epoch), f->epoch);
    } else if (strcasecmp(name, "SENTINEL") == 0) {
        fake_reply(fc, "*0\r\n", 4); /* no replicas, no other Sentinels */
    } else {
        fake_reply(fc, "-ERR unknown command\r\n", 22);
    }
}

static void fake_conn_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct fake_conn *fc = io->data;
    char buf[4096];
    ssize_t n = read(fc->fd, buf, sizeof(buf));
    void *reply;

    (void)revents;
    if (n <= 0) {
        ev_io_stop(loop, io);
        close(fc->fd);
        redisReaderFree(fc->rd);
        fc->fd = -1;
        fc->rd = NULL;
        return;
    }
    redisReaderFeed(fc->rd, buf, (size_t)n);
    while (redisReaderGetReply(fc->rd, &reply) == REDIS_OK && reply != NULL) {
        redisReply *cmd = reply;
        if (cmd->type == REDIS_REPLY_ARRAY && cmd->elements > 0) {
            fake_answer(fc, cmd);
        }
        freeReplyObject(reply);
    }
}

static void fake_accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct fake *f = io->data;
    int fd = accept(f->lfd, NULL, NULL);

    (void)revents;
    if (fd < 0) {
        return;
    }
    for (int i = 0; i < FAKE_CONNS; i++) {
        struct fake_conn *fc = &f->conns[i];
        if (fc->fd < 0) {
            fc->f = f;
            fc->fd = fd;
            fc->rd = redisReaderCreate();
            ev_io_init(&fc->io, fake_conn_cb, fd, EV_READ);
            fc->io.data = fc;
            ev_io_start(loop, &fc->io);
            return;
        }
    }
    close(fd);
}

/* Listen on a free loopback port. */
static void fake_start(struct fake *f, struct ev_loop *loop, const char *role)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int one = 1;

    memset(f, 0, sizeof(*f));
    f->loop = loop;
    f->role = role;
    for (int i = 0; i < FAKE_CONNS; i++) {
        f->conns[i].fd = -1;
    }
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->lfd >= 0);
    setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(f->lfd, 16), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&sa, &len), 0);
    f->port = ntohs(sa.sin_port);
    ev_io_init(&f->accept_io, fake_accept_cb, f->lfd, EV_READ);
    f->accept_io.data = f;
    ev_io_start(loop, &f->accept_io);
}

static void fake_stop(struct fake *f)
{
    ev_io_stop(f->loop, &f->accept_io);
    close(f->lfd);
    for (int i = 0; i < FAKE_CONNS; i++) {
        if (f->conns[i].fd >= 0) {
            ev_io_stop(f->loop, &f->conns[i].io);
            close(f->conns[i].fd);
            redisReaderFree(f->conns[i].rd);
        }
    }
}

/* ---- the fake receiver ---------------------------------------------------- */

struct recorder {
    struct ev_loop *loop;
    int publishes;
    struct topology *last; /* a reference to the last snapshot */
    int statuses;
    char *status;
    struct ctl_report *report; /* the last one */
    int want_port;             /* stop the loop once a snapshot names this master */
};

static void recorder_publish(void *ctx, struct topology *t)
{
    struct recorder *rec = ctx;

    rec->publishes++;
    topology_ref(t);
    topology_unref(rec->last);
    rec->last = t;
    if (t->has_master && t->master.port == rec->want_port) {
        ev_break(rec->loop, EVBREAK_ONE);
    }
}

static void recorder_status(void *ctx, char *text, struct ctl_report *report)
{
    struct recorder *rec = ctx;

    rec->statuses++;
    free(rec->status);
    rec->status = text;
    free(rec->report);
    rec->report = report;
}

static void deadline_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    (void)t;
    ev_break(loop, EVBREAK_ONE);
}

/* Run the loop until the recorder stops it or `seconds` pass; true if it
 * was the recorder. */
static bool run_until_master(struct ev_loop *loop, struct recorder *rec, int port, double seconds)
{
    ev_timer deadline;
    bool got;

    rec->want_port = port;
    ev_timer_init(&deadline, deadline_cb, seconds, 0);
    ev_timer_start(loop, &deadline);
    ev_run(loop, 0);
    got = ev_is_active(&deadline);
    ev_timer_stop(loop, &deadline);
    return got;
}

static struct config *engine_config(int sentinel_port)
{
    struct config *cfg = config_new();
    char err[256], addr[64];

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", sentinel_port);
    assert_true(config_set(cfg, "sentinel.master-name", "mymaster", err, sizeof(err)));
    assert_true(config_set(cfg, "sentinel.addresses", addr, err, sizeof(err)));
    assert_true(config_set(cfg, "sentinel.poll-interval", "100ms", err, sizeof(err)));
    assert_true(config_set(cfg, "sentinel.timeout", "200ms", err, sizeof(err)));
    assert_true(config_validate(cfg, err, sizeof(err)));
    return cfg;
}

/* One Sentinel, two instances, an engine and its recorder, on a loop. */
struct setup {
    struct ev_loop *loop;
    struct fake sentinel, m1, m2;
    struct recorder rec;
    struct config *cfg;
    struct engine *e;
};

/* The Sentinel names m1 (whose ROLE says role1) at epoch 1. */
static void setup_start(struct setup *s, const char *role1)
{
    struct engine_receiver rx = {&s->rec, recorder_publish, recorder_status};
    char err[256];

    memset(s, 0, sizeof(*s));
    s->loop = ev_loop_new(EVFLAG_AUTO);
    s->rec.loop = s->loop;
    fake_start(&s->m1, s->loop, role1);
    fake_start(&s->m2, s->loop, "slave");
    fake_start(&s->sentinel, s->loop, "sentinel");
    s->sentinel.master_port = s->m1.port;
    s->sentinel.epoch = 1;
    s->cfg = engine_config(s->sentinel.port);
    s->e = engine_start(s->loop, s->cfg, &rx, &(struct engine_tls){NULL, NULL}, err, sizeof(err));
    assert_non_null(s->e);
}

static void setup_stop(struct setup *s)
{
    engine_stop(s->e);
    topology_unref(s->rec.last);
    free(s->rec.status);
    free(s->rec.report);
    config_free(s->cfg);
    fake_stop(&s->sentinel);
    fake_stop(&s->m1);
    fake_stop(&s->m2);
    ev_loop_destroy(s->loop);
}

/* The master the Sentinels name and ROLE confirms reaches the receiver,
 * and a failover to another instance reaches it too. */
static void test_publishes_confirmed_master(void **state)
{
    struct setup s;

    (void)state;
    setup_start(&s, "master");
    assert_true(run_until_master(s.loop, &s.rec, s.m1.port, 5.0));
    assert_true(s.rec.last->has_master);
    assert_int_equal(s.rec.last->epoch, 1);
    assert_non_null(s.rec.status);
    assert_non_null(strstr(s.rec.status, "decision:agreed"));
    assert_non_null(strstr(s.rec.status, "sentinels_answering:1"));
    /* The same, as data for the admin endpoints. */
    assert_non_null(s.rec.report);
    assert_string_equal(s.rec.report->decision, "agreed");
    assert_int_equal(s.rec.report->answering, 1);
    assert_int_equal(s.rec.report->n, 1);
    assert_true(s.rec.report->sentinels[0].ok && s.rec.report->sentinels[0].configured);
    assert_int_equal(s.rec.report->sentinels[0].epoch, 1);
    assert_int_equal(s.rec.report->failovers, 0);

    /* Failover: the Sentinel names m2 at a higher epoch, and m2 says so. */
    s.m2.role = "master";
    s.sentinel.master_port = s.m2.port;
    s.sentinel.epoch = 2;
    assert_true(run_until_master(s.loop, &s.rec, s.m2.port, 5.0));
    assert_int_equal(s.rec.last->epoch, 2);
    setup_stop(&s);
}

/* A master the Sentinels name but whose ROLE says replica is never
 * published; the status still says what the Sentinels answered. */
static void test_role_must_agree(void **state)
{
    struct setup s;

    (void)state;
    setup_start(&s, "slave");
    assert_false(run_until_master(s.loop, &s.rec, s.m1.port, 1.0));
    assert_true(s.rec.last == NULL || !s.rec.last->has_master);
    assert_true(s.m1.commands > 0); /* ROLE was asked */
    assert_non_null(s.rec.status);
    assert_non_null(strstr(s.rec.status, "decision:agreed"));
    setup_stop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publishes_confirmed_master),
        cmocka_unit_test(test_role_must_agree),
    };

    log_set_level(LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
