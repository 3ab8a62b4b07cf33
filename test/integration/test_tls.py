"""TLS on the three legs (clients, Redis servers, Sentinels), against real
redis-server and redis-sentinel processes with TLS ports and certificates
made at test time with the openssl command (harness.TlsFiles)."""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest
import redis

from harness import (PROXY_BIN, Cluster, Proxy, RedisServer, Sentinel, TlsFiles, free_port,
                     make_workdir, port_open, proxy_stats, sanitized, topology, wait_for)


@pytest.fixture(scope="module")
def certs():
    d = make_workdir("sp-tls-")
    yield TlsFiles(d)
    shutil.rmtree(d, ignore_errors=True)


def tls_proxy(workdir, certs, *extra, backend=None, plain_listener=False):
    """A proxy with a TLS listener (and a plain one on the next free port if
    asked): (proxy, tls_port)."""
    tls_port = free_port()
    args = ["--listen", "tls://127.0.0.1:%d" % tls_port] + certs.proxy_listener_args()
    p = Proxy(workdir, backend=backend, args=args + list(extra), listen_flag=plain_listener)
    p.tls_port = tls_port
    p.start(wait=False)
    wait_for(lambda: port_open(tls_port) or not p.proc.alive(), what="TLS listener")
    assert p.proc.alive(), p.log()
    return p


def tls_client(certs, port, cert=None, **kw):
    kw.setdefault("socket_timeout", 10)
    return redis.Redis(host="127.0.0.1", port=port, **certs.client_kw(cert), **kw)


def redis_cli(certs, port, *args, cert=None):
    argv = ["redis-cli", "--tls", "--cacert", certs.path("ca.crt"), "-p", str(port)]
    if cert is not None:
        argv += ["--cert", certs.path(cert + ".crt"), "--key", certs.path(cert + ".key")]
    out = subprocess.run(argv + list(args), capture_output=True, text=True, timeout=20)
    return out.stdout.strip() + out.stderr.strip()


def test_tls_listener_beside_a_plain_one(workdir, certs, redis_server):
    """redis-cli --tls and redis-py ssl=True through a TLS listener, a plain
    listener beside it, and large values and pipelines both ways."""
    p = tls_proxy(workdir, certs, backend=redis_server.port, plain_listener=True)
    try:
        assert redis_cli(certs, p.tls_port, "SET", "k", "v") == "OK"
        assert redis_cli(certs, p.tls_port, "GET", "k") == "v"
        c = tls_client(certs, p.tls_port)
        big = os.urandom(3 * 1024 * 1024 + 17)
        assert c.set("big", big)
        assert c.get("big") == big
        pipe = c.pipeline(transaction=False)
        for i in range(2000):
            pipe.set("p%d" % i, b"x" * (i % 700))
            pipe.get("p%d" % i)
        out = pipe.execute()
        assert out[1::2] == [b"x" * (i % 700) for i in range(2000)]
        assert p.client().get("k") == b"v"  # the plain listener
        stats = proxy_stats(c)
        assert int(stats["tls_handshakes"]) >= 2
    finally:
        p.stop()


def test_slow_tls_reader_gets_every_byte(workdir, certs, redis_server):
    """Replies larger than the socket takes at once wait in the transport's
    buffer and go out as the client reads."""
    redis_server.client().set("big", os.urandom(4 * 1024 * 1024))
    want = redis_server.client().get("big")
    p = tls_proxy(workdir, certs, backend=redis_server.port)
    try:
        ctx = ssl.create_default_context(cafile=certs.path("ca.crt"))
        raw = socket.create_connection(("127.0.0.1", p.tls_port))
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        s.sendall(b"GET big\r\nPING\r\n")
        time.sleep(1.0)  # the proxy fills the socket and waits
        got = b""
        s.settimeout(20)
        while not got.endswith(b"\r\n+PONG\r\n"):
            chunk = s.recv(65536)
            assert chunk, "closed early"
            got += chunk
        assert got == b"$%d\r\n%s\r\n+PONG\r\n" % (len(want), want)
        s.close()
    finally:
        p.stop()


@pytest.mark.parametrize("clients,servers,sentinels", [
    (c, s, n) for c in (False, True) for s in (False, True) for n in (False, True)])
