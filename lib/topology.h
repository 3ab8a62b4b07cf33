/*
 * topology.h - an immutable snapshot of where the data lives: the confirmed
 * master, the replicas with their health, and the Sentinel epoch.
 *
 * The control plane builds a snapshot, publishes it, and never changes it
 * again; workers hold references and drop them when a newer one arrives. The
 * reference count is the only field ever written after publication.
 */
#ifndef SP_TOPOLOGY_H
#define SP_TOPOLOGY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"

#define TOPOLOGY_ZONE_MAX 32

struct topology_replica {
    struct addr addr;
    bool healthy;    /* usable for reads now */
    uint64_t offset; /* replication offset last seen (0 = unknown) */
    int weight;      /* from configuration, 1 by default */
    char zone[TOPOLOGY_ZONE_MAX];
};

struct topology {
    int refs;         /* atomic */
    uint64_t version; /* increases with every snapshot */
    uint64_t epoch;   /* Sentinel config epoch of the master (0 = fixed backend) */
    bool has_master;  /* a master is confirmed (Sentinels and ROLE agree) */
    struct addr master;
    uint64_t master_offset; /* master replication offset when built */
    struct topology_replica *replicas;
    size_t nreplicas;
    double switch_started; /* when the change to this master was first signalled (0 = n/a) */
};

/* A new snapshot with one reference and no master or replicas. */
struct topology *topology_new(void);

/* Copy a snapshot (fresh reference count, same content) to derive the next. */
struct topology *topology_clone(const struct topology *t);

/* Add a replica; false if memory ran out. */
bool topology_add_replica(struct topology *t, const struct topology_replica *r);

/* Take a reference (any thread). */
void topology_ref(struct topology *t);

/* Drop a reference (any thread); frees on the last one. NULL is fine. */
void topology_unref(struct topology *t);

/* True when both describe the same master and replica set and health. */
bool topology_same(const struct topology *a, const struct topology *b);

#endif
