"""Read/write splitting: reads on replicas, writes on the master only,
read-your-writes under replication lag, replica failures, and session
features running side by side with ordinary traffic."""
import socket
import threading
import time

import redis

from harness import (Proxy, backend_offsets, blocked_on, proxy_stats, replicas_caught_up,
                     subscribed_on, topology, wait_for)


def cmdstat(server, cmd):
    info = server.client().info("commandstats")
    s = info.get("cmdstat_%s" % cmd, {})
    return s.get("calls", 0), s.get("rejected_calls", 0) + s.get("failed_calls", 0)


def split_proxy(workdir, cluster, *extra):
    p = Proxy(workdir, args=cluster.proxy_args() + list(extra)).start()
    c = p.client()
    wait_for(lambda: topology(c).get("master") == "127.0.0.1:%d" % cluster.master.port and
             sum("healthy=1" in v for k, v in topology(c).items()
                 if k.startswith("replica") and k != "replicas") == 2,
             what="proxy to see the master and two healthy replicas")
    return p


def test_reads_on_replicas_writes_on_master(workdir, cluster):
    p = split_proxy(workdir, cluster, "--read-from", "replicas")
    try:
        c = p.client()
        before = [cmdstat(r, "get")[0] for r in cluster.replicas]
        mget_before = cmdstat(cluster.master, "get")[0]
        for i in range(300):
            assert c.set("s:%d" % i, i)
        wait_for(lambda: all(r.client().dbsize() >= 300 for r in cluster.replicas),
                 what="replication")
        for i in range(300):
            assert c.get("s:%d" % i) == str(i).encode()
        after = [cmdstat(r, "get")[0] for r in cluster.replicas]
        per_replica = [a - b for a, b in zip(after, before)]
        assert sum(per_replica) >= 300, per_replica
        assert all(n > 30 for n in per_replica), "reads not spread: %r" % per_replica
        assert cmdstat(cluster.master, "get")[0] == mget_before, "a read reached the master"
        for r in cluster.replicas:
            assert cmdstat(r, "set")[1] == 0, "a write was sent to a replica"
        assert proxy_stats(c)["reads_replicas"] >= 300
    finally:
        p.stop()


def test_read_from_master(workdir, cluster):
    p = split_proxy(workdir, cluster, "--read-from", "master")
    try:
        c = p.client()
        before = [cmdstat(r, "get")[0] for r in cluster.replicas]
        for i in range(50):
            c.get("k%d" % i)
        assert [cmdstat(r, "get")[0] for r in cluster.replicas] == before
    finally:
        p.stop()


def set_then_get(c, n):
    stale = 0
    for i in range(n):
        v = b"%d" % i
        c.set("ryw", v)
        if c.get("ryw") != v:
            stale += 1
    return stale


class Lag:
    """Makes the replicas apply the replication stream late while they keep
    serving reads: CLIENT PAUSE ... WRITE on a replica holds back what its
    master sends, so a read right after a write is stale on a direct
    connection nearly every time."""

    def __init__(self, replicas, pause_ms=50):
        self.clients = [r.client() for r in replicas]
        self.pause_ms = pause_ms
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop_flag.is_set():
            for c in self.clients:
                c.execute_command("CLIENT", "PAUSE", self.pause_ms, "WRITE")
            time.sleep(2 * self.pause_ms / 1000.0)  # paused about half the time

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join()
        for c in self.clients:
            c.execute_command("CLIENT", "UNPAUSE")


def test_read_your_writes_with_lagging_replicas(workdir, cluster):
    p = split_proxy(workdir, cluster)  # prefer-replicas, read-your-writes on (defaults)
    try:
        c = p.client()
        with Lag(cluster.replicas):
            assert set_then_get(c, 10000) == 0
        # The replicas serve this client's reads again once they have caught
        # up with its last write.
        wait_for(lambda: replicas_caught_up(p), what="the replicas to catch up")
        before = proxy_stats(c)["reads_replicas"]
        for i in range(200):
            c.get("other:%d" % i)
        assert proxy_stats(c)["reads_replicas"] > before
    finally:
        p.stop()


