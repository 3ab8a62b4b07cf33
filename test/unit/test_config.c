/*
 * test_config.c - unit tests for the configuration module: good files, every
 * kind of bad file (file, line and key in the message), value syntax, flags,
 * cross-key validation, and documentation that cannot drift from the table.
 *
 * Run from the repository root: the example file and REFERENCE.md are opened
 * by relative path. Under ASan every error path is also checked for leaks.
 */
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/config.h"
#include "lib/log.h"

#define KB (1024ULL)
#define MB (1024 * KB)
#define GB (1024 * MB)

/* Load yaml into a fresh configuration; NULL (and err) when it is refused. */
static struct config *load(const char *yaml, char *err)
{
    struct config *cfg = config_new();

    err[0] = '\0';
    if (!config_load_string(cfg, yaml, strlen(yaml), "t.yaml", err, CONFIG_ERR_MAX)) {
        config_free(cfg); /* must be safe after any failure */
        return NULL;
    }
    return cfg;
}

/* Load and validate; fails the test with the message when either refuses. */
static struct config *load_valid(const char *yaml)
{
    char err[CONFIG_ERR_MAX];
    struct config *cfg = load(yaml, err);

    if (cfg == NULL) {
        fail_msg("refused: %s\n--- %s", err, yaml);
    }
    if (!config_validate(cfg, err, sizeof(err))) {
        config_free(cfg);
        fail_msg("invalid: %s\n--- %s", err, yaml);
    }
    return cfg;
}

/* The file must be refused with exactly this message (or, with a
 * leading '~', a message containing the rest). */
static void expect_bad(const char *yaml, const char *want)
{
    char err[CONFIG_ERR_MAX];
    struct config *cfg = load(yaml, err);
    bool ok;

    if (cfg != NULL) {
        config_free(cfg);
        fail_msg("accepted:\n%s", yaml);
    }
    ok = want[0] == '~' ? strstr(err, want + 1) != NULL : strcmp(err, want) == 0;
    if (!ok) {
        fail_msg("for:\n%s\ngot:  %s\nwant: %s", yaml, err, want);
    }
}

/* The file loads but config_validate refuses it with a message containing want. */
static void expect_invalid(const char *yaml, const char *want)
{
    char err[CONFIG_ERR_MAX];
    struct config *cfg = load(yaml, err);

    if (cfg == NULL) {
        fail_msg("refused: %s", err);
    }
    if (config_validate(cfg, err, sizeof(err))) {
        config_free(cfg);
        fail_msg("validated:\n%s", yaml);
    }
    config_free(cfg);
    if (strstr(err, want) == NULL) {
        fail_msg("got '%s', want '%s'", err, want);
    }
}

static void test_defaults(void **state)
{
    struct config *cfg = config_new();
    char err[CONFIG_ERR_MAX];

    (void)state;
    assert_int_equal(cfg->nlisteners, 0);
    assert_int_equal(cfg->workers, 1);
    assert_int_equal(cfg->max_clients, 10000);
    assert_int_equal(cfg->tcp_backlog, 511);
    assert_int_equal(cfg->tcp_keepalive_ms, 300000);
    assert_int_equal(cfg->client_idle_timeout_ms, 0);
    assert_int_equal(cfg->log_level, LOG_INFO);
    assert_false(cfg->has_backend);
    assert_int_equal(cfg->backend_connections, 1);
    assert_null(cfg->backend_username);
    assert_null(cfg->backend_password);
    assert_int_equal(cfg->connect_timeout_ms, 1000);
    assert_int_equal(cfg->reconnect_min_ms, 100);
    assert_int_equal(cfg->reconnect_max_ms, 2000);
    assert_int_equal(cfg->dedicated_spare, 4);
    assert_int_equal(cfg->hold_timeout_ms, 60000);
    assert_int_equal(cfg->hold_memory, 64 * MB);
    assert_int_equal(cfg->proto_max_bulk_len, 512 * MB);
    assert_int_equal(cfg->client_query_buffer_limit, GB);
    assert_int_equal(cfg->client_backlog_limit, MB);
    assert_int_equal(cfg->client_output_limit, GB);
    assert_false(cfg->has_sentinel);
    assert_null(cfg->master_name);
    assert_int_equal(cfg->nsentinels, 0);
    assert_int_equal(cfg->sentinel_timeout_ms, 500);
    assert_int_equal(cfg->sentinel_poll_ms, 1000);
    assert_int_equal(cfg->sentinel_forget_ms, 300000);
    assert_int_equal(cfg->read_from, READ_FROM_PREFER_REPLICAS);
    assert_int_equal(cfg->balance, BALANCE_LEAST_OUTSTANDING);
    assert_true(cfg->read_your_writes);
    assert_int_equal(cfg->max_replica_lag, MB);
    assert_null(cfg->zone);
    assert_int_equal(cfg->nreplica_prefs, 0);
    /* Without a backend nothing can be validated. */
    assert_false(config_validate(cfg, err, sizeof(err)));
    assert_string_equal(err, "nothing to proxy to: give the Sentinels' master name and addresses "
                             "(--master-name NAME --sentinel HOST:PORT ..., or "
                             "sentinel.master-name and sentinel.addresses in the file), or a "
                             "fixed server (--backend HOST:PORT, or backend)");
    config_free(cfg);
    config_free(NULL);
}

static void test_minimal_backend(void **state)
{
    struct config *cfg = load_valid("backend: 127.0.0.1:6379\n");

    (void)state;
    assert_true(cfg->has_backend);
    assert_false(cfg->has_sentinel);
    assert_string_equal(cfg->backend.host, "127.0.0.1");
    assert_int_equal(cfg->backend.port, 6379);
    assert_string_equal(cfg->source, "t.yaml");
    /* The default listener is added by config_validate, once. */
    assert_int_equal(cfg->nlisteners, 1);
    assert_string_equal(cfg->listeners[0].addr.host, "127.0.0.1");
    assert_int_equal(cfg->listeners[0].addr.port, 6380);
    assert_int_equal(cfg->listeners[0].read_from, -1);
    assert_true(config_validate(cfg, (char[CONFIG_ERR_MAX]){0}, CONFIG_ERR_MAX));
    assert_int_equal(cfg->nlisteners, 1);
    config_free(cfg);
}

