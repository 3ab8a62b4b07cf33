"""Process harness for the integration tests.

Starts real redis-server, redis-sentinel and sentinel-proxy processes on free
loopback ports inside a temporary directory, and stops every one of them at
the end, also when a test fails. Nothing here talks to an address outside
127.0.0.0/8.
"""
import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROXY_BIN = os.environ.get("SP_BINARY", os.path.join(ROOT, "build", "sentinel-proxy"))
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_SENTINEL = shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel"

_live = []  # every process started, killed at exit whatever happens


def _kill_all():
    for p in list(_live):
        try:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
                p.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass


atexit.register(_kill_all)


def sanitized():
    """True when the proxy under test is built with AddressSanitizer (its
    quarantine makes RSS say nothing about the proxy's own memory)."""
    with open(PROXY_BIN, "rb") as f:
        return b"__asan_init" in f.read()


def free_port(host="127.0.0.1"):
    """A TCP port on host (127.0.0.1) that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - the predicate may fail while starting
            last = e
        time.sleep(interval)
    raise TimeoutError("timed out waiting for %s (last error: %r)" % (what, last))


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def connect_refused(port, host="127.0.0.1"):
    """True when nothing listens on port (the connection is refused)."""
    try:
        socket.create_connection((host, port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


class Process:
    """A child process with its own log file, stopped reliably."""

    def __init__(self, argv, logpath, cwd=None, env=None):
        self.argv = argv
        self.logpath = logpath
        self.cwd = cwd
        self.env = env
        self.proc = None

    def start(self):
        self.log = open(self.logpath, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=self.cwd, env=self.env)
        _live.append(self.proc)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=10, again_after=None):
        """Stop with sig (and once more after again_after seconds, if
        given, as a second SIGTERM ends a proxy's graceful drain)."""
        if self.proc is None:
            return None
        if self.alive():
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
                os.kill(self.proc.pid, sig)
                if again_after is not None:
                    try:
                        self.proc.wait(timeout=again_after)
                    except subprocess.TimeoutExpired:
                        os.kill(self.proc.pid, sig)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            except OSError:
                pass
        rc = self.proc.returncode
        if self.proc in _live:
            _live.remove(self.proc)
        self.log.close()
        return rc

    def kill9(self):
        return self.stop(sig=signal.SIGKILL)

    def logtext(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


class TlsFiles:
    """A test CA and certificates, made with the openssl command in dir:
    ca (CA), server (for 127.0.0.1 and localhost), client; other-ca and
    other-server and other-client (signed by it), expired-server and
    expired-client for the failures."""

    NAMES = ("ca", "other-ca")

    def __init__(self, d):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        for ca in self.NAMES:
            self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
                          "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30",
                          "-keyout", self.path(ca + ".key"), "-out", self.path(ca + ".crt"),
                          "-subj", "/CN=sentinel-proxy test %s" % ca)
        self.make("server", "ca")
        self.make("client", "ca", server=False)
        self.make("other-server", "other-ca")
        self.make("other-client", "other-ca", server=False)
        self.make("expired-server", "ca", expired=True)
        self.make("expired-client", "ca", server=False, expired=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def _openssl(self, *args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, cwd=self.dir)

    def make(self, name, ca, server=True, expired=False):
        """Key NAME.key and certificate NAME.crt signed by ca."""
        cnf = self.path(ca + ".cnf")
        if not os.path.exists(cnf):
            with open(cnf, "w") as f:
                f.write("[ca]\ndefault_ca = d\n[d]\ndatabase = %s.index\nnew_certs_dir = %s\n"
                        "serial = %s.serial\ndefault_md = sha256\npolicy = p\n"
                        "[p]\ncommonName = supplied\n" % (self.path(ca), self.dir, self.path(ca)))
            open(self.path(ca + ".index"), "w").close()
            with open(self.path(ca + ".serial"), "w") as f:
                f.write("%s\n" % os.urandom(8).hex())
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server else
                    "extendedKeyUsage=clientAuth\n")
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-nodes", "-keyout", self.path(name + ".key"), "-out",
                      self.path(name + ".csr"), "-subj", "/CN=%s" % name)
        dates = (["-startdate", "20200101000000Z", "-enddate", "20200201000000Z"] if expired
                 else ["-days", "30"])
        self._openssl("ca", "-batch", "-config", cnf, "-cert", self.path(ca + ".crt"),
                      "-keyfile", self.path(ca + ".key"), "-in", self.path(name + ".csr"),
                      "-out", self.path(name + ".crt"), "-extfile", ext, "-notext", *dates)

    def server_args(self, cert="server"):
        """redis-server arguments for TLS only (clients, replication)."""
        return ["--port", "0", "--tls-cert-file", self.path(cert + ".crt"),
                "--tls-key-file", self.path(cert + ".key"),
                "--tls-ca-cert-file", self.path("ca.crt"), "--tls-auth-clients", "optional",
                "--tls-replication", "yes"]

    def client_kw(self, cert=None):
        """redis-py arguments for a TLS client that checks the server."""
        kw = {"ssl": True, "ssl_ca_certs": self.path("ca.crt"), "ssl_cert_reqs": "required"}
        if cert is not None:
            kw.update(ssl_certfile=self.path(cert + ".crt"), ssl_keyfile=self.path(cert + ".key"))
        return kw

    def proxy_listener_args(self):
        return ["--set", "tls.cert=" + self.path("server.crt"),
                "--set", "tls.key=" + self.path("server.key")]

    def proxy_leg_args(self, leg, ca="ca"):
        """Proxy flags for TLS to servers (backend-tls) or Sentinels (sentinel.tls)."""
        return ["--set", leg + ".enabled=true", "--set", "%s.ca=%s" % (leg, self.path(ca + ".crt"))]


