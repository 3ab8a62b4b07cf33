"""RESP3 clients (HELLO 3) through the proxy: they share backend connections
of their own protocol with each other, get their reads sent to replicas, move
to a dedicated connection only for what needs one and come back, never see a
push message they did not ask for, and get the HELLO reply the master would
give them without a round trip to it."""
import threading
import time

import pytest

from harness import (Conn, Proxy, RedisServer, enc, lent, proxy_stats, raw_exchange,
                     reply_value, subscribed_on, wait_for)
from test_sentinel import wait_proxy_master
from test_split import cmdstat, split_proxy


def proxy_conns(server, resp=None):
    """The proxy's shared connections on a server (named by the proxy), of
    one protocol or all."""
    out = []
    for c in server.client().client_list():
        if c.get("name") == "sentinel-proxy" and (resp is None or c.get("resp") == str(resp)):
            out.append(c)
    return out


def hello3(conn, *extra):
    reply = reply_value(conn.call("HELLO", "3", *extra))
    assert isinstance(reply, tuple) and reply[0] == "%", reply
    items = reply[1]
    return dict(zip(items[0::2], items[1::2]))


def test_resp3_clients_share_connections_and_read_from_replicas(workdir, cluster):
    p = split_proxy(workdir, cluster, "--read-from", "replicas", "--workers", "1")
    try:
        c = p.client()
        for i in range(200):
            c.set("k%d" % i, "v%d" % i)
        wait_for(lambda: all(r.client().dbsize() >= 200 for r in cluster.replicas),
                 what="replication")
        before = proxy_stats(p)
        gets_before = [cmdstat(r, "get")[0] for r in cluster.replicas]
        master_gets = cmdstat(cluster.master, "get")[0]
        clients = [Conn(p.port) for _ in range(200)]
        for i, a in enumerate(clients):
            facts = hello3(a)
            assert facts[b"proto"] == 3 and facts[b"role"] == b"master", facts
            assert a.call("GET", "k%d" % i) == b"$%d\r\nv%d\r\n" % (len("v%d" % i), i)
        # One RESP3 pool per backend per worker, of backend-connections (1)
        # and maybe one opened around a stall, whatever the number of
        # clients; none of them lent a dedicated connection.
        assert len(proxy_conns(cluster.master, 3)) <= 2
        for r in cluster.replicas:
            assert len(proxy_conns(r, 3)) <= 2
        after = proxy_stats(p)
        assert after["dedicated_lent_worker"] == 0
        assert after["reads_replicas"] - before["reads_replicas"] >= 200
        assert sum(cmdstat(r, "get")[0] for r in cluster.replicas) - sum(gets_before) >= 200
        assert cmdstat(cluster.master, "get")[0] == master_gets, "a read reached the master"
        # Their replies are RESP3 (a map), RESP2 clients' are not.
        c.hset("h", "f", "v")
        wait_for(lambda: all(r.client().exists("h") for r in cluster.replicas),
                 what="replication")
        assert clients[0].call("HGETALL", "h") == b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
        assert Conn(p.port).call("HGETALL", "h") == b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
        for a in clients:
            a.close()
    finally:
        p.stop()


def test_hello_answered_by_the_proxy_as_the_master_answers(proxy, redis_server):
    a, d = Conn(proxy.port), Conn(redis_server.port)
    for args in [("HELLO", "3"), ("HELLO", "3", "SETNAME", "app-1"), ("HELLO",),
                 ("HELLO", "2"), ("HELLO", "3", "setname", "x", "SETNAME", "y")]:
        want, got = reply_value(d.call(*args)), reply_value(a.call(*args))
        # Everything but the connection id, which is each one's own.
        strip = (lambda v: [x for i, x in enumerate(v[1] if isinstance(v, tuple) else v)
                            if i not in (6, 7)])
        assert strip(got) == strip(want), (args, want, got)
        assert a.call("CLIENT", "GETNAME") == d.call("CLIENT", "GETNAME"), args
    for args in [("HELLO", "4"), ("HELLO", "abc"), ("HELLO", "-1"), ("HELLO", "03"),
                 ("HELLO", "3", "SETNAME"), ("HELLO", "3", "SETNAME", "bad name"),
                 ("HELLO", "3", "AUTH", "u"), ("HELLO", "3", "FOO", "bar")]:
        assert a.call(*args) == d.call(*args), args
    # A client that never named itself reads a RESP3 null as its name.
    b = Conn(proxy.port)
    hello3(b)
    assert b.call("CLIENT", "GETNAME") == b"_\r\n"
    assert lent(proxy) == 0


