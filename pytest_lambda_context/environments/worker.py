"""The far side of ``isolation="process"``: the template process and the workers it forks.

``python -m pytest_lambda_context.environments.worker <control-fd> [--pdeathsig]`` starts a template:
it imports the heavy third-party libraries once, then waits on its control socket.
Each fork request carries one end of a fresh socketpair (SCM_RIGHTS); the forked child
becomes an execution environment and talks to the test process over that channel:
init, invoke and shutdown requests (the messages and their framing:
:mod:`~pytest_lambda_context.environments.channel`). The template never runs function
code, so no worker inherits a connection, a client or a module of the function's own.

Workers stay children of the template, so only the template can reap them: the test
process asks it to (a reap request), which also keeps a pid from being reused while
the test process may still signal it.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import os
import pickle
import resource
import select
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pytest_lambda_context.environments import memory_cgroup, sandbox, worker_coverage
from pytest_lambda_context.environments.blank_pool import BlankPool, BlankWorker
from pytest_lambda_context.environments.channel import (
    Forked,
    ForkRequest,
    ForkServerRequest,
    Hello,
    InitRequest,
    InvokeReply,
    InvokeRequest,
    Message,
    PhaseReply,
    Ready,
    Reaped,
    ReapRequest,
    ReleaseRequest,
    RestoreRequest,
    ServingForks,
    ShutdownReady,
    ShutdownRequest,
    SnapshotRequest,
    WorkerConfig,
    expect,
    recv_message,
    recv_packet,
    send_message,
    send_packet,
)
from pytest_lambda_context.environments.worker_debugger import explain_debugger_quit
from pytest_lambda_context.observe import connect_lines
from pytest_lambda_context.observe.drivers import DriverWatch
from pytest_lambda_context.runtime.clock import real_monotonic
from pytest_lambda_context.runtime.pytest_outcomes import describe_outcome, is_test_outcome
from pytest_lambda_context.runtime.records import ErrorPayload, OutcomeKind

if TYPE_CHECKING:
    # At run time, imported where they are used (as the rest of this module does).
    from pytest_lambda_context.environments.stale_connections import Inherited
    from pytest_lambda_context.observe.scope import Scope
    from pytest_lambda_context.runtime.log_stream import LogStream, StreamTee
    from pytest_lambda_context.runtime.marshal import ResultEncoder

__all__ = [
    "PRELOAD",
    "main",
    "serve_forks",
    "set_parent_death_signal",
]

# Imported by the template so a cold start does not pay for them (each if installed).
PRELOAD = (
    "elasticsearch",
    "elastic_transport",
    "boto3",
    "botocore",
    "botocore.session",
    "botocore.client",
    "urllib3",
    "freezegun",
    "json",
    "logging",
    "http.client",
    "ssl",
    "pytest_lambda_context.runtime.handler",
    "pytest_lambda_context.observe.connections",
    "pytest_lambda_context.observe.netguard",
    "pytest_lambda_context.observe.clients",
    "pytest_lambda_context.runtime.clock",
    "pytest_lambda_context.runtime.context",
    "pytest_lambda_context.observe.scope",
    "pytest_lambda_context.runtime.errors",
    "pytest_lambda_context.runtime.records",
    "pytest_lambda_context.runtime.marshal",
    "pytest_lambda_context.runtime.log_stream",
    "pytest_lambda_context.runtime.logging_setup",
    "pytest_lambda_context.runtime.warnings_setup",
    "simplejson",
)

_PICKLE = pickle.HIGHEST_PROTOCOL
_PR_SET_PDEATHSIG = 1


# --- process plumbing ---------------------------------------------------------------


def set_parent_death_signal(signum: int = signal.SIGKILL) -> bool:
    """Have the kernel send ``signum`` to this process when its parent dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _preload(names: list[str]) -> list[str]:
    loaded = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # not installed or broken: the worker imports it itself
            continue
        loaded.append(name)
    return loaded


# --- the template -------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or not args[0].isdigit():
        print(
            "usage: python -m pytest_lambda_context.environments.worker <control-fd> [--pdeathsig]\n"
            "Started by pytest-lambda-context for isolation='process'; not for direct use.",
            file=sys.stderr,
        )
        return 2
    parent = os.getppid()
    if "--pdeathsig" in args:
        set_parent_death_signal()
    if os.getppid() != parent:  # the test process died before prctl took effect
        return 1
    # Ctrl-C belongs to pytest; it is in another session anyway, this is belt and braces.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control = socket.socket(fileno=int(args[0]))
    control.set_inheritable(False)
    with control:
        return _serve(control)


