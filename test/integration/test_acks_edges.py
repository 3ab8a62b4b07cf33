"""ack-after-replicas and sentinel.fence-after at their edges, with
scripted Sentinels in front of real servers: writes answered by a master
being replaced, blocking pops, commands that write nothing, replicas that
leave the topology and come back, a fence turned off by a reload, and a
minority that must not open the fence."""
import os
import signal
import socket
import threading
import time

import redis

from harness import FakeSentinel, Proxy, RedisServer, free_port, topology, wait_for


def fakes_proxy(workdir, fakes, *extra):
    args = ["--master-name", "mymaster"]
    for f in fakes:
        args += ["--sentinel", "127.0.0.1:%d" % f.port]
    return Proxy(workdir, args=args + list(extra)).start()


def uses(p, srv):
    return topology(p.client()).get("master") == "127.0.0.1:%d" % srv.port


def trio(workdir):
    x = RedisServer(workdir).start()
    y = RedisServer(workdir, args=["--replicaof", "127.0.0.1", str(x.port)]).start()
    z = RedisServer(workdir, args=["--replicaof", "127.0.0.1", str(x.port)]).start()
    for r in (y, z):
        wait_for(lambda: r.client().info("replication")["master_link_status"] == "up",
                 what="replica in sync")
    return x, y, z


def test_a_write_answered_by_the_replaced_master_is_not_acknowledged(workdir):
    """A write executed by the old master after the proxy switched to a new
    one must not be acknowledged as replicated."""
    x, y, z = trio(workdir)
    s = FakeSentinel("stale", master=("127.0.0.1", x.port), epoch=1,
                     replicas=[("127.0.0.1", y.port), ("127.0.0.1", z.port)])
    p = fakes_proxy(workdir, [s], "--set", "ack-after-replicas=1", "--set", "hold-timeout=5s",
                    "--read-from", "master", "--set", "sentinel.poll-interval=100ms")
    try:
        wait_for(lambda: uses(p, x), what="proxy uses X")
        wait_for(lambda: topology(p.client()).get("replicas") == "2", what="2 replicas")
        c = p.client(socket_timeout=10)
        assert c.set("warm", "1")
        # X takes no writes for a while (its answers come later).
        x.client().execute_command("CLIENT", "PAUSE", 600, "WRITE")
        out = {}

        def w():
            try:
                out["r"] = c.set("w", "lost")
            except redis.RedisError as e:
                out["r"] = e
        th = threading.Thread(target=w)
        th.start()
        time.sleep(0.1)
        # Failover: Y is promoted, Z follows Y; X is left out (partitioned).
        y.client().replicaof("no", "one")
        z.client().replicaof("127.0.0.1", y.port)
        s.master, s.epoch, s.replicas = ("127.0.0.1", y.port), 2, [("127.0.0.1", z.port)]
        wait_for(lambda: uses(p, y), timeout=5, what="proxy uses Y")
        wait_for(lambda: z.client().info("replication")["master_link_status"] == "up",
                 what="Z follows Y")
        # New writes on the new master move its stream on.
        deadline = time.monotonic() + 6
        while th.is_alive() and time.monotonic() < deadline:
            y.client().set("filler", "x" * 200)
            time.sleep(0.05)
        th.join(10)
        assert not (out.get("r") is True and y.client().get("w") is None
                    and z.client().get("w") is None), \
            "write acknowledged though only the old master had it"
    finally:
        p.stop(check=False)
        s.stop()
        for srv in (x, y, z):
            srv.stop()


def stop(*srvs):
    for s in srvs:
        s.proc.send_signal(signal.SIGSTOP)


def cont(*srvs):
    for s in srvs:
        s.proc.send_signal(signal.SIGCONT)


