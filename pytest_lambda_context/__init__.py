"""pytest-lambda-context: test AWS Lambda handlers across execution-environment reuse.

Names are imported on first use, so installing the plugin costs a test session
nothing until a test asks for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "LambdaFunction": ".function",
    "ExecutionEnvironment": ".environment",
    "Invocation": ".records",
    "LambdaContext": ".context",
    "ConnectionLog": ".connections",
    "ConnectionEvent": ".connections",
    "NetworkBlockedError": ".netguard",
    "BlockedLookupError": ".netguard",
    "PluginClock": ".clock",
    "LambdaError": ".errors",
    "InitError": ".errors",
    "HandlerError": ".errors",
    "InvocationTimeout": ".errors",
    "MarshalError": ".errors",
    "RuntimeExitError": ".errors",
    "TcpProxy": ".proxy",
    "EmbeddedElasticsearch": ".embedded",
}

__all__ = [
    "BlockedLookupError",
    "ConnectionEvent",
    "ConnectionLog",
    "EmbeddedElasticsearch",
    "ExecutionEnvironment",
    "HandlerError",
    "InitError",
    "Invocation",
    "InvocationTimeout",
    "LambdaContext",
    "LambdaError",
    "LambdaFunction",
    "MarshalError",
    "NetworkBlockedError",
    "PluginClock",
    "RuntimeExitError",
    "TcpProxy",
]

if TYPE_CHECKING:
    from .clock import PluginClock
    from .connections import ConnectionEvent, ConnectionLog
    from .context import LambdaContext
    from .embedded import EmbeddedElasticsearch
    from .environment import ExecutionEnvironment
    from .errors import (
        HandlerError,
        InitError,
        InvocationTimeout,
        LambdaError,
        MarshalError,
        RuntimeExitError,
    )
    from .function import LambdaFunction
    from .netguard import BlockedLookupError, NetworkBlockedError
    from .proxy import TcpProxy
    from .records import Invocation


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_lambda_context' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
