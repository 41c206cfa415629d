"""The HTML report in a real browser: headless Chromium from the distribution's packages.

Chromium runs the page's own scripts (hover details, filters) and paints it; the
tests read its DOM afterwards (--dump-dom) and the colours of its screenshot.
Missing Chromium: skipped with a reason; in CI (CI=true) a failure (see _chromium).

With UPDATE_SCREENSHOTS=1 the example suite's screenshot is also copied to
docs/images/html-report.png, the one README.md and docs/reports.md show.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from _chromium import chromium, dump_dom, screenshot
from _kinds_project import write_kinds_project
from _png import Screenshot
from _report_page import parse

pytestmark = pytest.mark.slow  # end to end, the same on every Python and pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
README_IMAGE = ROOT / "docs" / "images" / "html-report.png"
# The bar colours of report.css, as a screenshot has them.
COLOURS = {
    "cold": (0x25, 0x63, 0xEB),
    "warm": (0x16, 0xA3, 0x4A),
    "error": (0xEA, 0x58, 0x0C),
    "throttled": (0x64, 0x74, 0x8B),
    "timeout": (0xDC, 0x26, 0x26),
    "restored": (0x93, 0x33, 0xEA),
    "init": (0x93, 0xC5, 0xFD),
    "restore": (0xD8, 0xB4, 0xFE),
}
# A bar is 10 x 14 px (html_report.BAR_WIDTH, BAR_HEIGHT): 14 pixel rows with a run of
# 6 pixels of its colour (its rounded corners take the rest). The legend's swatches
# are 12 px high: fewer rows than any bar, so a colour shown only there counts as absent.
RUN = 6
BAR_ROWS = 13
# Pixels of the hatch's colour in one init (10 x 14 px, about half of it striped).
INIT_PIXELS = 30
CONCURRENT = "tests/test_es_memoized.py::test_three_concurrent_environments_open_three"


# The tests that read the example suite's report run on one xdist worker, so that the
# suite (about 15 s) runs once, not once per worker.
ONE_EXAMPLE_RUN = pytest.mark.xdist_group("example_report")


@pytest.fixture(scope="module")
def example_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the example suite, run as the README's quick start runs it."""
    chromium()  # skip (or fail in CI) before spending the run
    folder = tmp_path_factory.mktemp("example-report")
    page = folder / "report.html"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            "examples/pytest.ini",
            "--lambda-es=embedded",
            "examples",
            "-p",
            "no:cacheprovider",
            "-q",
            f"--lambda-html={page}",
            f"--lambda-report={folder / 'report.json'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return page


@ONE_EXAMPLE_RUN
def test_the_browser_draws_every_function_of_the_example_suite(example_report: Path) -> None:
    written = parse(example_report.read_text())
    page = parse(dump_dom(example_report))

    assert page.body.get("data-ready") == "true", "the page's script did not run to its end"
    assert [s.function for s in page.sections] == [s.function for s in written.sections]
    assert {"app-counter", "es_app-search", "es_app-per_invocation"} <= set(page.functions)
    assert not any(s.hidden for s in page.sections)
    kinds = {kind for section in page.sections for kind, _, _ in section.bars}
    assert {"cold", "warm", "error", "restored"} <= kinds  # restored: the SnapStart examples
    invocations = sum(int(s.figures["invocations"]) for s in written.sections)
    functions = len(written.sections)
    assert page.shown == f"shown: {functions} functions, {invocations} invocations"
    search = page.section("es_app-search")
    assert search.figures == written.section("es_app-search").figures
    assert search.marks >= 6  # a connection per environment, each drawn


@ONE_EXAMPLE_RUN
def test_a_link_to_one_test_shows_only_that_tests_timeline(example_report: Path) -> None:
    page = parse(dump_dom(example_report, f"#test={quote(CONCURRENT)}"))

    assert page.body.get("data-filter") == f"test={CONCURRENT}"
    shown = [s for s in page.sections if not s.hidden]
    assert [s.function for s in shown] == ["es_app-search"]
    (search,) = shown
    assert [test for test, hidden in search.segments.items() if not hidden] == [CONCURRENT]
    # The figures are the test's own: 30 events over 3 environments, one connection each.
    assert search.figures["invocations"] == "30"
    assert search.figures["environments"] == "3"
    assert search.figures["cold_starts"] == "3"
    assert search.figures["connections"] == "3"
    assert page.shown == "shown: 1 function, 30 invocations"


