"""The admin HTTP endpoints: /metrics (checked with promtool and scraped by a
real Prometheus server), /healthz, /readyz, /topology, and how the HTTP
side takes hostile or odd input."""
import json
import os
import re
import select
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest
import redis

from harness import (Process, Proxy, free_port, port_open, raw_exchange, wait_for)

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool (Debian package prometheus) not installed")


def admin_proxy(workdir, backend=None, args=()):
    port = free_port()
    p = Proxy(workdir, backend=backend, args=["--set", "admin.listen=127.0.0.1:%d" % port] +
              list(args))
    p.admin = port
    p.start()
    wait_for(lambda: port_open(port), what="admin port")
    return p


def get(port, path, method="GET"):
    """(status, headers, body) of one request on its own connection."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def metrics(port):
    """The samples of a scrape: {'name{labels}': value}."""
    status, headers, body = get(port, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


@pytest.fixture
def fixed(workdir, redis_server):
    p = admin_proxy(workdir, backend=redis_server.port)
    yield p
    p.stop()


@needs_promtool
def test_metrics_pass_promtool_and_count_traffic(fixed, redis_server):
    c = fixed.client()
    before = metrics(fixed.admin)
    for i in range(100):
        c.set("k%d" % i, "v")
    for i in range(40):
        c.get("k%d" % i)
    with pytest.raises(Exception):
        c.incr("k0")  # WRONGTYPE-like: not an integer
    c.execute_command("PROXY", "VERSION")
    time.sleep(0.3)  # gauges are published every 0.1 s
    m = metrics(fixed.admin)

    def grew(key):
        return m.get(key, 0) - before.get(key, 0)

    assert grew('sentinel_proxy_requests_total{kind="write",destination="master"}') == 101
    assert grew('sentinel_proxy_requests_total{kind="read",destination="master"}') == 40
    assert grew('sentinel_proxy_requests_total{kind="other",destination="local"}') == 1
    assert grew('sentinel_proxy_replies_total{outcome="server_error"}') == 1
    assert grew('sentinel_proxy_replies_total{outcome="ok"}') == 141
    assert m['sentinel_proxy_client_connections'] >= 1
    assert m['sentinel_proxy_master_confirmed'] == 1
    assert m['sentinel_proxy_master_info{address="127.0.0.1:%d"}' % redis_server.port] == 1
    assert m['sentinel_proxy_backend_connections{state="ready"}'] >= 1
    assert m['process_resident_memory_bytes'] > 0
    assert grew("sentinel_proxy_client_bytes_received_total") > 100 * len(b"*3\r\n$3\r\nSET\r\n")
    # The histogram is consistent: cumulative buckets, +Inf equals the count.
    buckets = [(k, v) for k, v in m.items()
               if k.startswith('sentinel_proxy_request_duration_seconds_bucket{destination="master"')]
    values = [v for _, v in buckets]
    assert values == sorted(values) and len(values) == 19  # 18 bounds and +Inf
    assert buckets[-1][0].endswith('le="+Inf"}')
    assert values[-1] == m['sentinel_proxy_request_duration_seconds_count{destination="master"}']
    # promtool on a live scrape: the format and the naming conventions.
    body = get(fixed.admin, "/metrics")[2]
    out = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    assert out.stdout.strip() == b"" and out.stderr.strip() == b"", out


def test_health_ready_topology_fixed(fixed, redis_server):
    status, _, body = get(fixed.admin, "/healthz")
    assert (status, body) == (200, b"ok\n")
    status, _, body = get(fixed.admin, "/readyz")
    assert status == 200 and b"127.0.0.1:%d" % redis_server.port in body
    status, headers, body = get(fixed.admin, "/topology")
    assert status == 200 and headers["Content-Type"] == "application/json"
    t = json.loads(body)
    assert t["mode"] == "fixed" and t["master"] == "127.0.0.1:%d" % redis_server.port
    status, headers, body = get(fixed.admin, "/metrics", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 1000


def test_refusals_and_protocol_errors_counted(workdir, redis_server):
    p = admin_proxy(workdir, backend=redis_server.port, args=["--set", "max-clients=1"])
    try:
        def one_client():
            # The start-up check's own connection may still hold the slot.
            s = socket.create_connection(("127.0.0.1", p.port))
            s.sendall(b"PING\r\n")
            if s.recv(64) == b"+PONG\r\n":
                return s
            s.close()
            return None
        keep = wait_for(one_client, what="a client slot")
        before = metrics(p.admin)["sentinel_proxy_client_connections_refused_total"]
        out, closed = raw_exchange(p.port, b"PING\r\n")
        assert closed and b"max number of clients" in out
        keep.sendall(b"*1\r\n$x\r\n")  # malformed bulk length
        assert b"ERR" in keep.recv(256)
        keep.close()
        m = metrics(p.admin)
        assert m["sentinel_proxy_client_connections_refused_total"] == before + 1
        assert m["sentinel_proxy_client_protocol_errors_total"] == 1
    finally:
        p.stop()


def test_not_ready_without_master_says_why(workdir):
    """A Sentinel that does not answer: /readyz is 503 and says what it saw."""
    dead = free_port()
    p = admin_proxy(workdir, args=["--master-name", "mymaster", "--sentinel",
                                   "127.0.0.1:%d" % dead])
    try:
        wait_for(lambda: get(p.admin, "/readyz")[2].find(b"Sentinels: 0 of 1") >= 0,
                 what="a round to be reported")
        status, _, body = get(p.admin, "/readyz")
        assert status == 503
        assert body.startswith(b"not ready: no master confirmed")
        assert get(p.admin, "/healthz")[0] == 200
        m = metrics(p.admin)
        assert m["sentinel_proxy_master_confirmed"] == 0
        assert m['sentinel_proxy_sentinels{state="silent"}'] == 1
        t = json.loads(get(p.admin, "/topology")[2])
        assert t["master"] is None
        node = t["sentinels"]["nodes"][0]
        assert node["state"] == "down" and node["last_error"]
    finally:
        p.stop()


def test_sentinel_layout_and_failover(workdir, cluster):
    p = admin_proxy(workdir, args=cluster.proxy_args())
    try:
        old = cluster.master.port
        wait_for(lambda: get(p.admin, "/readyz")[0] == 200, what="ready")
        wait_for(lambda: metrics(p.admin).get('sentinel_proxy_sentinels{state="answering"}') == 3,
                 what="three Sentinels answering")
        m = metrics(p.admin)
        assert m['sentinel_proxy_master_info{address="127.0.0.1:%d"}' % old] == 1
        assert m['sentinel_proxy_replicas{state="healthy"}'] == 2
        assert m["sentinel_proxy_failovers_total"] == 0
        for r in cluster.replicas:
            assert 'sentinel_proxy_replica_lag_bytes{address="127.0.0.1:%d"}' % r.port in m
        t = json.loads(get(p.admin, "/topology")[2])
        assert t["mode"] == "sentinel" and t["master_name"] == cluster.name
        assert t["master"] == "127.0.0.1:%d" % old
        assert sorted(r["address"] for r in t["replicas"]) == sorted(
            "127.0.0.1:%d" % r.port for r in cluster.replicas)
        assert t["sentinels"]["answering"] == 3 and len(t["sentinels"]["nodes"]) == 3
        # Counters never go down, through the switch and the old master's
        # backend being retired and freed: load and scrapes run throughout.
        stop = threading.Event()
        seen, drops = {}, []

        def load():
            c = p.client()
            while not stop.is_set():
                try:
                    c.set("lf", "1")
                    c.get("lf")
                except redis.RedisError:
                    pass

        def scrape():
            while not stop.is_set():
                for k, v in metrics(p.admin).items():
                    if k.split("{")[0].endswith("_total") and v < seen.get(k, 0):
                        drops.append((k, seen[k], v))
                    seen[k] = v
                time.sleep(0.02)

        threads = [threading.Thread(target=load), threading.Thread(target=scrape)]
        for t in threads:
            t.start()
        cluster.sentinels[0].client().sentinel_failover(cluster.name)
        new = cluster.wait_master_change(old)
        wait_for(lambda: json.loads(get(p.admin, "/topology")[2])["master"] ==
                 "127.0.0.1:%d" % new, timeout=30, what="the proxy to follow")
        wait_for(lambda: metrics(p.admin)["sentinel_proxy_failovers_total"] == 1,
                 what="the failover counted")
        time.sleep(1)  # past the old master's retirement
        stop.set()
        for t in threads:
            t.join(30)
        assert drops == [], drops[:5]
        m = metrics(p.admin)
        assert m['sentinel_proxy_master_info{address="127.0.0.1:%d"}' % new] == 1
        assert 0 < m["sentinel_proxy_last_failover_duration_seconds"] < 60
    finally:
        p.stop()


@needs_promtool
def test_real_prometheus_scrapes_it(workdir, fixed):
    c = fixed.client()
    for i in range(10):
        c.set("p%d" % i, i)
    web = free_port()
    cfg = os.path.join(workdir, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "scrape_configs:\n  - job_name: sp\n    static_configs:\n"
                "      - targets: ['127.0.0.1:%d']\n" % fixed.admin)
    prom = Process(["prometheus", "--config.file=" + cfg,
                    "--storage.tsdb.path=" + os.path.join(workdir, "tsdb"),
                    "--web.listen-address=127.0.0.1:%d" % web],
                   os.path.join(workdir, "prometheus.log")).start()
    try:
        def sample():
            q = urllib.parse.urlencode({"query": 'sentinel_proxy_requests_total{kind="write"}'})
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/query?%s" % (web, q),
                                            timeout=5) as r:
                    data = json.load(r)
            except OSError:
                return None
            for s in data.get("data", {}).get("result", []):
                if s["metric"].get("destination") == "master":
                    return float(s["value"][1])
            return None
        value = wait_for(sample, timeout=40, what="Prometheus to scrape the proxy")
        assert value >= 10
        with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/targets" % web, timeout=5) as r:
            targets = json.load(r)["data"]["activeTargets"]
        assert targets[0]["health"] == "up", targets
    finally:
        prom.stop()


# ---- the HTTP side under odd and hostile input ----------------------------------


def http_raw(port, data, wait=1.0):
    return raw_exchange(port, data, wait=wait)


@pytest.mark.parametrize("request_bytes,status", [
    (b"GARBAGE\r\n\r\n", b"400"),
    (b"GET /metrics HTTP/2.0\r\n\r\n", b"400"),
    (b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", b"405"),
    (b"GET /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", b"400"),
    (b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"400"),
    (b"GET /nowhere HTTP/1.1\r\n\r\n", b"404"),
    (b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", b"431"),
    (b"GET /healthz HTTP/1.1\r\n folded\r\n\r\n", b"400"),
    (b"GET /he\x00althz HTTP/1.1\r\n\r\n", b"400"),
])
def test_bad_requests_get_an_error_and_a_close(fixed, request_bytes, status):
    out, closed = http_raw(fixed.admin, request_bytes)
    assert out.startswith(b"HTTP/1.1 " + status), out[:200]
    assert closed and b"Connection: close" in out
    assert get(fixed.admin, "/healthz")[0] == 200


def test_keep_alive_and_pipelining(fixed):
    s = socket.create_connection(("127.0.0.1", fixed.admin), timeout=5)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\n\r\n")
        got = b""
        while got.count(b"HTTP/1.1 200") < 2:
            d = s.recv(65536)
            assert d, got
            got += d
        assert got.index(b"ok\n") < got.index(b"ready: master")
        s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")  # 1.0 without keep-alive: closed after
        got = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
        assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"ok\n")
    finally:
        s.close()
    # Many pipelined requests in one packet: each answered, in order.
    s = socket.create_connection(("127.0.0.1", fixed.admin), timeout=10)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nContent-Length: 0 \r\n\r\n" * 200)
        got = b""
        while got.count(b"ok\n") < 200:
            d = s.recv(65536)
            assert d, got[-200:]
            got += d
        assert got.count(b"HTTP/1.1 200 OK") == 200
    finally:
        s.close()


def test_connections_are_bounded_and_slow_ones_time_out(fixed):
    socks = [socket.create_connection(("127.0.0.1", fixed.admin)) for _ in range(40)]
    opened = time.time()  # (the timeout counts from each connection's accept)
    try:
        for s in socks[:8]:
            s.sendall(b"GET /heal")  # half a request, never finished
        # Over 32 at once: the extra ones are closed straight away. (Which
        # ones is the accept order's business, and a connection of the
        # fixture's own may still count: at least 8 go, at most 32 stay.)
        closed = set()
        deadline = time.time() + 5
        while len(closed) < 8 and time.time() < deadline:
            ready, _, _ = select.select([s for s in socks if s not in closed], [], [], 0.2)
            for s in ready:
                try:
                    if s.recv(1) == b"":
                        closed.add(s)
                except ConnectionResetError:
                    closed.add(s)
        assert len(closed) >= 8, len(closed)
        # Those kept hold their places until the 10 s timeout ends them.
        slow = next(s for s in socks[:8] if s not in closed)
        slow.settimeout(15)
        assert slow.recv(1) == b""
        assert 8 < time.time() - opened < 15
    finally:
        for s in socks:
            s.close()
    wait_for(lambda: get(fixed.admin, "/healthz")[0] == 200, what="the admin port to serve again")


def test_admin_address_in_use_is_a_clear_error(workdir, redis_server):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        p = Proxy(workdir, backend=redis_server.port,
                  args=["--set", "admin.listen=127.0.0.1:%d" % port])
        p.start(wait=False)
        wait_for(lambda: not p.proc.alive(), what="the proxy to give up")
        assert re.search(r"admin\.listen 127\.0\.0\.1:%d: .*in use" % port, p.log()), p.log()
    finally:
        busy.close()


def test_wrong_master_name_is_explained(workdir, cluster):
    """A mistyped master name: the Sentinels' own answer is quoted, once, in
    the log, in PROXY TOPOLOGY, in /readyz and in the error a held request
    gets; nothing claims the Sentinels are silent or the proxy ready."""
    from harness import topology
    p = admin_proxy(workdir, args=["--master-name", "mymastr", "--set", "hold-timeout=1s"] +
                    cluster.proxy_args()[2:])
    try:
        wait_for(lambda: "check sentinel.master-name" in p.log(), what="the cause logged")
        c = p.client()
        with pytest.raises(redis.ResponseError) as e:
            c.set("k", "v")
        assert "no usable master within hold-timeout" in str(e.value)
        assert "no Sentinel names master 'mymastr'" in str(e.value)
        assert "No such master with that name" in str(e.value)
        t = topology(c)
        states = [v for k, v in t.items() if k.startswith("sentinel") and k[8:].isdigit()]
        assert len(states) == 3 and all("state=error" in s and "No such master" in s
                                        for s in states), states
        status, _, body = get(p.admin, "/readyz")
        assert status == 503 and b"check sentinel.master-name" in body
        node = json.loads(get(p.admin, "/topology")[2])["sentinels"]["nodes"][0]
        assert node["state"] == "error" and "No such master" in node["last_error"]
        wait_rounds_seen = p.log().count("SENTINEL MASTER mymastr")
        time.sleep(2.5)  # more rounds: nothing repeated
        log = p.log()
        assert log.count("SENTINEL MASTER mymastr") == wait_rounds_seen <= 3
        assert log.count("check sentinel.master-name; no master confirmed yet") == 1
        # The request that waited it out is summed up with the same cause.
        assert "1 request(s) failed after waiting hold-timeout (1000 ms) for a usable backend: " \
               "no Sentinel names master 'mymastr'" in log
        assert "no Sentinel answered" not in log and "ready: master" not in log
    finally:
        p.stop()


def test_admin_port_out_of_descriptors(workdir, redis_server):
    """With every descriptor taken, the admin port pauses (one warning, no
    spinning on the queued connection) and serves again once some are free."""
    port = free_port()
    p = Proxy(workdir, backend=redis_server.port,
              args=["--set", "admin.listen=127.0.0.1:%d" % port])
    p.argv = (lambda argv: lambda: ["prlimit", "--nofile=64:64"] + argv())(p.argv)
    p.start()
    hogs = []
    try:
        wait_for(lambda: port_open(port), what="admin port")
        for _ in range(80):  # more clients than descriptors left
            try:
                s = socket.create_connection(("127.0.0.1", p.port), timeout=2)
                s.sendall(b"PING\r\n")
                hogs.append(s)
            except OSError:
                break
        wait_for(lambda: "accept: Too many open files" in p.log(), what="descriptors used up")
        waiting = socket.create_connection(("127.0.0.1", port), timeout=5)
        waiting.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        paused = "127.0.0.1:%d: accept: Too many open files; pausing this listener" % port
        wait_for(lambda: paused in p.log(), what="the pause logged")
        time.sleep(1)
        assert p.log().count(paused) == 1
        for s in hogs:
            s.close()
        hogs = []
        waiting.settimeout(10)
        assert waiting.recv(4096).startswith(b"HTTP/1.1 200")
        waiting.close()
    finally:
        for s in hogs:
            s.close()
        p.stop()


def test_healthcheck_command(workdir, redis_server):
    """sentinel-proxy --healthcheck (the container's HEALTHCHECK): exit 0 on
    200, 1 on anything else, a refused connection or a target it will not
    send; never more than it was given."""
    from harness import PROXY_BIN

    def check(target):
        out = subprocess.run([PROXY_BIN, "--healthcheck", target], capture_output=True,
                             text=True, timeout=10)
        assert "Sanitizer" not in out.stderr and "runtime error" not in out.stderr, out.stderr
        return out.returncode, out.stdout.strip()

    p = admin_proxy(workdir, backend=redis_server.port)
    try:
        assert check("127.0.0.1:%d" % p.admin) == (0, "HTTP/1.1 200 OK")
        assert check("127.0.0.1:%d/readyz" % p.admin)[0] == 0
        assert check("127.0.0.1:%d/nope" % p.admin) == (1, "HTTP/1.1 404 Not Found")
        # Padded to the longest target it takes: sent whole, answered.
        padded = "127.0.0.1:%s%d/%s" % ("0" * 200, p.admin, "metrics")
        assert check(padded)[0] == 0
        assert check("127.0.0.1:%s%d/%s" % ("0" * 300, p.admin, "p" * 63))[0] == 1
        assert check("127.0.0.1:%d/a b" % p.admin) == (1, "a path is printable, without spaces")
        assert check("unix:/tmp/x")[0] == 1
    finally:
        p.stop()
    rc, out = check("127.0.0.1:%d" % p.admin)
    assert rc == 1 and "Connection refused" in out
