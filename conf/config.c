/*
 * config.c - the configuration table, value parsing, the YAML loader, the
 * command-line overrides, cross-key validation and the reference.
 *
 * Every key is one row of config_keys[]: its dotted name, type, field,
 * default (as text, parsed by the same code as the file), bounds, whether it
 * could be changed by a reload, and a one-line description. Defaults, the
 * file, the flags, messages and --help-config all go through that table, so
 * they cannot disagree.
 *
 * Every input may be hostile: values are bounded before they are stored,
 * lists are capped, and the struct stays consistent (every pointer owned,
 * every count matching its array) after any error, so config_free is safe.
 */
#include "conf/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/yamltree.h"
#include "proxy/log.h"

#define CONFIG_FILE_MAX (1u << 20) /* bytes */
#define CONFIG_LIST_MAX 1024       /* items per list; keeps the pairwise checks cheap */
#define CONFIG_KEY_MAX  64         /* longer mapping keys cannot be ours */
#define CONFIG_SHOW_MAX 64         /* bytes of a value quoted in a message */
#define CONFIG_LISTEN   "127.0.0.1:6380"

#define SEC 1000LL
#define DAY (86400 * SEC)
#define KB  1024LL
#define MB  (1024 * KB)
#define GB  (1024 * MB)

enum config_type {
    CT_INT,      /* decimal integer (int) */
    CT_WORKERS,  /* integer or "auto" (0) */
    CT_SIZE,     /* bytes, with an optional unit (uint64_t) */
    CT_DURATION, /* milliseconds, with an optional unit (uint64_t) */
    CT_BOOL,
    CT_STRING,   /* any non-empty text */
    CT_NAME,     /* min..max bytes, no whitespace or control characters */
    CT_ADDR,     /* HOST:PORT, [IPv6]:PORT or unix:/path (struct addr) */
    CT_HOSTPORT, /* HOST:PORT or [IPv6]:PORT only */
    CT_LOGLEVEL, /* enum log_level, through log_level_parse() */
    CT_ENUM,     /* one of choices; the index is the value */
    CT_LISTEN,   /* list of listeners */
    CT_ADDRLIST, /* list of addresses */
    CT_REPLICAS, /* list of replica preferences */
};

struct config_key {
    const char *name;           /* dotted path */
    enum config_type type;      /* how the text is parsed */
    size_t off;                 /* the field in struct config (or in an item) */
    const char *def;            /* NULL: unset; lists: filled in by config_validate when empty */
    int64_t min, max;           /* numbers: bounds; names: length; lists: max items */
    const char *const *choices; /* CT_ENUM and CT_LOGLEVEL: the names, NULL-terminated */
    bool reload;                /* could change without a restart */
    const char *doc;
};

static const char *const config_read_from_names[] = {"master", "replicas", "prefer-replicas", NULL};
static const char *const config_balance_names[] = {"round-robin", "least-outstanding", "weighted",
                                                   NULL};
static const char *const config_log_names[] = {"debug", "info", "warn", "error", NULL};

#define OFF(field) offsetof(struct config, field)

