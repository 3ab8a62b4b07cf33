/*
 * proxy.c - process start-up and shutdown: open file limit, listeners,
 * workers, the control plane (Sentinel engine or a fixed backend), signals.
 */
#include "proxy/proxy.h"

#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/config.h"
#include "lib/ctlreport.h"
#include "lib/log.h"
#include "lib/tls.h"
#include "lib/topology.h"
#include "proxy/admin.h"
#include "proxy/commands.h"
#include "proxy/listener.h"
#include "proxy/reload.h"
#include "proxy/worker.h"
#include "sentinel/engine.h"

uint64_t proxy_next_client_id(struct proxy *px)
{
    return __atomic_add_fetch(&px->next_client_id, 1, __ATOMIC_RELAXED);
}

void proxy_why_no_master(struct proxy *px, char *buf, size_t len)
{
    pthread_mutex_lock(&px->status_lock);
    snprintf(buf, len, "%s", px->ctl_report != NULL ? px->ctl_report->why : "");
    pthread_mutex_unlock(&px->status_lock);
}

void proxy_publish(struct proxy *px, struct topology *t)
{
    if (t->has_master && !px->ready_logged && px->cfg->has_sentinel) {
        char m[ADDR_TEXT_MAX];
        addr_format(&t->master, m, sizeof(m));
        log_info("ready: master %s (epoch %llu) confirmed", m, (unsigned long long)t->epoch);
        px->ready_logged = true;
    }
    topology_ref(t);
    topology_unref(px->topo);
    px->topo = t;
    for (int i = 0; i < px->nworkers; i++) {
        worker_publish(&px->workers[i], t);
    }
}

void proxy_control_reconfigure(struct proxy *px)
{
    if (px->engine != NULL) {
        engine_reconfigure(px->engine, px->cfg);
    }
}

void proxy_check_topology(struct proxy *px)
{
    engine_kick(px->engine);
}

/* The engine's receiver: the control plane reaches the workers only here. */
static void proxy_engine_publish(void *ctx, struct topology *t)
{
    proxy_publish(ctx, t);
}

static void proxy_engine_status(void *ctx, char *text, struct ctl_report *report)
{
    struct proxy *px = ctx;
    struct ctl_report *old;

    proxy_set_status(px, text);
    pthread_mutex_lock(&px->status_lock);
    old = px->ctl_report;
    px->ctl_report = report;
    pthread_mutex_unlock(&px->status_lock);
    free(old);
}

void proxy_set_cmds(struct proxy *px, struct cmdtable *t)
{
    struct cmdtable **old;

    pthread_mutex_lock(&px->status_lock);
    if (cmdtable_same(__atomic_load_n(&px->cmds, __ATOMIC_ACQUIRE), t)) {
        /* The new master's is the one in use (the same version): a table
         * replaced is kept until exit, since requests may still point into
         * it, so each failover would otherwise cost one more. */
        pthread_mutex_unlock(&px->status_lock);
        cmdtable_free(t);
        return;
    }
    old = realloc(px->cmds_old, (px->ncmds_old + 1) * sizeof(*old));
    if (old == NULL) {
        pthread_mutex_unlock(&px->status_lock);
        cmdtable_free(t);
        return;
    }
    px->cmds_old = old;
    px->cmds_old[px->ncmds_old++] = t;
    __atomic_store_n(&px->cmds, t, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&px->status_lock);
}

void proxy_set_status(struct proxy *px, char *text)
{
    char *old;

    pthread_mutex_lock(&px->status_lock);
    old = px->control_status;
    px->control_status = text;
    pthread_mutex_unlock(&px->status_lock);
    free(old);
}

/* Each client needs a descriptor, and so do backend connections. */
void proxy_raise_nofile(const struct config *cfg)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)cfg->max_clients * 2 + 1024;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want) {
        return;
    }
    rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want) {
        /* Each client may need a server connection of its own besides its
         * socket, and 1024 are kept for the rest. */
        unsigned long long fit = rl.rlim_cur > 1024 ? (rl.rlim_cur - 1024) / 2 : 0;
        log_warn("open file limit is %llu, and max-clients %d needs %llu (2 per client + 1024): "
                 "past about %llu clients, accepting may fail; raise the limit (ulimit -n, "
                 "LimitNOFILE=) or lower max-clients",
                 (unsigned long long)rl.rlim_cur, cfg->max_clients, (unsigned long long)want, fit);
    }
}

bool proxy_resolve(struct config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        if (!addr_resolve(&cfg->listeners[i].addr, err, errlen)) {
            return false;
        }
    }
    for (size_t i = 0; i < cfg->nsentinels; i++) {
        if (!addr_resolve(&cfg->sentinels[i], err, errlen)) {
            return false;
        }
    }
    if (cfg->has_backend && !addr_resolve(&cfg->backend, err, errlen)) {
        return false;
    }
    return true;
}