/* Every key set to something other than its default. */
static const char full_yaml[] =
    "# a full Sentinel setup\n"
    "listen:\n"
    "  - 0.0.0.0:7000\n"
    "  - unix:/tmp/sp.sock\n"
    "  - { address: \"[::1]:7001\", read-from: master }\n"
    "workers: auto\n"
    "max-clients: 50\n"
    "tcp-backlog: 128\n"
    "tcp-keepalive: 0\n"
    "client-idle-timeout: 1h\n"
    "log-level: warning\n"
    "backend-connections: 4\n"
    "backend-username: proxy\n"
    "backend-password: \"s3cret: with colon\"\n"
    "connect-timeout: 250ms\n"
    "reconnect-min: 1\n"
    "reconnect-max: 10m\n"
    "dedicated-spare: 0\n"
    "hold-timeout: 5s\n"
    "hold-memory: 1k\n"
    "proto-max-bulk-len: 2gb\n"
    "client-query-buffer-limit: 3MB\n"
    "client-backlog-limit: 64KB\n"
    "client-output-limit: 2g\n"
    "sentinel:\n"
    "  master-name: mymaster\n"
    "  addresses: [127.0.0.1:26379, 127.0.0.1:26380, 'unix:/tmp/s.sock']\n"
    "  username: sentinel-user\n"
    "  password: pw\n"
    "  timeout: 100ms\n"
    "  poll-interval: 2s\n"
    "  forget-after: 1d\n"
    "read-from: replicas\n"
    "balance: weighted\n"
    "read-your-writes: no\n"
    "max-replica-lag: 0\n"
    "zone: eu-1a\n"
    "replicas:\n"
    "  - { address: 10.0.0.2:6379, weight: 3, zone: eu-1b }\n"
    "  - address: \"[fe80::1]:6379\"\n";

static void test_full_sentinel(void **state)
{
    struct config *cfg = load_valid(full_yaml);

    (void)state;
    assert_int_equal(cfg->nlisteners, 3);
    assert_string_equal(cfg->listeners[0].addr.host, "0.0.0.0");
    assert_int_equal(cfg->listeners[0].read_from, -1);
    assert_string_equal(cfg->listeners[1].addr.host, "/tmp/sp.sock");
    assert_string_equal(cfg->listeners[2].addr.host, "::1");
    assert_int_equal(cfg->listeners[2].addr.port, 7001);
    assert_int_equal(cfg->listeners[2].read_from, READ_FROM_MASTER);
    assert_int_equal(cfg->workers, 0);
    assert_int_equal(cfg->max_clients, 50);
    assert_int_equal(cfg->tcp_backlog, 128);
    assert_int_equal(cfg->tcp_keepalive_ms, 0);
    assert_int_equal(cfg->client_idle_timeout_ms, 3600000);
    assert_int_equal(cfg->log_level, LOG_WARN);
    assert_false(cfg->has_backend);
    assert_int_equal(cfg->backend_connections, 4);
    assert_string_equal(cfg->backend_username, "proxy");
    assert_string_equal(cfg->backend_password, "s3cret: with colon");
    assert_int_equal(cfg->connect_timeout_ms, 250);
    assert_int_equal(cfg->reconnect_min_ms, 1);
    assert_int_equal(cfg->reconnect_max_ms, 600000);
    assert_int_equal(cfg->dedicated_spare, 0);
    assert_int_equal(cfg->hold_timeout_ms, 5000);
    assert_int_equal(cfg->hold_memory, 1000);
    assert_int_equal(cfg->proto_max_bulk_len, 2 * GB);
    assert_int_equal(cfg->client_query_buffer_limit, 3 * MB);
    assert_int_equal(cfg->client_backlog_limit, 64 * KB);
    assert_int_equal(cfg->client_output_limit, 2000000000ULL);
    assert_true(cfg->has_sentinel);
    assert_string_equal(cfg->master_name, "mymaster");
    assert_int_equal(cfg->nsentinels, 3);
    assert_int_equal(cfg->sentinels[1].port, 26380);
    assert_string_equal(cfg->sentinel_username, "sentinel-user");
    assert_string_equal(cfg->sentinel_password, "pw");
    assert_int_equal(cfg->sentinel_timeout_ms, 100);
    assert_int_equal(cfg->sentinel_poll_ms, 2000);
    assert_int_equal(cfg->sentinel_forget_ms, 86400000ULL);
    assert_int_equal(cfg->read_from, READ_FROM_REPLICAS);
    assert_int_equal(cfg->balance, BALANCE_WEIGHTED);
    assert_false(cfg->read_your_writes);
    assert_int_equal(cfg->max_replica_lag, 0);
    assert_string_equal(cfg->zone, "eu-1a");
    assert_int_equal(cfg->nreplica_prefs, 2);
    assert_string_equal(cfg->replica_prefs[0].address, "10.0.0.2:6379");
    assert_int_equal(cfg->replica_prefs[0].weight, 3);
    assert_string_equal(cfg->replica_prefs[0].zone, "eu-1b");
    assert_string_equal(cfg->replica_prefs[1].address, "[fe80::1]:6379");
    assert_int_equal(cfg->replica_prefs[1].weight, 1);
    assert_null(cfg->replica_prefs[1].zone);
    config_free(cfg);
}

static void test_listen_forms(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_valid("backend: r:1\nlisten: 10.1.1.1:1\n"); /* a single string */
    assert_int_equal(cfg->nlisteners, 1);
    assert_int_equal(cfg->listeners[0].addr.port, 1);
    config_free(cfg);
    cfg = load_valid("backend: r:1\nlisten: [a:1, 'b:2']\n");
    assert_int_equal(cfg->nlisteners, 2);
    config_free(cfg);
    cfg = load_valid("backend: r:1\n"
                     "listen:\n"
                     "  - address: a:1\n"
                     "    read-from: replicas\n"
                     "  - {address: a:2, read-from: prefer-replicas}\n"
                     "  - {address: a:3}\n");
    assert_int_equal(cfg->nlisteners, 3);
    assert_int_equal(cfg->listeners[0].read_from, READ_FROM_REPLICAS);
    assert_int_equal(cfg->listeners[1].read_from, READ_FROM_PREFER_REPLICAS);
    assert_int_equal(cfg->listeners[2].read_from, -1);
    config_free(cfg);
    /* An empty list falls back on the default listener. */
    cfg = load_valid("backend: r:1\nlisten:\n");
    assert_int_equal(cfg->nlisteners, 1);
    assert_int_equal(cfg->listeners[0].addr.port, 6380);
    config_free(cfg);
    cfg = load_valid("backend: r:1\nlisten: []\nsentinel:\n");
    assert_int_equal(cfg->nlisteners, 1);
    config_free(cfg);
}

