/*
 * config.c - the configuration table, value parsing, the YAML loader, flags,
 * and validation.
 *
 * Every key is one row of config_keys[]: its dotted name, type, default (as
 * text, parsed by the same code as the file), bounds, whether it could be
 * reloaded, and its description. Defaults, the file, the flags and
 * --help-config all go through that table, so they cannot disagree.
 */
#include "conf/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/yamltree.h"
#include "proxy/log.h"

#define CONFIG_FILE_MAX (1u << 20)
#define MS              1ULL
#define SEC             (1000 * MS)
#define KB              1024ULL
#define MB              (1024 * KB)
#define GB              (1024 * MB)

enum config_type {
    CT_INT,      /* decimal integer */
    CT_WORKERS,  /* integer or "auto" (0) */
    CT_SIZE,     /* bytes, with an optional unit */
    CT_DURATION, /* milliseconds, with an optional unit */
    CT_BOOL,
    CT_STRING,
    CT_NAME, /* a non-empty word: no whitespace or control characters */
    CT_ADDR,
    CT_LOGLEVEL,
    CT_READFROM,
    CT_BALANCE,
    CT_LISTEN,   /* list of listeners */
    CT_ADDRLIST, /* list of addresses */
    CT_REPLICAS, /* list of replica preferences */
};

struct config_key {
    const char *name;
    int type;
    size_t off;
    const char *def; /* NULL: no default (unset) */
    int64_t min, max;
    bool reloadable;
    const char *doc;
};

#define OFF(field) offsetof(struct config, field)

