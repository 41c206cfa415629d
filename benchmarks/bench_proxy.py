"""What TcpProxy adds to a keep-alive HTTP request.

A keep-alive ``http.client`` connection sends the same small GET over and over,
directly to the server and through the proxy, alternating request by request so
drift hits both alike. Three servers:

- ``embedded``: the plugin's Elasticsearch stand-in (``GET /``), in this process,
  as the ``es`` fixture runs it: client, proxy and server share one GIL;
- ``stdlib``: a ``ThreadingHTTPServer`` with HTTP/1.1 keep-alive, in this process;
- ``subprocess``: the same stdlib server in another process, like a container or
  an existing cluster: only the client and the proxy share this process.

    python benchmarks/bench_proxy.py [--requests 5000] [--server all]

Target: median through the proxy <= 1.30 x direct. For reference, each line also
shows the ratio of a minimal two-thread relay (no counting, no faults): what any
Python relay costs here, mostly the two extra thread wake-ups per request.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pytest_lambda_context.observe.proxy import TcpProxy
from pytest_lambda_context.observe.scope import mark_internal_thread

SERVER_SCRIPT = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    daemon_threads = True

server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY the second one
    # waits for the client's delayed ACK (~40 ms).
    disable_nagle_algorithm = True

    def setup(self) -> None:
        mark_internal_thread()
        super().setup()

    def do_GET(self) -> None:
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


@contextmanager
def stdlib_server() -> Iterator[int]:
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def subprocess_server() -> Iterator[int]:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    try:
        yield int(process.stdout.readline())
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


@contextmanager
def embedded_server() -> Iterator[int]:
    from pytest_lambda_context.services.elasticsearch.embedded import EmbeddedElasticsearch

    with EmbeddedElasticsearch() as es:
        yield es.port


SERVERS: dict[str, Callable[[], Any]] = {
    "embedded": embedded_server,
    "stdlib": stdlib_server,
    "subprocess": subprocess_server,
}


def request(conn: http.client.HTTPConnection) -> int:
    start = time.perf_counter_ns()
    conn.request("GET", "/")
    response = conn.getresponse()
    response.read()
    elapsed = time.perf_counter_ns() - start
    if response.status != 200:
        raise RuntimeError(f"unexpected status {response.status}")
    return elapsed


@contextmanager
def minimal_relay(port: int) -> Iterator[int]:
    """Reference: the least a Python relay can do (two threads, recv_into/sendall)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def pump(src: socket.socket, dst: socket.socket) -> None:
        mark_internal_thread()
        buffer = bytearray(65536)
        view = memoryview(buffer)
        with contextlib.suppress(OSError):
            while n := src.recv_into(buffer):
                dst.sendall(view[:n])
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def accept() -> None:
        mark_internal_thread()
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", port))
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        thread.join(5)
        listener.close()


@contextmanager
def tcp_proxy(port: int) -> Iterator[int]:
    with TcpProxy("127.0.0.1", port) as proxy:
        yield proxy.port


def measure(port: int, requests: int, relay: Callable[[int], Any]) -> tuple[float, float]:
    with relay(port) as relay_port:
        direct = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        proxied = http.client.HTTPConnection("127.0.0.1", relay_port, timeout=10)
        try:
            for _ in range(200):  # warm up: connections open, code paths hot
                request(direct)
                request(proxied)
            direct_ns: list[int] = []
            proxied_ns: list[int] = []
            for i in range(requests):
                if i % 2:
                    direct_ns.append(request(direct))
                    proxied_ns.append(request(proxied))
                else:
                    proxied_ns.append(request(proxied))
                    direct_ns.append(request(direct))
        finally:
            direct.close()
            proxied.close()
    return statistics.median(direct_ns) / 1000, statistics.median(proxied_ns) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--server", choices=["all", *SERVERS], default="all")
    args = parser.parse_args()
    names = list(SERVERS) if args.server == "all" else [args.server]
    worst = 0.0
    for name in names:
        with SERVERS[name]() as port:
            direct, proxied = measure(port, args.requests, tcp_proxy)
            ref_direct, ref_proxied = measure(port, args.requests, minimal_relay)
        ratio = proxied / direct
        worst = max(worst, ratio)
        print(
            f"{name:<10} keep-alive GET median: direct {direct:6.1f} µs, "
            f"TcpProxy {proxied:6.1f} µs (+{proxied - direct:.1f}), ratio {ratio:.2f}; "
            f"minimal relay ratio {ref_proxied / ref_direct:.2f}"
        )
    print(f"worst ratio {worst:.2f} (target <= 1.30): {'OK' if worst <= 1.30 else 'OVER TARGET'}")


if __name__ == "__main__":
    main()