class RedisServer:
    """A redis-server on a free loopback port in its own directory; with tls
    (a TlsFiles), on a TLS port only. host is the loopback address it binds
    (127.0.0.1); on another, its own connections (replication) leave from
    that address too, so that a master lists it there."""

    def __init__(self, workdir, port=None, args=(), password=None, tls=None, cert="server",
                 host="127.0.0.1"):
        self.host = host
        self.port = port or free_port(host)
        self.cert = cert
        self.dir = os.path.join(workdir, "redis-%d" % self.port if host == "127.0.0.1"
                                else "redis-%s-%d" % (host, self.port))
        os.makedirs(self.dir, exist_ok=True)
        self.args = list(args)
        self.password = password
        self.tls = tls
        self.proc = None

    def start(self):
        # A master waits repl-diskless-sync-delay (5 s) for more replicas
        # before it sends its data set: not in tests.
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", self.host,
                "--dir", self.dir, "--save", "", "--appendonly", "no",
                "--protected-mode", "no", "--repl-diskless-sync-delay", "0"]
        if self.host != "127.0.0.1":
            argv += ["--bind-source-addr", self.host]
        if self.tls is not None:
            argv += self.tls.server_args(self.cert) + ["--tls-port", str(self.port)]
        self.proc = Process(argv + self.args, os.path.join(self.dir, "redis.log")).start()
        wait_for(lambda: self.client().ping(), what="redis-server on %d" % self.port)
        return self

    def client(self, **kw):
        kw.setdefault("socket_timeout", 10)
        kw.setdefault("password", self.password)
        if self.tls is not None:
            for k, v in self.tls.client_kw().items():
                kw.setdefault(k, v)
            if self.cert != "server":
                kw["ssl_cert_reqs"] = "none"  # a certificate the test wants refused
        return redis.Redis(host=self.host, port=self.port, **kw)

    def stop(self):
        if self.proc is not None:
            self.proc.stop()

    def kill9(self):
        if self.proc is not None:
            self.proc.kill9()

    def restart(self):
        self.stop()
        return self.start()