static const struct config_key config_keys[] = {
    {"listen", CT_LISTEN, OFF(listeners), NULL, 0, 0, false,
     "addresses to accept clients on: HOST:PORT, [IPv6]:PORT or unix:/path, or mappings "
     "{address, read-from}; default 127.0.0.1:6380"},
    {"workers", CT_WORKERS, OFF(workers), "1", 1, 256, false,
     "worker threads, each with its own event loop, or auto (one per CPU)"},
    {"max-clients", CT_INT, OFF(max_clients), "10000", 1, 1000000, true,
     "most client connections at once; more are refused with an error"},
    {"tcp-backlog", CT_INT, OFF(tcp_backlog), "511", 1, 65535, false, "listen(2) backlog"},
    {"tcp-keepalive", CT_DURATION, OFF(tcp_keepalive_ms), "300s", 0, 86400 * SEC, true,
     "TCP keepalive idle time on client and backend sockets (0 = off)"},
    {"client-idle-timeout", CT_DURATION, OFF(client_idle_timeout_ms), "0", 0, 30 * 86400 * SEC,
     true, "close clients idle this long (0 = never)"},
    {"log-level", CT_LOGLEVEL, OFF(log_level), "info", 0, 0, true, "debug, info, warn or error"},
    {"backend", CT_ADDR, OFF(backend), NULL, 0, 0, false,
     "a fixed master (HOST:PORT or unix:/path), for setups without Sentinel"},
    {"backend-connections", CT_INT, OFF(backend_connections), "2", 1, 64, false,
     "shared connections per backend per worker, that client requests are multiplexed over"},
    {"backend-username", CT_STRING, OFF(backend_username), NULL, 0, 0, false,
     "ACL user the proxy authenticates as on backends (with backend-password)"},
    {"backend-password", CT_STRING, OFF(backend_password), NULL, 0, 0, false,
     "password the proxy authenticates with on backends"},
    {"connect-timeout", CT_DURATION, OFF(connect_timeout_ms), "1s", 1, 60 * SEC, true,
     "time allowed to connect to a backend"},
    {"reconnect-min", CT_DURATION, OFF(reconnect_min_ms), "100ms", 1, 60 * SEC, true,
     "first delay before reconnecting to a backend that is down (doubles each time)"},
    {"reconnect-max", CT_DURATION, OFF(reconnect_max_ms), "2s", 1, 600 * SEC, true,
     "longest delay between reconnection attempts"},
    {"dedicated-spare", CT_INT, OFF(dedicated_spare), "4", 0, 1000, true,
     "idle dedicated connections kept per backend per worker for sessions with state"},
    {"hold-timeout", CT_DURATION, OFF(hold_timeout_ms), "60s", 0, 600 * SEC, true,
     "how long a request waits for a usable master (failover, backend down) before an error"},
    {"hold-memory", CT_SIZE, OFF(hold_memory), "64mb", 0, (int64_t)(64 * GB), true,
     "bytes of waiting requests per worker; beyond it new requests fail at once"},
    {"proto-max-bulk-len", CT_SIZE, OFF(proto_max_bulk_len), "512mb", (int64_t)MB,
     (int64_t)(64 * GB), false, "longest bulk string argument accepted from a client"},
    {"client-query-buffer-limit", CT_SIZE, OFF(client_query_buffer_limit), "1gb", (int64_t)MB,
     (int64_t)(64 * GB), true, "longest single request; a client sending more is disconnected"},
    {"client-backlog-limit", CT_SIZE, OFF(client_backlog_limit), "1mb", (int64_t)(16 * KB),
     (int64_t)GB, true,
     "bytes of a client's queued requests and unsent replies before reading from it pauses"},
    {"client-output-limit", CT_SIZE, OFF(client_output_limit), "1gb", (int64_t)MB,
     (int64_t)(64 * GB), true, "bytes of unsent replies before a client is disconnected"},
    {"sentinel.master-name", CT_NAME, OFF(master_name), NULL, 0, 0, false,
     "the master's name as configured in the Sentinels"},
    {"sentinel.addresses", CT_ADDRLIST, OFF(sentinels), NULL, 0, 0, false,
     "Sentinels to ask (more are learnt from them)"},
    {"sentinel.username", CT_STRING, OFF(sentinel_username), NULL, 0, 0, false,
     "ACL user for the Sentinels (with sentinel.password)"},
    {"sentinel.password", CT_STRING, OFF(sentinel_password), NULL, 0, 0, false,
     "password for the Sentinels"},
    {"sentinel.timeout", CT_DURATION, OFF(sentinel_timeout_ms), "500ms", 10, 60 * SEC, true,
     "time allowed for each answer from a Sentinel or instance"},
    {"sentinel.poll-interval", CT_DURATION, OFF(sentinel_poll_ms), "1s", 100, 60 * SEC, true,
     "how often every Sentinel is asked, events or not"},
    {"sentinel.forget-after", CT_DURATION, OFF(sentinel_forget_ms), "5m", SEC, 30 * 86400 * SEC,
     true, "forget a learnt Sentinel that has been gone this long"},
    {"read-from", CT_READFROM, OFF(read_from), "prefer-replicas", 0, 0, true,
     "where read-only commands go: master, replicas or prefer-replicas"},
    {"balance", CT_BALANCE, OFF(balance), "least-outstanding", 0, 0, true,
     "replica choice: round-robin, least-outstanding or weighted"},
    {"read-your-writes", CT_BOOL, OFF(read_your_writes), "true", 0, 0, true,
     "after a client's write, its reads go only to replicas that have replicated it"},
    {"max-replica-lag", CT_SIZE, OFF(max_replica_lag), "1mb", 0, (int64_t)(64 * GB), true,
     "replicas further behind the master than this many bytes serve no reads (0 = no limit)"},
    {"zone", CT_STRING, OFF(zone), NULL, 0, 0, true,
     "this proxy's zone: replicas in the same zone are preferred"},
    {"replicas", CT_REPLICAS, OFF(replica_prefs), NULL, 0, 0, true,
     "per-replica settings: list of {address, weight (1..1000), zone}"},
};

#define CONFIG_NKEYS (sizeof(config_keys) / sizeof(config_keys[0]))

/* Private bookkeeping: which list keys a flag has already replaced. */
struct config_private {
    bool flag_set[CONFIG_NKEYS];
};

size_t config_key_count(void)
{
    return CONFIG_NKEYS;
}

const char *config_key_name(size_t i)
{
    return i < CONFIG_NKEYS ? config_keys[i].name : NULL;
}