static const struct config_key config_keys[] = {
    {"listen", CT_LISTEN, OFF(listeners), CONFIG_LISTEN, 0, CONFIG_LIST_MAX, NULL, false,
     "addresses to accept clients on, each a string or a mapping {address, read-from}"},
    {"workers", CT_WORKERS, OFF(workers), "1", 1, 256, NULL, false,
     "worker threads, each with its own event loop; auto = one per CPU"},
    {"max-clients", CT_INT, OFF(max_clients), "10000", 1, 1000000, NULL, true,
     "most client connections at once; more are refused with an error"},
    {"tcp-backlog", CT_INT, OFF(tcp_backlog), "511", 1, 65535, NULL, false,
     "listen(2) backlog of the listening sockets"},
    {"tcp-keepalive", CT_DURATION, OFF(tcp_keepalive_ms), "300s", 0, DAY, NULL, true,
     "TCP keepalive idle time on client and backend sockets (0 = off)"},
    {"client-idle-timeout", CT_DURATION, OFF(client_idle_timeout_ms), "0", 0, 30 * DAY, NULL, true,
     "close clients idle this long (0 = never)"},
    {"log-level", CT_LOGLEVEL, OFF(log_level), "info", 0, 0, config_log_names, true,
     "lowest level logged (warning is accepted for warn)"},
    {"backend", CT_ADDR, OFF(backend), NULL, 0, 0, NULL, false,
     "a fixed Redis server used as master, for setups without Sentinel"},
    {"backend-connections", CT_INT, OFF(backend_connections), "2", 1, 64, NULL, false,
     "shared connections per backend per worker that client requests are multiplexed over"},
    {"backend-username", CT_STRING, OFF(backend_username), NULL, 0, 0, NULL, false,
     "ACL user the proxy authenticates as on backends (needs backend-password)"},
    {"backend-password", CT_STRING, OFF(backend_password), NULL, 0, 0, NULL, false,
     "password the proxy authenticates with on backends"},
    {"connect-timeout", CT_DURATION, OFF(connect_timeout_ms), "1s", 1, 60 * SEC, NULL, true,
     "time allowed to connect to a backend"},
    {"reconnect-min", CT_DURATION, OFF(reconnect_min_ms), "100ms", 1, 60 * SEC, NULL, true,
     "first delay before reconnecting to a backend that is down; doubles on each failure"},
    {"reconnect-max", CT_DURATION, OFF(reconnect_max_ms), "2s", 1, 600 * SEC, NULL, true,
     "longest delay between reconnection attempts (at least reconnect-min)"},
    {"dedicated-spare", CT_INT, OFF(dedicated_spare), "4", 0, 1000, NULL, true,
     "idle dedicated connections kept per backend per worker for sessions with state"},
    {"hold-timeout", CT_DURATION, OFF(hold_timeout_ms), "60s", 0, 600 * SEC, NULL, true,
     "how long a request waits for a usable master (failover, backend down) before an error"},
    {"hold-memory", CT_SIZE, OFF(hold_memory), "64mb", 0, 64 * GB, NULL, true,
     "bytes of waiting requests per worker; beyond it new requests fail at once"},
    {"proto-max-bulk-len", CT_SIZE, OFF(proto_max_bulk_len), "512mb", MB, 64 * GB, NULL, false,
     "longest bulk string argument accepted from a client"},
    {"client-query-buffer-limit", CT_SIZE, OFF(client_query_buffer_limit), "1gb", MB, 64 * GB, NULL,
     true, "longest single request; a client sending more is disconnected"},
    {"client-backlog-limit", CT_SIZE, OFF(client_backlog_limit), "1mb", 16 * KB, GB, NULL, true,
     "bytes of a client's queued requests and unsent replies before reading from it pauses"},
    {"client-output-limit", CT_SIZE, OFF(client_output_limit), "1gb", MB, 64 * GB, NULL, true,
     "bytes of unsent replies before a client is disconnected"},
    {"sentinel.master-name", CT_NAME, OFF(master_name), NULL, 1, 255, NULL, false,
     "the master's name as configured in the Sentinels; setting it enables Sentinel mode"},
    {"sentinel.addresses", CT_ADDRLIST, OFF(sentinels), NULL, 0, CONFIG_LIST_MAX, NULL, false,
     "Sentinels to ask first (more are learnt from them)"},
    {"sentinel.username", CT_STRING, OFF(sentinel_username), NULL, 0, 0, NULL, false,
     "ACL user for the Sentinels (needs sentinel.password)"},
    {"sentinel.password", CT_STRING, OFF(sentinel_password), NULL, 0, 0, NULL, false,
     "password for the Sentinels"},
    {"sentinel.timeout", CT_DURATION, OFF(sentinel_timeout_ms), "500ms", 10, 60 * SEC, NULL, true,
     "time allowed for each answer from a Sentinel or instance"},
    {"sentinel.poll-interval", CT_DURATION, OFF(sentinel_poll_ms), "1s", 100, 60 * SEC, NULL, true,
     "how often every Sentinel is asked, events or not"},
    {"sentinel.forget-after", CT_DURATION, OFF(sentinel_forget_ms), "5m", SEC, 30 * DAY, NULL, true,
     "forget a learnt Sentinel that has been gone this long"},
    {"read-from", CT_ENUM, OFF(read_from), "prefer-replicas", 0, 0, config_read_from_names, true,
     "where read-only commands go; prefer-replicas falls back to the master"},
    {"balance", CT_ENUM, OFF(balance), "least-outstanding", 0, 0, config_balance_names, true,
     "how a replica is chosen among the healthy ones"},
    {"read-your-writes", CT_BOOL, OFF(read_your_writes), "true", 0, 0, NULL, true,
     "after a client's write, its reads go only to replicas that have replicated it"},
    {"max-replica-lag", CT_SIZE, OFF(max_replica_lag), "1mb", 0, 64 * GB, NULL, true,
     "replicas further behind the master's replication offset serve no reads (0 = no limit)"},
    {"zone", CT_NAME, OFF(zone), NULL, 1, 31, NULL, true,
     "this proxy's zone: replicas in the same zone are preferred"},
    {"replicas", CT_REPLICAS, OFF(replica_prefs), NULL, 0, CONFIG_LIST_MAX, NULL, true,
     "per-replica settings, each {address: HOST:PORT, weight: 1..1000 (1), zone: NAME}"},
};

#define CONFIG_NKEYS (sizeof(config_keys) / sizeof(config_keys[0]))

/* Fields of list items, described like keys so that they are parsed, bounded
 * and reported the same way (offsets are into the item). */
enum { ITEM_READ_FROM, ITEM_ADDRESS, ITEM_WEIGHT, ITEM_ZONE };
static const struct config_key config_item_keys[] = {
    {"listen.read-from", CT_ENUM, offsetof(struct config_listener, read_from), NULL, 0, 0,
     config_read_from_names, false, NULL},
    {"replicas.address", CT_HOSTPORT, 0, NULL, 0, 0, NULL, true, NULL},
    {"replicas.weight", CT_INT, offsetof(struct config_replica_pref, weight), "1", 1, 1000, NULL,
     true, NULL},
    {"replicas.zone", CT_NAME, offsetof(struct config_replica_pref, zone), NULL, 1, 31, NULL, true,
     NULL},
};

