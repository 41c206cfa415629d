"""Where the ``es`` fixture's Elasticsearch comes from: choosing a backend and running it.

``lambda_es`` picks one of three backends (``auto`` picks for the user):

- ``embedded``: the stand-in server of :mod:`.embedded`, in this process (so one per
  xdist worker), started in milliseconds;
- ``url``: an existing cluster, checked for an answer before the first test uses it;
- ``container``: testcontainers' Elasticsearch container, started once per session
  (per xdist worker) and stopped at its end.

The Docker engine is probed with the standard library (a raw ``GET /_ping`` on its
socket): deciding ``auto`` must not import the docker SDK or testcontainers, and
nothing here imports elasticsearch at all. testcontainers is imported only when a
container is really started.
"""

from __future__ import annotations

import base64
import importlib
import importlib.util
import json
import os
import time
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol
from urllib.parse import urlsplit

from pytest_lambda_context.services.docker_engine import (
    DockerStatus,
    RunningContainer,
    container_chance,
    docker_endpoint,
    image_state,
    probe_docker,
    publish,
    testcontainers_defaults,
)
from pytest_lambda_context.services.urls import without_password

if TYPE_CHECKING:
    import http.client

__all__ = [
    "CONTAINER_START_TIMEOUT",
    "DEFAULT_IMAGE",
    "Backend",
    "BackendError",
    "ContainerBackend",
    "Decision",
    "EmbeddedBackend",
    "UrlBackend",
    "decide",
    "decide_cheaply",
    "http_json",
    "start_backend",
    "wait_until_ready",
]

# Pinned so that a run today and a run next year test against the same server.
DEFAULT_IMAGE = "docker.elastic.co/elasticsearch/elasticsearch:8.15.5"
# A real Elasticsearch 8 needs 10-40 s to start on CI machines; 120 s bounds a wedged one.
CONTAINER_START_TIMEOUT = 120.0
_URL_TIMEOUT = 5.0
_PROGRESS_EVERY = 10.0

CHOOSE_ANOTHER = (
    "choose another backend with --lambda-es=embedded (in-process stand-in) or "
    "--lambda-es=url --lambda-es-url=http://host:9200 (or lambda_es = ... in the ini file)"
)

Say = Callable[[str], None]


class BackendError(Exception):
    """The chosen backend cannot be used; the message says why and what to do instead."""


# NamedTuples, not dataclasses: this module is imported for every report header.
class Decision(NamedTuple):
    backend: str  # "container", "url" or "embedded"
    reason: str


# --- deciding ----------------------------------------------------------------------------


def _choice(options: Mapping[str, str | None]) -> tuple[str, str | None, str]:
    choice = options.get("lambda_es") or "auto"
    url = options.get("lambda_es_url") or None
    image = options.get("lambda_es_image") or DEFAULT_IMAGE
    if choice == "url" and not url:
        raise BackendError(
            "lambda_es = url needs the cluster's address: --lambda-es-url=http://host:9200 "
            f"(or lambda_es_url in the ini file); or {CHOOSE_ANOTHER}"
        )
    return choice, url, image


def decide_cheaply(options: Mapping[str, str | None]) -> Decision | None:
    """The backend, if it can be told without talking to Docker; else None.

    Used for the report header, which every session prints, used or not.
    """
    choice, url, _ = _choice(options)
    if choice != "auto":
        return Decision(choice, f"lambda_es = {choice}")
    if url:
        return Decision("url", "lambda_es_url is set")
    if docker_endpoint() is None:
        return Decision("embedded", probe_docker().detail)
    return None


def decide(
    options: Mapping[str, str | None], probe: Callable[[], DockerStatus] = probe_docker
) -> Decision:
    """auto: url if given, container if Docker answers and has (or can pull) the image,
    else embedded. The reason says which condition decided."""
    cheap = decide_cheaply(options)
    if cheap is not None:
        return cheap
    _, _, image = _choice(options)
    status = probe()
    chance = container_chance(status, image)
    if chance.image_state is None:
        return Decision("embedded", chance.detail)
    return Decision("container", f"{status.detail}; {chance.detail}")


# --- HTTP to the server, from the test side ------------------------------------------------


