"""Lambda's runtime contract, shared by both isolations: load a handler, call it.

Error types and messages follow AWS's runtime interface client, so a test sees
what CloudWatch would show for the same mistake.
"""

from __future__ import annotations

import importlib
import keyword
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from pytest_lambda_context.runtime.clock import ms_since
from pytest_lambda_context.runtime.errors import error_payload, stack_trace
from pytest_lambda_context.runtime.records import json_copy

__all__ = [
    "INIT_TIMEOUT",
    "ExitRequested",
    "InitFailure",
    "Outcome",
    "call_handler",
    "import_handler",
    "parse_handler",
    "timeout_payload",
]

Handler = Callable[[Any, Any], Any]


class InitFailure(Exception):
    """Loading the handler failed; ``payload`` is Lambda's init error body."""

    def __init__(self, payload: dict[str, Any], cause: BaseException | None = None) -> None:
        super().__init__(payload["errorMessage"])
        self.payload = payload
        self.cause = cause


class ExitRequested(BaseException):
    """Raised in place of ``os._exit`` in module isolation, so pytest survives it."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass(slots=True)
class Outcome:
    """How one init or invocation ended; plain data so a worker can send it back."""

    kind: str  # "ok", "init", "handler", "timeout", "marshal" or "exit"
    result: Any = None
    payload: dict[str, Any] | None = None
    duration_ms: float = 0.0
    events: list[Any] = field(default_factory=list)
    # The original exception, only in module isolation (it cannot cross a process).
    exc: BaseException | None = None


# Lambda gives the init phase 10 seconds.
INIT_TIMEOUT = 10.0


def timeout_payload(
    request_id: str | None, seconds: float, *, init: bool = False
) -> dict[str, Any]:
    """Lambda's ``Sandbox.Timedout`` error, for the init phase or an invocation."""
    what = "Init phase" if init else "Task"
    return error_payload(
        f"{what} timed out after {seconds:.2f} seconds", "Sandbox.Timedout", request_id
    )


def _failure(
    message: str, error_type: str, request_id: str | None, exc: BaseException
) -> InitFailure:
    trace = stack_trace(exc.__traceback__)
    return InitFailure(error_payload(message, error_type, request_id, trace), exc)


def parse_handler(handler: str) -> tuple[str, str]:
    """Split ``app.search.handler``, ``app/search.handler`` or ``app.search:handler``."""
    if ":" in handler:
        module_part, _, function_name = handler.partition(":")
    else:
        module_part, _, function_name = handler.rpartition(".")
    module_name = module_part.replace("/", ".")
    parts = module_name.split(".")
    if not module_part or not function_name or not all(_identifier(p) for p in parts):
        raise ValueError(
            f"Bad handler '{handler}': expected 'module.function' such as "
            "'app.search.handler' (also 'app/search.handler' or 'app.search:handler')"
        )
    if not _identifier(function_name):
        raise ValueError(f"Bad handler '{handler}': '{function_name}' is not a Python name")
    return module_name, function_name


def _identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def import_handler(handler: str, request_id: str | None) -> tuple[Handler, ModuleType]:
    """Import the handler's module (running the init code) and find the handler."""
    try:
        module_name, function_name = parse_handler(handler)
    except ValueError as exc:
        raise InitFailure(
            error_payload(str(exc), "Runtime.MalformedHandlerName", request_id), exc
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        message = f"Unable to import module '{module_name}': {exc}"
        raise _failure(message, "Runtime.ImportModuleError", request_id, exc) from None
    except SyntaxError as exc:
        message = f"Syntax error in module '{module_name}': {exc}"
        raise _failure(message, "Runtime.UserCodeSyntaxError", request_id, exc) from None
    except Exception as exc:
        raise _failure(str(exc), type(exc).__name__, request_id, exc) from None
    function = getattr(module, function_name, None)
    if function is None:
        message = f"Handler '{function_name}' missing on module '{module_name}'"
        raise InitFailure(error_payload(message, "Runtime.HandlerNotFound", request_id))
    if not callable(function):
        message = (
            f"Handler '{function_name}' on module '{module_name}' is not callable "
            f"(it is a {type(function).__name__})"
        )
        raise InitFailure(error_payload(message, "Runtime.HandlerNotFound", request_id))
    return function, module


def exit_payload(status: object, request_id: str | None) -> dict[str, Any]:
    return error_payload(
        f"RequestId: {request_id} Error: Runtime exited with error: exit status {status}",
        "Runtime.ExitError",
        request_id,
    )


def call_handler(function: Handler, event: Any, context: Any, request_id: str) -> Outcome:
    """Call the handler with the (already copied) event; marshal the result as Lambda does.

    Timeouts are not handled here: each isolation interrupts its own way.
    """
    __tracebackhide__ = True  # in a failure, pytest shows the handler's frames only
    started = time.perf_counter()
    try:
        result = function(event, context)
    except SystemExit as exc:
        return Outcome(
            "exit",
            payload=exit_payload(exc.code, request_id),
            exc=exc,
            duration_ms=ms_since(started),
        )
    except ExitRequested as exc:
        return Outcome(
            "exit",
            payload=exit_payload(exc.status, request_id),
            exc=exc,
            duration_ms=ms_since(started),
        )
    except Exception as exc:
        payload = error_payload(
            str(exc), type(exc).__name__, request_id, stack_trace(exc.__traceback__)
        )
        return Outcome("handler", payload=payload, exc=exc, duration_ms=ms_since(started))
    duration = (time.perf_counter() - started) * 1000.0  # inline: the warm path
    try:
        result = json_copy(result, "result")
    except TypeError as exc:
        message = f"Unable to marshal response: {exc.__context__ or exc}"
        return Outcome(
            "marshal",
            payload=error_payload(message, "Runtime.MarshalError", request_id),
            exc=exc,
            duration_ms=duration,
        )
    return Outcome("ok", result=result, duration_ms=duration)
