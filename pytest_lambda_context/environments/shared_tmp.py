"""Module isolation: function code that writes under the literal ``/tmp``.

On Lambda each environment has its own ``/tmp``; module-isolated environments share
the test process's, so a file one of them writes to ``/tmp/cache.json`` is seen by
the next "cold" one and outlives the test. Such writes cannot be made private here,
but they are noticed (an audit hook, added once per process: audit hooks cannot be
removed, so it returns at once unless a watched environment's code is running) and
the test is warned, once per function, after the init or invocation returned.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from pytest_lambda_context.observe.scope import ACTIVE_SLOT

__all__ = ["SharedTmpWarning", "TmpWatch", "install", "warning_for"]

_TMP = "/tmp"
_TMP_PREFIX = _TMP + os.sep
# pytest's temporary folders (tmp_path and the like, which a test may hand to function
# code through env), wherever the test made them: /tmp/pytest-of-<user>/...
_PYTEST_TEMP = f"{_TMP_PREFIX}pytest-of-"
_PYCACHE = f"{os.sep}__pycache__{os.sep}"
# open() flags that create or change a file.
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# Other audit events that change the file system: the positions of their paths.
_CHANGES: dict[str, tuple[int, ...]] = {
    "os.mkdir": (0,),
    "os.rename": (0, 1),
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.symlink": (1,),
    "os.link": (1,),
    "os.truncate": (0,),
}
# Enough to name in a warning; the rest are not kept.
_KEPT = 5
_installed = [False]


class SharedTmpWarning(UserWarning):
    """Function code in module isolation wrote under the literal /tmp, shared by every
    environment (on Lambda each environment has its own)."""


class TmpWatch:
    """One environment's watch: where it may write, and what it wrote under /tmp."""

    __slots__ = ("allowed", "paths")

    def __init__(self, allowed: tuple[str, ...]) -> None:
        # Its own TMPDIR, the code root, pytest's temp folders (with a trailing /).
        self.allowed = (
            *(path.rstrip(os.sep) + os.sep for path in allowed if path),
            _PYTEST_TEMP,
        )
        self.paths: list[str] = []

    def note(self, path: Any) -> None:
        if isinstance(path, int):  # a descriptor: opened earlier, seen then
            return
        path = os.fsdecode(path)
        if (
            (path == _TMP or path.startswith(_TMP_PREFIX))
            and not (path + os.sep).startswith(self.allowed)
            # Python's import machinery caching bytecode (of a library under /tmp).
            and _PYCACHE not in path
        ):
            paths = self.paths
            if len(paths) < _KEPT and path not in paths:
                paths.append(path)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    scope = ACTIVE_SLOT[0]
    if scope is None:  # not in function code: the common case, first
        return
    watch = scope.tmp_watch
    if watch is None:
        return
    try:
        if event == "open":
            if args[2] & _WRITE_FLAGS:
                watch.note(args[0])
            return
        positions = _CHANGES.get(event)
        if positions is not None:
            for position in positions:
                watch.note(args[position])
    except Exception:
        pass


def install() -> None:
    """Add the audit hook (once per process)."""
    if not _installed[0]:
        sys.addaudithook(_audit)
        _installed[0] = True


def warning_for(watch: TmpWatch, function_name: str) -> str:
    """The message for what ``watch`` saw (and forget it)."""
    paths = ", ".join(watch.paths)
    watch.paths.clear()
    return (
        f"function code of {function_name} wrote under the literal /tmp ({paths}). In "
        "isolation='module' every environment shares the test process's /tmp, so a later "
        "cold start (and later tests) see what an earlier environment left there, where on "
        "Lambda each environment has its own /tmp. Use isolation='process' (each "
        "environment gets a private /tmp), or write under tempfile.gettempdir() / $TMPDIR, "
        "which is the environment's own."
    )
