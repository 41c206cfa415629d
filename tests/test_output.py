"""What the plugin prints: the summary, a failing test's section, errors for mistakes.

Each message is checked as a user sees it, in a real pytest run (pytester).
"""

from __future__ import annotations

import json

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


def test_the_first_warm_start_tests_first_invocation_is_the_cold_start(counter_project):
    counter_project.makepyfile(
        test_warm="""
        import pytest

        pytestmark = [pytest.mark.lambda_handler("app.main.handler"), pytest.mark.warm_start]

        def test_first(lambda_env):
            assert lambda_env.state == "warm"  # initialised ahead, by the fixture
            lambda_env.invoke({})
            (invocation,) = lambda_env.invocations
            assert invocation.cold
            assert invocation.init_duration_ms == lambda_env.init_duration_ms
            assert "Init Duration" in invocation.report_line

        def test_second(lambda_env):
            lambda_env.invoke({})
            assert [i.cold for i in lambda_env.invocations] == [True, False]
        """
    )
    report = counter_project.path / "report.json"
    result = counter_project.runpytest("-p", "no:cacheprovider", f"--lambda-report={report}")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["app-main (*): 1 environment (1 cold start), 2 invocations*"])
    records = json.loads(report.read_text())["functions"]
    invocations = records[-1]["environments"][0]["invocations"]
    assert [i["cold"] for i in invocations] == [True, False]


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
