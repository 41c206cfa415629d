"""The postgres, mysql and redis fixtures against real servers (the machine's binaries),
in both isolations: counting, placeholders, a database of each test's own, faults."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from pytest_lambda_context import HandlerError
from pytest_lambda_context.services.datastores import backends
from pytest_lambda_context.services.datastores.service import DatastoreService

pytestmark = pytest.mark.slow  # end to end, the same on every Python and pytest

# The inner runs import it too: the class the plugin raises must be loaded before the
# first of them, or pytester's module snapshot would make theirs another one.
assert HandlerError.__module__ == "pytest_lambda_context.runtime.errors"
# The same for ServerUnavailable (raised by the kinds' local module, caught by the
# backends module): both loaded here, or an inner run could pair a fresh copy of one
# with the kept copy of the other, and a skip would become an error.
assert backends.ServerUnavailable.__module__.endswith(".datastores.local")
ISOLATIONS = ["module", "process"]


@dataclass(frozen=True)
class Handlers:
    """Handler modules of one datastore: memoized, per-invocation and reconnecting."""

    memoized: str
    per_invocation: str
    reconnecting: str


PG_CONNECT = "psycopg.connect(os.environ['DB_URL'], autocommit=True)"
PG_QUERY = "conn.execute('select 1').fetchone()[0]"
MYSQL_CONNECT = (
    "pymysql.connect(host=os.environ['DB_HOST'], port=int(os.environ['DB_PORT']), "
    "user=os.environ['DB_USER'], password=os.environ['DB_PASSWORD'], "
    "database=os.environ['DB_NAME'], autocommit=True)"
)
MYSQL_QUERY = "_one(conn)"
MYSQL_HELPER = """
def _one(conn):
    with conn.cursor() as cursor:
        cursor.execute('select 1')
        return cursor.fetchone()[0]
"""
REDIS_CONNECT = "redis.Redis.from_url(os.environ['DB_URL'])"
REDIS_QUERY = "int(conn.incr('calls') > 0)"

KINDS = {
    "postgres": ("psycopg", PG_CONNECT, PG_QUERY, ""),
    "mysql": ("pymysql", MYSQL_CONNECT, MYSQL_QUERY, MYSQL_HELPER),
    "redis": ("redis", REDIS_CONNECT, REDIS_QUERY, ""),
}
ENV = {
    "postgres": {"DB_URL": "{postgres_url}"},
    "mysql": {
        "DB_HOST": "{mysql_host}",
        "DB_PORT": "{mysql_port}",
        "DB_USER": "{mysql_user}",
        "DB_PASSWORD": "{mysql_password}",
        "DB_NAME": "{mysql_db}",
    },
    "redis": {"DB_URL": "{redis_url}"},
}


def handler_files(kind: str) -> dict[str, str]:
    module, connect, query, helper = KINDS[kind]
    head = f"import functools, os\nimport {module}\n{helper}\n"
    return {
        "app/__init__.py": "",
        "app/memoized.py": head
        + f"""
@functools.cache
def connection():
    return {connect}

def handler(event, context):
    conn = connection()
    return {query}
""",
        "app/per_invocation.py": head
        + f"""
def handler(event, context):
    conn = {connect}
    try:
        return {query}
    finally:
        conn.close()
""",
        "app/reconnecting.py": head
        + f"""
_conn = None

def handler(event, context):
    global _conn
    for attempt in (1, 2):
        if _conn is None:
            _conn = {connect}
        try:
            conn = _conn
            return {query}
        except Exception:
            if attempt == 2:
                raise
            _conn = None  # a stale connection: open a new one, once
