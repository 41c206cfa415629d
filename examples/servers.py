"""A real PostgreSQL and a real Redis for tests, started from the machine's own binaries.

Used by the plugin's own tests of ``tcp_proxy`` in front of a server that is not the
plugin's (tests/conftest.py loads this file); the example project uses the plugin's
``postgres``/``redis`` fixtures. The servers run on a free 127.0.0.1 port, in a
temporary folder, without persistence, and stop when the test session ends.

- PostgreSQL: ``initdb`` and ``pg_ctl`` from PATH or Debian's /usr/lib/postgresql/*/bin
  (``apt-get install postgresql``), run as a non-root user (PostgreSQL refuses to run
  as root), trust authentication for user ``postgres`` on 127.0.0.1.
- Redis: ``redis-server`` from PATH (``apt-get install redis-server``).

Where a server cannot be had, the tests that need it are skipped with the reason; on
CI (``CI=true``) they fail instead, so a missing install step cannot pass unseen.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator

import pytest

__all__ = ["ServerUnavailable", "postgres_server", "redis_server", "server_or_skip"]

_PG_DIRS = "/usr/lib/postgresql/*/bin"
_START_TIMEOUT = 60.0


class ServerUnavailable(RuntimeError):
    """The server cannot be started here; the message says why and what to install."""


def server_or_skip(factory: Callable[[], contextlib.AbstractContextManager[str]]) -> Iterator[str]:
    """For a fixture: yield the server's URL; skip the test where it cannot be started
    (fail instead on CI, where ``CI=true``)."""
    stack = contextlib.ExitStack()
    reason = None
    try:
        url = stack.enter_context(factory())
    except ServerUnavailable as exc:
        reason = str(exc)
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: tests that need it must not skip)", pytrace=False)
        pytest.skip(reason)
    with stack:
        yield url


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pg_binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(glob.glob(_PG_DIRS), key=_version_key, reverse=True):
        candidate = os.path.join(folder, name)
        if os.access(candidate, os.X_OK):
            return candidate
    raise ServerUnavailable(
        f"needs PostgreSQL's {name} (not on PATH nor in {_PG_DIRS}): apt-get install postgresql"
    )


def _version_key(folder: str) -> int:
    version = folder.split("/")[-2]
    return int(version) if version.isdigit() else 0


def _server_user() -> tuple[int, int] | None:
    """The (uid, gid) to run PostgreSQL as: None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    raise ServerUnavailable("running as root, and no 'postgres' or 'nobody' user to run as")


def _run(command: list[str], user: tuple[int, int] | None, what: str) -> None:
    ids = {} if user is None else {"user": user[0], "group": user[1], "extra_groups": []}
    result = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=_START_TIMEOUT,
        check=False,
        env={**os.environ, "LC_ALL": "C", "LANG": "C"},
        **ids,  # type: ignore[arg-type]
    )
    if result.returncode != 0:
        raise ServerUnavailable(
            f"{what} failed (exit {result.returncode}): {result.stderr.strip() or result.stdout}"
        )


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A fresh PostgreSQL cluster on 127.0.0.1; yields ``postgresql://postgres@host:port/postgres``."""
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    user = _server_user()
    folder = tempfile.mkdtemp(prefix="plc-pg-")
    data = os.path.join(folder, "data")
    try:
        if user is not None:
            os.chown(folder, *user)
        _run(
            [initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
            user,
            "initdb",
        )
        port = free_port()
        options = (
            f"-h 127.0.0.1 -p {port} -k {folder} -F "
            "-c full_page_writes=off -c synchronous_commit=off -c max_connections=200"
        )
        log = os.path.join(folder, "server.log")
        _run(
            [pg_ctl, "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start"],
            user,
            "pg_ctl start",
        )
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            with contextlib.suppress(ServerUnavailable, subprocess.TimeoutExpired):
                _run([pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"], user, "pg_ctl stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A Redis server on 127.0.0.1 without persistence; yields ``redis://127.0.0.1:port/0``."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerUnavailable("needs redis-server on PATH: apt-get install redis-server")
    folder = tempfile.mkdtemp(prefix="plc-redis-")
    port = free_port()
    command = [
        binary,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--dir", folder,
        "--daemonize", "no",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        _wait_for_redis(port, process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for_redis(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise ServerUnavailable(f"redis-server exited with {process.returncode}: {output}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return
        time.sleep(0.05)
    raise ServerUnavailable(
        f"redis-server did not answer on 127.0.0.1:{port} in {_START_TIMEOUT} s"
    )
