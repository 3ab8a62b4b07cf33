"""Head-of-line blocking: a request that redis-server holds (a paused write,
a busy script, a slow command) must not hold other clients' requests queued
behind it on a shared connection. Latency bounds are loose on purpose ("well
under the pause"): they tell a stall that is routed around from one that is
not, on a noisy machine."""
import threading
import time

import pytest

from harness import (Conn, Proxy, RedisServer, kill_proxy_connections, proxy_stats,
                     subscribed_on, topology, wait_for)

SPIN_SCRIPT = "local i = 0 while true do i = i + 1 end"
SPIN_LIBRARY = ("#!lua name=spinlib\n"
                "redis.register_function('spin', function() local i = 0 "
                "while true do i = i + 1 end end)")


class Pending:
    """One connection with a command sent; its reply is read in the
    background."""

    def __init__(self, port, *cmds):
        self.conn = Conn(port, timeout=20)
        self.replies = []
        self.n = len(cmds)
        self.conn.send(*cmds)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for _ in range(self.n):
            self.replies.append(self.conn.read())

    def done(self, timeout=10):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "no reply within %ss" % timeout
        self.conn.close()
        return self.replies


def timed_calls(port, n, *cmd):
    """n clients send cmd at once; (slowest seconds, replies)."""
    conns = [Conn(port, timeout=20) for _ in range(n)]
    out = [None] * n

    def one(i):
        t0 = time.monotonic()
        reply = conns[i].call(*cmd)
        out[i] = (time.monotonic() - t0, reply)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for c in conns:
        c.close()
    assert all(o is not None for o in out), out
    return max(o[0] for o in out), [o[1] for o in out]


@pytest.fixture
def server(workdir):
    s = RedisServer(workdir, args=["--enable-debug-command", "yes"]).start()
    yield s
    s.stop()


@pytest.fixture
def sp(workdir, server):
    p = Proxy(workdir, backend=server.port,
              args=["--set", "backend-connections=2", "--set", "backend-connections-idle=500ms"]).start()
    yield p
    p.stop()


def test_paused_writes_do_not_stall_reads(server, sp):
    """CLIENT PAUSE WRITE blocks the writers; other clients' reads are
    answered at once, CLIENT UNPAUSE from another client too, and each
    writer's own GET still runs after its SET."""
    assert Conn(server.port).call("CLIENT", "PAUSE", "4000", "WRITE") == b"+OK\r\n"
    paused_at = time.monotonic()
    writers = [Pending(sp.port, ("SET", "w%d" % i, "v%d" % i), ("GET", "w%d" % i))
               for i in range(4)]
    time.sleep(0.2)  # the writers' connections stall
    slowest, replies = timed_calls(sp.port, 10, "GET", "nokey")
    assert replies == [b"$-1\r\n"] * 10
    assert slowest < 1.0, "reads waited %.2fs behind paused writes" % slowest
    backend = topology(sp.client())["backend0"]
    assert ",stalled=2," in backend and ",shared=3," in backend, backend
    unpause = Conn(sp.port).call("CLIENT", "UNPAUSE")
    assert unpause == b"+OK\r\n"
    assert time.monotonic() - paused_at < 3.0, "CLIENT UNPAUSE waited for the pause"
    for i, w in enumerate(writers):
        assert w.done() == [b"+OK\r\n", b"$2\r\nv%d\r\n" % i]
    st = proxy_stats(sp.port)
    assert int(st["stalls"]) >= 1
    assert int(st["stall_conns_opened"]) >= 1
    assert int(st["stall_longest_ms"]) >= 150
    # The extra connections close once idle; the home ones stay.
    wait_for(lambda: int(proxy_stats(sp.port)["stall_conns_closed"]) ==
             int(st["stall_conns_opened"]), timeout=10, what="extra connections to close")
    assert sp.client().set("after", "1")


