"""Servers started from the machine's own binaries: a temp folder, a free 127.0.0.1 port,
and a process tied to the test process so it never outlives it.

The server is the test process's direct child with a parent-death signal (SIGKILL,
set after any change of user: the kernel clears it on one), so even a SIGKILLed
pytest takes its servers with it. A folder left by a crash (its owner's pid is gone)
is removed at the next start.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pytest_lambda_context.environments import sandbox

__all__ = [
    "LocalProcess",
    "ServerUnavailable",
    "find_binary",
    "free_port",
    "make_certificate",
    "make_folder",
    "run_once",
    "server_user",
    "start_process",
]

START_TIMEOUT = 60.0
_FOLDER_PREFIX = "plc-ds-"
_PR_SET_PDEATHSIG = 1


class ServerUnavailable(RuntimeError):
    """The server cannot be had here; the message says why and what to install."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def find_binary(
    names: Sequence[str], folders: Sequence[str] = (), install: str = "", *, use_path: bool = True
) -> str:
    """The first of ``names`` on PATH or in ``folders`` (globs, newest version first)."""
    for name in names if use_path else ():
        found = shutil.which(name)
        if found:
            return found
    for pattern in folders:
        for folder in sorted(glob.glob(pattern), key=_version_key, reverse=True):
            for name in names:
                candidate = os.path.join(folder, name)
                if os.access(candidate, os.X_OK):
                    return candidate
    where = f"not on PATH nor in {', '.join(folders)}" if folders else "not on PATH"
    if not use_path:
        where = f"not in {', '.join(folders)}"
    raise ServerUnavailable(f"needs {' or '.join(names)} ({where}): {install}")


def _version_key(folder: str) -> int:
    parts = [p for p in folder.split("/") if p.isdigit()]
    return int(parts[-1]) if parts else 0


@dataclass(frozen=True)
class RunAs:
    uid: int
    gid: int
    name: str


def server_user(names: Sequence[str]) -> RunAs | None:
    """Whom to run the server as: None when we are not root (servers refuse root)."""
    if os.geteuid() != 0:
        return None
    for name in (*names, "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return RunAs(entry.pw_uid, entry.pw_gid, name)
    raise ServerUnavailable(
        f"running as root, and no {' or '.join(names)} user to run the server as"
    )


def make_folder(kind: str, user: RunAs | None) -> str:
    """A new folder for one server, named after this process; stale ones are removed."""
    remove_stale_folders()
    folder = tempfile.mkdtemp(prefix=f"{_FOLDER_PREFIX}{kind}-{os.getpid()}-")
    if user is not None:
        os.chown(folder, user.uid, user.gid)
    return folder


def remove_stale_folders() -> None:
    """Folders of test processes that are gone (killed before they could clean up)."""
    for folder in glob.glob(os.path.join(tempfile.gettempdir(), _FOLDER_PREFIX + "*")):
        owner = os.path.basename(folder)[len(_FOLDER_PREFIX) :].split("-")
        if len(owner) < 2 or not owner[1].isdigit() or sandbox.is_alive(int(owner[1])):
            continue
        shutil.rmtree(folder, ignore_errors=True)


def _tie_to_parent(user: RunAs | None) -> Callable[[], None]:
    """In the child: become ``user``, then ask for SIGKILL when the parent dies (after
    the change of user, which would clear it)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        if user is not None:
            os.setgroups([])
            os.setgid(user.gid)
            os.setuid(user.uid)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was asked for
            os._exit(1)

    return preexec


def make_certificate(folder: str, user: RunAs | None) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key, in ``folder``
    (the key readable by the server's user only, as servers insist). The certificate
    is its own CA: clients that verify are given it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ServerUnavailable("needs openssl for a TLS certificate: apt-get install openssl")
    cert, key = os.path.join(folder, "server.crt"), os.path.join(folder, "server.key")
    command = [
        openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", key, "-out", cert, "-subj", "/CN=localhost",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ]  # fmt: skip
    run_once(command, None, "openssl")
    os.chmod(key, 0o600)
    os.chmod(cert, 0o644)
    if user is not None:
        os.chown(key, user.uid, user.gid)
        os.chown(cert, user.uid, user.gid)
    return cert, key


def run_once(command: Sequence[str], user: RunAs | None, what: str) -> None:
    """Run a set-up command (initdb, mariadb-install-db) to its end, tied to us."""
    result = subprocess.run(
        list(command),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
        env=_environment(),
        preexec_fn=_tie_to_parent(user),
    )
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip())[-2000:]
        raise ServerUnavailable(f"{what} failed (exit {result.returncode}): {output}")


def _environment() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}


class LocalProcess:
    """A server process of ours: its log in the folder, stopped (and the folder removed)
    by :meth:`stop`."""

    def __init__(self, process: subprocess.Popen[bytes], folder: str, log_path: str) -> None:
        self.process = process
        self.folder = folder
        self.log_path = log_path

    def log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as log:
                return log.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self, stop_signal: int = signal.SIGTERM) -> None:
        try:
            if self.process.poll() is None:
                self.process.send_signal(stop_signal)
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def start_process(
    command: Sequence[str],
    folder: str,
    user: RunAs | None,
    ready: Callable[[], bool],
    what: str,
) -> LocalProcess:
    """Start ``command`` and wait until ``ready()`` says it answers (or it exits)."""
    log_path = os.path.join(folder, "server.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_environment(),
            cwd=folder,
            preexec_fn=_tie_to_parent(user),
        )
    server = LocalProcess(process, folder, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = server.log_tail()
            server.stop()
            raise ServerUnavailable(f"{what} exited with {process.returncode}: {tail}")
        with contextlib.suppress(OSError):
            if ready():
                return server
        time.sleep(0.02)
    tail = server.log_tail()
    server.stop(signal.SIGKILL)
    raise ServerUnavailable(f"{what} did not answer in {START_TIMEOUT:.0f} s: {tail}")
