"""What a real execution environment holds privately, kept per environment in module isolation.

On Lambda each environment is its own process: its working directory, umask, signal
handlers, recursion limit, ``sys.excepthook``, C-level environment (what subprocesses
and ``time.tzset`` see), time zone, warning filters and logging setup are its own. In module isolation
the environments share the test process, so each one's share of that state is
swapped in around its init and invocations and swapped out after: nothing function
code changes reaches the test or another environment.

The warm path must stay at microseconds, so nothing is read back from the kernel when
it cannot have changed: while module-isolated functions exist, :class:`Tracker`
wraps the few functions that change this state (``os.chdir``, ``os.umask``,
``signal.signal``, ``time.tzset``, ``logging.getLogger``, ``Logger`` writes) and
each swap touches only what differs between the two sides.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pytest_lambda_context.runtime.warnings_setup import WarningsShare

if TYPE_CHECKING:
    from types import FrameType, TracebackType
    from typing import TypeAlias

    from _typeshed import FileDescriptorLike, FileDescriptorOrPath

    # time.tzname, time.timezone, time.altzone, time.daylight: what tzset() sets.
    _Zone: TypeAlias = tuple[tuple[str, str], int, int, int]
    # What signal.signal takes and returns: a function, SIG_DFL/SIG_IGN, or None.
    _Handler: TypeAlias = Callable[[int, FrameType | None], object] | int | signal.Handlers | None
    _ExceptHook: TypeAlias = Callable[
        [type[BaseException], BaseException, TracebackType | None], object
    ]
    # A NULL-terminated char *[]: a C environment array.
    _CArray: TypeAlias = ctypes.Array[ctypes.c_char_p]
    # What logging's registry (Manager.loggerDict) holds by name.
    _Entry: TypeAlias = logging.Logger | logging.PlaceHolder
    # A logger's __dict__: its attributes, of mixed types, read and written by name.
    _Attributes: TypeAlias = dict[str, Any]

__all__ = ["TRACKER", "PrivateState", "Tracker"]

# What a fresh Python runtime starts with (Lambda's is a fresh Python process).
_DEFAULT_RECURSION_LIMIT = 1000
_root = logging.root
_manager = logging.Logger.manager
_set = object.__setattr__


def _environ_pointer() -> ctypes.c_void_p | None:
    """``char **environ`` of the C library, as a ctypes object (None where unknown)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.c_void_p.in_dll(ctypes.CDLL(None), "environ")
    except (OSError, ValueError, AttributeError):
        return None


def _c_array(data: dict[bytes, bytes]) -> _CArray:
    """A NULL-terminated ``char *[]`` of ``KEY=value`` strings (kept alive by the array)."""
    entries = [key + b"=" + value for key, value in data.items()]
    return (ctypes.c_char_p * (len(entries) + 1))(*entries, None)


def _zone() -> _Zone:
    return time.tzname, time.timezone, time.altzone, time.daylight


def _is_capture_handler(handler: logging.Handler) -> bool:
    # pytest's own handlers (caplog, the captured-log report, live logs) are the
    # test harness, not the test's logging setup: every environment logs to them too.
    return type(handler).__module__ == "_pytest.logging"


