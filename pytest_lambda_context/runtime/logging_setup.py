"""The logging setup Lambda's Python runtime installs before the function's init code.

As awslambdaric 4.2.2's ``bootstrap._setup_logging``: the root logger gets the
runtime's handler (writing to the log sink, see :mod:`.log_stream`) with Lambda's
text format ``[LEVEL]\\t<UTC time>Z\\t<request id>\\t<message>`` or, with
``AWS_LAMBDA_LOG_FORMAT=JSON``, one JSON object per record; the root level is set
only when ``AWS_LAMBDA_LOG_LEVEL`` names one (else Python's WARNING stays). With a
handler on the root logger, ``logging.basicConfig()`` in function code does nothing,
as on Lambda.

Formats, fields and the level mapping are awslambdaric's (Apache-2.0), rewritten
here because the runtime client is not a dependency of the plugin.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from pytest_lambda_context.runtime.log_stream import LogStream, StreamTee
from pytest_lambda_context.runtime.marshal import ResultEncoder

if TYPE_CHECKING:
    from pytest_lambda_context.runtime.records import ErrorPayload

__all__ = [
    "UNHANDLED_EXCEPTION_WARNING",
    "JsonFormatter",
    "RootLogging",
    "RuntimeLogHandler",
    "SwappedRuntimeLogging",
    "error_lines",
    "install_runtime_logging",
    "runtime_handler",
    "runtime_log_settings",
]

TEXT_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"
TEXT_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
_JSON_DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Record attributes that are not copied into a JSON line as extra fields.
_RESERVED_FIELDS = frozenset(
    {
        "name",
        "msg",
        "args",
        "levelname",
        "levelno",
        "pathname",
        "filename",
        "module",
        "exc_info",
        "exc_text",
        "stack_info",
        "lineno",
        "funcName",
        "created",
        "msecs",
        "relativeCreated",
        "thread",
        "threadName",
        "processName",
        "process",
        "aws_request_id",
        "tenant_id",
        "_frame_type",
    }
)
# default=str: a value that is not JSON is written as its str, never dropped.
_encode_json = json.JSONEncoder(ensure_ascii=False, default=str).encode
# The warning awslambdaric logs before an init error (its lambda_literals).
UNHANDLED_EXCEPTION_WARNING = (
    "LAMBDA_WARNING: Unhandled exception. The most likely cause is an issue in the function "
    "code. However, in rare cases, a Lambda runtime update can cause unexpected function "
    "behavior. For functions using managed runtimes, runtime updates can be triggered by a "
    "function change, or can be applied automatically. To determine if the runtime has been "
    "updated, check the runtime version in the INIT_START log entry. If this error correlates "
    "with a change in the runtime version, you may be able to mitigate this error by "
    "temporarily rolling back to the previous runtime version. For more information, see "
    "https://docs.aws.amazon.com/lambda/latest/dg/runtimes-update.html\r"
)


def runtime_log_settings(environ: Mapping[str, str]) -> tuple[bool, str]:
    """``(json, level)`` from ``AWS_LAMBDA_LOG_FORMAT`` and ``AWS_LAMBDA_LOG_LEVEL``.

    ``level`` is "" when unset; TRACE means DEBUG, as in awslambdaric.
    """
    log_format = environ.get("AWS_LAMBDA_LOG_FORMAT")
    is_json = bool(log_format) and log_format.upper() == "JSON"  # type: ignore[union-attr]
    raw = environ.get("AWS_LAMBDA_LOG_LEVEL")
    level = {None: "", "TRACE": "DEBUG"}.get(raw, raw).upper()  # type: ignore[union-attr]
    return is_json, level


def _level_bucket(record: logging.LogRecord) -> int:
    return min(50, max(0, record.levelno)) // 10 * 10


class JsonFormatter(logging.Formatter):
    """awslambdaric's JSON log line: timestamp, level, message, logger, request id..."""

    def __init__(self) -> None:
        super().__init__(datefmt=_JSON_DATE_FORMAT)
        self.converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        record.levelno = _level_bucket(record)
        record.levelname = logging.getLevelName(record.levelno)
        exc_info = record.exc_info
        result: dict[str, object] = {
            "timestamp": self.formatTime(record, self.datefmt),
            "level": record.levelname,
            "message": (
                record.msg
                if isinstance(record.msg, dict) and not record.args
                else record.getMessage()
            ),
            "logger": record.name,
            "stackTrace": traceback.format_tb(exc_info[2]) if exc_info else None,
            "errorType": exc_info[0].__name__ if exc_info and exc_info[0] else None,
            "errorMessage": str(exc_info[1]) if exc_info else None,
            "requestId": getattr(record, "aws_request_id", None),
            "location": (
                f"{record.pathname}:{record.funcName}:{record.lineno}" if exc_info else None
            ),
        }
        tenant_id = getattr(record, "tenant_id", None)
        if tenant_id is not None:
            result["tenantId"] = tenant_id
        result.update(
            (key, value)
            for key, value in record.__dict__.items()
            if key not in _RESERVED_FIELDS and key not in result
        )
        return _encode_json({k: v for k, v in result.items() if v is not None}) + "\n"