/* The loader's bookkeeping behind cfg->priv. */
struct config_private {
    bool flag_replaced[CONFIG_NKEYS]; /* a flag has already replaced the file's list */
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

/* True when name is a section such as "sentinel" (a prefix of dotted keys). */
static bool config_is_section(const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        if (strncmp(config_keys[i].name, name, n) == 0 && config_keys[i].name[n] == '.') {
            return true;
        }
    }
    return false;
}

static bool config_is_list(const struct config_key *k)
{
    return k->type == CT_LISTEN || k->type == CT_ADDRLIST || k->type == CT_REPLICAS;
}

/* ---- messages -------------------------------------------------------------- */

static bool __attribute__((format(printf, 3, 4)))
config_fail(char *msg, size_t len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, len, fmt, ap);
    va_end(ap);
    return false;
}

/* A value as quoted in a message: cut short, control characters masked, so
 * that a hostile value cannot forge extra lines in the log. */
static const char *config_show(const char *s, char *buf, size_t len)
{
    size_t i;

    for (i = 0; s[i] != '\0' && i + 1 < len && i < CONFIG_SHOW_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = (char)(c < 0x20 || c == 0x7f ? '?' : c);
    }
    buf[i] = '\0';
    if (s[i] != '\0' && i >= 3) {
        memcpy(buf + i - 3, "...", 3);
    }
    return buf;
}

/* "a, b or c" from a NULL-terminated list. */
static void config_join(const char *const *names, char *buf, size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; names[i] != NULL && used < len; i++) {
        const char *sep = i == 0 ? "" : names[i + 1] == NULL ? " or " : ", ";
        int n = snprintf(buf + used, len - used, "%s%s", sep, names[i]);
        used += n > 0 ? (size_t)n : 0;
    }
}

/* Write an amount in the largest unit that divides it exactly ("64mb", "5m"). */
static void config_format_amount(char *buf, size_t len, enum config_type type, int64_t v)
{
    static const struct {
        int64_t mul;
        const char *size, *duration;
    } units[] = {{GB, "gb", NULL},        {MB, "mb", NULL},      {KB, "kb", NULL}, {DAY, NULL, "d"},
                 {3600 * SEC, NULL, "h"}, {60 * SEC, NULL, "m"}, {SEC, NULL, "s"}, {1, NULL, "ms"}};

    for (size_t i = 0; v > 0 && i < sizeof(units) / sizeof(units[0]); i++) {
        const char *u = type == CT_SIZE ? units[i].size : units[i].duration;
        if (u != NULL && v % units[i].mul == 0) {
            snprintf(buf, len, "%lld%s", (long long)(v / units[i].mul), u);
            return;
        }
    }
    snprintf(buf, len, "%lld", (long long)v);
}

/* The accepted values of a key, for messages and the reference. */
static void config_bounds(const struct config_key *k, char *buf, size_t len)
{
    char lo[32], hi[32];

    switch (k->type) {
    case CT_INT:
        snprintf(buf, len, "%lld..%lld", (long long)k->min, (long long)k->max);
        return;
    case CT_WORKERS:
        snprintf(buf, len, "%lld..%lld or auto", (long long)k->min, (long long)k->max);
        return;
    case CT_SIZE:
    case CT_DURATION:
        config_format_amount(lo, sizeof(lo), k->type, k->min);
        config_format_amount(hi, sizeof(hi), k->type, k->max);
        snprintf(buf, len, "%s..%s", lo, hi);
        return;
    case CT_NAME:
        snprintf(buf, len, "%lld..%lld bytes, no whitespace", (long long)k->min, (long long)k->max);
        return;
    case CT_ENUM:
    case CT_LOGLEVEL:
        config_join(k->choices, buf, len);
        return;
    case CT_LISTEN:
    case CT_ADDRLIST:
    case CT_REPLICAS:
        snprintf(buf, len, "at most %lld items", (long long)k->max);
        return;
    case CT_BOOL:
        snprintf(buf, len, "true or false");
        return;
    case CT_STRING:
        snprintf(buf, len, "non-empty");
        return;
    default:
        snprintf(buf, len, "-");
        return;
    }
}

/* ---- scalar values --------------------------------------------------------- */

enum config_num { NUM_OK, NUM_BAD, NUM_BIG };

/* Decimal digits, then a unit from the table (case-insensitive). */
static enum config_num config_parse_amount(const char *s, const char *const *units,
                                           const int64_t *muls, uint64_t *out)
{
    const char *p = s;
    bool big = false;
    uint64_t v = 0;

    if (*p < '0' || *p > '9') {
        return NUM_BAD;
    }
    for (; *p >= '0' && *p <= '9'; p++) {
        big = big || v > (UINT64_MAX - 9) / 10;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    for (size_t i = 0; units[i] != NULL; i++) {
        if (strcasecmp(p, units[i]) != 0) {
            continue;
        }
        /* Syntax first, so that "99999999999999999999xb" is not "too big". */
        if (big || v > UINT64_MAX / (uint64_t)muls[i]) {
            return NUM_BIG;
        }
        *out = v * (uint64_t)muls[i];
        return NUM_OK;
    }
    return NUM_BAD;
}

static enum config_num config_parse_size(const char *s, uint64_t *out)
{
    static const char *const units[] = {"", "k", "kb", "m", "mb", "g", "gb", NULL};
    static const int64_t muls[] = {1, 1000, KB, 1000000, MB, 1000000000, GB};

    return config_parse_amount(s, units, muls, out);
}

static enum config_num config_parse_duration(const char *s, uint64_t *out)
{
    static const char *const units[] = {"", "ms", "s", "m", "h", "d", NULL};
    static const int64_t muls[] = {1, 1, SEC, 60 * SEC, 3600 * SEC, DAY};

    return config_parse_amount(s, units, muls, out);
}

/* A decimal integer with an optional minus sign. */
static enum config_num config_parse_int(const char *s, int64_t *out)
{
    static const char *const units[] = {"", NULL};
    static const int64_t muls[] = {1};
    const char *digits = s[0] == '-' ? s + 1 : s;
    enum config_num r;
    uint64_t v = 0;

    r = config_parse_amount(digits, units, muls, &v);
    if (r == NUM_OK && v > INT64_MAX) {
        r = NUM_BIG;
    }
    if (r == NUM_OK) {
        *out = s[0] == '-' ? -(int64_t)v : (int64_t)v;
    }
    return r;
}

static bool config_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};

    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0 || strcasecmp(s, no[i]) == 0) {
            *out = strcasecmp(s, yes[i]) == 0;
            return true;
        }
    }
    return false;
}

