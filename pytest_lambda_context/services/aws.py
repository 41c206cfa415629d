"""The ``aws`` fixture: moto for one test, fake credentials, and client accounting.

- In the test process moto's in-process ``mock_aws`` is active for the test. Module
  isolation runs function code in this process, so its clients are mocked by it; the
  environments are created (and the function's modules imported) only after the
  fixture is set up, so clients built at import time are mocked too.
- Process isolation runs function code in worker processes, which in-process patching
  cannot reach: the first process-isolated function of the session starts moto's
  server (``ThreadedMotoServer``) on 127.0.0.1 and a random port, and every such
  function gets ``AWS_ENDPOINT_URL`` pointing at it. The server runs in the test
  process on moto's global backends, the same ones ``mock_aws`` uses, so test-side
  clients see what the workers wrote, and ``mock_aws``'s reset at each test's start
  resets the server's state too.
- For the test only, every ``AWS_*`` variable of the test process (profiles, keys,
  tokens, config and credentials files, endpoints) is hidden and fake credentials and
  a region are set; all is put back afterwards, even when the test fails.

Nothing here imports moto, boto3 or botocore until the fixture is used.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import threading
import urllib.parse
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

from pytest_lambda_context.environments.function_config import FunctionWiring
from pytest_lambda_context.observe.clients import NOT_IMPLEMENTED_HEADER, ClientEvent
from pytest_lambda_context.observe.guard import is_loopback_host
from pytest_lambda_context.observe.scope import active_scope, mark_internal_thread
from pytest_lambda_context.runtime.context import DEFAULT_REGION

if TYPE_CHECKING:
    from http.server import BaseHTTPRequestHandler

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from moto.core.config import DefaultConfig
    from moto.core.models import MockAWS
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from werkzeug.serving import WSGIRequestHandler

    from pytest_lambda_context.environments.function import LambdaFunction
    from pytest_lambda_context.environments.function_config import FunctionConfig

# botocore ships no type hints: its objects are typed Any here.

__all__ = [
    "INSTALL_HINT",
    "AwsService",
    "MissingDependencyError",
    "MotoServers",
    "UnmockedAwsCallError",
    "fake_credentials",
]

INSTALL_HINT = 'pip install "pytest-lambda-context[aws]"'
# Variables hidden from the test (and so from function code): anything that could
# point boto3 at a real account or endpoint.
_HIDDEN_PREFIXES = ("AWS_", "BOTO_")


def fake_credentials() -> dict[str, str]:
    """What function code sees instead of real credentials (plus its region)."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        # No profile, config or credentials file: the environment is all there is.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


