"""Lambda's runtime contract, shared by both isolations: load a handler, call it.

Error types and messages follow AWS's runtime interface client, so a test sees
what CloudWatch would show for the same mistake.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from pytest_lambda_context.runtime.clock import ms_since, real_monotonic
from pytest_lambda_context.runtime.errors import error_payload, service_error, stack_trace
from pytest_lambda_context.runtime.marshal import (
    MarshalFailure,
    PayloadTooLarge,
    ResultEncoder,
    UnsendableResult,
    decode_event,
    marshal_result,
)
from pytest_lambda_context.runtime.pytest_outcomes import is_test_outcome
from pytest_lambda_context.runtime.records import ErrorPayload, OutcomeKind

__all__ = [
    "INIT_TIMEOUT",
    "ExitRequested",
    "InitFailure",
    "Outcome",
    "PluginInterrupt",
    "RealInterrupt",
    "call_handler",
    "crash_payload",
    "exit_code",
    "exit_payload",
    "exit_status",
    "import_handler",
    "module_name_of",
    "timeout_payload",
]

Handler = Callable[[Any, Any], Any]


class InitFailure(Exception):
    """Loading the handler failed; ``payload`` is Lambda's init error body."""

    def __init__(self, payload: ErrorPayload, cause: BaseException | None = None) -> None:
        super().__init__(payload["errorMessage"])
        self.payload = payload
        self.cause = cause


class ExitRequested(BaseException):
    """Raised in place of ``os._exit`` in module isolation, so pytest survives it."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class PluginInterrupt(BaseException):
    """Raised into function code by the plugin itself (a timeout): never the code's crash."""


class RealInterrupt(KeyboardInterrupt):
    """A Ctrl-C that really arrived (SIGINT): it stops pytest, whatever code it hits."""


def exit_code(exc: BaseException) -> int:
    """The status a process ends with when ``exc`` escapes it (130: SIGINT's)."""
    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None:
            return 0
        return code & 0xFF if isinstance(code, int) else 1
    if isinstance(exc, ExitRequested):
        return exc.status & 0xFF
    return 130 if isinstance(exc, KeyboardInterrupt) else 1


