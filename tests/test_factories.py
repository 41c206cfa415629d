"""factories.lambda_function and factories.datastore in a project's conftest: module
scope keeps environments warm across tests, limits apply, the reports have them."""

from __future__ import annotations

import json

import pytest

from pytest_lambda_context import HandlerError

assert HandlerError.__module__ == "pytest_lambda_context.runtime.errors"  # before inner runs

CONFTEST = """
from pytest_lambda_context import factories

cache = factories.datastore("redis", scope="module")
counter = factories.lambda_function(
    "app.counter.handler", scope="module", env={{"REDIS_URL": "{{cache_url}}"}}, isolation={isolation!r}
)
per_call = factories.lambda_function(
    "app.per_call.handler", scope="module", env={{"REDIS_URL": "{{cache_url}}"}}, isolation={isolation!r}
)
"""
HANDLERS = {
    "app/__init__.py": "",
    "app/counter.py": """
import functools, os
import redis

@functools.cache
def client():
    return redis.Redis.from_url(os.environ["REDIS_URL"])

def handler(event, context):
    return client().incr("hits")
""",
    "app/per_call.py": """
import os
import redis

def handler(event, context):
    with redis.Redis.from_url(os.environ["REDIS_URL"]) as client:
        return client.incr("calls")
""",
}


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytest.importorskip("redis")
    for name, text in HANDLERS.items():
        (pytester.path / name).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / name).write_text(text)
    return pytester


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_a_module_scoped_function_stays_warm_across_tests_and_its_limits_apply(
    project: pytest.Pytester, isolation: str
) -> None:
    project.makeconftest(CONTEST_FOR(isolation))
    project.makepyfile(
        test_counts="""
import pytest

@pytest.mark.max_connections(1)
def test_first(counter, cache):
    assert [counter.invoke({}) for _ in range(2)] == [1, 2]
    assert cache.connections.opened == 1

@pytest.mark.max_connections(0)
def test_second_reuses_the_environment(counter, cache):
    assert counter.invoke({}) == 3  # the same environment, database and connection
    assert cache.connections.opened == 1  # a module-scoped datastore counts from its start
    assert len(counter.environments) == 1

@pytest.mark.max_connections(0, per="warm")
def test_per_call(per_call):
    for _ in range(3):
        per_call.invoke({})
"""
    )
    result = project.runpytest("-p", "no:cacheprovider", "--lambda-report=report.json")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*max_connections(0, per='warm') exceeded by function app-per_call*",
            "*env-1 invocation 2 (*) created 1 connection (limit 0):*",
        ]
    )
    report = json.loads((project.path / "report.json").read_text())
    functions = {f["function_name"]: f for f in report["functions"]}
    assert set(functions) == {"app-counter", "app-per_call"}
    assert [e["warm_invocations"] for e in functions["app-counter"]["environments"]] == [2]
    broken = functions["app-per_call"]["environments"][0]["limits_broken"]
    assert broken and "per='warm'" in broken[0]


def CONTEST_FOR(isolation: str) -> str:
    return CONFTEST.format(isolation=isolation)


def test_a_function_scoped_factory_belongs_to_its_test(project: pytest.Pytester) -> None:
    project.makeconftest(
        """
from pytest_lambda_context import factories

counter = factories.lambda_function("app.counter.handler", env={"REDIS_URL": "{redis_url}"})
"""
    )
    project.makepyfile(
        test_it="""
def test_one(counter):
    assert counter.invoke({}) == 1

def test_two(counter, redis):
    assert counter.invoke({}) == 1  # a new function, environment and database
    assert redis.connections.opened == 1
"""
    )
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "factories.datastore('postgress')",
            "factories.datastore('postgress'): no such datastore; choose one of postgres, "
            "mysql, redis",
        ),
        (
            "factories.datastore('redis', scope='modul')",
            "factories.datastore(scope='modul'): choose one of function, class, module, "
            "package, session",
        ),
        (
            "factories.datastore('postgres', url='http://db:5432')",
            "factories.datastore('postgres', url=...): expected postgresql://*",
        ),
        (
            "factories.lambda_function('app.counter.handler', timeout='a')",
            "factories.lambda_function('app.counter.handler', ...): timeout must be*",
        ),
    ],
)
def test_bad_factory_arguments_fail_where_the_conftest_is_loaded(
    project: pytest.Pytester, line: str, message: str
) -> None:
    project.makeconftest(f"from pytest_lambda_context import factories\nmade = {line}\n")
    project.makepyfile(test_it="def test_it(): pass\n")
    result = project.runpytest("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stderr.fnmatch_lines([f"*Error: {message}"])


def test_a_version_the_server_is_not_fails_naming_both(project: pytest.Pytester) -> None:
    project.makeconftest(
        "from pytest_lambda_context import factories\n"
        "old = factories.datastore('redis', version='2.')\n"
    )
    project.makepyfile(test_it="def test_it(old):\n    pass\n")
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*old: version '2.' was asked for, but the Redis server is 7*"])


def test_limits_apply_to_a_function_a_fixture_built_itself(project: pytest.Pytester) -> None:
    project.makeconftest(
        """
import pytest
from pytest_lambda_context import LambdaFunction, factories

store = factories.datastore("redis", scope="module")

@pytest.fixture(scope="module")
def own(store):
    function = LambdaFunction("app.per_call.handler", env={"REDIS_URL": store.url})
    yield function
    function.close()
"""
    )
    project.makepyfile(
        test_it="""
import pytest

@pytest.mark.max_connections(0)
def test_it(own):
    for _ in range(3):
        own.invoke({})
"""
    )
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*env-1 created 3 connections (limit 0):*"])
