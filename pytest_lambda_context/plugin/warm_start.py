"""``lambda_env``: a cold environment per test, or the one an earlier test left warm."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_lambda_context.plugin.markers import closest_start
from pytest_lambda_context.plugin.session import STATE_KEY

if TYPE_CHECKING:
    from pytest_lambda_context.environments.base import ExecutionEnvironment
    from pytest_lambda_context.environments.function import LambdaFunction

__all__ = ["lambda_env_for"]


def start_for(request: pytest.FixtureRequest) -> str:
    start = closest_start(request.node)
    if start is not None:
        return start
    return str(request.config.stash[STATE_KEY].options["lambda_start"])


def lambda_env_for(
    request: pytest.FixtureRequest, function: LambdaFunction, pool: dict[Any, Any]
) -> Iterator[ExecutionEnvironment]:
    key = function.config_key()
    parked: ExecutionEnvironment | None = pool.pop(key, None)
    start = start_for(request)
    if start == "warm" and parked is not None and parked.state == "warm":
        function.adopt(parked)
        environment = parked
    else:
        if parked is not None:
            parked.shutdown("replaced by a cold start")
        environment = function.cold_start()
        if start == "warm":
            # The first warm_start test of a module gets an environment whose init ran.
            environment.init()
    yield environment
    # The environment lives on for the next warm_start test of this module, even when
    # this test failed: Lambda would keep it too.
    if environment.state == "warm" and environment.serves(function):
        function.release(environment)
        pool[key] = environment
