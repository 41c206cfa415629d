"""What an execution environment knows of its function: a frozen spec and a sink.

Environments never see the ``LambdaFunction`` itself (as a pytest-xdist worker
controller gets a callback, not the session): they read the function's configuration
from a ``FunctionSpec`` and report what happened through a ``FunctionSink``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from pytest_lambda_context.environments.template import WorkerTemplate
    from pytest_lambda_context.observe.connections import ConnectionEvent
    from pytest_lambda_context.runtime.clock import PluginClock
    from pytest_lambda_context.runtime.records import Invocation

__all__ = ["EnvironmentState", "FunctionSink", "FunctionSpec", "InitializationType"]

EnvironmentState = Literal["new", "warm", "shutdown"]
InitializationType = Literal[
    "on-demand", "provisioned-concurrency", "snap-start", "lambda-managed-instances"
]


@dataclass(frozen=True)
class FunctionSpec:
    """The function's configuration, as every environment of it sees it."""

    handler: str
    function_name: str
    timeout: float
    memory_mb: int
    code_root: str
    network: str
    # Where environments get their /tmp (None: the system's temp folder).
    tmp_root: str | None
    # The session's clock: shared, and moved by ``idle()``.
    clock: PluginClock
    # Host folders that process isolation's private /tmp must still show (pytest's).
    host_paths: tuple[str, ...] = ()
    # Lambda Managed Instances: runtime processes per environment (None: the default model).
    per_environment_concurrency: int | None = None
    # AWS_REGION and AWS_DEFAULT_REGION, and the region of the function's ARN.
    region: str = "us-east-1"
    # The test process's variables that function code sees besides PATH and LANG
    # (True: all of them).
    inherit_env: tuple[str, ...] | bool = ()
    # Top-level packages imported afresh for each environment in module isolation.
    fresh_packages: frozenset[str] = frozenset()
    # ``code_root`` with one trailing separator: what module paths are matched against.
    code_root_prefix: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "code_root_prefix", self.code_root.rstrip(os.sep) + os.sep)


class FunctionSink(Protocol):
    """What an environment hands back to the function it serves."""

    def next_request_id(self) -> str:
        """A new request id, unique within the function."""

    def record_invocation(self, invocation: Invocation) -> None: ...

    def record_connection(self, event: ConnectionEvent) -> None: ...

    def record_client(self, event: Any) -> None: ...

    def keep_until_close(self, key: str, acquire: Callable[[], Callable[[], None]]) -> None:
        """Once per function and ``key``: call ``acquire``; what it returns runs at close."""

    def worker_template(self) -> WorkerTemplate:
        """The template process that forks this function's workers (process isolation)."""
