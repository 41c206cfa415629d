"""MySQL (MariaDB) through the plugin's mysql fixture: a database of the test's own,
reached through a counting proxy named 'mysql' ({mysql_host}, {mysql_port}, ...)."""

import pytest

from pytest_lambda_context import HandlerError

DATABASE = {
    "DB_HOST": "{mysql_host}",
    "DB_PORT": "{mysql_port}",
    "DB_USER": "{mysql_user}",
    "DB_PASSWORD": "{mysql_password}",
    "DB_NAME": "{mysql_db}",
}


@pytest.mark.max_connections(1)  # per environment
@pytest.mark.max_connections(0, per="warm")  # and none at all in a warm invocation
@pytest.mark.lambda_handler("db_app.orders.handler", env=DATABASE)
def test_one_connection_per_environment(lambda_function, mysql):
    assert [lambda_function.invoke({"n": n}) for n in range(5)] == [1, 2, 3, 4, 5]
    assert mysql.connections.opened == 1


@pytest.mark.lambda_handler("db_app.orders.handler", env=DATABASE)
def test_a_connection_reset_while_frozen_is_replaced(lambda_function, mysql):
    assert lambda_function.invoke({"n": 1}) == 2
    lambda_function.idle(400)  # past the 350 s an AWS NAT gateway keeps an idle flow
    assert lambda_function.invoke({"n": 2}) == 3  # ping() found it dead: a new one
    assert mysql.connections.opened == 2


@pytest.mark.lambda_handler("db_app.orders_per_invocation.handler", env=DATABASE)
@pytest.mark.xfail(strict=True, reason="a connection per invocation breaks max_connections(1)")
@pytest.mark.max_connections(1)
def test_a_connection_per_invocation_fails(lambda_function):
    for n in range(3):
        lambda_function.invoke({"n": n})


@pytest.mark.lambda_handler("db_app.orders.handler", env=DATABASE)
def test_an_outage_fails_the_invocation_and_the_next_one_recovers(lambda_function, mysql):
    assert lambda_function.invoke({"n": 1}) == 2
    with mysql.outage(), pytest.raises(HandlerError, match="OperationalError"):
        lambda_function.invoke({"n": 2})
    assert lambda_function.invoke({"n": 3}) == 4