class AwsService:
    """The ``aws`` fixture's value: moto for this test, and what function code created."""

    def __init__(
        self,
        *,
        servers: MotoServers,
        functions: Callable[[], Iterable[LambdaFunction]],
        guard_unmocked: bool,
    ) -> None:
        """``functions``: the functions of this test; ``guard_unmocked``: refuse botocore
        requests that moto let through to a non-loopback address."""
        self._servers = servers
        self._functions = functions
        self._guard_unmocked = guard_unmocked
        self.region = DEFAULT_REGION
        self._mock: MockAWS | None = None
        self._saved_environ: dict[str, str] = {}

    # -- what a test reads ------------------------------------------------------------
    @property
    def endpoint_url(self) -> str | None:
        """The moto server's URL given to process-isolated functions (None: not started)."""
        server = self._servers.current
        return None if server is None else str(server.url)

    @property
    def clients(self) -> list[ClientEvent]:
        """Every boto3/botocore client function code created in this test, in order."""
        events: list[ClientEvent] = []
        for function in self._functions():
            events += function.client_events
        return events

    def clients_created(self, service: str | None = None) -> int:
        """How many clients (of ``service``, e.g. "s3") function code created in this test."""
        return sum(1 for e in self.clients if service is None or e.service == service)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        missing = _missing_dependency()
        if missing is not None:
            raise MissingDependencyError(missing)
        from moto import mock_aws
        from moto.core.config import default_user_config

        environ = os.environ
        self._saved_environ = {k: v for k, v in environ.items() if k.startswith(_HIDDEN_PREFIXES)}
        try:
            for key in self._saved_environ:
                del environ[key]
            environ.update(fake_credentials())
            environ["AWS_DEFAULT_REGION"] = environ["AWS_REGION"] = self.region
            core = default_user_config.get("core", {}).copy()
            # Our fake credentials are set already; moto's own would overwrite them.
            core["mock_credentials"] = False
            config: DefaultConfig = {
                "core": core,
                # No Docker behind Lambda or Batch calls: tests stay hermetic.
                "lambda": {"use_docker": False},
                "batch": {"use_docker": False},
            }
            self._mock = mock_aws(config=config)
            # Resets moto's backends: the in-process ones and the server's (shared).
            self._mock.start(reset=True)
            if self._guard_unmocked:
                _guard_unmocked_sends(True)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        try:
            _guard_unmocked_sends(False)
            if self._mock is not None:
                self._mock.stop(remove_data=True)
                self._mock = None
        finally:
            self._restore_environ()

    def _restore_environ(self) -> None:
        environ = os.environ
        for key in [k for k in environ if k.startswith(_HIDDEN_PREFIXES)]:
            del environ[key]
        environ.update(self._saved_environ)
        self._saved_environ = {}

    # -- functions ------------------------------------------------------------------------
    def prepare(self, config: FunctionConfig) -> FunctionWiring:
        """Point a function about to be made at moto: its env (the test's own values
        win), and moto's server where function code runs outside this process."""
        variables = fake_credentials()
        # The execution role's credentials are Lambda's to set, not the function's env.
        credentials = {
            key: variables.pop(key)
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
        }
        if not config.capabilities.in_test_process:
            variables["AWS_ENDPOINT_URL"] = self._server().url
        return FunctionWiring(env=variables, credentials=credentials)

    def _server(self) -> _MotoServer:
        return self._servers.get()

    def __repr__(self) -> str:
        endpoint = f", server {self.endpoint_url}" if self.endpoint_url else ""
        return f"<AwsService moto, region {self.region}{endpoint}: {len(self.clients)} clients>"


class MissingDependencyError(RuntimeError):
    """moto, boto3 or moto's server extra is not installed; the message says what to install."""


class MotoServers:
    """The session's moto server for process isolation: started on first use, kept."""

    def __init__(self) -> None:
        self.current: _MotoServer | None = None

    def get(self) -> _MotoServer:
        if self.current is None:
            try:
                server_class = _server_class()
            except ImportError as exc:
                raise MissingDependencyError(
                    f"isolation='process' under the aws fixture runs moto's server, which "
                    f"needs moto[server] ({exc}): {INSTALL_HINT}"
                ) from None
            self.current = _MotoServer(server_class)
        return self.current

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


class UnmockedAwsCallError(RuntimeError):
    """A boto3 client that moto does not intercept tried to reach AWS during an aws test."""


_guarded_send: list[object] = []  # the original URLLib3Session.send while guarded


def _guard_unmocked_sends(on: bool) -> None:
    """While the fixture is active, refuse botocore requests from the test process that
    moto let through to a non-loopback address: clients built before moto was loaded."""
    from botocore.httpsession import URLLib3Session

    if not on:
        if _guarded_send:
            URLLib3Session.send = _guarded_send.pop()
        return
    if _guarded_send:
        return
    original = URLLib3Session.send
    _guarded_send.append(original)

    def send(self: object, request: Any) -> object:
        if active_scope() is None:  # function code has the socket guard instead
            host = urllib.parse.urlsplit(str(request.url)).hostname or ""
            if not is_loopback_host(host):
                raise UnmockedAwsCallError(_unmocked_message(str(request.url)))
        return original(self, request)

    URLLib3Session.send = send


