/*
 * config.c - the configuration table, value parsing, lists, the command-line
 * overrides, the life cycle, cross-key validation and the reference. The
 * YAML loader is in load.c and reaches this file through config_int.h.
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

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/config_int.h"
#include "lib/log.h"

#define CONFIG_LIST_MAX 1024 /* items per list; keeps the pairwise checks cheap */
#define CONFIG_LISTEN   "127.0.0.1:6380"

#define SEC 1000LL
#define DAY (86400 * SEC)
#define KB  1024LL
#define MB  (1024 * KB)
#define GB  (1024 * MB)

static const char *const config_read_from_names[] = {"master", "replicas", "prefer-replicas", NULL};
static const char *const config_balance_names[] = {"round-robin", "least-outstanding", "weighted",
                                                   NULL};
static const char *const config_log_names[] = {"debug", "info", "warn", "error", NULL};
static const char *const config_log_formats[] = {"text", "json", NULL};
static const char *const config_client_auth_names[] = {"none", "optional", "required", NULL};

#define OFF(field) offsetof(struct config, field)

/* The keys of TLS listeners' settings: the tls.* keys (documented), or a
 * listener's own tls: mapping (base 0, documented as tls.*). */
#define CONFIG_TLS_KEY(prefix, key, type, base, field, def, names, doc, help)                      \
    {                                                                                              \
        prefix "." key, type, (base) + offsetof(struct tls_settings, field), def, 0, 0, names,     \
            true, (doc) ? "TLS listeners: " help : NULL                                            \
    }
#define CONFIG_TLS_IN(prefix, base, doc)                                                           \
    CONFIG_TLS_KEY(prefix, "cert", CT_STRING, base, cert, NULL, NULL, doc,                         \
                   "PEM certificate (chain) file"),                                                \
        CONFIG_TLS_KEY(prefix, "key", CT_STRING, base, key, NULL, NULL, doc,                       \
                       "PEM private key file"),                                                    \
        CONFIG_TLS_KEY(prefix, "ca", CT_STRING, base, ca, NULL, NULL, doc,                         \
                       "PEM CA file that client certificates are checked against"),                \
        CONFIG_TLS_KEY(prefix, "client-auth", CT_ENUM, base, client_auth, "none",                  \
                       config_client_auth_names, doc,                                              \
                       "ask clients for a certificate signed by tls.ca; required refuses those "   \
                       "without one"),                                                             \
        CONFIG_TLS_KEY(prefix, "protocols", CT_STRING, base, protocols, "TLSv1.2 TLSv1.3", NULL,   \
                       doc, "protocol versions accepted"),                                         \
        CONFIG_TLS_KEY(prefix, "ciphers", CT_STRING, base, ciphers, NULL, NULL, doc,               \
                       "TLS 1.2 cipher list (OpenSSL syntax; unset = OpenSSL's default)"),         \
        CONFIG_TLS_KEY(prefix, "ciphersuites", CT_STRING, base, ciphersuites, NULL, NULL, doc,     \
                       "TLS 1.3 cipher suites (unset = OpenSSL's default)")

/* The keys of a connecting leg's TLS (backend-tls, sentinel.tls). */
#define CONFIG_TLS_OUT(leg, field, what)                                                           \
    {leg ".enabled", CT_BOOL, OFF(field.enabled),                                                  \
     "false",        0,       0,                                                                   \
     NULL,           false,   "connect to " what " with TLS"},                                     \
        {leg ".ca",                                                                                \
         CT_STRING,                                                                                \
         OFF(field.ca),                                                                            \
         NULL,                                                                                     \
         0,                                                                                        \
         0,                                                                                        \
         NULL,                                                                                     \
         true,                                                                                     \
         "PEM CA file that " what " certificates are checked against (unset = the system's)"},     \
        {leg ".cert", CT_STRING, OFF(field.cert),                                                  \
         NULL,        0,         0,                                                                \
         NULL,        true,      "PEM client certificate shown to " what " (with key)"},           \
        {leg ".key", CT_STRING, OFF(field.key),                                                    \
         NULL,       0,         0,                                                                 \
         NULL,       true,      "PEM private key of the client certificate"},                      \
        {leg ".verify", CT_BOOL, OFF(field.verify),                                                \
         "true",        0,       0,                                                                \
         NULL,          true,    "check the certificate of " what " and its name"},                \
        {leg ".server-name",                                                                       \
         CT_STRING,                                                                                \
         OFF(field.server_name),                                                                   \
         NULL,                                                                                     \
         0,                                                                                        \
         0,                                                                                        \
         NULL,                                                                                     \
         true,                                                                                     \
         "name checked in (and sent to) " what " certificates; unset = the address as "            \
         "given"},                                                                                 \
    {                                                                                              \
        leg ".protocols", CT_STRING, OFF(field.protocols), "TLSv1.2 TLSv1.3", 0, 0, NULL, true,    \
            "protocol versions offered to " what                                                   \
    }

