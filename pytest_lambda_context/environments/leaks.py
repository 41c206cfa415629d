"""Process-wide state that module isolation does not swap per environment.

On Lambda each environment is its own process; in module isolation the environments
share the test process. The state swapped around every phase (cheap to swap, or
changed often) is in :mod:`.private_state` and :mod:`.module`. For the rest, swapping
on the warm path would cost more than it is worth: a :class:`Snapshot` of it is taken
when the first module-isolated environment starts its init (:class:`LeakWatch`) and
compared when the last one alive shuts down. What changed meanwhile is put back then,
and named in an :class:`IsolationLeakWarning` (what, which functions, the remedy);
what cannot be put back is named as such.

Each :class:`Piece` reads one item and puts it back; reading all of them costs a few
microseconds, paid once per cold start and once per shutdown, never per invocation.
"""

from __future__ import annotations

import builtins
import gc
import os
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FunctionType, ModuleType
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, cast

from pytest_lambda_context.observe.scope import ACTIVE_SLOT

if TYPE_CHECKING:
    from typing import TypeAlias

    from _typeshed import ProfileFunction, TraceFunction

    # The decimal context's fields: prec, rounding, Emin, Emax, capitals, clamp, traps.
    _DecimalFields: TypeAlias = tuple[
        int, str, int, int, int, int, dict[type[ArithmeticError], bool]
    ]
    # sys.gettrace(), sys.getprofile() and threading's for new threads.
    _Tracing: TypeAlias = tuple[
        TraceFunction | None, ProfileFunction | None, TraceFunction | None, ProfileFunction | None
    ]
    # sys.unraisablehook, sys.displayhook and sys.breakpointhook (each its own signature).
    _Hook: TypeAlias = Callable[..., object]
    # What a library's patched functions live in: a module or a class.
    _Owner: TypeAlias = ModuleType | type

_T = TypeVar("_T")
_P = ParamSpec("_P")
_R = TypeVar("_R")

try:
    import resource
except ImportError:  # not POSIX
    resource = None  # type: ignore[assignment]

__all__ = [
    "INSTALLED_FOLDERS",
    "LEAK_WATCH",
    "PIECES",
    "PLUGIN_FOLDER",
    "IsolationLeakWarning",
    "Leak",
    "LeakWatch",
    "PatchWatch",
    "PatchableState",
    "Piece",
    "Snapshot",
    "leak_message",
    "wrapped_original",
]


class IsolationLeakWarning(UserWarning):
    """Function code in module isolation changed process-wide state that an environment
    does not own there (the test and the other environments saw it). Named with what
    changed and whether it was put back when the environment shut down."""


@dataclass(frozen=True)
class Piece(Generic[_T]):
    """One item of process-wide state: how to read it and how to put it back.

    ``put`` is None where it cannot be put back (the warning says so). ``quiet``: a
    change is put back without a warning (ordinary use changes it, as drawing a random
    number changes ``random``'s state).
    """

    name: str
    read: Callable[[], _T]
    put: Callable[[_T], None] | None
    quiet: bool = False


@dataclass(frozen=True)
class Leak:
    """What function code changed, and whether it was put back."""

    what: str
    put_back: bool


_MISSING = object()


def _loaded(name: str) -> ModuleType | None:
    # Never import a module to read its state: unloaded, it was not changed.
    return sys.modules.get(name)


def _read_decimal() -> _DecimalFields | None:
    decimal = _loaded("decimal")
    if decimal is None:
        return None
    context = decimal.getcontext()
    # The context is mutated in place (getcontext().prec = 5): its fields are the state
    # (not its flags, which ordinary arithmetic sets).
    return (
        context.prec,
        context.rounding,
        context.Emin,
        context.Emax,
        context.capitals,
        context.clamp,
        dict(context.traps),
    )