def _unmocked_message(url: str) -> str:
    return (
        f"a boto3/botocore client in the test process tried to reach {url} while the aws "
        "fixture is active, and moto did not intercept it: the client was built before moto "
        "was loaded, most likely when a module that the test file imports at its top level "
        "was imported (collection runs before any fixture). Such a client is not mocked and "
        "may hold your real credentials. Call the handler through lambda_function or "
        "make_lambda_function (each execution environment imports the function's modules "
        "afresh, after moto started), or import the module inside the test. "
        "(Refused by pytest-lambda-context; --lambda-network=allow lets it through.)"
    )


def _missing_dependency() -> str | None:
    """What the aws fixture lacks, said with what to install (None: nothing)."""
    try:
        import boto3  # noqa: F401
        import moto
    except ImportError as exc:
        return f"the aws fixture needs moto and boto3 ({exc}): {INSTALL_HINT}"
    if not hasattr(moto, "mock_aws"):
        # The extra's floor is moto 4.2 so that installing the plugin never upgrades a
        # project's moto 4 (whose per-service mocks 5 removed); the fixture needs 5.
        version = getattr(moto, "__version__", "older than 5")
        return (
            f"the aws fixture needs moto 5 or later; this environment has moto {version}, "
            "which has no mock_aws (your own moto 4 mocks, such as mock_s3, keep working "
            "beside the plugin without the aws fixture): pip install 'moto[server]>=5'"
        )
    return None


# --- the moto server for process isolation ------------------------------------------------


class _KeepAliveServer(Protocol):
    """The WSGI server of _server_class()'s moto server: werkzeug's, plus close_connections()."""

    def server_close(self) -> None: ...

    def close_connections(self) -> None: ...