def test_without_read_your_writes_reads_are_stale(workdir, cluster):
    """The same workload with read-your-writes off shows stale reads: proof
    that the test above can fail."""
    p = split_proxy(workdir, cluster, "--read-from", "replicas", "--set", "read-your-writes=false",
                    "--set", "max-replica-lag=0")
    try:
        with Lag(cluster.replicas):
            assert set_then_get(p.client(), 2000) > 200
    finally:
        p.stop()


def test_replica_failure_reads_continue(workdir, cluster):
    p = split_proxy(workdir, cluster, "--read-from", "prefer-replicas")
    try:
        c = p.client()
        c.set("x", "1")
        wait_for(lambda: all(r.client().get("x") == b"1" for r in cluster.replicas),
                 what="replication")
        cluster.replicas[0].kill9()
        for _ in range(500):
            assert c.get("x") == b"1"
        cluster.replicas[1].kill9()
        for _ in range(100):
            assert c.get("x") == b"1"  # prefer-replicas falls back on the master
    finally:
        p.stop()


def test_sessions_alongside_ordinary_traffic(workdir, cluster):
    p = split_proxy(workdir, cluster)
    try:
        errors = []
        stop = threading.Event()

        def ordinary(i):
            c = p.client()
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    c.set("o:%d" % i, n)
                    if c.get("o:%d" % i) != str(n).encode():
                        errors.append("stale o:%d" % i)
                except redis.RedisError as e:
                    errors.append(repr(e))

        workers = [threading.Thread(target=ordinary, args=(i,)) for i in range(4)]
        for t in workers:
            t.start()
        sub = p.client().pubsub()
        sub.subscribe("chan")
        blocked = p.client(socket_timeout=30)
        res = {}
        bt = threading.Thread(target=lambda: res.update(v=blocked.blpop("q", timeout=20)))
        bt.start()
        tx = p.client()
        with tx.pipeline(transaction=True) as pipe:
            pipe.watch("w")
            pipe.multi()
            pipe.incr("w").incr("w")
            assert pipe.execute() == [1, 2]
        pub = p.client()
        subscribed_on(cluster.master, "chan")
        blocked_on(cluster.master)
        assert pub.publish("chan", "m1") >= 1
        got = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            m = sub.get_message(timeout=0.5)
            if m and m["type"] == "message":
                got = m["data"]
                break
        assert got == b"m1"
        pub.rpush("q", "job")
        bt.join(10)
        assert res["v"] == (b"q", b"job")
        stop.set()
        for t in workers:
            t.join()
        assert errors == []
    finally:
        p.stop()


def resp3_exchange(port, commands):
    """Raw RESP3 replies to HELLO 3 then each command, on one connection."""
    import socket
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    out = []
    rd = b""

    def read_one():
        nonlocal rd
        from harness import split_reply
        while True:
            n = split_reply(rd)
            if n:
                reply, rd = rd[:n], rd[n:]
                return reply
            rd += s.recv(65536)

    def send(*args):
        payload = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            payload += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(payload)
        return read_one()

    hello = send("HELLO", "3")
    for cmd in commands:
        out.append(send(*cmd))
    s.close()
    return hello, out


RESP3_COMMANDS = [
    ("FLUSHALL",), ("HSET", "h", "a", "1", "b", "2"), ("HGETALL", "h"),
    ("ZADD", "z", "1.5", "m"), ("ZSCORE", "z", "m"), ("ZRANGE", "z", "0", "-1", "WITHSCORES"),
    ("SADD", "st", "x"), ("SMEMBERS", "st"), ("GET", "nokey"), ("CONFIG", "GET", "maxmemory"),
    ("EXISTS", "h"), ("PING",), ("ECHO", "x"), ("DEBUG", "PROTOCOL", "bignum"),
    ("DEBUG", "PROTOCOL", "verbatim"), ("DEBUG", "PROTOCOL", "true"),
]


