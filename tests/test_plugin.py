"""The plugin as users run it: fixtures, markers, options, reports (pytester)."""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["pytester"]

HANDLER = """
import logging
count = 0
logging.getLogger().addHandler(logging.StreamHandler())
logging.getLogger().setLevel(logging.DEBUG)
def handler(event, context):
    global count
    count += 1
    if event.get("fail"):
        raise KeyError(event["fail"])
    return count
"""


@pytest.fixture
def lambda_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(**{"app/__init__": "", "app/main": HANDLER})
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    return pytester


def test_fixtures_and_markers_work_together(lambda_project):
    lambda_project.makepyfile(
        test_it="""
        import pytest

        pytestmark = pytest.mark.lambda_handler("app.main.handler", memory_mb=256)

        def test_function(lambda_function):
            assert lambda_function.invoke({}) == 1
            assert lambda_function.invoke({}) == 2
            assert lambda_function.memory_mb == 256

        def test_env_is_cold_by_default(lambda_env):
            assert lambda_env.state == "new"
            assert lambda_env.invoke({}) == 1

        def test_context(lambda_context):
            assert lambda_context.memory_limit_in_mb == "256"
            assert 0 < lambda_context.get_remaining_time_in_millis() <= 3000

        def test_factory(make_lambda_function):
            a = make_lambda_function("app.main.handler")
            b = make_lambda_function("app/main.handler", function_name="other")
            assert a.invoke({}) == b.invoke({}) == 1
        """
    )
    result = lambda_project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "lambda-context: isolation=module, start=cold*",
            "*= lambda-context =*",
            "app-main (app.main.handler, module): 3 environments (3 cold starts), 4 invocations*",
            "other (app/main.handler, module): 1 environment (1 cold start), 1 invocation*",
        ]
    )


def test_warm_sequence_survives_a_failing_test(lambda_project):
    lambda_project.makepyfile(
        test_warm="""
        import pytest

        pytestmark = [pytest.mark.lambda_handler("app.main.handler"), pytest.mark.warm_start]

        def test_one(lambda_env):
            assert lambda_env.invoke({}) == 1

        def test_two_fails_half_way(lambda_env):
            assert lambda_env.invoke({}) == 2
            assert False, "boom"

        def test_three(lambda_env):
            assert lambda_env.invoke({}) == 3

        @pytest.mark.cold_start
        def test_cold(lambda_env):
            assert lambda_env.invoke({}) == 1
        """
    )
    result = lambda_project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1)
    # The failing test shows its invocations' REPORT lines.
    result.stdout.fnmatch_lines(
        ["*lambda-context invocations*", "*REPORT RequestId: * Duration: *"]
    )


def test_lambda_start_warm_ini_and_cold_start_marker(lambda_project):
    lambda_project.makeini("[pytest]\nlambda_start = warm\nlambda_handler = app.main.handler\n")
    lambda_project.makepyfile(
        test_ini="""
        import pytest

        def test_one(lambda_env):
            assert lambda_env.state == "warm"
            assert lambda_env.invoke({}) == 1

        def test_two(lambda_env):
            assert lambda_env.invoke({}) == 2

        @pytest.mark.cold_start
        def test_three(lambda_env):
            assert lambda_env.invoke({}) == 1
        """
    )
    lambda_project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)


