"""Live reload: SIGHUP and PROXY CONFIG RELOAD read the file again, check it
completely, and apply it without closing a client connection; a file that
fails leaves everything as it was."""
import os
import signal
import socket
import threading
import time

import pytest
import redis

from harness import (Proxy, TlsFiles, connect_refused, free_port, port_open, proxy_stats,
                     topology, wait_for)


class Reloadable:
    """A proxy started from a file that the test rewrites."""

    def __init__(self, workdir, text, args=()):
        self.path = os.path.join(workdir, "reload.yaml")
        self.write(text)
        self.proxy = Proxy(workdir, listen_flag=False, args=["-c", self.path] + list(args))

    def write(self, text):
        with open(self.path + ".new", "w") as f:
            f.write(text)
        os.rename(self.path + ".new", self.path)

    def reload(self, client, text=None):
        if text is not None:
            self.write(text)
        return client.execute_command("PROXY", "CONFIG", "RELOAD").decode()


def test_listeners_timeouts_and_log_level_change_live(workdir, redis_server):
    a, b = free_port(), free_port()
    sock = os.path.join(workdir, "live.sock")
    r = Reloadable(workdir, "backend: 127.0.0.1:%d\nlisten: [127.0.0.1:%d]\n" % (redis_server.port, a))
    p = r.proxy.start(wait=False)
    wait_for(lambda: port_open(a), what="the first listener")
    try:
        c = redis.Redis(port=a, single_connection_client=True, socket_timeout=30)
        assert c.set("k", "v")
        out = r.reload(c, """backend: 127.0.0.1:%d
listen: [127.0.0.1:%d, "unix:%s"]
workers: 3
log-level: debug
client-idle-timeout: 1h
""" % (redis_server.port, b, sock))
        assert out.startswith("reloaded ") and "4 change(s)" in out, out
        wait_for(lambda: port_open(b) and os.path.exists(sock), what="the new listeners")
        wait_for(lambda: connect_refused(a), what="the removed listener to close")
        # The connection made through the removed listener goes on.
        assert c.get("k") == b"v"
        assert redis.Redis(port=b).get("k") == b"v"
        assert redis.Redis(unix_socket_path=sock).get("k") == b"v"
        log = p.log()
        assert "reload: workers: 1 -> 3 needs a restart; it stays 1" in log
        assert "reload: client-idle-timeout: 0 -> 1h" in log
        assert "reload: listen: 127.0.0.1:%d -> 127.0.0.1:%d, unix:%s" % (a, b, sock) in log
        assert proxy_stats(c)["connections"] >= 3
        # log-level debug took effect: a protocol error is logged at debug.
        with socket.create_connection(("127.0.0.1", b)) as raw:
            raw.sendall(b"*x\r\n")
            raw.recv(100)
        wait_for(lambda: " debug [" in p.log(), what="debug lines")
        # The unix listener goes away with its file; the TCP one is kept.
        assert r.reload(c, "backend: 127.0.0.1:%d\nlisten: [127.0.0.1:%d]\n"
                        % (redis_server.port, b)).startswith("reloaded ")
        wait_for(lambda: not os.path.exists(sock), what="the socket file to go")
        assert c.get("k") == b"v" and redis.Redis(port=b).get("k") == b"v"
    finally:
        p.stop()


