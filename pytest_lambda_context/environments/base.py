"""Execution environments: the lifecycle every isolation shares.

An environment is created "new", runs the function's init code once (lazily, at its
first invocation, as on Lambda), then serves invocations "warm" until it is shut
down: by a timeout, a crash, an idle timeout, or the end of the test.
"""

from __future__ import annotations

import os
import resource
import secrets
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, is_dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, cast

from pytest_lambda_context.environments.code_root_hint import code_root_hint
from pytest_lambda_context.environments.config import ALWAYS_INHERITED
from pytest_lambda_context.environments.test_side_patches import test_caller
from pytest_lambda_context.observe import taps as _taps
from pytest_lambda_context.observe.connections import (
    ConnectionEvent,
    ConnectionLog,
    merge_seen_twice,
)
from pytest_lambda_context.observe.drivers import DriversUsed
from pytest_lambda_context.observe.scope import Scope
from pytest_lambda_context.runtime.clock import real_monotonic
from pytest_lambda_context.runtime.context import reserved_environment
from pytest_lambda_context.runtime.errors import (
    ERROR_CLASSES,
    InitError,
    LambdaError,
    RequestTooLargeError,
    service_error,
)
from pytest_lambda_context.runtime.handler import INIT_TIMEOUT, Outcome, timeout_payload
from pytest_lambda_context.runtime.invoke_headers import InvokeHeaders, invoke_headers
from pytest_lambda_context.runtime.marshal import PayloadTooLarge, decode_result, encode_event
from pytest_lambda_context.runtime.pytest_outcomes import RaisedOutcome, raise_outcome
from pytest_lambda_context.runtime.records import (
    ClientRecord,
    ConnectionRecord,
    EnvironmentRecord,
    ErrorPayload,
    Invocation,
    OutcomeKind,
)

if TYPE_CHECKING:
    from pytest_lambda_context.environments.function_config import FunctionConfig
    from pytest_lambda_context.environments.spec import (
        EnvironmentState,
        FunctionSink,
        InitializationType,
    )
    from pytest_lambda_context.observe.events import ObservedEvent

__all__ = ["ExecutionEnvironment", "encode_request", "init_limit"]

_RESTORE_ERRORS = (OutcomeKind.SNAPSTART_ERROR, OutcomeKind.SNAPSTART_TIMEOUT)
# Outcomes after which the runtime is gone (the next invocation is a cold start), and
# the environment's shutdown_reason as the reports show it.
# Shutdowns whose runtime is gone or broken: no code of the function runs at them, and
# the runtime ended inside a live environment (its connections closed as it ended).
# Shutdowns after which Lambda resets the environment (a new runtime, the same /tmp).
_RESETS = frozenset({"timeout", "exit"})
_ABRUPT_SHUTDOWNS = frozenset(
    {"timeout", "exit", "init error", "interrupted", "could not start", "snapshot failed"}
)


class _Counts(NamedTuple):
    """What function code opened and created in one phase."""

    connections: int
    clients: int


_NO_COUNTS = _Counts(0, 0)
# The REPORT line's Status field for an invocation that ended in one of these.
_REPORT_STATUS = {
    OutcomeKind.TIMEOUT: "timeout",
    OutcomeKind.RUNTIME_EXIT: "error",
    OutcomeKind.INIT_ERROR: "error",
}
_SHUTDOWN_REASONS = {
    OutcomeKind.TIMEOUT: "timeout",
    OutcomeKind.RUNTIME_EXIT: "exit",
    OutcomeKind.INIT_ERROR: "init error",
}


class RemoteTraceback(Exception):
    """The function's traceback from a worker process, where the exception itself stayed."""

    def __str__(self) -> str:
        return "\n" + "".join(self.args[0])


def _remote_cause(payload: ErrorPayload) -> RemoteTraceback | None:
    # Process isolation sends only Lambda's payload back; show its stack trace as the
    # cause, so pytest prints where the handler failed, as it does in module isolation.
    trace = payload.get("stackTrace")
    if not trace:
        return None
    return RemoteTraceback([*trace, f"{payload['errorType']}: {payload['errorMessage']}"])


def init_limit(initialization_type: str, timeout: float) -> float:
    """How long Lambda lets the init phase run: 10 s on demand; max(130 s, the
    function's timeout) for provisioned concurrency and SnapStart."""
    if initialization_type == "on-demand":
        return INIT_TIMEOUT
    return max(130.0, timeout)


