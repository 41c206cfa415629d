"""The template process that forks workers for process isolation.

It is started once (per session, or per function outside pytest) with the same
interpreter, imports the heavy third-party libraries ahead of time, and forks one
worker per execution environment on request, so a cold start costs a fork plus the
function's own init code.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence

from pytest_lambda_context.environments import memory_cgroup, worker_coverage
from pytest_lambda_context.environments.channel import (
    Forked,
    ForkRequest,
    Hello,
    Ready,
    Reaped,
    ReapRequest,
    ReleaseRequest,
    expect,
    recv_packet,
    send_packet,
)
from pytest_lambda_context.environments.interpreter import PACKAGE_PARENT, python_command
from pytest_lambda_context.environments.worker import PRELOAD

__all__ = ["PACKAGE_PARENT", "POOL_SIZE", "WorkerTemplate", "sys_path"]

# How long the template may take to import the preloaded libraries.
_READY_TIMEOUT = 120.0
# Blank workers kept forked ahead: the cold starts a test makes in a row (invoke_many
# and provision() take more at once; those past the pool are forked as they come).
POOL_SIZE = 2
# What the template runs: the worker module's main, imported (not run as __main__:
# freezegun ignores its callers' modules by name, and "__main__" frames under a handler
# would count as a library's and hide the moved clock from it).
_MAIN = "from pytest_lambda_context.environments.worker import main\nsys.exit(main())\n"


class WorkerTemplate:
    """A clean process, third-party libraries imported, that forks workers on request.

    Thread-safe: environments driven from several threads fork through one template.
    """

    def __init__(
        self,
        preload: Sequence[str] = PRELOAD,
        *,
        coverage_root: str | None = None,
        pool: int = POOL_SIZE,
    ) -> None:
        self.preload = list(preload)
        # Blank workers the template keeps forked ahead (0: each fork starts from scratch).
        self.pool = pool
        # Where the session's coverage configuration's relative paths point (pytest's
        # invocation folder); the coverage measuring this process is looked up at start.
        self.coverage_root = coverage_root
        self._coverage: worker_coverage.CoverageHandoff | None = None
        self.pid: int | None = None
        self.preloaded: list[str] = []
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._ready = False
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        """Start the template now (it imports in the background); forks wait for it."""
        with self._lock:
            self._start()

    def _start(self) -> None:
        if self._closed:
            raise RuntimeError("this WorkerTemplate is closed")
        if self._process is not None:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if self._coverage is None:  # once: a restarted template keeps its workers' folder
            self._coverage = worker_coverage.session_coverage(self.coverage_root)
        args = [str(theirs.fileno())]
        # PR_SET_PDEATHSIG fires when the *thread* that started the child ends: only
        # ask for it from the main thread; otherwise the control socket's EOF still
        # ends the template when the test process dies.
        if threading.current_thread() is threading.main_thread():
            args.append("--pdeathsig")
        # Not ``python -m``: that would put the working directory first on sys.path.
        command, environ = python_command(_MAIN, args, worker_coverage.template_environ(os.environ))
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                env=environ,
                pass_fds=(theirs.fileno(),),
                # Its own session: a Ctrl-C at the terminal is for pytest, which then
                # shuts the workers down itself.
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._control = ours
        self.pid = self._process.pid
        hello = Hello(
            sys_path=sys_path(),
            preload=self.preload,
            coverage=self._coverage,
            pool=self.pool,
            memory_cgroups=memory_cgroup.session_folder(),
        )
        send_packet(ours, hello)

    def _wait_ready(self) -> socket.socket:
        self._start()
        control = self._control
        assert control is not None
        if not self._ready:
            control.settimeout(_READY_TIMEOUT)
            reply = recv_packet(control)
            control.settimeout(None)
            if reply is None:
                status = self._process.wait() if self._process is not None else None
                self._discard()
                raise RuntimeError(
                    f"the isolation='process' template ({sys.executable} running "
                    f"pytest_lambda_context.environments.worker) exited with status {status} before "
                    "it was ready; its error output is above"
                )
            self.preloaded = expect(reply, Ready).preloaded
            self._ready = True
        return control

    def close(self) -> None:
        """Stop the template; its workers die with it."""
        with self._lock:
            self._closed = True
            self._discard()
            if self._coverage is not None:
                worker_coverage.merge_into_session(self._coverage)
                self._coverage = None

    def _discard(self) -> None:
        control, process = self._control, self._process
        ready = self._ready
        self._control = self._process = None
        self._ready = False
        if control is not None:
            control.close()  # the template's cue to kill its workers and exit
        if process is not None and not ready:
            # Still importing (or never to be ready): it has forked nothing and holds
            # nothing, and would notice the closed socket only once its imports are
            # done; the session need not wait for that.
            process.kill()
        if process is not None:
            try:
                process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def ready(self) -> None:
        """Wait until the template has started and preloaded: once per session."""
        with self._lock:
            self._wait_ready()

    # -- requests ------------------------------------------------------------------
    def fork(
        self, channel: socket.socket, own_tmp: str | None = None, expose: Sequence[str] = ()
    ) -> int:
        """Fork a worker that serves ``channel`` (the template gets a copy of the fd).

        ``own_tmp``: the folder to be the worker's literal ``/tmp``, with the host paths
        ``expose`` still visible in it.
        """
        request = ForkRequest(own_tmp=own_tmp, expose=tuple(expose))
        for attempt in (1, 2):
            with self._lock:
                try:
                    control = self._wait_ready()
                    send_packet(control, request, [channel.fileno()])
                    reply = recv_packet(control)
                    if reply is not None:
                        return expect(reply, Forked).pid
                except OSError:
                    if attempt == 2:
                        raise
                except BaseException:
                    # Interrupted mid-request: the reply would be read by the next
                    # caller. Start afresh instead (its workers go with it).
                    self._discard()
                    raise
                # The template died (killed from outside): start a new one, once.
                self._discard()
        raise RuntimeError("the isolation='process' template exited while forking a worker")

    def reap(self, pid: int, block: bool = True) -> int | None:
        """The raw wait status of worker ``pid`` (None: still running and not ``block``)."""
        with self._lock:
            control = self._control
            if control is None or not self._ready:
                # No template: its workers were killed along with it.
                return int(signal.SIGKILL)
            try:
                send_packet(control, ReapRequest(pid=pid, block=block))
                reply = recv_packet(control)
            except BaseException:
                self._discard()
                raise
            if reply is None:
                self._discard()
                return int(signal.SIGKILL)
            return expect(reply, Reaped).status

    def release_worker(self, pid: int, grace: float, remove: str | None = None) -> bool:
        """Leave worker ``pid`` (told to shut down, or killed) to the template: it reaps
        it once it exits, ends its process group past ``grace`` seconds, then removes
        the folder ``remove``. True if handed over (nothing to wait for here); False:
        reap it (and remove the folder) yourself."""
        with self._lock:
            control = self._control
            # A measuring worker saves its data file as it exits, and pytest-cov
            # combines the files it finds at the end of the session, maybe before the
            # template is closed: the test waits for it, as it always did.
            if control is None or not self._ready or self._coverage is not None:
                return False
            try:
                send_packet(control, ReleaseRequest(pid=pid, grace=grace, remove=remove))
            except OSError:
                return False
            return True

    def __repr__(self) -> str:
        return f"<WorkerTemplate pid={self.pid} ready={self._ready} closed={self._closed}>"


def sys_path() -> list[str]:
    # "" means the current folder: the template and the workers run elsewhere.
    return [p or os.getcwd() for p in sys.path]
