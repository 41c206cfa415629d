"""The HTML report's timelines, laid out from the session's history (``history``).

One timeline per function (name, handler, isolation), over all the tests that made
it: a lane per execution environment, a bar per invocation (a cold one has its init
drawn in front of it), a mark per connection, tests side by side. Positions are in
columns, not in milliseconds: a warm invocation of microseconds and an init of
seconds must both be seen. Time still decides the order, and overlapping
invocations (concurrency) share columns; a long pause (``idle()``) is a labelled
break. Exact durations are in each bar's details.
"""

from __future__ import annotations

import heapq
import math
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_lambda_context.plugin.history import (
        EnvironmentHistory,
        FunctionHistory,
        SessionHistory,
    )
    from pytest_lambda_context.runtime.records import (
        ClientRecord,
        ConnectionRecord,
        InvocationRecord,
    )

__all__ = ["KINDS", "Bar", "Lane", "Timeline", "figures_of", "kind_of", "timelines"]

KINDS = ("cold", "warm", "restored", "error", "timeout", "throttled")
# A pause at least this long (seconds of the clock handler code sees) is drawn as a break.
BREAK_SECONDS = 1.0
BREAK_COLUMNS = 3
SEGMENT_GAP_COLUMNS = 2
# Bars drawn per function: past this the timeline says how many it left out.
MAX_BARS = 2000
# This many warm invocations in a row on one lane, with nothing else happening and
# no connection opened, are one wider bar (a loop of 1000 reads as one).
RUN_LENGTH = 4
RUN_COLUMNS = 3
# Shutdown reasons worth a mark: the routine ones (end of the test) are not.
NOTABLE_SHUTDOWNS = (
    "timeout",
    "exit",
    "init error",
    "idle timeout",
    "recycled (chaos routing)",
)


def kind_of(invocation: InvocationRecord) -> str:
    """What colour an invocation's bar has: the most telling of its facts."""
    error = invocation.get("error")
    error_type = error.get("errorType") if isinstance(error, dict) else None
    if error_type == "TooManyRequestsException":
        return "throttled"
    if error_type == "Sandbox.Timedout":
        return "timeout"
    if error:
        return "error"
    if invocation.get("restore_duration_ms") is not None:
        return "restored"
    return "cold" if invocation.get("cold") else "warm"


@dataclass
class Bar:
    """One invocation (or an init that no invocation reported) on a lane."""

    kind: str
    test: str
    environment_uid: str
    lane: int
    column: int
    details: dict[str, Any]
    # Columns of its init drawn in front of it (a cold start), 0 for none.
    init_columns: int = 0
    # Connections opened: during the init shown in front, then during the invocation.
    init_connections: list[ConnectionRecord] = field(default_factory=list)
    connections: list[ConnectionRecord] = field(default_factory=list)
    # boto3 clients created, the same way: during the init shown, then the invocation.
    init_clients: list[ClientRecord] = field(default_factory=list)
    clients: list[ClientRecord] = field(default_factory=list)
    # Only an init: provisioned ahead of traffic, or initialised and never invoked.
    init_only: bool = False
    # Invocations this bar stands for: more than one for a run of quiet warm ones.
    count: int = 1
    # Columns kept free after it, on its lane: its environment's shutdown and mark.
    trailing: int = 0

    @property
    def columns(self) -> int:
        if self.init_only:
            return self.init_columns
        return self.init_columns + (RUN_COLUMNS if self.count > 1 else 1)


@dataclass
class Lane:
    label: str
    # Where an environment on this lane was shut down for a reason worth showing.
    shutdowns: list[tuple[int, str, str]] = field(default_factory=list)  # column, test, reason
    # Where one ends that the summary marks (a broken limit, a client per invocation).
    marks: list[tuple[int, str, str]] = field(default_factory=list)  # column, test, why


@dataclass
class Segment:
    test: str
    first_column: int
    end_column: int  # exclusive
    failed: bool = False


@dataclass
class Break:
    test: str
    column: int
    seconds: float

    @property
    def label(self) -> str:
        return pause_label(self.seconds)


