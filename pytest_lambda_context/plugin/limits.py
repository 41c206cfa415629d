"""``max_connections`` and ``max_clients``: checked after the test body passed.

The failure message is the product's face: it names each offending environment or
invocation, how many it opened, and the line of user code behind each one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
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
    ("connection", "warm"): "a warm invocation should reuse what the cold one opened: keep "
    "the client (at module level or in a functools.cache'd getter) instead of making one per "
    "call; a memoized client that still connects in warm invocations lost its connection "
    "(an idle timeout, a server that closed it) or does not keep one.",
    ("connection", "test"): "each new environment (a cold start, each of invoke_many's "
    "concurrent ones) opens its own connections; per='environment' shows which one opened "
    "more than it should.",
    ("client", "environment"): "create boto3 clients once per execution environment (at "
    "module level or in a functools.cache'd getter), not inside the handler.",
    ("client", "invocation"): "create each boto3 client once and reuse it for every call "
    "(clients are thread-safe); a client per call is a new connection per call.",
    ("client", "warm"): "create each boto3 client once, in init or the first invocation, and "
    "reuse it in warm invocations.",
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
    item: pytest.Item,
    functions: Sequence[LambdaFunction],
    marks: dict[int, tuple[int, int]],
    moto_ports: frozenset[int] = frozenset(),
) -> LimitsBroken:
    """Which marker limits were exceeded by what happened since ``marks``; ``moto_ports``:
    where the session's moto server listens (``via="aws"``)."""
    found = LimitsBroken()
    for marker in item.iter_markers("max_connections"):
        args = marker_arguments(marker)
        via, host, port = args["via"], args["host"], args["port"]
        if via is not None:
            _check_known_via(item, via, functions)
        ports = moto_ports if via == "aws" else frozenset()
        for function in functions:
            start = marks.get(id(function), (0, 0))[0]
            events = [
                e
                for e in function.connections.events[start:]
                if (via is None or e.via == via or e.port in ports)
                and (host is None or _same_host(host, e.host, e.hostname))
                and (port is None or e.port == port)
            ]
            target = _target(via, host, port)
            _over(found, function, events, args["n"], args["per"], "connection", target, marker)
        if via in (None, "aws") and host is None and port is None:
            _warn_clients_unseen(item, functions, marks)
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


def _target(via: str | None, host: str | None, port: int | None) -> str:
    through = f" through {via}" if via is not None else ""
    if host is None and port is None:
        return through
    return f" to {host or '*'}:{port if port is not None else '*'}{through}"


def _same_host(wanted: str, host: str, hostname: str | None) -> bool:
    """Host names are case-insensitive: "LOCALHOST" is "localhost"."""
    wanted = wanted.lower()
    return wanted == host.lower() or (hostname is not None and wanted == hostname.lower())


def _services_in(item: pytest.Item) -> dict[str, str]:
    """Proxy name -> what it fronts, for the services and proxies this test uses."""
    from pytest_lambda_context.observe.proxy import TcpProxy

    found = {"aws": "moto's server (process isolation)"}
    for value in getattr(item, "funcargs", {}).values():
        proxy = value if isinstance(value, TcpProxy) else getattr(value, "proxy", None)
        if isinstance(proxy, TcpProxy):
            found[proxy.name] = "a service"
        names = getattr(value, "placeholders", None)
        if isinstance(names, Mapping):  # the tcp_proxy factory: "proxy:NAME" -> address
            for key in names:
                if isinstance(key, str) and key.startswith("proxy:"):
                    found[key[len("proxy:") :]] = "a tcp_proxy"
    return found


def _check_known_via(item: pytest.Item, via: str, functions: Sequence[LambdaFunction]) -> None:
    """A via that names nothing of this test would count nothing and pass: say so."""
    known = _services_in(item)
    seen = {e.via for f in functions for e in f.connections.events if e.via}
    if via in known or via in seen:
        return
    names = ", ".join(repr(n) for n in sorted({*known, *seen}))
    pytest.fail(
        f"@pytest.mark.max_connections(via={via!r}): this test has no service or proxy named "
        f"{via!r}, so nothing would be counted; its services and proxies: {names} (request "
        "the fixture, or name the tcp_proxy, that the function's connections go through)",
        pytrace=False,
    )


def _warn_clients_unseen(
    item: pytest.Item, functions: Sequence[LambdaFunction], marks: dict[int, tuple[int, int]]
) -> None:
    """Under the aws fixture in module isolation moto answers boto3 in-process: its clients
    open no connection, and a connection limit would pass on nothing."""
    if "aws" not in getattr(item, "fixturenames", ()):
        return
    from pytest_lambda_context.plugin.uncounted import UncountedConnectionsWarning

    for function in functions:
        made = function.client_events[marks.get(id(function), (0, 0))[1] :]
        if made and function.capabilities.in_test_process:
            item.warn(
                UncountedConnectionsWarning(
                    f"max_connections cannot see the boto3 clients of function "
                    f"{function.function_name}: under the aws fixture in module isolation "
                    f"moto answers them in the test process, so the {len(made)} client(s) it "
                    "created opened no connection. Count them with "
                    "@pytest.mark.max_clients(n) (per='environment', 'invocation', 'warm' or "
                    "'test'), or run the function with isolation='process', where they reach "
                    "moto's server and max_connections(via='aws') counts them."
                )
            )


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
        elif per in ("invocation", "warm"):
            # The init phase is not an invocation: what init code opens counts toward
            # per="environment" and per="test" only. "warm": cold invocations left out.
            if event.request_id is not None and (
                per == "invocation" or not _is_cold(function, event.request_id)
            ):
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


def _is_cold(function: LambdaFunction, request_id: str) -> bool:
    return any(i.request_id == request_id and i.cold for i in function.invocations)


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
