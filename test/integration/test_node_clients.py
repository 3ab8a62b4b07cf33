"""The Node.js Redis clients people use, ioredis and node-redis, through
sentinel-proxy in front of a Sentinel layout (1 master, 2 replicas, 3
Sentinels) with reads on the replicas.

Each scenario of test/clients/ioredis_check.js and noderedis_check.js
(strings, pipelines, transactions, pub/sub, blocking pops, scripts, SCAN, the
db and name options) runs once per client and protocol; the scripts check the
protocol each connection really negotiated. Then: plain reads of every
client go to the replicas, and 200 idle RESP3 clients share the proxy's
backend connections instead of holding one master connection each.

The client packages come from test/clients/package-lock.json (`make
node-deps`); without node, or without them installed, the module is skipped.
"""
import json
import os
import re
import select
import shutil
import subprocess
import time

import pytest

from harness import Cluster, Proxy, make_workdir, proxy_stats, topology, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIENTS = os.path.join(ROOT, "test", "clients")
NODE = shutil.which("node")

if NODE is None:
    pytest.skip("node is not installed: the Node.js client tests need node and npm",
                allow_module_level=True)
for _pkg in ("ioredis", "redis"):
    if not os.path.exists(os.path.join(CLIENTS, "node_modules", _pkg, "package.json")):
        pytest.skip("the Node.js client packages are not installed in test/clients/node_modules: "
                    "run `make node-deps`", allow_module_level=True)

SCRIPTS = {"ioredis": "ioredis_check.js", "node-redis": "noderedis_check.js"}

# (client, --protocol): ioredis 6 and node-redis 6 speak RESP3 by default;
# each runs in RESP2 too.
COMBOS = [("ioredis", "default"), ("ioredis", "2"), ("node-redis", "2"), ("node-redis", "3")]
COMBO_IDS = ["ioredis-default", "ioredis-resp2", "noderedis-resp2", "noderedis-resp3"]

SCENARIOS = ["strings", "pipelines", "transactions", "pubsub", "blocking", "scripts", "scan",
             "db", "name"]

BACKEND_CONNECTIONS = 2  # the proxy's default, given explicitly where counted


def healthy_replicas(proxy):
    t = topology(proxy.client())
    return sum("healthy=1" in v for k, v in t.items() if re.fullmatch(r"replica\d+", k))


def start_proxy(workdir, cluster, *extra):
    p = Proxy(workdir, args=cluster.proxy_args() + ["--read-from", "replicas"] + list(extra))
    p.start()
    try:
        wait_for(lambda: topology(p.client()).get("master") == "127.0.0.1:%d" % cluster.master.port
                 and healthy_replicas(p) == 2,
                 what="the proxy to see the master and two healthy replicas")
    except BaseException:
        p.stop(check=False)
        raise
    return p


@pytest.fixture(scope="module")
def layout():
    """One Sentinel layout and one proxy for the whole module (starting them
    takes seconds; every scenario uses keys of its own)."""
    workdir = make_workdir()
    cluster = Cluster(workdir)
    proxy = None
    try:
        cluster.start()
        proxy = start_proxy(workdir, cluster)
        yield workdir, cluster, proxy
    finally:
        try:
            if proxy is not None:
                proxy.stop()
        finally:
            cluster.stop()
            if not os.environ.get("SP_KEEP_TMP"):
                shutil.rmtree(workdir, ignore_errors=True)


def log_tail(proxy, n=3000):
    try:
        return proxy.log()[-n:]
    except OSError:
        return "(no log)"


def node_argv(client, scenario, port, protocol, *extra):
    return [NODE, os.path.join(CLIENTS, SCRIPTS[client]), scenario, "127.0.0.1:%d" % port,
            "--protocol", protocol] + list(extra)