""",
    }


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    pytest.importorskip(KINDS[request.param][0])
    return str(request.param)


@pytest.fixture
def server_url(kind: str, request: pytest.FixtureRequest) -> str:
    """The outer session's server of this kind (the plugin's own local backend): the
    inner runs point at it with --lambda-KIND-url, so they start no server of their own."""
    service: DatastoreService = request.getfixturevalue(kind)
    return service.direct_url


AT_MOST_ONE = """
def _at_most_one_failure(function):
    # The command on the cut connection may fail (whether redis-py retries it depends
    # on where the reset met it); the next one runs on a new connection.
    try:
        function.invoke({})
    except Exception:
        pass
    assert function.invoke({}) == 1
"""


def inner(
    pytester: pytest.Pytester, kind: str, server_url: str, tests: str, *args: str
) -> pytest.RunResult:
    for name, text in handler_files(kind).items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    pytester.makepyfile(
        test_inner=f"import os, pytest\nENV = {ENV[kind]!r}\nKIND = {kind!r}\n"
        + AT_MOST_ONE
        + tests
    )
    backend = [] if kind == "redis" else [f"--lambda-{kind}-url={server_url}"]
    return pytester.runpytest("-p", "no:cacheprovider", *backend, *args)


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_memoized_passes_and_a_connection_per_invocation_fails(
    pytester: pytest.Pytester, kind: str, server_url: str, isolation: str
) -> None:
    result = inner(
        pytester,
        kind,
        server_url,
        """
@pytest.mark.max_connections(1)
@pytest.mark.lambda_handler("app.memoized.handler", env=ENV)
def test_memoized(lambda_function, request):
    service = request.getfixturevalue(KIND)
    for _ in range(3):
        assert lambda_function.invoke({}) == 1
    assert service.connections.opened == 1

@pytest.mark.max_connections(1)
@pytest.mark.lambda_handler("app.per_invocation.handler", env=ENV)
def test_per_invocation(lambda_function):
    for _ in range(3):
        assert lambda_function.invoke({}) == 1
""",
        f"--lambda-isolation={isolation}",
    )
    result.assert_outcomes(passed=1, failed=1)
    how = "local (the machine's binaries (auto))" if kind == "redis" else "url (*_url given)"
    result.stdout.fnmatch_lines(
        [
            # Which server, and why, said when the fixture first starts it.
            f"lambda-context: {kind}: {how}, * at 127.0.0.1:*",
            "*@pytest.mark.max_connections(1) exceeded by function app-per_invocation*",
            "*env-1 created 3 connections (limit 1):",
            f"*through proxy '{kind}'*",
        ]
    )


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_placeholders_name_the_proxy_and_the_tests_own_database(
    pytester: pytest.Pytester, kind: str, server_url: str, isolation: str
) -> None:
    pytester.makepyfile(
        app_env="import os\ndef handler(event, context):\n    return dict(os.environ)\n"
    )
    result = inner(
        pytester,
        kind,
        server_url,
        """
FIELDS = ("url", "host", "port", "user", "password", "db")

@pytest.mark.lambda_handler(
    "app_env.handler", env={f"V_{f}": "{" + KIND + "_" + f + "}" for f in FIELDS}
)
def test_fields(lambda_function, request):
    env = lambda_function.invoke({})
    service = request.getfixturevalue(KIND)
    assert env["V_url"] == service.url != service.direct_url
    assert (env["V_host"], int(env["V_port"])) == service.proxy.address
    assert (env["V_user"], env["V_password"]) == (service.user, service.password)
    assert env["V_db"] == service.db
    assert service.db in service.url
""",
        f"--lambda-isolation={isolation}",
    )
    result.assert_outcomes(passed=1)


CLEAN = {
    "postgres": (
        "service.client().execute('create table made (n int)')",
        "service.client().execute(\"select to_regclass('made')\").fetchone()[0] is None",
    ),
    "mysql": (
        "service.client().cursor().execute('create table made (n int)')",
        "service.client().cursor().execute(\"show tables like 'made'\") == 0",
    ),
    "redis": ("service.client().set('made', 1)", "service.client().dbsize() == 0"),
}


def test_each_test_starts_from_an_empty_database_and_leaves_none(
    pytester: pytest.Pytester, kind: str, server_url: str
) -> None:
    make, empty = CLEAN[kind]
    result = inner(
        pytester,
        kind,
        server_url,
        f"""