def test_every_mix_of_plain_and_tls(workdir, certs, clients, servers, sentinels):
    """Each leg on its own: writes reach the master, reads a replica that
    the proxy's own ROLE probe found healthy (over the servers' leg)."""
    cl = Cluster(workdir, replicas=1, sentinels=1, quorum=1, tls=certs, servers_tls=servers,
                 sentinels_tls=sentinels).start()
    args = cl.proxy_args() + ["--read-from", "replicas"]
    if servers:
        args += certs.proxy_leg_args("backend-tls")
    if sentinels:
        args += certs.proxy_leg_args("sentinel.tls")
    if clients:
        p = tls_proxy(workdir, certs, *args)
        client = tls_client(certs, p.tls_port)
    else:
        p = Proxy(workdir, args=args).start()
        client = p.client()
    try:
        wait_for(lambda: "healthy=1" in str(topology(client)), timeout=20,
                 what="a healthy replica")
        assert client.set("k", "v")
        assert cl.master.client().get("k") == b"v"
        wait_for(lambda: client.get("k") == b"v", what="the read")
        assert int(proxy_stats(client)["reads_replicas"]) >= 1
    finally:
        p.stop()
        cl.stop()


@pytest.mark.parametrize("auth", ["required", "optional"])
def test_client_certificates(workdir, certs, redis_server, auth):
    p = tls_proxy(workdir, certs, "--set", "tls.client-auth=" + auth, "--set",
                  "tls.ca=" + certs.path("ca.crt"), backend=redis_server.port)
    try:
        assert redis_cli(certs, p.tls_port, "PING", cert="client") == "PONG"
        # A certificate from another CA, or expired, is refused either way.
        with pytest.raises(redis.ConnectionError):
            tls_client(certs, p.tls_port, cert="other-client").ping()
        with pytest.raises(redis.ConnectionError):
            tls_client(certs, p.tls_port, cert="expired-client").ping()
        wait_for(lambda: "certificate verify failed: certificate has expired" in p.log(),
                 what="the expired certificate in the log")
        if auth == "required":
            with pytest.raises(redis.ConnectionError):
                tls_client(certs, p.tls_port).ping()
            wait_for(lambda: "TLS handshake failed: peer did not return a certificate" in p.log(),
                     what="the reason in the log")
        else:
            assert tls_client(certs, p.tls_port).ping()
        wait_for(lambda: "TLS handshake failed: certificate verify failed" in p.log(),
                 what="the other CA's certificate in the log")
    finally:
        p.stop()


@pytest.mark.parametrize("leg,case", [
    ("backend-tls", "wrong-ca"), ("backend-tls", "expired"), ("backend-tls", "wrong-name"),
    ("sentinel.tls", "wrong-ca"), ("sentinel.tls", "expired")])
def test_a_server_the_proxy_must_not_trust(workdir, certs, leg, case):
    """A wrong CA, an expired certificate or a name that does not match on
    the servers' or the Sentinels' leg: nothing is sent there, the reason is
    logged, and clients get an error once hold-timeout is over."""
    bad = {"wrong-ca": "other-server", "expired": "expired-server"}.get(case, "server")
    want = {"wrong-ca": "unable to get local issuer certificate",
            "expired": "certificate has expired", "wrong-name": "hostname mismatch"}[case]
    if leg == "backend-tls":
        srv = RedisServer(workdir, tls=certs, cert=bad).start()
        extra = certs.proxy_leg_args("backend-tls")
        if case == "wrong-name":
            extra += ["--set", "backend-tls.server-name=redis.example.org"]
        p = Proxy(workdir, backend=srv.port, args=extra + ["--set", "hold-timeout=500ms"]).start()
        others = [srv]
    else:
        srv = RedisServer(workdir).start()
        s = Sentinel(workdir, srv.port, quorum=1, tls=certs, listen_tls=True, cert=bad).start()
        p = Proxy(workdir, args=["--master-name", "mymaster", "--sentinel", "127.0.0.1:%d" % s.port,
                                 "--set", "hold-timeout=500ms"] +
                  certs.proxy_leg_args("sentinel.tls")).start()
        others = [s, srv]
    try:
        wait_for(lambda: want in p.log(), what="the reason in the log: " + want)
        assert "TLS handshake" in p.log()
        with pytest.raises(redis.ResponseError, match="no usable"):
            p.client().set("k", "v")
    finally:
        p.stop()
        for o in others:
            o.stop()


