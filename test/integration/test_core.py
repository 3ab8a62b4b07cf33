"""Data plane through a fixed backend: commands, pipelines, many clients, big
values, sessions, protocol errors, backend restarts and backpressure."""
import os
import select
import socket
import subprocess
import threading
import time

import pytest
import redis

from harness import (Proxy, RedisServer, blocked_on, lent, proxy_stats, raw_exchange, subscribed_on,
                     wait_for)

# One command per line; replies from the proxy must equal the direct ones.
COMMANDS = [
    # strings and keys
    ("SET", "s", "hello"), ("GET", "s"), ("APPEND", "s", " world"), ("STRLEN", "s"),
    ("GETRANGE", "s", "0", "4"), ("SETRANGE", "s", "0", "J"), ("INCR", "n"),
    ("INCRBY", "n", "41"), ("DECR", "n"), ("INCRBYFLOAT", "f", "1.5"), ("MSET", "a", "1", "b", "2"),
    ("MGET", "a", "b", "nokey"), ("SETNX", "a", "x"), ("GETSET", "a", "9"), ("GETDEL", "b"),
    ("SET", "e", "v", "EX", "100"), ("TTL", "e"), ("PERSIST", "e"), ("TTL", "e"),
    ("EXISTS", "a", "b", "s"), ("TYPE", "s"), ("RENAME", "a", "a2"), ("DEL", "a2", "zz"),
    ("SETBIT", "bits", "7", "1"), ("GETBIT", "bits", "7"), ("BITCOUNT", "bits"),
    ("INCR", "s"), ("GET", "nokey"),
    # lists
    ("RPUSH", "l", "a", "b", "c", "d"), ("LPUSH", "l", "z"), ("LRANGE", "l", "0", "-1"),
    ("LLEN", "l"), ("LINDEX", "l", "1"), ("LPOP", "l"), ("RPOP", "l", "2"), ("LSET", "l", "0", "A"),
    ("LREM", "l", "0", "A"), ("LPOS", "l", "b"), ("LMOVE", "l", "l2", "LEFT", "RIGHT"),
    ("LRANGE", "l2", "0", "-1"),
    # hashes
    ("HSET", "h", "f1", "v1", "f2", "v2"), ("HGET", "h", "f1"), ("HGETALL", "h"),
    ("HMGET", "h", "f1", "nof"), ("HINCRBY", "h", "c", "5"), ("HKEYS", "h"), ("HVALS", "h"),
    ("HLEN", "h"), ("HDEL", "h", "f2"), ("HEXISTS", "h", "f1"), ("HSTRLEN", "h", "f1"),
    # sets
    ("SADD", "st", "a", "b", "c"), ("SISMEMBER", "st", "a"), ("SCARD", "st"),
    ("SREM", "st", "c"), ("SADD", "st2", "b", "x"), ("SINTER", "st", "st2"),
    ("SUNIONSTORE", "st3", "st", "st2"), ("SMEMBERS", "st3"), ("SMISMEMBER", "st", "a", "q"),
    # sorted sets
    ("ZADD", "z", "1", "a", "2", "b", "3", "c"), ("ZRANGE", "z", "0", "-1", "WITHSCORES"),
    ("ZSCORE", "z", "b"), ("ZINCRBY", "z", "5", "a"), ("ZRANK", "z", "a"), ("ZCARD", "z"),
    ("ZRANGEBYSCORE", "z", "-inf", "+inf"), ("ZREM", "z", "b"), ("ZPOPMIN", "z"),
    ("ZCOUNT", "z", "0", "100"),
    # streams
    ("XADD", "x", "1-1", "k", "v"), ("XADD", "x", "2-1", "k2", "v2"), ("XLEN", "x"),
    ("XRANGE", "x", "-", "+"), ("XREAD", "COUNT", "1", "STREAMS", "x", "0"),
    ("XGROUP", "CREATE", "x", "g", "0"), ("XREADGROUP", "GROUP", "g", "c", "STREAMS", "x", ">"),
    ("XACK", "x", "g", "1-1"), ("XPENDING", "x", "g"),
    # others
    ("PFADD", "hll", "a", "b", "c"), ("PFCOUNT", "hll"),
    ("GEOADD", "geo", "13.361389", "38.115556", "Palermo"), ("GEOPOS", "geo", "Palermo"),
    ("EVAL", "return {KEYS[1], ARGV[1], 3}", "1", "k", "arg"), ("ECHO", "hi"), ("PING",),
    ("PING", "msg"), ("DBSIZE",), ("OBJECT", "ENCODING", "l2"), ("SCAN", "0", "COUNT", "1000"),
    ("NOSUCHCOMMAND", "x"), ("GET",), ("SET", "k"), ("LPUSH", "s", "x"), ("SELECT", "0"),
    ("CLIENT", "GETNAME"), ("CLIENT", "SETNAME", "bad name"), ("HELLO", "2"),
]


