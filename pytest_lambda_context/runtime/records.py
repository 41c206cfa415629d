"""What one invocation left behind: its CloudWatch lines and the counts a test checks."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, TypedDict, cast

__all__ = [
    "ClientRecord",
    "ConnectionRecord",
    "EnvironmentRecord",
    "ErrorPayload",
    "FunctionRecord",
    "Invocation",
    "InvocationRecord",
    "OutcomeKind",
    "Throttle",
    "billed_duration_ms",
]


class OutcomeKind(str, Enum):
    """How one init, invocation or SnapStart phase ended (``Outcome.kind``).

    A ``str`` so that it pickles small across the worker channel and prints plainly;
    internal: the reports show Lambda's own fields (``error``, ``status``,
    ``shutdown_reason``), never these values.
    """

    OK = "ok"
    # The init phase failed (the handler could not be loaded, init code raised, or it
    # ran past its limit); the environment is shut down with reason "init error".
    INIT_ERROR = "init_error"
    # The handler raised: the environment stays warm.
    HANDLER_ERROR = "handler_error"
    # The invocation ran past the function's timeout: the runtime is gone.
    TIMEOUT = "timeout"
    # The result is not JSON-serialisable (Runtime.MarshalError).
    MARSHAL_ERROR = "marshal_error"
    # The result is over 6 MB (Function.ResponseSizeTooLarge).
    RESPONSE_TOO_LARGE = "response_too_large"
    # Function code exited the runtime (sys.exit, os._exit, a signal).
    RUNTIME_EXIT = "runtime_exit"
    # A SnapStart hook raised, as the worker reports it (before- or after-restore) ...
    HOOK_ERROR = "hook_error"
    # ... and the restore that failed because of it, as Lambda reports it.
    SNAPSTART_ERROR = "snapstart_error"
    # The restore and its after-restore hooks ran past 10 s.
    SNAPSTART_TIMEOUT = "snapstart_timeout"


class _ErrorPayloadKeys(TypedDict):
    errorMessage: str
    errorType: str


class ErrorPayload(_ErrorPayloadKeys, total=False):
    """Lambda's error body: ``errorMessage`` and ``errorType`` always; the runtime adds
    ``requestId`` and ``stackTrace`` to the errors it reports (awslambdaric's
    ``make_error``), Lambda's own errors (timeout, throttling...) have neither."""

    requestId: str
    stackTrace: list[str]


def billed_duration_ms(duration_ms: float, init_duration_ms: float | None) -> int:
    """Lambda's Billed Duration: each started millisecond, at least one.

    Since 1 August 2025 Lambda bills the init phase of every function, so a cold
    start's Billed Duration covers its Init Duration as well (as it always did for
    container images and custom runtimes).
    """
    return max(1, math.ceil(duration_ms + (init_duration_ms or 0.0)))


@dataclass(slots=True)
class Invocation:
    request_id: str
    environment_id: str
    cold: bool
    result: Any
    error: ErrorPayload | None
    duration_ms: float
    memory_size_mb: int
    max_memory_used_mb: int
    init_duration_ms: float | None = None
    # SnapStart: the first invocation of a restored environment (init ran in the snapshot).
    restore_duration_ms: float | None = None
    billed_restore_duration_ms: int | None = None
    connections_opened: int = 0
    clients_created: int = 0
    # When the invoke phase began, in epoch seconds as handler code saw the clock
    # (idle() moves it forward): where the HTML report's timeline places the bar.
    started_at: float | None = None
    # What the function printed or logged during the invocation, one CloudWatch event each.
    output: list[str] = field(default_factory=list)
    # "timeout" or "error" (the runtime exited): the REPORT line's Status field.
    status: str | None = None
    # An asynchronous event's attempt: 0 the first, 1 and 2 Lambda's retries.
    attempt: int = 0

    @property
    def billed_duration_ms(self) -> int:
        return billed_duration_ms(self.duration_ms, self.init_duration_ms)

    @property
    def report_line(self) -> str:
        """The REPORT line as CloudWatch shows it (fields tab-separated, a tab at the end
        when there is no Status field)."""
        line = (
            f"REPORT RequestId: {self.request_id}\tDuration: {self.duration_ms:.2f} ms\t"
            f"Billed Duration: {self.billed_duration_ms} ms\tMemory Size: {self.memory_size_mb} MB\t"
            f"Max Memory Used: {self.max_memory_used_mb} MB"
        )
        if self.restore_duration_ms is not None:
            line += (
                f"\tRestore Duration: {self.restore_duration_ms:.2f} ms"
                f"\tBilled Restore Duration: {self.billed_restore_duration_ms} ms"
            )
        elif self.init_duration_ms is not None:
            line += f"\tInit Duration: {self.init_duration_ms:.2f} ms"
        if self.status == "timeout":
            return line + "\tStatus: timeout"
        if self.status is not None and self.error is not None:
            return line + f"\tStatus: {self.status}\tError Type: {self.error['errorType']}"
        # CloudWatch's REPORT line ends with a tab unless it has a Status.
        return line + "\t"

    @property
    def logs(self) -> list[str]:
        """The invocation's CloudWatch lines: START, its output, END, REPORT."""
        request_id = self.request_id
        return [
            f"START RequestId: {request_id} Version: $LATEST",
            *self.output,
            f"END RequestId: {request_id}",
            self.report_line,
        ]

    def to_dict(self) -> InvocationRecord:
        data = asdict(self)
        data["billed_duration_ms"] = self.billed_duration_ms
        data["report_line"] = self.report_line
        return cast(InvocationRecord, data)  # asdict() is typed as a plain dict