class Tracker:
    """Process-wide: knows the current state without system calls, by seeing each change.

    Installed while a module-isolated function exists (``hold``/``release``); the
    wrappers cost nothing measurable when no environment runs.
    """

    def __init__(self) -> None:
        self.users = 0
        self.active: PrivateState | None = None
        # The working directory, as a path (None: not known since the last chdir).
        self.cwd: str | None = None
        self.umask = 0o022
        # A ctypes.c_void_p, or None; typed Any because enter() and exit() read its value
        # as an int (environ is never NULL while Python runs) and exit() reads it only
        # after enter() found it set: invariants that mypy cannot follow.
        self.environ: Any = _environ_pointer()
        # (): not read yet.
        self.zone: _Zone | tuple[()] = ()
        # Descriptors of working directories, by path: fchdir is cheaper than chdir.
        self._cwd_fds: dict[str, int] = {}
        self.real_umask: Callable[[int], int] = os.umask
        self.real_fchdir: Callable[[int], None] = os.fchdir
        self.real_tzset: Callable[[], None] = time.tzset
        self.real_signal: Callable[[int, _Handler], _Handler] = signal.signal
        # Inside logging.getLogger: the loggers it makes are not the test's to borrow.
        self.creating = False
        # What each patched attribute was (_MISSING: not in the owner's own dict).
        self._real: dict[tuple[ModuleType | type, str], object] = {}

    # -- install ------------------------------------------------------------------
    def hold(self) -> Callable[[], None]:
        if self.users == 0:
            self._install()
        self.users += 1
        return self.release

    def release(self) -> None:
        self.users -= 1
        if self.users == 0:
            for (owner, name), original in self._real.items():
                if original is _MISSING:
                    delattr(owner, name)
                else:
                    setattr(owner, name, original)
            self._real.clear()
            for fd in self._cwd_fds.values():
                os.close(fd)
            self._cwd_fds.clear()
            _forget_arrays()

    def _patch(self, owner: ModuleType | type, name: str, wrapper: Callable[..., object]) -> None:
        self._real[(owner, name)] = owner.__dict__.get(name, _MISSING)
        setattr(owner, name, wrapper)

    def chdir(self, path: str) -> None:
        """Go to ``path`` (by a cached descriptor), not counted as a change."""
        fd = self._cwd_fds.get(path)
        try:
            if fd is None:
                fd = self._cwd_fds[path] = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            self.real_fchdir(fd)
        except OSError:
            return
        self.cwd = path

    def _install(self) -> None:
        self.cwd = None
        mask = os.umask(0o022)
        os.umask(mask)
        self.umask = mask
        self.zone = _zone()
        tracker = self
        chdir, fchdir, umask = os.chdir, os.fchdir, os.umask
        set_signal, tzset = signal.signal, time.tzset
        self.real_umask, self.real_tzset, self.real_signal = umask, tzset, set_signal
        self.real_fchdir = fchdir

        def tracked_chdir(path: FileDescriptorOrPath) -> None:
            chdir(path)
            tracker.cwd = None

        def tracked_fchdir(fd: FileDescriptorLike) -> None:
            fchdir(fd)
            tracker.cwd = None

        def tracked_umask(mask: int) -> int:
            previous = umask(mask)
            tracker.umask = mask
            return previous

        def tracked_signal(signum: int, handler: _Handler) -> _Handler:
            active = tracker.active
            if active is not None and signum not in active.outer_signals:
                active.outer_signals[signum] = signal.getsignal(signum)
            previous = set_signal(signum, handler)
            if active is not None:
                active.signals[signum] = handler
            return previous

        def tracked_tzset() -> None:
            tzset()
            tracker.zone = _zone()

        self._patch(os, "chdir", tracked_chdir)
        self._patch(os, "fchdir", tracked_fchdir)
        self._patch(os, "umask", tracked_umask)
        self._patch(signal, "signal", tracked_signal)
        self._patch(time, "tzset", tracked_tzset)
        self._install_logging()

    def _install_logging(self) -> None:
        tracker = self
        get_logger = logging.Manager.getLogger
        logger_class = logging.Logger

        def tracked_get_logger(manager: logging.Manager, name: str) -> logging.Logger:
            active = tracker.active
            if active is None or manager is not _manager:
                return get_logger(manager, name)
            registry = manager.loggerDict
            before = len(registry)
            existing = registry.get(name)
            if isinstance(existing, logging.PlaceHolder):
                # Creating it re-parents the test's loggers below it: theirs to keep.
                for child in list(existing.loggerMap):
                    active.borrow(child)
            tracker.creating = True
            try:
                logger = get_logger(manager, name)
            finally:
                tracker.creating = False
            if existing is not logger:
                active.created(name, logger, existing)
                if len(registry) > before + (existing is None):
                    for key in list(registry)[before:]:  # placeholders of new ancestors
                        if key != name:
                            active.created(key, registry[key], None)
            elif isinstance(logger, logger_class):
                active.borrow(logger)
            return logger

        def tracked_setattr(logger: logging.Logger, name: str, value: object) -> None:
            active = tracker.active
            if active is not None and not tracker.creating:
                active.borrow(logger)
            _set(logger, name, value)

        def borrowing(method: Callable[..., object]) -> Callable[..., object]:
            def wrapper(logger: logging.Logger, *args: object) -> object:
                active = tracker.active
                if active is not None:
                    active.borrow(logger)
                return method(logger, *args)

            return wrapper

        self._patch(logging.Manager, "getLogger", tracked_get_logger)
        self._patch(logger_class, "__setattr__", tracked_setattr)
        for name in ("addHandler", "removeHandler", "addFilter", "removeFilter"):
            self._patch(logger_class, name, borrowing(getattr(logger_class, name)))

    def current_cwd(self) -> str | None:
        if self.cwd is None:
            with contextlib.suppress(OSError):
                self.cwd = os.getcwd()
        return self.cwd


