"""Partitions and frozen processes around the Sentinel layout, through
sentinel-proxy: what the proxy guarantees when the network, not a process,
fails (faults.py builds the layout on its own loopback addresses in a
network namespace and cuts links with iptables).

Each scenario runs once (about 15-30 s) and its figures are shared by the
tests that judge it. The proxy runs with hold-timeout 4s; its clients wait
up to 20 s for an answer, so that a request the proxy holds too long shows
as a long request rather than as a client timeout. Times are seconds after
the fault began. Needs root (unshare -n, iptables); skipped otherwise.
"""
import functools

import pytest

import faults

SKIP = faults.netns_skip_reason()
pytestmark = [pytest.mark.slow, pytest.mark.faults,
              pytest.mark.skipif(SKIP is not None, reason=SKIP or "")]

HOLD_MS = faults.HOLD_TIMEOUT * 1000
CLIENTS = 10  # faults.Workload's


@functools.lru_cache(maxsize=None)
def outcome(scenario, path="proxy"):
    r = faults.run_isolated(scenario, path)
    # Whatever the scenario: the proxy stopped cleanly, nothing hung, and the
    # layout came back to one master that every replica follows.
    assert r["proxy_rc"] == 0 and not r["proxy_sanitizer"], "\n".join(r["proxy_log"])
    assert r["load_stopped"], "a client was still blocked at the end"
    assert r["settled"], "replication did not settle after the fault"
    return r


def brief(r):
    """The figures worth reading when an assertion fails."""
    keys = ("acked_writes", "lost_acked_writes", "lost_sets", "stale_reads", "errors",
            "error_kinds", "connections_closed", "longest_ms", "lost_ack_first_s",
            "lost_ack_last_s", "events", "old_master", "new_master", "proxy_masters")
    return "\n".join(["%s: %s" % (k, r.get(k)) for k in keys] + r.get("proxy_log", [])[-15:])


def switched(r):
    """The proxy ended on the new master, and never named the old one again."""
    assert r["new_master"] != r["old_master"], brief(r)
    assert r["events"]["proxy_new_master"] is not None, brief(r)
    assert r["proxy_back_to_old"] == 0, brief(r)


def test_master_isolated_loses_only_writes_acknowledged_before_the_hold():
    """The master cut off from the Sentinels and replicas, not from the
    proxy: it acknowledges writes that the new master will never have until
    the proxy holds writes at +odown. Those, and only those, are lost."""
    r = outcome("master_isolated")
    ev = r["events"]
    switched(r)
    assert ev["first_odown"] is not None and ev["proxy_held"] is not None, brief(r)
    assert ev["proxy_held"] <= ev["first_odown"] + 0.5, brief(r)
    # The proxy's view is polled every 50 ms: a write acknowledged just
    # before the hold may be seen a little after it.
    if r["lost_acked_writes"]:
        assert r["lost_ack_last_s"] <= ev["proxy_held"] + 0.1, brief(r)
    assert r["lost_acked_writes"] <= faults.count_between(r, "acked", 0, ev["proxy_held"] + 0.1)
    # Writes acknowledged once the new master was in use all survive.
    assert r["lost_acked_writes"] < faults.count_between(r, "acked", 0, ev["heal"]), brief(r)
    assert r["connections_closed"] == 0, brief(r)
    # A stale read can only follow a client's own lost SET: one per client.
    assert r["stale_reads"] <= CLIENTS, brief(r)


def test_proxy_master_cut_loses_nothing_and_keeps_connections():
    """The proxy cut off from the master alone: the Sentinels see it well,
    so there is no failover; nothing acknowledged is lost, no read is stale,
    no client connection is closed and the master stays."""
    r = outcome("proxy_master_cut")
    assert r["lost_acked_writes"] == 0 and r["lost_sets"] == 0, brief(r)
    assert r["stale_reads"] == 0, brief(r)
    assert r["connections_closed"] == 0, brief(r)
    assert set(r["error_kinds"]) <= {"ResponseError"}, brief(r)
    assert {m for _, m in r["proxy_masters"]} <= {r["old_master"], "none"}, brief(r)


