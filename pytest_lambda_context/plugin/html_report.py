"""``--lambda-html``: one self-contained HTML file, a timeline of environment reuse.

Everything is inline (CSS, SVG, a little JavaScript for hover details and the filter
by test), so the file opens offline and from a CI artefact. The layout is decided
here (see ``timeline``); the page reads without JavaScript too, with native tooltips.
"""

from __future__ import annotations

import html
import json
import os
from datetime import datetime, timezone
from importlib import resources
from typing import TYPE_CHECKING, Any

from pytest_lambda_context.plugin.timeline import BREAK_COLUMNS, Bar, Timeline, timelines

if TYPE_CHECKING:
    from pytest_lambda_context.plugin.history import SessionHistory
    from pytest_lambda_context.runtime.records import ClientRecord, ConnectionRecord

__all__ = ["render", "short_label", "write_html"]

COLUMN = 14  # px per column
BAR_WIDTH = 10
TOP = 28  # the band of test names and pauses above the lanes
LANE = 26
BAR_TOP = 8  # within a lane; connection marks sit above the bar
BAR_HEIGHT = 14
MARKS_SHOWN = 3  # connection dots drawn per bar (its details list them all)

TITLES = {
    "cold": "cold start",
    "warm": "warm invocation",
    "restored": "restored from a SnapStart snapshot",
    "error": "error",
    "timeout": "timeout",
    "throttled": "throttled",
    "init": "init",
}
LEGEND = (
    ("cold", "cold start"),
    ("warm", "warm"),
    ("restored", "restored (SnapStart)"),
    ("error", "error"),
    ("timeout", "timeout"),
    ("throttled", "throttled"),
)
SHOWN_OPTIONS = ("lambda_es", "lambda_isolation", "lambda_start", "lambda_network")
# Kinds of invocation whose figure is left out for a function that had none.
RARE = ("error", "timeout", "throttled", "restored", "initialised_ahead")
FIGURES = (
    ("tests", "tests"),
    ("environments", "environments"),
    ("cold_starts", "cold starts"),
    ("initialised_ahead", "initialised ahead"),
    ("invocations", "invocations"),
    ("warm_invocations", "warm"),
    ("error_invocations", "errors"),
    ("timeout_invocations", "timeouts"),
    ("throttled_invocations", "throttled"),
    ("restored_invocations", "restored"),
    ("init_median_ms", "init median (ms)"),
    ("duration_median_ms", "median duration (ms)"),
    ("duration_max_ms", "max duration (ms)"),
    ("connections", "connections"),
    ("connections_max_per_environment", "most in one environment"),
    ("clients", "boto3 clients"),
    ("clients_max_per_environment", "most clients in one environment"),
)
# Figures shown only for a function that had some (boto3 clients), and those left out
# for one that had clients but no connection (an AWS function: "connections 0" says
# nothing there).
CLIENT_FIGURES = ("clients", "clients_max_per_environment")
CONNECTION_FIGURES = ("connections", "connections_max_per_environment")


def write_html(path: str, history: SessionHistory, header: dict[str, Any]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as stream:
        stream.write(render(history, header))
    os.replace(temporary, path)


def render(history: SessionHistory, header: dict[str, Any]) -> str:
    """The whole page: session line, filter and legend, then a section per function."""
    charts = timelines(history)
    tests: list[str] = []
    failed: set[str] = set()
    for chart in charts:
        tests += [s.test for s in chart.segments if s.test not in tests]
        failed.update(s.test for s in chart.segments if s.failed)
    invocations = sum(chart.figures["invocations"] for chart in charts)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    # The choices that shape what the timelines show (not where files were written).
    options = ", ".join(
        f"{name}={value}"
        for name, value in sorted(header.get("options", {}).items())
        if value and name in SHOWN_OPTIONS
    )
    session = (
        f"{_count(len(charts), 'function')}, {_count(len(tests), 'test')}, "
        f"{_count(invocations, 'invocation')}; generated {generated} by "
        f"pytest-lambda-context {_version()}" + (f"; {options}" if options else "")
    )
    tests_shown = "".join(
        f"<option value={_attr(t)}>{_text(t)}{' (failed)' if t in failed else ''}</option>"
        for t in tests
    )
    names: list[str] = []
    for chart in charts:
        names += [chart.function_name] if chart.function_name not in names else []
    functions_shown = "".join(f"<option value={_attr(n)}>{_text(n)}</option>" for n in names)
    body = "".join(_section(chart, number) for number, chart in enumerate(charts))
    if not charts:
        body = '<p class="empty">No Lambda function was invoked in this session.</p>'
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>lambda-context report</title>\n"
        f"<style>\n{_asset('report.css')}</style>\n</head>\n<body>\n"
        "<h1>lambda-context: execution environments</h1>\n"
        f'<p class="session">{_text(session)}</p>\n'
        '<div class="controls">'
        '<label for="function-filter">Function</label><select id="function-filter">'
        f'<option value="">all functions</option>{functions_shown}</select>'
        '<label for="test-filter">Test</label>'
        f'<select id="test-filter"><option value="">all tests</option>{tests_shown}</select>'
        '<label class="check"><input type="checkbox" id="failed-filter"'
        f"{'' if failed else ' disabled'}> failed tests only "
        f'<span class="note">({len(failed)} failed)</span></label>'
        '<span id="shown" class="note"></span></div>\n'
        f"{_legend()}\n"
        '<svg width="0" height="0" aria-hidden="true" style="position:absolute">'
        '<defs><pattern id="hatch" width="5" height="5" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="5" height="5" fill="#fff"/>'
        '<rect width="3" height="5" fill="#93c5fd"/></pattern>'
        '<pattern id="hatch-restore" width="5" height="5" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="5" height="5" fill="#fff"/>'
        '<rect width="3" height="5" fill="#d8b4fe"/></pattern></defs></svg>\n'
        f"{body}\n"
        '<div id="tip" hidden></div>\n'
        f"<script>\n{_asset('report.js')}</script>\n</body>\n</html>\n"
    )


