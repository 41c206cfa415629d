"""Glue between pytest and moto: the ``aws`` fixture, and client accounting per function.

Imported only when a test makes a function or uses the fixture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from pytest_lambda_context.environments.function_config import FunctionConfig, FunctionWiring
from pytest_lambda_context.observe import clients
from pytest_lambda_context.plugin.session import PluginState, TestFunctions
from pytest_lambda_context.services.aws import AwsService, MissingDependencyError

__all__ = ["OWN_FIXTURE", "ProjectAwsFixtureWarning", "aws_fixture", "prepare_function"]

T = TypeVar("T")


def aws_fixture(request: pytest.FixtureRequest, state: PluginState) -> Iterator[AwsService]:
    """The ``aws`` fixture's body (plugin.py wires it)."""
    service = AwsService(
        servers=state.moto_servers,
        functions=lambda: TestFunctions.of(request.node).functions,
        guard_unmocked=state.options.get("lambda_network") != "allow",
    )
    _failing_on_missing(service.start)
    try:
        yield service
    finally:
        service.stop()


def prepare_function(request: pytest.FixtureRequest, config: FunctionConfig) -> FunctionWiring:
    """Called before each ``LambdaFunction`` a test makes (``function_preparers``).

    Client accounting runs while the function lives. With the ``aws`` fixture in the
    test, the fixture is set up *now* if it is not yet (whatever the order of the test's
    arguments), so moto is active before any environment of the function exists.
    """
    clients.install()
    request.addfinalizer(clients.uninstall)
    if OWN_FIXTURE not in request.fixturenames:
        if "aws" in request.fixturenames and not config.capabilities.in_test_process:
            _warn_project_aws(request)
        return FunctionWiring()
    service: AwsService = request.getfixturevalue(OWN_FIXTURE)
    return _failing_on_missing(lambda: service.prepare(config))


# What the plugin's `aws` fixture stands on (the name a project's own `aws` does not have).
OWN_FIXTURE = "_lambda_aws"


class ProjectAwsFixtureWarning(pytest.PytestWarning):
    """A project's own ``aws`` fixture is used with a function outside the test process."""

    __module__ = "pytest_lambda_context"


def _warn_project_aws(request: pytest.FixtureRequest) -> None:
    request.node.warn(
        ProjectAwsFixtureWarning(
            "the aws fixture of this test is the project's own (it wins over "
            "pytest-lambda-context's): whatever it mocks is mocked in the test process only, "
            "and this function's code runs in worker processes (process isolation), where "
            "it is not. Use module isolation for it, or name your fixture otherwise to get "
            "the plugin's aws fixture (moto for workers too)."
        )
    )


def _failing_on_missing(action: Callable[[], T]) -> T:
    """A missing extra fails the test with what to install, not a traceback."""
    failure = None
    try:
        return action()
    except MissingDependencyError as exc:
        failure = str(exc)
    # Outside the except block: no chained traceback.
    pytest.fail(failure, pytrace=False)