def ack_setup(workdir, *extra):
    x, y, z = trio(workdir)
    s = FakeSentinel("stale", master=("127.0.0.1", x.port), epoch=1,
                     replicas=[("127.0.0.1", y.port), ("127.0.0.1", z.port)])
    p = fakes_proxy(workdir, [s], "--set", "ack-after-replicas=1", "--set", "hold-timeout=1500ms",
                    "--read-from", "master", "--set", "sentinel.poll-interval=100ms", *extra)
    wait_for(lambda: uses(p, x), what="proxy uses X")
    wait_for(lambda: topology(p.client()).get("replicas") == "2", what="2 replicas")
    return x, y, z, s, p


def _teardown(p, s, *srvs):
    cont(*srvs)
    p.stop(check=False)
    s.stop()
    for srv in srvs:
        srv.stop()


def test_a_blocking_pop_longer_than_hold_timeout_is_delivered(workdir):
    x, y, z, s, p = ack_setup(workdir)
    try:
        c = p.client(socket_timeout=20)
        out = {}

        def pop():
            try:
                out["r"] = c.blpop("q", timeout=10)
            except redis.RedisError as e:
                out["r"] = e
        th = threading.Thread(target=pop)
        th.start()
        time.sleep(2.0)  # longer than hold-timeout (1.5 s)
        stop(y, z)  # replication takes 300 ms, far under hold-timeout
        x.client().rpush("q", "item")
        time.sleep(0.3)
        cont(y, z)
        th.join(10), out
    finally:
        _teardown(p, s, x, y, z)


def test_commands_that_write_nothing_are_not_kept(workdir):
    x, y, z, s, p = ack_setup(workdir)
    try:
        c = p.client(socket_timeout=20)
        stop(y, z)
        res = {}
        for cmd in (["PING"], ["ECHO", "hi"], ["CLIENT", "SETNAME", "n"], ["WAIT", "0", "0"],
                    ["INCR", "k", "extra"], ["SUBSCRIBE"], ["PUBLISH", "ch", "m"]):
            t0 = time.monotonic()
            try:
                r = c.execute_command(*cmd)
            except redis.RedisError as e:
                r = e
            res[" ".join(cmd)] = (time.monotonic() - t0, r)
        # None waited for the frozen replicas (hold-timeout is 1.5 s), and
        # the server's own errors came through as they were.
        assert all(v[0] < 1.0 for v in res.values()), res
        assert "wrong number of arguments" in str(res["INCR k extra"][1])
    finally:
        _teardown(p, s, x, y, z)


def test_writes_wait_through_replicas_leaving_and_coming_back(workdir):
    x, y, z, s, p = ack_setup(workdir, "--set", "hold-timeout=6s")
    try:
        c = p.client(socket_timeout=20)
        assert c.set("warm", "1")
        stop(y, z)
        out = {}

        def w():
            t0 = time.monotonic()
            try:
                out["r"] = c.set("k", "v")
            except redis.RedisError as e:
                out["r"] = e
            out["t"] = time.monotonic() - t0
        th = threading.Thread(target=w)
        th.start()
        time.sleep(0.3)
        s.replicas = []  # Sentinels list no replica for a moment
        wait_for(lambda: topology(p.client()).get("replicas") == "0", what="0 replicas")
        time.sleep(1.5)  # drain grace: the retired replicas' connections go
        s.replicas = [("127.0.0.1", y.port), ("127.0.0.1", z.port)]
        wait_for(lambda: topology(p.client()).get("replicas") == "2", what="2 replicas")
        cont(y, z)
        th.join(15) is True, out
    finally:
        _teardown(p, s, x, y, z)


def fence_cfg(port, fakes, fence):
    return ("listen: [127.0.0.1:%d]\nhold-timeout: 600ms\nsentinel:\n  master-name: mymaster\n"
            "  addresses: [%s]\n  poll-interval: 200ms\n  timeout: 200ms\n  fence-after: %s\n"
            % (port, ", ".join("127.0.0.1:%d" % f.port for f in fakes), fence))


def try_set(c, k, v):
    try:
        return c.set(k, v) is True
    except redis.ResponseError:
        return False


