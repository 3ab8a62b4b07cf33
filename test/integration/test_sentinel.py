"""Following Sentinel: discovery, quorum, events and failover, against real
redis-server and redis-sentinel processes (down-after-milliseconds 1000)."""
import signal
import threading
import time

import pytest
import redis

from harness import Conn, FakeSentinel, Proxy, topology, wait_for, wait_rounds


def healthy_replicas(t):
    return sum(1 for k, v in t.items() if k.startswith("replica") and k != "replicas"
               and "healthy=1" in v)


def wait_proxy_master(proxy, port, timeout=30):
    want = "127.0.0.1:%d" % port
    wait_for(lambda: topology(proxy.client()).get("master") == want, timeout=timeout,
             what="proxy to use master %s" % want)


class Load:
    """Clients looping SET then GET on their own keys through the proxy, each
    on its own TCP connection, recording every outcome with its time."""

    def __init__(self, port, clients=20, client_kw=None, prefix="load"):
        self.port = port
        self.prefix = prefix
        self.client_kw = client_kw or {}
        self.stop_flag = threading.Event()
        self.results = [[] for _ in range(clients)]  # (t_issued, t_done, op, key, ok, error)
        self.socknames = [None] * clients
        self.final_socknames = [None] * clients
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def _run(self, i):
        c = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=60,
                        single_connection_client=True, **self.client_kw)
        c.ping()
        self.socknames[i] = c.connection._sock.getsockname()
        seq = 0
        while not self.stop_flag.is_set():
            seq += 1
            key = "%s:%d:%d" % (self.prefix, i, seq)
            set_ok = False
            for op in ("set", "get"):
                t0 = time.monotonic()
                try:
                    r = c.set(key, seq) if op == "set" else c.get(key)
                    # An acknowledged SET must be read back (read-your-writes);
                    # after a failed one the key may or may not exist.
                    ok = (r is True if op == "set"
                          else r == str(seq).encode() or (r is None and not set_ok))
                    set_ok = op == "set" and ok
                    err = None if ok else "unexpected reply %r" % (r,)
                except redis.RedisError as e:
                    ok, err = False, "%s: %s" % (type(e).__name__, e)
                self.results[i].append((t0, time.monotonic(), op, key, ok, err))
            time.sleep(0.002)
        try:
            self.final_socknames[i] = c.connection._sock.getsockname()
        except (AttributeError, OSError):
            self.final_socknames[i] = None
        c.close()

    def start(self):
        for t in self.threads:
            t.start()
        self.wait_ops(5)
        return self

    def wait_ops(self, n, timeout=60):
        """Wait until every client has completed n more requests."""
        start = [len(r) for r in self.results]
        wait_for(lambda: all(len(r) >= s + n for r, s in zip(self.results, start)),
                 timeout=timeout, what="every client to complete %d more requests" % n)

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(60)

    def errors(self):
        return [(i, r) for i, rs in enumerate(self.results) for r in rs if not r[4]]

    def max_latency(self):
        return max(r[1] - r[0] for rs in self.results for r in rs)


def where_is(cluster, key):
    found = []
    for srv in cluster.servers():
        try:
            found.append((srv.port, srv.client(socket_timeout=2).get(key)))
        except (redis.RedisError, OSError) as e:
            found.append((srv.port, type(e).__name__))
    return found


def check_failover_outcome(load, kill_time, new_master, window=0.05, cluster=None):
    """Same connections; errors only for requests in flight when the master
    died (issued before kill_time + window), at most one per client; every
    acknowledged write after the switch readable."""
    assert load.socknames == load.final_socknames, "a client connection was replaced"
    errors = load.errors()
    per_client = {}
    for i, r in errors:
        per_client[i] = per_client.get(i, 0) + 1
        # A request issued after the kill (plus the moment the kernel needs to
        # close the dead process's sockets) must not fail.
        assert r[0] < kill_time + window, "request issued after the kill failed: %r" % (r,)
        assert "ConnectionError" not in r[5] and "TimeoutError" not in r[5], r
    assert all(n <= 1 for n in per_client.values()), per_client
    if cluster is not None and cluster.master_port() not in (None, new_master.port):
        # A loaded machine can make the Sentinels fail over a second time
        # (the new master missed down-after-milliseconds): acknowledged
        # writes are then on the master the proxy followed next.
        new_master = cluster.server_on(cluster.master_port())
    nc = new_master.client()
    for i, rs in enumerate(load.results):
        acked = [r for r in rs if r[2] == "set" and r[4] and r[0] > kill_time + window]
        for r in acked[-20:]:
            assert nc.get(r[3]) is not None, "acknowledged write %r lost (servers: %r)" % (
                r, where_is(cluster, r[3]) if cluster else "?")


