"""TcpProxy against real servers on loopback: counting, faults, idle expiry, leaks."""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import BODY, keepalive_server, open_fds, wait_for

from pytest_lambda_context.observe import connections
from pytest_lambda_context.observe.proxy import TcpProxy
from pytest_lambda_context.observe.scope import Scope, mark_internal_thread, set_scope

# --- servers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http_server() -> Iterator[tuple[str, int]]:
    with keepalive_server() as address:
        yield address


class EchoServer:
    """Echoes what it reads; counts what it accepted and what it saw closed."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.accepted = 0
        self.closed = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        mark_internal_thread()
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        mark_internal_thread()
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass
        self.closed += 1

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy_for() -> Iterator[Callable[..., TcpProxy]]:
    made: list[TcpProxy] = []

    def make(port: int, **kwargs: Any) -> TcpProxy:
        proxy = TcpProxy("127.0.0.1", port, **kwargs).start()
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


def connect(proxy: TcpProxy, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(proxy.address, timeout=timeout)


def roundtrip(sock: socket.socket, data: bytes = b"ping") -> bytes:
    sock.sendall(data)
    received = b""
    while len(received) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def get(conn: http.client.HTTPConnection) -> bytes:
    conn.request("GET", "/")
    response = conn.getresponse()
    assert response.status == 200
    return response.read()


# --- counting -----------------------------------------------------------------------------


def test_counts_connections_not_requests(
    http_server: tuple[str, int], proxy_for: Callable[..., TcpProxy]
) -> None:
    proxy = proxy_for(http_server[1])
    assert proxy.url() == f"http://127.0.0.1:{proxy.port}"
    assert proxy.url("https") == f"https://127.0.0.1:{proxy.port}"
    counter = proxy.counter()
    conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=5)
    assert [get(conn) for _ in range(3)] == [BODY] * 3
    assert proxy.opened == 1
    assert wait_for(lambda: proxy.open_now == 1)
    mark = proxy.mark()
    second = http.client.HTTPConnection(proxy.host, proxy.port, timeout=5)
    assert get(second) == BODY
    assert (proxy.opened, proxy.since(mark), counter.opened) == (2, 1, 2)
    conn.close()
    second.close()
    assert wait_for(lambda: proxy.open_now == 0)
    assert counter.open_now == 0
    counter.reset()
    assert counter.opened == 0
    stats = proxy.stats()
    assert stats["opened"] == 2 and stats["open_now"] == 0 and stats["listening"] is True
    proxy.reset_counts()
    assert proxy.opened == 0


def test_half_close_is_relayed(echo: EchoServer, proxy_for: Callable[..., TcpProxy]) -> None:
    proxy = proxy_for(echo.port)
    with connect(proxy) as sock:
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(100):
            received += chunk
        assert received == b"last words"
    assert wait_for(lambda: proxy.open_now == 0 and echo.closed == 1)


def test_large_transfer_is_relayed_intact(
    echo: EchoServer, proxy_for: Callable[..., TcpProxy]
) -> None:
    proxy = proxy_for(echo.port)
    payload = os.urandom(3 * 1024 * 1024)
    with connect(proxy) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        received = bytearray()
        while len(received) < len(payload):
            received += sock.recv(1 << 20)
        sender.join()
    assert bytes(received) == payload


def test_proxy_threads_are_not_counted_as_function_connections(
    echo: EchoServer, proxy_for: Callable[..., TcpProxy], tmp_path: Any
) -> None:
    proxy = proxy_for(echo.port)
    connections.install()
    scope = Scope("f", "env-1", "r", str(tmp_path) + os.sep)
    previous = set_scope(scope)
    try:
        with connect(proxy) as sock:
            assert roundtrip(sock) == b"ping"
    finally:
        set_scope(previous)
        connections.uninstall()
    # The client's connection counts, seen by the socket layer and by the proxy (once,
    # merged); the proxy's own upstream connection does not count.
    merged = connections.merge_seen_twice(scope.events)
    assert [(e.host, e.port, e.seen_by, e.via) for e in merged] == [
        ("127.0.0.1", proxy.port, "both", proxy.name)
    ]
    assert echo.accepted == 1


# --- faults -------------------------------------------------------------------------------


def test_drop_fin_client_reads_eof(echo: EchoServer, proxy_for: Callable[..., TcpProxy]) -> None:
    proxy = proxy_for(echo.port)
    with connect(proxy) as sock:
        assert roundtrip(sock) == b"ping"
        assert proxy.drop_connections("fin") == 1
        assert sock.recv(10) == b""
    assert wait_for(lambda: proxy.open_now == 0 and echo.closed == 1)
    assert proxy.stats()["dropped"] == 1


def test_drop_rst_client_gets_reset(echo: EchoServer, proxy_for: Callable[..., TcpProxy]) -> None:
    proxy = proxy_for(echo.port)
    with connect(proxy) as sock:
        assert roundtrip(sock) == b"ping"
        assert proxy.drop_connections() == 1  # rst is the default
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
    assert wait_for(lambda: proxy.open_now == 0 and echo.closed == 1)


def test_drop_rst_through_http_client(
    http_server: tuple[str, int], proxy_for: Callable[..., TcpProxy]
) -> None:
    proxy = proxy_for(http_server[1])
    conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=5)
    assert get(conn) == BODY
    proxy.drop_connections("rst")
    assert wait_for(lambda: proxy.open_now == 0)
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError)):
        get(conn)
    conn.close()


def test_drop_blackhole_client_times_out(
    echo: EchoServer, proxy_for: Callable[..., TcpProxy]
) -> None:
    proxy = proxy_for(echo.port)
    sock = connect(proxy, timeout=0.3)
    assert roundtrip(sock) == b"ping"
    assert proxy.drop_connections("blackhole") == 1
    sock.sendall(b"anyone there?")  # accepted by the network, never answered
    with pytest.raises(TimeoutError):
        sock.recv(10)
    # The server's side is gone; the client's lingers until the client gives up.
    assert wait_for(lambda: echo.closed == 1)
    assert proxy.open_now == 1
    sock.close()
    assert wait_for(lambda: proxy.open_now == 0)


def test_drop_mode_is_validated(echo: EchoServer, proxy_for: Callable[..., TcpProxy]) -> None:
    proxy = proxy_for(echo.port)
    with pytest.raises(ValueError, match="'fin', 'rst', 'blackhole'"):
        proxy.drop_connections("boom")  # type: ignore[arg-type]


def test_outage_refuses_then_serves_again_on_the_same_port(
    http_server: tuple[str, int], proxy_for: Callable[..., TcpProxy]
) -> None:
    proxy = proxy_for(http_server[1])
    port = proxy.port
    conn = http.client.HTTPConnection(proxy.host, port, timeout=5)
    assert get(conn) == BODY
    with proxy.outage():
        assert proxy.stats()["listening"] is False
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(proxy.address, timeout=2)
        assert wait_for(lambda: proxy.open_now == 0)
        with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError)):
            get(conn)
        conn.close()
    assert proxy.port == port
    again = http.client.HTTPConnection(proxy.host, port, timeout=5)
    assert get(again) == BODY
    again.close()
    assert proxy.opened == 2


def test_target_down_accepts_then_closes(proxy_for: Callable[..., TcpProxy]) -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        dead_port = placeholder.getsockname()[1]
    proxy = proxy_for(dead_port)
    with connect(proxy) as sock:
        assert sock.recv(10) == b""
    assert wait_for(lambda: proxy.open_now == 0)
    assert proxy.opened == 1
    assert proxy.failed == 1
    assert proxy.last_error is not None
    assert f"127.0.0.1:{dead_port}" in proxy.last_error
    assert "refused" in proxy.last_error.lower()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_idle_connections_expire_on_the_plugins_clock(
    echo: EchoServer, proxy_for: Callable[..., TcpProxy]
) -> None:
    clock = FakeClock()
    proxy = proxy_for(echo.port, idle_timeout=350, clock=clock)
    idle = connect(proxy)
    busy = connect(proxy)
    assert roundtrip(idle) == roundtrip(busy) == b"ping"
    clock.now += 300
    assert roundtrip(busy) == b"ping"  # activity at t+300
    assert proxy.expire_idle() == 0
    clock.now += 100  # idle: 400 s, busy: 100 s
    assert proxy.expire_idle() == 1
    with pytest.raises(ConnectionResetError):
        idle.recv(10)
    assert roundtrip(busy) == b"ping"
    assert proxy.stats()["expired"] == 1
    idle.close()
    busy.close()
    assert wait_for(lambda: proxy.open_now == 0)


def test_idle_flow_is_reset_at_its_next_packet_without_expire_idle(
    echo: EchoServer, proxy_for: Callable[..., TcpProxy]
) -> None:
    clock = FakeClock()
    proxy = proxy_for(echo.port, idle_timeout=350, clock=clock)
    with connect(proxy) as sock:
        assert roundtrip(sock) == b"ping"
        clock.now += 351
        sock.sendall(b"late")
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
    assert proxy.expired == 1


def test_no_idle_timeout_means_nothing_expires(
    echo: EchoServer, proxy_for: Callable[..., TcpProxy]
) -> None:
    clock = FakeClock()
    proxy = proxy_for(echo.port, clock=clock)
    with connect(proxy) as sock:
        assert roundtrip(sock) == b"ping"
        clock.now += 10_000
        assert proxy.expire_idle() == 0
        assert roundtrip(sock) == b"ping"


def test_latency_is_added_upstream(echo: EchoServer, proxy_for: Callable[..., TcpProxy]) -> None:
    proxy = proxy_for(echo.port, latency=0.05)
    with connect(proxy) as sock:
        start = time.perf_counter()
        assert roundtrip(sock) == b"ping"
        assert time.perf_counter() - start >= 0.05
        proxy.latency = 0.0
        start = time.perf_counter()
        assert roundtrip(sock) == b"ping"
        assert time.perf_counter() - start < 0.05


# --- resources ----------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_thousand_connections_leave_no_descriptors(
    echo: EchoServer, proxy_for: Callable[..., TcpProxy]
) -> None:
    proxy = proxy_for(echo.port)
    with connect(proxy) as warmup:  # first-use allocations out of the way
        roundtrip(warmup)
    assert wait_for(lambda: proxy.open_now == 0 and echo.closed == 1)
    before = open_fds()
    for i in range(1000):
        with connect(proxy) as sock:
            assert roundtrip(sock, b"%d" % i) == b"%d" % i
    assert wait_for(lambda: proxy.open_now == 0 and echo.closed == 1001, timeout=20)
    assert proxy.opened == 1001
    assert open_fds() <= before + 2


def test_close_cuts_everything_and_frees_descriptors(echo: EchoServer) -> None:
    before = open_fds()
    proxy = TcpProxy("127.0.0.1", echo.port)
    with proxy:
        socks = [connect(proxy) for _ in range(5)]
        for sock in socks:
            assert roundtrip(sock) == b"ping"
        proxy.drop_connections("blackhole")
    assert proxy.open_now == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(proxy.address, timeout=2)
    for sock in socks:
        sock.close()
    assert open_fds() <= before + 1
    with pytest.raises(RuntimeError, match="closed"):
        proxy.start()


def test_a_client_that_sent_its_goodbye_then_closed_counts_as_closed() -> None:
    # A driver's last message (PostgreSQL's Terminate) can still wait to be relayed in
    # front of the client's end when an environment's shutdown asks: the end is seen.
    from pytest_lambda_context.observe.proxy import _closed_by_client

    server = socket.create_server(("127.0.0.1", 0))
    with server, socket.create_connection(server.getsockname()) as client:
        accepted, _ = server.accept()
        with accepted:
            assert not _closed_by_client(accepted)
            client.sendall(b"X\x00\x00\x00\x04")
            client.close()
            assert wait_for(lambda: _closed_by_client(accepted))
            assert accepted.recv(1, socket.MSG_PEEK) == b"X"  # the goodbye still waits
