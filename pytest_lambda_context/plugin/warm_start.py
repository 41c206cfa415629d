"""``lambda_env``: a cold environment per test, or the one an earlier test left warm."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

from pytest_lambda_context.plugin.markers import closest_start

if TYPE_CHECKING:
    from pytest_lambda_context.environments.base import ExecutionEnvironment
    from pytest_lambda_context.environments.function import LambdaFunction

__all__ = ["lambda_env_for"]


_PROXY = re.compile(r"(?<!\{)\{(proxy:[^{}\s]*)\}")


def _waits_for_a_proxy(function: LambdaFunction, made: Mapping[str, object]) -> bool:
    """Its env names a ``{proxy:NAME}`` that no proxy of this test has yet."""
    return any(
        name not in made for value in function.config.env.values() for name in _PROXY.findall(value)
    )


def _set_up_the_rest(request: pytest.FixtureRequest) -> None:
    """Set up the test's other fixtures now (a fixture that makes the proxy may come after
    lambda_env in its arguments): the environment fills its env when it is made. A
    fixture that needs lambda_env itself is left for pytest to set up after it."""
    names = list(request.fixturenames)
    for name in names[names.index("lambda_env") + 1 :] if "lambda_env" in names else ():
        if name.startswith("_lambda") or name == "request":
            continue
        try:
            request.getfixturevalue(name)
        except Exception:  # pytest's FixtureLookupError (needs lambda_env), or its own
            continue  # failure, which pytest reports when it sets the fixture up itself


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
    if proxies is not None and _waits_for_a_proxy(function, proxies.placeholders):
        _set_up_the_rest(request)
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
