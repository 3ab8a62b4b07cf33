"""Reads checked behind a ROLE of their own (read-your-writes with reads on
replicas): regressions around the replicas they go to."""
import threading

import redis

from harness import (FakeSentinel, Proxy, RedisServer, proxy_stats, sanitized, topology,
                     wait_for)


def sentinel_proxy(workdir, sentinel, *extra):
    args = ["--master-name", "mymaster", "--sentinel", "127.0.0.1:%d" % sentinel.port,
            "--workers", "1", "--set", "sentinel.poll-interval=100ms", "--set", "hold-timeout=2s"]
    return Proxy(workdir, args=args + list(extra)).start()


def healthy_replicas(p):
    return sum("healthy=1" in v for k, v in topology(p.client()).items()
               if k.startswith("replica") and k != "replicas")


def proxy_conns(server):
    return sum(1 for cl in server.client().client_list() if cl.get("name") == "sentinel-proxy")


def test_more_replicas_behind_than_candidates(workdir):
    """70 replica addresses (5 servers on 14 loopback addresses each), all
    behind the client's write: the router looks at no more than it can hold
    and the read goes to the master (prefer-replicas)."""
    master = RedisServer(workdir).start()
    servers, addrs = [], []
    s = None
    p = None
    try:
        for i in range(5):
            hosts = ["127.0.%d.%d" % (i + 1, k + 1) for k in range(14)]
            r = RedisServer(workdir, args=["--replicaof", "127.0.0.1", str(master.port),
                                           "--bind"] + hosts)
            r.client = (lambda h, rr: (lambda **kw: redis.Redis(host=h, port=rr.port,
                                                                  socket_timeout=10)))(hosts[0], r)
            r.start()
            servers.append(r)
            addrs += [(h, r.port) for h in hosts]
        for r in servers:
            wait_for(lambda: r.client().info("replication")["master_link_status"] == "up",
                     what="replica in sync")
        s = FakeSentinel("stale", master=("127.0.0.1", master.port), epoch=1, replicas=addrs)
        p = sentinel_proxy(workdir, s)
        wait_for(lambda: healthy_replicas(p) == len(addrs), timeout=30,
                 what="all %d replica addresses healthy" % len(addrs))
        c = p.client()
        for r in servers:
            r.client().execute_command("CLIENT", "PAUSE", 3000, "WRITE")
        assert c.set("k", "v")
        assert c.get("k") == b"v"
        assert p.proc.alive()
    finally:
        for r in servers:
            try:
                r.client().execute_command("CLIENT", "UNPAUSE")
            except redis.RedisError:
                pass
        if p is not None:
            p.stop()
        if s is not None:
            s.stop()
        for r in servers:
            r.stop()
        master.stop()


def retired(p):
    return any("role=retired" in v for k, v in topology(p.client()).items()
               if k.startswith("backend"))


class FakeReplica(FakeSentinel):
    """A replica of master that never gets anywhere (ROLE reports offset 0,
    so every read checked behind its ROLE is stale) and whose answers can be
    held back (hold) and let go (release)."""

    def __init__(self, master):
        self.hold = False
        self.held = []  # (connection, answer), in order
        super().__init__("replica", master=master)

    def _answer(self, args):
        cmd = args[0].lower() if args else b""
        if cmd == b"role":
            return b"*5\r\n$5\r\nslave\r\n" + self._bulk(self.master[0]) + \
                b":%d\r\n$9\r\nconnected\r\n:0\r\n" % self.master[1]
        if cmd == b"get":
            return b"$5\r\nstale\r\n"
        return {b"ping": b"+PONG\r\n", b"client": b"+OK\r\n"}.get(cmd, b"-ERR unknown\r\n")

    def _reply(self, conn, data):
        if self.hold:
            self.held.append((conn, data))
        else:
            conn.sendall(data)

    def release(self):
        with self.lock:
            self.hold = False
            for conn, data in self.held:
                try:
                    conn.sendall(data)
                except OSError:
                    pass
            self.held = []


def test_replica_removed_while_a_checked_read_is_in_flight(workdir):
    """A checked read is in flight on a replica (its answers held back) when
    the replica leaves the topology; its ROLE then shows it behind and the
    reply is dropped. The connection must still be closed and the removed
    replica forgotten."""
    master = RedisServer(workdir).start()
    # A real replica, not named by the Sentinel, so that the master's
    # replication offset moves with writes.
    real = RedisServer(workdir, args=["--replicaof", "127.0.0.1", str(master.port)]).start()
    wait_for(lambda: real.client().info("replication")["master_link_status"] == "up",
             what="replica in sync")
    f = FakeReplica(("127.0.0.1", master.port))
    s = FakeSentinel("stale", master=("127.0.0.1", master.port), epoch=1,
                     replicas=[("127.0.0.1", f.port)])
    p = sentinel_proxy(workdir, s, "--read-from", "replicas", "--set", "sentinel.timeout=50ms")
    try:
        wait_for(lambda: healthy_replicas(p) == 1, what="the replica healthy")
        c = p.client()
        f.hold = True
        before = proxy_stats(p)
        c.set("k", "v")
        out = {}

        def reader():
            try:
                out["get"] = c.get("k")
            except redis.RedisError as e:
                out["get"] = e
        t = threading.Thread(target=reader)
        t.start()
        wait_for(lambda: proxy_stats(p)["ryw_checked"] > before["ryw_checked"],
                 what="the read sent checked")
        s.replicas = []  # it leaves the topology while the read is in flight
        wait_for(lambda: retired(p), what="the proxy to retire the replica")
        f.release()
        t.join()
        assert isinstance(out["get"], redis.RedisError), out  # no replica left: hold-timeout
        if not sanitized():
            # Slowed down by AddressSanitizer, the proxy may close the retired
            # replica's connection with the read still on it (which then
            # waits for a replica like any lost read) before the held ROLE
            # answer comes: the same outcome by the other path.
            assert proxy_stats(p)["ryw_again"] > before["ryw_again"]
        # Freed only once its last connection is closed.
        wait_for(lambda: not retired(p), what="the replica forgotten")
    finally:
        p.stop()
        s.stop()
        f.stop()
        real.stop()
        master.stop()
