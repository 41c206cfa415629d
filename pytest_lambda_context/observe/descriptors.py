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
``os.close`` and ``os.fdopen`` of a noted descriptor drop it from the note. Noted are
only calls on the thread running function code, not from the plugin's own frames, and
never the standard streams; ``dup2`` is not wrapped (its target is often a number the
caller does not own, as when redirecting stdout and back).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import ParamSpec, TypeVar

from pytest_lambda_context.observe.installation import Installation
from pytest_lambda_context.observe.scope import ACTIVE_SLOT, THREAD_FLAGS, Scope

__all__ = ["install", "installed", "release", "uninstall"]

# The calls that return new descriptors (one, or a pair), where this platform has them.
_OPENING = ("open", "dup", "memfd_create", "eventfd")
_OPENING_PAIR = ("pipe", "pipe2", "openpty")

# The plugin's own calls (a cached working-directory descriptor) are not function code's.
_OWN_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_STDLIB = os.path.dirname(os.__file__) + os.sep

_lock = threading.Lock()
# Who noted each descriptor still noted (to forget it whoever closes it).
_NOTED: dict[int, Scope] = {}
# /dev/null, open while installed: what released descriptors are pointed at.
_null = [-1]
_P = ParamSpec("_P")
_R = TypeVar("_R")
# The os functions replaced, by name, to put back.
_saved: dict[str, Callable[..., object]] = {}


def _note(fd: int) -> None:
    scope = ACTIVE_SLOT[0]
    if (
        scope is None
        or fd <= 2  # the standard streams are never function code's to keep
        or scope.thread != threading.get_ident()  # the test's own threads, say
        or THREAD_FLAGS.__dict__.get("internal")
    ):
        return
    # Who called: the first frame above the standard library's (tempfile, subprocess)
    # from the wrapper's caller on. The plugin's own calls are not function code's.
    frame: FrameType | None = sys._getframe(2)
    for _ in range(8):
        if frame is None or not frame.f_code.co_filename.startswith(_STDLIB):
            break
        frame = frame.f_back
    if frame is not None and frame.f_code.co_filename.startswith(_OWN_PACKAGE):
        return
    with contextlib.suppress(OSError):
        stat = os.fstat(fd)
        scope.descriptors[fd] = (stat.st_dev, stat.st_ino)
        _NOTED[fd] = scope


def _forget(fd: object) -> None:
    # Closed by whoever: forgotten by the scope that noted it, active or not.
    if isinstance(fd, int):
        scope = _NOTED.pop(fd, None)
        if scope is not None:
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


def _dropping(original: Callable[..., _R]) -> Callable[..., _R]:
    # os.close: closed by its owner; os.fdopen: a file object owns it now.
    def dropping(fd: object, *args: object, **kwargs: object) -> _R:
        if _NOTED:
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
    # Not dup2: its target is a number the caller chose, often one it does not own
    # (redirecting stdout and back).
    found["close"] = _dropping(os.close)
    found["fdopen"] = _dropping(os.fdopen)
    return found


def _apply() -> None:
    # Opened now, not at release: by then function code may have used up the
    # process's descriptors, the very leak this module puts right.
    _null[0] = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    for name, replacement in _replacements().items():
        _saved[name] = getattr(os, name)
        setattr(os, name, replacement)


def _remove() -> None:
    for name, original in _saved.items():
        setattr(os, name, original)
    _saved.clear()
    if _null[0] >= 0:
        os.close(_null[0])
        _null[0] = -1
    _NOTED.clear()


# Start noting (refcounted), and stop: the last uninstall puts the os functions back.
_INSTALLATION = Installation("descriptors", _apply, _remove, _lock)
install = _INSTALLATION.install
uninstall = _INSTALLATION.uninstall
installed = _INSTALLATION.installed


def release(scope: Scope) -> int:
    """Release the descriptors noted in ``scope`` that still name the file they named
    when opened; how many."""
    noted = scope.descriptors
    if not noted:
        return 0
    released = 0
    null = _null[0]
    try:
        for fd, identity in noted.items():
            if _NOTED.get(fd) is scope:
                del _NOTED[fd]
            try:
                stat = os.fstat(fd)
            except OSError:
                continue  # closed already
            if null >= 0 and (stat.st_dev, stat.st_ino) == identity:
                os.dup2(null, fd, inheritable=False)
                released += 1
    finally:
        noted.clear()
    return released
