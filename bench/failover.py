#!/usr/bin/python3
"""A kill -9 failover under load, side by side:

  sentinel-proxy          clients connect to the proxy
  redis-py Sentinel       clients use redis.sentinel.Sentinel(...).master_for(...)
  haproxy role:master     clients connect to haproxy 2.6 with a role:master tcp-check

Each runs against its own fresh layout (1 master, 2 replicas, 3 Sentinels,
quorum 2, down-after-milliseconds 1000) on loopback. 20 clients loop SET
then GET on their own keys; the master is killed with SIGKILL; the report
counts errors the clients saw (and how many came from requests issued after
the kill), the longest request, and for the proxy its switch time.

    make bench-failover          (or /usr/bin/python3 bench/failover.py)
"""
import argparse
import os
import re
import shutil
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "test", "integration"))

import redis  # noqa: E402
import redis.sentinel  # noqa: E402

from harness import Cluster, Proxy, make_workdir, topology, wait_for  # noqa: E402
from bench import start_haproxy  # noqa: E402


class Load:
    def __init__(self, make_client, clients=20):
        self.make_client = make_client
        self.stop_flag = threading.Event()
        self.results = [[] for _ in range(clients)]
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def _run(self, i):
        c = self.make_client()
        seq = 0
        while not self.stop_flag.is_set():
            seq += 1
            key = "fo:%d:%d" % (i, seq)
            for op in ("set", "get"):
                t0 = time.monotonic()
                try:
                    if op == "set":
                        c.set(key, seq)
                    else:
                        c.get(key)
                    err = None
                except redis.RedisError as e:
                    err = type(e).__name__
                    time.sleep(0.01)  # what a client does before trying again
                self.results[i].append((t0, time.monotonic(), err))
            time.sleep(0.002)

    def start(self):
        for t in self.threads:
            t.start()
        time.sleep(1)

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(60)

    def summary(self, kill_time):
        all_r = [r for rs in self.results for r in rs]
        errors = [r for r in all_r if r[2]]
        after = [r for r in errors if r[0] > kill_time + 0.05]
        during = [r for r in all_r if r[1] > kill_time]
        return {
            "requests": len(all_r),
            "errors": len(errors),
            "errors_after_kill": len(after),
            "clients_with_errors": sum(1 for rs in self.results if any(r[2] for r in rs)),
            "max_latency_ms": max((r[1] - r[0]) * 1000 for r in during) if during else 0,
            "kinds": sorted({r[2] for r in errors}),
        }


def run_scenario(name, workdir, setup, settle=6.0):
    cluster = Cluster(workdir).start()
    extra = []
    try:
        make_client, extra = setup(cluster, workdir)
        load = Load(make_client)
        load.start()
        old = cluster.master
        kill_time = time.monotonic()
        old.kill9()
        cluster.wait_master_change(old.port, timeout=60)
        time.sleep(settle)
        load.stop()
        s = load.summary(kill_time)
        for x in extra:
            if isinstance(x, Proxy):
                m = re.findall(r"(\d+) ms after the first signal", x.log())
                s["switch_ms"] = int(m[-1]) if m else None
        return name, s
    finally:
        for x in extra:
            if isinstance(x, Proxy):
                x.stop(check=False)
            else:
                x.stop()
        cluster.stop()


def setup_proxy(cluster, workdir):
    p = Proxy(workdir, args=cluster.proxy_args()).start()
    wait_for(lambda: topology(p.client()).get("master") == "127.0.0.1:%d" % cluster.master.port,
             what="proxy to find the master")
    return (lambda: redis.Redis(port=p.port, socket_timeout=30, single_connection_client=True)), [p]


def setup_redispy(cluster, workdir):
    def make():
        s = redis.sentinel.Sentinel([("127.0.0.1", x.port) for x in cluster.sentinels],
                                    socket_timeout=1)
        return s.master_for(cluster.name, socket_timeout=1)
    return make, []


def setup_haproxy(cluster, workdir):
    proc, port = start_haproxy(workdir, [s.port for s in cluster.servers()], cluster.master.port)
    return (lambda: redis.Redis(port=port, socket_timeout=5)), [proc]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    rows = []
    for name, setup in (("sentinel-proxy", setup_proxy), ("redis-py Sentinel client", setup_redispy),
                        ("haproxy role:master", setup_haproxy)):
        workdir = make_workdir("sp-failover-")
        try:
            print("== %s" % name, flush=True)
            rows.append(run_scenario(name, workdir, setup))
            print("  ", rows[-1][1], flush=True)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    lines = ["# kill -9 of the master under load, %s" % time.strftime("%Y-%m-%d %H:%M"), "",
             "20 clients looping SET and GET; 1 master, 2 replicas, 3 Sentinels (quorum 2, "
             "down-after 1000 ms) on loopback.", "",
             "| client path | requests | errors | errors from requests issued after the kill | "
             "clients that saw an error | longest request during the failover | switch time "
             "after the first signal |",
             "|---|---|---|---|---|---|---|"]
    for name, s in rows:
        lines.append("| %s | %d | %d (%s) | %d | %d | %.0f ms | %s |" % (
            name, s["requests"], s["errors"], ", ".join(s["kinds"]) or "-", s["errors_after_kill"],
            s["clients_with_errors"], s["max_latency_ms"],
            "%d ms" % s["switch_ms"] if s.get("switch_ms") is not None else "-"))
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "failover-latest.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
