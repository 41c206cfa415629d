"""Installed but unused, the plugin changes nothing (SPEC, "Installed but unused: no harm").

Real suites that do not use the plugin run with it and with ``-p no:lambda_context``:
outcome and output are the same. Where a test uses it, the header is one line.
"""

from __future__ import annotations

import json
import re

import pytest

from pytest_lambda_context import plugin
from pytest_lambda_context.plugin import markers

pytest_plugins = ["pytester"]

# A project's own suite: passing, failing, skipped, xfailed, parametrized tests, a warning,
# printed output, and its own fixtures and marker under names the plugin also uses.
PLAIN_CONFTEST = """
import pytest

@pytest.fixture
def aws():
    return "the project's own aws"

@pytest.fixture
def es():
    return {"hosts": ["localhost"]}
"""

PLAIN_TESTS = """
import warnings
import pytest

def test_passes(aws, es):
    assert aws == "the project's own aws" and es["hosts"] == ["localhost"]

def test_fails():
    print("some output")
    assert 1 == 2

@pytest.mark.skip(reason="not today")
def test_skipped():
    pass

@pytest.mark.xfail(reason="known")
def test_xfails():
    assert False

@pytest.mark.parametrize("n", [1, 2, 3])
def test_param(n):
    assert n

def test_warns():
    warnings.warn("a project warning", UserWarning)

@pytest.mark.docker("postgres:16")
def test_own_docker_marker():
    pass
"""

PLAIN_INI = "[pytest]\nmarkers =\n    docker(image): the project's own marker\n"


@pytest.fixture
def plain_suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(PLAIN_INI)
    pytester.makeconftest(PLAIN_CONFTEST)
    pytester.makepyfile(test_plain=PLAIN_TESTS)
    return pytester


def _normalised(lines: list[str]) -> list[str]:
    """Output without what differs between any two runs (timings, the plugin list)."""
    kept = []
    for line in lines:
        if line.startswith(("plugins:", "rootdir:", "cachedir:")):
            continue
        line = re.sub(r"\bin \d+\.\d+s\b", "in Ns", line)
        line = re.sub(r"\(\d+:\d+:\d+\)", "", line)
        kept.append(line)
    return kept


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["-v", "-rA"],
        ["-q"],
        ["--strict-markers", "-W", "error::UserWarning"],
        ["--collect-only"],
    ],
    ids=["default", "verbose", "quiet", "strict-and-errors", "collect-only"],
)
def test_a_suite_that_does_not_use_the_plugin_runs_as_without_it(
    plain_suite: pytest.Pytester, args: list[str]
) -> None:
    # -W default: as pytest runs without this suite's filterwarnings = error.
    base = ["-p", "no:cacheprovider", "-W", "default", *args]
    with_plugin = plain_suite.runpytest(*base)
    without = plain_suite.runpytest(*base, "-p", "no:lambda_context")
    assert with_plugin.ret == without.ret
    if "--collect-only" not in args:
        assert with_plugin.parseoutcomes() == without.parseoutcomes()
    assert _normalised(with_plugin.stdout.lines) == _normalised(without.stdout.lines)
    assert with_plugin.stderr.lines == without.stderr.lines
    assert "lambda-context:" not in with_plugin.stdout.str()


def test_a_near_miss_marker_on_a_plain_test_is_a_warning_naming_the_nearest(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_own="""
        import pytest

        @pytest.mark.dockers
        @pytest.mark.coldstart
        def test_x():
            pass
        """
    )
    # As pytest runs without filterwarnings = error (this suite has it on).
    args = ["-p", "no:cacheprovider", "-W", "default::pytest.PytestUnknownMarkWarning"]
    result = pytester.runpytest(*args)
    without = pytester.runpytest(*args, "-p", "no:lambda_context")
    assert result.ret == without.ret == pytest.ExitCode.OK
    assert result.parseoutcomes()["passed"] == 1
    result.stdout.fnmatch_lines(
        [
            "*Unknown pytest.mark.dockers; did you mean pytest.mark.docker of "
            "pytest-lambda-context? (on a test that uses the plugin this is an error)"
        ]
    )
    result.stdout.fnmatch_lines(
        ["*Unknown pytest.mark.coldstart; did you mean pytest.mark.cold_start of *"]
    )