_MISSING = object()
TRACKER = Tracker()


class _LoggingShare:
    """An environment's logging: its root logger, its loggers, its ``logging.disable``."""

    __slots__ = ("borrowed", "capture", "created", "disable", "replaced", "root", "seen_outer")

    def __init__(self) -> None:
        fresh = dict(_root.__dict__)
        fresh.update(level=logging.WARNING, handlers=[], filters=[], disabled=False, _cache={})
        self.root: _Attributes = fresh
        self.disable = 0
        # Loggers (and placeholders) that this environment's code created, by name.
        self.created: dict[str, _Entry] = {}
        # What those names were in the registry before (None: absent).
        self.replaced: dict[str, _Entry | None] = {}
        # The test's loggers this environment configured: its own attributes for each.
        self.borrowed: dict[logging.Logger, _Attributes] = {}
        # pytest's capture handlers last added to this environment's root logger, and
        # the test's root handlers they were picked from.
        self.capture: list[logging.Handler] = []
        self.seen_outer: list[logging.Handler] = []


class _Outer:
    """What :meth:`PrivateState.enter` replaced (the test's, or a calling environment's),
    put back by :meth:`PrivateState.exit`. One per environment, reused at each phase."""

    __slots__ = (
        "active",
        "cwd",
        "disable",
        "entries",
        "environ",
        "excepthook",
        "levels_differ",
        "recursion_limit",
        "root",
        "umask",
    )

    def __init__(self) -> None:
        self.active: PrivateState | None = None
        self.cwd: str | None = None
        self.umask = 0
        self.recursion_limit = 0
        self.excepthook: _ExceptHook = sys.__excepthook__
        # The outer C environment array's address (0: no C environment swapped).
        self.environ = 0
        # The root logger's __dict__, the registry entries that the environment's own
        # loggers replaced, logging.disable's level, and whether the root levels differed.
        self.root: _Attributes = {}
        self.entries: dict[str, _Entry | None] | None = None
        self.disable = 0
        self.levels_differ = False


