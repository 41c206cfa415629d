"""SnapStart and Managed Instances as users meet them: a pytest session, the real
Elasticsearch client, connections through the es fixture's counting proxy."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("elasticsearch")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

HANDLERS = {
    "app/__init__": "",
    # Connected at init: under SnapStart the connection is the snapshot's.
    "app/eager": """
        import os
        from elasticsearch import Elasticsearch

        client = Elasticsearch(os.environ["ES_URL"], max_retries=int(os.environ["RETRIES"]))
        client.info()

        def handler(event, context):
            client.info()
            return "ok"
        """,
    # The fix AWS recommends: a new client after each restore.
    "app/rehooked": """
        import os
        from elasticsearch import Elasticsearch
        from snapshot_restore_py import register_after_restore

        client = Elasticsearch(os.environ["ES_URL"], max_retries=0)
        client.info()

        @register_after_restore
        def reconnect():
            global client
            client.close()
            client = Elasticsearch(os.environ["ES_URL"], max_retries=0)
            client.info()

        def handler(event, context):
            client.info()
            return "ok"
        """,
    "app/memoized": """
        import functools, os, time
        from elasticsearch import Elasticsearch

        @functools.cache
        def get_client():
            return Elasticsearch(os.environ["ES_URL"])

        def handler(event, context):
            time.sleep(event.get("sleep", 0))
            get_client().info()
            return "ok"
        """,
}

CONFTEST = """
import pytest

@pytest.fixture
def fn(make_lambda_function, es):
    def make(handler, **config):
        env = {"ES_URL": "{es_url}", **config.pop("env", {})}
        return make_lambda_function(handler, env=env, **config)
    return make
"""


@pytest.fixture
def session(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(**HANDLERS)
    pytester.makeconftest(CONFTEST)
    pytester.makeini(
        "[pytest]\nfilterwarnings = error\nlambda_es = embedded\nlambda_isolation = process\n"
    )
    return pytester


def _run(session: pytest.Pytester, source: str) -> pytest.RunResult:
    session.makepyfile(test_it=source)
    return session.runpytest("-p", "no:cacheprovider")


def test_an_eager_client_meets_a_reset_after_restore(session: pytest.Pytester) -> None:
    result = _run(
        session,
        """
        import pytest
        from pytest_lambda_context import HandlerError

        def test_without_retries_the_first_request_fails(fn, es):
            function = fn("app.eager.handler", snap_start=True, env={"RETRIES": "0"})
            function.publish()
            assert es.connections.opened == 1  # the snapshot's, made at publish
            with pytest.raises(HandlerError) as raised:
                function.invoke({})
            assert raised.value.error_type == "ConnectionError"
            # The client reconnects on the next request.
            assert function.invoke({}) == "ok"
            assert function.connections.per_environment() == {"snapshot": 1, "env-1": 1}

        def test_with_retries_every_restore_pays_a_reset_and_a_reconnect(fn, es):
            function = fn("app.eager.handler", snap_start=True, env={"RETRIES": "3"})
            assert function.invoke_many([{}] * 3, concurrency=3) == ["ok"] * 3
            assert [i.connections_opened for i in function.invocations] == [1, 1, 1]
            assert es.connections.opened == 4  # the snapshot's, then one per restore
        """,
    )
    result.assert_outcomes(passed=2)


def test_an_after_restore_hook_reconnects_before_the_first_request(
    session: pytest.Pytester,
) -> None:
    result = _run(
        session,
        """
        import pytest

        @pytest.mark.max_connections(1)
        def test_it(fn, es):
            function = fn("app.rehooked.handler", snap_start=True)
            assert function.invoke_many([{}] * 4, concurrency=2) == ["ok"] * 4
            # Connected in the restore phase (request None), never on the request path.
            assert [i.connections_opened for i in function.invocations] == [0, 0, 0, 0]
            for environment in function.environments:
                assert [e.request_id for e in environment.connections] == [None]
            assert function.connections.per_environment() == {
                "snapshot": 1, "env-1": 1, "env-2": 1
            }
        """,
    )
    result.assert_outcomes(passed=1)


def test_a_memoized_client_is_one_connection_per_runtime_process(
    session: pytest.Pytester,
) -> None:
    result = _run(
        session,
        """
        import pytest

        @pytest.mark.max_connections(4)
        def test_four_processes_four_connections(fn, es):
            function = fn("app.memoized.handler", per_environment_concurrency=4)
            results = function.invoke_many([{"sleep": 0.2}] * 16, concurrency=8)
            assert results == ["ok"] * 16
            assert len(function.environments) == 2  # ceil(8 / 4)
            assert function.connections.per_environment() == {"env-1": 4, "env-2": 4}

        @pytest.mark.max_connections(1)
        def test_one_per_environment_is_not_the_budget(fn):
            function = fn("app.memoized.handler", per_environment_concurrency=2)
            function.invoke_many([{"sleep": 0.2}] * 2, concurrency=2)
        """,
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*env-1 created 2 connections (limit 1)*"])
