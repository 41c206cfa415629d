"""What an execution environment knows of its function: a frozen config and a sink.

Environments never see the ``LambdaFunction`` itself (as a pytest-xdist worker
controller gets a callback, not the session): they read the function's configuration
from its ``FunctionConfig`` (their ``spec``; environments/function_config.py) and
report what happened through a ``FunctionSink``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from pytest_lambda_context.environments.template import WorkerTemplate
    from pytest_lambda_context.observe.connections import ConnectionEvent
    from pytest_lambda_context.runtime.records import Invocation

__all__ = ["EnvironmentState", "FunctionSink", "InitializationType"]

EnvironmentState = Literal["new", "warm", "shutdown"]
InitializationType = Literal[
    "on-demand", "provisioned-concurrency", "snap-start", "lambda-managed-instances"
]


class FunctionSink(Protocol):
    """What an environment hands back to the function it serves."""

    def next_request_id(self) -> str:
        """A new request id, unique within the function."""

    def record_invocation(self, invocation: Invocation) -> None: ...

    def record_connection(self, event: ConnectionEvent) -> None: ...

    def record_client(self, event: Any) -> None: ...

    def keep_tmp(self, path: str) -> None:
        """The /tmp folder of an environment Lambda reset (a timeout, a crash): the
        function's next environment takes it on, as the reset environment keeps it."""

    def keep_until_close(self, key: str, acquire: Callable[[], Callable[[], None]]) -> None:
        """Once per function and ``key``: call ``acquire``; what it returns runs at close."""

    def worker_template(self) -> WorkerTemplate:
        """The template process that forks this function's workers (process isolation)."""
