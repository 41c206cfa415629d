"""db_app.sessions: one redis-py client per execution environment that retries a command
once on a new connection when the kept one was reset (a NAT gateway's idle timeout)."""

import functools
import os

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


@functools.cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(
        os.environ["REDIS_URL"],
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[redis.ConnectionError],
    )


def handler(event, context):
    return get_redis().incr(event["key"])
