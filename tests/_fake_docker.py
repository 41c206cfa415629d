"""A fake Docker engine API on a unix socket: enough for the plugin's probes.

It answers ``GET /_ping``, ``GET /images/<name>/json`` (200 for ``images``, else 404)
and ``GET /distribution/<name>/json`` (200 for ``pullable``, else 404); with
``hang=True`` it accepts connections and never answers.
"""

from __future__ import annotations

import json
import os
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        engine = self.server.engine
        engine.requests.append(self.path)
        if engine.hang:
            time.sleep(5)
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
    daemon_threads = True
    block_on_close = False
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

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        os.unlink(self.path)