def test_proxy_master_cut_answers_within_hold_timeout():
    """No request waits for the unreachable master longer than hold-timeout
    (plus 1.5 s for the proxy's timers and this busy machine)."""
    r = outcome("proxy_master_cut")
    assert r["longest_ms"] <= HOLD_MS + 1500, brief(r)


def test_proxy_sentinels_cut_keeps_serving():
    """The proxy cut off from every Sentinel while the master stays: the
    last confirmed master keeps serving, without an error or a pause."""
    r = outcome("proxy_sentinels_cut")
    assert r["errors"] == 0 and r["lost_acked_writes"] == 0 and r["stale_reads"] == 0, brief(r)
    assert r["connections_closed"] == 0, brief(r)
    assert r["longest_ms"] < 1500, brief(r)


def test_proxy_sentinels_cut_during_a_failover():
    """The proxy cut off from every Sentinel and the master killed: requests
    fail after hold-timeout (the proxy cannot learn the new master), and
    once the Sentinels are back it switches within 3 s; nothing fails after."""
    r = outcome("proxy_sentinels_cut_failover")
    ev = r["events"]
    switched(r)
    assert ev["proxy_new_master"] - ev["heal"] <= 3.0, brief(r)
    assert r["longest_ms"] <= HOLD_MS + 1500, brief(r)
    assert set(r["error_kinds"]) <= {"ResponseError"} and r["connections_closed"] == 0, brief(r)
    assert faults.count_between(r, "errors", ev["proxy_new_master"] + 0.5, 1e6) == 0, brief(r)
    # kill -9 can take along what the master acknowledged but had not yet
    # sent to the replicas: writes of its last moments, nothing older.
    if r["lost_acked_writes"]:
        assert r["lost_ack_first_s"] >= ev["kill"] - 0.5, brief(r)
    assert r["stale_reads"] <= CLIENTS, brief(r)


def test_minority_side_follows_the_majority_once_healed():
    """The proxy, the old master and one Sentinel on the minority side:
    without fencing the proxy keeps writing to the old master (those writes
    are lost: asynchronous replication, no proxy can keep them), but once
    the partition heals it switches within 3 s and never goes back."""
    r = outcome("minority_side")
    ev = r["events"]
    switched(r)
    assert ev["proxy_new_master"] - ev["heal"] <= 3.0, brief(r)
    if r["lost_acked_writes"]:
        assert r["lost_ack_last_s"] <= ev["proxy_new_master"] + 0.1, brief(r)
    assert r["connections_closed"] == 0, brief(r)


def test_minority_side_fenced_stops_writes():
    """With sentinel.fence-after, a proxy that has lost the Sentinel
    majority stops writing: nothing is acknowledged later than fence-after
    (plus 1.5 s of polling) into the partition, so nothing later is lost."""
    if not faults.fence_supported():
        pytest.skip("this build has no sentinel.fence-after")
    r = outcome("minority_side", "proxy-fenced")
    ev = r["events"]
    fenced = faults.FENCE_AFTER + 1.5
    assert faults.count_between(r, "acked", fenced, ev["heal"]) == 0, brief(r)
    if r["lost_acked_writes"]:
        assert r["lost_ack_last_s"] <= fenced, brief(r)
    switched(r)


@pytest.mark.parametrize("scenario", ["master_isolated", "minority_side"])
def test_ack_after_replicas_loses_no_acknowledged_write(scenario):
    """ack-after-replicas 1: a write is acknowledged only once a replica has
    it, so the partitions that cost acknowledged writes otherwise (the old
    master cut off from its replicas, the proxy on the minority side with
    it) lose none; what the replicas could not confirm got an error."""
    r = outcome(scenario, "proxy-acks")
    assert r["lost_acked_writes"] == 0 and r["lost_sets"] == 0, brief(r)
    assert r["acked_writes"] > 0, brief(r)
    assert r["connections_closed"] == 0, brief(r)


def test_master_frozen_loses_nothing():
    """SIGSTOP of the master past down-after-milliseconds, failover, SIGCONT:
    what the frozen master had received gets the "outcome unknown" error,
    nothing acknowledged is lost, no read is stale, and the proxy never
    goes back to the old master when it wakes up still saying master."""
    r = outcome("master_frozen")
    switched(r)
    assert r["lost_acked_writes"] == 0 and r["lost_sets"] == 0, brief(r)
    assert r["stale_reads"] == 0, brief(r)
    assert set(r["error_kinds"]) <= {"ResponseError"} and r["connections_closed"] == 0, brief(r)