class Proxy:
    """sentinel-proxy started with flags (and optionally a config file)."""

    def __init__(self, workdir, backend=None, args=(), config=None, port=None, listen_flag=True,
                 binary=None, host="127.0.0.1"):
        self.binary = binary or PROXY_BIN
        self.host = host
        self.port = port or free_port(host)
        self.listen_flag = listen_flag
        self.dir = workdir
        self.backend = backend
        self.args = list(args)
        self.config = config
        self.proc = None

    def argv(self):
        argv = [self.binary]
        if self.listen_flag:
            argv += ["--listen", "%s:%d" % (self.host, self.port)]
        if self.config is not None:
            path = os.path.join(self.dir, "proxy-%d.yaml" % self.port)
            with open(path, "w") as f:
                f.write(self.config)
            argv += ["-c", path]
        if self.backend is not None:
            argv += ["--backend", "127.0.0.1:%d" % self.backend]
        if os.environ.get("SP_WORKERS"):
            argv += ["--workers", os.environ["SP_WORKERS"]]
        return argv + self.args

    def start(self, wait=True):
        self.proc = Process(self.argv(), os.path.join(self.dir, "proxy-%d.log" % self.port)).start()
        if wait:
            wait_for(lambda: port_open(self.port, self.host) or not self.proc.alive(),
                     what="sentinel-proxy on %d" % self.port)
            assert self.proc.alive(), "proxy exited:\n" + self.proc.logtext()
        return self

    def client(self, **kw):
        kw.setdefault("socket_timeout", 30)
        return redis.Redis(host=self.host, port=self.port, **kw)

    def stop(self, check=True):
        """Stop with SIGTERM; unless check is False, a clean shutdown is
        asserted: exit status 0 and no sanitizer report in the log."""
        if self.proc is None:
            return None
        # A graceful drain waits for requests in flight (shutdown-timeout);
        # a test that left one blocked should not wait that long.
        rc = self.proc.stop(again_after=2)
        self.proc_rc = rc
        if check:
            log = self.proc.logtext()
            assert "Sanitizer" not in log and "runtime error" not in log, log[-6000:]
            assert rc == 0, "proxy exited with %r:\n%s" % (rc, log[-4000:])
        return rc

    def rss_kb(self):
        return self.proc.rss_kb()

    def log(self):
        return self.proc.logtext()


