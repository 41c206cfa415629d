"""What the plugin prints: the summary, a failing test's section, errors for mistakes.

Each message is checked as a user sees it, in a real pytest run (pytester).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree

import pytest

pytest_plugins = ["pytester"]

COUNTER = """
count = 0
def handler(event, context):
    global count
    count += 1
    if event.get("fail"):
        raise KeyError(event["fail"])
    return count
"""


@pytest.fixture
def counter_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(**{"app/__init__": "", "app/main": COUNTER})
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    return pytester


def test_the_first_warm_start_tests_environment_was_initialised_ahead(counter_project):
    counter_project.makepyfile(
        test_warm="""
        import pytest

        pytestmark = [pytest.mark.lambda_handler("app.main.handler"), pytest.mark.warm_start]

        def test_first(lambda_env):
            assert lambda_env.state == "warm"  # initialised ahead, by the fixture
            assert lambda_env.init_duration_ms is not None
            lambda_env.invoke({})
            (invocation,) = lambda_env.invocations
            # As Lambda records an environment initialised ahead of its first request.
            assert not invocation.cold
            assert invocation.init_duration_ms is None
            assert "Init Duration" not in invocation.report_line

        def test_second(lambda_env):
            lambda_env.invoke({})
            assert [i.cold for i in lambda_env.invocations] == [False, False]
        """
    )
    report = counter_project.path / "report.json"
    result = counter_project.runpytest("-p", "no:cacheprovider", f"--lambda-report={report}")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["app-main (*): 1 environment (0 cold starts, 1 initialised ahead), 2 invocations*"]
    )
    records = json.loads(report.read_text())["functions"]
    (environment,) = records[-1]["environments"]
    assert [i["cold"] for i in environment["invocations"]] == [False, False]
    assert environment["init_duration_ms"] is not None


def test_init_then_invoke_is_warm_as_on_lambda(counter_project):
    counter_project.makepyfile(
        test_init="""
        import pytest

        @pytest.mark.lambda_handler("app.main.handler")
        def test_init(lambda_function):
            environment = lambda_function.cold_start()
            environment.init()
            environment.invoke({})
            lambda_function.invoke({})  # routed to the same, warm environment
            assert [i.cold for i in environment.invocations] == [False, False]
            assert lambda_function.cold_starts == 0
            assert environment.logs[-1].startswith("REPORT")
            assert "Init Duration" not in "".join(environment.logs)
        """
    )
    counter_project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_the_summary_counts_provisioned_environments_apart(counter_project):
    counter_project.makepyfile(
        test_mixed="""
        import pytest

        @pytest.mark.lambda_handler("app.main.handler")
        def test_mixed(lambda_function):
            lambda_function.provision(2)
            lambda_function.invoke({})
            lambda_function.cold_start().invoke({})
        """
    )
    result = counter_project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["app-main (*): 3 environments (1 cold start, 2 provisioned), 2 invocations*"]
    )


def test_provisioned_environments_report_no_cold_start(counter_project):
    counter_project.makepyfile(
        test_provisioned="""
        import pytest

        @pytest.mark.lambda_handler("app.main.handler")
        def test_provisioned(lambda_function):
            (environment,) = lambda_function.provision(1)
            lambda_function.invoke({})
            (invocation,) = environment.invocations
            assert not invocation.cold
            assert invocation.init_duration_ms is None
        """
    )
    counter_project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


# -- a failing test's "lambda-context invocations" section --------------------------------


def test_a_failing_tests_section_shows_the_first_and_last_report_lines(counter_project):
    counter_project.makepyfile(
        test_many="""
        import pytest

        @pytest.mark.lambda_handler("app.main.handler")
        def test_sixty_then_an_unrelated_failure(lambda_function):
            for _ in range(60):
                lambda_function.invoke({})
            assert 1 + 1 == 3
        """
    )
    result = counter_project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    section = text.split("lambda-context invocations")[1].split("=====")[0].strip("- \n")
    lines = section.splitlines()
    assert len(lines) == 11
    assert lines[0].startswith("[app-main env-1 cold] REPORT RequestId: ")
    assert "-000000000001\t" in lines[0]  # the first request id, then the tab-separated fields
    assert all("] REPORT RequestId: " in line for line in lines[:5] + lines[6:])
    assert lines[5] == "... 50 more invocations (all of them: --lambda-report, --lambda-html)"
    assert "-00000000003c\t" in lines[-1]  # the 60th request id
    assert text.count("REPORT RequestId") == 10


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_a_failing_tests_output_is_bounded_whatever_the_log_level(counter_project, level):
    counter_project.makepyfile(
        test_many="""
        import pytest

        @pytest.mark.lambda_handler("app.main.handler")
        def test_many(lambda_function):
            for _ in range(200):
                lambda_function.invoke({})
            assert False
        """
    )
    result = counter_project.runpytest("-p", "no:cacheprovider", f"--log-level={level}")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    # The invocations section's first and last five, and the logger's first five.
    assert output.count("REPORT RequestId") == 15
    result.stdout.fnmatch_lines(
        [
            "*app-main: further REPORT lines are not logged (a failing test's lambda-context"
            " invocations section, LambdaFunction.invocations and --lambda-report have them)"
        ]
    )


def test_the_section_is_only_there_for_a_test_that_invoked(counter_project):
    counter_project.makepyfile(
        test_few="""
        import pytest

        @pytest.mark.lambda_handler("app.main.handler")
        def test_made_a_function_and_failed_before_invoking(lambda_function):
            assert False

        def test_without_lambda():
            assert False

        @pytest.mark.lambda_handler("app.main.handler")
        def test_two_invocations(lambda_function):
            lambda_function.invoke({})
            lambda_function.invoke({"fail": "x"})
        """
    )
    result = counter_project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=3)
    text = result.stdout.str()
    assert text.count("lambda-context invocations") == 1
    section = text.split("lambda-context invocations")[1].split("=====")[0]
    assert section.count("REPORT RequestId") == 2
    assert "[app-main env-1] REPORT" not in section  # the error one says so
    assert "[app-main env-1 error KeyError] REPORT" in section


# -- the terminal summary ---------------------------------------------------------------


def test_a_function_that_never_ran_gets_no_summary_line(counter_project):
    counter_project.makepyfile(
        test_idle="""
        import pytest

        @pytest.mark.lambda_handler("app.main.handler", function_name="never-invoked")
        def test_errors_before_invoking(lambda_env):
            raise RuntimeError("the test's own setup failed")

        @pytest.mark.lambda_handler("app.main.handler")
        def test_invokes(lambda_function):
            lambda_function.invoke({})
        """
    )
    result = counter_project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    text = result.stdout.str()
    assert "never-invoked" not in text.split("= lambda-context =")[1]
    assert "0 environments" not in text
    assert "no init" not in text
    result.stdout.fnmatch_lines(
        ["app-main (app.main.handler, module): 1 environment (1 cold start), 1 invocation, init *"]
    )
    assert "!" not in text.split("= lambda-context =")[1]


CONNECTING = """
import os, socket

