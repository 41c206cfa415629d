"""The errors an invocation can end with, shaped like Lambda's error payloads."""

from __future__ import annotations

import traceback
from types import TracebackType

from pytest_lambda_context.runtime.records import ErrorPayload, OutcomeKind

__all__ = [
    "HandlerError",
    "InitError",
    "InvocationTimeout",
    "LambdaError",
    "MarshalError",
    "RequestTooLargeError",
    "ResponseTooLargeError",
    "RuntimeExitError",
    "SnapStartError",
    "SnapStartTimeoutError",
    "TooManyRequestsError",
    "error_payload",
    "service_error",
    "stack_trace",
    "throttle_payload",
]

_OWN_PACKAGE = __name__.partition(".")[0] + "/"


class LambdaError(Exception):
    """An invocation failed as Lambda would report it; ``payload`` is Lambda's error body."""

    def __init__(self, payload: ErrorPayload, *, hint: str | None = None) -> None:
        self.payload = payload
        # What the plugin knows beyond Lambda's message (the payload stays Lambda's).
        self.hint = hint
        message = f"{payload['errorType']}: {payload['errorMessage']}"
        super().__init__(message if hint is None else f"{message}\n{hint}")

    @property
    def error_type(self) -> str:
        return str(self.payload["errorType"])

    @property
    def error_message(self) -> str:
        return str(self.payload["errorMessage"])

    @property
    def request_id(self) -> str | None:
        value = self.payload.get("requestId")
        return None if value is None else str(value)


class InitError(LambdaError):
    """The handler could not be loaded, or the function's init code raised."""


class HandlerError(LambdaError):
    """The handler raised; the original exception is the ``__cause__``."""


class InvocationTimeout(LambdaError):
    """The invocation ran past the function's timeout (``Sandbox.Timedout``)."""


class MarshalError(LambdaError):
    """The handler returned a value that is not JSON-serialisable (``Runtime.MarshalError``)."""


class ResponseTooLargeError(LambdaError):
    """The result is over Lambda's 6 MB limit (``Function.ResponseSizeTooLarge``);
    the environment stays warm."""


class RequestTooLargeError(LambdaError):
    """The event is over Lambda's 6 MB limit (``RequestEntityTooLargeException``);
    the function never ran."""


class TooManyRequestsError(LambdaError):
    """Throttled: every environment the function may have is busy
    (``TooManyRequestsException``); the function never ran."""


class RuntimeExitError(LambdaError):
    """The function code exited the runtime (``sys.exit``, ``os._exit``, a signal)."""


class SnapStartError(LambdaError):
    """A SnapStart restore failed: an after-restore hook raised (``SnapStartException``)."""


class SnapStartTimeoutError(SnapStartError):
    """The restore and its after-restore hooks took over 10 s (``SnapStartTimeoutException``)."""


def stack_trace(tb: TracebackType | None) -> list[str]:
    """Lambda's ``stackTrace``: the frames of function code, formatted as awslambdaric
    formats them.

    From plain (file, line, function, source) rows, so there are no Python 3.11+
    caret lines. The plugin's own frames are left out (awslambdaric drops its own
    leading ones); when there is nothing else (a handler that is not callable fails
    in the runtime's call), the runtime's frame is kept, as awslambdaric keeps its.
    """
    frames = traceback.extract_tb(tb)
    rows = [
        (f.filename, f.lineno, f.name, f.line) for f in frames if _OWN_PACKAGE not in f.filename
    ]
    if not rows:
        rows = [(f.filename, f.lineno, f.name, f.line) for f in frames]
    return traceback.format_list(rows)  # type: ignore[arg-type]


def error_payload(
    message: str, error_type: str, request_id: str | None, trace: list[str] | None = None
) -> ErrorPayload:
    """An error the runtime reports (awslambdaric's ``make_error``): an init error's
    ``requestId`` is ``""``, as it has no request."""
    return {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": request_id if request_id is not None else "",
        "stackTrace": trace or [],
    }


def service_error(error_type: str, message: str) -> ErrorPayload:
    """An error Lambda itself generates (a timeout, a runtime that exited, a response
    too large, throttling): only ``errorType`` and ``errorMessage``, as the Invoke API
    returns them."""
    return {"errorType": error_type, "errorMessage": message}


def throttle_payload() -> ErrorPayload:
    """Lambda's answer to a request it turns away (TooManyRequestsException)."""
    return service_error("TooManyRequestsException", "Rate Exceeded.")


# The error each kind of failed outcome raises in the test.
ERROR_CLASSES: dict[OutcomeKind, type[LambdaError]] = {
    OutcomeKind.INIT_ERROR: InitError,
    OutcomeKind.HANDLER_ERROR: HandlerError,
    OutcomeKind.TIMEOUT: InvocationTimeout,
    OutcomeKind.MARSHAL_ERROR: MarshalError,
    OutcomeKind.RESPONSE_TOO_LARGE: ResponseTooLargeError,
    OutcomeKind.RUNTIME_EXIT: RuntimeExitError,
    OutcomeKind.SNAPSTART_ERROR: SnapStartError,
    OutcomeKind.SNAPSTART_TIMEOUT: SnapStartTimeoutError,
}