def test_a_file_that_fails_changes_nothing(workdir, redis_server):
    a, b = free_port(), free_port()
    base = "backend: 127.0.0.1:%d\nlisten: [127.0.0.1:%s]\nadmin: {listen: 127.0.0.1:%d}\n"
    admin = free_port()
    r = Reloadable(workdir, base % (redis_server.port, a, admin))
    p = r.proxy.start(wait=False)
    wait_for(lambda: port_open(a), what="the listener")
    try:
        c = redis.Redis(port=a, single_connection_client=True, socket_timeout=30)
        # A bad value: the error names file, line and key, as -t does.
        bad = base % (redis_server.port, "%d, 127.0.0.1:%d" % (a, b), admin) + "hold-timeout: soon\n"
        with pytest.raises(redis.ResponseError) as e:
            r.reload(c, bad)
        assert "reload.yaml:4: hold-timeout" in str(e.value), e.value
        assert "running configuration stays" in str(e.value)
        # A new address that cannot be bound: nothing opens, nothing closes.
        held = socket.create_server(("127.0.0.1", 0))
        busy = held.getsockname()[1]
        with pytest.raises(redis.ResponseError) as e:
            r.reload(c, "backend: 127.0.0.1:%d\nlisten: [127.0.0.1:%d, 127.0.0.1:%d]\n"
                     "admin: {listen: 127.0.0.1:%d}\n" % (redis_server.port, b, busy, admin))
        held.close()
        assert "127.0.0.1:%d" % busy in str(e.value), e.value
        assert connect_refused(b) and port_open(a)
        assert "reload.yaml" in p.log().split("reload failed")[1].splitlines()[0]
        import urllib.request
        metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin).read().decode()
        assert 'sentinel_proxy_config_reloads_total{result="failed"} 2' in metrics
        assert "sentinel_proxy_config_last_reload_successful 0" in metrics
        assert c.ping()
        # Fixed, through SIGHUP this time.
        r.write(base % (redis_server.port, b, admin))
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: port_open(b) and connect_refused(a), what="the reload")
        assert c.ping()
        metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin).read().decode()
        assert "sentinel_proxy_config_last_reload_successful 1" in metrics
    finally:
        p.stop()


def test_read_from_and_sentinel_addresses(workdir, cluster):
    port = free_port()
    ghost = free_port()  # a Sentinel that never answers
    sentinels = ", ".join("127.0.0.1:%d" % s.port for s in cluster.sentinels)
    text = """listen: [127.0.0.1:%d]
read-from: %s
sentinel:
  master-name: mymaster
  addresses: [%s]
  forget-after: 1s
"""
    r = Reloadable(workdir, text % (port, "master", sentinels))
    p = r.proxy.start(wait=False)
    wait_for(lambda: "ready:" in p.log(), what="the proxy")
    try:
        c = redis.Redis(port=port, single_connection_client=True, socket_timeout=30)
        c.set("k", "v")
        for _ in range(20):
            assert c.get("k") == b"v"
        assert proxy_stats(c)["reads_replicas"] == 0
        out = r.reload(c, text % (port, "replicas", sentinels + ", 127.0.0.1:%d" % ghost))
        assert "read-from: master -> replicas" in p.log(), out
        # The same connection's reads go to the replicas from now on.
        wait_for(lambda: c.get("k") == b"v" and proxy_stats(c)["reads_replicas"] > 0,
                 what="reads on replicas")
        wait_for(lambda: "addr=127.0.0.1:%d,state=down,origin=configured" % ghost
                 in str(topology(c)), what="the added Sentinel")
        # Removed: kept as learnt, then forgotten, as no other Sentinel lists it.
        r.reload(c, text % (port, "replicas", sentinels))
        wait_for(lambda: "127.0.0.1:%d" % ghost not in str(topology(c)), timeout=15,
                 what="the removed Sentinel to be forgotten")
        assert topology(c)["master"].startswith("127.0.0.1:%d" % cluster.master.port)
    finally:
        p.stop()


def test_a_tls_listener_added_live(workdir, redis_server):
    certs = TlsFiles(os.path.join(workdir, "tls"))
    a, t = free_port(), free_port()
    base = "backend: 127.0.0.1:%d\nlisten: [127.0.0.1:%d%s]\n" % (redis_server.port, a, "%s")
    r = Reloadable(workdir, base % "")
    p = r.proxy.start(wait=False)
    wait_for(lambda: port_open(a), what="the listener")
    try:
        c = redis.Redis(port=a, single_connection_client=True, socket_timeout=30)
        with_tls = base % (", tls://127.0.0.1:%d" % t) + "tls: {cert: %s, key: %s}\n" % (
            certs.path("server.crt"), certs.path("server.key"))
        # A missing key file: refused as a whole, the TLS port never opens.
        with pytest.raises(redis.ResponseError) as e:
            r.reload(c, with_tls.replace("server.key", "missing.key"))
        assert "missing.key" in str(e.value)
        assert connect_refused(t)
        r.reload(c, with_tls)
        wait_for(lambda: port_open(t), what="the TLS listener")
        tc = redis.Redis(port=t, socket_timeout=10, **certs.client_kw())
        assert tc.set("t", "1") and c.get("t") == b"1"
    finally:
        p.stop()


