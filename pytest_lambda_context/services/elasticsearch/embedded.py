"""The embedded Elasticsearch stand-in: a small, real HTTP/1.1 keep-alive server.

It exists so that connection behaviour (how many TCP connections a Lambda handler
opens, whether it reuses them) can be tested without Docker or a cluster. It speaks
enough of the Elasticsearch REST API for the official clients 7, 8 and 9 to accept
it, keeps its data in memory (see ``store``), and answers 400 with an
explanation for anything it does not model.

Standard library only, and no elasticsearch/elastic_transport imports: the plugin
imports this module and must stay light. One daemon thread per client connection.
Run it on its own with ``python -m pytest_lambda_context.services.elasticsearch.embedded --port 9200``.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http
import json
import os
import re
import selectors
import signal
import socket
import threading
import time
import zlib
from collections.abc import Sequence
from typing import IO, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

from pytest_lambda_context.observe.scope import mark_internal_thread
from pytest_lambda_context.services.elasticsearch.store import (
    EsError,
    JSONObject,
    JSONValue,
    Store,
    parse_json,
    unsupported,
)

__all__ = ["EmbeddedElasticsearch", "main"]

DEFAULT_VERSION = "8.15.0"
# What ``GET /`` reports to a client that asks for compatibility with another major
# than the configured version's (a real 8.x server would refuse a 9.x client).
_VERSION_FOR_MAJOR = {7: "7.17.25", 8: "8.15.0", 9: "9.1.0"}
_LUCENE_FOR_MAJOR = {7: "8.11.3", 8: "9.11.1", 9: "10.2.2"}

_MAX_LINE = 64 * 1024
_MAX_HEADERS = 128
_MAX_BODY = 100 * 1024 * 1024  # ES's default http.max_content_length
_COMPAT_RE = re.compile(r"compatible-with\s*=\s*(\d+)")

# Parameters that change nothing here: formatting, timeouts and waits (every write is
# visible at once and the single-node "cluster" is always green), shard routing.
_IGNORED_PARAMS = frozenset(
    {
        "pretty",
        "human",
        "error_trace",
        "timeout",
        "master_timeout",
        "refresh",
        "wait_for_active_shards",
        "wait_for_status",
        "wait_for_nodes",
        "wait_for_events",
        "wait_for_no_relocating_shards",
        "wait_for_no_initializing_shards",
        "local",
        "level",
        "routing",
        "preference",
        "request_cache",
        "realtime",
        "allow_no_indices",
        "expand_wildcards",
        "include_type_name",
        "typed_keys",
        "require_alias",
    }
)
_HONOURED_PARAMS = frozenset(
    {
        "q", "size", "from", "op_type", "track_total_hits", "rest_total_hits_as_int",
        "_source", "ignore_unavailable",
    }
)  # fmt: skip


class _BadRequest(Exception):
    """The request cannot be framed: answer 400 and close the connection."""


class _Disconnected(Exception):
    """The client went away in the middle of a request."""


class _Request(NamedTuple):
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


class _Response(NamedTuple):
    status: int
    body: JSONValue  # None for an empty body


def _read_line(rfile: IO[bytes]) -> bytes:
    line = rfile.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise _BadRequest("request line or header too long")
    if line and not line.endswith(b"\n"):
        raise _Disconnected
    return line


def _read_request(rfile: IO[bytes], wfile: socket.socket) -> _Request | None:
    """Read one request; None when the client closed the connection between requests."""
    line = _read_line(rfile)
    while line in (b"\r\n", b"\n"):  # RFC 9112: ignore blank lines before a request
        line = _read_line(rfile)
    if not line:
        return None
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if (
        len(parts) != 3
        or not parts[0].isalpha()
        or not parts[0].isupper()
        or parts[2] not in ("HTTP/1.1", "HTTP/1.0")
        or not parts[1].startswith("/")
    ):
        raise _BadRequest(f"malformed request line [{line[:100]!r}]")
    method, target, version = parts

    headers: dict[str, str] = {}
    while True:
        line = _read_line(rfile)
        if not line:
            raise _Disconnected
        if line in (b"\r\n", b"\n"):
            break
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest("malformed header line")
        if len(headers) >= _MAX_HEADERS:
            raise _BadRequest("too many headers")
        headers[name.lower()] = value.strip()

    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection
    if version == "HTTP/1.0":
        keep_alive = "keep-alive" in connection

    if headers.get("expect", "").lower() == "100-continue":
        wfile.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = _read_body(rfile, headers)
    encoding = headers.get("content-encoding", "identity").lower()
    if encoding == "gzip" and body:
        # Clients created with http_compress=True gzip their request bodies.
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError, zlib.error):
            raise _BadRequest("request body is not valid gzip") from None
    elif encoding not in ("identity", "gzip"):
        raise _BadRequest(f"unsupported content-encoding [{encoding}]")

    split = urlsplit(target)
    params = dict(parse_qsl(split.query, keep_blank_values=True))
    return _Request(method, split.path, params, headers, body, keep_alive)


def _read_exactly(rfile: IO[bytes], size: int) -> bytes:
    data = rfile.read(size)
    if len(data) < size:
        raise _Disconnected
    return data


def _read_body(rfile: IO[bytes], headers: dict[str, str]) -> bytes:
    if "transfer-encoding" in headers:
        if "content-length" in headers or headers["transfer-encoding"].lower() != "chunked":
            raise _BadRequest("unsupported transfer-encoding")
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = _read_line(rfile)
            if not size_line:
                raise _Disconnected
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _BadRequest("malformed chunk size") from None
            if size == 0:
                while _read_line(rfile) not in (b"\r\n", b"\n"):  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if total > _MAX_BODY:
                raise _BadRequest("request body too large")
            chunks.append(_read_exactly(rfile, size))
            _read_exactly(rfile, 2)  # CRLF after each chunk
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit():
        raise _BadRequest("malformed content-length")
    length = int(length_text)
    if length > _MAX_BODY:
        raise _BadRequest("request body too large")
    return _read_exactly(rfile, length) if length else b""


def _drain(conn: socket.socket) -> None:
    """Half-close, then read what the client still sends, so that closing with unread
    data does not reset the connection before the client has read our 400."""
    try:
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(0.5)
        for _ in range(64):
            if not conn.recv(65536):
                break
    except OSError:
        pass


def _compat_major(headers: dict[str, str]) -> int | None:
    """The major version the client asked for with a compatible-with media type."""
    for name in ("accept", "content-type"):
        found = _COMPAT_RE.search(headers.get(name, ""))
        if found:
            return int(found.group(1))
    return None


class EmbeddedElasticsearch:
    """An in-memory Elasticsearch stand-in listening on ``host:port`` (0: random port)."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, version: str = DEFAULT_VERSION
    ) -> None:
        if not re.fullmatch(r"\d+\.\d+\.\d+", version):
            raise ValueError(f"version must look like '8.15.0', not {version!r}")
        self._host = host
        self._port = port
        self._version = version
        self._store = Store()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = -1, -1
        self._accept_thread: threading.Thread | None = None
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._total_opened = 0
        self._stopping = False
        self._started_at = time.time()

    # lifecycle

    def start(self) -> EmbeddedElasticsearch:
        if self._listener is not None:
            raise RuntimeError("EmbeddedElasticsearch is already started")
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        listener = socket.create_server((self._host, self._port), family=family, backlog=128)
        listener.setblocking(False)
        self._listener = listener
        self._port = listener.getsockname()[1]
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._started_at = time.time()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"es-standin-accept-{self._port}", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every client connection, and wait for the threads."""
        with self._lock:
            if self._listener is None or self._stopping:
                return
            self._stopping = True
        os.write(self._wake_w, b"x")
        if self._accept_thread is not None:
            self._accept_thread.join()
        with self._lock:
            connections = list(self._connections.items())
        for conn, _ in connections:
            # Wakes the connection's thread out of recv/send; it then closes it.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for _, thread in connections:
            thread.join(timeout=5)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self._listener = None
        self._accept_thread = None

    def __enter__(self) -> EmbeddedElasticsearch:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # properties

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def version(self) -> str:
        return self._version

    @property
    def url(self) -> str:
        host = self._client_host()
        return f"http://[{host}]:{self._port}" if ":" in host else f"http://{host}:{self._port}"

    def _client_host(self) -> str:
        # A wildcard bind address is not something a client can connect to.
        return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self._host, self._host)

    def stats(self) -> dict[str, int]:
        """Client connections of this server: open now, and accepted since start."""
        with self._lock:
            return {"current_open": len(self._connections), "total_opened": self._total_opened}

    # connections

    def _accept_loop(self) -> None:
        mark_internal_thread()
        listener = self._listener
        assert listener is not None
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping:
                for key, _ in selector.select():
                    if key.fd == self._wake_r:
                        break
                    try:
                        conn, _ = listener.accept()
                    except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                        continue
                    except OSError:  # e.g. out of descriptors: keep serving the others
                        time.sleep(0.01)
                        continue
                    self._serve(conn)
        listener.close()

    def _serve(self, conn: socket.socket) -> None:
        conn.setblocking(True)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        thread = threading.Thread(
            target=self._connection_loop,
            args=(conn,),
            name=f"es-standin-conn-{self._port}",
            daemon=True,
        )
        with self._lock:
            if self._stopping:
                conn.close()
                return
            self._connections[conn] = thread
            self._total_opened += 1
        thread.start()

    def _connection_loop(self, conn: socket.socket) -> None:
        mark_internal_thread()
        rfile = conn.makefile("rb")
        try:
            while True:
                try:
                    request = _read_request(rfile, conn)
                except _BadRequest as exc:
                    error = EsError(400, "illegal_argument_exception", f"bad HTTP request: {exc}")
                    conn.sendall(self._encode(_Response(400, error.body()), None, {}, False, "GET"))
                    _drain(conn)
                    return
                if request is None:
                    return
                response = self._handle(request)
                compat = _compat_major(request.headers)
                conn.sendall(
                    self._encode(
                        response, compat, request.params, request.keep_alive, request.method
                    )
                )
                if not request.keep_alive:
                    return
        except (_Disconnected, OSError):
            return  # the client went away (or stop() shut the socket down)
        finally:
            rfile.close()
            conn.close()
            with self._lock:
                self._connections.pop(conn, None)

    @staticmethod
    def _encode(
        response: _Response,
        compat: int | None,
        params: dict[str, str],
        keep_alive: bool,
        method: str,
    ) -> bytes:
        if response.body is None:
            payload = b""
        elif "pretty" in params and params["pretty"] != "false":
            payload = json.dumps(response.body, indent=2).encode() + b"\n"
        else:
            payload = json.dumps(response.body, separators=(",", ":")).encode()
        content_type = (
            f"application/vnd.elasticsearch+json;compatible-with={compat}"
            if compat
            else "application/json"
        )
        try:
            phrase = http.HTTPStatus(response.status).phrase
        except ValueError:
            phrase = "Unknown"
        head = (
            f"HTTP/1.1 {response.status} {phrase}\r\n"
            "X-elastic-product: Elasticsearch\r\n"
            f"content-type: {content_type}\r\n"
            f"content-length: {len(payload)}\r\n"
        )
        if not keep_alive:
            head += "connection: close\r\n"
        # HEAD gets the headers GET would, and no body.
        return (head + "\r\n").encode("latin-1") + (b"" if method == "HEAD" else payload)

    # routing

    def _handle(self, request: _Request) -> _Response:
        try:
            for name in request.params:
                if name not in _IGNORED_PARAMS and name not in _HONOURED_PARAMS:
                    raise unsupported(f"request parameter [{name}]")
            segments = (
                [unquote(s) for s in request.path.strip("/").split("/")]
                if request.path != "/"
                else []
            )
            method = "GET" if request.method == "HEAD" else request.method
            return self._route(request, method, segments)
        except EsError as exc:
            return _Response(exc.status, exc.body())
        except Exception as exc:  # a bug here must not kill the connection or the server
            error = EsError(
                500, "exception", f"embedded stand-in failed: {type(exc).__name__}: {exc}"
            )
            return _Response(500, error.body())

    def _route(self, request: _Request, method: str, segments: Sequence[str]) -> _Response:
        store, params = self._store, request.params
        match (method, *segments):
            case ("GET",):
                return _Response(200, self._info(_compat_major(request.headers)))
            case ("GET" | "POST", "_search") | ("GET" | "POST", _, "_search"):
                expr = segments[0] if len(segments) == 2 else None
                return _Response(200, store.search(expr, self._json_object(request.body), params))
            case ("GET" | "POST", "_count") | ("GET" | "POST", _, "_count"):
                expr = segments[0] if len(segments) == 2 else None
                return _Response(200, store.count(expr, self._json_object(request.body), params))
            case ("GET" | "POST", "_refresh") | ("GET" | "POST", _, "_refresh"):
                return _Response(200, store.refresh(segments[0] if len(segments) == 2 else None))
            case ("POST" | "PUT", "_bulk") | ("POST" | "PUT", _, "_bulk"):
                return _Response(
                    200, store.bulk(segments[0] if len(segments) == 2 else None, request.body)
                )
            case ("GET", "_cluster", "health"):
                return _Response(200, self._health())
            case ("GET", "_nodes", "stats") | ("GET", "_nodes", "stats", "http"):
                return _Response(200, self._node_stats())
            case (_, name, *_) if name.startswith("_"):
                pass  # some other API: unsupported, below
            case ("PUT", index):
                return _Response(200, store.create_index(index, request.body))
            case ("GET", index):
                if request.method == "HEAD":
                    return _Response(200 if store.index_exists(index) else 404, None)
                return _Response(200, store.get_index(index))
            case ("DELETE", index):
                return _Response(200, store.delete_index(index))
            case ("PUT" | "POST", index, "_doc", doc_id) | (
                "PUT" | "POST",
                index,
                "_create",
                doc_id,
            ):
                create = segments[1] == "_create" or params.get("op_type") == "create"
                return _Response(*store.put_doc(index, doc_id, request.body, create=create))
            case ("POST", index, "_doc"):
                return _Response(*store.put_doc(index, None, request.body))
            case ("GET", index, "_doc", doc_id):
                with_source = params.get("_source", "true").lower() != "false"
                status, found = store.get_doc(index, doc_id, with_source)
                return _Response(status, None if request.method == "HEAD" else found)
            case ("DELETE", index, "_doc", doc_id):
                return _Response(*store.delete_doc(index, doc_id))
            case ("POST", index, "_update", doc_id):
                return _Response(*store.update_doc(index, doc_id, request.body))
        raise unsupported(f"[{request.method} {request.path}]")

    @staticmethod
    def _json_object(body: bytes) -> JSONObject:
        if not body.strip():
            return {}
        parsed = parse_json(body)
        if not isinstance(parsed, dict):
            raise EsError(400, "parse_exception", "request body must be a JSON object")
        return parsed

    def _version_for(self, compat: int | None) -> str:
        major = int(self._version.split(".")[0])
        # Like a real server, accept the own major and the previous one; for any
        # other major the client asked for, pose as that major so it is accepted.
        if compat is None or compat in (major, major - 1) or compat not in _VERSION_FOR_MAJOR:
            return self._version
        return _VERSION_FOR_MAJOR[compat]

    def _info(self, compat: int | None) -> JSONObject:
        number = self._version_for(compat)
        major = int(number.split(".")[0])
        return {
            "name": "pytest-lambda-context-embedded",
            "cluster_name": "pytest-lambda-context",
            "cluster_uuid": self._store.cluster_uuid,
            "version": {
                "number": number,
                "build_flavor": "default",
                "build_type": "embedded",
                "build_hash": "0000000000000000000000000000000000000000",
                "build_date": "2024-01-01T00:00:00.000000000Z",
                "build_snapshot": False,
                "lucene_version": _LUCENE_FOR_MAJOR.get(major, "9.11.1"),
                "minimum_wire_compatibility_version": f"{max(major - 1, 6)}.17.0",
                "minimum_index_compatibility_version": f"{max(major - 1, 6)}.0.0",
            },
            "tagline": "You Know, for Search",
        }

    def _health(self) -> JSONObject:
        shards = len(self._store.index_names())
        return {
            "cluster_name": "pytest-lambda-context",
            "status": "green",
            "timed_out": False,
            "number_of_nodes": 1,
            "number_of_data_nodes": 1,
            "active_primary_shards": shards,
            "active_shards": shards,
            "relocating_shards": 0,
            "initializing_shards": 0,
            "unassigned_shards": 0,
            "unassigned_primary_shards": 0,
            "delayed_unassigned_shards": 0,
            "number_of_pending_tasks": 0,
            "number_of_in_flight_fetch": 0,
            "task_max_waiting_in_queue_millis": 0,
            "active_shards_percent_as_number": 100.0,
        }

    def _node_stats(self) -> JSONObject:
        address = f"{self._client_host()}:9300"
        return {
            "_nodes": {"total": 1, "successful": 1, "failed": 0},
            "cluster_name": "pytest-lambda-context",
            "nodes": {
                self._store.node_id: {
                    "timestamp": int(time.time() * 1000),
                    "name": "pytest-lambda-context-embedded",
                    "transport_address": address,
                    "host": self._host,
                    "ip": address,
                    "roles": ["data", "ingest", "master"],
                    "http": dict(self.stats()),  # copied: a dict[str, int] is not a JSONObject
                }
            },
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_lambda_context.services.elasticsearch.embedded",
        description="Serve the pytest-lambda-context embedded Elasticsearch stand-in.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--version", default=DEFAULT_VERSION, help="version reported by GET /")
    args = parser.parse_args(argv)
    done = threading.Event()
    # Handle SIGTERM explicitly: as PID 1 in a container Python would ignore it.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    server = EmbeddedElasticsearch(args.host, args.port, version=args.version).start()
    print(
        f"pytest-lambda-context embedded Elasticsearch {server.version} "
        f"listening on {args.host}:{server.port}",
        flush=True,
    )
    try:
        done.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