static const struct config_key config_keys[] = {
    {"listen", CT_LISTEN, OFF(listeners), CONFIG_LISTEN, 0, CONFIG_LIST_MAX, NULL, true,
     "addresses to accept clients on, each a string (tls://HOST:PORT for TLS) or a mapping "
     "{address, read-from, tls: true or a mapping of its own tls keys}"},
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
    {"shutdown-timeout", CT_DURATION, OFF(shutdown_timeout_ms), "10s", 0, 3600 * SEC, NULL, true,
     "on SIGTERM, stop accepting and wait this long for requests in flight before closing "
     "clients (0 = close at once; a second SIGTERM does)"},
    {"log-format", CT_ENUM, OFF(log_format), "text", 0, 0, config_log_formats, false,
     "text lines, or JSON lines with time, level, thread, event and msg"},
    {"log-level", CT_LOGLEVEL, OFF(log_level), "info", 0, 0, config_log_names, true,
     "lowest level logged (warning is accepted for warn)"},
    {"backend", CT_ADDR, OFF(backend), NULL, 0, 0, NULL, false,
     "a fixed Redis server used as master, for setups without Sentinel"},
    {"backend-connections", CT_INT, OFF(backend_connections), "1", 1, 64, NULL, false,
     "shared connections per backend per worker that client requests are multiplexed over"},
    {"backend-connections-max", CT_INT, OFF(backend_connections_max), "8", 1, 64, NULL, false,
     "most shared connections per backend per worker (at least backend-connections): more are "
     "opened while the others are stalled, or deep in replies far larger than a client's own"},
    {"backend-connections-idle", CT_DURATION, OFF(backend_connections_idle_ms), "10s", 1, DAY, NULL,
     true, "extra shared connections (beyond backend-connections) idle this long are closed"},
    {"backend-window", CT_INT, OFF(backend_window), "256", 0, 1000000, NULL, false,
     "most requests written to a shared connection ahead of their replies; the rest wait in "
     "the proxy, where a stall does not trap them (0 = no limit)"},
    {"stall-threshold", CT_DURATION, OFF(stall_threshold_ms), "10ms", 0, 60 * SEC, NULL, false,
     "a shared connection whose server answered nothing this long while a request waits is "
     "stalled: new requests go to another (0 = off)"},
    {"backend-username", CT_STRING, OFF(backend_username), NULL, 0, 0, NULL, true,
     "ACL user the proxy authenticates as on backends (needs backend-password)"},
    {"backend-password", CT_STRING, OFF(backend_password), NULL, 0, 0, NULL, true,
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
    {"admin.listen", CT_HOSTPORT, OFF(admin), NULL, 0, 0, NULL, false,
     "HOST:PORT of the admin HTTP endpoints (/metrics, /healthz, /readyz, /topology); unset = "
     "off"},
    CONFIG_TLS_IN("tls", OFF(tls), true),
    {"tls.handshake-timeout", CT_DURATION, OFF(tls_handshake_timeout_ms), "10s", 10, 600 * SEC,
     NULL, true, "a client that has not completed its TLS handshake this long is closed"},
    CONFIG_TLS_OUT("backend-tls", backend_tls, "Redis servers"),
    CONFIG_TLS_OUT("sentinel.tls", sentinel_tls, "Sentinels"),
    {"sentinel.master-name", CT_NAME, OFF(master_name), NULL, 1, 255, NULL, false,
     "the master's name as configured in the Sentinels; setting it enables Sentinel mode"},
    {"sentinel.addresses", CT_ADDRLIST, OFF(sentinels), NULL, 0, CONFIG_LIST_MAX, NULL, true,
     "Sentinels to ask first (more are learnt from them)"},
    {"sentinel.username", CT_STRING, OFF(sentinel_username), NULL, 0, 0, NULL, true,
     "ACL user for the Sentinels (needs sentinel.password)"},
    {"sentinel.password", CT_STRING, OFF(sentinel_password), NULL, 0, 0, NULL, true,
     "password for the Sentinels"},
    {"sentinel.timeout", CT_DURATION, OFF(sentinel_timeout_ms), "500ms", 10, 60 * SEC, NULL, true,
     "time allowed for each answer from a Sentinel or instance"},
    {"sentinel.poll-interval", CT_DURATION, OFF(sentinel_poll_ms), "1s", 100, 60 * SEC, NULL, true,
     "how often every Sentinel is asked, events or not"},
    {"sentinel.forget-after", CT_DURATION, OFF(sentinel_forget_ms), "5m", SEC, 30 * DAY, NULL, true,
     "forget a learnt Sentinel that has been gone this long"},
    {"sentinel.fence-after", CT_DURATION, OFF(sentinel_fence_ms), "0", 0, 600 * SEC, NULL, true,
     "hold writes once no majority of the known Sentinels has named the master this long (0 = "
     "off)"},
    {"read-from", CT_ENUM, OFF(read_from), "prefer-replicas", 0, 0, config_read_from_names, true,
     "where read-only commands go; prefer-replicas falls back to the master"},
    {"balance", CT_ENUM, OFF(balance), "least-outstanding", 0, 0, config_balance_names, true,
     "how a replica is chosen among the healthy ones"},
    {"read-your-writes", CT_BOOL, OFF(read_your_writes), "true", 0, 0, NULL, true,
     "after a client's write, its reads go only to replicas that have replicated it"},
    {"ack-after-replicas", CT_INT, OFF(ack_after_replicas), "0", 0, 16, NULL, true,
     "a write's reply waits until this many replicas have processed it (0 = off)"},
    {"max-replica-lag", CT_SIZE, OFF(max_replica_lag), "1mb", 0, 64 * GB, NULL, true,
     "replicas further behind the master's replication offset serve no reads (0 = no limit)"},
    {"zone", CT_NAME, OFF(zone), NULL, 1, 31, NULL, true,
     "this proxy's zone: replicas in the same zone are preferred"},
    {"replicas", CT_REPLICAS, OFF(replica_prefs), NULL, 0, CONFIG_LIST_MAX, NULL, true,
     "per-replica settings, each {address: HOST:PORT, weight: 1..1000 (1), zone: NAME}"},
};

#define CONFIG_NKEYS (sizeof(config_keys) / sizeof(config_keys[0]))

/* Fields of list items (declared in config_int.h). */
const struct config_key config_item_keys[] = {
    {"listen.read-from", CT_ENUM, offsetof(struct config_listener, read_from), NULL, 0, 0,
     config_read_from_names, false, NULL},
    {"replicas.address", CT_HOSTPORT, 0, NULL, 0, 0, NULL, true, NULL},
    {"replicas.weight", CT_INT, offsetof(struct config_replica_pref, weight), "1", 1, 1000, NULL,
     true, NULL},
    {"replicas.zone", CT_NAME, offsetof(struct config_replica_pref, zone), NULL, 1, 31, NULL, true,
     NULL},
    {"listen.tls", CT_BOOL, offsetof(struct config_listener, tls), NULL, 0, 0, NULL, false, NULL},
    /* a listener's own tls: mapping (offsets into struct tls_settings) */
    CONFIG_TLS_IN("listen.tls", 0, false),
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

const struct config_key *config_key_at(size_t i)
{
    return i < CONFIG_NKEYS ? &config_keys[i] : NULL;
}

const struct config_key *config_find(const char *name)
{
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        if (strcmp(config_keys[i].name, name) == 0) {
            return &config_keys[i];
        }
    }
    return NULL;
}

/* True when name is a section such as "sentinel" (a prefix of dotted keys). */
bool config_is_section(const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        if (strncmp(config_keys[i].name, name, n) == 0 && config_keys[i].name[n] == '.') {
            return true;
        }
    }
    return false;
}

