"""Counting at the socket layer, against a real keep-alive HTTP server on loopback."""

from __future__ import annotations

import importlib.util
import os
import pickle
import socket
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support import keepalive_server

from pytest_lambda_context.observe import connections
from pytest_lambda_context.observe.connections import ConnectionEvent, ConnectionLog, user_frame
from pytest_lambda_context.observe.guard import (
    LOOPBACK_HINT,
    BlockedLookupError,
    NetworkBlockedError,
    is_loopback_host,
    lookup_allowed,
)
from pytest_lambda_context.observe.scope import Scope, mark_internal_thread, set_scope

# --- a real HTTP/1.1 keep-alive server, the plugin's own (internal) threads ----------


@pytest.fixture(scope="module")
def http_server() -> Iterator[tuple[str, int]]:
    with keepalive_server() as address:
        yield address


# --- "function code": a real module under a code root ---------------------------------

USER_CODE = """
import asyncio
import http.client
import socket

import aiohttp
import httpx
import requests
import urllib3


def with_requests(url):
    with requests.Session() as session:
        return [session.get(url).status_code, session.get(url).status_code]


def with_urllib3(url):
    with urllib3.PoolManager() as pool:
        return [pool.request("GET", url).status, pool.request("GET", url).status]


def with_http_client(host, port):
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        statuses = []
        for _ in range(2):
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
        return statuses
    finally:
        conn.close()


def with_httpx(url):
    with httpx.Client() as client:
        return [client.get(url).status_code, client.get(url).status_code]


async def httpx_async(url):
    async with httpx.AsyncClient() as client:
        return [(await client.get(url)).status_code, (await client.get(url)).status_code]


def with_httpx_async(url):
    return asyncio.run(httpx_async(url))


async def aiohttp_get(url):
    async with aiohttp.ClientSession() as session:
        statuses = []
        for _ in range(2):
            async with session.get(url) as response:
                await response.read()
                statuses.append(response.status)
        return statuses


def with_aiohttp(url):
    return asyncio.run(aiohttp_get(url))


def raw_connect(host, port):
    sock = socket.create_connection((host, port), timeout=5)
    sock.close()


def raw_connect_ex(host, port):
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        return sock.connect_ex((host, port))
    finally:
        sock.close()


def lookup(name):
    return socket.getaddrinfo(name, 80, 0, socket.SOCK_STREAM)


def udp_connect(host, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.connect((host, port))
    finally:
        sock.close()
"""


@pytest.fixture(scope="module")
def code_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("code")
    (root / "app").mkdir()
    (root / "app" / "client.py").write_text(textwrap.dedent(USER_CODE))
    return root