static int config_parse_enum(const char *s, const char *const *names)
{
    for (int i = 0; names[i] != NULL; i++) {
        if (strcmp(s, names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

/* addr_parse, plus what it leaves to the caller: no control characters, no
 * spaces in host names, no port 0, and (tcp_only) no unix sockets. */
static bool config_parse_addr(struct addr *a, const char *s, bool tcp_only, char *msg, size_t len)
{
    bool unix_path = strncmp(s, "unix:", 5) == 0;
    char show[CONFIG_SHOW_MAX + 1];
    struct addr tmp;

    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p < 0x20 || *p == 0x7f || (*p == ' ' && !unix_path)) {
            return config_fail(msg, len, "expected HOST:PORT or unix:/path, got '%s'",
                               config_show(s, show, sizeof(show)));
        }
    }
    if (tcp_only && unix_path) {
        return config_fail(msg, len, "expected HOST:PORT or [IPv6]:PORT, got '%s'",
                           config_show(s, show, sizeof(show)));
    }
    if (!addr_parse(&tmp, s, msg, len)) {
        return false;
    }
    if (!unix_path && tmp.port == 0) {
        return config_fail(msg, len, "port 0 is not allowed in '%s'",
                           config_show(s, show, sizeof(show)));
    }
    *a = tmp; /* only now: a failed flag leaves the previous value */
    return true;
}

/* Replace the string at *dst with a copy of s. */
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

static bool config_parse_name(const struct config_key *k, const char *s, char **dst, char *msg,
                              size_t len)
{
    size_t n = strlen(s);
    char show[CONFIG_SHOW_MAX + 1];

    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p <= ' ' || *p == 0x7f) {
            n = 0; /* refused like an empty name */
            break;
        }
    }
    if (n < (size_t)k->min || n > (size_t)k->max) {
        return config_fail(msg, len,
                           "expected %lld..%lld bytes without whitespace or control characters, "
                           "got '%s'",
                           (long long)k->min, (long long)k->max,
                           config_show(s, show, sizeof(show)));
    }
    return config_set_string(dst, s, msg, len);
}

/* Numbers of every kind: parse, then check the key's bounds. */
static bool config_parse_number(const struct config_key *k, const char *s, void *dst, char *msg,
                                size_t len)
{
    char show[CONFIG_SHOW_MAX + 1], bounds[64];
    enum config_num r;
    int64_t v = 0;
    uint64_t u = 0;

    if (k->type == CT_WORKERS && strcmp(s, "auto") == 0) {
        *(int *)dst = 0;
        return true;
    }
    if (k->type == CT_SIZE || k->type == CT_DURATION) {
        r = k->type == CT_SIZE ? config_parse_size(s, &u) : config_parse_duration(s, &u);
        v = u > INT64_MAX ? INT64_MAX : (int64_t)u;
    } else {
        r = config_parse_int(s, &v);
    }
    config_show(s, show, sizeof(show));
    if (r == NUM_BAD) {
        return config_fail(msg, len, "expected %s, got '%s'",
                           k->type == CT_SIZE       ? "a size such as 64kb or 512mb"
                           : k->type == CT_DURATION ? "a duration such as 500ms or 2s"
                           : k->type == CT_WORKERS  ? "an integer or auto"
                                                    : "an integer",
                           show);
    }
    if (r == NUM_BIG || v < k->min || v > k->max) {
        config_bounds(k, bounds, sizeof(bounds));
        return config_fail(msg, len, "%s is out of range (%s)", show, bounds);
    }
    if (k->type == CT_SIZE || k->type == CT_DURATION) {
        *(uint64_t *)dst = u;
    } else {
        *(int *)dst = (int)v;
    }
    return true;
}

