/*
 * quorum.h - deciding the master from what the Sentinels say.
 *
 * Pure functions, no I/O: the engine collects one report per Sentinel and
 * asks for a decision. The rules:
 *  - only Sentinels that answered count;
 *  - the highest config-epoch wins a disagreement (a higher epoch was
 *    authorised by a majority vote of the Sentinels during a failover);
 *  - among reports with that epoch, the address most of them name wins; a tie
 *    is no decision;
 *  - the master is "going away" when a Sentinel that agrees on it flags it
 *    objectively down or a failover is in progress: writes must then wait.
 * Replicas are healthy when the Sentinels that list them do not flag them
 * s_down, o_down or disconnected and their master link is not "err".
 */
#ifndef SP_QUORUM_H
#define SP_QUORUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"

enum quorum_status {
    QUORUM_NONE = 0,   /* no Sentinel answered */
    QUORUM_AGREED = 1, /* every answer names the same master */
    QUORUM_EPOCH = 2,  /* answers differed; the highest epoch decided */
    QUORUM_SPLIT = 3,  /* answers differ and nothing decides: keep what we have */
};

struct quorum_report {
    bool ok;            /* the Sentinel answered SENTINEL MASTER */
    struct addr master; /* address it reports */
    uint64_t epoch;     /* its config-epoch for the master */
    bool odown;         /* it flags the master o_down */
    bool sdown;         /* it flags the master s_down */
    bool failover;      /* it flags a failover in progress */
};

struct quorum_decision {
    int status; /* enum quorum_status */
    struct addr master;
    uint64_t epoch;
    int answers;     /* Sentinels that answered */
    int votes;       /* of those, how many name this master (any epoch) */
    bool going_away; /* o_down or failover in progress, per an agreeing Sentinel */
};

/* Decide the master from n reports. */
void quorum_decide(const struct quorum_report *reports, size_t n, struct quorum_decision *d);

/* Whether a replica with these Sentinel flags ("slave,s_down,...") and
 * master-link-status ("ok", "err") may serve reads. */
bool quorum_replica_ok(const char *flags, const char *link_status);

/* Whether a comma-separated flag list contains a flag. */
bool quorum_has_flag(const char *flags, const char *flag);

#endif