class _MotoServer:
    """moto's ThreadedMotoServer on 127.0.0.1, quiet, its threads the plugin's own."""

    def __init__(self, server_class: type[ThreadedMotoServer] | None = None) -> None:
        server_class = server_class or _server_class()
        server = server_class(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        inner = cast("_KeepAliveServer | None", self._server._server)
        self._server.stop()
        if inner is not None:
            inner.server_close()
            inner.close_connections()


_server_class_cache: list[type[ThreadedMotoServer]] = []


def _server_class() -> type[ThreadedMotoServer]:
    """ThreadedMotoServer, subclassed on first use (moto is imported only then)."""
    if _server_class_cache:
        return _server_class_cache[0]
    with warnings.catch_warnings():
        # Without flask, moto warns "install moto[server]" before its ImportError; the
        # ImportError is reported (with the extra to install), the warning is noise.
        warnings.simplefilter("ignore")
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import ThreadedWSGIServer

    class Server(ThreadedWSGIServer):
        daemon_threads = True

        def __init__(
            self,
            host: str,
            port: int,
            app: WSGIApplication,
            handler: type[WSGIRequestHandler] | None = None,
        ) -> None:
            super().__init__(host, port, app, handler)
            # Open keep-alive connections and their threads, closed by close_connections().
            self.connections: dict[socket.socket, threading.Thread] = {}

        def log(self, type: str, message: str, *args: object) -> None:
            pass

        def close_connections(self) -> None:
            """End every kept-alive connection now, not when its client goes away."""
            for connection, thread in list(self.connections.items()):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                thread.join(5)

    class Handler(MotoRequestHandler):
        """moto's request handler, with HTTP/1.1 keep-alive.

        werkzeug's development server closes every connection after one response, so a
        memoized boto3 client would look like it opened a connection per call. This
        handler reads each request body completely before answering (the connection is
        then positioned at the next request) and answers with a Content-Length.
        """

        def handle(self) -> None:
            # Each connection is served by a thread of its own: never function code.
            mark_internal_thread()
            connections = cast(Server, self.server).connections
            connections[self.connection] = threading.current_thread()
            try:
                super().handle()
            finally:
                connections.pop(self.connection, None)

        def run_wsgi(self) -> None:
            environ = self.make_environ()
            stream = environ["wsgi.input"]
            if environ.get("wsgi.input_terminated"):  # chunked: read to the last chunk
                body = b"".join(iter(lambda: stream.read(65536), b""))
            else:
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = stream.read(length) if length > 0 else b""
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("wsgi.input_terminated", None)
            _respond(self, environ, self.server.app)

        def log(self, type: str, message: str, *args: object) -> None:
            pass  # no request log on the test's stderr

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

    class Dispatcher(DomainDispatcherApplication):
        """moto's dispatcher, answering what moto lacks with a clear 501 (not a 500
        that botocore retries four times with back-off)."""

        def __call__(
            self, environ: WSGIEnvironment, start_response: StartResponse
        ) -> Iterable[bytes]:
            try:
                backend_app = self.get_application(environ)
            except Exception as exc:  # moto has no backend for this service
                detail = f"no moto backend for this service ({type(exc).__name__})"
                return _not_implemented(environ, start_response, detail)
            try:
                return backend_app(environ, start_response)
            except NotImplementedError as exc:
                return _not_implemented(environ, start_response, str(exc))

    class QuietMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            mark_internal_thread()
            app = Dispatcher(create_backend_app)
            self._server = Server(self._ip_address, self._port, app, handler=Handler)
            self._server_ready_event.set()
            self._server.serve_forever(poll_interval=0.1)

    _server_class_cache.append(QuietMotoServer)
    return QuietMotoServer


_NO_BODY = frozenset({204, 304})
_FRAMING = frozenset({"content-length", "connection", "transfer-encoding"})


def _respond(
    handler: BaseHTTPRequestHandler, environ: WSGIEnvironment, app: WSGIApplication
) -> None:
    """Run the WSGI ``app`` and write its whole response with a Content-Length."""
    started: list[tuple[str, list[tuple[str, str]]]] = []  # (status, headers)

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: object = None
    ) -> Callable[[bytes], None]:
        started[:] = [(status, headers)]
        return lambda data: chunks.append(data)

    chunks: list[bytes] = []
    try:
        result = app(environ, start_response)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    except Exception as exc:  # a moto bug: say what it was, in the response
        text = f"moto raised {type(exc).__name__}: {exc}".encode("utf-8", "replace")
        started[:] = [("500 Internal Server Error", [("Content-Type", "text/plain")])]
        chunks = [text]
    ((status, headers),) = started
    code_text, _, reason = str(status).partition(" ")
    code = int(code_text)
    body = b"".join(chunks)
    bodiless = environ["REQUEST_METHOD"] == "HEAD" or code in _NO_BODY or code < 200
    handler.send_response(code, reason)
    for name, value in headers:
        if bodiless and name.lower() == "content-length":
            handler.send_header(name, value)  # HEAD: the size of what GET would send
        elif name.lower() not in _FRAMING:
            handler.send_header(name, value)
    if not bodiless:
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if not bodiless and body:
        handler.wfile.write(body)
    handler.wfile.flush()


def _not_implemented(
    environ: Mapping[str, object], start_response: StartResponse, detail: str
) -> list[bytes]:
    service, operation = _service_and_operation(environ)
    message = (
        f"moto does not implement the {service} operation {operation}: {detail} "
        "(pytest-lambda-context's moto server)"
    )
    body = json.dumps({"__type": "NotImplemented", "message": message}).encode()
    header = detail.encode("latin-1", "replace").decode("latin-1").replace("\n", " ")[:300]
    start_response(
        "501 Not Implemented",
        [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("Content-Length", str(len(body))),
            (NOT_IMPLEMENTED_HEADER, header),
        ],
    )
    return [body]


def _service_and_operation(environ: Mapping[str, object]) -> tuple[str, str]:
    """Best effort, from the signature's credential scope and the target/action."""
    service = "unknown service"
    authorization = str(environ.get("HTTP_AUTHORIZATION", ""))
    _, _, credential = authorization.partition("Credential=")
    parts = credential.split(",")[0].split("/")
    if len(parts) >= 5:
        service = parts[3]
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    if target:
        return service, target.rpartition(".")[2]
    query = urllib.parse.parse_qs(str(environ.get("QUERY_STRING", "")))
    if "Action" in query:
        return service, query["Action"][0]
    return service, f"{environ.get('REQUEST_METHOD', '')} {environ.get('PATH_INFO', '')}"
