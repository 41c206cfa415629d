"""No silent pass: connection counts of a function whose C-level driver went unseen.

libpq (psycopg, psycopg2), librdkafka, grpc, curl, ... connect below Python's
sockets; only a proxy sees their connections. When function code connected through
such a driver (called its connect; see observe.drivers) and none of its connections
reached a proxy, a ``max_connections`` limit, or the counts a test reads from
``connections``, may hold only because nothing was counted: the test gets a warning
that names the driver and the ``tcp_proxy`` line to add.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest

from pytest_lambda_context.observe.drivers import BY_MODULE, CDriver, installed_c_drivers

if TYPE_CHECKING:
    from pytest_lambda_context.environments.function import LambdaFunction

__all__ = ["UncountedConnectionsWarning", "header_line", "warn_uncounted"]


class UncountedConnectionsWarning(pytest.PytestWarning):
    """Connections were counted for a function whose C-level driver no proxy saw."""

    __module__ = "pytest_lambda_context"


def _drivers_of(function: LambdaFunction) -> list[CDriver]:
    modules: set[str] = set()
    for environment in function.environments:
        modules |= environment.c_drivers
    return [BY_MODULE[name] for name in sorted(modules) if name in BY_MODULE]


def warn_uncounted(
    item: pytest.Item,
    functions: Sequence[LambdaFunction],
    start: dict[int, int],
    *,
    checked: bool,
) -> None:
    """Warn for each function whose code connected through a C-level driver none of whose
    connections reached a proxy during the test body (``start``: where the body's events
    begin), when the test checks the counts (``checked``: a max_connections marker) or
    read them from the function's or an environment's ``connections``."""
    for function in functions:
        drivers = _drivers_of(function)
        if not drivers:
            continue
        logs = [function.connections, *(e.connections for e in function.environments)]
        if not checked and not any(log.queried for log in logs):
            continue
        body = function.connections.events[start.get(id(function), 0) :]
        if any(event.seen_by == "proxy" for event in body):
            continue  # C code's connections do reach a proxy: they are counted
        if any(
            event.seen_by == "proxy"
            for environment in function.environments
            for event in environment.connections.events
        ):
            continue  # a warm environment, kept from an earlier test, whose C code did
        item.warn(UncountedConnectionsWarning(_message(function.function_name, drivers)))


def _message(function_name: str, drivers: list[CDriver]) -> str:
    names = ", ".join(driver.label for driver in drivers)
    first = drivers[0]
    value = first.env_example()
    key = (
        "DATABASE_URL" if value.startswith("postgresql:") else f"{first.proxy_name.upper()}_ADDRESS"
    )
    return (
        f"the connection counts of function {function_name} miss connections: its code "
        f"connected through {names}, which connect{'s' if len(drivers) == 1 else ''} in C, "
        "below Python's sockets, and none of its connections reached a proxy. Put a tcp_proxy in "
        f"front of {first.datastore} and hand its address to the function, for example:\n"
        f'    tcp_proxy("127.0.0.1", {first.port}, name="{first.proxy_name}")'
        f"  # where {first.datastore} listens\n"
        f'    env={{"{key}": "{value}"}}\n'
        "Its connections then count per environment and invocation, whatever code opens them."
    )


def header_line() -> str:
    """For the report header: which C-level drivers are installed, and what that means."""
    drivers = installed_c_drivers()
    if not drivers:
        return ""
    names = ", ".join(driver.module for driver in drivers)
    return (
        f"C drivers installed ({names}): their connections count only through tcp_proxy, "
        "and the network guard cannot see them"
    )