@pytest.mark.parametrize("how", ["script", "function"])
def test_busy_script_answers_busy_and_can_be_killed(server, sp, how):
    """Past busy-reply-threshold, other clients get -BUSY at once and a
    SCRIPT KILL / FUNCTION KILL from any of them stops the script."""
    d = server.client()
    d.config_set("busy-reply-threshold", "300")
    if how == "script":
        runner = Pending(sp.port, ("EVAL", SPIN_SCRIPT, "0"))
        kill = ("SCRIPT", "KILL")
    else:
        d.function_load(SPIN_LIBRARY, replace=True)
        runner = Pending(sp.port, ("FCALL", "spin", "0"))
        kill = ("FUNCTION", "KILL")
    time.sleep(0.6)
    slowest, replies = timed_calls(sp.port, 10, "GET", "k")
    assert all(r.startswith(b"-BUSY") for r in replies), replies
    assert slowest < 1.0, "waited %.2fs behind the script" % slowest
    killer = Conn(sp.port)
    t0 = time.monotonic()
    assert killer.call(*kill) == b"+OK\r\n"
    assert time.monotonic() - t0 < 1.0
    (reply,) = runner.done()
    assert reply.startswith(b"-") and b"killed" in reply.lower(), reply
    wait_for(lambda: sp.client().ping(), what="the server to serve again")
    assert killer.call("SET", "k", "1") == b"+OK\r\n"


def test_slow_command_delays_only_what_was_behind_it(server, sp):
    """A slow command holds the whole server (it is single-threaded): others
    wait as long as they would directly, and nothing more; afterwards every
    client is served as before."""
    sleeper = Pending(sp.port, ("DEBUG", "SLEEP", "0.5"))
    time.sleep(0.05)
    slowest, replies = timed_calls(sp.port, 10, "PING")
    assert replies == [b"+PONG\r\n"] * 10
    assert slowest < 2.0
    assert sleeper.done() == [b"+OK\r\n"]
    slowest, _ = timed_calls(sp.port, 10, "PING")
    assert slowest < 0.5


def test_client_order_kept_across_a_stall(server, sp):
    """A client whose requests sit on a stalled connection has the rest of
    its pipeline run after them, in the order sent, while other clients move
    to other connections."""
    a = Conn(sp.port, timeout=20)
    assert a.call("GET", "ord") == b"$-1\r\n"  # its replies' size is known
    assert Conn(server.port).call("CLIENT", "PAUSE", "1000", "WRITE") == b"+OK\r\n"
    a.send(("SET", "ord", "0"))
    time.sleep(0.2)  # its connection is stalled now
    cmds = [("INCR", "ord") if i % 2 == 0 else ("GET", "ord") for i in range(20)]
    a.send(*cmds)
    slowest, _ = timed_calls(sp.port, 6, "GET", "other")
    assert slowest < 0.7
    assert a.read() == b"+OK\r\n"
    for i in range(20):
        n = i // 2 + 1
        want = b":%d\r\n" % n if i % 2 == 0 else b"$%d\r\n%d\r\n" % (len(str(n)), n)
        assert a.read() == want, i
    a.close()


def test_database_not_restored_during_busy_script(server, sp):
    """A session in database 5 whose connection was lost gets a new one with
    SELECT 5 replayed, and nothing of the session is written there before
    that SELECT is answered. A busy script refuses it: the session's command
    waits (the server is tried again shortly) and, once the script is gone,
    runs in database 5, not 0."""
    c = Conn(sp.port)
    assert c.call("SELECT", "5") == b"+OK\r\n"
    assert c.call("SET", "before", "1") == b"+OK\r\n"
    kill_proxy_connections(server, sp.port)
    server.client().config_set("busy-reply-threshold", "100")
    runner = Pending(server.port, ("EVAL", SPIN_SCRIPT, "0"))
    time.sleep(0.3)
    c.send(("SET", "during", "1"))
    assert c.silent(0.5)  # held while the database cannot be selected
    assert Conn(server.port).call("SCRIPT", "KILL") == b"+OK\r\n"
    runner.done()
    assert c.read() == b"+OK\r\n"
    assert c.call("SET", "after", "1") == b"+OK\r\n"
    assert c.call("GET", "before") == b"$1\r\n1\r\n"
    assert sorted(server.client(db=5).keys()) == [b"after", b"before", b"during"]
    assert server.client(db=0).keys() == []


def test_database_gone_closes_the_session(workdir):
    """The server comes back with fewer databases than the session's: its
    SELECT replayed on a new connection is refused for good, nothing of the
    session runs in database 0, and the client is closed (as a direct
    connection to a restarted server would be, its SELECT then refused)."""
    server = RedisServer(workdir).start()
    p = Proxy(workdir, backend=server.port).start()
    try:
        c = Conn(p.port)
        assert c.call("SELECT", "12") == b"+OK\r\n"
        assert c.call("SET", "before", "1") == b"+OK\r\n"
        server.args = ["--databases", "4"]
        server.restart()
        c.send(("SET", "during", "1"))
        assert c.closed(wait=10)
        assert server.client(db=0).keys() == []
        assert "its database could not be selected on a new connection" in p.log()
        assert p.client().set("other", "1")  # everyone else is served
    finally:
        p.stop()
        server.stop()


