/*
 * reload.c - live reload on the control thread: read, reconcile with what
 * runs, prepare everything that can fail (TLS files, new sockets, the
 * workers' messages), then commit; old configurations, TLS contexts and
 * unix sockets are retired once every worker has switched.
 *
 * A reload never waits for the workers, nor a worker for a reload: one
 * that comes before a worker took the last is merged into it
 * (worker_reconfigure), and PROXY CONFIG RELOAD's client waits among the
 * worker's waiting clients until reload_kick wakes them.
 */
#include "proxy/reload.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/config.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/strbuf.h"
#include "lib/tls.h"
#include "proxy/proxy.h"
#include "proxy/worker.h"

#define RELOAD_CHECK_EVERY 0.01 /* seconds between checks that workers have switched */

/* What the last reload replaced, kept until every worker has switched. */
struct reload_retired {
    uint64_t gen;
    struct config *cfg;
    struct proxy_tls tls; /* its listeners' TLS contexts (no server or Sentinel leg) */
    int *fds;             /* per listener of cfg: a unix socket to close now, or -1 */
    struct stat *files;   /* ... and what its path was bound */
    struct reload_retired *next;
};

/* A reload ready to commit: nothing in it is visible yet. */
struct reload_plan {
    struct config *cfg;
    struct proxy_tls tls;
    int *shared_fds; /* px->shared_fds to be */
    struct stat *shared_files;
    bool *fresh;               /* per listener: its socket(s) opened by this reload */
    struct worker_conf **msgs; /* per worker */
    struct strbuf changes;     /* "KEY: FROM -> TO" lines */
    int nchanged, nkept;
};

struct proxy_reload {
    struct proxy *px;
    struct ev_loop *loop;
    ev_async asked_async; /* a worker asked (PROXY CONFIG RELOAD) */
    ev_timer check;       /* workers switched? then retire what they used */
    uint64_t gen;         /* the last configuration handed to the workers */
    struct reload_retired *retired;
    pthread_mutex_t lock;     /* guards what follows */
    uint64_t asked, finished; /* tickets: reloads asked for, and the last one answered */
    char result[CONFIG_ERR_MAX * 3];
    bool result_ok;
    struct reload_stats stats;
};

/* ---- retiring -------------------------------------------------------------- */

static void reload_retired_free(struct reload_retired *old)
{
    for (size_t i = 0; old->fds != NULL && i < old->cfg->nlisteners; i++) {
        if (old->fds[i] >= 0) {
            proxy_close_unix(old->cfg->listeners[i].addr.host, old->fds[i], &old->files[i]);
        }
    }
    proxy_tls_close(&old->tls);
    config_free(old->cfg);
    free(old->fds);
    free(old->files);
    free(old);
}

/* Whether every worker has applied generation gen. */
static bool reload_switched(struct proxy_reload *r, uint64_t gen)
{
    for (int i = 0; i < r->px->nworkers; i++) {
        if (worker_conf_gen(&r->px->workers[i]) < gen) {
            return false;
        }
    }
    return true;
}

static void reload_check_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct proxy_reload *r = t->data;
    struct reload_retired **pp = &r->retired;

    (void)revents;
    while (*pp != NULL) {
        struct reload_retired *old = *pp;
        if (reload_switched(r, old->gen)) {
            *pp = old->next;
            reload_retired_free(old);
        } else {
            pp = &old->next;
        }
    }
    if (r->retired == NULL) {
        ev_timer_stop(loop, t);
    }
}

/* ---- preparing ------------------------------------------------------------- */

static void reload_note(void *ctx, const char *key, const char *from, const char *to, bool applied)
{
    struct reload_plan *p = ctx;

    if (applied) {
        strbuf_printf(&p->changes, "I%s: %s -> %s\n", key, from, to);
    } else {
        strbuf_printf(&p->changes, "W%s: %s -> %s needs a restart; it stays %s\n", key, from, to,
                      from);
        p->nkept++;
    }
    p->nchanged++;
}

/* The index of the listener of cfg at a's address, or -1. */
static long reload_find_listener(const struct config *cfg, const struct addr *a)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct addr *b = &cfg->listeners[i].addr;
        if (a->family == b->family && a->port == b->port && strcmp(a->host, b->host) == 0) {
            return (long)i;
        }
    }
    return -1;
}

