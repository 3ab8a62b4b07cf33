/*
 * engine_int.h - the Sentinel engine's internal state, shared by engine.c
 * (rounds, decisions, publication), events.c (pub/sub) and probe.c (ROLE).
 * Not for use outside sentinel/.
 */
#ifndef SP_ENGINE_INT_H
#define SP_ENGINE_INT_H

#include <ev.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/addr.h"
#include "lib/ctlreport.h"
#include "lib/resolve.h"
#include "sentinel/link.h"
#include "sentinel/quorum.h"

#include "sentinel/engine.h"

struct config;
struct topology;
struct probe_arg;

#define ENGINE_MAX_PEERS    64  /* Sentinels learnt from one reply, and known in all */
#define ENGINE_MAX_REPLICAS 256 /* replicas taken from one Sentinel's reply */
#define ENGINE_KICK_GAP     0.1 /* seconds between rounds started by workers' kicks, at least */
#define ENGINE_MUTE_MIN                                                                            \
    5.0 /* seconds a Sentinel's events do not hold writes after a false alarm                      \
         */
#define ENGINE_MUTE_MAX 300.0 /* ... doubling with each false alarm in a row, up to this */

/* A replica as one Sentinel lists it. */
struct engine_replica {
    struct addr addr;
    bool ok; /* not flagged down or disconnected, master link not "err" */
    uint64_t offset;
};

/* One Sentinel. */
struct engine_node {
    struct engine *e;
    struct addr addr;
    char name[ADDR_TEXT_MAX];
    bool configured; /* from the configuration: never forgotten */
    bool subscribed; /* its event channels are subscribed */
    struct link *cmd;
    struct link *sub;
    double added, last_ok, last_listed;
    double mute_until, mute_for; /* its going-away events hold nothing until mute_until */
    int pending;                 /* replies outstanding (of round `round`) */
    uint64_t round;              /* the round it was last asked in */
    char answer[CTL_ERROR_MAX];  /* its error reply to SENTINEL MASTER ("" when it named one) */
    char unresolved[192];        /* the master it named is not resolved (yet): why */
    struct quorum_report report;
    struct engine_replica *replicas;
    size_t nreplicas;
    struct addr *peers; /* Sentinels it knows of */
    size_t npeers;
    struct engine_node *next;
};

/* A Redis instance asked for ROLE. */
struct engine_inst {
    struct addr addr;
    struct link *link;
    double last_used;
    struct engine_inst *next;
};

/* A replica being confirmed in the current decision. */
struct engine_cand {
    struct addr addr;
    bool ok;        /* healthy according to the Sentinels */
    bool confirmed; /* ROLE: replica of the candidate, link up */
    uint64_t offset;
};

struct engine {
    struct ev_loop *loop;
    struct engine_receiver rx;
    struct engine_tls tls;
    const struct config *cfg;
    struct resolve *resolver;    /* host names, off the loop */
    struct resolve_waiter rwait; /* its news start a round */
    struct engine_node *nodes;
    struct engine_inst *insts;
    struct probe_arg *probe_args; /* ROLE probes in flight (freed at shutdown) */
    ev_timer poll;
    ev_timer soon;
    ev_async kick;
    uint64_t round;
    int round_pending; /* Sentinels asked in this round that have not answered */
    bool round_again;
    bool round_decided; /* decided before the last answers were in (engine_early) */
    bool force_publish;
    double kicked_at; /* when a worker's kick last started a round */
    /* confirmation of a decision by ROLE */
    uint64_t confirm_seq;
    int confirm_pending;
    struct quorum_decision cand;
    bool cand_ok;                   /* ROLE on the candidate said master */
    bool cand_answered;             /* ROLE on the candidate answered at all */
    char cand_error[CTL_ERROR_MAX]; /* ... and if not, why (an error reply, or the link's) */
    uint64_t cand_offset;
    struct engine_cand *cr;
    size_t ncr;
    /* what was published */
    struct topology *topo;
    uint64_t version;
    bool pub_known; /* a master was published: pub_master at pub_epoch */
    struct addr pub_master;
    uint64_t pub_epoch;
    double switch_started;     /* first signal of the switch in progress (0 = none) */
    struct engine_node *alarm; /* whose event put writes on hold (NULL = none) */
    double alarm_at;           /* when the last event about the master going away came */
    double round_at;           /* when the current round started */
    double cand_round_at;      /* ... the round that made the decision being confirmed */
    double warned_epoch;
    char why[512];      /* why no master is confirmed now ("" when one is) */
    double why_logged;  /* when why was last logged */
    uint64_t failovers; /* a new master replaced a known one */
    double last_switch; /* the last one's first signal to publication, seconds (< 0: none) */
    /* write fencing (sentinel.fence-after) */
    double majority_at; /* a majority of the known Sentinels last named the master decided */
    bool fenced;        /* writes are held for want of such a majority */
    struct quorum_decision last; /* the last round's decision, for status between rounds */
};

/* The string value of key in a flat key/value array reply (NULL if absent). */
const char *engine_field(const redisReply *r, const char *key);

#define ENGINE_ADDR_BAD (-1) /* engine_field_addr: fields missing or malformed */

/* Fields ipkey/portkey of a key/value reply as an address resolved through
 * the cache: RESOLVE_OK, RESOLVE_PENDING or RESOLVE_FAILED (why in err), or
 * ENGINE_ADDR_BAD. */
int engine_field_addr(struct engine *e, const redisReply *r, const char *ipkey, const char *portkey,
                      struct addr *a, char *err, size_t errlen);

/* status.c: report the Sentinels' answers and decision d to the receiver. */
void engine_status(struct engine *e, const struct quorum_decision *d);

/* Start a round now, or right after the one in progress. */
void engine_round(struct engine *e);

/* Start a round at the next loop turn. */
void engine_round_soon(struct engine *e);

/* Publish t (takes ownership) if it differs from the last one, or if force. */
void engine_publish(struct engine *e, struct topology *t, bool force);

/* Say why no master is confirmed (logged when it changes, and once a
 * minute while it lasts); "" once one is. */
void engine_set_why(struct engine *e, const char *why);

/* Publish "no master" at once, keeping replicas: writes wait. */
void engine_hold(struct engine *e, const char *why);

/* A round confirmed master after an event had put writes on hold: if the
 * master did not change, that Sentinel's going-away events hold nothing for
 * a while (ENGINE_MUTE_MIN, doubling with each false alarm in a row). */
void engine_alarm_settled(struct engine *e, const struct addr *master);

/* events.c: subscribe a Sentinel's event channels if not subscribed. */
void events_subscribe(struct engine_node *n);

/* events.c: a message (or NULL: link down) on a Sentinel's subscriber link. */
void events_on_push(struct link *l, redisReply *msg, void *udata);

/* probe.c: confirm a decision with ROLE on the master and replicas, then
 * publish what is confirmed. */
void probe_confirm(struct engine *e, const struct quorum_decision *d);

/* probe.c: free every instance link. */
void probe_free_all(struct engine *e);

#endif