@pytest.fixture(scope="module")
def app(code_root: Path) -> ModuleType:
    path = code_root / "app" / "client.py"
    spec = importlib.util.spec_from_file_location("lambda_ctx_test_app_client", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def line_of(code_root: Path, needle: str) -> int:
    lines = (code_root / "app" / "client.py").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


@pytest.fixture
def monitor() -> Iterator[None]:
    connections.install()
    yield
    connections.uninstall()


def run_in_scope(
    code_root: Path,
    fn: Callable[..., Any],
    *args: Any,
    network: str = "allow",
    request_id: str | None = "req-1",
    environment_id: str = "env-1",
) -> tuple[Any, list[Any]]:
    scope = Scope(
        function_name="search",
        environment_id=environment_id,
        request_id=request_id,
        code_root=str(code_root) + os.sep,
        network=network,
    )
    previous = set_scope(scope)
    try:
        result = fn(*args)
    finally:
        set_scope(previous)
    return result, list(scope.events)


# --- counting with every client library -----------------------------------------------

CLIENTS = [
    ("with_requests", "session.get(url)", "with_requests"),
    ("with_urllib3", "pool.request", "with_urllib3"),
    ("with_http_client", 'conn.request("GET"', "with_http_client"),
    ("with_httpx", "client.get(url).status_code,", "with_httpx"),
    ("with_httpx_async", None, None),
    ("with_aiohttp", None, None),
]


@pytest.mark.usefixtures("monitor")
@pytest.mark.parametrize(("name", "line_needle", "function"), CLIENTS)
def test_one_keep_alive_connection_counted_per_client(
    http_server: tuple[str, int],
    code_root: Path,
    app: ModuleType,
    name: str,
    line_needle: str | None,
    function: str | None,
) -> None:
    host, port = http_server
    args: tuple[Any, ...] = (
        (host, port) if name == "with_http_client" else (f"http://{host}:{port}/",)
    )
    statuses, events = run_in_scope(code_root, getattr(app, name), *args)
    assert statuses == [200, 200]
    assert len(events) == 1, events
    event = events[0]
    assert isinstance(event, ConnectionEvent)
    assert (event.function_name, event.environment_id, event.request_id) == (
        "search",
        "env-1",
        "req-1",
    )
    assert (event.host, event.port) == ("127.0.0.1", port)
    assert pickle.loads(pickle.dumps(event)) == event  # process isolation pipes them
    assert event.frame is not None and event.frame.startswith("app/client.py:")
    if line_needle is not None:
        assert event.frame == f"app/client.py:{line_of(code_root, line_needle)} in {function}"


@pytest.mark.usefixtures("monitor")
@pytest.mark.parametrize("name", ["with_httpx_async", "with_aiohttp"])
def test_async_frames_point_into_the_coroutine_or_its_runner(
    http_server: tuple[str, int], code_root: Path, app: ModuleType, name: str
) -> None:
    # The await chain is on the stack when the loop steps the task that connects;
    # when a library connects from a task of its own, the runner's line is the
    # innermost user frame left.
    _, events = run_in_scope(
        code_root, getattr(app, name), f"http://{http_server[0]}:{http_server[1]}/"
    )
    assert events[0].frame.rsplit(" in ", 1)[1] in {
        "httpx_async",
        "with_httpx_async",
        "aiohttp_get",
        "with_aiohttp",
    }


@pytest.mark.usefixtures("monitor")
def test_init_phase_and_invocations_are_told_apart(
    http_server: tuple[str, int], code_root: Path, app: ModuleType
) -> None:
    log = ConnectionLog()
    for env, request_id in [("env-1", None), ("env-1", "r1"), ("env-2", None), ("env-1", "r2")]:
        _, events = run_in_scope(
            code_root, app.raw_connect, *http_server, request_id=request_id, environment_id=env
        )
        log.extend(events)
    assert log.opened() == len(log) == 4
    assert log.per_environment() == {"env-1": 3, "env-2": 1}
    assert list(log.per_environment()) == ["env-1", "env-2"]
    assert log.per_invocation() == {None: 2, "r1": 1, "r2": 1}
    assert log.for_environment("env-2").opened() == 1
    assert [e.request_id for e in log.for_environment("env-1")] == [None, "r1", "r2"]


@pytest.mark.usefixtures("monitor")
def test_connect_ex_counted_only_when_it_connects(
    http_server: tuple[str, int], code_root: Path, app: ModuleType
) -> None:
    closed_port = _closed_port()
    result, events = run_in_scope(code_root, app.raw_connect_ex, "127.0.0.1", closed_port)
    assert result != 0 and events == []
    result, events = run_in_scope(code_root, app.raw_connect_ex, *http_server)
    assert result == 0 and len(events) == 1


@pytest.mark.usefixtures("monitor")
def test_refused_async_connect_is_not_counted(code_root: Path, app: ModuleType) -> None:
    # asyncio's non-blocking connect is counted while in progress and taken back
    # when the loop learns it failed.
    import aiohttp

    url = f"http://127.0.0.1:{_closed_port()}/"
    scope = Scope("search", "env-1", "r", str(code_root) + os.sep)
    previous = set_scope(scope)
    try:
        with pytest.raises(aiohttp.ClientConnectionError):
            app.with_aiohttp(url)
    finally:
        set_scope(previous)
    assert scope.events == []


@pytest.mark.usefixtures("monitor")
def test_nothing_counted_outside_a_scope(http_server: tuple[str, int], app: ModuleType) -> None:
    scope = Scope("search", "env-1", "r", "/nowhere/")
    previous = set_scope(None)
    try:
        app.raw_connect(*http_server)
        assert app.with_requests(f"http://{http_server[0]}:{http_server[1]}/") == [200, 200]
    finally:
        set_scope(previous)
    assert scope.events == []


@pytest.mark.usefixtures("monitor")
def test_nothing_counted_in_an_internal_thread(
    http_server: tuple[str, int], code_root: Path, app: ModuleType
) -> None:
    def internal() -> None:
        mark_internal_thread()
        app.raw_connect(*http_server)

    def plain() -> None:
        app.raw_connect(*http_server)

    def body() -> None:
        for target in (internal, plain):
            thread = threading.Thread(target=target)
            thread.start()
            thread.join()

    _, events = run_in_scope(code_root, body)
    # Only the thread the handler started counts; its frame is the user line.
    assert len(events) == 1
    assert events[0].frame.endswith("in raw_connect")


@pytest.mark.usefixtures("monitor")
def test_udp_and_unix_sockets_are_not_counted(
    code_root: Path, app: ModuleType, tmp_path: Path
) -> None:
    path = str(tmp_path / "s")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()

    def body() -> None:
        app.udp_connect("127.0.0.1", 9)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)

    try:
        _, events = run_in_scope(code_root, body)
    finally:
        listener.close()
    assert events == []


