"""Process isolation whatever surrounds it: the shell's TZ, a same-named checkout in the
working directory, a session that ends while the template starts, and function code
that forks and lets its child return into the runtime."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from pytest_lambda_context.environments.template import WorkerTemplate

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

PYTEST_INI = """
[pytest]
filterwarnings = error
lambda_isolation = process
"""

FORKING = """
    import os, sys

    if os.environ.get("FORK_AT_INIT"):
        if os.fork() == 0:
            pass  # the child goes on into the runtime, as the parent does

    def handler(event, context):
        what = event.get("child")
        if what is not None:
            pid = os.fork()
            if pid == 0:  # the child returns, exits or raises into the runtime
                if what == "exit":
                    sys.exit(3)
                if what == "raise":
                    raise ValueError("raised in the child")
                return {"who": "child", "pid": os.getpid()}
            _, status = os.waitpid(pid, 0)
            return {"who": "parent", "pid": os.getpid(), "status": os.waitstatus_to_exitcode(status)}
        return {"who": "parent", "pid": os.getpid()}
"""


def _project(pytester: pytest.Pytester, handlers: dict[str, str], tests: str) -> None:
    for name, text in handlers.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    pytester.makeini(PYTEST_INI)
    pytester.makepyfile(test_it=textwrap.dedent(tests))


def test_function_code_sees_utc_whatever_the_shells_tz(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A POSIX zone needs no tz database: five hours west of UTC, named ABC.
    monkeypatch.setenv("TZ", "ABC+05")
    _project(
        pytester,
        {
            "clock.py": """
                import os, time

                def handler(event, context):
                    return {
                        "TZ": os.environ["TZ"],
                        "zone": time.strftime("%Z", time.localtime(0)),
                        "hour": time.localtime(0).tm_hour,
                        "tzname": list(time.tzname),
                        "offset": time.timezone,
                    }
            """
        },
        """
            import pytest, time

            @pytest.mark.lambda_handler("clock.handler")
            def test_utc(lambda_function):
                assert time.localtime(0).tm_hour == 19  # the test's own: the shell's zone
                seen = lambda_function.invoke({})
                assert seen == {
                    "TZ": ":UTC", "zone": "UTC", "hour": 0, "tzname": ["UTC", "UTC"], "offset": 0
                }
        """,
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("child", "status"), [("return", 0), ("exit", 3), ("raise", 1)], ids=lambda v: str(v)
)
def test_a_forked_child_never_answers_for_the_environment(
    pytester: pytest.Pytester, child: str, status: int
) -> None:
    _project(
        pytester,
        {"forking.py": FORKING},
        f"""
            import pytest

            @pytest.mark.lambda_handler("forking.handler")
            def test_fork(lambda_function):
                first = lambda_function.invoke({{"child": "{child}"}})
                assert first["who"] == "parent"
                assert first["status"] == {status}  # the child ended where it returned
                for _ in range(3):
                    assert lambda_function.invoke({{}}) == {{"who": "parent", "pid": first["pid"]}}
                assert len(lambda_function.environments) == 1
        """,
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)


def test_a_child_forked_by_init_code_never_answers(pytester: pytest.Pytester) -> None:
    _project(
        pytester,
        {"forking.py": FORKING},
        """
            import pytest

            @pytest.mark.lambda_handler("forking.handler", env={"FORK_AT_INIT": "1"})
            def test_fork_at_init(lambda_function):
                pids = {lambda_function.invoke({})["pid"] for _ in range(5)}
                assert len(pids) == 1
                assert lambda_function.invoke({})["who"] == "parent"
        """,
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)


def test_a_session_that_ends_while_the_template_starts_prints_nothing_more(
    pytester: pytest.Pytester,
) -> None:
    # The fixture starts the template; the test ends before it has imported its
    # libraries, so the session closes the template while it is still starting.
    _project(
        pytester,
        {"ok.py": "def handler(event, context):\n    return 1\n"},
        """
            import pytest

            @pytest.mark.lambda_handler("ok.handler")
            def test_quick(lambda_function):
                pass
        """,
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert "Traceback" not in result.stderr.str()
    assert "BrokenPipeError" not in result.stdout.str() + result.stderr.str()


def test_a_template_closed_while_it_imports_exits_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # The same as above without depending on how long the real imports take here: a
    # preloaded module that takes half a second, and the template closed meanwhile.
    (tmp_path / "slow_library.py").write_text("import time\ntime.sleep(0.5)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    template = WorkerTemplate(preload=["slow_library"])
    template.start()
    template.close()  # returns once the template has exited
    assert capfd.readouterr().err == ""


def test_a_same_named_checkout_in_the_working_directory_is_not_imported(
    pytester: pytest.Pytester,
) -> None:
    # As a clone of the plugin would be, where the tests run with the installed one.
    shadow = pytester.mkpydir("pytest_lambda_context")
    (shadow / "__init__.py").write_text(
        "raise ImportError('the checkout in the working directory was imported')\n"
    )
    _project(
        pytester,
        {"ok.py": "def handler(event, context):\n    return 'installed'\n"},
        """
            import pytest

            @pytest.mark.lambda_handler("ok.handler")
            def test_installed(lambda_function):
                assert lambda_function.invoke({}) == "installed"
        """,
    )
    # As pytest's console script runs: the working directory is not on the test
    # process's sys.path (``python -m pytest`` would import the checkout there; pytester
    # also puts it on PYTHONPATH, which the template inherits: it must not matter).
    script = (
        "import os, sys; sys.path[:] = [p for p in sys.path if p not in ('', os.getcwd())]; "
        "import pytest; sys.exit(pytest.main())"
    )
    result = pytester.run(sys.executable, "-c", script, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
