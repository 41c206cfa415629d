"""db_app.legacy: psycopg2's connection, made at init, counted through the proxy."""

import pytest

DATABASE = {"DATABASE_URL": "{postgres_url}"}
pytestmark = pytest.mark.lambda_handler("db_app.legacy.handler", env=DATABASE)


@pytest.mark.max_connections(1)
def test_the_init_connection_serves_every_invocation(lambda_function, postgres):
    for n in range(20):
        assert lambda_function.invoke({"n": n}) == n + 1

    (event,) = lambda_function.connections.events
    assert event.request_id is None  # opened by init code, not by an invocation
    if lambda_function.isolation == "module":  # a worker process's lines are its own
        assert event.frame == "db_app/legacy.py:7 in <module>"
    assert [i.connections_opened for i in lambda_function.invocations] == [0] * 20
