"""pytest-lambda-context: test AWS Lambda handlers across execution-environment reuse.

Names are imported on first use, so installing the plugin costs a test session
nothing until a test asks for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "LambdaFunction": "pytest_lambda_context.environments.function",
    "FunctionConfig": "pytest_lambda_context.environments.function_config",
    "ExecutionEnvironment": "pytest_lambda_context.environments.base",
    "Invocation": "pytest_lambda_context.runtime.records",
    "LambdaContext": "pytest_lambda_context.runtime.context",
    "ConnectionLog": "pytest_lambda_context.observe.connections",
    "ConnectionEvent": "pytest_lambda_context.observe.connections",
    "NetworkBlockedError": "pytest_lambda_context.observe.guard",
    "BlockedLookupError": "pytest_lambda_context.observe.guard",
    "PluginClock": "pytest_lambda_context.runtime.clock",
    "LambdaError": "pytest_lambda_context.runtime.errors",
    "InitError": "pytest_lambda_context.runtime.errors",
    "HandlerError": "pytest_lambda_context.runtime.errors",
    "InvocationTimeout": "pytest_lambda_context.runtime.errors",
    "MarshalError": "pytest_lambda_context.runtime.errors",
    "RuntimeExitError": "pytest_lambda_context.runtime.errors",
    "SnapStartError": "pytest_lambda_context.runtime.errors",
    "SnapStartTimeoutError": "pytest_lambda_context.runtime.errors",
    "RequestTooLargeError": "pytest_lambda_context.runtime.errors",
    "ResponseTooLargeError": "pytest_lambda_context.runtime.errors",
    "TooManyRequestsError": "pytest_lambda_context.runtime.errors",
    "TcpProxy": "pytest_lambda_context.observe.proxy",
    "TestSidePatchWarning": "pytest_lambda_context.environments.test_side_patches",
    "SharedTmpWarning": "pytest_lambda_context.environments.shared_tmp",
    "SharedConnectionWarning": "pytest_lambda_context.observe.shared_connections",
    "IsolationLeakWarning": "pytest_lambda_context.environments.leaks",
    "EmbeddedElasticsearch": "pytest_lambda_context.services.elasticsearch.embedded",
    "ElasticsearchService": "pytest_lambda_context.services.elasticsearch.service",
    "AwsService": "pytest_lambda_context.services.aws",
    "UncountedConnectionsWarning": "pytest_lambda_context.plugin.uncounted",
    "ProjectAwsFixtureWarning": "pytest_lambda_context.plugin.aws_fixture",
}

__all__ = [
    "AwsService",
    "BlockedLookupError",
    "ConnectionEvent",
    "ConnectionLog",
    "ElasticsearchService",
    "EmbeddedElasticsearch",
    "ExecutionEnvironment",
    "FunctionConfig",
    "HandlerError",
    "InitError",
    "Invocation",
    "InvocationTimeout",
    "IsolationLeakWarning",
    "LambdaContext",
    "LambdaError",
    "LambdaFunction",
    "MarshalError",
    "NetworkBlockedError",
    "PluginClock",
    "ProjectAwsFixtureWarning",
    "RequestTooLargeError",
    "ResponseTooLargeError",
    "RuntimeExitError",
    "SharedConnectionWarning",
    "SharedTmpWarning",
    "SnapStartError",
    "SnapStartTimeoutError",
    "TcpProxy",
    "TestSidePatchWarning",
    "TooManyRequestsError",
    "UncountedConnectionsWarning",
    "factories",
]

if TYPE_CHECKING:
    from pytest_lambda_context.environments.base import ExecutionEnvironment
    from pytest_lambda_context.environments.function import LambdaFunction
    from pytest_lambda_context.environments.function_config import FunctionConfig
    from pytest_lambda_context.environments.leaks import IsolationLeakWarning
    from pytest_lambda_context.environments.shared_tmp import SharedTmpWarning
    from pytest_lambda_context.environments.test_side_patches import TestSidePatchWarning
    from pytest_lambda_context.observe.connections import ConnectionEvent, ConnectionLog
    from pytest_lambda_context.observe.guard import BlockedLookupError, NetworkBlockedError
    from pytest_lambda_context.observe.proxy import TcpProxy
    from pytest_lambda_context.observe.shared_connections import SharedConnectionWarning
    from pytest_lambda_context.plugin import factories
    from pytest_lambda_context.plugin.aws_fixture import ProjectAwsFixtureWarning
    from pytest_lambda_context.plugin.uncounted import UncountedConnectionsWarning
    from pytest_lambda_context.runtime.clock import PluginClock
    from pytest_lambda_context.runtime.context import LambdaContext
    from pytest_lambda_context.runtime.errors import (
        HandlerError,
        InitError,
        InvocationTimeout,
        LambdaError,
        MarshalError,
        RequestTooLargeError,
        ResponseTooLargeError,
        RuntimeExitError,
        SnapStartError,
        SnapStartTimeoutError,
        TooManyRequestsError,
    )
    from pytest_lambda_context.runtime.records import Invocation
    from pytest_lambda_context.services.aws import AwsService
    from pytest_lambda_context.services.elasticsearch.embedded import EmbeddedElasticsearch
    from pytest_lambda_context.services.elasticsearch.service import ElasticsearchService


def __getattr__(name: str) -> Any:
    if name == "factories":  # a module: from pytest_lambda_context import factories
        found = importlib.import_module("pytest_lambda_context.plugin.factories")
        globals()[name] = found
        return found
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_lambda_context' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
