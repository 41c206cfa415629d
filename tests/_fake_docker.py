"""A fake Docker engine API on a unix socket: enough for the plugin's probes.

It answers ``GET /_ping``, ``GET /images/<name>/json`` (200 for ``images``, else 404)
and ``GET /distribution/<name>/json`` (200 for ``pullable``, else 404); with
``hang=True`` it accepts connections and never answers (until it stops). Leaving the
``with`` block stops it with nothing left behind: no handler thread, no open socket
(a later test counting descriptors or threads must not see them close under it).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.engine._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.engine._untrack(self.connection)

    def do_GET(self) -> None:
        engine = self.server.engine
        engine.requests.append(self.path)
        if engine.hang:
            engine._stopping.wait(5)
            self.close_connection = True
            return
        path = self.path
        if path == "/_ping":
            self._send(200, b"OK", "text/plain")
        elif path.startswith("/images/") and path.endswith("/json"):
            name = path[len("/images/") : -len("/json")]
            found = name in engine.images
            self._json(
                200 if found else 404, {} if found else {"message": f"No such image: {name}"}
            )
        elif path.startswith("/distribution/") and path.endswith("/json"):
            name = path[len("/distribution/") : -len("/json")]
            found = name in engine.pullable
            self._json(
                200 if found else 404,
                {} if found else {"message": f"manifest unknown: {name} not found in registry"},
            )
        else:
            self._json(404, {"message": f"page not found: {path}"})

    def _json(self, status: int, body: Any) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def address_string(self) -> str:
        return "unix"


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    # server_close() joins the handler threads; __exit__ first unblocks them.
    daemon_threads = False
    block_on_close = True
    engine: FakeDockerEngine


class FakeDockerEngine:
    def __init__(
        self,
        path: str,
        *,
        images: tuple[str, ...] = (),
        pullable: tuple[str, ...] = (),
        hang: bool = False,
    ) -> None:
        self.path = path
        self.images = set(images)
        self.pullable = set(pullable)
        self.hang = hang
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server = _Server(path, _Handler)
        self._server.engine = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def __enter__(self) -> FakeDockerEngine:
        self._thread.start()
        return self

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)
            if self._stopping.is_set():
                self._unblock(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    @staticmethod
    def _unblock(conn: socket.socket) -> None:
        """EOF for a handler waiting on a kept-alive connection: it then returns."""
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()  # no new connections
        with self._lock:
            self._stopping.set()  # hung handlers return
            for conn in self._connections:
                self._unblock(conn)
        self._server.server_close()  # joins the handler threads: their sockets are closed
        self._thread.join(5)
        os.unlink(self.path)