def test_discovery(cluster, sproxy):
    c = sproxy.client()
    t = topology(c)
    assert t["mode"] == "sentinel"
    assert t["master"] == "127.0.0.1:%d" % cluster.master.port
    wait_for(lambda: healthy_replicas(topology(c)) == 2, what="two healthy replicas")
    assert int(topology(c)["sentinels_answering"]) == 3
    assert c.set("k", "v") and c.get("k") == b"v"
    assert cluster.master.client().get("k") == b"v"


def test_discovery_with_one_sentinel_down(workdir, cluster):
    cluster.sentinels[0].stop()
    p = Proxy(workdir, args=cluster.proxy_args()).start()
    try:
        wait_proxy_master(p, cluster.master.port, timeout=10)
        assert p.client().set("a", "1")
        t = topology(p.client())
        assert int(t["sentinels_answering"]) == 2
    finally:
        p.stop()


def test_learns_sentinels(workdir, cluster):
    p = Proxy(workdir, args=cluster.proxy_args(sentinels=cluster.sentinels[:1])).start()
    try:
        wait_proxy_master(p, cluster.master.port, timeout=10)
        wait_for(lambda: int(topology(p.client())["sentinels_answering"]) == 3, timeout=10,
                 what="two more Sentinels learnt from SENTINEL SENTINELS")
        t = topology(p.client())
        learnt = [v for k, v in t.items() if k.startswith("sentinel") and "origin=learnt" in v]
        assert len(learnt) == 2
    finally:
        p.stop()


def test_garbage_and_hanging_sentinels_do_not_stall(workdir, cluster):
    hang, garbage = FakeSentinel("hang"), FakeSentinel("garbage")
    try:
        args = ["--master-name", "mymaster", "--sentinel", "127.0.0.1:%d" % hang.port,
                "--sentinel", "127.0.0.1:%d" % garbage.port,
                "--sentinel", "127.0.0.1:%d" % cluster.sentinels[0].port]
        p = Proxy(workdir, args=args).start()
        try:
            start = time.monotonic()
            wait_proxy_master(p, cluster.master.port, timeout=10)
            # One round, bounded by the per-request timeout (500 ms), not by the
            # Sentinel that never answers.
            assert time.monotonic() - start < 5
            assert p.client().set("x", "1")
            assert hang.requests > 0 and garbage.requests > 0
        finally:
            p.stop()
    finally:
        hang.stop()
        garbage.stop()


def test_stale_sentinel_is_outvoted(workdir, cluster):
    old = cluster.master.port
    cluster.sentinels[0].client().sentinel_failover(cluster.name)
    new = cluster.wait_master_change(old)
    # A Sentinel that still reports the old master, with the old epoch.
    stale = FakeSentinel("stale", master=("127.0.0.1", old), epoch=0)
    try:
        args = ["--master-name", "mymaster", "--sentinel", "127.0.0.1:%d" % stale.port,
                "--sentinel", "127.0.0.1:%d" % cluster.sentinels[1].port]
        p = Proxy(workdir, args=args).start()
        try:
            wait_proxy_master(p, new, timeout=15)
            for _ in range(3):
                wait_rounds(p, 1)
                assert topology(p.client())["master"] == "127.0.0.1:%d" % new
            assert p.client().set("after", "1")
            assert cluster.server_on(new).client().get("after") == b"1"
        finally:
            p.stop()
    finally:
        stale.stop()


