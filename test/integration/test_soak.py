"""Soak: failovers over and over under load (`make soak`; SP_SOAK_SECONDS,
default 300). Planned failovers must cost no client an error; after a kill -9
only the requests in flight may fail, one per client at most; the proxy's
memory must not grow from round to round."""
import os
import time

import pytest

from harness import topology, wait_for
from test_sentinel import Load, wait_proxy_master

pytestmark = pytest.mark.soak


def test_failovers_under_load(cluster, sproxy):
    deadline = time.monotonic() + float(os.environ.get("SP_SOAK_SECONDS", "300"))
    rounds = 0
    rss = []
    while time.monotonic() < deadline:
        rounds += 1
        # Start each round from a settled layout: every replica in sync.
        master_port = cluster.master_port()
        wait_for(lambda: all(s.client().info("replication").get("master_link_status") == "up"
                             for s in cluster.servers()
                             if s.port != master_port and s.proc.alive()),
                 timeout=60, what="replicas in sync")
        load = Load(sproxy.port, clients=10).start()
        old = cluster.master_port()
        if rounds % 2:
            cluster.sentinels[rounds % 3].client().sentinel_failover(cluster.name)
            new = cluster.wait_master_change(old)
            wait_proxy_master(sproxy, new, timeout=60)
            load.wait_ops(50)  # on the new master
            load.stop()
            assert load.errors() == [], "round %d (SENTINEL FAILOVER)" % rounds
        else:
            victim = cluster.server_on(old)
            kill_time = time.monotonic()
            victim.kill9()
            new = cluster.wait_master_change(old, timeout=60)
            wait_proxy_master(sproxy, new, timeout=60)
            load.wait_ops(50)  # on the new master
            load.stop()
            errors = load.errors()
            assert all(r[0] < kill_time + 0.05 for _, r in errors), "round %d" % rounds
            assert len({i for i, _ in errors}) == len(errors), "round %d" % rounds
            # The killed server comes back as a replica of the new master.
            victim.start()
            wait_for(lambda: victim.client().info("replication").get("role") == "slave",
                     timeout=60, what="old master to rejoin")
        assert load.socknames == load.final_socknames
        rss.append(sproxy.rss_kb())
    assert rounds >= 2
    # Memory settles: the last rounds use no more than the early ones, give or take.
    assert rss[-1] <= max(rss[:2]) * 1.5 + 4096, rss
    assert topology(sproxy.client())["master"].endswith(":%d" % cluster.master_port())