def test_hello3_resp3_replies_match_direct(cluster, sproxy):
    hello_d, direct = resp3_exchange(cluster.master.port, RESP3_COMMANDS)
    hello_p, proxied = resp3_exchange(sproxy.port, RESP3_COMMANDS)
    assert hello_p.startswith(b"%") and hello_d.startswith(b"%")
    for cmd, d, p in zip(RESP3_COMMANDS, direct, proxied):
        assert p == d, "%r: direct %r, proxy %r" % (cmd, d, p)
    assert direct[2].startswith(b"%")  # HGETALL is a map in RESP3
    assert direct[4].startswith(b",")  # ZSCORE is a double


def test_per_listener_read_from(workdir, cluster):
    from harness import free_port
    reads_port, master_port = free_port(), free_port()
    cfg = ("read-from: replicas\n"
           "listen:\n  - 127.0.0.1:%d\n  - { address: \"127.0.0.1:%d\", read-from: master }\n"
           % (reads_port, master_port))
    p = Proxy(workdir, args=cluster.proxy_args(), config=cfg, port=reads_port,
              listen_flag=False).start()
    try:
        wait_for(lambda: sum("healthy=1" in v for k, v in topology(p.client()).items()
                             if k.startswith("replica") and k != "replicas") == 2,
                 what="healthy replicas")
        before = cmdstat(cluster.master, "get")[0]
        on_master = redis.Redis(port=master_port)
        for _ in range(20):
            on_master.get("k")
        assert cmdstat(cluster.master, "get")[0] - before == 20
        on_replicas = redis.Redis(port=reads_port)
        for _ in range(20):
            on_replicas.get("k")
        assert cmdstat(cluster.master, "get")[0] - before == 20
    finally:
        p.stop()


def test_wait_counts_replicas_that_have_the_clients_writes(workdir, cluster):
    p = split_proxy(workdir, cluster)
    try:
        c = p.client()
        c.set("w", "1")
        assert c.execute_command("WAIT", "2", "2000") == 2
        # Replicas that hold back the replication stream have not acknowledged
        # the next write: WAIT must time out with fewer than 2, as on a direct
        # connection (it would return 2 at once if it counted nothing).
        paused = [r.client() for r in cluster.replicas]
        for r in paused:
            r.execute_command("CLIENT", "PAUSE", "1500", "WRITE")
        try:
            c.set("w", "2")
            start = time.monotonic()
            assert c.execute_command("WAIT", "2", "300") < 2
            assert time.monotonic() - start >= 0.25
        finally:
            for r in paused:
                r.execute_command("CLIENT", "UNPAUSE")
        assert c.execute_command("WAIT", "2", "2000") == 2
    finally:
        p.stop()


def test_scan_iterations_stay_on_one_server(workdir, cluster):
    """A cursor only means something to the server that returned it: a whole
    iteration through the proxy sees every key, also when the client writes
    (and so moves its reads around) between the steps."""
    p = split_proxy(workdir, cluster)
    try:
        c = p.client()
        pipe = c.pipeline(transaction=False)
        for i in range(5000):
            pipe.set("scan:%d" % i, i)
        pipe.hset("bigh", mapping={"f%d" % i: i for i in range(2000)})
        pipe.execute()
        wait_for(lambda: all(r.client().dbsize() >= 5001 for r in cluster.replicas),
                 what="replication")
        wait_for(lambda: replicas_caught_up(p), what="the proxy's replica offsets to catch up")
        # A client that wrote nothing yet starts on a replica whatever
        # read-your-writes says of the writer.
        s = p.client()
        before = sum(cmdstat(r, "scan")[0] for r in cluster.replicas)
        assert len(set(s.scan_iter(match="scan:*", count=100))) == 5000
        assert len({f for f, _ in s.hscan_iter("bigh", count=50)}) == 2000
        assert sum(cmdstat(r, "scan")[0] for r in cluster.replicas) > before, "no SCAN on replicas"
        # It now writes between the steps: its cursors stay where they began.
        deleted = 0
        for k in s.scan_iter(match="scan:*", count=100):
            deleted += s.unlink(k)
        assert deleted == 5000
        assert cluster.master.client().keys("scan:*") == []
    finally:
        p.stop()


def lag_of(proxy, replica):
    """How far behind the master the proxy believes replica is, in bytes."""
    offs = backend_offsets(proxy)
    master = next(o for role, o in offs.values() if role == "master")
    return master - offs["127.0.0.1:%d" % replica.port][1]


