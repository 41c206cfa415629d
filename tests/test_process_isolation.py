"""``isolation="process"``: worker processes forked from a clean template, real handlers."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import FunctionMaker, function_maker, wait_for, write_project

from pytest_lambda_context import (
    HandlerError,
    InitError,
    InvocationTimeout,
    LambdaError,
    LambdaFunction,
    MarshalError,
    RuntimeExitError,
)
from pytest_lambda_context.environments.process import ProcessEnvironment
from pytest_lambda_context.environments.template import WorkerTemplate

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

HANDLERS = {
    "app/__init__.py": "",
    "app/helper.py": "LOADED = []\n",
    "app/main.py": """
        import os, sys, time, datetime, uuid, socket, signal
        from app import helper

        helper.LOADED.append(1)
        count = 0
        client = uuid.uuid4().hex  # stands for a datastore client made at init
        held = []

        def handler(event, context):
            global count
            count += 1
            action = event.get("action")
            if action == "raise":
                raise ValueError(f"bad order {event['id']}")
            if action == "sleep":
                started = time.time()
                time.sleep(event["seconds"])
                return {"start": started, "end": time.time()}
            if action == "exit":
                sys.exit(event["status"])
            if action == "_exit":
                os._exit(event["status"])
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if action == "marshal":
                return {"at": {1, 2}}
            if action == "connect":
                address = (event.get("host", "127.0.0.1"), event["port"])
                held.append(socket.create_connection(address, timeout=5))
            if action == "allocate":
                held.append(bytearray(event["mb"] * 1024 * 1024))
            if action == "boto3":
                import boto3
                held.append(boto3.client("s3"))
            if action == "spawn":
                import subprocess
                child = subprocess.Popen(["sleep", "60"])
                held.append(child)
                return {"child": child.pid, "pid": os.getpid()}
            if action == "echo":
                print(event["text"])
                return {"echo": event["data"]}
            if action == "setenv":
                os.environ["LEAK"] = "yes"
            return {
                "count": count,
                "client": client,
                "helper_loads": len(helper.LOADED),
                "pid": os.getpid(),
                "ppid": os.getppid(),
                "cwd": os.getcwd(),
                "path0": sys.path[0],
                "env": {k: os.environ.get(k) for k in event.get("env", [])},
                "now": time.time(),
                "year": datetime.datetime.now().year,
                "remaining": context.get_remaining_time_in_millis(),
                "request_id": context.aws_request_id,
            }
    """,
    "app/connects_at_init.py": """
        import os, socket
        conn = socket.create_connection(("127.0.0.1", int(os.environ["PORT"])))
        def handler(event, context):
            return "ok"
    """,
    "app/sandbox.py": """
        import os, subprocess, sys

        def handler(event, context):
            action = event["action"]
            cached = event.get("path", "")
            if action == "write_tmp":
                with open(cached, "w") as file:
                    file.write(event["text"])
            if action == "daemon":
                # A new session, and its parent gone: out of the worker's process group.
                child = subprocess.Popen(
                    [sys.executable, "-c", "import os, time\\nif os.fork(): os._exit(0)\\n"
                     "print(os.getpid(), flush=True)\\ntime.sleep(60)"],
                    start_new_session=True, stdout=subprocess.PIPE,
                )
                grandchild = int(child.stdout.readline())
                child.wait()
                return {"daemon": grandchild}
            if action == "sleep":
                import time
                time.sleep(event["seconds"])
            if action == "print":
                print(event["text"])
                print(event["text"], file=sys.stderr)
            return {
                "cached": open(cached).read() if os.path.isfile(cached) else None,
                "tmpdir": os.environ.get("TMPDIR"),
                "code_root": os.path.isdir(os.environ["LAMBDA_TASK_ROOT"]),
            }
    """,
    "broken_init.py": "raise RuntimeError('cannot reach the config service')\n",
    "exits_at_init.py": "import sys\nsys.exit(5)\n",
    "syntax.py": "def handler(event, context)\n    return 1\n",
    "imports_missing.py": "import no_such_dependency\n",
    "not_callable.py": "handler = 'I am a string'\n",
    "ok.py": "def handler(event, context):\n    return {'ok': True}\n",
    "slow_init.py": "import time\ntime.sleep(30)\n",
}


@pytest.fixture(scope="module")
def template() -> Iterator[WorkerTemplate]:
    # One template for the module's tests, as the plugin keeps one per session.
    template = WorkerTemplate()
    yield template
    template.close()


@pytest.fixture
def root(project: Callable[[dict[str, str]], Path]) -> Path:
    return project(HANDLERS)


@pytest.fixture
def make(root: Path, template: WorkerTemplate) -> Iterator[FunctionMaker]:
    with function_maker(
        "app.main.handler", code_root=root, isolation="process", worker_pool=template
    ) as maker:
        yield maker


def process_state(pid: int) -> str | None:
    """The state letter in /proc/<pid>/stat (None: no such process)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # gone before, or while, it was read
        return None


