"""``fresh_packages``: third-party packages with per-environment state are each
environment's own in module isolation, tried with the real aws-lambda-powertools."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import FunctionMaker, function_maker, write_project

from pytest_lambda_context import LambdaFunction

pytest.importorskip("aws_lambda_powertools", reason="aws-lambda-powertools (dev group)")

HANDLERS = {
    "app/__init__.py": "",
    "app/logged.py": """
        import logging
        from aws_lambda_powertools import Logger

        logger = Logger(service="orders")

        @logger.inject_lambda_context
        def handler(event, context):
            return {"cold_start": logger.get_current_keys().get("cold_start")}
    """,
    "app/flags.py": """
        from aws_lambda_powertools.utilities import parameters

        def handler(event, context):
            # Cached for 5 seconds by default, in powertools' module-level provider.
            return {"flag": parameters.get_parameter("/app/flag")}
    """,
    "app/own_handler.py": """
        import io, logging
        from aws_lambda_powertools import Logger

        stream = io.StringIO()
        logger = Logger(service="billing", logger_handler=logging.StreamHandler(stream))

        @logger.inject_lambda_context
        def handler(event, context):
            logger.info("charged")
            return {"logged": "charged" in stream.getvalue()}
    """,
}


@pytest.fixture
def make(project: Callable[[dict[str, str]], Path]) -> Iterator[FunctionMaker]:
    with function_maker(code_root=project(HANDLERS)) as maker:
        yield maker


def cold_starts(function: LambdaFunction) -> list[object]:
    """Logger's cold_start key: two invocations in one environment, then one in another."""
    seen = [function.invoke({})["cold_start"], function.invoke({})["cold_start"]]
    seen.append(function.cold_start().invoke({})["cold_start"])
    return seen


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_powertools_cold_start_is_per_environment(make, isolation):
    function = make("app.logged.handler", isolation=isolation)
    assert cold_starts(function) == [True, False, True]
    assert [e.id for e in function.environments] == ["env-1", "env-2"]


def test_the_test_keeps_its_own_copy_of_powertools(make):
    import aws_lambda_powertools.logging.logger as tests_copy

    before = tests_copy.is_cold_start
    function = make("app.logged.handler")
    assert cold_starts(function) == [True, False, True]
    assert sys.modules["aws_lambda_powertools.logging.logger"] is tests_copy
    assert tests_copy.is_cold_start == before
    # Each environment's module is its own, not the test's.
    assert function.environments[0].module.Logger is not tests_copy.Logger


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_a_logger_with_its_own_handler_works_in_a_second_environment(make, isolation):
    function = make("app.own_handler.handler", isolation=isolation)
    assert function.invoke({}) == {"logged": True}
    assert function.cold_start().invoke({}) == {"logged": True}


def test_fresh_packages_adds_to_the_default(make):
    function = make("app.logged.handler", fresh_packages=["jmespath"])
    assert {"aws_lambda_powertools", "aws_embedded_metrics", "jmespath"} <= set(
        function.spec.fresh_packages
    )
    assert cold_starts(function) == [True, False, True]


def test_fresh_packages_are_accepted_in_process_isolation(make):
    function = make("app.logged.handler", isolation="process", fresh_packages=["jmespath"])
    assert function.invoke({})["cold_start"] is True


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ("jmespath", TypeError, r"fresh_packages='jmespath': give a list of top-level package"),
        ([3], TypeError, r"give a list of top-level package names"),
        (
            ["aws_lambda_powertools.logging"],
            ValueError,
            r"top-level package 'aws_lambda_powertools'",
        ),
        (["no_such_package_here"], ValueError, r"no package named 'no_such_package_here'"),
        (["logging"], ValueError, r"'logging' cannot be imported afresh.*isolation='process'"),
        (["pytest"], ValueError, r"'pytest' cannot be imported afresh"),
    ],
)
def test_bad_fresh_packages_say_what_is_wrong(make, given, error, message):
    with pytest.raises(error, match=message):
        make("app.logged.handler", fresh_packages=given)


def test_the_ini_option_and_the_marker_add_packages(pytester):
    write_project(
        pytester,
        HANDLERS,
        test_session="""
        import pytest

        @pytest.mark.lambda_handler("app.logged.handler", fresh_packages=["urllib3"])
        def test_both(lambda_function):
            assert {"jmespath", "urllib3", "aws_lambda_powertools"} <= set(
                lambda_function.spec.fresh_packages
            )
            assert lambda_function.invoke({})["cold_start"] is True
        """,
        ini="[pytest]\nlambda_fresh_packages = jmespath\n",
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_a_bad_ini_value_is_a_usage_error(pytester):
    write_project(
        pytester,
        HANDLERS,
        test_session="def test_nothing():\n    pass\n",
        ini="[pytest]\nlambda_fresh_packages = os\n",
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.stderr.fnmatch_lines(["*lambda_fresh_packages*'os' cannot be imported afresh*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_parameters_cached_by_one_test_do_not_reach_the_next(pytester, isolation):
    pytest.importorskip("moto", reason="moto (aws extra)")
    write_project(
        pytester,
        HANDLERS,
        test_session=f"""
        import boto3
        import pytest

        pytestmark = pytest.mark.lambda_handler(
            "app.flags.handler", isolation={isolation!r}
        )

        @pytest.mark.parametrize("value", ["first", "second"])
        def test_flag(lambda_function, aws, value):
            boto3.client("ssm").put_parameter(Name="/app/flag", Value=value, Type="String")
            assert lambda_function.invoke({{}}) == {{"flag": value}}
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