def test_lagging_replica_takes_no_reads(workdir, cluster):
    p = split_proxy(workdir, cluster, "--set", "max-replica-lag=10kb")
    try:
        c, reader = p.client(), p.client()
        lagging = cluster.replicas[0]
        lagging.client().execute_command("CLIENT", "PAUSE", 4000, "WRITE")
        try:
            for i in range(100):
                c.set("lag:%d" % i, "v" * 2000)  # 200 KB it has not applied
            wait_for(lambda: lag_of(p, lagging) > 10 * 1024, what="the proxy to see the lag")
            before = cmdstat(lagging, "get")[0]
            for i in range(500):
                reader.get("lag:%d" % (i % 100))
            assert cmdstat(lagging, "get")[0] == before, "reads went to a lagging replica"
        finally:
            lagging.client().execute_command("CLIENT", "UNPAUSE")
        # Caught up, it serves reads again.
        wait_for(lambda: lagging.client().get("lag:99") is not None, what="catch up")
        wait_for(lambda: lag_of(p, lagging) <= 10 * 1024, what="the proxy to see it caught up")
        before = cmdstat(lagging, "get")[0]
        for i in range(300):
            reader.get("lag:%d" % (i % 100))
        assert cmdstat(lagging, "get")[0] > before
    finally:
        p.stop()


def test_requests_routed_per_backend_for_all_workers(workdir, cluster):
    p = split_proxy(workdir, cluster, "--workers", "2")
    try:
        clients = [p.client() for _ in range(8)]
        for i, c in enumerate(clients):
            c.set("w:%d" % i, i)
        assert cluster.master.client().wait(2, 5000) == 2
        wait_for(lambda: replicas_caught_up(p), what="the proxy's replica offsets to catch up")
        for _ in range(50):
            for i, c in enumerate(clients):
                c.get("w:%d" % i)

        def routed():
            t = topology(p.client())
            lines = [v for k, v in t.items() if k.startswith("routed")]
            count = {"master": 0, "replica": 0, "retired": 0}
            for v in lines:
                f = dict(kv.split("=", 1) for kv in v.split(","))
                count[f["role"]] += int(f["requests"])
            return count

        # The other worker publishes its counters every 100 ms, and each
        # answer comes from whichever worker the connection landed on: one
        # sample, complete, is judged.
        def complete():
            c = routed()
            return c if c["master"] + c["replica"] >= 408 else None

        counts = wait_for(complete, what="every worker's counters")
        replicas, master = counts["replica"], counts["master"]
        assert replicas >= 350, counts  # most of the 400 reads (read-your-writes keeps some)
        assert master >= 8, counts
    finally:
        p.stop()


def test_replica_lost_with_a_probe_in_flight_is_probed_again(workdir):
    """The proxy asks every replica for its ROLE (replication offset); a
    replica whose connections die while that question is unanswered must be
    asked again and keep taking reads."""
    from harness import Cluster, enc
    cl = Cluster(workdir, replicas=1, replica_args=["--enable-debug-command", "yes"]).start()
    p = None
    try:
        p = Proxy(workdir, args=cl.proxy_args() + ["--read-from", "replicas"]).start()
        c = p.client()
        wait_for(lambda: "healthy=1" in topology(c).get("replica0", ""),
                 what="proxy to see a healthy replica")
        c.set("k", "v")
        replica = cl.replicas[0]
        wait_for(lambda: replica.client().get("k") == b"v", what="replication")

        def replica_reads():
            before = cmdstat(replica, "get")[0]
            for _ in range(50):
                assert c.get("k") == b"v"
            return cmdstat(replica, "get")[0] - before

        assert replica_reads() == 50
        # While the replica sleeps the proxy's next ROLE goes unanswered; the
        # same connection's CLIENT KILL then runs before anything else is read.
        s = socket.create_connection(("127.0.0.1", replica.port), timeout=10)
        s.sendall(enc("DEBUG", "SLEEP", "1") +
                  enc("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"))
        buf = b""
        while buf.count(b"\r\n") < 2:
            buf += s.recv(4096)
        s.close()
        assert buf.startswith(b"+OK\r\n:") and not buf.startswith(b"+OK\r\n:0\r\n"), buf
        wait_for(lambda: replica_reads() == 50, timeout=10,
                 what="reads on the replica again after its connections were killed")
    finally:
        if p is not None:
            p.stop()
        cl.stop()