def encode_request(event: Any) -> Any:
    """The event as the Invoke API takes it; RequestTooLargeError over 6 MB."""
    __tracebackhide__ = True
    try:
        return encode_event(event)
    except PayloadTooLarge as exc:
        raise RequestTooLargeError(
            service_error("RequestEntityTooLargeException", str(exc))
        ) from None


def init_report_line(duration_ms: float, payload: ErrorPayload, phase: str) -> str:
    """Lambda's INIT_REPORT line for an init that failed or timed out."""
    line = f"INIT_REPORT Init Duration: {duration_ms:.2f} ms\tPhase: {phase}"
    if payload.get("errorType") == "Sandbox.Timedout":
        return line + "\tStatus: timeout"
    return line + f"\tStatus: error\tError Type: {payload.get('errorType')}"


def _replay(chunks: list[tuple[int, str]]) -> None:
    """Write a worker's output to the test's streams, where pytest's capture sees it."""
    for stream, text in chunks:
        (sys.stdout if stream == 1 else sys.stderr).write(text)


class _RetryInit(Exception):
    """The init phase failed; the invocation runs it again (see ``_init``)."""


class ExecutionEnvironment:
    """One emulated execution environment of a ``LambdaFunction``."""

    isolation = ""

    def __init__(
        self,
        spec: FunctionConfig,
        sink: FunctionSink,
        env_id: str,
        initialization_type: InitializationType,
        variables: dict[str, str],
        tmpdir: str | None = None,
        owns_tmpdir: bool | None = None,
    ) -> None:
        """``variables``: the function's own ``env``, placeholders filled in; ``tmpdir``:
        a /tmp folder shared with others (a Managed Instances environment's), not ours,
        unless ``owns_tmpdir`` (the /tmp of an environment Lambda reset, handed on)."""
        self.spec = spec
        self._sink = sink
        self.id = env_id
        self.initialization_type = initialization_type
        self.state: EnvironmentState = "new"
        # Serving a request now: it takes no second one (Lambda sends an environment one
        # request at a time), and it counts against max_concurrency.
        self.busy = False
        # Warnings about what function code did, issued test-side once the init or
        # invocation has returned (so -W error fails the invoke, not function code).
        self._pending_warnings: list[tuple[type[Warning], str]] = []
        self.shutdown_reason: str | None = None
        # The shutdown phase: seconds of grace it gave (0: killed at once), and whether
        # function code's SIGTERM handler ran in it.
        self._grace = 0.0
        self._discarded = False
        # The attempt of the request under way (an asynchronous event's retries: 1, 2).
        self._attempt = 0
        self.sigterm_handled = False
        self.init_duration_ms: float | None = None
        self.init_error: ErrorPayload | None = None
        # SnapStart: an environment restored from the snapshot has no init of its own.
        self.restore_duration_ms: float | None = None
        # Tenant isolation mode: the tenant this environment serves (None: none).
        self.tenant_id: str | None = None
        self.billed_restore_duration_ms: int | None = None
        self.invocations: list[Invocation] = []
        # The init phase's log events (and INIT_REPORT lines), before the first START.
        self.init_output: list[str] = []
        # How long the init attempt under way may run (seconds).
        self.phase_limit = init_limit(initialization_type, spec.timeout)
        self.connections = ConnectionLog()
        # boto3/botocore clients created by function code (events from the aws monitor).
        self.clients: list[Any] = []
        # C-level network drivers loaded where its code runs ("psycopg", ...): their
        # connections are seen only by proxies.
        self.c_drivers: set[str] = set()
        self.last_used = spec.clock.monotonic()
        # Unique across the session: an environment can outlive its function (warm reuse).
        self.uid = secrets.token_hex(6)
        self._report_init = True
        self._memory_mb = 0
        self._memory_read_at = -1.0
        self.log_stream_name = f"2026/01/01/[$LATEST]{secrets.token_hex(16)}"
        self._function_variables = variables
        # Lambda gives each environment its own /tmp.
        self._owns_tmpdir = tmpdir is None if owns_tmpdir is None else owns_tmpdir
        self._tmpdir = tmpdir or tempfile.mkdtemp(
            prefix=f"lambda-{spec.function_name}-{env_id}-", dir=spec.tmp_root
        )

    def _initial_environ(self) -> dict[str, str]:
        """The variables function code starts with.

        A clean environment, as on Lambda: of the test process's own variables only
        PATH, LANG and those named in ``inherit_env``; then Lambda's reserved
        variables, TMPDIR, and the function's ``env`` (where fixtures such as ``aws``
        put theirs).
        """
        spec = self.spec
        inherit = spec.inherit_env
        if inherit is True:
            variables = dict(os.environ)
        else:
            environ = os.environ
            variables = {
                name: environ[name]
                for name in (*ALWAYS_INHERITED, *inherit)  # type: ignore[misc]
                if name in environ
            }
        variables.update(
            reserved_environment(
                handler=spec.handler,
                function_name=spec.function_name,
                memory_mb=spec.memory_mb,
                log_stream_name=self.log_stream_name,
                task_root=spec.code_root,
                initialization_type=self.initialization_type,
                region=spec.region,
            )
        )
        variables["TMPDIR"] = self._tmpdir
        variables.update(self._function_variables)
        return variables

    # -- to be provided by each isolation ---------------------------------------
    def _run_init(self, request_id: str | None) -> Outcome:
        """Run the init code (at most ``phase_limit`` seconds); again after a failed
        attempt, afresh, as Lambda restarts the runtime."""
        raise NotImplementedError

    def _run_invoke(
        self, request_id: str, event: Any, deadline_ms: float, headers: InvokeHeaders | None
    ) -> Outcome:
        """Run one invocation; ``headers``: the caller's client context, identity and
        tenant (None: none), for the context."""
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

    def can_take(self, now: bool = False) -> bool:
        """Whether a request sent here now is served (``now``: at once) rather than
        turned away: an environment that is not shut down serves one request at a time
        (a Managed Instances environment, several)."""
        return self.state != "shutdown"

    # -- lifecycle ---------------------------------------------------------------
    def init(self) -> None:
        """Run the init phase now (as provisioned concurrency does) unless it ran."""
        __tracebackhide__ = True  # pytest shows the user's frames, not the plugin's
        self._check_usable()
        if self.state == "new" and not self.busy:
            self.busy = True
            try:
                self._init(request_id=None)
            finally:
                self.busy = False
                if self._pending_warnings:
                    self._issue_warnings()
            # An init that ran ahead of traffic (provisioned, or Lambda's proactive
            # initialisation of an on-demand environment) is not reported by the first
            # invocation: it is warm, with no Init Duration; the environment's
            # init_duration_ms has the init.
            self._report_init = False
            self.last_used = self.spec.clock.monotonic()

    def invoke(
        self,
        event: Any,
        *,
        client_context: dict[str, Any] | None = None,
        identity: dict[str, str] | None = None,
        tenant_id: str | None = None,
    ) -> Any:
        """Invoke the handler in this environment; returns the result or raises LambdaError.

        ``client_context``, ``identity`` and ``tenant_id``: what a caller of the Invoke
        API can pass (see ``LambdaFunction.invoke``); an environment serves one tenant.
        """
        __tracebackhide__ = True  # pytest shows the user's frames, not the plugin's
        headers = invoke_headers(client_context, identity, tenant_id)
        body = encode_request(event)
        self.bind_tenant(tenant_id)
        return self._invoke(body, headers=headers)

    def bind_tenant(self, tenant_id: str | None) -> None:
        """Tenant isolation mode: an environment serves the tenant of its first request
        only (a ValueError names the environment's tenant otherwise)."""
        if tenant_id == self.tenant_id:
            return
        if self.tenant_id is None and not self.invocations:
            self.tenant_id = tenant_id
            return
        raise ValueError(
            f"{self.id} serves tenant_id={self.tenant_id!r}, not {tenant_id!r}: in tenant "
            "isolation mode Lambda never sends one tenant's request to another's "
            "environment; use LambdaFunction.invoke(..., tenant_id=...), which routes by tenant"
        )

    @property
    def logs(self) -> list[str]:
        """The environment's log stream as CloudWatch shows it: init output first, then
        each invocation's START, output, END and REPORT lines."""
        lines = list(self.init_output)
        for invocation in self.invocations:
            lines.extend(invocation.logs)
        return lines

    def shutdown(self, reason: str = "shutdown") -> None:
        if self.state == "shutdown":
            return
        # Lambda's shutdown phase: SIGTERM and a grace period with extensions, for a
        # runtime that is still there (not after a timeout, a crash or a failed init).
        graceful = self.state == "warm" and reason not in _ABRUPT_SHUTDOWNS
        self._grace = self.spec.shutdown_grace if graceful else 0.0
        # Discarded whole (not a runtime that ended inside a live environment): the
        # ends of its connections never reach their servers.
        self._discarded = reason not in _ABRUPT_SHUTDOWNS
        self.state = "shutdown"
        self.shutdown_reason = reason
        if reason in _RESETS and self._owns_tmpdir:
            # Lambda resets the environment: its runtime starts again, its /tmp stays.
            # The next environment of the function takes the folder on.
            self._owns_tmpdir = False
            self._sink.keep_tmp(self._tmpdir)
        self._release()

    @property
    def shutdown_kind(self) -> str | None:
        """How its shutdown went, as Lambda's would: "killed" (no extension registered,
        or a runtime already gone), or SIGTERM first (with extensions); None while it
        lives."""
        if self.state != "shutdown":
            return None
        if not self._grace:
            return "killed"
        handler = "its handler ran" if self.sigterm_handled else "no handler"
        return f"SIGTERM ({handler}), then killed"

    def shutdown_grace(self) -> float:
        """Seconds function code's SIGTERM handler gets at this shutdown (0: killed)."""
        return self._grace

    def _leave_connections_open(self, scope: Scope) -> None:
        """A discarded environment's connections stay open on their servers' side (a
        runtime that exited or timed out inside a live environment closed its own)."""
        if self._discarded:
            _taps.killed(scope)

    def _check_usable(self) -> None:
        if self.state == "shutdown":
            raise RuntimeError(
                f"{self.id} of {self.spec.function_name} was shut down "
                f"({self.shutdown_reason}); call LambdaFunction.invoke() or cold_start() "
                "for a new environment, as Lambda would"
            )

    def _init(self, request_id: str | None) -> float:
        """The init phase; raises _RetryInit when it failed and the invocation that
        triggered it will run it again."""
        __tracebackhide__ = True  # pytest shows the user's frames, not the plugin's
        self.phase_limit = init_limit(self.initialization_type, self.spec.timeout)
        outcome = self._run_init(request_id)
        self._collect(outcome.events, None)
        self._take_output(outcome, self.init_output)
        self.init_duration_ms = outcome.duration_ms
        if outcome.kind is OutcomeKind.OK:
            self.state = "warm"
            return outcome.duration_ms
        assert outcome.payload is not None
        self.init_output.append(init_report_line(outcome.duration_ms, outcome.payload, "init"))
        if (
            request_id is not None
            and self.initialization_type == "on-demand"
            and outcome.kind not in _RESTORE_ERRORS
        ):
            # As on Lambda: an on-demand init that failed or ran past 10 s is run again
            # inside the first invocation, under the function's timeout.
            raise _RetryInit()
        self.init_error = outcome.payload
        self.shutdown("init error")
        # An InitError; a SnapStart restore fails with its own (see ERROR_CLASSES).
        exc_class = ERROR_CLASSES[outcome.kind] if outcome.kind in _RESTORE_ERRORS else InitError
        hint = code_root_hint(self.spec.handler, self.spec.code_root, outcome.payload)
        if hint is not None:  # the cause's frames would be the plugin's and importlib's
            raise exc_class(outcome.payload, hint=hint) from None
        raise exc_class(outcome.payload) from outcome.exc or _remote_cause(outcome.payload)

    def _raise_test_outcome(
        self, raised: RaisedOutcome, echo: list[tuple[int, str]] | None
    ) -> NoReturn:
        """pytest.skip/fail/exit that function code raised in a worker process: raised
        again here as pytest's, after what the code printed, as in module isolation."""
        __tracebackhide__ = True
        if echo:
            _replay(echo)
        raise_outcome(raised)

    def _take_output(self, outcome: Outcome, into: list[str]) -> None:
        if outcome.output:
            into.extend(outcome.output)
        if outcome.echo:
            _replay(outcome.echo)

    def _invoke(
        self,
        event: Any,
        request_id: str | None = None,
        attempt: int = 0,
        headers: InvokeHeaders | None = None,
    ) -> Any:
        """``request_id`` and ``attempt``: an asynchronous event's (the same request id
        on each of its attempts); ``headers``: the caller's client context, identity and
        tenant."""
        __tracebackhide__ = True  # pytest shows the user's frames, not the plugin's
        # The warm path is written out flat: each call saved is a tenth of a microsecond.
        if self.state == "shutdown":
            self._check_usable()
        spec = self.spec
        if request_id is None:
            request_id = self._sink.next_request_id()
        self._attempt = attempt
        cold = False
        init_ms: float | None = None
        retried: Outcome | None = None
        clock = spec.clock
        self.busy = True
        try:
            if self.state == "new":
                cold = True
                retry_init = False
                try:
                    init_ms = self._init(request_id)
                except _RetryInit:
                    retry_init = True
                except LambdaError as exc:
                    self._record(
                        request_id,
                        cold=True,
                        error=exc.payload,
                        init_ms=self.init_duration_ms,
                        started_at=clock.time(),
                    )
                    raise
                if retry_init:
                    # Out of the except block: the user's traceback is not chained to
                    # the plugin's _RetryInit.
                    retried = self._retry_init(request_id)
                    if retried.kind is not OutcomeKind.OK:
                        return self._finish(request_id, True, None, retried, clock.time())
            elif self._report_init and not self.invocations:
                cold = True
            if cold and self._report_init and retried is None:
                init_ms = self.init_duration_ms
            self._report_init = False
            if retried is None:
                deadline_ms = (time.time() + clock.shift + spec.timeout) * 1000.0
            else:  # the retried init used part of the invocation's time
                deadline_ms = (
                    time.time() + clock.shift + spec.timeout - retried.duration_ms / 1000.0
                ) * 1000.0
            outcome = self._run_invoke(request_id, event, deadline_ms, headers)
            self.last_used = real_monotonic() + clock.offset
            if retried is not None:
                outcome.duration_ms += retried.duration_ms
                if retried.output:
                    outcome.output = [*retried.output, *(outcome.output or ())]
            return self._finish(
                request_id, cold, init_ms, outcome, deadline_ms / 1000.0 - spec.timeout
            )
        finally:
            self.busy = False
            if self._pending_warnings:
                self._issue_warnings()

    def _issue_warnings(self) -> None:
        pending = self._pending_warnings
        self._pending_warnings = []
        filename, lineno = test_caller()
        for category, message in pending:
            warnings.warn_explicit(message, category, filename, lineno)

    def _retry_init(self, request_id: str) -> Outcome:
        """Run the init again inside the invocation, under the function's timeout."""
        __tracebackhide__ = True
        self.phase_limit = self.spec.timeout
        outcome = self._run_init(request_id)
        self._collect(outcome.events, None)
        if outcome.echo:
            _replay(outcome.echo)
            outcome.echo = None
        if outcome.kind is OutcomeKind.OK:
            self.state = "warm"
            return outcome
        assert outcome.payload is not None
        if outcome.payload.get("errorType") == "Sandbox.Timedout":
            # In the invoke phase it is the invocation that timed out.
            outcome.payload = timeout_payload(request_id, self.spec.timeout)
            outcome.kind = OutcomeKind.TIMEOUT
        else:
            outcome.kind = OutcomeKind.INIT_ERROR
            self.init_error = outcome.payload
        outcome.output = [
            *(outcome.output or ()),
            init_report_line(outcome.duration_ms, outcome.payload, "invoke"),
        ]
        return outcome

    def _finish(
        self,
        request_id: str,
        cold: bool,
        init_ms: float | None,
        outcome: Outcome,
        started_at: float,
    ) -> Any:
        """Record the invocation; return its result or raise its error. ``started_at``:
        when its invoke phase began, on the clock handler code sees."""
        __tracebackhide__ = True
        if outcome.echo:
            _replay(outcome.echo)
        counts = self._collect(outcome.events, request_id) if outcome.events else _NO_COUNTS
        kind = outcome.kind
        if kind is OutcomeKind.OK:
            result = decode_result(outcome.result, outcome.raw)
            self._record(
                request_id,
                cold=cold,
                started_at=started_at,
                outcome=outcome,
                result=result,
                init_ms=init_ms,
                counts=counts,
            )
            return result
        error = outcome.payload
        assert error is not None
        self._record(
            request_id,
            cold=cold,
            started_at=started_at,
            outcome=outcome,
            error=error,
            init_ms=init_ms,
            counts=counts,
        )
        reason = self._ended_by(kind)
        if reason is not None:
            # As on Lambda: the runtime is gone, the next invocation is a cold start.
            self.shutdown(reason)
        exc_class = ERROR_CLASSES.get(kind, LambdaError)
        hint = code_root_hint(self.spec.handler, self.spec.code_root, error)
        if hint is not None:  # the cause's frames would be the plugin's and importlib's
            raise exc_class(error, hint=hint) from None
        raise exc_class(error) from outcome.exc or _remote_cause(error)

    def _ended_by(self, kind: OutcomeKind) -> str | None:
        """The shutdown reason when an invocation that ended as ``kind`` ends the
        environment (None: it lives on)."""
        return _SHUTDOWN_REASONS.get(kind)

    def _collect(self, events: list[ObservedEvent], request_id: str | None) -> _Counts:
        if not events:
            return _NO_COUNTS
        # A connection both the socket layer and a proxy saw is one connection.
        events = merge_seen_twice(events)
        connections = clients = 0
        for event in events:
            if isinstance(event, ConnectionEvent):
                connections += 1
                self.connections.add(event)
                self._sink.record_connection(event)
            elif isinstance(event, DriversUsed):
                self.c_drivers.update(event.modules)
            else:
                clients += 1
                self.clients.append(event)
                self._sink.record_client(event)
        return _Counts(connections, clients)

    def _record(
        self,
        request_id: str,
        *,
        cold: bool,
        started_at: float,
        outcome: Outcome | None = None,
        result: Any = None,
        error: ErrorPayload | None = None,
        init_ms: float | None = None,
        counts: _Counts = _NO_COUNTS,
    ) -> None:
        """Keep the invocation's record and pass it on to the function; ``started_at``:
        when its invoke phase began, on the clock handler code sees; ``outcome``: how
        the invoke phase ended (None: it never ran), which gives the duration, the output
        and, for an error, the REPORT line's Status ("timeout", or "error" when the
        runtime exited)."""
        duration_ms, output, status = 0.0, None, None
        if outcome is not None:
            duration_ms, output = outcome.duration_ms, outcome.output
            if error is not None:
                status = _REPORT_STATUS.get(outcome.kind)
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
            connections_opened=counts.connections,
            clients_created=counts.clients,
            started_at=started_at,
            output=output if output is not None else [],
            status=status,
            attempt=self._attempt,
        )
        self.invocations.append(invocation)
        self._sink.record_invocation(invocation)

    def _max_memory_used_mb(self) -> int:
        """Peak resident memory of this process, in MB (the test process in module isolation).

        Read at most every 10 ms: the peak only grows, and a system call per warm
        invocation would be a good part of its cost.
        """
        now = real_monotonic()
        if now - self._memory_read_at > 0.01:
            # Linux reports ru_maxrss in KiB.
            self._memory_mb = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
            self._memory_read_at = now
        return self._memory_mb

    def to_dict(self, invocations: bool = True) -> EnvironmentRecord:
        """Plain data for reports; ``invocations=False`` leaves out the per-invocation records."""
        return {
            "id": self.id,
            "uid": self.uid,
            "isolation": self.isolation,
            "state": self.state,
            "shutdown_reason": self.shutdown_reason,
            "sigterm_handled": self.sigterm_handled,
            "shutdown_kind": self.shutdown_kind,
            "initialization_type": self.initialization_type,
            "init_duration_ms": self.init_duration_ms,
            "restore_duration_ms": self.restore_duration_ms,
            "init_error": self.init_error,
            "invocation_count": len(self.invocations),
            "invocations": [i.to_dict() for i in self.invocations] if invocations else [],
            "connections": self.connections.opened(),
            # asdict() is typed as a plain dict.
            "connection_events": [
                cast(ConnectionRecord, asdict(e)) for e in self.connections.events
            ],
            "clients": [
                cast(ClientRecord, asdict(c))
                if is_dataclass(c) and not isinstance(c, type)
                else repr(c)
                for c in self.clients
            ],
        }

    def __repr__(self) -> str:
        return (
            f"<ExecutionEnvironment {self.id} of {self.spec.function_name}: {self.state}, "
            f"{len(self.invocations)} invocations>"
        )