def _serve(control: socket.socket) -> int:
    message = recv_packet(control)
    if message is None:
        return 0
    hello = expect(message, Hello)
    sys.path[:] = hello.sys_path
    preload, coverage = hello.preload, hello.coverage
    if coverage is not None:  # measured session: every worker measures (worker_coverage)
        preload = [*preload, "coverage", "coverage.control"]
    loaded = _preload(preload)
    if coverage is not None:
        worker_coverage.warm_up(coverage)
    # Freeze the preloaded objects out of the collector: a forked worker's collections
    # then do not touch (and copy) the template's pages.
    gc.collect()
    gc.freeze()
    # Processes that function code started and left behind become our children when
    # their environment ends, instead of escaping to init: see _end_orphans.
    sandbox.become_subreaper()
    try:
        send_packet(control, Ready(pid=os.getpid(), preloaded=loaded))
    except OSError:  # the session ended while we were starting: nothing to serve
        return 0

    def receive() -> tuple[Message | None, list[int]]:
        fds: list[int] = []
        return recv_packet(control, fds), fds

    cgroups = hello.memory_cgroups

    def fork_blank(others: Sequence[socket.socket]) -> BlankWorker:
        blank = _fork_blank([control, *others], coverage)
        memory_cgroup.adopt(cgroups, blank[0])  # ahead of the cold start that takes it
        return blank

    pool = BlankPool(hello.pool, fork_blank)  # filled in quiet moments (serve_forks)

    def fork(fd: int, request: ForkRequest) -> int:
        pid = pool.hand_out(fd, request)
        if pid is None:
            inherited = [control, *pool.sockets()]
            pid = _fork(inherited, fd, request.own_tmp, request.expose, coverage=coverage)
            memory_cgroup.adopt(cgroups, pid)
        return pid

    try:
        return serve_forks(
            receive,
            lambda message: send_packet(control, message),
            fork,
            pool,
            control.fileno(),
            reaped=lambda pids: memory_cgroup.forget(cgroups, pids),
        )
    finally:
        pool.close()


# What forks a worker for a fork request: gets the channel's fd and the request.
Fork = Callable[[int, ForkRequest], int]


def serve_forks(
    receive: Callable[[], tuple[Message | None, list[int]]],
    reply: Callable[[Message], None],
    fork: Fork,
    pool: BlankPool | None = None,
    watch: int | None = None,
    reaped: Callable[[list[int]], None] = lambda pids: None,
) -> int:
    """Answer fork and reap requests until the test process lets go.

    The template does this, and so does a worker that stands in for it: a SnapStart
    snapshot (its forks are restores) and a Managed Instances environment (its forks
    are the environment's runtime processes). The template's ``pool`` of blank
    workers is refilled after each answer, while the test process goes on; workers
    released to it are reaped between requests (``watch``: the fd requests arrive on).
    """
    live: set[int] = set()
    releases = _Releases()

    def forget(pids: list[int]) -> None:
        if pids:
            live.difference_update(pids)
            _end_orphans(live | pool.pids() if pool is not None else live)
            reaped(pids)

    try:
        while True:
            if watch is not None:
                refill = pool.fill_one if pool is not None and pool.short() else None
                forget(releases.wait(watch, refill))
            try:
                request, fds = receive()
            except (OSError, EOFError):
                break
            response: Message
            if isinstance(request, ForkRequest):
                pid = fork(fds[0], request)
                live.add(pid)
                os.close(fds[0])
                response = Forked(pid=pid)
            elif isinstance(request, ReapRequest):
                for fd in fds:
                    os.close(fd)
                status = _reap(request.pid, request.block)
                if status is not None:
                    forget([request.pid])
                response = Reaped(status=status)
            elif isinstance(request, ReleaseRequest):
                releases.add(request)
                continue  # not answered
            else:  # None: the test process is gone or done, so are the forked workers
                break
            reply(response)
    finally:
        # Workers told to shut down get the rest of their grace (atexit handlers that
        # save coverage data, say); the others are killed now.
        finished = releases.wait(None)
        live.difference_update(finished)
        for pid in live:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        _end_orphans(set())
        reaped([*finished, *live])
    return 0


# How long the template waits for a quiet moment before it forks a blank worker: the
# cold start that asked for the last one goes on meanwhile (its init, its first
# invocation), and a fork would compete with it for the CPU.
_IDLE = 0.005