def connect():
    socket.create_connection(("127.0.0.1", int(os.environ["PORT"]))).close()

def handler(event, context):
    for _ in range(event.get("connect", 0)):
        connect()
    return "ok"
"""

LISTENER = """
import socket
import pytest

@pytest.fixture(scope="module")
def port():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield str(server.getsockname()[1])
    server.close()
"""


@pytest.fixture
def connecting_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(**{"app/__init__": "", "app/net": CONNECTING})
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makeconftest(LISTENER)
    return pytester


def test_the_summary_marks_only_broken_limits_and_a_client_per_invocation(connecting_project):
    connecting_project.makepyfile(
        test_marks="""
        import pytest

        def make(make_lambda_function, port, name):
            return make_lambda_function("app.net.handler", function_name=name, env={"PORT": port})

        def test_reconnect_after_an_idle_period(make_lambda_function, port):
            f = make(make_lambda_function, port, "reconnects")
            f.invoke({"connect": 1})
            for _ in range(5):
                f.invoke({})
            f.idle(minutes=10)
            f.invoke({"connect": 1})
            f.invoke({})

        def test_a_pool_grows_within_one_invocation(make_lambda_function, port):
            f = make(make_lambda_function, port, "pool")
            f.invoke({})
            f.invoke({"connect": 3})
            f.invoke({})

        def test_a_client_per_invocation(make_lambda_function, port):
            f = make(make_lambda_function, port, "per-invocation")
            for _ in range(4):
                f.invoke({"connect": 1})

        @pytest.mark.max_connections(1, per="test")
        def test_a_broken_limit(make_lambda_function, port):
            f = make(make_lambda_function, port, "limited")
            f.invoke({"connect": 2})
        """
    )
    result = connecting_project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1)
    summary = result.stdout.str().split("= lambda-context =")[1].split("short test summary")[0]
    marks = [line.strip() for line in summary.splitlines() if line.strip().startswith("!")]
    assert marks == [
        "! env-1 in test_marks.py::test_a_client_per_invocation: opened a connection in each "
        "of its 3 warm invocations",
        "! test_marks.py::test_a_broken_limit: broke @pytest.mark.max_connections(1, "
        "per='test'): 2 connections in the test as a whole",
        "! an environment that broke a max_connections or max_clients limit, or whose every "
        "warm invocation opened a connection (created a client): a client per invocation, "
        "where one per environment would do",
    ]
    for line in (
        "reconnects (app.net.handler, module): 1 environment (1 cold start), 8 invocations*",
        "    connections per environment: 2 in 1 environment",
        "pool (app.net.handler, module): *",
        "    connections per environment: 3 in 1 environment",
    ):
        result.stdout.fnmatch_lines([line])


def test_without_anything_to_mark_there_is_no_legend(connecting_project):
    connecting_project.makepyfile(
        test_quiet="""
        def test_once(make_lambda_function, port):
            f = make_lambda_function("app.net.handler", env={"PORT": port})
            f.invoke({"connect": 1})
            f.invoke({})
        """
    )
    result = connecting_project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["    connections per environment: 1 in 1 environment"])
    assert "!" not in result.stdout.str().split("= lambda-context =")[1]


# -- limit failures: a hint for every kind, long lists cut short --------------------------


@pytest.mark.parametrize(
    ("marker", "hint"),
    [
        ("max_connections(1)", "build the client once per execution environment*"),
        ("max_connections(1, per='invocation')", "reuse one client, and its connection pool*"),
        ("max_connections(2, per='test')", "each new environment (a cold start, *"),
    ],
)
def test_every_connection_limit_failure_has_a_hint(connecting_project, marker, hint):
    connecting_project.makepyfile(
        test_hint=f"""
        import pytest

        @pytest.mark.{marker}
        def test_over(make_lambda_function, port):
            f = make_lambda_function("app.net.handler", env={{"PORT": port}})
            f.invoke({{"connect": 2}})
            f.invoke({{"connect": 2}})
        """
    )
    result = connecting_project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*exceeded by function app-net*", f"  Hint: {hint}"])


def test_a_long_list_of_connections_is_cut_short(connecting_project):
    connecting_project.makepyfile(
        test_long="""
        import pytest

        @pytest.mark.max_connections(1)
        def test_thirty(make_lambda_function, port):
            f = make_lambda_function("app.net.handler", env={"PORT": port})
            for _ in range(30):
                f.invoke({"connect": 1})
        """
    )
    result = connecting_project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "  env-1 created 30 connections (limit 1):",
            "    - env-1 invocation 1 (*): 127.0.0.1:* opened at app/net.py:4 in connect",
            "    - env-1 invocation 5 (*): *",
            "    ... 23 more",
            "    - env-1 invocation 29 (*): *",
            "    - env-1 invocation 30 (*): *",
            "  Hint: *",
        ]
    )
    assert "invocation 6 (" not in result.stdout.str().split("Hint")[0]


CLIENTS = """
import boto3

