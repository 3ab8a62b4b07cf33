"""Network faults around a Sentinel layout, for test_faults.py and bench/chaos.py.

Every process gets a loopback address of its own, inside a network namespace
made for one run (`unshare -n`, see faults_netns.py), so that an iptables
rule between two addresses cuts exactly one link:

    127.0.0.2       master              127.0.0.5   Sentinel 1 (beside the master)
    127.0.0.3, .4   replicas            127.0.0.6   Sentinel 2
    127.0.0.10      the client side:    127.0.0.7   Sentinel 3
                    sentinel-proxy, haproxy, redis-py and the load's clients
    127.0.0.1       this module's own control connections, never cut

The namespace's local route names 127.0.0.10 as the source of every
connection that binds none, so the proxy, haproxy and the clients all leave
from the client side's address without being told; redis-server and
redis-sentinel bind their own (bind-source-addr), so masters list replicas
and Sentinels list each other at their own addresses.

A run is one scenario (SCENARIOS: a partition, a frozen process...) against
one client path (PATHS). Ten clients each write an increasing sequence
(SET k:C i, RPUSH l:C i, GET k:C) through the path; once the fault is healed
and replication has settled, the final master is read directly: an
acknowledged RPUSH missing from its list is a lost write, a GET lower than
the client's last acknowledged SET a stale read. run() returns the figures
as a dict (see its docstring); run_isolated() does it all in a namespace of
its own and is what the tests and `make chaos` call.

The hostnames scenario also gives every server and Sentinel a host name
(NAMES) in the run's own /etc/hosts (a mount namespace: unshare -m) and
runs a name server on 127.0.0.53 (NameWorld) through which the proxy's
lookups can be made slow.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import redis
import redis.sentinel

from harness import PROXY_BIN, Cluster, Process, Proxy, RedisServer, make_workdir, wait_for

MASTER, REPLICA1, REPLICA2 = "127.0.0.2", "127.0.0.3", "127.0.0.4"
SENTINEL1, SENTINEL2, SENTINEL3 = "127.0.0.5", "127.0.0.6", "127.0.0.7"
SENTINELS = [SENTINEL1, SENTINEL2, SENTINEL3]
CLIENT_SIDE = "127.0.0.10"
MOVED = "127.0.0.8"  # where the hostnames scenario restarts the old master, under its name
NAMES = {MASTER: "node-a.faults.test", REPLICA1: "node-b.faults.test",
         REPLICA2: "node-c.faults.test", SENTINEL1: "sentinel-1.faults.test",
         SENTINEL2: "sentinel-2.faults.test", SENTINEL3: "sentinel-3.faults.test"}
DNS = "127.0.0.53"  # the namespace's name server (NameWorld), answering from the hosts table
CONTROL = "127.0.0.1"
PROXY_PORT, HAPROXY_PORT = 6380, 6381

HOLD_TIMEOUT = 4.0  # the proxy's hold-timeout in these runs (its default is 60 s)
FENCE_AFTER = 3.0  # sentinel.fence-after of the proxy-fenced path (at least 2 polls + timeout)
# How long the proxy's clients wait for an answer: well above hold-timeout,
# so that a request held too long shows as such, not as a client timeout.
PROXY_CLIENT_TIMEOUT = float(os.environ.get("SP_FAULTS_CLIENT_TIMEOUT", 20))
PATHS = ("proxy", "proxy-fenced", "proxy-acks", "redis-py", "haproxy")
BUCKET = 0.1  # seconds per bucket of the time series, from BUCKETS_FROM s before the fault
BUCKETS_FROM = -3.0
NETNS_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "faults_netns.py")


# ---- namespace, partitions ----------------------------------------------------------------

def netns_setup():
    """Inside a fresh namespace: loopback up, 127.0.0.10 as the default source."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "route", "replace", "local", "127.0.0.0/8", "dev", "lo", "proto",
                    "kernel", "scope", "host", "src", CLIENT_SIDE, "table", "local"], check=True)
    heal()


def netns_skip_reason():
    """Why these runs cannot happen here (not root, no unshare or iptables), or None."""
    if os.geteuid() != 0:
        return "needs root for a network namespace and iptables"
    for tool in ("unshare", "iptables", "iptables-restore", "ip"):
        if shutil.which(tool) is None:
            return "needs %s" % tool
    probe = subprocess.run(["unshare", "-n", "-m", "sh", "-c", "ip link set lo up && iptables -w -A "
                            "INPUT -s %s -d %s -j DROP" % (MASTER, REPLICA1)], capture_output=True)
    if probe.returncode != 0:
        return "no network namespace with iptables here: %s" % probe.stderr.decode().strip()
    return None


def partition(a_hosts, b_hosts):
    """Drop every packet between each address of a_hosts and each of b_hosts."""
    rules = ["*filter"]
    for a in a_hosts:
        for b in b_hosts:
            rules += ["-A INPUT -s %s -d %s -j DROP" % pair for pair in ((a, b), (b, a))]
    subprocess.run(["iptables-restore", "-w", "--noflush"], input="\n".join(rules + ["COMMIT", ""]),
                   text=True, check=True)


def scenario_needs_names(scenario):
    return scenario in NAMED_SCENARIOS


