"""Under pytest-xdist the controller reports what the workers' functions did."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest_plugins = ["pytester"]

HANDLER = "def handler(event, context):\n    return event\n"

TEST_A = """
import pytest

pytestmark = pytest.mark.lambda_handler("app.main.handler")

def test_one(lambda_function):
    lambda_function.invoke({})

def test_two(lambda_function):
    lambda_function.invoke({})
    lambda_function.cold_start().invoke({})

def test_factory(make_lambda_function):
    make_lambda_function("app.main.handler", function_name="other").invoke({})
    make_lambda_function("app.main.handler", function_name="third").invoke({})

def test_without_functions():
    pass
"""

TEST_B = """
import pytest

@pytest.mark.lambda_handler("app.main.handler", function_name="other")
def test_b_one(lambda_function):
    lambda_function.invoke({})
    lambda_function.invoke({})

@pytest.mark.lambda_handler("app.main.handler")
def test_b_two(lambda_function):
    lambda_function.invoke({})
"""


def _run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, list[Any]]:
    report = pytester.path / f"report{len(args)}.json"
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "xdist", f"--lambda-report={report}", *args
    )
    result.assert_outcomes(passed=6)
    functions = json.loads(report.read_text())["functions"]
    shape = sorted(
        (
            f["test"],
            f["function_name"],
            [len(e["invocations"]) for e in f["environments"]],
        )
        for f in functions
    )
    return result, shape


def test_records_reach_the_controller_summary_and_json_report(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(**{"app/__init__": "", "app/main": HANDLER})
    pytester.makepyfile(test_a=TEST_A, test_b=TEST_B)

    _, without_xdist = _run(pytester)
    result, with_xdist = _run(pytester, "-n", "2")

    assert with_xdist == without_xdist
    assert len(with_xdist) == 6
    assert {test.split("::")[0] for test, _, _ in with_xdist} == {"test_a.py", "test_b.py"}
    # The summary is printed once, by the controller; each line is order-independent.
    assert result.stdout.str().count("= lambda-context =") == 1
    for line in (
        "app-main (app.main.handler, module): 4 environments (4 cold starts), 4 invocations*",
        "other (app.main.handler, module): 2 environments (2 cold starts), 3 invocations*",
        "third (app.main.handler, module): 1 environment (1 cold start), 1 invocation*",
    ):
        result.stdout.fnmatch_lines([line])