class _RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (and tenant), as awslambdaric does."""

    def __init__(self, log: LogStream) -> None:
        super().__init__()
        self._log = log

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self._log.request_id or ""
        record.tenant_id = self._log.tenant_id
        return True


class RuntimeLogHandler(logging.Handler):
    """The runtime's root handler. ``log_sink`` is the name ``context.log`` looks for."""

    def __init__(self, log_sink: LogStream) -> None:
        super().__init__()
        self.log_sink = log_sink

    def emit(self, record: logging.LogRecord) -> None:
        self.log_sink.log(self.format(record))


def runtime_handler(log: LogStream, environ: Mapping[str, str]) -> tuple[RuntimeLogHandler, str]:
    """The runtime's handler for ``environ``'s settings, and the root level to set ("": none)."""
    is_json, level = runtime_log_settings(environ)
    handler = RuntimeLogHandler(log)
    formatter: logging.Formatter
    if is_json:
        formatter = JsonFormatter()
    else:
        formatter = logging.Formatter(TEXT_FORMAT, TEXT_DATE_FORMAT)
        formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(_RequestIdFilter(log))
    return handler, (level if level in logging._nameToLevel else "")


def install_runtime_logging(log: LogStream, environ: Mapping[str, str]) -> None:
    """awslambdaric's ``_setup_logging`` on this process's root logger (a worker's)."""
    logging.Formatter.converter = time.gmtime
    handler, level = runtime_handler(log, environ)
    root = logging.getLogger()
    if level:
        root.setLevel(level)
    root.addHandler(handler)


def error_lines(payload: ErrorPayload, json_encoder: ResultEncoder | None) -> list[str]:
    """The runtime's report of an error in the log (awslambdaric's ``log_error``): text,
    or with ``AWS_LAMBDA_LOG_FORMAT=JSON`` one record encoded by the runtime's own
    encoder (``json_encoder``: non-ASCII written as it is on Python 3.12 and above)."""
    if json_encoder is not None:
        timestamp = time.strftime(_JSON_DATE_FORMAT, time.gmtime(time.time()))
        return [json_encoder.encode({"timestamp": timestamp, "level": "ERROR", **payload})]
    description = "[ERROR]"
    error_type = payload.get("errorType")
    if error_type:
        description += " " + error_type
    message = payload.get("errorMessage")
    if message:
        if error_type:
            description += ":"
        description += " " + message
    lines = [description]
    trace = payload.get("stackTrace")
    if trace is not None:
        lines.append("Traceback (most recent call last):")
        for element in trace:
            if element == "":
                lines.append("")
                continue
            for line in element.splitlines():
                stripped = line.lstrip(" ")
                # A no-break space per indent, so CloudWatch keeps the indentation.
                lines.append("\u00a0" * (len(line) - len(stripped)) + stripped)
    return lines


