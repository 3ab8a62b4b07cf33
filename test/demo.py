#!/usr/bin/python3
"""`make demo`: run sentinel-proxy in front of a local Redis.

Starts, in a temporary directory and on loopback ports only, a redis-server
from the Debian package and sentinel-proxy in front of it, prints how to
connect, and stops everything on Ctrl-C.
"""
import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))

from harness import Proxy, RedisServer, free_port, make_workdir, port_open  # noqa: E402


def pick_port(preferred):
    return preferred if not port_open(preferred) else free_port()


def main():
    workdir = make_workdir("sp-demo-")
    started = []
    try:
        redis_port = free_port()
        master = RedisServer(workdir, port=redis_port).start()
        started.append(master)
        proxy = Proxy(workdir, backend=master.port, port=pick_port(6380)).start()
        started.append(proxy)
        print("""
sentinel-proxy demo is running (files and logs in %(dir)s)

  redis-server    127.0.0.1:%(redis)d
  sentinel-proxy  127.0.0.1:%(proxy)d   -> forwards to the redis-server above

Try it:
  redis-cli -p %(proxy)d SET greeting hello
  redis-cli -p %(proxy)d GET greeting
  redis-cli -p %(proxy)d PROXY TOPOLOGY
  redis-benchmark -p %(proxy)d -q -t set,get -n 100000

Press Ctrl-C to stop everything.
""" % {"dir": workdir, "redis": master.port, "proxy": proxy.port})
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while all(p.proc.alive() for p in started):
            time.sleep(0.5)
        print("a process exited unexpectedly; see the logs in", workdir)
    except KeyboardInterrupt:
        print("\nstopping...")
    finally:
        for p in reversed(started):
            p.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