static const struct config_key *config_find(const char *name)
{
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        if (strcmp(config_keys[i].name, name) == 0) {
            return &config_keys[i];
        }
    }
    return NULL;
}

static bool config_is_section(const char *prefix)
{
    size_t n = strlen(prefix);

    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        if (strncmp(config_keys[i].name, prefix, n) == 0 && config_keys[i].name[n] == '.') {
            return true;
        }
    }
    return false;
}

static void *config_field(struct config *cfg, const struct config_key *k)
{
    return (char *)cfg + k->off;
}

/* ---- scalar parsing ------------------------------------------------------ */

static bool config_fail(char *msg, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool config_fail(char *msg, size_t len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, len, fmt, ap);
    va_end(ap);
    return false;
}

/* Digits then an optional unit; false on anything else or overflow. */
static bool config_number_unit(const char *s, uint64_t *num, const char **unit)
{
    uint64_t v = 0;
    const char *p = s;

    if (*p < '0' || *p > '9') {
        return false;
    }
    while (*p >= '0' && *p <= '9') {
        if (v > (UINT64_MAX - 9) / 10) {
            return false;
        }
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    *num = v;
    *unit = p;
    return true;
}

static bool config_mul(uint64_t v, uint64_t m, uint64_t *out)
{
    if (m != 0 && v > UINT64_MAX / m) {
        return false;
    }
    *out = v * m;
    return true;
}

static bool config_parse_size(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t mul;
    } units[] = {{"", 1},        {"b", 1},   {"k", 1000},       {"kb", KB},
                 {"m", 1000000}, {"mb", MB}, {"g", 1000000000}, {"gb", GB}};
    const char *unit;
    uint64_t v;

    if (!config_number_unit(s, &v, &unit)) {
        return false;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(unit, units[i].unit) == 0) {
            return config_mul(v, units[i].mul, out);
        }
    }
    return false;
}

static bool config_parse_duration(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t mul;
    } units[] = {{"", MS},          {"ms", MS},        {"s", SEC},        {"m", 60 * SEC},
                 {"min", 60 * SEC}, {"h", 3600 * SEC}, {"d", 86400 * SEC}};
    const char *unit;
    uint64_t v;

    if (!config_number_unit(s, &v, &unit)) {
        return false;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(unit, units[i].unit) == 0) {
            return config_mul(v, units[i].mul, out);
        }
    }
    return false;
}

static bool config_parse_bool(const char *s, bool *out)
{
    static const char *yes[] = {"true", "yes", "on"}, *no[] = {"false", "no", "off"};

    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static bool config_parse_int(const char *s, int64_t *out)
{
    char *end;
    long long v;

    if (*s == '\0' || *s == '+' || (*s != '-' && (*s < '0' || *s > '9'))) {
        return false;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        return false;
    }
    *out = v;
    return true;
}

static int config_enum(const char *s, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, names[i]) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static const char *const config_read_names[] = {"master", "replicas", "prefer-replicas"};
static const char *const config_balance_names[] = {"round-robin", "least-outstanding", "weighted"};

static bool config_set_string(char **dst, const char *s, char *msg, size_t len)
{
    char *copy = strdup(s);

    if (copy == NULL) {
        return config_fail(msg, len, "out of memory");
    }
    free(*dst);
    *dst = copy;
    return true;
}

static bool config_valid_name(const char *s)
{
    if (*s == '\0' || strlen(s) > 255) {
        return false;
    }
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p <= ' ' || *p == 0x7f) {
            return false;
        }
    }
    return true;
}

