"""Coverage of handler code run in process isolation, with the real pytest-cov and coverage.

pytest-cov, coverage, pytest-xdist and snapshot-restore-py come with the dev group: a
missing one fails these tests rather than skipping them.

Every process of an environment measures with the session's configuration, and its data
ends in the session's report: the same handler lines count as covered in both isolations.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from support import write_files

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only"),
    pytest.mark.slow,  # end to end, the same on every Python and pytest
]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_PACKAGES = ("app", "es_app", "aws_app")

HANDLER = {
    "app/__init__.py": "",
    "app/orders.py": """
        import os

        CLIENT = object()  # init code: runs at every cold start


        def price(quantity):
            if quantity > 10:
                return "bulk"
            return "retail"


        def forked_child():
            return "child"


        def handler(event, context):
            if event.get("fork"):
                pid = os.fork()
                if pid == 0:  # a process forked from the worker measures too
                    forked_child()
                    os._exit(0)
                os.waitpid(pid, 0)
                return "forked"
            return price(event["quantity"])


        def never_called():
            return "never"
    """,
    "tests/test_orders.py": """
        import pytest

        pytestmark = pytest.mark.lambda_handler("app.orders.handler")


        def test_bulk(lambda_function):
            assert lambda_function.invoke({"quantity": 20}) == "bulk"
    """,
}
FORK_TEST = {
    "tests/test_fork.py": """
        import pytest


        @pytest.mark.lambda_handler("app.orders.handler", isolation="process")
        def test_fork(lambda_function):
            assert lambda_function.invoke({"fork": True}) == "forked"
    """,
}


def _executed(report: Path) -> dict[str, list[int]]:
    files: dict[str, Any] = json.loads(report.read_text())["files"]
    return {name: data["executed_lines"] for name, data in files.items()}


def _run_with_cov(pytester: pytest.Pytester, isolation: str, *args: str) -> dict[str, list[int]]:
    report = pytester.path / f"coverage-{isolation}.json"
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        f"--lambda-isolation={isolation}",
        f"--cov-report=json:{report}",
        *args,
        timeout=300,
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    return _executed(report)


def test_the_example_suite_covers_the_same_handler_lines_in_both_isolations(
    pytester: pytest.Pytester,
) -> None:
    shutil.copytree(
        ROOT / "examples",
        pytester.path,
        ignore=shutil.ignore_patterns("__pycache__", "*.json", ".coverage*"),
        dirs_exist_ok=True,
    )
    cov = [f"--cov={package}" for package in EXAMPLE_PACKAGES]
    # The datastore examples (db_app) are not measured here: their servers would only
    # add their start (MariaDB's takes seconds) to both runs.
    skip_db = [f"--ignore-glob=*/test_{kind}*.py" for kind in ("pg", "mysql", "redis")]

    by_module = _run_with_cov(pytester, "module", "--lambda-es=embedded", *skip_db, *cov)
    by_process = _run_with_cov(pytester, "process", "--lambda-es=embedded", *skip_db, *cov)

    handler_files = [name for name in by_module if not name.endswith("__init__.py")]
    assert len(handler_files) >= 5, by_module
    assert all(by_module[name] for name in handler_files), by_module
    assert by_process == by_module


def test_pytest_cov_sees_handler_lines_run_in_workers(pytester: pytest.Pytester) -> None:
    write_files(pytester.path, HANDLER)

    by_module = _run_with_cov(pytester, "module", "--cov=app")
    by_process = _run_with_cov(pytester, "process", "--cov=app")

    lines = by_process["app/orders.py"]
    assert by_process == by_module
    assert _line_of(pytester, "app/orders.py", 'return "bulk"') in lines
    assert _line_of(pytester, "app/orders.py", 'return "never"') not in lines
    # Every data file was combined into the report; none is left behind.
    assert sorted(p.name for p in pytester.path.glob(".coverage*")) == [".coverage"]


def test_pytest_cov_says_no_false_no_data_warning_under_w_error(
    pytester: pytest.Pytester,
) -> None:
    # The test process runs none of app's code (the workers do): coverage would say
    # "No data was collected" for data that is there, and -W error made it an error.
    write_files(pytester.path, HANDLER)
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--lambda-isolation=process",
        "--cov=app",
        "-W",
        "error",
        "tests/test_orders.py::test_bulk",
        timeout=300,
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    output = result.stdout.str() + result.stderr.str()
    assert "No data was collected" not in output
    assert "INTERNALERROR" not in output
    result.stdout.fnmatch_lines(["app/orders.py *"])


def test_a_process_forked_by_function_code_measures_too(pytester: pytest.Pytester) -> None:
    # Any fork of a worker (function code's, a SnapStart restore's) starts its own
    # measurement and saves it when it ends in os._exit.
    write_files(pytester.path, {**HANDLER, **FORK_TEST})

    lines = _run_with_cov(pytester, "process", "--cov=app", "tests/test_fork.py")["app/orders.py"]

    assert _line_of(pytester, "app/orders.py", 'return "child"') in lines
    assert _line_of(pytester, "app/orders.py", 'return "forked"') in lines
    assert sorted(p.name for p in pytester.path.glob(".coverage*")) == [".coverage"]


SNAPSTART = {
    "app/restored.py": """
        from snapshot_restore_py import register_after_restore

        WARMED = "init"  # runs once, in the snapshot


        @register_after_restore
        def reconnect():
            return "restored"  # runs in every restore


        def handler(event, context):
            return "served"  # runs in restores and in Managed Instances processes
    """,
    "tests/test_restored.py": """
        import pytest


        @pytest.mark.lambda_handler("app.restored.handler", isolation="process", snap_start=True)
        def test_snap_start(lambda_function):
            assert lambda_function.invoke({}) == "served"


        @pytest.mark.lambda_handler(
            "app.restored.handler", isolation="process", per_environment_concurrency=2
        )
        def test_managed_instances(lambda_function):
            assert lambda_function.invoke_many([{}, {}], concurrency=2) == ["served"] * 2
    """,
}


@pytest.mark.parametrize("test", ["test_snap_start", "test_managed_instances"])
def test_snapstart_and_managed_instances_processes_measure_too(
    pytester: pytest.Pytester, test: str
) -> None:
    write_files(pytester.path, {**HANDLER, **SNAPSTART})

    run = _run_with_cov(pytester, "process", "--cov=app", f"tests/test_restored.py::{test}")

    lines = run["app/restored.py"]
    for text in ('WARMED = "init"', 'return "served"'):
        assert _line_of(pytester, "app/restored.py", text) in lines, (text, lines)
    if test == "test_snap_start":
        assert _line_of(pytester, "app/restored.py", 'return "restored"') in lines
    assert sorted(p.name for p in pytester.path.glob(".coverage*")) == [".coverage"]


def test_under_xdist_too(pytester: pytest.Pytester) -> None:
    write_files(pytester.path, HANDLER)

    by_module = _run_with_cov(pytester, "module", "--cov=app", "-n", "2")
    by_process = _run_with_cov(pytester, "process", "--cov=app", "-n", "2")

    assert by_process == by_module
    assert _line_of(pytester, "app/orders.py", 'return "bulk"') in by_process["app/orders.py"]


def test_coverage_run_with_one_data_file(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``coverage run -m pytest`` (not parallel): the workers' data is merged into .coverage."""
    write_files(pytester.path, {**HANDLER, **FORK_TEST})
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    python = sys.executable

    run = pytester.run(
        python, "-m", "coverage", "run", "--source=app", "-m", "pytest", "-p",
        "no:cacheprovider", "--lambda-isolation=process", timeout=300,
    )  # fmt: skip
    assert run.ret == 0, run.stdout.str() + run.stderr.str()
    report = pytester.run(python, "-m", "coverage", "json", "-o", "coverage.json")
    assert report.ret == 0, report.stdout.str() + report.stderr.str()

    lines = _executed(pytester.path / "coverage.json")["app/orders.py"]
    assert _line_of(pytester, "app/orders.py", 'return "bulk"') in lines
    assert _line_of(pytester, "app/orders.py", 'return "child"') in lines
    # The workers' private folder is gone once merged.
    assert not list(temp.glob("lambda-coverage-*"))


def test_a_session_without_coverage_writes_no_data(pytester: pytest.Pytester) -> None:
    write_files(pytester.path, HANDLER)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--lambda-isolation=process")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert not list(pytester.path.glob(".coverage*"))


def _line_of(pytester: pytest.Pytester, name: str, text: str) -> int:
    lines = (pytester.path / name).read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)
