"""The plain record of a function a test made: what the reports are built from.

``LambdaFunction.to_dict()`` plus what only the plugin knows: which limits each
environment broke in this test, and how many of its warm invocations opened a
connection or created a client (the client-per-invocation pattern).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_lambda_context.environments.function import LambdaFunction
    from pytest_lambda_context.runtime.records import Invocation

__all__ = ["FunctionHistory", "function_record", "per_invocation_pattern", "was_used"]

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


class FunctionHistory:
    """One function's records over the session, environment by environment."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        # An environment kept warm across tests appears in each test's record; the
        # last record of it is the complete one. Each record counts the warm
        # invocations and broken limits of its own test only: those add up.
        self.latest: dict[str, dict[str, Any]] = {}
        self.tests: dict[str, str] = {}  # uid -> the first test that used it
        self.warm: dict[str, Counter[str]] = defaultdict(Counter)
        self.broken: dict[str, list[str]] = defaultdict(list)
        self.test_marks: list[str] = []
        self.throttled = sum(len(r.get("throttles") or ()) for r in records)
        for record in records:
            for environment in record["environments"]:
                uid = environment["uid"]
                self.latest[uid] = environment
                self.tests.setdefault(uid, record["test"])
                for key in _NO_WARM:
                    self.warm[uid][key] += environment.get(key, 0)
                self.broken[uid] += environment.get("limits_broken", [])
            self.test_marks += [
                f"{record['test']}: broke {limit} in the test as a whole"
                for limit in record.get("limits_broken", [])
            ]

    def reasons(self, uid: str) -> list[str]:
        """Why the environment deserves a mark (a broken limit, a client per
        invocation); empty for one that behaved."""
        reasons = [f"broke {limit}" for limit in self.broken[uid]]
        warm = self.warm[uid]
        for what, key, verb in (
            ("connection", "warm_opening_connections", "opened"),
            ("boto3 client", "warm_creating_clients", "created"),
        ):
            if per_invocation_pattern(warm["warm_invocations"], warm[key]):
                reasons.append(
                    f"{verb} a {what} in each of its {warm['warm_invocations']} warm invocations"
                )
        return reasons


def per_invocation_pattern(warm: int, opening: int) -> bool:
    """A client per invocation: every warm invocation (two or more) opened anew.

    A reconnect after an idle period or an outage, or a pool growing within one
    invocation, is not this pattern: they leave most warm invocations quiet.
    """
    return warm >= 2 and opening == warm


def was_used(environment: dict[str, Any]) -> bool:
    """An environment made and never initialised (a fixture's, unused) is not reported."""
    return bool(
        environment.get("invocations")
        or environment.get("invocation_count")
        or environment.get("init_duration_ms") is not None
        or environment.get("restore_duration_ms") is not None
        or environment.get("init_error")
    )
