"""``memory_mb`` as a limit the kernel enforces: a memory cgroup per worker process.

On Lambda the execution environment's memory is a cgroup's: the runtime and every
process its code starts count, and going past it gets a process killed by the kernel
at once. Where this process may make cgroups under its own (root, or a delegated
subtree: cgroup v2 with the memory controller enabled for children, or v1's memory
hierarchy), each process-isolated worker gets one, its worker moved in before any
function code runs. Elsewhere the test process reads the worker's memory while it
runs and kills it past the limit (see ProcessEnvironment._await_reply), which cannot
stop a peak between two reads nor see the processes the worker started.

The memory the worker shares with the template it was forked from is charged to the
template's cgroup: the limit is what ``memory_mb`` leaves after the worker's resident
memory when it moves in, as Lambda's covers the runtime too.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import threading
from dataclasses import dataclass

__all__ = ["WorkerCgroup", "confine", "release", "unavailable_reason"]

# The folder (under this process's own cgroup) that holds the workers' cgroups.
_FOLDER = f"pytest-lambda-context-{os.getpid()}"
_numbers = itertools.count(1)


@dataclass(frozen=True)
class _Hierarchy:
    """Where this process may make memory cgroups, and the files' names there."""

    folder: str  # this session's folder, made on first use
    limit_file: str  # memory.max (v2) or memory.limit_in_bytes (v1)
    swap_file: str | None  # v1's memory.memsw.limit_in_bytes, where swap is accounted
    events_file: str  # memory.events (v2) or memory.oom_control (v1): "oom_kill N"


@dataclass(frozen=True)
class WorkerCgroup:
    """One worker's cgroup."""

    path: str
    hierarchy: _Hierarchy

    def oom_kills(self) -> int:
        """How many processes in it the kernel killed for going past the limit."""
        try:
            with open(os.path.join(self.path, self.hierarchy.events_file)) as events:
                for line in events:
                    name, _, count = line.partition(" ")
                    if name == "oom_kill":
                        return int(count)
        except (OSError, ValueError):
            pass
        return 0


# Probed once per process: the hierarchy, or why there is none.
_found: list[_Hierarchy | str] = []
# Cgroups of workers not yet gone: removed when they are empty.
_pending: list[str] = []
# Environments start from several threads at once (invoke_many).
_lock = threading.Lock()


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup per controller list ("" for v2's unified one)."""
    found: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup") as table:
            for line in table:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                found[controllers] = path
    except (OSError, ValueError):
        pass
    return found


def _probe() -> _Hierarchy | str:
    own = _own_cgroups()
    if not own:
        return "this system has no cgroups (/proc/self/cgroup)"
    unified = own.get("")
    if unified is not None and os.path.isfile("/sys/fs/cgroup/cgroup.controllers"):
        base = "/sys/fs/cgroup" + unified
        try:
            with open(os.path.join(base, "cgroup.subtree_control")) as control:
                enabled = control.read().split()
        except OSError:
            enabled = []
        if "memory" in enabled:
            hierarchy = _Hierarchy(os.path.join(base, _FOLDER), "memory.max", None, "memory.events")
            return _checked(hierarchy)
    for controllers, path in own.items():
        if "memory" in controllers.split(","):
            base = "/sys/fs/cgroup/memory" + path
            swap = os.path.join(base, "memory.memsw.limit_in_bytes")
            hierarchy = _Hierarchy(
                os.path.join(base, _FOLDER),
                "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes" if os.path.exists(swap) else None,
                "memory.oom_control",
            )
            return _checked(hierarchy)
    return "no memory cgroup controller that this process may delegate"


def _checked(hierarchy: _Hierarchy) -> _Hierarchy | str:
    _remove_stale(os.path.dirname(hierarchy.folder))
    try:
        os.mkdir(hierarchy.folder)
    except FileExistsError:
        pass
    except OSError as exc:
        return f"cannot make a cgroup under {os.path.dirname(hierarchy.folder)}: {exc.strerror}"
    atexit.register(_remove_all, hierarchy.folder)
    return hierarchy


def unavailable_reason() -> str | None:
    """Why workers get no cgroup here (None: they do)."""
    with _lock:
        if not _found:
            _found.append(_probe())
    found = _found[0]
    return found if isinstance(found, str) else None


def confine(pid: int, limit_kb: int) -> WorkerCgroup | None:
    """Put process ``pid`` (a worker that has not run function code) in a cgroup of its
    own whose memory limit is ``limit_kb``; None where no cgroup can be made."""
    if unavailable_reason() is not None:
        return None
    hierarchy = _found[0]
    assert isinstance(hierarchy, _Hierarchy)
    _remove_empty()
    path = os.path.join(hierarchy.folder, f"worker-{next(_numbers)}")
    limit = str(max(limit_kb, 1024) * 1024)
    try:
        os.mkdir(path)
        _write(path, hierarchy.limit_file, limit)
        if hierarchy.swap_file is not None:
            _write(path, hierarchy.swap_file, limit)  # no swapping past it either
        _write(path, "cgroup.procs", str(pid))
    except OSError:
        with contextlib.suppress(OSError):
            os.rmdir(path)
        return None
    with _lock:
        _pending.append(path)
    return WorkerCgroup(path, hierarchy)


def release(cgroup: WorkerCgroup | None) -> None:
    """The worker is ending: its cgroup goes once it is empty (now, or later)."""
    if cgroup is not None:
        _remove_empty()


def _write(folder: str, name: str, value: str) -> None:
    with open(os.path.join(folder, name), "w") as target:
        target.write(value)


def _remove_empty() -> None:
    with _lock:
        for path in list(_pending):
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError:  # a process still in it: later
                continue
            _pending.remove(path)


def _remove_stale(parent: str) -> None:
    """The folders of earlier sessions that were killed before removing theirs."""
    prefix = _FOLDER.rpartition("-")[0] + "-"
    with contextlib.suppress(OSError):
        for name in os.listdir(parent):
            owner = name[len(prefix) :]
            if not name.startswith(prefix) or not owner.isdigit() or _alive(int(owner)):
                continue
            folder = os.path.join(parent, name)
            with contextlib.suppress(OSError):
                for child in os.listdir(folder):
                    if child.startswith("worker-"):
                        with contextlib.suppress(OSError):
                            os.rmdir(os.path.join(folder, child))
                os.rmdir(folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove_all(folder: str) -> None:
    _remove_empty()
    with contextlib.suppress(OSError):
        os.rmdir(folder)
