/*
 * resolve.c - the host name cache and its resolver thread.
 *
 * Entries live in a hash table by name, on a least-recently-used list, and
 * on the thread's queue while they wait for it. The thread never keeps a
 * pointer to an entry while getaddrinfo runs: it copies the name, and looks
 * the entry up again for the answer (it may have been dropped meanwhile).
 * Everything is under one mutex; the loop learns of changes through an
 * ev_async.
 */
#include "lib/resolve.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"

#define RESOLVE_ERR_MAX   160
#define RESOLVE_JOIN_WAIT 1 /* seconds shutdown waits for a lookup under way */

struct resolve_entry {
    char host[ADDR_HOST_MAX];
    struct sockaddr_storage sa; /* port 0 */
    socklen_t salen;
    int family;
    bool have;       /* an answer is held (sa) */
    bool failed;     /* the last attempt failed (err) */
    bool queued;     /* on the thread's queue */
    bool running;    /* the thread is resolving it */
    double ok_at;    /* when the answer held came */
    double next_try; /* failed: not asked again before this */
    double backoff;
    char err[RESOLVE_ERR_MAX];
    struct resolve_entry *hnext;               /* hash chain */
    struct resolve_entry *lru_prev, *lru_next; /* most recent first */
    struct resolve_entry *q_prev, *q_next;
};

struct resolve {
    struct ev_loop *loop;
    struct resolve_options o;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stop;
    bool exited;   /* the thread is done with everything */
    bool orphaned; /* ... and then frees everything (resolve_free gave up waiting) */
    bool changed;  /* an answer changed since the loop last looked */
    ev_async async;
    struct resolve_entry **buckets;
    size_t nbuckets, count;
    struct resolve_entry *lru_head, *lru_tail;
    struct resolve_entry *q_head, *q_tail;
    struct resolve_waiter *waiters;
};

static double resolve_clock(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t resolve_hash(const struct resolve *r, const char *host)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */

    for (const unsigned char *p = (const unsigned char *)host; *p != '\0'; p++) {
        h = (h ^ *p) * 1099511628211ull;
    }
    return (size_t)(h % r->nbuckets);
}

static struct resolve_entry *resolve_find(const struct resolve *r, const char *host)
{
    for (struct resolve_entry *e = r->buckets[resolve_hash(r, host)]; e != NULL; e = e->hnext) {
        if (strcmp(e->host, host) == 0) {
            return e;
        }
    }
    return NULL;
}

/* ---- lists (under the mutex) ----------------------------------------------- */

static void resolve_lru_unlink(struct resolve *r, struct resolve_entry *e)
{
    if (e->lru_prev != NULL) {
        e->lru_prev->lru_next = e->lru_next;
    } else {
        r->lru_head = e->lru_next;
    }
    if (e->lru_next != NULL) {
        e->lru_next->lru_prev = e->lru_prev;
    } else {
        r->lru_tail = e->lru_prev;
    }
    e->lru_prev = e->lru_next = NULL;
}

static void resolve_lru_front(struct resolve *r, struct resolve_entry *e)
{
    e->lru_next = r->lru_head;
    e->lru_prev = NULL;
    if (r->lru_head != NULL) {
        r->lru_head->lru_prev = e;
    } else {
        r->lru_tail = e;
    }
    r->lru_head = e;
}

static void resolve_enqueue(struct resolve *r, struct resolve_entry *e)
{
    if (e->queued || e->running) {
        return;
    }
    e->queued = true;
    e->q_next = NULL;
    e->q_prev = r->q_tail;
    if (r->q_tail != NULL) {
        r->q_tail->q_next = e;
    } else {
        r->q_head = e;
    }
    r->q_tail = e;
    pthread_cond_signal(&r->cond);
}

static void resolve_dequeue(struct resolve *r, struct resolve_entry *e)
{
    if (!e->queued) {
        return;
    }
    if (e->q_prev != NULL) {
        e->q_prev->q_next = e->q_next;
    } else {
        r->q_head = e->q_next;
    }
    if (e->q_next != NULL) {
        e->q_next->q_prev = e->q_prev;
    } else {
        r->q_tail = e->q_prev;
    }
    e->q_prev = e->q_next = NULL;
    e->queued = false;
}