def test_user_frame_formats_the_innermost_user_frame(code_root: Path) -> None:
    here = str(Path(__file__).parent) + os.sep
    frame = user_frame(here)
    assert frame is not None
    assert frame.startswith(f"{Path(__file__).name}:")
    assert frame.endswith(" in test_user_frame_formats_the_innermost_user_frame")
    assert user_frame("/definitely/not/a/root/") is None


# --- install / uninstall ----------------------------------------------------------------


def test_install_is_refcounted_and_restores_the_originals_exactly() -> None:
    assert not connections.installed()
    originals = (socket.socket.connect, socket.socket.connect_ex, socket.socket.getsockopt)
    original_getaddrinfo = socket.getaddrinfo
    own_dict = {k: k in vars(socket.socket) for k in ("connect", "connect_ex", "getsockopt")}
    connections.install()
    connections.install()
    try:
        assert socket.socket.connect is not originals[0]
        connections.uninstall()
        assert connections.installed()
        assert socket.socket.connect is not originals[0]
        assert socket.getaddrinfo is not original_getaddrinfo
    finally:
        connections.uninstall()
    assert not connections.installed()
    assert (socket.socket.connect, socket.socket.connect_ex, socket.socket.getsockopt) == originals
    assert socket.socket.connect is originals[0]
    assert socket.getaddrinfo is original_getaddrinfo
    assert {k: k in vars(socket.socket) for k in own_dict} == own_dict
    with pytest.raises(RuntimeError, match="more often than install"):
        connections.uninstall()


def test_uninstall_restores_another_tools_patch(monkeypatch: pytest.MonkeyPatch) -> None:
    def other_tool(self: socket.socket, address: Any) -> None:
        raise AssertionError("not called here")

    monkeypatch.setattr(socket.socket, "connect", other_tool)
    connections.install()
    assert socket.socket.connect is not other_tool
    connections.uninstall()
    assert socket.socket.connect is other_tool


# --- the loopback guard -------------------------------------------------------------


