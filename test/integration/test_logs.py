"""log-format: json — every line one JSON object with time, level, thread,
event and msg, whatever the message holds."""
import json
import re
import socket

from harness import Proxy, raw_exchange


def test_json_lines(workdir, redis_server):
    p = Proxy(workdir, backend=redis_server.port,
              args=["--set", "log-format=json", "--log-level", "debug"]).start()
    c = p.client()
    assert c.set("k", "v")
    # Malformed input, with a quote, a backslash and control bytes in it.
    raw_exchange(p.port, b'*1\r\n$"\\\x01\x1b\r\n')
    s = socket.create_connection(("127.0.0.1", p.port))
    s.close()
    p.stop()
    lines = [line for line in p.log().splitlines() if line.strip()]
    assert len(lines) > 5
    events = set()
    for line in lines:
        obj = json.loads(line)
        assert {"time", "level", "thread", "event", "msg"} <= set(obj), obj
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", obj["time"])
        assert obj["level"] in ("debug", "info", "warn", "error")
        assert obj["thread"] == "main" or re.fullmatch(r"w\d+", obj["thread"])
        events.add(obj["event"])
    assert "proxy_log_start" in events and "proxy_signal_cb" in events
    assert any(json.loads(line)["thread"] == "w0" for line in lines)


def test_refusals_and_hold_timeouts_are_one_line_with_fields(workdir, redis_server):
    """A client refused at max-clients, and requests that wait out
    hold-timeout, are summed up in one line each, whose figures JSON gives as
    fields of their own."""
    import redis
    from harness import free_port, wait_for
    dead = free_port()  # nothing listens: every request waits, then fails
    p = Proxy(workdir, backend=dead, args=[
        "--set", "log-format=json", "--set", "max-clients=2", "--set", "hold-timeout=200ms"]).start()
    first = p.client(single_connection_client=True)
    try:
        first.get("k")
        raise AssertionError("a GET was answered with no server")
    except redis.ResponseError as e:
        assert "hold-timeout" in str(e)
    others = [socket.create_connection(("127.0.0.1", p.port)) for _ in range(3)]

    def line(event):
        for text in p.log().splitlines():
            obj = json.loads(text)
            if obj["event"] == "worker_report" and event in obj:
                return obj
        return None

    refused = wait_for(lambda: line("refused"), what="the refusal line")
    assert refused["refused"] >= 1 and refused["max_clients"] == 2, refused
    assert "max-clients (2) reached" in refused["msg"]
    held = wait_for(lambda: line("hold_timeouts"), what="the hold-timeout line")
    assert held["hold_timeouts"] == 1 and held["hold_timeout_ms"] == 200, held
    first.close()
    for s in others:
        s.close()
    p.stop()