class PrivateState:
    """One environment's share of the process; ``enter``/``exit`` around each of its calls."""

    def __init__(self, cwd: str, environ_data: dict[bytes, bytes]) -> None:
        self.cwd: str | None = cwd
        self.umask = TRACKER.umask if TRACKER.users else _current_umask()
        self.recursion_limit = _DEFAULT_RECURSION_LIMIT
        self.excepthook: _ExceptHook = sys.__excepthook__
        self.signals: dict[int, _Handler] = {}
        self.outer_signals: dict[int, _Handler] = {}
        self._environ_data = environ_data
        self._c_environ: _CArray | None = None
        self._c_address = 0
        self.zone: _Zone | tuple[()] | None = None
        self.logging = _LoggingShare()
        self.warnings = WarningsShare()
        self._outer_borrowed: dict[logging.Logger, _Attributes] = {}
        # What enter() replaced, for exit() to put back.
        self._outer = _Outer()

    # -- logging registry, called by the tracker while this environment runs -------
    def created(self, name: str, logger: _Entry, previous: _Entry | None) -> None:
        share = self.logging
        if name not in share.created:
            share.replaced[name] = previous
        share.created[name] = logger

    def borrow(self, logger: logging.Logger) -> None:
        """Give this environment its own copy of a logger's setup, the test's kept aside."""
        share = self.logging
        if logger is _root or logger in share.borrowed:
            return
        outer = logger.__dict__
        name = outer.get("name")
        if name is None or _manager.loggerDict.get(name) is not logger:
            return  # not a registered logger (one being made, or a stray)
        if share.created.get(name) is logger:
            return  # its own already
        own = dict(outer)
        own.update(handlers=list(outer.get("handlers", ())), filters=list(outer.get("filters", ())))
        own["_cache"] = {}
        share.borrowed[logger] = own
        self._outer_borrowed[logger] = outer
        _set(logger, "__dict__", own)

    # -- the swap ---------------------------------------------------------------------
    # Written out flat, each step a comparison first: this runs twice per invocation.
    # exit() undoes enter()'s steps in the reverse order: the tracker's active state,
    # working directory, umask, recursion limit, excepthook, signal handlers, the C
    # environment (and with it the time zone), warnings' filters and display, logging.
    def enter(self) -> None:
        outer = self._outer
        tracker = TRACKER
        outer.active = tracker.active
        tracker.active = self
        outer_cwd = tracker.cwd
        if outer_cwd is None:
            outer_cwd = tracker.current_cwd()
        outer.cwd = outer_cwd
        if outer_cwd != self.cwd and self.cwd is not None:
            tracker.chdir(self.cwd)
        outer_umask = outer.umask = tracker.umask
        if outer_umask != self.umask:
            tracker.real_umask(self.umask)
            tracker.umask = self.umask
        outer_limit = outer.recursion_limit = sys.getrecursionlimit()
        if outer_limit != self.recursion_limit:
            _set_recursion_limit(self.recursion_limit)
        outer_hook = outer.excepthook = sys.excepthook
        if outer_hook is not self.excepthook:
            sys.excepthook = self.excepthook
        # (outer_signals is empty here: exit empties it.)
        if self.signals:
            self._enter_signals()
        pointer = tracker.environ
        # Where the outer C environment array is (0: no C environment swapped).
        outer_environ = 0
        if pointer is not None:
            outer_environ = pointer.value
            if outer_environ not in _ARRAYS:  # the C library's: copied, never handed back
                outer_environ = _copy_environ(outer_environ)
            if self._c_environ is None:
                self._c_environ = _keep(_c_array(self._environ_data))
                self._c_address = ctypes.addressof(self._c_environ)
            pointer.value = self._c_address
            if self.zone != tracker.zone:
                self._enter_zone()
        outer.environ = outer_environ
        self.warnings.enter()
        self._enter_logging(outer)

    def exit(self) -> None:
        outer = self._outer
        tracker = TRACKER
        self._exit_logging(outer)
        self.warnings.exit()
        outer_environ = outer.environ
        if outer_environ:
            pointer = tracker.environ
            if pointer.value != self._c_address:
                # Function code's putenv went to a copy the C library made (unsetenv
                # works in place): the next entry builds it afresh from os.environ.
                self._c_environ = None
            pointer.value = outer_environ
            if tracker.zone != _ZONES.get(outer_environ, tracker.zone):
                self._exit_zone()
        if self.outer_signals:
            self._exit_signals()
        hook = sys.excepthook
        outer_hook = outer.excepthook
        if hook is not outer_hook:
            self.excepthook = hook
            sys.excepthook = outer_hook
        limit = sys.getrecursionlimit()
        outer_limit = outer.recursion_limit
        if limit != outer_limit:
            self.recursion_limit = limit
            _set_recursion_limit(outer_limit)
        outer_umask = outer.umask
        if tracker.umask != outer_umask:
            self.umask = tracker.umask
            tracker.real_umask(outer_umask)
            tracker.umask = outer_umask
        cwd = tracker.cwd
        outer_cwd = outer.cwd
        if cwd != outer_cwd:
            self.cwd = cwd if cwd is not None else tracker.current_cwd()
            if outer_cwd is not None:
                tracker.chdir(outer_cwd)
        tracker.active = outer.active

    def _enter_signals(self) -> None:
        set_signal = TRACKER.real_signal
        for signum, handler in self.signals.items():
            try:
                self.outer_signals[signum] = signal.getsignal(signum)
                set_signal(signum, handler)
            except (ValueError, OSError, TypeError):  # not the main thread
                continue

    def _exit_signals(self) -> None:
        set_signal = TRACKER.real_signal
        for signum, handler in self.outer_signals.items():
            try:
                set_signal(signum, handler)
            except (ValueError, OSError, TypeError):
                continue
        self.outer_signals = {}

    def _enter_zone(self) -> None:
        # TZ=:UTC in effect at C level (localtime, strftime) for this environment.
        tracker = TRACKER
        tracker.real_tzset()
        tracker.zone = self.zone = _zone()

    def _exit_zone(self) -> None:
        tracker = TRACKER
        self.zone = tracker.zone
        tracker.real_tzset()
        tracker.zone = _zone()

    # -- logging ------------------------------------------------------------------------
    def _enter_logging(self, outer: _Outer) -> None:
        share = self.logging
        outer_root = outer.root = _root.__dict__
        outer_handlers = outer_root["handlers"]
        own_root = share.root
        if outer_handlers != share.seen_outer:
            share.seen_outer = list(outer_handlers)
            capture = [h for h in outer_handlers if _is_capture_handler(h)]
            if capture != share.capture:
                handlers = own_root["handlers"]
                handlers[:] = [*(h for h in handlers if h not in share.capture), *capture]
                share.capture = capture
        _set(_root, "__dict__", own_root)
        outer_entries: dict[str, _Entry | None] | None = None
        if share.created:
            registry = _manager.loggerDict
            outer_entries = {}
            for name, logger in share.created.items():
                outer_entries[name] = registry.get(name)
                registry[name] = logger
        outer.entries = outer_entries
        if share.borrowed:
            outer_borrowed = self._outer_borrowed = {}
            for logger, own in share.borrowed.items():
                outer_borrowed[logger] = logger.__dict__
                _set(logger, "__dict__", own)
        outer_disable = outer.disable = _manager._disable  # type: ignore[attr-defined]
        levels_differ = outer.levels_differ = outer_root["level"] != own_root["level"]
        if levels_differ or outer_disable != share.disable:
            _manager.disable = share.disable
            _manager._clear_cache()  # type: ignore[attr-defined]

    def _exit_logging(self, outer: _Outer) -> None:
        share = self.logging
        if self._outer_borrowed:
            for logger, borrowed_outer in self._outer_borrowed.items():
                share.borrowed[logger] = logger.__dict__
                _set(logger, "__dict__", borrowed_outer)
            self._outer_borrowed = {}
        if share.created:
            registry = _manager.loggerDict
            entries = outer.entries or {}
            for name in share.created:
                previous = entries.get(name, share.replaced.get(name))
                if previous is None:
                    registry.pop(name, None)
                else:
                    registry[name] = previous
        outer_root = outer.root
        own_root = share.root = _root.__dict__
        _set(_root, "__dict__", outer_root)
        disable = _manager._disable  # type: ignore[attr-defined]
        outer_disable = outer.disable
        if (
            outer.levels_differ
            or disable != outer_disable
            or own_root["level"] != outer_root["level"]
        ):
            share.disable = disable
            _manager.disable = outer_disable
            _manager._clear_cache()  # type: ignore[attr-defined]

    def release(self) -> None:
        """The environment is gone: drop what it held (its C array, its loggers)."""
        self._c_environ = None
        self._c_address = 0
        self.logging = _LoggingShare()
        self._outer = _Outer()


