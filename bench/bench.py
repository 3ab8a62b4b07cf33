#!/usr/bin/python3
"""redis-benchmark comparisons: a direct connection, sentinel-proxy, haproxy,
twemproxy and (when built, see bench/README.md) predixy, interleaved in one
run.

    make bench                      full run (several minutes)
    make bench-quick                a quick run (a few minutes)
    /usr/bin/python3 bench/bench.py --help

Every process runs on loopback ports chosen free at run time, in a temporary
directory. Runs are interleaved (each round visits the targets in a shuffled
order) and repeated; the report gives medians, the ratio to the direct
connection, the proxies' CPU time per request (from /proc/PID/stat) and RSS.
Results go to bench/results/ as Markdown (and a PNG chart when
python3-matplotlib is installed).
"""
import argparse
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "test", "integration"))

from harness import (Cluster, Process, Proxy, RedisServer, free_port,  # noqa: E402
                     make_workdir, port_open, proxy_stats, topology, wait_for)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """user + system CPU seconds of a process (and its threads)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proxy_stalls(port):
    """(stalls, extra connections opened) from a sentinel-proxy's PROXY STATS;
    None for the peers."""
    try:
        st = proxy_stats(port)
        return st["stalls"], st["stall_conns_opened"]
    except Exception:  # noqa: BLE001 - a peer does not know PROXY STATS
        return None


class Target:
    def __init__(self, name, port, pid=None, reads=None):
        self.name = name
        self.port = port
        self.pid = pid  # the proxy process whose CPU is measured (None: direct)


def run_haproxy(workdir, name, bind_opts, backend, global_opts=""):
    """haproxy 2.6 in TCP mode on a free port: bind_opts follow the address on
    its bind line, backend is the body of its one backend section. Returns
    (process, port) once the port accepts."""
    port = free_port()
    cfg = os.path.join(workdir, name + ".cfg")
    with open(cfg, "w") as f:
        f.write("""global
    maxconn 9000
%s
defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
frontend redis
    bind 127.0.0.1:%d%s
    default_backend server
backend server
%s
""" % (global_opts, port, bind_opts, backend))
    proc = Process(["haproxy", "-f", cfg, "-db"], os.path.join(workdir, name + ".log")).start()
    wait_for(lambda: port_open(port), what="haproxy")
    return proc, port


def start_haproxy(workdir, backend_ports, master_port):
    """haproxy 2.6 in TCP mode with a role:master check, as users run it."""
    servers = "\n".join(
        "    server r%d 127.0.0.1:%d check inter 1s" % (i, p) for i, p in enumerate(backend_ports))
    proc, port = run_haproxy(workdir, "haproxy", "", """    option tcp-check
    tcp-check send PING\\r\\n
    tcp-check expect string +PONG
    tcp-check send info\\ replication\\r\\n
    tcp-check expect string role:master
    tcp-check send QUIT\\r\\n
    tcp-check expect string +OK
""" + servers)
    # Wait until the check has found the master.
    wait_for(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                                    text=True, timeout=5).stdout.strip() == "PONG",
             timeout=15, what="haproxy master check")
    return proc, port


def start_twemproxy(workdir, master_port):
    port = free_port()
    cfg = os.path.join(workdir, "nutcracker.yml")
    with open(cfg, "w") as f:
        f.write("""pool:
  listen: 127.0.0.1:%d
  redis: true
  hash: fnv1a_64
  distribution: ketama
  auto_eject_hosts: false
  server_connections: 1
  timeout: 10000
  servers:
   - 127.0.0.1:%d:1