def test_replica_that_names_its_master_by_host_name(workdir):
    """A replica set up with 'replicaof localhost PORT' reports 'localhost'
    as its master in ROLE while Sentinel names the master 127.0.0.1: the
    same server, so the replica is healthy and takes reads."""
    from harness import Cluster
    cl = Cluster(workdir, replicas=1)
    cl.replica_args = ["--replicaof", "localhost", str(cl.master.port)]
    cl.start()
    p = None
    try:
        assert cl.replicas[0].client().execute_command("ROLE")[1] == b"localhost"
        p = Proxy(workdir, args=cl.proxy_args() + ["--read-from", "replicas"]).start()
        c = p.client()
        wait_for(lambda: "healthy=1" in topology(c).get("replica0", ""),
                 what="the replica to be healthy")
        c.set("k", "v")
        wait_for(lambda: cl.replicas[0].client().get("k") == b"v", what="replication")
        before = cmdstat(cl.replicas[0], "get")[0]
        assert c.get("k") == b"v"
        assert cmdstat(cl.replicas[0], "get")[0] == before + 1
    finally:
        if p is not None:
            p.stop()
        cl.stop()


def test_read_a_replica_refuses_goes_to_the_master(workdir, cluster):
    """FCALL_RO of a function that may write is refused by a replica with
    READONLY (the topology is fine): the master answers it, as on a direct
    connection to the master, instead of the read being sent to replicas
    again and again."""
    p = split_proxy(workdir, cluster, "--read-from", "replicas")
    try:
        lib = "#!lua name=wlib\nredis.register_function('w1', function(k, a) return 1 end)\n"
        assert cluster.master.client().function_load(lib) == b"wlib"
        assert cluster.master.client().execute_command("WAIT", 2, 5000) == 2
        want = None
        try:
            cluster.master.client().execute_command("FCALL_RO", "w1", 0)
        except redis.ResponseError as e:
            want = str(e)
        assert want and "write flag" in want
        replica = cluster.replicas[0]
        try:
            replica.client().execute_command("FCALL_RO", "w1", 0)
            raise AssertionError("the replica ran it")
        except redis.exceptions.ReadOnlyError:
            pass  # READONLY
        c = redis.Redis(port=p.port, socket_timeout=5)
        for _ in range(10):
            try:
                c.execute_command("FCALL_RO", "w1", 0)
                raise AssertionError("FCALL_RO succeeded")
            except redis.ResponseError as e:
                assert str(e) == want
        assert "answered READONLY" not in p.log()
    finally:
        p.stop()


def test_read_after_write_on_replicas_is_checked_not_timed(workdir, cluster):
    """With read-from replicas, a read right after the client's own write is
    sent to a replica behind a ROLE of its own instead of waiting for the
    periodic offset probe; the ROLE's offset says whether the read saw the
    write. Under replication lag the check fails often: those reads are sent
    again, and none is stale."""
    p = split_proxy(workdir, cluster, "--read-from", "replicas")
    try:
        c = p.client()
        gets_master = cmdstat(cluster.master, "get")[0]
        before = proxy_stats(c)
        with Lag(cluster.replicas):
            assert set_then_get(c, 3000) == 0
        after = proxy_stats(c)
        assert after["ryw_checked"] - before["ryw_checked"] > 1000, after
        assert after["ryw_again"] - before["ryw_again"] > 50, after  # the check caught lag
        # A pipeline alternating writes and reads: each read follows its write.
        pipe = c.pipeline(transaction=False)
        for i in range(2000):
            pipe.set("pp:%d" % i, i)
            pipe.get("pp:%d" % i)
        out = pipe.execute()
        assert out[1::2] == [b"%d" % i for i in range(2000)]
        assert proxy_stats(c)["ryw_checked"] - after["ryw_checked"] >= 1000
        assert cmdstat(cluster.master, "get")[0] == gets_master, "a read reached the master"
    finally:
        p.stop()