class NameWorld:
    """Host names for every server and Sentinel, inside the run's own mount
    namespace (run_isolated starts it with unshare -m): /etc/hosts and
    /etc/resolv.conf are bind-mounted from files of the run, which set()
    rewrites in place (the bind mount keeps the inode), and a name server on
    DNS:53 answers from the same table (A records; AAAA: none).

    The proxy gets a hosts file of its own (a nested mount namespace, see
    proxy_binary()); slow(True) empties it of the run's names, so that each
    of the proxy's lookups goes to the name server, which then answers after
    SLOW_DNS seconds. The Sentinels, servers and this module keep resolving
    from their hosts file at once (Sentinel resolves on its event loop: a
    slow lookup there would stall it, which is not what is tested)."""

    SLOW_DNS = 2.0
    BASE = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n"

    def __init__(self, workdir, names):
        self.dir = workdir
        self.table = {n: ip for ip, n in names.items()}  # name -> address
        self.lock = threading.Lock()
        self.delay = 0.0
        self.queries = 0  # questions the name server got (the proxy's lookups while slow)
        self.hosts = os.path.join(workdir, "hosts")
        self.proxy_hosts = os.path.join(workdir, "proxy-hosts")
        self.resolv = os.path.join(workdir, "resolv.conf")
        with open(self.resolv, "w") as f:
            f.write("nameserver %s\noptions timeout:%d attempts:2\n" % (DNS, 2 * self.SLOW_DNS + 1))
        self._write()
        for path, target in ((self.hosts, "/etc/hosts"), (self.resolv, "/etc/resolv.conf")):
            subprocess.run(["mount", "--bind", path, target], check=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((DNS, 53))
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _write(self):
        text = self.BASE + "".join("%s %s\n" % (ip, n) for n, ip in sorted(self.table.items()))
        for path, body in ((self.hosts, text),
                           (self.proxy_hosts, self.BASE if self.delay else text)):
            with open(path, "w") as f:
                f.write(body)

    def set(self, name, address):
        """name now resolves to address, for everyone."""
        with self.lock:
            self.table[name] = address
            self._write()

    def slow(self, on):
        """The proxy's lookups go to the name server, which answers late."""
        with self.lock:
            self.delay = self.SLOW_DNS if on else 0.0
            self._write()

    def proxy_binary(self):
        """A script that starts the proxy in a mount namespace of its own
        where /etc/hosts is proxy_hosts."""
        path = os.path.join(self.dir, "proxy-in-namespace.sh")
        with open(path, "w") as f:
            f.write("#!/bin/sh\nexec unshare -m --propagation private sh -c 'mount --bind %s "
                    "/etc/hosts || exit 97; exec \"$0\" \"$@\"' %s \"$@\"\n"
                    % (self.proxy_hosts, PROXY_BIN))
        os.chmod(path, 0o755)
        return path

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self.stop_flag.is_set():
            try:
                query, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.queries += 1
                delay = self.delay
                reply = self._answer(query)
            if reply is not None:
                threading.Timer(delay, self._send, (reply, peer)).start()

    def _send(self, reply, peer):
        try:
            self.sock.sendto(reply, peer)
        except OSError:
            pass

    def _answer(self, q):
        """The reply to DNS query q (one question), or None if q is not one."""
        if len(q) < 17:
            return None
        labels, i = [], 12
        while i < len(q) and q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
            i += 1 + q[i]
        end = i + 5
        if end > len(q):
            return None
        qtype = int.from_bytes(q[i + 1:i + 3], "big")
        name = ".".join(labels).lower()
        address = self.table.get(name)
        answer = b""
        if address is not None and qtype == 1:  # A
            answer = (b"\xc0\x0c\x00\x01\x00\x01" + (0).to_bytes(4, "big") + b"\x00\x04"
                      + socket.inet_aton(address))
        rcode = 0 if address is not None else 3  # NXDOMAIN
        flags = 0x8180 | rcode
        header = (q[:2] + flags.to_bytes(2, "big") + b"\x00\x01"
                  + (1 if answer else 0).to_bytes(2, "big") + b"\x00\x00\x00\x00")
        return header + q[12:end] + answer

    def close(self):
        self.stop_flag.set()
        self.thread.join(2)
        self.sock.close()


def heal():
    subprocess.run(["iptables", "-w", "-F", "INPUT"], check=True)


class _FromControl(redis.Connection):
    """A connection that leaves from CONTROL, which no partition cuts."""

    def _connect(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((CONTROL, 0))
            sock.settimeout(self.socket_connect_timeout or self.socket_timeout)
            sock.connect((self.host, self.port))
            sock.settimeout(self.socket_timeout)
            return sock
        except OSError:
            sock.close()
            raise


def control(host, port, timeout=2.0, **kw):
    """A redis-py client to host:port from the control address."""
    return redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=_FromControl, host=host, port=port, socket_timeout=timeout, **kw))


def fence_supported(binary=PROXY_BIN):
    out = subprocess.run([binary, "-t", "--set", "sentinel.fence-after=%gs" % FENCE_AFTER,
                          "--backend", "127.0.0.1:1"], capture_output=True, text=True)
    return out.returncode == 0


# ---- the load -----------------------------------------------------------------------------

