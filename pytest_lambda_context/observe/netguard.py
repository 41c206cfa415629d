"""The ``lambda_network = loopback`` guard below every Python layer.

The socket monitor (:mod:`.connections`) refuses at ``socket.socket.connect`` and
``socket.getaddrinfo``, with the line of code; but code can go around those methods
(``_socket.socket.connect``, ``super().connect``, ``gethostbyname``, UDP ``sendto``).
Python raises an audit event (PEP 578) inside the C implementation of each of them,
whatever layer called it, so an audit hook sees them all: ``socket.connect`` (TCP and
UDP, ``connect_ex`` too), ``socket.sendto``, ``socket.sendmsg``, ``socket.getaddrinfo``,
``socket.gethostbyname`` (and ``gethostbyname_ex``), ``socket.gethostbyaddr`` and
``socket.getnameinfo``. Raising in the hook stops the call before any packet leaves.

One path is resolved before its audit event: a *name* given to the C methods
(``_socket.socket.connect(sock, ("db.example.com", 5432))``, UDP ``sendto`` to a name)
is looked up in C first, which would send a DNS query. So the address-taking methods
of the C socket type itself (``connect``, ``connect_ex``, ``sendto``, ``sendmsg``) are
wrapped too, in the type's own dictionary (a CPython detail, put back exactly at
:func:`uninstall`); every subclass and every caller reaches them.

Audit hooks cannot be removed: this one is added once, and does nothing unless
function code under ``loopback`` is running in the calling thread. Threads that
function code starts keep its scope for the guard (:func:`install` wraps the thread
starters), so a thread still running after its invocation returned is guarded too.
C code (libpq, librdkafka, ...) raises no audit event: it is not guarded.
"""

from __future__ import annotations

import _socket
import _thread
import contextlib
import gc
import os
import socket
import sys
import threading
from collections.abc import Callable
from types import FrameType, ModuleType
from typing import Any, TypeVar

from pytest_lambda_context.observe.connections import user_frame
from pytest_lambda_context.observe.guard import (
    blocked_connect,
    blocked_lookup,
    is_loopback_host,
    lookup_allowed,
)
from pytest_lambda_context.observe.installation import Installation
from pytest_lambda_context.observe.scope import ACTIVE_SLOT, THREAD_FLAGS, Scope

__all__ = ["install", "installed", "uninstall"]

_INET = frozenset({int(socket.AF_INET), int(socket.AF_INET6)})
_SENDS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg"})
_LOOKUPS = frozenset({"socket.getaddrinfo", "socket.gethostbyname"})
_REVERSE = frozenset({"socket.gethostbyaddr", "socket.getnameinfo"})
_GUARDED = _SENDS | _LOOKUPS | _REVERSE
# The plugin's package folder (its frames are never the offending line).
_OWN_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

_lock = threading.Lock()
_hook_added = False
# (module, attribute) of each thread starter that exists in this Python, and what it held.
_STARTERS = [
    (module, name)
    for module, name in (
        (threading, "_start_new_thread"),  # Python 3.10-3.12: Thread.start
        (threading, "_start_joinable_thread"),  # Python 3.13+: Thread.start
        (_thread, "start_new_thread"),
    )
    if hasattr(module, name)
]
_saved: dict[tuple[ModuleType, str], object] = {}
_C_METHODS = ("connect", "connect_ex", "sendto", "sendmsg")
_saved_methods: dict[str, object] = {}

_R = TypeVar("_R")


def _guarded_scope() -> Scope | None:
    """The function code the calling thread runs, if it is under ``loopback``."""
    flags = THREAD_FLAGS.__dict__
    if flags.get("internal"):
        return None
    scope = flags.get("owner") or ACTIVE_SLOT[0]
    if scope is None or scope.network != "loopback":
        return None
    return scope


