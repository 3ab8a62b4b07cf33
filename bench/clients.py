#!/usr/bin/python3
"""Real Node.js clients through sentinel-proxy: 50 ioredis clients (by
default) sending GETs one at a time, in the client's default mode (RESP3 for
ioredis 6) and with RESP2, in the classic Sentinel layout (1 master, 2
replicas, 3 Sentinels), the proxy at its default settings.

Per run: requests per second, the proxy's CPU time per request (user +
system, from /proc), the share of reads that went to replicas (PROXY STATS),
and, in the middle of the run, the proxy's TCP connections to the master
(from /proc: shared, dedicated and the control plane's own), its shared ones
(PROXY TOPOLOGY, RESP3 ones apart) and the dedicated ones lent to clients
(PROXY STATS).
Runs are interleaved over --rounds and reported as medians; with --baseline
BINARY an earlier build runs the same loads in the same rounds.

    make node-deps && /usr/bin/python3 bench/clients.py --rounds 5
    /usr/bin/python3 bench/clients.py --baseline /tmp/old/sentinel-proxy
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "integration"))
sys.path.insert(0, HERE)

from bench import cpu_seconds  # noqa: E402
from harness import Cluster, Proxy, make_workdir, proxy_stats, topology, wait_for  # noqa: E402

NODE_MODULES = os.path.join(ROOT, "test", "clients", "node_modules")


def tcp_conns(pid, port):
    """Established TCP connections of process pid to 127.0.0.1:port."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == "01" and inode in inodes and int(remote.split(":")[1], 16) == port:
                n += 1
    return n


def master_conns(proxy, master):
    """The proxy's connections to the master now: (all of them, shared ones
    of the answering worker, RESP3 ones among those, dedicated ones lent)."""
    c = proxy.client()
    try:
        shared = resp3 = 0
        for k, v in topology(c).items():
            if k.startswith("backend") and k[7:].isdigit() and "role=master" in v:
                f = dict(kv.split("=", 1) for kv in v.split(","))
                shared, resp3 = int(f["shared"]), int(f.get("resp3", 0))
        lent = proxy_stats(c)["dedicated_lent_worker"]
    finally:
        c.close()
    return tcp_conns(proxy.proc.pid, master.port), shared, resp3, lent


def run_load(proxy, client, protocol, clients, seconds, master):
    """One load run; returns its figures."""
    port = proxy.port
    env = dict(os.environ, NODE_PATH=NODE_MODULES)
    argv = ["node", os.path.join(HERE, "node_load.js"), "--port", str(port), "--client", client,
            "--protocol", protocol, "--clients", str(clients), "--seconds", str(seconds)]
    conns = {}

    def sample():
        time.sleep(seconds / 2 + 0.5)  # connections are made before the clock starts
        conns["master"] = master_conns(proxy, master)

    t = threading.Thread(target=sample)
    t.start()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
    t.join()
    if out.returncode != 0:
        raise RuntimeError("node_load.js failed: %s" % out.stderr[-2000:])
    res = json.loads(out.stdout.strip().splitlines()[-1])
    (res["master_conns"], res["master_shared"], res["master_resp3"],
     res["master_dedicated"]) = conns.get("master", (-1, -1, -1, -1))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--client", default="ioredis", choices=["ioredis", "node-redis"])
    ap.add_argument("--baseline", metavar="BINARY", default=None,
                    help="also run another sentinel-proxy binary, as 'baseline'")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="where the raw "
                    "results go (clients-<time>.json)")
    args = ap.parse_args()
    if not os.path.isdir(NODE_MODULES):
        sys.exit("the Node.js clients are not installed: run `make node-deps`")
    modes = ["default", "2"] if args.client == "ioredis" else ["3", "2"]

    workdir = make_workdir("sp-bench-clients-")
    cluster = Cluster(workdir).start()
    proxies = {}
    try:
        binaries = {"sentinel-proxy": None}
        if args.baseline:
            binaries["baseline"] = os.path.abspath(args.baseline)
        for name, binary in binaries.items():
            p = Proxy(workdir, args=cluster.proxy_args(), binary=binary).start()
            wait_for(lambda: sum("healthy=1" in v for k, v in topology(p.client()).items()
                                 if k.startswith("replica") and k != "replicas") == 2,
                     what="%s to see two healthy replicas" % name)
            proxies[name] = p
        m = cluster.master.client()
        for i in range(1000):
            m.set("key:%d" % i, "v%d" % i)
        wait_for(lambda: all(r.client().dbsize() >= 1000 for r in cluster.replicas),
                 what="replication")
        results = {}
        for rnd in range(args.rounds):
            for name, p in proxies.items():
                for mode in modes:
                    st0, cpu0 = proxy_stats(p), cpu_seconds(p.proc.pid)
                    r = run_load(p, args.client, mode, args.clients, args.seconds,
                                 cluster.master)
                    st1, cpu1 = proxy_stats(p), cpu_seconds(p.proc.pid)
                    reads_rep = st1["reads_replicas"] - st0["reads_replicas"]
                    reads_master = st1["reads_master"] - st0["reads_master"]
                    r.update(round=rnd, cpu=cpu1 - cpu0, reads_replicas=reads_rep,
                             reads_master=reads_master)
                    results.setdefault((name, mode), []).append(r)
                    print("round %d %-15s protocol %-7s %8.0f req/s  %5.1f us/req  "
                          "replicas %5.1f%%  master conns %d (shared %d, resp3 %d, dedicated %d)"
                          "  errors %d"
                          % (rnd + 1, name, mode, r["ops"] / r["seconds"],
                             1e6 * r["cpu"] / max(r["ops"], 1),
                             100.0 * reads_rep / max(reads_rep + reads_master, 1),
                             r["master_conns"], r["master_shared"], r["master_resp3"],
                             r["master_dedicated"], r["errors"]),
                          flush=True)
        print()
        print("%d %s clients, GET, %g s per run, medians of %d rounds"
              % (args.clients, args.client, args.seconds, args.rounds))
        print("| proxy | protocol | req/s | proxy CPU µs/req | reads on replicas | "
              "connections to the master | of which shared (RESP3) | dedicated | errors |")
        print("|---|---|---|---|---|---|---|---|---|")
        for (name, mode), runs in results.items():
            med = statistics.median
            print("| %s | %s | %.0f | %.2f | %.1f%% | %g | %g (%g) | %g | %d |"
                  % (name, mode, med(r["ops"] / r["seconds"] for r in runs),
                     med(1e6 * r["cpu"] / max(r["ops"], 1) for r in runs),
                     med(100.0 * r["reads_replicas"] /
                         max(r["reads_replicas"] + r["reads_master"], 1) for r in runs),
                     med(r["master_conns"] for r in runs), med(r["master_shared"] for r in runs),
                     med(r["master_resp3"] for r in runs), med(r["master_dedicated"] for r in runs),
                     sum(r["errors"] for r in runs)))
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "clients-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
        with open(path, "w") as f:
            json.dump({"%s/%s" % k: v for k, v in results.items()}, f, indent=1)
        print("\nraw results: %s" % os.path.relpath(path, ROOT))
    finally:
        for p in proxies.values():
            p.stop(check=False)
        cluster.stop()


if __name__ == "__main__":
    main()