def raw_exchange(port, data, wait=0.5, chunks=None):
    """Send raw bytes, return everything received until EOF or a quiet period,
    and whether the server closed the connection."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        for part in (chunks or [data]):
            try:
                s.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break  # the peer closed after an error: read what it said
            if chunks:
                time.sleep(0.002)
        s.settimeout(wait)
        out = b""
        closed = False
        while True:
            try:
                d = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not d:
                closed = True
                break
            out += d
        return out, closed
    finally:
        s.close()


def save_results(name, data, markdown):
    """Write a long run's figures as bench/results/NAME-DATE.json and .md
    (SP_RESULTS_DIR= elsewhere); returns the JSON file's path."""
    import json
    d = os.environ.get("SP_RESULTS_DIR") or os.path.join(ROOT, "bench", "results")
    os.makedirs(d, exist_ok=True)
    base = os.path.join(d, "%s-%s" % (name, time.strftime("%Y%m%d-%H%M%S")))
    with open(base + ".json", "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    with open(base + ".md", "w") as f:
        f.write(markdown)
    return base + ".json"


def percentile(values, p):
    """The p-th percentile (0..100) of values, nearest rank."""
    s = sorted(values)
    if not s:
        return None
    import math
    return s[min(len(s) - 1, max(0, math.ceil(p / 100.0 * len(s)) - 1))]


def make_workdir(prefix="sp-test-"):
    return tempfile.mkdtemp(prefix=prefix)


class Sentinel:
    """A redis-sentinel watching one master."""

    def __init__(self, workdir, master_port, name="mymaster", quorum=2, down_after=1000,
                 failover_timeout=6000, port=None, peers=(), replicas=(), tls=None,
                 listen_tls=False, servers_tls=False, cert="server", host="127.0.0.1",
                 master_host="127.0.0.1", name_of=None):
        """peers: (port, myid) of the other Sentinels and replicas: ports (on
        127.0.0.1) or (host, port) of the replicas, written as Sentinel
        itself records what it learnt, so that it starts knowing them
        instead of discovering them over several seconds. With tls (a
        TlsFiles): listen_tls puts port on TLS (a plain port stays open too
        unless servers_tls) with certificate cert, servers_tls makes it speak
        TLS to servers and other Sentinels (tls-replication). host is the
        loopback address it binds and, when not 127.0.0.1, the one its own
        connections leave from (so its peers see it there); the master is
        at master_host. name_of (address -> host name): the Sentinel
        resolves and announces host names, is known by name_of[host], and the
        master and replicas are named by their names (Cluster(names=...))."""
        self.host = host
        self.hostname = name_of[host] if name_of else None
        self.port = port or free_port(host)
        self.myid = os.urandom(20).hex()
        self.dir = os.path.join(workdir, "sentinel-%d" % self.port if host == "127.0.0.1"
                                else "sentinel-%s-%d" % (host, self.port))
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "sentinel.conf")
        self.name = name
        self.tls = tls if listen_tls else None
        self.cert = cert
        plain = self.port
        with open(self.conf, "w") as f:
            if tls is not None and (listen_tls or servers_tls):
                f.write("tls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\n"
                        "tls-auth-clients optional\n"
                        % (tls.path(cert + ".crt"), tls.path(cert + ".key"), tls.path("ca.crt")))
            if listen_tls:
                plain = 0 if servers_tls else free_port()
                f.write("tls-port %d\n" % self.port)
            if servers_tls:
                f.write("tls-replication yes\n")
            f.write("port %d\nbind %s\nprotected-mode no\ndir %s\n" % (plain, host, self.dir))
            if host != "127.0.0.1":
                f.write("bind-source-addr %s\n" % host)
            f.write("sentinel myid %s\n" % self.myid)
            if name_of:
                # Before the monitor line, which names the master by its name.
                f.write("sentinel resolve-hostnames yes\nsentinel announce-hostnames yes\n"
                        "sentinel announce-ip %s\n" % self.hostname)
                master_host = name_of[master_host]
            f.write("sentinel monitor %s %s %d %d\n" % (name, master_host, master_port, quorum))
            f.write("sentinel down-after-milliseconds %s %d\n" % (name, down_after))
            f.write("sentinel failover-timeout %s %d\n" % (name, failover_timeout))
            f.write("sentinel parallel-syncs %s 2\n" % name)
            for r in replicas:
                rhost, rport = r if isinstance(r, tuple) else ("127.0.0.1", r)
                rhost = name_of[rhost] if name_of else rhost
                f.write("sentinel known-replica %s %s %d\n" % (name, rhost, rport))
        self.proc = None

    def know(self, others):
        """Record the other Sentinels as known peers (before start)."""
        with open(self.conf, "a") as f:
            for o in others:
                f.write("sentinel known-sentinel %s %s %d %s\n"
                        % (self.name, o.hostname or o.host, o.port, o.myid))

    def start(self):
        self.proc = Process([REDIS_SENTINEL, self.conf], os.path.join(self.dir, "sentinel.log"))
        self.proc.start()
        wait_for(lambda: self.client().ping(), what="sentinel on %d" % self.port)
        return self

    def client(self):
        kw = self.tls.client_kw() if self.tls is not None else {}
        if kw and self.cert != "server":
            kw["ssl_cert_reqs"] = "none"  # a certificate the test wants refused
        return redis.Redis(host=self.host, port=self.port, socket_timeout=5,
                           decode_responses=True, **kw)

    def stop(self):
        if self.proc is not None:
            self.proc.stop()


