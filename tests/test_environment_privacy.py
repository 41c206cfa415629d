"""Module isolation: what a real environment holds privately is each environment's own,
and nothing function code changes reaches the test (or another environment)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import FunctionMaker, function_maker, write_project

from pytest_lambda_context import RuntimeExitError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

HANDLERS = {
    "app/__init__.py": "",
    "app/state.py": """
        import logging, os, signal, subprocess, sys, time

        FUNCTION = None  # set by a test: the LambdaFunction, for nested invocations
        orders = logging.getLogger("orders")
        orders.addHandler(logging.NullHandler())
        if os.environ.get("DISABLE_LOGGING"):
            logging.disable(logging.CRITICAL)

        def handler(event, context):
            action = event.get("action")
            if action == "change":
                os.makedirs("moved", exist_ok=True)
                os.chdir("moved")
                os.umask(0o077)
                sys.setrecursionlimit(4321)
                sys.excepthook = lambda *args: None
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                logging.getLogger().setLevel(logging.DEBUG)
                logging.getLogger().addHandler(logging.NullHandler())
                logging.getLogger("botocore").setLevel(logging.CRITICAL)
                os.environ["ADDED"] = "by the handler"
            if action == "raise":
                raise event["what"] == "keyboard" and KeyboardInterrupt() or GeneratorExit()
            if action == "fork":
                pid = os.fork()
                if pid == 0:
                    os._exit(7)
                return {"status": os.waitpid(pid, 0)[1] >> 8}
            if action == "sigint":
                os.kill(os.getpid(), signal.SIGINT)  # as a Ctrl-C at the terminal
                time.sleep(5)
            if action == "nested":
                return FUNCTION.invoke({"action": "where"})
            umask = os.umask(0)
            os.umask(umask)
            return {
                "cwd": os.getcwd(),
                "umask": umask,
                "limit": sys.getrecursionlimit(),
                "hook": sys.excepthook is sys.__excepthook__,
                "sigterm": str(signal.getsignal(signal.SIGTERM)),
                "root_level": logging.getLogger().level,
                "orders_handlers": len(orders.handlers),
                "disabled": logging.root.manager.disable,
                "shell": subprocess.run(
                    ["sh", "-c", "echo $ADDED/$TZ/$SECRET"], capture_output=True, text=True
                ).stdout.strip(),
                "zone": time.strftime("%Z", time.localtime(0)),
                "env": os.environ.get("ENV_ID"),
            }
    """,
}


@pytest.fixture
def root(project: Callable[[dict[str, str]], Path]) -> Path:
    return project(HANDLERS)


@pytest.fixture
def make(root: Path) -> Iterator[FunctionMaker]:
    with function_maker("app.state.handler", code_root=root) as maker:
        yield maker


def test_function_code_changes_stay_in_its_environment(make, root):
    test_cwd = os.getcwd()
    test_umask = os.umask(0o022)
    os.umask(test_umask)
    test_limit = sys.getrecursionlimit()
    # Not always sys.__excepthook__: on Python 3.10 the exceptiongroup backport installs its own.
    test_hook = sys.excepthook
    test_sigterm = signal.getsignal(signal.SIGTERM)
    test_level = logging.getLogger().level
    function = make()
    first = function.invoke({})
    assert first["cwd"] == str(root)  # LAMBDA_TASK_ROOT, as on Lambda
    function.invoke({"action": "change"})
    # The test sees its own state between invocations...
    assert os.getcwd() == test_cwd
    assert os.umask(test_umask) == test_umask
    assert sys.getrecursionlimit() == test_limit
    assert sys.excepthook is test_hook
    assert signal.getsignal(signal.SIGTERM) == test_sigterm
    assert logging.getLogger().level == test_level
    assert logging.getLogger("botocore").level != logging.CRITICAL
    assert "ADDED" not in os.environ
    # ...and the environment its own, at its next invocation.
    again = function.invoke({})
    assert again["cwd"] == str(root / "moved")
    assert again["umask"] == 0o077
    assert again["limit"] == 4321
    assert again["hook"] is False
    assert again["sigterm"] == str(signal.SIG_IGN)
    assert again["root_level"] == logging.DEBUG
    assert again["shell"].startswith("by the handler/")  # subprocesses see its variables
    # A second environment starts afresh.
    other = function.cold_start().invoke({})
    assert other["cwd"] == str(root)
    assert other["umask"] == test_umask
    assert other["limit"] == 1000  # a fresh Python's
    assert other["hook"] is True
    assert other["root_level"] == logging.WARNING
    assert other["shell"].startswith("/")


def test_loggers_of_each_environment_are_its_own(make):
    function = make()
    counts = [function.cold_start().invoke({})["orders_handlers"] for _ in range(3)]
    assert counts == [1, 1, 1]  # not 1, 2, 3
    assert "orders" not in logging.root.manager.loggerDict
    assert function.environments[0].invoke({})["orders_handlers"] == 1


def test_logging_disable_in_init_stays_in_the_environment(make, caplog):
    function = make(env={"DISABLE_LOGGING": "1"})
    assert function.invoke({})["disabled"] == logging.CRITICAL
    assert logging.root.manager.disable == 0
    logging.getLogger("after").warning("the test still logs")
    assert "the test still logs" in caplog.text


def test_the_test_process_environment_does_not_reach_function_code(make, monkeypatch):
    monkeypatch.setenv("SECRET", "hunter2")
    result = make().invoke({})
    assert result["shell"].endswith("/:UTC/")  # no SECRET in a subprocess either
    assert make(inherit_env=["SECRET"]).invoke({})["shell"].endswith("/:UTC/hunter2")
    assert make(inherit_env=True).invoke({})["shell"].endswith("/:UTC/hunter2")


def test_inherit_env_takes_names_or_true(make):
    with pytest.raises(TypeError, match=r"inherit_env='SECRET': give a list of variable names"):
        make(inherit_env="SECRET")


def test_tz_utc_is_in_effect_for_function_code(make, monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        function = make()
        assert function.invoke({})["zone"] == "UTC"
        assert time.strftime("%Z", time.localtime(0)) == "JST"  # the test's, between
        assert function.invoke({})["zone"] == "UTC"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_forked_child_exits_as_it_would_on_lambda(make):
    assert make().invoke({"action": "fork"})["status"] == 7


@pytest.mark.parametrize("what", ["keyboard", "generator"])
def test_a_base_exception_from_function_code_is_a_crash(make, what):
    function = make()
    function.invoke({})
    with pytest.raises(RuntimeExitError) as raised:
        function.invoke({"action": "raise", "what": what})
    assert raised.value.error_type == "Runtime.ExitError"
    assert function.environments[0].state == "shutdown"
    assert function.invoke({})["cwd"]  # a new environment serves the next one


def test_a_nested_invocation_goes_to_another_environment(make):
    function = make()
    environment = function.cold_start()
    environment.invoke({})
    environment.module.FUNCTION = function
    result = environment.invoke({"action": "nested"})
    assert [e.id for e in function.environments] == ["env-1", "env-2"]
    assert result["cwd"]
    assert function.invocations[-2].environment_id == "env-2"  # the nested one


def test_nothing_leaks_into_later_tests(pytester):
    write_project(
        pytester,
        HANDLERS,
        test_session="""
        import logging, os, signal, sys
        import pytest

        pytestmark = pytest.mark.lambda_handler("app.state.handler", env={"DISABLE_LOGGING": "1"})

        def test_function_changes_everything(lambda_function, tmp_path):
            lambda_function.invoke({"action": "change"})
            lambda_function.invoke({"action": "raise", "what": "keyboard"}) if False else None

        def test_later_test_is_unaffected(caplog):
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
            assert sys.getrecursionlimit() == 1000
            assert os.getcwd()
            logging.getLogger("x").warning("seen")
            assert "seen" in caplog.text
            assert "orders" not in logging.root.manager.loggerDict

        def test_keyboard_interrupt_from_a_handler_does_not_end_the_session(lambda_function):
            from pytest_lambda_context import RuntimeExitError
            with pytest.raises(RuntimeExitError):
                lambda_function.invoke({"action": "raise", "what": "keyboard"})

        def test_still_running():
            pass
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_a_real_ctrl_c_still_stops_pytest(pytester):
    write_project(
        pytester,
        HANDLERS,
        test_session="""
        import os, signal, pytest

        @pytest.mark.lambda_handler("app.state.handler")
        def test_interrupted(lambda_function):
            lambda_function.invoke({"action": "sigint"})

        def test_never_runs():
            pass
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*Interrupt*"])
    result.stdout.no_fnmatch_line("*test_never_runs*PASSED*")


def test_os_exit_from_another_thread_really_exits(pytester):
    write_project(
        pytester,
        HANDLERS,
        test_session="""
        import os, threading, time, pytest

        @pytest.mark.lambda_handler("app.state.handler")
        def test_watchdog(lambda_function):
            lambda_function.invoke({})
            # pytest-timeout's thread method ends a hung session this way.
            threading.Thread(target=os._exit, args=(3,)).start()
            time.sleep(30)
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 3


C_ENVIRONMENT_AFTER_CLOSE = """
import gc, os, subprocess, sys
from pytest_lambda_context import LambdaFunction

for round in range(5):
    function = LambdaFunction("app.state.handler", code_root=sys.argv[1])
    function.invoke({})
    os.environ[f"SET_AFTER_{round}"] = "x" * 50  # setenv: the C library copies the array
    function.close()  # the last user: the plugin lets go of its environment arrays
    gc.collect()
    junk = [bytes([65 + i % 26]) * 300 for i in range(20000)]  # reuse freed memory
    listed = subprocess.run(["env", "-0"], capture_output=True, check=True).stdout
    garbage = [e for e in listed.split(b"\\0") if e and not e[:1].isalpha() and e[:1] != b"_"]
    if garbage or f"SET_AFTER_{round}=".encode() not in listed:
        print("garbage", garbage[:3])
        sys.exit(1)
print("clean")
"""


def test_a_subprocess_started_after_functions_close_gets_a_sound_environment(
    root: Path,
) -> None:
    # Module isolation swaps the C library's environment array; a setenv since then
    # made the C library copy it, pointing at our strings. Letting go of them left the
    # process an environment of freed memory, which every later child inherited.
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", C_ENVIRONMENT_AFTER_CLOSE, str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "clean"
