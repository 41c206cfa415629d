"""breakpoint() in function code: a debugger in the terminal (module isolation), or a
message that says how to get one (process isolation), never a bare BdbQuit."""

from __future__ import annotations

import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

HANDLER = """
    import pdb

    def handler(event, context):
        answer = event["n"] * 2
        if event.get("explicit"):
            pdb.set_trace()
        else:
            breakpoint()
        return answer
"""
TESTS = """
    import pytest

    pytestmark = pytest.mark.lambda_handler("app.debugged.handler")

    def test_breakpoint(lambda_function):
        assert lambda_function.invoke({"n": 21}) == 42

    def test_pdb_set_trace(lambda_function):
        assert lambda_function.invoke({"n": 21, "explicit": True}) == 42

    @pytest.mark.lambda_handler("app.debugged.handler", isolation="module")
    def test_marked_module(lambda_function):
        assert lambda_function.invoke({"n": 21}) == 42
"""


@pytest.fixture
def debugged(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.mkpydir("app")
    pytester.makepyfile(**{"app/debugged": HANDLER, "test_debugged": TESTS})
    return pytester


@pytest.mark.parametrize("test", ["test_breakpoint", "test_pdb_set_trace"])
def test_in_a_worker_the_failure_says_how_to_debug(debugged: pytest.Pytester, test: str) -> None:
    result = debugged.runpytest_subprocess(
        "-p", "no:cacheprovider", "--lambda-isolation=process", f"test_debugged.py::{test}"
    )

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = result.stdout.str()
    result.stdout.fnmatch_lines(["*HandlerError: BdbQuit: a debugger (breakpoint() or pdb)*"])
    assert "env-1 runs in a worker process (isolation='process')" in output
    assert "isolation='module'" in output and "--lambda-isolation=module" in output


def test_in_module_isolation_the_debugger_stops_in_the_terminal(
    debugged: pytest.Pytester,
) -> None:
    # pdb reads the commands from pytest's standard input, as it would from a terminal.
    result = debugged.run(
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
        "test_debugged.py::test_marked_module", "--lambda-isolation=process",
        stdin=b"p answer * 1000\ncontinue\n", timeout=60,
    )  # fmt: skip

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["*PDB set_trace*", "*debugged.py*handler()*", "(Pdb) 42000"])
