"""The Docker engine, for the container backends: found and probed with the standard
library (a raw ``GET /_ping`` on its socket), so that deciding ``auto`` imports neither
the docker SDK nor testcontainers; whether it has (or can pull) an image; testcontainers'
settings for machines without a registry; a started container, watched and removed."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    import http.client

__all__ = [
    "DOCKER_PROBE_TIMEOUT",
    "ContainerChance",
    "DockerEndpoint",
    "DockerStatus",
    "RunningContainer",
    "container_chance",
    "docker_endpoint",
    "image_state",
    "is_installed",
    "probe_docker",
    "publish",
    "remove_container",
    "testcontainers_defaults",
]

# "A Docker engine answers within 1 s" (the spec): a hung engine must not stall a run.
DOCKER_PROBE_TIMEOUT = 1.0
# Asking the engine whether a registry has the image needs a registry round trip.
_PULLABLE_TIMEOUT = 5.0
# How long a watchdog gets to remove a container the session could not.
_WATCHDOG_REMOVAL = 35.0


class DockerEndpoint(NamedTuple):
    """Where the Docker engine's API should be: a unix socket or plain TCP."""

    url: str  # as the docker SDK takes it (base_url)
    source: str  # where it came from, for messages

    @property
    def raw(self) -> bool:
        """True if the standard library can talk to it (no TLS, no ssh)."""
        tls = os.environ.get("DOCKER_TLS_VERIFY", "") not in ("", "0")
        return self.url.startswith("unix://") or (self.url.startswith("tcp://") and not tls)

    def __str__(self) -> str:
        return self.url


def _default_sockets() -> list[str]:
    paths = ["/var/run/docker.sock"]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        paths.append(os.path.join(runtime, "docker.sock"))  # rootless Docker
    paths.append(os.path.expanduser("~/.docker/run/docker.sock"))  # Docker Desktop
    return paths


def docker_endpoint(environ: Mapping[str, str] | None = None) -> DockerEndpoint | None:
    """DOCKER_HOST if set, else the first Docker socket that exists; None if neither."""
    environ = os.environ if environ is None else environ
    host = environ.get("DOCKER_HOST", "").strip()
    if host:
        return DockerEndpoint(host, "DOCKER_HOST")
    for path in _default_sockets():
        if os.path.exists(path):
            return DockerEndpoint(f"unix://{path}", "default socket")
    return None


def _unix_connection(path: str, timeout: float) -> http.client.HTTPConnection:
    import http.client

    class UnixHTTPConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(path)
            except OSError:
                sock.close()
                raise
            self.sock = sock

    return UnixHTTPConnection("localhost", timeout=timeout)


def _docker_api(
    endpoint: DockerEndpoint, method: str, path: str, timeout: float
) -> tuple[int, bytes]:
    """One request to the engine's API; OSError if it cannot be reached in time."""
    import http.client  # lazily: ssl and email make it the costliest import here

    conn: http.client.HTTPConnection
    if endpoint.url.startswith("unix://"):
        conn = _unix_connection(endpoint.url[len("unix://") :], timeout)
    else:
        parts = urlsplit(endpoint.url.replace("tcp://", "http://", 1))
        conn = http.client.HTTPConnection(
            parts.hostname or "localhost", parts.port or 2375, timeout=timeout
        )
    try:
        conn.request(method, path, headers={"Host": "docker"})
        response = conn.getresponse()
        return response.status, response.read()
    except http.client.HTTPException as exc:
        raise OSError(f"not a Docker API answer: {exc!r}") from exc
    finally:
        conn.close()


def _api_message(body: bytes) -> str:
    try:
        return str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace").strip()[:200]


class DockerStatus(NamedTuple):
    endpoint: DockerEndpoint | None
    answered: bool
    detail: str  # "answered in 3 ms" or why not