def test_resp3_sessions_move_to_a_dedicated_connection_and_come_back(proxy, redis_server):
    a, pub = Conn(proxy.port), redis_server.client()
    hello3(a)
    # Subscribed: pushes, on a dedicated connection.
    assert reply_value(a.call("SUBSCRIBE", "ch")) == (">", [b"subscribe", b"ch", 1])
    subscribed_on(redis_server, "ch")
    assert lent(proxy) == 1
    pub.publish("ch", "m1")
    assert reply_value(a.read()) == (">", [b"message", b"ch", b"m1"])
    assert reply_value(a.call("UNSUBSCRIBE", "ch")) == (">", [b"unsubscribe", b"ch", 0])
    wait_for(lambda: lent(proxy) == 0, what="the subscriber back on shared connections")
    assert a.call("HSET", "h", "f", "v") == b":1\r\n"
    assert a.call("HGETALL", "h") == b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
    # A transaction and a blocking pop: the same, in RESP3.
    a.send(("MULTI",), ("HGETALL", "h"), ("EXEC",))
    assert [a.read() for _ in range(3)] == [b"+OK\r\n", b"+QUEUED\r\n",
                                            b"*1\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n"]
    assert a.call("BLPOP", "nolist", "0.05") == b"_\r\n"
    wait_for(lambda: lent(proxy) == 0, what="the client back on shared connections")
    # The spare it gave back speaks RESP3; a RESP2 session lent it gets RESP2.
    b = Conn(proxy.port)
    b.send(("MULTI",), ("HGETALL", "h"), ("EXEC",))
    assert [b.read() for _ in range(3)] == [b"+OK\r\n", b"+QUEUED\r\n",
                                            b"*1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"]
    assert b.call("BLPOP", "nolist", "0.05") == b"*-1\r\n"
    # A database other than 0 keeps the session dedicated, in RESP3.
    assert a.call("SELECT", "3") == b"+OK\r\n"
    assert a.call("HSET", "h3", "f", "v") == b":1\r\n"
    assert a.call("HGETALL", "h3") == b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
    assert lent(proxy) == 1
    a.close()
    b.close()


def test_a_push_redirected_to_a_shared_connection_reaches_nobody(proxy, redis_server):
    """Invalidation messages redirected (CLIENT TRACKING ... REDIRECT) to one
    of the proxy's RESP3 shared connections are dropped there: no client of
    that connection sees them, and its replies stay in step."""
    a = Conn(proxy.port)
    hello3(a)
    assert a.call("SET", "tracked", "1") == b"+OK\r\n"
    shared = proxy_conns(redis_server, 3)
    assert shared, "no RESP3 shared connection on the server"
    tracker = redis_server.client()
    tracker.execute_command("CLIENT", "TRACKING", "ON", "BCAST", "REDIRECT", shared[0]["id"])
    for i in range(20):
        redis_server.client().set("tracked", i)  # each write sends an invalidation
        assert a.call("GET", "tracked") == b"$%d\r\n%d\r\n" % (len(str(i)), i)
        assert a.call("PING") == b"+PONG\r\n"
    assert a.silent()
    tracker.execute_command("CLIENT", "TRACKING", "OFF")