/* ---- TLS contexts -------------------------------------------------------- */

static const struct {
    size_t ctx;      /* offset in struct proxy_tls */
    size_t settings; /* offset in struct config */
    bool server;
    const char *leg;
} proxy_tls_legs[] = {
    {offsetof(struct proxy_tls, clients), offsetof(struct config, tls), true, "tls"},
    {offsetof(struct proxy_tls, servers), offsetof(struct config, backend_tls), false,
     "backend-tls"},
    {offsetof(struct proxy_tls, sentinels), offsetof(struct config, sentinel_tls), false,
     "sentinel.tls"},
};

#define PROXY_TLS_LEGS (sizeof(proxy_tls_legs) / sizeof(proxy_tls_legs[0]))

static bool proxy_tls_wanted(const struct config *cfg, size_t leg)
{
    if (leg == 0) {
        for (size_t i = 0; i < cfg->nlisteners; i++) {
            if (cfg->listeners[i].tls && cfg->listeners[i].tls_own == NULL) {
                return true;
            }
        }
        return false;
    }
    return ((const struct tls_settings *)((const char *)cfg + proxy_tls_legs[leg].settings))
        ->enabled;
}

static struct tls_ctx **proxy_tls_slot(struct proxy_tls *tls, size_t leg)
{
    return (struct tls_ctx **)((char *)tls + proxy_tls_legs[leg].ctx);
}

static const struct tls_settings *proxy_tls_settings(const struct config *cfg, size_t leg)
{
    return (const struct tls_settings *)((const char *)cfg + proxy_tls_legs[leg].settings);
}

static void proxy_listener_name(const struct config *cfg, size_t i, char *buf, size_t len)
{
    char text[ADDR_TEXT_MAX];

    addr_format(&cfg->listeners[i].addr, text, sizeof(text));
    snprintf(buf, len, "listener %s: tls", text);
}

/* Listener i's context: the shared one, or its own for a tls: mapping. */
static bool proxy_tls_open_listeners(const struct config *cfg, struct proxy_tls *tls, char *err,
                                     size_t errlen)
{
    char msg[CONFIG_ERR_MAX], name[ADDR_TEXT_MAX + 32];

    tls->listeners = calloc(cfg->nlisteners > 0 ? cfg->nlisteners : 1, sizeof(*tls->listeners));
    if (tls->listeners == NULL) {
        snprintf(err, errlen, "out of memory");
        proxy_tls_close(tls);
        return false;
    }
    tls->nlisteners = cfg->nlisteners;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct config_listener *l = &cfg->listeners[i];
        if (!l->tls) {
            continue;
        }
        if (l->tls_own == NULL) {
            tls->listeners[i] = tls->clients;
            continue;
        }
        tls->listeners[i] = tls_ctx_new(l->tls_own, true, msg, sizeof(msg));
        if (tls->listeners[i] == NULL) {
            proxy_listener_name(cfg, i, name, sizeof(name));
            snprintf(err, errlen, "%s: %s", name, msg);
            proxy_tls_close(tls);
            return false;
        }
    }
    return true;
}

bool proxy_tls_open(const struct config *cfg, struct proxy_tls *tls, char *err, size_t errlen)
{
    char msg[CONFIG_ERR_MAX];

    memset(tls, 0, sizeof(*tls));
    for (size_t i = 0; i < PROXY_TLS_LEGS; i++) {
        struct tls_ctx **slot = proxy_tls_slot(tls, i);
        if (!proxy_tls_wanted(cfg, i)) {
            continue;
        }
        *slot = tls_ctx_new(proxy_tls_settings(cfg, i), proxy_tls_legs[i].server, msg, sizeof(msg));
        if (*slot == NULL) {
            snprintf(err, errlen, "%s: %s", proxy_tls_legs[i].leg, msg);
            proxy_tls_close(tls);
            return false;
        }
    }
    return proxy_tls_open_listeners(cfg, tls, err, errlen);
}

void proxy_tls_close(struct proxy_tls *tls)
{
    for (size_t i = 0; i < tls->nlisteners; i++) {
        if (tls->listeners[i] != tls->clients) {
            tls_ctx_free(tls->listeners[i]);
        }
    }
    free(tls->listeners);
    tls->listeners = NULL;
    tls->nlisteners = 0;
    for (size_t i = 0; i < PROXY_TLS_LEGS; i++) {
        struct tls_ctx **slot = proxy_tls_slot(tls, i);
        tls_ctx_free(*slot);
        *slot = NULL;
    }
}