def _counting(cls, counter):
    """cls (a redis-py connection class) counting the sockets it opens in counter[0]."""
    class Counting(cls):
        def _connect(self):
            sock = super()._connect()
            counter[0] += 1
            return sock
    return Counting


class Workload:
    """clients threads, each with one connection, each step SET k:C i, RPUSH
    l:C i, GET k:C; bounded by max_steps per client and by deadline."""

    def __init__(self, make_client, clients=10, max_steps=20000, deadline=120.0, pause=0.003):
        self.make_client = make_client
        self.max_steps = max_steps
        self.deadline = time.monotonic() + deadline
        self.pause = pause
        self.stop_flag = threading.Event()
        self.requests = [[] for _ in range(clients)]  # (start, end, op, error type or None)
        self.pushed = [[] for _ in range(clients)]  # (i, ack time) of acknowledged RPUSHes
        self.last_set = [(0, 0.0)] * clients  # (i, ack time) of the last acknowledged SET
        self.stale = [[] for _ in range(clients)]  # time of each stale own read
        self.opened = [[0] for _ in range(clients)]  # sockets opened per client
        self.threads = [threading.Thread(target=self._run, args=(c,), daemon=True)
                        for c in range(clients)]

    def _run(self, c):
        client = self.make_client(self.opened[c])
        key, lst = "k:%d" % c, "l:%d" % c
        last = 0
        for i in range(1, self.max_steps + 1):
            if self.stop_flag.is_set() or time.monotonic() > self.deadline:
                break
            for op in ("set", "rpush", "get"):
                t0 = time.monotonic()
                err, value = None, None
                try:
                    if op == "set":
                        client.set(key, i)
                    elif op == "rpush":
                        client.rpush(lst, i)
                    else:
                        value = client.get(key)
                except redis.RedisError as e:
                    err = type(e).__name__
                t1 = time.monotonic()
                self.requests[c].append((t0, t1, op, err))
                if err is not None:
                    time.sleep(0.01)  # what a client does before it goes on
                elif op == "set":
                    last = i
                    self.last_set[c] = (i, t1)
                elif op == "rpush":
                    self.pushed[c].append((i, t1))
                elif last and (value is None or int(value) < last):
                    self.stale[c].append(t1)
            time.sleep(self.pause)
        try:
            client.close()
        except Exception:  # noqa: BLE001 - closing a broken client
            pass

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self, timeout=30):
        self.stop_flag.set()
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, end - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)


# ---- what happened when --------------------------------------------------------------------

class Monitor:
    """From the control address: every Sentinel's events (PSUBSCRIBE *) and,
    for a proxy path, PROXY TOPOLOGY's master every 50 ms, with times."""

    def __init__(self, layout):
        self.layout = layout
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.events = []  # (time, Sentinel address, channel, data)
        self.proxy_masters = []  # (time, master) at each change of the proxy's master
        self.threads = [threading.Thread(target=self._events, args=(s,), daemon=True)
                        for s in layout.cluster.sentinels]
        if layout.proxy is not None:
            self.threads.append(threading.Thread(target=self._proxy, daemon=True))

    def _events(self, s):
        while not self.stop_flag.is_set():
            try:
                ps = control(s.host, s.port, timeout=1.0, decode_responses=True).pubsub()
                ps.psubscribe("*")
                while not self.stop_flag.is_set():
                    m = ps.get_message(ignore_subscribe_messages=True, timeout=0.2)
                    if m is not None:
                        with self.lock:
                            self.events.append((time.monotonic(), s.host, m["channel"],
                                                m["data"][:160]))
            except (redis.RedisError, OSError):
                self.stop_flag.wait(0.2)

    def _proxy(self):
        c = control(self.layout.proxy.host, self.layout.proxy.port, timeout=1.0)
        while not self.stop_flag.is_set():
            try:
                text = c.execute_command("PROXY", "TOPOLOGY").decode()
                master = re.search(r"^master:(\S+)", text, re.M).group(1)
                if not self.proxy_masters or self.proxy_masters[-1][1] != master:
                    self.proxy_masters.append((time.monotonic(), master))
            except (redis.RedisError, OSError, AttributeError):
                pass
            self.stop_flag.wait(0.05)

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(5)

    def first(self, channel, after, about=None):
        """Time of the first event on channel after the time given (whose
        data mentions about, when given), or None."""
        with self.lock:
            for t, _, ch, data in self.events:
                if ch == channel and t >= after and (about is None or about in data):
                    return t
        return None


# ---- the layout and the paths ---------------------------------------------------------------

HAPROXY_CFG = """global
    maxconn 1000
    stats socket %s
defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
frontend redis
    bind %s:%d
    default_backend server
backend server
    option tcp-check
    tcp-check send PING\\r\\n
    tcp-check expect string +PONG
    tcp-check send info\\ replication\\r\\n
    tcp-check expect string role:master
    tcp-check send QUIT\\r\\n
    tcp-check expect string +OK
%s
"""