@dataclass
class Timeline:
    function_name: str
    handler: str
    isolation: str
    lanes: list[Lane]
    bars: list[Bar]
    segments: list[Segment]
    breaks: list[Break]
    columns: int
    figures: dict[str, Any]
    # Per test: the same figures, for the report's filter.
    test_figures: dict[str, dict[str, Any]]
    left_out: int = 0
    # The figures of its failed tests only (None: none failed), for "failed only".
    failed_figures: dict[str, Any] | None = None


def label_columns(test: str) -> int:
    """Columns a test's part needs at least, so that its label can show the test's
    parametrize id (``[ok]``, ``[bad]``), which tells its cases apart: about 2.3
    characters per column, room for a mark and an ellipsis, at most 12 columns."""
    ident = test.rpartition("::")[2].partition("[")[2]
    if not ident:
        return 0
    return min(12, math.ceil((len(ident) + 4) / 2.3))


def pause_label(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} h"
    if seconds >= 60:
        return f"{seconds / 60:.3g} min"
    return f"{seconds:.3g} s"


@dataclass
class _Item:
    test_index: int
    order: int
    start: float
    end: float
    lane: int
    bar: Bar


def timelines(history: SessionHistory) -> list[Timeline]:
    """A timeline per function, in the order functions first appear in the records."""
    return [_timeline(function) for function in history.functions]


def _timeline(function: FunctionHistory) -> Timeline:
    tests = function.tests
    used = {e.uid: e for e in function.used}
    lanes, lane_of = _lanes(used)
    items: list[_Item] = []
    for uid, environment in used.items():
        items += _items(environment, lane_of[uid], function)
    throttled = _throttled(function, items, len(lanes))
    if throttled:
        lanes.append(Lane("throttled"))
        items += throttled
    items.sort(key=lambda item: (item.test_index, item.start, item.order))
    every = [item.bar for item in items]
    by_test: dict[str, list[Bar]] = {}
    for bar in every:
        by_test.setdefault(bar.test, []).append(bar)
    figures = figures_of(every, len(by_test))
    test_figures = {test: figures_of(bars, 1) for test, bars in by_test.items()}
    failed = function.failed_tests
    failed_bars = [bar for bar in every if bar.test in failed]
    failed_figures = (
        figures_of(failed_bars, len({bar.test for bar in failed_bars})) if failed_bars else None
    )
    items = _runs_joined(items)
    left_out = sum(item.bar.count for item in items[MAX_BARS:])
    items = items[:MAX_BARS]
    _keep_room_for_marks(items, used)
    segments, breaks, columns = _place(items, len(lanes), tests)
    for segment in segments:
        segment.failed = segment.test in failed
    bars = [item.bar for item in items]
    _mark_lanes(lanes, used, lane_of, bars)
    name, handler, isolation = function.label, function.key.handler, function.key.isolation
    return Timeline(
        function_name=name,
        handler=handler,
        isolation=isolation,
        lanes=lanes,
        bars=bars,
        segments=segments,
        breaks=breaks,
        columns=columns,
        figures=figures,
        test_figures=test_figures,
        left_out=left_out,
        failed_figures=failed_figures,
    )


def _lanes(environments: dict[str, EnvironmentHistory]) -> tuple[list[Lane], dict[str, int]]:
    """A lane per environment id ("env-1"...); environments of different tests share
    the lane of their id, one that lives alongside another of the same id gets its own."""
    spans = sorted(environments.values(), key=lambda e: (_env_number(e.id), e.first_test))
    lanes: list[Lane] = []
    lane_end: list[int] = []
    lane_of: dict[str, int] = {}
    for environment in spans:
        label = environment.id
        for index, lane in enumerate(lanes):
            if lane.label == label and lane_end[index] < environment.first_test:
                lane_of[environment.uid] = index
                lane_end[index] = environment.last_test
                break
        else:
            lane_of[environment.uid] = len(lanes)
            lanes.append(Lane(label))
            lane_end.append(environment.last_test)
    return lanes, lane_of


def _env_number(env_id: Any) -> str:
    # "env-10" after "env-9": sort by the number, zero-padded.
    head, _, number = str(env_id).rpartition("-")
    return f"{head}-{number.zfill(8)}" if number.isdigit() else str(env_id)


