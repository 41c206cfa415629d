"""An environment's log stream: what CloudWatch would hold, and the runtime's log sink.

Function code's ``print`` output (``sys.stdout`` and ``sys.stderr``) becomes one event
per line, as Lambda splits a runtime's standard output (an empty line is none); a record of the runtime's
logging handler, ``context.log()`` and the runtime's own error report are one event
each, as Lambda's log sink frames them. Each phase (init, an invocation) collects its
own events.

The output also reaches the test's streams: in the test process (module isolation)
it is written through at once; in a worker (process isolation) it is kept as
chunks, sent back with the reply and written by the test process, so pytest's
capture (``capsys``, ``capfd``, ``-s``) sees it either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TextIO

__all__ = ["LogStream", "StreamTee"]


class LogStream:
    """The sink that awslambdaric's logging handler and ``context.log`` write to."""

    __slots__ = ("chunks", "events", "request_id", "targets", "tenant_id", "write_through")

    def __init__(self, *, write_through: bool) -> None:
        # The current phase's events (the list is replaced at each phase).
        self.events: list[str] = []
        # awslambdaric's _GLOBAL_AWS_REQUEST_ID and _GLOBAL_TENANT_ID: set when an
        # invocation starts, kept afterwards ("" before the first).
        self.request_id = ""
        self.tenant_id: str | None = None
        self.write_through = write_through
        # Where output goes: the test's stdout and stderr (set around each phase).
        self.targets: list[TextIO | None] = [None, None]
        # Output to replay in the test process: (1 or 2, text).
        self.chunks: list[tuple[int, str]] = []

    # -- the log sink's interface (awslambdaric's StandardLogSink) ------------------
    def log(self, msg: str, frame_type: bytes | None = None) -> None:
        self.events.append(msg[:-1] if msg.endswith("\n") else msg)
        self._out(1, msg)

    def log_error(self, message_lines: list[str]) -> None:
        text = "\n".join(message_lines)
        self.events.append(text)
        self._out(1, text + "\n")

    # -------------------------------------------------------------------------------
    def _out(self, stream: int, text: str) -> None:
        if self.write_through:
            target = self.targets[stream - 1]
            if target is not None:
                target.write(text)
        else:
            self.chunks.append((stream, text))

    def take_chunks(self) -> list[tuple[int, str]]:
        chunks, self.chunks = self.chunks, []
        return chunks


class StreamTee:
    """``sys.stdout`` or ``sys.stderr`` of function code: lines become log events."""

    def __init__(self, stream: int, log: LogStream) -> None:
        self._stream = stream
        self._log = log
        self._partial = ""
        # Closed by function code: the runtime's stream is closed for it, never the
        # test's (pytest's capture) that it writes through to.
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def reopen(self) -> None:
        """A new runtime process has its streams open again."""
        self.closed = False
        self._partial = ""

    def write(self, text: str) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        log = self._log
        log._out(self._stream, text)
        if "\n" in text:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            if "" in lines:  # a blank line is no log event on Lambda
                lines = [line for line in lines if line]
            log.events.extend(lines)
        else:
            self._partial += text
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def end_phase(self) -> None:
        """A line left unfinished at the end of a phase is an event of its own."""
        if self._partial:
            self._log.events.append(self._partial)
            self._partial = ""

    def flush(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        if self._log.write_through:
            self.real.flush()

    @property
    def real(self) -> TextIO:
        target = self._log.targets[self._stream - 1]
        return target if target is not None else _fallback(self._stream)

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        # encoding, errors, fileno, buffer...: those of the stream it stands for (Any:
        # whichever attribute is asked for).
        return getattr(self.real, name)


def _fallback(stream: int) -> TextIO:
    import sys

    return sys.__stdout__ if stream == 1 else sys.__stderr__  # type: ignore[return-value]
