"""db_app.cache: redis-py (pure Python: the socket layer sees it, with its line of code)."""

import functools
import os

import redis


@functools.cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


def handler(event, context):
    return get_redis().incr(event["key"])