class Layout:
    """1 master, 2 replicas, 3 Sentinels (quorum 2, down-after 1000 ms,
    failover-timeout 6000 ms) and the path's front: the proxy, haproxy, or
    nothing (redis-py asks the Sentinels itself)."""

    def __init__(self, workdir, path, names=None):
        """names: a NameWorld; every server and Sentinel is then known by its
        name (NAMES), and the proxy is given the Sentinels by name."""
        self.workdir = workdir
        self.path = path
        self.names = names
        self.cluster = Cluster(workdir, host=[MASTER, REPLICA1, REPLICA2] + SENTINELS,
                               down_after=1000, failover_timeout=6000,
                               names=NAMES if names is not None else None)
        self.proxy = self.haproxy = None
        self.marks = {}
        self.windows = {}  # name -> (start, end): figures of the requests started within
        self.extra = {}  # what a scenario measured besides the load

    def start(self):
        self.cluster.start()
        self.old_master = self.addr(self.cluster.master)
        if self.path.startswith("proxy"):
            args = self.cluster.proxy_args() + ["--set", "hold-timeout=%gs" % HOLD_TIMEOUT]
            if self.path == "proxy-fenced":
                args += ["--set", "sentinel.fence-after=%gs" % FENCE_AFTER]
            elif self.path == "proxy-acks":
                args += ["--set", "ack-after-replicas=1"]
            args += os.environ.get("SP_FAULTS_PROXY_ARGS", "").split()  # --log-level debug...
            binary = self.names.proxy_binary() if self.names is not None else None
            self.proxy = Proxy(self.workdir, host=CLIENT_SIDE, port=PROXY_PORT, args=args,
                               binary=binary).start()
            c = control(CLIENT_SIDE, PROXY_PORT)
            wait_for(lambda: ("master:%s\r" % self.old_master) in
                     c.execute_command("PROXY", "TOPOLOGY").decode(), what="the proxy's master")
        elif self.path == "haproxy":
            servers = "\n".join("    server r%d %s check inter 1s" % (i, self.addr(s))
                                for i, s in enumerate(self.cluster.servers()))
            cfg = os.path.join(self.workdir, "haproxy.cfg")
            with open(cfg, "w") as f:
                f.write(HAPROXY_CFG % (os.path.join(self.workdir, "haproxy.sock"), CLIENT_SIDE,
                                       HAPROXY_PORT, servers))
            self.haproxy = Process(["haproxy", "-f", cfg, "-db"],
                                   os.path.join(self.workdir, "haproxy.log")).start()
            # haproxy starts with every server up: wait until the check has
            # taken the replicas out, or clients would start on them.
            want = ["UP"] + ["DOWN"] * len(self.cluster.replicas)
            wait_for(lambda: self.haproxy_states() == want, timeout=20, interval=0.2,
                     what="haproxy's master check")
        return self

    def haproxy_states(self):
        """haproxy's view of each server (UP, DOWN...), from its stats socket."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(os.path.join(self.workdir, "haproxy.sock"))
            s.sendall(b"show stat\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        rows = [ln.split(",") for ln in data.decode().splitlines() if ln and ln[0] != "#"]
        return [r[17].split()[0] for r in rows if r[0] == "server" and r[1][:1] == "r"]

    @staticmethod
    def addr(server):
        """server as the Sentinels name it: its host name, or its address."""
        return "%s:%d" % (getattr(server, "hostname", None) or server.host, server.port)

    def make_client(self, counter):
        """A client of the path whose sockets are counted in counter[0]."""
        if self.path == "redis-py":
            s = redis.sentinel.Sentinel([(x.hostname or x.host, x.port)
                                         for x in self.cluster.sentinels],
                                        socket_timeout=0.5)
            return s.master_for(self.cluster.name, socket_timeout=2, connection_class=_counting(
                redis.sentinel.SentinelManagedConnection, counter))
        port, timeout = ((HAPROXY_PORT, 2) if self.path == "haproxy"
                         else (PROXY_PORT, PROXY_CLIENT_TIMEOUT))
        pool = redis.ConnectionPool(connection_class=_counting(redis.Connection, counter),
                                    host=CLIENT_SIDE, port=port, socket_timeout=timeout)
        return redis.Redis(connection_pool=pool, single_connection_client=True)

    def mark(self, name):
        self.marks[name] = time.monotonic()

    def sentinel_views(self, hosts=SENTINELS):
        """What each Sentinel in hosts names as the master (None: no answer)."""
        out = []
        for s in self.cluster.sentinels:
            if s.host not in hosts:
                continue
            try:
                a = control(s.host, s.port, timeout=0.5, decode_responses=True) \
                    .sentinel_get_master_addr_by_name(self.cluster.name)
                out.append("%s:%s" % tuple(a) if a else None)
            except (redis.RedisError, OSError):
                out.append(None)
        return out

    def wait_failover(self, hosts=SENTINELS, timeout=40):
        """Wait until a majority of the Sentinels in hosts name another master
        (two candidates that split the vote try again failover-timeout x 2 =
        12 s later: that happens)."""
        def moved():
            views = [v for v in self.sentinel_views(hosts) if v and v != self.old_master]
            return len(views) * 2 > len(hosts) and views[0]
        new = wait_for(moved, timeout=timeout, interval=0.1, what="a failover")
        self.mark("failover")
        return new

    def wait_one_master(self, timeout=20):
        """Wait (bounded) until every Sentinel names one master and every
        other live server says it is a replica: an old master that comes
        back takes writes until the Sentinels demote it, which the load
        should see."""
        def one():
            views = self.sentinel_views()
            if None in views or len(set(views)) != 1:
                return False
            return all(control(s.host, s.port).info("replication")["role"] == "slave"
                       for s in self.cluster.servers()
                       if s.proc.alive() and self.addr(s) != views[0])
        try:
            wait_for(one, timeout=timeout, interval=0.2, what="one master")
        except TimeoutError:
            pass
        self.mark("one_master")

    def settle(self, timeout=30):
        """Wait until every Sentinel names one master, which says it is one,
        and every other live server replicates it at its offset. Returns
        (master, settled)."""
        state = {}

        def settled():
            views = self.sentinel_views()
            if None in views:
                return False
            state["master"] = max(set(views), key=views.count)
            if len(set(views)) != 1:
                return False
            host, port = state["master"].rsplit(":", 1)
            info = control(host, int(port)).info("replication")
            if info["role"] != "master":
                return False
            for s in self.cluster.servers():
                if self.addr(s) == state["master"] or not s.proc.alive():
                    continue
                r = control(s.host, s.port).info("replication")
                if (r["role"] != "slave" or "%s:%s" % (r["master_host"], r["master_port"])
                        != state["master"] or r["master_link_status"] != "up"
                        or r["slave_repl_offset"] != info["master_repl_offset"]):
                    return False
            return True
        try:
            wait_for(settled, timeout=timeout, interval=0.2, what="replication to settle")
            return state["master"], True
        except TimeoutError:
            return state.get("master"), False

    def stop(self):
        if self.proxy is not None:
            self.proxy_rc = self.proxy.stop(check=False)
        if self.haproxy is not None:
            self.haproxy.stop()
        for s in self.cluster.servers() + self.cluster.sentinels:
            if s.proc is not None:
                s.proc.stop(timeout=5)


# ---- scenarios: each starts at the fault and returns once it is healed ----------------------

def _hold(lay, since, seconds):
    """Sleep until seconds have passed since the time given."""
    time.sleep(max(0.0, since + seconds - time.monotonic()))


def master_isolated(lay):
    """The master cut off from the Sentinels and replicas, not from the client
    side: the Sentinels elect another while it still takes writes."""
    lay.mark("fault")
    partition([MASTER], [REPLICA1, REPLICA2] + SENTINELS)
    lay.wait_failover()
    _hold(lay, lay.marks["fault"], 8)
    heal()
    lay.mark("heal")


def proxy_master_cut(lay):
    """The client side cut off from the master only: no failover."""
    lay.mark("fault")
    partition([CLIENT_SIDE], [MASTER])
    time.sleep(7)
    heal()
    lay.mark("heal")


def proxy_sentinels_cut(lay):
    """The client side cut off from every Sentinel; the master stays."""
    lay.mark("fault")
    partition([CLIENT_SIDE], SENTINELS)
    time.sleep(6)
    heal()
    lay.mark("heal")


def proxy_sentinels_cut_failover(lay):
    """The client side cut off from every Sentinel, and the master killed
    (kill -9) meanwhile: the Sentinels fail over where it cannot see."""
    lay.mark("fault")
    partition([CLIENT_SIDE], SENTINELS)
    time.sleep(1)
    lay.mark("kill")
    lay.cluster.master.kill9()
    lay.wait_failover()
    time.sleep(2)
    heal()
    lay.mark("heal")


def minority_side(lay):
    """The client side, the master and Sentinel 1 on one side; the replicas
    and Sentinels 2 and 3 (a majority) on the other elect a new master."""
    lay.mark("fault")
    partition([MASTER, SENTINEL1, CLIENT_SIDE], [REPLICA1, REPLICA2, SENTINEL2, SENTINEL3])
    lay.wait_failover(hosts=[SENTINEL2, SENTINEL3])
    _hold(lay, lay.marks["fault"], 8)
    heal()
    lay.mark("heal")


def master_frozen(lay):
    """SIGSTOP of the master until the Sentinels have replaced it, then SIGCONT."""
    lay.mark("fault")
    lay.cluster.master.proc.send_signal(signal.SIGSTOP)
    lay.wait_failover()
    time.sleep(1)
    lay.cluster.master.proc.send_signal(signal.SIGCONT)
    lay.mark("heal")


def stale_sentinel(lay):
    """Sentinel 3 cut off from every server and Sentinel (not from the client
    side) and frozen while the others fail over (SENTINEL FAILOVER), then
    woken, still cut off: for 5 s it names the old master with the old
    epoch to whoever asks it."""
    s1, s3 = lay.cluster.sentinels[0], lay.cluster.sentinels[2]
    lay.mark("fault")
    partition([SENTINEL3], [MASTER, REPLICA1, REPLICA2, SENTINEL1, SENTINEL2])
    s3.proc.send_signal(signal.SIGSTOP)
    if lay.proxy is not None:
        # While a Sentinel is silent, each of the proxy's rounds (one a
        # second) waits sentinel.timeout (500 ms) for it: a failover starts
        # within such a wait about half the time. Start it within one: 700 ms
        # after the first round since the freeze ends (PROXY TOPOLOGY rounds).
        c = control(lay.proxy.host, lay.proxy.port)
        rounds = (lambda: re.search(r"^rounds:(\d+)", c.execute_command(
            "PROXY", "TOPOLOGY").decode(), re.M).group(1))
        now = rounds()
        wait_for(lambda: rounds() != now, timeout=5, interval=0.005, what="a round")
        time.sleep(0.7)
    else:
        time.sleep(1.2)
    lay.mark("failover_asked")
    control(s1.host, s1.port).execute_command("SENTINEL", "FAILOVER", lay.cluster.name)
    lay.wait_failover(hosts=[SENTINEL1, SENTINEL2])
    time.sleep(1)
    s3.proc.send_signal(signal.SIGCONT)
    lay.mark("stale")
    time.sleep(5)
    heal()
    lay.mark("heal")


def planned_failover(lay):
    """No fault: SENTINEL FAILOVER, the switch a planned maintenance makes
    (the baseline the others are compared with)."""
    s1 = lay.cluster.sentinels[0]
    lay.mark("fault")
    control(s1.host, s1.port).execute_command("SENTINEL", "FAILOVER", lay.cluster.name)
    lay.wait_failover()
    time.sleep(1)
    lay.mark("heal")


def _proxy_rounds(lay):
    """The proxy's Sentinel rounds so far (PROXY TOPOLOGY), or None."""
    try:
        text = control(lay.proxy.host, lay.proxy.port).execute_command("PROXY", "TOPOLOGY")
        return int(re.search(r"^rounds:(\d+)", text.decode(), re.M).group(1))
    except (redis.RedisError, OSError, AttributeError):
        return None


