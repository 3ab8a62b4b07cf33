"""The Sentinel engine's decisions where real Sentinels cannot be made to
misbehave on demand: scripted Sentinels (harness.FakeSentinel, "stale" mode
answers SENTINEL MASTER with the master and epoch it is given) in front of
real redis-servers; and real Sentinels for discovery by host name, learnt
Sentinels that die, and a Sentinel dying while the proxy is frozen."""
import re
import signal
import subprocess
import threading
import time

import pytest
import redis

from harness import (FakeSentinel, Proxy, RedisServer, blocked_on, topology, wait_for,
                     wait_rounds)


def fakes_proxy(workdir, fakes, *extra):
    args = ["--master-name", "mymaster"]
    for f in fakes:
        args += ["--sentinel", "127.0.0.1:%d" % f.port]
    return Proxy(workdir, args=args + list(extra)).start()


def stop_all(proxy, fakes, *servers):
    proxy.stop()
    for f in fakes:
        f.stop()
    for srv in servers:
        srv.stop()


def uses(p, srv):
    return topology(p.client()).get("master") == "127.0.0.1:%d" % srv.port


def proxy_using_x(workdir, *extra):
    """Two servers X and Y, three Sentinels naming X at epoch 1, and a proxy
    following them, once it uses X: (x, y, fakes, proxy). Stops what it
    started if the proxy never gets there."""
    x, y = RedisServer(workdir).start(), RedisServer(workdir).start()
    fakes = [FakeSentinel("stale", master=("127.0.0.1", x.port), epoch=1) for _ in range(3)]
    p = fakes_proxy(workdir, fakes, *extra)
    try:
        wait_for(lambda: uses(p, x), what="proxy to use X")
    except BaseException:
        stop_all(p, fakes, x, y)
        raise
    return x, y, fakes, p


def test_epoch_never_goes_backwards(workdir):
    """Two Sentinels name X at epoch 5, one names Y at epoch 4; when the two
    stop answering, the one stale Sentinel left must not move writes to Y."""
    x, y = RedisServer(workdir).start(), RedisServer(workdir).start()
    a = FakeSentinel("stale", master=("127.0.0.1", x.port), epoch=5)
    b = FakeSentinel("stale", master=("127.0.0.1", x.port), epoch=5)
    c = FakeSentinel("stale", master=("127.0.0.1", y.port), epoch=4)
    p = fakes_proxy(workdir, [a, b, c])
    try:
        wait_for(lambda: uses(p, x), what="proxy to use X")
        a.mode = b.mode = "hang"
        wait_for(lambda: "ignoring 1 of 3 Sentinel(s)" in p.log(), timeout=15,
                 what="a round with only the stale Sentinel answering")
        wait_rounds(p, 2)
        assert uses(p, x)
        assert p.client().set("after", "1")
        assert x.client().get("after") == b"1" and y.client().get("after") is None
        # A majority of every known Sentinel can still move it (Sentinels set
        # up afresh start again from epoch 0).
        a.mode = b.mode = "stale"
        a.master = b.master = ("127.0.0.1", y.port)
        a.epoch = b.epoch = 0
        wait_for(lambda: uses(p, y), what="proxy to follow a majority to Y")
    finally:
        stop_all(p, (a, b, c), x, y)


def test_dedicated_sessions_leave_the_old_master(workdir):
    """A session with state (SELECT 1, a BLPOP in flight) continues on the
    new master after a switch: nothing it sends later reaches the old one."""
    x, y, fakes, p = proxy_using_x(workdir)
    try:
        c = p.client(socket_timeout=20)
        c.execute_command("SELECT", "1")
        res = {}
        t = threading.Thread(target=lambda: res.update(v=c.blpop("q", timeout=0)))
        t.start()
        blocked_on(x)
        for f in fakes:
            f.master, f.epoch = ("127.0.0.1", y.port), 2
        wait_for(lambda: uses(p, y), what="proxy to use Y")
        x.client(db=1).rpush("q", "item")  # answered within the grace
        t.join(10)
        assert res["v"] == (b"q", b"item")
        c.set("after-switch", "1")
        assert y.client(db=1).get("after-switch") == b"1"
        assert x.client(db=1).get("after-switch") is None
        # Demoted, the old master refuses writes: nothing of that reaches the
        # client either.
        x.client().replicaof("127.0.0.1", y.port)
        wait_for(lambda: x.client().info("replication")["role"] == "slave", what="X demoted")
        assert c.set("after-demotion", "1")
        assert y.client(db=1).get("after-demotion") == b"1"
    finally:
        stop_all(p, fakes, x, y)


