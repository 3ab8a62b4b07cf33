"""Session state through the proxy: how a dedicated connection is taken and
given back, what is replayed when it is lost, what a transaction's queued
session commands change, and the limits that keep one client's memory
bounded. Against a real redis-server with a fixed backend."""
import signal
import threading
import time

import pytest
import redis

from harness import (Conn, Proxy, RedisServer, blocked_on, enc, kill_proxy_connections, lent,
                     proxy_stats, raw_exchange, subscribed_on, wait_for)


def test_reset_does_not_lend_a_logged_out_connection(authed):
    srv, p = authed
    a = Conn(p.port)
    assert a.call("AUTH", "pw") == b"+OK\r\n"
    assert a.call("MULTI") == b"+OK\r\n"  # a dedicated connection
    assert a.call("RESET") == b"+RESET\r\n"  # redis-server logs that connection out
    assert a.call("GET", "k").startswith(b"-NOAUTH")
    a.close()
    for _ in range(3):
        b = Conn(p.port)
        assert b.call("AUTH", "pw") == b"+OK\r\n"
        assert b.call("SELECT", "2") == b"+OK\r\n"
        assert b.call("WATCH", "x") == b"+OK\r\n"
        assert b.call("MULTI") == b"+OK\r\n"
        assert b.call("EXEC") == b"*0\r\n"
        b.close()


def test_unauthenticated_limits_and_unknown_commands(authed):
    srv, p = authed
    wait_for(lambda: proxy_stats(p.port, "pw")["commands_source"] == "master", what="command table")
    cases = [b"*11\r\n", b"*2\r\n$4\r\nAUTH\r\n$16385\r\n",
             b"*2\r\n$9\r\nNOSUCHCMD\r\n$1\r\nx\r\n", b"*1\r\n$3\r\nGET\r\n"]
    for data in cases:
        want = raw_exchange(srv.port, data)
        got = raw_exchange(p.port, data)
        assert got == want, (data, want, got)
    # Ten arguments and 16 KB bulks are fine before AUTH; so is a pipelined
    # AUTH followed by a larger request.
    big = b"x" * 20000
    c = Conn(p.port)
    c.send(("AUTH", "pw"), ("SET", "big", big))
    assert c.read() == b"+OK\r\n" and c.read() == b"+OK\r\n"
    assert c.call("STRLEN", "big") == b":20000\r\n"
    c.close()


def test_reset_while_subscribed_ends_the_subscriptions(proxy, redis_server):
    a = Conn(proxy.port)
    a.send(("SUBSCRIBE", "ch"))
    assert b"subscribe" in a.read()
    assert a.call("RESET") == b"+RESET\r\n"
    # The session is plain again: ordinary replies, back on shared connections.
    assert a.call("GET", "k") == b"$-1\r\n"
    wait_for(lambda: lent(proxy) == 0, what="dedicated connection given back")
    # A lost connection must not bring the subscription back.
    kill_proxy_connections(redis_server, proxy)
    assert a.call("PING") == b"+PONG\r\n"
    assert proxy.client().publish("ch", "m") == 0
    assert a.silent()


@pytest.mark.parametrize("how", ["pipelined", "long-name"])
def test_leaving_subscribed_mode(proxy, how):
    a = Conn(proxy.port)
    name = "n" * 300 if how == "long-name" else "ch"
    a.send(("SUBSCRIBE", name))
    assert b"subscribe" in a.read()
    assert lent(proxy) == 1
    if how == "pipelined":
        a.send(("UNSUBSCRIBE",), ("PING",))
        assert a.read().startswith(b"*3\r\n$11\r\nunsubscribe")
        assert a.read() == b"+PONG\r\n"
    else:
        assert a.call("UNSUBSCRIBE", name).startswith(b"*3\r\n$11\r\nunsubscribe")
    wait_for(lambda: lent(proxy) == 0, what="dedicated connection given back")
    assert a.call("SET", "k", "v") == b"+OK\r\n"
    assert a.call("GET", "k") == b"$1\r\nv\r\n"
    assert a.silent()