# -- the records the reports are made of (plain data: the JSON report's format) -------


@dataclass(frozen=True)
class Throttle:
    """A request throttled past ``max_concurrency``: it reached no environment.
    ``error`` is Lambda's answer (``errorType`` and ``errorMessage`` only, as the Invoke
    API sends it); the request id is the plugin's, for the reports' timeline."""

    request_id: str
    error: ErrorPayload

    def to_dict(self) -> ErrorPayload:
        """As the reports keep it: the request id beside Lambda's two keys."""
        return {"requestId": self.request_id, **self.error}


class InvocationRecord(TypedDict):
    """``Invocation.to_dict()``: one invocation, with its billed duration and REPORT line."""

    request_id: str
    environment_id: str
    cold: bool
    result: Any  # what the handler returned: anything JSON-serialisable
    error: ErrorPayload | None
    duration_ms: float
    memory_size_mb: int
    max_memory_used_mb: int
    init_duration_ms: float | None
    restore_duration_ms: float | None
    billed_restore_duration_ms: int | None
    connections_opened: int
    clients_created: int
    started_at: float | None
    output: list[str]
    status: str | None
    attempt: int  # an asynchronous event's: 0, then its retries 1 and 2
    billed_duration_ms: int
    report_line: str


class ConnectionRecord(TypedDict):
    """A ``ConnectionEvent`` as plain data."""

    function_name: str
    environment_id: str
    request_id: str | None  # None: the init phase
    host: str
    port: int
    frame: str | None
    time: float
    hostname: str | None
    local_port: int | None
    via: str | None
    seen_by: str


class ClientRecord(TypedDict):
    """A ``ClientEvent`` (a boto3 client function code created) as plain data."""

    function_name: str
    environment_id: str
    request_id: str | None  # None: the init phase
    service: str
    frame: str | None
    time: float


class _EnvironmentCounts(TypedDict, total=False):
    # Added by the plugin for the test the record is of (see plugin.function_records).
    warm_invocations: int
    warm_opening_connections: int
    warm_creating_clients: int
    # Invocations that were cold starts (an init or a SnapStart restore in front).
    cold_starts: int
    limits_broken: list[str]


class EnvironmentRecord(_EnvironmentCounts):
    """``ExecutionEnvironment.to_dict()``: one execution environment."""

    id: str
    uid: str
    isolation: str
    state: str
    shutdown_reason: str | None
    # The shutdown phase: whether function code's SIGTERM handler ran (with extensions),
    # else the runtime was killed.
    sigterm_handled: bool
    # How it ended: "killed" (no extension, or a runtime already gone), or with
    # extensions "SIGTERM (its handler ran), then killed" or "SIGTERM (no handler), then
    # killed"; None while it lives.
    shutdown_kind: str | None
    initialization_type: str
    init_duration_ms: float | None
    restore_duration_ms: float | None
    init_error: ErrorPayload | None
    invocation_count: int
    # Empty unless the session keeps every invocation (a report was asked for).
    invocations: list[InvocationRecord]
    connections: int
    connection_events: list[ConnectionRecord]
    # A client some other monitor reported is its repr().
    clients: list[ClientRecord | str]


class _TestCounts(TypedDict, total=False):
    # Added by the plugin: the test that made the function, limits it broke as a whole
    # (per="test"), requests throttled past max_concurrency (Lambda's error payloads).
    test: str
    failed: bool  # the test failed (in its setup or body)
    limits_broken: list[str]
    throttles: list[ErrorPayload]


class FunctionRecord(_TestCounts):
    """``LambdaFunction.to_dict()`` (and, in the reports, what a test added)."""

    function_name: str
    handler: str
    isolation: str
    code_root: str
    timeout: float
    memory_mb: int
    environments: list[EnvironmentRecord]
    invocations: int
    connections: int