def gone(pid: int) -> bool:
    # A zombie has ended; whoever its parent now is may reap it at leisure.
    return process_state(pid) in (None, "Z", "X")


def env_of(function: LambdaFunction, index: int = 0) -> ProcessEnvironment:
    environment = function.environments[index]
    assert isinstance(environment, ProcessEnvironment)
    return environment


# --- cold and warm ----------------------------------------------------------------------


def test_state_survives_between_warm_invocations_in_one_worker(make):
    function = make()
    first, second = function.invoke({}), function.invoke({})
    assert (first["count"], second["count"]) == (1, 2)
    assert first["pid"] == second["pid"] != os.getpid()
    assert first["client"] == second["client"]
    cold, warm = function.invocations
    assert (cold.cold, warm.cold) == (True, False)
    assert cold.init_duration_ms is not None and cold.init_duration_ms > 0
    assert "Init Duration" in cold.report_line and "Init Duration" not in warm.report_line
    # The function's code was never imported into the test process.
    assert "app.main" not in sys.modules


def test_each_environment_is_its_own_process_with_its_own_client(make):
    function = make()
    a, b = function.cold_start(), function.cold_start()
    ra, rb = a.invoke({}), b.invoke({})
    assert ra["pid"] != rb["pid"]
    assert ra["client"] != rb["client"]
    assert ra["count"] == rb["count"] == 1
    assert ra["helper_loads"] == rb["helper_loads"] == 1
    # Both forked from the same template, not from the test process.
    assert ra["ppid"] == rb["ppid"] != os.getpid()


def test_the_template_has_the_libraries_preloaded(template):
    ours, theirs = socket.socketpair()
    with ours, theirs:
        pid = template.fork(theirs)
    # Its channel closed, the worker exits by itself; the template reaps it for us.
    status = template.reap(pid)
    assert status is not None and os.waitstatus_to_exitcode(status) == 0
    # Each library if installed (elasticsearch client 7 comes without elastic_transport).
    for name in ("elasticsearch", "elastic_transport", "boto3", "botocore", "urllib3"):
        installed = importlib.util.find_spec(name) is not None
        assert (name in template.preloaded) == installed, (name, installed)
    assert "freezegun" in template.preloaded


def test_the_module_is_out_of_reach(make):
    function = make()
    environment = function.cold_start()
    environment.invoke({})
    with pytest.raises(RuntimeError, match="isolation='module'"):
        _ = environment.module


def test_provisioned_environments_are_initialised_ahead(make):
    function = make()
    (environment,) = function.provision(1)
    assert environment.state == "warm"
    result = environment.invoke({"env": ["AWS_LAMBDA_INITIALIZATION_TYPE"]})
    assert result["env"] == {"AWS_LAMBDA_INITIALIZATION_TYPE": "provisioned-concurrency"}
    assert not function.invocations[0].cold


# --- the worker's environment ---------------------------------------------------------