def test_client_reply_off_survives_a_lost_connection(proxy, redis_server):
    a = Conn(proxy.port)
    a.send(("CLIENT", "REPLY", "OFF"), ("SET", "a", "1"))
    wait_for(lambda: redis_server.client().get("a") == b"1", what="SET a")
    kill_proxy_connections(redis_server, proxy)
    a.send(("SET", "b", "2"))
    wait_for(lambda: redis_server.client().get("b") == b"2", what="SET b")
    assert a.silent(), "replies came back under CLIENT REPLY OFF"
    assert a.call("CLIENT", "REPLY", "ON") == b"+OK\r\n"
    assert a.call("GET", "b") == b"$1\r\n2\r\n"


def test_quit_under_client_reply_off_says_nothing(proxy, redis_server):
    data = b"CLIENT REPLY OFF\r\nQUIT\r\n"
    # redis-server 7.0 sends nothing either (and then, a quirk, does not
    # close until the client does); the proxy closes.
    assert raw_exchange(redis_server.port, data)[0] == b""
    assert raw_exchange(proxy.port, data) == (b"", True)


def test_session_commands_in_multi_apply_only_if_exec_runs_them(proxy, redis_server):
    a = Conn(proxy.port)
    assert a.call("HSET", "h", "f", "v") == b":1\r\n"
    # DISCARD: HELLO 3 never ran, so a new connection must speak RESP2.
    for cmd in (("MULTI",), ("HELLO", "3"), ("DISCARD",)):
        a.call(*cmd)
    kill_proxy_connections(redis_server, proxy)
    assert a.call("HGETALL", "h") == b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    # A SELECT that fails inside EXEC changes nothing; one that runs does.
    assert a.call("MULTI") == b"+OK\r\n"
    assert a.call("SELECT", "100") == b"+QUEUED\r\n"
    assert a.call("EXEC").startswith(b"*1\r\n-ERR")
    kill_proxy_connections(redis_server, proxy)
    assert a.call("HGET", "h", "f") == b"$1\r\nv\r\n"
    for cmd in (("MULTI",), ("SELECT", "3"), ("EXEC",)):
        a.call(*cmd)
    kill_proxy_connections(redis_server, proxy)
    assert a.call("SET", "in3", "x") == b"+OK\r\n"
    assert redis_server.client(db=3).get("in3") == b"x"
    # HELLO 3 that EXEC ran: RESP3 from then on, also on a new connection.
    for cmd in (("MULTI",), ("HELLO", "3"), ("EXEC",)):
        a.call(*cmd)
    kill_proxy_connections(redis_server, proxy)
    assert a.call("SELECT", "0") == b"+OK\r\n"
    assert a.call("HGETALL", "h") == b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n"


def test_client_id_stays_valid_for_client_unblock(proxy, redis_server):
    a = proxy.client()
    ident = a.client_id()
    res = {}
    t = threading.Thread(target=lambda: res.update(v=a.blpop("nothing", timeout=10)))
    t0 = time.monotonic()
    t.start()
    blocked_on(redis_server)
    assert proxy.client().client_unblock(ident) == 1
    t.join(10)
    assert res["v"] is None and time.monotonic() - t0 < 5
    assert a.client_id() == ident


def test_client_setinfo_keeps_the_client_on_shared_connections(proxy, redis_server):
    cmd = ("CLIENT", "SETINFO", "lib-name", "x")
    assert Conn(proxy.port).call(*cmd) == Conn(redis_server.port).call(*cmd)
    a = Conn(proxy.port)
    a.call(*cmd)
    assert a.call("GET", "k") == b"$-1\r\n"
    assert lent(proxy) == 0


def script_busy(server):
    """True once a script on server is past busy-reply-threshold."""
    try:
        server.client(socket_timeout=1).ping()
    except redis.exceptions.BusyLoadingError:
        return True
    except redis.ResponseError as e:
        return "BUSY" in str(e)
    return False


def test_script_kill_does_not_queue_behind_the_script(workdir, redis_server):
    """SCRIPT KILL from a client sharing the busy script's connection."""
    redis_server.client().config_set("busy-reply-threshold", 100)
    p = Proxy(workdir, backend=redis_server.port, args=["--set", "backend-connections=1"]).start()
    try:
        res = {}

        def busy():
            try:
                p.client().eval("while true do end", 0)
            except redis.ResponseError as e:
                res["err"] = str(e)

        t = threading.Thread(target=busy)
        t.start()
        wait_for(lambda: script_busy(redis_server), what="the script to be past the threshold")
        killer = p.client(socket_timeout=5)
        t0 = time.monotonic()
        assert killer.script_kill()
        t.join(10)
        assert time.monotonic() - t0 < 3
        assert "killed" in res.get("err", "").lower(), res
        assert killer.ping()
    finally:
        p.stop()