/* Set a scalar-typed key from text. */
static bool config_set_scalar(struct config *cfg, const struct config_key *k, const char *s,
                              char *msg, size_t len)
{
    void *f = config_field(cfg, k);
    uint64_t u;
    int64_t v;
    int e;

    switch (k->type) {
    case CT_INT:
        if (!config_parse_int(s, &v)) {
            return config_fail(msg, len, "expected an integer, got '%s'", s);
        }
        if (v < k->min || v > k->max) {
            return config_fail(msg, len, "%s is out of range (%lld..%lld)", s, (long long)k->min,
                               (long long)k->max);
        }
        *(int *)f = (int)v;
        return true;
    case CT_WORKERS:
        if (strcmp(s, "auto") == 0) {
            *(int *)f = 0;
            return true;
        }
        if (!config_parse_int(s, &v) || v < k->min || v > k->max) {
            return config_fail(msg, len, "%s is out of range (1..256 or auto)", s);
        }
        *(int *)f = (int)v;
        return true;
    case CT_SIZE:
        if (!config_parse_size(s, &u)) {
            return config_fail(msg, len, "expected a size such as 512mb or 64kb, got '%s'", s);
        }
        if (u > (uint64_t)k->max || (int64_t)u < k->min) {
            return config_fail(msg, len, "%s is out of range", s);
        }
        *(uint64_t *)f = u;
        return true;
    case CT_DURATION:
        if (!config_parse_duration(s, &u)) {
            return config_fail(msg, len, "expected a duration such as 500ms or 2s, got '%s'", s);
        }
        if (u > (uint64_t)k->max || (int64_t)u < k->min) {
            return config_fail(msg, len, "%s is out of range", s);
        }
        *(uint64_t *)f = u;
        return true;
    case CT_BOOL:
        if (!config_parse_bool(s, (bool *)f)) {
            return config_fail(msg, len, "expected true or false, got '%s'", s);
        }
        return true;
    case CT_STRING:
        return config_set_string((char **)f, s, msg, len);
    case CT_NAME:
        if (!config_valid_name(s)) {
            return config_fail(msg, len, "expected a name without spaces, got '%s'", s);
        }
        cfg->has_sentinel = true;
        return config_set_string((char **)f, s, msg, len);
    case CT_ADDR:
        if (!addr_parse((struct addr *)f, s, msg, len)) {
            return false;
        }
        cfg->has_backend = true;
        return true;
    case CT_LOGLEVEL:
        e = log_level_parse(s);
        if (e < 0) {
            return config_fail(msg, len, "expected debug, info, warn or error, got '%s'", s);
        }
        *(int *)f = e;
        return true;
    case CT_READFROM:
        e = config_enum(s, config_read_names, 3);
        if (e < 0) {
            return config_fail(msg, len, "expected master, replicas or prefer-replicas, got '%s'",
                               s);
        }
        *(int *)f = e;
        return true;
    case CT_BALANCE:
        e = config_enum(s, config_balance_names, 3);
        if (e < 0) {
            return config_fail(msg, len,
                               "expected round-robin, least-outstanding or weighted, got '%s'", s);
        }
        *(int *)f = e;
        return true;
    default:
        return config_fail(msg, len, "expected a list");
    }
}

/* ---- lists ----------------------------------------------------------------- */

static bool config_grow(void **arr, size_t n, size_t size, char *msg, size_t len)
{
    void *p = realloc(*arr, (n + 1) * size);

    if (p == NULL) {
        return config_fail(msg, len, "out of memory");
    }
    *arr = p;
    memset((char *)p + n * size, 0, size);
    return true;
}

static bool config_add_listener(struct config *cfg, const char *addr, int read_from, char *msg,
                                size_t len)
{
    struct config_listener *l;

    if (!config_grow((void **)&cfg->listeners, cfg->nlisteners, sizeof(*l), msg, len)) {
        return false;
    }
    l = &cfg->listeners[cfg->nlisteners];
    if (!addr_parse(&l->addr, addr, msg, len)) {
        return false;
    }
    l->read_from = read_from;
    cfg->nlisteners++;
    return true;
}

static bool config_add_sentinel(struct config *cfg, const char *addr, char *msg, size_t len)
{
    if (!config_grow((void **)&cfg->sentinels, cfg->nsentinels, sizeof(*cfg->sentinels), msg,
                     len)) {
        return false;
    }
    if (!addr_parse(&cfg->sentinels[cfg->nsentinels], addr, msg, len)) {
        return false;
    }
    cfg->nsentinels++;
    return true;
}