/* Parse the text of a scalar-typed key into dst, the field it describes. */
static bool config_parse_scalar(const struct config_key *k, const char *s, void *dst, char *msg,
                                size_t len)
{
    char show[CONFIG_SHOW_MAX + 1], names[96];
    int e;

    switch (k->type) {
    case CT_BOOL:
        if (!config_parse_bool(s, (bool *)dst)) {
            return config_fail(msg, len, "expected true or false, got '%s'",
                               config_show(s, show, sizeof(show)));
        }
        return true;
    case CT_STRING:
        if (s[0] == '\0') {
            return config_fail(msg, len, "expected a non-empty string");
        }
        return config_set_string((char **)dst, s, msg, len);
    case CT_NAME:
        return config_parse_name(k, s, (char **)dst, msg, len);
    case CT_ADDR:
    case CT_HOSTPORT:
        return config_parse_addr((struct addr *)dst, s, k->type == CT_HOSTPORT, msg, len);
    case CT_LOGLEVEL:
    case CT_ENUM:
        e = k->type == CT_LOGLEVEL ? log_level_parse(s) : config_parse_enum(s, k->choices);
        if (e < 0) {
            config_join(k->choices, names, sizeof(names));
            return config_fail(msg, len, "expected %s, got '%s'", names,
                               config_show(s, show, sizeof(show)));
        }
        *(int *)dst = e;
        return true;
    case CT_INT:
    case CT_WORKERS:
    case CT_SIZE:
    case CT_DURATION:
        return config_parse_number(k, s, dst, msg, len);
    default:
        return config_fail(msg, len, "expected a list");
    }
}

/* ---- lists ----------------------------------------------------------------- */

/* Make room for one more zeroed item at the end of *arr (n items now). */
static bool config_grow(const struct config_key *k, void **arr, size_t n, size_t size, char *msg,
                        size_t len)
{
    void *p;

    if (n >= (size_t)k->max) {
        return config_fail(msg, len, "more than %lld items", (long long)k->max);
    }
    p = realloc(*arr, (n + 1) * size);
    if (p == NULL) {
        return config_fail(msg, len, "out of memory");
    }
    *arr = p;
    memset((char *)p + n * size, 0, size);
    return true;
}

static bool config_add_listener(struct config *cfg, const char *text, int read_from, char *msg,
                                size_t len)
{
    const struct config_key *k = &config_keys[0];
    struct config_listener *l;

    if (!config_grow(k, (void **)&cfg->listeners, cfg->nlisteners, sizeof(*l), msg, len)) {
        return false;
    }
    l = &cfg->listeners[cfg->nlisteners];
    if (!config_parse_addr(&l->addr, text, false, msg, len)) {
        return false;
    }
    l->read_from = read_from;
    cfg->nlisteners++;
    return true;
}

