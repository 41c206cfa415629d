"""The es, es_url and tcp_proxy fixtures, the docker marker and the lambda_es options,
as users run them (pytester, real handler files, real servers)."""

from __future__ import annotations

import json
import sys
import time
import types

import pytest
from _fake_docker import FakeDockerEngine
from support import free_port

from pytest_lambda_context import LambdaFunction
from pytest_lambda_context.services import docker_engine
from pytest_lambda_context.services.elasticsearch import backends
from pytest_lambda_context.services.elasticsearch.embedded import EmbeddedElasticsearch

pytest_plugins = ["pytester"]

SEARCH = """
import functools, os
from elasticsearch import Elasticsearch

INDEX = os.environ.get("ES_INDEX", "docs")

@functools.cache
def get_es_client():
    client = Elasticsearch(os.environ["ES_URL"])
    client.ping()
    return client

def handler(event, context):
    client = get_es_client()
    if "put" in event:
        client.index(index=INDEX, id=event["put"], document={"n": event["put"]}, refresh=True)
    return client.count(index=INDEX)["count"]
"""

STANDIN_IMAGE = "pytest-lambda-context/es-standin:local"


@pytest.fixture
def search_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(**{"app/__init__": "", "app/search": SEARCH})
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    return pytester


USES_ES = """
import pytest

pytestmark = pytest.mark.lambda_handler("app.search.handler", env={"ES_URL": "{es_url}"})

def test_search(lambda_function, es):
    assert lambda_function.invoke({"put": "1"}) == 1
    assert es.connections.opened == 1

def test_without_es():
    pass
"""


# --- which backend, and why ------------------------------------------------------------


def test_header_without_docker_says_embedded_and_why(
    search_project: pytest.Pytester, no_docker: None
) -> None:
    search_project.makepyfile(test_it=USES_ES)
    result = search_project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["lambda-context: *, es: embedded (no Docker engine found: DOCKER_HOST is unset and *)"]
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--lambda-es=embedded"], "*es: embedded (lambda_es = embedded)"),
        (["--lambda-es-url=http://es.example:9200"], "*es: url (lambda_es_url is set)"),
        (["--lambda-es=container"], "*es: container (lambda_es = container)"),
        (["--lambda-es=url"], "*es: misconfigured (lambda_es = url needs the cluster's address: *"),
    ],
)
def test_header_for_each_choice(
    search_project: pytest.Pytester, args: list[str], line: str
) -> None:
    # The header is printed where a test uses the plugin (here without starting es).
    search_project.makepyfile(test_it="def test_nothing(lambda_context): pass")
    result = search_project.runpytest("-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([line])


def test_header_defers_the_docker_probe_to_first_use(
    search_project: pytest.Pytester, engine: FakeDockerEngine
) -> None:
    pytest.importorskip("testcontainers", reason="the container backend needs testcontainers")
    search_project.makepyfile(test_it=USES_ES)
    result = search_project.runpytest("-p", "no:cacheprovider", "-k", "without_es")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(
        [f"*es: auto, decided at first use (a Docker engine may answer at {engine.url})"]
    )
    assert engine.requests == []  # a session that does not use es never asks Docker

    result = search_project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            f"lambda-context: es: embedded (a Docker engine answered at {engine.url} in * ms, "
            f"but image {backends.DEFAULT_IMAGE} is not present and cannot be pulled*"
        ]
    )


def test_an_unknown_backend_is_a_usage_error(search_project: pytest.Pytester) -> None:
    search_project.makepyfile(test_it="def test_nothing(): pass")
    result = search_project.runpytest("-p", "no:cacheprovider", "--lambda-es=docker")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*--lambda-es / ini lambda_es: 'docker' is not valid; "
            "choose one of: auto, container, embedded, url"
        ]
    )

    search_project.makeini("[pytest]\nlambda_es = elastic\n")
    result = search_project.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'elastic' is not valid; choose one of: auto, container, *"])


# --- bad input ---------------------------------------------------------------------------