def _proxy_reader(lay, stop, counts):
    """GETs through the proxy from a client that writes nothing (so that
    read-your-writes sends them to any healthy replica), 8 at a time (so
    that least-outstanding spreads them over the replicas), until stop."""
    c = control(lay.proxy.host, lay.proxy.port, timeout=PROXY_CLIENT_TIMEOUT)
    while not stop.is_set():
        try:
            p = c.pipeline(transaction=False)
            for _ in range(8):
                p.get("k:0")
            p.execute()
            counts["ok"] += 8
        except (redis.RedisError, OSError):
            counts["failed"] += 1
            stop.wait(0.05)
        stop.wait(0.01)


def _gets(server):
    """GETs server has executed (INFO commandstats), or None if it is down."""
    try:
        return control(server.host, server.port, timeout=1.0).info("commandstats") \
            .get("cmdstat_get", {}).get("calls", 0)
    except (redis.RedisError, OSError):
        return None


def hostnames(lay):
    """Every server and Sentinel known by a host name (Sentinels with
    announce-hostnames and resolve-hostnames, replicas with
    replica-announce-ip), the proxy given the Sentinels by name: the master
    is killed (kill -9) and the Sentinels fail over; then, for 6 s, every
    lookup of the proxy takes 2 s; then the old master comes back under its
    name at another address (127.0.0.8) and rejoins as a replica."""
    names = lay.names
    lay.mark("fault")
    lay.mark("kill")
    lay.cluster.master.kill9()
    lay.wait_failover()
    if lay.proxy is not None:
        c = control(lay.proxy.host, lay.proxy.port)
        try:
            wait_for(lambda: re.search(r"^master:(\S+)", c.execute_command(
                "PROXY", "TOPOLOGY").decode(), re.M).group(1) not in (lay.old_master, "none"),
                timeout=15, interval=0.05, what="the proxy to follow")
        except TimeoutError:
            pass
    time.sleep(1)
    # Slow names: the proxy's cached answers expire (5 s) and are refreshed
    # through a name server that answers after 2 s, while the load goes on.
    rounds = _proxy_rounds(lay) if lay.proxy is not None else None
    queries = names.queries
    lay.mark("slow")
    names.slow(True)
    time.sleep(6)
    names.slow(False)
    lay.mark("slow_end")
    lay.windows["slow"] = (lay.marks["slow"], lay.marks["slow_end"])
    lay.extra["dns_queries_while_slow"] = names.queries - queries
    if rounds is not None:
        after = _proxy_rounds(lay)
        lay.extra["proxy_rounds_while_slow"] = None if after is None else after - rounds
    # The old master's name moves: it comes back at MOVED, empty (kill -9,
    # no persistence), as a master until the Sentinels convert it.
    old = lay.cluster.master
    name = old.hostname
    names.set(name, MOVED)
    lay.mark("moved")
    back = RedisServer(lay.workdir, port=old.port, host=MOVED,
                       args=["--replica-announce-ip", name])
    back.hostname = name
    back.start()
    lay.cluster.master = back  # the server list the settling checks read
    lay.moved = back
    stop, counts = threading.Event(), {"ok": 0, "failed": 0}
    reader = None
    if lay.proxy is not None:
        reader = threading.Thread(target=_proxy_reader, args=(lay, stop, counts), daemon=True)
        reader.start()

    def rejoined():
        r = control(back.host, back.port).info("replication")
        return r["role"] == "slave" and r["master_link_status"] == "up"
    try:
        wait_for(rejoined, timeout=30, interval=0.2, what="the moved server to rejoin")
        lay.mark("rejoined")
    except TimeoutError:
        pass
    if reader is not None:
        # The proxy lists the moved server as a healthy replica (the
        # Sentinels refresh a replica's INFO every 10 s: they may take as
        # long to see it linked) and reads reach it at its new address.
        c = control(lay.proxy.host, lay.proxy.port)
        try:
            wait_for(lambda: "addr=%s,healthy=1" % lay.addr(back) in c.execute_command(
                "PROXY", "TOPOLOGY").decode(), timeout=25, interval=0.1,
                what="the proxy to use the moved server")
            lay.mark("proxy_uses_moved")
        except TimeoutError:
            pass
        try:
            clients = control(back.host, back.port).client_list()
            lay.extra["moved_proxy_connections"] = sum(
                1 for cl in clients if cl["addr"].rsplit(":", 1)[0] == CLIENT_SIDE)
            lay.extra["moved_clients"] = [(cl["addr"], cl["cmd"]) for cl in clients]
        except (redis.RedisError, OSError):
            pass
        try:
            wait_for(lambda: (_gets(back) or 0) > 0, timeout=5, interval=0.1,
                     what="reads on the moved server")
            lay.mark("moved_reads")
        except TimeoutError:
            pass
        time.sleep(1)
        stop.set()
        reader.join(PROXY_CLIENT_TIMEOUT + 1)
        lay.extra["reader"] = dict(counts)
    lay.extra["moved_gets"] = _gets(back)
    if lay.proxy is not None:
        try:
            text = control(lay.proxy.host, lay.proxy.port).execute_command(
                "PROXY", "TOPOLOGY").decode()
            lay.extra["proxy_backends"] = re.findall(
                r"^(?:replica\d+|routed\d+|backend\d+):(.*)\r?$", text, re.M)
        except (redis.RedisError, OSError):
            pass
    lay.mark("heal")