def run_node(proxy, client, scenario, protocol, *extra, timeout=40):
    """Run one scenario against the proxy; its JSON report, or the test fails
    with the script's own message and the end of the proxy's log."""
    argv = node_argv(client, scenario, proxy.port, protocol, "--timeout", str(timeout - 5), *extra)
    try:
        res = subprocess.run(argv, cwd=CLIENTS, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail("%s %s did not finish in %d s\n--- proxy log ---\n%s"
                    % (client, scenario, timeout, log_tail(proxy)))
    if res.returncode != 0:
        pytest.fail("%s %s (protocol %s) failed (exit %d):\n%s%s\n--- proxy log ---\n%s"
                    % (client, scenario, protocol, res.returncode, res.stderr.strip()[-3000:],
                       res.stdout.strip()[-1000:], log_tail(proxy)))
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["scenario"] == scenario, report
    return report


def expected_protocol(protocol):
    return 3 if protocol == "default" else int(protocol)


def settled_stats(proxy, pred, timeout=3.0):
    """PROXY STATS once pred(stats) holds, or as they are after timeout
    (other workers publish their counters every 100 ms)."""
    last = {}

    def check():
        last["s"] = proxy_stats(proxy)
        return pred(last["s"])
    try:
        wait_for(check, timeout=timeout, what="the proxy's counters")
    except TimeoutError:
        pass
    return last.get("s") or proxy_stats(proxy)


@pytest.mark.parametrize("client,protocol", COMBOS, ids=COMBO_IDS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(layout, scenario, client, protocol):
    _, _, proxy = layout
    report = run_node(proxy, client, scenario, protocol)
    assert report["protocol"] == expected_protocol(protocol), report


@pytest.mark.parametrize("client,protocol", COMBOS, ids=COMBO_IDS)
def test_plain_reads_go_to_replicas(layout, client, protocol):
    """The strings scenario's reads (GET, MGET, STRLEN: 8 of them) are
    served by the replicas, whatever protocol the client speaks."""
    _, _, proxy = layout
    before = proxy_stats(proxy)
    run_node(proxy, client, "strings", protocol)
    after = settled_stats(proxy, lambda s: s["reads_replicas"] - before["reads_replicas"] >= 8)
    grown = after["reads_replicas"] - before["reads_replicas"]
    resp = "RESP3" if expected_protocol(protocol) == 3 else "RESP2"
    assert grown >= 8, ("%d read(s) on replicas (master: %d more); a %s client's reads should go "
                        "to the replicas" % (grown, after["reads_master"] - before["reads_master"],
                                             resp))


def master_connections(cluster):
    """The master's own count of its client connections (the one asking
    left out): all of them, and those speaking RESP3."""
    c = cluster.master.client()
    try:
        me = c.client_id()
        conns = [x for x in c.client_list() if int(x["id"]) != me]
    finally:
        c.close()
    return len(conns), sum(1 for x in conns if x.get("resp") == "3"), conns


class IdleClients:
    """The idle scenario of a check script: n connected clients, one GET
    each, held until stop()."""

    def __init__(self, proxy, client, protocol, n, timeout=60):
        self.proxy = proxy
        argv = node_argv(client, "idle", proxy.port, protocol, "--clients", str(n),
                         "--timeout", str(timeout))
        self.proc = subprocess.Popen(argv, cwd=CLIENTS, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                line = self.proc.stdout.readline()
                if not line:
                    break
                return json.loads(line)
            if self.proc.poll() is not None:
                break
        self.kill()
        pytest.fail("idle clients not ready: %s\n--- proxy log ---\n%s"
                    % (self.proc.stderr.read()[-3000:], log_tail(self.proxy)))

    def stop(self):
        """Release the clients (they quit); the script's final report."""
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("idle clients did not quit")
        out, err = self.proc.stdout.read(), self.proc.stderr.read()
        assert self.proc.returncode == 0, err[-3000:]
        return json.loads(out.strip().splitlines()[-1])

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


def hold_idle(proxy, cluster, client, protocol, n):
    """Open n idle clients (one GET each); while they are connected, what
    the master and the proxy count."""
    before = proxy_stats(proxy)
    idle = IdleClients(proxy, client, protocol, n)
    try:
        out = {"ready": idle.wait_ready()}
        out["stats"] = settled_stats(proxy, lambda s: s["connected_clients"] >= n and
                                     s["reads_replicas"] - before["reads_replicas"] >= n)
        out["master_conns"], out["master_resp3"], _ = master_connections(cluster)
        c = proxy.client()
        out["topology"] = c.execute_command("PROXY", "TOPOLOGY").decode()
        c.close()
        out["final"] = idle.stop()
    finally:
        idle.kill()
    out["reads_replicas"] = out["stats"]["reads_replicas"] - before["reads_replicas"]
    out["reads_master"] = out["stats"]["reads_master"] - before["reads_master"]
    return out


def test_idle_resp3_clients_share_backend_connections(layout):
    """200 RESP3 clients, idle after one GET each, hold no master connection
    of their own: the master sees at most backend-connections more
    connections per worker (the shared RESP3 ones) than with 200 RESP2
    clients, and the GETs were served by the replicas."""
    workdir, cluster, _ = layout
    n = 200
    # A proxy of its own, so that the counts are not those of the scenarios'
    # (spare dedicated connections, extra connections opened around stalls:
    # backend-connections-max keeps the shared ones at backend-connections).
    proxy = start_proxy(workdir, cluster, "--set", "backend-connections=%d" % BACKEND_CONNECTIONS,
                        "--set", "backend-connections-max=%d" % BACKEND_CONNECTIONS)
    try:
        workers = proxy_stats(proxy)["workers"]
        allowed = BACKEND_CONNECTIONS * workers

        # RESP2 first: what the proxy normally keeps open on the master.
        r2 = hold_idle(proxy, cluster, "ioredis", "2", n)
        assert r2["ready"] == {"ready": True, "clients": n, "protocols": [2]}, r2["ready"]
        assert r2["final"]["clients"] == n, r2["final"]
        assert r2["stats"]["connected_clients"] >= n, r2["stats"]
        assert r2["reads_replicas"] >= n, r2
        assert r2["stats"].get("dedicated_lent_worker", 0) == 0, r2["stats"]

        # The same with RESP3 (ioredis' default).
        _, resp3_before, _ = master_connections(cluster)
        r3 = hold_idle(proxy, cluster, "ioredis", "default", n)
        assert r3["ready"] == {"ready": True, "clients": n, "protocols": [3]}, r3["ready"]
        assert r3["final"]["clients"] == n, r3["final"]
        assert r3["stats"]["connected_clients"] >= n, r3["stats"]
        detail = ("master connections: %d with %d RESP2 clients, %d with %d RESP3 clients "
                  "(RESP3 connections on the master: %d before, %d during); %d worker(s), "
                  "backend-connections=%d; dedicated_lent_worker=%s; reads_replicas +%d, "
                  "reads_master +%d\n%s"
                  % (r2["master_conns"], n, r3["master_conns"], n, resp3_before,
                     r3["master_resp3"], workers, BACKEND_CONNECTIONS,
                     r3["stats"].get("dedicated_lent_worker"), r3["reads_replicas"],
                     r3["reads_master"], r3["topology"]))
        assert r3["master_resp3"] - resp3_before <= allowed, detail
        assert r3["master_conns"] - r2["master_conns"] <= allowed, detail
        assert r3["stats"].get("dedicated_lent_worker", 0) == 0, detail
        assert r3["reads_replicas"] >= n, detail
    finally:
        proxy.stop()