def test_inline_request_with_many_arguments(proxy, redis_server):
    data = b"DEL " + b" ".join(b"k%d" % i for i in range(5000)) + b"\r\n"
    assert raw_exchange(proxy.port, data) == raw_exchange(redis_server.port, data) == (b":0\r\n",
                                                                                        False)


def test_burst_of_large_replies_from_a_client_that_does_not_read(workdir, redis_server):
    redis_server.client().set("big", b"x" * (4 << 20))
    p = Proxy(workdir, backend=redis_server.port).start()
    try:
        base = p.rss_kb()
        c = Conn(p.port)
        c.send(*[("GET", "big")] * 120)
        # Buffering them all would take the proxy to about 480 MB within a
        # few seconds; the server's own output buffer is unlimited.
        grown = 0
        for _ in range(10):
            time.sleep(0.5)  # sampling RSS while the server sends: time is the load here
            grown = max(grown, p.rss_kb() - base)
        assert grown < 64 * 1024, "proxy grew by %d KiB for 120 unread 4 MB replies" % grown
        other = p.client()
        assert other.ping()
        c.close()
    finally:
        p.stop()


def test_subscriber_that_does_not_read_is_dropped_by_the_server(workdir, redis_server):
    """Its dedicated connection is not read while it is over its backlog, so
    the server's own pub/sub output limit applies, as on a direct connection;
    the proxy's memory stays small."""
    redis_server.client().config_set("client-output-buffer-limit", "pubsub 4mb 1mb 1")
    p = Proxy(workdir, backend=redis_server.port).start()
    try:
        base = p.rss_kb()
        sub = Conn(p.port)
        sub.send(("SUBSCRIBE", "flood"))
        subscribed_on(redis_server, "flood")
        pub = p.client()
        payload = b"m" * 100000
        for _ in range(600):  # 60 MB of messages
            pub.publish("flood", payload)
        grown = p.rss_kb() - base
        assert grown < 32 * 1024, "proxy grew by %d KiB" % grown
        wait_for(lambda: redis_server.client().client_list(_type="pubsub") == [],
                 what="the server to drop the subscriber's connection")
        # Drain what reached the client before that: then it is closed.
        deadline = time.monotonic() + 15
        closed = False
        while not closed and time.monotonic() < deadline:
            sub.buf = b""
            closed = sub.closed(wait=2)
        assert closed, "the subscriber was not disconnected"
        assert pub.ping()
    finally:
        p.stop()


def test_refused_credentials_on_a_new_connection_close_the_client(authed):
    """A client authenticated as another ACL user never goes on with the
    proxy's own credentials when its user is refused on a new connection."""
    srv, p = authed
    srv.client().acl_setuser("bob", enabled=True, passwords=["+bobpw"], commands=["+@all"],
                             keys=["*"])
    a = Conn(p.port)
    assert a.call("AUTH", "bob", "bobpw") == b"+OK\r\n"
    assert a.call("ACL", "WHOAMI") == b"$3\r\nbob\r\n"
    lost = proxy_stats(p, "pw")["backend_lost"]
    srv.client().acl_deluser("bob")  # also disconnects bob's connection
    wait_for(lambda: proxy_stats(p, "pw")["backend_lost"] > lost, what="bob's connection to go")
    try:
        reply = a.call("ACL", "WHOAMI")
    except (ConnectionError, OSError):
        reply = None
    assert reply is None, "went on as %r" % reply


def test_hello_without_auth_does_not_log_in(authed):
    srv, p = authed
    a = Conn(p.port)
    for args in [("HELLO", "3", "SETNAME", "x"), ("HELLO", "2", "SETNAME", "auth")]:
        assert a.call(*args).startswith(b"-NOAUTH"), args
        assert a.call("GET", "k").startswith(b"-NOAUTH")
    assert a.call("HELLO", "2", "SETNAME", "x", "AUTH", "default", "nope").startswith(b"-WRONGPASS")
    assert a.call("GET", "k").startswith(b"-NOAUTH")
    assert a.call("HELLO", "2", "SETNAME", "x", "AUTH", "default", "pw").startswith(b"*")
    assert a.call("GET", "k") == b"$-1\r\n"