def run_all(client):
    client.response_callbacks = {}  # compare raw replies, not redis-py's parsing
    out = []
    for cmd in COMMANDS:
        try:
            r = client.execute_command(*cmd)
        except redis.ResponseError as e:
            r = "ERR:" + str(e)
        if cmd[0] == "SCAN":
            r = (r[0], sorted(r[1]))
        if cmd[0] in ("XADD", "TTL") and not isinstance(r, str):
            r = r if cmd[0] == "XADD" else (r > 0)
        if cmd[0] in ("SMEMBERS", "SUNIONSTORE", "HKEYS", "HVALS", "SINTER"):
            r = sorted(r) if isinstance(r, list) else r
        if cmd[0] == "HELLO":
            r = {k: v for k, v in zip(r[::2], r[1::2]) if k not in (b"id",)}
        out.append((cmd, r))
    return out


def test_commands_match_direct(redis_server, proxy):
    direct = redis_server.client()
    direct.flushall()
    expected = run_all(direct)
    direct.flushall()
    got = run_all(proxy.client())
    for (cmd, e), (_, g) in zip(expected, got):
        assert g == e, "command %r: direct %r, proxy %r" % (cmd, e, g)


def test_pipeline_10000(proxy):
    c = proxy.client()
    pipe = c.pipeline(transaction=False)
    for i in range(10000):
        pipe.set("pk:%d" % i, "v%d" % i)
        if i % 3 == 0:
            pipe.get("pk:%d" % i)
    res = pipe.execute()
    assert len(res) == 10000 + 3334
    pipe = c.pipeline(transaction=False)
    for i in range(10000):
        pipe.get("pk:%d" % i)
    assert pipe.execute() == [b"v%d" % i for i in range(10000)]


def test_pipelined_bulk_across_chunks(proxy):
    """Pipelines of mixed-size values written and read back in one go: reads
    that fill a buffer go on into the next ones, and requests and replies
    straddle buffer boundaries at every offset the sizes produce."""
    import random
    rnd = random.Random(7)
    sizes = [rnd.choice([1, 100, 1000, 4095, 4096, 9000, 16383, 16384, 40000]) + rnd.randrange(7)
             for _ in range(400)]
    values = [bytes([65 + i % 26]) * n for i, n in enumerate(sizes)]
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    try:
        s.sendall(b"".join(_resp("SET", "bk:%d" % i, v) for i, v in enumerate(values)))
        s.sendall(b"".join(_resp("GET", "bk:%d" % i) for i in range(len(values))))
        want = b"+OK\r\n" * len(values) + b"".join(b"$%d\r\n%s\r\n" % (len(v), v) for v in values)
        got = b""
        while len(got) < len(want):
            data = s.recv(1 << 20)
            assert data, "connection closed after %d of %d bytes" % (len(got), len(want))
            got += data
        assert got == want
    finally:
        s.close()


def _resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def test_1000_concurrent_clients(proxy):
    socks = []
    try:
        for i in range(1000):
            s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            socks.append(s)
        for i, s in enumerate(socks):
            s.sendall(_resp("SET", "cc:%d" % i, "v%d" % i) + _resp("GET", "cc:%d" % i))
        pending = {s: b"" for s in socks}
        want = {s: b"+OK\r\n$%d\r\nv%d\r\n" % (len(b"v%d" % i), i) for i, s in enumerate(socks)}
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            ready, _, _ = select.select(list(pending), [], [], 1)
            for s in ready:
                pending[s] += s.recv(4096)
                if len(pending[s]) >= len(want[s]):
                    assert pending[s] == want[s]
                    del pending[s]
        assert not pending, "%d clients got no full reply" % len(pending)
    finally:
        for s in socks:
            s.close()