def test_reloads_under_load_cost_no_client_error(workdir, redis_server):
    """20 clients on one listener while 10 reloads switch read-from and add
    and remove a second listener: no error, no connection closed."""
    a, b = free_port(), free_port()
    text = "backend: 127.0.0.1:%d\nlisten: [127.0.0.1:%d%s]\nread-from: %s\n"
    r = Reloadable(workdir, text % (redis_server.port, a, "", "master"),
                   args=["--workers", os.environ.get("SP_WORKERS", "2")])
    p = r.proxy.start(wait=False)
    wait_for(lambda: port_open(a), what="the listener")
    stop = threading.Event()
    phase = [0]  # 0: before the reloads, 1: during them
    errors, longest, done, moved = [], [0.0, 0.0], [0], []

    def load(k):
        c = redis.Redis(port=a, single_connection_client=True, socket_timeout=30)
        n = 0
        try:
            c.ping()
            sock = c.connection._sock
            while not stop.is_set() and n < 100000:
                t0 = time.monotonic()
                assert c.set("load:%d" % k, n)
                assert c.get("load:%d" % k) == str(n).encode()
                at = phase[0]
                longest[at] = max(longest[at], time.monotonic() - t0)
                n += 1
            if c.connection._sock is not sock:
                moved.append(k)  # redis-py reconnected: the proxy closed it
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(repr(e))
        done[0] += n

    threads = [threading.Thread(target=load, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        phase[0] = 1
        admin = redis.Redis(port=a, socket_timeout=30)
        for i in range(10):
            extra = ", 127.0.0.1:%d" % b if i % 2 == 0 else ""
            mode = "prefer-replicas" if i % 2 == 0 else "master"
            out = r.reload(admin, text % (redis_server.port, a, extra, mode))
            assert out.startswith("reloaded "), out
            wait_for(lambda: port_open(b) if extra else connect_refused(b), what="reload %d" % i)
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        p.stop()
    assert not errors, errors[:3]
    assert not moved, "connections closed under clients %r" % moved
    assert done[0] > 200
    print("reloads under load: %d SET+GET pairs by 20 clients, 0 errors, 0 connections closed; "
          "longest pair %.1f ms in the second before the reloads, %.1f ms during 10 reloads"
          % (done[0], longest[0] * 1000, longest[1] * 1000))


def test_a_corrected_sentinel_password_is_used(workdir, redis_server):
    """A proxy started with a wrong sentinel.password never gets an answer;
    the corrected file, reloaded, reaches the Sentinel at once (a connection
    whose AUTH was refused is made again with the new password)."""
    from harness import Process, REDIS_SENTINEL, Sentinel
    s = Sentinel(workdir, redis_server.port, quorum=1)
    with open(s.conf, "a") as f:
        f.write("requirepass right\n")
    s.proc = Process([REDIS_SENTINEL, s.conf], os.path.join(s.dir, "sentinel.log")).start()
    wait_for(lambda: redis.Redis(port=s.port, password="right").ping(), what="the Sentinel")
    port = free_port()
    text = """listen: [127.0.0.1:%d]
sentinel: {master-name: mymaster, addresses: [127.0.0.1:%d], password: %s}
"""
    r = Reloadable(workdir, text % (port, s.port, "wrong"))
    p = r.proxy.start(wait=False)
    try:
        wait_for(lambda: "AUTH failed" in p.log(), what="the refused AUTH")
        c = redis.Redis(port=port, socket_timeout=30)
        assert "ready:" not in p.log()
        assert r.reload(c, text % (port, s.port, "right")).startswith("reloaded ")
        assert "reload: sentinel.password: (secret) -> (changed)" in p.log()
        wait_for(lambda: "ready:" in p.log(), what="the master confirmed")
        assert c.set("k", "v") and redis_server.client().get("k") == b"v"
    finally:
        p.stop()
        s.stop()


def test_reload_requests_wait_for_the_control_thread_only(workdir, redis_server):
    """PROXY CONFIG RELOAD waits for its own reload, not as a held request:
    hold-timeout and hold-memory do not apply, and each one reloads (a
    later one is never answered from an earlier result); under CLIENT REPLY
    OFF it says nothing, as the server would."""
    a = free_port()
    text = "backend: 127.0.0.1:%d\nlisten: [127.0.0.1:%d]\nhold-timeout: 100ms\n" \
           "hold-memory: 0\nmax-clients: %d\n"
    r = Reloadable(workdir, text % (redis_server.port, a, 100))
    p = r.proxy.start(wait=False)
    wait_for(lambda: port_open(a), what="the listener")
    try:
        c = redis.Redis(port=a, single_connection_client=True, socket_timeout=30)
        for n in range(101, 104):
            assert r.reload(c, text % (redis_server.port, a, n)).startswith("reloaded "), n
            assert "reload: max-clients: %d -> %d" % (n - 1, n) in p.log()
        with open(r.path, "a") as f:
            f.write("hold-timeout: soon\n")
        with pytest.raises(redis.ResponseError, match="hold-timeout"):
            r.reload(c)
        r.write(text % (redis_server.port, a, 200))
        raw = socket.create_connection(("127.0.0.1", a))
        raw.sendall(b"CLIENT REPLY OFF\r\nPROXY CONFIG RELOAD\r\nCLIENT REPLY ON\r\nPING\r\n")
        wait_for(lambda: "reload: max-clients: 103 -> 200" in p.log(), what="the silent reload")
        got = b""
        while not got.endswith(b"+PONG\r\n"):
            got += raw.recv(1000)
        assert got == b"+OK\r\n+PONG\r\n", got
        raw.close()
    finally:
        p.stop()


def test_a_reload_asked_by_a_subscriber_while_its_server_is_gone(workdir, redis_server):
    """A subscriber asks for a reload, then loses its server while the reload
    runs: its request is answered by the reload, not failed as a request
    held for the resubscription, and its next one reloads again."""
    a = free_port()
    text = "backend: 127.0.0.1:%d\nlisten: [127.0.0.1:%d]\nhold-timeout: 1s\nmax-clients: %d\n"
    r = Reloadable(workdir, text % (redis_server.port, a, 100))
    p = r.proxy.start(wait=False)
    wait_for(lambda: port_open(a), what="the listener")
    try:
        sub = socket.create_connection(("127.0.0.1", a))
        sub.sendall(b"SUBSCRIBE ch\r\n")
        got = b""
        while not got.endswith(b":1\r\n"):
            got += sub.recv(1000)
        # The file becomes a pipe: the reload blocks reading it.
        fifo = r.path + ".fifo"
        os.mkfifo(fifo)
        os.rename(fifo, r.path)
        sub.sendall(b"PROXY CONFIG RELOAD\r\n")
        time.sleep(0.3)
        redis_server.stop()  # the subscriber's connection goes; it waits to subscribe again
        time.sleep(1.5)      # past hold-timeout
        with open(r.path, "w") as f:
            f.write(text % (redis_server.port, a, 101))
        sub.settimeout(10)
        got = b""
        while not got.endswith(b"\r\n"):
            got += sub.recv(1000)
        assert got.startswith(b"+reloaded ") and b"1 change(s)" in got, got
        os.unlink(r.path)
        redis_server.start()
        r.write(text % (redis_server.port, a, 102))
        sub.sendall(b"PROXY CONFIG RELOAD\r\n")
        got = b""
        while not got.endswith(b"\r\n"):
            got += sub.recv(1000)
        assert got.startswith(b"+reloaded ") and b"1 change(s)" in got, got
        assert "reload: max-clients: 101 -> 102" in p.log()
        sub.close()
    finally:
        p.stop()