def test_hostile_tls_clients_close_alone(workdir, certs, redis_server):
    """Garbage, a plain-text client and handshakes that stall halfway: each
    closes alone (the stalled ones after handshake-timeout) while a TLS
    client is served; descriptors come back after each round of 1,000, and
    memory settles (the allocator keeps some of the first rounds' peak:
    rounds 3 and 4 must not add more than its noise to it; the sanitizer
    suite checks for leaks)."""
    p = tls_proxy(workdir, certs, "--set", "tls.handshake-timeout=300ms",
                  backend=redis_server.port)
    good = tls_client(certs, p.tls_port)
    # Half a ClientHello (a record header promising more than comes).
    hello_half = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(20)

    def storm():
        socks = []
        for i in range(1000):
            s = socket.create_connection(("127.0.0.1", p.tls_port))
            s.sendall([b"PING\r\n", os.urandom(64), hello_half, b"\x16"][i % 4])
            socks.append(s)
            if i % 200 == 199:
                assert good.ping()
        deadline = time.monotonic() + 20
        for s in socks:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass
            except socket.timeout:
                raise AssertionError("a connection was not closed")
            s.close()
        assert good.set("still", "here") and good.get("still") == b"here"
        wait_for(lambda: len(os.listdir("/proc/%d/fd" % p.proc.pid)) <= fds0,
                 what="descriptors back to %d" % fds0)

    try:
        assert good.ping()
        fds0 = len(os.listdir("/proc/%d/fd" % p.proc.pid))
        storm()
        storm()
        rss2 = p.rss_kb()
        storm()
        storm()
        if not sanitized():
            # The allocator's own settling moves a few MB; a leak of the
            # connection's TLS state (over 10 KB each) would add 20 MB.
            assert p.rss_kb() < rss2 + 8192, (rss2, p.rss_kb())
        assert int(proxy_stats(good)["tls_handshake_failures"]) >= 4000
        assert "TLS handshake timeout" in p.log()
    finally:
        p.stop()


def _served_serial(port, certs):
    ctx = ssl.create_default_context(cafile=certs.path("ca.crt"))
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return s.getpeercert()["serialNumber"]


def test_certificate_reload_on_sighup(workdir, certs, redis_server):
    """SIGHUP re-reads the files: new handshakes get the new certificate,
    an established connection goes on; a broken file at reload is logged and
    the old certificate stays in use."""
    d = os.path.join(workdir, "live")
    os.makedirs(d)
    for n in ("crt", "key"):
        shutil.copy(certs.path("server." + n), os.path.join(d, "proxy." + n))
    port = free_port()
    p = Proxy(workdir, listen_flag=False, args=[
        "--listen", "tls://127.0.0.1:%d" % port, "--set", "tls.cert=" + os.path.join(d, "proxy.crt"),
        "--set", "tls.key=" + os.path.join(d, "proxy.key")], backend=redis_server.port)
    p.start(wait=False)
    wait_for(lambda: port_open(port), what="TLS listener")
    try:
        old = tls_client(certs, port, single_connection_client=True)
        assert old.set("k", "1")
        first = _served_serial(port, certs)
        certs.make("server2", "ca")
        for n in ("crt", "key"):
            shutil.copy(certs.path("server2." + n), os.path.join(d, "proxy." + n))
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "tls: certificates reloaded" in p.log(), what="the reload")
        second = _served_serial(port, certs)
        assert second != first
        assert old.get("k") == b"1"  # established: untouched
        with open(os.path.join(d, "proxy.key"), "w") as f:
            f.write("not a key\n")
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed, the running configuration stays" in p.log(),
                 what="the failed reload")
        assert "proxy.key" in p.log().split("reload failed")[-1].splitlines()[0]
        assert _served_serial(port, certs) == second
        assert old.get("k") == b"1"
    finally:
        p.stop()


