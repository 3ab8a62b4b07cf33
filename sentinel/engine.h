/*
 * engine.h - the Sentinel engine: the control plane that watches the
 * Sentinels, decides which instance is the master and which replicas are
 * healthy, and publishes topology snapshots to the workers.
 */
#ifndef SP_ENGINE_H
#define SP_ENGINE_H

#include <ev.h>
#include <stddef.h>

struct proxy;
struct engine;

/* Start watching the configured Sentinels on the control loop. NULL with err
 * set when it cannot start. */
struct engine *engine_start(struct ev_loop *loop, struct proxy *px, char *err, size_t errlen);

/* Stop and free the engine (NULL is fine). */
void engine_stop(struct engine *e);

/* Ask for a check now (any thread): a backend answered as if it were not the
 * master (READONLY, LOADING, MASTERDOWN). NULL is fine. */
void engine_kick(struct engine *e);

#endif
