"""snap_start=True: one init in a snapshot, every environment a restore of it.

Real handler files, real hooks from AWS's snapshot_restore_py, real sockets; the
Elasticsearch tests run a pytest session (pytester) against the embedded server
through the es fixture's counting proxy.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import FunctionMaker, function_maker

from pytest_lambda_context import (
    InitError,
    LambdaFunction,
    SnapStartError,
    SnapStartTimeoutError,
)
from pytest_lambda_context.environments import snapstart

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

HANDLERS = {
    "app/__init__.py": "",
    "app/hooks.py": """
        import os, random, secrets, tempfile
        from snapshot_restore_py import register_after_restore, register_before_snapshot

        ORDER = []
        INIT_PID = os.getpid()
        with open(os.environ["INIT_LOG"], "a") as log:
            log.write(f"{INIT_PID}\\n")
        with open(os.path.join(tempfile.gettempdir(), "made-at-init.txt"), "w") as f:
            f.write("init")

        @register_before_snapshot
        def first_registered():
            ORDER.append("before:first")

        def second_registered(label, *, suffix):
            ORDER.append(f"before:{label}{suffix}")

        register_before_snapshot(second_registered, "second", suffix="!")

        @register_after_restore
        def restored_one():
            ORDER.append("after:one")

        @register_after_restore
        def restored_two():
            ORDER.append(f"after:two:{os.environ['AWS_LAMBDA_INITIALIZATION_TYPE']}")

        def handler(event, context):
            if event.get("write"):
                with open(os.path.join(tempfile.gettempdir(), event["write"]), "w"):
                    pass
            return {
                "order": ORDER,
                "init_pid": INIT_PID,
                "pid": os.getpid(),
                "init_type": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"],
                "log_group": os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME"),
                "log_stream": os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME"),
                "context_log": [context.log_group_name, context.log_stream_name],
                "random": random.random(),
                "token": secrets.token_hex(8),
                "tmp": sorted(os.listdir(tempfile.gettempdir())),
            }
        """,
    "app/raw.py": """
        import os, select, socket

        # A raw client, connected at init: the connection belongs to the snapshot.
        sock = socket.create_connection(("127.0.0.1", int(os.environ["PORT"])), timeout=5)
        sock.sendall(b"init\\n")
        greeting = sock.recv(100).decode()

        def handler(event, context):
            looks_open = not select.select([sock], [], [], 0)[0]
            try:
                sock.sendall(b"again\\n")
                answer = sock.recv(100).decode()
            except OSError as exc:
                answer = type(exc).__name__
            return {"greeting": greeting, "looked_open": looks_open, "answer": answer}
        """,
    "app/failing.py": """
        import os, time
        from snapshot_restore_py import register_after_restore, register_before_snapshot

        if os.environ.get("FAIL") == "before":
            @register_before_snapshot
            def refuse():
                raise RuntimeError("cannot snapshot this")
        if os.environ.get("FAIL") == "after":
            @register_after_restore
            def refuse():
                raise ValueError("cannot restore this")
        if os.environ.get("FAIL") == "slow":
            @register_after_restore
            def slow():
                time.sleep(float(os.environ["SLEEP"]))
        if os.environ.get("FAIL") == "init":
            raise KeyError("missing at init")
        if os.environ.get("FAIL") == "skip-before":
            import pytest

            @register_before_snapshot
            def skip():
                pytest.skip("no snapshot today")
        if os.environ.get("FAIL") == "skip-after":
            import pytest

            @register_after_restore
            def skip():
                pytest.skip("no restore today")

        def handler(event, context):
            return "ok"
        """,
}


@pytest.fixture
def task(project: Callable[[dict[str, str]], Path]) -> Path:
    return project(HANDLERS)


@pytest.fixture
def make(task: Path, tmp_path: Path) -> Iterator[FunctionMaker]:
    (tmp_path / "init.log").touch()  # exposed in the workers' private /tmp: it exists
    with function_maker(
        isolation="process",
        snap_start=True,
        code_root=task,
        env={"INIT_LOG": str(tmp_path / "init.log")},
    ) as maker:
        yield maker


@pytest.fixture
def echo_server() -> Iterator[socket.socket]:
    """A line echo server: answers each chunk with ``echo:`` and the chunk."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(100):
                conn.sendall(b"echo:" + data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=serve, args=(conn,), daemon=True)
            thread.start()
            threads.append(thread)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    yield listener
    stop.set()
    # close() alone does not wake a thread blocked in accept() on Linux: shutdown does.
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    acceptor.join(timeout=5)


