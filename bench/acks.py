#!/usr/bin/python3
"""What ack-after-replicas costs: writes through the proxy with it off, 1
and 2, in the same layout (1 master, 2 replicas, 3 Sentinels on loopback),
interleaved rounds, medians:

  c1      redis-benchmark SET -c 1 -P 1: p50 and p99 latency (ms)
  c50     redis-benchmark SET -c 50 -P 1: requests per second
  c50p16  redis-benchmark SET -c 50 -P 16: requests per second

    make bench-acks     (or /usr/bin/python3 bench/acks.py [--rounds N])
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "test", "integration"))

from harness import Cluster, Proxy, make_workdir, proxy_stats, topology, wait_for  # noqa: E402

SETTINGS = (0, 1, 2)
RUNS = (("c1", 1, 1), ("c50", 50, 1), ("c50p16", 50, 16))


def start_proxy(workdir, cluster, acks):
    p = Proxy(workdir, args=cluster.proxy_args() + [
        "--read-from", "master", "--set", "ack-after-replicas=%d" % acks]).start()
    wait_for(lambda: sum("healthy=1" in v for k, v in topology(p.client()).items()
                         if k.startswith("replica") and k != "replicas") == 2,
             what="two healthy replicas")
    return p


def benchmark(port, clients, pipeline, requests):
    """(requests per second, p50 ms, p99 ms) of one redis-benchmark SET run."""
    argv = ["redis-benchmark", "-p", str(port), "-q", "--csv", "-n", str(requests),
            "-c", str(clients), "-P", str(pipeline), "-r", "100000", "-t", "set"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    for line in out.stdout.splitlines():
        parts = [x.strip('"') for x in line.split(",")]
        if parts[0] == "SET":
            # "test","rps","avg_latency_ms","min","p50","p95","p99","max"
            return float(parts[1]), float(parts[4]), float(parts[6])
    raise RuntimeError("redis-benchmark: %s %s" % (out.stdout, out.stderr))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=50000)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()

    workdir = make_workdir("sp-acks-")
    cluster = Cluster(workdir).start()
    rows = {a: {k: [] for k in ("c1_p50", "c1_p99", "c50", "c50p16")} for a in SETTINGS}
    try:
        for rnd in range(args.rounds):
            for acks in SETTINGS:
                p = start_proxy(workdir, cluster, acks)
                try:
                    for name, clients, pipeline in RUNS:
                        n = args.requests // 5 if clients == 1 else args.requests
                        rps, p50, p99 = benchmark(p.port, clients, pipeline, n)
                        if name == "c1":
                            rows[acks]["c1_p50"].append(p50)
                            rows[acks]["c1_p99"].append(p99)
                        else:
                            rows[acks][name].append(rps)
                    st = proxy_stats(p.client())
                    if acks > 0 and st.get("acks_failed", 0):
                        raise SystemExit("%s writes not confirmed" % st["acks_failed"])
                    print("round %d ack-after-replicas %d: %s" % (
                        rnd + 1, acks, {k: v[-1] for k, v in rows[acks].items()}), flush=True)
                finally:
                    p.stop()
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    med = {a: {k: statistics.median(v) for k, v in r.items()} for a, r in rows.items()}
    lines = ["| ack-after-replicas | SET -c 1 p50 (ms) | p99 (ms) | SET -c 50 (rps) | "
             "SET -c 50 -P 16 (rps) |", "|---|---|---|---|---|"]
    for a in SETTINGS:
        m = med[a]
        lines.append("| %d | %.3f | %.3f | %.0f (%.2fx) | %.0f (%.2fx) |" % (
            a, m["c1_p50"], m["c1_p99"], m["c50"], m["c50"] / med[0]["c50"], m["c50p16"],
            m["c50p16"] / med[0]["c50p16"]))
    lines.append("")
    lines.append("medians of %d interleaved rounds, %d requests per -c 50 run" %
                 (args.rounds, args.requests))
    print("\n".join(lines))
    os.makedirs(args.out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(args.out, "acks-%s.json" % stamp), "w") as f:
        json.dump({"args": vars(args), "rounds": rows, "medians": med}, f, indent=1)
    with open(os.path.join(args.out, "acks-%s.txt" % stamp), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