def http_json(
    url: str,
    method: str = "GET",
    path: str = "/",
    timeout: float = _URL_TIMEOUT,
    *,
    body: Any = None,
) -> tuple[int, Any]:
    """One request to an Elasticsearch URL (credentials in it are sent as basic auth)."""
    import http.client

    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 9200)
    conn: http.client.HTTPConnection
    if https:
        import ssl

        conn = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    headers = {"Accept": "application/json"}
    if parts.username is not None:
        token = f"{parts.username}:{parts.password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, parts.path.rstrip("/") + path, payload, headers=headers)
        response = conn.getresponse()
        answer = response.read()
    except http.client.HTTPException as exc:
        raise OSError(f"not an HTTP answer: {exc!r}") from exc
    finally:
        conn.close()
    try:
        return response.status, json.loads(answer) if answer else None
    except ValueError:
        return response.status, answer.decode("utf-8", "replace")


def wait_until_ready(
    url: str,
    timeout: float,
    *,
    say: Say,
    what: str,
    alive: Callable[[], str | None] = lambda: None,
    began: float | None = None,
) -> None:
    """Poll ``GET /`` until it answers 200, at most ``timeout`` seconds.

    ``alive`` returns why waiting is pointless (the container exited), or None;
    ``began`` (``time.monotonic()``) counts time already spent, e.g. starting a container.
    Says how long it has waited every 10 s, so a slow start does not look like a hang.
    """
    began = time.monotonic() if began is None else began  # the wait started then
    next_note = began + _PROGRESS_EVERY
    last = "no answer yet"
    while True:
        try:
            status, body = http_json(url, timeout=min(2.0, max(timeout, 0.1)))
            if status == 200:
                return
            last = f"GET / answered {status}: {str(body)[:200]}"
        except OSError as exc:
            last = f"GET / failed: {exc}"
        dead = alive()
        if dead is not None:
            raise BackendError(f"{what} stopped before it answered: {dead}. {CHOOSE_ANOTHER}")
        now = time.monotonic()
        if now - began >= timeout:
            raise BackendError(
                f"{what} did not answer at {url} within {timeout:g} s (last: {last}). "
                f"A real Elasticsearch needs memory and time to start; or {CHOOSE_ANOTHER}"
            )
        if now >= next_note:
            say(f"still waiting for {what} ({now - began:.0f} s of {timeout:g} s)")
            next_note = now + _PROGRESS_EVERY
        time.sleep(0.1)


# --- the backends ---------------------------------------------------------------------------


class Backend(Protocol):
    name: str
    host: str  # where the counting proxy connects to
    port: int
    direct_url: str

    def stop(self) -> None: ...


class EmbeddedBackend:
    """The in-process stand-in: one per process, hence one per xdist worker."""

    name = "embedded"

    def __init__(self) -> None:
        from pytest_lambda_context.services.elasticsearch.embedded import EmbeddedElasticsearch

        began = time.perf_counter()
        self.server = EmbeddedElasticsearch().start()
        self.start_ms = (time.perf_counter() - began) * 1000
        self.host, self.port, self.direct_url = self.server.host, self.server.port, self.server.url

    def stop(self) -> None:
        self.server.stop()


class UrlBackend:
    """An existing cluster. It must answer ``GET /`` before any test relies on it."""

    name = "url"

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BackendError(
                f"lambda_es_url {url!r} is not an http(s) URL such as http://localhost:9200"
            )
        self.direct_url = url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 9200)
        try:
            status, body = http_json(self.direct_url)
        except OSError as exc:
            raise BackendError(
                f"lambda_es_url {without_password(url)} is not reachable: {exc}. "
                f"Check that the cluster runs and the URL is right, or {CHOOSE_ANOTHER}"
            ) from None
        if status >= 500 or status == 404:
            raise BackendError(
                f"lambda_es_url {without_password(url)} answered GET / with {status}, not as "
                f"Elasticsearch does: {str(body)[:200]}. {CHOOSE_ANOTHER[0].upper()}"
                f"{CHOOSE_ANOTHER[1:]}"
            )

    def stop(self) -> None:
        pass  # not ours to stop


