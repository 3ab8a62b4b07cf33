/*
 * metrics.h - the content of the admin endpoints: Prometheus metrics, the
 * topology as JSON, readiness. Control thread only (it owns px->topo).
 */
#ifndef SP_METRICS_H
#define SP_METRICS_H

#include <stdbool.h>

struct proxy;
struct strbuf;

/* Append the Prometheus text exposition (format 0.0.4) of px to sb. */
void metrics_prometheus(struct proxy *px, struct strbuf *sb);

/* Append the topology, the Sentinels' view and the client count as JSON. */
void metrics_topology_json(struct proxy *px, struct strbuf *sb);

/* True when a master is confirmed; sb gets a line saying so, or why not. */
bool metrics_ready(struct proxy *px, struct strbuf *sb);

#endif