def test_an_unreachable_url_fails_the_tests_that_use_es_fast(
    search_project: pytest.Pytester,
) -> None:
    search_project.makepyfile(test_it=USES_ES, test_more=USES_ES)
    url = f"http://127.0.0.1:{free_port()}"
    began = time.monotonic()
    result = search_project.runpytest("-p", "no:cacheprovider", f"--lambda-es-url={url}")
    assert time.monotonic() - began < 10
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(
        [
            f"es fixture: lambda_es_url {url} is not reachable: *. Check that the "
            "cluster runs and the URL is right, or choose another backend with "
            "--lambda-es=embedded *"
        ]
    )


def test_container_without_docker_fails_fast_and_says_what_to_do(
    search_project: pytest.Pytester, no_docker: None
) -> None:
    search_project.makepyfile(test_it=USES_ES)
    began = time.monotonic()
    result = search_project.runpytest("-p", "no:cacheprovider", "--lambda-es=container")
    assert time.monotonic() - began < 5
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "es fixture: lambda_es = container, but no Docker engine found: *. "
            "Start Docker (or set DOCKER_HOST), or choose another backend with --lambda-es=embedded*"
        ]
    )


def test_without_the_elasticsearch_client_the_fixture_names_the_extra(
    search_project: pytest.Pytester,
) -> None:
    # In the run's conftest, as a user's environment without the package would be.
    search_project.makeconftest(
        """
        import sys
        sys.modules["elasticsearch"] = None
        """
    )
    search_project.makepyfile(test_it=USES_ES)
    result = search_project.runpytest_subprocess("-p", "no:cacheprovider", "--lambda-es=embedded")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "the es fixture needs the elasticsearch client: "
            'pip install "pytest-lambda-context[elasticsearch]"'
        ]
    )


def test_es_url_outside_the_plugin_says_what_is_missing(search_project: pytest.Pytester) -> None:
    # Said when the function is made, not at its first invocation.
    with pytest.raises(
        ValueError, match=r"uses \{es_url\}, an unknown placeholder.* a service fixture named 'es'"
    ):
        LambdaFunction(
            "app.search.handler", env={"ES_URL": "{es_url}"}, code_root=str(search_project.path)
        )


# --- the fixtures -------------------------------------------------------------------------


def test_es_url_pulls_in_es_counts_restart_per_test_and_the_service_is_shared(
    search_project: pytest.Pytester,
) -> None:
    search_project.makepyfile(
        test_it="""
        import pytest

        seen = []

        # No es in the signature: {es_url} is enough to bring it in.
        @pytest.mark.lambda_handler("app.search.handler", env={"ES_URL": "{es_url}"})
        def test_marker_only(lambda_function, request):
            assert lambda_function.invoke({"put": "a"}) == 1
            es = request.getfixturevalue("es")
            assert es.connections.opened == 1
            seen.append(es)

        def test_factory(make_lambda_function, es, es_url):
            assert es_url == es.url
            assert es.connections.opened == 0  # counted per test
            f = make_lambda_function(
                "app.search.handler",
                env={"ES_URL": "{es_url}", "ES_INDEX": "{es_index_prefix}other"},
            )
            assert f.invoke({"put": "b"}) == 1
            assert f.invoke({}) == 1
            assert f.resolved_env()["ES_INDEX"] == es.index_prefix + "other"
            assert es.connections.opened == 1
            assert es.client().count(index=es.index_name("other"))["count"] == 1
            assert es.connections.opened == 1  # the test-side client is not counted
            assert es is seen[0]
        """
    )
    result = search_project.runpytest("-p", "no:cacheprovider", "--lambda-es=embedded")
    result.assert_outcomes(passed=2)


def test_tcp_proxy_for_any_datastore(search_project: pytest.Pytester) -> None:
    search_project.makepyfile(
        test_it="""
        import socket
        import pytest

        made = []

        def test_proxy(make_lambda_function, es, tcp_proxy):
            host, port = es.direct_url.rsplit("/", 1)[1].split(":")
            default = tcp_proxy(host, int(port))
            short = tcp_proxy(host, int(port), idle_timeout=30)
            made.extend([default, short])
            assert default.idle_timeout == 350.0
            one = make_lambda_function("app.search.handler", env={"ES_URL": default.url()})
            two = make_lambda_function(
                "app.search.handler", env={"ES_URL": short.url()}, function_name="two"
            )
            one.invoke({"put": "x"})
            two.invoke({})
            assert (default.opened, short.opened) == (1, 1)
            assert es.connections.opened == 0  # not through es.url

            one.idle(seconds=31)  # the plugin's clock: both proxies see it
            assert (default.expired, short.expired) == (0, 1)
            assert two.invoke({}) == 1
            assert short.opened == 2

        def test_proxies_are_closed_after_the_test():
            for proxy in made:
                with socket.socket() as sock:
                    assert sock.connect_ex(proxy.address) != 0
        """
    )
    result = search_project.runpytest("-p", "no:cacheprovider", "--lambda-es=embedded")
    result.assert_outcomes(passed=2)