def test_commands_pipelined_behind_auth_run_as_the_new_user(authed):
    srv, p = authed
    srv.client().acl_setuser("bob", enabled=True, passwords=["+bobpw"], commands=["+@all"],
                             keys=["*"])
    a = Conn(p.port)
    assert a.call("AUTH", "bob", "typo").startswith(b"-WRONGPASS")
    a.send(("AUTH", "bob", "bobpw"), ("PING",), ("ACL", "WHOAMI"))
    assert [a.read() for _ in range(3)] == [b"+OK\r\n", b"+PONG\r\n", b"$3\r\nbob\r\n"]


def test_unsubscribe_without_subscriptions_answers_every_name(proxy, redis_server):
    """redis-server confirms each name of an UNSUBSCRIBE with a reply of its
    own, even when the client is not subscribed: one request, several
    replies. The proxy must give the same replies and keep every other
    client's replies in place."""
    for data in [b"UNSUBSCRIBE x y z\r\nPING\r\n", b"PUNSUBSCRIBE\r\nPING\r\n",
                 enc("SUNSUBSCRIBE", "a", "b") + enc("UNSUBSCRIBE") + enc("PING")]:
        assert raw_exchange(proxy.port, data) == raw_exchange(redis_server.port, data), data
    # RESP3: the confirmations are push messages.
    for port in (proxy.port, redis_server.port):
        c = Conn(port)
        assert c.call("HELLO", "3").startswith(b"%")
        c.send(("UNSUBSCRIBE", "x", "y"), ("PUNSUBSCRIBE",), ("PING",))
        got = [c.read() for _ in range(4)]
        assert got == [b">3\r\n$11\r\nunsubscribe\r\n$1\r\nx\r\n:0\r\n",
                       b">3\r\n$11\r\nunsubscribe\r\n$1\r\ny\r\n:0\r\n",
                       b">3\r\n$12\r\npunsubscribe\r\n_\r\n:0\r\n", b"+PONG\r\n"], (port, got)
        c.close()

    # Alongside other clients pipelining on the same shared connections.
    bad, stop = [], time.time() + 1.5

    def reader(n):
        r = redis.Redis(port=proxy.port, socket_timeout=10)
        r.set("own:%d" % n, n)
        while time.time() < stop:
            p = r.pipeline(transaction=False)
            for _ in range(20):
                p.get("own:%d" % n)
            bad.extend(v for v in p.execute() if v != str(n).encode())
    threads = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    a = Conn(proxy.port)
    while time.time() < stop:
        a.send(("UNSUBSCRIBE", "x", "y", "z"))
        assert [a.read() for _ in range(3)][2] == b"*3\r\n$11\r\nunsubscribe\r\n$1\r\nz\r\n:0\r\n"
    for t in threads:
        t.join()
    assert bad == []
    assert a.call("PING") == b"+PONG\r\n" and a.silent()


def test_session_command_while_streaming_keeps_its_connection(proxy, redis_server):
    """Under CLIENT REPLY OFF the proxy sees no reply to SELECT: the session
    must stay on its own connection, which no other client may get."""
    proxy.client(db=0).set("where", "db0")
    proxy.client(db=2).set("where", "db2")
    a = Conn(proxy.port)
    a.send(("CLIENT", "REPLY", "OFF"), ("SELECT", "2"), ("CLIENT", "REPLY", "ON"))
    assert a.read() == b"+OK\r\n"
    assert a.call("GET", "where") == b"$3\r\ndb2\r\n"
    for _ in range(3):
        b = Conn(proxy.port)
        b.send(("MULTI",), ("GET", "where"), ("EXEC",))
        assert [b.read() for _ in range(3)] == [b"+OK\r\n", b"+QUEUED\r\n", b"*1\r\n$3\r\ndb0\r\n"]
        b.close()
    assert a.call("GET", "where") == b"$3\r\ndb2\r\n"