def answers_within(server, seconds):
    try:
        return server.client(socket_timeout=seconds).ping()
    except (redis.TimeoutError, redis.ConnectionError):
        return False


def test_busy_master_is_not_treated_as_failed(workdir):
    """ROLE on a master busy with a long script times out: that is not a
    contradiction, so nothing is held, reset or aborted."""
    x = RedisServer(workdir).start()
    fakes = [FakeSentinel("stale", master=("127.0.0.1", x.port), epoch=1) for _ in range(3)]
    p = fakes_proxy(workdir, fakes)
    try:
        wait_for(lambda: uses(p, x), what="proxy to use X")
        c = p.client(socket_timeout=20)
        tx = p.client(socket_timeout=20)
        tx.execute_command("MULTI")
        tx.execute_command("SET", "in-tx", "1")
        busy = threading.Thread(target=lambda: x.client(socket_timeout=20).eval(
            "local t = redis.call('TIME') local s = t[1] + 2.5 "
            "while tonumber(redis.call('TIME')[1]) < s do end", 0))
        busy.start()
        wait_for(lambda: not answers_within(x, 0.1), what="the script to occupy X")
        assert all(c.set("during:%d" % i, i) for i in range(5))  # wait, then succeed
        busy.join(20)
        assert tx.execute_command("EXEC") == [b"OK"]
        assert "holding requests" not in p.log()
        assert "still using it" in p.log()
    finally:
        stop_all(p, fakes, x)


def test_sentinels_named_by_host_are_counted_once(workdir, cluster):
    args = ["--master-name", cluster.name]
    for s in cluster.sentinels:
        args += ["--sentinel", "localhost:%d" % s.port]
    p = Proxy(workdir, args=args).start()
    try:
        wait_for(lambda: uses(p, cluster.master), what="proxy to find the master")
        wait_rounds(p, 2)  # rounds in which SENTINEL SENTINELS names them by IP
        t = topology(p.client())
        assert int(t["sentinels_answering"]) == 3, t
        assert not [k for k, v in t.items() if k.startswith("sentinel") and "learnt" in v]
    finally:
        p.stop()


def test_dead_learnt_sentinel_is_forgotten(workdir, cluster):
    """Real Sentinels keep listing a dead peer (flagged s_down): that must
    not keep it known to the proxy."""
    p = Proxy(workdir, args=cluster.proxy_args(sentinels=cluster.sentinels[:1]) +
              ["--set", "sentinel.forget-after=2s"]).start()
    try:
        wait_for(lambda: int(topology(p.client())["sentinels_answering"]) == 3, timeout=10,
                 what="two Sentinels learnt")
        dead = cluster.sentinels[2]
        dead.stop()
        wait_for(lambda: not [v for k, v in topology(p.client()).items()
                              if k.startswith("sentinel") and ":%d," % dead.port in v],
                 timeout=15, what="the dead Sentinel to be forgotten")
        assert "forgetting Sentinel 127.0.0.1:%d" % dead.port in p.log()
    finally:
        p.stop()


def test_sentinel_dying_while_the_proxy_is_frozen(workdir, cluster, sproxy):
    """Every pending callback of the dead Sentinel's links runs at once when
    the proxy wakes: rounds must not be counted twice (this crashed)."""
    sproxy.proc.send_signal(signal.SIGSTOP)
    try:
        cluster.sentinels[1].proc.kill9()
        # The proxy is frozen: only the clock can pass its link deadlines
        # (sentinel.timeout, 500 ms) while it sleeps.
        time.sleep(1.6)
    finally:
        sproxy.proc.send_signal(signal.SIGCONT)
    for _ in range(3):
        wait_rounds(sproxy, 1)
        assert sproxy.proc.alive(), sproxy.log()[-3000:]
        c = sproxy.client()
        assert c.set("alive", "1") and c.get("alive") == b"1"
    wait_for(lambda: int(topology(sproxy.client())["sentinels_answering"]) == 2,
             what="two Sentinels answering")