""" % (port, master_port))
    proc = Process(["nutcracker", "-c", cfg, "-s", str(free_port())],
                   os.path.join(workdir, "nutcracker.log")).start()
    wait_for(lambda: port_open(port), what="twemproxy")
    return proc, port


def predixy_config(workdir, port, master_port, cluster=None):
    """The configuration file of a predixy with 1 worker thread on port in
    front of the same master: with a Sentinel layout it asks the Sentinels
    (its Sentinel pool), with a fixed backend it uses the master's address;
    reads stay on the master, as sentinel-proxy's --read-from master does."""
    if cluster is not None:
        source = "RefreshMethod sentinel\n    Sentinels {\n%s\n    }\n    Group %s {\n    }" % (
            "\n".join("        + 127.0.0.1:%d" % s.port for s in cluster.sentinels), cluster.name)
    else:
        source = "RefreshMethod fixed\n    Group shard001 {\n        + 127.0.0.1:%d\n    }" % master_port
    cfg = os.path.join(workdir, "predixy.conf")
    with open(cfg, "w") as f:
        f.write("""Name bench
Bind 127.0.0.1:%d
WorkerThreads 1
ClientTimeout 0
Log %s
LogVerbSample 0
LogDebugSample 0
LogInfoSample 0
LogNoticeSample 1
LogWarnSample 1
LogErrorSample 1
Authority {
    Auth {
        Mode write
    }
}
StandaloneServerPool {
    Hash crc16
    Distribution modula
    MasterReadPriority 100
    StaticSlaveReadPriority 0
    DynamicSlaveReadPriority 0
    RefreshInterval 1
    %s
}
""" % (port, os.path.join(workdir, "predixy-run.log"), source))
    return cfg


def start_predixy(workdir, binary, master_port, cluster=None):
    """predixy as predixy_config describes, started and serving."""
    port = free_port()
    cfg = predixy_config(workdir, port, master_port, cluster)
    proc = Process([binary, cfg], os.path.join(workdir, "predixy.log")).start()
    wait_for(lambda: port_open(port), what="predixy")
    wait_for(lambda: subprocess.run(["redis-cli", "-p", str(port), "set", "predixy:up", "1"],
                                    capture_output=True, text=True, timeout=5).stdout.strip() == "OK",
             timeout=15, what="predixy to find the master")
    return proc, port


# redis-benchmark's LRANGE_<n> tests first run an LPUSH phase to fill the
# list, in the same process: its CPU time and its line in the output would be
# taken for the LRANGE's. The list is filled once beforehand instead (see
# fill_list) and the same command is sent as a custom one.
LIST_KEY = "mylist"
LIST_LEN = 600  # as many elements as redis-benchmark's largest LRANGE reads


def benchmark_argv(port, test, clients, pipeline, requests, size, threads=None):
    argv = ["redis-benchmark", "-p", str(port), "-q", "--csv", "-n", str(requests),
            "-c", str(clients), "-P", str(pipeline), "-d", str(size), "-r", "100000"]
    if threads:
        argv += ["--threads", str(threads)]
    if test.startswith("lrange_"):
        return argv + ["lrange", LIST_KEY, "0", str(int(test.split("_")[1]) - 1)]
    return argv + ["-t", test]


def fill_list(master, replicas, size):
    """The list LRANGE workloads read: LIST_LEN values of size bytes, on the
    master and (WAIT) on its replicas."""
    c = master.client()
    c.delete(LIST_KEY)
    c.rpush(LIST_KEY, *([b"x" * size] * LIST_LEN))
    if replicas and c.execute_command("WAIT", len(replicas), 5000) < len(replicas):
        raise RuntimeError("replicas did not get the LRANGE list")


def run_benchmark(port, test, clients, pipeline, requests, size, threads=None):
    argv = benchmark_argv(port, test, clients, pipeline, requests, size, threads)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    rows = []
    for line in out.stdout.splitlines():
        parts = [p.strip('"') for p in line.split(",")]
        if len(parts) >= 2 and parts[0] != "test":
            try:
                rows.append(float(parts[1]))
            except ValueError:
                continue
    if len(rows) != 1:  # one test per run: anything else is not what was asked for
        raise RuntimeError("redis-benchmark gave %d results: %s %s" %
                           (len(rows), out.stdout, out.stderr))
    return rows[0]


