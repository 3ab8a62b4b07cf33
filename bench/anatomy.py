#!/usr/bin/python3
"""Where a request's time goes, per process, with each proxy in front of one
redis-server: the figures behind the -P 1 comparison.

For every target (direct, sentinel-proxy, and the peers that are installed:
haproxy, twemproxy, predixy with --predixy PATH or $PREDIXY) and every
workload, redis-benchmark runs in interleaved rounds and the report gives
medians of, per request:

  rps           requests per second
  bench/server/proxy us   CPU time (user + system) of redis-benchmark, of
                redis-server and of the proxy
  proxy kernel us   the system-time part of the proxy's CPU: what the kernel
                spends on its sockets, which no user-space change removes
  proxy wait us time the proxy's threads were runnable but waiting for a
                CPU (/proc/PID/task/*/schedstat), and its context switches
  req/read      requests redis-server took per read of a socket (its
                total_reads_processed against total_commands_processed): how
                full the pipelines the proxy sends are
  sys/req       system calls per request of the proxy and of redis-server,
                with the proxy's by kind (perf stat tracepoints, when perf
                works here)
  req/write     requests per backend write and client reads per loop turn,
                from sentinel-proxy's PROXY STATS

    /usr/bin/python3 bench/anatomy.py [--rounds 5] [--requests 100000]
"""
import argparse
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "test", "integration"))

from harness import Proxy, RedisServer, make_workdir, proxy_stats  # noqa: E402
from bench import (cpu_seconds, fill_list, run_benchmark, start_haproxy,  # noqa: E402
                   start_predixy, start_twemproxy, stop_all)


def schedstat(pid):
    """(run ns, runnable-but-waiting ns, switches) summed over pid's threads."""
    run = wait = switches = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
            a, b, _ = f.read().split()
        run += int(a)
        wait += int(b)
        with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
            for line in f:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    switches += int(line.split()[1])
    return run, wait, switches


SYSCALLS = ("read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg", "sendmsg",
            "epoll_wait", "epoll_ctl")