def test_requests_held_during_a_switch_are_bounded_by_hold_timeout(workdir):
    """With no master confirmed (Sentinels name a server that does not say
    ROLE master), requests wait at most hold-timeout and then fail clearly;
    the connection stays open."""
    x, y = RedisServer(workdir).start(), RedisServer(workdir).start()
    y.client().replicaof("127.0.0.1", x.port)
    fakes = [FakeSentinel("stale", master=("127.0.0.1", x.port), epoch=1) for _ in range(3)]
    p = fakes_proxy(workdir, fakes, "--set", "hold-timeout=1500ms")
    try:
        wait_for(lambda: uses(p, x), what="proxy to use X")
        c = p.client(socket_timeout=20)
        for f in fakes:  # a "master" whose ROLE says replica
            f.master, f.epoch = ("127.0.0.1", y.port), 2
        wait_for(lambda: "ROLE on 127.0.0.1:%d does not confirm it" % y.port in p.log(),
                 what="the candidate to be refused")
        t0 = time.monotonic()
        try:
            c.set("held", "1")
            raise AssertionError("a write went to a node that is not the master")
        except redis.ResponseError as e:
            assert "hold-timeout" in str(e)
        assert 1.0 < time.monotonic() - t0 < 5
        assert y.client().get("held") is None and x.client().get("held") is None
        y.client().replicaof("no", "one")  # now it is a master: writes go on
        wait_for(lambda: uses(p, y), what="proxy to use Y")
        assert c.set("later", "1") and y.client().get("later") == b"1"
    finally:
        stop_all(p, fakes, x, y)


def test_a_busy_master_is_not_a_contradiction(workdir):
    """While a long script runs, ROLE gets -BUSY: that says nothing about the
    role, so writes are not held and the script's client gets its result."""
    x = RedisServer(workdir, args=["--busy-reply-threshold", "100"]).start()
    s = FakeSentinel("stale", master=("127.0.0.1", x.port), epoch=1)
    p = fakes_proxy(workdir, [s], "--set", "sentinel.poll-interval=200ms")
    try:
        wait_for(lambda: uses(p, x), what="proxy to use X")
        script = ("local t = redis.call('TIME')[1] + 0 "
                  "while redis.call('TIME')[1] + 0 < t + 2 do end return 'done'")
        assert p.client().eval(script, 0) == b"done"
        assert "does not confirm it as master" not in p.log()
        assert p.client().set("after", "1")
    finally:
        stop_all(p, (s,), x)


def test_long_backend_password(workdir):
    pw = "p" * 300
    x = RedisServer(workdir, args=["--requirepass", pw], password=pw).start()
    s = FakeSentinel("stale", master=("127.0.0.1", x.port), epoch=1)
    p = fakes_proxy(workdir, [s], "--set", "backend-password=" + pw, "--set", "hold-timeout=2s")
    try:
        c = redis.Redis(port=p.port, password=pw, socket_timeout=10)
        wait_for(lambda: c.set("k", "v"), what="a write through the proxy")
        assert x.client().get("k") == b"v"
    finally:
        stop_all(p, (s,), x)


def test_an_unreadable_epoch_is_ignored(workdir):
    """A Sentinel whose config-epoch is not a number ("-1") must not outvote
    the others (read as unsigned, it would be the highest epoch there is)."""
    x = RedisServer(workdir).start()
    a = FakeSentinel("stale", master=("127.0.0.1", x.port), epoch=1)
    b = FakeSentinel("stale", master=("127.0.0.1", x.port), epoch=1)
    c = FakeSentinel("stale", master=("127.0.0.1", 1), epoch="-1")
    p = fakes_proxy(workdir, [a, b, c], "--set", "hold-timeout=2s")
    try:
        wait_for(lambda: uses(p, x) and "is not a number" in p.log(),
                 what="proxy to use X and ignore the bad epoch")
        for i in range(3):
            assert p.client().set("k", i)
            wait_rounds(p, 1)
        assert topology(p.client())["decision"] == "agreed"
    finally:
        stop_all(p, (a, b, c), x)


