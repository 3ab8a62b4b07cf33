/*
 * topology.c - reference-counted topology snapshots.
 */
#include "lib/topology.h"

#include <stdlib.h>
#include <string.h>

struct topology *topology_new(void)
{
    struct topology *t = calloc(1, sizeof(*t));

    if (t == NULL) {
        abort();
    }
    t->refs = 1;
    return t;
}

struct topology *topology_clone(const struct topology *src)
{
    struct topology *t = topology_new();

    *t = *src;
    t->refs = 1;
    t->replicas = NULL;
    t->nreplicas = 0;
    for (size_t i = 0; i < src->nreplicas; i++) {
        if (!topology_add_replica(t, &src->replicas[i])) {
            abort();
        }
    }
    return t;
}

bool topology_add_replica(struct topology *t, const struct topology_replica *r)
{
    struct topology_replica *n = realloc(t->replicas, (t->nreplicas + 1) * sizeof(*n));

    if (n == NULL) {
        return false;
    }
    t->replicas = n;
    t->replicas[t->nreplicas++] = *r;
    return true;
}

void topology_ref(struct topology *t)
{
    __atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
}

void topology_unref(struct topology *t)
{
    if (t == NULL) {
        return;
    }
    if (__atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        free(t->replicas);
        free(t);
    }
}

bool topology_same(const struct topology *a, const struct topology *b)
{
    if (a->has_master != b->has_master || a->nreplicas != b->nreplicas || a->epoch != b->epoch) {
        return false;
    }
    if (a->has_master && !addr_same_place(&a->master, &b->master)) {
        return false;
    }
    for (size_t i = 0; i < a->nreplicas; i++) {
        if (!addr_same_place(&a->replicas[i].addr, &b->replicas[i].addr) ||
            a->replicas[i].healthy != b->replicas[i].healthy) {
            return false;
        }
    }
    return true;
}