static void test_units(void **state)
{
    static const struct {
        const char *text;
        uint64_t bytes;
    } sizes[] = {
        {"0", 0},          {"1000", 1000},           {"1k", 1000},    {"1kb", KB},
        {"2K", 2000},      {"2KB", 2 * KB},          {"3m", 3000000}, {"3mb", 3 * MB},
        {"3Mb", 3 * MB},   {"4g", 4000000000ULL},    {"4gb", 4 * GB}, {"64GB", 64 * GB},
        {"007kb", 7 * KB}, {"68719476736", 64 * GB},
    };
    static const struct {
        const char *text;
        uint64_t ms;
    } durations[] = {
        {"0", 0},       {"250", 250},    {"250ms", 250},      {"2s", 2000},
        {"5m", 300000}, {"1h", 3600000}, {"1d", 86400000},    {"30d", 2592000000ULL},
        {"2S", 2000},   {"10MS", 10},    {"1440m", 86400000},
    };
    char yaml[128], err[CONFIG_ERR_MAX];
    struct config *cfg;

    (void)state;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        snprintf(yaml, sizeof(yaml), "hold-memory: %s\n", sizes[i].text);
        cfg = load(yaml, err);
        if (cfg == NULL) {
            fail_msg("%s: %s", sizes[i].text, err);
        }
        assert_int_equal(cfg->hold_memory, sizes[i].bytes);
        config_free(cfg);
    }
    for (size_t i = 0; i < sizeof(durations) / sizeof(durations[0]); i++) {
        snprintf(yaml, sizeof(yaml), "client-idle-timeout: %s\n", durations[i].text);
        cfg = load(yaml, err);
        if (cfg == NULL) {
            fail_msg("%s: %s", durations[i].text, err);
        }
        assert_int_equal(cfg->client_idle_timeout_ms, durations[i].ms);
        config_free(cfg);
    }
    /* Booleans in every spelling, quoted or not, and tags are ignored. */
    cfg = load("read-your-writes: off\n", err);
    assert_false(cfg->read_your_writes);
    config_free(cfg);
    cfg = load("read-your-writes: 'Yes'\n", err);
    assert_true(cfg->read_your_writes);
    config_free(cfg);
    cfg = load("read-your-writes: FALSE\nworkers: !!str 7\nmax-clients: \"12\"\n", err);
    assert_false(cfg->read_your_writes);
    assert_int_equal(cfg->workers, 7);
    assert_int_equal(cfg->max_clients, 12);
    config_free(cfg);
}

/* Values that are refused, with the whole message. */
static void test_bad_values(void **state)
{
    (void)state;
    expect_bad("workers: 0\n", "t.yaml:1: workers: 0 is out of range (1..256 or auto)");
    expect_bad("workers: 257\n", "t.yaml:1: workers: 257 is out of range (1..256 or auto)");
    expect_bad("workers: many\n", "t.yaml:1: workers: expected an integer or auto, got 'many'");
    expect_bad("max-clients: 0\n", "t.yaml:1: max-clients: 0 is out of range (1..1000000)");
    expect_bad("max-clients: 1000001\n",
               "t.yaml:1: max-clients: 1000001 is out of range (1..1000000)");
    expect_bad("max-clients: -5\n", "t.yaml:1: max-clients: -5 is out of range (1..1000000)");
    expect_bad("max-clients: 1.5\n", "t.yaml:1: max-clients: expected an integer, got '1.5'");
    expect_bad("max-clients: 0x10\n", "t.yaml:1: max-clients: expected an integer, got '0x10'");
    expect_bad("max-clients: +5\n", "t.yaml:1: max-clients: expected an integer, got '+5'");
    expect_bad("max-clients: 99999999999999999999999\n",
               "t.yaml:1: max-clients: 99999999999999999999999 is out of range (1..1000000)");
    expect_bad("max-clients: 10000000000000000000\n", "~is out of range (1..1000000)");
    expect_bad("dedicated-spare: 1001\n", "~dedicated-spare: 1001 is out of range (0..1000)");
    expect_bad("tcp-backlog: 65536\n", "~tcp-backlog: 65536 is out of range (1..65535)");
    expect_bad("backend-connections: 65\n", "~out of range (1..64)");
    expect_bad("\n\nsentinel:\n  timeout: abc\n",
               "t.yaml:4: sentinel.timeout: expected a duration such as 500ms or 2s, got 'abc'");
    expect_bad("sentinel:\n  timeout: 9ms\n",
               "t.yaml:2: sentinel.timeout: 9ms is out of range (10ms..1m)");
    expect_bad("sentinel:\n  timeout: 61s\n", "~61s is out of range (10ms..1m)");
    expect_bad("sentinel:\n  poll-interval: 99\n", "~99 is out of range (100ms..1m)");
    expect_bad("sentinel:\n  forget-after: 31d\n", "~31d is out of range (1s..30d)");
    expect_bad("connect-timeout: 0\n", "t.yaml:1: connect-timeout: 0 is out of range (1ms..1m)");
    expect_bad("reconnect-max: 11m\n", "~11m is out of range (1ms..10m)");
    expect_bad("tcp-keepalive: 25h\n", "~25h is out of range (0..1d)");
    expect_bad("hold-timeout: 1.5s\n", "~expected a duration such as 500ms or 2s, got '1.5s'");
    expect_bad("hold-timeout: 5 s\n", "~expected a duration");
    expect_bad("hold-timeout: 5min\n", "~expected a duration");
    expect_bad("hold-timeout: -1\n", "~expected a duration");
    expect_bad("hold-memory: 12xb\n",
               "t.yaml:1: hold-memory: expected a size such as 64kb or 512mb, got '12xb'");
    expect_bad("hold-memory: 65gb\n", "t.yaml:1: hold-memory: 65gb is out of range (0..64gb)");
    expect_bad("proto-max-bulk-len: 1000k\n", "~1000k is out of range (1mb..64gb)");
    expect_bad("client-backlog-limit: 16000\n", "~16000 is out of range (16kb..1gb)");
    expect_bad("client-backlog-limit: 2gb\n", "~2gb is out of range (16kb..1gb)");
    /* Overflow of the digits or of the unit multiplication. */
    expect_bad("hold-memory: 99999999999999999999\n", "~is out of range (0..64gb)");
    expect_bad("hold-memory: 18446744073709551615gb\n", "~is out of range (0..64gb)");
    expect_bad("sentinel:\n  forget-after: 9999999999999999d\n", "~is out of range (1s..30d)");
    expect_bad("read-your-writes: maybe\n",
               "t.yaml:1: read-your-writes: expected true or false, got 'maybe'");
    expect_bad("read-from: slaves\n",
               "t.yaml:1: read-from: expected master, replicas or prefer-replicas, got 'slaves'");
    expect_bad("balance: random\n",
               "t.yaml:1: balance: expected round-robin, least-outstanding or weighted, "
               "got 'random'");
    expect_bad("log-level: loud\n",
               "t.yaml:1: log-level: expected debug, info, warn or error, got 'loud'");
    expect_bad("backend: localhost\n",
               "t.yaml:1: backend: expected HOST:PORT or unix:/path, got 'localhost'");
    expect_bad("backend: 1.2.3.4:99999\n", "t.yaml:1: backend: invalid port in '1.2.3.4:99999'");
    expect_bad("backend: 1.2.3.4:0\n", "~port 0 is not allowed");
    expect_bad("backend: ::1:6379\n", "~IPv6 addresses need brackets");
    expect_bad("backend: \"a b:1\"\n",
               "t.yaml:1: backend: expected HOST:PORT or unix:/path, got 'a b:1'");
    expect_bad("backend: \"a\\tb:1\"\n", "~got 'a?b:1'"); /* control characters masked */
    expect_bad("backend: \"unix:\"\n", "~unix socket path empty");
    expect_bad("backend:\n", "t.yaml:1: backend: missing value");
    expect_bad("backend: ~\n", "t.yaml:1: backend: missing value");
    expect_bad("backend-password: \"\"\n",
               "t.yaml:1: backend-password: expected a non-empty string");
    expect_bad("sentinel:\n  master-name: \"my master\"\n",
               "t.yaml:2: sentinel.master-name: expected 1..255 bytes without whitespace or "
               "control characters, got 'my master'");
    expect_bad("zone: a-zone-name-that-is-longer-than-31\n", "~zone: expected 1..31 bytes");
    expect_bad("workers: [1]\n", "t.yaml:1: workers: expected a single value, got a list");
    expect_bad("zone: {a: b}\n", "t.yaml:1: zone: expected a single value, got a mapping");
}