def test_a_loading_master_is_retried_until_hold_timeout(workdir):
    """A master loading its data set says master to ROLE and -LOADING to the
    rest: a write is sent again until hold-timeout, then gets the server's
    own error; the Sentinels are not asked in a tight loop meanwhile."""
    m = FakeSentinel("loading")
    s = FakeSentinel("stale", master=("127.0.0.1", m.port), epoch=1)
    p = fakes_proxy(workdir, [s], "--set", "hold-timeout=1500ms")
    try:
        wait_for(lambda: topology(p.client()).get("master") == "127.0.0.1:%d" % m.port,
                 what="proxy to use the loading master")
        before, t0 = s.requests, time.time()
        try:
            p.client().set("k", "v")
            raise AssertionError("SET succeeded on a loading master")
        except redis.exceptions.BusyLoadingError:
            pass
        took = time.time() - t0
        assert 1.4 <= took < 8, took  # hold-timeout, not a request that never ends
        # A poll a second plus at most ten rounds a second from refusals.
        assert s.requests - before <= 12 * 3 * (took + 1), s.requests - before
    finally:
        stop_all(p, (m, s))


def test_false_alarms_from_one_sentinel_stop_holding_writes(workdir):
    """One Sentinel of three keeps announcing +odown for a master that the
    others, and ROLE, say is fine: the first announcement holds writes until
    a round confirms the master; after that false alarm its announcements
    hold nothing for a while."""
    x = RedisServer(workdir).start()
    fakes = [FakeSentinel("stale", master=("127.0.0.1", x.port), epoch=1) for _ in range(3)]
    p = fakes_proxy(workdir, fakes)
    try:
        wait_for(lambda: uses(p, x), what="proxy to use X")
        wait_for(lambda: sum("subscribed=1" in v for k, v in topology(p.client()).items()
                             if k.startswith("sentinel") and k[8:].isdigit()) == 3,
                 what="subscriptions to every Sentinel")
        c = p.client()
        odown = "master mymaster 127.0.0.1 %d #quorum 2/2" % x.port
        fakes[0].publish("+odown", odown)
        wait_for(lambda: "false alarm" in p.log(), what="the first alarm to prove false")
        for _ in range(19):
            fakes[0].publish("+odown", odown)
            assert c.set("k", "v")
            time.sleep(0.05)  # a flood at a steady rate, not a wait for an event
        wait_rounds(p, 1)
        assert p.log().count("announced +odown") == 1, p.log().count("announced +odown")
        # The others' announcements still hold writes at once.
        fakes[1].publish("+odown", "master mymaster 127.0.0.1 %d #quorum 2/2" % x.port)
        wait_for(lambda: p.log().count("announced +odown") == 2, what="a second Sentinel's hold")
    finally:
        stop_all(p, fakes, x)


def switch_fakes(p, fakes, srv):
    for f in fakes:
        f.master, f.epoch = ("127.0.0.1", srv.port), 2
    wait_for(lambda: uses(p, srv), what="proxy to use the new master")


def test_a_blocked_xread_from_dollar_is_not_sent_again(workdir):
    """XREAD BLOCK from $ blocked on a master that loses its role: sent
    again, it would skip what came meanwhile, so it fails instead."""
    x, y, fakes, p = proxy_using_x(workdir)
    try:
        c = p.client(socket_timeout=30)
        res = {}

        def xread():
            try:
                res["v"] = c.xread({"s": "$"}, block=0)
            except redis.RedisError as e:
                res["e"] = str(e)

        t = threading.Thread(target=xread)
        t.start()
        blocked_on(x)
        switch_fakes(p, fakes, y)
        t.join(10)
        assert "lost before the reply" in res.get("e", ""), res
        assert y.client().info("clients")["blocked_clients"] == 0
    finally:
        stop_all(p, fakes, x, y)


