"""per_environment_concurrency=N: N runtime processes per environment, as on Lambda
Managed Instances' Python runtime."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import lambda_function

from pytest_lambda_context import InvocationTimeout, LambdaFunction, RuntimeExitError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

HANDLERS = {
    "app/__init__.py": "",
    "app/mi.py": """
        import os, tempfile, time

        INIT_PID = os.getpid()
        with open(os.environ["INIT_LOG"], "a") as log:
            log.write(f"{INIT_PID}\\n")
        served = 0

        def handler(event, context):
            global served
            served += 1
            if "exit" in event:
                os._exit(event["exit"])
            started = time.time()
            time.sleep(event.get("sleep", 0))
            if "exit_after" in event:  # after its sleep: past the timeout, late code
                raise SystemExit(event["exit_after"])
            open(os.path.join(tempfile.gettempdir(), f"from-{os.getpid()}"), "w").close()
            return {
                "pid": os.getpid(),
                "init_pid": INIT_PID,
                "served": served,
                "max_concurrency": os.environ.get("AWS_LAMBDA_MAX_CONCURRENCY"),
                "init_type": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"],
                "tmp": os.environ["TMPDIR"],
                "start": started,
                "end": time.time(),
            }
        """,
}


@pytest.fixture
def function(
    project: Callable[[dict[str, str]], Path], tmp_path: Path
) -> Iterator[Callable[..., LambdaFunction]]:
    made: list[LambdaFunction] = []
    (tmp_path / "init.log").touch()  # exposed in the workers' private /tmp: it exists

    def make(count: int, **config: object) -> LambdaFunction:
        made.append(
            lambda_function(
                "app.mi.handler",
                isolation="process",
                per_environment_concurrency=count,
                code_root=project(HANDLERS),
                env={"INIT_LOG": str(tmp_path / "init.log")},
                **config,  # type: ignore[arg-type]
            )
        )
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_each_runtime_process_runs_its_own_init_and_serves_requests_at_once(
    function: Callable[..., LambdaFunction], tmp_path: Path
) -> None:
    fn = function(3)
    results = fn.invoke_many([{"sleep": 0.5}] * 3, concurrency=3)

    assert len(fn.environments) == 1
    pids = {r["pid"] for r in results}
    assert len(pids) == 3  # one request per runtime process
    assert all(r["pid"] == r["init_pid"] for r in results)
    assert sorted(map(int, (tmp_path / "init.log").read_text().split())) == sorted(pids)
    # The three requests overlapped in time: the environment took them at once.
    assert max(r["start"] for r in results) < min(r["end"] for r in results)
    assert {r["max_concurrency"] for r in results} == {"3"}
    assert {r["init_type"] for r in results} == {"lambda-managed-instances"}
    # One /tmp for the environment, shared by its processes.
    (tmp,) = {r["tmp"] for r in results}
    written = {p.name for p in Path(tmp).iterdir() if p.name.startswith("from-")}
    assert written == {f"from-{p}" for p in pids}


def test_concurrency_k_needs_ceil_k_over_n_environments(
    function: Callable[..., LambdaFunction],
) -> None:
    fn = function(4)
    fn.invoke_many([{"sleep": 0.1}] * 10, concurrency=10)
    assert len(fn.environments) == 3
    assert {e.id for e in fn.environments} == {"env-1", "env-2", "env-3"}


def test_sequential_requests_reuse_the_most_recent_process_of_one_environment(
    function: Callable[..., LambdaFunction],
) -> None:
    fn = function(2)
    results = [fn.invoke({}) for _ in range(4)]
    assert len(fn.environments) == 1
    assert len({r["pid"] for r in results}) == 1
    assert [r["served"] for r in results] == [1, 2, 3, 4]
    # Initialised ahead of traffic: no request waited for an init.
    assert not any(i.cold for i in fn.invocations)
    assert fn.environments[0].init_duration_ms is not None


def test_a_timed_out_request_runs_on_and_its_environment_keeps_serving(
    function: Callable[..., LambdaFunction],
) -> None:
    # AWS's guide: Managed Instances return the timeout error but do not stop the code;
    # the environment and its other processes go on.
    fn = function(2, timeout=0.5)
    # Both processes at once (sleeping), so that each has served one request.
    pids = {r["pid"] for r in fn.invoke_many([{"sleep": 0.3}] * 2, concurrency=2)}
    assert len(pids) == 2
    environment = fn.environments[0]
    with pytest.raises(InvocationTimeout):
        fn.invoke({"sleep": 1.5})
    assert environment.state == "warm"
    other = fn.invoke({})  # the free process takes it at once, in the same environment
    assert fn.environments == [environment]
    assert other["served"] == 2
    (late,) = pids - {other["pid"]}
    time.sleep(1.5)  # the timed-out request's code has returned meanwhile
    results = fn.invoke_many([{"sleep": 0.2}, {"sleep": 0.2}], concurrency=2)
    assert fn.environments == [environment]
    served = {r["pid"]: r["served"] for r in results}
    # The late process ran the timed-out request to its end, then served again.
    assert served == {late: 3, other["pid"]: 3}
    assert [i.error["errorType"] for i in fn.invocations if i.error] == ["Sandbox.Timedout"]


def test_a_full_environment_sends_the_next_request_to_another(
    function: Callable[..., LambdaFunction],
) -> None:
    fn = function(1, timeout=0.5)
    fn.invoke({})
    with pytest.raises(InvocationTimeout):
        fn.invoke({"sleep": 1})
    # Its one process still runs the timed-out code: a new environment serves.
    assert fn.invoke({})["served"] == 1
    assert [e.state for e in fn.environments] == ["warm", "warm"]


def test_a_crashed_runtime_process_is_gone_and_the_others_serve_on(
    function: Callable[..., LambdaFunction],
) -> None:
    fn = function(2)
    pids = {r["pid"] for r in fn.invoke_many([{"sleep": 0.3}] * 2, concurrency=2)}
    assert len(pids) == 2
    environment = fn.environments[0]
    with pytest.raises(RuntimeExitError, match="exit status 3"):
        fn.invoke({"exit": 3})
    assert environment.state == "warm"
    left = {fn.invoke({})["pid"] for _ in range(3)}
    assert len(left) == 1 and left < pids  # the one process left serves every request
    with pytest.raises(RuntimeExitError):
        fn.invoke({"exit": 4})
    # No runtime process left: the environment is gone, a new one serves.
    assert environment.state == "shutdown"
    assert fn.invoke({})["served"] == 1
    assert len(fn.environments) == 2


def test_a_full_environment_is_left_for_another_in_invoke_many_too(
    function: Callable[..., LambdaFunction],
) -> None:
    # Its one process runs the timed-out code on: the next event does not wait for it.
    fn = function(1, timeout=0.5)
    with pytest.raises(InvocationTimeout):
        fn.invoke_many([{"sleep": 3}, {}], concurrency=1)
    assert [(i.environment_id, i.error is None) for i in fn.invocations[-2:]] == [
        ("env-1", False),
        ("env-2", True),
    ]


@pytest.mark.parametrize("count", [1, 2])
def test_late_code_that_exits_takes_its_runtime_process_along(
    function: Callable[..., LambdaFunction], count: int
) -> None:
    fn = function(count, timeout=0.5)
    fn.invoke({})
    environment = fn.environments[0]
    with pytest.raises(InvocationTimeout):
        fn.invoke({"sleep": 1, "exit_after": 3})
    time.sleep(1.5)  # it has exited by now (after replying, as the runtime does)
    results = [fn.invoke({}) for _ in range(3)]
    if count == 1:  # its last process: the environment is gone, a new one serves
        assert (environment.state, environment.shutdown_reason) == ("shutdown", "exit")
        assert {r["served"] for r in results} == {1, 2, 3}
        assert len(fn.environments) == 2
    else:  # the other process serves every request; none goes to the gone one
        assert environment.state == "warm"
        assert len({r["pid"] for r in results}) == 1
