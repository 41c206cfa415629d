"""db_app.stale and db_app.stale_fixed: a connection dies while the environment is frozen.

The postgres proxy, like an AWS NAT gateway, resets connections idle for 350 s.
psycopg does not notice a dead connection by itself: the memoized connection fails
the first query after the pause, and every one after it. Reconnecting once fixes it.
"""

import pytest

from pytest_lambda_context import HandlerError

DATABASE = {"DATABASE_URL": "{postgres_url}"}


def test_a_dead_connection_fails_the_next_invocations(make_lambda_function, postgres):
    function = make_lambda_function("db_app.stale.handler", env=DATABASE)
    assert function.invoke({}) == 1
    expired = postgres.proxy.expired  # the session's proxy: counted since it started

    function.idle(minutes=10)  # frozen past the gateway's idle timeout
    assert postgres.proxy.expired > expired  # the connection was reset

    for _ in range(2):  # functools.cache hands out the same dead connection every time
        with pytest.raises(HandlerError) as failure:
            function.invoke({})
        assert failure.value.payload["errorType"] == "OperationalError"
    assert len(function.environments) == 1  # the environment itself stays warm


def test_reconnecting_once_recovers(make_lambda_function, postgres):
    function = make_lambda_function("db_app.stale_fixed.handler", env=DATABASE)
    assert function.invoke({}) == 1

    function.idle(minutes=10)
    assert function.invoke({}) == 1  # the retry on a new connection
    assert function.invoke({}) == 1
    assert [i.connections_opened for i in function.invocations] == [1, 1, 0]
