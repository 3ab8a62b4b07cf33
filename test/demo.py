#!/usr/bin/python3
"""`make demo`: the classic Sentinel layout with sentinel-proxy in front.

Starts, in a temporary directory and on loopback ports only, one master and
two replicas (redis-server), three Sentinels (redis-sentinel, quorum 2,
down-after-milliseconds 2000) and sentinel-proxy following them; prints how
to connect and how to watch a failover; stops everything on Ctrl-C.

With TLS=1 in the environment (`make demo TLS=1`), every leg speaks TLS: a
test CA and certificates are made with the openssl command, the servers and
Sentinels listen on TLS ports only, and the proxy has a TLS listener and
connects to both with TLS.
"""
import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))

from harness import (Cluster, Proxy, TlsFiles, free_port, make_workdir, port_open,  # noqa: E402
                     topology, wait_for)


def pick_port(preferred):
    return preferred if not port_open(preferred) else free_port()


def main():
    workdir = make_workdir("sp-demo-")
    cluster = None
    proxy = None
    try:
        tls = TlsFiles(os.path.join(workdir, "tls")) if os.environ.get("TLS") == "1" else None
        print("starting 1 master, 2 replicas and 3 Sentinels%s in %s ..."
              % (" (TLS on every leg)" if tls else "", workdir), flush=True)
        cluster = Cluster(workdir, down_after=2000, tls=tls, servers_tls=tls is not None,
                          sentinels_tls=tls is not None).start()
        port = pick_port(6380)
        args = cluster.proxy_args()
        cli = "redis-cli -p %d" % port
        if tls is not None:
            args = ["--listen", "tls://127.0.0.1:%d" % port] + args + tls.proxy_listener_args()
            args += tls.proxy_leg_args("backend-tls") + tls.proxy_leg_args("sentinel.tls")
            cli = "redis-cli --tls --cacert %s -p %d" % (tls.path("ca.crt"), port)
        proxy = Proxy(workdir, port=port, args=args, listen_flag=tls is None).start()
        if tls is not None:
            proxy.client = lambda **kw: Proxy.client(proxy, **tls.client_kw(), **kw)
        wait_for(lambda: topology(proxy.client()).get("master") ==
                 "127.0.0.1:%d" % cluster.master.port, what="the proxy to find the master")
        p = proxy.port
        s0 = cluster.sentinels[0].port
        s0cli = ("redis-cli --tls --cacert %s -p %d" % (tls.path("ca.crt"), s0) if tls
                 else "redis-cli -p %d" % s0)
        print("""
sentinel-proxy demo is running

  master          127.0.0.1:%(m)d   (pid %(mpid)d)
  replicas        %(replicas)s
  Sentinels       %(sentinels)s   (quorum 2, down-after 2 s)
  sentinel-proxy  127.0.0.1:%(p)d   <- applications connect here, and only here

Try it:
  %(cli)s SET greeting hello
  %(cli)s GET greeting            (reads go to a replica)
  %(cli)s PROXY TOPOLOGY          (master, replicas, Sentinels, epoch)

Watch a failover without the client noticing:
  1. in another terminal, keep a client busy on one connection:
       %(cli)s -r -1 -i 0.1 INCR counter
  2. kill the master:
       kill -9 %(mpid)d
     (or ask for a planned failover: %(s0cli)s SENTINEL FAILOVER mymaster)
  3. the INCRs pause for a few seconds while the Sentinels elect a new master,
     then continue on the same connection; the proxy log below says which
     replica became the master and how long the switch took:
       %(cli)s PROXY TOPOLOGY

Logs: %(dir)s/*/*.log and %(dir)s/proxy-%(p)d.log
Press Ctrl-C to stop everything.
""" % {"m": cluster.master.port, "mpid": cluster.master.proc.pid,
       "replicas": ", ".join("127.0.0.1:%d" % r.port for r in cluster.replicas),
       "sentinels": ", ".join("127.0.0.1:%d" % s.port for s in cluster.sentinels),
       "p": p, "cli": cli, "s0cli": s0cli, "dir": workdir}, flush=True)
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
