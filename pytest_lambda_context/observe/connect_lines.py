"""The line of function code behind a C driver's connection, in a worker process.

C code (libpq under psycopg and psycopg2) connects without a Python socket, so the
socket layer never sees it; a proxy does, and asks the kernel which worker holds the
client end (``observe.peers``). That worker is then still waiting for the server's
first answer, which the proxy holds back until it has attributed the connection. The
proxy sends the worker :data:`ASK_SIGNAL`; the worker's handler runs as soon as the
interpreter gets control (a signal interrupts libpq's wait; Python runs the handler
when the C call returns, or at once in psycopg 3's own wait loop), while the frame that
called ``connect`` is still on the stack. It notes, for each of its connections to
loopback not noted before, the line of function code its stack shows, as a
:class:`ConnectLine` among the phase's events; the test process folds it into the
proxy's record of the same connection (same client port and proxy port).

When there is no line to give, the note says why: no thread was running the function's
code, or several were (which one connected cannot be told). No note at all means the
worker holds no such socket: a process the function started opened it, or it was
closed before the handler ran.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from types import FrameType

from pytest_lambda_context.observe.connections import ConnectLine, thread_frames, user_frame
from pytest_lambda_context.observe.guard import is_loopback_host
from pytest_lambda_context.observe.scope import ACTIVE_SLOT

__all__ = ["ASK_SIGNAL", "NOT_REPORTED", "ask", "current_line", "install", "not_asked"]

# A real-time signal: queued, never one of the signals function code or Lambda uses.
ASK_SIGNAL = signal.SIGRTMIN + 6
# Why a worker's C connection has no line when the worker sent no note for it.
NOT_REPORTED = (
    "the worker process held no such socket when asked (a process the function "
    "started opened it, or it was closed at once)"
)
# Connections already noted: the socket inodes of those open at the last look.
_noted: set[str] = set()


def install() -> None:
    """In a worker process: answer :func:`ask` (function code's own handler for this
    signal, should it set one, replaces this and loses only the lines)."""
    _noted.clear()
    signal.signal(ASK_SIGNAL, _on_ask)
    # Restart the system calls it interrupts, as far as the kernel does: C code that
    # does not expect EINTR is not disturbed (libpq's poll, which always sees EINTR,
    # retries by itself).
    signal.siginterrupt(ASK_SIGNAL, False)


def ask(pid: int) -> bool:
    """Ask process ``pid`` for the line of its newest connections (test process side);
    False when it does not answer this signal (a program function code started: the
    signal's default action would end it), which is then not sent."""
    if not _answers(pid):
        return False
    with contextlib.suppress(OSError):  # gone already: its connection has no line
        os.kill(pid, ASK_SIGNAL)
    return True


def not_asked(pid: int) -> str:
    """Why a connection held by ``pid``, which :func:`ask` could not ask, has no line."""
    return (
        f"a process that the function's code started (pid {pid}) opened it, and its "
        "stack is not the plugin's to read"
    )


def _answers(pid: int) -> bool:
    # /proc/<pid>/status SigCgt: the signals the process has a handler for (a hex mask).
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (ASK_SIGNAL - 1) & 1)
    except (OSError, ValueError):
        pass
    return False


def _on_ask(signum: int, frame: FrameType | None) -> None:
    scope = ACTIVE_SLOT[0]
    if scope is None:
        return  # between phases: no function code to name
    line, why = current_line(scope.code_root)
    current = _loopback_connections()
    for inode, (local_port, port) in current.items():
        if inode not in _noted:
            scope.events.append(ConnectLine(local_port, port, line, why))
    _noted.clear()
    _noted.update(current)


def current_line(code_root: str) -> tuple[str | None, str | None]:
    """The line of function code the threads are in now, or why there is none."""
    lines = {
        ident: found
        for ident, top in thread_frames().items()
        if (found := user_frame(code_root, top)) is not None
    }
    if not lines:
        return None, "no thread of the worker was running the function's code when it connected"
    if len(lines) > 1:
        return None, (
            f"{len(lines)} threads of the worker were running the function's code "
            f"({', '.join(sorted(set(lines.values())))}): which one connected is unknown"
        )
    return next(iter(lines.values())), None


def _loopback_connections() -> dict[str, tuple[int, int]]:
    """This process's TCP connections to loopback: socket inode -> (client port,
    server port)."""
    found: dict[str, tuple[int, int]] = {}
    with contextlib.suppress(OSError):
        names = os.listdir("/proc/self/fd")
        for name in names:
            with contextlib.suppress(OSError, ValueError):
                target = os.readlink(f"/proc/self/fd/{name}")
                if not target.startswith("socket:"):
                    continue
                # A duplicate, so that closing the probe leaves function code's socket be.
                with socket.socket(fileno=os.dup(int(name))) as probe:
                    if probe.type != socket.SOCK_STREAM or probe.family not in (
                        socket.AF_INET,
                        socket.AF_INET6,
                    ):
                        continue
                    peer = probe.getpeername()
                    if is_loopback_host(peer[0]):
                        found[target] = (probe.getsockname()[1], peer[1])
    return found
