"""pytest fixtures: real redis-server processes and sentinel-proxy in front.

Every fixture stops what it started, also when the test fails; the temporary
directory is removed unless SP_KEEP_TMP=1 (useful to read the logs).
"""
import os
import shutil

import pytest

from harness import PROXY_BIN, Proxy, RedisServer, make_workdir


def pytest_configure(config):
    config.addinivalue_line("markers", "soak: long runs, only with `make soak`")
    config.addinivalue_line("markers", "scale: many clients at once, only with `make scale`")
    config.addinivalue_line("markers", "faults: partitions and frozen nodes, only with `make faults`")
    config.addinivalue_line("markers", "slow: tests that take more than a few seconds")


def pytest_collection_modifyitems(config, items):
    for mark, env, target in (("soak", "SP_SOAK", "make soak"), ("scale", "SP_SCALE", "make scale"),
                              ("faults", "SP_FAULTS", "make faults")):
        if os.environ.get(env):
            continue
        skip = pytest.mark.skip(reason="%s test: run with `%s`" % (mark, target))
        for item in items:
            if mark in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _binary_exists():
    assert os.path.exists(PROXY_BIN), "build the proxy first (make): %s" % PROXY_BIN


@pytest.fixture
def workdir(request):
    d = make_workdir()
    yield d
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed:
        # Show the logs of a failed test: they are about to be removed.
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            if name.endswith(".log") and os.path.isfile(path):
                with open(path, "rb") as f:
                    tail = f.read()[-4000:].decode("utf-8", "replace")
                print("\n==== %s (tail) ====\n%s" % (name, tail))
    if not os.environ.get("SP_KEEP_TMP"):
        shutil.rmtree(d, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def redis_server(workdir):
    srv = RedisServer(workdir).start()
    yield srv
    srv.stop()


@pytest.fixture
def proxy(workdir, redis_server):
    p = Proxy(workdir, backend=redis_server.port).start()
    yield p
    p.stop()


@pytest.fixture
def pair(redis_server, proxy):
    """(direct client, proxied client) to compare behaviour side by side."""
    d = redis_server.client()
    p = proxy.client()
    yield d, p
    d.close()
    p.close()


@pytest.fixture
def cluster(workdir):
    from harness import Cluster
    c = Cluster(workdir).start()
    yield c
    c.stop()


@pytest.fixture
def sproxy(workdir, cluster):
    """sentinel-proxy following the cluster's three Sentinels."""
    from harness import topology, wait_for
    p = Proxy(workdir, args=cluster.proxy_args()).start()
    wait_for(lambda: topology(p.client()).get("master") == "127.0.0.1:%d" % cluster.master.port,
             what="proxy to find the master")
    yield p
    p.stop()


@pytest.fixture
def authed(workdir):
    """redis-server with requirepass pw, and the proxy with backend-password pw."""
    srv = RedisServer(workdir, args=["--requirepass", "pw"], password="pw").start()
    p = Proxy(workdir, backend=srv.port, args=["--set", "backend-password=pw"]).start()
    yield srv, p
    p.stop()
    srv.stop()