SCENARIOS = {f.__name__: f for f in (master_isolated, proxy_master_cut, proxy_sentinels_cut,
                                     proxy_sentinels_cut_failover, minority_side, master_frozen,
                                     stale_sentinel, planned_failover, hostnames)}
NAMED_SCENARIOS = {"hostnames"}


# ---- one run ---------------------------------------------------------------------------------

def _series(times, t0, n):
    out = [0] * n
    for t in times:
        k = int((t - t0 - BUCKETS_FROM) / BUCKET)
        if 0 <= k < n:
            out[k] += 1
    return out


def count_between(result, series, start, end):
    """How many of result's series (acked, lost, errors, stale) fall between
    start and end seconds after the fault."""
    a = max(0, int(round((start - BUCKETS_FROM) / BUCKET)))
    b = max(0, int(round((end - BUCKETS_FROM) / BUCKET)))
    return sum(result["series"][series][a:b])


SENTINEL_EVENTS = ("+sdown", "-sdown", "+odown", "-odown", "+try-failover", "+elected-leader",
                   "+promoted-slave", "+switch-master", "+convert-to-slave", "+tilt",
                   "-failover-abort-not-elected", "+failover-end")
LOG_OF_INTEREST = re.compile(r"holding|topology v|false alarm|ignoring|fenc|none of the|waiting for replicas|"
                             r"unreachable|still:|warn|error", re.I)


