/*
 * test_resolve.c - the host name cache and its thread: literals at once,
 * names pending until the thread answers, refreshes after the TTL, failures
 * retried, the least recently used names dropped, and a slow name that never
 * holds a lookup. getaddrinfo is replaced by a table the test controls.
 */
#include "unit.h"

#include <arpa/inet.h>
#include <ev.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lib/resolve.h"

/* ---- a getaddrinfo the test controls ------------------------------------------ */

static pthread_mutex_t fake_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fake_cond = PTHREAD_COND_INITIALIZER;
static char fake_ip[8][32];      /* "" */
static const char *fake_name[8]; /* name -> fake_ip[i], or fails when fake_ip is "" */
static bool fake_hold;           /* "slow.test" waits while set */
static int fake_calls;

static void fake_set(int i, const char *name, const char *ip)
{
    pthread_mutex_lock(&fake_mu);
    fake_name[i] = name;
    snprintf(fake_ip[i], sizeof(fake_ip[i]), "%s", ip);
    pthread_mutex_unlock(&fake_mu);
}

static void fake_release(void)
{
    pthread_mutex_lock(&fake_mu);
    fake_hold = false;
    pthread_cond_broadcast(&fake_cond);
    pthread_mutex_unlock(&fake_mu);
}

static int fake_gai(const char *node, const char *service, const struct addrinfo *hints,
                    struct addrinfo **res)
{
    struct addrinfo h = *hints;
    char ip[32] = "";
    int n;

    pthread_mutex_lock(&fake_mu);
    fake_calls++;
    if (strcmp(node, "slow.test") == 0) {
        while (fake_hold) {
            pthread_cond_wait(&fake_cond, &fake_mu);
        }
        snprintf(ip, sizeof(ip), "10.9.9.9");
    } else if (sscanf(node, "n%d.test", &n) == 1) {
        snprintf(ip, sizeof(ip), "10.0.1.%d", n);
    }
    for (int i = 0; i < 8; i++) {
        if (fake_name[i] != NULL && strcmp(fake_name[i], node) == 0) {
            memcpy(ip, fake_ip[i], sizeof(ip));
        }
    }
    pthread_mutex_unlock(&fake_mu);
    if (ip[0] == '\0') {
        return EAI_NONAME;
    }
    h.ai_flags |= AI_NUMERICHOST;
    return getaddrinfo(ip, service, &h, res);
}

/* ---- helpers --------------------------------------------------------------------- */

struct fixture {
    struct ev_loop *loop;
    struct resolve *r;
    struct resolve_waiter w;
    int notified;
};

static void on_news(void *arg)
{
    struct fixture *f = arg;

    f->notified++;
    ev_break(f->loop, EVBREAK_ONE);
}

static void on_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)t;
    (void)revents;
    ev_break(loop, EVBREAK_ONE);
}

/* Run the loop until the resolver reports news (true) or seconds pass. */
static bool wait_news(struct fixture *f, double seconds)
{
    ev_timer t;
    int before = f->notified;

    ev_timer_init(&t, on_timeout, seconds, 0);
    ev_timer_start(f->loop, &t);
    while (f->notified == before && ev_is_active(&t)) {
        ev_run(f->loop, EVRUN_ONCE);
    }
    ev_timer_stop(f->loop, &t);
    return f->notified > before;
}

static void fixture_start(struct fixture *f, const struct resolve_options *o)
{
    struct resolve_options opt = *o;
    char err[128];

    memset(f, 0, sizeof(*f));
    pthread_mutex_lock(&fake_mu);
    memset(fake_name, 0, sizeof(fake_name));
    fake_calls = 0;
    fake_hold = false;
    pthread_mutex_unlock(&fake_mu);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    opt.gai = fake_gai;
    f->r = resolve_new(f->loop, &opt, err, sizeof(err));
    assert_non_null(f->r);
    resolve_watch(f->r, &f->w, on_news, f);
}