/* Close what a plan still holds (what a commit took is no longer in it)
 * and free it. */
static void reload_plan_free(struct reload_plan *p, int nworkers)
{
    size_t n = p->cfg != NULL ? p->cfg->nlisteners : 0;

    for (int w = 0; p->msgs != NULL && w < nworkers; w++) {
        if (p->msgs[w] != NULL) {
            worker_conf_free(p->msgs[w]); /* its TCP sockets */
        }
    }
    for (size_t i = 0; p->shared_fds != NULL && i < n; i++) {
        if (p->fresh[i] && p->shared_fds[i] >= 0) {
            proxy_close_unix(p->cfg->listeners[i].addr.host, p->shared_fds[i], &p->shared_files[i]);
        }
    }
    proxy_tls_close(&p->tls);
    config_free(p->cfg);
    free(p->msgs);
    free(p->shared_fds);
    free(p->shared_files);
    free(p->fresh);
    strbuf_free(&p->changes);
}

static bool reload_alloc(struct proxy *px, struct reload_plan *p, char *err, size_t errlen)
{
    size_t n = p->cfg->nlisteners > 0 ? p->cfg->nlisteners : 1;

    p->shared_fds = malloc(n * sizeof(*p->shared_fds));
    p->shared_files = calloc(n, sizeof(*p->shared_files));
    p->fresh = calloc(n, sizeof(*p->fresh));
    p->msgs = calloc((size_t)px->nworkers, sizeof(*p->msgs));
    if (p->shared_fds == NULL || p->shared_files == NULL || p->fresh == NULL || p->msgs == NULL) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        p->shared_fds[i] = -1;
    }
    for (int w = 0; w < px->nworkers; w++) {
        struct worker_conf *m = calloc(1, sizeof(*m));
        p->msgs[w] = m;
        if (m == NULL || (m->fds = malloc(n * sizeof(*m->fds))) == NULL ||
            (m->shared = calloc(n, sizeof(*m->shared))) == NULL ||
            (m->ls = calloc(n, sizeof(*m->ls))) == NULL) {
            snprintf(err, errlen, "out of memory");
            return false;
        }
        m->cfg = p->cfg;
        for (size_t i = 0; i < n; i++) {
            m->fds[i] = -1;
        }
    }
    return true;
}

/* Sockets for the listeners that are new: one per worker for TCP
 * (SO_REUSEPORT), one shared for unix; kept listeners keep theirs. */
static bool reload_open_sockets(struct proxy *px, struct reload_plan *p, char *err, size_t errlen)
{
    const struct config *cfg = p->cfg;

    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct addr *a = &cfg->listeners[i].addr;
        long old = reload_find_listener(px->cfg, a);
        bool unix_socket = a->family == AF_UNIX;
        if (old >= 0) {
            p->shared_fds[i] = px->shared_fds[old];
            p->shared_files[i] = px->shared_files[old];
        } else if (unix_socket) {
            int fd = net_listen(a, cfg->tcp_backlog, false, err, errlen);
            if (fd < 0) {
                return false;
            }
            p->fresh[i] = true;
            p->shared_fds[i] = fd;
            if (stat(a->host, &p->shared_files[i]) != 0) {
                memset(&p->shared_files[i], 0, sizeof(p->shared_files[i]));
            }
        } else {
            p->fresh[i] = true;
        }
        for (int w = 0; w < px->nworkers; w++) {
            struct worker_conf *m = p->msgs[w];
            m->shared[i] = unix_socket;
            if (!p->fresh[i]) {
                continue;
            }
            m->fds[i] =
                unix_socket ? p->shared_fds[i] : net_listen(a, cfg->tcp_backlog, true, err, errlen);
            if (m->fds[i] < 0) {
                return false;
            }
        }
    }
    return true;
}

/* Everything that can fail, before anything changes. */
static bool reload_prepare(struct proxy *px, struct reload_plan *p, char *err, size_t errlen)
{
    char msg[CONFIG_ERR_MAX];

    p->cfg = px->src.load(px->src.ctx, msg, sizeof(msg));
    if (p->cfg == NULL) {
        snprintf(err, errlen, "%s", msg);
        return false;
    }
    if (config_reconcile(px->cfg, p->cfg, reload_note, p) < 0) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    if (!config_validate(p->cfg, msg, sizeof(msg))) {
        snprintf(err, errlen, "with the keys that need a restart as they are: %s", msg);
        return false;
    }
    return proxy_resolve(p->cfg, err, errlen) && proxy_tls_open(p->cfg, &p->tls, err, errlen) &&
           reload_alloc(px, p, err, errlen) && reload_open_sockets(px, p, err, errlen);
}