def test_100mb_value(proxy, redis_server):
    c = proxy.client(socket_timeout=120)
    value = os.urandom(1 << 20) * 100
    assert c.set("big", value)
    assert redis_server.client(socket_timeout=120).strlen("big") == len(value)
    assert c.get("big") == value
    # Other clients are served while the big value moves.
    assert proxy.client().ping()


def test_multi_exec_and_watch_conflict(proxy):
    c = proxy.client()
    other = proxy.client()
    with c.pipeline(transaction=True) as p:
        p.set("t1", "a").incr("t2").get("t1")
        assert p.execute() == [True, 1, b"a"]
    with c.pipeline(transaction=True) as p:
        p.watch("w")
        p.multi()
        p.set("w", "mine")
        other.set("w", "theirs")  # touches the watched key from another client
        with pytest.raises(redis.WatchError):
            p.execute()
    assert c.get("w") == b"theirs"
    # The session is usable (and back on shared connections) afterwards.
    assert c.set("after", "1") and c.get("after") == b"1"


def test_blpop_does_not_stall_others(proxy, redis_server):
    blocked = proxy.client(socket_timeout=30)
    result = {}

    def waiter():
        result["v"] = blocked.blpop("queue", timeout=20)

    t = threading.Thread(target=waiter)
    t.start()
    blocked_on(redis_server)
    others = [proxy.client() for _ in range(5)]
    start = time.monotonic()
    for i in range(200):
        c = others[i % 5]
        assert c.set("o%d" % i, i) and c.get("o%d" % i) == str(i).encode()
    assert time.monotonic() - start < 10
    assert t.is_alive(), "BLPOP returned before anything was pushed"
    others[0].rpush("queue", "item")
    t.join(10)
    assert result["v"] == (b"queue", b"item")
    # The client that blocked keeps working.
    assert blocked.ping()


def test_subscribe_publish(proxy, redis_server):
    sub = proxy.client().pubsub()
    sub.subscribe("chan")
    sub.psubscribe("pat.*")
    subscribed_on(redis_server, "chan")
    wait_for(lambda: redis_server.client().pubsub_numpat() >= 1, what="pattern subscription")
    msgs = []
    deadline = time.monotonic() + 5
    pub = proxy.client()
    assert pub.publish("chan", "hello") == 1 and pub.publish("pat.x", "world") == 1
    while len([m for m in msgs if m["type"] in ("message", "pmessage")]) < 2:
        if time.monotonic() > deadline:
            break
        m = sub.get_message(timeout=1)
        while m is not None:
            msgs.append(m)
            m = sub.get_message(timeout=0.2)
    data = {(m["type"], m["data"]) for m in msgs}
    assert ("message", b"hello") in data
    assert ("pmessage", b"world") in data
    sub.close()


def test_select(proxy, redis_server):
    c = proxy.client(db=3)
    assert c.set("in3", "yes")
    assert redis_server.client(db=3).get("in3") == b"yes"
    assert redis_server.client(db=0).get("in3") is None
    plain = proxy.client()
    assert plain.get("in3") is None  # other clients stay on db 0
    c.execute_command("SELECT", "0")
    assert c.get("in3") is None
    c.execute_command("SELECT", "3")
    assert c.get("in3") == b"yes"


PROTOCOL_CASES = [
    b"*3000000000\r\n",
    b"*1\r\n$600000000\r\n",
    b"*1\r\nx4\r\n",
    b'set a "b\r\n',
    b"*01\r\n$4\r\nPING\r\n",
    b"*1\r\n$-1\r\n",
    b"*2\r\n$4\r\nPING\r\n:5\r\n",
    b"*1\r\n$+4\r\nPING\r\n",
    b"*" + b"1" * 70000,
    b"x" * 70000,
    b"*1\r\n$" + b"1" * 70000,
    b"*1\r\n$4\r\nPING\r\n*1\r\nx\r\n",
    b"PING\r\n\r\n*-5\r\n*0\r\n  \r\nPING\r\n",
    b"*1\r\n$4\r\nPINGXX*1\rX$4\r\nPING\r\n",
    b"ECHO \"a\\x41\\n\" 'it\\'s'\r\n",
    b"*1\r\n\rabc\r\n",
]