static void config_clear_list(struct config *cfg, const struct config_key *k)
{
    if (k->type == CT_LISTEN) {
        free(cfg->listeners);
        cfg->listeners = NULL;
        cfg->nlisteners = 0;
    } else if (k->type == CT_ADDRLIST) {
        free(cfg->sentinels);
        cfg->sentinels = NULL;
        cfg->nsentinels = 0;
    } else if (k->type == CT_REPLICAS) {
        for (size_t i = 0; i < cfg->nreplica_prefs; i++) {
            free(cfg->replica_prefs[i].address);
            free(cfg->replica_prefs[i].zone);
        }
        free(cfg->replica_prefs);
        cfg->replica_prefs = NULL;
        cfg->nreplica_prefs = 0;
    }
}

/* ---- YAML walking ------------------------------------------------------------ */

struct config_walk {
    struct config *cfg;
    const char *file;
    char *err;
    size_t errlen;
};

static bool config_where(struct config_walk *w, int line, const char *key, const char *msg)
{
    snprintf(w->err, w->errlen, "%s:%d: %s: %s", w->file, line, key, msg);
    return false;
}

static const char *config_map_get(const struct ynode *map, const char *key, int *line)
{
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        if (strcmp(map->items[i]->text, key) == 0) {
            *line = map->items[i + 1]->line;
            return map->items[i + 1]->kind == YT_SCALAR ? map->items[i + 1]->text : NULL;
        }
    }
    return NULL;
}

/* Keys of a mapping must all be in the allowed list. */
static bool config_map_only(struct config_walk *w, const struct ynode *map, const char *key,
                            const char *const *allowed, size_t n)
{
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const char *k = map->items[i]->text;
        bool ok = false;
        char msg[160];
        for (size_t j = 0; j < n; j++) {
            ok = ok || strcmp(k, allowed[j]) == 0;
        }
        if (!ok) {
            snprintf(msg, sizeof(msg), "unknown key '%.64s'", k);
            return config_where(w, map->items[i]->line, key, msg);
        }
        if (map->items[i + 1]->kind != YT_SCALAR) {
            snprintf(msg, sizeof(msg), "'%.64s' must be a single value", k);
            return config_where(w, map->items[i + 1]->line, key, msg);
        }
    }
    return true;
}

static bool config_listen_item(struct config_walk *w, const struct config_key *k,
                               const struct ynode *item)
{
    static const char *const allowed[] = {"address", "read-from"};
    char msg[CONFIG_ERR_MAX];
    const char *addr, *rf;
    int line = item->line, rline = item->line, read_from = -1;

    if (item->kind == YT_SCALAR) {
        if (!config_add_listener(w->cfg, item->text, -1, msg, sizeof(msg))) {
            return config_where(w, item->line, k->name, msg);
        }
        return true;
    }
    if (item->kind != YT_MAP || !config_map_only(w, item, k->name, allowed, 2)) {
        return item->kind != YT_MAP
                   ? config_where(w, item->line, k->name, "expected a list of addresses")
                   : false;
    }
    addr = config_map_get(item, "address", &line);
    rf = config_map_get(item, "read-from", &rline);
    if (addr == NULL) {
        return config_where(w, item->line, k->name, "a listener needs an address");
    }
    if (rf != NULL && (read_from = config_enum(rf, config_read_names, 3)) < 0) {
        snprintf(msg, sizeof(msg), "expected master, replicas or prefer-replicas, got '%.64s'", rf);
        return config_where(w, rline, "listen.read-from", msg);
    }
    if (!config_add_listener(w->cfg, addr, read_from, msg, sizeof(msg))) {
        return config_where(w, line, k->name, msg);
    }
    return true;
}