static void resolve_drop(struct resolve *r, struct resolve_entry *e)
{
    struct resolve_entry **pp = &r->buckets[resolve_hash(r, e->host)];

    while (*pp != e) {
        pp = &(*pp)->hnext;
    }
    *pp = e->hnext;
    resolve_lru_unlink(r, e);
    resolve_dequeue(r, e);
    r->count--;
    free(e);
}

/* A new entry for host, the least recently used one dropped when full. */
static struct resolve_entry *resolve_add(struct resolve *r, const char *host)
{
    struct resolve_entry *e;
    size_t b;

    if (r->count >= r->o.max_names && r->lru_tail != NULL) {
        resolve_drop(r, r->lru_tail);
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return NULL;
    }
    snprintf(e->host, sizeof(e->host), "%s", host);
    b = resolve_hash(r, host);
    e->hnext = r->buckets[b];
    r->buckets[b] = e;
    resolve_lru_front(r, e);
    r->count++;
    return e;
}

/* ---- the thread ---------------------------------------------------------------- */

static void resolve_format_ip(const struct sockaddr_storage *sa, char *buf, size_t len)
{
    if (getnameinfo((const struct sockaddr *)sa, sizeof(*sa), buf, (socklen_t)len, NULL, 0,
                    NI_NUMERICHOST) != 0) {
        snprintf(buf, len, "?");
    }
}

/* Record one answer (under the mutex): true when what lookups return
 * changed. Logged once per change. */
static bool resolve_record(struct resolve *r, struct resolve_entry *e, int rc,
                           const struct addrinfo *res, double now)
{
    char ip[64], was[64];

    if (rc == 0 && res != NULL && res->ai_addrlen <= sizeof(e->sa)) {
        bool same = e->have && e->salen == res->ai_addrlen &&
                    memcmp(&e->sa, res->ai_addr, res->ai_addrlen) == 0;
        bool first = !e->have;
        bool back = e->failed;
        if (!same && e->have) {
            resolve_format_ip(&e->sa, was, sizeof(was));
        }
        memset(&e->sa, 0, sizeof(e->sa));
        memcpy(&e->sa, res->ai_addr, res->ai_addrlen);
        e->salen = res->ai_addrlen;
        e->family = res->ai_family;
        e->have = true;
        e->failed = false;
        e->ok_at = now;
        e->next_try = 0;
        e->backoff = 0;
        e->err[0] = '\0';
        resolve_format_ip(&e->sa, ip, sizeof(ip));
        if (!same && !first) {
            log_info("host name '%s' now resolves to %s (was %s)", e->host, ip, was);
        } else if (back) {
            log_info("host name '%s' resolves %s, to %s", e->host, first ? "now" : "again", ip);
        }
        return !same || back;
    }
    char err[RESOLVE_ERR_MAX];
    snprintf(err, sizeof(err), "cannot resolve '%.100s': %s", e->host,
             rc == 0 ? "no address" : gai_strerror(rc));
    e->backoff = e->backoff > 0 ? e->backoff * 2 : r->o.retry_min;
    if (e->backoff > r->o.retry_max) {
        e->backoff = r->o.retry_max;
    }
    e->next_try = now + e->backoff;
    if (e->failed && strcmp(err, e->err) == 0) {
        return false;
    }
    e->failed = true;
    snprintf(e->err, sizeof(e->err), "%s", err);
    if (e->have) {
        resolve_format_ip(&e->sa, ip, sizeof(ip));
        log_warn("%s; using its last address %s meanwhile", err, ip);
    } else {
        log_warn("%s", err);
    }
    return true;
}

static void resolve_release(struct resolve *r)
{
    while (r->lru_head != NULL) {
        resolve_drop(r, r->lru_head);
    }
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->mu);
    free(r->buckets);
    free(r);
}

