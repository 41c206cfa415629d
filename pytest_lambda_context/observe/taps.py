"""Connections that reach the plugin's proxies, attributed to the code that opened them.

The socket layer (:mod:`.connections`) sees what Python code connects; a proxy sees
every connection that reaches it, C code's too (libpq under psycopg and psycopg2,
librdkafka, grpc, curl). When a proxy accepts a connection, this module decides whose
it is, before the client has had an answer:

- a worker process of ``isolation="process"`` (or a process its code started) holds
  the client socket: that worker's environment, in the phase it is running now (the
  test process moves the worker's scope from request to request);
- otherwise function code running in this process (module isolation): the active scope.

Environments call :func:`settle` when an init or invocation starts and ends, so every
connection the kernel has completed by then is attributed before the phase changes.
"""

from __future__ import annotations

import threading
import time
from types import FrameType
from typing import NamedTuple, Protocol

from pytest_lambda_context.observe import connect_lines
from pytest_lambda_context.observe.connections import ConnectionEvent, thread_frames, user_frame
from pytest_lambda_context.observe.peers import owner
from pytest_lambda_context.observe.scope import ACTIVE_SLOT, Scope

__all__ = [
    "LIVE_PROXIES",
    "Attribution",
    "Settling",
    "attribute",
    "killed",
    "register_process",
    "settle",
    "track",
    "unregister_process",
]


class Settling(Protocol):
    def settle(self) -> None:
        """Accept and attribute every connection waiting in the listen queue."""

    def linger(self, scope: Scope) -> int:
        """The connections of ``scope`` stay open on the server's side when their
        client ends (see :func:`killed`); how many."""


_lock = threading.Lock()
# The proxies listening now. Hot paths may test it directly (``if LIVE_PROXIES:``)
# before calling settle(): an empty list costs one truth test.
LIVE_PROXIES: list[Settling] = []
# Worker process (its process group's leader) -> the scope that stands for it here.
_processes: dict[int, Scope] = {}


def track(proxy: Settling) -> None:
    with _lock:
        LIVE_PROXIES.append(proxy)


def untrack(proxy: Settling) -> None:
    with _lock:
        if proxy in LIVE_PROXIES:
            LIVE_PROXIES.remove(proxy)


def register_process(pid: int, scope: Scope) -> None:
    _processes[pid] = scope


def unregister_process(pid: int) -> None:
    _processes.pop(pid, None)


def settle() -> None:
    """Attribute every connection that reached a proxy by now (cheap when none waits)."""
    if LIVE_PROXIES:
        for proxy in list(LIVE_PROXIES):
            proxy.settle()


def killed(scope: Scope) -> int:
    """The environment of ``scope`` is about to be killed, as Lambda kills a runtime.

    Its connections are not closed by anyone: the server never hears of their end, so
    each proxy keeps its side of them open (``open_now``) until it is cut (an idle
    timeout, a drop, the proxy's close). Connections its code closed before are gone.
    Returns how many were left open.
    """
    settle()
    return sum(proxy.linger(scope) for proxy in list(LIVE_PROXIES))


class Attribution(NamedTuple):
    """Whose a proxied connection is."""

    scope: Scope
    # Function code running in this process opened it (module isolation), not a worker.
    here: bool


def attribute(
    proxy_name: str, listen: tuple[str, int], peer: tuple[str, int]
) -> Attribution | None:
    """A proxy accepted a connection from ``peer``: record it for the code that opened
    it (None: the test's or the plugin's own connection)."""
    scope: Scope | None = None
    local = False
    line_unknown = None
    if _processes:
        found = owner(peer, listen, list(_processes))
        if found is not None:
            scope = _processes.get(found.leader)
            # The holder notes the line of code on its stack; the test process folds
            # the note into this record (observe.connect_lines).
            if connect_lines.ask(found.holder):
                line_unknown = connect_lines.NOT_REPORTED
            else:
                line_unknown = connect_lines.not_asked(found.holder)
    if scope is None:
        scope = ACTIVE_SLOT[0]
        local = True
    if scope is None:
        return None  # the test's own code, or the plugin's: not counted
    frame = _waiting_line(scope) if local else None
    scope.events.append(
        ConnectionEvent(
            function_name=scope.function_name,
            environment_id=scope.environment_id,
            request_id=scope.request_id,
            host=listen[0],
            port=listen[1],
            frame=frame,
            time=time.time(),
            local_port=peer[1],
            via=proxy_name,
            seen_by="proxy",
            line_unknown=line_unknown,
        )
    )
    return Attribution(scope, local)


def _waiting_line(scope: Scope) -> str | None:
    """The line of function code that the scope's thread is in now: the call that is
    waiting for this connection's first answer (C code's connect has no Python frame)."""
    frame: FrameType | None = thread_frames().get(scope.thread) if scope.thread else None
    return user_frame(scope.code_root, frame) if frame is not None else None