def perf_works():
    try:
        return subprocess.run(["perf", "stat", "-e", "raw_syscalls:sys_enter", "true"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class SyscallCount:
    """perf stat counting the system calls of some processes while it runs."""

    def __init__(self, workdir, pids):
        self.path = os.path.join(workdir, "perf-%d.txt" % pids[0])
        events = ["raw_syscalls:sys_enter"] + ["syscalls:sys_enter_" + s for s in SYSCALLS]
        self.proc = subprocess.Popen(["perf", "stat", "-x", ",", "--per-thread", "-o", self.path,
                                      "-e", ",".join(events), "-p", ",".join(map(str, pids))],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)  # attached before the load starts

    def stop(self, pids_of):
        """{name: {event: count}} for pids_of = {name: pid}."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)
        tids = {name: set(os.listdir("/proc/%d/task" % pid)) for name, pid in pids_of.items()}
        out = {name: {} for name in pids_of}
        with open(self.path) as f:
            for line in f:
                parts = line.strip().split(",")
                if len(parts) < 4 or "-" not in parts[0]:
                    continue
                tid = parts[0].rsplit("-", 1)[1]
                try:
                    count = int(parts[1])
                except ValueError:
                    continue
                event = parts[3].split(":")[-1].replace("sys_enter_", "")
                for name, ts in tids.items():
                    if tid in ts:
                        out[name][event] = out[name].get(event, 0) + count
        return out


def server_counts(server):
    st = server.client().info("stats")
    return st["total_commands_processed"], st["total_reads_processed"], st["total_writes_processed"]


def kernel_seconds(pid):
    """system CPU seconds of a process (and its threads)."""
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[12]) / os.sysconf("SC_CLK_TCK")


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def measure(target, server, test, clients, pipeline, requests, size, workdir, perf):
    name, port, pid, sp = target
    pids = {"server": server.proc.pid}
    if pid:
        pids["proxy"] = pid
    sc = SyscallCount(workdir, list(pids.values())) if perf else None
    s0 = server_counts(server)
    sc0 = cpu_seconds(server.proc.pid)
    p0 = cpu_seconds(pid) if pid else 0
    pk0 = kernel_seconds(pid) if pid else 0
    k0 = schedstat(pid) if pid else (0, 0, 0)
    st0 = proxy_stats(port) if sp else None
    b0 = children_cpu()
    rps = run_benchmark(port, test, clients, pipeline, requests, size)
    b1 = children_cpu()
    counts = sc.stop(pids) if sc else None
    s1 = server_counts(server)
    sc1 = cpu_seconds(server.proc.pid)
    row = {"rps": rps}
    if counts:
        row["server_sys"] = counts["server"].get("sys_enter", 0) / requests
        if pid:
            row["proxy_sys"] = counts["proxy"].get("sys_enter", 0) / requests
            row["proxy_sys_kinds"] = {k: v / requests for k, v in counts["proxy"].items()
                                      if k != "sys_enter" and v > 0}
    row["bench_us"] = (b1 - b0) / requests * 1e6
    row["server_us"] = (sc1 - sc0) / requests * 1e6
    cmds = s1[0] - s0[0]
    row["req_per_read"] = cmds / max(1, s1[1] - s0[1])
    row["req_per_write"] = cmds / max(1, s1[2] - s0[2])
    if pid:
        k1 = schedstat(pid)
        row["proxy_us"] = (cpu_seconds(pid) - p0) / requests * 1e6
        row["proxy_kernel_us"] = (kernel_seconds(pid) - pk0) / requests * 1e6
        row["proxy_wait_us"] = (k1[1] - k0[1]) / requests / 1e3
        row["proxy_switches"] = (k1[2] - k0[2]) / requests
    if sp:
        st1 = proxy_stats(port)
        d = {k: st1[k] - st0[k] for k in ("requests", "backend_writes", "backend_reads",
                                          "client_reads", "client_writes")}
        row["sp_req_per_bwrite"] = d["requests"] / max(1, d["backend_writes"])
        row["sp_req_per_bread"] = d["requests"] / max(1, d["backend_reads"])
        row["sp_client_reads_per_req"] = d["client_reads"] / max(1, d["requests"])
    return row


COLUMNS = [("rps", "%.0f"), ("bench_us", "%.2f"), ("server_us", "%.2f"), ("proxy_us", "%.2f"),
           ("proxy_kernel_us", "%.2f"),
           ("proxy_wait_us", "%.2f"), ("proxy_switches", "%.2f"), ("server_sys", "%.2f"),
           ("proxy_sys", "%.2f"), ("req_per_read", "%.1f"),
           ("req_per_write", "%.1f"), ("sp_req_per_bwrite", "%.1f"), ("sp_req_per_bread", "%.1f")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=100000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--tests", default="set,get", help="redis-benchmark tests, or lrange_100")
    ap.add_argument("--size", type=int, default=3)
    ap.add_argument("--predixy", default=os.environ.get("PREDIXY"))
    ap.add_argument("--sp", action="append", metavar="SETTINGS",
                    help="a sentinel-proxy to run, as comma-separated --set settings (repeat to "
                         "compare; default: backend-connections=2 and backend-connections=1; "
                         "'' for the defaults)")
    ap.add_argument("--no-peers", action="store_true", help="only sentinel-proxy and direct")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()

    workdir = make_workdir("sp-anatomy-")
    perf = perf_works()
    if not perf:
        print("perf stat does not work here: no system call counts", flush=True)
    procs = []
    try:
        server = RedisServer(workdir).start()
        procs.append(server)
        targets = [("direct", server.port, None, False)]
        for settings in args.sp or ["backend-connections=2", "backend-connections=1"]:
            extra = []
            for kv in filter(None, settings.split(",")):
                extra += ["--set", kv]
            p = Proxy(workdir, backend=server.port, args=extra).start()
            procs.append(p)
            targets.append(("sentinel-proxy %s" % (settings or "defaults"), p.port, p.proc.pid,
                            True))
        if not args.no_peers and shutil.which("haproxy"):
            hp, port = start_haproxy(workdir, [server.port], server.port)
            procs.append(hp)
            targets.append(("haproxy", port, hp.pid, False))
        if not args.no_peers and shutil.which("nutcracker"):
            tw, port = start_twemproxy(workdir, server.port)
            procs.append(tw)
            targets.append(("twemproxy", port, tw.pid, False))
        if not args.no_peers and args.predixy:
            pd, port = start_predixy(workdir, args.predixy, server.port)
            procs.append(pd)
            targets.append(("predixy", port, pd.pid, False))
        rows = {}
        for test in args.tests.split(","):
            if test.startswith("lrange_"):
                fill_list(server, [], args.size)
            for rnd in range(args.rounds):
                order = targets[:]
                random.shuffle(order)
                for t in order:
                    row = measure(t, server, test, args.clients, args.pipeline, args.requests,
                                  args.size, workdir, perf)
                    rows.setdefault((test, t[0]), []).append(row)
                    print("%s round %d %-24s %s" % (test, rnd + 1, t[0], " ".join(
                        "%s=%s" % (k, f % row[k]) for k, f in COLUMNS if k in row)), flush=True)
    finally:
        stop_all(procs, workdir)

    lines = ["redis-benchmark -c %d -P %d -d %d -n %d, one redis-server, %d interleaved rounds, "
             "medians; CPU and waits per request in microseconds." % (
                 args.clients, args.pipeline, args.size, args.requests, args.rounds), ""]
    direct = {test: statistics.median(r["rps"] for r in rows[(test, "direct")])
              for test in args.tests.split(",")}
    lines.append("| workload | target | req/s (x direct) | " +
                 " | ".join(k for k, _ in COLUMNS[1:]) + " |")
    lines.append("|---|---|---|" + "---|" * (len(COLUMNS) - 1))
    for (test, name), rs in rows.items():
        med = {k: statistics.median(r[k] for r in rs) for k, _ in COLUMNS if k in rs[0]}
        cells = ["%.0f (%.2fx)" % (med["rps"], med["rps"] / direct[test])]
        cells += [(f % med[k]) if k in med else "-" for k, f in COLUMNS[1:]]
        lines.append("| %s | %s | %s |" % (test.upper(), name, " | ".join(cells)))
    kinds = [(key, rs) for key, rs in rows.items() if "proxy_sys_kinds" in rs[0]]
    if kinds:
        lines += ["", "The proxy's system calls per request, by kind (medians):", ""]
        for (test, name), rs in kinds:
            names = sorted({k for r in rs for k in r["proxy_sys_kinds"]})
            lines.append("- %s %s: %s" % (test.upper(), name, ", ".join(
                "%s %.2f" % (k, statistics.median(r["proxy_sys_kinds"].get(k, 0) for r in rs))
                for k in names)))
    text = "\n".join(lines)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "anatomy-%s.md" % time.strftime("%Y%m%d-%H%M%S"))
    with open(path, "w") as f:
        f.write(text + "\n")
    print("written:", path)


if __name__ == "__main__":
    main()
