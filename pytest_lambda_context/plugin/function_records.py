"""The plain record of a function a test made: what the reports are built from
(see ``history`` for how the session's records are put together).

``LambdaFunction.to_dict()`` plus what only the plugin knows: which limits each
environment broke in this test, and how many of its warm invocations opened a
connection or created a client (the client-per-invocation pattern).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_lambda_context.environments.function import LambdaFunction
    from pytest_lambda_context.runtime.records import FunctionRecord, Invocation

__all__ = ["function_record"]


@dataclass
class _Warm:
    """An environment's invocations in one test: its cold start, its warm invocations
    and how many of those opened a connection or created a client anew."""

    invocations: int = 0
    opening_connections: int = 0
    creating_clients: int = 0
    # Invocations that were cold starts (with their init or restore): 0 or 1 per test.
    cold: int = 0


def function_record(
    function: LambdaFunction,
    test: str,
    broken: dict[str | None, list[str]],
    *,
    invocations: bool,
    failed: bool = False,
) -> FunctionRecord:
    """``broken``: environment id (None: the test as a whole) -> the limits it broke."""
    data = function.to_dict(invocations=invocations)
    warm = _warm_counts(function.invocations)
    for environment in data["environments"]:
        counts = warm.get(environment["id"]) or _Warm()
        environment["warm_invocations"] = counts.invocations
        environment["warm_opening_connections"] = counts.opening_connections
        environment["warm_creating_clients"] = counts.creating_clients
        environment["cold_starts"] = counts.cold
        environment["limits_broken"] = broken.get(environment["id"], [])
    data["limits_broken"] = broken.get(None, [])
    # Requests refused past max_concurrency: they reached no environment.
    data["throttles"] = [throttle.to_dict() for throttle in function.throttles]
    record: FunctionRecord = {"test": test, "failed": failed, **data}
    return record


def _warm_counts(invocations: Iterable[Invocation]) -> dict[str, _Warm]:
    counts: dict[str, _Warm] = {}
    for invocation in invocations:
        entry = counts.get(invocation.environment_id)
        if entry is None:
            entry = counts[invocation.environment_id] = _Warm()
        if invocation.cold:
            entry.cold += 1
            continue
        entry.invocations += 1
        entry.opening_connections += invocation.connections_opened > 0
        entry.creating_clients += invocation.clients_created > 0
    return counts