def exit_status(exc: BaseException) -> int | str:
    """What the runtime process ends with when ``exc`` escapes it, as Python ends: an
    exit status, or ``"signal: interrupt"`` (an uncaught KeyboardInterrupt).

    Writes to ``sys.stderr`` what Python writes then (function code's log stream):
    the non-integer code of a ``SystemExit``, the traceback of anything else.
    """
    if isinstance(exc, SystemExit):
        code = exc.code
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
        return exit_code(exc)
    if isinstance(exc, ExitRequested):
        return exit_code(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "signal: interrupt"
    try:
        text = "".join(traceback.format_exception(exc))
    except BaseException:  # an exception whose __str__ raises, say
        text = f"{type(exc).__name__}\n"
    sys.stderr.write(text)
    return 1


def exit_payload(status: int | str, request_id: str | None) -> ErrorPayload:
    """Lambda's error when the runtime process ended: ``Runtime.ExitError``, with the
    message Lambda gives (status 0: "without providing a reason")."""
    if status == 0:
        reason = "Runtime exited without providing a reason"
    elif isinstance(status, str):
        reason = f"Runtime exited with error: {status}"
    else:
        reason = f"Runtime exited with error: exit status {status}"
    prefix = f"RequestId: {request_id} Error: " if request_id else ""
    return service_error("Runtime.ExitError", prefix + reason)


def crash_payload(exc: BaseException, request_id: str | None) -> ErrorPayload:
    """Lambda's error when function code raised a BaseException: the runtime is gone."""
    return exit_payload(exit_status(exc), request_id)


@dataclass(slots=True)
class Outcome:
    """How one init or invocation ended; plain data so a worker can send it back."""

    kind: OutcomeKind
    # The marshalled result (see runtime.marshal.decode_result); ``raw``: bytes as they are.
    result: Any = None
    raw: bool = False
    payload: ErrorPayload | None = None
    duration_ms: float = 0.0
    # What the monitors noted (observe's ObservedEvent: a layer this one does not see).
    events: list[Any] = field(default_factory=list)
    # The original exception, only in module isolation (it cannot cross a process).
    exc: BaseException | None = None
    # The phase's log events (see runtime.log_stream).
    output: list[str] | None = None
    # A worker's output for the test's stdout (1) and stderr (2), in order.
    echo: list[tuple[int, str]] | None = None


# Lambda gives the init phase 10 seconds.
INIT_TIMEOUT = 10.0


def timeout_payload(request_id: str | None, seconds: float, *, init: bool = False) -> ErrorPayload:
    """Lambda's ``Sandbox.Timedout`` error, for the init phase or an invocation."""
    what = "Init phase" if init else "Task"
    prefix = f"RequestId: {request_id} Error: " if request_id else ""
    return service_error(
        "Sandbox.Timedout", f"{prefix}{what} timed out after {seconds:.2f} seconds"
    )


def _failure(message: str, error_type: str, exc: BaseException) -> InitFailure:
    trace = stack_trace(exc.__traceback__)
    return InitFailure(error_payload(message, error_type, None, trace), exc)


def module_name_of(handler: str) -> str:
    """The module part of a handler string as Lambda reads it (``app/search.handler`` ->
    ``app.search``); "" when there is none. For names and the code root only: whether
    the string works is decided at init, by :func:`import_handler`, as on Lambda."""
    module_part, dot, _ = handler.rpartition(".")
    return module_part.replace("/", ".") if dot else ""


def import_handler(handler: str) -> tuple[Any, ModuleType]:
    """Import the handler's module (running the init code) and find the handler.

    Step by step as awslambdaric 4.2.2's ``bootstrap._get_handler``: the same split,
    the same checks in the same order, the same error types and messages. Like it,
    the attribute is not checked for being callable: calling it fails per invocation.
    The errors' ``requestId`` is ``""``: an init error belongs to no request.
    """
    try:
        module_part, function_name = handler.rsplit(".", 1)
    except ValueError as exc:
        # No cause: the message says it all, and the cause's frames would be the plugin's.
        raise InitFailure(
            error_payload(f"Bad handler '{handler}': {exc}", "Runtime.MalformedHandlerName", None)
        ) from None
    try:
        if module_part.split(".")[0] in sys.builtin_module_names:
            message = f"Cannot use built-in module {module_part} as a handler module"
            raise InitFailure(
                error_payload(message, "Runtime.BuiltInModuleConflict", None)
            ) from None
        module = importlib.import_module(module_part.replace("/", "."))
    except ImportError as exc:
        # No stack trace in the payload, as awslambdaric sends none (the exception is
        # still the cause when function code raised it, so pytest shows where).
        message = f"Unable to import module '{module_part}': {exc}"
        raise InitFailure(
            error_payload(message, "Runtime.ImportModuleError", None),
            exc if _raised_in_function_code(exc) else None,
        ) from None
    except SyntaxError as exc:
        message = f"Syntax error in module '{module_part}': {exc}"
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise InitFailure(
            error_payload(message, "Runtime.UserCodeSyntaxError", None, trace), exc
        ) from None
    except InitFailure:
        raise
    except Exception as exc:
        if is_test_outcome(exc):  # pytest.exit: an Exception, unlike pytest's others
            raise
        raise _failure(str(exc), type(exc).__name__, exc) from None
    try:
        function = getattr(module, function_name)
    except AttributeError:
        message = f"Handler '{function_name}' missing on module '{module_part}'"
        raise InitFailure(error_payload(message, "Runtime.HandlerNotFound", None)) from None
    return function, module


def _raised_in_function_code(exc: BaseException) -> bool:
    """Whether a frame of the traceback is neither the plugin's nor the import system's
    (a handler module that is not there has only those: its cause would show nothing
    of the user's)."""
    plugin = __file__.rpartition("/runtime/")[0] + "/"
    machinery = importlib.__file__.rpartition("/")[0] + "/"
    traceback = exc.__traceback__
    while traceback is not None:
        filename = traceback.tb_frame.f_code.co_filename
        if not filename.startswith(("<frozen ", plugin, machinery)):
            return True
        traceback = traceback.tb_next
    return False


def _outside_the_event_loop(events: Any, function: Handler, event: Any, context: Any) -> Any:
    """Call the handler with no event loop running around it, as on Lambda: an async
    test's loop (module isolation runs function code on the test's thread) would make
    the handler's own ``asyncio.run()`` fail. Put back when the handler returns."""
    loop = events._get_running_loop()
    events._set_running_loop(None)
    try:
        return function(event, context)
    finally:
        events._set_running_loop(loop)


def call_handler(
    function: Handler, body: Any, context: Any, request_id: str, encoder: ResultEncoder
) -> Outcome:
    """Decode the event, call the handler, marshal the result: awslambdaric's
    ``handle_event_request``. Timeouts are not handled here: each isolation interrupts
    its own way.
    """
    __tracebackhide__ = True  # in a failure, pytest shows the handler's frames only
    started = real_monotonic()
    try:
        events = sys.modules.get("asyncio.events")  # not loaded: no loop can be running
        if events is None or events._get_running_loop() is None:
            # The handler is called here, in one frame: its stack trace shows this line.
            result = function(decode_event(body), context)
        else:
            result = _outside_the_event_loop(events, function, decode_event(body), context)
    except Exception as exc:
        if is_test_outcome(exc):  # pytest.exit: an Exception, unlike pytest's others
            raise
        try:
            payload = error_payload(
                str(exc), type(exc).__name__, request_id, stack_trace(exc.__traceback__)
            )
        except Exception as broken:
            # The runtime's own report fails (an exception whose __str__ raises):
            # awslambdaric's loop dies of it, and the process exits with status 1.
            payload = crash_payload(broken, request_id)
            return Outcome(
                OutcomeKind.RUNTIME_EXIT, payload=payload, exc=exc, duration_ms=ms_since(started)
            )
        return Outcome(
            OutcomeKind.HANDLER_ERROR, payload=payload, exc=exc, duration_ms=ms_since(started)
        )
    except (PluginInterrupt, RealInterrupt):
        raise
    except BaseException as exc:
        if is_test_outcome(exc):
            raise
        # SystemExit, os._exit, KeyboardInterrupt, GeneratorExit...: the runtime ends.
        payload = crash_payload(exc, request_id)
        return Outcome(
            OutcomeKind.RUNTIME_EXIT, payload=payload, exc=exc, duration_ms=ms_since(started)
        )
    try:
        result, raw = marshal_result(result, encoder)
    except MarshalFailure as exc:
        return Outcome(
            OutcomeKind.MARSHAL_ERROR,
            payload=error_payload(str(exc), "Runtime.MarshalError", request_id),
            exc=exc.__cause__,
            duration_ms=ms_since(started),
        )
    except PayloadTooLarge as exc:
        return Outcome(
            OutcomeKind.RESPONSE_TOO_LARGE,
            payload=service_error("Function.ResponseSizeTooLarge", str(exc)),
            duration_ms=ms_since(started),
        )
    except UnsendableResult as exc:
        # The runtime client cannot send it (a lone surrogate written as it is) and
        # dies of the error.
        payload = crash_payload(exc.__cause__ or exc, request_id)
        return Outcome(
            OutcomeKind.RUNTIME_EXIT, payload=payload, exc=exc, duration_ms=ms_since(started)
        )
    return Outcome(OutcomeKind.OK, result=result, raw=raw, duration_ms=ms_since(started))