def _put_decimal(saved: _DecimalFields | None) -> None:
    decimal = _loaded("decimal")
    if decimal is None or saved is None:
        return
    prec, rounding, emin, emax, capitals, clamp, traps = saved
    decimal.setcontext(
        decimal.Context(
            prec=prec,
            rounding=rounding,
            Emin=emin,
            Emax=emax,
            capitals=capitals,
            clamp=clamp,
            traps=[signal for signal, on in traps.items() if on],
        )
    )


def _read_locale() -> str | None:
    locale = _loaded("locale")
    if locale is None:
        return None
    try:
        # (Found in sys.modules, the module is untyped: setlocale returns the name.)
        current: str = locale.setlocale(locale.LC_ALL, None)
    except (ValueError, OSError):
        return None
    return current


def _put_locale(saved: str | None) -> None:
    locale = _loaded("locale")
    if locale is not None and saved is not None:
        locale.setlocale(locale.LC_ALL, saved)


def _read_gc() -> tuple[bool, tuple[int, int, int]]:
    return gc.isenabled(), gc.get_threshold()


def _put_gc(saved: tuple[bool, tuple[int, int, int]]) -> None:
    enabled, threshold = saved
    if enabled:
        gc.enable()
    else:
        gc.disable()
    gc.set_threshold(*threshold)


def _read_faulthandler() -> bool | None:
    faulthandler = _loaded("faulthandler")
    return None if faulthandler is None else faulthandler.is_enabled()


def _read_trace() -> _Tracing:
    get_thread_trace = getattr(threading, "gettrace", lambda: None)
    get_thread_profile = getattr(threading, "getprofile", lambda: None)
    return sys.gettrace(), sys.getprofile(), get_thread_trace(), get_thread_profile()


def _put_trace(saved: _Tracing) -> None:
    trace, profile, thread_trace, thread_profile = saved
    sys.settrace(trace)
    sys.setprofile(profile)
    threading.settrace(thread_trace)
    threading.setprofile(thread_profile)


def _read_nofile() -> tuple[int, int] | None:
    if resource is None:
        return None
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _put_nofile(saved: tuple[int, int] | None) -> None:
    if resource is not None and saved is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, saved)


def _read_max_str_digits() -> int | None:
    get = getattr(sys, "get_int_max_str_digits", None)
    return None if get is None else get()


def _put_max_str_digits(saved: int | None) -> None:
    if saved is not None:
        sys.set_int_max_str_digits(saved)


class _PytestHook:
    """A hook pytest installed. pytest 7 puts its own sys.unraisablehook in place for
    each phase of each test (setup, call, teardown): one phase's is not another's
    object, but swapping one for the other is pytest's doing, not function code's."""

    __slots__ = ("hook",)

    def __init__(self, hook: _Hook) -> None:
        self.hook = hook

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _PytestHook)

    __hash__ = None  # type: ignore[assignment]


def _pytests(hook: object) -> bool:
    module = getattr(getattr(hook, "func", hook), "__module__", None) or ""
    return module.startswith("_pytest.")


def _read_hooks() -> tuple[_Hook | _PytestHook, ...]:
    return tuple(
        _PytestHook(hook) if _pytests(hook) else hook
        for hook in (sys.unraisablehook, sys.displayhook, sys.breakpointhook)
    )


def _put_hooks(saved: tuple[_Hook | _PytestHook, ...]) -> None:
    def chosen(then: _Hook | _PytestHook, current: _Hook | _PytestHook) -> _Hook:
        if not isinstance(then, _PytestHook):
            return then
        # pytest's then and now: now's stays, it is the current phase's.
        return current.hook if isinstance(current, _PytestHook) else then.hook

    sys.unraisablehook, sys.displayhook, sys.breakpointhook = (
        chosen(then, current) for then, current in zip(saved, _read_hooks(), strict=True)
    )


def _read_builtins() -> dict[str, object]:
    return dict(builtins.__dict__)


