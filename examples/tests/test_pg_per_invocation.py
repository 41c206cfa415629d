"""db_app.per_invocation: a new connection per invocation, which max_connections(1) fails.

The failure (strict xfail: it must fail) reads:

    @pytest.mark.max_connections(1) exceeded by function db_app-per_invocation ...:
      env-1 created 5 connections (limit 1):
        - env-1 invocation 1 (...): 127.0.0.1:<port> through proxy 'postgres' opened at
          db_app/per_invocation.py:9 in handler
        ...
"""

import pytest

DATABASE = {"DATABASE_URL": "{postgres_url}"}
pytestmark = pytest.mark.lambda_handler("db_app.per_invocation.handler", env=DATABASE)


@pytest.mark.xfail(strict=True, reason="a connection per invocation breaks max_connections(1)")
@pytest.mark.max_connections(1)
def test_a_connection_per_invocation_fails(lambda_function, postgres):
    for n in range(5):
        assert lambda_function.invoke({"n": n}) == n + 1

    assert len(lambda_function.environments) == 1  # all warm invocations...
    assert postgres.connections.opened == 5  # ...yet five connections


@pytest.mark.max_connections(1, per="invocation")  # what this handler does promise
def test_one_connection_per_invocation(lambda_function, postgres):
    for n in range(5):
        lambda_function.invoke({"n": n})
    assert [i.connections_opened for i in lambda_function.invocations] == [1] * 5
    assert postgres.connections.opened == 5
