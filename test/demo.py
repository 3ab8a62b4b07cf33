#!/usr/bin/python3
"""`make demo`: the classic Sentinel layout with sentinel-proxy in front.

Starts, in a temporary directory and on loopback ports only, one master and
two replicas (redis-server), three Sentinels (redis-sentinel, quorum 2,
down-after-milliseconds 2000) and sentinel-proxy following them; prints how
to connect and how to watch a failover; stops everything on Ctrl-C.
"""
import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))

from harness import Cluster, Proxy, free_port, make_workdir, port_open, topology, wait_for  # noqa: E402


def pick_port(preferred):
    return preferred if not port_open(preferred) else free_port()


def main():
    workdir = make_workdir("sp-demo-")
    cluster = None
    proxy = None
    try:
        print("starting 1 master, 2 replicas and 3 Sentinels in %s ..." % workdir, flush=True)
        cluster = Cluster(workdir, down_after=2000).start()
        proxy = Proxy(workdir, port=pick_port(6380), args=cluster.proxy_args()).start()
        wait_for(lambda: topology(proxy.client()).get("master") ==
                 "127.0.0.1:%d" % cluster.master.port, what="the proxy to find the master")
        p = proxy.port
        s0 = cluster.sentinels[0].port
        print("""
sentinel-proxy demo is running

  master          127.0.0.1:%(m)d   (pid %(mpid)d)
  replicas        %(replicas)s
  Sentinels       %(sentinels)s   (quorum 2, down-after 2 s)
  sentinel-proxy  127.0.0.1:%(p)d   <- applications connect here, and only here

Try it:
  redis-cli -p %(p)d SET greeting hello
  redis-cli -p %(p)d GET greeting            (reads go to a replica)
  redis-cli -p %(p)d PROXY TOPOLOGY          (master, replicas, Sentinels, epoch)

Watch a failover without the client noticing:
  1. in another terminal, keep a client busy on one connection:
       redis-cli -p %(p)d -r -1 -i 0.1 INCR counter
  2. kill the master:
       kill -9 %(mpid)d
     (or ask for a planned failover: redis-cli -p %(s0)d SENTINEL FAILOVER mymaster)
  3. the INCRs pause for a few seconds while the Sentinels elect a new master,
     then continue on the same connection; the proxy log below says which
     replica became the master and how long the switch took:
       redis-cli -p %(p)d PROXY TOPOLOGY

Logs: %(dir)s/*/*.log and %(dir)s/proxy-%(p)d.log
Press Ctrl-C to stop everything.
""" % {"m": cluster.master.port, "mpid": cluster.master.proc.pid,
       "replicas": ", ".join("127.0.0.1:%d" % r.port for r in cluster.replicas),
       "sentinels": ", ".join("127.0.0.1:%d" % s.port for s in cluster.sentinels),
       "p": p, "s0": s0, "dir": workdir}, flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        shown = 0
        while proxy.proc.alive():
            log = proxy.log()
            lines = log.splitlines()
            for line in lines[shown:]:
                if "topology v" in line or "first request forwarded" in line or "holding" in line:
                    print("proxy: " + line, flush=True)
            shown = len(lines)
            time.sleep(0.5)
        print("the proxy exited unexpectedly; see", proxy.proc.logpath)
    except KeyboardInterrupt:
        print("\nstopping...")
    finally:
        if proxy is not None:
            proxy.stop(check=False)
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