bool config_is_list(const struct config_key *k)
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
const char *config_show(const char *s, char *buf, size_t len)
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
void config_format_amount(char *buf, size_t len, enum config_type type, int64_t v)
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

int config_parse_enum(const char *s, const char *const *names)
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
bool config_set_string(char **dst, const char *s, char *msg, size_t len)
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
bool config_parse_scalar(const struct config_key *k, const char *s, void *dst, char *msg,
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
bool config_grow(const struct config_key *k, void **arr, size_t n, size_t size, char *msg,
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

bool config_add_listener(struct config *cfg, const char *text, int read_from, bool tls, char *msg,
                         size_t len)
{
    const struct config_key *k = &config_keys[0];
    struct config_listener *l;

    if (strncmp(text, "tls://", 6) == 0) {
        text += 6;
        tls = true;
    }

    if (!config_grow(k, (void **)&cfg->listeners, cfg->nlisteners, sizeof(*l), msg, len)) {
        return false;
    }
    l = &cfg->listeners[cfg->nlisteners];
    if (!config_parse_addr(&l->addr, text, false, msg, len)) {
        return false;
    }
    if (tls && l->addr.family == AF_UNIX) {
        return config_fail(msg, len, "TLS on a unix socket is not supported");
    }
    l->read_from = read_from;
    l->tls = tls;
    cfg->nlisteners++;
    return true;
}

bool config_add_sentinel(struct config *cfg, const struct config_key *k, const char *text,
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

void config_tls_free(struct tls_settings *t)
{
    if (t == NULL) {
        return;
    }
    for (size_t i = 0; i < CONFIG_TLS_FIELDS; i++) {
        const struct config_key *f = &config_item_keys[ITEM_TLS_FIELDS + i];
        if (f->type == CT_STRING) {
            free(*(char **)((char *)t + f->off));
        }
    }
    free(t);
}

void config_clear_list(struct config *cfg, const struct config_key *k)
{
    if (k->type == CT_LISTEN) {
        for (size_t i = 0; i < cfg->nlisteners; i++) {
            config_tls_free(cfg->listeners[i].tls_own);
        }
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
void config_sync(struct config *cfg)
{
    cfg->has_backend = cfg->backend.host[0] != '\0';
    cfg->has_admin = cfg->admin.host[0] != '\0';
    cfg->has_sentinel = cfg->master_name != NULL;
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
        return config_add_listener(cfg, value, -1, false, msg, len);
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

/* A connecting leg's TLS keys are only meaningful with TLS on. */
static bool config_tls_out_valid(const struct tls_settings *t, const char *leg, char *err,
                                 size_t errlen)
{
    char msg[CONFIG_ERR_MAX];

    if (!t->enabled &&
        (t->ca != NULL || t->cert != NULL || t->key != NULL || t->server_name != NULL)) {
        return config_fail(err, errlen, "%s has settings but %s.enabled is false", leg, leg);
    }
    if ((t->cert == NULL) != (t->key == NULL)) {
        return config_fail(err, errlen, "%s.cert and %s.key go together", leg, leg);
    }
    if (!tls_protocols_valid(t->protocols, msg, sizeof(msg))) {
        return config_fail(err, errlen, "%s.protocols: %s", leg, msg);
    }
    return true;
}

/* A TLS listener's settings: its own, or the tls.* keys. */
static bool config_tls_in_valid(const struct tls_settings *t, const char *where, char *err,
                                size_t errlen)
{
    char msg[CONFIG_ERR_MAX];

    if (t->cert == NULL || t->key == NULL) {
        return config_fail(err, errlen, "%s needs cert and key", where);
    }
    if (t->client_auth != TLS_AUTH_NONE && t->ca == NULL) {
        return config_fail(err, errlen, "%s: client-auth needs a ca", where);
    }
    if (!tls_protocols_valid(t->protocols, msg, sizeof(msg))) {
        return config_fail(err, errlen, "%s: protocols: %s", where, msg);
    }
    return true;
}

static bool config_tls_valid(const struct config *cfg, char *err, size_t errlen)
{
    const struct tls_settings *t = &cfg->tls;
    char msg[CONFIG_ERR_MAX], text[ADDR_TEXT_MAX], where[ADDR_TEXT_MAX + 32];

    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct config_listener *l = &cfg->listeners[i];
        if (!l->tls) {
            continue;
        }
        if (l->tls_own == NULL && (t->cert == NULL || t->key == NULL)) {
            return config_fail(err, errlen, "a TLS listener needs tls.cert and tls.key");
        }
        addr_format(&l->addr, text, sizeof(text));
        snprintf(where, sizeof(where), "listener %s: tls", text);
        if (l->tls_own != NULL && !config_tls_in_valid(l->tls_own, where, err, errlen)) {
            return false;
        }
    }
    if (t->client_auth != TLS_AUTH_NONE && t->ca == NULL) {
        return config_fail(err, errlen, "tls.client-auth needs tls.ca");
    }
    if (!tls_protocols_valid(t->protocols, msg, sizeof(msg))) {
        return config_fail(err, errlen, "tls.protocols: %s", msg);
    }
    if (cfg->backend_tls.enabled && cfg->has_backend && cfg->backend.family == AF_UNIX) {
        return config_fail(err, errlen, "backend-tls: TLS on a unix socket is not supported");
    }
    return config_tls_out_valid(&cfg->backend_tls, "backend-tls", err, errlen) &&
           config_tls_out_valid(&cfg->sentinel_tls, "sentinel.tls", err, errlen);
}

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
                           "nothing to proxy to: give the Sentinels' master name and addresses "
                           "(--master-name NAME --sentinel HOST:PORT ..., or sentinel.master-name "
                           "and sentinel.addresses in the file), or a fixed server (--backend "
                           "HOST:PORT, or backend)");
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
    /* Confirmations come once per poll, each taking up to sentinel.timeout:
     * a shorter fence would close between two healthy rounds. */
    if (cfg->sentinel_fence_ms > 0 &&
        cfg->sentinel_fence_ms < 2 * cfg->sentinel_poll_ms + cfg->sentinel_timeout_ms) {
        config_format_amount(a, sizeof(a), CT_DURATION, (int64_t)cfg->sentinel_fence_ms);
        config_format_amount(b, sizeof(b), CT_DURATION,
                             (int64_t)(2 * cfg->sentinel_poll_ms + cfg->sentinel_timeout_ms));
        return config_fail(err, errlen,
                           "sentinel.fence-after (%s) must be 0 (off) or at least twice "
                           "sentinel.poll-interval plus sentinel.timeout (%s)",
                           a, b);
    }
    if (cfg->backend_connections > cfg->backend_connections_max) {
        cfg->backend_connections_max = cfg->backend_connections; /* the documented floor */
    }
    /* Redis has no user without a password: AUTH always takes one. */
    if (cfg->backend_username != NULL && cfg->backend_password == NULL) {
        return config_fail(err, errlen, "backend-username needs backend-password");
    }
    if (cfg->sentinel_username != NULL && cfg->sentinel_password == NULL) {
        return config_fail(err, errlen, "sentinel.username needs sentinel.password");
    }
    if (cfg->nlisteners == 0 &&
        !config_add_listener(cfg, config_keys[0].def, -1, false, err, errlen)) {
        return false;
    }
    if (config_find_twice(&cfg->listeners[0].addr, cfg->nlisteners, sizeof(*cfg->listeners), a,
                          sizeof(a))) {
        return config_fail(err, errlen, "listen: %s appears twice", a);
    }
    if (config_find_twice(cfg->sentinels, cfg->nsentinels, sizeof(*cfg->sentinels), a, sizeof(a))) {
        return config_fail(err, errlen, "sentinel.addresses: %s appears twice", a);
    }
    return config_tls_valid(cfg, err, errlen);
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
    fprintf(out, "| key | type | default | bounds | reload | description |\n");
    fprintf(out, "|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const struct config_key *k = &config_keys[i];
        char bounds[96];
        config_bounds(k, bounds, sizeof(bounds));
        fprintf(out, "| `%s` | %s | %s%s%s | %s | %s | %s |\n", k->name, config_type_name(k->type),
                k->def != NULL ? "`" : "", k->def != NULL ? k->def : "-", k->def != NULL ? "`" : "",
                bounds, k->reload ? "live" : "restart", k->doc);
    }
}
