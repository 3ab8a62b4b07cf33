/*
 * admin.h - the admin HTTP endpoints (/metrics, /healthz, /readyz,
 * /topology) on admin.listen, served by the control thread's loop.
 */
#ifndef SP_ADMIN_H
#define SP_ADMIN_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

struct proxy;
struct admin;

/* Listen on px->cfg->admin and serve on loop (the control thread's). NULL
 * with err set when the address cannot be bound. */
struct admin *admin_start(struct ev_loop *loop, struct proxy *px, char *err, size_t errlen);

/* Close every admin connection and the listening socket (NULL is fine). */
void admin_stop(struct admin *a);

/* Ask a running proxy's admin endpoint (target "HOST:PORT[/PATH]", path
 * /healthz by default) and wait at most timeout_ms: true when it answers
 * 200. out gets the status line or why there was none. For container
 * health checks (--healthcheck); blocking. */
bool admin_probe(const char *target, int timeout_ms, char *out, size_t len);

#endif