static void fixture_stop(struct fixture *f)
{
    resolve_unwatch(&f->w);
    resolve_free(f->r);
    ev_loop_destroy(f->loop);
}

static enum resolve_status lookup(struct fixture *f, const char *host, int port, char *ip,
                                  size_t iplen)
{
    struct addr a;
    char err[256];
    enum resolve_status st;

    assert_true(addr_from_host_port(&a, host, port, err, sizeof(err)));
    st = resolve_lookup(f->r, &a, err, sizeof(err));
    ip[0] = '\0';
    if (st == RESOLVE_OK) {
        char text[64];
        int p = a.family == AF_INET ? ntohs(((struct sockaddr_in *)&a.sa)->sin_port)
                                    : ntohs(((struct sockaddr_in6 *)&a.sa)->sin6_port);
        assert_int_equal(p, port);
        assert_int_equal(getnameinfo((struct sockaddr *)&a.sa, a.salen, text, sizeof(text), NULL, 0,
                                     NI_NUMERICHOST),
                         0);
        snprintf(ip, iplen, "%s", text);
    } else {
        snprintf(ip, iplen, "%s", err);
    }
    return st;
}

static int calls(void)
{
    int n;

    pthread_mutex_lock(&fake_mu);
    n = fake_calls;
    pthread_mutex_unlock(&fake_mu);
    return n;
}