def idle_rss_per_conn(pid, port, n):
    """RSS added per idle client connection, with n connections open."""
    before = rss_kb(pid)
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            socks.append(s)
        # Make sure every connection was accepted (a PING on the last one).
        socks[-1].sendall(b"PING\r\n")
        socks[-1].recv(64)
        time.sleep(1)
        after = rss_kb(pid)
    finally:
        for s in socks:
            s.close()
    return (after - before) * 1024.0 / n


WORKLOADS_FULL = [
    # (test, clients, pipeline, value size)
    ("set", 50, 1, 3), ("get", 50, 1, 3), ("set", 50, 16, 3), ("get", 50, 16, 3),
    ("incr", 50, 1, 3), ("lpush", 50, 1, 3), ("lrange_100", 50, 1, 3), ("lrange_100", 50, 16, 3),
    ("mset", 50, 1, 3),
    ("set", 500, 1, 3), ("get", 500, 1, 3), ("set", 500, 16, 3), ("get", 500, 16, 3),
    ("set", 50, 1, 1024), ("get", 50, 1, 1024), ("set", 50, 16, 1024), ("get", 50, 16, 1024),
]
WORKLOADS_QUICK = [("set", 50, 1, 3), ("get", 50, 1, 3), ("set", 50, 16, 3), ("get", 50, 16, 3)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few workloads, fewer rounds")
    ap.add_argument("--only", default=None, metavar="TEST",
                    help="only the workloads of one redis-benchmark test (set, lrange_100, ...)")
    ap.add_argument("--rounds", type=int, default=None, help="repetitions of every run")
    ap.add_argument("--requests", type=int, default=None, help="requests per run")
    ap.add_argument("--workers", default="1",
                    help="sentinel-proxy workers; a list (1,2) runs one proxy per value")
    ap.add_argument("--idle", type=int, default=5000, help="idle connections for the RSS figure")
    ap.add_argument("--fixed", action="store_true",
                    help="one redis-server and the proxy with a fixed backend, instead of the "
                         "classic Sentinel layout (1 master, 2 replicas, 3 Sentinels)")
    ap.add_argument("--no-peers", action="store_true", help="skip haproxy, twemproxy and predixy")
    ap.add_argument("--predixy", metavar="PATH", default=os.environ.get("PREDIXY"),
                    help="a predixy binary to run as a peer (default: $PREDIXY; see "
                         "bench/README.md for building it)")
    ap.add_argument("--baseline", metavar="BINARY", default=None,
                    help="also run another sentinel-proxy binary (an earlier build, say) "
                         "with the same settings, as 'baseline'")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="report directory")
    ap.add_argument("--readme", action="store_true",
                    help="also put the table into README.md (between its bench markers)")
    args = ap.parse_args()
    rounds = args.rounds or (3 if args.quick else 5)
    requests = args.requests or (100000 if args.quick else 200000)
    workloads = WORKLOADS_QUICK if args.quick else WORKLOADS_FULL
    if args.only:
        workloads = [w for w in workloads if w[0] == args.only]
        if not workloads:
            ap.error("no workload runs the test %r" % args.only)

    workdir = make_workdir("sp-bench-")
    procs = []
    targets = []
    try:
        if not args.fixed:
            cluster = Cluster(workdir).start()
            procs.append(cluster)
            master = cluster.master
            replica_ports = [r.port for r in cluster.replicas]
        else:
            master = RedisServer(workdir).start()
            procs.append(master)
            cluster = None
            replica_ports = []
        targets.append(Target("direct", master.port))
        for nw in [int(x) for x in str(args.workers).split(",")]:
            base = ["--workers", str(nw), "--set", "max-clients=9000"]
            tag = "" if "," not in str(args.workers) else " w%d" % nw
            if cluster is None:
                builds = [("sentinel-proxy" + tag, None)]
                if args.baseline:
                    builds.append(("baseline" + tag, args.baseline))
                for name, binary in builds:
                    sp = Proxy(workdir, backend=master.port, args=base, binary=binary).start()
                    procs.append(sp)
                    targets.append(Target(name, sp.port, sp.proc.pid))
                continue
            variants = [("sentinel-proxy" + tag, ["--read-from", "master"]),
                        ("sentinel-proxy%s reads on replicas" % tag, ["--read-from", "replicas"]),
                        ("sentinel-proxy%s reads on replicas, no read-your-writes" % tag,
                         ["--read-from", "replicas", "--set", "read-your-writes=false"])]
            if args.baseline:
                variants.append(("baseline" + tag, ["--read-from", "master"], args.baseline))
            for name, extra, *binary in variants:
                sp = Proxy(workdir, args=cluster.proxy_args() + base + extra,
                           binary=binary[0] if binary else None).start()
                wait_for(lambda: topology(sp.client()).get("master") ==
                         "127.0.0.1:%d" % master.port, what="proxy to find the master")
                procs.append(sp)
                targets.append(Target(name, sp.port, sp.proc.pid))
        if cluster is not None:
            wait_for(lambda: all(r.client().info("replication")["master_link_status"] == "up"
                                 for r in cluster.replicas), what="replicas in sync")
        if not args.no_peers and shutil.which("haproxy"):
            hp, hport = start_haproxy(workdir, [master.port] + replica_ports, master.port)
            procs.append(hp)
            targets.append(Target("haproxy", hport, hp.pid))
        if not args.no_peers and shutil.which("nutcracker"):
            tw, tport = start_twemproxy(workdir, master.port)
            procs.append(tw)
            targets.append(Target("twemproxy", tport, tw.pid))
        if not args.no_peers and args.predixy:
            pd, pport = start_predixy(workdir, args.predixy, master.port, cluster)
            procs.append(pd)
            targets.append(Target("predixy", pport, pd.pid))

        results = {}  # (workload, target) -> [rps]
        cpu = {}      # (workload, target) -> [cpu seconds per request]
        for w in workloads:
            test, clients, pipeline, size = w
            print("== %s -c %d -P %d -d %d" % (test, clients, pipeline, size), flush=True)
            if test.startswith("lrange_"):
                fill_list(master, cluster.replicas if cluster else [], size)
            for r in range(rounds):
                order = targets[:]
                random.shuffle(order)
                for t in order:
                    c0 = cpu_seconds(t.pid) if t.pid else 0
                    rps = run_benchmark(t.port, test, clients, pipeline, requests, size)
                    c1 = cpu_seconds(t.pid) if t.pid else 0
                    results.setdefault((w, t.name), []).append(rps)
                    if t.pid:
                        cpu.setdefault((w, t.name), []).append((c1 - c0) / requests)
                    print("   round %d %-36s %12.0f req/s" % (r + 1, t.name, rps), flush=True)
        rss = {}
        for t in targets:
            if t.pid:
                rss[t.name] = (rss_kb(t.pid), idle_rss_per_conn(t.pid, t.port, args.idle),
                               proxy_stalls(t.port))
        report(args, workloads, targets, results, cpu, rss, rounds, requests)
    finally:
        stop_all(procs, workdir)


