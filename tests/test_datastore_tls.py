"""TLS on the datastores' local servers: a self-signed certificate made at start, the
URLs that ask for TLS (sslmode=require, rediss://), {NAME_ca} for the handlers that
verify; connections counted through the proxy as any others, in both isolations."""

from __future__ import annotations

import pytest

from pytest_lambda_context.services.datastores import backends

ISOLATIONS = ["module", "process"]
# As tests/test_datastores.py: both loaded before the inner runs.
assert backends.ServerUnavailable.__module__.endswith(".datastores.local")

HANDLERS = {
    "postgres": (
        "psycopg",
        """
import functools, os
import psycopg

@functools.cache
def connection():
    return psycopg.connect(os.environ["DB_URL"], autocommit=True)

def handler(event, context):
    row = connection().execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
    return bool(row.fetchone()[0])
""",
        {"DB_URL": "{postgres_url}"},
    ),
    "mysql": (
        "pymysql",
        """
import functools, os
import pymysql

@functools.cache
def connection():
    return pymysql.connect(
        host=os.environ["DB_HOST"], port=int(os.environ["DB_PORT"]),
        user=os.environ["DB_USER"], password=os.environ["DB_PASSWORD"],
        database=os.environ["DB_NAME"], ssl={"ca": os.environ["DB_CA"]},
    )

def handler(event, context):
    with connection().cursor() as cursor:
        cursor.execute("SHOW STATUS LIKE 'Ssl_cipher'")
        return bool(cursor.fetchone()[1])
""",
        {
            "DB_HOST": "{mysql_host}",
            "DB_PORT": "{mysql_port}",
            "DB_USER": "{mysql_user}",
            "DB_PASSWORD": "{mysql_password}",
            "DB_NAME": "{mysql_db}",
            "DB_CA": "{mysql_ca}",
        },
    ),
    "redis": (
        "redis",
        """
import functools, os
import redis

@functools.cache
def connection():
    return redis.Redis.from_url(os.environ["DB_URL"])

def handler(event, context):
    conn = connection()
    conn.incr("calls")
    # The server listens for TLS only: an answer means the connection is TLS.
    return conn.connection_pool.connection_class.__name__ == "SSLConnection"
""",
        {"DB_URL": "{redis_url}"},
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize("kind", list(HANDLERS))
def test_a_handler_connects_with_tls_once_per_environment(
    pytester: pytest.Pytester, kind: str, isolation: str
) -> None:
    module, handler, env = HANDLERS[kind]
    pytest.importorskip(module)
    pytester.makepyfile(**{"app/__init__": "", "app/main": handler})
    pytester.makepyfile(
        test_it=f"""
        import pytest

        pytestmark = pytest.mark.lambda_handler(
            "app.main.handler", env={env!r}, isolation={isolation!r}
        )

        @pytest.mark.max_connections(1, via={kind!r})
        def test_tls(lambda_function, {kind}):
            assert [lambda_function.invoke({{}}) for _ in range(3)] == [True] * 3
            assert {kind}.connections.opened == 1
            assert {kind}.ca_file.endswith("server.crt")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-s", f"--lambda-{kind}-tls=on")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"lambda-context: {kind}: local (the machine's binaries, TLS*"])


@pytest.mark.parametrize(
    "args",
    [
        ["--lambda-redis=container"],
        ["--lambda-redis-url=redis://127.0.0.1:6379/0"],
    ],
)
def test_tls_is_for_the_local_backend_and_says_so(
    pytester: pytest.Pytester, args: list[str]
) -> None:
    pytester.makepyfile(test_it="def test_it(redis):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--lambda-redis-tls=on", *args)
    result.assert_outcomes(errors=1)  # in the fixture's setup
    result.stdout.fnmatch_lines(
        [
            "*redis fixture: lambda_redis_tls is for the local backend (a server the plugin "
            "starts with a certificate of its own); for an existing server put TLS in its "
            "URL (postgresql://...?sslmode=require, rediss://...)*"
        ]
    )
