/*
 * ctlreport.h - what the control plane last saw of the Sentinels, as data:
 * handed by the Sentinel engine to the proxy after every round, for the
 * admin endpoints (metrics, /topology). Immutable once handed over.
 */
#ifndef SP_CTLREPORT_H
#define SP_CTLREPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"

#define CTL_ERROR_MAX 128

/* One Sentinel as the last round saw it. */
struct ctl_sentinel {
    char addr[ADDR_TEXT_MAX];
    char master[ADDR_TEXT_MAX]; /* the master it names, "" when it gave none */
    char last_error[CTL_ERROR_MAX];
    bool ok;         /* named a master in the last round */
    bool answered;   /* ... or at least answered (an error: last_error has it) */
    bool configured; /* from the configuration (else learnt) */
    bool subscribed; /* its event channels are subscribed */
    uint64_t epoch;
    double last_ok_age; /* seconds since it last answered; < 0: never */
};

struct ctl_report {
    uint64_t rounds;
    const char *decision; /* "agreed", "by-epoch", "split", "no-answer" (static text) */
    int answering;        /* Sentinels that answered the last round */
    int votes;            /* ... naming the master decided */
    bool going_away;      /* a Sentinel reports the master down or failing over */
    uint64_t failovers;   /* times a new master replaced a known one */
    double last_switch;   /* the last one: seconds from its first signal to publication, < 0:
                             none measured */
    char why[512];        /* why no master is confirmed ("" when one is) */
    bool fenced;          /* writes held: no Sentinel majority for sentinel.fence-after */
    double majority_age;  /* seconds since a majority of the known Sentinels last named the
                             master, < 0: never */
    size_t n;
    struct ctl_sentinel sentinels[]; /* n of them */
};

#endif