@pytest.mark.parametrize("window", [4, 0])
def test_window_keeps_requests_out_of_a_stall(workdir, server, window):
    """A client's pipeline fills the shared connection's window behind a
    paused write; another client's GET queued right behind it (before the
    stall can be seen) is not written, and goes to another connection once
    the stall is seen, even with no other request arriving to see it. With
    no window (0) it was written behind the paused writes and waits for the
    pause: the case the window is for."""
    p = Proxy(workdir, backend=server.port,
              args=["--set", "backend-connections=1", "--set", "backend-window=%d" % window]).start()
    try:
        a = Conn(p.port, timeout=20)
        assert a.call("GET", "warm") == b"$-1\r\n"  # its replies' size is known
        assert Conn(server.port).call("CLIENT", "PAUSE", "2000", "WRITE") == b"+OK\r\n"
        t0 = time.monotonic()
        a.send(*[("SET", "p%d" % i, "1") for i in range(10)])
        b = Pending(p.port, ("GET", "other"))
        b.done(timeout=10)
        waited = time.monotonic() - t0
        if window:
            assert waited < 1.0, "the GET waited %.2fs behind the paused writes" % waited
        else:
            assert waited > 1.5
        for _ in range(10):
            assert a.read() == b"+OK\r\n"
    finally:
        p.stop()


def test_extra_connection_refused_at_maxclients(workdir):
    """The server is full (maxclients) while the one shared connection is
    stalled: the extra connection it refuses costs no client an error (what
    was written behind its handshake never ran, and is sent again), and no
    connection is attempted for every request."""
    server = RedisServer(workdir, args=["--maxclients", "3"]).start()
    p = Proxy(workdir, backend=server.port, args=["--set", "backend-connections=1"]).start()
    try:
        assert p.client().get("warm") is None
        admin = server.client()
        fillers = []
        while admin.info("clients")["connected_clients"] < 3:
            f = server.client()
            f.ping()
            fillers.append(f)
        before = proxy_stats(p.port)
        admin.execute_command("CLIENT", "PAUSE", "1500", "WRITE")
        held = Pending(p.port, ("SET", "held", "1"))
        time.sleep(0.05)
        writers = []
        for i in range(5):
            writers.append(Pending(p.port, ("SET", "w%d" % i, "1")))
            time.sleep(0.03)
        assert held.done() == [b"+OK\r\n"]
        for w in writers:
            assert w.done() == [b"+OK\r\n"]
        after = proxy_stats(p.port)
        assert after["unknown"] == before["unknown"]
        assert after["backend_connects"] - before["backend_connects"] <= 3
        assert "handshake refused: -ERR max number of clients reached" in p.log()
        for f in fillers:
            f.close()
    finally:
        p.stop()
        server.stop()


def server_full_but_one(server):
    """maxclients set so that one more connection fits; returns a direct
    connection to put it back with."""
    ctl = Conn(server.port)
    info = ctl.call("INFO", "clients").decode()
    n = int(next(ln for ln in info.split("\r\n") if ln.startswith("connected_clients:"))
            .split(":")[1])
    assert ctl.call("CONFIG", "SET", "maxclients", str(n + 1)) == b"+OK\r\n"
    return ctl


@pytest.mark.parametrize("conns", [1, 2])
def test_refused_connections_neither_hang_nor_storm(workdir, conns):
    """The proxy's connections are gone and the server, paused, has room
    for one more: the one that fits waits for its handshake while the others
    are refused. The backend comes up as soon as the server answers, every
    client is answered, and a refusal costs a connection attempt per
    reconnect-min, not one per request."""
    server = RedisServer(workdir).start()
    p = Proxy(workdir, backend=server.port,
              args=["--set", "hold-timeout=5s", "--set", "backend-connections=%d" % conns]).start()
    try:
        assert Conn(p.port).call("SET", "k", "v") == b"+OK\r\n"
        kill_proxy_connections(server, p.port)
        ctl = server_full_but_one(server)
        assert ctl.call("CLIENT", "PAUSE", "1000", "ALL") == b"+OK\r\n"
        before = proxy_stats(p.port)
        clients = [Pending(p.port, ("GET", "k")) for _ in range(4)]
        for c in clients:
            assert c.done() == [b"$1\r\nv\r\n"]
        after = proxy_stats(p.port)
        assert after["backend_connects"] - before["backend_connects"] < 40
        assert ctl.call("CONFIG", "SET", "maxclients", "10000") == b"+OK\r\n"
        assert "state=up" in topology(p.client())["backend0"]
        assert Conn(p.port).call("GET", "k") == b"$1\r\nv\r\n"
    finally:
        p.stop()
        server.stop()