def _legend() -> str:
    items = "".join(
        f'<li><span class="swatch" style="background:var(--{kind})"></span>{_text(text)}</li>'
        for kind, text in LEGEND
    )
    return (
        f'<ul class="legend">{items}'
        '<li><span class="swatch init"></span>init (in front of a cold start)</li>'
        '<li><span class="swatch init restore"></span>restore (in front of a restored '
        "one)</li>"
        '<li><span class="swatch conn"></span>connection opened</li>'
        '<li><span class="swatch client"></span>boto3 client created</li>'
        '<li><span class="mark">!</span>broke a max_connections/max_clients limit, or a '
        "connection (client) in every warm invocation</li>"
        '<li><span class="shutdown">\u2715</span>environment shut down (timeout, crash, '
        "idle timeout, chaos); \u21bbN: async retry N</li>"
        "<li>one lane per execution environment; bars in order of time, "
        "overlapping ones side by side; hover for details</li></ul>"
    )


def _section(chart: Timeline, number: int) -> str:
    width = max(chart.columns * COLUMN, COLUMN)
    height = TOP + len(chart.lanes) * LANE + 4
    figures = "".join(
        f"<div{' hidden' if _never(chart, name) else ''}><dt>{_text(label)}</dt>"
        f"<dd data-figure={_attr(name)}>{_figure(chart.figures.get(name))}</dd></div>"
        for name, label in FIGURES
    )
    labels = "".join(f"<div>{_text(lane.label)}</div>" for lane in chart.lanes)
    lines = "".join(
        f'<line class="lane-line" x1="0" x2="{width}" y1="{y}" y2="{y}"/>'
        for y in (TOP + (i + 1) * LANE for i in range(len(chart.lanes)))
    )
    bars = [_bar_data(bar) for bar in chart.bars]
    data = {
        "width": width,
        "figures": chart.figures,
        "test_figures": chart.test_figures,
        "failed_figures": chart.failed_figures,
        "bars": bars,
    }
    note = ""
    if chart.left_out:
        note = (
            f'<p class="note">The first {len(chart.bars)} bars are drawn; '
            f"{chart.left_out} more are in the JSON report (--lambda-report).</p>"
        )
    return (
        f'<section class="function" id="function-{number}" '
        f"data-function={_attr(chart.function_name)}>"
        f'<h2>{_text(chart.function_name)} <span class="what">'
        f"{_text(chart.handler)}, isolation={_text(chart.isolation)}</span></h2>"
        f'<dl class="figures">{figures}</dl>'
        f'<div class="timeline"><div class="lanes">{labels}</div><div class="scroll">'
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label={_attr("timeline of " + chart.function_name)}>'
        f"{lines}{_segments(chart, height, bars)}</svg></div></div>{note}"
        f'<script type="application/json" class="data">{_json(data)}</script>'
        "</section>\n"
    )


