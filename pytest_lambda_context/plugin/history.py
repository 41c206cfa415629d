"""The session's history of its functions, built once from the records at the end.

The records are plain data (``function_record``: one per function a test made), as
pytest-xdist carries them and the JSON report writes them. An environment kept warm
across tests is in each of those tests' records; this is the one place that puts them
together: per function (name, handler, isolation), its tests in order, and per
environment its latest (complete) record, the test that first used it, the test that
owns each invocation, and what the summary marks it for. The terminal summary, the
JSON report and the HTML timelines all read the same ``SessionHistory``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from pytest_lambda_context.runtime.records import ErrorPayload

if TYPE_CHECKING:
    from pytest_lambda_context.runtime.records import (
        ClientRecord,
        ConnectionRecord,
        EnvironmentRecord,
        FunctionRecord,
        InvocationRecord,
    )

__all__ = [
    "EnvironmentHistory",
    "FunctionHistory",
    "FunctionKey",
    "SessionHistory",
    "per_invocation_pattern",
    "was_used",
]


class FunctionKey(NamedTuple):
    """What makes two tests' functions one function in the reports: two folders that
    each hold ``app.lambda_handler`` are two functions (the code root tells them apart)."""

    function_name: str
    handler: str
    isolation: str
    code_root: str


@dataclass
class EnvironmentHistory:
    """One execution environment over the session (it may have served several tests)."""

    uid: str
    # Its last record: an environment's record grows test by test, the last is complete.
    record: EnvironmentRecord
    # Index (in its function's ``tests``) of the first test that used it, and the last.
    first_test: int
    last_test: int
    warm_invocations: int = 0
    warm_opening_connections: int = 0
    warm_creating_clients: int = 0
    cold_starts: int = 0
    limits_broken: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        """The id tests see ("env-1"), unique within a function only."""
        return self.record["id"]

    @property
    def invocation_count(self) -> int:
        return self.record["invocation_count"]

    @property
    def invocations(self) -> list[InvocationRecord]:
        """Its invocation records (only when the session keeps them: a report asked)."""
        return self.record["invocations"]

    @property
    def init_duration_ms(self) -> float | None:
        return self.record["init_duration_ms"]

    @property
    def restore_duration_ms(self) -> float | None:
        return self.record["restore_duration_ms"]

    @property
    def init_error(self) -> ErrorPayload | None:
        return self.record["init_error"]

    @property
    def shutdown_reason(self) -> str | None:
        return self.record["shutdown_reason"]

    @property
    def shutdown_kind(self) -> str | None:
        return self.record.get("shutdown_kind")

    @property
    def initialization_type(self) -> str:
        return self.record["initialization_type"]

    @property
    def connections(self) -> int:
        return self.record["connections"]

    @property
    def clients(self) -> int:
        return len(self.record["clients"])

    @property
    def connection_events(self) -> list[ConnectionRecord]:
        return self.record["connection_events"]

    @property
    def client_events(self) -> list[ClientRecord]:
        """The boto3 clients function code created (those another monitor reported,
        which have no record of their own, left out)."""
        return [c for c in self.record["clients"] if not isinstance(c, str)]

    @property
    def cold_start(self) -> bool:
        """An invocation of it was a cold start: with its init, or a SnapStart restore."""
        return self.cold_starts > 0

    @property
    def initialised_ahead(self) -> bool:
        """Its init ran ahead of traffic (provisioned, ``init()``, a warm_start test's
        first environment) and no invocation reported it: not a cold start."""
        return self.init_duration_ms is not None and not self.cold_start

    @property
    def provisioned(self) -> bool:
        """Initialised ahead as provisioned concurrency (or Managed Instances) does."""
        return self.initialised_ahead and self.initialization_type != "on-demand"

    @property
    def used(self) -> bool:
        return was_used(self.record)

    def reasons(self) -> list[str]:
        """Why the summary marks it (a broken limit, a client per invocation); empty
        for one that behaved."""
        reasons = [f"broke {limit}" for limit in self.limits_broken]
        for what, opening, verb in (
            ("connection", self.warm_opening_connections, "opened"),
            ("boto3 client", self.warm_creating_clients, "created"),
        ):
            if per_invocation_pattern(self.warm_invocations, opening):
                reasons.append(
                    f"{verb} a {what} in each of its {self.warm_invocations} warm invocations"
                )
        return reasons


class FunctionHistory:
    """One function (name, handler, isolation) over the tests that made it."""

    def __init__(self, key: FunctionKey) -> None:
        self.key = key
        # How the reports name it: the function name, and its code root where another
        # function of the session has the same name, handler and isolation.
        self.label = key.function_name
        self.records: list[FunctionRecord] = []
        # Tests in the order they first appear, and where each one is in that order.
        self.tests: list[str] = []
        self.test_index: dict[str, int] = {}
        # Every environment, in the order it first appears, by uid (unique in a session).
        self.environments: dict[str, EnvironmentHistory] = {}
        # (uid, request id) -> the first test whose record has the invocation: its own.
        self.owner: dict[tuple[str, str], int] = {}
        self.throttled = 0
        # Tests that failed (their setup or body).
        self.failed_tests: set[str] = set()
        # Limits a test broke as a whole (per="test"), one line each.
        self.test_marks: list[str] = []

    def add(self, record: FunctionRecord) -> None:
        self.records.append(record)
        test = record.get("test", "")
        index = self.test_index.get(test)
        if index is None:
            index = self.test_index[test] = len(self.tests)
            self.tests.append(test)
        for data in record["environments"]:
            uid = data["uid"]
            environment = self.environments.get(uid)
            if environment is None:
                environment = self.environments[uid] = EnvironmentHistory(uid, data, index, index)
            environment.record = data
            for invocation in data["invocations"]:
                owner = self.owner.setdefault((uid, invocation["request_id"]), index)
                environment.last_test = max(environment.last_test, owner)
            # Each record counts its own test's warm invocations and broken limits.
            environment.warm_invocations += data.get("warm_invocations", 0)
            environment.warm_opening_connections += data.get("warm_opening_connections", 0)
            environment.warm_creating_clients += data.get("warm_creating_clients", 0)
            environment.cold_starts += data.get("cold_starts", 0)
            environment.limits_broken += data.get("limits_broken", [])
        self.throttled += len(record.get("throttles", ()))
        if record.get("failed"):
            self.failed_tests.add(test)
        self.test_marks += [
            f"{test}: broke {limit} in the test as a whole"
            for limit in record.get("limits_broken", [])
        ]

    @property
    def used(self) -> list[EnvironmentHistory]:
        """The environments that were initialised or invoked (the rest were only made)."""
        return [e for e in self.environments.values() if e.used]


class SessionHistory:
    """Every function of the session, in the order each first appears in the records."""

    def __init__(self, records: list[FunctionRecord]) -> None:
        # As the JSON report writes them.
        self.records = records
        functions: dict[FunctionKey, FunctionHistory] = {}
        for record in records:
            key = FunctionKey(
                record["function_name"],
                record["handler"],
                record["isolation"],
                record.get("code_root", ""),
            )
            function = functions.get(key)
            if function is None:
                function = functions[key] = FunctionHistory(key)
            function.add(record)
        self.functions = list(functions.values())
        seen: dict[tuple[str, str, str], int] = {}
        for function in self.functions:
            name = function.key[:3]
            seen[name] = seen.get(name, 0) + 1
        for function in self.functions:
            if seen[function.key[:3]] > 1:
                function.label = f"{function.key.function_name} [{_shown(function.key.code_root)}]"


def _shown(code_root: str) -> str:
    """A code root as a person reads it: relative to the current folder when under it."""
    if not code_root:
        return "?"
    relative = os.path.relpath(code_root)
    return code_root if relative.startswith("..") else relative


def per_invocation_pattern(warm: int, opening: int) -> bool:
    """A client per invocation: every warm invocation (two or more) opened anew.

    A reconnect after an idle period or an outage, or a pool growing within one
    invocation, is not this pattern: they leave most warm invocations quiet.
    """
    return warm >= 2 and opening == warm


def was_used(environment: EnvironmentRecord) -> bool:
    """An environment made and never initialised (a fixture's, unused) is not reported."""
    return bool(
        environment["invocations"]
        or environment["invocation_count"]
        or environment["init_duration_ms"] is not None
        or environment["restore_duration_ms"] is not None
        or environment["init_error"]
    )
