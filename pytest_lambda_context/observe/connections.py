"""Counting the TCP connections that function code opens, at the socket layer.

The monitor patches ``socket.socket.connect``/``connect_ex`` (plus ``getaddrinfo`` and
``getsockopt``),
which every client library ends in: urllib3/requests, http.client, httpx (sync
through httpcore, async through asyncio's ``sock_connect``) and aiohttp. Outside
function code (no active scope) the patches call straight through; inside, each
stream connection is recorded as a :class:`ConnectionEvent` in the scope, with the
line of user code that caused it, and under ``lambda_network = loopback`` anything
beyond loopback is refused before it is attempted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import gc
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any

from pytest_lambda_context.observe import scope as _scope
from pytest_lambda_context.observe.drivers import CONNECT_HOOKS
from pytest_lambda_context.observe.guard import (
    BlockedLookupError,
    NetworkBlockedError,
    blocked_connect,
    blocked_lookup,
    is_loopback_host,
    lookup_allowed,
)
from pytest_lambda_context.observe.installation import Installation
from pytest_lambda_context.observe.scope import Scope, active_scope
from pytest_lambda_context.observe.shared_connections import own

if TYPE_CHECKING:
    from _socket import _Address, _RetAddress
    from socket import _GetAddrInfoResult

    from pytest_lambda_context.observe.events import ObservedEvent


__all__ = [
    "BlockedLookupError",
    "ConnectLine",
    "ConnectionEvent",
    "ConnectionLog",
    "NetworkBlockedError",
    "close_sockets",
    "install",
    "installed",
    "merge_seen_twice",
    "uninstall",
    "user_frame",
]


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """One TCP connection opened by function code."""

    function_name: str
    environment_id: str
    # None: opened during the init phase (module import / init code).
    request_id: str | None
    # As given to connect: normally the resolved address.
    host: str
    port: int
    # "app/search.py:7 in get_es_client", relative to the code root; None when no
    # frame of the function's code is on the stack (a thread of a library, say).
    frame: str | None
    time: float
    # The name function code looked up that resolved to ``host``, when one was seen.
    hostname: str | None = None
    # The client end's port, for connections to loopback (how a proxy's record of the
    # same connection is recognised).
    local_port: int | None = None
    # The name of the plugin's proxy the connection reached, if it reached one.
    via: str | None = None
    # Who saw it: "socket" (Python's socket layer), "proxy" (only a proxy: C code
    # opened it), or "both".
    seen_by: str = "socket"
    # Why ``frame`` is None, when the plugin knows (a proxy's record of C code's
    # connection): said in failures rather than a bare "no line".
    line_unknown: str | None = None

    def describe(self) -> str:
        phase = "init" if self.request_id is None else self.request_id
        return f"{self.environment_id} {phase}: {self.where()}"

    def where(self) -> str:
        """``host:port`` (through which proxy) and the line of code that opened it."""
        name = f"{self.hostname} ({self.host})" if self.hostname else self.host
        through = f" through proxy {self.via!r}" if self.via else ""
        if self.frame:
            origin = f"opened at {self.frame}"
        elif self.seen_by == "proxy":
            why = self.line_unknown or "no thread of the function's code was waiting on it"
            origin = f"opened by C code (no Python socket); its line of code is unknown: {why}"
        else:
            origin = "opened with no line of the function's code on the stack"
        return f"{name}:{self.port}{through} {origin}"


@dataclass(frozen=True, slots=True)
class ConnectLine:
    """What a worker process's stack said of one of its connections to loopback, when a
    proxy asked (``observe.connect_lines``): the line of function code, or why there is
    none. Not a connection: it only lends its line to the proxy's record of the same
    connection (same client port and proxy port), and is dropped either way."""

    local_port: int
    port: int
    frame: str | None
    why: str | None = None


class ConnectionLog:
    """Connections opened by function code, in the order they were opened."""

    def __init__(self, events: Iterable[ConnectionEvent] = ()) -> None:
        self.events: list[ConnectionEvent] = list(events)
        # Whether anyone asked for counts (opened(), per_environment(), len(), ...): a test
        # that reads them is told when C code's connections went uncounted.
        self.queried = False

    def add(self, event: ConnectionEvent) -> None:
        self.events.append(event)

    def extend(self, events: Iterable[ConnectionEvent]) -> None:
        self.events.extend(events)

    def matching(self, host: str | None = None, port: int | None = None) -> ConnectionLog:
        """The connections to ``port`` and to ``host``: the address connected to, or
        the name function code looked up to get it ("localhost" matches any loopback
        address). Never resolves names itself: that could send DNS queries."""
        self.queried = True
        if host is None and port is None:
            return ConnectionLog(self.events)
        localhost = host is not None and host.lower().rstrip(".") == "localhost"
        return ConnectionLog(
            e
            for e in self.events
            if (port is None or e.port == port)
            and (
                host is None
                or e.host == host
                or e.hostname == host
                or (localhost and is_loopback_host(e.host))
            )
        )

    def opened(self, host: str | None = None, port: int | None = None) -> int:
        return len(self.matching(host, port))

    def per_environment(self) -> dict[str, int]:
        """Environment id -> connections, environments in the order first seen."""
        self.queried = True
        counts: dict[str, int] = {}
        for e in self.events:
            counts[e.environment_id] = counts.get(e.environment_id, 0) + 1
        return counts

    def per_invocation(self) -> dict[str | None, int]:
        """Request id (None: init phases) -> connections, in the order first seen."""
        self.queried = True
        counts: dict[str | None, int] = {}
        for e in self.events:
            counts[e.request_id] = counts.get(e.request_id, 0) + 1
        return counts

    def for_environment(self, environment_id: str) -> ConnectionLog:
        self.queried = True
        return ConnectionLog(e for e in self.events if e.environment_id == environment_id)

    def for_invocation(self, request_id: str | None) -> ConnectionLog:
        self.queried = True
        return ConnectionLog(e for e in self.events if e.request_id == request_id)

    def __len__(self) -> int:
        self.queried = True
        return len(self.events)

    def __iter__(self) -> Iterator[ConnectionEvent]:
        self.queried = True
        return iter(self.events)

    def __repr__(self) -> str:
        return f"<ConnectionLog opened={len(self.events)} per_environment={self.per_environment()}>"


def merge_seen_twice(events: list[ObservedEvent]) -> list[ObservedEvent]:
    """One record per connection, in the order opened.

    A proxy's record of a connection that the socket layer saw too (same client port,
    same proxy address) is folded into the socket layer's, which knows the line of
    code: it is marked ``seen_by="both"`` and names the proxy. A proxy's record without
    a line takes the one a worker's stack gave (:class:`ConnectLine`, never kept).
    """
    proxied = {
        (e.local_port, e.port): e
        for e in events
        if isinstance(e, ConnectionEvent) and e.seen_by == "proxy"
    }
    lines: dict[tuple[int | None, int], ConnectLine] = {
        (e.local_port, e.port): e for e in events if isinstance(e, ConnectLine)
    }
    if not proxied and not lines:
        return events
    others: list[ObservedEvent] = []
    connections: list[ConnectionEvent] = []
    for event in events:
        if isinstance(event, ConnectLine):
            continue
        if not isinstance(event, ConnectionEvent):
            others.append(event)
        elif event.seen_by == "socket":
            twin = proxied.pop((event.local_port, event.port), None)
            if twin is not None:
                event = dataclasses.replace(event, via=twin.via, seen_by="both")
            connections.append(event)
    for key, event in proxied.items():
        line = lines.get(key)
        if line is not None and event.frame is None:
            event = dataclasses.replace(event, frame=line.frame, line_unknown=line.why)
        connections.append(event)
    connections.sort(key=lambda e: e.time)
    return [*others, *connections]


def user_frame(code_root: str, frame: FrameType | None = None) -> str | None:
    """Format the innermost frame (from the caller outwards) of code under ``code_root``.

    On the connect path, so kept to a plain walk up ``f_back``.
    """
    f: FrameType | None = sys._getframe(1) if frame is None else frame
    while f is not None:
        filename = f.f_code.co_filename
        if filename.startswith(code_root):
            relative = filename[len(code_root) :].lstrip("/\\").replace("\\", "/")
            return f"{relative}:{f.f_lineno} in {f.f_code.co_name}"
        f = f.f_back
    return None


def thread_frames() -> dict[int, FrameType]:
    """``sys._current_frames()``, safe to call from a thread of ours while others run.

    Before Python 3.12 a garbage collection inside that call can deadlock the whole
    process (CPython gh-106883: the collector frees a ``threading.local``, which takes
    the lock the call holds); the proxy's accept thread hit it in 5 of 32 runs of one test.
    The collector is paused for the call, and only if it was running.
    """
    if sys.version_info >= (3, 12) or not gc.isenabled():
        return sys._current_frames()
    gc.disable()
    try:
        return sys._current_frames()
    finally:
        gc.enable()


# --- the monitor -------------------------------------------------------------------

_STREAM = socket.SOCK_STREAM
_INET_FAMILIES = frozenset({int(socket.AF_INET), int(socket.AF_INET6)})
# Read the raw ints: the socket.socket properties convert to enums, ten times slower.
_raw_family = socket.socket.__mro__[1].__dict__["family"].__get__
_raw_type = socket.socket.__mro__[1].__dict__["type"].__get__
_PENDING = frozenset({errno.EINPROGRESS})
_SOL_SOCKET = socket.SOL_SOCKET
_SO_ERROR = socket.SO_ERROR

_lock = threading.Lock()
# Read the scope slot directly: the no-scope path is then one list index.
_active = _scope.ACTIVE_SLOT
_thread_flags = _scope.THREAD_FLAGS
_new_object = object.__new__
(
    _set_function_name,
    _set_environment_id,
    _set_request_id,
    _set_host,
    _set_port,
    _set_frame,
    _set_time,
    _set_hostname,
    _set_local_port,
    _set_via,
    _set_seen_by,
    _set_line_unknown,
) = (vars(ConnectionEvent)[name].__set__ for name in ConnectionEvent.__slots__)
# What the patches call through to. The last three keep typeshed's signatures
# (defaults, overloads: more than a Callable can say), inferred from the assignment.
_original_connect: Callable[[socket.socket, _Address], None] = socket.socket.connect
_original_connect_ex: Callable[[socket.socket, _Address], int] = socket.socket.connect_ex
_getsockname: Callable[[socket.socket], _RetAddress] = socket.socket.getsockname
_original_getaddrinfo = socket.getaddrinfo
_original_getsockopt = socket.socket.getsockopt
_original_listen = socket.socket.listen
# What socket.socket's own dict held before install (absent: inherited from _socket),
# so uninstall can put back exactly what was there.
_saved: dict[str, object] = {}
_MISSING = object()

# Address -> the name function code looked up to get it, so events can say "es.local"
# and not only "10.0.0.5". Valid only within the scope (one init or invocation) that
# did the lookup: a lookup from an earlier test must not label a later connect to the
# same address by literal.
_names: dict[str, str] = {}
_names_scope: list[Scope | None] = [None]
_NAMES_LIMIT = 1024

# Non-blocking connects counted while still in progress, until the event loop asks the
# socket how the attempt went (asyncio's SO_ERROR check): a failed one is taken back
# out of the scope's events, so a refused attempt is not counted as opened. Loops
# that never ask (uvloop) leave the attempt counted.
_pending: weakref.WeakKeyDictionary[socket.socket, tuple[list[ObservedEvent], ConnectionEvent]] = (
    weakref.WeakKeyDictionary()
)


def _counting_scope(sock: socket.socket) -> Scope | None:
    """The scope to count a connect of ``sock`` in, or None to call straight through."""
    scope = _active[0]
    # Same test as active_scope(), inlined: getattr() with a default on a thread-local
    # costs 0.3 µs when the attribute is missing, a dict lookup 0.04 µs.
    if scope is None or _thread_flags.__dict__.get("internal"):
        return None
    if _raw_type(sock) != _STREAM or _raw_family(sock) not in _INET_FAMILIES:
        return None
    return scope


def _event(
    scope: Scope, host: str, port: int, frame: str | None, sock: socket.socket
) -> ConnectionEvent:
    # Fills the slots directly: the frozen dataclass __init__ goes through
    # object.__setattr__ per field and costs twice as much on the connect path.
    event = _new_object(ConnectionEvent)
    _set_function_name(event, scope.function_name)
    _set_environment_id(event, scope.environment_id)
    _set_request_id(event, scope.request_id)
    _set_host(event, host)
    _set_port(event, port)
    _set_frame(event, frame)
    _set_time(event, time.time())
    _set_hostname(event, _names.get(host) if _names_scope[0] is scope else None)
    # Proxies listen on loopback: there the client port tells a proxy's record of the
    # same connection apart from others.
    _set_local_port(event, _getsockname(sock)[1] if is_loopback_host(host) else None)
    _set_via(event, None)
    _set_seen_by(event, "socket")
    _set_line_unknown(event, None)
    return event


def _guard(scope: Scope, host: str, port: int, frame: str | None) -> None:
    if scope.network == "loopback" and not is_loopback_host(host):
        raise blocked_connect(host, port, frame, scope.function_name, scope.environment_id)


# ``address`` stays Any: its type depends on the socket's family (typeshed's _Address
# admits buffers, which cannot be indexed); it is indexed only once _counting_scope has
# seen an AF_INET/AF_INET6 socket, whose address is a (host, port, ...) tuple.
def _connect(self: socket.socket, address: Any) -> None:
    scope = _counting_scope(self)
    if scope is None:
        return _original_connect(self, address)
    host, port = str(address[0]), int(address[1])
    frame = user_frame(scope.code_root, sys._getframe(1))
    _guard(scope, host, port, frame)
    _remember(scope, self)
    try:
        _original_connect(self, address)
    except BlockingIOError:
        # A non-blocking connect (asyncio's sock_connect: aiohttp, httpx async) is
        # still in progress: count the attempt as opened now (see _pending).
        _count_pending(self, scope, _event(scope, host, port, frame, self))
        raise
    scope.events.append(_event(scope, host, port, frame, self))


def _remember(scope: Scope, sock: socket.socket) -> None:
    own(sock, scope)
    sockets = scope.sockets
    if len(sockets) >= 64 and not len(sockets) & 63:
        # Drop the references of sockets already gone, now and then.
        sockets[:] = [ref for ref in sockets if ref() is not None]
    sockets.append(weakref.ref(sock))


def close_sockets(scope: Scope) -> int:
    """Close the sockets function code opened in ``scope`` that are still open.

    The end of an execution environment ends its connections: the peer sees them
    closed at once, not whenever the garbage collector gets to the client.
    """
    closed = 0
    for ref in scope.sockets:
        sock = ref()
        if sock is not None and sock.fileno() != -1:
            sock.close()
            closed += 1
    scope.sockets.clear()
    return closed


def _connect_ex(self: socket.socket, address: Any) -> int:
    scope = _counting_scope(self)
    if scope is None:
        return _original_connect_ex(self, address)
    host, port = str(address[0]), int(address[1])
    frame = user_frame(scope.code_root, sys._getframe(1))
    _guard(scope, host, port, frame)
    _remember(scope, self)
    result = _original_connect_ex(self, address)
    if result == 0:
        scope.events.append(_event(scope, host, port, frame, self))
    elif result in _PENDING:
        # Non-blocking attempt under way: counted as opened now (see _pending).
        _count_pending(self, scope, _event(scope, host, port, frame, self))
    return result


def _count_pending(sock: socket.socket, scope: Scope, event: ConnectionEvent) -> None:
    scope.events.append(event)
    _pending[sock] = (scope.events, event)


def _getsockopt(self: socket.socket, *args: int) -> int | bytes:
    result = _original_getsockopt(self, *args)
    if _pending and len(args) == 2 and args[1] == _SO_ERROR and args[0] == _SOL_SOCKET:
        entry = _pending.pop(self, None)
        if entry is not None and result != 0:
            events, event = entry
            with contextlib.suppress(ValueError):
                events.remove(event)
    return result


def _listen(self: socket.socket, *args: int) -> None:
    # A listening socket of function code is its environment's: closed with it (else
    # it would go on accepting after the environment ended), and never counted.
    scope = _active[0]
    if scope is not None and not _thread_flags.__dict__.get("internal"):
        _remember(scope, self)
    _original_listen(self, *args)


def _getaddrinfo(
    host: bytes | str | None, port: bytes | str | int | None, *args: int, **kwargs: int
) -> _GetAddrInfoResult:
    if _active[0] is None:
        return _original_getaddrinfo(host, port, *args, **kwargs)
    scope = active_scope()
    if scope is None:
        return _original_getaddrinfo(host, port, *args, **kwargs)
    if scope.network == "loopback" and not lookup_allowed(host):
        name = host.decode("ascii", "replace") if isinstance(host, bytes) else str(host)
        frame = user_frame(scope.code_root, sys._getframe(1))
        raise blocked_lookup(name, frame, scope.function_name, scope.environment_id)
    infos = _original_getaddrinfo(host, port, *args, **kwargs)
    if isinstance(host, str) and host and _is_name(host):
        if _names_scope[0] is not scope or len(_names) >= _NAMES_LIMIT:
            _names.clear()
            _names_scope[0] = scope
        for info in infos:
            _names[str(info[4][0])] = host
    return infos


def _is_name(host: str) -> bool:
    # "localhost" counts as a name here: events should say what the code asked for.
    return host.lower().rstrip(".") == "localhost" or not lookup_allowed(host)


_PATCHES: tuple[tuple[type | ModuleType, str, object], ...] = (
    (socket.socket, "connect", _connect),
    (socket.socket, "connect_ex", _connect_ex),
    (socket.socket, "getsockopt", _getsockopt),
    (socket.socket, "listen", _listen),
    (socket, "getaddrinfo", _getaddrinfo),
)


def _apply() -> None:
    global _original_connect, _original_connect_ex, _original_getaddrinfo
    global _original_getsockopt, _original_listen
    for owner, name, _ in _PATCHES:
        _saved[f"{id(owner)}.{name}"] = vars(owner).get(name, _MISSING)
    # Whatever is there now (possibly another tool's patch) is what we call through to.
    _original_connect = socket.socket.connect
    _original_connect_ex = socket.socket.connect_ex
    _original_getaddrinfo = socket.getaddrinfo
    _original_getsockopt = socket.socket.getsockopt
    _original_listen = socket.socket.listen
    for owner, name, replacement in _PATCHES:
        setattr(owner, name, replacement)
    # C-level drivers connect below these patches: their connect calls are seen.
    CONNECT_HOOKS.install()


def _remove() -> None:
    CONNECT_HOOKS.uninstall()
    for owner, name, _ in _PATCHES:
        previous = _saved.pop(f"{id(owner)}.{name}")
        if previous is _MISSING:
            delattr(owner, name)
        else:
            setattr(owner, name, previous)
    _pending.clear()
    _names.clear()
    _names_scope[0] = None


# Start monitoring (refcounted), and stop: the last uninstall restores the originals.
_INSTALLATION = Installation("connections", _apply, _remove, _lock)
install = _INSTALLATION.install
uninstall = _INSTALLATION.uninstall
installed = _INSTALLATION.installed