def test_hello_with_the_proxys_credentials_shares_connections(authed):
    srv, p = authed
    srv.client().acl_setuser("bob", enabled=True, passwords=["+bobpw"], commands=["+@all"],
                             keys=["*"])
    a = Conn(p.port)
    assert a.call("HELLO", "3").startswith(b"-NOAUTH")
    assert a.call("HELLO", "3", "AUTH", "default", "nope").startswith(b"-WRONGPASS")
    facts = hello3(a, "AUTH", "default", "pw", "SETNAME", "app")
    assert facts[b"proto"] == 3
    assert a.call("CLIENT", "GETNAME") == b"$3\r\napp\r\n"
    assert a.call("HSET", "h", "f", "v") == b":1\r\n"
    assert a.call("HGETALL", "h") == b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
    assert lent(p, "pw") == 0
    # Another user's credentials: the server checks them, on a dedicated
    # connection where the client acts as that user.
    b = Conn(p.port)
    hello3(b, "AUTH", "bob", "bobpw")
    assert b.call("ACL", "WHOAMI") == b"$3\r\nbob\r\n"
    assert b.call("HGETALL", "h") == b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
    assert lent(p, "pw") == 1


def test_a_server_that_refuses_resp3_to_the_proxy(workdir):
    """A server without HELLO (renamed away, as on servers older than 6):
    the proxy answers no HELLO for it; the server answers each as it would
    answer the client directly, and the client goes on in RESP2."""
    srv = RedisServer(workdir, args=["--rename-command", "HELLO", ""]).start()
    p = Proxy(workdir, backend=srv.port).start()
    try:
        want = raw_exchange(srv.port, enc("HELLO", "3"))[0]
        got = raw_exchange(p.port, enc("HELLO", "3"))[0]
        assert got == want and got.startswith(b"-ERR unknown command"), (want, got)
        a = Conn(p.port)
        assert a.call("HELLO", "3").startswith(b"-ERR unknown command")
        assert a.call("SET", "k", "v") == b"+OK\r\n"
        assert a.call("HELLO") == raw_exchange(srv.port, enc("HELLO"))[0]
    finally:
        p.stop()
        srv.stop()


def test_a_pipeline_that_switches_protocol(proxy, redis_server):
    """HELLO 3 and HELLO 2 pipelined between commands: each reply in the
    protocol in force when the command ran, as on a direct connection."""
    steps = [("HSET", "h", "f", "v"), ("HGETALL", "h"), ("HELLO", "3"), ("HGETALL", "h"),
             ("GET", "missing"), ("HELLO", "2"), ("HGETALL", "h"), ("GET", "missing"),
             ("HELLO", "3"), ("SELECT", "0"), ("HGETALL", "h")]
    out = {}
    for port in (redis_server.port, proxy.port):
        redis_server.client().delete("h")
        c = Conn(port)
        c.send(*steps)
        out[port] = [c.read() for _ in steps]
        c.close()
    for i, (w, g) in enumerate(zip(out[redis_server.port], out[proxy.port])):
        if steps[i][0] == "HELLO":
            w, g = reply_value(w), reply_value(g)
            w = w[1] if isinstance(w, tuple) else w
            g = g[1] if isinstance(g, tuple) else g
            w, g = w[:6] + w[8:], g[:6] + g[8:]
        assert g == w, (steps[i], w, g)
    time.sleep(0.1)
    assert lent(proxy) == 0


def test_a_resp3_subscriber_is_subscribed_again_after_its_connection_is_lost(proxy,
                                                                              redis_server):
    a, pub = Conn(proxy.port), redis_server.client()
    hello3(a)
    assert reply_value(a.call("SUBSCRIBE", "ch")) == (">", [b"subscribe", b"ch", 1])
    subscribed_on(redis_server, "ch")
    redis_server.client().client_kill_filter(_type="pubsub", skipme=True)
    subscribed_on(redis_server, "ch")  # the proxy subscribed again, in RESP3
    pub.publish("ch", "after")
    # Only the message: neither the new connection's HELLO nor its
    # confirmation reaches the client.
    assert reply_value(a.read()) == (">", [b"message", b"ch", b"after"])
    assert a.silent()
    assert reply_value(a.call("UNSUBSCRIBE", "ch")) == (">", [b"unsubscribe", b"ch", 0])
    assert a.call("HGETALL", "nohash") == b"%0\r\n"


