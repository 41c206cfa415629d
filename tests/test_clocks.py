"""A test that moves the clock (freezegun, time-machine): function code sees the test's
time in both isolations, the remaining time and durations stay right, and no wait of
the plugin's depends on a clock the test stopped."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from support import FunctionMaker, function_maker

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

HANDLER = """
import datetime
import time

def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {
        "remaining": context.get_remaining_time_in_millis(),
        "year": datetime.datetime.now(datetime.timezone.utc).year,
        "time": time.time(),
    }
"""

MOMENT = dt.datetime(2020, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


def _freezegun(tick: bool) -> AbstractContextManager[Any]:
    freezegun = pytest.importorskip("freezegun")
    return freezegun.freeze_time(MOMENT, tick=tick)  # type: ignore[no-any-return]


def _time_machine(tick: bool) -> AbstractContextManager[Any]:
    time_machine = pytest.importorskip("time_machine")
    return time_machine.travel(MOMENT, tick=tick)  # type: ignore[no-any-return]


CLOCKS: dict[str, Callable[[bool], AbstractContextManager[Any]]] = {
    "freezegun": _freezegun,
    "time-machine": _time_machine,
}


@pytest.fixture
def make(project: Callable[[dict[str, str]], Path]) -> Iterator[FunctionMaker]:
    code = project({"app.py": HANDLER})
    with function_maker("app.handler", code_root=code, timeout=3.0) as maker:
        yield maker


@pytest.mark.parametrize("isolation", ["module", "process"])
@pytest.mark.parametrize("library", list(CLOCKS))
@pytest.mark.parametrize("tick", [False, True], ids=["frozen", "ticking"])
def test_function_code_sees_the_tests_clock(
    make: FunctionMaker, isolation: str, library: str, tick: bool
) -> None:
    function = make(isolation=isolation)
    with CLOCKS[library](tick):
        result = function.invoke({"sleep": 0.02})
        invocation = function.invocations[-1]
    assert result["year"] == 2020
    assert abs(result["time"] - MOMENT.timestamp()) < 60
    # Not 0, not days: the budget is the function's timeout, measured from the start.
    assert 2_000 < result["remaining"] <= 3_000
    # Durations are real, whatever the test's clock does.
    assert invocation.duration_ms >= 20
    assert invocation.init_duration_ms is not None and invocation.init_duration_ms > 0


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_a_timeout_fires_under_a_frozen_clock(make: FunctionMaker, isolation: str) -> None:
    from pytest_lambda_context import InvocationTimeout

    function = make(isolation=isolation, timeout=0.3)
    with _freezegun(tick=False), pytest.raises(InvocationTimeout):
        function.invoke({"sleep": 5})
    assert 300 <= function.invocations[-1].duration_ms < 5_000