def test_a_fence_turned_off_by_reload_serves_the_last_master(workdir):
    x = RedisServer(workdir).start()
    fakes = [FakeSentinel("stale", master=("127.0.0.1", x.port), epoch=1) for _ in range(3)]
    port = free_port()
    path = os.path.join(workdir, "fence.yaml")
    open(path, "w").write(fence_cfg(port, fakes, "1500ms"))
    p = Proxy(workdir, listen_flag=False, port=port, args=["-c", path]).start()
    try:
        wait_for(lambda: uses(p, x), what="proxy uses X")
        c = p.client(socket_timeout=10)
        assert c.set("a", "1")
        for f in fakes:
            f.mode = "hang"
        wait_for(lambda: not try_set(c, "a", "2"), timeout=15, what="fenced")
        open(path, "w").write(fence_cfg(port, fakes, "0"))
        assert c.execute_command("PROXY", "CONFIG", "RELOAD").startswith(b"reloaded")
        ok = [try_set(c, "a", "3") for _ in range(3)]
        assert any(ok), "fence turned off, yet writes stay held"
    finally:
        p.stop(check=False)
        for f in fakes:
            f.stop()
        x.stop()


def test_a_minority_does_not_open_the_fence(workdir):
    x = RedisServer(workdir).start()
    y = RedisServer(workdir, args=["--replicaof", "127.0.0.1", str(x.port)]).start()
    fakes = [FakeSentinel("stale", master=("127.0.0.1", x.port), epoch=1) for _ in range(3)]
    p = fakes_proxy(workdir, fakes, "--set", "sentinel.poll-interval=200ms", "--set",
                    "sentinel.timeout=200ms", "--set", "hold-timeout=300ms",
                    "--set", "sentinel.fence-after=1500ms")
    try:
        wait_for(lambda: uses(p, x), what="proxy uses X")
        c = p.client(socket_timeout=10)
        assert c.set("a", "1")
        for f in fakes:  # a majority names Y, which ROLE does not confirm: held
            f.master, f.epoch = ("127.0.0.1", y.port), 2
        wait_for(lambda: "does not confirm it" in p.log(), what="hold")
        fakes[0].mode = fakes[1].mode = "hang"  # majority lost from here on
        time.sleep(3.0)  # twice fence-after without a majority
        fakes[2].master, fakes[2].epoch = ("127.0.0.1", x.port), 3  # one Sentinel of three
        acked = 0
        t_end = time.monotonic() + 3
        while time.monotonic() < t_end:
            acked += try_set(c, "m", "v")
        assert acked == 0
    finally:
        p.stop(check=False)
        for f in fakes:
            f.stop()
        x.stop()
        y.stop()


def test_clients_and_drain_while_writes_wait(workdir):
    x, y, z, s, p = ack_setup(workdir, "--set", "hold-timeout=5s")
    try:
        stop(y, z)
        socks = []
        for i in range(5):
            k = socket.create_connection(("127.0.0.1", p.port))
            k.sendall(b"SET a%d 1\r\nSET b%d 2\r\nGET a%d\r\nMULTI\r\nINCR n\r\nEXEC\r\n" % (i, i, i))
            socks.append(k)
        time.sleep(0.3)
        for k in socks[:3]:
            k.close()  # clients gone while their writes wait
        time.sleep(0.2)
        cont(y, z)
        time.sleep(0.3)
        stop(y, z)
        k = socket.create_connection(("127.0.0.1", p.port))
        k.sendall(b"SET last 1\r\n")
        time.sleep(0.2)
        p.proc.send_signal(signal.SIGTERM)  # drain while a write waits
        time.sleep(0.5)
        cont(y, z)
        log = p.log()
        assert "Sanitizer" not in log and "runtime error" not in log, log[-5000:]
    finally:
        cont(y, z)
        s.stop()
        for srv in (x, y, z):
            srv.stop()
