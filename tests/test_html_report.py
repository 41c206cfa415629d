"""``--lambda-html``: the report a person opens, written from real runs (pytester).

What the page shows is read back from the file here; tests/test_html_browser.py
checks what a browser makes of it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _kinds_project import HANDLER, write_kinds_project
from _report_page import parse

from pytest_lambda_context.plugin.history import SessionHistory
from pytest_lambda_context.plugin.html_report import short_label
from pytest_lambda_context.plugin.timeline import timelines

pytest_plugins = ["pytester"]


@pytest.fixture
def report_project(pytester: pytest.Pytester) -> pytest.Pytester:
    return write_kinds_project(pytester)


def test_the_page_shows_every_environment_invocation_and_connection(report_project):
    page_path = report_project.path / "out" / "report.html"
    json_path = report_project.path / "report.json"
    result = report_project.runpytest(
        "-p", "no:cacheprovider", f"--lambda-html={page_path}", f"--lambda-report={json_path}"
    )
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "limited (app.main.handler, module): 1 environment (1 cold start), 2 invocations, "
            "1 throttled, init *"
        ]
    )
    text = page_path.read_text()
    page = parse(text)

    # One section per function that was invoked; the test that never invoked has none.
    assert [s.function for s in page.sections] == ["app-main", "limited", "second"]
    assert not any("never_invoked" in test for test in page.tests)
    main = page.section("app-main")
    kinds = [kind for kind, _, _ in main.bars]
    # cold (with a connection), warm, error, timeout (the environment is shut down),
    # a cold start in a new environment, then after a 5 minute pause two at once.
    assert kinds[:5] == ["cold", "warm", "error", "timeout", "cold"]
    assert sorted(kinds[5:]) == ["cold", "warm", "warm", "warm"]
    assert main.lanes == ["env-1", "env-2", "env-3"]
    assert main.shutdowns == ["\u2715"]
    assert main.marks == 1
    assert main.figures["tests"] == "1"  # the test that made it and never invoked: none
    assert main.figures["invocations"] == "9"
    assert main.figures["cold_starts"] == "3"
    assert main.figures["environments"] == "3"
    assert main.figures["connections"] == "1"
    assert main.figures["timeout_invocations"] == "1"
    assert main.figures["error_invocations"] == "1"
    assert "5 min" in text

    # Hover details are the invocation's own figures, as the JSON report has them.
    recorded = json.loads(json_path.read_text())["functions"]
    (function,) = [f for f in recorded if f["test"].endswith("test_every_kind")]
    first = function["environments"][0]["invocations"][0]
    bar = main.data["bars"][main.bars[0][1]]
    assert bar["request_id"] == first["request_id"]
    assert bar["duration_ms"] == first["duration_ms"]
    assert bar["billed_duration_ms"] == first["billed_duration_ms"]
    assert bar["init_duration_ms"] == first["init_duration_ms"]
    (connection,) = bar["connections"]
    assert re.fullmatch(r"127\.0\.0\.1:\d+", connection["address"])
    lines = HANDLER.strip().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if "create_connection" in text)
    assert connection["frame"] == f"app/main.py:{line} in handler"
    timeout = main.data["bars"][main.bars[3][1]]
    assert timeout["error_type"] == "Sandbox.Timedout"
    assert timeout["shutdown_reason"] == "timeout"

    # Filters by function and by test (every test that invoked), per-test figures.
    assert page.functions == ["app-main", "limited", "second"]
    assert page.tests == [
        "test_kinds.py::test_every_kind",
        "test_kinds.py::test_throttled",
        "test_kinds.py::test_hostile_name[</script><b>bold</b>]",
    ]
    assert main.data["test_figures"]["test_kinds.py::test_every_kind"]["invocations"] == 9

    # A throttled request reached no environment: a lane of its own, after the request
    # made just before it.
    limited = page.section("limited")
    assert limited.lanes == ["env-1", "throttled"]
    assert [kind for kind, _, _ in limited.bars] == ["cold", "warm", "throttled"]
    throttled = limited.data["bars"][limited.bars[2][1]]
    assert throttled["error_type"] == "TooManyRequestsException"
    assert throttled["request_id"].endswith("-000000000003")
    assert limited.figures["throttled_invocations"] == "1"
    assert limited.figures["environments"] == "1"


def test_the_page_fetches_nothing_and_escapes_what_tests_named(report_project):
    page_path = report_project.path / "report.html"
    report_project.runpytest("-p", "no:cacheprovider", f"--lambda-html={page_path}")
    text = page_path.read_text()
    page = parse(text)
    assert page.fetching_tags == []
    assert [r for r in page.references if not r.startswith("#")] == []
    assert not re.search(r"url\((?!#)|@import|https?://", text)
    # The parametrize id is text, never markup, and cannot end the data script early.
    assert "<b>bold</b>" not in text
    assert text.count("</script>") == 1 + len(page.sections)


def test_the_ini_option_writes_it_and_a_session_without_functions_says_so(
    pytester: pytest.Pytester,
):
    pytester.makeini("[pytest]\nlambda_html = reports/lambda.html\n")
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    text = (pytester.path / "reports" / "lambda.html").read_text()
    assert "No Lambda function was invoked in this session." in text
    assert parse(text).sections == []


def test_under_xdist_the_controller_writes_every_workers_functions(report_project):
    pytest.importorskip("xdist")
    report_project.makepyfile(
        test_other="""
        import pytest

        @pytest.mark.lambda_handler("app.main.handler", function_name="third")
        def test_third(lambda_function):
            lambda_function.invoke({})
            lambda_function.invoke({})
        """
    )
    page_path = report_project.path / "report.html"
    result = report_project.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "xdist", "-n", "2", f"--lambda-html={page_path}"
    )
    result.assert_outcomes(passed=5)
    page = parse(page_path.read_text())
    assert sorted(s.function for s in page.sections) == ["app-main", "limited", "second", "third"]
    assert page.section("third").figures["invocations"] == "2"
    assert page.section("app-main").figures["invocations"] == "9"


def test_the_summarys_marks_are_on_the_lanes_too(report_project):
    report_project.makepyfile(
        test_marked="""
        import pytest

        @pytest.mark.max_connections(1)
        def test_a_client_per_invocation(make_lambda_function, port):
            f = make_lambda_function("app.main.handler", env={"PORT": str(port)})
            for _ in range(3):
                f.invoke({"connect": True})
        """
    )
    page_path = report_project.path / "report.html"
    json_path = report_project.path / "report.json"
    result = report_project.runpytest(
        "-p",
        "no:cacheprovider",
        f"--lambda-html={page_path}",
        f"--lambda-report={json_path}",
        "test_marked.py",
    )
    result.assert_outcomes(failed=1)
    (section,) = parse(page_path.read_text()).sections
    # The mark is drawn after the environment's last bar, inside its test's part.
    (chart,) = timelines(SessionHistory(json.loads(json_path.read_text())["functions"]))
    ((column, _, _),) = chart.lanes[0].marks
    (segment,) = chart.segments
    assert max(b.column + b.columns for b in chart.bars) <= column < segment.end_column
    why = (
        "broke @pytest.mark.max_connections(1): 3 connections; "
        "opened a connection in each of its 2 warm invocations"
    )
    assert section.flags == [why]
    assert all(section.data["bars"][b]["marked"] == why for _, b, _ in section.bars)
    result.stdout.fnmatch_lines(
        [f"    ! env-1 in test_marked.py::test_a_client_per_invocation: {why}"]
    )


OUTCOMES = """
import pytest

