#!/usr/bin/python3
"""Instructions the proxy executes per request, counted by callgrind.

    make bench-callgrind                    SET and GET, -c 50, -P 1 and -P 16
    /usr/bin/python3 bench/callgrind.py --help

Timings on a small shared machine are noisy; instruction counts are not. For
each workload the proxy (one worker, in front of one redis-server) runs under
`valgrind --tool=callgrind` twice, once for N requests and once for 2N, and
the difference divided by N is the cost of one request: start-up, shutdown
and connection set-up cancel out. Only the proxy is counted.
"""
import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "test", "integration"))

from harness import (PROXY_BIN, Process, RedisServer, free_port,  # noqa: E402
                     make_workdir, port_open, wait_for)
from bench import predixy_config  # noqa: E402

WORKLOADS = [
    ("set", 1), ("get", 1), ("set", 16), ("get", 16),
]


def proxy_instructions(workdir, backend, test, pipeline, requests, clients, resp3=False,
                       binary=PROXY_BIN, predixy=False):
    """Total instructions of one proxy run that served `requests` requests
    (from RESP3 clients with resp3); binary is a predixy with predixy."""
    port = free_port()
    out = os.path.join(workdir, "callgrind.out.%d" % port)
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, binary]
    if predixy:
        argv.append(predixy_config(workdir, port, backend))
    else:
        argv += ["--listen", "127.0.0.1:%d" % port, "--backend", "127.0.0.1:%d" % backend,
                 "--workers", "1", "--log-level", "warn"]
    proc = Process(argv, os.path.join(workdir, "valgrind-%d.log" % port)).start()
    try:
        wait_for(lambda: port_open(port), timeout=60, what="proxy under callgrind")
        subprocess.run(["redis-benchmark", "-p", str(port), "-t", test, "-c", str(clients),
                        "-n", str(requests), "-P", str(pipeline), "-q"] + (["-3"] if resp3 else []),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        proc.stop(sig=signal.SIGINT, timeout=120)
    with open(out) as f:
        for line in f:
            m = re.match(r"^(summary|totals):\s+(\d+)", line)
            if m:
                return int(m.group(2))
    raise RuntimeError("no totals in " + out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=20000, help="requests of the shorter run")
    ap.add_argument("-c", type=int, default=50, help="redis-benchmark clients")
    ap.add_argument("--only", help="TEST or TEST:P, e.g. get:16")
    ap.add_argument("--resp3", action="store_true", help="clients speak RESP3 (redis-benchmark -3)")
    ap.add_argument("--binary", default=PROXY_BIN, help="the sentinel-proxy to count")
    ap.add_argument("--predixy", metavar="PATH", help="count this predixy (1 thread) instead")
    args = ap.parse_args()
    binary = args.predixy or args.binary
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    workdir = make_workdir()
    srv = RedisServer(workdir).start()
    rows = []
    try:
        for test, pipeline in WORKLOADS:
            if args.only and args.only not in (test, "%s:%d" % (test, pipeline)):
                continue
            one = proxy_instructions(workdir, srv.port, test, pipeline, args.n, args.c, args.resp3,
                                     binary, args.predixy is not None)
            two = proxy_instructions(workdir, srv.port, test, pipeline, 2 * args.n, args.c,
                                     args.resp3, binary, args.predixy is not None)
            per = (two - one) / args.n
            rows.append((test.upper(), pipeline, per))
            print("%-4s -P %-2d %8.0f instructions per request" % (test.upper(), pipeline, per),
                  flush=True)
    finally:
        srv.stop()
        for f in glob.glob(os.path.join(workdir, "callgrind.out.*")):
            os.unlink(f)
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n| workload | instructions per request |\n|---|---|")
    for test, pipeline, per in rows:
        print("| %s `-c %d -P %d%s` | %.0f |" % (test, args.c, pipeline, " -3" if args.resp3 else "",
                                              per))


if __name__ == "__main__":
    main()
