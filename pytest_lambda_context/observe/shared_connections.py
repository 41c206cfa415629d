"""A connection opened by one environment and used by another (module isolation).

On Lambda a connection belongs to the environment (the process) that opened it. In
module isolation the environments share the test process, so a client memoized in a
module that is not imported afresh per environment (a shared package outside the code
root, as a layer would be) is handed to every environment: the second one sends on the
first one's connection, and per-environment connection counts come out wrong.

While module-isolated functions exist, the socket monitor notes which environment
connected each socket (:func:`own`; a TLS socket made over it is its too), and
``send``/``sendall`` of Python sockets, plain or TLS, check that the environment
running now is that one. C drivers (libpq) send below Python: a proxy the connection
goes through checks it instead (:func:`note_use`). A use by another is noted in its scope
(``scope.shared``) and the environment warns once per function after the call.
"""

from __future__ import annotations

import gc
import socket
import sys
import weakref
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from pytest_lambda_context.observe.installation import Installation
from pytest_lambda_context.observe.scope import ACTIVE_SLOT, THREAD_FLAGS, Scope

if TYPE_CHECKING:  # types only: ssl is imported where it is used (it may be missing)
    import ssl
    from collections.abc import Callable
    from typing import Literal, TypedDict

    _Key = Literal["send", "sendall", "tls.send", "tls.sendall", "tls.wrap_socket"]
    # The wrapped originals by key; their arguments are passed through untouched.
    _Originals = TypedDict(
        "_Originals",
        {
            "send": Callable[..., int],
            "sendall": Callable[..., None],
            "tls.send": Callable[..., int],
            "tls.sendall": Callable[..., None],
            "tls.wrap_socket": Callable[..., ssl.SSLSocket],
        },
        total=False,
    )

__all__ = [
    "SharedConnection",
    "SharedConnectionWarning",
    "install",
    "message_for",
    "note_use",
    "own",
    "uninstall",
]


class SharedConnectionWarning(UserWarning):
    """Function code in module isolation sent on a connection that another environment
    opened (a client kept in a module shared by all environments)."""


@dataclass(frozen=True)
class SharedConnection:
    """One use of another environment's connection."""

    opened_by: str  # "function (env-1)"
    used_by: str
    peer: str
    holder: str | None  # the module that keeps the client, when found


# The scope that connected each socket of function code (weak: sockets come and go).
_OWNERS: weakref.WeakKeyDictionary[socket.socket, Scope] = weakref.WeakKeyDictionary()
# What socket.socket's own dictionary held for each wrapped name (_MISSING: nothing).
_original: _Originals = {}
_saved: dict[str, object] = {}
_MISSING = object()


def own(sock: socket.socket, scope: Scope) -> None:
    """``sock`` was connected by function code in ``scope``."""
    if _INSTALLATION.users:
        _OWNERS[sock] = scope


def _same_environment(one: Scope, other: Scope) -> bool:
    return one is other or (
        one.environment_id == other.environment_id and one.function_name == other.function_name
    )


def _check(sock: socket.socket) -> None:
    scope = ACTIVE_SLOT[0]
    if scope is None or THREAD_FLAGS.__dict__.get("internal"):
        return
    owner = _OWNERS.get(sock)
    if owner is None or _same_environment(owner, scope):
        return
    shared = scope.shared
    if len(shared) >= 3:
        return
    try:
        peer = "{}:{}".format(*sock.getpeername()[:2])
    except (OSError, TypeError, IndexError):
        peer = "?"
    shared.append(_use(owner, scope, peer, _holder(sock, scope.code_root)))
    # One note per socket is enough: it is the same environment's from now on.
    _OWNERS[sock] = scope


def note_use(owner: Scope, scope: Scope, peer: str) -> bool:
    """A proxy relayed what ``scope``'s code sent on a connection that ``owner``'s code
    opened (C code's too, which sends below Python): noted in ``scope`` when that is
    another environment's. True when noted."""
    if _same_environment(owner, scope):
        return False
    if len(scope.shared) < 3:
        # What holds a C driver's connection is not a Python socket to search from.
        scope.shared.append(_use(owner, scope, peer, None))
    return True


def _use(owner: Scope, scope: Scope, peer: str, holder: str | None) -> SharedConnection:
    return SharedConnection(
        f"{owner.function_name} ({owner.environment_id})",
        f"{scope.function_name} ({scope.environment_id})",
        peer,
        holder,
    )


def _send(sock: socket.socket, *args: object) -> int:
    if ACTIVE_SLOT[0] is not None:
        _check(sock)
    return _original["send"](sock, *args)