def test_a_project_marker_named_like_ours_with_other_arguments_is_its_own(
    pytester: pytest.Pytester,
) -> None:
    # max_clients("many") would be a bad argument of ours; the test does not use the plugin.
    pytester.makeini("[pytest]\nmarkers =\n    docker(image): ours\n")
    pytester.makepyfile(
        test_own="""
        import pytest

        @pytest.mark.docker("redis:7", ports=[6379])
        def test_x():
            pass
        """
    )
    pytester.runpytest("-p", "no:cacheprovider", "--strict-markers").assert_outcomes(passed=1)


HANDLER = "def handler(event, context):\n    return 1\n"


@pytest.mark.parametrize("verbose", [False, True])
def test_where_a_test_uses_the_plugin_the_header_is_one_line(
    pytester: pytest.Pytester, verbose: bool
) -> None:
    pytester.makepyfile(**{"app/__init__": "", "app/main": HANDLER})
    pytester.makepyfile(
        test_uses="""
        import pytest

        @pytest.mark.lambda_handler("app.main.handler")
        def test_x(lambda_function):
            assert lambda_function.invoke({}) == 1

        def test_plain():
            pass
        """
    )
    args = ["-p", "no:cacheprovider", "--lambda-isolation=process"]
    result = pytester.runpytest(*args, *(["-v"] if verbose else []))
    result.assert_outcomes(passed=2)
    header = [line for line in result.stdout.lines if line.startswith("lambda-context:")]
    assert header[0].startswith("lambda-context: isolation=process, start=cold, es: ")
    # The C-driver note (psycopg is installed here) only with -v: no test checks a limit.
    notes = [line for line in header if "C drivers installed" in line]
    if verbose:
        assert len(notes) == 1
    else:
        assert header == header[:1] and notes == []
    # Said after pytest's "collected N items" line, where it is known which tests run.
    collected = next(n for n, line in enumerate(result.stdout.lines) if "collected" in line)
    assert result.stdout.lines.index(header[0]) == collected + 1


