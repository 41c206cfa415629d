"""Connections that C code opens (libpq under psycopg 3 and psycopg2) are counted when
they reach a tcp_proxy: one per environment over many invocations, a failure when a
handler opens one per invocation, in both isolations and with parallel environments.
Against a real PostgreSQL (examples/servers.py)."""

from __future__ import annotations

import textwrap
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.slow  # real PostgreSQL, the same on every Python and pytest

pytest.importorskip("psycopg")
pytest.importorskip("psycopg2")

HANDLERS = {
    "app/__init__.py": "",
    "app/pg3_memo.py": """
        import functools, os
        import psycopg

        @functools.cache
        def connection():
            return psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)

        def handler(event, context):
            return connection().execute("select 1").fetchone()[0]
        """,
    "app/pg3_per_call.py": """
        import os
        import psycopg

        def handler(event, context):
            with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
                return conn.execute("select 1").fetchone()[0]
        """,
    "app/pg2_memo.py": """
        import os
        import psycopg2

        conn = psycopg2.connect(os.environ["DATABASE_URL"])
        conn.autocommit = True

        def handler(event, context):
            with conn.cursor() as cursor:
                cursor.execute("select 1")
                return cursor.fetchone()[0]
        """,
    "app/pg2_per_call.py": """
        import os
        import psycopg2

        def handler(event, context):
            conn = psycopg2.connect(os.environ["DATABASE_URL"])
            try:
                with conn.cursor() as cursor:
                    cursor.execute("select 1")
                    return cursor.fetchone()[0]
            finally:
                conn.close()
        """,
}

CONFTEST = """
import textwrap

import pytest

POSTGRES = {address!r}

@pytest.fixture
def pg(tcp_proxy):
    return tcp_proxy(*POSTGRES, name="pg")

@pytest.fixture
def database(make_lambda_function, pg):
    def make(module):
        return make_lambda_function(
            f"app.{{module}}.handler",
            env={{"DATABASE_URL": "postgresql://postgres@{{proxy:pg}}/postgres"}},
        )
    return make
"""

TESTS = """
import textwrap

import pytest

@pytest.mark.parametrize("module", ["pg3_memo", "pg2_memo"])
@pytest.mark.max_connections(1)
def test_one_connection_per_environment(database, pg, module):
    function = database(module)
    for _ in range(25):
        assert function.invoke({}) == 1
    function.invoke_many([{}] * 12, concurrency=3)
    assert function.connections.per_environment() == {"env-1": 1, "env-2": 1, "env-3": 1}
    assert pg.connections.opened == 3
    events = function.connections.events
    assert {(e.seen_by, e.via, e.port) for e in events} == {("proxy", "pg", pg.port)}
    # Opened by init (psycopg2, at import) or by the first invocation (psycopg 3).
    assert [i.connections_opened for i in function.invocations[1:25]] == [0] * 24
    if module == "pg2_memo":  # connected at import: the init phase's, not invocation 1's
        assert [e.request_id for e in events] == [None] * 3
    # The line of function code behind each, parallel environments included.
    expected = {
        "pg3_memo": "app/pg3_memo.py:7 in connection",
        "pg2_memo": "app/pg2_memo.py:5 in <module>",
    }[module]
    assert [e.frame for e in events] == [expected] * 3

@pytest.mark.parametrize("module", ["pg3_per_call", "pg2_per_call"])
@pytest.mark.max_connections(1)
def test_a_connection_per_invocation_fails(database, pg, module):
    function = database(module)
    for _ in range(4):
        assert function.invoke({}) == 1
    function.invoke_many([{}] * 4, concurrency=2)
    assert function.connections.per_environment() == {"env-1": 6, "env-2": 2}
    assert [i.connections_opened for i in function.invocations] == [1] * 8
"""