def _sendall(sock: socket.socket, *args: object) -> None:
    if ACTIVE_SLOT[0] is not None:
        _check(sock)
    return _original["sendall"](sock, *args)


def _holder(sock: socket.socket, code_root: str) -> str | None:
    """The module that keeps ``sock`` reachable (through its client), outside the
    function's code: searched a few references deep, only when a warning is due."""
    modules: dict[int, str] = {}
    for module_name, module in list(sys.modules.items()):
        if isinstance(module, ModuleType):
            modules[id(vars(module))] = module_name
    seen = {id(sock)}
    level: list[object] = [sock]
    for _ in range(8):
        following: list[object] = []
        for item in level:
            for referrer in gc.get_referrers(item):
                if referrer is level or referrer is following or id(referrer) in seen:
                    continue
                seen.add(id(referrer))
                name = modules.get(id(referrer))
                if name is not None:
                    path = getattr(sys.modules.get(name), "__file__", None) or ""
                    if not path.startswith(code_root):
                        return name
                    continue
                if isinstance(referrer, (dict, list, tuple, set)) or hasattr(referrer, "__dict__"):
                    following.append(referrer)
        level = following[:200]
        if not level:
            break
    return None


def message_for(uses: list[SharedConnection]) -> str:
    first = uses[0]
    where = f" kept in module {first.holder!r}" if first.holder else ""
    return (
        f"function code of {first.used_by} sent on a connection to "
        f"{first.peer} that {first.opened_by} opened: a client{where} is shared by every "
        "module-isolated environment, where on Lambda each environment (a process of its "
        "own) opens its own. Connection counts per environment are wrong while it is. "
        "Remedies: create the client in the function's own code (under code_root, "
        "imported afresh per environment), name its package in fresh_packages, or use "
        "isolation='process'."
    )


def _tls_send(sock: ssl.SSLSocket, *args: object, **kwargs: object) -> int:
    if ACTIVE_SLOT[0] is not None:
        _check(sock)
    return _original["tls.send"](sock, *args, **kwargs)


def _tls_sendall(sock: ssl.SSLSocket, *args: object, **kwargs: object) -> None:
    if ACTIVE_SLOT[0] is not None:
        _check(sock)
    return _original["tls.sendall"](sock, *args, **kwargs)


def _wrap_socket(
    context: ssl.SSLContext, sock: socket.socket, *args: object, **kwargs: object
) -> ssl.SSLSocket:
    # TLS over a connected socket is a new socket object on the same connection (the
    # plain one is detached): it belongs to whoever connected the plain one, and is
    # closed with that environment as the plain one would have been.
    wrapped = _original["tls.wrap_socket"](context, sock, *args, **kwargs)
    owner = _OWNERS.get(sock)
    if owner is not None:
        _OWNERS[wrapped] = owner
        owner.sockets.append(weakref.ref(wrapped))
    return wrapped


def _patches() -> list[tuple[type, str, _Key, object]]:
    """(class, attribute, key, wrapper): plain sockets' sends, and TLS sockets' (their
    class overrides send and sendall) with the wrapping that makes one, where this
    Python has ssl."""
    patches: list[tuple[type, str, _Key, object]] = [
        (socket.socket, "send", "send", _send),
        (socket.socket, "sendall", "sendall", _sendall),
    ]
    try:
        import ssl
    except ImportError:  # a Python built without OpenSSL
        return patches
    return [
        *patches,
        (ssl.SSLSocket, "send", "tls.send", _tls_send),
        (ssl.SSLSocket, "sendall", "tls.sendall", _tls_sendall),
        (ssl.SSLContext, "wrap_socket", "tls.wrap_socket", _wrap_socket),
    ]


def _apply() -> None:
    for cls, name, key, wrapper in _patches():
        _saved[key] = cls.__dict__.get(name, _MISSING)
        _original[key] = getattr(cls, name)
        setattr(cls, name, wrapper)


def _remove() -> None:
    for cls, name, key, wrapper in _patches():
        if cls.__dict__.get(name) is wrapper:
            previous = _saved[key]
            if previous is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, previous)
        _original.pop(key, None)  # a TypedDict has no clear()
    _saved.clear()
    _OWNERS.clear()


# Watch sends (refcounted), and stop: the last uninstall puts back what is still ours.
_INSTALLATION = Installation("shared_connections", _apply, _remove)
install = _INSTALLATION.install
uninstall = _INSTALLATION.uninstall