/* Draining: stop once every worker has no client left, or at
 * shutdown-timeout. */
static void proxy_drain_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct proxy *px = t->data;
    double waited = ev_now(loop) - px->drain_started;
    bool done = true;

    (void)revents;
    for (int i = 0; i < px->nworkers; i++) {
        done = done && worker_drained(&px->workers[i]);
    }
    if (done) {
        log_info("drained in %.0f ms: no client left", waited * 1000);
        ev_break(loop, EVBREAK_ALL);
    } else if (waited * 1000 >= (double)px->cfg->shutdown_timeout_ms) {
        log_info("shutdown-timeout (%.1fs) reached: closing %d client(s) still waiting for replies",
                 (double)px->cfg->shutdown_timeout_ms / 1000,
                 __atomic_load_n(&px->nclients, __ATOMIC_RELAXED));
        ev_break(loop, EVBREAK_ALL);
    }
}

/* SIGHUP: read the configuration again and apply it (proxy/reload.c). */
static void proxy_hup_cb(struct ev_loop *loop, ev_signal *sig, int revents)
{
    (void)loop;
    (void)revents;
    log_info("received SIGHUP: reloading the configuration");
    reload_ask(((struct proxy *)sig->data)->reload);
}

/* SIGTERM or SIGINT: drain (stop accepting, let requests in flight finish
 * within shutdown-timeout), then stop; a second one stops at once. */
