"""Which code is running now: the function's (and whose) or the plugin's own.

Connection and client accounting count only what function code does, so the
plugin records here, cheaply, when function code runs and for which environment
and invocation. Threads the plugin starts itself (proxies, the embedded server)
mark themselves internal, so their own sockets are never counted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import socket
    import weakref

    from pytest_lambda_context.observe.events import ObservedEvent
    from pytest_lambda_context.observe.shared_connections import SharedConnection


__all__ = [
    "ACTIVE_SLOT",
    "THREAD_FLAGS",
    "Scope",
    "active_scope",
    "mark_internal_thread",
    "set_scope",
]


@dataclass(slots=True)
class Scope:
    """Function code is running for this environment and invocation (None: init)."""

    function_name: str
    environment_id: str
    request_id: str | None
    # Absolute folder of the function's code, with a trailing separator: frames
    # whose file starts with it are "user code" for attribution.
    code_root: str
    # Monitors (connections, boto3 clients) append their event objects here; the
    # environment collects them after each init or invocation.
    events: list[ObservedEvent] = field(default_factory=list)
    # "allow" or "loopback" (function code may reach only 127.0.0.0/8 and ::1).
    network: str = "allow"
    # Weak references to the sockets function code connected, so that shutting an
    # environment down closes them, as the end of a Lambda environment does.
    sockets: list[weakref.ref[socket.socket]] = field(default_factory=list)
    # Module isolation: descriptors function code opened with os calls, by number, with
    # the (device, inode) they named (see observe/descriptors.py).
    descriptors: dict[int, tuple[int, int]] = field(default_factory=dict)
    # The thread that runs the function code (threading.get_ident()), so that a proxy
    # can read the line of code waiting on a connection that C code opened.
    thread: int = 0
    # Module isolation: what notices writes under the literal /tmp (environments'
    # shared_tmp.TmpWatch: a layer above this one, so not named here); None: not watched.
    tmp_watch: Any = None
    # Module isolation: uses of another environment's connection during the current
    # call, renewed with ``events``.
    shared: list[SharedConnection] = field(default_factory=list)


# Per thread: ``internal`` (a thread of the plugin's own) and what monitors note.
THREAD_FLAGS = threading.local()
# One slot for the process: function code runs one invocation at a time per process
# (module isolation interleaves, process isolation has a process per environment), and
# threads the handler starts must be attributed to it as well.
# Monitors on hot paths may read ACTIVE_SLOT[0] directly (one list index when no
# function code runs); everyone else calls active_scope().
ACTIVE_SLOT: list[Scope | None] = [None]


def set_scope(scope: Scope | None) -> Scope | None:
    """Make ``scope`` current; return the previous one so callers can restore it."""
    previous = ACTIVE_SLOT[0]
    ACTIVE_SLOT[0] = scope
    return previous


def active_scope() -> Scope | None:
    """The scope of the function code running now, or None outside function code."""
    scope = ACTIVE_SLOT[0]
    if scope is None or getattr(THREAD_FLAGS, "internal", False):
        return None
    return scope


def mark_internal_thread() -> None:
    """Declare the calling thread the plugin's own: nothing it does is counted."""
    THREAD_FLAGS.internal = True
