"""The template's blank workers (forked ahead) and shutdowns left to the template."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import wait_for

from pytest_lambda_context import LambdaFunction
from pytest_lambda_context.environments.sandbox import children
from pytest_lambda_context.environments.template import WorkerTemplate

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

HANDLER = """
    import os, socket

    def handler(event, context):
        if event.get("write"):
            with open("/tmp/mine.txt", "w") as f:
                f.write(context.aws_request_id)
        if event.get("connect"):
            try:
                socket.create_connection(("192.0.2.1", 9), timeout=1)
            except Exception as exc:
                return type(exc).__name__
        return {
            "pid": os.getpid(),
            "pgid": os.getpgid(0),
            "tmp": sorted(os.listdir("/tmp")),
            "TZ": os.environ.get("TZ"),
            "TMPDIR": os.environ["TMPDIR"],
        }
"""


@pytest.fixture
def root(project: Callable[[dict[str, str]], Path]) -> Path:
    return project({"app.py": textwrap.dedent(HANDLER)})


@pytest.fixture(params=[2, 0], ids=["pool", "no-pool"])
def template(request: pytest.FixtureRequest) -> Iterator[WorkerTemplate]:
    pool = WorkerTemplate(preload=[], pool=request.param)
    yield pool
    pool.close()


def _function(root: Path, template: WorkerTemplate, **kwargs: object) -> LambdaFunction:
    return LambdaFunction(
        "app.handler", code_root=root, isolation="process", worker_pool=template, **kwargs
    )


def _blank_workers(template: WorkerTemplate, busy: set[int]) -> set[int]:
    assert template.pid is not None
    return set(children(template.pid)) - busy


def test_the_template_keeps_blank_workers_and_hands_them_out(
    root: Path, template: WorkerTemplate
) -> None:
    with _function(root, template) as function:
        first = function.invoke({})["pid"]
        # Refilled while nothing happens: as many blank workers as the pool holds.
        assert wait_for(lambda: len(_blank_workers(template, {first})) == template.pool)
        blanks = _blank_workers(template, {first})
        second = function.cold_start()
        seen = second.invoke({})
        if template.pool:
            assert seen["pid"] in blanks  # no fork on the test's path
        else:
            assert blanks == set()
        assert seen["pgid"] == seen["pid"]  # leads its own group, as a forked worker does
        assert seen["TZ"] == ":UTC"


def test_a_blank_worker_becomes_a_private_environment(root: Path, template: WorkerTemplate) -> None:
    with _function(root, template, network="loopback") as function:
        one = function.cold_start()
        one.invoke({"write": True})
        two = function.cold_start()
        listing = two.invoke({})["tmp"]
        if one.tmp_refused is None and two.tmp_refused is None:
            assert "mine.txt" not in listing  # each its own /tmp
            assert "mine.txt" in one.invoke({})["tmp"]
        # The network guard came with the blank worker and holds.
        assert two.invoke({"connect": True}) == "NetworkBlockedError"


def test_a_shutdown_leaves_the_worker_and_its_folder_to_the_template(
    root: Path, template: WorkerTemplate
) -> None:
    with _function(root, template) as function:
        environment = function.cold_start()
        seen = environment.invoke({"write": True})
        pid, folder = seen["pid"], seen["TMPDIR"]
        environment.shutdown()
        # The template reaps it (no zombie left) and removes its folder.
        assert wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=20)
        assert wait_for(lambda: not os.path.exists(folder), timeout=20)
        assert function.invoke({})["pid"] != pid


def test_sessions_without_process_isolation_start_no_template(pytester: pytest.Pytester) -> None:
    (pytester.path / "app.py").write_text(textwrap.dedent(HANDLER))
    pytester.makepyfile(
        test_module_only="""
            import sys
            import pytest

            @pytest.mark.lambda_handler("app.handler")
            def test_module(lambda_function):
                lambda_function.invoke({})

            def test_nothing_of_process_isolation_was_loaded():
                loaded = [m for m in sys.modules if m.startswith("pytest_lambda_context")]
                assert "pytest_lambda_context.environments.template" not in loaded
                assert "pytest_lambda_context.environments.blank_pool" not in loaded
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