def test_without_a_handler_the_error_says_how_to_name_one(lambda_project):
    lambda_project.makepyfile(test_x="def test_x(lambda_function):\n    pass\n")
    result = lambda_project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*@pytest.mark.lambda_handler('app.search.handler')*lambda_handler = *"]
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("@pytest.mark.lambda_handler(42)", "*lambda_handler: the handler must be a string*"),
        (
            "@pytest.mark.lambda_handler('a.b', colour='red')",
            "*unknown option(s) colour; valid: env, timeout*",
        ),
        (
            "@pytest.mark.max_connections('one')",
            "*max_connections: n must be a whole number*The form is @pytest.mark.max_connections(n, *, per='environment', via=None, host=None, port=None)*",
        ),
        (
            "@pytest.mark.max_connections(1, per='function')",
            "*per='function' is not valid; choose one of: environment, invocation, warm, test*",
        ),
        (
            "@pytest.mark.cold_start\n@pytest.mark.warm_start",
            "*marked both cold_start and warm_start*",
        ),
    ],
)
def test_marker_arguments_are_validated(lambda_project, source, expected):
    lambda_project.makepyfile(test_m=f"import pytest\n\n{source}\ndef test_x():\n    pass\n")
    result = lambda_project.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--lambda-isolation=thread"],
            "*--lambda-isolation / ini lambda_isolation: 'thread' is not valid; choose one of: module, process*",
        ),
        (["--lambda-start=hot"], "*'hot' is not valid; choose one of: cold, warm*"),
        (["--lambda-network=internet"], "*choose one of: allow, loopback*"),
    ],
)
def test_bad_option_values_are_usage_errors(lambda_project, args, expected):
    lambda_project.makepyfile(test_x="def test_x():\n    pass\n")
    result = lambda_project.runpytest("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])


def test_command_line_wins_over_ini(lambda_project):
    lambda_project.makeini("[pytest]\nlambda_isolation = thread\n")
    lambda_project.makepyfile(test_x="def test_x():\n    pass\n")
    result = lambda_project.runpytest("-p", "no:cacheprovider", "--lambda-isolation=module")
    result.assert_outcomes(passed=1)


def test_json_report_has_every_function_environment_and_invocation(lambda_project):
    lambda_project.makepyfile(
        test_r="""
        import pytest

        @pytest.mark.lambda_handler("app.main.handler")
        def test_r(lambda_function):
            lambda_function.invoke({})
            lambda_function.invoke({})
            lambda_function.cold_start().invoke({})
        """
    )
    report = lambda_project.path / "out" / "report.json"
    result = lambda_project.runpytest("-p", "no:cacheprovider", f"--lambda-report={report}")
    result.assert_outcomes(passed=1)
    data = json.loads(report.read_text())
    (function,) = data["functions"]
    assert function["test"].endswith("test_r")
    assert [len(e["invocations"]) for e in function["environments"]] == [2, 1]
    first = function["environments"][0]["invocations"][0]
    assert first["cold"] is True
    assert first["report_line"].startswith("REPORT RequestId: ")
    assert "Init Duration" in first["report_line"]


def test_everything_is_restored_after_each_test_even_on_failure(lambda_project):
    lambda_project.makepyfile(
        test_restore="""
        import logging, os, signal, socket, sys
        import pytest

        BEFORE = {}

        def snapshot():
            root = logging.getLogger()
            environ = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
            return (environ, list(sys.path), root.level, list(root.handlers),
                    socket.socket.connect, signal.getsignal(signal.SIGALRM),
                    sorted(n for n in sys.modules if n.startswith("app")))

        def test_take_snapshot():
            BEFORE["state"] = snapshot()

        @pytest.mark.lambda_handler("app.main.handler")
        def test_uses_the_plugin_and_fails(lambda_function):
            lambda_function.invoke({})
            lambda_function.invoke({"fail": "x"})

        def test_nothing_left_behind():
            assert snapshot() == BEFORE["state"]
        """
    )
    result = lambda_project.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*HandlerError: KeyError: 'x'*"])


def test_the_plugin_can_be_disabled(lambda_project):
    lambda_project.makepyfile(test_x="def test_x():\n    pass\n")
    result = lambda_project.runpytest("-p", "no:cacheprovider", "-p", "no:lambda_context")
    result.assert_outcomes(passed=1)
    assert "lambda-context" not in result.stdout.str()


def test_the_wall_clock_handler_code_sees_is_real_again_in_the_next_test(lambda_project):
    lambda_project.makepyfile(
        **{"app/clock": "import time\ndef handler(event, context):\n    return time.time()\n"}
    )
    lambda_project.makepyfile(
        test_clock="""
        import time
        import pytest

        pytestmark = [pytest.mark.lambda_handler("app.clock.handler"), pytest.mark.warm_start]

        def test_idle_moves_it(lambda_env, lambda_function):
            lambda_env.invoke({})
            lambda_function.idle(hours=3)
            assert lambda_env.invoke({}) - time.time() > 3 * 3600 - 60

        def test_next_test_sees_real_time(lambda_env):
            # Even the environment kept warm from the test before.
            assert abs(lambda_env.invoke({}) - time.time()) < 60
        """
    )
    lambda_project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_every_bad_marker_is_reported_in_one_run(lambda_project):
    lambda_project.makepyfile(
        test_many="""
        import pytest

        pytestmark = pytest.mark.lambda_handler("app.main.handler", isolation="proc")

        @pytest.mark.max_connections(1, per="function")
        def test_a():
            pass

        @pytest.mark.lambda_handler("app.main.handler", timeout=-3, env={"X": 1})
        def test_b():
            pass

        def test_c():
            pass
        """
    )
    result = lambda_project.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = result.stderr.str()
    assert "per='function' is not valid" in errors
    assert "timeout=-3 is out of range" in errors
    # The module-level mistake is reported once, not once per test.
    assert errors.count("isolation='proc' is not valid; choose one of: module, process") == 1


def test_a_misspelt_boto3_service_is_caught_at_collection(lambda_project):
    pytest.importorskip("botocore")
    lambda_project.makepyfile(
        test_svc="""
        import pytest

        @pytest.mark.max_clients(1, service="dynamo")
        def test_a():
            pass
        """
    )
    result = lambda_project.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*service='dynamo' is not a boto3 service name; did you mean 'dynamodb'?*"]
    )


def test_environments_get_their_tmp_under_pytests_temp_folder(lambda_project):
    lambda_project.makepyfile(
        **{"app/tmp": "import os\ndef handler(event, context):\n    return os.environ['TMPDIR']\n"}
    )
    lambda_project.makepyfile(
        test_tmp="""
        import os
        import pytest

        @pytest.mark.lambda_handler("app.tmp.handler")
        def test_tmp(lambda_function, tmp_path_factory):
            folder = lambda_function.invoke({})
            assert folder.startswith(str(tmp_path_factory.getbasetemp()))
            assert os.path.isdir(folder)
        """
    )
    lambda_project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