def test_environment_variables_cwd_sys_path_and_tmpdir(make, root, monkeypatch):
    monkeypatch.setenv("FROM_THE_TEST_PROCESS", "inherited")
    monkeypatch.setenv("SECRET", "the developer's")
    function = make(
        env={"TABLE": "orders"}, function_name="orders", inherit_env=["FROM_THE_TEST_PROCESS"]
    )
    a, b = function.cold_start(), function.cold_start()
    names = [
        "TABLE",
        "FROM_THE_TEST_PROCESS",
        "SECRET",
        "PATH",
        "_HANDLER",
        "AWS_LAMBDA_FUNCTION_NAME",
        "TMPDIR",
    ]
    ra, rb = a.invoke({"env": names}), b.invoke({"env": names})
    assert ra["env"]["TABLE"] == "orders"
    assert ra["env"]["FROM_THE_TEST_PROCESS"] == "inherited"  # asked for
    assert ra["env"]["SECRET"] is None  # a clean environment, as on Lambda
    assert ra["env"]["PATH"] == os.environ["PATH"]
    assert ra["env"]["_HANDLER"] == "app.main.handler"
    assert ra["env"]["AWS_LAMBDA_FUNCTION_NAME"] == "orders"
    assert ra["cwd"] == ra["path0"] == str(root)
    tmp_a, tmp_b = ra["env"]["TMPDIR"], rb["env"]["TMPDIR"]
    assert tmp_a != tmp_b and os.path.isdir(tmp_a)
    a.shutdown()
    # Removed by the template once the worker has exited, off the test's path.
    assert wait_for(lambda: not os.path.exists(tmp_a))


def test_a_handler_that_changes_os_environ_leaves_the_test_process_alone(make):
    function = make()
    assert function.invoke({"action": "setenv", "env": ["LEAK"]})["env"] == {"LEAK": "yes"}
    assert "LEAK" not in os.environ


def test_idle_moves_the_clock_the_handler_sees(make):
    function = make()
    before = function.invoke({})
    function.idle(hours=2)
    after = function.invoke({})
    assert after["now"] - before["now"] >= 2 * 3600 - 5
    assert function.invocations[1].cold is False
    # The deadline moves with the clock: the full timeout is still ahead.
    assert 2000 < after["remaining"] <= 3000


def test_max_memory_used_is_the_workers_peak(make):
    function = make(memory_mb=512)  # room for the 64 MB above the worker's own
    function.invoke({})
    baseline = function.invocations[0].max_memory_used_mb
    function.invoke({"action": "allocate", "mb": 64})
    assert function.invocations[1].max_memory_used_mb >= baseline + 60


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handler", "error_type", "message"),
    [
        ("nohandler", "Runtime.MalformedHandlerName", "Bad handler 'nohandler'"),
        (
            "missing.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'missing': No module named 'missing'",
        ),
        (
            "imports_missing.handler",
            "Runtime.ImportModuleError",
            "No module named 'no_such_dependency'",
        ),
        ("syntax.handler", "Runtime.UserCodeSyntaxError", "Syntax error in module 'syntax'"),
        ("ok.nothing", "Runtime.HandlerNotFound", "Handler 'nothing' missing on module 'ok'"),
        ("broken_init.handler", "RuntimeError", "cannot reach the config service"),
        ("exits_at_init.handler", "Runtime.ExitError", "exit status 5"),
    ],
)
def test_init_errors_carry_lambda_error_types(make, handler, error_type, message):
    function = make(handler)
    with pytest.raises(InitError) as failure:
        function.invoke({})
    assert failure.value.payload["errorType"] == error_type
    assert message in failure.value.payload["errorMessage"]
    environment = env_of(function)
    assert environment.state == "shutdown"
    assert environment.pid is None or wait_for(lambda: gone(environment.pid))
    # The next invocation is a new environment that tries its init again.
    with pytest.raises(InitError):
        function.invoke({})
    assert len(function.environments) == 2


def test_an_init_phase_past_its_limit_is_stopped_and_retried_under_the_timeout(make, monkeypatch):
    from pytest_lambda_context.environments import base

    monkeypatch.setattr(base, "INIT_TIMEOUT", 0.3)
    function = make("slow_init.handler", timeout=0.6)
    with pytest.raises(InvocationTimeout) as failure:
        function.invoke({})
    # Stopped at the init limit, run again inside the invocation, which then timed out.
    assert failure.value.payload["errorMessage"] == (
        f"RequestId: {function.invocations[-1].request_id} Error: Task timed out after 0.60 seconds"
    )
    environment = env_of(function)
    assert environment.init_output[-1].startswith("INIT_REPORT Init Duration: ")
    assert environment.init_output[-1].endswith("\tPhase: init\tStatus: timeout")
    assert environment.invocations[0].output[-1].endswith("\tPhase: invoke\tStatus: timeout")
    assert environment.pid is not None and wait_for(lambda: gone(environment.pid))


