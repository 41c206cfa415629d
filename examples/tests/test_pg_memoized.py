"""db_app.memoized: one PostgreSQL connection per environment, counted although libpq
opens it in C: DATABASE_URL is the postgres fixture's URL,
through its counting proxy."""

import pytest

DATABASE = {"DATABASE_URL": "{postgres_url}"}
pytestmark = pytest.mark.lambda_handler("db_app.memoized.handler", env=DATABASE)


@pytest.mark.max_connections(1)  # per environment
def test_one_connection_per_environment(lambda_function, postgres):
    for n in range(50):
        assert lambda_function.invoke({"n": n}) == n + 1

    lambda_function.invoke_many([{"n": 1}] * 9, concurrency=3)
    assert lambda_function.connections.per_environment() == {"env-1": 1, "env-2": 1, "env-3": 1}
    assert postgres.connections.opened == 3
    first = lambda_function.connections.events[0]
    # Seen by the proxy only (C code opened it)...
    assert (first.seen_by, first.via) == ("proxy", "postgres")
    if lambda_function.isolation == "module":
        # ...and, in this process, the line of code that was waiting on it.
        assert first.frame == "db_app/memoized.py:15 in get_connection"