@pytest.mark.lambda_handler("app.main.handler")
@pytest.mark.parametrize("case", ["ok", "bad"])
def test_a_rather_long_name_for_a_test_of_the_handler(lambda_function, case):
    lambda_function.invoke({})
    assert case == "ok"

@pytest.mark.lambda_handler("app.main.handler")
def test_passes(lambda_function):
    lambda_function.invoke({})
    lambda_function.invoke({})
"""
FAILED = "test_outcomes.py::test_a_rather_long_name_for_a_test_of_the_handler[bad]"


def outcomes_report(pytester: pytest.Pytester) -> Path:
    pytester.makepyfile(**{"app/__init__": "", "app/main": "def handler(e, c):\n    return 1\n"})
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(test_outcomes=OUTCOMES)
    page = pytester.path / "report.html"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--lambda-html={page}")
    result.assert_outcomes(passed=2, failed=1)
    return page


def test_a_failed_test_is_marked_and_its_label_keeps_its_parametrize_id(pytester):
    text = outcomes_report(pytester).read_text()
    page = parse(text)
    (section,) = page.sections
    assert section.failed == [FAILED]
    label = section.labels[FAILED]
    assert label.startswith("\u2717 ") and label.endswith("\u2026[bad]")
    assert section.labels[FAILED.replace("[bad]", "[ok]")].endswith("[ok]")
    # Every test but the first begins with a rule across the lanes.
    assert text.count('class="test-boundary"') == 2
    assert "(failed)</option>" in text
    assert 'id="failed-filter">' in text and "(1 failed)" in text
    # The failed tests' own figures, for the "failed tests only" filter.
    assert section.data["failed_figures"]["tests"] == 1
    assert section.data["failed_figures"]["invocations"] == 1
    assert section.data["figures"]["invocations"] == 4


def test_without_failed_tests_the_filter_is_disabled(report_project):
    page = report_project.path / "report.html"
    report_project.runpytest("-p", "no:cacheprovider", f"--lambda-html={page}")
    text = page.read_text()
    assert 'id="failed-filter" disabled>' in text
    assert not parse(text).sections[0].failed


@pytest.mark.parametrize(
    ("name", "room", "shown"),
    [
        ("test_short[ok]", 20, "test_short[ok]"),
        ("test_a_rather_long_name[ok]", 14, "test_a_ra\u2026[ok]"),
        ("test_a_rather_long_name[bad]", 15, "test_a_ra\u2026[bad]"),
        ("test_a_rather_long_name[bad]", 6, "\u2026[bad]"),
        ("test_a_rather_long_name_without_id", 10, "test_a_ra\u2026"),
        ("test_x[a_very_long_parametrize_id]", 10, "test_x[a_\u2026"),
    ],
)
def test_a_short_label_keeps_the_parametrize_id_while_it_fits(name, room, shown):
    assert short_label(name, room) == shown
    assert len(shown) <= room


BOTO3 = """
import boto3