# Piece[Any]: each piece's saved value has a type of its own.
PIECES: tuple[Piece[Any], ...] = (
    Piece("socket.setdefaulttimeout()", socket.getdefaulttimeout, socket.setdefaulttimeout),
    Piece("the decimal context (decimal.getcontext())", _read_decimal, _put_decimal),
    Piece("the locale (locale.setlocale())", _read_locale, _put_locale),
    Piece("the garbage collector (gc.disable(), gc.set_threshold())", _read_gc, _put_gc),
    # faulthandler writes to a descriptor pytest chose: not ours to re-enable.
    Piece("faulthandler (faulthandler.disable())", _read_faulthandler, None),
    Piece(
        "trace and profile functions (sys.settrace(), sys.setprofile())", _read_trace, _put_trace
    ),
    Piece("RLIMIT_NOFILE (resource.setrlimit())", _read_nofile, _put_nofile),
    Piece(
        "the thread switch interval (sys.setswitchinterval())",
        sys.getswitchinterval,
        sys.setswitchinterval,
    ),
    Piece(
        "int max str digits (sys.set_int_max_str_digits())",
        _read_max_str_digits,
        _put_max_str_digits,
    ),
    Piece("sys.unraisablehook, sys.displayhook or sys.breakpointhook", _read_hooks, _put_hooks),
)


class _RandomSeeds:
    """``random.seed``/``random.setstate`` by function code: the state before the first
    one is put back (quietly: drawing numbers changes it too, but only seeding makes
    the test's sequence depend on function code). Reading the whole state at every
    cold start would cost more than the rest of the snapshot together."""

    def __init__(self) -> None:
        # random.getstate()'s value, opaque: only handed back to random.setstate().
        self.saved: tuple[object, ...] | None = None
        self.module: ModuleType | None = None
        self.originals: dict[str, Callable[..., object]] = {}

    def watch(self) -> None:
        random = _loaded("random")
        if random is None:
            return
        self.module = random
        self.saved = None
        for name in ("seed", "setstate"):
            original = self.originals[name] = getattr(random, name)
            setattr(random, name, self._wrap(original))

    def _wrap(self, original: Callable[_P, _R]) -> Callable[_P, _R]:
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            if self.saved is None and ACTIVE_SLOT[0] is not None and self.module is not None:
                self.saved = self.module.getstate()
            return original(*args, **kwargs)

        wrapper.__wrapped__ = original  # type: ignore[attr-defined]
        return wrapper

    def restore(self) -> None:
        random = self.module
        if random is None:
            return
        for name, original in self.originals.items():
            if getattr(getattr(random, name), "__wrapped__", None) is original:
                setattr(random, name, original)
        self.originals.clear()
        if self.saved is not None:
            random.setstate(self.saved)
            self.saved = None
        self.module = None


class Snapshot:
    """The process-wide state before function code ran; :meth:`restore` puts back what
    changed since and says what it was."""

    __slots__ = ("builtins", "modules", "random", "values")

    def __init__(self, modules: Mapping[str, ModuleType | None]) -> None:
        self.values = [piece.read() for piece in PIECES]
        self.random = _RandomSeeds()
        self.random.watch()
        self.builtins = _read_builtins()
        # sys.modules as it was (the function's own modules are left out at restore).
        self.modules = dict(modules)

    def restore(self) -> list[Leak]:
        """Put back what differs from the snapshot (taken, and restored, while no
        environment is swapped in: sys.modules then holds the test's modules only)."""
        leaks: list[Leak] = []
        for piece, saved in zip(PIECES, self.values, strict=True):
            try:
                now = piece.read()
            except Exception:  # unreadable now: nothing to compare
                continue
            if now == saved:
                continue
            put_back = False
            if piece.put is not None:
                try:
                    piece.put(saved)
                    put_back = True
                except (ValueError, OSError, TypeError):  # a hard limit lowered, say
                    put_back = False
            if not (piece.quiet and put_back):
                leaks.append(Leak(piece.name, put_back))
        self.random.restore()
        leaks.extend(self._restore_builtins())
        leaks.extend(self._restore_modules())
        return leaks

    def _restore_builtins(self) -> list[Leak]:
        namespace = builtins.__dict__
        saved = self.builtins
        if len(namespace) == len(saved) and saved.items() <= namespace.items():
            return []  # (C speed: the common case)
        changed = [
            name for name, value in saved.items() if namespace.get(name, _MISSING) is not value
        ]
        added = [name for name in namespace if name not in saved]
        for name in changed:
            namespace[name] = saved[name]
        for name in added:
            del namespace[name]
        return [
            Leak(f"builtins.{name} ({'added' if name in added else 'replaced or deleted'})", True)
            for name in sorted([*changed, *added])
        ]

    def _restore_modules(self) -> list[Leak]:
        modules = sys.modules
        leaks: list[Leak] = []
        if self.modules.items() <= modules.items():
            return leaks  # nothing removed or replaced (C speed: the common case)
        for name, module in self.modules.items():
            now = modules.get(name, _MISSING)
            # Only entries blocked (None) or removed: a module imported anew under the
            # same name may be the test's own doing (importlib.reload keeps the object).
            if now is module or module is None or (now is not None and now is not _MISSING):
                continue
            modules[name] = module
            state = "set to None" if now is None else "removed"
            leaks.append(Leak(f"sys.modules[{name!r}] ({state})", True))
        return leaks


