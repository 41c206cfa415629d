"""The HTML report's layout (plugin/timeline.py), from the records of real functions."""

from __future__ import annotations

from typing import Any

import pytest
from support import lambda_function

from pytest_lambda_context import LambdaFunction
from pytest_lambda_context.plugin.function_records import function_record
from pytest_lambda_context.plugin.history import SessionHistory
from pytest_lambda_context.plugin.timeline import RUN_COLUMNS, kind_of, timelines

SLEEPER = {
    "fn/__init__.py": "",
    "fn/main.py": """
        import time
        def handler(event, context):
            time.sleep(event.get("sleep", 0))
            return "ok"
    """,
}


def record(function: LambdaFunction, test: str = "test_x.py::test_x") -> dict[str, Any]:
    return function_record(function, test, {}, invocations=True)


def test_quiet_warm_invocations_in_a_row_are_one_bar(project):
    with LambdaFunction("fn.main.handler", code_root=project(SLEEPER)) as function:
        for _ in range(10):
            function.invoke({})
        (chart,) = timelines(SessionHistory([record(function)]))
    cold, run = chart.bars
    assert (cold.kind, cold.init_columns, cold.count) == ("cold", 1, 1)
    assert (run.kind, run.count, run.columns) == ("warm", 9, RUN_COLUMNS)
    assert run.details["invocations"] == 9
    assert chart.figures["invocations"] == 10
    assert chart.figures["warm_invocations"] == 9


def test_an_idle_pause_is_a_labelled_break(project):
    with LambdaFunction("fn.main.handler", code_root=project(SLEEPER)) as function:
        function.invoke({})
        function.idle(minutes=5)
        function.invoke({})
        (chart,) = timelines(SessionHistory([record(function)]))
    (pause,) = chart.breaks
    assert pause.label == "5 min"
    before, after = chart.bars
    assert before.column + before.columns <= pause.column < after.column


def test_invocations_that_overlapped_in_time_share_columns(project):
    with lambda_function(
        "fn.main.handler", code_root=project(SLEEPER), isolation="process"
    ) as function:
        function.invoke_many([{"sleep": 0.3}] * 2, concurrency=2)
        (chart,) = timelines(SessionHistory([record(function)]))
    first, second = chart.bars
    assert first.lane != second.lane
    assert first.column < second.column + second.columns
    assert second.column < first.column + first.columns


def test_an_environment_kept_warm_across_tests_stays_on_its_lane(project):
    root = project(SLEEPER)
    with LambdaFunction("fn.main.handler", code_root=root) as first:
        environment = first.cold_start()
        environment.invoke({})
        first.release(environment)
        records = [record(first, "test_a.py::test_one")]
        with LambdaFunction("fn.main.handler", code_root=root) as second:
            second.adopt(environment)
            environment.invoke({"sleep": 0})
            environment.invoke({"sleep": 0})
            records.append(record(second, "test_a.py::test_two"))
    (chart,) = timelines(SessionHistory(records))
    assert [lane.label for lane in chart.lanes] == ["env-1"]
    assert [(b.test, b.kind) for b in chart.bars] == [
        ("test_a.py::test_one", "cold"),
        ("test_a.py::test_two", "warm"),
        ("test_a.py::test_two", "warm"),
    ]
    assert chart.figures["environments"] == 1
    assert chart.test_figures["test_a.py::test_two"]["invocations"] == 2
    one, two = chart.segments
    assert one.end_column < two.first_column


@pytest.mark.parametrize(
    ("invocation", "kind"),
    [
        ({"cold": True}, "cold"),
        ({"cold": False}, "warm"),
        ({"cold": True, "restore_duration_ms": 80.0}, "restored"),
        ({"cold": True, "error": {"errorType": "KeyError"}}, "error"),
        ({"cold": False, "error": {"errorType": "Sandbox.Timedout"}}, "timeout"),
        ({"error": {"errorType": "TooManyRequestsException"}}, "throttled"),
    ],
)
def test_the_kind_of_a_bar_is_its_most_telling_fact(invocation, kind):
    assert kind_of(invocation) == kind


LIFECYCLE = {
    "fn/__init__.py": "",
    "fn/main.py": """
        import signal

        signal.signal(signal.SIGTERM, lambda signum, frame: None)  # closes its clients

        def handler(event, context):
            if event.get("fail"):
                raise RuntimeError("not yet")
            return "ok"
    """,
}


def test_shutdowns_show_their_kind_and_async_retries_their_attempt(project):
    root = project(LIFECYCLE)
    with LambdaFunction("fn.main.handler", code_root=root, extensions="internal") as graceful:
        graceful.invoke({})
        graceful.environments[0].shutdown("idle timeout")
        graceful.invoke_async({"fail": True}, max_retry_attempts=1)
        graceful.idle(minutes=3)  # Lambda's retry comes about a minute later
    with LambdaFunction("fn.main.handler", code_root=root, function_name="killed") as killed:
        killed.invoke({})
        killed.environments[0].shutdown("idle timeout")
    charts = {
        c.function_name: c for c in timelines(SessionHistory([record(graceful), record(killed)]))
    }
    graceful_chart, killed_chart = charts["fn-main"], charts["killed"]
    (first, *_) = graceful_chart.lanes
    assert first.shutdowns[0][2] == "idle timeout: SIGTERM (its handler ran), then killed"
    assert killed_chart.lanes[0].shutdowns[0][2] == "idle timeout: killed"
    attempts = [bar.details.get("attempt") for bar in graceful_chart.bars]
    assert 1 in attempts