NAMES = []

@pytest.mark.parametrize("n", [1, 2])
def test_make(request, n):
    service = request.getfixturevalue(KIND)
    assert {empty}
    {make}
    NAMES.append(service.db)

def test_dropped(request):
    service = request.getfixturevalue(KIND)
    assert len(set(NAMES)) == 2 and service.db not in NAMES
""",
    )
    result.assert_outcomes(passed=3)


@pytest.mark.parametrize("kind", ["postgres"])
def test_a_database_still_in_use_is_left_for_the_sessions_end(
    pytester: pytest.Pytester, kind: str, server_url: str, request: pytest.FixtureRequest
) -> None:
    # PostgreSQL's DROP DATABASE waits 5 s for other sessions to leave: the plugin asks
    # first, and leaves a database someone still uses to the end of the session.
    names = pytester.path / "names.json"
    result = inner(
        pytester,
        kind,
        server_url,
        f"""
import json, psycopg
NAMES, KEPT = [], []

def teardown_module():
    for connection in KEPT:
        connection.close()

def test_unused(request):
    NAMES.append(request.getfixturevalue(KIND).db)

def test_held(request):
    service = request.getfixturevalue(KIND)
    NAMES.append(service.db)
    KEPT.append(psycopg.connect(service.url, autocommit=True))

def test_after(request):
    service = request.getfixturevalue(KIND)
    rows = service.client().execute("select datname from pg_database").fetchall()
    present = {{row[0] for row in rows}}
    assert NAMES[0] not in present and NAMES[1] in present
    with open({str(names)!r}, "w") as file:
        json.dump(NAMES, file)
""",
    )
    result.assert_outcomes(passed=3)
    made = json.loads(names.read_text())
    service: DatastoreService = request.getfixturevalue(kind)
    rows = service.client().execute("select datname from pg_database").fetchall()
    assert not set(made) & {row[0] for row in rows}


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_an_outage_fails_the_invocation_and_a_reconnecting_handler_recovers(
    pytester: pytest.Pytester, kind: str, server_url: str, isolation: str
) -> None:
    result = inner(
        pytester,
        kind,
        server_url,
        """
from pytest_lambda_context import HandlerError

@pytest.mark.lambda_handler("app.reconnecting.handler", env=ENV)
def test_outage(lambda_function, request):
    service = request.getfixturevalue(KIND)
    assert lambda_function.invoke({}) == 1
    with service.outage():
        with pytest.raises(HandlerError):
            lambda_function.invoke({})
    assert lambda_function.invoke({}) == 1
    assert service.connections.opened == 2

@pytest.mark.lambda_handler("app.memoized.handler", env=ENV)
def test_dropped_connections(lambda_function, request):
    service = request.getfixturevalue(KIND)
    assert lambda_function.invoke({}) == 1
    assert service.drop_connections() == 1
    if KIND == "redis":  # redis-py drops a broken connection and opens a new one
        _at_most_one_failure(lambda_function)
        assert service.connections.opened == 2
    else:
        with pytest.raises(HandlerError):
            lambda_function.invoke({})
""",
        f"--lambda-isolation={isolation}",
    )
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_idle_past_the_proxy_timeout_cuts_the_connection_and_a_reconnect_works(
    pytester: pytest.Pytester, kind: str, server_url: str, isolation: str
) -> None:
    result = inner(
        pytester,
        kind,
        server_url,
        """
from pytest_lambda_context import HandlerError

@pytest.mark.lambda_handler("app.memoized.handler", env=ENV)
def test_stale(lambda_function, request):
    assert lambda_function.invoke({}) == 1
    lambda_function.idle(400)  # past the 350 s a NAT gateway keeps an idle flow
    if KIND == "redis":  # redis-py drops a broken connection and opens a new one
        _at_most_one_failure(lambda_function)
    else:
        with pytest.raises(HandlerError):
            lambda_function.invoke({})

