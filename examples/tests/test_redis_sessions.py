"""Redis through the plugin's redis fixture: a database number of the test's own, a
counting proxy named 'redis' ({redis_url})."""

import pytest

pytestmark = pytest.mark.lambda_handler("db_app.sessions.handler", env={"REDIS_URL": "{redis_url}"})


@pytest.mark.max_connections(0, per="warm")
def test_no_connection_in_a_warm_invocation(lambda_function, redis):
    assert [lambda_function.invoke({"key": "visits"}) for _ in range(3)] == [1, 2, 3]
    assert redis.client().get("visits") == b"3"  # test side: not counted
    assert redis.connections.opened == 1


def test_a_reset_connection_is_retried_on_a_new_one(lambda_function, redis):
    assert lambda_function.invoke({"key": "visits"}) == 1
    for _ in range(3):
        lambda_function.idle(400)  # the proxy resets the idle connection
        lambda_function.invoke({"key": "visits"})  # one retry on a new connection
    assert redis.client().get("visits") == b"4"
    assert redis.connections.opened == 4