# Where tracing and APM libraries patch (X-Ray's patch_all, Datadog, OpenTelemetry's
# instrumentations): (module, class, or None for the module's own functions). Only
# these are compared, and only around an init phase (where patch_all() is called) and
# an environment's first invocation (where code that sets up lazily calls it):
# comparing every loaded class, or at every invocation, would cost milliseconds, or a
# microsecond of each warm invocation.
_PATCHED_OFTEN: tuple[tuple[str, str | None], ...] = (
    ("botocore.client", "BaseClient"),
    ("botocore.endpoint", "Endpoint"),
    ("aiobotocore.client", "AioBaseClient"),
    ("requests.sessions", "Session"),
    ("requests.adapters", "HTTPAdapter"),
    ("http.client", "HTTPConnection"),
    ("http.client", "HTTPResponse"),
    ("urllib3.connectionpool", "HTTPConnectionPool"),
    ("httpx", "Client"),
    ("httpx", "AsyncClient"),
    ("sqlite3", None),
    ("psycopg2", None),
    ("pymysql", None),
    ("pymongo.collection", "Collection"),
)


def _owner(module: ModuleType, class_name: str | None) -> _Owner | None:
    owner = module if class_name is None else getattr(module, class_name, None)
    return owner if isinstance(owner, (ModuleType, type)) else None


@dataclass(frozen=True)
class PatchableState:
    """The watched owners before a phase: their attributes, and the watched modules
    that were not loaded yet (imported by the phase itself, then maybe patched)."""

    owners: list[tuple[_Owner, dict[str, object]]]
    unloaded: list[tuple[str, str | None]]
    # Whether a module is the environment's own copy (its code root, its layers, a
    # fresh package): patching that one leaks nothing.
    own: Callable[[str, ModuleType], bool]
    # Whether a file is the environment's own code (its code root, its layers).
    own_file: Callable[[str], bool]


