"""The max_connections marker, as users meet it: real handlers, the embedded server,
and the failure text that has to explain itself."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pytest_lambda_context.services.elasticsearch.embedded import EmbeddedElasticsearch

pytest_plugins = ["pytester"]

HANDLERS = {
    "app/__init__": "",
    # The recommended pattern: a client per environment.
    "app/memoized": """
        import functools, os
        from elasticsearch import Elasticsearch

        @functools.cache
        def get_client():
            return Elasticsearch(os.environ["ES_URL"])

        def handler(event, context):
            return get_client().info()["version"]["number"]
        """,
    # The anti-pattern: a client (and a connection) per invocation.
    "app/per_call": """
        import os
        from elasticsearch import Elasticsearch

        def handler(event, context):
            with Elasticsearch(os.environ["ES_URL"]) as client:
                return client.info()["version"]["number"]
        """,
    # Two clients in one invocation: one to es, one (raw) to a second server.
    "app/two": """
        import os, socket
        from elasticsearch import Elasticsearch

        def handler(event, context):
            with Elasticsearch(os.environ["ES_URL"]) as client:
                client.info()
            with socket.create_connection(("127.0.0.2", int(os.environ["OTHER_PORT"]))):
                pass
            return "ok"
        """,
    # Connects at init (module import).
    "app/eager": """
        import os
        from elasticsearch import Elasticsearch

        client = Elasticsearch(os.environ["ES_URL"])
        client.info()

        def handler(event, context):
            with Elasticsearch(os.environ["ES_URL"]) as again:
                again.info()
            return "ok"
        """,
}


@pytest.fixture
def handlers_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(**HANDLERS)
    pytester.makeini("[pytest]\nfilterwarnings = error\nlambda_es = embedded\n")
    return pytester


@pytest.fixture
def other_server() -> Iterator[int]:
    """A second "datastore" on 127.0.0.2 (all of 127/8 is loopback on Linux)."""
    with EmbeddedElasticsearch(host="127.0.0.2") as server:
        yield server.port


def _run(handlers_project: pytest.Pytester, source: str) -> pytest.RunResult:
    handlers_project.makepyfile(test_it=source)
    return handlers_project.runpytest("-p", "no:cacheprovider")


def test_memoized_client_passes_per_environment(handlers_project: pytest.Pytester) -> None:
    result = _run(
        handlers_project,
        """
        import pytest

        @pytest.mark.lambda_handler("app.memoized.handler", env={"ES_URL": "{es_url}"})
        @pytest.mark.max_connections(1)
        def test_it(lambda_function):
            for _ in range(50):
                lambda_function.invoke({})
            lambda_function.invoke_many([{}] * 6, concurrency=3)
        """,
    )
    result.assert_outcomes(passed=1)


def test_per_environment_failure_names_environment_invocations_and_line(
    handlers_project: pytest.Pytester,
) -> None:
    result = _run(
        handlers_project,
        """
        import pytest

        @pytest.mark.lambda_handler("app.per_call.handler", env={"ES_URL": "{es_url}"})
        @pytest.mark.max_connections(1)
        def test_it(lambda_function):
            for _ in range(3):
                lambda_function.invoke({})
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.max_connections(1) exceeded by function app-per_call "
            "(app.per_call.handler):",
            "  env-1 created 3 connections (limit 1):",
            "    - env-1 invocation 1 (*): 127.0.0.1:* opened at app/per_call.py:6 in handler",
            "    - env-1 invocation 2 (*): 127.0.0.1:* opened at app/per_call.py:6 in handler",
            "    - env-1 invocation 3 (*): 127.0.0.1:* opened at app/per_call.py:6 in handler",
            "  Hint: build the client once per execution environment *",
        ]
    )
    # The limit is the failure, not a traceback into the plugin.
    assert "pytest_lambda_context" not in result.stdout.str().split("short test summary")[0]


def test_the_same_handler_passes_per_invocation(handlers_project: pytest.Pytester) -> None:
    result = _run(
        handlers_project,
        """
        import pytest

        @pytest.mark.lambda_handler("app.per_call.handler", env={"ES_URL": "{es_url}"})
        @pytest.mark.max_connections(1, per="invocation")
        def test_it(lambda_function):
            for _ in range(3):
                lambda_function.invoke({})
            assert lambda_function.connections.per_environment() == {"env-1": 3}
        """,
    )
    result.assert_outcomes(passed=1)