def handler(event, context):
    boto3.client("s3")
    boto3.client("dynamodb")
    return 1
"""


def test_boto3_clients_are_drawn_and_counted_like_connections(pytester):
    pytester.makepyfile(**{"app/__init__": "", "app/per_call": BOTO3})
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        test_aws_report="""
        import pytest

        @pytest.mark.lambda_handler("app.per_call.handler")
        def test_it(lambda_function, aws):
            lambda_function.invoke({})
            lambda_function.invoke({})
        """
    )
    page_path = pytester.path / "report.html"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--lambda-html={page_path}")
    result.assert_outcomes(passed=1)
    (section,) = parse(page_path.read_text()).sections
    assert section.clients == 4  # two per invocation, each its own mark
    assert section.figures["clients"] == "4"
    assert section.figures["clients_max_per_environment"] == "4"
    # No "connections 0" beside the client marks of an AWS function.
    assert {"connections", "connections_max_per_environment"} <= set(section.hidden_figures)
    assert "clients" not in section.hidden_figures
    services = [c["service"] for bar in section.data["bars"] for c in bar["clients"]]
    assert services == ["s3", "dynamodb", "s3", "dynamodb"]
    assert section.data["bars"][0]["clients"][0]["frame"] == "app/per_call.py:4 in handler"
