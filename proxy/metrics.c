/*
 * metrics.c - what the admin endpoints say: the Prometheus text exposition
 * (counters summed over the workers, their levels, the topology and the
 * Sentinels), the topology as JSON, and readiness.
 *
 * Runs on the control thread, which owns px->topo and reads the workers'
 * counters with relaxed atomic loads (each is written by one worker only).
 * Label values are addresses and fixed words: cardinality stays bounded.
 */
#include "proxy/metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "conf/config.h"
#include "lib/ctlreport.h"
#include "lib/strbuf.h"
#include "lib/topology.h"
#include "proxy/backend.h"
#include "proxy/chunk.h"
#include "proxy/proxy.h"
#include "proxy/reload.h"
#include "proxy/worker.h"

#define M "sentinel_proxy_"

static const char *const metrics_dest[REQ_NDEST] = {"local", "master", "replica"};
static const char *const metrics_kind[WORKER_NKIND] = {"read", "write", "other"};
static const char *const metrics_outcome[WORKER_NOUT] = {"ok", "server_error", "proxy_error"};

/* ---- escaping ------------------------------------------------------------ */

/* s as a Prometheus label value (backslash, quote and newline escaped). */
static void metrics_label(struct strbuf *sb, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\' || *s == '"') {
            strbuf_printf(sb, "\\%c", *s);
        } else if (*s == '\n') {
            strbuf_append(sb, "\\n", 2);
        } else {
            strbuf_append(sb, s, 1);
        }
    }
}

/* s as a JSON string, quotes included; NULL as null. */
static void metrics_json_str(struct strbuf *sb, const char *s)
{
    if (s == NULL) {
        strbuf_append(sb, "null", 4);
        return;
    }
    strbuf_append(sb, "\"", 1);
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            strbuf_printf(sb, "\\%c", ch);
        } else if (ch < 0x20 || ch == 0x7f) {
            strbuf_printf(sb, "\\u%04x", ch);
        } else {
            strbuf_append(sb, s, 1);
        }
    }
    strbuf_append(sb, "\"", 1);
}

/* ---- exposition helpers --------------------------------------------------- */

static void metrics_head(struct strbuf *sb, const char *name, const char *type, const char *help)
{
    strbuf_printf(sb, "# HELP " M "%s %s\n# TYPE " M "%s %s\n", name, help, name, type);
}

static void metrics_u64(struct strbuf *sb, const char *name, const char *type, const char *help,
                        uint64_t v)
{
    metrics_head(sb, name, type, help);
    strbuf_printf(sb, M "%s %llu\n", name, (unsigned long long)v);
}

/* One sample with one label. */
static void metrics_labelled(struct strbuf *sb, const char *name, const char *label,
                             const char *value, uint64_t v)
{
    strbuf_printf(sb, M "%s{%s=\"", name, label);
    metrics_label(sb, value);
    strbuf_printf(sb, "\"} %llu\n", (unsigned long long)v);
}

/* A counter of struct worker_stats summed over the workers. */
#define METRICS_SUM(px, field)                                                                     \
    ({                                                                                             \
        uint64_t sum_ = 0;                                                                         \
        for (int k_ = 0; k_ < (px)->nworkers; k_++) {                                              \
            sum_ += __atomic_load_n(&(px)->workers[k_].stats.field, __ATOMIC_RELAXED);             \
        }                                                                                          \
        sum_;                                                                                      \
    })

/* ---- process -------------------------------------------------------------- */

