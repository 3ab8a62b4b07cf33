#!/usr/bin/python3
"""Head-of-line blocking: what other clients wait when the server holds one
client's request, directly and through sentinel-proxy, side by side.

  pause   one client runs CLIENT PAUSE 2000 WRITE, four clients send a SET
          each (they block, as they should), 100 ms later ten other clients
          send a GET each, then one more sends CLIENT UNPAUSE
  busy    one client runs a Lua script that loops past busy-reply-threshold
          (500 ms here); 700 ms in, ten other clients send a GET each (-BUSY
          is the direct answer) and one sends SCRIPT KILL
  sleep   one client runs DEBUG SLEEP 1; 50 ms later ten other clients send
          a GET each

Every row is the median over --rounds of the slowest of the ten GETs (and
the time UNPAUSE / SCRIPT KILL took). Nothing here asserts timings: the tests
do that loosely; this prints figures.

With --false-stalls 3ms,5ms,10ms it measures instead what each stall-threshold
costs on ordinary load, where nothing is held: a proxy per threshold runs
redis-benchmark workloads (-c 50 and -c 500, -P 1 and -P 16, LRANGE_100, 1 KB
values) and reports the stalls it saw and the extra connections it opened
(cumulative over the workloads). This is how the default was chosen.

    make bench-stall          (or /usr/bin/python3 bench/stall.py --rounds 5)
"""
import argparse
import os
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "test", "integration"))

from harness import Conn, Proxy, RedisServer, make_workdir, proxy_stats  # noqa: E402

SPIN = "local i = 0 while true do i = i + 1 end"


def timed_calls(port, cmd, n, barrier_delay):
    """n connections each send cmd once, barrier_delay seconds from now;
    returns (seconds each took, replies)."""
    conns = [Conn(port, timeout=3) for _ in range(n)]
    out = [None] * n
    start = threading.Barrier(n)

    def one(i):
        start.wait()
        t0 = time.monotonic()
        try:
            reply = conns[i].call(*cmd)
        except OSError as e:
            reply = ("-(%s)" % type(e).__name__).encode()
        out[i] = (time.monotonic() - t0, reply)

    time.sleep(barrier_delay)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in conns:
        c.close()
    return [o[0] for o in out], [o[1] for o in out]


def run_async(port, *cmd):
    c = Conn(port, timeout=15)
    c.send(cmd)

    def read():
        try:
            c.read()
        except OSError:
            pass

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return c, t


def scenario_pause(port, admin_port):
    admin = Conn(admin_port)
    admin.call("CLIENT", "PAUSE", "2000", "WRITE")
    writers = [run_async(port, "SET", "stall:w:%d" % i, "v") for i in range(4)]
    times, _ = timed_calls(port, ("GET", "stall:r"), 10, 0.1)
    t0 = time.monotonic()
    unpause = Conn(port).call("CLIENT", "UNPAUSE")
    t_unpause = time.monotonic() - t0
    assert unpause == b"+OK\r\n", unpause
    for c, t in writers:
        t.join(5)
        c.close()
    admin.close()
    return max(times), t_unpause


def scenario_busy(port, admin_port):
    admin = Conn(admin_port)
    admin.call("CONFIG", "SET", "busy-reply-threshold", "500")
    script, st = run_async(port, "EVAL", SPIN, "0")
    times, replies = timed_calls(port, ("GET", "stall:r"), 10, 0.7)
    busy = sum(1 for r in replies if r.startswith(b"-BUSY"))
    t0 = time.monotonic()
    try:
        kill = Conn(port, timeout=3).call("SCRIPT", "KILL")
    except OSError as e:
        kill = ("-(%s)" % type(e).__name__).encode()
    t_kill = time.monotonic() - t0
    try:
        admin.call("SCRIPT", "KILL")  # whatever happened through the path
    except OSError:
        pass
    st.join(5)
    script.close()
    admin.close()
    return max(times), t_kill, busy, kill


def scenario_sleep(port, admin_port):
    del admin_port
    sleeper, st = run_async(port, "DEBUG", "SLEEP", "1")
    times, _ = timed_calls(port, ("GET", "stall:r"), 10, 0.05)
    st.join(5)
    sleeper.close()
    return max(times), None


FALSE_STALL_LOADS = [  # (test, clients, pipeline, value size)
    ("set", 50, 1, 3), ("get", 50, 1, 3), ("set", 50, 16, 3), ("get", 50, 16, 3),
    ("set", 500, 1, 3), ("get", 500, 16, 3), ("lrange_100", 50, 16, 3), ("get", 50, 16, 1024),
]


def false_stalls(work, server, thresholds, requests):
    for thr in thresholds:
        proxy = Proxy(work, backend=server.port, args=["--set", "stall-threshold=" + thr]).start()
        try:
            print("stall-threshold %s" % thr, flush=True)
            for test, clients, pipeline, size in FALSE_STALL_LOADS:
                subprocess.run(["redis-benchmark", "-p", str(proxy.port), "-c", str(clients),
                                "-P", str(pipeline), "-d", str(size), "-n", str(requests),
                                "-t", test, "-q"], stdout=subprocess.DEVNULL, check=True)
                st = proxy_stats(proxy.port)
                print("  %-10s -c %-3d -P %-2d -d %-4d  stalls %4d  extra connections %d  "
                      "longest %d ms" % (test, clients, pipeline, size, st["stalls"],
                                         st["stall_conns_opened"], st["stall_longest_ms"]),
                      flush=True)
        finally:
            proxy.stop(check=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--proxy-args", default="", help="extra sentinel-proxy arguments")
    ap.add_argument("--false-stalls", default=None, metavar="T1,T2,...",
                    help="stall-threshold values to try on ordinary load instead")
    ap.add_argument("--requests", type=int, default=100000, help="per workload (--false-stalls)")
    args = ap.parse_args()
    work = make_workdir("sp-stall-")
    server = RedisServer(work, args=["--enable-debug-command", "yes"]).start()
    if args.false_stalls:
        try:
            false_stalls(work, server, args.false_stalls.split(","), args.requests)
        finally:
            server.stop()
        return
    proxy = Proxy(work, backend=server.port, args=args.proxy_args.split()).start()
    paths = [("direct", server.port), ("sentinel-proxy", proxy.port)]
    rows = []
    try:
        for name, fn in (("pause", scenario_pause), ("busy", scenario_busy),
                         ("sleep", scenario_sleep)):
            for path, port in paths:
                slowest, other, extra = [], [], ""
                for _ in range(args.rounds):
                    res = fn(port, server.port)
                    slowest.append(res[0])
                    if res[1] is not None:
                        other.append(res[1])
                    if name == "busy":
                        extra = "%d/10 -BUSY, SCRIPT KILL %r" % (res[2], res[3][:20])
                    time.sleep(0.2)
                rows.append((name, path, statistics.median(slowest) * 1000,
                             statistics.median(other) * 1000 if other else None, extra))
                print("%-6s %-15s slowest GET %8.1f ms  %s %s" % (
                    rows[-1][0], path, rows[-1][2],
                    "" if rows[-1][3] is None else "other %.1f ms" % rows[-1][3], extra),
                    flush=True)
        stats = proxy_stats(proxy.port)
        print("proxy: " + ", ".join("%s=%s" % (k, v) for k, v in stats.items()
                                    if k.startswith("stall") or k.startswith("backend_conn")))
    finally:
        proxy.stop(check=False)
        server.stop()


if __name__ == "__main__":
    main()