def _items(environment: EnvironmentHistory, lane: int, function: FunctionHistory) -> list[_Item]:
    uid = environment.uid
    tests = function.tests
    first_test = environment.first_test
    connections: dict[str | None, list[ConnectionRecord]] = {}
    for event in environment.connection_events:
        connections.setdefault(event.get("request_id"), []).append(event)
    clients: dict[str | None, list[ClientRecord]] = {}
    for client in environment.client_events:
        clients.setdefault(client["request_id"], []).append(client)
    init_shown = False
    items = []
    for order, invocation in enumerate(environment.invocations):
        test_index = function.owner.get((uid, invocation["request_id"]), first_test)
        kind = kind_of(invocation)
        init_ms = invocation.get("init_duration_ms")
        with_init = invocation.get("cold") and not init_shown
        init_shown = init_shown or bool(with_init)
        bar = Bar(
            kind=kind,
            test=tests[test_index],
            environment_uid=uid,
            lane=lane,
            column=0,
            details=_details(environment, invocation, kind, tests[test_index]),
            init_columns=1 if with_init else 0,
            init_connections=connections.get(None, []) if with_init else [],
            connections=connections.get(invocation["request_id"], []),
            init_clients=clients.get(None, []) if with_init else [],
            clients=clients.get(invocation["request_id"], []),
        )
        started = invocation.get("started_at")
        if started is None:  # a record without times: keep the order it has
            start = float(order)
            end = start + 0.5
        else:
            start = float(started) - (float(init_ms or 0) / 1000.0 if with_init else 0.0)
            end = float(started) + float(invocation.get("duration_ms") or 0) / 1000.0
        items.append(_Item(test_index, order, start, end, lane, bar))
    if not init_shown and (environment.init_duration_ms is not None or environment.init_error):
        # Initialised ahead (provisioned, or init() called) and never reported by an
        # invocation: the init on its own, at the start of its test.
        error = environment.init_error
        kind = "timeout" if error and error["errorType"] == "Sandbox.Timedout" else "error"
        details = _details(environment, None, kind if error else "init", tests[first_test])
        bar = Bar(
            kind=kind if error else "cold",
            test=tests[first_test],
            environment_uid=uid,
            lane=lane,
            column=0,
            details=details,
            init_columns=1,
            init_connections=connections.get(None, []),
            init_clients=clients.get(None, []),
            init_only=True,
        )
        start = items[0].start - 1e-6 if items else float("-inf")
        items.insert(0, _Item(first_test, -1, start, start, lane, bar))
    return items


def _throttled(function: FunctionHistory, items: list[_Item], lane: int) -> list[_Item]:
    """Throttled requests, on a lane of their own: they reached no environment.

    They have no time of their own; request ids count up per function, so each one
    goes right after the invocation requested just before it.
    """
    found: list[_Item] = []
    for record in function.records:
        if not record.get("throttles"):
            continue
        index = function.test_index[record["test"]]
        own = sorted(
            (_request_number(i.bar.details.get("request_id")), i.start)
            for i in items
            if i.test_index == index and i.bar.details.get("request_id")
        )
        for payload in record.get("throttles") or ():
            number = _request_number(payload.get("requestId"))
            before = [start for n, start in own if n < number]
            start = (max(before) if before else min((s for _, s in own), default=0.0)) + 1e-9
            details = {
                "kind": "throttled",
                "test": record["test"],
                "environment": "none (throttled)",
                "request_id": payload.get("requestId"),
                "error_type": payload.get("errorType"),
                "error_message": str(payload.get("errorMessage", "")),
            }
            bar = Bar("throttled", record["test"], "throttled", lane, 0, details)
            found.append(_Item(index, number, start, start, lane, bar))
    return found


def _request_number(request_id: Any) -> int:
    # The last group of the plugin's request ids is a counter (hexadecimal).
    try:
        return int(str(request_id).rpartition("-")[2], 16)
    except ValueError:
        return 0