def test_init_runs_once_in_the_snapshot_and_hooks_run_in_lambdas_order(
    make: Callable[..., LambdaFunction], tmp_path: Path
) -> None:
    function = make("app.hooks.handler")
    first = function.invoke({})
    second = function.cold_start().invoke({})

    assert (tmp_path / "init.log").read_text().splitlines() == [str(first["init_pid"])]
    assert first["init_pid"] not in (first["pid"], second["pid"])
    assert first["pid"] != second["pid"]
    # Before-snapshot hooks: last registered first; after-restore: in registration order.
    expected = ["before:second!", "before:first", "after:one", "after:two:snap-start"]
    assert first["order"] == second["order"] == expected
    assert first["init_type"] == "snap-start"
    # Not set in SnapStart functions (AWS's SnapStart monitoring page).
    assert first["log_group"] is None and first["log_stream"] is None
    # The context reads them from the environment, as awslambdaric does: None too.
    assert first["context_log"] == [None, None]


def test_a_restore_reports_restore_duration_not_init_duration(
    make: Callable[..., LambdaFunction],
) -> None:
    function = make("app.hooks.handler")
    function.invoke({})
    function.invoke({})

    environment = function.environments[0]
    cold, warm = function.invocations
    assert environment.init_duration_ms is None
    assert environment.restore_duration_ms is not None and environment.restore_duration_ms > 0
    assert cold.cold and cold.init_duration_ms is None
    assert cold.restore_duration_ms == environment.restore_duration_ms
    assert cold.billed_restore_duration_ms is not None and cold.billed_restore_duration_ms >= 1
    assert "Init Duration" not in cold.report_line
    assert f"Restore Duration: {cold.restore_duration_ms:.2f} ms" in cold.report_line
    assert f"Billed Restore Duration: {cold.billed_restore_duration_ms} ms" in cold.report_line
    assert not warm.cold and warm.restore_duration_ms is None
    assert "Restore Duration" not in warm.report_line
    assert function.snapshot.init_duration_ms > 0
    assert function.cold_starts == 1


def test_publish_makes_the_snapshot_ahead_of_traffic(
    make: Callable[..., LambdaFunction], tmp_path: Path
) -> None:
    function = make("app.hooks.handler")
    snapshot = function.publish()
    assert (tmp_path / "init.log").read_text().count("\n") == 1  # init ran at publish
    assert function.snapshot is snapshot
    assert function.environments == []
    assert function.publish() is snapshot  # published once

    function.invoke_many([{}] * 4, concurrency=4)

    assert len(function.environments) == 4
    assert (tmp_path / "init.log").read_text().count("\n") == 1  # four restores, no init
    assert all(e.restore_duration_ms is not None for e in function.environments)


def test_restored_environments_share_the_snapshots_random_state_not_its_entropy(
    make: Callable[..., LambdaFunction],
) -> None:
    function = make("app.hooks.handler")
    one = function.invoke({})
    two = function.cold_start().invoke({})

    # As on Lambda: random resumes the snapshot's state in every restored environment
    # (a fork alone would have reseeded it); the kernel's entropy is fresh in each.
    assert one["random"] == two["random"]
    assert one["token"] != two["token"]


def test_tmp_holds_the_snapshots_files_and_each_restore_writes_its_own(
    make: Callable[..., LambdaFunction],
) -> None:
    function = make("app.hooks.handler")
    one = function.invoke({"write": "one.txt"})
    two = function.cold_start().invoke({})

    # (The listing also shows the host folders that a private /tmp keeps visible.)
    assert {"made-at-init.txt", "one.txt"} <= set(one["tmp"])
    assert "made-at-init.txt" in two["tmp"] and "one.txt" not in two["tmp"]


def test_a_connection_from_init_looks_open_and_resets_at_first_use_in_each_restore(
    make: Callable[..., LambdaFunction], echo_server: socket.socket
) -> None:
    function = make("app.raw.handler", env={"PORT": str(echo_server.getsockname()[1])})
    one = function.invoke({})
    two = function.cold_start().invoke({})
    again = function.environments[0].invoke({})

    for result in (one, two):
        assert result == {
            "greeting": "echo:init\n",
            "looked_open": True,
            "answer": "ConnectionResetError",
        }
    # Each restore had a broken connection of its own: env-1's reset did not touch env-2's.
    # In env-1 the reset connection now shows it: readable, and dead.
    assert again["looked_open"] is False
    assert again["answer"] in ("BrokenPipeError", "ConnectionResetError")
    # Opened once, by init: the snapshot's, not an environment's.
    assert function.connections.per_environment() == {"snapshot": 1}
    assert [e.request_id for e in function.snapshot.connections.events] == [None]


def test_the_snapshot_closes_its_connections_as_its_machine_goes_away(
    make: Callable[..., LambdaFunction], echo_server: socket.socket
) -> None:
    accepted: list[socket.socket] = []
    watcher = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def accept_one() -> None:
        conn, _ = watcher.accept()
        accepted.append(conn)
        conn.sendall(b"hi")
        done.set()

    thread = threading.Thread(target=accept_one, daemon=True)
    thread.start()
    function = make("app.raw.handler", env={"PORT": str(watcher.getsockname()[1])})
    with watcher:
        function.publish()
        thread.join(timeout=5)
        assert done.is_set()
        (server_side,) = accepted
        with server_side:
            server_side.settimeout(5)
            assert server_side.recv(100) == b"init\n"
            # The peer sees the snapshot's end close once the snapshot is taken.
            assert server_side.recv(100) == b""


