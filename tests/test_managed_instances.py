"""per_environment_concurrency=N: N runtime processes per environment, as on Lambda
Managed Instances' Python runtime."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_lambda_context import InvocationTimeout, LambdaFunction

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
            started = time.time()
            time.sleep(event.get("sleep", 0))
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
            LambdaFunction(
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


def test_a_timeout_ends_the_environment_and_all_its_processes(
    function: Callable[..., LambdaFunction],
) -> None:
    fn = function(2, timeout=0.5)
    fn.invoke({})
    environment = fn.environments[0]
    with pytest.raises(InvocationTimeout):
        fn.invoke({"sleep": 2})
    assert environment.state == "shutdown"
    assert fn.invoke({})["served"] == 1  # a new environment
    assert len(fn.environments) == 2
