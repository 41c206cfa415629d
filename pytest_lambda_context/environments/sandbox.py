"""What makes a worker process an execution environment of its own, at the kernel level.

- A private literal ``/tmp``: the worker enters a mount namespace (inside a user
  namespace unless it runs as root) and binds its own folder over ``/tmp``. The
  host paths under ``/tmp`` that the environment needs (the code root, pytest's
  temporary folders, the interpreter's own files) are bound back in.
- Every process it starts ends with it: the worker is a child subreaper, so orphaned
  descendants stay in its tree, and :func:`end_descendants` ends that tree.

Linux only; each function returns a reason instead of raising where the kernel says no.
No pytest here: this runs in the worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Iterable

__all__ = [
    "TMP",
    "become_subreaper",
    "bind_private_tmp",
    "children",
    "end_descendants",
    "enter_namespaces",
    "enter_private_tmp",
    "is_alive",
    "outermost_under_tmp",
]

TMP = "/tmp"
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_MS_BIND = 4096
_MS_REC = 16384
_MS_SLAVE = 1 << 19
_PR_SET_CHILD_SUBREAPER = 36
_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def outermost_under_tmp(paths: Iterable[str]) -> list[str]:
    """The paths that lie under ``/tmp``, without those inside another one of them."""
    under = sorted(
        {
            real
            for real in (os.path.realpath(p) for p in paths if p)
            if real.startswith(TMP + os.sep) and os.path.lexists(real)
        }
    )
    kept: list[str] = []
    for path in under:
        if not any(path.startswith(parent + os.sep) for parent in kept):
            kept.append(path)
    return kept


def enter_private_tmp(own: str, expose: Iterable[str]) -> str | None:
    """Make ``own`` this process's ``/tmp``, ``expose`` still reachable at their paths.

    Must run in a single-threaded process (a fresh fork). Returns None on success,
    else why the kernel refused (``/tmp`` is then the host's, unchanged).
    """
    return enter_namespaces() or bind_private_tmp(own, expose)


def enter_namespaces() -> str | None:
    """Enter a mount namespace of this process's own (in a user namespace unless root).

    The first half of :func:`enter_private_tmp`, which a pre-forked worker does before
    it knows its environment (see :func:`bind_private_tmp`). Must run in a
    single-threaded process; it clears the parent-death signal. None on success, else
    why the kernel refused.
    """
    if not sys.platform.startswith("linux"):
        return f"private /tmp needs Linux namespaces (this is {sys.platform})"
    if os.path.realpath(TMP) != TMP:
        return f"{TMP} is a link to {os.path.realpath(TMP)}"
    libc = _c()
    uid, gid = os.geteuid(), os.getegid()
    try:
        if uid == 0:
            # Root needs no user namespace, and keeps its capabilities over host files.
            _check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        else:
            _check(libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS), "unshare(CLONE_NEWUSER|NEWNS)")
            # The same ids inside as outside: files keep their owners.
            for name, text in (
                ("setgroups", "deny"),
                ("uid_map", f"{uid} {uid} 1"),
                ("gid_map", f"{gid} {gid} 1"),
            ):
                with open(f"/proc/self/{name}", "w") as file:
                    file.write(text)
        # Our mounts stay ours; the host's still reach us.
        _check(libc.mount(None, b"/", None, _MS_REC | _MS_SLAVE, None), "mount --make-rslave /")
    except OSError as exc:
        return f"the kernel refused a private {TMP} ({exc.strerror or exc})"
    return None


def bind_private_tmp(own: str, expose: Iterable[str]) -> str | None:
    """In the namespace :func:`enter_namespaces` entered: bind ``own`` over ``/tmp``,
    with ``expose`` bound back in at their paths. None on success, else why not."""
    own = os.path.realpath(own)
    shown = outermost_under_tmp([*expose, own])
    libc = _c()
    try:
        for path in shown:
            point = os.path.join(own, os.path.relpath(path, TMP))
            if os.path.isdir(path):
                os.makedirs(point, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(point), exist_ok=True)
                if not os.path.lexists(point):
                    os.close(os.open(point, os.O_CREAT | os.O_WRONLY, 0o600))
            _check(libc.mount(os.fsencode(path), os.fsencode(point), None, _MS_BIND, None), path)
        _check(
            libc.mount(os.fsencode(own), TMP.encode(), None, _MS_BIND | _MS_REC, None),
            f"bind {own} on {TMP}",
        )
    except OSError as exc:
        return f"the kernel refused a private {TMP} ({exc.strerror or exc})"
    return None


def become_subreaper() -> bool:
    """Orphaned descendants of this process become its children, not init's."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(_c().prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def is_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (from /proc; empty if unknown)."""
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as file:
                found.extend(int(c) for c in file.read().split())
        except (OSError, ValueError):
            continue
    return found


def end_descendants(pid: int) -> int:
    """SIGKILL every descendant of ``pid`` (frozen first, so none forks away); how many."""
    ended: set[int] = set()
    while True:
        tree: list[int] = []
        stack = children(pid)
        while stack:
            child = stack.pop()
            if child in ended or child in tree:
                continue
            tree.append(child)
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGSTOP)
            stack.extend(children(child))
        if not tree:
            return len(ended)
        for child in tree:
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGKILL)
        ended.update(tree)
        _reap_children(pid)


def _reap_children(pid: int) -> None:
    # Only our own children can be reaped (and must be, or they stay listed as zombies).
    if pid != os.getpid():
        return
    while True:
        try:
            done, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not done:
            return


def probe_private_tmp() -> str | None:
    """Would a worker get a private ``/tmp`` here? None if so, else why not.

    Asked in a fresh interpreter: a namespace needs a single-threaded process.
    """
    import subprocess
    import tempfile

    from pytest_lambda_context.environments.interpreter import python_command

    own = tempfile.mkdtemp(prefix="lambda-probe-")
    code = (
        "from pytest_lambda_context.environments.sandbox import enter_private_tmp\n"
        "print(enter_private_tmp(sys.argv[1], ()) or '', end='')\n"
    )
    command, environ = python_command(code, [own], os.environ)
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=environ,
            timeout=30,
            check=False,
        )
    finally:
        import shutil

        shutil.rmtree(own, ignore_errors=True)
    if done.returncode != 0:
        return f"the probe failed: {done.stderr.strip().splitlines()[-1:]}"
    return done.stdout or None