static bool config_replica_item(struct config_walk *w, const struct config_key *k,
                                const struct ynode *item)
{
    static const char *const allowed[] = {"address", "weight", "zone"};
    struct config *cfg = w->cfg;
    struct config_replica_pref *rp;
    char msg[CONFIG_ERR_MAX];
    struct addr a;
    const char *addr, *weight, *zone;
    int line = item->line, wline = item->line, zline = item->line;
    int64_t wv = 1;

    if (item->kind != YT_MAP) {
        return config_where(w, item->line, k->name, "expected a list of mappings");
    }
    if (!config_map_only(w, item, k->name, allowed, 3)) {
        return false;
    }
    addr = config_map_get(item, "address", &line);
    weight = config_map_get(item, "weight", &wline);
    zone = config_map_get(item, "zone", &zline);
    if (addr == NULL) {
        return config_where(w, item->line, k->name, "a replica needs an address");
    }
    if (!addr_parse(&a, addr, msg, sizeof(msg))) {
        return config_where(w, line, "replicas.address", msg);
    }
    if (weight != NULL && (!config_parse_int(weight, &wv) || wv < 1 || wv > 1000)) {
        snprintf(msg, sizeof(msg), "%.64s is out of range (1..1000)", weight);
        return config_where(w, wline, "replicas.weight", msg);
    }
    if (!config_grow((void **)&cfg->replica_prefs, cfg->nreplica_prefs, sizeof(*rp), msg,
                     sizeof(msg))) {
        return config_where(w, line, k->name, msg);
    }
    rp = &cfg->replica_prefs[cfg->nreplica_prefs++];
    rp->weight = (int)wv;
    rp->address = malloc(ADDR_TEXT_MAX);
    rp->zone = zone != NULL ? strdup(zone) : NULL;
    if (rp->address == NULL || (zone != NULL && rp->zone == NULL)) {
        return config_where(w, line, k->name, "out of memory");
    }
    addr_format(&a, rp->address, ADDR_TEXT_MAX);
    return true;
}

static bool config_list_item(struct config_walk *w, const struct config_key *k,
                             const struct ynode *item)
{
    char msg[CONFIG_ERR_MAX];

    switch (k->type) {
    case CT_LISTEN:
        return config_listen_item(w, k, item);
    case CT_REPLICAS:
        return config_replica_item(w, k, item);
    default:
        if (item->kind != YT_SCALAR) {
            return config_where(w, item->line, k->name, "expected a list of addresses");
        }
        if (!config_add_sentinel(w->cfg, item->text, msg, sizeof(msg))) {
            return config_where(w, item->line, k->name, msg);
        }
        return true;
    }
}

static bool config_apply_node(struct config_walk *w, const struct config_key *k,
                              const struct ynode *v)
{
    char msg[CONFIG_ERR_MAX];
    bool list = k->type == CT_LISTEN || k->type == CT_ADDRLIST || k->type == CT_REPLICAS;

    if (list) {
        config_clear_list(w->cfg, k);
        if (v->kind != YT_SEQ) {
            return config_list_item(w, k, v); /* a single item is a list of one */
        }
        for (size_t i = 0; i < v->n; i++) {
            if (!config_list_item(w, k, v->items[i])) {
                return false;
            }
        }
        return true;
    }
    if (v->kind != YT_SCALAR) {
        return config_where(w, v->line, k->name, "expected a single value");
    }
    if (!config_set_scalar(w->cfg, k, v->text, msg, sizeof(msg))) {
        return config_where(w, v->line, k->name, msg);
    }
    return true;
}

static bool config_walk_map(struct config_walk *w, const struct ynode *map, const char *prefix)
{
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const struct ynode *key = map->items[i], *v = map->items[i + 1];
        char full[128];
        const struct config_key *k;
        snprintf(full, sizeof(full), "%s%s", prefix, key->text);
        k = config_find(full);
        if (k != NULL) {
            if (!config_apply_node(w, k, v)) {
                return false;
            }
            continue;
        }
        if (config_is_section(full)) {
            char sub[130];
            if (v->kind != YT_MAP) {
                return config_where(w, v->line, full, "expected a mapping");
            }
            snprintf(sub, sizeof(sub), "%s.", full);
            if (!config_walk_map(w, v, sub)) {
                return false;
            }
            continue;
        }
        return config_where(w, key->line, full, "unknown key");
    }
    return true;
}

