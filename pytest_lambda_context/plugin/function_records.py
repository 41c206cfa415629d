"""The plain record of a function a test made: what the reports are built from
(see ``history`` for how the session's records are put together).

``LambdaFunction.to_dict()`` plus what only the plugin knows: which limits each
environment broke in this test, and how many of its warm invocations opened a
connection or created a client (the client-per-invocation pattern).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_lambda_context.environments.function import LambdaFunction
    from pytest_lambda_context.runtime.records import Invocation

__all__ = ["function_record"]

_NO_WARM = {"warm_invocations": 0, "warm_opening_connections": 0, "warm_creating_clients": 0}


def function_record(
    function: LambdaFunction,
    test: str,
    broken: dict[str | None, list[str]],
    *,
    invocations: bool,
) -> dict[str, Any]:
    """``broken``: environment id (None: the test as a whole) -> the limits it broke."""
    data = function.to_dict(invocations=invocations)
    warm = _warm_counts(function.invocations)
    for environment in data["environments"]:
        environment.update(warm.get(environment["id"], _NO_WARM))
        environment["limits_broken"] = broken.get(environment["id"], [])
    data["limits_broken"] = broken.get(None, [])
    # Requests refused past max_concurrency: they reached no environment.
    data["throttles"] = [dict(payload) for payload in function.throttles]
    return {"test": test, **data}


def _warm_counts(invocations: Iterable[Invocation]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for invocation in invocations:
        if invocation.cold:
            continue
        entry = counts.setdefault(invocation.environment_id, dict(_NO_WARM))
        entry["warm_invocations"] += 1
        entry["warm_opening_connections"] += invocation.connections_opened > 0
        entry["warm_creating_clients"] += invocation.clients_created > 0
    return counts