def _runs_joined(items: list[_Item]) -> list[_Item]:
    """Each run of RUN_LENGTH or more quiet warm invocations in a row as one bar."""
    joined: list[_Item] = []
    run: list[_Item] = []

    def flush() -> None:
        if len(run) >= RUN_LENGTH:
            joined.append(_run_item(run))
        else:
            joined.extend(run)
        run.clear()

    for item in items:
        bar = item.bar
        quiet = bar.kind == "warm" and not bar.connections and not bar.clients
        quiet = quiet and not bar.init_columns
        same = run and (run[-1].lane, run[-1].test_index) == (item.lane, item.test_index)
        if not (quiet and (same or not run)):
            flush()
        if quiet:
            run.append(item)
        else:
            joined.append(item)
    flush()
    return joined


def _run_item(run: list[_Item]) -> _Item:
    first, last = run[0].bar.details, run[-1].bar.details
    durations = [float(i.bar.details.get("duration_ms") or 0) for i in run]
    details = {
        "kind": "warm",
        "test": first["test"],
        "environment": first["environment"],
        "initialization_type": first.get("initialization_type"),
        "invocations": len(run),
        "request_ids": f"{first.get('request_id')} \u2026 {last.get('request_id')}",
        "duration_median_ms": round(statistics.median(durations), 3),
        "duration_max_ms": round(max(durations), 3),
        "billed_duration_ms": sum(int(i.bar.details.get("billed_duration_ms") or 0) for i in run),
    }
    bar = Bar(
        kind="warm",
        test=run[0].bar.test,
        environment_uid=run[0].bar.environment_uid,
        lane=run[0].lane,
        column=0,
        details=details,
        count=len(run),
    )
    return _Item(run[0].test_index, run[0].order, run[0].start, run[-1].end, run[0].lane, bar)


def _details(
    environment: EnvironmentHistory, invocation: InvocationRecord | None, kind: str, test: str
) -> dict[str, Any]:
    """What a bar's hover shows: Lambda's figures for it, as plain data."""
    details: dict[str, Any] = {
        "kind": kind,
        "test": test,
        "environment": environment.id,
        "initialization_type": environment.initialization_type,
    }
    error = environment.init_error
    if invocation is not None:
        shown = {
            "request_id": invocation["request_id"],
            "duration_ms": invocation["duration_ms"],
            "billed_duration_ms": invocation["billed_duration_ms"],
            "init_duration_ms": invocation["init_duration_ms"],
            "restore_duration_ms": invocation["restore_duration_ms"],
            "connections_opened": invocation["connections_opened"],
            "clients_created": invocation["clients_created"],
        }
        details.update((name, value) for name, value in shown.items() if value is not None)
        error = invocation["error"] or error
    if kind == "init":
        details["init_duration_ms"] = environment.init_duration_ms
    if error:
        details["error_type"] = error.get("errorType")
        details["error_message"] = str(error.get("errorMessage", ""))[:500]
    reason = environment.shutdown_reason
    if reason:
        details["shutdown_reason"] = reason
        details["shutdown_kind"] = environment.shutdown_kind
    if invocation is not None and invocation.get("attempt"):
        # An asynchronous event's retry by Lambda (attempt 1 or 2; 0 is the first try).
        details["attempt"] = invocation["attempt"]
    return details


def _place(
    items: list[_Item], lane_count: int, tests: list[str]
) -> tuple[list[Segment], list[Break], int]:
    """Columns for every bar: in time order per test, overlapping ones side by side."""
    segments: list[Segment] = []
    breaks: list[Break] = []
    column = 0
    index = 0
    while index < len(items):
        test_index = items[index].test_index
        first = column
        lane_next = [first] * lane_count
        frontier = first
        ended: list[tuple[float, int]] = []  # (end time, first free column after it)
        latest_end = float("-inf")
        while index < len(items) and items[index].test_index == test_index:
            item = items[index]
            while ended and ended[0][0] <= item.start:
                frontier = max(frontier, heapq.heappop(ended)[1])
            pause = item.start - latest_end
            if pause >= BREAK_SECONDS and latest_end != float("-inf"):
                # Everything before has ended: a labelled break, then on.
                frontier = max(frontier, *lane_next)
                breaks.append(Break(tests[test_index], frontier, pause))
                frontier += BREAK_COLUMNS
            at = max(lane_next[item.lane], frontier)
            item.bar.column = at
            lane_next[item.lane] = at + item.bar.columns + item.bar.trailing
            heapq.heappush(ended, (item.end, at + item.bar.columns + item.bar.trailing))
            latest_end = max(latest_end, item.end)
            index += 1
        end = max([frontier, *lane_next, *(free for _, free in ended)])
        end = max(end, first + label_columns(tests[test_index]))
        segments.append(Segment(tests[test_index], first, end))
        column = end + SEGMENT_GAP_COLUMNS
    return segments, breaks, max(0, column - SEGMENT_GAP_COLUMNS)