class _Releases:
    """Workers the test process let go of: reaped as they exit, their process group
    ended then (or past their grace), off the test's path."""

    def __init__(self) -> None:
        # pid -> (its pidfd, or -1 where there is none; its deadline, time.monotonic)
        self.waiting: dict[int, tuple[int, float]] = {}
        self.remove: dict[int, str] = {}

    def add(self, request: ReleaseRequest) -> None:
        pid = request.pid
        try:
            pidfd = os.pidfd_open(pid)
        except (OSError, AttributeError):  # gone already, or no pidfd: at the deadline
            pidfd = -1
        self.waiting[pid] = (pidfd, real_monotonic() + request.grace)
        if request.remove is not None:
            self.remove[pid] = request.remove

    def wait(self, watch: int | None, idle: Callable[[], bool] | None = None) -> list[int]:
        """Reap released workers until ``watch`` is readable (None: until all are
        reaped); the pids reaped.

        ``idle``: work for the quiet moments (refilling the pool), one piece each time
        nothing has happened for _IDLE seconds; it says whether more remains.
        """
        reaped: list[int] = []
        busy = idle is not None
        while self.waiting or busy:
            now = real_monotonic()
            for pid, (_, deadline) in list(self.waiting.items()):
                if deadline <= now:
                    reaped.append(self._finish(pid))
            fds = {fd: pid for pid, (fd, _) in self.waiting.items() if fd >= 0}
            timeouts = [_IDLE] if busy else []
            if self.waiting:
                timeouts.append(max(0.0, min(d for _, d in self.waiting.values()) - now))
            if not timeouts:
                break
            watched = [*fds] if watch is None else [watch, *fds]
            readable, _, _ = select.select(watched, [], [], min(timeouts))
            reaped.extend(self._finish(fds[fd]) for fd in readable if fd in fds)
            if watch is not None and watch in readable:
                break
            if busy and not readable and idle is not None:
                busy = idle()
        return reaped

    def _finish(self, pid: int) -> int:
        pidfd, _ = self.waiting.pop(pid)
        # Before the wait, while the pid (and its group's id) cannot be reused: what
        # its handler started in its group ends with it, as Lambda's sandbox does.
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0)
        if pidfd >= 0:
            os.close(pidfd)
        folder = self.remove.pop(pid, None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        return pid


def _end_orphans(live: set[int]) -> None:
    """End every child of the template that is not a live worker.

    Workers are subreapers, so a process of a live environment stays in its worker's
    tree; a process that reached us belonged to an environment that has ended, and
    ends too (with whatever it started: those reach us in turn).
    """
    for _ in range(100):
        orphans = [pid for pid in sandbox.children(os.getpid()) if pid not in live]
        if not orphans:
            return
        for pid in orphans:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pid in orphans:
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)


def _reap(pid: int, block: bool) -> int | None:
    """The raw wait status of ``pid``, or None if it still runs (``block`` false)."""
    try:
        done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return 0  # already reaped: nothing left to wait for
    return status if done else None


def _fork(
    inherited: Sequence[socket.socket],
    channel_fd: int,
    own_tmp: str | None = None,
    expose: tuple[str, ...] = (),
    serve: Callable[[socket.socket, str | None], int] | None = None,
    *,
    coverage: worker_coverage.CoverageHandoff | None = None,
) -> int:
    """Fork a worker that serves the channel ``channel_fd``; its pid.

    Every worker process starts here or in :func:`_fork_blank`, whoever forks it (see
    serve_forks); ``serve`` is what it does with its channel (default: a fresh
    environment's requests). ``inherited``: the forker's sockets, closed in the child.
    """
    template = os.getpid()
    pid = os.fork()
    if pid:
        # Each worker leads its own process group, so the test process can freeze,
        # thaw and kill it together with any process its handler started. Set on both
        # sides of the fork, so the group exists whichever runs first.
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        return pid
    # The child: an execution environment. Nothing below may return into _serve.
    status = 70
    try:
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
        for sock in inherited:
            sock.close()
        coverage_data = worker_coverage.data_folder(coverage)
        if coverage_data is not None:  # its data files' folder stays the host's
            expose = (*expose, coverage_data)
        # Before the death signal: entering a user namespace would clear it.
        tmp_refused = (
            sandbox.enter_private_tmp(own_tmp, expose) if own_tmp is not None else "not asked"
        )
        set_parent_death_signal()
        if os.getppid() != template:
            os._exit(1)
        sandbox.become_subreaper()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        connect_lines.install()  # a proxy asks for the line behind a C connection
        gc.unfreeze()  # the worker's own garbage is its own business
        if coverage is not None:  # a fork of a measuring worker restarts by itself
            worker_coverage.start_in_worker(coverage)  # saves its data in the os._exit below
        channel = socket.socket(fileno=channel_fd)
        status = (serve or _serve_fresh)(channel, tmp_refused)
    except BaseException:
        with contextlib.suppress(BaseException):
            import traceback

            traceback.print_exc()
    finally:
        _flush()
        # Lambda's sandbox goes as a whole: so does everything this environment started.
        sandbox.end_descendants(os.getpid())
        os._exit(status)