@pytest.mark.lambda_handler("app.reconnecting.handler", env=ENV)
def test_reconnect(lambda_function, request):
    service = request.getfixturevalue(KIND)
    assert lambda_function.invoke({}) == 1
    lambda_function.idle(400)
    assert lambda_function.invoke({}) == 1
    assert service.connections.opened == 2
""",
        f"--lambda-isolation={isolation}",
    )
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_warm_start_keeps_its_connection_across_tests(
    pytester: pytest.Pytester, kind: str, server_url: str, isolation: str
) -> None:
    result = inner(
        pytester,
        kind,
        server_url,
        """
pytestmark = [pytest.mark.warm_start, pytest.mark.lambda_handler("app.memoized.handler", env=ENV)]

def test_first(lambda_env, request):
    assert lambda_env.invoke({}) == 1

@pytest.mark.max_connections(0)
def test_second(request, lambda_env):
    service = request.getfixturevalue(KIND)
    assert lambda_env.invoke({}) == 1
    assert service.connections.opened == 0
""",
        f"--lambda-isolation={isolation}",
    )
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize(("kind", "install"), [("redis", "apt-get install redis-server")])
def test_without_the_server_the_test_skips_saying_what_to_install_and_fails_on_ci(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
    kind: str,
    install: str,
) -> None:
    pytester.makepyfile(f"def test_it({kind}):\n    pass\n")
    monkeypatch.setenv("PATH", str(tmp_path_factory.mktemp("empty")))
    monkeypatch.delenv("CI", raising=False)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [f"*the {kind} fixture needs redis-server (not on PATH): {install}, or give*"]
    )
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*CI=true: tests that need it must not skip*"])


def test_a_bad_url_option_is_a_usage_error_naming_the_right_form(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("def test_it():\n    pass\n")
    result = pytester.runpytest("--lambda-postgres-url=http://db:5432/x")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*--lambda-postgres-url / ini lambda_postgres_url: 'http://db:5432/x': "
            "expected postgresql://user:password@host:port/database"
        ]
    )


def test_a_local_server_dies_with_a_killed_test_process() -> None:
    # The parent-death signal: pytest killed with SIGKILL takes its servers with it.
    script = (
        "import sys, time\n"
        "from pytest_lambda_context.services.datastores import registry\n"
        "server = registry.kind('redis').start_local()\n"
        "print(server.process.process.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    line = owner.stdout.readline()
    if not line:
        owner.wait()
        pytest.skip("redis-server could not be started here")
    server_pid = int(line)
    assert _running(server_pid)
    owner.kill()
    owner.wait()
    owner.stdout.close()
    deadline = time.monotonic() + 30
    while _running(server_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(server_pid)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):  # gone, or going
        return False


TWO_STORES = {
    "stores/__init__.py": "",
    # PostgreSQL memoized (psycopg: C code, seen by the proxy only), Redis per invocation.
    "stores/two.py": """
import functools, os
import psycopg, redis

@functools.cache
def pg():
    return psycopg.connect(os.environ["PG_URL"], autocommit=True)

def handler(event, context):
    pg().execute("select 1")
    with redis.Redis.from_url(os.environ["REDIS_URL"]) as cache:
        cache.incr("calls")
    return "ok"
""",
    # Connects lazily in its first (cold) invocation, and never again.
    "stores/lazy.py": """
import functools, os
import redis

@functools.cache
def cache():
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.ping()
    return client

def handler(event, context):
    return cache().incr("calls")
""",
    # Opens a connection in every invocation: warm ones included.
    "stores/every.py": """
import os
import redis

def handler(event, context):
    with redis.Redis.from_url(os.environ["REDIS_URL"]) as client:
        return client.incr("calls")