def _line(scope: Scope) -> str | None:
    """The line of function code that called the socket API: the innermost frame under
    the code root once the plugin's own frames (the guard, the socket monitor) are
    passed, however many of them lie between (a count of frames named the caller's
    line for the C methods' wrappers)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_OWN_PACKAGE):
        frame = frame.f_back
    return user_frame(scope.code_root, frame)


def _check_address(scope: Scope, sock: _socket.socket, address: object, verb: str) -> None:
    if address is None or _family(sock) not in _INET or not isinstance(address, tuple):
        return  # a connected socket, or not the internet (AF_UNIX, netlink)
    host, port = str(address[0]), int(address[1])
    if not is_loopback_host(host):
        raise blocked_connect(
            host, port, _line(scope), scope.function_name, scope.environment_id, verb
        )


# Any: each event's arguments have their own types (the table of PEP 578's events).
def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in _GUARDED:
        return
    scope = _guarded_scope()
    if scope is None:
        return
    if event in _SENDS:
        verb = "connect to" if event == "socket.connect" else "send to"
        _check_address(scope, args[0], args[1], verb)
    elif event in _LOOKUPS:
        host = args[0]
        if not lookup_allowed(host):
            name = host.decode("ascii", "replace") if isinstance(host, bytes) else str(host)
            raise blocked_lookup(name, _line(scope), scope.function_name, scope.environment_id)
    else:
        # A reverse lookup asks DNS about an address, unless it is this machine's.
        address = args[0]
        host = str(address[0] if isinstance(address, tuple) else address)
        if not (is_loopback_host(host) and lookup_allowed(host)):
            raise blocked_lookup(host, _line(scope), scope.function_name, scope.environment_id)


def _family(sock: _socket.socket) -> int:
    try:
        return int(sock.family)
    except (AttributeError, OSError, ValueError):
        return -1


def _wrap_c_method(name: str, original: Callable[..., object]) -> Callable[..., object]:
    """``original`` (a method of the C socket type), refusing first what the guard refuses."""
    verb = "connect to" if name.startswith("connect") else "send to"
    # Where the address is among the arguments: connect(address), sendto(data[, flags],
    # address), sendmsg(buffers[, ancdata[, flags[, address]]]).
    if name.startswith("connect"):

        def address_of(args: tuple[object, ...]) -> object:
            return args[0] if args else None

    elif name == "sendto":

        def address_of(args: tuple[object, ...]) -> object:
            return args[-1] if len(args) >= 2 else None

    else:

        def address_of(args: tuple[object, ...]) -> object:
            return args[3] if len(args) >= 4 else None

    def method(self: _socket.socket, *args: object) -> object:
        if ACTIVE_SLOT[0] is not None or THREAD_FLAGS.__dict__.get("owner") is not None:
            scope = _guarded_scope()
            if scope is not None:
                _check_address(scope, self, address_of(args), verb)
        return original(self, *args)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = getattr(original, "__doc__", None)
    return method


# Any: a type's namespace holds values of mixed types (its methods among them).
def _type_dict() -> dict[str, Any] | None:
    """The C socket type's own dictionary (behind its read-only mappingproxy)."""
    referents = gc.get_referents(_socket.socket.__dict__)
    return referents[0] if len(referents) == 1 and isinstance(referents[0], dict) else None


def _type_modified() -> None:
    with contextlib.suppress(AttributeError, OSError):
        import ctypes

        ctypes.pythonapi.PyType_Modified(ctypes.py_object(_socket.socket))


def _owned(start: Callable[..., _R]) -> Callable[..., _R]:
    """A thread starter whose threads keep the scope of the function code that starts them."""

    def start_thread(function: Callable[..., object], *args: object, **kwargs: object) -> _R:
        flags = THREAD_FLAGS.__dict__
        scope = None if flags.get("internal") else (flags.get("owner") or ACTIVE_SLOT[0])
        if scope is None:
            return start(function, *args, **kwargs)

        def run(*run_args: object, **run_kwargs: object) -> object:
            THREAD_FLAGS.owner = scope
            return function(*run_args, **run_kwargs)

        return start(run, *args, **kwargs)

    start_thread.__wrapped__ = start  # type: ignore[attr-defined]
    return start_thread


def _apply() -> None:
    global _hook_added
    if not _hook_added:
        sys.addaudithook(_audit)
        _hook_added = True
    for module, name in _STARTERS:
        original = getattr(module, name)
        _saved[(module, name)] = original
        setattr(module, name, _owned(original))
    methods = _type_dict()
    if methods is not None:
        for name in _C_METHODS:
            _saved_methods[name] = methods[name]
            methods[name] = _wrap_c_method(name, methods[name])
        _type_modified()


def _remove() -> None:
    for (module, name), original in _saved.items():
        setattr(module, name, original)
    _saved.clear()
    methods = _type_dict()
    if methods is not None and _saved_methods:
        methods.update(_saved_methods)
        _saved_methods.clear()
        _type_modified()


# Guard from now on (refcounted), and stop: the last uninstall puts the thread starters
# back exactly.
_INSTALLATION = Installation("netguard", _apply, _remove, _lock)
install = _INSTALLATION.install
uninstall = _INSTALLATION.uninstall
installed = _INSTALLATION.installed
