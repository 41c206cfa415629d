"""``lambda_env``: a cold environment per test, or the one an earlier test left warm."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_lambda_context.plugin.markers import closest_start

if TYPE_CHECKING:
    from pytest_lambda_context.environments.base import ExecutionEnvironment
    from pytest_lambda_context.environments.function import LambdaFunction

__all__ = ["lambda_env_for"]


def lambda_env_for(
    request: pytest.FixtureRequest,
    function: LambdaFunction,
    pool: dict[Any, Any],
    default_start: str,
    kept_proxies: list[Callable[[], None]],
) -> Iterator[ExecutionEnvironment]:
    """``default_start``: the lambda_start option, for a test without a start marker;
    ``kept_proxies``: where this test's proxies go when its environment is kept."""
    # Set up before this fixture, torn down after it: the proxies are still there when
    # the environment is parked, and can be handed over with it.
    proxies = request.getfixturevalue("tcp_proxy") if "tcp_proxy" in request.fixturenames else None
    key = function.config_key()
    parked: ExecutionEnvironment | None = pool.pop(key, None)
    start = closest_start(request.node) or default_start
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
        if proxies is not None:  # it may use them in the next test: they live on
            proxies.hand_over(kept_proxies)