bool config_load_string(struct config *cfg, const char *yaml, size_t len, const char *name,
                        char *err, size_t errlen)
{
    struct config_walk w = {cfg, name, err, errlen};
    char perr[CONFIG_ERR_MAX];
    struct ynode *root;
    bool ok;

    if (len > CONFIG_FILE_MAX) {
        snprintf(err, errlen, "%s: larger than %u bytes", name, CONFIG_FILE_MAX);
        return false;
    }
    root = yamltree_parse(yaml, len, perr, sizeof(perr));
    if (root == NULL) {
        snprintf(err, errlen, "%s:%s", name, perr);
        return false;
    }
    if (root->kind != YT_MAP) {
        snprintf(err, errlen, "%s:%d: the top level must be a mapping of keys", name, root->line);
        yamltree_free(root);
        return false;
    }
    ok = config_walk_map(&w, root, "");
    yamltree_free(root);
    if (ok && cfg->source == NULL) {
        cfg->source = strdup(name);
    }
    return ok;
}

bool config_load_file(struct config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t len;
    bool ok;

    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return false;
    }
    buf = malloc(CONFIG_FILE_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        snprintf(err, errlen, "%s: out of memory", path);
        return false;
    }
    len = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        ok = false;
    } else {
        ok = config_load_string(cfg, buf, len, path, err, errlen);
    }
    fclose(f);
    free(buf);
    return ok;
}

/* ---- flags ----------------------------------------------------------------- */

bool config_set(struct config *cfg, const char *key, const char *value, char *err, size_t errlen)
{
    const struct config_key *k = config_find(key);
    struct config_private *priv = cfg->priv;
    char msg[CONFIG_ERR_MAX];
    bool ok;

    if (k == NULL) {
        snprintf(err, errlen, "--%s: unknown key (see --help-config)", key);
        return false;
    }
    switch (k->type) {
    case CT_LISTEN:
    case CT_ADDRLIST:
        if (!priv->flag_set[k - config_keys]) {
            config_clear_list(cfg, k);
            priv->flag_set[k - config_keys] = true;
        }
        ok = k->type == CT_LISTEN ? config_add_listener(cfg, value, -1, msg, sizeof(msg))
                                  : config_add_sentinel(cfg, value, msg, sizeof(msg));
        break;
    case CT_REPLICAS:
        ok = config_fail(msg, sizeof(msg), "set it in the configuration file");
        break;
    default:
        ok = config_set_scalar(cfg, k, value, msg, sizeof(msg));
        break;
    }
    if (!ok) {
        snprintf(err, errlen, "--%s: %s", key, msg);
    }
    return ok;
}

/* ---- life cycle -------------------------------------------------------------- */

struct config *config_new(void)
{
    struct config *cfg = calloc(1, sizeof(*cfg));
    char msg[CONFIG_ERR_MAX];

    if (cfg == NULL || (cfg->priv = calloc(1, sizeof(struct config_private))) == NULL) {
        fprintf(stderr, "sentinel-proxy: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        if (config_keys[i].def != NULL &&
            !config_set_scalar(cfg, &config_keys[i], config_keys[i].def, msg, sizeof(msg))) {
            fprintf(stderr, "sentinel-proxy: bad default for %s: %s\n", config_keys[i].name, msg);
            abort();
        }
    }
    return cfg;
}

void config_free(struct config *cfg)
{
    if (cfg == NULL) {
        return;
    }
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const struct config_key *k = &config_keys[i];
        if (k->type == CT_STRING || k->type == CT_NAME) {
            free(*(char **)config_field(cfg, k));
        } else {
            config_clear_list(cfg, k);
        }
    }
    free(cfg->source);
    free(cfg->priv);
    free(cfg);
}