class PatchWatch:
    """Methods of shared libraries that function code replaced during an init phase or
    a first invocation: put back at the end (when still the function code's) and named.

    Best effort: nothing here raises (a library whose attributes raise is skipped), as
    it runs while an environment is swapped in."""

    def __init__(self) -> None:
        # (owner, name) -> (original, what function code put there)
        self.patches: dict[tuple[_Owner, str], tuple[object, object]] = {}

    @staticmethod
    def before(
        own: Callable[[str, ModuleType], bool], own_file: Callable[[str], bool]
    ) -> PatchableState:
        owners: list[tuple[_Owner, dict[str, object]]] = []
        unloaded: list[tuple[str, str | None]] = []
        for module_name, class_name in _PATCHED_OFTEN:
            try:
                module = sys.modules.get(module_name)
                if module is None:
                    unloaded.append((module_name, class_name))
                    continue
                owner = _owner(module, class_name)
                if owner is not None and not own(module_name, module):
                    owners.append((owner, dict(vars(owner))))
            except Exception:
                continue
        return PatchableState(owners, unloaded, own, own_file)

    def after(self, state: PatchableState) -> None:
        for owner, saved in state.owners:
            try:
                self._compare(owner, saved)
            except Exception:
                continue
        for module_name, class_name in state.unloaded:
            try:
                module = sys.modules.get(module_name)
                loaded = None if module is None else _owner(module, class_name)
                if loaded is None or state.own(module_name, module):  # type: ignore[arg-type]
                    continue
                # Imported during the phase: no earlier copy to compare with. A patch
                # that wraps (wrapt, functools.wraps) keeps the original as __wrapped__;
                # only a tracing library's or the function's own count (a library's
                # own decorated methods look the same).
                for name, value in list(vars(loaded).items()):
                    if name.startswith("__"):
                        continue
                    wrapped = wrapped_original(value, module_name)
                    if wrapped is not None and _patched_by(value, state.own_file):
                        self._note(loaded, name, wrapped, value)
            except Exception:
                continue

    def _compare(self, owner: _Owner, saved: dict[str, object]) -> None:
        now = vars(owner)
        for name, original in saved.items():
            value = now.get(name, _MISSING)
            if value is original or name.startswith("__") or not callable(original):
                continue
            self._note(owner, name, original, value)

    def _note(self, owner: _Owner, name: str, original: object, value: object) -> None:
        key = (owner, name)
        first = self.patches.get(key, (original, None))[0]
        self.patches[key] = (first, value)

    def restore(self) -> list[Leak]:
        leaks = []
        for (owner, name), (original, patched) in self.patches.items():
            where = f"{getattr(owner, '__module__', '')}.{getattr(owner, '__qualname__', '')}"
            if isinstance(owner, ModuleType):
                where = owner.__name__
            current = vars(owner).get(name, _MISSING)
            put_back = current is patched
            if put_back:
                setattr(owner, name, original)
            leaks.append(
                Leak(f"{where}.{name} (replaced by function code, as patch_all() does)", put_back)
            )
        self.patches.clear()
        return leaks


_PLUGIN_PACKAGE = __name__.partition(".")[0]
# The plugin's own package folder (its code is never function code).
PLUGIN_FOLDER = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_STDLIB_FOLDER = os.path.dirname(os.path.abspath(os.__file__)) + os.sep
# Where installed distributions live, which may be inside the standard library's folder.
INSTALLED_FOLDERS = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")


def wrapped_original(value: object, module_name: str) -> object | None:
    """What ``value`` wraps, if it is another library's wrapper around a function of
    ``module_name``'s library (a patch, as wrapt or functools.wraps make them); else
    None (never raises)."""
    try:
        return _wrapped_original(value, module_name)
    except Exception:  # a proxy whose attributes raise
        return None


def _wrapped_original(value: object, module_name: str) -> object | None:
    if isinstance(value, (staticmethod, classmethod)):
        # Their __wrapped__ is the function they hold: what that function wraps counts.
        inner = wrapped_original(value.__func__, module_name)
        return None if inner is None else type(value)(inner)  # type: ignore[arg-type]
    if not callable(value):
        return None
    original: object = getattr(value, "__wrapped__", None)
    if original is None or original is value:
        return None
    # The library's own function, wherever in it it is defined: httpx.Client.send is
    # httpx._client's, sqlite3.connect is _sqlite3's.
    package = _library(module_name)
    if _library(getattr(original, "__module__", None) or "") != package:
        return None
    # Both kinds of wrapper copy __module__ from what they wrap: where the wrapper was
    # written tells a patch from the library's own decorated method.
    kind: type = type(value)  # not isinstance: wrapt's wrappers pass for functions
    if kind is FunctionType:
        written_in = cast(FunctionType, value).__code__.co_filename
        top = sys.modules.get(module_name.partition(".")[0])
        where = os.path.dirname(getattr(top, "__file__", None) or "") or None
        if where is not None and written_in.startswith(where + os.sep):
            return None
        if written_in.startswith(PLUGIN_FOLDER):
            return None  # the plugin's own monitors (C drivers' connect), put back by it
        if written_in.startswith(_STDLIB_FOLDER) and not any(
            folder in written_in for folder in INSTALLED_FOLDERS
        ):
            return None  # the library's own use of contextlib.contextmanager and the like
    elif _library(kind.__module__) in (package, _PLUGIN_PACKAGE):
        return None
    return original