def drop_shared_connections(server, proxy):
    """Kill the proxy's shared connections (subscribers keep theirs) and wait
    until it has seen them go."""
    before = proxy_stats(proxy.port)
    ctl = Conn(server.port)
    ctl.call("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    wait_for(lambda: proxy_stats(proxy.port)["backend_lost"] > before["backend_lost"],
             what="the proxy to see its shared connection killed")
    return ctl


def test_refused_while_a_subscriber_keeps_the_server_reachable(workdir):
    """A subscriber's own connection stays up while the server, full, refuses
    the new shared connection: the request waits, and goes as soon as the
    server has room (within reconnect-min), not at hold-timeout."""
    server = RedisServer(workdir).start()
    p = Proxy(workdir, backend=server.port,
              args=["--set", "hold-timeout=5s", "--set", "backend-connections=1"]).start()
    try:
        sub = Conn(p.port)
        assert b"subscribe" in sub.call("SUBSCRIBE", "ch")
        assert Conn(p.port).call("SET", "k", "v") == b"+OK\r\n"
        ctl = drop_shared_connections(server, p)
        assert ctl.call("CONFIG", "SET", "maxclients", "1") == b"+OK\r\n"  # full now
        c = Conn(p.port, timeout=20)
        t0 = time.monotonic()
        c.send(("GET", "k"))
        time.sleep(0.5)
        assert ctl.call("CONFIG", "SET", "maxclients", "10000") == b"+OK\r\n"
        assert c.read() == b"$1\r\nv\r\n"
        assert time.monotonic() - t0 < 2.0
    finally:
        p.stop()
        server.stop()


def test_server_dies_while_greeting(workdir):
    """The server dies (kill -9) while a new shared connection waits for the
    answer to its handshake, and comes back on the same port: that is a
    failed attempt, the proxy retries, and the request is answered once the
    server is back."""
    server = RedisServer(workdir).start()
    p = Proxy(workdir, backend=server.port,
              args=["--set", "hold-timeout=5s", "--set", "backend-connections=1"]).start()
    try:
        assert Conn(p.port).call("SET", "k", "v") == b"+OK\r\n"
        ctl = drop_shared_connections(server, p)
        assert ctl.call("CLIENT", "PAUSE", "5000", "ALL") == b"+OK\r\n"
        c = Conn(p.port, timeout=20)
        t0 = time.monotonic()
        c.send(("GET", "k"))
        time.sleep(0.3)
        server.kill9()
        time.sleep(0.2)
        server.start()
        assert c.read() == b"$-1\r\n"
        assert time.monotonic() - t0 < 3.0
    finally:
        p.stop()
        server.stop()


def test_subscriber_resubscribed_after_busy_script(server, sp):
    """A subscriber in database 5 loses its connection while a script keeps
    the server busy: the SELECT replayed for its resubscription is refused,
    nothing of its stream is written there, and it is subscribed again once
    the script is gone."""
    sub = Conn(sp.port)
    assert sub.call("SELECT", "5") == b"+OK\r\n"
    assert sub.call("SUBSCRIBE", "ch").startswith(b"*3\r\n$9\r\nsubscribe")
    subscribed_on(server, "ch")
    server.client().config_set("busy-reply-threshold", "100")
    runner = Pending(server.port, ("MULTI",), ("CLIENT", "KILL", "TYPE", "pubsub"),
                     ("EVAL", SPIN_SCRIPT, "0"), ("EXEC",))
    time.sleep(0.5)
    assert Conn(server.port).call("SCRIPT", "KILL") == b"+OK\r\n"
    runner.done()
    subscribed_on(server, "ch")
    assert server.client().publish("ch", "hello") == 1
    assert sub.read() == b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n"