static void *resolve_main(void *arg)
{
    struct resolve *r = arg;
    char host[ADDR_HOST_MAX];
    bool orphaned;

    log_set_thread_name("resolver");
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        struct resolve_entry *e = r->q_head;
        struct addrinfo hints, *res = NULL;
        bool changed;
        int rc;

        if (e == NULL) {
            pthread_cond_wait(&r->cond, &r->mu);
            continue;
        }
        resolve_dequeue(r, e);
        e->running = true;
        snprintf(host, sizeof(host), "%s", e->host);
        pthread_mutex_unlock(&r->mu);

        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        rc = r->o.gai(host, NULL, &hints, &res);

        pthread_mutex_lock(&r->mu);
        e = resolve_find(r, host); /* it may have been dropped meanwhile */
        changed = false;
        if (e != NULL) {
            e->running = false;
            changed = resolve_record(r, e, rc, res, resolve_clock());
        }
        if (res != NULL) {
            freeaddrinfo(res);
        }
        if (changed && !r->stop) { /* once stopped, the loop may be gone */
            r->changed = true;
            ev_async_send(r->loop, &r->async);
        }
    }
    r->exited = true;
    orphaned = r->orphaned;
    pthread_mutex_unlock(&r->mu);
    if (orphaned) {
        resolve_release(r);
    }
    return NULL;
}

/* ---- the loop's side ------------------------------------------------------------ */

static void resolve_async_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    struct resolve *r = a->data;
    struct resolve_waiter *todo, *w;
    bool changed;

    (void)loop;
    (void)revents;
    pthread_mutex_lock(&r->mu);
    changed = r->changed;
    r->changed = false;
    pthread_mutex_unlock(&r->mu);
    if (!changed) {
        return;
    }
    /* Each watcher is moved back onto the list before it is called: it may
     * remove itself or others, or add new ones (called from the next change). */
    todo = r->waiters;
    r->waiters = NULL;
    if (todo != NULL) {
        todo->pprev = &todo;
    }
    while ((w = todo) != NULL) {
        todo = w->next;
        if (todo != NULL) {
            todo->pprev = &todo;
        }
        w->next = r->waiters;
        if (w->next != NULL) {
            w->next->pprev = &w->next;
        }
        r->waiters = w;
        w->pprev = &r->waiters;
        w->fn(w->arg);
    }
}

struct resolve *resolve_new(struct ev_loop *loop, const struct resolve_options *o, char *err,
                            size_t errlen)
{
    struct resolve *r = calloc(1, sizeof(*r));
    int rc;

    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->loop = loop;
    if (o != NULL) {
        r->o = *o;
    }
    r->o.ttl = r->o.ttl > 0 ? r->o.ttl : 5.0;
    r->o.max_age = r->o.max_age > 0 ? r->o.max_age : 60.0;
    r->o.retry_min = r->o.retry_min > 0 ? r->o.retry_min : 1.0;
    r->o.retry_max = r->o.retry_max > 0 ? r->o.retry_max : 30.0;
    r->o.max_names = r->o.max_names > 0 ? r->o.max_names : 1024;
    r->o.gai = r->o.gai != NULL ? r->o.gai : getaddrinfo;
    r->nbuckets = r->o.max_names;
    r->buckets = calloc(r->nbuckets, sizeof(*r->buckets));
    if (r->buckets == NULL) {
        free(r);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cond, NULL);
    ev_async_init(&r->async, resolve_async_cb);
    r->async.data = r;
    ev_async_start(loop, &r->async);
    rc = pthread_create(&r->thread, NULL, resolve_main, r);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the resolver thread: %s", strerror(rc));
        ev_async_stop(loop, &r->async);
        pthread_cond_destroy(&r->cond);
        pthread_mutex_destroy(&r->mu);
        free(r->buckets);
        free(r);
        return NULL;
    }
    return r;
}

void resolve_free(struct resolve *r)
{
    struct timespec until;

    if (r == NULL) {
        return;
    }
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->mu);
    ev_async_stop(r->loop, &r->async);
    /* A lookup under way ends within the system resolver's own timeout
     * (resolv.conf), which may be long: shutdown waits for it a second at
     * most, then leaves the thread to free everything when it returns. */
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += RESOLVE_JOIN_WAIT;
    if (pthread_timedjoin_np(r->thread, NULL, &until) == 0) {
        resolve_release(r);
        return;
    }
    pthread_mutex_lock(&r->mu);
    if (!r->exited) {
        pthread_t t = r->thread; /* r is the thread's from the unlock on */
        r->orphaned = true;
        pthread_mutex_unlock(&r->mu);
        pthread_detach(t);
        return;
    }
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    resolve_release(r);
}