/* ---- committing ------------------------------------------------------------ */

/* The "certificates reloaded" lines, for each TLS context read again. */
static void reload_log_tls(const struct proxy *px)
{
    char a[ADDR_TEXT_MAX];

    if (px->tls.clients != NULL) {
        log_info("tls: certificates reloaded");
    }
    if (px->tls.servers != NULL) {
        log_info("backend-tls: certificates reloaded");
    }
    if (px->tls.sentinels != NULL) {
        log_info("sentinel.tls: certificates reloaded");
    }
    for (size_t i = 0; i < px->tls.nlisteners; i++) {
        if (px->tls.listeners[i] != NULL && px->tls.listeners[i] != px->tls.clients) {
            addr_format(&px->cfg->listeners[i].addr, a, sizeof(a));
            log_info("listener %s: tls: certificates reloaded", a);
        }
    }
}

static void reload_log_changes(const struct reload_plan *p)
{
    const char *line = p->changes.buf;

    while (line != NULL && *line != '\0') {
        const char *end = strchr(line, '\n');
        int len = (int)(end != NULL ? end - line : (long)strlen(line));
        if (line[0] == 'W') {
            log_warn("reload: %.*s", len - 1, line + 1);
        } else {
            log_info("reload: %.*s", len - 1, line + 1);
        }
        line = end != NULL ? end + 1 : NULL;
    }
}

/* Retire the running state and hand the plan's to everyone. */
static bool reload_commit(struct proxy_reload *r, struct reload_plan *p)
{
    struct proxy *px = r->px;
    struct config *cur = px->cfg;
    struct reload_retired *old = calloc(1, sizeof(*old));

    if (old == NULL) {
        return false;
    }
    /* The Redis and Sentinel legs keep their contexts (connections and the
     * engine point at them): they take the new files in place. */
    if (p->tls.servers != NULL && px->tls.servers != NULL) {
        tls_ctx_adopt(px->tls.servers, p->tls.servers);
        p->tls.servers = NULL;
    }
    if (p->tls.sentinels != NULL && px->tls.sentinels != NULL) {
        tls_ctx_adopt(px->tls.sentinels, p->tls.sentinels);
        p->tls.sentinels = NULL;
    }
    old->gen = ++r->gen;
    old->cfg = cur;
    old->tls.clients = px->tls.clients;
    old->tls.listeners = px->tls.listeners;
    old->tls.nlisteners = px->tls.nlisteners;
    px->tls.clients = p->tls.clients;
    px->tls.listeners = p->tls.listeners;
    px->tls.nlisteners = p->tls.nlisteners;
    memset(&p->tls, 0, sizeof(p->tls));
    /* Unix sockets no longer listened on close once no worker watches them. */
    old->fds = px->shared_fds;
    old->files = px->shared_files;
    for (size_t i = 0; i < cur->nlisteners; i++) {
        if (reload_find_listener(p->cfg, &cur->listeners[i].addr) >= 0) {
            old->fds[i] = -1;
        }
    }
    px->shared_fds = p->shared_fds;
    px->shared_files = p->shared_files;
    p->shared_fds = NULL;
    p->shared_files = NULL;
    px->cfg = p->cfg;
    p->cfg = NULL;
    for (int w = 0; w < px->nworkers; w++) {
        p->msgs[w]->gen = old->gen;
        p->msgs[w]->tls = px->tls.listeners;
        worker_reconfigure(&px->workers[w], p->msgs[w]);
        p->msgs[w] = NULL;
    }
    proxy_control_reconfigure(px);
    if (px->cfg->max_clients > cur->max_clients) {
        proxy_raise_nofile(px->cfg);
    }
    old->next = r->retired;
    r->retired = old;
    if (!ev_is_active(&r->check)) {
        ev_timer_start(r->loop, &r->check);
    }
    return true;
}