def test_reply_off_session_during_busy_script(server, sp):
    """A CLIENT REPLY OFF session in database 5 gets a new connection while a
    script keeps the server busy: it gets no reply it did not ask for, its
    commands never run in database 0, and it works again afterwards (a
    command sent during the script is refused by the server, silently, as on
    a direct connection)."""
    c = Conn(sp.port)
    assert c.call("SELECT", "5") == b"+OK\r\n"
    c.send(("CLIENT", "REPLY", "OFF"), ("SET", "before", "1"))
    wait_for(lambda: server.client(db=5).get("before") == b"1", what="the first SET")
    kill_proxy_connections(server, sp.port)
    server.client().config_set("busy-reply-threshold", "100")
    runner = Pending(server.port, ("EVAL", SPIN_SCRIPT, "0"))
    time.sleep(0.3)
    c.send(("SET", "during", "1"))
    time.sleep(0.3)
    assert Conn(server.port).call("SCRIPT", "KILL") == b"+OK\r\n"
    runner.done()
    c.send(("SET", "after", "1"))
    wait_for(lambda: server.client(db=5).get("after") == b"1", what="the SET after the script")
    assert c.silent(0.3)
    c.send(("CLIENT", "REPLY", "ON"))
    assert c.read() == b"+OK\r\n"
    assert server.client(db=0).keys() == []


def test_stall_detection_off(workdir, server):
    """stall-threshold 0 turns it off: nothing is counted or opened."""
    p = Proxy(workdir, backend=server.port, args=["--set", "stall-threshold=0"]).start()
    try:
        sleeper = Pending(p.port, ("DEBUG", "SLEEP", "0.3"))
        time.sleep(0.1)
        timed_calls(p.port, 4, "PING")
        sleeper.done()
        st = proxy_stats(p.port)
        assert st["stalls"] == 0 and st["stall_conns_opened"] == 0
    finally:
        p.stop()


@pytest.mark.parametrize("most,extras", [(3, 2), (5, 3)])
def test_extra_connections_bounded(workdir, server, most, extras):
    """Every shared connection stalled: at most backend-connections-max are
    open to the server at once; requests queue on the stalled ones. With
    three or more extra slots, stalls leave the last one free (for small
    requests behind large replies)."""
    p = Proxy(workdir, backend=server.port,
              args=["--set", "backend-connections=1",
                    "--set", "backend-connections-max=%d" % most]).start()
    try:
        before = server.client().info("clients")["connected_clients"]
        assert Conn(server.port).call("CLIENT", "PAUSE", "1500", "WRITE") == b"+OK\r\n"
        writers = []
        for i in range(8):
            writers.append(Pending(p.port, ("SET", "b%d" % i, "1")))
            time.sleep(0.05)  # each lands after the previous ones stalled
        for w in writers:
            assert w.done() == [b"+OK\r\n"]
        st = proxy_stats(p.port)
        assert int(st["stall_conns_opened"]) == extras
        after = server.client().info("clients")["connected_clients"]
        assert after - before <= extras + 1  # the extras (and the admin connection)
    finally:
        p.stop()


@pytest.mark.parametrize("how", ["busy", "pause"])
def test_sentinel_master_released_before_failover(cluster, how):
    """In the Sentinel layout (down-after 1000 ms), a master held by a script
    past busy-reply-threshold, or by CLIENT PAUSE WRITE, answers other
    clients' writes (-BUSY) or is released (CLIENT UNPAUSE) through the proxy
    well before down-after, and no failover happens. One shared connection,
    so that every client's home is the held one."""
    p = Proxy(cluster.workdir,
              args=cluster.proxy_args() + ["--set", "backend-connections=1"]).start()
    try:
        master = cluster.master.port
        wait_for(lambda: topology(p.client()).get("master") == "127.0.0.1:%d" % master,
                 what="proxy to find the master")
        if how == "busy":
            cluster.master.client().config_set("busy-reply-threshold", "200")
            holder = Pending(p.port, ("EVAL", SPIN_SCRIPT, "0"))
        else:
            assert Conn(p.port).call("CLIENT", "PAUSE", "5000", "WRITE") == b"+OK\r\n"
            holder = Pending(p.port, ("SET", "held", "1"))
        time.sleep(0.4)
        t0 = time.monotonic()
        if how == "busy":
            slowest, replies = timed_calls(p.port, 5, "SET", "k", "v")
            assert all(r.startswith(b"-BUSY") for r in replies), replies
            assert slowest < 0.5, "writes waited %.2fs behind the script" % slowest
            release = ("SCRIPT", "KILL")
        else:
            release = ("CLIENT", "UNPAUSE")
        assert Conn(p.port).call(*release) == b"+OK\r\n"
        assert time.monotonic() - t0 < 0.8, "released too late"
        holder.done()
        time.sleep(2.0)  # past down-after: a failover would have started
        assert cluster.master_port() == master
        assert topology(p.client()).get("master") == "127.0.0.1:%d" % master
        assert Conn(p.port).call("SET", "after", "1") == b"+OK\r\n"
    finally:
        p.stop()