static bool config_add_sentinel(struct config *cfg, const struct config_key *k, const char *text,
                                char *msg, size_t len)
{
    if (!config_grow(k, (void **)&cfg->sentinels, cfg->nsentinels, sizeof(struct addr), msg, len)) {
        return false;
    }
    if (!config_parse_addr(&cfg->sentinels[cfg->nsentinels], text, false, msg, len)) {
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

/* has_backend and has_sentinel follow the values, whichever way they were set. */
static void config_sync(struct config *cfg)
{
    cfg->has_backend = cfg->backend.host[0] != '\0';
    cfg->has_sentinel = cfg->master_name != NULL;
}

/* ---- the YAML walk ------------------------------------------------------------ */

struct config_walk {
    struct config *cfg;
    const char *file;
    char *err;
    size_t errlen;
};

/* "FILE:LINE: KEY: problem" */
static bool __attribute__((format(printf, 4, 5)))
config_where(const struct config_walk *w, int line, const char *key, const char *fmt, ...)
{
    char msg[CONFIG_ERR_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(w->err, w->errlen, "%s:%d: %s: %s", w->file, line, key, msg);
    return false;
}

/* True when key i of a mapping already appeared before it. */
static bool config_seen_before(const struct yamltree_node *map, size_t i)
{
    for (size_t j = 0; j < i; j += 2) {
        if (strcmp(map->items[j]->text, map->items[i]->text) == 0) {
            return true;
        }
    }
    return false;
}

/* The full dotted name of a mapping key, made safe to print; false when the
 * key is too long to be one of ours. */
static bool config_full_name(const char *prefix, const char *key, char *buf, size_t len)
{
    char show[CONFIG_SHOW_MAX + 1];

    snprintf(buf, len, "%s%s", prefix, config_show(key, show, sizeof(show)));
    return strlen(key) <= CONFIG_KEY_MAX;
}

/*
 * Check an item mapping of a list (a listener, a replica) and pick out its
 * scalar fields: vals[i] is the value of names[i], or NULL when absent.
 */
static bool config_item_fields(const struct config_walk *w, const struct yamltree_node *map,
                               const char *list, const char *const *names,
                               const struct yamltree_node **vals)
{
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const struct yamltree_node *key = map->items[i], *v = map->items[i + 1];
        char prefix[32], full[CONFIG_KEY_MAX * 2];
        int f = -1;
        snprintf(prefix, sizeof(prefix), "%s.", list);
        if (config_full_name(prefix, key->text, full, sizeof(full))) {
            f = config_parse_enum(key->text, names);
        }
        if (f < 0) {
            return config_where(w, key->line, full, "unknown key");
        }
        if (vals[f] != NULL) {
            return config_where(w, key->line, full, "duplicate key");
        }
        if (v->kind != YAMLTREE_SCALAR || yamltree_is_null(v)) {
            return config_where(w, v->line, full, "expected a single value, got %s",
                                yamltree_is_null(v) ? "nothing" : yamltree_kind_name(v));
        }
        vals[f] = v;
    }
    return true;
}

static bool config_listen_item(const struct config_walk *w, const struct config_key *k,
                               const struct yamltree_node *item)
{
    static const char *const names[] = {"address", "read-from", NULL};
    const struct yamltree_node *vals[2] = {NULL, NULL};
    char msg[CONFIG_ERR_MAX];
    int read_from = -1;

    if (item->kind == YAMLTREE_SCALAR) {
        if (!config_add_listener(w->cfg, item->text, -1, msg, sizeof(msg))) {
            return config_where(w, item->line, k->name, "%s", msg);
        }
        return true;
    }
    if (item->kind != YAMLTREE_MAP) {
        return config_where(w, item->line, k->name, "expected a list of addresses");
    }
    if (!config_item_fields(w, item, k->name, names, vals)) {
        return false;
    }
    if (vals[0] == NULL) {
        return config_where(w, item->line, k->name, "a listener mapping needs an address");
    }
    if (vals[1] != NULL && !config_parse_scalar(&config_item_keys[ITEM_READ_FROM], vals[1]->text,
                                                &read_from, msg, sizeof(msg))) {
        return config_where(w, vals[1]->line, config_item_keys[ITEM_READ_FROM].name, "%s", msg);
    }
    if (!config_add_listener(w->cfg, vals[0]->text, read_from, msg, sizeof(msg))) {
        return config_where(w, vals[0]->line, "listen.address", "%s", msg);
    }
    return true;
}

static bool config_replica_item(const struct config_walk *w, const struct config_key *k,
                                const struct yamltree_node *item)
{
    static const char *const names[] = {"address", "weight", "zone", NULL};
    const struct config_key *address = &config_item_keys[ITEM_ADDRESS];
    const struct yamltree_node *vals[3] = {NULL, NULL, NULL};
    struct config *cfg = w->cfg;
    struct config_replica_pref *rp;
    char msg[CONFIG_ERR_MAX], text[ADDR_TEXT_MAX];
    struct addr a;

    if (item->kind != YAMLTREE_MAP) {
        return config_where(w, item->line, k->name, "expected a list of mappings");
    }
    if (!config_item_fields(w, item, k->name, names, vals)) {
        return false;
    }
    if (vals[0] == NULL) {
        return config_where(w, item->line, k->name, "a replica needs an address");
    }
    if (!config_parse_scalar(address, vals[0]->text, &a, msg, sizeof(msg))) {
        return config_where(w, vals[0]->line, address->name, "%s", msg);
    }
    /* Keyed by the canonical text, as the Sentinel code formats replicas. */
    addr_format(&a, text, sizeof(text));
    for (size_t i = 0; i < cfg->nreplica_prefs; i++) {
        if (strcmp(cfg->replica_prefs[i].address, text) == 0) {
            return config_where(w, vals[0]->line, address->name, "%s appears twice", text);
        }
    }
    if (!config_grow(k, (void **)&cfg->replica_prefs, cfg->nreplica_prefs, sizeof(*rp), msg,
                     sizeof(msg))) {
        return config_where(w, item->line, k->name, "%s", msg);
    }
    /* Counted at once, so that config_free releases what follows on any error. */
    rp = &cfg->replica_prefs[cfg->nreplica_prefs++];
    rp->weight = 1;
    if (!config_set_string(&rp->address, text, msg, sizeof(msg))) {
        return config_where(w, vals[0]->line, address->name, "%s", msg);
    }
    for (size_t i = 1; i < 3; i++) {
        const struct config_key *f = &config_item_keys[ITEM_ADDRESS + i];
        if (vals[i] != NULL &&
            !config_parse_scalar(f, vals[i]->text, (char *)rp + f->off, msg, sizeof(msg))) {
            return config_where(w, vals[i]->line, f->name, "%s", msg);
        }
    }
    return true;
}

static bool config_list_item(const struct config_walk *w, const struct config_key *k,
                             const struct yamltree_node *item)
{
    char msg[CONFIG_ERR_MAX];

    if (k->type == CT_LISTEN) {
        return config_listen_item(w, k, item);
    }
    if (k->type == CT_REPLICAS) {
        return config_replica_item(w, k, item);
    }
    if (item->kind != YAMLTREE_SCALAR) {
        return config_where(w, item->line, k->name, "expected a list of addresses");
    }
    if (!config_add_sentinel(w->cfg, k, item->text, msg, sizeof(msg))) {
        return config_where(w, item->line, k->name, "%s", msg);
    }
    return true;
}

/* A list key from the file replaces the list; null is an empty list, and a
 * single address stands for a list of one. */
static bool config_apply_list(const struct config_walk *w, const struct config_key *k,
                              const struct yamltree_node *v)
{
    config_clear_list(w->cfg, k);
    if (yamltree_is_null(v)) {
        return true;
    }
    if (v->kind == YAMLTREE_SCALAR && k->type != CT_REPLICAS) {
        return config_list_item(w, k, v);
    }
    if (v->kind != YAMLTREE_SEQ) {
        return config_where(w, v->line, k->name, "expected a list of %s",
                            k->type == CT_REPLICAS ? "mappings" : "addresses");
    }
    for (size_t i = 0; i < v->n; i++) {
        if (!config_list_item(w, k, v->items[i])) {
            return false;
        }
    }
    return true;
}

static bool config_apply(const struct config_walk *w, const struct config_key *k,
                         const struct yamltree_node *v)
{
    char msg[CONFIG_ERR_MAX];

    if (config_is_list(k)) {
        return config_apply_list(w, k, v);
    }
    if (v->kind != YAMLTREE_SCALAR) {
        return config_where(w, v->line, k->name, "expected a single value, got %s",
                            yamltree_kind_name(v));
    }
    if (yamltree_is_null(v)) {
        return config_where(w, v->line, k->name, "missing value");
    }
    if (!config_parse_scalar(k, v->text, (char *)w->cfg + k->off, msg, sizeof(msg))) {
        return config_where(w, v->line, k->name, "%s", msg);
    }
    return true;
}

static bool config_walk_map(const struct config_walk *w, const struct yamltree_node *map,
                            const char *prefix);

/* A section's value: a mapping of its keys, or null for none. */
static bool config_walk_section(const struct config_walk *w, const char *name,
                                const struct yamltree_node *v)
{
    char prefix[CONFIG_KEY_MAX * 2 + 1];

    if (yamltree_is_null(v)) {
        return true;
    }
    if (v->kind != YAMLTREE_MAP) {
        return config_where(w, v->line, name, "expected a mapping, got %s", yamltree_kind_name(v));
    }
    snprintf(prefix, sizeof(prefix), "%s.", name);
    return config_walk_map(w, v, prefix);
}

/* Walk a mapping of keys (the top level or a section such as "sentinel."). */
static bool config_walk_map(const struct config_walk *w, const struct yamltree_node *map,
                            const char *prefix)
{
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const struct yamltree_node *key = map->items[i], *v = map->items[i + 1];
        char full[CONFIG_KEY_MAX * 2];
        const struct config_key *k = NULL;
        bool section = false;
        if (config_full_name(prefix, key->text, full, sizeof(full))) {
            k = config_find(full);
            section = k == NULL && config_is_section(full);
        }
        if (k == NULL && !section) {
            return config_where(w, key->line, full, "unknown key");
        }
        /* Earlier keys are all known and distinct, so this scan stays short. */
        if (config_seen_before(map, i)) {
            return config_where(w, key->line, full, "duplicate key");
        }
        if (k != NULL ? !config_apply(w, k, v) : !config_walk_section(w, full, v)) {
            return false;
        }
    }
    return true;
}

/* ---- loading ------------------------------------------------------------------ */

bool config_load_string(struct config *cfg, const char *yaml, size_t len, const char *name,
                        char *err, size_t errlen)
{
    struct config_walk w = {cfg, name != NULL ? name : "(config)", err, errlen};
    char msg[CONFIG_ERR_MAX];
    struct yamltree_node *root;
    int line;
    bool ok;

    if (len > CONFIG_FILE_MAX) {
        snprintf(err, errlen, "%s: larger than %u bytes", w.file, CONFIG_FILE_MAX);
        return false;
    }
    root = yamltree_parse(yaml, len, &line, msg, sizeof(msg));
    if (root == NULL) {
        snprintf(err, errlen, "%s:%d: %s", w.file, line > 0 ? line : 1, msg);
        return false;
    }
    if (root->kind != YAMLTREE_MAP) {
        snprintf(err, errlen, "%s:%d: the top level must be a mapping of keys, not %s", w.file,
                 root->line, root->kind == YAMLTREE_SEQ ? "a list" : "a single value");
        yamltree_free(root);
        return false;
    }
    ok = config_walk_map(&w, root, "");
    yamltree_free(root);
    config_sync(cfg);
    if (ok && !config_set_string(&cfg->source, w.file, msg, sizeof(msg))) {
        snprintf(err, errlen, "%s: %s", w.file, msg);
        return false;
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
    /* One byte more than allowed, so that a file too large is noticed. */
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

/* ---- flags ------------------------------------------------------------------ */

static bool config_set_value(struct config *cfg, const struct config_key *k, const char *value,
                             char *msg, size_t len)
{
    struct config_private *priv = cfg->priv;
    size_t i = (size_t)(k - config_keys);

    if (k->type == CT_REPLICAS) {
        return config_fail(msg, len, "a list of mappings; set it in the configuration file");
    }
    if (!config_is_list(k)) {
        return config_parse_scalar(k, value, (char *)cfg + k->off, msg, len);
    }
    if (!priv->flag_replaced[i]) {
        /* The first flag for a list replaces the file's list; later ones add. */
        config_clear_list(cfg, k);
        priv->flag_replaced[i] = true;
    }
    if (k->type == CT_LISTEN) {
        return config_add_listener(cfg, value, -1, msg, len);
    }
    return config_add_sentinel(cfg, k, value, msg, len);
}

bool config_set(struct config *cfg, const char *key, const char *value, char *err, size_t errlen)
{
    const struct config_key *k = config_find(key);
    char msg[CONFIG_ERR_MAX], show[CONFIG_SHOW_MAX + 1];
    bool ok;

    config_show(key, show, sizeof(show));
    if (k == NULL) {
        snprintf(err, errlen, "--%s: %s", show,
                 config_is_section(key) ? "a section; set its keys as SECTION.KEY"
                                        : "unknown key (see --help-config)");
        return false;
    }
    if (value == NULL) {
        snprintf(err, errlen, "--%s: missing value", show);
        return false;
    }
    ok = config_set_value(cfg, k, value, msg, sizeof(msg));
    config_sync(cfg);
    if (!ok) {
        snprintf(err, errlen, "--%s: %s", show, msg);
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
        const struct config_key *k = &config_keys[i];
        if (k->def == NULL || config_is_list(k)) {
            continue;
        }
        if (!config_parse_scalar(k, k->def, (char *)cfg + k->off, msg, sizeof(msg))) {
            /* The table itself is wrong: no configuration can be trusted. */
            fprintf(stderr, "sentinel-proxy: bad default for %s: %s\n", k->name, msg);
            abort();
        }
    }
    config_sync(cfg);
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
            free(*(char **)((char *)cfg + k->off));
        } else if (config_is_list(k)) {
            config_clear_list(cfg, k);
        }
    }
    free(cfg->source);
    free(cfg->priv);
    free(cfg);
}

/* ---- validation -------------------------------------------------------------- */

/* True when address j of an array (stride bytes apart) equals an earlier one. */
static bool config_addr_repeated(const char *base, size_t j, size_t stride)
{
    for (size_t i = 0; i < j; i++) {
        if (addr_same((const struct addr *)(base + i * stride),
                      (const struct addr *)(base + j * stride))) {
            return true;
        }
    }
    return false;
}

/* The first address that repeats an earlier one, formatted into buf. */
static bool config_find_twice(const struct addr *a, size_t n, size_t stride, char *buf, size_t len)
{
    for (size_t j = 1; j < n; j++) {
        if (config_addr_repeated((const char *)a, j, stride)) {
            addr_format((const struct addr *)((const char *)a + j * stride), buf, len);
            return true;
        }
    }
    return false;
}

bool config_validate(struct config *cfg, char *err, size_t errlen)
{
    char a[ADDR_TEXT_MAX], b[32];

    config_sync(cfg);
    if (cfg->has_backend && cfg->has_sentinel) {
        return config_fail(err, errlen,
                           "backend and sentinel.master-name cannot both be set: backend is for "
                           "setups without Sentinel");
    }
    if (!cfg->has_sentinel && cfg->nsentinels > 0) {
        return config_fail(err, errlen, "sentinel.addresses needs sentinel.master-name");
    }
    if (!cfg->has_backend && !cfg->has_sentinel) {
        return config_fail(err, errlen,
                           "no backend: set backend (a fixed Redis server) or sentinel.master-name "
                           "and sentinel.addresses");
    }
    if (cfg->has_sentinel && cfg->nsentinels == 0) {
        return config_fail(err, errlen,
                           "sentinel.master-name needs at least one address in sentinel.addresses");
    }
    if (cfg->reconnect_min_ms > cfg->reconnect_max_ms) {
        config_format_amount(a, sizeof(a), CT_DURATION, (int64_t)cfg->reconnect_min_ms);
        config_format_amount(b, sizeof(b), CT_DURATION, (int64_t)cfg->reconnect_max_ms);
        return config_fail(err, errlen, "reconnect-min (%s) is larger than reconnect-max (%s)", a,
                           b);
    }
    /* Redis has no user without a password: AUTH always takes one. */
    if (cfg->backend_username != NULL && cfg->backend_password == NULL) {
        return config_fail(err, errlen, "backend-username needs backend-password");
    }
    if (cfg->sentinel_username != NULL && cfg->sentinel_password == NULL) {
        return config_fail(err, errlen, "sentinel.username needs sentinel.password");
    }
    if (cfg->nlisteners == 0 && !config_add_listener(cfg, config_keys[0].def, -1, err, errlen)) {
        return false;
    }
    if (config_find_twice(&cfg->listeners[0].addr, cfg->nlisteners, sizeof(*cfg->listeners), a,
                          sizeof(a))) {
        return config_fail(err, errlen, "listen: %s appears twice", a);
    }
    if (config_find_twice(cfg->sentinels, cfg->nsentinels, sizeof(*cfg->sentinels), a, sizeof(a))) {
        return config_fail(err, errlen, "sentinel.addresses: %s appears twice", a);
    }
    return true;
}

/* ---- reference ---------------------------------------------------------------- */

static const char *config_type_name(enum config_type type)
{
    static const char *const names[] = {"integer",
                                        "integer or auto",
                                        "size",
                                        "duration",
                                        "boolean",
                                        "string",
                                        "string",
                                        "address",
                                        "address",
                                        "enum",
                                        "enum",
                                        "list of addresses",
                                        "list of addresses",
                                        "list of mappings"};

    return names[type];
}

void config_print_reference(FILE *out)
{
    fprintf(out, "| key | type | default | bounds | description |\n");
    fprintf(out, "|---|---|---|---|---|\n");
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const struct config_key *k = &config_keys[i];
        char bounds[96];
        config_bounds(k, bounds, sizeof(bounds));
        fprintf(out, "| `%s` | %s | %s%s%s | %s | %s |\n", k->name, config_type_name(k->type),
                k->def != NULL ? "`" : "", k->def != NULL ? k->def : "-", k->def != NULL ? "`" : "",
                bounds, k->doc);
    }
}
