"""db_app.cache: redis-py connects in Python, so both the socket layer and the proxy
see its connection; it counts once, with the line of code that opened it."""

import pytest

pytestmark = pytest.mark.lambda_handler("db_app.cache.handler", env={"REDIS_URL": "{redis_url}"})


@pytest.mark.max_connections(1)
def test_one_redis_connection_per_environment(lambda_function, redis):
    counts = [lambda_function.invoke({"key": "visits"}) for _ in range(10)]
    assert counts == sorted(counts) and len(set(counts)) == 10
    lambda_function.invoke_many([{"key": "visits"}] * 4, concurrency=2)

    assert lambda_function.connections.per_environment() == {"env-1": 1, "env-2": 1}
    assert redis.connections.opened == 2
    event = lambda_function.connections.events[0]
    assert (event.seen_by, event.via) == ("both", "redis")
    assert event.frame == "db_app/cache.py:15 in handler"
