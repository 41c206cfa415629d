"""db_app.pooled: a SQLAlchemy engine with a pool of one, made at init (psycopg inside)."""

import pytest

DATABASE = {"DATABASE_URL": "{postgres_url}"}
pytestmark = pytest.mark.lambda_handler("db_app.pooled.handler", env=DATABASE)


@pytest.mark.max_connections(1)
def test_the_pool_keeps_one_connection_per_environment(lambda_function, postgres):
    for n in range(20):
        assert lambda_function.invoke({"n": n}) == n + 1
    lambda_function.invoke_many([{"n": 2}] * 6, concurrency=2)

    assert lambda_function.connections.per_environment() == {"env-1": 1, "env-2": 1}
    assert postgres.connections.open_now == 2


def test_pre_ping_replaces_a_connection_reset_while_frozen(lambda_function, postgres):
    assert lambda_function.invoke({"n": 1}) == 2
    lambda_function.idle(minutes=10)  # past the proxy's 350 s: the connection is reset
    assert lambda_function.invoke({"n": 1}) == 2  # the pool noticed and reconnected
    assert [i.connections_opened for i in lambda_function.invocations] == [1, 1]