def test_init_code_traceback_comes_back(make):
    function = make("broken_init.handler")
    with pytest.raises(InitError) as failure:
        function.invoke({})
    assert any("broken_init.py" in line for line in failure.value.payload["stackTrace"])


def test_a_handler_error_brings_the_stack_trace_text_and_keeps_the_environment(make):
    function = make()
    with pytest.raises(HandlerError) as failure:
        function.invoke({"action": "raise", "id": 42})
    payload = failure.value.payload
    assert payload["errorType"] == "ValueError"
    assert payload["errorMessage"] == "bad order 42"
    trace = "".join(payload["stackTrace"])
    assert "app/main.py" in trace and "raise ValueError" in trace
    assert "pytest_lambda_context" not in trace
    assert env_of(function).state == "warm"
    assert function.invoke({})["count"] == 2


def test_a_result_that_is_not_json_is_a_marshal_error(make):
    function = make()
    with pytest.raises(MarshalError) as failure:
        function.invoke({"action": "marshal"})
    assert failure.value.payload["errorType"] == "Runtime.MarshalError"
    assert "Object of type set is not JSON serializable" in failure.value.payload["errorMessage"]
    assert function.invoke({})["count"] == 2


def test_a_timeout_kills_the_worker_and_the_next_invocation_is_cold(make):
    function = make(timeout=1.0)
    pid = function.invoke({})["pid"]
    started = time.monotonic()
    with pytest.raises(InvocationTimeout) as failure:
        function.invoke({"action": "sleep", "seconds": 30})
    assert time.monotonic() - started < 5
    assert failure.value.payload["errorType"] == "Sandbox.Timedout"
    assert failure.value.payload["errorMessage"] == (
        f"RequestId: {function.invocations[-1].request_id} Error: Task timed out after 1.00 seconds"
    )
    assert env_of(function).state == "shutdown"
    assert wait_for(lambda: gone(pid))
    after = function.invoke({})
    assert after["count"] == 1 and after["pid"] != pid
    assert function.invocations[-1].cold


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"action": "exit", "status": 3}, "Runtime exited with error: exit status 3"),
        ({"action": "exit", "status": 0}, "Runtime exited without providing a reason"),
        ({"action": "_exit", "status": 7}, "Runtime exited with error: exit status 7"),
        ({"action": "kill"}, "Runtime exited with error: signal: killed"),
    ],
)
def test_a_crash_shuts_the_environment_down_and_the_next_invocation_is_cold(make, event, message):
    function = make()
    pid = function.invoke({})["pid"]
    with pytest.raises(RuntimeExitError) as failure:
        function.invoke(event)
    assert failure.value.payload["errorType"] == "Runtime.ExitError"
    assert message in failure.value.payload["errorMessage"]
    assert env_of(function).state == "shutdown"
    assert wait_for(lambda: gone(pid))
    after = function.invoke({})
    assert after["count"] == 1 and after["pid"] != pid
    assert function.invocations[-1].cold


def test_large_events_and_results_cross_the_channel(make):
    function = make(memory_mb=512)  # the event, its copies and the result: past 128 MB
    data = "x" * (5 * 1024 * 1024)
    assert function.invoke({"action": "echo", "text": "", "data": data})["echo"] == data


