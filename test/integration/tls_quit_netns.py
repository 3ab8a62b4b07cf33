#!/usr/bin/python3
"""Run by test_tls.py inside a network namespace of its own, where TCP send
buffers are capped at 64 KB (net.ipv4.tcp_wmem is per namespace): a GET of a
4 MB value and QUIT through a TLS listener, read slowly. Every byte of the
reply and the +OK must arrive before the proxy closes; with a small send
buffer the last write leaves encrypted bytes in the transport, which used
to be dropped by the close. Exit 0 when all arrived.

    unshare -n sh -c 'ip link set lo up; echo "4096 16384 65536" \
        > /proc/sys/net/ipv4/tcp_wmem; exec /usr/bin/python3 THIS'
"""
import os
import shutil
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Proxy, RedisServer, TlsFiles, free_port, make_workdir, wait_for  # noqa: E402


def main():
    d = make_workdir("sp-tls-quit-")
    srv = proxy = None
    try:
        certs = TlsFiles(os.path.join(d, "tls"))
        srv = RedisServer(d).start()
        size = 4 * 1024 * 1024 - 6000
        srv.client().set("big", b"x" * size)
        port = free_port()
        proxy = Proxy(d, backend=srv.port, listen_flag=False,
                      args=["--listen", "tls://127.0.0.1:%d" % port] +
                      certs.proxy_listener_args()).start(wait=False)
        wait_for(lambda: "ready:" in proxy.log(), what="the proxy")
        want = b"$%d\r\n" % size + b"x" * size + b"\r\n+OK\r\n"
        ctx = ssl.create_default_context(cafile=certs.path("ca.crt"))
        for step, pause in ((16384, 0.001), (4096, 0.0005), (65536, 0.005)):
            raw = socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.connect(("127.0.0.1", port))
            s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
            s.sendall(b"GET big\r\nQUIT\r\n")
            time.sleep(0.5)
            s.settimeout(10)
            got = []
            while True:
                chunk = s.recv(step)
                if not chunk:
                    break
                got.append(chunk)
                time.sleep(pause)
            got = b"".join(got)
            if got != want:
                print("step %d: got %d of %d bytes" % (step, len(got), len(want)))
                return 1
        return 0
    finally:
        if proxy is not None:
            proxy.stop(check=False)
        if srv is not None:
            srv.stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
