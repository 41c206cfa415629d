"""Execution environments: the lifecycle every isolation shares.

An environment is created "new", runs the function's init code once (lazily, at its
first invocation, as on Lambda), then serves invocations "warm" until it is shut
down: by a timeout, a crash, an idle timeout, or the end of the test.
"""

from __future__ import annotations

import logging
import os
import resource
import secrets
import tempfile
import time
from dataclasses import asdict, is_dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pytest_lambda_context.observe.connections import (
    ConnectionEvent,
    ConnectionLog,
    merge_seen_twice,
)
from pytest_lambda_context.runtime.context import reserved_environment
from pytest_lambda_context.runtime.errors import ERROR_CLASSES, InitError, LambdaError
from pytest_lambda_context.runtime.handler import Outcome
from pytest_lambda_context.runtime.records import Invocation, json_copy

if TYPE_CHECKING:
    from pytest_lambda_context.environments.spec import (
        EnvironmentState,
        FunctionSink,
        FunctionSpec,
        InitializationType,
    )

__all__ = ["ExecutionEnvironment"]

log = logging.getLogger("pytest_lambda_context")
_RESTORE_ERRORS = ("snapstart", "snapstart_timeout")


class RemoteTraceback(Exception):
    """The function's traceback from a worker process, where the exception itself stayed."""

    def __str__(self) -> str:
        return "\n" + "".join(self.args[0])


def _remote_cause(payload: dict[str, Any]) -> RemoteTraceback | None:
    # Process isolation sends only Lambda's payload back; show its stack trace as the
    # cause, so pytest prints where the handler failed, as it does in module isolation.
    trace = payload.get("stackTrace")
    if not trace:
        return None
    return RemoteTraceback([*trace, f"{payload['errorType']}: {payload['errorMessage']}"])


