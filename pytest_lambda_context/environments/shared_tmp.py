"""Module isolation: function code that writes under the literal ``/tmp``, or reads there
a file its environment did not write.

On Lambda each environment has its own ``/tmp``; module-isolated environments share
the test process's, so a file one of them writes to ``/tmp/cache.json`` is seen by
the next "cold" one and outlives the test. Such writes cannot be made private here,
but they are noticed (an audit hook, added once per process: audit hooks cannot be
removed, so it returns at once unless a watched environment's code is running) and
the test is warned, once per function, after the init or invocation returned. A read
of a file there that the environment did not write passes only because something
else left it (an earlier environment, test or session): on Lambda a new environment's
``/tmp`` is empty. It is warned about the same way.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from pytest_lambda_context.observe.scope import ACTIVE_SLOT

__all__ = ["SharedTmpWarning", "TmpWatch", "install", "read_warning_for", "warning_for"]

_TMP = "/tmp"
_TMP_PREFIX = _TMP + os.sep
# pytest's temporary folders (tmp_path and the like, which a test may hand to function
# code through env), wherever the test made them: /tmp/pytest-of-<user>/...
_PYTEST_TEMP = f"{_TMP_PREFIX}pytest-of-"
_PYCACHE = f"{os.sep}__pycache__{os.sep}"
# Python source, read by imports and by tracebacks (an editable install of a package
# under /tmp is on no sys.path entry): code, not an environment's data.
_SOURCE_SUFFIXES = (".py", ".pyc")
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

    __slots__ = ("allowed", "paths", "reads", "written")

    def __init__(self, allowed: tuple[str, ...]) -> None:
        # Its own TMPDIR, the code root, pytest's temp folders (with a trailing /).
        self.allowed = (
            *(path.rstrip(os.sep) + os.sep for path in allowed if path),
            _PYTEST_TEMP,
        )
        self.paths: list[str] = []
        # Files under /tmp that it read without having written them (the first few).
        self.reads: list[str] = []
        # Everything it wrote under /tmp (so that reading it back is its own).
        self.written: set[str] = set()

    def _shared(self, path: Any) -> str | None:
        if isinstance(path, int):  # a descriptor: opened earlier, seen then
            return None
        text: str = os.fsdecode(path)
        if (
            (text == _TMP or text.startswith(_TMP_PREFIX))
            and not (text + os.sep).startswith(self.allowed)
            # Python's import machinery caching bytecode (of a library under /tmp): the
            # files, and the folder it makes for them (hence the trailing separator).
            and _PYCACHE not in text + os.sep
        ):
            return text
        return None

    def note(self, path: Any) -> None:
        shared = self._shared(path)
        if shared is not None:
            self.written.add(os.path.abspath(shared))
            paths = self.paths
            if len(paths) < _KEPT and shared not in paths:
                paths.append(shared)

    def note_read(self, path: Any) -> None:
        shared = self._shared(path)
        if shared is None or os.path.abspath(shared) in self.written:
            return
        if (
            shared.endswith(_SOURCE_SUFFIXES)  # source read for a traceback (linecache)
            or shared.startswith(_code_folders())
            or not os.path.isfile(shared)
        ):
            return  # a module imported from under /tmp, or a cache miss (as on Lambda)
        reads = self.reads
        if len(reads) < _KEPT and shared not in reads:
            reads.append(shared)


def _code_folders() -> tuple[str, ...]:
    # The interpreter and where modules are imported from (a virtual environment or a
    # checkout under /tmp): reading those is importing, not the environment's data.
    folders = {sys.prefix, sys.exec_prefix, sys.base_prefix, *sys.path}
    return tuple(folder.rstrip(os.sep) + os.sep for folder in folders if folder)


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
            else:
                watch.note_read(args[0])
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


def read_warning_for(watch: TmpWatch, function_name: str) -> str:
    """The message for the reads ``watch`` saw (and forget them)."""
    paths = ", ".join(watch.reads)
    watch.reads.clear()
    return (
        f"function code of {function_name} read files under the literal /tmp that its "
        f"environment did not write ({paths}). On Lambda a new environment's /tmp is "
        "empty: this passes only because an earlier environment, test or session left "
        "the file in the test process's /tmp, which every module-isolated environment "
        "shares. Use isolation='process' (each environment gets a private, empty /tmp), or "
        "keep such files under tempfile.gettempdir() / $TMPDIR, which is the environment's own."
    )
