/*
 * test_config.c - unit tests for the configuration loader: good files, every
 * kind of bad file (with file, line and key in the message), flags, cross-key
 * validation, and documentation that cannot drift from the key table.
 */
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/config.h"
#include "proxy/log.h"

static struct config *load(const char *yaml, char *err)
{
    struct config *cfg = config_new();

    err[0] = '\0';
    if (!config_load_string(cfg, yaml, strlen(yaml), "t.yaml", err, CONFIG_ERR_MAX)) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

static void expect_bad(const char *yaml, const char *msg)
{
    char err[CONFIG_ERR_MAX];
    struct config *cfg = load(yaml, err);

    if (cfg != NULL) {
        config_free(cfg);
        fail_msg("accepted: %s", yaml);
    }
    if (strstr(err, msg) == NULL) {
        fail_msg("error '%s' does not contain '%s'", err, msg);
    }
}

static void test_defaults(void **state)
{
    struct config *cfg = config_new();
    char err[CONFIG_ERR_MAX];

    (void)state;
    assert_int_equal(cfg->workers, 1);
    assert_int_equal(cfg->backend_connections, 2);
    assert_int_equal(cfg->proto_max_bulk_len, 512ULL << 20);
    assert_int_equal(cfg->hold_timeout_ms, 60000);
    assert_int_equal(cfg->sentinel_timeout_ms, 500);
    assert_true(cfg->read_your_writes);
    assert_int_equal(cfg->read_from, READ_FROM_PREFER_REPLICAS);
    /* Without a backend nothing can be validated. */
    assert_false(config_validate(cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "no backend"));
    config_free(cfg);
}

static void test_minimal_backend(void **state)
{
    char err[CONFIG_ERR_MAX];
    struct config *cfg = load("backend: 127.0.0.1:6379\n", err);

    (void)state;
    assert_non_null(cfg);
    assert_true(cfg->has_backend);
    assert_int_equal(cfg->backend.port, 6379);
    assert_true(config_validate(cfg, err, sizeof(err)));
    assert_int_equal(cfg->nlisteners, 1); /* the default listener */
    assert_int_equal(cfg->listeners[0].addr.port, 6380);
    config_free(cfg);
}

static void test_full_sentinel(void **state)
{
    static const char yaml[] = "listen:\n"
                               "  - 0.0.0.0:7000\n"
                               "  - unix:/tmp/sp.sock\n"
                               "  - { address: \"[::1]:7001\", read-from: master }\n"
                               "workers: auto\n"
                               "max-clients: 50\n"
                               "tcp-keepalive: 0\n"
                               "client-idle-timeout: 1h\n"
                               "log-level: debug\n"
                               "backend-connections: 4\n"
                               "backend-username: u\n"
                               "backend-password: p\n"
                               "connect-timeout: 250ms\n"
                               "reconnect-min: 1\n"
                               "reconnect-max: 1m\n"
                               "hold-timeout: 5s\n"
                               "hold-memory: 1k\n"
                               "proto-max-bulk-len: 2gb\n"
                               "client-backlog-limit: 64KB\n"
                               "sentinel:\n"
                               "  master-name: mymaster\n"
                               "  addresses: [127.0.0.1:26379, 127.0.0.1:26380]\n"
                               "  timeout: 100ms\n"
                               "  poll-interval: 2s\n"
                               "  forget-after: 1d\n"
                               "read-from: replicas\n"
                               "balance: weighted\n"
                               "read-your-writes: no\n"
                               "max-replica-lag: 0\n"
                               "zone: a\n"
                               "replicas:\n"
                               "  - { address: 10.0.0.2:6379, weight: 3, zone: b }\n";
    char err[CONFIG_ERR_MAX];
    struct config *cfg = load(yaml, err);

    (void)state;
    if (cfg == NULL) {
        fail_msg("%s", err);
    }
    assert_true(config_validate(cfg, err, sizeof(err)));
    assert_int_equal(cfg->nlisteners, 3);
    assert_int_equal(cfg->listeners[2].read_from, READ_FROM_MASTER);
    assert_int_equal(cfg->listeners[0].read_from, -1);
    assert_int_equal(cfg->workers, 0);
    assert_int_equal(cfg->log_level, LOG_DEBUG);
    assert_int_equal(cfg->connect_timeout_ms, 250);
    assert_int_equal(cfg->reconnect_min_ms, 1);
    assert_int_equal(cfg->reconnect_max_ms, 60000);
    assert_int_equal(cfg->client_idle_timeout_ms, 3600000);
    assert_int_equal(cfg->hold_memory, 1000);
    assert_int_equal(cfg->proto_max_bulk_len, 2ULL << 30);
    assert_int_equal(cfg->client_backlog_limit, 64 * 1024);
    assert_true(cfg->has_sentinel);
    assert_string_equal(cfg->master_name, "mymaster");
    assert_int_equal(cfg->nsentinels, 2);
    assert_int_equal(cfg->sentinel_forget_ms, 86400000ULL);
    assert_int_equal(cfg->read_from, READ_FROM_REPLICAS);
    assert_int_equal(cfg->balance, BALANCE_WEIGHTED);
    assert_false(cfg->read_your_writes);
    assert_int_equal(cfg->nreplica_prefs, 1);
    assert_string_equal(cfg->replica_prefs[0].address, "10.0.0.2:6379");
    assert_int_equal(cfg->replica_prefs[0].weight, 3);
    assert_string_equal(cfg->replica_prefs[0].zone, "b");
    config_free(cfg);
}

static void test_bad_files(void **state)
{
    (void)state;
    expect_bad("backend: 127.0.0.1:6379\nbakend: x\n", "t.yaml:2: bakend: unknown key");
    expect_bad("sentinel:\n  master-name: m\n  tiemout: 1s\n",
               "t.yaml:3: sentinel.tiemout: unknown key");
    expect_bad("workers: 0\n", "t.yaml:1: workers: 0 is out of range (1..256 or auto)");
    expect_bad("workers: 257\n", "out of range");
    expect_bad("workers: [1]\n", "t.yaml:1: workers: expected a single value");
    expect_bad("sentinel:\n  timeout: abc\n",
               "t.yaml:2: sentinel.timeout: expected a duration such as 500ms or 2s, got 'abc'");
    expect_bad("sentinel:\n  timeout: 5ms\n", "out of range");
    expect_bad("hold-memory: 12xb\n", "expected a size");
    expect_bad("hold-memory: 99999999999999999999\n", "expected a size");
    expect_bad("hold-memory: 18446744073709551615gb\n", "expected a size");
    expect_bad("max-clients: 1.5\n", "expected an integer");
    expect_bad("read-your-writes: maybe\n", "expected true or false");
    expect_bad("read-from: slaves\n", "expected master, replicas or prefer-replicas");
    expect_bad("log-level: loud\n", "expected debug, info, warn or error");
    expect_bad("backend: localhost\n", "t.yaml:1: backend: expected HOST:PORT");
    expect_bad("backend: 1.2.3.4:99999\n", "invalid port");
    expect_bad("listen: {a: b}\n", "t.yaml:1: listen: unknown key 'a'");
    expect_bad("listen:\n  - [1, 2]\n", "expected a list of addresses");
    expect_bad("sentinel: 3\n", "t.yaml:1: sentinel: expected a mapping");
    expect_bad("backend: a:1\nbackend: b:2\n", "t.yaml:2: backend: duplicate key");
    expect_bad("a: &x 1\nb: *x\n", "YAML anchors are not supported");
    expect_bad("backend: a:1\n---\nbackend: b:2\n", "more than one document");
    expect_bad("a:\n b:\n  c:\n   d:\n    e:\n     f:\n      g:\n       h:\n        i: 1\n",
               "nested too deeply");
    expect_bad("backend: [unclosed\n", "YAML syntax error");
    expect_bad("- a\n- b\n", "the top level must be a mapping");
    expect_bad("sentinel:\n  master-name: \"my master\"\n", "expected a name without spaces");
    expect_bad("replicas:\n  - { weight: 2 }\n", "a replica needs an address");
    expect_bad("replicas:\n  - { address: a:1, weight: 0 }\n", "replicas.weight");
}

static void test_empty_file(void **state)
{
    char err[CONFIG_ERR_MAX];
    struct config *cfg = load("", err);

    (void)state;
    assert_non_null(cfg);
    config_free(cfg);
    cfg = load("~\n", err);
    assert_non_null(cfg);
    config_free(cfg);
    cfg = load("# only a comment\n", err);
    assert_non_null(cfg);
    config_free(cfg);
}

static void test_flags(void **state)
{
    char err[CONFIG_ERR_MAX];
    struct config *cfg = load("listen: [1.1.1.1:1, 2.2.2.2:2]\nbackend: 127.0.0.1:1\n", err);

    (void)state;
    assert_non_null(cfg);
    assert_int_equal(cfg->nlisteners, 2);
    /* The first flag for a list replaces the file's list; later ones add. */
    assert_true(config_set(cfg, "listen", "127.0.0.1:7000", err, sizeof(err)));
    assert_int_equal(cfg->nlisteners, 1);
    assert_true(config_set(cfg, "listen", "127.0.0.1:7001", err, sizeof(err)));
    assert_int_equal(cfg->nlisteners, 2);
    assert_true(config_set(cfg, "hold-timeout", "2s", err, sizeof(err)));
    assert_int_equal(cfg->hold_timeout_ms, 2000);
    assert_false(config_set(cfg, "hold-timeout", "forever", err, sizeof(err)));
    assert_non_null(strstr(err, "--hold-timeout: expected a duration"));
    assert_false(config_set(cfg, "nope", "1", err, sizeof(err)));
    assert_non_null(strstr(err, "--nope: unknown key"));
    assert_true(config_set(cfg, "sentinel.addresses", "127.0.0.1:26379", err, sizeof(err)));
    assert_true(config_set(cfg, "sentinel.master-name", "m", err, sizeof(err)));
    /* backend and Sentinel together are refused. */
    assert_false(config_validate(cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "cannot both be set"));
    config_free(cfg);
}

static void test_validate(void **state)
{
    char err[CONFIG_ERR_MAX];
    struct config *cfg;

    (void)state;
    cfg = load("sentinel:\n  master-name: m\n", err);
    assert_false(config_validate(cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "at least one"));
    config_free(cfg);
    cfg = load("sentinel:\n  addresses: [a:1]\n", err);
    assert_false(config_validate(cfg, err, sizeof(err)));
    config_free(cfg);
    cfg = load("backend: a:1\nreconnect-min: 5s\nreconnect-max: 1s\n", err);
    assert_false(config_validate(cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "reconnect-min"));
    config_free(cfg);
    cfg = load("backend: a:1\nlisten: [b:1, b:1]\n", err);
    assert_false(config_validate(cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "appears twice"));
    config_free(cfg);
    cfg = load("sentinel: {master-name: m, addresses: [a:1, a:1]}\n", err);
    assert_false(config_validate(cfg, err, sizeof(err)));
    config_free(cfg);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;

    assert_non_null(f);
    buf = calloc(1, 1 << 20);
    n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* The example file loads, and every key is documented in it and in the
 * README, so the documentation cannot fall behind the table. */
static void test_docs_cover_every_key(void **state)
{
    char err[CONFIG_ERR_MAX];
    struct config *cfg = config_new();
    char *example = slurp("conf/sentinel-proxy.yaml");
    char *readme = slurp("README.md");

    (void)state;
    if (!config_load_file(cfg, "conf/sentinel-proxy.yaml", err, sizeof(err)) ||
        !config_validate(cfg, err, sizeof(err))) {
        fail_msg("%s", err);
    }
    for (size_t i = 0; i < config_key_count(); i++) {
        const char *name = config_key_name(i);
        const char *leaf = strrchr(name, '.') != NULL ? strrchr(name, '.') + 1 : name;
        char quoted[128];
        snprintf(quoted, sizeof(quoted), "`%s`", name);
        if (strstr(example, leaf) == NULL) {
            fail_msg("key %s is not in conf/sentinel-proxy.yaml", name);
        }
        if (strstr(readme, quoted) == NULL) {
            fail_msg("key %s is not in README.md", name);
        }
    }
    free(example);
    free(readme);
    config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),      cmocka_unit_test(test_minimal_backend),
        cmocka_unit_test(test_full_sentinel), cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_empty_file),    cmocka_unit_test(test_flags),
        cmocka_unit_test(test_validate),      cmocka_unit_test(test_docs_cover_every_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