def test_per_invocation_and_the_host_filter(
    handlers_project: pytest.Pytester, other_server: int
) -> None:
    result = _run(
        handlers_project,
        f"""
        import pytest

        pytestmark = pytest.mark.lambda_handler(
            "app.two.handler", env={{"ES_URL": "{{es_url}}", "OTHER_PORT": "{other_server}"}}
        )

        @pytest.mark.max_connections(1, per="invocation")
        def test_two_per_invocation_fails(lambda_function):
            lambda_function.invoke({{}})
            lambda_function.invoke({{}})

        @pytest.mark.max_connections(1, per="invocation", host="127.0.0.2")
        @pytest.mark.max_connections(1, per="invocation", port={other_server})
        def test_one_per_invocation_to_each_host_passes(lambda_function):
            lambda_function.invoke({{}})
            lambda_function.invoke({{}})

        @pytest.mark.max_connections(1, host="127.0.0.2")
        def test_the_filter_counts_only_its_host(lambda_function):
            lambda_function.invoke({{}})
            lambda_function.invoke({{}})
        """,
    )
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_two_per_invocation_fails _*",
            "@pytest.mark.max_connections(1, per='invocation') exceeded by function app-two *",
            "  env-1 invocation 1 (*) created 2 connections (limit 1):",
            "    - env-1 invocation 1 (*): 127.0.0.1:* opened at app/two.py:6 in handler",
            f"    - env-1 invocation 1 (*): 127.0.0.2:{other_server} opened at app/two.py:7 in handler",
            "  env-1 invocation 2 (*) created 2 connections (limit 1):",
            "  Hint: reuse one client, and its connection pool, for every call an invocation *",
            "*_ test_the_filter_counts_only_its_host _*",
            "@pytest.mark.max_connections(1, host='127.0.0.2') exceeded by function app-two *",
            "  env-1 created 2 connections to 127.0.0.2:* (limit 1):",
        ]
    )


def test_per_test_counts_every_environment(handlers_project: pytest.Pytester) -> None:
    result = _run(
        handlers_project,
        """
        import pytest

        pytestmark = pytest.mark.lambda_handler("app.memoized.handler", env={"ES_URL": "{es_url}"})

        @pytest.mark.max_connections(2, per="test")
        @pytest.mark.max_connections(1)
        def test_three_environments(lambda_function):
            lambda_function.invoke_many([{}] * 9, concurrency=3)

        @pytest.mark.max_connections(3, per="test")
        def test_within_the_limit(lambda_function):
            lambda_function.invoke_many([{}] * 9, concurrency=3)
        """,
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.max_connections(2, per='test') exceeded by function app-memoized *",
            "  the test created 3 connections (limit 2):",
            "    - env-1 invocation 1 (*): * opened at app/memoized.py:9 in handler",
            "    - env-2 invocation * opened at app/memoized.py:9 in handler",
            "    - env-3 invocation * opened at app/memoized.py:9 in handler",
        ]
    )