/* One reload, start to end; msg gets the account. */
static bool reload_run(struct proxy_reload *r, char *msg, size_t len)
{
    struct proxy *px = r->px;
    struct reload_plan p;
    char err[CONFIG_ERR_MAX * 2];
    bool ok;

    memset(&p, 0, sizeof(p));
    strbuf_init(&p.changes);
    if (px->drain_started > 0) {
        snprintf(msg, len, "draining: the configuration is not reloaded");
        log_warn("%s", msg);
        return false;
    }
    ok = reload_prepare(px, &p, err, sizeof(err));
    if (ok && !reload_commit(r, &p)) {
        snprintf(err, sizeof(err), "out of memory");
        ok = false;
    }
    if (!ok) {
        snprintf(msg, len, "reload failed, the running configuration stays: %s", err);
        log_error("%s", msg);
    } else {
        reload_log_changes(&p);
        reload_log_tls(px);
        snprintf(msg, len, "reloaded %s: %d change(s)%s", px->src.what, p.nchanged,
                 p.nkept > 0 ? ", some needing a restart (see the log)" : "");
        log_info("%s", msg);
        log_set_level(px->cfg->log_level); /* after: the lines above are at the old level */
    }
    reload_plan_free(&p, px->nworkers);
    return ok;
}

/* Run the reloads asked for (one run answers every request so far). */
static void reload_kick(struct proxy_reload *r)
{
    char msg[sizeof(r->result)];
    uint64_t target;
    bool ok;

    pthread_mutex_lock(&r->lock);
    target = r->asked;
    pthread_mutex_unlock(&r->lock);
    if (target == r->finished) {
        return;
    }
    ok = reload_run(r, msg, sizeof(msg));
    pthread_mutex_lock(&r->lock);
    r->finished = target;
    snprintf(r->result, sizeof(r->result), "%s", msg);
    r->result_ok = ok;
    r->stats.last_ok = ok;
    if (ok) {
        r->stats.applied++;
        r->stats.last_applied = ev_time();
    } else {
        r->stats.failed++;
    }
    pthread_mutex_unlock(&r->lock);
    for (int i = 0; i < r->px->nworkers; i++) {
        worker_wake_async(&r->px->workers[i]); /* PROXY CONFIG RELOAD waits there */
    }
}

static void reload_async_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop;
    (void)revents;
    reload_kick(a->data);
}

/* ---- the interface ---------------------------------------------------------- */

struct proxy_reload *reload_new(struct proxy *px, struct ev_loop *loop)
{
    struct proxy_reload *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        return NULL;
    }
    r->px = px;
    r->loop = loop;
    r->stats.last_ok = true;
    pthread_mutex_init(&r->lock, NULL);
    ev_async_init(&r->asked_async, reload_async_cb);
    r->asked_async.data = r;
    ev_async_start(loop, &r->asked_async);
    ev_timer_init(&r->check, reload_check_cb, RELOAD_CHECK_EVERY, RELOAD_CHECK_EVERY);
    r->check.data = r;
    return r;
}

void reload_free(struct proxy_reload *r)
{
    if (r == NULL) {
        return;
    }
    ev_async_stop(r->loop, &r->asked_async);
    ev_timer_stop(r->loop, &r->check);
    while (r->retired != NULL) {
        struct reload_retired *old = r->retired;
        r->retired = old->next;
        reload_retired_free(old);
    }
    pthread_mutex_destroy(&r->lock);
    free(r);
}

void reload_ask(struct proxy_reload *r)
{
    pthread_mutex_lock(&r->lock);
    r->asked++;
    pthread_mutex_unlock(&r->lock);
    reload_kick(r);
}

uint64_t reload_ask_async(struct proxy_reload *r)
{
    uint64_t ticket;

    pthread_mutex_lock(&r->lock);
    ticket = ++r->asked;
    pthread_mutex_unlock(&r->lock);
    ev_async_send(r->loop, &r->asked_async);
    return ticket;
}

bool reload_outcome(struct proxy_reload *r, uint64_t ticket, char *msg, size_t len, bool *ok)
{
    bool done;

    pthread_mutex_lock(&r->lock);
    done = r->finished >= ticket;
    if (done) {
        snprintf(msg, len, "%s", r->result);
        *ok = r->result_ok;
    }
    pthread_mutex_unlock(&r->lock);
    return done;
}

void reload_stats_get(struct proxy_reload *r, struct reload_stats *out)
{
    pthread_mutex_lock(&r->lock);
    *out = r->stats;
    pthread_mutex_unlock(&r->lock);
}