/* Long names are bounded: master-name is 255 bytes at most. */
static void test_name_lengths(void **state)
{
    char yaml[400], err[CONFIG_ERR_MAX];
    struct config *cfg;

    (void)state;
    snprintf(yaml, sizeof(yaml), "sentinel:\n  master-name: %0255d\n", 0);
    cfg = load(yaml, err);
    assert_non_null(cfg);
    assert_int_equal(strlen(cfg->master_name), 255);
    config_free(cfg);
    snprintf(yaml, sizeof(yaml), "sentinel:\n  master-name: %0256d\n", 0);
    expect_bad(yaml, "~sentinel.master-name: expected 1..255 bytes");
}

/* Keys and structure that are refused. */
static void test_bad_structure(void **state)
{
    (void)state;
    expect_bad("backend: 127.0.0.1:6379\nbakend: x\n", "t.yaml:2: bakend: unknown key");
    expect_bad("sentinel:\n  master-name: m\n\n  tiemout: 1s\n",
               "t.yaml:4: sentinel.tiemout: unknown key");
    expect_bad("master-name: m\n", "t.yaml:1: master-name: unknown key");
    expect_bad("sentinel: 3\n", "t.yaml:1: sentinel: expected a mapping, got a value");
    expect_bad("sentinel: [a]\n", "t.yaml:1: sentinel: expected a mapping, got a list");
    expect_bad("backend: a:1\nbackend: b:2\n", "t.yaml:2: backend: duplicate key");
    expect_bad("sentinel.master-name: a\nsentinel: {master-name: b}\n",
               "t.yaml:1: sentinel.master-name: dotted key: write it nested in the file");
    expect_bad("sentinel:\n  tls.x: 1\n",
               "t.yaml:2: sentinel.tls.x: dotted key: write it nested in the file");
    expect_bad("sentinel:\n  timeout: 1s\n  timeout: 2s\n",
               "t.yaml:3: sentinel.timeout: duplicate key");
    expect_bad("listen:\n  - {address: a:1, address: a:2}\n",
               "t.yaml:2: listen.address: duplicate key");
    expect_bad("listen: {address: a:1}\n", "t.yaml:1: listen: expected a list of addresses");
    expect_bad("listen:\n  - a:1\n  - [b:1]\n", "t.yaml:3: listen: expected a list of addresses");
    expect_bad("listen:\n  - {adress: a:1}\n", "t.yaml:2: listen.adress: unknown key");
    expect_bad("listen:\n  - {read-from: master}\n",
               "t.yaml:2: listen: a listener mapping needs an address");
    expect_bad("listen:\n  - address: a:1\n    read-from: all\n",
               "t.yaml:3: listen.read-from: expected master, replicas or prefer-replicas, got "
               "'all'");
    expect_bad("listen:\n  - address: nope\n", "~t.yaml:2: listen.address: expected HOST:PORT");
    expect_bad("listen:\n  - x\n", "~t.yaml:2: listen: expected HOST:PORT");
    expect_bad("listen:\n  - {address: [a:1]}\n",
               "t.yaml:2: listen.address: expected a single value, got a list");
    expect_bad("sentinel:\n  addresses:\n    - a:1\n    - {b: 1}\n",
               "t.yaml:4: sentinel.addresses: expected a list of addresses");
    expect_bad("sentinel:\n  addresses:\n    - a:1\n    - b\n",
               "t.yaml:4: sentinel.addresses: expected HOST:PORT or unix:/path, got 'b'");
    expect_bad("sentinel:\n  addresses: {a: 1}\n",
               "t.yaml:2: sentinel.addresses: expected a list of addresses");
    expect_bad("replicas: a:1\n", "t.yaml:1: replicas: expected a list of mappings");
    expect_bad("replicas:\n  - a:1\n", "t.yaml:2: replicas: expected a list of mappings");
    expect_bad("replicas:\n  - { weight: 2 }\n", "t.yaml:2: replicas: a replica needs an address");
    expect_bad("replicas:\n  - { address: a:1, weight: 0 }\n",
               "t.yaml:2: replicas.weight: 0 is out of range (1..1000)");
    expect_bad("replicas:\n  - address: a:1\n    weight: 1001\n",
               "t.yaml:3: replicas.weight: 1001 is out of range (1..1000)");
    expect_bad("replicas:\n  - address: a:1\n    zone: \"\"\n", "~t.yaml:3: replicas.zone:");
    expect_bad("replicas:\n  - address: a:1\n    color: red\n",
               "t.yaml:3: replicas.color: unknown key");
    expect_bad("replicas:\n  - address: unix:/x\n", "~t.yaml:2: replicas.address: expected HOST");
    expect_bad("replicas:\n  - {address: a:1}\n  - {address: a:1}\n",
               "t.yaml:3: replicas.address: a:1 appears twice");
    expect_bad("- a\n- b\n", "t.yaml:1: the top level must be a mapping of keys, not a list");
    expect_bad("just text\n",
               "t.yaml:1: the top level must be a mapping of keys, not a single value");
    expect_bad("\"\"\n", "~the top level must be a mapping");
    expect_bad("? [a, b]\n: c\n", "t.yaml:1: mapping keys must be scalars");
    /* Hostile keys are cut short and masked in messages. */
    expect_bad("\"a\\nb\": 1\n", "t.yaml:1: a?b: unknown key");
    expect_bad("sentinel:\n  "
               "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx: "
               "1\n",
               "~xxxxxxxxxx...: unknown key");
}