def test_a_blpop_released_by_a_demoted_master_waits_again(workdir):
    """The old master, turning into a replica, releases a BLPOP with
    -UNBLOCKED: it did not run, and waits again on the new master, also when
    it had waited longer than hold-timeout."""
    x, y, fakes, p = proxy_using_x(workdir, "--set", "hold-timeout=1s")
    try:
        c = p.client(socket_timeout=30)
        res = {}
        t = threading.Thread(target=lambda: res.update(v=c.blpop("q", timeout=0)))
        t.start()
        blocked_on(x)
        time.sleep(1.5)  # blocked longer than hold-timeout: that is the case tested
        switch_fakes(p, fakes, y)
        x.client().replicaof("127.0.0.1", y.port)  # within the drain's grace
        blocked_on(y)
        y.client().rpush("q", "v")
        t.join(10)
        assert res.get("v") == (b"q", b"v"), res
    finally:
        stop_all(p, fakes, x, y)


def test_shutdown_with_a_role_probe_in_flight(workdir):
    """The master a Sentinel names never answers ROLE: the probe waits for
    its timeout when the proxy is stopped. The shutdown frees it (a
    sanitizer build reports a leak otherwise; stop() checks the log)."""
    mute = FakeSentinel("hang")
    s = FakeSentinel("stale", master=("127.0.0.1", mute.port), epoch=1)
    p = fakes_proxy(workdir, [s], "--set", "sentinel.timeout=30s")
    try:
        wait_for(lambda: mute.conns, what="the ROLE probe to connect")
        time.sleep(0.3)
        assert topology(p.client()).get("master") in (None, "", "none")
    finally:
        stop_all(p, (s, mute))


def test_writes_are_fenced_without_a_sentinel_majority(workdir):
    """sentinel.fence-after: once only one of three Sentinels answers (the
    proxy is on the minority side), writes are held and then fail with the
    hold-timeout error, while reads go on to the replica; as soon as a
    majority names the master again, writes go on. A proxy without the
    setting keeps writing to the same master all along."""
    x = RedisServer(workdir).start()
    y = RedisServer(workdir, args=["--replicaof", "127.0.0.1", str(x.port)]).start()
    wait_for(lambda: y.client().info("replication")["master_link_status"] == "up",
             what="replica in sync")
    x.client().set("r", "1")
    wait_for(lambda: y.client().get("r") == b"1", what="the replica to have r")
    fakes = [FakeSentinel("stale", master=("127.0.0.1", x.port), epoch=1,
                          replicas=[("127.0.0.1", y.port)]) for _ in range(3)]
    fast = ["--set", "sentinel.poll-interval=200ms", "--set", "sentinel.timeout=200ms",
            "--set", "hold-timeout=600ms", "--read-from", "replicas"]
    fenced = fakes_proxy(workdir, fakes, *fast, "--set", "sentinel.fence-after=1500ms")
    plain = None
    try:
        plain = fakes_proxy(workdir, fakes, *fast)
        for p in (fenced, plain):
            wait_for(lambda: uses(p, x), what="proxy to use X")
        c, other = fenced.client(socket_timeout=10), plain.client(socket_timeout=10)
        assert c.set("w", "0") and other.set("v", "0")
        assert topology(c)["writes_fenced"] == "0"
        fakes[0].mode = fakes[1].mode = "hang"

        def refused():
            try:
                c.set("w", "1")
                return False
            except redis.ResponseError as e:
                assert "hold-timeout" in str(e), e
                return True
        wait_for(refused, timeout=15, what="writes to be fenced")
        assert "writes fenced: no majority of the 3 known Sentinel(s)" in fenced.log()
        assert topology(c)["writes_fenced"] == "1"
        assert c.get("r") == b"1"  # reads go on to the replica
        for i in range(3):  # the proxy without fencing still writes
            assert other.set("v", str(i))
        assert x.client().get("v") == b"2"
        fakes[0].mode = fakes[1].mode = "stale"
        wait_for(lambda: c.set("w", "2"), timeout=15, what="writes to go on")
        assert x.client().get("w") == b"2"
        # (2 of 3 when a majority decides before the third answers)
        assert re.search(r"writes unfenced: [23] of 3 Sentinel\(s\) name master", fenced.log())
        assert topology(c)["writes_fenced"] == "0"
    finally:
        if plain is not None:
            plain.stop()
        stop_all(fenced, fakes, x, y)


