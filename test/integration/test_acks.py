"""ack-after-replicas: a write's reply reaches its client only once that many
replicas have processed it; a write they do not confirm gets the "outcome
unknown" error, never a success."""
import signal
import threading
import time

import redis

from harness import Proxy, topology, wait_for


def ack_proxy(workdir, cluster, n=1, *extra):
    p = Proxy(workdir, args=cluster.proxy_args() + [
        "--set", "ack-after-replicas=%d" % n, "--set", "hold-timeout=1500ms",
        "--read-from", "master"] + list(extra))
    p.start()
    wait_for(lambda: topology(p.client()).get("master") == "127.0.0.1:%d" % cluster.master.port,
             what="proxy to use the master")
    wait_for(lambda: topology(p.client()).get("replicas") == "2",
             what="proxy to know both replicas")
    return p


def stopped(procs):
    class Ctx:
        def __enter__(self):
            for s in procs:
                s.proc.send_signal(signal.SIGSTOP)

        def __exit__(self, *a):
            for s in procs:
                s.proc.send_signal(signal.SIGCONT)
    return Ctx()


def test_a_write_is_answered_once_a_replica_has_it(workdir, cluster):
    p = ack_proxy(workdir, cluster, 1)
    try:
        c = p.client(socket_timeout=10)
        a, b = cluster.replicas
        # One replica frozen: the other confirms, and has the write when
        # the client hears of it.
        with stopped([a]):
            for i in range(20):
                assert c.set("k", i)
                assert b.client().get("k") == str(i).encode()
        # Both frozen: no confirmation, so no success; the error says why.
        with stopped([a, b]):
            t0 = time.monotonic()
            try:
                c.set("k", "lost?")
                raise AssertionError("a write nobody replicated was acknowledged")
            except redis.ResponseError as e:
                assert "not confirmed by 1 replica(s) within hold-timeout" in str(e), e
                assert "executed on the master" in str(e)
            assert time.monotonic() - t0 >= 1.4
        wait_for(lambda: c.set("k", "after"), what="writes confirmed again")
        assert any(r.client().get("k") == b"after" for r in cluster.replicas)
    finally:
        p.stop()


def test_pipelines_transactions_and_blocking_writes_wait_too(workdir, cluster):
    p = ack_proxy(workdir, cluster, 2)
    try:
        c = p.client(socket_timeout=10)
        a, b = cluster.replicas
        pipe = c.pipeline(transaction=False)
        for i in range(2000):
            pipe.rpush("list", i)
        replies = pipe.execute()
        assert replies[-1] == 2000
        for r in (a, b):  # both had every element when the last reply came
            assert r.client().llen("list") == 2000
        # MULTI/EXEC (a dedicated connection): EXEC waits for both replicas.
        with stopped([b]):
            out = {}

            def txn():
                t = p.client(socket_timeout=10).pipeline(transaction=True)
                t.set("t", "1").incr("n")
                try:
                    out["r"] = t.execute()
                except redis.RedisError as e:
                    out["r"] = e
            th = threading.Thread(target=txn)
            th.start()
            time.sleep(0.5)
            assert "r" not in out, "EXEC was answered before the frozen replica had it"
        th.join(10)
        assert out["r"] == [True, 1], out
        assert b.client().get("t") == b"1"
        # A blocking pop (a write) is answered once replicas have the pop.
        c.rpush("q", "x")
        assert c.blpop("q", timeout=5) == (b"q", b"x")
        assert a.client().llen("q") == 0 and b.client().llen("q") == 0
        # Reads are not held.
        with stopped([a, b]):
            assert c.get("t") == b"1"
    finally:
        p.stop()


def test_writes_are_not_held_by_default(workdir, cluster, sproxy):
    c = sproxy.client(socket_timeout=10)
    with stopped(cluster.replicas):
        t0 = time.monotonic()
        assert c.set("k", "v")
        assert time.monotonic() - t0 < 1