def handler(event, context):
    boto3.client("dynamodb", region_name="us-east-1")
    return "ok"
"""


@pytest.mark.parametrize(
    ("marker", "hint"),
    [
        ("max_clients(1)", "create boto3 clients once per execution environment*"),
        ("max_clients(0, per='invocation')", "create each boto3 client once and reuse it*"),
        ("max_clients(1, per='test')", "each new environment (a cold start, *"),
    ],
)
def test_every_client_limit_failure_has_a_hint(pytester, marker, hint):
    pytest.importorskip("boto3")
    pytester.makepyfile(**{"app/__init__": "", "app/clients": CLIENTS})
    pytester.makepyfile(
        test_hint=f"""
        import pytest

        @pytest.mark.lambda_handler("app.clients.handler")
        @pytest.mark.{marker}
        def test_over(lambda_function, aws):
            lambda_function.invoke({{}})
            lambda_function.invoke({{}})
        """
    )
    # A process of its own, as users run it: pytester's in-process runs drop the modules
    # each run imported, and botocore's patch would outlive its run's scope.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*exceeded by function app-clients*", f"  Hint: {hint}"])


def test_a_service_suggestion_ends_in_one_question_mark(pytester):
    pytest.importorskip("botocore")
    pytester.makepyfile(
        test_service="""
        import pytest

        @pytest.mark.max_clients(1, service="dynamdb")
        def test_x():
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.stderr.fnmatch_lines(
        [
            "*@pytest.mark.max_clients: service='dynamdb' is not a boto3 service name; "
            "did you mean 'dynamodb' or 'dynamodbstreams'? The form is @pytest.mark.max_clients(n, *"
        ]
    )
    assert "?." not in result.stderr.str()


# -- mistakes: misspelt markers, usage errors -----------------------------------------------


MISSPELT = [
    ("max_connection(1)", "max_connections"),
    ("coldstart", "cold_start"),
    ("lambda_handlers('app.main.handler')", "lambda_handler"),
    ("Warm_Start", "warm_start"),
    ("max_client(1)", "max_clients"),
]


