"""Test-side patches that cannot reach a worker process: noticed and said.

In ``isolation="process"`` function code runs in a worker with its own copy of the
function's modules. ``monkeypatch.setattr(app.search, "get_client", fake)`` or
``mock.patch("app.search.get_client")`` in the test changes the test process's copy
only, and the handler goes on calling the real ``get_client``: the test then checks
something other than it thinks, silently.

The function's modules that the test process has imported are fingerprinted when
first seen (the attributes they hold then, as a shallow copy); before a worker runs
function code, the attributes are compared with that fingerprint by identity. A
callable (function, class, client) that is no longer the one first seen, or a mock
object anywhere, is a patch, and gets one :class:`TestSidePatchWarning` per patched
value. Plain data rebound since (a memoised client in a module global) is not.

What this cannot see: a patch in place before the module was first seen (taken at the
function's creation), an attribute of a class or an object changed in place.
"""

from __future__ import annotations

import os
import sys
import warnings
import weakref
from types import ModuleType

__all__ = ["TestSidePatchWarning", "check", "observe", "test_caller"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_MISSING = object()


class TestSidePatchWarning(UserWarning):
    """A patch made in the test process, of a module whose function runs in a worker."""

    __test__ = False  # not a test class, whatever pytest's collection rules say


class _Watch:
    """The modules under one code root, as the test process first saw them."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.modules: list[tuple[ModuleType, dict[str, object]]] = []
        self.seen: set[str] = set()
        self.modules_count = -1
        # The patches warned about, per attribute: held (not by id, which a later
        # patch may reuse once the earlier one is gone) so each is said once.
        self.warned: dict[str, list[object]] = {}

    def observe(self) -> None:
        # sys.modules rarely changes between invocations: rescan only when it did.
        count = len(sys.modules)
        if count == self.modules_count:
            return
        self.modules_count = count
        for name, module in list(sys.modules.items()):
            if name in self.seen or not isinstance(module, ModuleType):
                continue
            path = getattr(module, "__file__", None)
            if isinstance(path, str) and path.startswith(self.prefix):
                self.seen.add(name)
                self.modules.append((module, _first_seen(module)))

    def patched(self) -> list[tuple[str, object]]:
        self.observe()
        mock_base = _mock_base()
        found = []
        for module, first in self.modules:
            now = vars(module)
            for attr, original in first.items():
                current = now.get(attr, _MISSING)
                if current is original or current is _MISSING:
                    continue
                if callable(original) or (mock_base and isinstance(current, mock_base)):
                    found.append((f"{module.__name__}.{attr}", current))
            if mock_base:  # added by the patch (monkeypatch.setattr(..., raising=False))
                found.extend(
                    (f"{module.__name__}.{attr}", value)
                    for attr, value in now.items()
                    if attr not in first and isinstance(value, mock_base)
                )
        return found


# Process-wide, as sys.modules is: the first sight of a module object (weakly held, so
# a module dropped from sys.modules is forgotten with it). Patches are undone after
# each test, so a fingerprint stays valid from one test to the next.
_FIRST_SEEN: weakref.WeakKeyDictionary[ModuleType, dict[str, object]] = weakref.WeakKeyDictionary()
_WATCHES: dict[str, _Watch] = {}


def _first_seen(module: ModuleType) -> dict[str, object]:
    first = _FIRST_SEEN.get(module)
    if first is None:
        first = _FIRST_SEEN[module] = dict(vars(module))
    return first


def _mock_base() -> tuple[type, ...]:
    mock = sys.modules.get("unittest.mock")
    return (mock.NonCallableMock,) if mock is not None else ()


def _watch(prefix: str) -> _Watch:
    watch = _WATCHES.get(prefix)
    if watch is None:
        watch = _WATCHES[prefix] = _Watch(prefix)
    return watch


def observe(code_root_prefix: str) -> None:
    """Fingerprint the modules under the code root that the test process has imported."""
    _watch(code_root_prefix).observe()


def check(code_root_prefix: str, function_name: str, environment_id: str) -> None:
    """Warn about each patch of the function's modules made in the test process."""
    watch = _watch(code_root_prefix)
    for name, value in watch.patched():
        said = watch.warned.setdefault(name, [])
        if any(earlier is value for earlier in said):
            continue
        said.append(value)
        module, _, attr = name.rpartition(".")
        message = (
            f"{name} was replaced in the test process (monkeypatch, mock.patch), but "
            f"{environment_id} of {function_name} runs in a worker process "
            f"(isolation='process') with its own {module}: the patch does not reach "
            "function code there. For a white-box test, use isolation='module' and patch "
            "the environment's own module after its init (environment.init(); "
            f"monkeypatch.setattr(environment.module, {attr!r}, ...) when {module} is the "
            "handler's module); or configure the function through env=..., as on Lambda."
        )
        filename, lineno = test_caller()
        warnings.warn_explicit(message, TestSidePatchWarning, filename, lineno)


def test_caller() -> tuple[str, int]:
    """The first frame outside this package: the test's line that invoked the function."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
    return frame.f_code.co_filename, frame.f_lineno
