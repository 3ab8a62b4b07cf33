#!/usr/bin/python3
"""TLS termination compared: redis-benchmark --tls against

  direct          redis-server's own tls-port
  sp-tls-plain    sentinel-proxy, TLS listener, plain connection to the server
  sp-tls-tls      sentinel-proxy, TLS listener, TLS to the server's tls-port
  haproxy-tls     haproxy 2.6 terminating TLS (bind ... ssl crt) in front of
                  the plain port, TCP mode

in interleaved rounds (each round visits the targets in a shuffled order);
the report gives medians of requests per second, the ratio to haproxy, and
the proxy's CPU time per request (/proc/PID/stat). Then, per proxy: full
handshakes per second (`openssl s_time -new`, one client, TLS 1.3) and RSS
added per idle TLS connection with N connections open (redis-py clients,
each after one PING).

    /usr/bin/python3 bench/tls.py [--rounds 5] [--requests 100000] [--idle 5000]
"""
import argparse
import os
import random
import re
import resource
import socket
import ssl
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "test", "integration"))

from bench import cpu_seconds, machine, rss_kb, run_haproxy, stop_all  # noqa: E402
from harness import Proxy, RedisServer, TlsFiles, free_port, make_workdir  # noqa: E402

WORKLOADS = [("set", 1), ("get", 1), ("set", 16), ("get", 16)]


def start_haproxy_tls(workdir, certs, backend_port):
    pem = os.path.join(workdir, "haproxy.pem")
    with open(pem, "w") as f:
        for n in ("server.crt", "server.key"):
            with open(certs.path(n)) as src:
                f.write(src.read())
    return run_haproxy(workdir, "haproxy-tls", " ssl crt " + pem,
                       "    server s 127.0.0.1:%d" % backend_port, global_opts="    nbthread 1")


def bench_argv(certs, port, test, pipeline, requests):
    return ["redis-benchmark", "--tls", "--cacert", certs.path("ca.crt"), "-p", str(port), "-q",
            "--csv", "-n", str(requests), "-c", "50", "-P", str(pipeline), "-d", "16", "-r",
            "100000", "-t", test]


def run(certs, port, test, pipeline, requests):
    out = subprocess.run(bench_argv(certs, port, test, pipeline, requests), capture_output=True,
                         text=True, timeout=600)
    for line in out.stdout.splitlines():
        parts = [p.strip('"') for p in line.split(",")]
        if len(parts) >= 2 and parts[0] != "test":
            return float(parts[1])
    raise RuntimeError("redis-benchmark: %s %s" % (out.stdout, out.stderr))


def handshakes_per_second(certs, port, seconds):
    out = subprocess.run(["openssl", "s_time", "-connect", "127.0.0.1:%d" % port, "-new",
                          "-time", str(seconds), "-CAfile", certs.path("ca.crt")],
                         capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"(\d+) connections in ([\d.]+)s", out.stdout)
    if m is None:
        raise RuntimeError("openssl s_time: %s %s" % (out.stdout, out.stderr))
    return int(m.group(1)) / float(m.group(2))