def probe_docker(timeout: float = DOCKER_PROBE_TIMEOUT) -> DockerStatus:
    """Does a Docker engine answer within ``timeout``? Never imports the docker SDK for
    the usual unix-socket or plain-TCP engines."""
    endpoint = docker_endpoint()
    if endpoint is None:
        return DockerStatus(
            None,
            False,
            "no Docker engine found: DOCKER_HOST is unset and there is no socket at "
            f"{' or '.join(_default_sockets())}",
        )
    began = time.perf_counter()
    try:
        if endpoint.raw:
            status, body = _docker_api(endpoint, "GET", "/_ping", timeout)
            if status != 200:
                raise OSError(f"GET /_ping answered {status}: {_api_message(body)}")
        else:
            # TLS or ssh: the docker SDK knows how (it is installed with testcontainers).
            client = _sdk_client(endpoint, timeout)
            try:
                client.ping()
            finally:
                client.close()
    except Exception as exc:  # any failure means: no engine we can use
        return DockerStatus(
            endpoint,
            False,
            f"no Docker engine answered within {timeout:g} s at {endpoint} ({endpoint.source}): "
            f"{exc}",
        )
    took = (time.perf_counter() - began) * 1000
    return DockerStatus(endpoint, True, f"a Docker engine answered at {endpoint} in {took:.0f} ms")


def _sdk_client(endpoint: DockerEndpoint, timeout: float) -> Any:
    import docker

    if endpoint.source == "DOCKER_HOST":
        return docker.from_env(timeout=max(1, int(timeout)))
    return docker.DockerClient(base_url=endpoint.url, timeout=max(1, int(timeout)))


def image_state(endpoint: DockerEndpoint, image: str) -> tuple[str, str]:
    """("present" | "pullable" | "missing", a phrase saying so) for the engine at ``endpoint``."""
    name = quote(image, safe="/:@")
    try:
        if not endpoint.raw:
            client = _sdk_client(endpoint, _PULLABLE_TIMEOUT)
            try:
                client.images.get(image)
                return "present", f"image {image} is present"
            except Exception:
                client.images.get_registry_data(image)
                return "pullable", f"image {image} can be pulled"
            finally:
                client.close()
        status, _ = _docker_api(endpoint, "GET", f"/images/{name}/json", DOCKER_PROBE_TIMEOUT)
        if status == 200:
            return "present", f"image {image} is present"
        status, body = _docker_api(endpoint, "GET", f"/distribution/{name}/json", _PULLABLE_TIMEOUT)
        if status == 200:
            return "pullable", f"image {image} can be pulled"
        return (
            "missing",
            f"image {image} is not present and cannot be pulled ({_api_message(body)})",
        )
    except Exception as exc:
        return "missing", f"image {image} is not present and the registry did not answer ({exc})"


def is_installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ValueError:  # sys.modules[name] is None: import blocked, as good as missing
        return False


class ContainerChance(NamedTuple):
    """Whether a container of an image can be started here (``auto``'s question)."""

    # "present" or "pullable"; None: no container here.
    image_state: str | None
    # Why not; or how the image is had ("image X is present").
    detail: str


def container_chance(status: DockerStatus, image: str) -> ContainerChance:
    """A container needs an engine that answered, testcontainers, and the image (or a
    registry that has it)."""
    if not status.answered or status.endpoint is None:
        return ContainerChance(None, status.detail)
    if not is_installed("testcontainers"):
        return ContainerChance(
            None,
            f"{status.detail}, but testcontainers is not installed "
            '(pip install "pytest-lambda-context[containers]")',
        )
    state, how = image_state(status.endpoint, image)
    if state == "missing":
        return ContainerChance(None, f"{status.detail}, but {how}")
    return ContainerChance(state, how)


@contextlib.contextmanager
def testcontainers_defaults() -> Iterator[None]:
    """testcontainers' settings for starting the plugin's own containers, in its
    configuration object for the block only (not os.environ): the project's own
    testcontainers use sees its own settings before and after.

    Ryuk (the reaper) is an image to pull, which fails without a registry; the
    session stops its own containers anyway (and a watchdog, see RunningContainer).
    docker_host: testcontainers takes /.dockerenv as "inside a container" and would
    return the bridge gateway. Only defaults: a user's own setting wins.
    """
    try:
        from testcontainers.core.config import ConnectionMode, testcontainers_config
    except ImportError:  # not installed: the block says so in its own words
        yield
        return
    config = testcontainers_config
    # Read unresolved (its property would resolve and keep the environment's value):
    # set means the project's code set it, or its own testcontainers use resolved it.
    ryuk_disabled = vars(config).get("_ryuk_disabled")
    mode = config.connection_mode_override
    user_set_ryuk = (
        ryuk_disabled is not None
        or "TESTCONTAINERS_RYUK_DISABLED" in os.environ
        or "ryuk.disabled" in config.tc_properties
    )
    if not user_set_ryuk:
        config.ryuk_disabled = True
    if mode is None:
        config.connection_mode_override = ConnectionMode.docker_host
    try:
        yield
    finally:
        vars(config)["_ryuk_disabled"] = ryuk_disabled
        config.connection_mode_override = mode