/* YAML features that are refused, and the stream-level rules. */
static void test_yaml_rules(void **state)
{
    char err[CONFIG_ERR_MAX];
    struct config *cfg;
    char *big;

    (void)state;
    expect_bad("zone: a\nbackend: &x a:1\n", "t.yaml:2: YAML anchors are not supported");
    expect_bad("zone: &z a\nsentinel:\n  master-name: *z\n",
               "t.yaml:1: YAML anchors are not supported");
    expect_bad("listen: &l [a:1]\n", "t.yaml:1: YAML anchors are not supported");
    expect_bad("sentinel: &s {master-name: m}\n", "t.yaml:1: YAML anchors are not supported");
    expect_bad("zone: a\nbackend: *x\n", "t.yaml:2: YAML aliases are not supported");
    expect_bad("backend: a:1\n---\nzone: b\n", "t.yaml:2: more than one YAML document");
    expect_bad("---\n---\n", "t.yaml:2: more than one YAML document");
    expect_bad("backend: [unclosed\n", "~t.yaml:2: YAML syntax error: ");
    expect_bad("backend: a:1\n  zone: x\n", "t.yaml:2: YAML syntax error: mapping values are not "
                                            "allowed in this context");
    expect_bad("zone: \"x\\0y\"\n", "t.yaml:1: NUL character in a value");
    expect_bad("zone: \xff\xfe\n", "~t.yaml:1: YAML syntax error: invalid");
    expect_bad("zone: a\n\n\nbackend: \x80\n", "~t.yaml:4: YAML syntax error");
    cfg = config_new();
    assert_false(config_load_string(cfg, "zone: a\0b\n", 9, "t.yaml", err, sizeof(err)));
    assert_non_null(strstr(err, "t.yaml:1: YAML syntax error: "));
    config_free(cfg);
    /* Eight levels of nesting are allowed, nine are not. */
    cfg = load("a: [[[[[[[1]]]]]]]\n", err);
    assert_null(cfg);
    assert_string_equal(err, "t.yaml:1: a: unknown key"); /* parsed: 8 levels */
    expect_bad("a: [[[[[[[[1]]]]]]]]\n", "t.yaml:1: nested deeper than 8 levels");
    expect_bad("a:\n b:\n  c:\n   d:\n    e:\n     f:\n      g:\n       h:\n        i: 1\n",
               "t.yaml:9: nested deeper than 8 levels");
    /* Empty documents set nothing. */
    for (size_t i = 0; i < 6; i++) {
        static const char *const empty[] = {"",      "~\n",    "# just a comment\n",
                                            "---\n", "null\n", "--- ~\n...\n"};
        cfg = load(empty[i], err);
        if (cfg == NULL) {
            fail_msg("'%s': %s", empty[i], err);
        }
        assert_int_equal(cfg->workers, 1);
        config_free(cfg);
    }
    /* More than 1 MiB is refused before parsing. */
    big = malloc((1 << 20) + 2);
    assert_non_null(big);
    memset(big, '#', (1 << 20) + 1);
    big[(1 << 20) + 1] = '\0';
    cfg = config_new();
    assert_false(config_load_string(cfg, big, (1 << 20) + 1, "big.yaml", err, sizeof(err)));
    assert_string_equal(err, "big.yaml: larger than 1048576 bytes");
    assert_true(config_load_string(cfg, big, 1 << 20, "big.yaml", err, sizeof(err)));
    config_free(cfg);
    free(big);
}

/* A file that fails part-way leaves nothing leaked (checked by ASan). */
static void test_failure_midway(void **state)
{
    char err[CONFIG_ERR_MAX];

    (void)state;
    assert_null(load("zone: a\nbackend-password: x\nsentinel:\n  master-name: m\n"
                     "  addresses: [a:1, b:2]\nlisten: [c:3]\n"
                     "replicas:\n  - {address: a:1, zone: z}\n  - {address: b:2, weight: 0}\n",
                     err));
    assert_string_equal(err, "t.yaml:9: replicas.weight: 0 is out of range (1..1000)");
    assert_null(load("replicas:\n  - {address: a:1, weight: 2, zone: \"has space\"}\n", err));
    assert_null(load("listen: [a:1, b:2, c]\n", err));
}

