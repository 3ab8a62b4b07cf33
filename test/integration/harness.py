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


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
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

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc is None:
            return None
        if self.alive():
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
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


class RedisServer:
    """A redis-server on a free loopback port in its own directory."""

    def __init__(self, workdir, port=None, args=()):
        self.port = port or free_port()
        self.dir = os.path.join(workdir, "redis-%d" % self.port)
        os.makedirs(self.dir, exist_ok=True)
        self.args = list(args)
        self.proc = None

    def start(self):
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--save", "", "--appendonly", "no",
                "--protected-mode", "no"] + self.args
        self.proc = Process(argv, os.path.join(self.dir, "redis.log")).start()
        wait_for(lambda: self.client().ping(), what="redis-server on %d" % self.port)
        return self

    def client(self, **kw):
        kw.setdefault("socket_timeout", 10)
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)

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

    def __init__(self, workdir, backend=None, args=(), config=None, port=None):
        self.port = port or free_port()
        self.dir = workdir
        self.backend = backend
        self.args = list(args)
        self.config = config
        self.proc = None

    def argv(self):
        argv = [PROXY_BIN, "--listen", "127.0.0.1:%d" % self.port]
        if self.config is not None:
            path = os.path.join(self.dir, "proxy-%d.yaml" % self.port)
            with open(path, "w") as f:
                f.write(self.config)
            argv += ["-c", path]
        if self.backend is not None:
            argv += ["--backend", "127.0.0.1:%d" % self.backend]
        return argv + self.args

    def start(self, wait=True):
        self.proc = Process(self.argv(), os.path.join(self.dir, "proxy-%d.log" % self.port)).start()
        if wait:
            wait_for(lambda: port_open(self.port) or not self.proc.alive(),
                     what="sentinel-proxy on %d" % self.port)
            assert self.proc.alive(), "proxy exited:\n" + self.proc.logtext()
        return self

    def client(self, **kw):
        kw.setdefault("socket_timeout", 30)
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)

    def stop(self):
        if self.proc is None:
            return None
        rc = self.proc.stop()
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


def make_workdir(prefix="sp-test-"):
    return tempfile.mkdtemp(prefix=prefix)