def test_a_before_snapshot_hook_that_raises_fails_the_publish(
    make: Callable[..., LambdaFunction],
) -> None:
    function = make("app.failing.handler", env={"FAIL": "before"})
    with pytest.raises(InitError) as raised:
        function.publish()
    assert raised.value.error_type == "Runtime.BeforeSnapshotError"
    assert raised.value.error_message == "RuntimeError: cannot snapshot this"
    assert "refuse" in "".join(raised.value.payload["stackTrace"])
    # A failed version stays failed: an invocation reports the same error.
    with pytest.raises(InitError, match="cannot snapshot this"):
        function.invoke({})
    assert function.invocations[0].error["errorType"] == "Runtime.BeforeSnapshotError"


@pytest.mark.parametrize("where", ["before", "after"])
def test_pytest_skip_in_a_hook_skips_the_test(
    make: Callable[..., LambdaFunction], where: str
) -> None:
    # The test's outcome, as in handler code: not the runtime's exit.
    function = make("app.failing.handler", env={"FAIL": f"skip-{where}"})
    with pytest.raises(
        pytest.skip.Exception, match=f"no {'snapshot' if where == 'before' else 'restore'} today"
    ):
        function.invoke({})


def test_init_code_that_raises_fails_the_publish(make: Callable[..., LambdaFunction]) -> None:
    function = make("app.failing.handler", env={"FAIL": "init"})
    with pytest.raises(InitError) as raised:
        function.invoke({})
    assert raised.value.error_type == "KeyError"


def test_an_after_restore_hook_that_raises_fails_the_restore(
    make: Callable[..., LambdaFunction],
) -> None:
    function = make("app.failing.handler", env={"FAIL": "after"})
    with pytest.raises(SnapStartError) as raised:
        function.invoke({})
    assert raised.value.error_type == "SnapStartException"
    assert "The afterRestore() runtime hook encountered an error" in raised.value.error_message
    assert "ValueError: cannot restore this" in raised.value.error_message
    environment = function.environments[0]
    assert environment.state == "shutdown"
    # The next request is another restore of the same snapshot, and fails the same way.
    with pytest.raises(SnapStartError):
        function.invoke({})
    assert len(function.environments) == 2


def test_after_restore_hooks_past_the_limit_are_a_snapstart_timeout(
    make: Callable[..., LambdaFunction], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapstart, "RESTORE_TIMEOUT", 0.5)  # Lambda's 10 s, shortened
    function = make("app.failing.handler", env={"FAIL": "slow", "SLEEP": "5"})
    with pytest.raises(SnapStartTimeoutError) as raised:
        function.invoke({})
    assert raised.value.error_type == "SnapStartTimeoutException"
    assert function.environments[0].state == "shutdown"


def test_a_quick_hook_is_within_the_limit(make: Callable[..., LambdaFunction]) -> None:
    function = make("app.failing.handler", env={"FAIL": "slow", "SLEEP": "0.2"})
    assert function.invoke({}) == "ok"
    assert function.environments[0].restore_duration_ms >= 200


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"snap_start": True}, "snap_start=True needs isolation='process'"),
        (
            {"per_environment_concurrency": 4},
            "per_environment_concurrency=4 needs isolation='process'",
        ),
    ],
)
def test_module_isolation_is_refused_with_the_remedy(
    task: Path, config: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        LambdaFunction("app.hooks.handler", code_root=task, **config)  # type: ignore[arg-type]


def test_configurations_lambda_refuses_are_refused(
    make: Callable[..., LambdaFunction], task: Path
) -> None:
    with pytest.raises(ValueError, match="Managed Instances do not support SnapStart"):
        LambdaFunction(
            "app.hooks.handler",
            isolation="process",
            snap_start=True,
            per_environment_concurrency=2,
            code_root=task,
        )
    with pytest.raises(TypeError, match="snap_start must be True or False"):
        LambdaFunction("app.hooks.handler", isolation="process", snap_start="yes", code_root=task)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="provisioned concurrency with SnapStart"):
        make("app.hooks.handler").provision(1)
    with pytest.raises(ValueError, match="snap_start=True"):
        LambdaFunction("app.hooks.handler", isolation="process", code_root=task).publish()


def test_the_marker_reports_module_isolation_as_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_it="""
        import pytest

        @pytest.mark.lambda_handler("app.main.handler", snap_start=True, isolation="module")
        def test_it(lambda_function):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*snap_start=True needs isolation='process'*"])