static double mono(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- tests ----------------------------------------------------------------------- */

static void test_literals_at_once(void **state)
{
    struct fixture f;
    struct addr a;
    char ip[256], err[128];

    (void)state;
    fixture_start(&f, &(struct resolve_options){0});
    assert_int_equal(lookup(&f, "10.1.2.3", 6379, ip, sizeof(ip)), RESOLVE_OK);
    assert_string_equal(ip, "10.1.2.3");
    assert_int_equal(lookup(&f, "::1", 26379, ip, sizeof(ip)), RESOLVE_OK);
    assert_string_equal(ip, "::1");
    assert_true(addr_parse(&a, "unix:/tmp/x.sock", err, sizeof(err)));
    assert_int_equal(resolve_lookup(f.r, &a, err, sizeof(err)), RESOLVE_OK);
    assert_int_equal(a.family, AF_UNIX);
    assert_int_equal(calls(), 0);
    assert_int_equal(resolve_count(f.r), 0);
    fixture_stop(&f);
}

static void test_pending_then_ok(void **state)
{
    struct fixture f;
    char ip[256];

    (void)state;
    fixture_start(&f, &(struct resolve_options){0});
    fake_set(0, "a.test", "10.0.0.1");
    assert_int_equal(lookup(&f, "a.test", 6379, ip, sizeof(ip)), RESOLVE_PENDING);
    assert_non_null(strstr(ip, "a.test"));
    assert_true(wait_news(&f, 5));
    assert_int_equal(lookup(&f, "a.test", 6380, ip, sizeof(ip)), RESOLVE_OK);
    assert_string_equal(ip, "10.0.0.1");
    /* Within the TTL: from the cache, nothing asked again. */
    assert_int_equal(lookup(&f, "a.test", 6379, ip, sizeof(ip)), RESOLVE_OK);
    assert_int_equal(calls(), 1);
    fixture_stop(&f);
}

static void test_slow_name_never_blocks(void **state)
{
    struct fixture f;
    char ip[256];
    double t0;

    (void)state;
    fixture_start(&f, &(struct resolve_options){0});
    pthread_mutex_lock(&fake_mu);
    fake_hold = true;
    pthread_mutex_unlock(&fake_mu);
    t0 = mono();
    for (int i = 0; i < 100; i++) {
        assert_int_equal(lookup(&f, "slow.test", 6379, ip, sizeof(ip)), RESOLVE_PENDING);
        assert_int_equal(lookup(&f, "n1.test", 6379, ip, sizeof(ip)), RESOLVE_PENDING);
    }
    assert_true(mono() - t0 < 0.5);
    assert_false(wait_news(&f, 0.1));
    fake_release();
    assert_true(wait_news(&f, 5));
    while (lookup(&f, "n1.test", 6379, ip, sizeof(ip)) == RESOLVE_PENDING) {
        assert_true(wait_news(&f, 5));
    }
    assert_int_equal(lookup(&f, "slow.test", 6379, ip, sizeof(ip)), RESOLVE_OK);
    assert_string_equal(ip, "10.9.9.9");
    fixture_stop(&f);
}

static void test_refreshed_after_ttl(void **state)
{
    struct fixture f;
    char ip[256];

    (void)state;
    fixture_start(&f, &(struct resolve_options){.ttl = 0.05});
    fake_set(0, "a.test", "10.0.0.1");
    lookup(&f, "a.test", 1, ip, sizeof(ip));
    assert_true(wait_news(&f, 5));
    fake_set(0, "a.test", "10.0.0.2");
    assert_int_equal(lookup(&f, "a.test", 1, ip, sizeof(ip)), RESOLVE_OK);
    assert_string_equal(ip, "10.0.0.1"); /* within the TTL */
    usleep(100000);
    /* Older than the TTL: still used while the refresh runs. */
    assert_int_equal(lookup(&f, "a.test", 1, ip, sizeof(ip)), RESOLVE_OK);
    assert_string_equal(ip, "10.0.0.1");
    assert_true(wait_news(&f, 5)); /* the address changed */
    assert_int_equal(lookup(&f, "a.test", 1, ip, sizeof(ip)), RESOLVE_OK);
    assert_string_equal(ip, "10.0.0.2");
    /* A refresh that finds the same address is no news. */
    usleep(100000);
    lookup(&f, "a.test", 1, ip, sizeof(ip));
    assert_false(wait_news(&f, 0.2));
    assert_int_equal(calls(), 3);
    fixture_stop(&f);
}

static void test_failure_retried(void **state)
{
    struct fixture f;
    char ip[256];
    int before;

    (void)state;
    fixture_start(&f, &(struct resolve_options){.retry_min = 0.05, .retry_max = 0.2});
    assert_int_equal(lookup(&f, "bad.test", 6379, ip, sizeof(ip)), RESOLVE_PENDING);
    assert_true(wait_news(&f, 5));
    assert_int_equal(lookup(&f, "bad.test", 6379, ip, sizeof(ip)), RESOLVE_FAILED);
    assert_non_null(strstr(ip, "cannot resolve 'bad.test'"));
    /* Not asked again before the delay, and the same error is no news. */
    before = calls();
    lookup(&f, "bad.test", 6379, ip, sizeof(ip));
    assert_int_equal(calls(), before);
    usleep(80000);
    assert_int_equal(lookup(&f, "bad.test", 6379, ip, sizeof(ip)), RESOLVE_FAILED);
    assert_false(wait_news(&f, 0.2));
    assert_int_equal(calls(), before + 1);
    /* The name appears: the next try finds it. */
    fake_set(0, "bad.test", "10.0.0.7");
    usleep(250000);
    lookup(&f, "bad.test", 6379, ip, sizeof(ip));
    assert_true(wait_news(&f, 5));
    assert_int_equal(lookup(&f, "bad.test", 6379, ip, sizeof(ip)), RESOLVE_OK);
    assert_string_equal(ip, "10.0.0.7");
    fixture_stop(&f);
}

static void test_stale_answer_kept_up_to_max_age(void **state)
{
    struct fixture f;
    char ip[256];

    (void)state;
    fixture_start(&f, &(struct resolve_options){.ttl = 0.05, .max_age = 0.3, .retry_min = 0.01});
    fake_set(0, "a.test", "10.0.0.1");
    lookup(&f, "a.test", 1, ip, sizeof(ip));
    assert_true(wait_news(&f, 5));
    fake_set(0, "a.test", ""); /* the name goes away */
    usleep(100000);
    assert_int_equal(lookup(&f, "a.test", 1, ip, sizeof(ip)), RESOLVE_OK);
    assert_true(wait_news(&f, 5)); /* the refresh failed */
    assert_int_equal(lookup(&f, "a.test", 1, ip, sizeof(ip)), RESOLVE_OK);
    assert_string_equal(ip, "10.0.0.1");
    usleep(300000);
    assert_int_equal(lookup(&f, "a.test", 1, ip, sizeof(ip)), RESOLVE_FAILED);
    fixture_stop(&f);
}

static void test_least_recently_used_dropped(void **state)
{
    struct fixture f;
    char ip[256], name[32];

    (void)state;
    fixture_start(&f, &(struct resolve_options){.max_names = 4});
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof(name), "n%d.test", i);
        lookup(&f, name, 1, ip, sizeof(ip));
    }
    while (calls() < 4) {
        assert_true(wait_news(&f, 5));
    }
    assert_int_equal(resolve_count(f.r), 4);
    assert_int_equal(lookup(&f, "n0.test", 1, ip, sizeof(ip)), RESOLVE_OK); /* n1 is oldest now */
    assert_int_equal(lookup(&f, "n4.test", 1, ip, sizeof(ip)), RESOLVE_PENDING);
    assert_int_equal(resolve_count(f.r), 4);
    assert_int_equal(lookup(&f, "n0.test", 1, ip, sizeof(ip)), RESOLVE_OK);
    assert_string_equal(ip, "10.0.1.0");
    assert_int_equal(lookup(&f, "n1.test", 1, ip, sizeof(ip)), RESOLVE_PENDING); /* dropped */
    assert_int_equal(resolve_count(f.r), 4);
    fixture_stop(&f);
}