def _segments(chart: Timeline, height: int, data: list[dict[str, Any]]) -> str:
    # What each test's part holds, gathered in one pass over each kind of thing.
    inner: dict[str, list[str]] = {segment.test: [] for segment in chart.segments}
    for pause in chart.breaks:
        middle = pause.column * COLUMN + BREAK_COLUMNS * COLUMN // 2
        inner[pause.test].append(
            f'<line class="break-line" x1="{middle}" x2="{middle}" '
            f'y1="{TOP - 2}" y2="{height}"/>'
            f'<text x="{middle}" y="{TOP - 6}" text-anchor="middle">{_text(pause.label)}</text>'
        )
    for number, bar in enumerate(chart.bars):
        inner[bar.test].append(_bar(bar, number, data[number]))
    for lane_number, lane in enumerate(chart.lanes):
        y = TOP + lane_number * LANE + BAR_TOP + BAR_HEIGHT - 2
        for column, test, reason in lane.shutdowns:
            inner[test].append(
                f'<text class="shutdown" x="{column * COLUMN + 1}" y="{y}">'
                f"<title>shut down: {_text(reason)}</title>\u2715</text>"
            )
        for column, test, why in lane.marks:
            inner[test].append(
                f'<text class="mark" x="{column * COLUMN + 3}" y="{y}">'
                f"<title>{_text(why)}</title>!</text>"
            )
    parts = []
    for index, segment in enumerate(chart.segments):
        x0 = segment.first_column * COLUMN
        x1 = max(segment.end_column * COLUMN, x0 + COLUMN)
        name = segment.test.rpartition("::")[2] or segment.test
        mark = "\u2717 " if segment.failed else ""
        shown = mark + short_label(name, max(1, (x1 - x0) // 6 - len(mark)))
        # Where one test's part begins: a rule across every lane (its lanes are shared).
        boundary = (
            f'<line class="test-boundary" x1="{x0}" x2="{x0}" y1="0" y2="{height}"/>'
            if index
            else ""
        )
        outcome = " failed" if segment.failed else ""
        parts.append(
            f'<g class="segment{outcome}" data-test={_attr(segment.test)} '
            f'data-x0="{x0}" data-x1="{x1}">'
            f'<rect class="band" x="{x0}" y="0" width="{x1 - x0}" height="{height}" '
            f'opacity="{0.0 if index % 2 and not segment.failed else 1.0}"/>{boundary}'
            f'<text class="label" x="{x0 + 2}" y="12"><title>{_text(segment.test)}'
            f"{' (failed)' if segment.failed else ''}</title>{_text(shown)}</text>"
            f"{''.join(inner[segment.test])}</g>"
        )
    return "".join(parts)


def short_label(name: str, room: int) -> str:
    """``name`` in ``room`` characters: a test function's name cut in its middle, its
    parametrize id (``[ok]``, ``[bad]``: what tells its cases apart) kept whole while it
    fits; the full node id is in the label's tooltip."""
    if len(name) <= room:
        return name
    base, bracket, rest = name.partition("[")
    ident = bracket + rest
    if ident and len(ident) + 1 <= room:
        return base[: room - len(ident) - 1] + "\u2026" + ident
    return name[: max(1, room - 1)] + "\u2026"


def _bar(bar: Bar, number: int, data: dict[str, Any]) -> str:
    x = bar.column * COLUMN
    y = TOP + bar.lane * LANE
    parts = [f"<title>{_text(_title_text(data))}</title>"]
    if bar.init_columns:
        # A SnapStart environment's first phase is its restore, not an init.
        restored = bar.details.get("restore_duration_ms") is not None
        phase = "init restore" if restored else "init"
        parts.append(
            f'<rect class="{phase}" x="{x}" y="{y + BAR_TOP}" width="{BAR_WIDTH}" '
            f'height="{BAR_HEIGHT}"/>'
        )
    if not bar.init_only:
        bx = x + bar.init_columns * COLUMN
        width = (bar.columns - bar.init_columns - 1) * COLUMN + BAR_WIDTH
        parts.append(
            f'<rect class="bar kind-{bar.kind}" x="{bx}" y="{y + BAR_TOP}" '
            f'width="{width}" height="{BAR_HEIGHT}" rx="1.5"/>'
        )
        if bar.count > 1:
            parts.append(
                f'<text class="count" x="{bx + width / 2}" y="{y + BAR_TOP + 11}" '
                f'text-anchor="middle">\u00d7{bar.count}</text>'
            )
        elif bar.details.get("attempt"):
            # Lambda's retry of a failed asynchronous event: which one, on the bar.
            parts.append(
                f'<text class="count" x="{bx + width / 2}" y="{y + BAR_TOP + 11}" '
                f'text-anchor="middle">\u21bb{bar.details["attempt"]}</text>'
            )
    marks = [(x, c) for c in range(len(bar.init_connections))]
    marks += [
        (x + bar.init_columns * COLUMN, len(bar.init_connections) + c)
        for c in range(len(bar.connections))
    ]
    drawn: dict[int, int] = {}
    for mx, index in marks:
        slot = drawn.get(mx, 0)
        drawn[mx] = slot + 1
        if slot < MARKS_SHOWN:
            parts.append(
                f'<circle class="conn" data-b="{number}" data-c="{index}" '
                f'cx="{mx + 2 + slot * 3}" cy="{y + 4}" r="2.5"/>'
            )
    # A boto3 client: a small square, after the connections' dots of the same phase.
    clients = [(x, c) for c in range(len(bar.init_clients))]
    clients += [
        (x + bar.init_columns * COLUMN, len(bar.init_clients) + c) for c in range(len(bar.clients))
    ]
    for mx, index in clients:
        slot = drawn.get(mx, 0)
        drawn[mx] = slot + 1
        if slot < MARKS_SHOWN:
            parts.append(
                f'<rect class="client" data-b="{number}" data-k="{index}" '
                f'x="{mx + slot * 3}" y="{y + 1.5}" width="5" height="5"/>'
            )
    return (
        f'<g class="inv kind-{bar.kind}-inv" data-b="{number}" data-kind="{bar.kind}" '
        f'tabindex="0">{"".join(parts)}</g>'
    )


def _bar_data(bar: Bar) -> dict[str, Any]:
    details = dict(bar.details)
    kind = "init" if bar.init_only and bar.kind == "cold" else bar.kind
    title = TITLES[kind] if bar.count == 1 else f"{bar.count} warm invocations in a row"
    if bar.init_only and details.get("initialization_type") not in (None, "on-demand"):
        title += f" ({details['initialization_type']})"
    details["title"] = title
    details["connections"] = [_connection(event, "init") for event in bar.init_connections] + [
        _connection(event, "invocation") for event in bar.connections
    ]
    details["clients"] = [_client(client, "init") for client in bar.init_clients] + [
        _client(client, "invocation") for client in bar.clients
    ]
    return details


def _client(client: ClientRecord, phase: str) -> dict[str, str | None]:
    return {"service": client["service"], "frame": client["frame"], "phase": phase}


def _connection(event: ConnectionRecord, phase: str) -> dict[str, str | None]:
    host = event["host"]
    name = f"{event['hostname']} ({host})" if event["hostname"] else host
    return {"address": f"{name}:{event['port']}", "frame": event["frame"], "phase": phase}


def _title_text(data: dict[str, Any]) -> str:
    """The native tooltip, for a reader without JavaScript."""
    parts = [data["title"], f"{data['environment']}"]
    if "request_id" in data:
        parts.append(f"request {data['request_id']}")
    if "request_ids" in data:
        parts.append(f"{data['invocations']} invocations, requests {data['request_ids']}")
        parts.append(f"duration median {data['duration_median_ms']} ms")
    if "duration_ms" in data:
        parts.append(f"duration {data['duration_ms']:.2f} ms")
    if "billed_duration_ms" in data:
        parts.append(f"billed {data['billed_duration_ms']} ms")
    if data.get("init_duration_ms") is not None:
        parts.append(f"init {float(data['init_duration_ms']):.2f} ms")
    if data.get("error_type"):
        parts.append(str(data["error_type"]))
    for connection in data["connections"]:
        parts.append(f"connection {connection['address']} at {connection['frame'] or '?'}")
    for client in data["clients"]:
        parts.append(f"boto3 {client['service']} client at {client['frame'] or '?'}")
    return "; ".join(parts)


def _never(chart: Timeline, figure: str) -> bool:
    figures = chart.figures
    if figure in CLIENT_FIGURES:
        return not figures.get("clients")
    if figure in CONNECTION_FIGURES:
        return not figures.get("connections") and bool(figures.get("clients"))
    return figure.removesuffix("_invocations") in RARE and not figures.get(figure)


def _figure(value: Any) -> str:
    return "\u2014" if value is None else _text(str(value))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _text(value: str) -> str:
    return html.escape(value, quote=False)


def _attr(value: str) -> str:
    return '"' + html.escape(value, quote=True) + '"'


def _json(value: Any) -> str:
    # Inside <script>: no "</script>" or "<!--" can end or bend it.
    text = json.dumps(value, default=repr, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _asset(name: str) -> str:
    return (resources.files("pytest_lambda_context.plugin") / "assets" / name).read_text("utf-8")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pytest-lambda-context")
    except PackageNotFoundError:
        return "(not installed)"