def test_init_connections_are_named_as_init(handlers_project: pytest.Pytester) -> None:
    result = _run(
        handlers_project,
        """
        import pytest

        @pytest.mark.lambda_handler("app.eager.handler", env={"ES_URL": "{es_url}"})
        @pytest.mark.max_connections(1)
        def test_it(lambda_function):
            lambda_function.invoke({})
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "  env-1 created 2 connections (limit 1):",
            "    - env-1 init: 127.0.0.1:* opened at app/eager.py:5 in <module>",
            "    - env-1 invocation 1 (*): 127.0.0.1:* opened at app/eager.py:9 in handler",
        ]
    )


def test_only_the_body_counts_and_a_failing_body_wins(handlers_project: pytest.Pytester) -> None:
    handlers_project.makeconftest(
        """
        import pytest

        @pytest.fixture
        def warmed(lambda_function):
            lambda_function.invoke({})  # before the body: not counted
            return lambda_function
        """
    )
    result = _run(
        handlers_project,
        """
        import pytest

        pytestmark = [
            pytest.mark.lambda_handler("app.per_call.handler", env={"ES_URL": "{es_url}"}),
            pytest.mark.max_connections(1),
        ]

        def test_setup_is_not_counted(warmed):
            warmed.invoke({})

        def test_a_failing_body_is_reported_as_itself(lambda_function):
            lambda_function.invoke({})
            lambda_function.invoke({})
            assert False, "the body's own failure"
        """,
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: the body's own failure*"])
    assert "exceeded by function" not in result.stdout.str()


def test_connections_of_the_test_itself_are_not_counted(handlers_project: pytest.Pytester) -> None:
    result = _run(
        handlers_project,
        """
        import pytest
        from elasticsearch import Elasticsearch

        @pytest.mark.lambda_handler("app.memoized.handler", env={"ES_URL": "{es_url}"})
        @pytest.mark.max_connections(1, per="test")
        def test_it(lambda_function, es):
            lambda_function.invoke({})
            for _ in range(3):
                with Elasticsearch(es.url) as mine:  # test code, outside any function
                    mine.info()
            assert lambda_function.connections.opened() == 1
            assert es.connections.opened == 4  # the proxy sees everyone
        """,
    )
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("max_connections('1')", "n must be a whole number >= 0, not '1'"),
        ("max_connections(1, per='call')", "per='call' is not valid; choose one of: environment,*"),
        ("max_connections(1, port='9200')", "port must be an integer, not '9200'"),
        (
            "max_connections(1, host='127.0.0.1:5432')",
            "host='127.0.0.1:5432' has a port; write host='127.0.0.1', port=5432",
        ),
        (
            "max_connections(1, host='http://127.0.0.1')",
            "host='http://127.0.0.1' is a URL; give the bare host, host='127.0.0.1'",
        ),
        (
            "max_connections(1, host='[::1]:5432')",
            "host='[[]::1]:5432' has a port; write host='::1', port=5432",
        ),
        ("max_connections(1, host='')", "host='' is empty; give a bare host name or IP address*"),
        ("max_connections(1, host='a\\x00b')", "host='a\\x00b' has a NUL byte or white space*"),
        ("max_connections(1, via='')", "via='' is not a service or proxy name*"),
        ("max_connections(1, per='warmest')", "per='warmest' is not valid; choose one of: *warm*"),
    ],
)
def test_bad_marker_arguments_name_the_right_form(
    handlers_project: pytest.Pytester, marker: str, message: str
) -> None:
    result = _run(handlers_project, f"import pytest\n@pytest.mark.{marker}\ndef test_it(): pass\n")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*@pytest.mark.max_connections: {message}. The form is @pytest.mark.max_connections(n*"]
    )


def test_ipv6_and_names_are_bare_hosts(handlers_project: pytest.Pytester) -> None:
    result = _run(
        handlers_project,
        "import pytest\n"
        "@pytest.mark.max_connections(1, host='::1')\n"
        "@pytest.mark.max_connections(1, host='DB.internal')\n"
        "def test_it(): pass\n",
    )
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("tcp_proxy('127.0.0.1', 9, latency='x')", "tcp_proxy(latency='x'): seconds added*"),
        ("tcp_proxy('127.0.0.1', 9, latency=float('inf'))", "tcp_proxy(latency=inf): seconds*"),
        ("tcp_proxy('127.0.0.1', 9, latency=-1)", "tcp_proxy(latency=-1): seconds added*"),
        ("tcp_proxy('127.0.0.1', 9, name='a\\x00b')", "tcp_proxy(name='a\\x00b'): a name is*"),
        ("tcp_proxy('127.0.0.1\\x00', 9)", "tcp_proxy(host='127.0.0.1\\x00'): a bare host*"),
        ("tcp_proxy('tcp://127.0.0.1', 9)", "tcp_proxy(host='tcp://127.0.0.1'): a bare host*"),
    ],
)
def test_bad_tcp_proxy_arguments_say_the_right_form(
    handlers_project: pytest.Pytester, call: str, message: str
) -> None:
    result = _run(handlers_project, f"def test_it(tcp_proxy):\n    {call}\n")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"E*ValueError: {message}"])


def test_free_port_helper_is_not_needed() -> None:
    # 127.0.0.2 must be usable on this machine for the host-filter test above.
    with socket.create_server(("127.0.0.2", 0)) as server:
        assert server.getsockname()[0] == "127.0.0.2"


def test_init_connections_do_not_count_per_invocation(handlers_project: pytest.Pytester) -> None:
    # app.eager connects in init code, then once more in its first invocation.
    result = _run(
        handlers_project,
        """
        import pytest

        pytestmark = pytest.mark.lambda_handler("app.eager.handler", env={"ES_URL": "{es_url}"})

        @pytest.mark.max_connections(1, per="invocation")
        def test_per_invocation(lambda_function):
            lambda_function.invoke({})

        @pytest.mark.max_connections(1, per="environment")
        def test_per_environment(lambda_function):
            lambda_function.invoke({})
        """,
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_per_environment*", "*  env-1 created 2 connections*"])
