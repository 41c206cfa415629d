"""What Lambda's Python runtime does around a SnapStart snapshot, inside the worker.

The hooks are the ones function code registered with AWS's ``snapshot_restore_py``
(the package Lambda's Python managed runtimes include), run as AWS's runtime client
runs them: before-snapshot hooks in reverse order of registration, each taken off the
registry as it runs; after-restore hooks in order of registration.

Uniqueness: a restore resumes the snapshot's memory, so Python's ``random`` module
draws the same numbers in every restored environment until code reseeds it; the
kernel's entropy (``os.urandom``, ``secrets``, ``uuid.uuid4``) is fresh in each.
A fork reseeds ``random`` by itself (CPython's at-fork hook): :func:`resume` puts
the snapshot's state back, so a test sees what a restored Lambda would.
"""

from __future__ import annotations

import sys
import tempfile
from typing import Any

__all__ = ["capture", "resume", "run_after_restore", "run_before_snapshot", "take_tmp"]

_HOOKS_MODULE = "snapshot_restore_py"


def run_before_snapshot() -> None:
    """Run the before-snapshot hooks, the last registered first; raise what a hook raises."""
    hooks = sys.modules.get(_HOOKS_MODULE)
    if hooks is None:  # function code never imported it: nothing was registered
        return
    registry = hooks.get_before_snapshot()
    while registry:
        function, args, kwargs = registry.pop()
        function(*args, **kwargs)


def run_after_restore() -> None:
    """Run the after-restore hooks in the order they were registered."""
    hooks = sys.modules.get(_HOOKS_MODULE)
    if hooks is None:
        return
    for function, args, kwargs in hooks.get_after_restore():
        function(*args, **kwargs)


def capture() -> Any:
    """In the snapshot, just before a restore: the state a restore must resume with."""
    import random

    return random.getstate()


def resume(state: Any) -> None:
    """In the restored process: undo what the fork changed and a restore would not."""
    import random

    random.setstate(state)


def take_tmp(own_tmp: str) -> None:
    """This environment's temp folder (a copy of the snapshot's, made by the test process)."""
    tempfile.tempdir = own_tmp