class RootLogging:
    """An environment's own root-logger setup (module isolation): its handlers and level.

    Swapped in around each phase by :meth:`SwappedRuntimeLogging.enter` and out by
    :meth:`SwappedRuntimeLogging.exit`; what function code does to the root logger
    stays with it.
    """

    __slots__ = ("handlers", "level")

    def __init__(self, log: LogStream, environ: Mapping[str, str]) -> None:
        handler, level = runtime_handler(log, environ)
        self.handlers: list[logging.Handler] = [handler]
        self.level = logging._nameToLevel[level] if level else logging.WARNING


class SwappedRuntimeLogging:
    """What the runtime installs, for an environment in the test process (module
    isolation): its log stream, ``sys.stdout``/``sys.stderr`` that feed it, and its
    root-logger setup, swapped in around each phase and out after.
    """

    __slots__ = (
        "_environ",
        "is_json",
        "json_encoder",
        "log",
        "outer_handlers",
        "outer_level",
        "root",
        "streams",
        "tees",
    )

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = dict(environ)
        self.log = LogStream(write_through=True)
        self.tees = (StreamTee(1, self.log), StreamTee(2, self.log))
        self.is_json = runtime_log_settings(environ)[0]
        self.json_encoder = (
            ResultEncoder(environ.get("AWS_EXECUTION_ENV")) if self.is_json else None
        )
        self.root = RootLogging(self.log, environ)
        # What function code has as sys.stdout and sys.stderr (it may replace them).
        self.streams: tuple[TextIO | StreamTee, TextIO | StreamTee] = self.tees
        # The root logger's handlers and level that enter() replaced, for exit().
        self.outer_handlers: list[logging.Handler] = []
        self.outer_level = logging.NOTSET

    def restart(self) -> None:
        """A new runtime process: the setup as the runtime installs it, afresh."""
        self.root = RootLogging(self.log, self._environ)
        self.streams = self.tees
        for tee in self.tees:
            tee.reopen()

    def enter(self) -> None:
        # Written out flat (no helper calls): this runs twice per invocation.
        log = self.log
        log.events = []
        targets = log.targets
        # Any: the test's streams, or a calling environment's tees (both or neither).
        stdout: Any = sys.stdout
        stderr: Any = sys.stderr
        if type(stdout) is StreamTee:
            # Invoked from another environment's handler: write to the test's streams,
            # not into the caller's log.
            stdout, stderr = stdout.real, stderr.real
        targets[0] = stdout
        targets[1] = stderr
        sys.stdout, sys.stderr = self.streams
        state = self.root
        # The root logger's attributes written in its __dict__, as Logger.__setattr__
        # would, without a Python-level __setattr__ someone may have installed.
        root = logging.root.__dict__
        self.outer_handlers = root["handlers"]
        level = self.outer_level = root["level"]
        root["handlers"] = state.handlers
        if level != state.level:
            root["level"] = state.level
            logging.root.manager._clear_cache()  # type: ignore[attr-defined]

    def exit(self) -> list[str]:
        log = self.log
        targets = log.targets
        self.streams = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = targets[0], targets[1]
        state = self.root
        root = logging.root.__dict__
        state.handlers = root["handlers"]
        level = state.level = root["level"]
        root["handlers"] = self.outer_handlers
        if level != self.outer_level:
            root["level"] = self.outer_level
            logging.root.manager._clear_cache()  # type: ignore[attr-defined]
        out, err = self.tees
        if out._partial:
            out.end_phase()
        if err._partial:
            err.end_phase()
        return log.events

    def report_error(self, payload: ErrorPayload) -> None:
        """The runtime's log entry for an error (call between enter and exit)."""
        self.log.log_error(error_lines(payload, self.json_encoder))
