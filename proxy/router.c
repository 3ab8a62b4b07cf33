/*
 * router.c - backend choice for requests on shared connections.
 */
#include "proxy/router.h"

#include "proxy/backend.h"
#include "proxy/client.h"
#include "proxy/worker.h"

struct backend *router_pick(struct client *c, struct req *r)
{
    struct backend *be = c->w->master;

    (void)r;
    if (be == NULL || !backend_usable(be)) {
        return NULL;
    }
    return be;
}
