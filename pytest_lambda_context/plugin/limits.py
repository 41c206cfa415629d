"""``max_connections`` and ``max_clients``: checked after the test body passed.

The failure message is the product's face: it names each offending environment or
invocation, how many it opened, and the line of user code behind each one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pytest

from pytest_lambda_context.plugin.markers import marker_arguments

if TYPE_CHECKING:
    from pytest_lambda_context.environments.function import LambdaFunction

__all__ = ["check_limits"]


def check_limits(
    item: pytest.Item, functions: Sequence[LambdaFunction], marks: dict[int, tuple[int, int]]
) -> None:
    """Fail the test if a marker's limit was exceeded by what happened since ``marks``."""
    problems: list[str] = []
    for marker in item.iter_markers("max_connections"):
        args = marker_arguments(marker)
        for function in functions:
            start = marks.get(id(function), (0, 0))[0]
            events = [
                e
                for e in function.connections.events[start:]
                if (args["host"] is None or args["host"] in (e.host, e.hostname))
                and (args["port"] is None or e.port == args["port"])
            ]
            target = _target(args["host"], args["port"])
            problems += _over(
                function, events, args["n"], args["per"], "connection", target, marker
            )
    for marker in item.iter_markers("max_clients"):
        args = marker_arguments(marker)
        for function in functions:
            start = marks.get(id(function), (0, 0))[1]
            events = [
                e
                for e in function.client_events[start:]
                if args["service"] is None or getattr(e, "service", None) == args["service"]
            ]
            target = f" of service {args['service']}" if args["service"] else ""
            problems += _over(function, events, args["n"], args["per"], "client", target, marker)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def _target(host: str | None, port: int | None) -> str:
    if host is None and port is None:
        return ""
    return f" to {host or '*'}:{port if port is not None else '*'}"


def _over(
    function: LambdaFunction,
    events: list[Any],
    limit: int,
    per: str,
    noun: str,
    target: str,
    marker: pytest.Mark,
) -> list[str]:
    groups: dict[tuple[str, ...], list[Any]] = defaultdict(list)
    for event in events:
        if per == "environment":
            groups[(event.environment_id,)].append(event)
        elif per == "invocation":
            # The init phase is not an invocation: what init code opens counts toward
            # per="environment" and per="test" only.
            if event.request_id is not None:
                groups[(event.environment_id, _phase(function, event.request_id))].append(event)
        else:
            groups[("the test",)].append(event)
    offenders = {key: group for key, group in groups.items() if len(group) > limit}
    if not offenders:
        return []
    call = _marker_call(marker)
    lines = [f"{call} exceeded by function {function.function_name} ({function.handler}):"]
    for key, group in offenders.items():
        where = " ".join(key)
        plural = "s" if len(group) != 1 else ""
        lines.append(f"  {where} created {len(group)} {noun}{plural}{target} (limit {limit}):")
        for event in group:
            phase = _phase(function, event.request_id)
            detail = _detail(event)
            lines.append(f"    - {event.environment_id} {phase}: {detail}")
    if per == "environment" and noun == "connection":
        lines.append(
            "  Hint: build the client once per execution environment (at module level or in a "
            "functools.cache'd getter), not inside the handler."
        )
    return lines


def _phase(function: LambdaFunction, request_id: str | None) -> str:
    if request_id is None:
        return "init"
    for number, invocation in enumerate(function.invocations, start=1):
        if invocation.request_id == request_id:
            return f"invocation {number} ({request_id})"
    return f"invocation {request_id}"


def _detail(event: Any) -> str:
    where = getattr(event, "frame", None) or "no line of the function's code on the stack"
    service = getattr(event, "service", None)
    if service is not None:
        return f"{service} client created at {where}"
    return str(event.where())


def _marker_call(marker: pytest.Mark) -> str:
    parts = [repr(a) for a in marker.args] + [f"{k}={v!r}" for k, v in marker.kwargs.items()]
    return f"@pytest.mark.{marker.name}({', '.join(parts)})"
