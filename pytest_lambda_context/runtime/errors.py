"""The errors an invocation can end with, shaped like Lambda's error payloads."""

from __future__ import annotations

import traceback
from types import TracebackType
from typing import Any

from pytest_lambda_context.runtime.records import OutcomeKind

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
    "stack_trace",
]

_OWN_PACKAGE = __name__.partition(".")[0] + "/"


class LambdaError(Exception):
    """An invocation failed as Lambda would report it; ``payload`` is Lambda's error body."""

    def __init__(self, payload: dict[str, Any], *, hint: str | None = None) -> None:
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
    """Lambda's ``stackTrace``: formatted frames of user code, without the plugin's own."""
    frames = [f for f in traceback.extract_tb(tb) if _OWN_PACKAGE not in f.filename]
    return traceback.format_list(frames)


def error_payload(
    message: str, error_type: str, request_id: str | None, trace: list[str] | None = None
) -> dict[str, Any]:
    return {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": request_id,
        "stackTrace": trace or [],
    }


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