static void test_list_cap(void **state)
{
    char err[CONFIG_ERR_MAX], *yaml = malloc(1025 * 16 + 32);
    size_t used;

    (void)state;
    assert_non_null(yaml);
    used = (size_t)sprintf(yaml, "listen:\n");
    for (int i = 0; i < 1025; i++) {
        used += (size_t)sprintf(yaml + used, "  - h:%d\n", i + 1);
    }
    assert_null(load(yaml, err));
    free(yaml);
    assert_string_equal(err, "t.yaml:1026: listen: more than 1024 items");
}

/* Lists given by flags are capped the same way. */
static void test_flag_list_cap(void **state)
{
    char err[CONFIG_ERR_MAX], addr[32];
    struct config *cfg = config_new();

    (void)state;
    for (int i = 0; i < 1024; i++) {
        snprintf(addr, sizeof(addr), "10.0.%d.%d:26379", i / 256, i % 256);
        assert_true(config_set(cfg, "sentinel.addresses", addr, err, sizeof(err)));
    }
    assert_false(config_set(cfg, "sentinel.addresses", "10.9.9.9:1", err, sizeof(err)));
    assert_string_equal(err, "--sentinel.addresses: more than 1024 items");
    assert_false(config_set(cfg, "sentinel.addresses", "bad", err, sizeof(err)));
    assert_int_equal(cfg->nsentinels, 1024);
    config_free(cfg);
}

static void test_load_file(void **state)
{
    char err[CONFIG_ERR_MAX];
    struct config *cfg = config_new();

    (void)state;
    assert_false(config_load_file(cfg, "/nonexistent/x.yaml", err, sizeof(err)));
    assert_string_equal(err, "/nonexistent/x.yaml: cannot open: No such file or directory");
    config_free(cfg);
    cfg = config_new();
    assert_false(config_load_file(cfg, "conf", err, sizeof(err))); /* a directory */
    assert_non_null(strstr(err, "conf: cannot read: "));
    config_free(cfg);
}

static void test_flags(void **state)
{
    char err[CONFIG_ERR_MAX];
    struct config *cfg = load("listen: [1.1.1.1:1, 2.2.2.2:2]\nbackend: 127.0.0.1:1\n"
                              "sentinel:\n  addresses: [s:1, s:2]\n",
                              err);

    (void)state;
    assert_non_null(cfg);
    assert_int_equal(cfg->nlisteners, 2);
    /* The first flag for a list replaces the file's list; later ones add. */
    assert_true(config_set(cfg, "listen", "127.0.0.1:7000", err, sizeof(err)));
    assert_int_equal(cfg->nlisteners, 1);
    assert_int_equal(cfg->listeners[0].addr.port, 7000);
    assert_int_equal(cfg->listeners[0].read_from, -1);
    assert_true(config_set(cfg, "listen", "unix:/tmp/x.sock", err, sizeof(err)));
    assert_int_equal(cfg->nlisteners, 2);
    assert_false(config_set(cfg, "listen", "nope", err, sizeof(err)));
    assert_string_equal(err, "--listen: expected HOST:PORT or unix:/path, got 'nope'");
    assert_int_equal(cfg->nlisteners, 2);
    assert_true(config_set(cfg, "sentinel.addresses", "s:3", err, sizeof(err)));
    assert_int_equal(cfg->nsentinels, 1);
    assert_int_equal(cfg->sentinels[0].port, 3);
    assert_true(config_set(cfg, "sentinel.addresses", "s:4", err, sizeof(err)));
    assert_int_equal(cfg->nsentinels, 2);
    /* Scalars: the same parsing and bounds as the file. */
    assert_true(config_set(cfg, "hold-timeout", "2s", err, sizeof(err)));
    assert_int_equal(cfg->hold_timeout_ms, 2000);
    assert_true(config_set(cfg, "workers", "auto", err, sizeof(err)));
    assert_int_equal(cfg->workers, 0);
    assert_true(config_set(cfg, "read-from", "master", err, sizeof(err)));
    assert_int_equal(cfg->read_from, READ_FROM_MASTER);
    assert_true(config_set(cfg, "log-level", "debug", err, sizeof(err)));
    assert_int_equal(cfg->log_level, LOG_DEBUG);
    assert_true(config_set(cfg, "read-your-writes", "false", err, sizeof(err)));
    assert_false(cfg->read_your_writes);
    assert_true(config_set(cfg, "zone", "z1", err, sizeof(err)));
    assert_true(config_set(cfg, "zone", "z2", err, sizeof(err))); /* the old one is freed */
    assert_string_equal(cfg->zone, "z2");
    assert_true(config_set(cfg, "client-output-limit", "2gb", err, sizeof(err)));
    assert_int_equal(cfg->client_output_limit, 2 * GB);
    assert_false(config_set(cfg, "sentinel.timeout", "forever", err, sizeof(err)));
    assert_string_equal(
        err, "--sentinel.timeout: expected a duration such as 500ms or 2s, got 'forever'");
    assert_int_equal(cfg->sentinel_timeout_ms, 500); /* unchanged */
    assert_false(config_set(cfg, "workers", "0", err, sizeof(err)));
    assert_string_equal(err, "--workers: 0 is out of range (1..256 or auto)");
    assert_false(config_set(cfg, "backend", "h:0", err, sizeof(err)));
    assert_int_equal(cfg->backend.port, 1); /* unchanged */
    assert_false(config_set(cfg, "nope", "1", err, sizeof(err)));
    assert_string_equal(err, "--nope: unknown key (see --help-config)");
    assert_false(config_set(cfg, "sentinel", "x", err, sizeof(err)));
    assert_string_equal(err, "--sentinel: a section; set its keys as SECTION.KEY");
    assert_false(config_set(cfg, "replicas", "a:1", err, sizeof(err)));
    assert_non_null(strstr(err, "--replicas: "));
    assert_false(config_set(cfg, "zone", NULL, err, sizeof(err)));
    assert_string_equal(err, "--zone: missing value");
    assert_false(config_set(cfg, "zone", "", err, sizeof(err)));
    /* Setting the master name turns Sentinel mode on; with backend: refused. */
    assert_true(config_set(cfg, "sentinel.master-name", "m", err, sizeof(err)));
    assert_true(cfg->has_sentinel);
    assert_false(config_validate(cfg, err, sizeof(err)));
    assert_string_equal(err, "backend and sentinel.master-name cannot both be set: backend is for "
                             "setups without Sentinel");
    config_free(cfg);
}