class _NoTrafficAllowed:
    """Stand-ins for the real connect/getaddrinfo: record, never reach out."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.attempts: list[Any] = []
        real_connect = socket.socket.connect
        real_getaddrinfo = socket.getaddrinfo
        recorder = self

        def connect(sock: socket.socket, address: Any) -> None:
            if is_loopback_host(str(address[0])) or not isinstance(address, tuple):
                return real_connect(sock, address)
            recorder.attempts.append(("connect", address))
            raise ConnectionRefusedError("test stand-in: the guard let this through")

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            if lookup_allowed(host):
                return real_getaddrinfo(host, *args, **kwargs)
            recorder.attempts.append(("getaddrinfo", host))
            raise socket.gaierror(socket.EAI_NONAME, "test stand-in: the guard let this through")

        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def no_traffic(monkeypatch: pytest.MonkeyPatch) -> Iterator[_NoTrafficAllowed]:
    assert not connections.installed(), "the guard tests must own the monitor"
    stand_in = _NoTrafficAllowed(monkeypatch)  # before install: what it calls through to
    connections.install()
    yield stand_in
    connections.uninstall()


@pytest.mark.parametrize("address", ["192.0.2.1", "10.1.2.3", "198.51.100.7", "2001:db8::1"])
def test_loopback_guard_refuses_before_connecting(
    no_traffic: _NoTrafficAllowed, code_root: Path, app: ModuleType, address: str
) -> None:
    with pytest.raises(NetworkBlockedError) as info:
        run_in_scope(code_root, app.raw_connect_ex, address, 9200, network="loopback")
    assert no_traffic.attempts == []
    message = str(info.value)
    endpoint = f"[{address}]:9200" if ":" in address else f"{address}:9200"
    assert endpoint in message
    assert f"app/client.py:{line_of(code_root, 'sock.connect_ex')} in raw_connect_ex" in message
    assert LOOPBACK_HINT in message
    assert isinstance(info.value, ConnectionRefusedError)


def test_loopback_guard_surfaces_through_requests(
    no_traffic: _NoTrafficAllowed, code_root: Path, app: ModuleType
) -> None:
    import requests

    with pytest.raises(requests.ConnectionError) as info:
        run_in_scope(code_root, app.with_requests, "http://192.0.2.1:9200/", network="loopback")
    assert no_traffic.attempts == []
    assert "192.0.2.1:9200" in str(info.value)
    assert "lambda_network = loopback" in str(info.value)


def test_loopback_guard_refuses_async_connects(
    no_traffic: _NoTrafficAllowed, code_root: Path, app: ModuleType
) -> None:
    # asyncio's non-blocking sock_connect goes through the same guard.
    import aiohttp
    import httpx

    with pytest.raises(aiohttp.ClientConnectorError, match="lambda_network = loopback"):
        run_in_scope(code_root, app.with_aiohttp, "http://192.0.2.1:9200/", network="loopback")
    # anyio says only "All connection attempts failed"; the guard's error is chained.
    with pytest.raises(httpx.ConnectError) as info:
        run_in_scope(code_root, app.with_httpx_async, "http://192.0.2.1:9200/", network="loopback")
    assert any(isinstance(e, NetworkBlockedError) for e in _chain(info.value))
    assert no_traffic.attempts == []


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and the members of exception groups."""
    seen: set[int] = set()
    stack = [error]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        stack.extend(getattr(current, "exceptions", ()))


def test_loopback_guard_refuses_a_name_given_to_connect(
    no_traffic: _NoTrafficAllowed, code_root: Path, app: ModuleType
) -> None:
    # socket.connect(("name", port)) resolves in C, past getaddrinfo: refused by name.
    def body() -> None:
        with socket.socket() as sock:
            sock.connect(("search.example.com", 443))

    with pytest.raises(NetworkBlockedError, match=r"search\.example\.com:443"):
        run_in_scope(code_root, body, network="loopback")
    assert no_traffic.attempts == []


def test_loopback_guard_refuses_dns_of_other_names(
    no_traffic: _NoTrafficAllowed, code_root: Path, app: ModuleType
) -> None:
    with pytest.raises(BlockedLookupError) as info:
        run_in_scope(code_root, app.lookup, "search.example.com", network="loopback")
    assert isinstance(info.value, socket.gaierror)
    assert "'search.example.com'" in str(info.value)
    assert f"app/client.py:{line_of(code_root, 'socket.getaddrinfo(name')} in lookup" in str(
        info.value
    )
    assert LOOPBACK_HINT in str(info.value)

    import requests

    with pytest.raises(requests.ConnectionError, match="lambda_network = loopback"):
        run_in_scope(
            code_root, app.with_requests, "http://es.example.com:9200/", network="loopback"
        )
    assert no_traffic.attempts == []


