/*
 * proxy.h - process-wide state that workers read but never write on the
 * request path: the validated configuration, the command table, the workers,
 * and a few counters updated atomically.
 */
#ifndef SP_PROXY_H
#define SP_PROXY_H

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "proxy/reqscan.h"

struct config;
struct cmdtable;
struct worker;
struct topology;
struct engine;
struct tls_ctx;
struct ctl_report;
struct admin;
struct proxy_reload;
struct stat;

#define PROXY_VERSION "0.1.0"

/* TLS contexts, one per leg (NULL where the leg is plain). */
struct proxy_tls {
    struct tls_ctx *clients;    /* TLS listeners without a tls: mapping of their own */
    struct tls_ctx **listeners; /* per listener: its context (clients, its own, or NULL) */
    size_t nlisteners;
    struct tls_ctx *servers;   /* Redis servers: shared, dedicated and probe connections */
    struct tls_ctx *sentinels; /* Sentinels */
};

/* Where the configuration comes from, read again at each reload: load()
 * builds a fresh, validated one (NULL with err set); what names it in the
 * log. */
struct proxy_source {
    struct config *(*load)(void *ctx, char *err, size_t errlen);
    void *ctx;
    const char *what;
};

struct proxy {
    struct config *cfg; /* the control thread's; each worker has its own pointer (w->cfg) */
    struct proxy_source src;
    struct proxy_reload *reload; /* live reloads (proxy/reload.c) */
    int *shared_fds;             /* per listener of cfg: the unix socket every worker watches, -1 */
    struct stat *shared_files;   /* ... and what its path was once bound */
    struct proxy_tls tls;
    const struct cmdtable *cmds; /* current table (atomic pointer; old ones kept to the end) */
    struct cmdtable **cmds_old;
    size_t ncmds_old;
    struct reqscan_limits limits;
    struct worker *workers;
    int nworkers;
    int nclients;            /* connected clients, all workers (atomic) */
    uint64_t next_client_id; /* atomic */
    double started;
    struct engine *engine;         /* the Sentinel engine, NULL with a fixed backend; written by
                                      proxy_run only while no worker runs */
    pthread_mutex_t status_lock;   /* guards control_status, ctl_report */
    char *control_status;          /* Sentinel section of PROXY TOPOLOGY, from the control plane */
    struct ctl_report *ctl_report; /* ... the same as data (admin endpoints) */
    struct topology *topo;         /* the last snapshot published (control thread only) */
    struct admin *admin;           /* admin HTTP endpoints, NULL when off */
    bool ready_logged;             /* "ready" was logged: a master was confirmed once */
    double drain_started;          /* SIGTERM: when draining began (0 = not draining) */
    ev_timer drain_timer;          /* ... checks whether the workers are done */
};

/* The current command table (any thread). */
static inline const struct cmdtable *proxy_cmds(struct proxy *px)
{
    return __atomic_load_n(&px->cmds, __ATOMIC_ACQUIRE);
}

/* Make t the command table (takes ownership; the previous one stays valid
 * until exit, as workers may still hold it for a moment). */
void proxy_set_cmds(struct proxy *px, struct cmdtable *t);

/* Copy into buf why no master is confirmed, as the control plane last said
 * ("" when it said nothing, or with a fixed backend). Any thread. */
void proxy_why_no_master(struct proxy *px, char *buf, size_t len);

/* Next unique client id (any thread). */
uint64_t proxy_next_client_id(struct proxy *px);

/* Load the TLS contexts cfg asks for (a leg without TLS gets NULL). False
 * with err naming the file and OpenSSL's reason; nothing is left loaded. */
bool proxy_tls_open(const struct config *cfg, struct proxy_tls *tls, char *err, size_t errlen);

/* Free the contexts (connections made from them keep what they use). */
void proxy_tls_close(struct proxy_tls *tls);

/* Resolve cfg's listener, backend and Sentinel addresses (blocking: start-up
 * and the control thread only). False with err set. */
bool proxy_resolve(struct config *cfg, char *err, size_t errlen);

/* Raise the open file limit to what cfg's max-clients needs, or warn. */
void proxy_raise_nofile(const struct config *cfg);

/* Close a unix listener's socket and remove its file at path, unless
 * another socket has been bound there since (file: what it was once). */
void proxy_close_unix(const char *path, int fd, const struct stat *file);

/* Run the proxy with a validated configuration until SIGINT or SIGTERM:
 * listeners, workers and the control plane; src is read again at each
 * reload. Takes cfg (freed at the end, or by the reload that replaces it).
 * Returns the exit status. */
int proxy_run(struct config *cfg, const struct proxy_source *src);

/* Hand a topology snapshot to every worker (control thread). */
void proxy_publish(struct proxy *px, struct topology *t);

/* Replace the control plane's section of PROXY TOPOLOGY (takes ownership). */
void proxy_set_status(struct proxy *px, char *text);

/* px->cfg has been replaced (a reload): the control plane goes on with it
 * (control thread). */
void proxy_control_reconfigure(struct proxy *px);

/* A backend refused a command as if it were not the master (READONLY,
 * LOADING, MASTERDOWN): ask the control plane to check the topology now (any
 * thread; nothing happens with a fixed backend). */
void proxy_check_topology(struct proxy *px);

#endif
