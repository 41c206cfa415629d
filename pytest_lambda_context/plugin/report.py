"""What the session shows of its functions: terminal summary and JSON report."""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter, defaultdict
from typing import Any

__all__ = ["plain_records", "summary_lines", "write_json"]


def summary_lines(records: list[dict[str, Any]]) -> list[str]:
    """The terminal summary: per function, environments, invocations, init, connections."""
    by_name: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for data in records:
        by_name[(data["function_name"], data["handler"], data["isolation"])].append(data)
    lines = []
    for (name, handler, isolation), functions in by_name.items():
        # An environment kept warm across tests appears in each test's record; the
        # last record of it is the complete one.
        latest: dict[str, dict[str, Any]] = {}
        tests: dict[str, str] = {}
        for function in functions:
            for environment in function["environments"]:
                latest[environment["uid"]] = environment
                tests[environment["uid"]] = function["test"]
        environments = list(latest.values())
        # A SnapStart restore is a cold start too, with no init of its own.
        cold = sum(
            1
            for e in environments
            if e["init_duration_ms"] is not None or e.get("restore_duration_ms") is not None
        )
        invocations = sum(e["invocation_count"] for e in environments)
        inits = [e["init_duration_ms"] for e in environments if e["init_duration_ms"] is not None]
        init = f"init {statistics.median(inits):.1f} ms median" if inits else "no init"
        lines.append(
            f"{name} ({handler}, {isolation}): {_count(len(environments), 'environment')} "
            f"({_count(cold, 'cold start')}), {_count(invocations, 'invocation')}, {init}"
        )
        opened = [
            (f"{e['id']} in {tests[e['uid']]}", e["connections"], e["connections"] > 1)
            for e in environments
        ]
        lines += _per_environment("connections", "opened more than one connection", opened)
        created = [
            (f"{e['id']} in {tests[e['uid']]}", *_client_counts(e.get("clients") or ()))
            for e in environments
        ]
        lines += _per_environment(
            "boto3 clients", "created more than one client of a service", created
        )
    return lines


def _client_counts(clients: Any) -> tuple[int, bool]:
    """How many clients, and whether one service had more than one."""
    services = [c.get("service") if isinstance(c, dict) else c for c in clients]
    return len(services), len(set(services)) < len(services)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _per_environment(what: str, excess: str, counts: list[tuple[str, int, bool]]) -> list[str]:
    """How many environments opened how many, then each one over the mark, by name."""
    counts = [entry for entry in counts if entry[1]]
    if not counts:
        return []
    spread = Counter(n for _, n, _ in counts)
    shown = ", ".join(
        f"{n} in {k} environment{'s' if k != 1 else ''}" for n, k in sorted(spread.items())
    )
    lines = [f"    {what} per environment: {shown}"]
    flagged = [(label, n) for label, n, flag in counts if flag]
    for label, n in flagged[:10]:
        lines.append(f"    ! {label}: {n} ({excess})")
    if len(flagged) > 10:
        lines.append(f"    ! … and {len(flagged) - 10} more")
    return lines


def plain_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records as the JSON report has them: only JSON types (what xdist can send)."""
    plain: list[dict[str, Any]] = json.loads(json.dumps(records, default=repr))
    return plain


def write_json(path: str, records: list[dict[str, Any]], header: dict[str, Any]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as stream:
        json.dump({**header, "functions": records}, stream, indent=2, default=repr)
    os.replace(temporary, path)