def test_check_mode_loads_the_files(workdir, certs):
    """-t fails on a file that does not load or a key that does not match,
    naming the file."""
    def check(*args):
        out = subprocess.run([PROXY_BIN, "-t", "--backend", "127.0.0.1:6379", "--listen",
                              "tls://127.0.0.1:6390"] + list(args), capture_output=True,
                             text=True)
        return out.returncode, out.stdout + out.stderr

    rc, out = check("--set", "tls.cert=" + certs.path("server.crt"),
                    "--set", "tls.key=" + certs.path("server.key"))
    assert rc == 0, out
    rc, out = check("--set", "tls.cert=" + certs.path("server.crt"),
                    "--set", "tls.key=" + certs.path("client.key"))
    assert rc == 1 and "does not match" in out and "client.key" in out, out
    rc, out = check("--set", "tls.cert=/nonexistent/proxy.crt",
                    "--set", "tls.key=" + certs.path("server.key"))
    assert rc == 1 and "/nonexistent/proxy.crt" in out, out
    rc, out = check("--set", "tls.cert=/nonexistent/\x1b[31mproxy\r.crt",
                    "--set", "tls.key=" + certs.path("server.key"))
    assert rc == 1 and "/nonexistent/?[31mproxy?.crt" in out, out  # one harmless line
    rc, out = check()
    assert rc == 1 and "tls.cert" in out, out
    rc, out = check("--set", "tls.cert=" + certs.path("server.crt"),
                    "--set", "tls.key=" + certs.path("server.key"),
                    "--set", "backend-tls.ca=" + certs.path("ca.crt"))
    assert rc == 1 and "backend-tls.enabled" in out, out


def test_kill9_failover_with_tls_on_every_leg(workdir, certs):
    """The plain kill -9 guarantees with TLS on all three legs: no client
    connection closed, at most the in-flight write fails."""
    from test_sentinel import Load, check_failover_outcome, wait_proxy_master
    cl = Cluster(workdir, tls=certs, servers_tls=True, sentinels_tls=True).start()
    args = (cl.proxy_args() + certs.proxy_leg_args("backend-tls") +
            certs.proxy_leg_args("sentinel.tls"))
    p = tls_proxy(workdir, certs, *args)
    p.client = lambda **kw: tls_client(certs, p.tls_port, **kw)
    try:
        wait_for(lambda: topology(p.client()).get("master") == "127.0.0.1:%d" % cl.master.port,
                 what="the proxy to use the master")
        old = cl.master
        load = Load(p.tls_port, clients=10, client_kw=certs.client_kw()).start()
        load.wait_ops(50)
        kill_time = time.monotonic()
        old.kill9()
        new_port = cl.wait_master_change(old.port)
        wait_proxy_master(p, new_port)
        load.wait_ops(50)
        load.stop()
        check_failover_outcome(load, kill_time, cl.server_on(new_port), cluster=cl)
    finally:
        p.stop()
        cl.stop()


def test_a_listener_with_tls_settings_of_its_own(workdir, certs, redis_server):
    """A listener's tls: mapping (its own certificate, client certificates
    required) beside a listener on the tls.* keys; SIGHUP reloads both."""
    certs.make("own", "ca")
    own_port, shared_port = free_port(), free_port()
    config = """backend: 127.0.0.1:%d
listen:
  - tls://127.0.0.1:%d
  - address: 127.0.0.1:%d
    tls:
      cert: %s
      key: %s
      ca: %s
      client-auth: required
tls:
  cert: %s
  key: %s
""" % (redis_server.port, shared_port, own_port, certs.path("own.crt"), certs.path("own.key"),
       certs.path("ca.crt"), certs.path("server.crt"), certs.path("server.key"))
    p = Proxy(workdir, config=config, listen_flag=False).start(wait=False)
    wait_for(lambda: port_open(own_port) and port_open(shared_port), what="both listeners")
    try:
        assert tls_client(certs, shared_port).ping()
        assert tls_client(certs, own_port, cert="client").ping()
        with pytest.raises(redis.ConnectionError):
            tls_client(certs, own_port).ping()
        assert _served_serial(own_port, certs) != _served_serial(shared_port, certs)
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "listener 127.0.0.1:%d: tls: certificates reloaded" % own_port in p.log(),
                 what="the listener's own reload")
        assert "\ntls: certificates reloaded" not in p.log()
        assert "] tls: certificates reloaded" in p.log()
    finally:
        p.stop()