""",
}


@pytest.fixture
def stores(pytester: pytest.Pytester, request: pytest.FixtureRequest) -> pytest.Pytester:
    pytest.importorskip("psycopg")
    pytest.importorskip("redis")
    outer: DatastoreService = request.getfixturevalue("postgres")
    for name, text in TWO_STORES.items():
        (pytester.path / name).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / name).write_text(text)
    pytester.makeini(
        f"[pytest]\nfilterwarnings = error\nlambda_postgres_url = {outer.direct_url}\n"
    )
    return pytester


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_via_counts_one_datastore_and_its_failure_names_it(
    stores: pytest.Pytester, isolation: str
) -> None:
    stores.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.lambda_handler(
            "stores.two.handler", env={"PG_URL": "{postgres_url}", "REDIS_URL": "{redis_url}"}
        )

        @pytest.mark.max_connections(1, via="postgres")
        def test_postgres_memoized(lambda_function):
            for _ in range(3):
                lambda_function.invoke({})

        @pytest.mark.max_connections(1, via="redis")
        def test_redis_per_invocation(lambda_function):
            for _ in range(3):
                lambda_function.invoke({})

        @pytest.mark.max_connections(1, via="postgress")
        def test_misspelt(lambda_function):
            lambda_function.invoke({})
        """
    )
    result = stores.runpytest("-p", "no:cacheprovider", f"--lambda-isolation={isolation}")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.max_connections(1, via='redis') exceeded by function stores-two*",
            "*env-1 created 3 connections through redis (limit 1):",
            "*through proxy 'redis' opened at stores/two.py:12 in handler",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*max_connections(via='postgress'): this test has no service or proxy named "
            "'postgress', so nothing would be counted; its services and proxies: 'aws', "
            "'postgres', 'redis'*"
        ]
    )


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_per_warm_lets_the_cold_invocation_connect_and_no_warm_one(
    stores: pytest.Pytester, isolation: str
) -> None:
    stores.makepyfile(
        """
        import pytest

        ENV = {"REDIS_URL": "{redis_url}"}

        @pytest.mark.max_connections(0, per="warm")
        @pytest.mark.lambda_handler("stores.lazy.handler", env=ENV)
        def test_lazy(lambda_function, redis):
            assert [lambda_function.invoke({}) for _ in range(3)] == [1, 2, 3]
            assert redis.connections.opened == 1

        @pytest.mark.max_connections(0, per="warm")
        @pytest.mark.lambda_handler("stores.every.handler", env=ENV)
        def test_every(lambda_function):
            for _ in range(3):
                lambda_function.invoke({})
        """
    )
    result = stores.runpytest("-p", "no:cacheprovider", f"--lambda-isolation={isolation}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*max_connections(0, per='warm') exceeded by function stores-every*",
            "*env-1 invocation 2 (*) created 1 connection (limit 0):",
            "*env-1 invocation 3 (*) created 1 connection (limit 0):",
            "*Hint: a warm invocation should reuse what the cold one opened*",
        ]
    )
    result.stdout.no_fnmatch_line("*invocation 1 (*) created*")


def test_host_matches_whatever_its_case(stores: pytest.Pytester) -> None:
    stores.makepyfile(
        raw="""
import os, socket
def handler(event, context):
    socket.create_connection(("LocalHost", int(os.environ["PORT"]))).close()
""",
        test_it="""
import pytest

@pytest.mark.max_connections(0, host="LOCALHOST")
@pytest.mark.lambda_handler("raw.handler", env={"PORT": "{redis_port}"})
def test_it(lambda_function):
    lambda_function.invoke({})
""",
    )
    result = stores.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*created 1 connection to LOCALHOST:* (limit 0)*"])