BIG = b"x" * (1 << 20)
BIG_REPLY = b"$%d\r\n%s\r\n" % (len(BIG), BIG)


def known_clients(workdir, server, *settings):
    """A proxy (one shared connection, client-backlog-limit 64 MB, and the
    settings given) in front of server, which holds a 1 MB value "big"; two
    clients that fetched it once and one that sent PING, so that the proxy
    knows their reply sizes. (proxy, heavy, heavy2, small)"""
    server.client().set("big", BIG)
    args = ["--set", "backend-connections=1", "--set", "client-backlog-limit=64mb"]
    for s in settings:
        args += ["--set", s]
    p = Proxy(workdir, backend=server.port, args=args).start()
    heavy, heavy2, small = Conn(p.port, timeout=20), Conn(p.port, timeout=20), Conn(p.port)
    assert heavy.call("GET", "big") == BIG_REPLY and heavy2.call("GET", "big") == BIG_REPLY
    assert small.call("PING") == b"+PONG\r\n"
    return p, heavy, heavy2, small


def test_small_requests_not_queued_behind_large_replies(workdir, server):
    """A client whose replies are small does not wait in a shared queue deep
    in far larger replies (backend_deep): it gets a connection of its own
    kind. Clients whose replies are as large, and a client whose replies are
    not known yet (counted at the server's recent average), stay on their
    home connection. (redis-server sleeps, so
    the queue is deep when they ask; nothing here is timed.)"""
    p, heavy, heavy2, small = known_clients(workdir, server, "stall-threshold=0",
                                            "backend-connections-idle=500ms")
    try:
        sleeper = Pending(server.port, ("DEBUG", "SLEEP", "1.5"))
        time.sleep(0.2)
        heavy.send(*[("GET", "big")] * 30)
        newcomer = Conn(p.port, timeout=20)
        newcomer.send(("PING",))
        heavy2.send(("GET", "big"))
        # (a heavy client has 8 requests in flight, plus one per reply seen)
        wait_for(lambda: "inflight=11," in topology(p.client())["backend0"], timeout=5,
                 what="the large replies queued")
        assert int(proxy_stats(p.port)["deep_conns_opened"]) == 0
        small.send(("PING",))
        wait_for(lambda: int(proxy_stats(p.port)["deep_conns_opened"]) == 1, timeout=5,
                 what="the small request sent elsewhere")
        assert ",shared=2," in topology(p.client())["backend0"]
        sleeper.done()
        assert small.read() == b"+PONG\r\n" and newcomer.read() == b"+PONG\r\n"
        assert [heavy.read() for _ in range(30)] == [BIG_REPLY] * 30
        assert heavy2.read() == BIG_REPLY
        wait_for(lambda: int(proxy_stats(p.port)["deep_conns_closed"]) == 1, timeout=10,
                 what="the extra connection to close once idle")
    finally:
        p.stop()


def test_small_request_deep_and_stalled_at_home_takes_the_kept_slot(workdir, server):
    """The server is busy (asleep) with 1 MB replies queued: the home
    connection is stalled and deep. Stalls take extra slots but the last;
    a client whose replies are small takes that one."""
    p, heavy, heavy2, small = known_clients(workdir, server, "backend-connections-max=5")
    try:
        sleeper = Pending(server.port, ("DEBUG", "SLEEP", "2"))
        time.sleep(0.2)
        heavy.send(*[("GET", "big")] * 30)
        newcomers = []
        for _ in range(3):
            time.sleep(0.1)  # each after the previous connection stalled
            newcomers.append(Conn(p.port, timeout=20))
            newcomers[-1].send(("PING",))
        wait_for(lambda: int(proxy_stats(p.port)["stall_conns_opened"]) == 3, timeout=5,
                 what="three extra connections around the stall")
        time.sleep(0.1)
        assert int(proxy_stats(p.port)["stall_conns_opened"]) == 3  # not the last slot
        small.send(("PING",))
        wait_for(lambda: int(proxy_stats(p.port)["deep_conns_opened"]) +
                 int(proxy_stats(p.port)["stall_conns_opened"]) == 4, timeout=5,
                 what="the small request in the last slot")
        sleeper.done()
        assert small.read() == b"+PONG\r\n"
        assert [n.read() for n in newcomers] == [b"+PONG\r\n"] * 3
        assert [heavy.read() for _ in range(30)] == [BIG_REPLY] * 30
    finally:
        p.stop()


