"""Host names in what the Sentinels report and in sentinel.addresses.

The proxy runs in a mount namespace of its own (unshare -m) where
/etc/resolv.conf and /etc/hosts are files of the test's: a DNS server on
loopback that never answers makes a name take seconds to fail, without any
network, and /etc/hosts can be changed under the proxy. Skipped where a mount
namespace cannot be made (not root)."""
import os
import random
import socket
import stat
import subprocess
import time

import pytest

from harness import PROXY_BIN, FakeSentinel, Proxy, RedisServer, topology, wait_for

HOSTS_BASE = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n"


def _namespaces_work():
    try:
        return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                               "mount --bind /etc/hosts /etc/hosts"],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = pytest.mark.skipif(not _namespaces_work(),
                                reason="needs unshare -m and mount (root)")


class NameWorld:
    """resolv.conf and hosts files for a proxy, and a DNS server on loopback
    that takes every query and answers none."""

    def __init__(self, workdir, dns_timeout=3):
        self.dir = workdir
        self.dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(50):
            self.dns_ip = "127.53.%d.%d" % (random.randint(1, 254), random.randint(1, 254))
            try:
                self.dns.bind((self.dns_ip, 53))
                break
            except OSError:
                continue
        else:
            pytest.skip("no free loopback address for a silent DNS server")
        self.resolv = os.path.join(workdir, "resolv.conf")
        with open(self.resolv, "w") as f:
            f.write("nameserver %s\noptions timeout:%d attempts:1\n" % (self.dns_ip, dns_timeout))
        self.hosts = os.path.join(workdir, "hosts")
        self.set_hosts({})
        # The proxy's binary, started in a mount namespace with both files.
        inner = os.path.join(workdir, "in-namespace.sh")
        with open(inner, "w") as f:
            f.write("#!/bin/sh\nmount --bind %s /etc/resolv.conf || exit 97\n"
                    "mount --bind %s /etc/hosts || exit 97\nexec %s \"$@\"\n"
                    % (self.resolv, self.hosts, PROXY_BIN))
        self.binary = os.path.join(workdir, "proxy-in-namespace.sh")
        with open(self.binary, "w") as f:
            f.write("#!/bin/sh\nexec unshare -m --propagation private %s \"$@\"\n" % inner)
        for p in (inner, self.binary):
            os.chmod(p, os.stat(p).st_mode | stat.S_IXUSR)

    def set_hosts(self, names):
        """Rewrite the hosts file in place (the bind mount keeps its inode)."""
        with open(self.hosts, "w") as f:
            f.write(HOSTS_BASE + "".join("%s %s\n" % (ip, n) for n, ip in names.items()))

    def proxy(self, args):
        return Proxy(self.dir, args=args, binary=self.binary).start()

    def close(self):
        self.dns.close()


def rounds(p):
    """Rounds decided so far (0 before the first is reported)."""
    return int(topology(p.client()).get("rounds", 0))


def uses(p, srv):
    return topology(p.client()).get("master") == "127.0.0.1:%d" % srv.port


