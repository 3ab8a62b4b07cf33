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
        assert set(obj) == {"time", "level", "thread", "event", "msg"}, obj
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", obj["time"])
        assert obj["level"] in ("debug", "info", "warn", "error")
        assert obj["thread"] == "main" or re.fullmatch(r"w\d+", obj["thread"])
        events.add(obj["event"])
    assert "proxy_log_start" in events and "proxy_signal_cb" in events
    assert any(json.loads(line)["thread"] == "w0" for line in lines)
