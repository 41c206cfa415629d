"""Choosing and running Elasticsearch backends, against real servers and sockets.

The Docker engine is a fake one on a unix socket (tests/_fake_docker.py) unless the
test is marked ``docker``; those run against a real engine when one answers.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _fake_docker import FakeDockerEngine
from support import free_port

from pytest_lambda_context.runtime.clock import PluginClock
from pytest_lambda_context.services.docker_engine import probe_docker
from pytest_lambda_context.services.elasticsearch import backends
from pytest_lambda_context.services.elasticsearch.backends import (
    DEFAULT_IMAGE,
    BackendError,
    ContainerBackend,
    Decision,
    EmbeddedBackend,
    UrlBackend,
    decide,
    decide_cheaply,
    wait_until_ready,
)
from pytest_lambda_context.services.elasticsearch.embedded import EmbeddedElasticsearch
from pytest_lambda_context.services.elasticsearch.service import ElasticsearchService

AUTO = {"lambda_es": "auto", "lambda_es_url": None, "lambda_es_image": None}


@pytest.fixture
def with_testcontainers() -> None:
    # auto picks a container only where testcontainers could start one.
    pytest.importorskip("testcontainers", reason="the container backend needs testcontainers")


@pytest.fixture
def silent_listener() -> Iterator[tuple[str, int]]:
    """Accepts connections and never says a word (a wedged server)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()
    stop.set()
    thread.join(5)
    listener.close()
    for conn in accepted:
        conn.close()


@pytest.fixture
def standin() -> Iterator[EmbeddedElasticsearch]:
    with EmbeddedElasticsearch() as server:
        yield server


# --- deciding ----------------------------------------------------------------------------


@pytest.mark.parametrize("choice", ["embedded", "container"])
def test_an_explicit_choice_is_taken_as_given(choice: str) -> None:
    decision = decide_cheaply({**AUTO, "lambda_es": choice})
    assert decision == Decision(choice, f"lambda_es = {choice}")


def test_url_needs_an_address() -> None:
    with pytest.raises(BackendError, match=r"lambda_es = url needs the cluster's address: "):
        decide_cheaply({**AUTO, "lambda_es": "url"})


def test_auto_with_a_url_uses_it() -> None:
    decision = decide({**AUTO, "lambda_es_url": "http://es.internal:9200"})
    assert decision == Decision("url", "lambda_es_url is set")


def test_auto_without_a_docker_socket_decides_at_once(no_docker: None) -> None:
    began = time.perf_counter()
    decision = decide_cheaply(AUTO)
    assert time.perf_counter() - began < 0.05
    assert decision is not None
    assert decision.backend == "embedded"
    assert decision.reason.startswith("no Docker engine found: DOCKER_HOST is unset")


def test_auto_with_a_socket_needs_a_probe(engine: FakeDockerEngine) -> None:
    assert decide_cheaply(AUTO) is None
    assert engine.requests == []  # the cheap path never talks to Docker


def test_auto_picks_the_container_when_the_image_is_present(
    engine: FakeDockerEngine, with_testcontainers: None
) -> None:
    engine.images.add(DEFAULT_IMAGE)
    decision = decide(AUTO)
    assert decision.backend == "container"
    assert decision.reason.startswith(f"a Docker engine answered at {engine.url} in ")
    assert decision.reason.endswith(f"; image {DEFAULT_IMAGE} is present")


def test_auto_picks_the_container_when_the_image_can_be_pulled(
    engine: FakeDockerEngine, with_testcontainers: None
) -> None:
    engine.pullable.add("elasticsearch:8.15.5")
    decision = decide({**AUTO, "lambda_es_image": "elasticsearch:8.15.5"})
    assert decision.backend == "container"
    assert decision.reason.endswith("; image elasticsearch:8.15.5 can be pulled")
    assert engine.requests == [
        "/_ping",
        "/images/elasticsearch:8.15.5/json",
        "/distribution/elasticsearch:8.15.5/json",
    ]


def test_auto_falls_back_when_the_image_is_unobtainable(
    engine: FakeDockerEngine, with_testcontainers: None
) -> None:
    decision = decide(AUTO)
    assert decision.backend == "embedded"
    assert f"but image {DEFAULT_IMAGE} is not present and cannot be pulled" in decision.reason
    assert "manifest unknown" in decision.reason