def test_resp3_clients_through_a_planned_failover(cluster, sproxy):
    """RESP3 clients keep their connections and get no error through a
    SENTINEL FAILOVER; the new master's RESP3 pool opens with its first
    RESP3 request, and a client that connects afterwards gets the new
    master's HELLO."""
    errors, ops, stop = [], [0], threading.Event()

    def work(i):
        c = Conn(sproxy.port, timeout=30)
        hello3(c)
        n = 0
        while not stop.is_set():
            n += 1
            for args, want in [(("SET", "r3:%d" % i, n), b"+OK\r\n"),
                               (("GET", "r3:%d" % i), b"$%d\r\n%d\r\n" % (len(str(n)), n))]:
                got = c.call(*args)
                if got != want:
                    errors.append((args, got))
            ops[0] += 1
        c.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    wait_for(lambda: ops[0] >= 50, what="load")
    old = cluster.master.port
    cluster.sentinels[0].client().sentinel_failover(cluster.name)
    new_port = cluster.wait_master_change(old)
    wait_proxy_master(sproxy, new_port)
    seen = ops[0]
    wait_for(lambda: ops[0] >= seen + 50, what="load on the new master")
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    late = Conn(sproxy.port)
    assert hello3(late)[b"proto"] == 3
    assert late.call("HSET", "h", "f", "v") == b":1\r\n"
    assert late.call("HGETALL", "h") == b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
    assert len(proxy_conns(cluster.server_on(new_port), 3)) >= 1


def test_a_hello_too_large_to_read_does_not_log_in(authed):
    srv, p = authed
    a = Conn(p.port)
    name = "n" * 16384
    reply = a.call("HELLO", "3", "SETNAME", name, "SETNAME", name, "SETNAME", name,
                   "SETNAME", name)
    assert reply.startswith(b"-"), reply[:60]
    assert a.call("SET", "k", "stolen").startswith(b"-NOAUTH")
    assert a.call("CONFIG", "GET", "requirepass").startswith(b"-NOAUTH")


@pytest.mark.parametrize("switch", ["hello", "reset"])
def test_requests_sent_before_a_protocol_switch_keep_their_protocol(workdir, redis_server,
                                                                   switch):
    """A request written before HELLO or RESET but sent again (here: taken
    back from a connection held by CLIENT PAUSE) is answered in the protocol
    it was sent in."""
    p = Proxy(workdir, backend=redis_server.port,
              args=["--set", "backend-connections=1", "--set", "backend-window=1"]).start()
    try:
        d = Conn(redis_server.port)
        d.call("HSET", "h", "f", "v")
        hello3(Conn(p.port))  # the master's facts are known
        a = Conn(p.port)
        if switch == "reset":
            hello3(a)
        for _ in range(3):
            a.call("GET", "x")  # a reply size estimate: pipelining is allowed
        d.call("CLIENT", "PAUSE", "300", "WRITE")
        a.send(("SET", "x", "1"), ("HGETALL", "h"),
               ("HELLO", "3") if switch == "hello" else ("RESET",), ("HGETALL", "h"))
        got = [a.read() for _ in range(4)]
        resp2, resp3 = b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n", b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
        assert got[0] == b"+OK\r\n"
        assert (got[1], got[3]) == ((resp2, resp3) if switch == "hello" else (resp3, resp2))
    finally:
        p.stop()


def test_a_failed_hello_on_a_dedicated_connection_is_not_lent_again(workdir, redis_server):
    """redis-server keeps the AUTH and SETNAME options before a bad one: the
    connection that ran such a HELLO is not given to another client."""
    redis_server.client().acl_setuser("ro", enabled=True, passwords=["+ropw"],
                                      commands=["+@read", "+acl", "+select", "+hello"],
                                      keys=["*"])
    p = Proxy(workdir, backend=redis_server.port, args=["--workers", "1"]).start()
    try:
        a = Conn(p.port)
        assert a.call("SELECT", "1") == b"+OK\r\n"
        assert a.call("HELLO", "2", "AUTH", "ro", "ropw", "SETNAME", "nm", "FOO").startswith(
            b"-ERR Syntax error")
        assert a.call("SELECT", "0") == b"+OK\r\n"
        b = Conn(p.port)
        assert b.call("SELECT", "1") == b"+OK\r\n"
        assert b.call("ACL", "WHOAMI") == b"$7\r\ndefault\r\n"
        assert b.call("SET", "k", "v") == b"+OK\r\n"
    finally:
        p.stop()
