"""What the session shows of its functions: terminal summary and JSON report."""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_lambda_context.plugin.history import SessionHistory
    from pytest_lambda_context.runtime.records import FunctionRecord

__all__ = ["LEGEND", "plain_records", "shortened", "summary_lines", "write_json"]


LEGEND = (
    "! an environment that broke a max_connections or max_clients limit, or whose every "
    "warm invocation opened a connection (created a client): a client per invocation, "
    "where one per environment would do"
)
# Marked environments listed per function; the rest are counted.
MARKS_LISTED = 10


def summary_lines(history: SessionHistory) -> list[str]:
    """The terminal summary: per function, environments, invocations, init, connections,
    a mark for each environment that broke a limit or opened a connection per invocation."""
    lines = []
    for function in history.functions:
        name, handler, isolation = function.label, function.key.handler, function.key.isolation
        environments = function.used
        if not environments and not function.test_marks and not function.throttled:
            continue  # made, never invoked: nothing to say
        # A SnapStart restore is a cold start too, with no init of its own; an init
        # that ran ahead of traffic is not one (Lambda reports it apart).
        cold = sum(1 for e in environments if e.cold_start)
        provisioned = sum(1 for e in environments if e.provisioned)
        ahead = sum(1 for e in environments if e.initialised_ahead) - provisioned
        starts = [
            _count(cold, "cold start"),
            *([f"{provisioned} provisioned"] if provisioned else []),
            *([f"{ahead} initialised ahead"] if ahead else []),
        ]
        invocations = sum(e.invocation_count for e in environments)
        throttled = function.throttled
        inits = [e.init_duration_ms for e in environments if e.init_duration_ms is not None]
        init = f", init {statistics.median(inits):.1f} ms median" if inits else ""
        lines.append(
            f"{name} ({handler}, {isolation}): {_count(len(environments), 'environment')} "
            f"({', '.join(starts)}), {_count(invocations, 'invocation')}"
            f"{f', {throttled} throttled' if throttled else ''}{init}"
        )
        lines += _spread("connections", [e.connections for e in environments])
        lines += _spread("boto3 clients", [e.clients for e in environments])
        marks = function.test_marks + [
            f"{e.id} in {function.tests[e.first_test]}: {'; '.join(reasons)}"
            for e in environments
            if (reasons := e.reasons())
        ]
        lines += [f"    ! {mark}" for mark in marks[:MARKS_LISTED]]
        if len(marks) > MARKS_LISTED:
            lines.append(f"    ! ... and {len(marks) - MARKS_LISTED} more")
    if any(line.startswith("    ! ") for line in lines):
        lines.append(LEGEND)
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _spread(what: str, counts: list[int]) -> list[str]:
    """How many environments opened how many (none: no line)."""
    spread = Counter(n for n in counts if n)
    if not spread:
        return []
    shown = ", ".join(f"{n} in {_count(k, 'environment')}" for n, k in sorted(spread.items()))
    return [f"    {what} per environment: {shown}"]


# A failing test's section shows this many REPORT lines at each end.
FIRST_LINES = 5
LAST_LINES = 5


def shortened(lines: list[str]) -> list[str]:
    """The first and last few lines, and how many were left out between them."""
    if len(lines) <= FIRST_LINES + LAST_LINES + 1:
        return lines
    left_out = len(lines) - FIRST_LINES - LAST_LINES
    return [
        *lines[:FIRST_LINES],
        f"... {left_out} more invocations (all of them: --lambda-report, --lambda-html)",
        *lines[-LAST_LINES:],
    ]


def plain_records(records: list[FunctionRecord]) -> list[FunctionRecord]:
    """The records as the JSON report has them: only JSON types (what xdist can send)."""
    plain: list[FunctionRecord] = json.loads(json.dumps(records, default=repr))
    return plain


def write_json(path: str, history: SessionHistory, header: dict[str, Any]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as stream:
        json.dump({**header, "functions": history.records}, stream, indent=2, default=repr)
    os.replace(temporary, path)
