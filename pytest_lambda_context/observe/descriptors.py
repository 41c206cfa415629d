"""Raw descriptors that function code opens with ``os`` calls, released when its
environment ends.

On Lambda the end of an environment closes every descriptor of its process. In module
isolation the environments share the test's process, and a descriptor from ``os.open``
or ``os.pipe`` belongs to no Python object: nothing closes it, and a lock or a pipe
outlives its environment. While installed, the ``os`` calls that return new
descriptors note them in the active scope, with the file they name.

At shutdown :func:`release` points each one that still names the same file at
``/dev/null`` (``dup2``) rather than closing it: the file, pipe or lock is released,
while the number stays taken, so that a Python object that still owns it (``os.fdopen``
of it, kept alive by a thread) can never close a number the test has reused since.
``os.close`` and ``os.fdopen`` of a noted descriptor drop it from the note.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar, cast

from pytest_lambda_context.observe.scope import ACTIVE_SLOT, THREAD_FLAGS, Scope

__all__ = ["install", "installed", "release", "uninstall"]

# The calls that return new descriptors (one, or a pair), where this platform has them.
_OPENING = ("open", "dup", "memfd_create", "eventfd")
_OPENING_PAIR = ("pipe", "pipe2", "openpty")

# The plugin's own calls (a cached working-directory descriptor) are not function code's.
_OWN_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

_lock = threading.Lock()
_refcount = 0
_P = ParamSpec("_P")
_R = TypeVar("_R")
# The os functions replaced, by name, to put back.
_saved: dict[str, Callable[..., object]] = {}


def _note(fd: int) -> None:
    scope = ACTIVE_SLOT[0]
    if scope is None or THREAD_FLAGS.__dict__.get("internal"):
        return
    # _note's caller is a wrapper below; its caller made the call.
    if sys._getframe(2).f_code.co_filename.startswith(_OWN_PACKAGE):
        return
    with contextlib.suppress(OSError):
        stat = os.fstat(fd)
        scope.descriptors[fd] = (stat.st_dev, stat.st_ino)


def _forget(fd: object) -> None:
    scope = ACTIVE_SLOT[0]
    if scope is not None and isinstance(fd, int):
        scope.descriptors.pop(fd, None)


def _opening(original: Callable[_P, int]) -> Callable[_P, int]:
    def opening(*args: _P.args, **kwargs: _P.kwargs) -> int:
        fd = original(*args, **kwargs)
        if ACTIVE_SLOT[0] is not None:
            _note(fd)
        return fd

    opening.__wrapped__ = original  # type: ignore[attr-defined]
    return opening


def _opening_pair(original: Callable[_P, tuple[int, int]]) -> Callable[_P, tuple[int, int]]:
    def opening_pair(*args: _P.args, **kwargs: _P.kwargs) -> tuple[int, int]:
        pair = original(*args, **kwargs)
        if ACTIVE_SLOT[0] is not None:
            _note(pair[0])
            _note(pair[1])
        return pair

    opening_pair.__wrapped__ = original  # type: ignore[attr-defined]
    return opening_pair


def _dup2(original: Callable[..., int]) -> Callable[..., int]:
    def dup2(fd: int, fd2: int, inheritable: bool = True) -> int:
        result = original(fd, fd2, inheritable)
        if ACTIVE_SLOT[0] is not None:
            _note(fd2)
        return result

    dup2.__wrapped__ = original  # type: ignore[attr-defined]
    return dup2


def _dropping(original: Callable[..., _R]) -> Callable[..., _R]:
    # os.close: closed by its owner; os.fdopen: a file object owns it now.
    def dropping(fd: object, *args: object, **kwargs: object) -> _R:
        if ACTIVE_SLOT[0] is not None:
            _forget(fd)
        return original(fd, *args, **kwargs)

    dropping.__wrapped__ = original  # type: ignore[attr-defined]
    return dropping


def _replacements() -> dict[str, Callable[..., object]]:
    found: dict[str, Callable[..., object]] = {}
    for name in _OPENING:
        if hasattr(os, name):
            found[name] = _opening(getattr(os, name))
    for name in _OPENING_PAIR:
        if hasattr(os, name):
            found[name] = _opening_pair(getattr(os, name))
    found["dup2"] = _dup2(os.dup2)
    found["close"] = _dropping(os.close)
    found["fdopen"] = _dropping(os.fdopen)
    return found


def install() -> None:
    """Start noting (refcounted: each install needs its uninstall)."""
    global _refcount
    with _lock:
        _refcount += 1
        if _refcount > 1:
            return
        for name, replacement in _replacements().items():
            _saved[name] = getattr(os, name)
            setattr(os, name, replacement)


def uninstall() -> None:
    """Undo one :func:`install`; the last one puts the ``os`` functions back."""
    global _refcount
    with _lock:
        if _refcount == 0:
            raise RuntimeError("descriptors.uninstall() called more often than install()")
        _refcount -= 1
        if _refcount:
            return
        for name, original in _saved.items():
            setattr(os, name, original)
        _saved.clear()


def installed() -> bool:
    return _refcount > 0


def release(scope: Scope) -> int:
    """Release the descriptors noted in ``scope`` that still name the file they named
    when opened; how many."""
    noted = scope.descriptors
    if not noted:
        return 0
    # The os functions themselves, not the noting wrappers.
    real_open = cast("Callable[..., int]", _saved.get("open", os.open))
    real_dup2 = _saved.get("dup2", os.dup2)
    real_close = _saved.get("close", os.close)
    released = 0
    null = real_open(os.devnull, os.O_RDWR)
    try:
        for fd, identity in noted.items():
            try:
                stat = os.fstat(fd)
            except OSError:
                continue  # closed already
            if (stat.st_dev, stat.st_ino) == identity:
                real_dup2(null, fd, inheritable=False)
                released += 1
    finally:
        real_close(null)
        noted.clear()
    return released