def idle_tls_rss(certs, pid, port, n):
    """RSS added per idle TLS client connection, n of them open."""
    ctx = ssl.create_default_context(cafile=certs.path("ca.crt"))
    before = rss_kb(pid)
    socks = []
    try:
        for _ in range(n):
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                                server_hostname="127.0.0.1")
            s.sendall(b"PING\r\n")
            s.recv(64)
            socks.append(s)
        time.sleep(1)
        after = rss_kb(pid)
    finally:
        for s in socks:
            s.close()
    return (after - before) * 1024.0 / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=100000)
    ap.add_argument("--idle", type=int, default=5000, help="idle TLS connections for RSS")
    ap.add_argument("--handshake-seconds", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.idle + 1000)), hard))
    workdir = make_workdir("sp-bench-tls-")
    procs = []
    try:
        certs = TlsFiles(os.path.join(workdir, "tls"))
        tls_port = free_port()
        # Both ports: the plain one for haproxy and sp-tls-plain.
        plain = RedisServer(workdir, args=["--tls-port", str(tls_port)] +
                            certs.server_args()[2:]).start()
        procs.append(plain)
        common = ["--listen", None] + certs.proxy_listener_args()
        targets = [("direct", tls_port, None)]
        for name, extra, backend in (
                ("sp-tls-plain", [], plain.port),
                ("sp-tls-tls", certs.proxy_leg_args("backend-tls"), tls_port)):
            port = free_port()
            argv = list(common)
            argv[1] = "tls://127.0.0.1:%d" % port
            p = Proxy(workdir, backend=backend, listen_flag=False, args=argv + extra)
            p.port = port
            p.start()
            procs.append(p)
            targets.append((name, port, p.proc.pid))
        hp, hport = start_haproxy_tls(workdir, certs, plain.port)
        procs.append(hp)
        targets.append(("haproxy-tls", hport, hp.pid))

        rps = {(t[0], w): [] for t in targets for w in WORKLOADS}
        cpu = {(t[0], w): [] for t in targets for w in WORKLOADS}
        for r in range(args.rounds):
            for w in WORKLOADS:
                order = list(targets)
                random.shuffle(order)
                for name, port, pid in order:
                    c0 = cpu_seconds(pid) if pid else 0
                    v = run(certs, port, w[0], w[1], args.requests)
                    if pid:
                        cpu[(name, w)].append((cpu_seconds(pid) - c0) * 1e6 / args.requests)
                    rps[(name, w)].append(v)
            print("round %d/%d done" % (r + 1, args.rounds), flush=True)
        hs = {}
        idle = {}
        for name, port, pid in targets:
            hs[name] = handshakes_per_second(certs, port, args.handshake_seconds)
            if pid:
                idle[name] = idle_tls_rss(certs, pid, port, args.idle)
            print("%s: %.0f handshakes/s" % (name, hs[name]), flush=True)

        lines = ["# TLS termination, %s" % time.strftime("%Y-%m-%d %H:%M"), "",
                 "Machine: %s. redis-benchmark --tls -c 50 -d 16 -n %d, %d interleaved rounds "
                 "(medians); haproxy 2.6 nbthread 1." % (machine(), args.requests, args.rounds),
                 "", "| workload | " + " | ".join(t[0] for t in targets) + " | sp-tls-plain / "
                 "haproxy | sp-tls-tls / haproxy |",
                 "|---" * (len(targets) + 3) + "|"]
        for w in WORKLOADS:
            med = {t[0]: statistics.median(rps[(t[0], w)]) for t in targets}
            lines.append("| %s -P %d | " % (w[0].upper(), w[1]) +
                         " | ".join("%.0f" % med[t[0]] for t in targets) +
                         " | %.2fx | %.2fx |" % (med["sp-tls-plain"] / med["haproxy-tls"],
                                                 med["sp-tls-tls"] / med["haproxy-tls"]))
        lines += ["", "Proxy CPU time per request (user + system, microseconds, medians):", "",
                  "| workload | " + " | ".join(t[0] for t in targets[1:]) + " |",
                  "|---" * len(targets) + "|"]
        for w in WORKLOADS:
            lines.append("| %s -P %d | " % (w[0].upper(), w[1]) + " | ".join(
                "%.2f" % statistics.median(cpu[(t[0], w)]) for t in targets[1:]) + " |")
        lines += ["", "Full handshakes per second (openssl s_time -new, %d s, one client) and "
                  "RSS added per idle TLS connection (%d open):" % (args.handshake_seconds,
                                                                    args.idle), "",
                  "| target | handshakes/s | RSS per idle TLS connection |", "|---|---|---|"]
        for name, _, pid in targets:
            lines.append("| %s | %.0f | %s |" % (name, hs[name], "%.0f bytes" % idle[name]
                                                  if pid else "-"))
        text = "\n".join(lines) + "\n"
        print(text)
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "tls-%s.md" % time.strftime("%Y%m%d-%H%M%S"))
        with open(path, "w") as f:
            f.write(text)
        print("written to", path)
    finally:
        stop_all(procs, workdir)


if __name__ == "__main__":
    main()