static void resolve_fill(struct addr *a, const struct sockaddr_storage *sa, socklen_t salen,
                         int family)
{
    memset(&a->sa, 0, sizeof(a->sa));
    memcpy(&a->sa, sa, salen);
    a->salen = salen;
    a->family = family;
    if (family == AF_INET) {
        ((struct sockaddr_in *)&a->sa)->sin_port = htons((uint16_t)a->port);
    } else if (family == AF_INET6) {
        ((struct sockaddr_in6 *)&a->sa)->sin6_port = htons((uint16_t)a->port);
    }
}

bool resolve_numeric(struct addr *a)
{
    struct addrinfo hints, *res = NULL;
    struct sockaddr_storage ss;
    bool ok;

    if (a->family == AF_UNIX) {
        return true;
    }
    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, a->host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        ss.ss_family = AF_INET;
        resolve_fill(a, &ss, sizeof(struct sockaddr_in), AF_INET);
        return true;
    }
    if (inet_pton(AF_INET6, a->host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
        ss.ss_family = AF_INET6;
        resolve_fill(a, &ss, sizeof(struct sockaddr_in6), AF_INET6);
        return true;
    }
    if (strchr(a->host, ':') == NULL) {
        return false; /* a name */
    }
    /* A scoped IPv6 literal (fe80::1%eth0). */
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET6;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST; /* never asks anyone */
    if (getaddrinfo(a->host, NULL, &hints, &res) != 0 || res == NULL) {
        return false;
    }
    ok = res->ai_addrlen <= sizeof(ss);
    if (ok) {
        memcpy(&ss, res->ai_addr, res->ai_addrlen);
        resolve_fill(a, &ss, res->ai_addrlen, res->ai_family);
    }
    freeaddrinfo(res);
    return ok;
}

enum resolve_status resolve_lookup(struct resolve *r, struct addr *a, char *err, size_t errlen)
{
    enum resolve_status st;
    struct resolve_entry *e;
    double now;

    if (resolve_numeric(a)) {
        return RESOLVE_OK;
    }
    now = resolve_clock();
    pthread_mutex_lock(&r->mu);
    e = resolve_find(r, a->host);
    if (e == NULL) {
        e = resolve_add(r, a->host);
        if (e == NULL) {
            pthread_mutex_unlock(&r->mu);
            snprintf(err, errlen, "cannot resolve '%.100s': out of memory", a->host);
            return RESOLVE_FAILED;
        }
        resolve_enqueue(r, e);
        pthread_mutex_unlock(&r->mu);
        snprintf(err, errlen, "resolving '%.100s'", a->host);
        return RESOLVE_PENDING;
    }
    resolve_lru_unlink(r, e);
    resolve_lru_front(r, e);
    if (e->have && now - e->ok_at < r->o.max_age) {
        if (now - e->ok_at >= r->o.ttl && now >= e->next_try) {
            resolve_enqueue(r, e); /* refreshed in the background; this one is used meanwhile */
        }
        resolve_fill(a, &e->sa, e->salen, e->family);
        st = RESOLVE_OK;
    } else if (e->failed) {
        if (now >= e->next_try) {
            resolve_enqueue(r, e);
        }
        snprintf(err, errlen, "%s", e->err);
        st = RESOLVE_FAILED;
    } else {
        resolve_enqueue(r, e); /* an answer too old, its refresh not back yet */
        snprintf(err, errlen, "resolving '%.100s'", a->host);
        st = RESOLVE_PENDING;
    }
    pthread_mutex_unlock(&r->mu);
    return st;
}

void resolve_watch(struct resolve *r, struct resolve_waiter *w, resolve_notify_fn *fn, void *arg)
{
    resolve_unwatch(w);
    w->fn = fn;
    w->arg = arg;
    w->next = r->waiters;
    if (w->next != NULL) {
        w->next->pprev = &w->next;
    }
    r->waiters = w;
    w->pprev = &r->waiters;
}

void resolve_unwatch(struct resolve_waiter *w)
{
    if (w->pprev == NULL) {
        return;
    }
    *w->pprev = w->next;
    if (w->next != NULL) {
        w->next->pprev = w->pprev;
    }
    w->next = NULL;
    w->pprev = NULL;
}

size_t resolve_count(struct resolve *r)
{
    size_t n;

    pthread_mutex_lock(&r->mu);
    n = r->count;
    pthread_mutex_unlock(&r->mu);
    return n;
}