@pytest.fixture
def postgres_address(postgres_url: str) -> tuple[str, int]:
    parts = urlsplit(postgres_url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_libpq_connections_through_a_proxy_count(
    pytester: pytest.Pytester, postgres_address: tuple[str, int], isolation: str
) -> None:
    for name, text in HANDLERS.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    pytester.makeconftest(CONFTEST.format(address=postgres_address))
    pytester.makepyfile(test_pg=TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--lambda-isolation={isolation}", "-W", "error"
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 2 and outcomes.get("failed") == 2, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.max_connections(1) exceeded by function app-pg3_per_call*",
            "*env-1 created 6 connections (limit 1):*",
            "*- env-1 invocation 1 (*): 127.0.0.1:* through proxy 'pg' *",
        ]
    )
    # The line of code waiting on libpq's connect: read from the thread's stack in
    # module isolation, from the worker's stack (asked by the proxy) in process isolation.
    result.stdout.fnmatch_lines(["*through proxy 'pg' opened at app/pg3_per_call.py:6 in handler"])
    result.stdout.fnmatch_lines(["*through proxy 'pg' opened at app/pg2_per_call.py:6 in handler"])
    assert "its line of code is unknown" not in result.stdout.str()


UNPROXIED = """
import pytest

@pytest.mark.max_connections(1)
def test_direct(make_lambda_function):
    function = make_lambda_function(
        "app.pg3_per_call.handler", env={{"DATABASE_URL": {url!r}}}
    )
    for _ in range(3):
        assert function.invoke({{}}) == 1
    # libpq's connections went straight to the server: nothing counted them.
    assert function.connections.opened() == 0
"""


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_a_c_driver_whose_connections_reach_no_proxy_is_not_a_silent_pass(
    pytester: pytest.Pytester, postgres_url: str, isolation: str
) -> None:
    for name, text in HANDLERS.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    pytester.makepyfile(test_direct=UNPROXIED.format(url=postgres_url))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--lambda-isolation={isolation}"
    )
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*C drivers installed (psycopg, psycopg2*): their connections count only through "
            "tcp_proxy, and the network guard cannot see them*",
            "*UncountedConnectionsWarning: the connection counts of function app-pg3_per_call "
            "miss connections: its code connected through psycopg (libpq), which connects in "
            "C, below Python's sockets, and none of its connections reached a proxy.*",
            '*tcp_proxy("127.0.0.1", 5432, name="postgres")  # where PostgreSQL listens',
            '*env={"DATABASE_URL": "postgresql://USER@{proxy:postgres}/DBNAME"}',
        ]
    )
    # With warnings as errors (as many projects run), the test cannot pass.
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--lambda-isolation={isolation}", "-W", "error"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()


# powertools' Tracer makes X-Ray import psycopg2 whatever the handler talks to: a driver
# imported (by a library, at init) but never called is not the function's.
IMPORTS_ONLY = {
    "app/__init__.py": "",
    "app/tracing.py": """
        import psycopg2  # as aws_xray_sdk's patcher does
        import psycopg
        """,
    "app/search.py": """
        import urllib.request
        from app import tracing

        def handler(event, context):
            return len(urllib.request.urlopen(event["url"]).read())
        """,
}

READS_COUNTS = """
import pytest

@pytest.mark.max_connections(1, per="invocation")
def test_marker(make_lambda_function, url):
    function = make_lambda_function("app.search.handler")
    assert function.invoke({{"url": url}}) > 0
    assert function.connections.opened() == 1

def test_reads(make_lambda_function, url):
    function = make_lambda_function("app.search.handler")
    assert function.invoke({{"url": url}}) > 0
    assert function.connections.opened() == 1

@pytest.fixture
def url():
    return {url!r}
"""


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_a_driver_that_a_library_imports_but_nobody_calls_is_not_the_functions(
    pytester: pytest.Pytester, isolation: str
) -> None:
    from support import keepalive_server

    for name, text in IMPORTS_ONLY.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    with keepalive_server() as (host, port):
        pytester.makepyfile(test_search=READS_COUNTS.format(url=f"http://{host}:{port}/"))
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", f"--lambda-isolation={isolation}", "-W", "error"
        )
    result.assert_outcomes(passed=2)
    assert "UncountedConnectionsWarning" not in result.stdout.str()


