"""``memory_mb`` as a limit the kernel enforces: a memory cgroup per worker process.

On Lambda the execution environment's memory is a cgroup's: the runtime and every
process its code starts count, and going past it gets a process killed by the kernel
at once. Where the test process may make cgroups under its own (root, or a delegated
subtree: cgroup v2 with the memory controller enabled for children, or v1's memory
hierarchy), it makes this session's folder (:func:`session_folder`); the template
puts each worker it forks in a cgroup of its own there (:func:`adopt`), ahead of the
cold start that takes it (moving a process costs the kernel a synchronisation of
about 10 ms); the test process writes the limit when it hands the worker its
environment (:func:`limit`), and the template removes the cgroup once it has reaped
the worker (:func:`forget`). Elsewhere (and for processes that workers fork: SnapStart
restores, Managed Instances' runtime processes) the test process reads the worker's
memory while it runs and kills it past the limit (ProcessEnvironment._await_reply),
which cannot stop a peak between two reads nor see the processes the worker started.

The memory the worker shares with the template it was forked from is charged to the
template's cgroup: the limit is what ``memory_mb`` leaves after the worker's resident
memory, as Lambda's covers the runtime too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from dataclasses import dataclass

from pytest_lambda_context.environments import sandbox

__all__ = ["WorkerCgroup", "adopt", "forget", "limit", "session_folder", "unavailable_reason"]

_PREFIX = "pytest-lambda-context-"


@dataclass(frozen=True)
class _Hierarchy:
    """Where this process may make memory cgroups, and the files' names there."""

    folder: str  # this session's folder, made on first use
    limit_file: str  # memory.max (v2) or memory.limit_in_bytes (v1)
    swap_file: str | None  # v1's memory.memsw.limit_in_bytes, where swap is accounted
    events_file: str  # memory.events (v2) or memory.oom_control (v1): "oom_kill N"
    usage_file: str  # memory.current (v2) or memory.usage_in_bytes (v1)


@dataclass(frozen=True)
class WorkerCgroup:
    """One worker's cgroup, its limit written."""

    path: str
    events_file: str

    def oom_kills(self) -> int:
        """How many processes in it the kernel killed for going past the limit."""
        try:
            with open(os.path.join(self.path, self.events_file)) as events:
                for line in events:
                    name, _, count = line.partition(" ")
                    if name == "oom_kill":
                        return int(count)
        except (OSError, ValueError):
            pass
        return 0


# Probed once per process: the hierarchy, or why there is none.
_found: list[_Hierarchy | str] = []
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
    folder = f"{_PREFIX}{os.getpid()}"
    unified = own.get("")
    if unified is not None and os.path.isfile("/sys/fs/cgroup/cgroup.controllers"):
        base = "/sys/fs/cgroup" + unified
        try:
            with open(os.path.join(base, "cgroup.subtree_control")) as control:
                enabled = control.read().split()
        except OSError:
            enabled = []
        if "memory" in enabled:
            hierarchy = _Hierarchy(
                os.path.join(base, folder), "memory.max", None, "memory.events", "memory.current"
            )
            return _checked(hierarchy, v2=True)
    for controllers, path in own.items():
        if "memory" in controllers.split(","):
            base = "/sys/fs/cgroup/memory" + path
            swap = os.path.join(base, "memory.memsw.limit_in_bytes")
            hierarchy = _Hierarchy(
                os.path.join(base, folder),
                "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes" if os.path.exists(swap) else None,
                "memory.oom_control",
                "memory.usage_in_bytes",
            )
            return _checked(hierarchy)
    return "no memory cgroup controller that this process may delegate"


def _checked(hierarchy: _Hierarchy, v2: bool = False) -> _Hierarchy | str:
    _remove_stale(os.path.dirname(hierarchy.folder))
    try:
        os.mkdir(hierarchy.folder)
    except FileExistsError:
        pass
    except OSError as exc:
        return f"cannot make a cgroup under {os.path.dirname(hierarchy.folder)}: {exc.strerror}"
    atexit.register(_remove_folder, hierarchy.folder)
    if v2:  # the workers' cgroups below this folder need the controller enabled
        try:
            with open(os.path.join(hierarchy.folder, "cgroup.subtree_control"), "w") as control:
                control.write("+memory")
        except OSError as exc:
            return f"cannot delegate the memory controller below {hierarchy.folder}: {exc.strerror}"
    return hierarchy


def _hierarchy() -> _Hierarchy | str:
    with _lock:
        if not _found:
            _found.append(_probe())
        return _found[0]


def unavailable_reason() -> str | None:
    """Why workers get no cgroup here (None: they do)."""
    found = _hierarchy()
    return found if isinstance(found, str) else None


def session_folder() -> str | None:
    """This session's folder for the workers' cgroups (made now), for the template;
    None where none can be made."""
    found = _hierarchy()
    return None if isinstance(found, str) else found.folder


# -- in the template ---------------------------------------------------------------
def adopt(folder: str | None, pid: int) -> None:
    """Put the worker ``pid`` that the template just forked in a cgroup of its own
    (no limit yet). Quietly nothing where that fails: the limit is then polled."""
    if folder is None:
        return
    path = os.path.join(folder, f"worker-{pid}")
    try:
        # A folder left by an earlier worker of the same pid (ended with the pool): reused.
        with contextlib.suppress(FileExistsError):
            os.mkdir(path)
        with open(os.path.join(path, "cgroup.procs"), "w") as procs:
            procs.write(str(pid))
    except OSError:
        with contextlib.suppress(OSError):
            os.rmdir(path)


def forget(folder: str | None, pids: list[int]) -> None:
    """The template reaped these workers: their cgroups go (if empty: processes that
    their code started may outlive them for a moment; the session's end removes all)."""
    if folder is None:
        return
    for pid in pids:
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(folder, f"worker-{pid}"))


# -- in the test process -------------------------------------------------------------
def limit(pid: int, limit_kb: int) -> WorkerCgroup | None:
    """Write ``limit_kb`` as the limit of the worker ``pid``'s cgroup, which the
    template made (None: it has none; its memory is polled)."""
    found = _hierarchy()
    if isinstance(found, str):
        return None
    path = os.path.join(found.folder, f"worker-{pid}")
    try:
        # What the worker made its own since it moved in is charged there already, and
        # in its resident memory too: counted once.
        with open(os.path.join(path, found.usage_file)) as usage:
            limit_kb += int(usage.read().split()[0]) // 1024
        with open(os.path.join(path, "cgroup.procs")) as procs:
            if str(pid) not in procs.read().split():
                return None  # not the template's worker of that pid (a fork's)
    except (OSError, ValueError, IndexError):
        return None
    value = str(max(limit_kb, 1024) * 1024)
    try:
        with open(os.path.join(path, found.limit_file), "w") as target:
            target.write(value)
        if found.swap_file is not None:  # no swapping past it either
            with open(os.path.join(path, found.swap_file), "w") as target:
                target.write(value)
    except OSError:
        return None
    return WorkerCgroup(path, found.events_file)


def _remove_stale(parent: str) -> None:
    """The folders of earlier sessions that were killed before removing theirs."""
    with contextlib.suppress(OSError):
        for name in os.listdir(parent):
            owner = name[len(_PREFIX) :]
            if not name.startswith(_PREFIX) or not owner.isdigit() or sandbox.is_alive(int(owner)):
                continue
            _remove_folder(os.path.join(parent, name))


def _remove_folder(folder: str) -> None:
    with contextlib.suppress(OSError):
        for child in os.listdir(folder):
            if child.startswith("worker-"):
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(folder, child))
        os.rmdir(folder)