class ExecutionEnvironment:
    """One emulated execution environment of a ``LambdaFunction``."""

    isolation = ""

    def __init__(
        self,
        spec: FunctionSpec,
        sink: FunctionSink,
        env_id: str,
        initialization_type: InitializationType,
        variables: dict[str, str],
        tmpdir: str | None = None,
    ) -> None:
        """``variables``: the function's own ``env``, placeholders filled in; ``tmpdir``:
        a /tmp folder shared with others (a Managed Instances environment's), not ours."""
        self.spec = spec
        self._sink = sink
        self.id = env_id
        self.initialization_type = initialization_type
        self.state: EnvironmentState = "new"
        self.shutdown_reason: str | None = None
        self.init_duration_ms: float | None = None
        self.init_error: dict[str, Any] | None = None
        # SnapStart: an environment restored from the snapshot has no init of its own.
        self.restore_duration_ms: float | None = None
        self.billed_restore_duration_ms: int | None = None
        self.invocations: list[Invocation] = []
        self.connections = ConnectionLog()
        # boto3/botocore clients created by function code (events from the aws monitor).
        self.clients: list[Any] = []
        self.last_used = spec.clock.monotonic()
        # Unique across the session: an environment can outlive its function (warm reuse).
        self.uid = secrets.token_hex(6)
        self._report_init = True
        self._memory_mb = 0
        self._memory_read_at = -1.0
        self.log_stream_name = f"2026/01/01/[$LATEST]{secrets.token_hex(16)}"
        self._function_variables = variables
        # Lambda gives each environment its own /tmp.
        self._owns_tmpdir = tmpdir is None
        self._tmpdir = tmpdir or tempfile.mkdtemp(
            prefix=f"lambda-{spec.function_name}-{env_id}-", dir=spec.tmp_root
        )

    def _initial_environ(self) -> dict[str, str]:
        """The variables function code starts with.

        The test process's own first (so what fixtures such as ``aws`` set reaches the
        function), then Lambda's reserved variables, TMPDIR, and the function's ``env``.
        """
        spec = self.spec
        variables = dict(os.environ)
        variables.update(
            reserved_environment(
                handler=spec.handler,
                function_name=spec.function_name,
                memory_mb=spec.memory_mb,
                log_stream_name=self.log_stream_name,
                task_root=spec.code_root,
                initialization_type=self.initialization_type,
            )
        )
        variables["TMPDIR"] = self._tmpdir
        variables.update(self._function_variables)
        return variables

    # -- to be provided by each isolation ---------------------------------------
    def _run_init(self, request_id: str | None) -> Outcome:
        raise NotImplementedError

    def _run_invoke(self, request_id: str, event: Any, deadline_ms: float) -> Outcome:
        raise NotImplementedError

    def _release(self) -> None:
        """Free what the environment holds (modules, worker process, temp folder)."""

    def interrupt(self) -> None:
        """End an invocation that is running now (on Ctrl-C); a no-op where none can run
        on another thread."""

    def attach(self, sink: FunctionSink) -> None:
        """Serve another function of the same configuration (warm reuse across tests)."""
        self._sink = sink

    def serves(self, sink: FunctionSink) -> bool:
        """Does this environment report to ``sink`` (the function that routes to it)?"""
        return self._sink is sink

    @property
    def module(self) -> ModuleType:
        """This environment's handler module, for white-box checks."""
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------------
    def init(self) -> None:
        """Run the init phase now (as provisioned concurrency does) unless it ran."""
        __tracebackhide__ = True  # pytest shows the user's frames, not the plugin's
        self._check_usable()
        if self.state == "new":
            self._init(request_id=None)
            # On demand, Lambda reports the init with the first invocation (cold, with
            # Init Duration) even when it ran ahead, as for a warm_start test's
            # environment; provisioned environments were initialised ahead of traffic.
            self._report_init = self.initialization_type == "on-demand"
            self.last_used = self.spec.clock.monotonic()

    def invoke(self, event: Any) -> Any:
        """Invoke the handler in this environment; returns the result or raises LambdaError."""
        __tracebackhide__ = True  # pytest shows the user's frames, not the plugin's
        return self._invoke(json_copy(event, "event"))

    def shutdown(self, reason: str = "shutdown") -> None:
        if self.state == "shutdown":
            return
        self.state = "shutdown"
        self.shutdown_reason = reason
        self._release()

    def _check_usable(self) -> None:
        if self.state == "shutdown":
            raise RuntimeError(
                f"{self.id} of {self.spec.function_name} was shut down "
                f"({self.shutdown_reason}); call LambdaFunction.invoke() or cold_start() "
                "for a new environment, as Lambda would"
            )

    def _init(self, request_id: str | None) -> float:
        __tracebackhide__ = True  # pytest shows the user's frames, not the plugin's
        outcome = self._run_init(request_id)
        self._collect(outcome.events, None)
        self.init_duration_ms = outcome.duration_ms
        if outcome.kind != "ok":
            assert outcome.payload is not None
            self.init_error = outcome.payload
            self.shutdown("init error")
            # An InitError; a SnapStart restore fails with its own (see ERROR_CLASSES).
            exc_class = (
                ERROR_CLASSES[outcome.kind] if outcome.kind in _RESTORE_ERRORS else InitError
            )
            raise exc_class(outcome.payload) from outcome.exc or _remote_cause(outcome.payload)
        self.state = "warm"
        return outcome.duration_ms

    def _invoke(self, event: Any) -> Any:
        __tracebackhide__ = True  # pytest shows the user's frames, not the plugin's
        # The warm path is written out flat: each call saved is a tenth of a microsecond.
        if self.state == "shutdown":
            self._check_usable()
        spec = self.spec
        request_id = self._sink.next_request_id()
        cold = False
        init_ms: float | None = None
        if self.state == "new":
            cold = True
            try:
                init_ms = self._init(request_id)
            except LambdaError as exc:
                self._record(
                    request_id,
                    True,
                    None,
                    exc.payload,
                    0.0,
                    self.init_duration_ms,
                    0,
                    0,
                    spec.clock.time(),
                )
                raise
        elif self._report_init and not self.invocations:
            cold = True
        if cold and self._report_init:
            init_ms = self.init_duration_ms
        self._report_init = False
        clock = spec.clock
        deadline_ms = (time.time() + clock.shift + spec.timeout) * 1000.0
        outcome = self._run_invoke(request_id, event, deadline_ms)
        self.last_used = time.monotonic() + clock.offset
        connections, clients = (
            self._collect(outcome.events, request_id) if outcome.events else (0, 0)
        )
        error = outcome.payload if outcome.kind != "ok" else None
        self._record(
            request_id,
            cold,
            outcome.result,
            error,
            outcome.duration_ms,
            init_ms,
            connections,
            clients,
            deadline_ms / 1000.0 - spec.timeout,
        )
        if error is None:
            return outcome.result
        if outcome.kind in ("timeout", "exit"):
            # As on Lambda: the runtime is gone, the next invocation is a cold start.
            self.shutdown(outcome.kind)
        exc_class = ERROR_CLASSES.get(outcome.kind, LambdaError)
        raise exc_class(error) from outcome.exc or _remote_cause(error)

    def _collect(self, events: list[Any], request_id: str | None) -> tuple[int, int]:
        if not events:
            return 0, 0
        # A connection both the socket layer and a proxy saw is one connection.
        events = merge_seen_twice(events)
        connections = clients = 0
        for event in events:
            if isinstance(event, ConnectionEvent):
                connections += 1
                self.connections.add(event)
                self._sink.record_connection(event)
            else:
                clients += 1
                self.clients.append(event)
                self._sink.record_client(event)
        return connections, clients

    def _record(
        self,
        request_id: str,
        cold: bool,
        result: Any,
        error: dict[str, Any] | None,
        duration_ms: float,
        init_ms: float | None,
        connections: int,
        clients: int,
        started_at: float,
    ) -> None:
        invocation = Invocation(
            request_id=request_id,
            environment_id=self.id,
            cold=cold,
            result=result,
            error=error,
            duration_ms=duration_ms,
            memory_size_mb=self.spec.memory_mb,
            max_memory_used_mb=self._max_memory_used_mb(),
            init_duration_ms=init_ms if cold else None,
            restore_duration_ms=self.restore_duration_ms if cold else None,
            billed_restore_duration_ms=self.billed_restore_duration_ms if cold else None,
            connections_opened=connections,
            clients_created=clients,
            started_at=started_at,
        )
        self.invocations.append(invocation)
        self._sink.record_invocation(invocation)
        if log.isEnabledFor(logging.INFO):
            log.info("%s", invocation.report_line)

    def _max_memory_used_mb(self) -> int:
        """Peak resident memory of this process, in MB (the test process in module isolation).

        Read at most every 10 ms: the peak only grows, and a system call per warm
        invocation would be a good part of its cost.
        """
        now = time.monotonic()
        if now - self._memory_read_at > 0.01:
            # Linux reports ru_maxrss in KiB.
            self._memory_mb = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
            self._memory_read_at = now
        return self._memory_mb

    def to_dict(self, invocations: bool = True) -> dict[str, Any]:
        """Plain data for reports; ``invocations=False`` leaves out the per-invocation records."""
        return {
            "id": self.id,
            "uid": self.uid,
            "isolation": self.isolation,
            "state": self.state,
            "shutdown_reason": self.shutdown_reason,
            "initialization_type": self.initialization_type,
            "init_duration_ms": self.init_duration_ms,
            "restore_duration_ms": self.restore_duration_ms,
            "init_error": self.init_error,
            "invocation_count": len(self.invocations),
            "invocations": [i.to_dict() for i in self.invocations] if invocations else [],
            "connections": self.connections.opened(),
            "connection_events": [asdict(e) for e in self.connections.events],
            "clients": [
                asdict(c) if is_dataclass(c) and not isinstance(c, type) else repr(c)
                for c in self.clients
            ],
        }

    def __repr__(self) -> str:
        return (
            f"<ExecutionEnvironment {self.id} of {self.spec.function_name}: {self.state}, "
            f"{len(self.invocations)} invocations>"
        )