static void metrics_process(struct proxy *px, struct strbuf *sb)
{
    long page = sysconf(_SC_PAGESIZE);
    unsigned long long vsz = 0, rss = 0;
    struct rusage ru;
    struct rlimit rl;
    struct reload_stats rs;
    uint64_t fds = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    DIR *d = opendir("/proc/self/fd");

    if (f != NULL) {
        if (fscanf(f, "%llu %llu", &vsz, &rss) != 2) {
            vsz = rss = 0;
        }
        fclose(f);
    }
    if (d != NULL) {
        for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
            fds += e->d_name[0] != '.';
        }
        closedir(d);
        fds -= fds > 0; /* the directory's own descriptor */
    }
    getrusage(RUSAGE_SELF, &ru);
    metrics_head(sb, "build_info", "gauge", "the proxy's version (value 1)");
    strbuf_printf(sb, M "build_info{version=\"%s\"} 1\n", PROXY_VERSION);
    metrics_u64(sb, "draining", "gauge", "1 while shutting down gracefully (SIGTERM)",
                px->drain_started > 0 ? 1 : 0);
    metrics_head(sb, "workers", "gauge", "data-plane threads");
    strbuf_printf(sb, M "workers %d\n", px->nworkers);
    reload_stats_get(px->reload, &rs);
    metrics_head(sb, "config_reloads_total", "counter",
                 "configuration reloads (SIGHUP, PROXY CONFIG RELOAD), by result");
    metrics_labelled(sb, "config_reloads_total", "result", "applied", rs.applied);
    metrics_labelled(sb, "config_reloads_total", "result", "failed", rs.failed);
    metrics_u64(sb, "config_last_reload_successful", "gauge",
                "1 unless the last reload failed (the running configuration stayed)",
                rs.last_ok ? 1 : 0);
    metrics_head(sb, "config_last_reload_success_timestamp_seconds", "gauge",
                 "when the configuration was last loaded, start or reload, in seconds since "
                 "the epoch");
    strbuf_printf(sb, M "config_last_reload_success_timestamp_seconds %.3f\n",
                  rs.last_applied > 0 ? rs.last_applied : px->started);
    strbuf_printf(sb,
                  "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                  "# TYPE process_resident_memory_bytes gauge\n"
                  "process_resident_memory_bytes %llu\n",
                  rss * (unsigned long long)(page > 0 ? page : 4096));
    strbuf_printf(sb,
                  "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
                  "# TYPE process_virtual_memory_bytes gauge\n"
                  "process_virtual_memory_bytes %llu\n",
                  vsz * (unsigned long long)(page > 0 ? page : 4096));
    strbuf_printf(sb,
                  "# HELP process_cpu_seconds_total Total user and system CPU time spent "
                  "in seconds.\n# TYPE process_cpu_seconds_total counter\n"
                  "process_cpu_seconds_total %.6f\n",
                  (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                      (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
    strbuf_printf(sb,
                  "# HELP process_open_fds Number of open file descriptors.\n"
                  "# TYPE process_open_fds gauge\nprocess_open_fds %llu\n",
                  (unsigned long long)fds);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        strbuf_printf(sb,
                      "# HELP process_max_fds Maximum number of open file descriptors.\n"
                      "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n",
                      (unsigned long long)rl.rlim_cur);
    }
    strbuf_printf(sb,
                  "# HELP process_start_time_seconds Start time of the process since unix "
                  "epoch in seconds.\n# TYPE process_start_time_seconds gauge\n"
                  "process_start_time_seconds %.3f\n",
                  px->started);
}

/* ---- clients and requests --------------------------------------------------- */

static void metrics_clients(struct proxy *px, struct strbuf *sb)
{
    metrics_u64(sb, "client_connections", "gauge", "clients connected now",
                (uint64_t)__atomic_load_n(&px->nclients, __ATOMIC_RELAXED));
    metrics_u64(sb, "client_connections_accepted_total", "counter", "clients accepted",
                METRICS_SUM(px, connections));
    metrics_u64(sb, "client_connections_refused_total", "counter", "clients refused at max-clients",
                METRICS_SUM(px, refused));
    metrics_u64(sb, "client_protocol_errors_total", "counter",
                "clients closed for a malformed request", METRICS_SUM(px, protocol_errors));
    metrics_head(sb, "tls_handshakes_total", "counter", "client TLS handshakes, by result");
    metrics_labelled(sb, "tls_handshakes_total", "result", "ok", METRICS_SUM(px, tls_handshakes));
    metrics_labelled(sb, "tls_handshakes_total", "result", "failed",
                     METRICS_SUM(px, tls_handshake_failures));
    metrics_u64(sb, "client_bytes_received_total", "counter", "request bytes read from clients",
                METRICS_SUM(px, bytes_in));
    metrics_u64(sb, "client_bytes_sent_total", "counter", "bytes written to clients",
                METRICS_SUM(px, bytes_out));
}

/* The latency counters of every worker, summed. */
static void metrics_latency_sum(struct proxy *px,
                                struct worker_latency sum[REQ_NDEST][WORKER_NKIND])
{
    memset(sum, 0, sizeof(struct worker_latency) * REQ_NDEST * WORKER_NKIND);
    for (int d = 0; d < REQ_NDEST; d++) {
        for (int k = 0; k < WORKER_NKIND; k++) {
            for (int b = 0; b <= WORKER_LAT_NBUCKETS; b++) {
                sum[d][k].bucket[b] = METRICS_SUM(px, lat[d][k].bucket[b]);
            }
            sum[d][k].sum_us = METRICS_SUM(px, lat[d][k].sum_us);
        }
    }
}

static uint64_t metrics_count(const struct worker_latency *h)
{
    uint64_t n = 0;

    for (int b = 0; b <= WORKER_LAT_NBUCKETS; b++) {
        n += h->bucket[b];
    }
    return n;
}

static void metrics_requests(struct proxy *px, struct strbuf *sb,
                             struct worker_latency lat[REQ_NDEST][WORKER_NKIND])
{
    metrics_u64(sb, "requests_received_total", "counter", "requests read from clients",
                METRICS_SUM(px, requests));
    metrics_head(sb, "requests_total", "counter",
                 "requests answered (reply written), by command kind and destination");
    for (int k = 0; k < WORKER_NKIND; k++) {
        for (int d = 0; d < REQ_NDEST; d++) {
            uint64_t n = metrics_count(&lat[d][k]);
            strbuf_printf(sb, M "requests_total{kind=\"%s\",destination=\"%s\"} %llu\n",
                          metrics_kind[k], metrics_dest[d], (unsigned long long)n);
        }
    }
    metrics_head(sb, "replies_total", "counter", "replies written to clients, by outcome");
    for (int o = 0; o < WORKER_NOUT; o++) {
        metrics_labelled(sb, "replies_total", "outcome", metrics_outcome[o],
                         METRICS_SUM(px, outcome[o]));
    }
    metrics_u64(sb, "unknown_outcome_total", "counter",
                "writes failed with an unknown outcome (the connection was lost, or replicas "
                "did not confirm them)",
                METRICS_SUM(px, unknown));
    metrics_u64(sb, "ack_waits_total", "counter",
                "write replies kept until replicas processed them (ack-after-replicas)",
                METRICS_SUM(px, acks_waited));
    metrics_u64(sb, "ack_failures_total", "counter",
                "writes that replicas did not confirm in time or before a failover "
                "(ack-after-replicas)",
                METRICS_SUM(px, acks_failed));
    metrics_u64(sb, "hold_timeouts_total", "counter",
                "requests failed after waiting hold-timeout for a usable backend",
                METRICS_SUM(px, held_timeouts));
    metrics_u64(sb, "requests_retried_total", "counter",
                "requests sent again after their connection failed unwritten",
                METRICS_SUM(px, retried));
    metrics_u64(sb, "ryw_reads_to_master_total", "counter",
                "reads kept off lagging replicas by read-your-writes",
                METRICS_SUM(px, ryw_to_master));
    metrics_u64(sb, "ryw_reads_checked_total", "counter",
                "reads sent to a replica behind a ROLE of their own", METRICS_SUM(px, ryw_checked));
    metrics_u64(sb, "ryw_reads_resent_total", "counter",
                "checked reads that found the replica behind and went again",
                METRICS_SUM(px, ryw_again));
}

/* The latency histograms, one per destination, buckets made cumulative. */
static void metrics_latency(struct strbuf *sb, struct worker_latency lat[REQ_NDEST][WORKER_NKIND])
{
    metrics_head(sb, "request_duration_seconds", "histogram",
                 "from a request's arrival to its reply leaving, by destination");
    for (int d = 0; d < REQ_NDEST; d++) {
        uint64_t cum = 0, sum_us = 0;
        for (int b = 0; b <= WORKER_LAT_NBUCKETS; b++) {
            for (int k = 0; k < WORKER_NKIND; k++) {
                cum += lat[d][k].bucket[b];
            }
            if (b < WORKER_LAT_NBUCKETS) {
                /* 2^k microseconds: exact with six decimals, no trailing 0 */
                strbuf_printf(sb,
                              M "request_duration_seconds_bucket{destination=\"%s\",le=\"%.6f\"} "
                                "%llu\n",
                              metrics_dest[d], (double)(1ULL << (WORKER_LAT_LOG_MIN + b)) / 1e6,
                              (unsigned long long)cum);
            } else {
                strbuf_printf(sb,
                              M "request_duration_seconds_bucket{destination=\"%s\",le=\"+Inf\"} "
                                "%llu\n",
                              metrics_dest[d], (unsigned long long)cum);
            }
        }
        for (int k = 0; k < WORKER_NKIND; k++) {
            sum_us += lat[d][k].sum_us;
        }
        strbuf_printf(sb, M "request_duration_seconds_sum{destination=\"%s\"} %.6f\n",
                      metrics_dest[d], (double)sum_us / 1e6);
        strbuf_printf(sb, M "request_duration_seconds_count{destination=\"%s\"} %llu\n",
                      metrics_dest[d], (unsigned long long)cum);
    }
}

/* ---- levels: held requests, connections, buffers ------------------------------ */

static void metrics_levels(struct proxy *px, struct strbuf *sb)
{
    struct worker_gauges sum, g;
    uint64_t longest = 0;

    memset(&sum, 0, sizeof(sum));
    for (int k = 0; k < px->nworkers; k++) {
        uint64_t us = __atomic_load_n(&px->workers[k].stats.stall_longest_us, __ATOMIC_RELAXED);
        worker_gauges_get(&px->workers[k], &g);
        sum.held_bytes += g.held_bytes;
        sum.held_reqs += g.held_reqs;
        sum.bconns_ready += g.bconns_ready;
        sum.bconns_connecting += g.bconns_connecting;
        sum.dedicated_lent += g.dedicated_lent;
        sum.dedicated_spare += g.dedicated_spare;
        sum.chunks_live += g.chunks_live;
        sum.chunks_pooled += g.chunks_pooled;
        longest = us > longest ? us : longest;
    }
    metrics_u64(sb, "held_requests", "gauge", "requests waiting for a usable backend",
                sum.held_reqs);
    metrics_u64(sb, "held_bytes", "gauge", "bytes of requests waiting for a usable backend",
                sum.held_bytes);
    metrics_head(sb, "backend_connections", "gauge", "connections to Redis servers, by state");
    metrics_labelled(sb, "backend_connections", "state", "ready", sum.bconns_ready);
    metrics_labelled(sb, "backend_connections", "state", "connecting", sum.bconns_connecting);
    metrics_head(sb, "dedicated_connections", "gauge",
                 "dedicated connections (transactions, blocking commands), by state");
    metrics_labelled(sb, "dedicated_connections", "state", "lent", sum.dedicated_lent);
    metrics_labelled(sb, "dedicated_connections", "state", "spare", sum.dedicated_spare);
    metrics_u64(sb, "backend_connects_total", "counter", "connections to Redis servers opened",
                METRICS_SUM(px, backend_connects));
    metrics_u64(sb, "backend_closes_total", "counter", "connections to Redis servers closed",
                METRICS_SUM(px, backend_closes));
    metrics_u64(sb, "backend_lost_total", "counter",
                "connections to Redis servers closed by the server or failed",
                METRICS_SUM(px, backend_lost));
    metrics_u64(sb, "backend_stalls_total", "counter", "shared connections seen stalled",
                METRICS_SUM(px, stalls));
    metrics_head(sb, "backend_stall_longest_seconds", "gauge", "the longest stall seen to its end");
    strbuf_printf(sb, M "backend_stall_longest_seconds %.6f\n", (double)longest / 1e6);
    metrics_head(sb, "buffer_chunks", "gauge", "I/O buffer chunks, by state");
    metrics_labelled(sb, "buffer_chunks", "state", "live", sum.chunks_live);
    metrics_labelled(sb, "buffer_chunks", "state", "pooled", sum.chunks_pooled);
    metrics_u64(sb, "buffer_chunk_bytes", "gauge", "bytes per I/O buffer chunk", CHUNK_SIZE);
}

/* Requests per backend (the read/write split), merged over the workers. */
static void metrics_backends(struct proxy *px, struct strbuf *sb)
{
    static const char *const roles[] = {"master", "replica", "retired"};
    size_t n = 0;
    struct worker_backend_snap *all = worker_backend_totals(px, NULL, &n);

    if (all == NULL) {
        sb->oom = true;
        return;
    }
    metrics_head(sb, "backend_info", "gauge", "a Redis server the proxy routes to (value 1)");
    for (size_t i = 0; i < n; i++) {
        strbuf_printf(sb, M "backend_info{address=\"");
        metrics_label(sb, all[i].name);
        strbuf_printf(sb, "\",role=\"%s\"} 1\n", roles[all[i].role]);
    }
    metrics_head(sb, "backend_requests_total", "counter", "requests sent to each Redis server");
    for (size_t i = 0; i < n; i++) {
        metrics_labelled(sb, "backend_requests_total", "address", all[i].name, all[i].requests);
    }
    metrics_head(sb, "backend_failures_total", "counter",
                 "requests that failed on each Redis server (connection lost or refused)");
    for (size_t i = 0; i < n; i++) {
        metrics_labelled(sb, "backend_failures_total", "address", all[i].name, all[i].failures);
    }
    metrics_head(sb, "backend_inflight_requests", "gauge",
                 "requests sent to each Redis server and not yet answered");
    for (size_t i = 0; i < n; i++) {
        metrics_labelled(sb, "backend_inflight_requests", "address", all[i].name, all[i].inflight);
    }
    free(all);
}

/* ---- topology and Sentinels ------------------------------------------------------ */

static uint64_t metrics_lag(const struct topology *t, const struct topology_replica *rp)
{
    return rp->offset > 0 && t->master_offset > rp->offset ? t->master_offset - rp->offset : 0;
}

static void metrics_topology(struct proxy *px, struct strbuf *sb)
{
    const struct topology *t = px->topo;
    char addr[ADDR_TEXT_MAX];
    uint64_t healthy = 0, total = t != NULL ? t->nreplicas : 0;

    metrics_u64(sb, "master_confirmed", "gauge",
                "1 when a master is confirmed (writes are not held)",
                t != NULL && t->has_master ? 1 : 0);
    metrics_head(sb, "master_info", "gauge", "the confirmed master (value 1)");
    if (t != NULL && t->has_master) {
        addr_format(&t->master, addr, sizeof(addr));
        metrics_labelled(sb, "master_info", "address", addr, 1);
    }
    metrics_u64(sb, "topology_epoch", "gauge", "the master's Sentinel config epoch",
                t != NULL ? t->epoch : 0);
    metrics_u64(sb, "topology_version", "gauge", "topology snapshots published",
                t != NULL ? t->version : 0);
    for (size_t i = 0; i < total; i++) {
        healthy += t->replicas[i].healthy;
    }
    metrics_head(sb, "replicas", "gauge", "replicas of the master, by health");
    metrics_labelled(sb, "replicas", "state", "healthy", healthy);
    metrics_labelled(sb, "replicas", "state", "unhealthy", total - healthy);
    metrics_head(sb, "replica_lag_bytes", "gauge",
                 "replication offset a replica is behind the master (at the last poll)");
    for (size_t i = 0; i < total; i++) {
        addr_format(&t->replicas[i].addr, addr, sizeof(addr));
        metrics_labelled(sb, "replica_lag_bytes", "address", addr, metrics_lag(t, &t->replicas[i]));
    }
}

static void metrics_sentinels(struct proxy *px, struct strbuf *sb)
{
    struct ctl_report *r;
    uint64_t answering = 0;

    if (!px->cfg->has_sentinel) {
        return;
    }
    pthread_mutex_lock(&px->status_lock);
    r = px->ctl_report;
    metrics_head(sb, "sentinels", "gauge",
                 "Sentinels known, by whether they answered the last "
                 "round");
    for (size_t i = 0; r != NULL && i < r->n; i++) {
        answering += r->sentinels[i].ok;
    }
    metrics_labelled(sb, "sentinels", "state", "answering", answering);
    metrics_labelled(sb, "sentinels", "state", "silent", r != NULL ? r->n - answering : 0);
    metrics_u64(sb, "sentinel_rounds_total", "counter", "rounds of questions to the Sentinels",
                r != NULL ? r->rounds : 0);
    metrics_u64(sb, "failovers_total", "counter", "times a new master replaced a known one",
                r != NULL ? r->failovers : 0);
    metrics_u64(sb, "writes_fenced", "gauge",
                "1 while writes are held for want of a Sentinel majority (sentinel.fence-after)",
                r != NULL && r->fenced ? 1 : 0);
    if (r != NULL && r->majority_age >= 0) {
        metrics_head(sb, "sentinel_majority_age_seconds", "gauge",
                     "time since a majority of the known Sentinels last named the master");
        strbuf_printf(sb, M "sentinel_majority_age_seconds %.3f\n", r->majority_age);
    }
    if (r != NULL && r->last_switch >= 0) {
        metrics_head(sb, "last_failover_duration_seconds", "gauge",
                     "the last failover: its first signal to the new master's publication");
        strbuf_printf(sb, M "last_failover_duration_seconds %.6f\n", r->last_switch);
    }
    pthread_mutex_unlock(&px->status_lock);
}

void metrics_prometheus(struct proxy *px, struct strbuf *sb)
{
    struct worker_latency lat[REQ_NDEST][WORKER_NKIND];

    /* One reading serves the request counts and the histograms, so that
     * they agree. */
    metrics_latency_sum(px, lat);
    metrics_process(px, sb);
    metrics_clients(px, sb);
    metrics_requests(px, sb, lat);
    metrics_latency(sb, lat);
    metrics_levels(px, sb);
    metrics_backends(px, sb);
    metrics_topology(px, sb);
    metrics_sentinels(px, sb);
}

/* ---- /topology and /readyz ---------------------------------------------------------- */

static void metrics_json_sentinels(const struct ctl_report *r, struct strbuf *sb)
{
    strbuf_printf(sb,
                  ",\"sentinels\":{\"rounds\":%llu,\"decision\":", (unsigned long long)r->rounds);
    metrics_json_str(sb, r->decision);
    strbuf_append(sb, ",\"why_no_master\":", 17);
    metrics_json_str(sb, r->why[0] != '\0' ? r->why : NULL);
    strbuf_printf(sb,
                  ",\"answering\":%d,\"votes\":%d,\"going_away\":%s,\"writes_fenced\":%s,"
                  "\"failovers\":%llu,\"last_failover_seconds\":",
                  r->answering, r->votes, r->going_away ? "true" : "false",
                  r->fenced ? "true" : "false", (unsigned long long)r->failovers);
    if (r->last_switch >= 0) {
        strbuf_printf(sb, "%.3f", r->last_switch);
    } else {
        strbuf_append(sb, "null", 4);
    }
    strbuf_append(sb, ",\"nodes\":[", 10);
    for (size_t i = 0; i < r->n; i++) {
        const struct ctl_sentinel *s = &r->sentinels[i];
        strbuf_printf(sb, "%s{\"address\":", i > 0 ? "," : "");
        metrics_json_str(sb, s->addr);
        strbuf_printf(sb, ",\"state\":\"%s\",\"origin\":\"%s\",\"master\":",
                      s->ok         ? "ok"
                      : s->answered ? "error"
                                    : "down",
                      s->configured ? "configured" : "learnt");
        metrics_json_str(sb, s->master[0] != '\0' ? s->master : NULL);
        strbuf_printf(sb, ",\"epoch\":%llu,\"subscribed\":%s,\"last_ok_seconds_ago\":",
                      (unsigned long long)s->epoch, s->subscribed ? "true" : "false");
        if (s->last_ok_age >= 0) {
            strbuf_printf(sb, "%.3f", s->last_ok_age);
        } else {
            strbuf_append(sb, "null", 4);
        }
        strbuf_append(sb, ",\"last_error\":", 14);
        metrics_json_str(sb, s->last_error[0] != '\0' ? s->last_error : NULL);
        strbuf_append(sb, "}", 1);
    }
    strbuf_append(sb, "]}", 2);
}

void metrics_topology_json(struct proxy *px, struct strbuf *sb)
{
    const struct topology *t = px->topo;
    char addr[ADDR_TEXT_MAX];

    strbuf_printf(
        sb, "{\"mode\":\"%s\",\"master_name\":", px->cfg->has_sentinel ? "sentinel" : "fixed");
    metrics_json_str(sb, px->cfg->master_name);
    strbuf_printf(sb, ",\"epoch\":%llu,\"version\":%llu,\"master\":",
                  t != NULL ? (unsigned long long)t->epoch : 0ULL,
                  t != NULL ? (unsigned long long)t->version : 0ULL);
    if (t != NULL && t->has_master) {
        addr_format(&t->master, addr, sizeof(addr));
        metrics_json_str(sb, addr);
    } else {
        strbuf_append(sb, "null", 4);
    }
    strbuf_printf(sb, ",\"master_offset\":%llu,\"replicas\":[",
                  t != NULL ? (unsigned long long)t->master_offset : 0ULL);
    for (size_t i = 0; t != NULL && i < t->nreplicas; i++) {
        const struct topology_replica *rp = &t->replicas[i];
        addr_format(&rp->addr, addr, sizeof(addr));
        strbuf_printf(sb, "%s{\"address\":", i > 0 ? "," : "");
        metrics_json_str(sb, addr);
        strbuf_printf(sb,
                      ",\"healthy\":%s,\"offset\":%llu,\"lag_bytes\":%llu,\"weight\":%d,"
                      "\"zone\":",
                      rp->healthy ? "true" : "false", (unsigned long long)rp->offset,
                      (unsigned long long)metrics_lag(t, rp), rp->weight);
        metrics_json_str(sb, rp->zone[0] != '\0' ? rp->zone : NULL);
        strbuf_append(sb, "}", 1);
    }
    strbuf_append(sb, "]", 1);
    pthread_mutex_lock(&px->status_lock);
    if (px->ctl_report != NULL) {
        metrics_json_sentinels(px->ctl_report, sb);
    }
    pthread_mutex_unlock(&px->status_lock);
    strbuf_printf(sb, ",\"clients\":%d}\n", __atomic_load_n(&px->nclients, __ATOMIC_RELAXED));
}

bool metrics_ready(struct proxy *px, struct strbuf *sb)
{
    const struct topology *t = px->topo;
    char addr[ADDR_TEXT_MAX];

    if (px->drain_started > 0) {
        strbuf_printf(sb, "not ready: draining for shutdown\n");
        return false;
    }
    if (t != NULL && t->has_master) {
        addr_format(&t->master, addr, sizeof(addr));
        strbuf_printf(sb, "ready: master %s (epoch %llu)\n", addr, (unsigned long long)t->epoch);
        return true;
    }
    strbuf_printf(sb, "not ready: no master confirmed; writes are held");
    pthread_mutex_lock(&px->status_lock);
    if (px->ctl_report != NULL) {
        strbuf_printf(sb, " (Sentinels: %d of %zu answered, decision %s)%s%s",
                      px->ctl_report->answering, px->ctl_report->n, px->ctl_report->decision,
                      px->ctl_report->why[0] != '\0' ? ": " : "", px->ctl_report->why);
    }
    pthread_mutex_unlock(&px->status_lock);
    strbuf_append(sb, "\n", 1);
    return false;
}