@pytest.mark.parametrize("data", PROTOCOL_CASES, ids=range(len(PROTOCOL_CASES)))
def test_protocol_errors_like_redis(redis_server, proxy, data):
    want = raw_exchange(redis_server.port, data)
    got = raw_exchange(proxy.port, data)
    assert got == want
    # Nothing else was affected.
    assert proxy.client().ping()


def test_protocol_error_split_bytes(redis_server, proxy):
    data = b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n*1\r\nq\r\n"
    want = raw_exchange(redis_server.port, data)
    got = raw_exchange(proxy.port, data, chunks=[data[i:i + 1] for i in range(len(data))])
    assert got == want


def test_backend_restart_keeps_clients(redis_server, proxy):
    clients = [proxy.client() for _ in range(10)]
    for i, c in enumerate(clients):
        assert c.set("r%d" % i, i)
    conns = [c.connection_pool.get_connection("x") for c in clients]
    for c, conn in zip(clients, conns):
        c.connection_pool.release(conn)
    redis_server.restart()  # data is gone (no persistence), the port is the same
    for i, c in enumerate(clients):
        wait_for(lambda: c.set("r%d" % i, i), timeout=15, what="set after restart")
        assert c.get("r%d" % i) == str(i).encode()
    # The very same TCP connections were used throughout.
    for c, conn in zip(clients, conns):
        assert c.connection_pool.get_connection("x") is conn


def test_requests_during_backend_outage_wait(redis_server, workdir):
    proxy = Proxy(workdir, backend=redis_server.port, args=["--set", "hold-timeout=10s"]).start()
    try:
        c = proxy.client(socket_timeout=20)
        assert c.set("k", "v")
        redis_server.stop()
        result = {}

        def later():
            result["v"] = c.set("k2", "v2")

        t = threading.Thread(target=later)
        t.start()
        wait_for(lambda: proxy_stats(proxy)["held_bytes_worker"] > 0, what="the SET to be held")
        assert t.is_alive(), "the request should wait for the backend"
        redis_server.start()
        t.join(15)
        assert result.get("v") is True
    finally:
        proxy.stop()


def test_hold_timeout_gives_clear_error(redis_server, workdir):
    proxy = Proxy(workdir, backend=redis_server.port, args=["--set", "hold-timeout=500ms"]).start()
    try:
        c = proxy.client(socket_timeout=20)
        assert c.ping()
        redis_server.stop()
        with pytest.raises(redis.ResponseError, match="hold-timeout"):
            c.set("k", "v")
        redis_server.start()
        wait_for(lambda: c.set("k", "v"), timeout=10, what="recovery")
    finally:
        proxy.stop()