def test_a_connection_limit_brings_the_c_driver_note_without_verbose(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("psycopg2")
    pytester.makepyfile(**{"app/__init__": "", "app/main": HANDLER})
    pytester.makepyfile(
        test_uses="""
        import pytest

        @pytest.mark.lambda_handler("app.main.handler")
        @pytest.mark.max_connections(1)
        def test_x(lambda_function):
            assert lambda_function.invoke({}) == 1
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["lambda-context: isolation=*", "lambda-context: C drivers*"])


def test_a_test_that_only_imports_from_the_package_uses_the_plugin(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(**{"app/__init__": "", "app/main": HANDLER})
    pytester.makepyfile(
        test_direct="""
        from pytest_lambda_context import LambdaFunction

        def test_x():
            function = LambdaFunction("app.main.handler")
            try:
                assert function.invoke({}) == 1
            finally:
                function.close()
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["lambda-context: isolation=module, start=cold*"])


def test_the_entry_module_registers_the_markers_as_their_signatures_say() -> None:
    assert list(plugin.MARKER_LINES) == markers.marker_lines()


def test_a_plain_session_imports_only_the_entry_module_of_the_package(
    pytester: pytest.Pytester,
) -> None:
    # pytest rewrites the asserts of every module of the plugin it imports (again at each
    # start under PYTHONDONTWRITEBYTECODE=1): a session that does not use the plugin
    # imports the entry module, the option table and the datastores' names, nothing else.
    pytester.makeconftest(
        """
        import json, sys
        def pytest_unconfigure(config):
            ours = sorted(m for m in sys.modules if m.startswith("pytest_lambda_context"))
            sys.stdout.write("OURS=" + json.dumps(ours) + "\\n")
        """
    )
    pytester.makepyfile(
        test_plain="""
        import pytest

        @pytest.mark.parametrize("n", range(5))
        def test_plain(n):
            assert n >= 0
        """
    )
    for args in (["-p", "no:cacheprovider", "-s"], ["-p", "no:cacheprovider", "-s", "-v"]):
        result = pytester.runpytest_subprocess(*args)
        result.assert_outcomes(passed=5)
        line = next(x for x in result.stdout.lines if x.startswith("OURS="))
        # The option table, the datastores' names (their fixtures and options) and the
        # isolation kinds (the lambda_isolation option's choices).
        assert json.loads(line.removeprefix("OURS=")) == [
            "pytest_lambda_context",
            "pytest_lambda_context.environments",
            "pytest_lambda_context.environments.registry",
            "pytest_lambda_context.plugin",
            "pytest_lambda_context.plugin.options",
            "pytest_lambda_context.services",
            "pytest_lambda_context.services.datastores",
            "pytest_lambda_context.services.datastores.registry",
        ]


# moto's documented conftest (ten public projects use exactly this): the project's own
# `aws` wins over the plugin's, and the plugin keeps working around it.
MOTO_CONFTEST = """
import os

import boto3
import pytest
from moto import mock_aws


@pytest.fixture(scope="function")
def aws_credentials():
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    os.environ["AWS_SECURITY_TOKEN"] = "testing"
    os.environ["AWS_SESSION_TOKEN"] = "testing"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"


@pytest.fixture(scope="function")
def aws(aws_credentials):
    with mock_aws():
        yield boto3.client("s3", region_name="us-east-1")
"""

BUCKETS_HANDLER = """
import boto3

def handler(event, context):
    s3 = boto3.client("s3", region_name="us-east-1")
    return sorted(bucket["Name"] for bucket in s3.list_buckets()["Buckets"])
"""

USES_OWN_AWS = """
import pytest

@pytest.mark.lambda_handler("app.main.handler")
def test_handler_sees_the_projects_moto(aws, lambda_function):
    aws.create_bucket(Bucket="mine")
    assert lambda_function.invoke({}) == ["mine"]

def test_plain(aws):
    assert aws.list_buckets()["Buckets"] == []
"""


def test_a_projects_own_aws_fixture_wins_beside_lambda_function(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("moto")
    pytester.makeconftest(MOTO_CONFTEST)
    pytester.makepyfile(**{"app/__init__": "", "app/main": BUCKETS_HANDLER})
    pytester.makepyfile(test_own_aws=USES_OWN_AWS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=2)


def test_a_projects_own_aws_fixture_with_process_isolation_is_said_once(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("moto")
    pytester.makeconftest(MOTO_CONFTEST)
    pytester.makepyfile(
        **{"app/__init__": "", "app/main": "def handler(event, context):\n    return 1\n"}
    )
    pytester.makepyfile(
        test_own_aws="""
        import pytest

        @pytest.mark.lambda_handler("app.main.handler", isolation="process")
        def test_x(aws, lambda_function):
            assert lambda_function.invoke({}) == 1
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*ProjectAwsFixtureWarning: the aws fixture of this test is the project's own (it "
            "wins over pytest-lambda-context's): whatever it mocks is mocked in the test "
            "process only*"
        ]
    )


SAME_HANDLER_TWO_FOLDERS = """
import pytest

@pytest.mark.parametrize("folder", ["orders", "billing"])
def test_each(make_lambda_function, folder):
    function = make_lambda_function("app.lambda_handler", code_root=folder)
    assert function.invoke({}) == folder

def test_both(make_lambda_function):
    orders = make_lambda_function("app.lambda_handler", code_root="orders")
    billing = make_lambda_function("app.lambda_handler", code_root="billing")
    assert [orders.invoke({}), billing.invoke({})] == ["orders", "billing"]
"""


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_two_folders_with_the_same_handler_are_two_functions(
    pytester: pytest.Pytester, isolation: str
) -> None:
    for folder in ("orders", "billing"):
        pytester.makepyfile(
            **{
                f"{folder}/app": "import os\n\ndef lambda_handler(event, context):\n"
                "    return os.path.basename(os.path.dirname(__file__))\n"
            }
        )
    pytester.makepyfile(test_two=SAME_HANDLER_TWO_FOLDERS)
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        f"--lambda-isolation={isolation}",
        "--lambda-report=report.json",
        "--lambda-html=report.html",
    )
    result.assert_outcomes(passed=3)
    # The summary: one line each, told apart by the code root.
    result.stdout.fnmatch_lines(
        [
            f"app-lambda_handler ?orders? (app.lambda_handler, {isolation}): 2 environments*",
            f"app-lambda_handler ?billing? (app.lambda_handler, {isolation}): 2 environments*",
        ],
        consecutive=False,
    )
    report = json.loads((pytester.path / "report.json").read_text())
    roots = {record["code_root"].rstrip("/").rsplit("/", 1)[-1] for record in report["functions"]}
    assert roots == {"orders", "billing"}
    page = (pytester.path / "report.html").read_text()
    assert page.count('<section class="function"') == 2
    assert "app-lambda_handler [orders]" in page and "app-lambda_handler [billing]" in page


OUTCOMES_HANDLER = """
import os
import pytest

if os.environ.get("SKIP_INIT"):
    print("init code ran")
    pytest.skip("the init code skipped")

def fail_here():
    pytest.fail("the handler failed")

def handler(event, context):
    print("handler ran", event["what"])
    if event["what"] == "skip":
        pytest.skip("the handler skipped")
    if event["what"] == "fail":
        pytest.fail("the handler failed quietly", pytrace=False)
    if event["what"] == "fail-here":
        fail_here()
    if event["what"] == "xfail":
        pytest.xfail("the handler xfailed")
    if event["what"] == "fail-handling":
        try:
            {}["missing"]
        except KeyError:
            pytest.fail("failed while handling")
    return os.getpid()
"""


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_pytests_outcomes_raised_in_handler_code_are_pytests(
    pytester: pytest.Pytester, isolation: str
) -> None:
    # pytest.skip/fail/xfail (and pytest-timeout's timeout, a pytest.fail) raised where
    # function code runs are the test's outcome, not the runtime's crash, in both
    # isolations; the environment stays warm; what the code printed is the test's.
    pytester.makepyfile(**{"app/__init__": "", "app/main": OUTCOMES_HANDLER})
    pytester.makepyfile(
        test_outcomes=f"""
        import pytest

        pytestmark = pytest.mark.lambda_handler("app.main.handler", isolation={isolation!r})

        def test_skips(lambda_function):
            lambda_function.invoke({{"what": "skip"}})

        def test_fails(lambda_function):
            lambda_function.invoke({{"what": "fail"}})

        def test_fails_with_the_handlers_frame(lambda_function):
            lambda_function.invoke({{"what": "fail-here"}})

        def test_xfails(lambda_function):
            lambda_function.invoke({{"what": "xfail"}})

        def test_fails_while_handling(lambda_function):
            lambda_function.invoke({{"what": "fail-handling"}})

        def test_stays_warm(lambda_function):
            with pytest.raises(pytest.skip.Exception, match="the handler skipped"):
                lambda_function.invoke({{"what": "skip"}})
            first = lambda_function.environments[0]
            lambda_function.invoke({{"what": "nothing"}})
            assert lambda_function.environments == [first]
            # Warm: the skipped invocation was the environment's cold start.
            assert [i.cold for i in lambda_function.invocations] == [False]

        @pytest.mark.lambda_handler(
            "app.main.handler", isolation={isolation!r}, env={{"SKIP_INIT": "1"}}
        )
        def test_skips_in_init_code(lambda_function):
            lambda_function.invoke({{"what": "nothing"}})
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-rsfx", "-s")
    result.assert_outcomes(passed=1, skipped=2, failed=3, xfailed=1)
    # The exception the handler was handling is shown above pytest.fail's, in both.
    result.stdout.fnmatch_lines(
        [
            "*KeyError*missing*",
            "During handling of the above exception, another exception occurred:",
            "*failed while handling*",
        ],
        consecutive=False,
    )
    result.stdout.fnmatch_lines(
        [
            "*handler ran fail-here*",
            "*init code ran*",
            # Where in function code, with its source, in both isolations.
            "app/main.py:18: in handler",
            "    fail_here()",
            '>       pytest.fail("the handler failed")',
            "E       Failed: the handler failed",
            "app/main.py:9: Failed",
        ],
        consecutive=False,
    )
    for summary in [  # in an order that differs across pytest versions
        "SKIPPED *app/main.py:14: the handler skipped",
        "SKIPPED *app/main.py:6: the init code skipped",
        "XFAIL test_outcomes.py::test_xfails*the handler xfailed",
        "FAILED test_outcomes.py::test_fails - Failed: the handler failed quietly",
        "FAILED test_outcomes.py::test_fails_with_the_handlers_frame - Failed: the han*",
    ]:
        result.stdout.fnmatch_lines([summary])
    output = result.stdout.str()
    assert "Runtime.ExitError" not in output
    assert "/_pytest/" not in output  # pytest's own frames are not function code's
    # pytrace=False: the message alone, as pytest shows it for a test's own pytest.fail.
    quiet = output.split("_ test_fails _")[1].split("_ test_fails_with_the_handlers_frame _")[0]
    assert quiet.strip("_ \n") == "the handler failed quietly"
    assert "handler ran skip" in output


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_a_skip_subclass_of_function_code_is_not_imported_into_the_test_process(
    pytester: pytest.Pytester, isolation: str
) -> None:
    # Rebuilding the exception must not import the handler's module where the test
    # runs: its init code reads the function's own variable, which the test lacks.
    pytester.makepyfile(
        **{
            "app/__init__": "",
            "app/main": """
                import os
                import pytest

                TABLE = os.environ["TABLE_NAME"]

                class NotReady(pytest.skip.Exception):
                    pass

                def handler(event, context):
                    raise NotReady(f"{TABLE} is not ready")
            """,
        }
    )
    pytester.makepyfile(
        test_it=f"""
        import sys
        import pytest

        @pytest.mark.lambda_handler(
            "app.main.handler", isolation={isolation!r}, env={{"TABLE_NAME": "orders"}}
        )
        def test_skips(lambda_function):
            try:
                lambda_function.invoke({{}})
            finally:
                if {isolation!r} == "process":
                    assert "app.main" not in sys.modules
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED *app/main.py:10: *orders is not ready"])


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_pytest_exit_in_a_handler_ends_the_session_with_its_code(
    pytester: pytest.Pytester, isolation: str
) -> None:
    pytester.makepyfile(
        **{
            "app/__init__": "",
            "app/main": """
                import pytest

                def handler(event, context):
                    pytest.exit("the handler stopped the session", returncode=3)
            """,
        }
    )
    pytester.makepyfile(
        test_exit=f"""
        import pytest

        @pytest.mark.lambda_handler("app.main.handler", isolation={isolation!r})
        def test_exits(lambda_function):
            lambda_function.invoke({{}})

        def test_never_runs():
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    assert result.ret == 3
    result.stdout.fnmatch_lines(["*Exit: the handler stopped the session*"])
    result.assert_outcomes()


ASYNCIO_RUN_HANDLER = """
import asyncio

async def work():
    await asyncio.sleep(0)
    return 3

def handler(event, context):
    return asyncio.run(work())
"""


def test_a_handler_that_calls_asyncio_run_works_from_an_async_test(
    pytester: pytest.Pytester,
) -> None:
    # On Lambda no event loop runs around the handler; in module isolation function code
    # runs on the test's thread, where an async test's loop is running.
    pytest.importorskip("anyio")
    pytester.makepyfile(**{"app/__init__": "", "app/main": ASYNCIO_RUN_HANDLER})
    pytester.makepyfile(
        test_async="""
        import asyncio
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        @pytest.mark.lambda_handler("app.main.handler")
        async def test_async(lambda_function):
            loop = asyncio.get_running_loop()
            assert lambda_function.invoke({}) == 3
            assert lambda_function.invoke({}) == 3
            await asyncio.sleep(0)  # the test's own loop still runs, and is the same
            assert asyncio.get_running_loop() is loop
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=1)


WARNING_HANDLER = """
import warnings

warnings.warn("said at init", UserWarning)

def handler(event, context):
    warnings.warn("said by the handler", UserWarning)
    warnings.warn("old API", DeprecationWarning)
    if event.get("own filter"):
        warnings.simplefilter("error")  # function code's own choice stays its own
    return "ran"
"""


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_a_warning_in_function_code_is_logged_as_on_lambda_whatever_the_sessions_filters(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, isolation: str
) -> None:
    # The docs' ini example: filterwarnings = error. Lambda runs Python's default filters
    # and writes a shown warning to the log stream; the test keeps its own filters.
    pytester.makepyfile(**{"app/__init__": "", "app/main": WARNING_HANDLER})
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        test_warn=f"""
        import warnings
        import pytest

        from pytest_lambda_context import HandlerError

        pytestmark = pytest.mark.lambda_handler("app.main.handler", isolation={isolation!r})

        def test_logged_not_raised(lambda_function):
            assert lambda_function.invoke({{}}) == "ran"
            assert lambda_function.invoke({{"own filter": True}}) == "ran"
            first, second = lambda_function.invocations
            assert any("UserWarning: said by the handler" in line for line in first.logs)
            assert not any("old API" in line for line in first.logs + second.logs)
            environment = lambda_function.environments[0]
            assert any("UserWarning: said at init" in line for line in environment.logs)
            with pytest.raises(UserWarning):  # the test's filters are still pytest's
                warnings.warn("the test's own", UserWarning)

        def test_own_filter_kept_by_its_environment(lambda_function):
            lambda_function.invoke({{"own filter": True}})
            with pytest.raises(HandlerError) as raised:
                lambda_function.invoke({{}})
            assert raised.value.payload["errorType"] == "UserWarning"
        """
    )
    # And Python's own -W, which a worker forked from the test process inherits.
    monkeypatch.setenv("PYTHONWARNINGS", "error::UserWarning")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    result.assert_outcomes(passed=2)
