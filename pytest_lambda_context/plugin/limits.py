"""``max_connections`` and ``max_clients``: checked after the test body passed.

The failure message is the product's face: it names each offending environment or
invocation, how many it opened, and the line of user code behind each one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from pytest_lambda_context.plugin.markers import marker_arguments

if TYPE_CHECKING:
    from pytest_lambda_context.environments.function import LambdaFunction

__all__ = ["HINTS", "LimitsBroken", "check_limits"]

# One hint for each way a limit can be broken: (what is counted, per).
HINTS = {
    ("connection", "environment"): "build the client once per execution environment (at "
    "module level or in a functools.cache'd getter), not inside the handler.",
    ("connection", "invocation"): "reuse one client, and its connection pool, for every call "
    "an invocation makes; calls made at once (threads, asyncio.gather) need a connection "
    "each, so allow for them in n.",
    ("connection", "test"): "each new environment (a cold start, each of invoke_many's "
    "concurrent ones) opens its own connections; per='environment' shows which one opened "
    "more than it should.",
    ("client", "environment"): "create boto3 clients once per execution environment (at "
    "module level or in a functools.cache'd getter), not inside the handler.",
    ("client", "invocation"): "create each boto3 client once and reuse it for every call "
    "(clients are thread-safe); a client per call is a new connection per call.",
    ("client", "test"): "each new environment (a cold start, each of invoke_many's concurrent "
    "ones) creates its own clients; per='environment' shows which one created more than it "
    "should.",
}
# Events listed per offender: the first few and the last, then how many more.
LISTED_FIRST = 5
LISTED_LAST = 2


@dataclass
class LimitsBroken:
    """What the markers found: the failure's lines, and what the summary marks."""

    problems: list[str] = field(default_factory=list)
    # id() of the function -> environment id (None: the test as a whole) -> what it broke.
    broken: dict[int, dict[str | None, list[str]]] = field(default_factory=dict)


def check_limits(
    item: pytest.Item, functions: Sequence[LambdaFunction], marks: dict[int, tuple[int, int]]
) -> LimitsBroken:
    """Which marker limits were exceeded by what happened since ``marks``."""
    found = LimitsBroken()
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
            _over(found, function, events, args["n"], args["per"], "connection", target, marker)
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
            _over(found, function, events, args["n"], args["per"], "client", target, marker)
    return found


def _target(host: str | None, port: int | None) -> str:
    if host is None and port is None:
        return ""
    return f" to {host or '*'}:{port if port is not None else '*'}"


def _over(
    found: LimitsBroken,
    function: LambdaFunction,
    events: list[Any],
    limit: int,
    per: str,
    noun: str,
    target: str,
    marker: pytest.Mark,
) -> None:
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
        return
    call = _marker_call(marker)
    lines = [f"{call} exceeded by function {function.function_name} ({function.handler}):"]
    broken = found.broken.setdefault(id(function), {})
    for key, group in offenders.items():
        where = " ".join(key)
        counted = f"{len(group)} {noun}{'s' if len(group) != 1 else ''}{target}"
        lines.append(f"  {where} created {counted} (limit {limit}):")
        shown = group
        if len(group) > LISTED_FIRST + LISTED_LAST + 1:
            shown = group[:LISTED_FIRST] + group[-LISTED_LAST:]
        for number, event in enumerate(shown):
            if number == LISTED_FIRST and shown is not group:
                lines.append(f"    ... {len(group) - len(shown)} more")
            phase = _phase(function, event.request_id)
            lines.append(f"    - {event.environment_id} {phase}: {_detail(event)}")
        environment = None if per == "test" else key[0]
        broken.setdefault(environment, []).append(f"{call}: {counted}")
    lines.append(f"  Hint: {HINTS[(noun, per)]}")
    found.problems += lines


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