def test_max_connections_under_aws_in_module_isolation_warns_and_names_max_clients(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("moto")
    pytester.makepyfile(
        lambda_s3="""
import boto3
def handler(event, context):
    boto3.client("s3").list_buckets()
""",
        test_it="""
import pytest

@pytest.mark.max_connections(1)
@pytest.mark.lambda_handler("lambda_s3.handler", timeout=60)  # moto loads slowly
def test_clients_per_call(lambda_function, aws):
    for _ in range(3):
        lambda_function.invoke({})
""",
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*UncountedConnectionsWarning: max_connections cannot see the boto3 clients of "
            "function lambda_s3: under the aws fixture in module isolation moto answers them "
            "in the test process, so the 3 client(s) it created opened no connection. Count "
            "them with @pytest.mark.max_clients(n)*"
        ]
    )


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_warm_start_keeps_a_tcp_proxy_alive_into_the_next_test(
    pytester: pytest.Pytester, request: pytest.FixtureRequest, isolation: str
) -> None:
    # The case: a proxy fixture of the project's own, and a warm environment that
    # keeps its connection through that proxy into the next test.
    pytest.importorskip("psycopg")
    outer: DatastoreService = request.getfixturevalue("postgres")
    for name, text in handler_files("postgres").items():
        (pytester.path / name).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / name).write_text(text)
    endpoint = outer.direct_endpoint
    pytester.makepyfile(
        f"""
        import pytest

        pytestmark = [
            pytest.mark.warm_start,
            pytest.mark.lambda_handler(
                "app.memoized.handler",
                env={{"DB_URL": "postgresql://{endpoint.user}@{{proxy:pg}}/{endpoint.database}"}},
            ),
        ]

        @pytest.fixture
        def pg(tcp_proxy):
            return tcp_proxy("{endpoint.host}", {endpoint.port}, name="pg")

        def test_first(lambda_env, pg):  # the proxy's fixture after lambda_env
            assert lambda_env.invoke({{}}) == 1
            assert pg.connections.opened == 1

        @pytest.mark.max_connections(0)
        def test_second(pg, lambda_env):
            assert lambda_env.invoke({{}}) == 1  # the connection through the first proxy
            assert pg.connections.opened == 0
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", f"--lambda-isolation={isolation}")
    result.assert_outcomes(passed=2)


def test_each_xdist_worker_has_a_server_of_its_own(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    pytest.importorskip("xdist")
    out = tmp_path_factory.mktemp("servers")
    monkeypatch.setenv("PLC_SERVERS_OUT", str(out))
    pytester.makepyfile(
        """
        import os, pathlib, pytest

        @pytest.mark.parametrize("n", range(6))
        def test_it(redis, n):
            assert redis.client().dbsize() == 0  # a database of its own
            redis.client().set("made", n)
            out = pathlib.Path(os.environ["PLC_SERVERS_OUT"])
            worker = os.environ["PYTEST_XDIST_WORKER"]
            (out / f"{worker}-{n}").write_text(redis.direct_url.rsplit("/", 1)[0])
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=6)
    servers: dict[str, set[str]] = {}
    for path in out.iterdir():
        servers.setdefault(path.name.split("-")[0], set()).add(path.read_text())
    # One server per worker, used by all its tests; none shared between workers.
    assert sorted(servers) == ["gw0", "gw1"]
    assert all(len(urls) == 1 for urls in servers.values())
    assert servers["gw0"] != servers["gw1"]


def test_es_supplies_host_and_port_placeholders_too(pytester: pytest.Pytester) -> None:
    pytest.importorskip("elasticsearch")
    pytester.makepyfile(
        app_env="import os\ndef handler(event, context):\n    return dict(os.environ)\n",
        test_it="""
import pytest

@pytest.mark.lambda_handler(
    "app_env.handler", env={"ES": "{es_host}:{es_port}", "URL": "{es_url}"}
)
def test_it(lambda_function, es):
    env = lambda_function.invoke({})
    assert env["ES"] == "{}:{}".format(*es.proxy.address)
    assert env["URL"] == es.url == f"http://{env['ES']}"
""",
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--lambda-es=embedded")
    result.assert_outcomes(passed=1)