/* Freed while the thread is inside a slow lookup, with names queued: the
 * thread is joined and nothing leaks. */
static void *release_later(void *arg)
{
    (void)arg;
    usleep(100000);
    fake_release();
    return NULL;
}

static void test_free_while_resolving(void **state)
{
    struct fixture f;
    char ip[256];
    pthread_t t;

    (void)state;
    fixture_start(&f, &(struct resolve_options){0});
    pthread_mutex_lock(&fake_mu);
    fake_hold = true;
    pthread_mutex_unlock(&fake_mu);
    lookup(&f, "slow.test", 1, ip, sizeof(ip));
    lookup(&f, "n1.test", 1, ip, sizeof(ip));
    lookup(&f, "n2.test", 1, ip, sizeof(ip));
    pthread_create(&t, NULL, release_later, NULL);
    fixture_stop(&f);
    pthread_join(t, NULL);
}

/* A lookup that outlasts the wait at shutdown: resolve_free returns, and the
 * thread frees everything once the lookup ends. */
static void test_free_gives_up_on_a_hung_lookup(void **state)
{
    struct fixture f;
    char ip[256];
    double t0;

    (void)state;
    fixture_start(&f, &(struct resolve_options){0});
    pthread_mutex_lock(&fake_mu);
    fake_hold = true;
    pthread_mutex_unlock(&fake_mu);
    lookup(&f, "slow.test", 1, ip, sizeof(ip));
    lookup(&f, "n1.test", 1, ip, sizeof(ip));
    while (calls() == 0) {
        usleep(1000);
    }
    t0 = mono();
    fixture_stop(&f);
    assert_true(mono() - t0 < 3);
    fake_release();
    usleep(200000); /* the thread frees the cache: a leak checker sees nothing left */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literals_at_once),
        cmocka_unit_test(test_pending_then_ok),
        cmocka_unit_test(test_slow_name_never_blocks),
        cmocka_unit_test(test_refreshed_after_ttl),
        cmocka_unit_test(test_failure_retried),
        cmocka_unit_test(test_stale_answer_kept_up_to_max_age),
        cmocka_unit_test(test_least_recently_used_dropped),
        cmocka_unit_test(test_free_while_resolving),
        cmocka_unit_test(test_free_gives_up_on_a_hung_lookup),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