def run(scenario, path, warmup=1.5, after_heal=4.0):
    """One scenario against one path, inside a prepared namespace. Returns a
    dict: scenario, path, skipped (a reason, or None), acked_writes (RPUSHes
    acknowledged), lost_acked_writes (of those, missing on the final master),
    lost_sets (clients whose final k:C is below their last acknowledged SET),
    stale_reads, errors, error_kinds, connections_closed (sockets the
    clients had to open again), longest_ms, requests, events (seconds after
    the fault: heal, failover, first +sdown/+odown/+switch-master of the
    master, and for the proxy proxy_held and proxy_new_master),
    proxy_masters (the proxy's master over time), proxy_back_to_old (times
    the proxy named the old master again after naming the new one),
    lost_ack_first_s/last_s, series (per BUCKET from BUCKETS_FROM: acked,
    lost, errors, stale), settled, old_master, new_master, proxy_rc,
    proxy_log (lines of interest). The load runs from warmup seconds before
    the fault until after_heal seconds after it is healed and, beyond, until
    the Sentinels have demoted every other master (bounded)."""
    res = {"scenario": scenario, "path": path, "skipped": None, "hold_timeout_s": HOLD_TIMEOUT}
    if path == "proxy-fenced" and not fence_supported():
        res["skipped"] = "this build has no sentinel.fence-after"
    elif path == "haproxy" and shutil.which("haproxy") is None:
        res["skipped"] = "haproxy is not installed (make bench-deps)"
    if res["skipped"]:
        return res
    started = time.monotonic()
    workdir = make_workdir("sp-faults-")
    names = lay = load = mon = None
    try:
        if scenario_needs_names(scenario):
            names = NameWorld(workdir, NAMES)
        lay = Layout(workdir, path, names)
        lay.start()
        mon = Monitor(lay)
        mon.start()
        load = Workload(lay.make_client)
        load.start()
        time.sleep(warmup)
        SCENARIOS[scenario](lay)
        time.sleep(after_heal)
        lay.wait_one_master()
        time.sleep(0.5)
        res["load_stopped"] = load.stop()
        final, res["settled"] = lay.settle()
        mon.stop()
        res.update(_figures(lay, load, mon, final))
    finally:
        try:
            heal()
        except (OSError, subprocess.CalledProcessError):
            pass
        if load is not None:
            load.stop(timeout=5)
        if mon is not None:
            mon.stop()
        if lay is not None:
            lay.stop()
            res["extra"] = lay.extra
        if names is not None:
            names.close()
        if lay is not None and lay.proxy is not None:
            res["proxy_rc"] = lay.proxy_rc
            log = lay.proxy.log()
            res["proxy_sanitizer"] = "Sanitizer" in log or "runtime error" in log
            res["proxy_log"] = [ln for ln in log.splitlines() if LOG_OF_INTEREST.search(ln)][:40]
        if not os.environ.get("SP_KEEP_TMP"):
            shutil.rmtree(workdir, ignore_errors=True)
        res["wall_s"] = round(time.monotonic() - started, 1)
    return res