@pytest.mark.parametrize(("written", "meant"), MISSPELT)
@pytest.mark.parametrize("mode", ["warning", "strict", "filterwarnings"])
def test_a_misspelt_marker_is_an_error_naming_the_right_one(counter_project, written, meant, mode):
    if mode == "filterwarnings":
        counter_project.makeini("[pytest]\nfilterwarnings = error\n")
    else:
        counter_project.makeini("[pytest]\n")
    # The test uses the plugin (lambda_context): a misspelt marker would silently do nothing.
    counter_project.makepyfile(
        test_typo=f"""
        import pytest

        @pytest.mark.{written}
        def test_x(lambda_context):
            pass
        """
    )
    args = ["-p", "no:cacheprovider"]
    if mode == "strict":
        args.append("--strict-markers")
    elif mode == "warning":
        # As pytest runs without filterwarnings = error (this suite has it on).
        args += ["-W", "default::pytest.PytestUnknownMarkWarning"]
    result = counter_project.runpytest(*args)
    assert result.ret != 0
    name = written.partition("(")[0]
    expected = (
        f"*@pytest.mark.{name} is not a marker; did you mean @pytest.mark.{meant}? "
        "(a misspelt marker would silently do nothing)"
    )
    output = result.stdout.lines + result.stderr.lines
    assert any(__import__("fnmatch").fnmatch(line, expected) for line in output), output
    # It points at the test (warning) or the line (an import that failed).
    where = "test_typo.py::test_x" if mode == "warning" else "test_typo.py:3"
    assert any(where in line and "is not a marker" in line for line in output), output
    assert "pytest_lambda_context" not in "\n".join(output)


@pytest.mark.parametrize(("written", "meant"), MISSPELT)
def test_a_misspelt_marker_on_a_test_that_does_not_use_the_plugin_is_a_warning(
    pytester, written, meant
):
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_typo=f"""
        import pytest

        @pytest.mark.{written}
        def test_x():
            pass
        """
    )
    args = ["-p", "no:cacheprovider", "-W", "default::pytest.PytestUnknownMarkWarning"]
    result = pytester.runpytest(*args)
    # As without the plugin: the test passes, pytest warns of an unknown marker...
    assert result.ret == pytest.ExitCode.OK
    without = pytester.runpytest(*args, "-p", "no:lambda_context")
    assert without.parseoutcomes()["passed"] == result.parseoutcomes()["passed"] == 1
    name = written.partition("(")[0]
    # ... and the plugin's warning names the marker it was probably meant to be.
    result.stdout.fnmatch_lines(
        [
            f"*PytestUnknownMarkWarning: Unknown pytest.mark.{name}; did you mean "
            f"pytest.mark.{meant} of pytest-lambda-context?*"
        ]
    )


def test_a_registered_marker_near_one_of_ours_is_left_alone(pytester):
    pytester.makeini(
        "[pytest]\nfilterwarnings = error\nmarkers =\n    max_connection: the project's own\n"
    )
    pytester.makepyfile(
        test_own="""
        import pytest

        @pytest.mark.max_connection
        def test_x():
            pass
        """
    )
    pytester.runpytest("-p", "no:cacheprovider", "--strict-markers").assert_outcomes(passed=1)


def test_a_missing_handler_is_said_without_the_plugins_frames(pytester):
    pytester.makepyfile(test_x="def test_x(lambda_function):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["The lambda_function fixture needs to know which handler to load: mark the test*"]
    )
    assert "pytest_lambda_context" not in result.stdout.str()
    assert "session.py" not in result.stdout.str()


def test_per_test_figures_reach_junit_xml(counter_project):
    counter_project.makepyfile(
        test_figures="""
        import pytest

        @pytest.mark.lambda_handler("app.main.handler")
        def test_two_environments(lambda_function):
            lambda_function.invoke({})
            lambda_function.invoke({})
            lambda_function.cold_start().invoke({})

        def test_without_a_function():
            pass
        """
    )
    xml_path = counter_project.path / "junit.xml"
    result = counter_project.runpytest("-p", "no:cacheprovider", f"--junitxml={xml_path}")
    result.assert_outcomes(passed=2)
    cases = {case.get("name"): case for case in ElementTree.parse(xml_path).iter("testcase")}
    properties = {
        p.get("name"): p.get("value") for p in cases["test_two_environments"].iter("property")
    }
    assert properties == {
        "lambda_environments": "2",
        "lambda_cold_starts": "2",
        "lambda_invocations": "3",
        "lambda_connections": "0",
        "lambda_boto3_clients": "0",
    }
    assert not list(cases["test_without_a_function"].iter("property"))