class Cluster:
    """The classic layout: 1 master, N replicas, M Sentinels, on loopback.

    host: the loopback address of every process (127.0.0.1), or a list of
    addresses, one per process: the master, the replicas, then the
    Sentinels (test/integration/faults.py puts each on its own).

    names (address -> host name, for every address of host): each server and
    Sentinel is known by its name, which the caller makes resolve (an
    /etc/hosts of its own): replicas replicate from the master's name and
    announce theirs (replica-announce-ip), Sentinels resolve and announce
    host names, and proxy_args() names the Sentinels so."""

    def __init__(self, workdir, replicas=2, sentinels=3, quorum=2, name="mymaster",
                 down_after=1000, master_args=(), replica_args=(), tls=None, servers_tls=False,
                 sentinels_tls=False, failover_timeout=6000, host="127.0.0.1", names=None):
        self.workdir = workdir
        self.names = names
        self.name = name
        self.tls = tls
        self.servers_tls = servers_tls
        self.sentinels_tls = sentinels_tls
        hosts = [host] * (1 + replicas + sentinels) if isinstance(host, str) else list(host)
        assert len(hosts) == 1 + replicas + sentinels, "one address per process"
        stls = tls if servers_tls else None
        self.master = RedisServer(workdir, args=master_args, tls=stls, host=hosts[0])
        self.replicas = [RedisServer(workdir, tls=stls, host=h) for h in hosts[1:1 + replicas]]
        for srv in self.servers():
            srv.hostname = names[srv.host] if names else None
            if names:
                srv.args += ["--replica-announce-ip", srv.hostname]
        self.sentinel_hosts = hosts[1 + replicas:]
        self.replica_args = list(replica_args)
        self.nsentinels = sentinels
        self.quorum = quorum
        self.down_after = down_after
        self.failover_timeout = failover_timeout
        self.sentinels = []

    def start(self):
        self.master.start()
        for r in self.replicas:
            r.args = (["--replicaof", self.master.hostname or self.master.host,
                       str(self.master.port)] + r.args + self.replica_args)
            r.start()
        for r in self.replicas:
            wait_for(lambda: r.client().info("replication")["master_link_status"] == "up",
                     what="replica %d in sync" % r.port)
        # A replica that has just loaded the master's data set may not take
        # the stream yet (and WAIT may already count it): send something
        # through the stream and wait until every replica has processed it.
        self.master.client().publish("__harness__:sync", "x")
        target = self.master.client().info("replication")["master_repl_offset"]
        for r in self.replicas:
            wait_for(lambda: r.client().info("replication")["slave_repl_offset"] >= target,
                     what="replica %d to follow the stream" % r.port)
        for h in self.sentinel_hosts:
            self.sentinels.append(Sentinel(self.workdir, self.master.port, self.name, self.quorum,
                                           self.down_after, self.failover_timeout,
                                           replicas=[(r.host, r.port) for r in self.replicas],
                                           tls=self.tls, listen_tls=self.sentinels_tls,
                                           servers_tls=self.servers_tls, host=h,
                                           master_host=self.master.host, name_of=self.names))
        for s in self.sentinels:
            s.know([o for o in self.sentinels if o is not s])
        for s in self.sentinels:
            s.start()
        self.wait_settled()
        return self

    def servers(self):
        return [self.master] + self.replicas

    def server_on(self, port):
        return next(s for s in self.servers() if s.port == port)

    def wait_settled(self, timeout=30):
        """Every live Sentinel knows the others and every replica."""
        def settled():
            for s in self.sentinels:
                if not s.proc.alive():
                    continue
                m = s.client().sentinel_master(self.name)
                if m["num-other-sentinels"] < self.nsentinels - 1:
                    return False
                if m["num-slaves"] < len(self.replicas):
                    return False
            return True
        wait_for(settled, timeout=timeout, what="Sentinels to discover each other")

    def master_port(self):
        for s in self.sentinels:
            if s.proc.alive():
                try:
                    return int(s.client().sentinel_get_master_addr_by_name(self.name)[1])
                except redis.RedisError:
                    continue
        return None

    def wait_master_change(self, old_port, timeout=30):
        return wait_for(lambda: (self.master_port() or old_port) != old_port and self.master_port(),
                        timeout=timeout, what="failover away from %d" % old_port)

    def proxy_args(self, sentinels=None):
        args = ["--master-name", self.name]
        for s in (sentinels if sentinels is not None else self.sentinels):
            args += ["--sentinel", "%s:%d" % (s.hostname or s.host, s.port)]
        return args

    def stop(self):
        for s in self.sentinels:
            s.stop()
        for r in self.servers():
            r.stop()