def test_small_requests_of_several_sizes_share_one_extra_connection(workdir, server):
    """Replies of 7, 107 and 1008 bytes are all small next to 1 MB ones:
    one extra connection serves them all, not one per size."""
    server.client().set("big", BIG)
    server.client().set("v100", "y" * 100)
    server.client().set("v1000", "y" * 1000)
    p = Proxy(workdir, backend=server.port,
              args=["--set", "backend-connections=1", "--set", "stall-threshold=0",
                    "--set", "client-backlog-limit=64mb"]).start()
    try:
        heavy, heavy2 = Conn(p.port, timeout=20), Conn(p.port, timeout=20)
        assert heavy.call("GET", "big") == BIG_REPLY and heavy2.call("GET", "big") == BIG_REPLY
        smalls = [(Conn(p.port), ("PING",)), (Conn(p.port), ("GET", "v100")),
                  (Conn(p.port), ("GET", "v1000"))]
        expect = [c.call(*cmd) for c, cmd in smalls]
        for i, (c, cmd) in enumerate(smalls):
            sleeper = Pending(server.port, ("DEBUG", "SLEEP", "0.5"))
            time.sleep(0.1)
            heavy.send(*[("GET", "big")] * 30)
            time.sleep(0.1)
            c.send(cmd)
            sleeper.done()
            assert c.read() == expect[i]
            assert [heavy.read() for _ in range(30)] == [BIG_REPLY] * 30
        assert int(proxy_stats(p.port)["deep_conns_opened"]) == 1
    finally:
        p.stop()


def test_the_proxys_own_replies_do_not_make_a_queue_deep(workdir, server):
    """Only small replies flow (the proxy's own COMMAND table, about 90 KB,
    came first on that connection): 150 PINGs queued are not deep."""
    p = Proxy(workdir, backend=server.port,
              args=["--set", "backend-connections=1", "--set", "stall-threshold=0",
                    "--set", "workers=1"]).start()
    try:
        small = Conn(p.port)
        assert small.call("PING") == b"+PONG\r\n"
        sleeper = Pending(server.port, ("DEBUG", "SLEEP", "0.5"))
        time.sleep(0.1)
        others = [Conn(p.port) for _ in range(150)]
        for o in others:
            o.send(("PING",))
        time.sleep(0.1)
        small.send(("PING",))
        sleeper.done()
        assert small.read() == b"+PONG\r\n"
        assert all(o.read() == b"+PONG\r\n" for o in others)
        assert int(proxy_stats(p.port)["deep_conns_opened"]) == 0
    finally:
        p.stop()


def test_large_replies_moved_around_a_stall_avoid_a_small_requests_connection(workdir, server):
    """A write held by CLIENT PAUSE WRITE stalls the home connection, 1 MB
    replies queued behind it. A small request goes around the stall to a new
    connection, which the server answers; a client of 1 MB replies moved
    around the same stall does not join it: it opens its own."""
    p, heavy, heavy2, small = known_clients(workdir, server, "stall-threshold=200ms")
    try:
        assert Conn(server.port).call("CLIENT", "PAUSE", "1500", "WRITE") == b"+OK\r\n"
        writer = Pending(p.port, ("SET", "held", "1"))
        heavy.send(*[("GET", "big")] * 30)  # behind it, before the stall shows
        time.sleep(0.4)
        small.send(("PING",))
        assert small.read() == b"+PONG\r\n"
        assert int(proxy_stats(p.port)["stall_conns_opened"]) == 1
        heavy2.send(("GET", "big"))
        wait_for(lambda: int(proxy_stats(p.port)["stall_conns_opened"]) == 2, timeout=5,
                 what="the large request sent to a connection of its own")
        assert heavy2.read() == BIG_REPLY
        assert writer.done() == [b"+OK\r\n"]
        assert [heavy.read() for _ in range(30)] == [BIG_REPLY] * 30
    finally:
        p.stop()