/* Flags alone, without a file, make a whole configuration. */
static void test_flags_only(void **state)
{
    char err[CONFIG_ERR_MAX];
    struct config *cfg = config_new();

    (void)state;
    assert_true(config_set(cfg, "sentinel.master-name", "mymaster", err, sizeof(err)));
    assert_true(config_set(cfg, "sentinel.addresses", "10.0.0.1:26379", err, sizeof(err)));
    assert_true(config_set(cfg, "sentinel.addresses", "10.0.0.2:26379", err, sizeof(err)));
    assert_true(config_set(cfg, "listen", "0.0.0.0:6380", err, sizeof(err)));
    assert_true(config_validate(cfg, err, sizeof(err)));
    assert_int_equal(cfg->nsentinels, 2);
    assert_int_equal(cfg->nlisteners, 1);
    assert_null(cfg->source);
    config_free(cfg);
}

static void test_validate(void **state)
{
    struct config *cfg;

    (void)state;
    expect_invalid("sentinel:\n  master-name: m\n",
                   "sentinel.master-name needs at least one address in sentinel.addresses");
    expect_invalid("sentinel:\n  addresses: [a:1]\n",
                   "sentinel.addresses needs sentinel.master-name");
    expect_invalid("backend: a:1\nsentinel:\n  addresses: [a:1]\n",
                   "sentinel.addresses needs sentinel.master-name");
    expect_invalid("backend: a:1\nsentinel: {master-name: m, addresses: [s:1]}\n",
                   "cannot both be set");
    expect_invalid("zone: a\n", "nothing to proxy to");
    expect_invalid("backend: a:1\nreconnect-min: 5s\nreconnect-max: 1s\n",
                   "reconnect-min (5s) is larger than reconnect-max (1s)");
    expect_invalid("backend: a:1\nlisten: [b:1, 'c:2', b:1]\n", "listen: b:1 appears twice");
    expect_invalid("backend: a:1\nlisten: [\"[::1]:1\", {address: \"[::1]:1\"}]\n",
                   "listen: [::1]:1 appears twice");
    expect_invalid("sentinel: {master-name: m, addresses: [a:1, b:1, a:1]}\n",
                   "sentinel.addresses: a:1 appears twice");
    expect_invalid("backend: a:1\nbackend-username: u\n",
                   "backend-username needs backend-password");
    expect_invalid("sentinel: {master-name: m, addresses: [a:1], username: u}\n",
                   "sentinel.username needs sentinel.password");
    /* Equal bounds, a password alone, and the same port on different hosts are fine. */
    cfg = load_valid("backend: a:1\nreconnect-min: 1s\nreconnect-max: 1000\n"
                     "backend-password: p\nlisten: [a:1, b:1, unix:/a, 'unix:/b']\n");
    assert_int_equal(cfg->nlisteners, 4);
    config_free(cfg);
}