@ONE_EXAMPLE_RUN
def test_the_screenshot_shows_the_bars_in_their_colours(
    example_report: Path, tmp_path: Path
) -> None:
    path = screenshot(
        example_report,
        tmp_path / "report.png",
        width=1200,
        height=440,
        fragment="#function=es_app-search",
    )
    image = Screenshot(path)
    for kind in ("cold", "warm"):
        assert image.rows_with_run(COLOURS[kind], RUN) >= BAR_ROWS, kind
    # The init in front of each of the 7 cold starts is hatched: stripes, no solid run.
    assert image.count(COLOURS["init"]) >= 7 * INIT_PIXELS
    snap_start = Screenshot(
        screenshot(
            example_report,
            tmp_path / "snap.png",
            width=900,
            height=600,
            fragment="#function=es_app-snap_fixed",
        )
    )
    assert snap_start.rows_with_run(COLOURS["restored"], RUN) >= BAR_ROWS
    assert snap_start.count(COLOURS["restore"]) >= 3 * INIT_PIXELS
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, README_IMAGE)


def test_errors_and_timeouts_are_painted_in_their_own_colours(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    chromium()
    project = write_kinds_project(pytester)
    report = project.path / "report.html"
    result = project.runpytest_subprocess("-p", "no:cacheprovider", f"--lambda-html={report}")
    result.assert_outcomes(passed=4)
    image = Screenshot(screenshot(report, tmp_path / "kinds.png", width=900, height=1000))
    for kind in ("cold", "warm", "error", "timeout", "throttled"):
        assert image.rows_with_run(COLOURS[kind], RUN) >= BAR_ROWS, kind
    assert image.count(COLOURS["init"]) >= 3 * INIT_PIXELS
    # Filtered to the other test, none of the first test's error or timeout bars remain.
    other = "test_kinds.py::test_hostile_name[</script><b>bold</b>]"
    filtered = Screenshot(
        screenshot(
            report,
            tmp_path / "filtered.png",
            width=900,
            height=500,
            fragment=f"#test={quote(other)}",
        )
    )
    assert filtered.rows_with_run(COLOURS["cold"], RUN) >= BAR_ROWS
    for kind in ("error", "timeout", "warm", "throttled"):
        assert filtered.rows_with_run(COLOURS[kind], RUN) < BAR_ROWS, kind


def test_failed_tests_only_shows_the_failed_tests_part(pytester: pytest.Pytester) -> None:
    chromium()
    pytester.makepyfile(**{"app/__init__": "", "app/main": "def handler(e, c):\n    return 1\n"})
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        test_outcomes="""
        import pytest

        @pytest.mark.lambda_handler("app.main.handler")
        @pytest.mark.parametrize("case", ["ok", "bad"])
        def test_case(lambda_function, case):
            lambda_function.invoke({})
            assert case == "ok"
        """
    )
    report = pytester.path / "report.html"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--lambda-html={report}")
    result.assert_outcomes(passed=1, failed=1)
    everything = parse(dump_dom(report)).sections[0]
    assert everything.segments == {
        "test_outcomes.py::test_case[ok]": False,
        "test_outcomes.py::test_case[bad]": False,
    }
    page = parse(dump_dom(report, "#failed=1"))
    (section,) = page.sections
    assert section.failed == ["test_outcomes.py::test_case[bad]"]
    assert section.segments == {
        "test_outcomes.py::test_case[ok]": True,  # hidden
        "test_outcomes.py::test_case[bad]": False,
    }
    assert page.body["data-filter"] == "failed"
    assert page.shown == "shown: 1 function, 1 invocation"
    assert section.labels["test_outcomes.py::test_case[bad]"].endswith("[bad]")


CLIENT = (0x0F, 0x76, 0x6E)  # report.css .client
LEGEND_CLIENT_PIXELS = 49  # the legend's 7 x 7 swatch


def test_boto3_clients_are_painted_as_marks_of_their_own(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    chromium()
    pytester.makepyfile(
        **{
            "app/__init__": "",
            "app/per_call": (
                "import boto3\n\ndef handler(event, context):\n"
                "    boto3.client('s3')\n    boto3.client('dynamodb')\n    return 1\n"
            ),
        }
    )
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
    report = pytester.path / "report.html"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--lambda-html={report}")
    result.assert_outcomes(passed=1)
    (section,) = parse(dump_dom(report)).sections
    assert section.clients == 4
    assert section.marks == 0  # no connection dots
    image = Screenshot(screenshot(report, tmp_path / "clients.png", width=900, height=600))
    # Four 5 x 5 squares besides the legend's swatch (antialiased edges left out).
    assert image.count(CLIENT) >= LEGEND_CLIENT_PIXELS + 4 * 16