def publish(container: Any, port: int, endpoint: DockerEndpoint) -> None:
    """Publish the container's ``port`` on a free port of the machine: on 127.0.0.1 only
    when the engine is this machine's (a unix socket or a loopback address), so that the
    test server is not reachable from the network; else on every address of the
    engine's machine, the only way to reach it from here."""
    host = urlsplit(endpoint.url.replace("tcp://", "http://", 1)).hostname
    local = endpoint.url.startswith("unix://") or host in ("127.0.0.1", "localhost", "::1")
    # The docker SDK takes (interface, port): testcontainers' own setter takes a port
    # only, in every version, so its port table is written here.
    ports = container.ports
    for key in (port, str(port)):
        ports.pop(key, None)
    ports[str(port)] = ("127.0.0.1", None) if local else None


class RunningContainer:
    """A container of ours: removed (and the engine client closed) by :meth:`stop`, or by
    a watchdog process if the test process is killed first (:meth:`guard`)."""

    def __init__(self, container: Any) -> None:
        self.container = container
        self._watchdog: subprocess.Popen[bytes] | None = None

    def guard(self, endpoint: DockerEndpoint) -> None:
        """Start the watchdog that removes the started container when this process is
        gone (see :mod:`~pytest_lambda_context.services.container_watchdog`)."""
        container_id = self.container.get_wrapped_container().id
        # The plugin's own folder first: it may be importable here only through
        # pytest's pythonpath setting, which a new interpreter does not have.
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = os.pathsep.join(filter(None, (here, os.environ.get("PYTHONPATH"))))
        self._watchdog = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest_lambda_context.services.container_watchdog",
                endpoint.url,
                container_id,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": path},
            # Its own session: the terminal's Ctrl-C and a kill of pytest's process
            # group leave it to do its work.
            start_new_session=True,
        )

    def exited(self) -> str | None:
        """Why waiting for it is pointless (it exited, with its last lines), or None."""
        try:
            wrapped = self.container.get_wrapped_container()
            wrapped.reload()
            if wrapped.status in ("exited", "dead"):
                logs = wrapped.logs(tail=20).decode("utf-8", "replace").strip()
                return f"it {wrapped.status}; its last lines:\n{logs}"
        except Exception:
            return None  # cannot tell: keep waiting until the deadline
        return None

    def stop(self) -> None:
        removed = False
        with contextlib.suppress(Exception):
            self.container.stop()
            removed = True
        # After the removal, or its connection would be left for the garbage collector.
        with contextlib.suppress(Exception):
            self.container.get_docker_client().client.close()
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is None:
            return
        if not removed:
            # Its turn: told by end of file, it tries with a client of its own.
            if watchdog.stdin is not None:
                watchdog.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                watchdog.wait(timeout=_WATCHDOG_REMOVAL)
        # Removed: nothing left for it. Killed rather than told by end of file: a
        # process forked since holds a copy of the pipe.
        watchdog.kill()
        watchdog.wait()
        if watchdog.stdin is not None:
            watchdog.stdin.close()


def remove_container(engine_url: str, container_id: str) -> None:
    """Remove a container, running or not, with its anonymous volumes (quietly: it may
    be gone already)."""
    endpoint = DockerEndpoint(engine_url, "watchdog")
    with contextlib.suppress(Exception):
        if endpoint.raw:
            _docker_api(endpoint, "DELETE", f"/containers/{container_id}?force=1&v=1", 30)
            return
        import docker

        # TLS (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH) and ssh come with the environment.
        from_env = os.environ.get("DOCKER_HOST", "").strip() == engine_url
        client = docker.from_env() if from_env else docker.DockerClient(base_url=engine_url)
        try:
            client.containers.get(container_id).remove(force=True, v=True)
        finally:
            client.close()