def test_url_backend_end_to_end_keeps_other_indices(search_project: pytest.Pytester) -> None:
    with EmbeddedElasticsearch() as cluster:
        client_url = cluster.url
        search_project.makepyfile(
            test_it=f"""
            import pytest

            @pytest.mark.lambda_handler(
                "app.search.handler",
                env={{"ES_URL": "{{es_url}}", "ES_INDEX": "{{es_index_prefix}}docs"}},
            )
            def test_it(lambda_function, es):
                assert (es.backend, es.direct_url) == ("url", "{client_url}")
                assert es.reason == "lambda_es_url is set"
                assert lambda_function.invoke({{"put": "1"}}) == 1
                assert es.connections.opened == 1
                es.client().indices.create(index=es.index_name("made-by-test"))
            """
        )
        from elasticsearch import Elasticsearch

        with Elasticsearch(client_url) as admin:
            admin.indices.create(index="production")
            result = search_project.runpytest(
                "-p", "no:cacheprovider", f"--lambda-es-url={client_url}"
            )
            result.assert_outcomes(passed=1)
            result.stdout.fnmatch_lines(["*es: url (lambda_es_url is set)"])
            assert cluster._store.index_names() == ["production"]


def test_one_embedded_server_per_xdist_worker(search_project: pytest.Pytester) -> None:
    seen_dir = search_project.mkdir("seen")
    search_project.makepyfile(
        test_it=f"""
        import os
        import pytest

        @pytest.mark.parametrize("n", range(6))
        @pytest.mark.lambda_handler("app.search.handler", env={{"ES_URL": "{{es_url}}"}})
        @pytest.mark.max_connections(1)
        def test_it(lambda_function, es, n):
            lambda_function.invoke({{"put": "1"}})
            lambda_function.invoke({{}})
            assert es.connections.opened == 1
            with open(os.path.join({str(seen_dir)!r}, str(n)), "w") as out:
                out.write(os.environ["PYTEST_XDIST_WORKER"] + " " + es.direct_url)
        """
    )
    result = search_project.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--lambda-es=embedded"
    )
    result.assert_outcomes(passed=6)
    seen = {tuple(path.read_text().split()) for path in seen_dir.iterdir()}
    workers = {worker for worker, _ in seen}
    urls = {url for _, url in seen}
    assert len(workers) == len(urls) == 2, seen  # one server per worker, shared by its tests


# --- the docker marker ----------------------------------------------------------------------------

# The marker skips tests that use one of the plugin's services (which may run a
# container); a project's own docker-marked tests are left to the project.
DOCKER_TESTS = """
import pytest

@pytest.mark.docker
def test_one(es):
    pass

@pytest.mark.docker
def test_two(es_url):
    pass

@pytest.mark.docker
def test_own():
    pass
"""


def test_docker_marked_tests_skip_with_a_reason(
    search_project: pytest.Pytester, no_docker: None
) -> None:
    search_project.makepyfile(test_it=DOCKER_TESTS)
    result = search_project.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=2, passed=1)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED [[]1] test_it.py:*: needs a Docker engine; "
            "no Docker engine found: DOCKER_HOST is unset *"
        ]
        * 2
    )


def test_docker_marked_tests_run_when_an_engine_answers_probed_once(
    search_project: pytest.Pytester, engine: FakeDockerEngine
) -> None:
    search_project.makepyfile(test_it=DOCKER_TESTS)
    result = search_project.runpytest("-p", "no:cacheprovider", "--lambda-es=embedded")
    result.assert_outcomes(passed=3)
    assert engine.requests == ["/_ping"]


# --- the container backend, for real --------------------------------------------------------------