def _copy_environ(current: int) -> int:
    """The C environment at ``current`` as an array of ours (its address), to be put back
    after a call.

    Never hand the C library's own array back to it later: a setenv made meanwhile may
    have reallocated (freed) it.
    """
    entries = []
    strings = ctypes.cast(current, ctypes.POINTER(ctypes.c_char_p))
    index = 0
    while strings[index] is not None:
        entries.append(strings[index])
        index += 1
    array = _keep((ctypes.c_char_p * (len(entries) + 1))(*entries, None))
    address = ctypes.addressof(array)
    _ZONES[address] = TRACKER.zone
    return address


def _keep(array: _CArray) -> _CArray:
    # Every array ever handed to the C library stays alive while the tracker is held:
    # a thread, or C code, may still read one after its environment moved on.
    _ARRAYS[ctypes.addressof(array)] = array
    return array


def _forget_arrays() -> None:
    """The tracker is released: the C library points at a fresh copy of its environment,
    the only array kept.

    The array it points at now may be its own (a setenv since our last swap reallocated
    it) and still point at strings of our arrays: freeing those would leave the process
    an environment of freed memory, which every later subprocess inherits (found as
    children whose os.environ held garbage names). A copy has strings of its own.
    """
    pointer = TRACKER.environ
    if pointer is None:
        return
    if not pointer.value:  # clearenv(): no environment at all, nothing of ours in use
        _ARRAYS.clear()
        _ZONES.clear()
        return
    fresh = _copy_environ(pointer.value)
    array = _ARRAYS[fresh]
    pointer.value = fresh
    _ARRAYS.clear()
    _ZONES.clear()
    _ARRAYS[fresh] = array
    _ZONES[fresh] = TRACKER.zone


# The C environment arrays this module made, by address (see _keep), and the time zone
# that goes with each copy of the test's (by address too).
_ARRAYS: dict[int, _CArray] = {}
_ZONES: dict[int, _Zone | tuple[()]] = {}


def _set_recursion_limit(limit: int) -> None:
    # Lower than the stack is deep already: leave it (Python refuses it anyway).
    with contextlib.suppress(RecursionError, ValueError):
        sys.setrecursionlimit(limit)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