def _figures(lay, load, mon, final):
    t0 = lay.marks["fault"]
    rel = (lambda t: None if t is None else round(t - t0, 3))
    final = final or lay.old_master
    host, port = final.rsplit(":", 1)
    c = control(host, int(port), timeout=10)
    lost_times, lost_sets = [], 0
    for k in range(len(load.threads)):
        have = {int(v) for v in c.lrange("l:%d" % k, 0, -1)}
        lost_times += [t for i, t in load.pushed[k] if i not in have]
        value = c.get("k:%d" % k)
        lost_sets += load.last_set[k][0] > (int(value) if value is not None else 0)
    reqs = [r for rs in load.requests for r in rs]
    errors = [r for r in reqs if r[3]]
    kinds = {}
    for r in errors:
        kinds[r[3]] = kinds.get(r[3], 0) + 1
    n = int((time.monotonic() - t0 - BUCKETS_FROM) / BUCKET) + 1
    acked = [t for ps in load.pushed for _, t in ps]
    out = {
        "old_master": lay.old_master, "new_master": final,
        "acked_writes": len(acked), "lost_acked_writes": len(lost_times), "lost_sets": lost_sets,
        "stale_reads": sum(len(s) for s in load.stale), "errors": len(errors),
        "error_kinds": kinds, "requests": len(reqs),
        "connections_closed": sum(max(0, o[0] - 1) for o in load.opened),
        "longest_ms": round(max((r[1] - r[0]) * 1000 for r in reqs), 1) if reqs else 0,
        "lost_ack_first_s": rel(min(lost_times)) if lost_times else None,
        "lost_ack_last_s": rel(max(lost_times)) if lost_times else None,
        "series": {"acked": _series(acked, t0, n), "lost": _series(lost_times, t0, n),
                   "errors": _series([r[1] for r in errors], t0, n),
                   "stale": _series([t for s in load.stale for t in s], t0, n)},
    }
    ev = {k: rel(v) for k, v in lay.marks.items()}
    old = lay.old_master.replace(":", " ")
    ev["first_sdown"] = rel(mon.first("+sdown", t0, "master %s %s" % (lay.cluster.name, old)))
    ev["first_odown"] = rel(mon.first("+odown", t0, "master %s %s" % (lay.cluster.name, old)))
    ev["switch_master"] = rel(mon.first("+switch-master", t0))
    if lay.proxy is not None:
        pm = mon.proxy_masters
        ev["proxy_held"] = rel(next((t for t, m in pm if t >= t0 and m == "none"), None))
        new_seen = next((t for t, m in pm if t >= t0 and m == final and final != lay.old_master),
                        None)
        ev["proxy_new_master"] = rel(new_seen)
        out["proxy_back_to_old"] = sum(1 for t, m in pm if new_seen is not None and t > new_seen
                                       and m == lay.old_master)
        out["proxy_masters"] = [(rel(t), m) for t, m in pm][-40:]
    out["events"] = ev
    out["windows"] = {}
    for name, (start, end) in lay.windows.items():
        inside = [r for r in reqs if start <= r[0] < end]
        out["windows"][name] = {
            "from_s": rel(start), "to_s": rel(end), "requests": len(inside),
            "errors": sum(1 for r in inside if r[3]),
            "acked_writes": sum(1 for t in acked if start <= t < end),
            "longest_ms": round(max((r[1] - r[0]) * 1000 for r in inside), 1) if inside else 0}
    with mon.lock:
        out["sentinel_events"] = [(rel(t), h, ch, d) for t, h, ch, d in mon.events
                                  if t >= t0 - 1 and ch in SENTINEL_EVENTS][:60]
    return out


def run_isolated(scenario, path, timeout=240):
    """run() in a network namespace of its own (faults_netns.py); the dict."""
    import json
    env = dict(os.environ, SP_BINARY=PROXY_BIN)
    # A mount namespace too (private): NameWorld bind-mounts /etc/hosts there.
    p = subprocess.Popen(["unshare", "-n", "-m", "--propagation", "private", "/usr/bin/python3",
                          NETNS_SCRIPT, scenario, path],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # the run and every server it started
        out, err = p.communicate()
        raise AssertionError("%s/%s ran past %d s:\n%s" % (scenario, path, timeout, err[-4000:]))
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        raise AssertionError("%s/%s failed (%d):\n%s%s" % (scenario, path, p.returncode,
                                                          out[-2000:], err[-4000:]))
    return json.loads(lines[-1])