def test_client_closed_while_its_requests_are_handed_back(workdir):
    """A lost connection hands its requests back one by one; one of them can
    close its client (here a held HTTP probe, dispatched once the unknown
    outcomes are answered), whose other requests must then be dropped, not
    freed while still being handed back (this corrupted the request pool)."""
    srv = RedisServer(workdir).start()
    srv.client().set("big", b"x" * 20000)
    p = Proxy(workdir, backend=srv.port, args=["--set", "client-backlog-limit=32kb"]).start()
    try:
        a = Conn(p.port)
        assert len(a.call("GET", "big")) > 20000  # its replies are about 20 KB: admission
        writes = proxy_stats(p)["backend_writes"]
        srv.proc.send_signal(signal.SIGSTOP)
        # The SETs are written to the stopped server; POST waits behind them.
        a.send(("SET", "a", "1"), ("SET", "b", "2"), ("POST", "/"))
        wait_for(lambda: proxy_stats(p)["backend_writes"] > writes, what="the SETs written")
        lost = proxy_stats(p)["backend_lost"]
        srv.kill9()
        wait_for(lambda: proxy_stats(p)["backend_lost"] > lost, what="the connection to go")
        assert a.closed(wait=5) or b"may or may not" in a.buf
        srv.start()
        c = p.client()
        for i in range(50):
            pipe = c.pipeline(transaction=False)
            for j in range(20):
                pipe.set("k%d" % j, "v%d" % j).get("k%d" % j)
            assert pipe.execute()[1::2] == [b"v%d" % j for j in range(20)]
    finally:
        p.stop()
        srv.stop()


def test_a_read_blocked_past_hold_timeout_is_sent_again(workdir, redis_server):
    """XREAD BLOCK waiting longer than hold-timeout when its server
    connection is killed: it was waiting on its server, not for one, so it
    is sent again and gets the entry added afterwards."""
    p = Proxy(workdir, backend=redis_server.port, args=["--set", "hold-timeout=500ms"]).start()
    try:
        res = {}

        def reader():
            try:
                res["r"] = p.client(socket_timeout=20).execute_command(
                    "XREAD", "BLOCK", "0", "STREAMS", "s", "0-0")
            except redis.RedisError as e:
                res["r"] = repr(e)

        t = threading.Thread(target=reader)
        t.start()
        srv = redis_server.client()
        wait_for(lambda: any(c.get("cmd") == "xread" for c in srv.client_list()),
                 what="XREAD blocked")
        time.sleep(1.0)  # twice hold-timeout
        for c in srv.client_list():
            if c.get("cmd") == "xread":
                srv.execute_command("CLIENT", "KILL", "ID", c["id"])
        wait_for(lambda: any(c.get("cmd") == "xread" for c in srv.client_list()),
                 what="XREAD blocked again")
        entry = srv.xadd("s", {"f": "v"})
        t.join(10)
        assert res["r"] == [[b"s", [(entry, {b"f": b"v"})]]], res
    finally:
        p.stop()


def test_streamed_requests_not_written_survive_the_connection(workdir):
    """A RESP3 subscriber's requests ride its streaming connection, matched
    to no reply. Those not yet written whole when that connection is lost
    never ran: once the subscription is back they are sent again, in order,
    and answered (a 24 MB SET stuck behind a frozen server, then a PING)."""
    srv = RedisServer(workdir).start()
    p = Proxy(workdir, backend=srv.port).start()
    try:
        c = Conn(p.port, timeout=30)
        assert c.call("HELLO", "3").startswith(b"%")
        assert c.call("SUBSCRIBE", "news") == enc_push("subscribe", "news", 1)
        srv.proc.send_signal(signal.SIGSTOP)
        big = b"v" * (24 << 20)
        c.send(("SET", "big", big), ("PING",))
        time.sleep(1)  # the proxy writes what the frozen server's socket takes
        srv.kill9()  # (a stopped process dies too)
        srv.start()
        got = [c.read() for _ in range(2)]
        assert got == [b"+OK\r\n", b"+PONG\r\n"], got
        assert srv.client().strlen("big") == len(big)
        srv.client().publish("news", "after")  # still subscribed on the new connection
        assert c.read() == enc_push("message", "news", "after")
    finally:
        p.stop()
        srv.stop()


def enc_push(*items):
    out = [b">%d\r\n" % len(items)]
    for i in items:
        if isinstance(i, int):
            out.append(b":%d\r\n" % i)
        else:
            out.append(b"$%d\r\n%s\r\n" % (len(i), i.encode()))
    return b"".join(out)