# Where tracing and APM libraries keep the code of their patches (see _PATCHED_OFTEN).
_INSTRUMENTATION = tuple(
    f"{os.sep}{package}{os.sep}"
    for package in (
        "aws_xray_sdk",
        "ddtrace",
        "datadog_lambda",
        "opentelemetry",
        "newrelic",
        "newrelic_lambda",
        "sentry_sdk",
        "elasticapm",
        "aws_lambda_powertools",
        "scout_apm",
        "instana",
        "lumigo_tracer",
        "epsagon",
        "thundra",
    )
)


def _patched_by(value: object, own_file: Callable[[str], bool]) -> bool:
    """Whether the wrapper ``value`` was written by a tracing library or by the
    function's own code (wrapt's wrappers: their wrapper function's code)."""
    try:
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        function = value if type(value) is FunctionType else getattr(value, "_self_wrapper", None)
        code = getattr(function, "__code__", None)
        written_in = code.co_filename if code is not None else ""
    except Exception:
        return False
    if not written_in:
        return False
    return any(folder in written_in for folder in _INSTRUMENTATION) or own_file(written_in)


def _library(module_name: str) -> str:
    """The distribution-level name of a module: its top package, without the leading
    underscore of a C accelerator (``_sqlite3`` is sqlite3's)."""
    return module_name.partition(".")[0].lstrip("_")


class LeakWatch:
    """Held by each module-isolated environment from its first init to its shutdown:
    the snapshot is taken when the first joins, compared when the last leaves."""

    def __init__(self) -> None:
        self.users = 0
        self.snapshot: Snapshot | None = None
        self.patch_watch = PatchWatch()
        # The functions whose environments lived meanwhile (one of them changed it).
        self.functions: list[str] = []

    def join(self, function_name: str) -> None:
        if self.users == 0:
            self.snapshot = Snapshot(sys.modules)
            self.functions = []
        self.users += 1
        if function_name not in self.functions:
            self.functions.append(function_name)

    def leave(self) -> tuple[list[Leak], list[str]]:
        """What leaked, and the functions that may have done it (empty: nothing, or
        other environments are still alive)."""
        self.users -= 1
        if self.users or self.snapshot is None:
            return [], []
        snapshot, self.snapshot = self.snapshot, None
        return [*snapshot.restore(), *self.patch_watch.restore()], self.functions


LEAK_WATCH = LeakWatch()


def leak_message(functions: list[str], leaks: list[Leak]) -> str:
    """The warning's text: what leaked, where, and the remedy."""
    put_back = [leak.what for leak in leaks if leak.put_back]
    kept = [leak.what for leak in leaks if not leak.put_back]
    lines = [
        f"function code of {', '.join(functions)} (module isolation) changed process-wide "
        "state that an environment does not own in the test process: the test and the "
        "other environments saw the change while the environment lived."
    ]
    if put_back:
        lines.append("Put back when the environment shut down: " + "; ".join(put_back) + ".")
    if kept:
        lines.append("Could not be put back: " + "; ".join(kept) + ".")
    lines.append(
        "Remedy: undo the change in the function's code (or make it only where it runs "
        'on Lambda), or give the function isolation="process", where each environment '
        "is its own process as on Lambda."
    )
    return "\n".join(lines)
