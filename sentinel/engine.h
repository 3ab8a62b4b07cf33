/*
 * engine.h - the Sentinel engine: the control plane that watches the
 * Sentinels, decides which instance is the master and which replicas are
 * healthy, and publishes topology snapshots to the workers.
 */
#ifndef SP_ENGINE_H
#define SP_ENGINE_H

#include <ev.h>
#include <stddef.h>

struct config;
struct tls_ctx;
struct engine;
struct topology;
struct ctl_report;

/* Everything the engine tells the data plane, handed to it by its owner; the
 * engine knows nothing else of the proxy. Both are called on the control
 * thread. */
struct engine_receiver {
    void *ctx;
    /* A new snapshot: the receiver takes the references it keeps. */
    void (*publish)(void *ctx, struct topology *t);
    /* After every round: the Sentinel section of PROXY TOPOLOGY, and the
     * same as data; the receiver owns both (report may be NULL: no memory). */
    void (*status)(void *ctx, char *text, struct ctl_report *report);
};

/* TLS contexts for the engine's connections (NULL: plain); they must outlive
 * the engine. */
struct engine_tls {
    struct tls_ctx *sentinels; /* Sentinels (sentinel.tls) */
    struct tls_ctx *servers;   /* ROLE probes of Redis servers (backend-tls) */
};

/* Start watching cfg's Sentinels on the control loop, reporting to rx (cfg
 * and rx must outlive the engine). NULL with err set when it cannot start. */
struct engine *engine_start(struct ev_loop *loop, const struct config *cfg,
                            const struct engine_receiver *rx, const struct engine_tls *tls,
                            char *err, size_t errlen);

/* Go on with cfg in place of the configuration given so far (a reload; cfg
 * must outlive the engine or the next call): Sentinels added to or removed
 * from sentinel.addresses (a removed one is kept as if learnt),
 * credentials and timeouts for the next connections, the poll interval, and
 * replica preferences and limits from the next round, which starts now. */
void engine_reconfigure(struct engine *e, const struct config *cfg);

/* Stop and free the engine (NULL is fine). Whoever may call engine_kick
 * must be stopped first. */
void engine_stop(struct engine *e);

/* Ask for a check now (any thread): a backend answered as if it were not the
 * master (READONLY, LOADING, MASTERDOWN). NULL is fine. */
void engine_kick(struct engine *e);

#endif