UNPROXIED_NO_MARKER = """
def test_reads_counts(make_lambda_function):
    function = make_lambda_function(
        "app.pg2_per_call.handler", env={{"DATABASE_URL": {url!r}}}
    )
    assert function.invoke({{}}) == 1
    assert function.connections.opened() == 0  # libpq went straight to the server

def test_counts_not_read(make_lambda_function):
    function = make_lambda_function(
        "app.pg2_per_call.handler", env={{"DATABASE_URL": {url!r}}}
    )
    assert function.invoke({{}}) == 1
"""


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_a_test_reading_counts_that_miss_c_connections_is_warned_without_the_marker(
    pytester: pytest.Pytester, postgres_url: str, isolation: str
) -> None:
    for name, text in HANDLERS.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    pytester.makepyfile(test_direct=UNPROXIED_NO_MARKER.format(url=postgres_url))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--lambda-isolation={isolation}", "-rA"
    )
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "test_direct.py::test_reads_counts",
            "*UncountedConnectionsWarning: the connection counts of function "
            "app-pg2_per_call miss connections: its code connected through psycopg2 (libpq)*",
        ]
    )


SHARED_PG = {
    "shared/__init__.py": "",
    # A libpq connection memoized outside the code root (as a layer's module would be).
    "shared/db.py": """
        import os
        import psycopg2

        _CONN = []

        def one():
            if not _CONN:
                _CONN.append(psycopg2.connect(os.environ["DATABASE_URL"]))
                _CONN[0].autocommit = True
            with _CONN[0].cursor() as cursor:
                cursor.execute("select 1")
                return cursor.fetchone()[0]
        """,
    "app/__init__.py": "",
    "app/uses_shared.py": """
        from shared import db  # outside the code root (app): one copy for all

        def handler(event, context):
            return db.one()
        """,
}

SHARED_PG_TESTS = """
import pytest
from pytest_lambda_context import SharedConnectionWarning

URL = {{"DATABASE_URL": "postgresql://postgres@{{proxy:pg}}/postgres"}}

def test_a_c_drivers_connection_used_by_another_environment_is_warned(make_lambda_function, pg):
    function = make_lambda_function("uses_shared.handler", code_root="app", env=URL)
    assert function.cold_start().invoke({{}}) == 1
    with pytest.warns(SharedConnectionWarning, match="env-2.*sent on a connection") as seen:
        assert function.cold_start().invoke({{}}) == 1
    assert "env-1" in str(seen[0].message)
    assert pg.connections.opened == 1  # the second environment never opened its own

@pytest.mark.parametrize("module", ["pg2_memo", "pg3_memo"])
def test_each_environment_on_its_own_connection_is_not_warned(make_lambda_function, pg, module):
    function = make_lambda_function(f"app.{{module}}.handler", env=URL)
    first, second = function.cold_start(), function.cold_start()
    for _ in range(10):
        assert first.invoke({{}}) == 1
        assert second.invoke({{}}) == 1
    function.invoke_many([{{}}] * 12, concurrency=3)
    assert pg.connections.opened == 3
"""


def test_a_c_drivers_connection_shared_between_environments_is_seen_at_its_proxy(
    pytester: pytest.Pytester, postgres_address: tuple[str, int]
) -> None:
    for name, text in {**HANDLERS, **SHARED_PG}.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    pytester.makeconftest(CONFTEST.format(address=postgres_address))
    pytester.makepyfile(test_shared=SHARED_PG_TESTS.format())
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--lambda-isolation=module", "-W", "error"
    )
    result.assert_outcomes(passed=3)
