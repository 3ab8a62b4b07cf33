"""Several workers at once: what the workers share (the client count, the
command table, topology snapshots, counters read by PROXY STATS and PROXY
TOPOLOGY from any worker) is touched from every thread while clients run.
These tests are also the thread-sanitizer suite (`make SANITIZER=thread`,
run by .ci/run): a data race there fails the proxy's clean shutdown."""
import json
import threading
import urllib.request

import redis

from harness import Proxy, free_port, port_open, proxy_stats, topology, wait_for

WORKERS = "3"


def hammer(port, n, errors, fn):
    """Run fn(client, i) for i in range(n) on one connection; collect errors."""
    try:
        c = redis.Redis(port=port, socket_timeout=30)
        for i in range(n):
            fn(c, i)
        c.close()
    except Exception as e:  # noqa: BLE001 - reported by the test
        errors.append(repr(e))


def run_all(targets):
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a client did not finish"


def test_workers_share_clients_counters_and_commands(workdir, redis_server):
    p = Proxy(workdir, backend=redis_server.port, args=["--workers", WORKERS]).start()
    try:
        errors = []

        def rw(c, i):
            key = "w:%d" % (i % 50)
            c.set(key, i)
            assert c.get(key) is not None
            assert c.incr("counter") > 0

        def pipeline(c, i):
            pipe = c.pipeline(transaction=False)
            for k in range(20):
                pipe.set("p:%d:%d" % (i, k), k)
                pipe.get("p:%d:%d" % (i, k))
            out = pipe.execute()
            assert out[1::2] == [str(k).encode() for k in range(20)]

        def transaction(c, i):
            pipe = c.pipeline(transaction=True)
            pipe.incr("tx").incr("tx")
            a, b = pipe.execute()
            assert b == a + 1

        def observer(c, i):
            # Each reads every worker's counters and the shared command table.
            stats = topology(c, "STATS")
            assert int(stats["workers"]) == int(WORKERS)
            assert topology(c).get("master")

        kinds = [rw, pipeline, transaction, observer]
        run_all([lambda f=kinds[i % 4]: hammer(p.port, 200, errors, f) for i in range(16)])
        assert not errors, errors[:5]
        c = p.client()
        assert int(c.get("counter")) == 4 * 200
        stats = proxy_stats(c)
        assert stats["connected_clients"] >= 1
        assert stats["requests"] > 16 * 200
        # Connections were spread over the workers (SO_REUSEPORT): every
        # worker served some; the shared client count is back to what is open.
        wait_for(lambda: proxy_stats(c)["connected_clients"] == 1,
                 what="closed clients to be counted out")
    finally:
        p.stop()


def test_workers_counted_while_metrics_are_scraped(workdir, cluster):
    """The admin endpoints read every worker's counters and levels, and the
    control plane's report, from the control thread while workers run and
    the topology changes."""
    admin = free_port()
    p = Proxy(workdir, args=cluster.proxy_args() + [
        "--workers", WORKERS, "--set", "admin.listen=127.0.0.1:%d" % admin]).start()
    try:
        wait_for(lambda: port_open(admin), what="admin port")
        wait_for(lambda: topology(p.client()).get("master"), what="a master")
        errors = []
        stop = threading.Event()

        def rw(c, i):
            c.set("m:%d" % (i % 20), i)
            c.get("m:%d" % (i % 20))

        def scraper():
            n = 0
            while not stop.is_set() or n < 5:
                for path in ("/metrics", "/topology", "/readyz"):
                    try:
                        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (admin, path),
                                                    timeout=10) as r:
                            body = r.read()
                    except urllib.error.HTTPError as e:
                        body = e.read()  # 503 while the master changes
                    if path == "/topology":
                        json.loads(body)
                n += 1

        t = threading.Thread(target=scraper)
        t.start()
        old = cluster.master.port
        run_all([lambda: hammer(p.port, 300, errors, rw) for _ in range(6)] + [
            lambda: cluster.sentinels[0].client().sentinel_failover(cluster.name)])
        cluster.wait_master_change(old)
        stop.set()
        t.join(60)
        assert not t.is_alive()
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=10) as r:
            text = r.read().decode()
        served = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                     if line.startswith("sentinel_proxy_requests_total{"))
        assert served >= 6 * 300 * 2 - len(errors) * 2
    finally:
        p.stop()


def test_workers_follow_a_failover(workdir, cluster):
    """Snapshots reach every worker while their clients read and write; a
    failover is followed by all of them."""
    p = Proxy(workdir, args=cluster.proxy_args() + ["--workers", WORKERS]).start()
    try:
        c = p.client()
        old = cluster.master.port
        wait_for(lambda: topology(c).get("master") == "127.0.0.1:%d" % old,
                 what="proxy to find the master")
        stop = threading.Event()
        errors = []
        done = [0]

        def client(i):
            cl = redis.Redis(port=p.port, socket_timeout=30)
            n = 0
            while not stop.is_set():
                try:
                    cl.set("f:%d" % i, n)
                    cl.get("f:%d" % i)
                    n += 1
                except redis.RedisError as e:
                    # At most the write in flight at the switch may fail.
                    errors.append(repr(e))
            done[0] += n
            cl.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        cluster.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", cluster.name)
        new = cluster.wait_master_change(old)
        wait_for(lambda: topology(c).get("master") == "127.0.0.1:%d" % new, timeout=30,
                 what="proxy to follow the failover")
        # Every worker's clients reach the new master: fresh connections
        # land on every worker in turn.
        for _ in range(12):
            assert redis.Redis(port=p.port, socket_timeout=30).set("after", 1)
        stop.set()
        for t in threads:
            t.join(60)
        assert done[0] > 0
        assert len(errors) <= 6, errors
        assert cluster.server_on(new).client().get("after") == b"1"
    finally:
        p.stop()


def test_workers_tls_handshakes_while_certificates_reload(workdir, redis_server):
    """New TLS connections on every worker while SIGHUP replaces the
    context they are made from: no client sees an error."""
    import os
    import shutil
    import signal

    from harness import TlsFiles, free_port
    certs = TlsFiles(os.path.join(workdir, "tls"))
    port = free_port()
    p = Proxy(workdir, backend=redis_server.port, listen_flag=False,
              args=["--workers", WORKERS, "--listen", "tls://127.0.0.1:%d" % port] +
              certs.proxy_listener_args()).start(wait=False)
    wait_for(lambda: "ready:" in p.log(), what="the proxy")
    try:
        errors = []
        stop = threading.Event()

        def connect_loop(k):
            try:
                while not stop.is_set():
                    c = redis.Redis(port=port, socket_timeout=30, **certs.client_kw())
                    assert c.set("k%d" % k, k) and c.get("k%d" % k) == str(k).encode()
                    c.close()
            except Exception as e:  # noqa: BLE001 - reported by the test
                errors.append(repr(e))

        threads = [threading.Thread(target=connect_loop, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for i in range(8):
            certs.make("server-r%d" % i, "ca")
            for n in ("crt", "key"):
                shutil.copy(certs.path("server-r%d.%s" % (i, n)), certs.path("server." + n))
            p.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: p.log().count("tls: certificates reloaded") == i + 1,
                     what="reload %d" % (i + 1))
        stop.set()
        for t in threads:
            t.join(60)
        assert not errors, errors[:3]
        c = redis.Redis(port=port, socket_timeout=10, **certs.client_kw())
        assert proxy_stats(c)["tls_handshakes"] > 20
    finally:
        p.stop()