def topology(proxy_client, section="TOPOLOGY"):
    """PROXY TOPOLOGY (or another PROXY section: STATS) as a dict of key ->
    value strings."""
    text = proxy_client.execute_command("PROXY", section)
    if isinstance(text, bytes):
        text = text.decode()
    out = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k] = v
    return out


def kill_proxy_connections(server, proxy):
    """What Sentinel does to an instance it reconfigures: every client
    connection on the server (the proxy's) is killed. Returns once the proxy
    has seen each of its connections to the server go (its backend_lost
    count), so that what comes next finds them gone. The proxy must have
    no connection to any other server."""
    before = proxy_stats(proxy)
    open_now = before["backend_connects"] - before["backend_closes"]
    c = server.client()
    try:
        c.client_kill_filter(_type="normal", skipme=True)
        c.client_kill_filter(_type="pubsub", skipme=True)
    finally:
        c.close()
    wait_for(lambda: proxy_stats(proxy)["backend_lost"] >= before["backend_lost"] + open_now,
             what="the proxy to see its %d connection(s) killed" % open_now)


def proxy_stats(target, password=None):
    """PROXY STATS of a proxy (a redis-py client, a port, or a Proxy) as a
    dict; values that are numbers are ints."""
    if isinstance(target, Proxy):
        target = target.port
    if isinstance(target, int):
        c = redis.Redis(host="127.0.0.1", port=target, password=password, socket_timeout=10)
        try:
            raw = topology(c, "STATS")
        finally:
            c.close()
    else:
        raw = topology(target, "STATS")
    return {k: int(v) if v.lstrip("-").isdigit() else v for k, v in raw.items()}


def blocked_on(server, n=1, timeout=10):
    """Wait until n clients are blocked (BLPOP...) on a redis-server."""
    wait_for(lambda: server.client().info("clients")["blocked_clients"] == n, timeout=timeout,
             what="%d blocked client(s) on %d" % (n, server.port))


def subscribed_on(server, channel, n=1, timeout=10):
    """Wait until n clients are subscribed to channel on a redis-server."""
    wait_for(lambda: dict(server.client().pubsub_numsub(channel)).get(channel.encode(), 0) >= n,
             timeout=timeout, what="a subscriber to %s on %d" % (channel, server.port))


def engine_rounds(proxy):
    """Rounds the proxy's Sentinel engine has decided so far."""
    return int(topology(proxy.client())["rounds"])


def wait_rounds(proxy, n=2, timeout=15):
    """Wait until the engine has decided n more rounds: what it learnt
    before the call has been acted on."""
    start = engine_rounds(proxy)
    wait_for(lambda: engine_rounds(proxy) >= start + n, timeout=timeout,
             what="%d more engine rounds" % n)


def backend_offsets(proxy):
    """The answering worker's view of each backend: addr -> (role, offset)."""
    out = {}
    for k, v in topology(proxy.client()).items():
        if k.startswith("backend") and k[7:].isdigit():
            f = dict(kv.split("=", 1) for kv in v.split(","))
            out[f["addr"]] = (f["role"], int(f["offset"]))
    return out


def replicas_caught_up(proxy, slack=0):
    """True when, as far as the proxy knows, every replica has processed the
    master's offset (less slack bytes)."""
    offs = backend_offsets(proxy)
    master = [o for role, o in offs.values() if role == "master"]
    replicas = [o for role, o in offs.values() if role == "replica"]
    return bool(master) and bool(replicas) and all(o + slack >= master[0] for o in replicas)