def _tls_server(certs, answer):
    """A TLS server on loopback that answers its first read with answer:
    (port, the socket)."""
    import threading
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.path("server.crt"), certs.path("server.key"))
    srv = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                s, _ = srv.accept()
            except OSError:
                return
            try:
                t = ctx.wrap_socket(s, server_side=True)
                t.recv(4096)
                t.sendall(answer)
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1], srv


def test_a_tls_sentinel_answering_garbage(workdir, certs):
    """A reply that is not RESP closes the link to that Sentinel, and
    nothing else (it used to read on from the closed TLS transport)."""
    port, srv = _tls_server(certs, b"@this is not RESP\r\n")
    p = Proxy(workdir, args=["--master-name", "mymaster", "--sentinel", "127.0.0.1:%d" % port,
                             "--set", "sentinel.poll-interval=100ms"] +
              certs.proxy_leg_args("sentinel.tls")).start()
    try:
        time.sleep(1.0)
        assert p.proc.alive()
        assert p.client().execute_command("PROXY", "STATS")
    finally:
        p.stop()
        srv.close()


def test_a_server_handshake_split_across_segments(workdir, certs):
    """The server's first handshake record comes in two parts 2 s apart (a
    relay splits it): the worker waits for the rest without spinning, and
    serves other clients meanwhile."""
    import threading
    rs = RedisServer(workdir, tls=certs).start()
    lsn = socket.create_server(("127.0.0.1", 0))
    relay_port = lsn.getsockname()[1]
    first = [True]

    def pump(src, dst, split):
        try:
            if split:
                buf = b""
                while len(buf) < 10:
                    d = src.recv(10 - len(buf))
                    if not d:
                        return
                    buf += d
                dst.sendall(buf)  # the record header and 5 bytes of the ServerHello
                time.sleep(2.0)
            while True:
                d = src.recv(65536)
                if not d:
                    break
                dst.sendall(d)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def relay():
        while True:
            try:
                a, _ = lsn.accept()
            except OSError:
                return
            b = socket.create_connection(("127.0.0.1", rs.port))
            split, first[0] = first[0], False
            threading.Thread(target=pump, args=(a, b, False), daemon=True).start()
            threading.Thread(target=pump, args=(b, a, split), daemon=True).start()

    threading.Thread(target=relay, daemon=True).start()
    p = Proxy(workdir, backend=relay_port,
              args=certs.proxy_leg_args("backend-tls") + ["--set", "connect-timeout=5s"]).start()
    try:
        cpu0 = _cpu(p.proc.pid)
        t0 = time.monotonic()
        assert p.client().execute_command("PROXY", "STATS")
        assert time.monotonic() - t0 < 1.0
        assert p.client().ping()  # once the handshake is complete
        assert _cpu(p.proc.pid) - cpu0 < 1.0, "the worker spun while it waited"
    finally:
        p.stop()
        lsn.close()
        rs.stop()


def _cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_quit_after_a_large_reply_delivers_it_all():
    """QUIT behind a reply larger than the socket takes: the connection
    closes once every byte the TLS transport holds is written (in a network
    namespace with small send buffers: tls_quit_netns.py)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tls_quit_netns.py")
    setup = 'ip link set lo up && echo "4096 16384 65536" > /proc/sys/net/ipv4/tcp_wmem'
    shell = setup + ' && exec /usr/bin/python3 "$0"'
    try:
        probe = subprocess.run(["unshare", "-n", "sh", "-c", setup], capture_output=True)
    except OSError as e:
        pytest.skip("needs unshare: %s" % e)
    if probe.returncode != 0:
        pytest.skip("needs a network namespace with its own tcp_wmem (root, ip): %s"
                    % probe.stderr.decode().strip())
    env = dict(os.environ, SP_BINARY=PROXY_BIN)
    out = subprocess.run(["unshare", "-n", "sh", "-c", shell, script], capture_output=True,
                         text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
