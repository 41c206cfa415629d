"""Every way a function can fail, reported as Lambda reports it (module isolation)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

import pytest

from pytest_lambda_context import (
    HandlerError,
    InitError,
    InvocationTimeout,
    LambdaError,
    LambdaFunction,
    MarshalError,
    RuntimeExitError,
)

HANDLERS = {
    "ok.py": "def handler(event, context):\n    return {'ok': True}\n",
    "broken_init.py": "import os\nraise RuntimeError('cannot reach the config service')\n",
    "syntax.py": "def handler(event, context)\n    return 1\n",
    "imports_missing.py": "import no_such_dependency\n",
    "not_callable.py": "handler = 'I am a string'\n",
    "raises.py": "def handler(event, context):\n    raise ValueError(f\"bad order {event['id']}\")\n",
    "unmarshalable.py": "def handler(event, context):\n    return {'at': {1, 2}}\n",
    "slow.py": "import time\ndef handler(event, context):\n    while True:\n        time.sleep(0.01)\n",
    "exits.py": "import sys\ndef handler(event, context):\n    sys.exit(3)\n",
    # Waits when asked, at most 5 s (a broken timeout fails the test instead of hanging it).
    "waits.py": (
        "import time\n"
        "def handler(event, context):\n"
        "    deadline = time.monotonic() + 5\n"
        "    while event.get('wait') and time.monotonic() < deadline:\n"
        "        time.sleep(0.01)\n"
        "    return 'not interrupted'\n"
    ),
    "hard_exit.py": "import os\ndef handler(event, context):\n    os._exit(7)\n",
    "env_changer.py": (
        "import os, sys\n"
        "def handler(event, context):\n"
        "    os.environ['LEAK'] = 'yes'\n"
        "    sys.path.insert(0, '/nowhere')\n"
        "    return os.environ.get('LEAK')\n"
    ),
}


@pytest.fixture
def root(project):
    return project(HANDLERS)


def run(root, handler, event=None, **config):
    function = LambdaFunction(handler, code_root=root, **config)
    try:
        return function, function.invoke(event or {})
    except LambdaError as exc:
        return function, exc
    finally:
        function.close()


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
            "Unable to import module 'imports_missing': No module named 'no_such_dependency'",
        ),
        ("syntax.handler", "Runtime.UserCodeSyntaxError", "Syntax error in module 'syntax'"),
        ("ok.nothing", "Runtime.HandlerNotFound", "Handler 'nothing' missing on module 'ok'"),
        ("broken_init.handler", "RuntimeError", "cannot reach the config service"),
    ],
)
def test_init_errors_carry_lambda_error_types(root, handler, error_type, message):
    function, error = run(root, handler)
    assert isinstance(error, InitError)
    assert error.payload["errorType"] == error_type
    assert message in error.payload["errorMessage"]
    assert set(error.payload) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    assert function.environments[0].state == "shutdown"
    assert function.invocations[0].error == error.payload


def test_an_init_error_in_init_code_keeps_the_user_traceback(root):
    _, error = run(root, "broken_init.handler")
    assert isinstance(error.__cause__, RuntimeError)
    assert any("broken_init.py" in line for line in error.payload["stackTrace"])
    assert not any("pytest_lambda_context" in line for line in error.payload["stackTrace"])


def test_after_an_init_error_the_next_invocation_retries_init(root):
    with LambdaFunction("broken_init.handler", code_root=root) as function:
        for _ in range(2):
            with pytest.raises(InitError):
                function.invoke({})
        assert [e.state for e in function.environments] == ["shutdown", "shutdown"]


def test_a_handler_error_chains_the_original_exception(root):
    function, error = run(root, "raises.handler", {"id": 42})
    assert isinstance(error, HandlerError)
    assert error.payload["errorType"] == "ValueError"
    assert error.payload["errorMessage"] == "bad order 42"
    assert isinstance(error.__cause__, ValueError)
    assert any("raises.py" in line for line in error.payload["stackTrace"])
    # A handler error does not end the environment.
    assert function.environments[0].state in ("warm", "shutdown")
    assert function.environments[0].shutdown_reason == "closed"


def test_a_result_that_is_not_json_is_a_marshal_error(root):
    _, error = run(root, "unmarshalable.handler")
    assert isinstance(error, MarshalError)
    assert error.payload["errorType"] == "Runtime.MarshalError"
    assert (
        "Unable to marshal response: Object of type set is not JSON serializable"
        in (error.payload["errorMessage"])
    )


def test_a_timeout_interrupts_the_handler_and_recycles_the_environment(root):
    with LambdaFunction("slow.handler", code_root=root, timeout=0.2) as function:
        with pytest.raises(InvocationTimeout) as failure:
            function.invoke({})
        assert failure.value.payload["errorType"] == "Sandbox.Timedout"
        request_id = function.invocations[0].request_id
        assert failure.value.payload == {
            "errorType": "Sandbox.Timedout",
            "errorMessage": f"RequestId: {request_id} Error: Task timed out after 0.20 seconds",
        }
        assert function.environments[0].state == "shutdown"
        with pytest.raises(InvocationTimeout):
            function.invoke({})
        assert len(function.environments) == 2
        assert function.invocations[1].cold


def test_an_alarm_set_by_someone_else_is_kept(root):
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *args: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30)
        with LambdaFunction("ok.handler", code_root=root) as function:
            function.invoke({})
            # Still pending, less only the time the invocation took.
            assert 20 < signal.getitimer(signal.ITIMER_REAL)[0] <= 30
        signal.setitimer(signal.ITIMER_REAL, 0)
        assert fired == []
    finally:
        signal.signal(signal.SIGALRM, previous)


def test_no_alarm_of_ours_outlives_the_function_on_a_loaded_machine(root, monkeypatch):
    # The timer is left armed after an invocation (disarming would cost a system call
    # each time); closing must disarm it even when the clock reading that tells it
    # apart comes late, or SIGALRM with its default action kills the test process.
    from pytest_lambda_context.environments import module

    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL
    with LambdaFunction("ok.handler", code_root=root) as function:
        function.invoke({})
        assert signal.getitimer(signal.ITIMER_REAL)[0] > 0  # our leftover
        real = module._real_monotonic
        monkeypatch.setattr(module, "_real_monotonic", lambda: real() + 1.0)
    handler, pending = signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL)[0]
    signal.setitimer(signal.ITIMER_REAL, 0)  # were it still armed, it would end this run
    assert handler is signal.SIG_DFL
    assert pending == 0


def test_a_warm_invocation_gets_its_own_time_not_what_the_last_one_left(root):
    # The timer left armed by one invocation is due before the next one's time is up:
    # kept (no system call), it must not end the next invocation early.
    with LambdaFunction("waits.handler", code_root=root, timeout=0.6) as function:
        function.invoke({})
        time.sleep(0.3)
        started = time.monotonic()
        with pytest.raises(InvocationTimeout):
            function.invoke({"wait": True})
        assert time.monotonic() - started >= 0.55


@pytest.mark.parametrize(
    "disarm",
    [lambda: signal.setitimer(signal.ITIMER_REAL, 0), lambda: signal.alarm(0)],
    ids=["setitimer", "alarm"],
)
def test_a_timer_disarmed_between_invocations_still_times_out_the_next(root, disarm):
    # Our leftover timer, cancelled by someone else: the next invocation arms its own.
    with LambdaFunction("waits.handler", code_root=root, timeout=0.3) as function:
        function.invoke({})
        disarm()
        with pytest.raises(InvocationTimeout):
            function.invoke({"wait": True})


@pytest.mark.parametrize(("handler", "status"), [("exits.handler", 3), ("hard_exit.handler", 7)])
def test_exiting_the_runtime_shuts_the_environment_down(root, handler, status):
    with LambdaFunction(handler, code_root=root) as function:
        with pytest.raises(RuntimeExitError) as failure:
            function.invoke({})
        assert failure.value.payload["errorType"] == "Runtime.ExitError"
        assert f"exit status {status}" in failure.value.payload["errorMessage"]
        assert function.environments[0].state == "shutdown"
    assert os._exit.__module__ == "posix"


def test_changes_to_environ_and_path_stay_inside_the_environment(root):
    path_before = list(sys.path)
    with LambdaFunction("env_changer.handler", code_root=root) as function:
        assert function.invoke({}) == "yes"
        assert "LEAK" not in os.environ
        assert sys.path == path_before
        # ...but persist within the environment, as on Lambda.
        assert function.invoke({}) == "yes"
    assert "LEAK" not in os.environ
    assert os.getenv("LEAK") is None
    # The process's C environment (what subprocesses inherit) is put back too.
    libc = ctypes.CDLL(None)
    libc.getenv.restype = ctypes.c_char_p
    assert libc.getenv(b"LEAK") is None


def test_a_file_name_in_the_handler_fails_as_on_lambda(root):
    # Lambda imports "ok.py" as a module path, and fails; so does the emulation.
    _, error = run(root, "ok.py.handler")
    assert isinstance(error, InitError)
    assert error.payload["errorType"] == "Runtime.ImportModuleError"
    assert "Unable to import module 'ok.py'" in error.payload["errorMessage"]


@pytest.mark.parametrize(
    ("source", "status"), [("import sys\nsys.exit(4)\n", 4), ("import os\nos._exit(5)\n", 5)]
)
def test_init_code_that_exits_is_an_init_error(project, source, status):
    root = project({"quits.py": source + "def handler(event, context):\n    return 1\n"})
    with LambdaFunction("quits.handler", code_root=root) as function:
        with pytest.raises(InitError) as failure:
            function.invoke({})
        assert failure.value.payload["errorType"] == "Runtime.ExitError"
        assert f"exit status {status}" in failure.value.payload["errorMessage"]
        assert function.environments[0].state == "shutdown"


def test_variables_the_handler_deleted_come_back_for_subprocesses(project, monkeypatch):
    monkeypatch.setenv("KEEP_ME", "yes")
    root = project(
        {"deleter.py": "import os\ndef handler(event, context):\n    os.environ.pop('KEEP_ME')\n"}
    )
    with LambdaFunction("deleter.handler", code_root=root, inherit_env=["KEEP_ME"]) as function:
        function.invoke({})
        # Between invocations too: the test's C environment is its own.
        libc = ctypes.CDLL(None)
        libc.getenv.restype = ctypes.c_char_p
        assert libc.getenv(b"KEEP_ME") == b"yes"
    assert libc.getenv(b"KEEP_ME") == b"yes"


def test_a_variable_name_lambda_would_refuse_is_refused(project):
    root = project(HANDLERS)
    with pytest.raises(ValueError, match="variable names of letters, digits and underscores"):
        LambdaFunction("ok.handler", code_root=root, env={"A=B": "1"})


def test_a_shorter_foreign_alarm_still_fires_on_time_during_an_invocation(project):
    root = project(
        {
            "naps.py": "import time\ndef handler(event, context):\n    time.sleep(0.6)\n    return 1\n"
        }
    )
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *args: fired.append(time.monotonic()))
    try:
        with LambdaFunction("naps.handler", code_root=root, timeout=5) as function:
            function.invoke({})  # leaves our own timer pending, as it does after each call
            started = time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, 0.2, 0.2)  # someone else's, repeating
            assert function.invoke({}) == 1
            time.sleep(0.3)
        signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    # It fired during the invocation (about 0.2 s in), not only after it, and it kept
    # repeating afterwards.
    assert fired and fired[0] - started < 0.5
    assert len(fired) >= 2


def test_no_alarm_is_left_pending_when_time_monotonic_is_faked(root, monkeypatch):
    # After idle(), freezegun fakes time.monotonic while function code runs (and, when
    # the caller's module is under the code root, for the plugin's frames too): the
    # timer's bookkeeping must stay on the clock ITIMER_REAL runs on.
    real = time.monotonic
    with LambdaFunction("ok.handler", code_root=root) as function:
        function.invoke({})
        monkeypatch.setattr(time, "monotonic", lambda: real() + 3600)
        function.invoke({})
        monkeypatch.undo()
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0