def lent(proxy, password=None):
    """Dedicated connections lent to clients by the worker that answers."""
    return proxy_stats(proxy, password)["dedicated_lent_worker"]


class FakeSentinel:
    """A TCP server on loopback that plays a broken Sentinel:
    "hang" accepts and never answers, "garbage" answers nonsense, "stale"
    speaks RESP but reports the master it is given (an old one) with an
    old epoch. "loading" plays a master loading its data set instead: ROLE
    says master, most commands get -LOADING. In "stale" mode, replicas lists
    the (host, port) it reports as the master's replicas (changeable live).
    It listens on host:port (a free port on 127.0.0.1 by default)."""

    def __init__(self, mode, master=("127.0.0.1", 1), epoch=0, name="mymaster", replicas=(),
                 host="127.0.0.1", port=0):
        import threading
        self.mode = mode
        self.master = master
        self.replicas = list(replicas)
        self.epoch = epoch
        self.name = name
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.subscribers = []
        self.lock = threading.Lock()
        self.requests = 0
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @staticmethod
    def _bulk(s):
        s = s.encode() if isinstance(s, str) else s
        return b"$%d\r\n%s\r\n" % (len(s), s)

    def _kv(self, pairs):
        out = b"*%d\r\n" % (2 * len(pairs))
        for k, v in pairs:
            out += self._bulk(k) + self._bulk(str(v))
        return out

    def _answer(self, args):
        cmd = [a.lower() for a in args[:2]]
        if self.mode == "loading":
            if cmd[:1] == [b"role"]:
                return b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"
            if cmd[:1] in ([b"ping"], [b"command"], [b"client"]):
                return {b"ping": b"+PONG\r\n", b"command": b"*0\r\n"}.get(cmd[0], b"+OK\r\n")
            return b"-LOADING Redis is loading the dataset in memory\r\n"
        if cmd[:2] == [b"sentinel", b"master"]:
            return self._kv([("name", self.name), ("ip", self.master[0]),
                             ("port", self.master[1]), ("flags", "master"),
                             ("config-epoch", self.epoch)])
        if cmd[:2] in ([b"sentinel", b"replicas"], [b"sentinel", b"slaves"]):
            replicas = list(self.replicas)
            return b"*%d\r\n" % len(replicas) + b"".join(
                self._kv([("name", "%s:%d" % (h, p)), ("ip", h), ("port", p), ("flags", "slave"),
                          ("master-link-status", "ok"), ("slave-repl-offset", 0)])
                for h, p in replicas)
        if cmd[:1] == [b"sentinel"]:
            return b"*0\r\n"
        if cmd[:1] == [b"subscribe"]:
            return b"".join(b"*3\r\n$9\r\nsubscribe\r\n" + self._bulk(c) + b":%d\r\n" % (i + 1)
                            for i, c in enumerate(args[1:]))
        if cmd[:1] == [b"ping"]:
            return b"+PONG\r\n"
        return b"-ERR unknown\r\n"

    @staticmethod
    def _parse(buf):
        """Complete multibulk requests in buf -> (list of argv, rest)."""
        reqs = []
        while buf.startswith(b"*"):
            try:
                line, rest = buf.split(b"\r\n", 1)
                n = int(line[1:])
                args = []
                for _ in range(n):
                    line, rest = rest.split(b"\r\n", 1)
                    ln = int(line[1:])
                    if len(rest) < ln + 2:
                        raise ValueError
                    args.append(rest[:ln])
                    rest = rest[ln + 2:]
            except ValueError:
                break
            reqs.append(args)
            buf = rest
        return reqs, buf

    def _serve(self):
        import select as sel
        bufs = {}
        while not self.stopped:
            rl = [self.sock] + list(bufs)
            try:
                ready, _, _ = sel.select(rl, [], [], 0.1)
            except (OSError, ValueError):
                break
            for s in ready:
                if s is self.sock:
                    try:
                        c, _ = self.sock.accept()
                    except OSError:
                        continue
                    bufs[c] = b""
                    self.conns.append(c)
                    continue
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    bufs.pop(s, None)
                    s.close()
                    continue
                self.requests += 1
                if self.mode == "hang":
                    continue
                if self.mode == "garbage":
                    s.sendall(b"%%%%garbage\x00\xff not resp at all\r\n:x\r\n")
                    continue
                reqs, bufs[s] = self._parse(bufs[s] + data)
                for args in reqs:
                    with self.lock:
                        try:
                            self._reply(s, self._answer(args))
                        except OSError:
                            break  # the proxy closed it; the next recv sees that
                        if args and args[0].lower() == b"subscribe":
                            self.subscribers.append(s)

    def _reply(self, conn, data):
        conn.sendall(data)

    def publish(self, channel, payload):
        """Send an event to every connection that subscribed."""
        msg = b"*3\r\n$7\r\nmessage\r\n" + self._bulk(channel) + self._bulk(payload)
        with self.lock:
            for s in self.subscribers:
                try:
                    s.sendall(msg)
                except OSError:
                    pass

    def stop(self):
        self.stopped = True
        self.thread.join(2)
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        self.sock.close()