def _standin_image_present() -> str | None:
    status = docker_engine.probe_docker()
    if not status.answered or status.endpoint is None:
        return status.detail
    state, how = docker_engine.image_state(status.endpoint, STANDIN_IMAGE)
    if state != "present":
        return f"{how}: build it with .ci/es-image/build.sh"
    return None


@pytest.fixture
def standin_image() -> str:
    missing = _standin_image_present()
    if missing is not None:
        pytest.skip(missing)
    return STANDIN_IMAGE


def _containers_of(image: str) -> list[str]:
    status = docker_engine.probe_docker()
    assert status.endpoint is not None
    filters = json.dumps({"ancestor": [image]})
    from urllib.parse import quote

    code, body = docker_engine._docker_api(
        status.endpoint, "GET", f"/containers/json?all=1&filters={quote(filters)}", 5
    )
    assert code == 200
    return [c["Id"] for c in json.loads(body)]


@pytest.mark.docker
def test_container_backend_runs_for_real(
    search_project: pytest.Pytester, standin_image: str
) -> None:
    before = _containers_of(standin_image)
    search_project.makepyfile(
        test_it="""
        import pytest

        pytestmark = pytest.mark.lambda_handler("app.search.handler", env={"ES_URL": "{es_url}"})

        @pytest.mark.max_connections(1)
        def test_counts_through_the_container(lambda_function, es):
            assert es.backend == "container"
            assert es.version.startswith("8.")
            for n in range(20):
                lambda_function.invoke({"put": str(n)})
            assert es.connections.opened == 1
            assert es.client().count(index="docs")["count"] == 20

        def test_outage(lambda_function, es):
            lambda_function.invoke({})
            with es.outage():
                pass
            assert lambda_function.invoke({}) == 20
        """
    )
    # A subprocess: the docker SDK (requests) does not survive pytester's in-process
    # module snapshots (its CookieJar class is imported twice).
    result = search_project.runpytest_subprocess(
        "-p", "no:cacheprovider", "--lambda-es=container", f"--lambda-es-image={standin_image}"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*es: container (lambda_es = container)",
            f"lambda-context: starting Elasticsearch container {standin_image} "
            "(image * is present; waiting up to 120 s)",
            f"lambda-context: Elasticsearch container {standin_image} answered at "
            "http://*:* after * s",
        ]
    )
    assert _containers_of(standin_image) == before  # stopped and removed at session end


@pytest.mark.docker
@pytest.mark.parametrize(
    ("command", "message"),
    [
        # Serves, but not on 9200: never ready; the short timeout stands in for 120 s.
        (
            "--port 9300",
            "es fixture: the Elasticsearch container (*) did not answer at http://*:* "
            "within 3 s (last: *). A real Elasticsearch needs memory and time to start; "
            "or choose another backend*",
        ),
        # A bad argument: the server exits at once, and the wait says so with its logs.
        (
            "--no-such-option",
            "es fixture: the Elasticsearch container (*) stopped before it answered: it exited;*",
        ),
    ],
)
def test_a_container_that_does_not_become_ready(
    search_project: pytest.Pytester, standin_image: str, command: str, message: str
) -> None:
    before = _containers_of(standin_image)
    search_project.makeconftest(
        f"""
        from pytest_lambda_context.services.elasticsearch import backends
        backends.CONTAINER_START_TIMEOUT = 3
        backends.ContainerBackend.command = {command!r}
        """
    )
    search_project.makepyfile(test_it=USES_ES)
    result = search_project.runpytest_subprocess(
        "-p", "no:cacheprovider", "--lambda-es=container", f"--lambda-es-image={standin_image}"
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([message])
    assert _containers_of(standin_image) == before  # removed, not left behind


def test_the_container_class_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("testcontainers")
    current = backends._container_class()
    assert current.__module__ == "testcontainers.community.elasticsearch"

    # An older layout: only testcontainers.elasticsearch, whose import may warn.
    class Older:
        pass

    older = types.ModuleType("testcontainers.elasticsearch")
    older.ElasticSearchContainer = Older  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "testcontainers.community.elasticsearch", None)
    monkeypatch.setitem(sys.modules, "testcontainers.elasticsearch", older)
    assert backends._container_class() is Older