def test_fence_after_shorter_than_two_rounds_is_refused(workdir):
    p = Proxy(workdir, args=["--master-name", "m", "--sentinel", "127.0.0.1:1", "-t",
                             "--set", "sentinel.fence-after=1s"], listen_flag=False)
    out = subprocess.run(p.argv(), capture_output=True, text=True)
    assert out.returncode == 1
    assert "sentinel.fence-after (1s) must be 0 (off) or at least twice" in out.stdout + out.stderr


def test_a_hung_sentinel_does_not_hold_decisions(workdir):
    """One of three Sentinels accepts connections and never answers, with a
    sentinel.timeout of 10 s: the two others, a majority that agrees, are
    enough to decide at once, at start and after a switch; rounds go on
    without waiting for the silent one."""
    x, y = RedisServer(workdir).start(), RedisServer(workdir).start()
    fakes = [FakeSentinel("stale", master=("127.0.0.1", x.port), epoch=1) for _ in range(3)]
    fakes[2].mode = "hang"
    p = fakes_proxy(workdir, fakes, "--set", "sentinel.timeout=10s",
                    "--set", "sentinel.poll-interval=200ms")
    try:
        wait_for(lambda: uses(p, x), timeout=5, what="proxy to use X")
        t0 = time.monotonic()
        for f in fakes[:2]:
            f.master, f.epoch = ("127.0.0.1", y.port), 2
        wait_for(lambda: uses(p, y), timeout=5, what="proxy to use Y")
        assert time.monotonic() - t0 < 5
        rounds = int(topology(p.client())["rounds"])
        time.sleep(1)
        assert int(topology(p.client())["rounds"]) >= rounds + 2
        assert p.client().set("k", "v") and y.client().get("k") == b"v"
        # A late answer that differs is heard: the silent one wakes up
        # naming X at an old epoch, which changes nothing.
        fakes[2].mode = "stale"
        time.sleep(1)
        assert uses(p, y)
    finally:
        stop_all(p, fakes, x, y)


class SlowSentinel(FakeSentinel):
    """A scripted Sentinel whose answers to SENTINEL MASTER come `delay`
    seconds late."""
    delay = 0.0

    def _reply(self, conn, data):
        if self.delay and b"config-epoch" in data:
            time.sleep(self.delay)
        conn.sendall(data)


@pytest.mark.parametrize("news_last", [True, False])
def test_a_higher_epoch_heard_after_an_early_decision_counts(workdir, news_last):
    """Five Sentinels name X at epoch 1; then one names Y at epoch 2 (the
    failover's leader) and answers a moment after a majority already agreed
    on X. Its answer must still move the proxy to Y, whether or not it is
    the round's last one."""
    x, y = RedisServer(workdir).start(), RedisServer(workdir).start()
    fakes = [SlowSentinel("stale", master=("127.0.0.1", x.port), epoch=1) for _ in range(5)]
    p = fakes_proxy(workdir, fakes, "--set", "sentinel.timeout=10s",
                    "--set", "sentinel.poll-interval=4s")
    try:
        wait_for(lambda: uses(p, x), timeout=5, what="proxy to use X")
        s4, s5 = fakes[3], fakes[4]
        s4.delay, s5.delay = (0.5, 0.2) if news_last else (0.2, 0.5)
        s4.master, s4.epoch = ("127.0.0.1", y.port), 2
        wait_for(lambda: uses(p, y), timeout=10, what="proxy to use Y")
        t = topology(p.client())
        assert t["epoch"] == "2" and t["decision"] == "by-epoch", t
    finally:
        stop_all(p, fakes, x, y)