def _keep_room_for_marks(items: list[_Item], environments: dict[str, EnvironmentHistory]) -> None:
    last: dict[str, Bar] = {}
    for item in items:
        last[item.bar.environment_uid] = item.bar
    for uid, bar in last.items():
        environment = environments.get(uid)
        if environment is None:  # the throttled lane
            continue
        bar.trailing = int(environment.shutdown_reason in NOTABLE_SHUTDOWNS) + int(
            bool(environment.reasons())
        )


def _mark_lanes(
    lanes: list[Lane],
    environments: dict[str, EnvironmentHistory],
    lane_of: dict[str, int],
    bars: list[Bar],
) -> None:
    """After each environment's last bar: a shutdown worth seeing, and the summary's mark."""
    of_environment: dict[str, list[Bar]] = {}
    for bar in bars:
        of_environment.setdefault(bar.environment_uid, []).append(bar)
    for uid, environment in environments.items():
        own = of_environment.get(uid)
        if not own:
            continue
        final = max(own, key=lambda b: b.column)
        after = final.column + final.columns
        reason = environment.shutdown_reason
        lane = lanes[lane_of[uid]]
        if reason in NOTABLE_SHUTDOWNS:
            kind = environment.shutdown_kind
            lane.shutdowns.append((after, final.test, f"{reason}: {kind}" if kind else str(reason)))
            after += 1
        why = "; ".join(environment.reasons())
        if why:
            lane.marks.append((after, final.test, why))
            for bar in own:
                bar.details["marked"] = why


def figures_of(bars: list[Bar], tests: int) -> dict[str, Any]:
    """The summary figures above a timeline (all its tests, or one)."""
    requests = [b for b in bars if not b.init_only]
    kinds = {kind: sum(b.count for b in requests if b.kind == kind) for kind in KINDS}
    # Lambda counts throttles apart from invocations: a throttled request never ran.
    invocations = [b for b in requests if b.kind != "throttled"]
    inits = [
        float(b.details["init_duration_ms"])
        for b in bars
        if b.init_columns and b.details.get("init_duration_ms") is not None
    ]
    durations = [float(b.details["duration_ms"]) for b in invocations if "duration_ms" in b.details]
    per_environment: dict[str, int] = {}
    clients: dict[str, int] = {}
    for b in bars:
        if b.kind == "throttled":
            continue  # no environment
        uid = b.environment_uid
        per_environment[uid] = (
            per_environment.get(uid, 0) + len(b.connections) + len(b.init_connections)
        )
        clients[uid] = clients.get(uid, 0) + len(b.clients) + len(b.init_clients)
    return {
        "tests": tests,
        "environments": len(per_environment),
        # An init drawn on its own ran ahead of traffic: not a cold start.
        "cold_starts": sum(1 for b in bars if b.init_columns and not b.init_only),
        "initialised_ahead": sum(1 for b in bars if b.init_only and b.kind == "cold"),
        "invocations": len(invocations),
        **{f"{kind}_invocations": n for kind, n in kinds.items()},
        "init_median_ms": round(statistics.median(inits), 2) if inits else None,
        "duration_median_ms": round(statistics.median(durations), 3) if durations else None,
        "duration_max_ms": round(max(durations), 3) if durations else None,
        "connections": sum(per_environment.values()),
        "connections_max_per_environment": max(per_environment.values(), default=0),
        "clients": sum(clients.values()),
        "clients_max_per_environment": max(clients.values(), default=0),
    }