def test_a_slow_name_holds_nothing(workdir):
    """A replica reported by a name that takes 3 s to fail: meanwhile the
    proxy answers, and follows a switch of the master at once, as if that
    replica were not listed."""
    world = NameWorld(workdir, dns_timeout=3)
    x, y = RedisServer(workdir).start(), RedisServer(workdir).start()
    fakes = [FakeSentinel("stale", master=("127.0.0.1", x.port), epoch=1,
                          replicas=[("slow.invalid", 6379)]) for _ in range(3)]
    args = ["--master-name", "mymaster", "--set", "sentinel.poll-interval=200ms"]
    for f in fakes:
        args += ["--sentinel", "127.0.0.1:%d" % f.port]
    p = world.proxy(args)
    try:
        wait_for(lambda: uses(p, x), timeout=10, what="proxy to use X")
        c = p.client(socket_timeout=5)
        for epoch, (old, new) in enumerate([(x, y), (y, x)], start=2):
            t0 = time.monotonic()
            for f in fakes:
                f.master, f.epoch = ("127.0.0.1", new.port), epoch
                f.publish("+switch-master", "mymaster 127.0.0.1 %d 127.0.0.1 %d"
                          % (old.port, new.port))
            wait_for(lambda: uses(p, new), timeout=15, interval=0.02,
                     what="proxy to follow the switch")
            took = time.monotonic() - t0
            assert took < 1.5, "switch took %.1f s while a name was resolving" % took
            t0 = time.monotonic()
            assert c.set("k", epoch) and int(new.client().get("k")) == epoch
            assert c.ping() and time.monotonic() - t0 < 0.5
        t = topology(p.client())
        assert not [v for k, v in t.items() if "slow.invalid" in v], t
        wait_for(lambda: "cannot resolve 'slow.invalid'" in p.log(), timeout=10,
                 what="the failure logged")
        time.sleep(1.5)  # another failed attempt, the same error: not logged again
        assert p.log().count("cannot resolve 'slow.invalid'") == 1, p.log()[-3000:]
    finally:
        p.stop()
        for f in fakes:
            f.stop()
        x.stop()
        y.stop()
        world.close()


def test_rounds_go_on_while_the_master_name_resolves(workdir):
    """The Sentinel names a master by a name that takes 3 s to fail: rounds
    go on at the poll interval meanwhile, and the reason is logged once."""
    world = NameWorld(workdir, dns_timeout=3)
    s = FakeSentinel("stale", master=("slow.invalid", 6379), epoch=1)
    p = world.proxy(["--master-name", "mymaster", "--sentinel", "127.0.0.1:%d" % s.port,
                     "--set", "sentinel.poll-interval=200ms"])
    try:
        start = rounds(p)
        time.sleep(2)
        assert rounds(p) - start >= 5, "%d rounds in 2 s" % (rounds(p) - start)
        why = "the master named by Sentinel 127.0.0.1:%d is not resolved: resolving " \
              "'slow.invalid'" % s.port
        assert p.log().count(why) == 1, p.log()[-3000:]
        assert topology(p.client())["master"] == "none"
    finally:
        p.stop()
        s.stop()
        world.close()


def _sentinel_pair(x, y):
    """Two fake Sentinels on one port, at 127.0.0.2 (naming X at epoch 1)
    and 127.0.0.3 (naming Y at epoch 2)."""
    for _ in range(20):
        a = FakeSentinel("stale", master=("127.0.0.1", x.port), epoch=1, host="127.0.0.2")
        try:
            b = FakeSentinel("stale", master=("127.0.0.1", y.port), epoch=2, host="127.0.0.3",
                             port=a.port)
            return a, b
        except OSError:
            a.stop()
    pytest.skip("no port free on both 127.0.0.2 and 127.0.0.3")


def test_a_sentinel_whose_name_moves_is_followed(workdir):
    """sentinel.addresses names a Sentinel by host; the name is moved to
    another address (and the old one goes away): the proxy's next
    connections go to the new address."""
    world = NameWorld(workdir)
    x, y = RedisServer(workdir).start(), RedisServer(workdir).start()
    a, b = _sentinel_pair(x, y)
    world.set_hosts({"sentinel-a.test": "127.0.0.2"})
    p = world.proxy(["--master-name", "mymaster", "--sentinel", "sentinel-a.test:%d" % a.port,
                     "--set", "sentinel.poll-interval=200ms"])
    try:
        wait_for(lambda: uses(p, x), timeout=10, what="proxy to use X through 127.0.0.2")
        world.set_hosts({"sentinel-a.test": "127.0.0.3"})
        a.stop()
        wait_for(lambda: uses(p, y), timeout=20, what="proxy to use Y through 127.0.0.3")
        assert "host name 'sentinel-a.test' now resolves to 127.0.0.3 (was 127.0.0.2)" in p.log()
        t = topology(p.client())
        assert [v for k, v in t.items() if k.startswith("sentinel") and
                "addr=sentinel-a.test:%d" % a.port in v and "state=ok" in v], t
    finally:
        p.stop()
        a.stop()
        b.stop()
        x.stop()
        y.stop()
        world.close()