bool config_validate(struct config *cfg, char *err, size_t errlen)
{
    char a[ADDR_TEXT_MAX], b[ADDR_TEXT_MAX];

    if (cfg->has_backend && cfg->has_sentinel) {
        snprintf(err, errlen,
                 "backend and sentinel.master-name cannot both be set: backend is for setups "
                 "without Sentinel");
        return false;
    }
    if (!cfg->has_backend && !cfg->has_sentinel) {
        snprintf(err, errlen,
                 "no backend: set backend (a fixed Redis server) or sentinel.master-name and "
                 "sentinel.addresses");
        return false;
    }
    if (cfg->has_sentinel && cfg->nsentinels == 0) {
        snprintf(err, errlen, "sentinel.master-name needs at least one sentinel.addresses entry");
        return false;
    }
    if (!cfg->has_sentinel && cfg->nsentinels > 0) {
        snprintf(err, errlen, "sentinel.addresses needs sentinel.master-name");
        return false;
    }
    if (cfg->reconnect_min_ms > cfg->reconnect_max_ms) {
        snprintf(err, errlen, "reconnect-min must not be larger than reconnect-max");
        return false;
    }
    if ((cfg->backend_username != NULL) && cfg->backend_password == NULL) {
        snprintf(err, errlen, "backend-username needs backend-password");
        return false;
    }
    if ((cfg->sentinel_username != NULL) && cfg->sentinel_password == NULL) {
        snprintf(err, errlen, "sentinel.username needs sentinel.password");
        return false;
    }
    if (cfg->nlisteners == 0) {
        char msg[CONFIG_ERR_MAX];
        if (!config_add_listener(cfg, "127.0.0.1:6380", -1, msg, sizeof(msg))) {
            snprintf(err, errlen, "%s", msg);
            return false;
        }
    }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        for (size_t j = i + 1; j < cfg->nlisteners; j++) {
            if (addr_same(&cfg->listeners[i].addr, &cfg->listeners[j].addr)) {
                addr_format(&cfg->listeners[i].addr, a, sizeof(a));
                snprintf(err, errlen, "listen: %s appears twice", a);
                return false;
            }
        }
    }
    for (size_t i = 0; i < cfg->nsentinels; i++) {
        for (size_t j = i + 1; j < cfg->nsentinels; j++) {
            if (addr_same(&cfg->sentinels[i], &cfg->sentinels[j])) {
                addr_format(&cfg->sentinels[i], b, sizeof(b));
                snprintf(err, errlen, "sentinel.addresses: %s appears twice", b);
                return false;
            }
        }
    }
    return true;
}

static const char *config_type_name(int type)
{
    static const char *const names[] = {
        "integer",
        "integer|auto",
        "size",
        "duration",
        "bool",
        "string",
        "name",
        "address",
        "enum",
        "enum",
        "enum",
        "list",
        "list of addresses",
        "list of mappings",
    };
    return names[type];
}

static void config_format_amount(char *buf, size_t len, int type, int64_t v)
{
    static const struct {
        uint64_t mul;
        const char *size, *dur;
    } units[] = {{GB, "gb", NULL},         {MB, "mb", NULL},        {KB, "kb", NULL},
                 {86400 * SEC, NULL, "d"}, {3600 * SEC, NULL, "h"}, {60 * SEC, NULL, "m"},
                 {SEC, NULL, "s"}};

    for (size_t i = 0; v > 0 && i < sizeof(units) / sizeof(units[0]); i++) {
        const char *u = type == CT_SIZE ? units[i].size : units[i].dur;
        if (u != NULL && (uint64_t)v % units[i].mul == 0) {
            snprintf(buf, len, "%llu%s", (unsigned long long)((uint64_t)v / units[i].mul), u);
            return;
        }
    }
    snprintf(buf, len, "%lld%s", (long long)v, type == CT_DURATION && v > 0 ? "ms" : "");
}

void config_print_reference(FILE *out)
{
    fprintf(out, "| key | type | default | range | description |\n|---|---|---|---|---|\n");
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const struct config_key *k = &config_keys[i];
        char range[64] = "";
        if (k->type == CT_INT || k->type == CT_WORKERS) {
            snprintf(range, sizeof(range), "%lld..%lld", (long long)k->min, (long long)k->max);
        } else if (k->type == CT_SIZE || k->type == CT_DURATION) {
            char lo[24], hi[24];
            config_format_amount(lo, sizeof(lo), k->type, k->min);
            config_format_amount(hi, sizeof(hi), k->type, k->max);
            snprintf(range, sizeof(range), "%s..%s", lo, hi);
        }
        fprintf(out, "| `%s` | %s | %s | %s | %s |\n", k->name, config_type_name(k->type),
                k->def != NULL ? k->def : "-", range, k->doc);
    }
}