def test_kill9_master_under_load(cluster, sproxy):
    old = cluster.master
    load = Load(sproxy.port).start()
    load.wait_ops(50)
    kill_time = time.monotonic()
    old.kill9()
    new_port = cluster.wait_master_change(old.port)
    wait_proxy_master(sproxy, new_port)
    load.wait_ops(50)  # requests on the new master
    load.stop()
    check_failover_outcome(load, kill_time, cluster.server_on(new_port), cluster=cluster)
    assert "ms after the first signal" in sproxy.log()


@pytest.mark.parametrize("read_from", ["master", "prefer-replicas"])
def test_kill9_reads_in_flight_are_sent_again(workdir, cluster, read_from):
    """10 clients reading (pipelines of GETs, so that many are in flight) when
    the master is killed: a read whose connection is lost is sent again,
    until hold-timeout, to the master the Sentinels elect; none fails."""
    p = Proxy(workdir, args=cluster.proxy_args() + ["--read-from", read_from]).start()
    try:
        wait_proxy_master(p, cluster.master.port)
        m = cluster.master.client()
        for i in range(10):
            m.set("ryw:%d" % i, "v%d" % i)
        m.wait(len(cluster.replicas), 5000)
        stop = threading.Event()
        errors, done = [], [0] * 10

        def reader(i):
            c = redis.Redis(port=p.port, single_connection_client=True, socket_timeout=60)
            while not stop.is_set():
                pipe = c.pipeline(transaction=False)
                for _ in range(20):
                    pipe.get("ryw:%d" % i)
                try:
                    got = pipe.execute(raise_on_error=False)
                except redis.RedisError as e:
                    errors.append(repr(e))
                    continue
                errors.extend(repr(g) for g in got if g != ("v%d" % i).encode())
                done[i] += 1

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        wait_for(lambda: min(done) > 20, what="reads going")
        old = cluster.master
        old.kill9()
        new_port = cluster.wait_master_change(old.port)
        wait_proxy_master(p, new_port)
        mark = list(done)
        wait_for(lambda: all(d > m + 5 for d, m in zip(done, mark)), what="reads after the switch")
        stop.set()
        for t in threads:
            t.join(60)
        assert not errors, errors[:5]
    finally:
        p.stop()


def test_sigstop_master_then_rejoin(cluster, sproxy):
    """A frozen master: requests already sent to it when it froze get an
    "outcome unknown" error (it may run them when it wakes up, before Sentinel
    demotes it); nothing issued after the switch reaches it."""
    old = cluster.master
    load = Load(sproxy.port, clients=10).start()
    load.wait_ops(20)
    mon = old.client(socket_timeout=60).connection_pool.get_connection("MONITOR")
    mon.send_command("MONITOR")
    assert mon.read_response() in (b"OK", "OK")
    seen = []

    def watch():
        try:
            while True:
                seen.append(mon.read_response())
        except (redis.RedisError, OSError):
            pass  # Sentinel kills client connections when it reconfigures the old master

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stop_time = time.monotonic()
    old.proc.send_signal(signal.SIGSTOP)
    try:
        new_port = cluster.wait_master_change(old.port)
        wait_proxy_master(sproxy, new_port)
        switched = time.monotonic()
        load.wait_ops(50)  # on the new master, the old one still frozen
    finally:
        old.proc.send_signal(signal.SIGCONT)
    load.wait_ops(50)  # the old master awake, believing itself master
    load.stop()
    executed = " ".join(x.decode() if isinstance(x, bytes) else str(x) for x in seen)
    late = [r[3] for rs in load.results for r in rs if r[0] > switched and '"%s"' % r[3] in executed]
    assert not late, "requests issued after the switch reached the old master: %r" % late[:5]
    wait_for(lambda: old.client().info("replication")["role"] == "slave", timeout=30,
             what="old master to rejoin as a replica")
    # Errors only for what was in flight when it froze (one per client at
    # most); the proxy noticed within the Sentinel timeout.
    check_failover_outcome(load, stop_time, cluster.server_on(new_port), window=1.0,
                           cluster=cluster)
    assert topology(sproxy.client())["master"] == "127.0.0.1:%d" % new_port


def test_manual_failover_under_load_no_errors(cluster, sproxy):
    old = cluster.master.port
    load = Load(sproxy.port).start()
    load.wait_ops(50)
    cluster.sentinels[0].client().sentinel_failover(cluster.name)
    new_port = cluster.wait_master_change(old)
    wait_proxy_master(sproxy, new_port)
    load.wait_ops(50)
    load.stop()
    assert load.errors() == []
    assert load.socknames == load.final_socknames


