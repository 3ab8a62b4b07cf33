/*
 * config.h - sentinel-proxy configuration: the settings, their defaults and
 * bounds (one declarative table in config.c), the YAML loader and the
 * command-line overrides.
 *
 * Loading never touches a configuration in use: a file is parsed into a fresh
 * struct config, every key is checked (unknown keys, wrong types and values
 * out of range are errors naming file, line and key), and only a struct that
 * passed config_validate() is handed to the rest of the program.
 */
#ifndef SP_CONFIG_H
#define SP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/addr.h"
#include "lib/tls.h"

#define CONFIG_ERR_MAX 512

/* Where reads (read-only commands) go. */
enum config_read_from {
    READ_FROM_MASTER = 0,
    READ_FROM_REPLICAS = 1,        /* replicas only; wait/error when none is healthy */
    READ_FROM_PREFER_REPLICAS = 2, /* replicas, the master when none is healthy */
};

/* How a replica is chosen among the healthy ones. */
enum config_balance {
    BALANCE_ROUND_ROBIN = 0,
    BALANCE_LEAST_OUTSTANDING = 1,
    BALANCE_WEIGHTED = 2,
};

struct config_listener {
    struct addr addr;
    int read_from; /* enum config_read_from; -1 = use the global read-from */
    bool tls;      /* clients speak TLS */
    /* its own tls: mapping, in place of the tls.* keys; NULL: those */
    struct tls_settings *tls_own;
};

/* Per-replica preferences (replica-weights / zones), keyed by "host:port". */
struct config_replica_pref {
    char *address;
    int weight; /* 1..1000 */
    char *zone; /* NULL = no zone */
};

struct config {
    /* listeners and threads */
    struct config_listener *listeners;
    size_t nlisteners;
    int workers;     /* 0 = one per CPU ("auto") */
    int max_clients; /* per process */
    int tcp_backlog;
    uint64_t tcp_keepalive_ms;       /* 0 = off */
    uint64_t client_idle_timeout_ms; /* 0 = never */
    uint64_t shutdown_timeout_ms;    /* SIGTERM: wait this long for requests in flight */
    int log_level;                   /* enum log_level */
    int log_format;                  /* 0 = text, 1 = json */

    /* fixed backend (no Sentinel) */
    bool has_backend;
    struct addr backend;

    /* backend connections */
    int backend_connections;              /* shared connections per backend per worker */
    int backend_connections_max;          /* ... and more while some are stalled, up to this */
    uint64_t backend_connections_idle_ms; /* extra ones idle this long close */
    int backend_window;          /* requests written ahead on a shared connection (0 = no limit) */
    uint64_t stall_threshold_ms; /* no answer this long with a request waiting: stalled (0 = off) */
    char *backend_username;      /* NULL = none */
    char *backend_password;      /* NULL = none */
    uint64_t connect_timeout_ms;
    uint64_t reconnect_min_ms; /* first retry after this, doubling ... */
    uint64_t reconnect_max_ms; /* ... up to this */
    int dedicated_spare;       /* idle dedicated connections kept per backend per worker */

    /* requests waiting for a usable backend (failover, backend down) */
    uint64_t hold_timeout_ms;
    uint64_t hold_memory; /* bytes of held requests per worker */

    /* per-client limits */
    uint64_t proto_max_bulk_len;        /* longest bulk argument */
    uint64_t client_query_buffer_limit; /* longest single request */
    uint64_t client_backlog_limit;      /* queued requests + unsent replies before reading pauses */
    uint64_t client_output_limit;       /* unsent reply bytes before the client is dropped */

    /* Sentinel */
    bool has_sentinel; /* master_name set */
    char *master_name;
    struct addr *sentinels;
    size_t nsentinels;
    char *sentinel_username;
    char *sentinel_password;
    uint64_t sentinel_timeout_ms; /* per request to a Sentinel or instance */
    uint64_t sentinel_poll_ms;    /* polling period */
    uint64_t sentinel_forget_ms;  /* forget a learnt Sentinel gone this long */
    uint64_t sentinel_fence_ms;   /* hold writes after this long without a majority (0 = off) */

    /* routing */
    int read_from; /* enum config_read_from */
    int balance;   /* enum config_balance */
    bool read_your_writes;
    uint64_t max_replica_lag; /* bytes of replication offset; 0 = no limit */
    int ack_after_replicas;   /* write replies wait for this many replicas (0 = off) */
    char *zone;               /* this proxy's zone; NULL = none */
    struct config_replica_pref *replica_prefs;
    size_t nreplica_prefs;

    /* admin HTTP endpoints (metrics, health, topology) */
    bool has_admin; /* admin.listen set */
    struct addr admin;

    /* TLS, per leg */
    struct tls_settings tls;           /* TLS listeners */
    uint64_t tls_handshake_timeout_ms; /* a client's handshake */
    struct tls_settings backend_tls;   /* connections to Redis servers */
    struct tls_settings sentinel_tls;  /* connections to Sentinels */

    /* where values came from, for messages */
    char *source; /* file path, or NULL for defaults/flags only */
    void *priv;   /* the loader's bookkeeping */
};

/* Allocate a configuration holding every default. Never returns NULL. */
struct config *config_new(void);

/* Free a configuration and everything it owns (NULL is fine). */
void config_free(struct config *cfg);

/* Read a YAML file into cfg, overriding the keys it sets. On failure returns
 * false and writes "FILE:LINE: KEY: problem" into err; cfg is then unusable. */
bool config_load_file(struct config *cfg, const char *path, char *err, size_t errlen);

/* Same as config_load_file but from a string (name used in messages). */
bool config_load_string(struct config *cfg, const char *yaml, size_t len, const char *name,
                        char *err, size_t errlen);

/*
 * Set one key from the command line, with the same parsing and bounds as the
 * file ("listen", "sentinel.addresses", ... ; list keys take one item per
 * call: the first call replaces the file's list, later calls append).
 * False with "--FLAG: problem" in err.
 */
bool config_set(struct config *cfg, const char *key, const char *value, char *err, size_t errlen);

/* Cross-key checks after everything is loaded (e.g. exactly one of backend
 * and sentinel.master-name; sentinel addresses present with a master name;
 * reconnect-min <= reconnect-max). Fills defaults that depend on others
 * (default listener). False with a message in err. */
bool config_validate(struct config *cfg, char *err, size_t errlen);

/* One key that a reload changes: its name, the running value and the new
 * one as text (secrets masked), and whether it takes effect (false: it needs
 * a restart and keeps its running value). */
typedef void config_change_fn(void *ctx, const char *key, const char *from, const char *to,
                              bool applied);

/* Compare next, validated, with the running cur, key by key: fn hears of
 * each key that differs, and a key that cannot change without a restart gets
 * cur's value back in next. Returns the number of keys that differ, -1 if out
 * of memory (next is then unusable). */
int config_reconcile(const struct config *cur, struct config *next, config_change_fn *fn,
                     void *ctx);

/* Print every key with its type, default and description, as a Markdown
 * table (for --help-config and the README). */
void config_print_reference(FILE *out);

/* Number of keys in the table, and the dotted name of key i. */
size_t config_key_count(void);
const char *config_key_name(size_t i);

#endif