class Incomplete(Exception):
    """The bytes end before the reply does."""


def parse_reply(buf, pos=0):
    """The RESP2/RESP3 reply at buf[pos:] -> (python value, end). Type
    information is kept: simple strings, errors, doubles, booleans, big
    numbers and verbatim strings become (type-char, payload) tuples, maps,
    sets and pushes (type-char, items), an attribute ("|", items, the reply
    it describes). Raises Incomplete when buf ends first."""
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        raise Incomplete()
    t, line, pos = buf[pos:pos + 1], buf[pos + 1:nl], nl + 2
    if t == b":":
        return int(line), pos
    if t in (b"+", b"-", b",", b"#", b"("):
        return (t.decode(), line), pos
    if t == b"_":
        return ("_",), pos
    if t in (b"$", b"!", b"="):
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            raise Incomplete()
        return (buf[pos:pos + n] if t == b"$" else (t.decode(), buf[pos:pos + n])), pos + n + 2
    if t in (b"*", b"%", b"~", b">", b"|"):
        n = int(line)
        if n < 0:
            return ("*", None), pos
        items = []
        for _ in range(n * 2 if t in (b"%", b"|") else n):
            v, pos = parse_reply(buf, pos)
            items.append(v)
        if t == b"|":
            v, pos = parse_reply(buf, pos)
            return ("|", items, v), pos
        return (items if t == b"*" else (t.decode(), items)), pos
    raise ValueError("unexpected reply type %r in %r" % (t, buf[:100]))


def reply_value(raw):
    """The python value of one whole raw reply (see parse_reply)."""
    return parse_reply(raw)[0]


def split_reply(buf, pos=0):
    """Length of the first complete RESP2/RESP3 reply in buf, or 0."""
    try:
        return parse_reply(buf, pos)[1] - pos
    except Incomplete:
        return 0


def enc(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    """A client connection that returns each reply as the exact bytes sent."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, *cmds):
        self.sock.sendall(b"".join(enc(*c) for c in cmds))

    def read(self):
        while True:
            n = split_reply(self.buf)
            if n:
                out, self.buf = self.buf[:n], self.buf[n:]
                return out
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed; unparsed bytes %r" % self.buf[:200])
            self.buf += data

    def call(self, *args):
        self.send(args)
        return self.read()

    def silent(self, wait=0.15):
        """True if nothing more arrives (and the connection stays open)."""
        if self.buf:
            return False
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(10)
        self.buf += data
        return False

    def closed(self, wait=2.0):
        """True if the peer closes the connection within wait seconds, with
        nothing more sent."""
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        self.buf += data
        return data == b""

    def close(self):
        self.sock.close()
