"""``per_environment_concurrency=N``: Lambda Managed Instances' execution environments.

On Lambda Managed Instances the Python runtime serves up to N requests at once per
execution environment (``PerExecutionEnvironmentMaxConcurrency``), one per runtime
process: N processes, each with its own init and module state, sharing the
environment's /tmp, with ``AWS_LAMBDA_MAX_CONCURRENCY=N`` set. AWS's runtime client
starts them from its bootstrap process before any function code is loaded; here the
environment's own process (a fork server, forked from the clean template) forks them.

The environment is initialised when it is created (Managed Instances start
environments ahead of traffic, so no request waits for an init), and it is never
frozen: it stays active between invocations. A timeout or a crash of one request
ends the environment, all its processes, as in the other models here.
"""

from __future__ import annotations

import queue
import shutil
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pytest_lambda_context.environments.base import ExecutionEnvironment
from pytest_lambda_context.environments.fork_server import ForkServer
from pytest_lambda_context.environments.process import ProcessEnvironment
from pytest_lambda_context.runtime.clock import real_monotonic
from pytest_lambda_context.runtime.handler import Outcome
from pytest_lambda_context.runtime.records import OutcomeKind

if TYPE_CHECKING:
    from pytest_lambda_context.environments.function_config import FunctionConfig
    from pytest_lambda_context.environments.spec import (
        FunctionSink,
        InitializationType,
    )
    from pytest_lambda_context.runtime.invoke_headers import InvokeHeaders

__all__ = ["INITIALIZATION_TYPE", "ManagedInstanceEnvironment", "RuntimeProcess"]

INITIALIZATION_TYPE: InitializationType = "lambda-managed-instances"


class RuntimeProcess(ProcessEnvironment):
    """One runtime process of a Managed Instances environment (not an environment itself)."""

    freezes = False  # a Managed Instances environment keeps running between requests

    def __init__(
        self,
        spec: FunctionConfig,
        sink: FunctionSink,
        env_id: str,
        variables: dict[str, str],
        server: ForkServer,
        tmpdir: str,
    ) -> None:
        super().__init__(
            spec, sink, env_id, INITIALIZATION_TYPE, variables, template=server, tmpdir=tmpdir
        )

    def _initial_environ(self) -> dict[str, str]:
        environ = super()._initial_environ()
        environ["AWS_LAMBDA_MAX_CONCURRENCY"] = str(self.spec.per_environment_concurrency)
        return environ


class ManagedInstanceEnvironment(ExecutionEnvironment):
    """An execution environment that serves up to N requests at once, one per process."""

    isolation = "process"

    def __init__(
        self,
        spec: FunctionConfig,
        sink: FunctionSink,
        env_id: str,
        initialization_type: InitializationType,
        variables: dict[str, str],
    ) -> None:
        # Whatever asked for it, a Managed Instances environment starts the same way.
        super().__init__(spec, sink, env_id, INITIALIZATION_TYPE, variables)
        count = spec.per_environment_concurrency or 1
        # The environment's own process (its /tmp is the environment's): it forks the
        # runtime processes, which share it.
        self._server = ForkServer(
            spec, sink, env_id, INITIALIZATION_TYPE, variables, tmpdir=self._tmpdir
        )
        self.processes = [
            RuntimeProcess(spec, sink, env_id, variables, self._server, self._tmpdir)
            for _ in range(count)
        ]
        # The idle runtime processes, the most recently used first.
        self._idle: queue.LifoQueue[RuntimeProcess] = queue.LifoQueue()

    @property
    def module(self) -> ModuleType:
        raise RuntimeError(
            f"{self.id} runs its handler in {len(self.processes)} runtime processes, each "
            "with its own module: have the handler return what the test needs to see."
        )

    def _run_init(self, request_id: str | None) -> Outcome:
        started = real_monotonic()
        self._server.start_serving()
        # The runtime starts all its processes at once; each runs the function's init.
        with ThreadPoolExecutor(max_workers=len(self.processes)) as pool:
            outcomes = list(pool.map(lambda p: p._run_init(request_id), self.processes))
        events = [event for outcome in outcomes for event in outcome.events]
        # Every runtime process's init output, in the environment's one log stream.
        output = [line for outcome in outcomes for line in outcome.output or ()]
        echo = [chunk for outcome in outcomes for chunk in outcome.echo or ()]
        duration = (real_monotonic() - started) * 1000.0
        for outcome in outcomes:
            if outcome.kind is not OutcomeKind.OK:
                return Outcome(
                    outcome.kind,
                    payload=outcome.payload,
                    duration_ms=duration,
                    events=events,
                    output=output,
                    echo=echo,
                )
        for process in self.processes:
            process.state = "warm"
            self._idle.put(process)
        return Outcome(
            OutcomeKind.OK, duration_ms=duration, events=events, output=output, echo=echo
        )

    def _run_invoke(
        self, request_id: str, event: Any, deadline_ms: float, headers: InvokeHeaders | None
    ) -> Outcome:
        process = self._idle.get()  # up to N requests at once; more wait for a process
        outcome = process._run_invoke(request_id, event, deadline_ms, headers)
        if outcome.kind not in (OutcomeKind.TIMEOUT, OutcomeKind.RUNTIME_EXIT):
            self._idle.put(process)
        return outcome

    def interrupt(self) -> None:
        for process in self.processes:
            process.interrupt()

    def _release(self) -> None:
        try:
            for process in self.processes:
                process.shutdown(self.shutdown_reason or "shutdown")
        finally:
            self._server.shutdown(self.shutdown_reason or "shutdown")
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def _max_memory_used_mb(self) -> int:
        return max(process._max_memory_used_mb() for process in self.processes)

    def __repr__(self) -> str:
        return (
            f"<ManagedInstanceEnvironment {self.id} of {self.spec.function_name}: "
            f"{self.state}, {len(self.processes)} processes, {len(self.invocations)} invocations>"
        )
