"""memory_mb: process isolation kills an environment that goes past it, as Lambda does
(Runtime.OutOfMemory, Max Memory Used at the limit, the next invocation cold); module
isolation reports it and does not enforce it."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import FunctionMaker, function_maker

from pytest_lambda_context import InitError, RuntimeExitError
from pytest_lambda_context.environments import memory_cgroup

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

HANDLER = """
import os

HELD = []
if os.environ.get("AT_INIT_MB"):
    HELD.append(bytearray(int(os.environ["AT_INIT_MB"]) * 1024 * 1024))

def handler(event, context):
    if event.get("child_mb"):  # a process the handler starts counts too
        import subprocess, sys
        code = f"bytearray({event['child_mb']} * 1024 * 1024)"
        return subprocess.run([sys.executable, "-c", code]).returncode
    if event.get("mb"):
        HELD.append(bytearray(event["mb"] * 1024 * 1024))
        if event.get("free"):
            HELD.clear()  # a peak, gone by the time the invocation returns
    return len(HELD)
"""


@pytest.fixture
def cgroups() -> None:
    """Skips where no memory cgroup can be made (the limit is then polled)."""
    reason = memory_cgroup.unavailable_reason()
    if reason is not None:
        pytest.skip(f"no memory cgroup can be made here: {reason}")


@pytest.fixture
def make(project: Callable[[dict[str, str]], Path]) -> Iterator[FunctionMaker]:
    code = project({"app.py": HANDLER})
    with function_maker("app.handler", code_root=code) as maker:
        yield maker


@pytest.mark.parametrize("free", [False, True], ids=["held", "peak"])
def test_an_environment_past_its_memory_is_killed_as_lambda_kills_it(
    make: FunctionMaker, free: bool
) -> None:
    function = make(isolation="process", memory_mb=128)
    assert function.invoke({}) == 0
    with pytest.raises(RuntimeExitError) as raised:
        function.invoke({"mb": 200, "free": free})
    failed = function.invocations[-1]
    assert raised.value.payload == {
        "errorType": "Runtime.OutOfMemory",
        "errorMessage": (
            f"RequestId: {failed.request_id} Error: Runtime exited with error: signal: killed"
        ),
    }
    assert "\tMax Memory Used: 128 MB\tStatus: error\tError Type: Runtime.OutOfMemory" in (
        failed.report_line
    )
    assert function.environments[0].state == "shutdown"
    assert function.invoke({}) == 0
    assert function.invocations[-1].cold


def test_under_its_memory_size_nothing_happens(make: FunctionMaker) -> None:
    function = make(isolation="process", memory_mb=512)
    assert function.invoke({"mb": 200}) == 1
    assert function.invoke({}) == 1  # the same warm environment
    assert 200 < function.invocations[-1].max_memory_used_mb < 512


def test_the_kernel_holds_the_processes_the_handler_starts_to_the_limit(
    cgroups: None, make: FunctionMaker
) -> None:
    # A cgroup per worker, as Lambda's sandbox: the child going past the limit is
    # killed by the kernel (reading the worker's own memory would never see it).
    function = make(isolation="process", memory_mb=256)
    assert function.invoke({"child_mb": 400}) == -signal.SIGKILL
    assert function.invoke({"child_mb": 20}) == 0  # the environment lives on
    assert function.environments[0].state == "warm"


def test_an_init_past_the_memory_size_is_an_init_failure(make: FunctionMaker) -> None:
    function = make(isolation="process", memory_mb=128, env={"AT_INIT_MB": "200"})
    with pytest.raises(InitError) as raised:
        function.invoke({})
    assert raised.value.payload["errorType"] == "Runtime.OutOfMemory"


def test_module_isolation_reports_the_memory_and_does_not_enforce_it(
    make: FunctionMaker,
) -> None:
    function = make(memory_mb=128)
    assert function.invoke({"mb": 200}) == 1


def test_a_workers_cgroup_is_made_ahead_and_removed_once_it_is_reaped(
    cgroups: None, make: FunctionMaker
) -> None:
    # Made by the template with its blank worker (moving a process into a cgroup costs
    # the kernel about 10 ms, which a cold start must not wait for).
    folder = memory_cgroup.session_folder()
    assert folder is not None
    function = make(isolation="process", memory_mb=256)
    function.invoke({})
    pid = function.environments[0].pid
    path = os.path.join(folder, f"worker-{pid}")
    with open(os.path.join(path, "cgroup.procs")) as procs:
        assert str(pid) in procs.read().split()
    v2 = os.path.exists(os.path.join(path, "memory.max"))
    with open(os.path.join(path, "memory.max" if v2 else "memory.limit_in_bytes")) as limit:
        # What 256 MB leaves beside the memory the worker shares with the template.
        assert 64 << 20 < int(limit.read()) <= 256 << 20
    function.close()
    deadline = time.monotonic() + 10
    while os.path.isdir(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.isdir(path)