def stop_all(procs, workdir):
    """Stop what a run started, last first, and remove its directory."""
    for p in reversed(procs):
        if isinstance(p, Proxy):
            p.stop(check=False)
        else:
            p.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def machine():
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                         platform.processor())
    except OSError:
        model = platform.processor()
    return "%s, %d CPUs, %s" % (model, os.cpu_count(), platform.platform())


def report(args, workloads, targets, results, cpu, rss, rounds, requests):
    names = [t.name for t in targets]
    lines = []
    lines.append("# sentinel-proxy benchmark, %s" % time.strftime("%Y-%m-%d %H:%M"))
    lines.append("")
    lines.append("Machine: %s. redis-benchmark, %d requests per run, %d interleaved rounds, "
                 "medians; %s; sentinel-proxy with %s worker(s)." % (
                     machine(), requests, rounds,
                     "one redis-server" if args.fixed else
                     "1 master, 2 replicas, 3 Sentinels; 'direct' is the master",
                     args.workers))
    lines.append("")
    head = "| workload | " + " | ".join(names) + " |"
    lines.append(head)
    lines.append("|" + "---|" * (len(names) + 1))
    med = {}
    for w in workloads:
        test, clients, pipeline, size = w
        row = "| %s -c %d -P %d -d %d |" % (test.upper(), clients, pipeline, size)
        direct = statistics.median(results[(w, "direct")])
        for n in names:
            m = statistics.median(results[(w, n)])
            med[(w, n)] = m
            row += " %.0f (%.2fx) |" % (m, m / direct)
        lines.append(row)
    lines.append("")
    lines.append("Requests per second (ratio to the direct connection in the same run).")
    lines.append("")
    proxies = [t.name for t in targets if t.pid]
    lines.append("| workload | " + " | ".join("%s CPU us/req" % n for n in proxies) + " |")
    lines.append("|" + "---|" * (len(proxies) + 1))
    for w in workloads:
        test, clients, pipeline, size = w
        row = "| %s -c %d -P %d -d %d |" % (test.upper(), clients, pipeline, size)
        for n in proxies:
            row += " %.2f |" % (statistics.median(cpu[(w, n)]) * 1e6)
        lines.append(row)
    lines.append("")
    lines.append("| process | RSS after the runs | RSS per idle connection (%d open) |" % args.idle)
    lines.append("|---|---|---|")
    for n in proxies:
        lines.append("| %s | %.1f MiB | %.0f bytes |" % (n, rss[n][0] / 1024.0, rss[n][1]))
    for n in proxies:
        if rss[n][2] is not None:
            lines.append("")
            lines.append("%s: %d stalls seen, %d extra connections opened around them, over "
                         "every run." % ((n,) + rss[n][2]))
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    os.makedirs(args.out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = os.path.join(args.out, "bench-%s%s.md" % (stamp, "-quick" if args.quick else ""))
    with open(path, "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "latest.md"), "w") as f:
        f.write(text)
    chart(args, workloads, names, med, os.path.join(args.out, "latest.png"))
    print("written:", path)
    if args.readme:
        update_readme(text, os.path.relpath(path, os.path.dirname(HERE)))


def update_readme(text, path):
    """Replace what README.md holds between <!-- bench --> and <!-- /bench -->."""
    readme = os.path.join(os.path.dirname(HERE), "README.md")
    with open(readme) as f:
        doc = f.read()
    start, end = doc.find("<!-- bench -->"), doc.find("<!-- /bench -->")
    if start < 0 or end < start:
        print("README.md has no bench markers: not updated")
        return
    body = text.split("\n", 2)[2]  # without the title line
    block = "<!-- bench -->\n\nFrom `%s` (`make bench`):\n\n%s\n" % (path, body.strip())
    with open(readme, "w") as f:
        f.write(doc[:start] + block + doc[end:])
    print("README.md updated")


def chart(args, workloads, names, med, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no python3-matplotlib: no chart)")
        return
    fig, ax = plt.subplots(figsize=(max(8, len(workloads) * 1.2), 5))
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        xs = [k + i * width for k in range(len(workloads))]
        ax.bar(xs, [med[(w, n)] / 1000 for w in workloads], width, label=n)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(workloads))])
    ax.set_xticklabels(["%s\n-c%d -P%d -d%d" % (w[0].upper(), w[1], w[2], w[3]) for w in workloads],
                       fontsize=7)
    ax.set_ylabel("thousand requests per second")
    ax.set_title("redis-benchmark, medians (%s)" % time.strftime("%Y-%m-%d"))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print("chart:", path)


if __name__ == "__main__":
    main()
