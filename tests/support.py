"""Helpers the plugin's tests share: project files, functions made and closed, waiting,
descriptors, ports, a keep-alive HTTP server."""

from __future__ import annotations

import contextlib
import os
import socket
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pytest_lambda_context import LambdaFunction
from pytest_lambda_context.environments.template import WorkerTemplate
from pytest_lambda_context.observe.scope import mark_internal_thread

BODY = b'{"ok": true}'


def write_files(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (path -> text, dedented) under ``root``; returns ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def write_project(
    pytester: pytest.Pytester, handlers: dict[str, str], *, ini: str | None = None, **tests: str
) -> None:
    """A pytester project as a user has it: handler files, an ini file when given, and
    test modules (module name -> source, dedented)."""
    write_files(pytester.path, handlers)
    if ini is not None:
        pytester.makeini(ini)
    if tests:
        pytester.makepyfile(**{name: textwrap.dedent(text) for name, text in tests.items()})


class SharedTemplate:
    """One process-isolation template for a test process's functions, as the plugin
    shares one per session: its start (importing elasticsearch, boto3, ...) is about
    0.4 s of CPU, once instead of once per test. Closed by conftest at the session's end."""

    def __init__(self) -> None:
        self._template: WorkerTemplate | None = None
        self._lock = threading.Lock()

    def get(self) -> WorkerTemplate:
        with self._lock:
            if self._template is None:
                self._template = WorkerTemplate()
                self._template.start()
            return self._template

    def close(self) -> None:
        with self._lock:
            template, self._template = self._template, None
        if template is not None:
            template.close()


SHARED_TEMPLATE = SharedTemplate()


def lambda_function(handler: str, **settings: Any) -> LambdaFunction:
    """``LambdaFunction(handler, **settings)``; in process isolation it forks from the
    shared template unless given ``worker_pool`` (``None``: a template of its own)."""
    if settings.get("isolation") == "process" and "worker_pool" not in settings:
        settings["worker_pool"] = SHARED_TEMPLATE.get()
    return LambdaFunction(handler, **settings)


class FunctionMaker:
    """Makes ``LambdaFunction`` objects with a test's defaults, and closes every one.

    ``handler`` and ``defaults`` apply unless a call gives its own; a dict default
    (``env``) is merged with the call's. Each is made by :func:`lambda_function`.
    """

    def __init__(self, handler: str | None = None, **defaults: Any) -> None:
        self.handler = handler
        self.defaults = defaults
        self.made: list[LambdaFunction] = []

    def __call__(self, handler: str | None = None, **config: Any) -> LambdaFunction:
        handler = handler or self.handler
        assert handler is not None, "no handler given and no default"
        settings = dict(self.defaults)
        for name, value in config.items():
            default = settings.get(name)
            settings[name] = {**default, **value} if isinstance(default, dict) else value
        function = lambda_function(handler, **settings)
        self.made.append(function)
        return function

    def close(self) -> None:
        """Close every function made (all of them, even when one fails to close)."""
        errors = []
        for function in self.made:
            try:
                function.close()
            except Exception as exc:
                errors.append(exc)
        self.made.clear()
        if errors:
            raise errors[0]


@contextmanager
def function_maker(handler: str | None = None, **defaults: Any) -> Iterator[FunctionMaker]:
    """A ``FunctionMaker`` whose functions are closed when the block ends (a fixture's
    ``yield``)."""
    maker = FunctionMaker(handler, **defaults)
    try:
        yield maker
    finally:
        maker.close()


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; its last answer, as a bool.

    Callers assert on it, so a failure shows their own message."""
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if condition():
            return True
        time.sleep(0.005)
    return bool(condition())


def open_fds() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def open_fd_targets() -> set[tuple[str, str]]:
    """This process's open descriptors, each with what it points at."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        # The listing's own descriptor is closed by the time it is read.
        with contextlib.suppress(OSError):
            found.add((fd, os.readlink(f"/proc/self/fd/{fd}")))
    return found


def free_port() -> int:
    """A loopback port nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes

    def setup(self) -> None:
        mark_internal_thread()
        super().setup()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


@contextmanager
def keepalive_server() -> Iterator[tuple[str, int]]:
    """Serve ``BODY`` to every GET; yields (host, port)."""
    server = _Server(("127.0.0.1", 0), _Handler)

    def serve() -> None:
        mark_internal_thread()
        server.serve_forever(poll_interval=0.05)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