@pytest.mark.parametrize("path", ["proxy", "proxy-fenced"])
def test_planned_failover_loses_nothing(path):
    """SENTINEL FAILOVER with every Sentinel answering: no error, nothing
    lost, no stale read (the baseline of test_stale_sentinel_*); the same
    with fencing on (no majority decision may release writes to the old
    master before the failover's leader has answered)."""
    r = outcome("planned_failover", path)
    switched(r)
    assert r["lost_acked_writes"] == 0 and r["stale_reads"] == 0, brief(r)
    assert r["errors"] == 0 and r["connections_closed"] == 0, brief(r)


def test_stale_sentinel_does_not_bring_the_old_master_back():
    """A Sentinel frozen through a failover, then naming the old master with
    the old epoch for 5 s: the proxy stays on the new master."""
    r = outcome("stale_sentinel")
    switched(r)
    assert r["connections_closed"] == 0 and r["errors"] == 0, brief(r)


def test_stale_sentinel_failover_loses_nothing():
    """The same failover as test_planned_failover_loses_nothing, with one of
    three Sentinels silent: still nothing lost, no stale read."""
    r = outcome("stale_sentinel")
    assert r["lost_acked_writes"] == 0 and r["stale_reads"] == 0, brief(r)


def test_hostnames_failover_is_followed_by_name():
    """Every server and Sentinel known by a host name, the proxy given the
    Sentinels by name: after kill -9 of the master the proxy names the new
    master by its name and writes reach it; kill -9 costs at most what the
    master acknowledged in its last moments, no connection is closed."""
    r = outcome("hostnames")
    ev = r["events"]
    switched(r)
    assert r["new_master"].split(":")[0].endswith(".faults.test"), brief(r)
    assert r["proxy_masters"][-1][1] == r["new_master"], brief(r)
    assert set(r["error_kinds"]) <= {"ResponseError"} and r["connections_closed"] == 0, brief(r)
    assert faults.count_between(r, "errors", ev["proxy_new_master"] + 0.5, 1e6) == 0, brief(r)
    assert r["longest_ms"] <= HOLD_MS + 1500, brief(r)
    if r["lost_acked_writes"]:
        assert r["lost_ack_first_s"] >= ev["kill"] - 0.5, brief(r)
    assert r["stale_reads"] <= CLIENTS, brief(r)


def test_hostnames_slow_lookups_stall_nothing():
    """For 6 s every lookup of the proxy takes 2 s (its cached answers
    expire meanwhile): the proxy asked the slow name server, kept polling
    the Sentinels, and every request of that window was answered without
    an error and well within the 2 s a lookup took."""
    r = outcome("hostnames")
    w, extra = r["windows"]["slow"], r["extra"]
    assert extra["dns_queries_while_slow"] > 0, brief(r)
    assert extra["proxy_rounds_while_slow"] >= 4, (extra, brief(r))
    assert w["errors"] == 0 and w["acked_writes"] > 0, (w, brief(r))
    assert w["longest_ms"] < 1000, (w, brief(r))


def test_hostnames_moved_old_master_rejoins_as_a_replica():
    """The old master restarted under its name at another address: it
    rejoins (the Sentinels find it by name), the proxy probes it at the new
    address and lists it as a healthy replica, and nothing acknowledged
    after the kill is lost."""
    r = outcome("hostnames")
    ev = r["events"]
    assert ev.get("rejoined") is not None and ev.get("proxy_uses_moved") is not None, brief(r)
    assert r["extra"]["moved_proxy_connections"] >= 1, (r["extra"], brief(r))
    assert r["stale_reads"] <= CLIENTS, brief(r)


def test_hostnames_moved_replica_serves_reads():
    """Reads through the proxy (from a client that writes nothing) reach
    the moved replica at its new address once the proxy lists it healthy."""
    r = outcome("hostnames")
    assert r["extra"]["reader"]["ok"] > 0, brief(r)
    assert r["extra"]["moved_gets"], (r["extra"], brief(r))