def test_handler_output_lands_in_the_tests_captured_output(pytester):
    write_project(
        pytester,
        HANDLERS,
        ini=PYTEST_INI,
        test_out="""
            import pytest

            @pytest.mark.lambda_handler("app.main.handler")
            def test_prints(lambda_function):
                lambda_function.invoke({"action": "echo", "text": "said by the handler", "data": 1})
                assert False
        """,
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Captured stdout call*", "said by the handler"])


# --- freezing, parallelism, cleanup ---------------------------------------------------


def test_without_pidfd_crashes_and_shutdowns_still_reap(make, monkeypatch):
    from pytest_lambda_context.environments import process as process_isolation

    monkeypatch.setattr(process_isolation, "_HAVE_PIDFD", False)  # kernels before 5.3
    function = make()
    with pytest.raises(RuntimeExitError):
        function.invoke({"action": "_exit", "status": 2})
    pid = function.invoke({})["pid"]
    function.close()
    assert wait_for(lambda: gone(pid))


def test_workers_are_frozen_between_invocations(make):
    function = make()
    pid = function.invoke({})["pid"]
    assert wait_for(lambda: process_state(pid) == "T"), process_state(pid)
    assert function.invoke({})["count"] == 2  # thawed for the invocation
    assert wait_for(lambda: process_state(pid) == "T")
    function.close()
    assert wait_for(lambda: gone(pid))


@pytest.mark.parametrize("end", ["shutdown", "timeout"])
def test_processes_the_handler_started_are_frozen_and_ended_with_the_worker(make, end):
    function = make(timeout=2.0)
    started = function.invoke({"action": "spawn"})
    child = started["child"]
    assert wait_for(lambda: process_state(child) == "T")  # frozen with the worker
    if end == "timeout":
        with pytest.raises(InvocationTimeout):
            function.invoke({"action": "sleep", "seconds": 30})
    else:
        function.close()
    assert wait_for(lambda: gone(child)), process_state(child)


def test_each_environment_has_a_private_literal_tmp(make, tmp_path):
    path = f"/tmp/cache-{uuid.uuid4().hex}.json"  # as Lambda code writes it: literally
    function = make("app.sandbox.handler")
    first = function.invoke({"action": "write_tmp", "text": "env-1's", "path": path})
    env_1 = env_of(function)
    second = function.cold_start().invoke({"action": "read", "path": path})
    if env_1.tmp_refused is not None:
        # A kernel without user namespaces: /tmp is shared, and the environment says why.
        os.remove(path)
        assert "kernel" in env_1.tmp_refused or "Linux" in env_1.tmp_refused
        assert second["cached"] == "env-1's"
        return
    assert env_1.invoke({"action": "read", "path": path})["cached"] == "env-1's"  # warm again
    assert second["cached"] is None  # env-2 has its own /tmp
    assert not os.path.exists(path)  # and the host's is untouched
    # What the environment needs from the host's /tmp is still there: its code root
    # (this test's tmp_path lives under /tmp) and its TMPDIR.
    assert str(tmp_path).startswith("/tmp/")
    assert first["code_root"] and os.path.isdir(first["tmpdir"])
    # Its /tmp is a folder of the host, seen from here.
    assert os.path.isfile(os.path.join(first["tmpdir"], os.path.basename(path)))


@pytest.mark.parametrize("end", ["shutdown", "timeout", "crash"])
def test_processes_in_a_new_session_end_with_their_environment(make, end):
    function = make("app.sandbox.handler", timeout=2.0)
    daemon = function.invoke({"action": "daemon"})["daemon"]
    assert not gone(daemon)
    function.invoke({"action": "read"})
    assert not gone(daemon)  # it lives as long as its environment
    if end == "timeout":
        with pytest.raises(InvocationTimeout):
            function.invoke({"action": "sleep", "seconds": 30})
    elif end == "crash":
        os.kill(env_of(function).pid, signal.SIGKILL)  # as the OOM killer would
        with pytest.raises(RuntimeExitError):
            function.invoke({"action": "read"})
    else:
        function.close()
    # Reaping is the template's business; a crash is noticed at the next reap.
    function.close()
    assert wait_for(lambda: gone(daemon)), process_state(daemon)


def test_handler_output_reaches_the_capture_of_each_test(pytester):
    write_project(
        pytester,
        HANDLERS,
        ini=PYTEST_INI,
        test_capture="""
            import pytest

            pytestmark = pytest.mark.lambda_handler("app.sandbox.handler")

            @pytest.mark.parametrize("n", [1, 2, 3])
            def test_capfd(lambda_function, capfd, n):
                lambda_function.invoke({"action": "print", "text": f"handler says {n}"})
                out, err = capfd.readouterr()
                assert out == f"handler says {n}\\n"
                assert err == f"handler says {n}\\n"

            @pytest.mark.warm_start
            @pytest.mark.parametrize("n", [1, 2])
            def test_warm_capfd(lambda_env, capfd, n):
                lambda_env.invoke({"action": "print", "text": f"warm {n}"})
                assert capfd.readouterr().out == f"warm {n}\\n"
        """,
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=5)


def test_invoke_many_runs_the_environments_in_parallel(make):
    function = make()
    # Initialised first, so a slow fork on a busy machine cannot stagger the starts.
    function.provision(3)
    results = function.invoke_many([{"action": "sleep", "seconds": 0.5}] * 3, concurrency=3)
    assert len(function.environments) == 3
    # Every handler started before any of them ended: they overlapped.
    assert max(r["start"] for r in results) < min(r["end"] for r in results)


def test_many_cold_starts_leave_no_fd_or_process_behind(make):
    function = make()
    function.cold_start().invoke({})  # the template is up and ready
    before = len(os.listdir("/proc/self/fd"))
    pids = []
    for _ in range(30):
        environment = function.cold_start()
        pids.append(environment.invoke({})["pid"])
        environment.shutdown()
    assert len(os.listdir("/proc/self/fd")) == before
    # Reaped by the template as they exit, off the test's path.
    assert wait_for(lambda: all(gone(pid) for pid in pids))


def test_a_function_without_a_pool_starts_and_stops_its_own_template(root):
    with LambdaFunction("app.main.handler", code_root=root, isolation="process") as function:
        result = function.invoke({})
        template = function.worker_pool
        assert template is not None and template.pid == result["ppid"]
    assert wait_for(lambda: gone(result["pid"]))
    assert process_state(result["ppid"]) is None  # the template was reaped, no zombie


# --- connections ----------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server
    server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
    server.close()
    thread.join(5)
    for conn in accepted:
        conn.close()


def test_connections_opened_in_the_worker_are_counted(make, listener):
    port = listener.getsockname()[1]
    function = make("app.connects_at_init.handler", env={"PORT": str(port)})
    function.invoke({})
    function.invoke({})
    assert function.connections.opened() == 1
    (event,) = function.connections.events
    assert event.request_id is None  # opened at init
    assert event.port == port and event.environment_id == "env-1"
    assert event.frame is not None and event.frame.startswith(
        "app/connects_at_init.py:3 in <module>"
    )

    other = make()
    other.invoke({"action": "connect", "port": port})
    other.invoke({"action": "connect", "port": port})
    assert other.connections.opened(port=port) == 2
    assert [i.connections_opened for i in other.invocations] == [1, 1]
    assert env_of(other).connections.opened() == 2
    assert other.connections.events[0].frame.startswith("app/main.py:")


def test_boto3_clients_made_in_the_worker_are_counted(make):
    function = make()
    function.invoke({"action": "boto3"})
    function.invoke({})
    assert function.clients_created("s3") == 1
    assert [i.clients_created for i in function.invocations] == [1, 0]
    assert env_of(function).clients[0].frame.startswith("app/main.py:")


def test_network_policy_applies_in_the_worker(make):
    function = make(network="loopback")
    with pytest.raises(HandlerError) as failure:
        function.invoke({"action": "connect", "port": 9200, "host": "192.0.2.1"})
    assert failure.value.payload["errorType"] == "NetworkBlockedError"
    assert "192.0.2.1" in failure.value.payload["errorMessage"]


# --- through pytest ---------------------------------------------------------------------

PYTEST_INI = """
[pytest]
filterwarnings = error
lambda_isolation = process
"""


def test_the_plugin_runs_process_isolation(pytester):
    write_project(
        pytester,
        HANDLERS,
        ini=PYTEST_INI,
        test_fn="""
            import os
            import pytest

            pytestmark = pytest.mark.lambda_handler("app.main.handler")

            def test_cold_then_warm(lambda_function):
                assert lambda_function.invoke({})["count"] == 1
                assert lambda_function.invoke({})["count"] == 2
                assert lambda_function.environments[0].isolation == "process"

            def test_parallel(lambda_function):
                lambda_function.provision(2)
                results = lambda_function.invoke_many(
                    [{"action": "sleep", "seconds": 0.5}] * 2, concurrency=2
                )
                assert max(r["start"] for r in results) < min(r["end"] for r in results)

            @pytest.mark.warm_start
            def test_warm_one(lambda_env):
                assert lambda_env.invoke({})["count"] == 1

            @pytest.mark.warm_start
            def test_warm_two(lambda_env):
                assert lambda_env.invoke({})["count"] == 2

            def test_one_template_per_session(make_lambda_function):
                a = make_lambda_function("app.main.handler")
                b = make_lambda_function("ok.handler")
                assert a.worker_pool is b.worker_pool is not None
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=5)


INTERRUPTIBLE = """
    import os, pytest

    @pytest.mark.lambda_handler("app.pids.handler", timeout=60, inherit_env=["PIDS_DIR"])
    def test_long(lambda_function):
        if os.environ["CONCURRENCY"] == "1":
            lambda_function.invoke({})
        else:
            lambda_function.invoke_many([{}, {}], concurrency=2)
"""

PIDS_HANDLER = """
    import os, time
    def handler(event, context):
        # One file per worker, named by its pid, holding the template's pid.
        path = os.path.join(os.environ["PIDS_DIR"], str(os.getpid()))
        with open(path + ".tmp", "w") as f:
            f.write(str(os.getppid()))
        os.rename(path + ".tmp", path)
        time.sleep(60)
"""


def start_interruptible(
    pytester: pytest.Pytester, concurrency: int
) -> tuple[subprocess.Popen[bytes], list[int], int]:
    """pytest in a subprocess, its handlers asleep in ``concurrency`` workers."""
    write_project(pytester, HANDLERS, ini=PYTEST_INI, test_long=INTERRUPTIBLE)
    (pytester.path / "app" / "pids.py").write_text(textwrap.dedent(PIDS_HANDLER))
    pids_dir = pytester.mkdir("pids")
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_long.py"],
        cwd=pytester.path,
        env={**os.environ, "PIDS_DIR": str(pids_dir), "CONCURRENCY": str(concurrency)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )

    def written() -> list[Path]:
        return [p for p in pids_dir.iterdir() if p.name.isdigit()]

    if not wait_for(lambda: len(written()) == concurrency, timeout=60):
        process.kill()
        output = process.communicate()[0].decode()
        pytest.fail(f"the handlers never ran:\n{output}")
    workers = [int(p.name) for p in written()]
    (template,) = {int(p.read_text()) for p in written()}
    return process, workers, template


@pytest.mark.parametrize("concurrency", [1, 2])
def test_ctrl_c_during_an_invocation_leaves_no_worker_behind(pytester, concurrency):
    process, workers, template = start_interruptible(pytester, concurrency)
    process.send_signal(signal.SIGINT)
    # Promptly: not after the handlers' 60 s sleep, nor after their timeout.
    output = process.communicate(timeout=20)[0].decode()
    assert "KeyboardInterrupt" in output
    for pid in [*workers, template]:
        assert wait_for(lambda: gone(pid)), process_state(pid)  # noqa: B023


def test_a_killed_pytest_takes_its_workers_along(pytester):
    process, workers, template = start_interruptible(pytester, 2)
    process.kill()
    process.communicate(timeout=30)
    for pid in [*workers, template]:
        assert wait_for(lambda: gone(pid), timeout=5), process_state(pid)  # noqa: B023


def test_lambda_errors_are_raised_in_the_test_process(make):
    # The error classes are the test process's own: nothing is unpickled from the worker.
    function = make()
    with pytest.raises(LambdaError) as failure:
        function.invoke({"action": "raise", "id": 1})
    # The cause is the handler's traceback as text, so pytest can show where it failed.
    cause = failure.value.__cause__
    assert type(cause).__name__ == "RemoteTraceback"
    assert "raise ValueError" in str(cause)
    assert str(cause).rstrip().endswith("ValueError: bad order 1")


def test_a_module_the_template_could_not_have_seen_is_imported(tmp_path, monkeypatch):
    # The template listed the code root's folder (it imported a module from it) before
    # the handler's file existed, and the folder's mtime does not tell: each worker
    # must still look afresh there.
    root = tmp_path / "code"
    root.mkdir()
    (root / "existing.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(root))
    template = WorkerTemplate(preload=["existing"])
    template.start()
    try:
        template.ready()
        assert template.preloaded == ["existing"]
        listed = root.stat()
        (root / "fresh.py").write_text("def handler(event, context):\n    return 'fresh'\n")
        os.utime(root, ns=(listed.st_atime_ns, listed.st_mtime_ns))
        with LambdaFunction(
            "fresh.handler", code_root=root, isolation="process", worker_pool=template
        ) as function:
            assert function.invoke({}) == "fresh"
    finally:
        template.close()