def test_loopback_guard_lets_loopback_through_and_counts_it(
    no_traffic: _NoTrafficAllowed, http_server: tuple[str, int], code_root: Path, app: ModuleType
) -> None:
    port = http_server[1]
    statuses, events = run_in_scope(
        code_root, app.with_requests, f"http://localhost:{port}/", network="loopback"
    )
    assert statuses == [200, 200]
    assert len(events) == 1
    for name in ("localhost", "127.0.0.1", "::1", "192.0.2.1"):
        run_in_scope(code_root, app.lookup, name, network="loopback")  # literals and localhost
    assert no_traffic.attempts == []
    # Without the guard (network="allow") the same code reaches the stand-in.
    with pytest.raises(ConnectionRefusedError, match="stand-in"):
        run_in_scope(code_root, app.raw_connect, "192.0.2.1", 9)
    assert no_traffic.attempts == [("connect", ("192.0.2.1", 9))]
    log = ConnectionLog(events)
    assert log.opened(host="localhost") == 1
    assert log.opened(host="127.0.0.1", port=port) == 1
    assert log.opened(port=port + 1) == 0


@pytest.mark.usefixtures("monitor")
def test_a_looked_up_name_labels_connections_of_its_own_scope_only(
    http_server: tuple[str, int], code_root: Path, app: ModuleType
) -> None:
    port = http_server[1]
    _, events = run_in_scope(code_root, app.with_requests, f"http://localhost:{port}/")
    assert [e.hostname for e in events] == ["localhost"]
    # A later invocation connecting by address is not labelled by that old lookup.
    _, events = run_in_scope(code_root, app.raw_connect, "127.0.0.1", port, request_id="req-2")
    assert [e.hostname for e in events] == [None]
    assert ConnectionLog(events).opened(host="localhost") == 1  # any loopback address


def test_is_loopback_host() -> None:
    for host in (
        "127.0.0.1",
        "127.3.4.5",
        "::1",
        "localhost",
        "LOCALHOST.",
        "127.1",
        "::ffff:127.0.0.1",
    ):
        assert is_loopback_host(host), host
    for host in (
        "192.0.2.1",
        "10.0.0.1",
        "0.0.0.0",
        "::",
        "2001:db8::1",
        "example.com",
        "127.example.com",
    ):
        assert not is_loopback_host(host), host


# --- records ----------------------------------------------------------------------------


def test_events_and_errors_survive_a_pipe() -> None:
    event = ConnectionEvent(
        "f", "env-1", None, "127.0.0.1", 9200, "app/search.py:7 in get_es_client", 1.5
    )
    assert pickle.loads(pickle.dumps(event)) == event
    error = pickle.loads(pickle.dumps(NetworkBlockedError("blocked", "192.0.2.1", 80)))
    assert (str(error), error.host, error.port) == ("blocked", "192.0.2.1", 80)
    lookup_error = pickle.loads(pickle.dumps(BlockedLookupError("no dns", "example.com")))
    assert (str(lookup_error), lookup_error.host) == ("no dns", "example.com")


def test_log_host_filter_matches_the_looked_up_name() -> None:
    log = ConnectionLog(
        [
            ConnectionEvent("f", "env-1", "r", "10.0.0.5", 9200, None, 1.0, hostname="es.internal"),
            ConnectionEvent("f", "env-1", "r", "127.0.0.1", 6379, None, 2.0),
        ]
    )
    assert log.opened(host="es.internal") == 1
    assert log.opened(host="10.0.0.5") == 1
    assert log.opened(port=6379) == 1
    assert "es.internal (10.0.0.5):9200" in log.events[0].describe()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip(reason="the plugin targets Linux")