def _fork_blank(
    inherited: Sequence[socket.socket], coverage: worker_coverage.CoverageHandoff | None
) -> BlankWorker:
    """Fork a blank worker for the template's pool (see blank_pool): all of a worker's
    set-up that does not depend on its environment, then a wait for the fork request
    that names it."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    template = os.getpid()
    pid = os.fork()
    if pid:
        theirs.close()
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # as in _fork
        return pid, ours
    status = 70
    try:
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
        for sock in (*inherited, ours):
            sock.close()
        # Before the death signal: entering a user namespace would clear it.
        refused = sandbox.enter_namespaces()
        set_parent_death_signal()
        if os.getppid() != template:
            os._exit(1)
        sandbox.become_subreaper()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        connect_lines.install()  # as in _fork: a blank worker becomes a worker like any
        gc.unfreeze()
        if coverage is not None:
            worker_coverage.start_in_worker(coverage)
        _install_monitors()
        fds: list[int] = []
        message = recv_packet(theirs, fds)
        theirs.close()
        if message is None or not fds:  # the template let go of its pool
            status = 0
        else:
            request = expect(message, ForkRequest)
            expose = request.expose
            coverage_data = worker_coverage.data_folder(coverage)
            if coverage_data is not None:
                expose = (*expose, coverage_data)
            if request.own_tmp is None:
                tmp_refused: str | None = "not asked"
            else:
                tmp_refused = refused or sandbox.bind_private_tmp(request.own_tmp, expose)
            status = _serve_fresh(socket.socket(fileno=fds[0]), tmp_refused)
    except BaseException:
        with contextlib.suppress(BaseException):
            import traceback

            traceback.print_exc()
    finally:
        _flush()
        sandbox.end_descendants(os.getpid())
        os._exit(status)


def _install_monitors() -> None:
    """The network guard, then the connection and client monitors (once per process)."""
    from pytest_lambda_context.observe import clients, connections, netguard

    # Below the socket layer (_socket, UDP, name lookups, threads it starts); first,
    # as the socket monitor calls through to what it wraps.
    netguard.install()
    connections.install()
    # boto3/botocore clients made by function code are counted here too (the aws
    # fixture's accounting); it patches botocore only, and only once imported.
    clients.install()


def _serve_fresh(channel: socket.socket, tmp_refused: str | None) -> int:
    """A fresh worker: an execution environment that has not run any function code."""
    return _Worker(channel, tmp_refused).serve()


def _refresh_finders(code_root_prefix: str) -> None:
    """Forget what the template's import finders knew of the function's code.

    The template may have listed the code root (or a folder in it) before the files
    there existed, or found no folder at a path at all. As importlib.invalidate_caches()
    would, but its listings are refreshed only under the code root: refreshing every
    finder costs a worker about 0.6 ms, and its imports then list every folder anew.
    """
    cache = sys.path_importer_cache
    code_root = code_root_prefix.rstrip(os.sep)
    for path, finder in list(cache.items()):
        if finder is None or not os.path.isabs(path):
            del cache[path]  # no folder there then, or relative to the template's cwd
        elif (path == code_root or path.startswith(code_root_prefix)) and hasattr(
            finder, "invalidate_caches"
        ):
            finder.invalidate_caches()
    # Namespace packages recompute their portions (a portion in the code root).
    bootstrap = sys.modules.get("importlib._bootstrap_external")
    namespace_path = getattr(bootstrap, "_NamespacePath", None)
    if namespace_path is not None and hasattr(namespace_path, "_epoch"):
        namespace_path._epoch += 1
    # importlib.metadata's listings of sys.path folders (a distribution in the code root).
    metadata = sys.modules.get("importlib.metadata")
    if metadata is not None:
        with contextlib.suppress(AttributeError):
            metadata.FastPath.__new__.cache_clear()  # what MetadataPathFinder's does


def _redirect_stdio(fds: list[int]) -> None:
    """Write to the test process's current stdout and stderr from now on.

    The test process sends them when they changed (a new test's capture, ``capfd``),
    so handler output reaches the capture of the test that invoked the handler.
    """
    _flush()
    for target, fd in zip((1, 2), fds, strict=False):
        os.dup2(fd, target)
    for fd in fds:
        os.close(fd)
    fds.clear()


def _flush() -> None:
    # Handler output goes to the test's captured stdout/stderr; flush it per message so
    # it lands in the right test's report, and before any os._exit.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


# --- the worker: one execution environment -------------------------------------------


class _Worker:
    def __init__(self, channel: socket.socket, tmp_refused: str | None) -> None:
        self.channel = channel
        # Why /tmp is the host's (None: it is this environment's own).
        self.tmp_refused = tmp_refused
        # The handler module's attribute as found (None: no init yet). Any: it is not
        # checked for being callable, as in awslambdaric (calling it fails per invocation).
        self.handler: Any = None
        # Set by the init request (a restore's is the snapshot's, renamed).
        self.config: WorkerConfig
        # What to do once the current reply is sent, instead of serving more requests:
        # become a fork server (a SnapStart snapshot, a Managed Instances environment).
        self.then: Callable[[], int] | None = None
        # SnapStart: the snapshot's connections, broken anew in each restored environment.
        self.inherited: list[Inherited] = []
        self.restored_at = 0.0
        # The runtime's log stream and marshaller: set by the init request (_install_runtime).
        self.log: LogStream
        self.tees: tuple[StreamTee, ...] = ()
        self.log_json = False
        self.encoder: ResultEncoder
        self.trace_tag = ""
        self.trace_number = 0
        # C-level drivers (libpq, ...) that function code loaded, reported as they appear.
        self.drivers = DriverWatch()

    def serve(self) -> int:
        """Answer requests until told to stop; returns the process's exit status."""
        channel = self.channel
        # The process that serves the channel: not a child that function code forks.
        serving = os.getpid()
        fds: list[int] = []
        while True:
            try:
                request = recv_message(channel, fds=fds)
            except (EOFError, OSError):
                return 0  # the test process let go of this environment
            if fds:
                _redirect_stdio(fds)
            reply: InvokeReply | PhaseReply | ServingForks
            if isinstance(request, InvokeRequest):
                reply, exit_status = self.invoke(request)
            elif isinstance(request, InitRequest):
                reply, exit_status = self.init(request)
            elif isinstance(request, SnapshotRequest):
                reply, exit_status = self.snapshot(request.offset)
            elif isinstance(request, RestoreRequest):
                reply, exit_status = self.restore(request)
            elif isinstance(request, ForkServerRequest):
                self.then = self.serve_runtime_processes
                reply, exit_status = ServingForks(max_rss_kb=_max_rss_kb()), None
            else:  # Lambda's shutdown phase; then the test process ends this worker
                grace = request.grace if isinstance(request, ShutdownRequest) else 0.0
                handled = _shutdown_phase(grace)
                _flush()
                send_message(channel, ShutdownReady(sigterm_handled=handled))
                continue
            if os.getpid() != serving:
                # A child that function code forked, back from the handler (or the init
                # code) it was forked in: it ends here with the status Python would give
                # it, and never answers for the environment.
                return _child_status(reply, exit_status)
            if not isinstance(reply, ServingForks) and reply.payload is not None:
                # An error: a debugger that had no terminal, say so.
                payload = explain_debugger_quit(reply.payload, self.config.environment_id)
                reply = reply._replace(payload=payload)
            _flush()
            try:
                send_message(channel, reply)
            except (pickle.PicklingError, TypeError, AttributeError):
                send_message(channel, _picklable(reply))
            if exit_status is not None:
                return exit_status
            if self.then is not None:
                return self.then()

    def init(self, request: InitRequest) -> tuple[PhaseReply, int | None]:
        from pytest_lambda_context.observe import connections
        from pytest_lambda_context.observe.scope import set_scope
        from pytest_lambda_context.runtime.clock import shifted_clock
        from pytest_lambda_context.runtime.handler import InitFailure, import_handler

        config = self.config = request.config
        request_id = request.request_id
        os.environ.clear()
        os.environ.update(config.environ)
        # The C library read TZ when the template started (the shell's): TZ=:UTC now.
        time.tzset()
        tempfile.tempdir = config.tmpdir
        sys.path[:] = config.sys_path
        if config.layers:
            self._mount_layers(config.layers)
        os.chdir(config.code_root)
        _refresh_finders(config.code_root_prefix)
        if not connections.installed():  # a blank worker of the pool has them already
            _install_monitors()
        self._install_runtime(config.environ)
        # request_id None: connections of the init phase are the init's, not the
        # first invocation's (ConnectionEvent's contract).
        scope = self.scope(None)
        set_scope(scope)
        started = real_monotonic()
        exit_status = None
        raised = None
        try:
            with shifted_clock(request.offset, config.code_root_prefix):
                self.handler, _ = import_handler(config.handler)
            kind, payload = OutcomeKind.OK, None
        except InitFailure as failure:
            kind, payload = OutcomeKind.INIT_ERROR, failure.payload
            self._report_init_failure(failure.payload)
        except BaseException as exc:
            if is_test_outcome(exc):  # pytest.skip/fail in init code: the test's outcome
                raised = describe_outcome(exc)
                kind, payload = OutcomeKind.INIT_ERROR, None
            else:
                # Init code that exits (or raises KeyboardInterrupt, GeneratorExit...)
                # takes the runtime down: report it, then really exit.
                from pytest_lambda_context.runtime.handler import crash_payload, exit_code

                exit_status = exit_code(exc)
                kind, payload = OutcomeKind.RUNTIME_EXIT, crash_payload(exc, request_id)
        finally:
            set_scope(None)
        duration = (real_monotonic() - started) * 1000.0
        scope.events.extend(self.drivers.news())
        output, echo = self._end_phase()
        reply = PhaseReply(
            kind=kind,
            hooks_ms=None,
            payload=payload,
            duration_ms=duration,
            events=scope.events,
            max_rss_kb=_max_rss_kb(),
            tmp_refused=self.tmp_refused,
            output=output,
            echo=echo,
            raised=raised,
        )
        return reply, exit_status

    def scope(self, request_id: str | None) -> Scope:
        """Where function code's connections and clients are counted (None: init phases)."""
        from pytest_lambda_context.observe.scope import Scope

        config = self.config
        return Scope(
            config.function_name,
            config.environment_id,
            request_id,
            config.code_root_prefix,
            [],
            config.network,
        )

    # -- SnapStart and Managed Instances: a worker that forks others ----------------
    def run_hooks(
        self, run: Callable[[], None], error_type: str, offset: float, exit_status: int
    ) -> tuple[PhaseReply, int | None]:
        """Run SnapStart hooks as function code of the init phase; an error ends the runtime.

        The reply's ``hooks_ms`` is the time since the restore began (its billed duration).
        """
        from pytest_lambda_context.observe.scope import set_scope
        from pytest_lambda_context.runtime.clock import shifted_clock
        from pytest_lambda_context.runtime.errors import error_payload, stack_trace

        scope = self.scope(None)
        set_scope(scope)
        raised = None
        try:
            with shifted_clock(offset, self.config.code_root_prefix):
                run()
            kind, payload, status = OutcomeKind.OK, None, None
        except Exception as exc:
            if is_test_outcome(exc):  # pytest.exit
                raised = describe_outcome(exc)
                kind, payload, status = OutcomeKind.HOOK_ERROR, None, None
            else:
                message = f"{type(exc).__name__}: {exc}"
                trace = stack_trace(exc.__traceback__)
                kind, payload, status = (
                    OutcomeKind.HOOK_ERROR,
                    error_payload(message, error_type, None, trace),
                    exit_status,
                )
        except BaseException as exc:
            if not is_test_outcome(exc):
                raise
            # pytest.skip/fail in a hook: the test's outcome, as in the handler.
            raised = describe_outcome(exc)
            kind, payload, status = OutcomeKind.HOOK_ERROR, None, None
        finally:
            set_scope(None)
        duration = (real_monotonic() - self.restored_at) * 1000.0
        reply = PhaseReply(
            kind=kind,
            hooks_ms=duration,
            payload=payload,
            duration_ms=duration,
            events=scope.events,
            max_rss_kb=_max_rss_kb(),
            tmp_refused=self.tmp_refused,
            output=None,
            echo=None,
            raised=raised,
        )
        return reply, status

    def snapshot(self, offset: float) -> tuple[PhaseReply, int | None]:
        """SnapStart: init has run; run the before-snapshot hooks, then serve restores."""
        from pytest_lambda_context.environments import snapshot_runtime, stale_connections

        self.restored_at = real_monotonic()
        # Exit status 64 when a before-snapshot hook fails, as AWS's runtime client's.
        reply, status = self.run_hooks(
            snapshot_runtime.run_before_snapshot, "Runtime.BeforeSnapshotError", offset, 64
        )
        if status is None:
            # The snapshot's connections end with the machine that made it.
            self.inherited = stale_connections.detach()
            self.then = self.serve_restores
        return reply, status

    def serve_restores(self) -> int:
        """The snapshot: each fork is an execution environment restored from it."""
        from pytest_lambda_context.environments import snapshot_runtime

        channel = self.channel
        gc.freeze()  # the restores share the snapshot's pages as long as they can

        def restore(fd: int, request: ForkRequest) -> int:
            state = snapshot_runtime.capture()
            return _fork(
                [channel],
                fd,
                request.own_tmp,
                request.expose,
                lambda restored, refused: self.restored(restored, refused, state),
            )

        return self._serve_forks(restore)

    def restored(self, channel: socket.socket, tmp_refused: str | None, state: object) -> int:
        """A restored environment: the snapshot's memory, as a Lambda restore leaves it."""
        from pytest_lambda_context.environments import snapshot_runtime, stale_connections

        self.restored_at = real_monotonic()
        snapshot_runtime.resume(state)
        stale_connections.break_inherited(self.inherited)
        self.channel = channel
        self.tmp_refused = tmp_refused
        self.then = None
        return self.serve()

    def restore(self, request: RestoreRequest) -> tuple[PhaseReply, int | None]:
        """Become this environment (its id, /tmp), then run the after-restore hooks."""
        from pytest_lambda_context.environments import snapshot_runtime

        snapshot_runtime.take_tmp(request.tmpdir)
        self.config = self.config._replace(
            environment_id=request.environment_id,
            log_stream_name=request.log_stream_name,
            tmpdir=request.tmpdir,
        )
        os.environ.update(request.environ)
        # Exit status 65 when an after-restore hook fails, as AWS's runtime client's.
        return self.run_hooks(
            snapshot_runtime.run_after_restore, "Runtime.AfterRestoreError", request.offset, 65
        )

    def serve_runtime_processes(self) -> int:
        """A Managed Instances environment: each fork is one of its runtime processes,
        in this environment's own /tmp (not one of its own)."""
        channel = self.channel
        refused = self.tmp_refused

        def runtime_process(fd: int, _request: ForkRequest) -> int:
            return _fork([channel], fd, None, (), lambda ch, _: _Worker(ch, refused).serve())

        return self._serve_forks(runtime_process)

    def _serve_forks(self, fork: Fork) -> int:
        channel = self.channel

        def receive() -> tuple[Message | None, list[int]]:
            fds: list[int] = []
            try:
                return recv_message(channel, fds=fds), fds
            except EOFError:
                return None, []

        return serve_forks(receive, lambda message: send_message(channel, message), fork)

    def _mount_layers(self, layers: tuple[str, ...]) -> None:
        """The layers at /opt, in this environment's own mount namespace; where that is
        refused, their own folders on sys.path in place of /opt's."""
        from pytest_lambda_context.environments import layers as _layers

        needed = [
            sys.prefix,
            sys.base_prefix,
            sys.exec_prefix,
            self.config.code_root,
            *(p for p in sys.path if not p.startswith(_layers.OPT + os.sep)),
        ]
        refused = self.tmp_refused or _layers.mount_layers(layers, needed)
        if refused is not None:
            opt = _layers.opt_sys_paths()
            own = _layers.layer_sys_paths(layers)
            at = sys.path.index(opt[0])
            sys.path[at : at + len(opt)] = own

    def _install_runtime(self, environ: dict[str, str]) -> None:
        """What the runtime sets up before the function's code: awslambdaric's logging,
        stdout and stderr feeding the log stream, its marshaller, Python's own warning
        filters."""
        from pytest_lambda_context.runtime.log_stream import LogStream, StreamTee
        from pytest_lambda_context.runtime.logging_setup import (
            install_runtime_logging,
            runtime_log_settings,
        )
        from pytest_lambda_context.runtime.marshal import ResultEncoder
        from pytest_lambda_context.runtime.warnings_setup import use_lambda_defaults

        use_lambda_defaults()

        log = LogStream(write_through=False)
        log.targets[0], log.targets[1] = sys.stdout, sys.stderr
        self.tees = (StreamTee(1, log), StreamTee(2, log))
        sys.stdout, sys.stderr = self.tees
        install_runtime_logging(log, environ)
        self.log = log
        self.log_json = runtime_log_settings(environ)[0]
        self.encoder = ResultEncoder(environ.get("AWS_EXECUTION_ENV"))
        self.trace_tag = os.urandom(8).hex()
        self.trace_number = 0

    def _report_init_failure(self, payload: ErrorPayload) -> None:
        import logging

        from pytest_lambda_context.runtime.logging_setup import UNHANDLED_EXCEPTION_WARNING

        logging.warning(UNHANDLED_EXCEPTION_WARNING)
        self._report_error(payload)

    def _report_error(self, payload: ErrorPayload) -> None:
        from pytest_lambda_context.runtime.logging_setup import error_lines

        self.log.log_error(error_lines(payload, self.encoder if self.log_json else None))

    def _end_phase(self) -> tuple[list[str], list[tuple[int, str]]]:
        """This phase's log events and the output for the test's streams; the next
        phase starts with none."""
        for tee in self.tees:
            tee.end_phase()
        log = self.log
        output, log.events = log.events, []
        return output, log.take_chunks()

    def invoke(self, request: InvokeRequest) -> tuple[InvokeReply, int | None]:
        from pytest_lambda_context.observe.scope import set_scope
        from pytest_lambda_context.runtime.clock import shifted_clock
        from pytest_lambda_context.runtime.context import LambdaContext, trace_header
        from pytest_lambda_context.runtime.handler import Outcome, call_handler

        config = self.config
        request_id, event, offset = request.request_id, request.event, request.offset
        environ = os.environ
        context = LambdaContext(
            aws_request_id=request_id,
            function_name=config.function_name,
            memory_limit_in_mb=config.memory_mb,
            # Read from the environment at each invocation, as awslambdaric reads them:
            # None where Lambda leaves them unset (SnapStart).
            log_group_name=environ.get("AWS_LAMBDA_LOG_GROUP_NAME"),
            log_stream_name=environ.get("AWS_LAMBDA_LOG_STREAM_NAME"),
            region=config.region,
            deadline_ms=request.deadline_ms,
        )
        headers = request.headers
        if headers is not None:
            from pytest_lambda_context.runtime.context import apply_headers

            apply_headers(context, headers)
        # awslambdaric's _GLOBAL_TENANT_ID: the tenant of this request, for log records.
        self.log.tenant_id = None if headers is None else headers.tenant_id
        scope = self.scope(request_id)
        # As the runtime does for each invocation: the request id for log records, and
        # a new X-Ray trace header in the environment.
        self.log.request_id = request_id
        self.trace_number += 1
        os.environ["_X_AMZN_TRACE_ID"] = trace_header(self.trace_tag, self.trace_number)
        set_scope(scope)
        raised = None
        try:
            if offset:
                with shifted_clock(offset, config.code_root_prefix):
                    outcome = call_handler(self.handler, event, context, request_id, self.encoder)
            else:
                outcome = call_handler(self.handler, event, context, request_id, self.encoder)
            if outcome.kind in (OutcomeKind.HANDLER_ERROR, OutcomeKind.MARSHAL_ERROR):
                self._report_error(outcome.payload)  # type: ignore[arg-type]
        except BaseException as exc:
            if not is_test_outcome(exc):
                raise
            # pytest.skip/fail in the handler (call_handler lets only these through).
            raised = describe_outcome(exc)
            outcome = Outcome(OutcomeKind.OK)
        finally:
            set_scope(None)
        exit_status = None
        payload = outcome.payload
        if outcome.kind is OutcomeKind.RUNTIME_EXIT:
            # sys.exit (or another BaseException) in the handler: the runtime really
            # goes, with the status Python would exit with.
            from pytest_lambda_context.runtime.handler import exit_code

            exit_status = exit_code(outcome.exc) if outcome.exc is not None else 1
        scope.events.extend(self.drivers.news())
        output, echo = self._end_phase()
        reply = InvokeReply(
            kind=outcome.kind,
            result=outcome.result,
            raw=outcome.raw,
            payload=payload,
            duration_ms=outcome.duration_ms,
            events=scope.events,
            max_rss_kb=_max_rss_kb(),
            output=output,
            echo=echo,
            raised=raised,
        )
        return reply, exit_status


def _child_status(reply: InvokeReply | PhaseReply | ServingForks, exit_status: int | None) -> int:
    """How a child of function code that returned into the runtime exits: as Python
    would, 0 unless it exited with a status or raised."""
    if exit_status is not None:
        return exit_status
    if isinstance(reply, ServingForks) or reply.kind is OutcomeKind.OK:
        return 0
    return 1


def _shutdown_phase(grace: float) -> bool:
    """With extensions (``grace`` > 0): function code's SIGTERM handler runs, and its
    other threads until the grace period ends, as on Lambda; whether a handler ran.
    Without them nothing of function code runs: no handler, no atexit callback."""
    if grace <= 0:
        return False
    handler = signal.getsignal(signal.SIGTERM)
    if not callable(handler):
        # SIG_DFL: the runtime dies of it at once, which is what comes next anyway.
        return False
    deadline = real_monotonic() + grace
    try:
        # Past the grace period the test process kills this worker mid-handler.
        signal.raise_signal(signal.SIGTERM)
    except BaseException:
        return True
    if threading.active_count() > 1:
        time.sleep(max(0.0, deadline - real_monotonic()))
    return True


def _max_rss_kb() -> int:
    # Linux reports ru_maxrss in KiB.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _picklable(reply: InvokeReply | PhaseReply | ServingForks) -> Message:
    """The reply without the events (from some monitor) that do not pickle."""
    if isinstance(reply, ServingForks):
        return reply
    kept = []
    for event in reply.events:
        try:
            pickle.dumps(event, _PICKLE)
        except Exception:
            continue
        kept.append(event)
    return reply._replace(events=kept)


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: freezegun ignores the
    # callers' modules by name, and "__main__" frames under the handler would count as
    # a library's and hide the moved clock from it.
    from pytest_lambda_context.environments.worker import main as _main

    sys.exit(_main())