def test_auto_falls_back_when_testcontainers_is_missing(
    engine: FakeDockerEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.images.add(DEFAULT_IMAGE)
    monkeypatch.setitem(sys.modules, "testcontainers", None)
    decision = decide(AUTO)
    assert decision.backend == "embedded"
    assert decision.reason.endswith(
        'but testcontainers is not installed (pip install "pytest-lambda-context[containers]")'
    )


def test_a_hung_engine_costs_at_most_a_second(
    monkeypatch: pytest.MonkeyPatch, short_dir: Path
) -> None:
    with FakeDockerEngine(str(short_dir / "d.sock"), hang=True) as fake:
        monkeypatch.setenv("DOCKER_HOST", fake.url)
        began = time.monotonic()
        decision = decide(AUTO)
        took = time.monotonic() - began
    assert 0.9 < took < 1.5
    assert decision.backend == "embedded"
    assert decision.reason.startswith(f"no Docker engine answered within 1 s at {fake.url}")
    assert "(DOCKER_HOST)" in decision.reason


def test_a_docker_host_nobody_listens_on(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{port}")
    status = probe_docker()
    assert not status.answered
    assert f"at tcp://127.0.0.1:{port} (DOCKER_HOST)" in status.detail
    assert "refused" in status.detail.lower()


# --- url -----------------------------------------------------------------------------------


def test_url_backend_checks_that_the_cluster_answers(standin: EmbeddedElasticsearch) -> None:
    backend = UrlBackend(standin.url + "/")
    assert (backend.host, backend.port, backend.direct_url) == (
        "127.0.0.1",
        standin.port,
        standin.url,
    )


def test_an_unreachable_url_says_so_and_how_to_choose_another_backend() -> None:
    url = f"http://elastic:s3cret@127.0.0.1:{free_port()}"
    with pytest.raises(BackendError) as error:
        UrlBackend(url)
    message = str(error.value)
    assert message.startswith(f"lambda_es_url http://elastic:***@127.0.0.1:{url.rsplit(':', 1)[1]}")
    assert "is not reachable: " in message
    assert "s3cret" not in message
    assert "--lambda-es=embedded" in message


def test_a_url_that_is_not_http() -> None:
    with pytest.raises(
        BackendError, match=r"is not an http\(s\) URL such as http://localhost:9200"
    ):
        UrlBackend("localhost:9200")


def test_url_backend_deletes_only_its_own_indices(standin: EmbeddedElasticsearch) -> None:
    service = ElasticsearchService(UrlBackend(standin.url), Decision("url", "test"))
    client = service.client()
    client.indices.create(index="someone-elses")
    mine = service.index_name("docs")
    assert mine == service.index_prefix + "docs"
    assert service.index_prefix.startswith("plc-")
    assert service.index_name(mine) == mine  # already prefixed: unchanged
    client.index(index=mine, id="1", document={"a": 1})
    service.close()

    assert standin._store.index_names() == ["someone-elses"]
    assert service.cleanup_errors == []


# --- embedded, the service and its proxy ----------------------------------------------------------


def test_embedded_backend_starts_in_milliseconds() -> None:
    backend = EmbeddedBackend()
    try:
        assert backend.start_ms < 50
        assert backend.direct_url == f"http://127.0.0.1:{backend.port}"
    finally:
        backend.stop()


def test_the_service_counts_what_passes_its_proxy() -> None:
    clock = PluginClock()
    service = ElasticsearchService(EmbeddedBackend(), Decision("embedded", "test"), clock=clock)
    try:
        assert service.backend == "embedded"
        assert service.version == "8.15.0"
        assert service.url != service.direct_url
        assert service.proxy.idle_timeout == 350.0

        test_side = service.client()
        test_side.info()
        assert service.connections.opened == 0  # direct_url: not through the proxy

        from elasticsearch import Elasticsearch

        with Elasticsearch(service.url) as through:
            through.info()
            through.info()
            assert (service.connections.opened, service.connections.open_now) == (1, 1)

            clock.advance(349)
            assert service.proxy.expired == 0
            clock.advance(2)  # past the NAT gateway's 350 s: the flow is reset
            assert service.proxy.expired == 1
            through.info()  # the client notices and reconnects
            assert service.connections.opened == 2

            assert service.drop_connections() == 1
            with service.outage(), socket.socket() as probe:
                assert probe.connect_ex((service.proxy.host, service.proxy.port)) != 0
            through.info()
            assert service.connections.opened == 3

        service.reset_counts()
        assert service.connections.opened == 0
    finally:
        service.close()
    clock.advance(1000)  # unsubscribed: a closed proxy is not asked to expire anything


def test_the_url_keeps_credentials_and_path(standin: EmbeddedElasticsearch) -> None:
    backend = UrlBackend(f"http://u:p@127.0.0.1:{standin.port}/")
    service = ElasticsearchService(backend, Decision("url", "test"))
    try:
        assert service.url == f"http://u:p@127.0.0.1:{service.proxy.port}"
    finally:
        service.close()


# --- container ---------------------------------------------------------------------------------


def test_container_without_an_engine_fails_fast(no_docker: None) -> None:
    began = time.monotonic()
    with pytest.raises(BackendError) as error:
        ContainerBackend(DEFAULT_IMAGE)
    assert time.monotonic() - began < 0.5
    message = str(error.value)
    assert message.startswith("lambda_es = container, but no Docker engine found")
    assert (
        "Start Docker (or set DOCKER_HOST), or choose another backend with --lambda-es=embedded"
        in message
    )


def test_container_with_an_unobtainable_image(
    engine: FakeDockerEngine, with_testcontainers: None
) -> None:
    with pytest.raises(BackendError) as error:
        ContainerBackend("nowhere/elasticsearch:0.0.1")
    message = str(error.value)
    assert message.startswith(
        "lambda_es = container, but image nowhere/elasticsearch:0.0.1 is not present and cannot "
        "be pulled (manifest unknown"
    )
    assert "point lambda_es_image at an image you have" in message


def test_waiting_is_bounded_and_says_what_it_waited_for(silent_listener: tuple[str, int]) -> None:
    host, port = silent_listener
    said: list[str] = []
    began = time.monotonic()
    with pytest.raises(BackendError) as error:
        wait_until_ready(f"http://{host}:{port}", 0.5, say=said.append, what="the test server")
    assert time.monotonic() - began < 3
    assert str(error.value).startswith(
        f"the test server did not answer at http://{host}:{port} within 0.5 s (last: GET / failed:"
    )


def test_waiting_stops_when_the_server_is_gone() -> None:
    with pytest.raises(BackendError, match=r"^the container stopped before it answered: it exited"):
        wait_until_ready(
            f"http://127.0.0.1:{free_port()}",
            60,
            say=lambda _: None,
            what="the container",
            alive=lambda: "it exited",
        )


def test_waiting_reports_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "_PROGRESS_EVERY", 0.2)
    said: list[str] = []
    with pytest.raises(BackendError):
        wait_until_ready(f"http://127.0.0.1:{free_port()}", 0.7, say=said.append, what="it")
    assert said and said[0].startswith("still waiting for it (0 s of 0.7 s)")
