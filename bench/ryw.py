#!/usr/bin/python3
"""Read-your-writes under reads on replicas: what a read right after the
client's own write costs.

One layout (1 master, 2 replicas, 3 Sentinels on loopback); the proxy runs
in turn with --read-from replicas, prefer-replicas and master (interleaved
rounds, medians). One redis-py client:

  pair      SET k v then GET k, one request at a time (median and p99 of
            the pair, in ms)
  pipeline  one non-transactional pipeline of PAIRS SET/GET pairs on
            distinct keys (seconds for the whole pipeline)

Every GET must return the value just set (a stale read fails the run).

    make bench-ryw     (or /usr/bin/python3 bench/ryw.py [--rounds N])
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "test", "integration"))

from harness import Cluster, Proxy, make_workdir, proxy_stats, topology, wait_for  # noqa: E402

MODES = ("replicas", "prefer-replicas", "master")


def start_proxy(workdir, cluster, mode):
    p = Proxy(workdir, args=cluster.proxy_args() + ["--read-from", mode]).start()
    c = p.client()
    wait_for(lambda: sum("healthy=1" in v for k, v in topology(c).items()
                         if k.startswith("replica") and k != "replicas") == 2,
             what="two healthy replicas")
    return p


def pairs(c, n, tag):
    times = []
    for i in range(n):
        key = "ryw:%s:%d" % (tag, i)
        t0 = time.perf_counter()
        c.set(key, i)
        got = c.get(key)
        times.append(time.perf_counter() - t0)
        if got != str(i).encode():
            raise SystemExit("stale read: %s = %r, wrote %d" % (key, got, i))
    times.sort()
    return statistics.median(times) * 1e3, times[int(len(times) * 0.99)] * 1e3


def pipeline(c, n, tag):
    pipe = c.pipeline(transaction=False)
    for i in range(n):
        pipe.set("rywp:%s:%d" % (tag, i), i)
        pipe.get("rywp:%s:%d" % (tag, i))
    t0 = time.perf_counter()
    out = pipe.execute()
    took = time.perf_counter() - t0
    for i in range(n):
        if out[2 * i + 1] != str(i).encode():
            raise SystemExit("stale read in the pipeline at pair %d: %r" % (i, out[2 * i + 1]))
    return took


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=1000, help="SET+GET pairs timed one by one")
    ap.add_argument("--pipeline", type=int, default=5000, help="pairs in the pipeline")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()

    workdir = make_workdir("sp-ryw-")
    cluster = Cluster(workdir).start()
    rows = {m: {"pair_p50": [], "pair_p99": [], "pipeline": [], "ryw_to_master": []} for m in MODES}
    try:
        for rnd in range(args.rounds):
            for mode in MODES:
                p = start_proxy(workdir, cluster, mode)
                try:
                    c = p.client()
                    tag = "%s:%d" % (mode, rnd)
                    p50, p99 = pairs(c, args.pairs, tag)
                    took = pipeline(c, args.pipeline, tag)
                    st = proxy_stats(c)
                    rows[mode]["pair_p50"].append(p50)
                    rows[mode]["pair_p99"].append(p99)
                    rows[mode]["pipeline"].append(took)
                    rows[mode]["ryw_to_master"].append(st.get("ryw_to_master", 0))
                    print("round %d %-16s pair p50 %.3f ms p99 %.3f ms, pipeline of %d pairs %.3f s"
                          % (rnd + 1, mode, p50, p99, args.pipeline, took), flush=True)
                finally:
                    p.stop()
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    med = {m: {k: statistics.median(v) for k, v in r.items()} for m, r in rows.items()}
    lines = ["| read-from | SET+GET pair p50 (ms) | pair p99 (ms) | pipeline of %d pairs (s) |"
             % args.pipeline, "|---|---|---|---|"]
    for m in MODES:
        lines.append("| %s | %.3f | %.3f | %.3f |" % (m, med[m]["pair_p50"], med[m]["pair_p99"],
                                                     med[m]["pipeline"]))
    ratio = med["replicas"]["pair_p50"] / med["prefer-replicas"]["pair_p50"]
    lines.append("")
    lines.append("medians of %d interleaved rounds; replicas / prefer-replicas pair p50: %.2fx"
                 % (args.rounds, ratio))
    print("\n".join(lines))
    os.makedirs(args.out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(args.out, "ryw-%s.json" % stamp), "w") as f:
        json.dump({"args": vars(args), "rounds": rows, "medians": med}, f, indent=1)
    with open(os.path.join(args.out, "ryw-%s.txt" % stamp), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