static void test_tls_settings(void **state)
{
    struct config *cfg;

    (void)state;
    expect_invalid("backend: a:1\nlisten: tls://b:1\n",
                   "a TLS listener needs tls.cert and tls.key");
    expect_invalid("backend: a:1\nlisten: [{address: 'b:1', tls: yes}]\ntls: {cert: c}\n",
                   "a TLS listener needs tls.cert and tls.key");
    expect_bad("backend: a:1\nlisten: [{address: 'b:1', tls: maybe}]\n",
               "t.yaml:2: listen.tls: expected true or false, got 'maybe'");
    expect_bad("backend: a:1\nlisten: tls://unix:/a\n", "~TLS on a unix socket is not supported");
    expect_bad("backend: a:1\nlisten: [{address: 'tls://b:1', tls: false}]\n",
               "t.yaml:2: listen.tls: false, but the address says tls://");
    expect_invalid("backend: unix:/x\nbackend-tls: {enabled: true}\n",
                   "backend-tls: TLS on a unix socket is not supported");
    expect_invalid("backend: a:1\ntls: {client-auth: required}\n", "tls.client-auth needs tls.ca");
    expect_invalid("backend: a:1\ntls: {protocols: SSLv3}\n", "unknown protocol 'SSLv3'");
    expect_invalid("backend: a:1\ntls: {protocols: ' '}\n", "no protocol named");
    expect_invalid("backend: a:1\ntls: {protocols: \"TLS\\e[2K\\rv9\"}\n",
                   "tls.protocols: unknown protocol 'TLS?[2K?v9' (TLSv1.2 and TLSv1.3 are known)");
    expect_invalid("backend: a:1\nbackend-tls: {ca: x}\n",
                   "backend-tls has settings but backend-tls.enabled is false");
    expect_invalid("backend: a:1\nbackend-tls: {enabled: true, cert: c}\n",
                   "backend-tls.cert and backend-tls.key go together");
    expect_invalid("sentinel: {master-name: m, addresses: [a:1], tls: {server-name: s}}\n",
                   "sentinel.tls has settings but sentinel.tls.enabled is false");
    expect_invalid(
        "sentinel: {master-name: m, addresses: [a:1], tls: {enabled: on, protocols: x}}\n",
        "sentinel.tls.protocols: unknown protocol 'x'");
    expect_invalid("backend: a:1\nlisten: [{address: 'b:1', tls: {cert: c}}]\n",
                   "listener b:1: tls needs cert and key");
    expect_invalid("backend: a:1\nlisten: [{address: 'b:1', tls: {cert: c, key: k, "
                   "client-auth: optional}}]\n",
                   "listener b:1: tls: client-auth needs a ca");
    expect_bad("backend: a:1\nlisten: [{address: 'b:1', tls: {cert: c, verify: no}}]\n",
               "t.yaml:2: listen.tls.verify: unknown key");
    expect_bad("backend: a:1\nlisten: [{address: 'b:1', tls: {client-auth: some}}]\n",
               "~listen.tls.client-auth");
    expect_bad("backend: a:1\nlisten: [{address: 'unix:/x', tls: {cert: c, key: k}}]\n",
               "~TLS on a unix socket is not supported");
    /* Its own mapping stands alone: the tls.* keys are not needed, nor used. */
    cfg = load_valid("backend: a:1\nlisten: [{address: 'b:1', tls: {cert: c, key: k, ca: x, "
                     "client-auth: required}}]\ntls: {ciphers: HIGH}\n");
    assert_true(cfg->listeners[0].tls);
    assert_non_null(cfg->listeners[0].tls_own);
    assert_string_equal(cfg->listeners[0].tls_own->cert, "c");
    assert_int_equal(cfg->listeners[0].tls_own->client_auth, TLS_AUTH_REQUIRED);
    assert_string_equal(cfg->listeners[0].tls_own->protocols, "TLSv1.2 TLSv1.3");
    assert_null(cfg->listeners[0].tls_own->ciphers);
    config_free(cfg);
    cfg = load_valid("backend: a:1\nlisten: [tls://b:1, c:2, {address: 'd:3', tls: true}]\n"
                     "tls: {cert: c, key: k, protocols: TLSv1.3}\n"
                     "backend-tls: {enabled: true, verify: false}\n"
                     "sentinel: {tls: {enabled: yes, server-name: s.example}}\n");
    assert_int_equal(cfg->nlisteners, 3);
    assert_true(cfg->listeners[0].tls);
    assert_string_equal(cfg->listeners[0].addr.host, "b");
    assert_false(cfg->listeners[1].tls);
    assert_true(cfg->listeners[2].tls);
    assert_string_equal(cfg->tls.protocols, "TLSv1.3");
    assert_true(cfg->backend_tls.enabled);
    assert_false(cfg->backend_tls.verify);
    assert_true(cfg->sentinel_tls.verify);
    assert_string_equal(cfg->sentinel_tls.server_name, "s.example");
    assert_int_equal(cfg->tls_handshake_timeout_ms, 10000);
    config_free(cfg);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;

    if (f == NULL) {
        fail_msg("cannot open %s (run from the repository root)", path);
    }
    buf = calloc(1, 1 << 20);
    assert_non_null(buf);
    n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* The key, at the start of a line (commented out or not) and indented by its
 * depth, followed by a colon: "workers:", "# workers:", "  timeout:". */
static bool example_has_key(const char *text, const char *name)
{
    const char *leaf = strrchr(name, '.') != NULL ? strrchr(name, '.') + 1 : name;
    const char *indent = leaf != name ? "  " : "";
    char want[3][96];

    snprintf(want[0], sizeof(want[0]), "\n%s%s:", indent, leaf);
    snprintf(want[1], sizeof(want[1]), "\n# %s%s:", indent, leaf);
    snprintf(want[2], sizeof(want[2]), "\n#%s%s:", indent, leaf);
    return strstr(text, want[0]) != NULL || strstr(text, want[1]) != NULL ||
           strstr(text, want[2]) != NULL;
}

/* The example loads and validates, and documents every key. */
static void test_example_file(void **state)
{
    char err[CONFIG_ERR_MAX];
    struct config *cfg = config_new();
    char *example = slurp("conf/sentinel-proxy.yaml");

    (void)state;
    if (!config_load_file(cfg, "conf/sentinel-proxy.yaml", err, sizeof(err)) ||
        !config_validate(cfg, err, sizeof(err))) {
        fail_msg("%s", err);
    }
    assert_true(cfg->has_backend);
    assert_false(cfg->has_sentinel);
    assert_string_equal(cfg->source, "conf/sentinel-proxy.yaml");
    for (size_t i = 0; i < config_key_count(); i++) {
        if (!example_has_key(example, config_key_name(i))) {
            fail_msg("key %s is not in conf/sentinel-proxy.yaml", config_key_name(i));
        }
    }
    free(example);
    config_free(cfg);
}

/* REFERENCE.md holds the generated table as it is now, so the descriptions,
 * defaults and bounds cannot fall behind the table either. */
static void test_reference(void **state)
{
    char *reference = slurp("conf/REFERENCE.md"), *readme = slurp("README.md"), *table = NULL;
    char *line;
    size_t len = 0, rows = 0;
    FILE *out = open_memstream(&table, &len);

    (void)state;
    assert_non_null(out);
    config_print_reference(out);
    fclose(out);
    if (strstr(reference, table) == NULL) {
        fail_msg("conf/REFERENCE.md is out of date; regenerate its table with "
                 "sentinel-proxy --help-config");
    }
    if (strstr(readme, table) == NULL) {
        fail_msg("README.md's configuration reference is out of date (see conf/REFERENCE.md)");
    }
    for (size_t i = 0; i < config_key_count(); i++) {
        char quoted[96];
        snprintf(quoted, sizeof(quoted), "| `%s` |", config_key_name(i));
        assert_non_null(strstr(table, quoted));
    }
    /* Every row has six cells: no stray '|' in a description. */
    for (line = strtok(table, "\n"); line != NULL; line = strtok(NULL, "\n"), rows++) {
        size_t pipes = 0;
        for (const char *p = line; *p != '\0'; p++) {
            pipes += *p == '|';
        }
        assert_int_equal(pipes, 7);
    }
    assert_int_equal(rows, config_key_count() + 2);
    assert_null(config_key_name(config_key_count()));
    free(table);
    free(reference);
    free(readme);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),      cmocka_unit_test(test_minimal_backend),
        cmocka_unit_test(test_full_sentinel), cmocka_unit_test(test_listen_forms),
        cmocka_unit_test(test_units),         cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_name_lengths),  cmocka_unit_test(test_bad_structure),
        cmocka_unit_test(test_yaml_rules),    cmocka_unit_test(test_failure_midway),
        cmocka_unit_test(test_list_cap),      cmocka_unit_test(test_flag_list_cap),
        cmocka_unit_test(test_load_file),     cmocka_unit_test(test_flags),
        cmocka_unit_test(test_flags_only),    cmocka_unit_test(test_validate),
        cmocka_unit_test(test_tls_settings),  cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_reference),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