def _container_class() -> Any:
    """ElasticSearchContainer wherever this testcontainers keeps it."""
    try:
        # testcontainers >= 4.10 (and the old name warns: filterwarnings=error suites).
        return importlib.import_module(
            "testcontainers.community.elasticsearch"
        ).ElasticSearchContainer
    except ImportError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module("testcontainers.elasticsearch")  # 3.x to 4.9
    return module.ElasticSearchContainer


class ContainerBackend:
    """testcontainers' Elasticsearch, single-node and without security, for the session."""

    name = "container"
    # Extra arguments for the image's entrypoint (tests use it to make a server that
    # never answers); None keeps the image's own command.
    command: str | None = None

    def __init__(
        self, image: str, *, timeout: float | None = None, say: Say = lambda _: None
    ) -> None:
        timeout = CONTAINER_START_TIMEOUT if timeout is None else timeout
        status = probe_docker()
        if not status.answered or status.endpoint is None:
            raise BackendError(
                f"lambda_es = container, but {status.detail}. Start Docker (or set DOCKER_HOST), "
                f"or {CHOOSE_ANOTHER}"
            )
        with testcontainers_defaults():
            self._start(image, timeout, say, status)

    def _start(self, image: str, timeout: float, say: Say, status: DockerStatus) -> None:
        assert status.endpoint is not None
        try:
            container_class = _container_class()
        except ImportError:
            raise BackendError(
                "lambda_es = container needs testcontainers: "
                f'pip install "pytest-lambda-context[containers]"; or {CHOOSE_ANOTHER}'
            ) from None
        self.image = image
        state, how = image_state(status.endpoint, image)
        if state == "missing":
            raise BackendError(
                f"lambda_es = container, but {how}. Pull or build it, point lambda_es_image "
                f"at an image you have, or {CHOOSE_ANOTHER}"
            )
        say(f"starting Elasticsearch container {image} ({how}; waiting up to {timeout:g} s)")
        began = time.monotonic()
        # The engine we probed: docker.from_env reads DOCKER_HOST from this mapping (a
        # socket we found ourselves, rootless or Docker Desktop, is not the SDK's default).
        environment = {**os.environ, "DOCKER_HOST": status.endpoint.url}
        container = container_class(image, docker_client_kw={"environment": environment})
        publish(container, 9200, status.endpoint)
        container.with_env("discovery.type", "single-node")
        container.with_env("xpack.security.enabled", "false")
        # The JVM otherwise sizes its heap from the machine's memory; tests need little.
        container.with_env("ES_JAVA_OPTS", os.environ.get("ES_JAVA_OPTS", "-Xms512m -Xmx512m"))
        if self.command is not None:
            container.with_command(self.command)
        if hasattr(container, "_wait_strategy"):
            # Our own wait below is bounded, says what it waits for, and notices an exit.
            container._wait_strategy = None
        self.container = container
        self.running = RunningContainer(container)
        if state == "pullable":
            say(f"pulling {image}: the wait for it to answer starts once it is pulled")
        try:
            container.start()  # pulls the image first if needed
            self.running.guard(status.endpoint)
            if state == "pullable":
                began = time.monotonic()  # a pull's time is the network's, not the server's
        except Exception as exc:
            self.running.stop()
            raise BackendError(
                f"could not start a container from {image}: {exc}. {CHOOSE_ANOTHER[0].upper()}"
                f"{CHOOSE_ANOTHER[1:]}"
            ) from None
        try:
            self.host = container.get_container_host_ip()
            self.port = int(container.get_exposed_port(9200))
            self.direct_url = f"http://{self.host}:{self.port}"
            wait_until_ready(
                self.direct_url,
                timeout,
                say=say,
                began=began,
                what=f"the Elasticsearch container ({image})",
                alive=self.running.exited,
            )
        except BaseException:
            self.running.stop()
            raise
        self.start_s = time.monotonic() - began
        say(
            f"Elasticsearch container {image} answered at {self.direct_url} after {self.start_s:.1f} s"
        )

    def stop(self) -> None:
        self.running.stop()


def start_backend(
    decision: Decision, options: Mapping[str, str | None], *, say: Say = lambda _: None
) -> Backend:
    _, url, image = _choice(options)
    if decision.backend == "url":
        assert url is not None
        return UrlBackend(url)
    if decision.backend == "container":
        return ContainerBackend(image, say=say)
    return EmbeddedBackend()