def test_sentinels_down(cluster, sproxy):
    c = sproxy.client()
    cluster.sentinels[0].stop()
    wait_for(lambda: int(topology(c)["sentinels_answering"]) == 2, what="one Sentinel down")
    assert c.set("one-down", "1") and c.get("one-down") == b"1"
    for s in cluster.sentinels[1:]:
        s.stop()
    wait_for(lambda: "none of the 3 Sentinel(s) answered" in sproxy.log(),
             what="every Sentinel down")
    assert "serving the last confirmed master meanwhile" in sproxy.log()
    # Every Sentinel is gone: the last confirmed topology keeps serving.
    for i in range(50):
        assert c.set("all-down:%d" % i, i)
    assert topology(c)["master"] == "127.0.0.1:%d" % cluster.master.port
    assert "none of the 3 Sentinel(s) answered" in sproxy.log()


@pytest.mark.parametrize("kind", ["blpop", "subscribe", "multi"])
def test_sessions_survive_failover(cluster, sproxy, kind):
    """State held on the old master when the failover starts: a BLPOP
    blocked there, a subscription, a database and an open MULTI."""
    old = cluster.master.port
    c = sproxy.client(socket_timeout=60)
    res = {}
    if kind == "subscribe":
        ps = c.pubsub()
        ps.subscribe("news")
        wait_for(lambda: ps.get_message(timeout=0.1) is not None, what="subscribe confirmation")
    elif kind == "multi":
        c.execute_command("SELECT", "2")
        c.set("in-db-2", "x")
        assert c.execute_command("WAIT", 2, 5000) == 2  # on whichever replica is promoted
        tx = Conn(sproxy.port)
        assert tx.call("SELECT", "2") == b"+OK\r\n"
        assert tx.call("MULTI") == b"+OK\r\n"
        assert tx.call("SET", "t", "queued") == b"+QUEUED\r\n"
    else:
        blocked = threading.Thread(target=lambda: res.update(v=c.blpop("q", timeout=30)))
        blocked.start()
        wait_for(lambda: cluster.master.client().info("clients")["blocked_clients"] == 1,
                 what="BLPOP blocked on the master")
    cluster.sentinels[0].client().sentinel_failover(cluster.name)
    new_port = cluster.wait_master_change(old)
    wait_proxy_master(sproxy, new_port)
    new = cluster.server_on(new_port)
    if kind == "subscribe":
        def delivered():
            sproxy.client().publish("news", "hello")
            m = ps.get_message(timeout=0.5)
            while m is not None and m["type"] != "message":
                m = ps.get_message(timeout=0.5)
            return m is not None and m["data"] == b"hello"
        wait_for(delivered, timeout=10, what="message after resubscription")
    elif kind == "multi":
        # The transaction was open on the old master: it is discarded, and
        # none of it ran anywhere.
        assert tx.call("EXEC").startswith(b"-EXECABORT")
        assert new.client(db=2).get("t") is None
        # The session's database was replayed on the new master.
        assert c.get("in-db-2") == b"x"
        with c.pipeline(transaction=True) as p:
            p.set("t", "1").get("t")
            assert p.execute() == [True, b"1"]
    else:
        # The BLPOP did not run on the old master: it waits on the new one,
        # on the same client connection.
        wait_for(lambda: new.client().info("clients")["blocked_clients"] == 1, timeout=15,
                 what="BLPOP blocked again on the new master")
        sproxy.client().rpush("q", "item")
        blocked.join(15)
        assert res["v"] == (b"q", b"item")
        # A BLPOP sent after the switch blocks there as well.
        other = sproxy.client()
        t = threading.Thread(target=lambda: res.update(v2=c.blpop("q", timeout=10)))
        t.start()
        wait_for(lambda: new.client().info("clients")["blocked_clients"] == 1,
                 what="second BLPOP blocked on the new master")
        other.rpush("q", "item2")
        t.join(15)
        assert res["v2"] == (b"q", b"item2")