def test_client_not_reading_replies_is_bounded(redis_server, workdir):
    proxy = Proxy(workdir, backend=redis_server.port,
                  args=["--set", "client-backlog-limit=1mb"]).start()
    try:
        redis_server.client().set("big", b"x" * 100000)
        base = proxy.rss_kb()
        s = socket.create_connection(("127.0.0.1", proxy.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.setblocking(False)
        req = _resp("GET", "big") * 100
        sent = 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                sent += s.send(req)
            except BlockingIOError:
                select.select([], [s], [], 0.05)
        # 5 s of sending; the client read nothing. Replies asked for: sent/16 * 100 KB.
        asked_mb = sent // len(_resp("GET", "big")) * 100000 / 1e6
        grown_mb = (proxy.rss_kb() - base) / 1024
        assert asked_mb > 200, "the test did not push hard enough"
        assert grown_mb < 64, "proxy grew %.0f MB for a client that reads nothing" % grown_mb
        # Others are still served.
        assert proxy.client().ping()
        s.close()
    finally:
        proxy.stop()


@pytest.mark.parametrize("pipeline", [1, 16])
def test_redis_benchmark_through_proxy(proxy, pipeline):
    out = subprocess.run(
        ["redis-benchmark", "-p", str(proxy.port), "-q", "-n", "20000", "-c", "50",
         "-P", str(pipeline), "-t", "set,get,incr,lpush,lpop,mset"],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert "error" not in text.lower(), text
    for t in ("SET", "GET", "INCR", "LPUSH", "LPOP", "MSET"):
        assert t in text, text


def test_sessions_return_to_shared_connections(proxy):
    c = proxy.client()
    assert lent(proxy) == 0
    # SELECT another db pins; SELECT 0 releases.
    c.execute_command("SELECT", "5")
    assert lent(proxy) == 1
    c.execute_command("SELECT", "0")
    c.ping()
    assert lent(proxy) == 0
    # A transaction pins until EXEC.
    with c.pipeline(transaction=True) as p:
        p.watch("k")
        assert lent(proxy) == 1
        p.multi()
        p.set("k", "v")
        p.execute()
    c.ping()
    assert lent(proxy) == 0
    # A blocking command pins for its duration only.
    assert c.blpop("nothing", timeout=0.1) is None
    c.ping()
    assert lent(proxy) == 0
    # Subscribers leave after the last unsubscribe.
    ps = c.pubsub()
    ps.subscribe("a")
    ps.psubscribe("p*")
    wait_for(lambda: lent(proxy) == 1, what="subscriber on a dedicated connection")
    ps.unsubscribe("a")
    ps.punsubscribe("p*")
    wait_for(lambda: ps.get_message(timeout=0.1) is None and lent(proxy) == 0, timeout=5,
             what="subscriber back on shared connections")
    ps.close()


def test_auth_like_redis_requirepass(workdir):
    from harness import RedisServer
    srv = RedisServer(workdir, args=["--requirepass", "secret"], password="secret").start()
    p = Proxy(workdir, backend=srv.port, args=["--set", "backend-password=secret"]).start()
    try:
        admin = srv.client()
        admin.execute_command("ACL", "SETUSER", "alice", "on", ">pw", "~*", "+@all")
        for port in (srv.port, p.port):
            anon = redis.Redis(port=port)
            with pytest.raises(redis.AuthenticationError):
                anon.get("k")
            with pytest.raises(redis.ResponseError, match="unknown command"):
                anon.execute_command("NOSUCHCOMMAND", "x")
            with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
                anon.execute_command("GET")
            with pytest.raises(redis.ResponseError, match="WRONGPASS"):
                redis.Redis(port=port, password="wrong").get("k")
        # The proxy's own credentials: answered by the proxy, shared connections.
        c = redis.Redis(port=p.port, password="secret")
        assert c.set("k", "v") and c.get("k") == b"v"
        assert lent(p, "secret") == 0
        # Another ACL user: checked by the server on a dedicated connection.
        a = redis.Redis(port=p.port, username="alice", password="pw")
        assert a.execute_command("ACL", "WHOAMI") == b"alice"
        assert lent(p, "secret") == 1
        assert a.get("k") == b"v"
    finally:
        p.stop()
        srv.stop()


def test_command_table_from_the_master(proxy):
    c = proxy.client()

    wait_for(lambda: proxy_stats(c)["commands_source"] == "master", what="COMMAND table read")
    n = proxy_stats(c)["commands"]
    # Every command and sub-command the server reports (plus the proxy's own).
    raw = proxy.client()
    raw.response_callbacks = {}
    server = len(raw.execute_command("COMMAND", "LIST"))
    assert n >= server
    assert c.set("after-refresh", 1) and c.get("after-refresh") == b"1"


def test_select_inline_and_inside_multi(redis_server, proxy):
    out, closed = raw_exchange(proxy.port, b"SELECT 3\r\nSET in3 v\r\nSELECT 0\r\nSET in0 v\r\n")
    assert out == b"+OK\r\n+OK\r\n+OK\r\n+OK\r\n" and not closed
    direct = redis_server.client
    assert direct(db=3).get("in3") == b"v" and direct(db=0).get("in3") is None
    assert direct(db=0).get("in0") == b"v"
    c = proxy.client()
    with c.pipeline(transaction=True) as p:
        p.execute_command("SELECT", "4")
        p.set("first", "x")
        p.execute()
    c.set("after-exec", "y")  # the session is now on db 4
    assert direct(db=4).get("after-exec") == b"y"
    pipe = c.pipeline(transaction=False)
    pipe.execute_command("MULTI")
    pipe.execute_command("SELECT", "5")
    pipe.execute_command("DISCARD")
    pipe.set("after-discard", "z")  # still db 4
    pipe.execute()
    assert direct(db=4).get("after-discard") == b"z"
    assert direct(db=5).get("after-discard") is None
    # Other clients never see another database.
    assert proxy.client().get("after-exec") is None


@pytest.mark.parametrize("args", [
    # BLOCK past the first sixteen arguments
    ("XREAD",) + ("COUNT", "1") * 8 + ("BLOCK", "3000", "STREAMS", "s", "$"),
    # a consumer named "streams"
    ("XREADGROUP", "GROUP", "g", "streams", "BLOCK", "3000", "STREAMS", "s", ">"),
])
def test_xread_block_is_seen_wherever_it_stands(proxy, redis_server, args):
    """An XREAD that blocks takes a dedicated connection, however its
    options are written: on a shared one it would stall other clients."""
    redis_server.client().xgroup_create("s", "g", id="$", mkstream=True)
    c = proxy.client(socket_timeout=10)
    t = threading.Thread(target=lambda: c.execute_command(*args))
    t.start()
    blocked_on(redis_server)
    assert lent(proxy) == 1
    others = proxy.client()
    start = time.monotonic()
    for i in range(20):
        assert others.set("x%d" % i, i)
    assert time.monotonic() - start < 2, "requests waited behind the XREAD"
    t.join(10)


def test_a_small_first_reply_does_not_open_the_whole_window(redis_server, workdir):
    """Slow start: one small GET gives a small reply estimate; 120 GETs of
    4 MB sent next, unread, must not all be in flight at once."""
    proxy = Proxy(workdir, backend=redis_server.port).start()
    try:
        redis_server.client().set("big", b"x" * (4 << 20))
        base = proxy.rss_kb()
        s = socket.create_connection(("127.0.0.1", proxy.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(_resp("GET", "small"))
        assert s.recv(16) == b"$-1\r\n"
        s.sendall(_resp("GET", "big") * 120)
        grown = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            grown = max(grown, (proxy.rss_kb() - base) / 1024)
            time.sleep(0.05)
        # Without slow start: about 80 MB here (replies in flight, then
        # held until backpressure); with it: about 36 MB (9 in flight).
        assert grown < 60, "proxy grew %.0f MB for a client that reads nothing" % grown
        assert proxy.client().ping()
        s.close()
    finally:
        proxy.stop()


def test_a_busy_server_with_full_buffers_is_waited_for(workdir):
    """DEBUG SLEEP 5 on the server while clients pipeline 40 MB of SETs
    through the proxy (hold-timeout 1s): the server's receive buffer fills
    and it advertises a zero window, but it acknowledges; the proxy must not
    take that for a server cut off. Every SET succeeds after the sleep."""
    srv = RedisServer(workdir, args=("--enable-debug-command", "yes")).start()
    p = Proxy(workdir, backend=srv.port, args=["--set", "hold-timeout=1s"]).start()
    try:
        assert p.client().set("warm", "1")
        sleeper = threading.Thread(
            target=lambda: srv.client(socket_timeout=30).execute_command("DEBUG", "SLEEP", "5"))
        sleeper.start()
        time.sleep(0.2)
        errors = []

        def writer(i):
            pipe = p.client(socket_timeout=30).pipeline(transaction=False)
            for k in range(10):
                pipe.set("k%d_%d" % (i, k), b"x" * (1 << 20))
            errors.extend(x for x in pipe.execute(raise_on_error=False) if x is not True)
        writers = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for t in writers:
            t.start()
        for t in writers + [sleeper]:
            t.join(60)
        assert errors == [], errors[:2]
        assert "closed" not in p.log().split("ready:")[-1], p.log()[-2000:]
    finally:
        p.stop()
        srv.stop()
