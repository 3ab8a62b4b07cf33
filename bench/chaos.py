#!/usr/bin/python3
"""Partitions and frozen nodes under load, side by side:

  proxy           clients connect to sentinel-proxy (hold-timeout 4s)
  proxy-fenced    the same with sentinel.fence-after=3s (skipped by builds without it)
  proxy-acks      the same with ack-after-replicas=1
  redis-py        clients use redis.sentinel.Sentinel(...).master_for(...)
  haproxy         clients connect to haproxy 2.6 with a role:master tcp-check

Every scenario of test/integration/faults.py (a master cut off from the
Sentinels, the client side cut off from the master or from the Sentinels,
the client side on the minority side, a frozen master, a stale Sentinel, a
planned failover) runs against a fresh layout for every path, each run in a
network namespace of its own: 1 master, 2 replicas, 3 Sentinels (quorum 2,
down-after-milliseconds 1000, failover-timeout 6000), each on its own
loopback address. 10 clients write increasing sequences; once the fault is
healed and replication has settled, the final master is read directly.
Needs root (unshare -n -m, iptables). In hostnames, only the proxy's lookups
are made slow; redis-py resolves from the run's /etc/hosts, and haproxy
resolves its servers' names once, at start.

    make chaos                 (or /usr/bin/python3 bench/chaos.py [--rounds N]
                                [--scenarios a,b] [--paths proxy,haproxy])
"""
import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "test", "integration"))

import faults  # noqa: E402

COLUMNS = (("acked writes", "acked_writes"), ("lost acked writes", "lost_acked_writes"),
           ("stale own reads", "stale_reads"), ("errors", "errors"),
           ("connections closed", "connections_closed"), ("longest request (ms)", "longest_ms"))


def cell(runs, key):
    values = [r[key] for r in runs]
    if len(values) == 1:
        return "{:,.0f}".format(values[0])
    return "{:,.0f} ({:,.0f}-{:,.0f})".format(statistics.median(values), min(values), max(values))


def error_kinds(runs):
    kinds = {}
    for r in runs:
        for k, n in r["error_kinds"].items():
            kinds[k] = kinds.get(k, 0) + n
    return ", ".join("%s %d" % kv for kv in sorted(kinds.items()))


def table(scenario, rows, rounds):
    doc = faults.SCENARIOS[scenario].__doc__.split("\n\n")[0]
    lines = ["### %s" % scenario, "", " ".join(doc.split()), "",
             "| path | " + " | ".join(c for c, _ in COLUMNS) + " |",
             "|---|" + "---|" * len(COLUMNS)]
    for path, runs in rows:
        done = [r for r in runs if "acked_writes" in r]
        if not done:
            why = runs[0].get("skipped") or runs[0].get("failed", "?")
            lines.append("| %s | %s |" % (path, "skipped: " + why if runs[0].get("skipped")
                                          else "failed: " + why.splitlines()[0][:120]))
            continue
        cells = [cell(done, key) for _, key in COLUMNS]
        kinds = error_kinds(done)
        if kinds:
            cells[3] += " (%s)" % kinds
        lines.append("| %s | %s |" % (path, " | ".join(cells)))
    if rounds > 1:
        lines += ["", "Medians of %d rounds (min-max)." % rounds]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--scenarios", default=",".join(faults.SCENARIOS))
    ap.add_argument("--paths", default=",".join(faults.PATHS))
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    why = faults.netns_skip_reason()
    if why:
        sys.exit("make chaos: %s" % why)
    scenarios, paths = args.scenarios.split(","), args.paths.split(",")
    for name in scenarios + paths:
        if name not in faults.SCENARIOS and name not in faults.PATHS:
            sys.exit("unknown scenario or path: %s" % name)
    started = time.time()
    results = []
    for rnd in range(args.rounds):
        for sc in scenarios:
            for path in paths:
                print("== round %d: %s / %s" % (rnd + 1, sc, path), flush=True)
                try:
                    r = faults.run_isolated(sc, path)
                except AssertionError as e:  # one broken run does not end the report
                    r = {"scenario": sc, "path": path, "failed": str(e)}
                r["round"] = rnd + 1
                results.append(r)
                print("   ", {k: r.get(k) for k in ("skipped", "acked_writes", "lost_acked_writes",
                                                   "stale_reads", "errors", "connections_closed",
                                                   "longest_ms", "wall_s") if k in r}, flush=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parts = ["# Partitions and frozen nodes under load, %s" % time.strftime("%Y-%m-%d %H:%M"), "",
             "`make chaos` (bench/chaos.py, test/integration/faults.py): 10 clients, each "
             "SET k:C i, RPUSH l:C i, GET k:C in a loop; 1 master, 2 replicas, 3 Sentinels "
             "(quorum 2, down-after 1000 ms, failover-timeout 6000 ms), each on its own "
             "loopback address; sentinel-proxy with hold-timeout 4s (clients wait 20 s), "
             "redis-py and haproxy clients with a 2 s socket timeout. Lost acked writes: "
             "acknowledged RPUSHes missing on the final master; connections closed: sockets "
             "the clients had to open again. %d round(s), %.0f s." % (args.rounds,
                                                                     time.time() - started)]
    for sc in scenarios:
        rows = [(p, [r for r in results if r["scenario"] == sc and r["path"] == p]) for p in paths]
        parts += ["", table(sc, rows, args.rounds)]
    text = "\n".join(parts) + "\n"
    print()
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "chaos-%s.md" % stamp), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "chaos-%s.json" % stamp), "w") as f:
        json.dump({"args": vars(args), "binary": faults.PROXY_BIN, "results": results}, f)
    print("written: bench/results/chaos-%s.md and .json" % stamp)


if __name__ == "__main__":
    main()