static void proxy_signal_cb(struct ev_loop *loop, ev_signal *sig, int revents)
{
    struct proxy *px = sig->data;
    const char *name = sig->signum == SIGINT ? "SIGINT" : "SIGTERM";

    (void)revents;
    if (px->drain_started > 0 || px->cfg->shutdown_timeout_ms == 0 || px->nworkers == 0) {
        log_info("received %s, shutting down%s", name, px->drain_started > 0 ? " now" : "");
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    px->drain_started = ev_now(loop);
    log_info("received %s: draining (no new clients; idle ones closed; waiting up to %.1fs for "
             "requests in flight; send it again to stop at once)",
             name, (double)px->cfg->shutdown_timeout_ms / 1000);
    for (int i = 0; i < px->nworkers; i++) {
        worker_drain(&px->workers[i]);
    }
    ev_timer_init(&px->drain_timer, proxy_drain_cb, 0.05, 0.05);
    px->drain_timer.data = px;
    ev_timer_start(loop, &px->drain_timer);
}

static int proxy_workers_wanted(const struct config *cfg)
{
    long n;

    if (cfg->workers > 0) {
        return cfg->workers;
    }
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void proxy_log_start(const struct proxy *px)
{
    const struct config *cfg = px->cfg;
    char text[ADDR_TEXT_MAX];

    for (size_t i = 0; i < cfg->nlisteners; i++) {
        addr_format(&cfg->listeners[i].addr, text, sizeof(text));
        log_info("listening on %s", text);
    }
    if (cfg->has_backend) {
        addr_format(&cfg->backend, text, sizeof(text));
        log_info("sentinel-proxy %s ready: %d worker(s), fixed master %s", PROXY_VERSION,
                 px->nworkers, text);
    } else {
        log_info("sentinel-proxy %s started: %d worker(s), asking %zu Sentinel(s) for master "
                 "'%s'%s",
                 PROXY_VERSION, px->nworkers, cfg->nsentinels, cfg->master_name,
                 px->ready_logged ? "" : "; requests wait until it is confirmed");
    }
}

void proxy_close_unix(const char *path, int fd, const struct stat *file)
{
    struct stat there;

    if (stat(path, &there) == 0 && there.st_ino == file->st_ino && there.st_dev == file->st_dev) {
        unlink(path);
    }
    close(fd);
}

/* Close the shared (unix) sockets and remove their files, unless a newer
 * process has put its own socket at the path since (rolling restart). */
static void proxy_close_shared(struct proxy *px)
{
    for (size_t i = 0; px->shared_fds != NULL && i < px->cfg->nlisteners; i++) {
        if (px->shared_fds[i] >= 0) {
            proxy_close_unix(px->cfg->listeners[i].addr.host, px->shared_fds[i],
                             &px->shared_files[i]);
        }
    }
}

int proxy_run(struct config *cfg, const struct proxy_source *src)
{
    struct proxy px;
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    ev_signal sigint, sigterm, sighup;
    char err[CONFIG_ERR_MAX];
    int started = 0, rc = 1;

    memset(&px, 0, sizeof(px));
    pthread_mutex_init(&px.status_lock, NULL);
    px.cfg = cfg;
    px.src = *src;
    px.cmds = cmdtable_builtin();
    px.limits.max_bulk_len = cfg->proto_max_bulk_len;
    px.limits.max_inline_len = 64 * 1024;
    px.started = ev_time();
    px.nworkers = proxy_workers_wanted(cfg);
    signal(SIGPIPE, SIG_IGN);
    proxy_raise_nofile(cfg);
    if (loop == NULL || !proxy_resolve(cfg, err, sizeof(err))) {
        log_error("%s", loop == NULL ? "cannot create the event loop" : err);
        config_free(cfg);
        return 1;
    }
    /* Before any listener opens: a client may connect, and a SIGTERM come,
     * before this thread is scheduled again; it must be a clean shutdown
     * (handled once ev_run starts), not the default action. */
    ev_signal_init(&sigint, proxy_signal_cb, SIGINT);
    sigint.data = &px;
    ev_signal_start(loop, &sigint);
    ev_signal_init(&sigterm, proxy_signal_cb, SIGTERM);
    sigterm.data = &px;
    ev_signal_start(loop, &sigterm);
    ev_signal_init(&sighup, proxy_hup_cb, SIGHUP);
    sighup.data = &px;
    ev_signal_start(loop, &sighup);
    px.shared_fds = calloc(cfg->nlisteners, sizeof(*px.shared_fds));
    px.shared_files = calloc(cfg->nlisteners, sizeof(*px.shared_files));
    px.workers = calloc((size_t)px.nworkers, sizeof(*px.workers));
    px.reload = reload_new(&px, loop);
    if (px.shared_fds == NULL || px.shared_files == NULL || px.workers == NULL ||
        px.reload == NULL) {
        log_error("out of memory");
        goto done;
    }
    if (!proxy_tls_open(cfg, &px.tls, err, sizeof(err))) {
        log_error("%s", err);
        goto done;
    }
    if (!listener_open_shared(cfg, px.shared_fds, err, sizeof(err))) {
        free(px.shared_fds);
        px.shared_fds = NULL;
        log_error("%s", err);
        goto done;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        if (px.shared_fds[i] >= 0 && stat(cfg->listeners[i].addr.host, &px.shared_files[i]) != 0) {
            memset(&px.shared_files[i], 0, sizeof(px.shared_files[i]));
        }
    }
    for (; started < px.nworkers; started++) {
        struct worker *w = &px.workers[started];
        if (!worker_init(w, &px, started, err, sizeof(err)) ||
            !worker_listen(w, px.shared_fds, err, sizeof(err))) {
            log_error("%s", err);
            if (w->loop != NULL) {
                listener_stop(w->listeners, w->nlisteners);
                ev_loop_destroy(w->loop);
            }
            goto stop;
        }
    }
    if (cfg->has_backend) {
        struct topology *t = topology_new();
        t->has_master = true;
        t->master = cfg->backend;
        t->version = 1;
        proxy_publish(&px, t);
        topology_unref(t);
    } else {
        struct engine_receiver rx = {&px, proxy_engine_publish, proxy_engine_status};
        /* Set before any worker runs, cleared after the last one stopped:
         * workers read it without a lock. */
        struct engine_tls tls = {px.tls.sentinels, px.tls.servers};
        px.engine = engine_start(loop, cfg, &rx, &tls, err, sizeof(err));
        if (px.engine == NULL) {
            log_error("%s", err);
            goto stop;
        }
    }
    for (int i = 0; i < px.nworkers; i++) {
        if (!worker_start(&px.workers[i])) {
            log_error("cannot start worker thread %d", i);
            goto stop;
        }
    }
    if (cfg->has_admin && (px.admin = admin_start(loop, &px, err, sizeof(err))) == NULL) {
        log_error("%s", err);
        goto stop;
    }
    proxy_log_start(&px);
    ev_run(loop, 0);
    ev_timer_stop(loop, &px.drain_timer);
    rc = 0;
stop:
    /* Workers first: until they have stopped, any of them may kick the
     * engine, and the engine's snapshots go to them. */
    for (int i = 0; i < started; i++) {
        worker_stop(&px.workers[i]);
    }
    for (int i = 0; i < started; i++) {
        worker_free(&px.workers[i]);
    }
    admin_stop(px.admin);
    engine_stop(px.engine);
    px.engine = NULL;
    proxy_close_shared(&px);
done:
    reload_free(px.reload); /* after the workers: what they used last */
    proxy_tls_close(&px.tls);
    config_free(px.cfg);
    free(px.shared_fds);
    free(px.shared_files);
    free(px.workers);
    free(px.control_status);
    free(px.ctl_report);
    topology_unref(px.topo);
    for (size_t i = 0; i < px.ncmds_old; i++) {
        cmdtable_free(px.cmds_old[i]);
    }
    free(px.cmds_old);
    pthread_mutex_destroy(&px.status_lock);
    return rc;
}
