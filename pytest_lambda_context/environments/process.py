"""``isolation="process"``: each execution environment is a worker process.

Workers are forked by a template process (:mod:`pytest_lambda_context.environments.worker`) that
was started with the same interpreter and has the heavy third-party libraries
imported already, so a cold start costs a fork plus the function's own init code,
and no worker inherits anything the test process or another environment opened.
Between invocations a worker is frozen with SIGSTOP, as Lambda freezes an idle
environment; it is thawed with SIGCONT for the next one.

Workers never outlive the session: the template and the workers set
PR_SET_PDEATHSIG, the template kills its workers when its control socket closes, and
a worker exits when its channel closes.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import socket
import sys
import time
import weakref
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pytest_lambda_context.environments import memory_cgroup, sandbox, test_side_patches
from pytest_lambda_context.environments.base import ExecutionEnvironment
from pytest_lambda_context.environments.channel import (
    ChannelError,
    InitRequest,
    InvokeReply,
    InvokeRequest,
    Message,
    PhaseReply,
    RestoreRequest,
    ServingForks,
    ShutdownReady,
    ShutdownRequest,
    WorkerConfig,
    expect,
    recv_message,
    send_message,
)
from pytest_lambda_context.environments.layers import opt_sys_paths
from pytest_lambda_context.environments.template import PACKAGE_PARENT, sys_path
from pytest_lambda_context.observe import taps as _taps
from pytest_lambda_context.observe.scope import Scope
from pytest_lambda_context.runtime.clock import ms_since, real_monotonic, skew_of_the_tests_clock
from pytest_lambda_context.runtime.errors import service_error
from pytest_lambda_context.runtime.handler import (
    Outcome,
    exit_payload,
    timeout_payload,
)
from pytest_lambda_context.runtime.invoke_headers import InvokeHeaders
from pytest_lambda_context.runtime.records import ErrorPayload, OutcomeKind

if TYPE_CHECKING:
    from pytest_lambda_context.environments.function_config import FunctionConfig
    from pytest_lambda_context.environments.spec import (
        FunctionSink,
        InitializationType,
    )
    from pytest_lambda_context.observe.events import ObservedEvent

__all__ = ["ProcessEnvironment", "WorkerCrashed"]

# As in module isolation: Lambda gives the init phase 10 seconds.
# Past the function's timeout, how long the reply may take to cross the channel.
# A path under the host's /tmp inside a variable's value (a URL's query included).
_TMP_PATH = re.compile(re.escape(sandbox.TMP + os.sep) + r"[^\s?&#;,'\"=]+")
_SLACK = 0.05
# No memory limit (kilobytes): tracemalloc's own memory would count.
_UNLIMITED = 1 << 62
# How long a worker gets to exit by itself (atexit handlers) before SIGKILL.
_EXIT_GRACE = 1.0
_HAVE_PIDFD = hasattr(os, "pidfd_open")
# What a worker answers on its channel.
Reply = TypeVar("Reply", PhaseReply, InvokeReply, ServingForks)


# How often (ms) the test process reads a busy worker's memory (see _await_reply).
_MEMORY_POLL_MS = 10
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4


class WorkerCrashed(Exception):
    """The worker is gone: its raw wait status; ``out_of_memory``: the test process
    ended it for going past ``memory_mb``, as Lambda does."""

    def __init__(self, status: int, out_of_memory: bool = False) -> None:
        super().__init__(status)
        self.status = status
        self.out_of_memory = out_of_memory

    def payload(self, request_id: str | None) -> ErrorPayload:
        """Lambda's Runtime.ExitError for a worker that ended on its own or by a signal,
        or its Runtime.OutOfMemory for one killed past its memory size."""
        if self.out_of_memory:
            prefix = f"RequestId: {request_id} Error: " if request_id else ""
            return service_error(
                "Runtime.OutOfMemory", prefix + "Runtime exited with error: signal: killed"
            )
        code = os.waitstatus_to_exitcode(self.status)
        if code >= 0:
            return exit_payload(code, request_id)
        name = (signal.strsignal(-code) or f"signal {-code}").lower()
        return exit_payload(f"signal: {name}", request_id)


class Forker(Protocol):
    """What forks an environment's worker: the template, or a worker standing in for it."""

    def ready(self) -> None: ...

    def fork(self, channel: socket.socket, own_tmp: str, expose: list[str]) -> int: ...

    def reap(self, pid: int, block: bool = True) -> int | None: ...

    def release_worker(self, pid: int, grace: float, remove: str | None = None) -> bool:
        """Reap ``pid`` and remove ``remove`` off the test's path (True), or leave both
        to the caller (False)."""
        ...


class ProcessEnvironment(ExecutionEnvironment):
    isolation = "process"
    # Frozen with SIGSTOP between invocations (a Managed Instances runtime process is not).
    freezes = True
    # Its memory limit is its cgroup's, where the template gave it one (a process that
    # forks environments has none: they would share it).
    limited_by_cgroup = True

    def __init__(
        self,
        spec: FunctionConfig,
        sink: FunctionSink,
        env_id: str,
        initialization_type: InitializationType,
        variables: dict[str, str],
        *,
        template: Forker | None = None,
        tmpdir: str | None = None,
        owns_tmpdir: bool | None = None,
    ) -> None:
        super().__init__(spec, sink, env_id, initialization_type, variables, tmpdir, owns_tmpdir)
        self._template: Forker = template or sink.worker_template()
        environ = self._initial_environ()
        code_root = spec.code_root
        # As Lambda's: the function's folder, then its layers at /opt (environments/layers.py).
        own = [code_root, *(opt_sys_paths() if spec.layers else ())]
        self._config: WorkerConfig | None = WorkerConfig(
            environ=environ,
            tmpdir=self._tmpdir,
            sys_path=[*own, *(p for p in sys_path() if p not in own)],
            code_root=code_root,
            code_root_prefix=spec.code_root_prefix,
            function_name=spec.function_name,
            environment_id=env_id,
            network=spec.network,
            handler=spec.handler,
            memory_mb=spec.memory_mb,
            region=spec.region,
            log_stream_name=self.log_stream_name,
            layers=spec.layers,
        )
        self.pid: int | None = None
        self._channel: socket.socket | None = None
        self._pidfd: int | None = None
        self._reaped = False
        # Its /tmp folder is the template's to remove (see _stop_worker).
        self._tmp_handed_over = False
        self._frozen = False
        self._busy = False
        self._max_rss_kb = 0
        self._memory_limit_kb = spec.memory_mb * 1024 if not _tracing_memory() else _UNLIMITED
        # The worker's memory cgroup (None: none could be made; the limit is polled).
        self._cgroup: memory_cgroup.WorkerCgroup | None = None
        self._oom_kills = 0
        # Stands for the worker here: proxies record its connections in it.
        self._proxy_scope = Scope(
            spec.function_name, env_id, None, spec.code_root_prefix, [], spec.network
        )
        # Why this environment's literal /tmp is the host's (None: it is its own).
        self.tmp_refused: str | None = None
        # The stdout and stderr the worker writes to, as (device, inode) pairs.
        self._stdio: tuple[tuple[int, int], ...] = ()

    def _host_paths(self) -> list[str]:
        """What this environment needs from the host's /tmp, if it lives there: the code,
        the interpreter and its libraries, pytest's temporary folders, and paths that
        the function's variables name (whole, or inside a URL: a CA file's)."""
        spec = self.spec
        values = self._function_variables.values()
        return [
            spec.code_root,
            PACKAGE_PARENT,
            sys.prefix,
            sys.exec_prefix,
            sys.base_prefix,
            *sys_path(),
            *spec.host_paths,
            *spec.layers,  # mounted at /opt from where they are
            *(path for value in values for path in _TMP_PATH.findall(value)),
        ]

    @property
    def module(self) -> ModuleType:
        raise RuntimeError(
            f"{self.id} runs in worker process {self.pid}: its handler module lives there, "
            "not in the test process. Use isolation='module' for white-box checks of module "
            "state, or have the handler return what the test needs to see."
        )

    # -- the worker process --------------------------------------------------------
    def _spawn(self) -> socket.socket:
        ours, theirs = socket.socketpair()
        try:
            self.pid = self._template.fork(theirs, self._tmpdir, self._host_paths())
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._channel = ours
        # An environment dropped without a shutdown (a function never closed) still
        # closes its channel, which ends its worker, without a ResourceWarning later.
        weakref.finalize(self, ours.close)
        if self._memory_limit_kb < _UNLIMITED and self.limited_by_cgroup:
            # Before any function code runs (it waits for its first message): the
            # limit of the cgroup the template put it in is what memory_mb leaves
            # after what the worker holds already.
            left = self._memory_limit_kb - _resident_kb(self.pid)
            self._cgroup = memory_cgroup.limit(self.pid, left)
        # Connections from this process (or its group) that reach a proxy are ours.
        _taps.register_process(self.pid, self._proxy_scope)
        if _HAVE_PIDFD:
            # Readable once the worker has exited: waiting for it needs no polling.
            with contextlib.suppress(OSError):
                self._pidfd = os.pidfd_open(self.pid)
        return ours

    def _signal(self, signum: int) -> None:
        # The worker leads its own process group (see worker._fork): processes its
        # handler started are frozen, thawed and killed with it. Its pid (the group's
        # id) cannot be reused before we ask the template to reap it.
        if self.pid is not None and not self._reaped:
            os.killpg(self.pid, signum)

    def _request(self, message: Message, timeout: float, expected: type[Reply]) -> Reply:
        """Send ``message``, wait for the worker's reply of type ``expected``.

        Raises TimeoutError past ``timeout`` seconds, WorkerCrashed if the worker is gone.
        """
        channel = self._channel
        assert channel is not None
        deadline = real_monotonic() + timeout
        self._busy = True
        try:
            channel.settimeout(timeout)
            stdio = _stdio()
            if stdio != self._stdio:
                # This test's capture (or capfd) is not where the worker writes now.
                send_message(channel, message, [1, 2])
                self._stdio = stdio
            else:
                send_message(channel, message)
            self._await_reply(channel, deadline)
            reply = expect(recv_message(channel, deadline), expected)
        except TimeoutError:
            raise
        except (EOFError, OSError):  # the worker is gone, or going
            # Read before the reap: the template removes its cgroup then.
            kills = self._cgroup.oom_kills() if self._cgroup is not None else 0
            raise self._crashed(self._wait_exit(), kills) from None
        finally:
            self._busy = False
        if self._cgroup is not None:
            # Its cgroup holds it under the limit; what it shares with the template
            # counts in its resident memory as well, which may read a little over.
            self._max_rss_kb = min(reply.max_rss_kb, self._memory_limit_kb)
            return reply
        if reply.max_rss_kb > self._memory_limit_kb:
            # Past the limit between two reads and back under it by the reply: Lambda's
            # kernel would have killed it at the peak.
            raise self._out_of_memory()
        self._max_rss_kb = reply.max_rss_kb
        return reply

    def _crashed(self, status: int, kills: int) -> WorkerCrashed:
        """The worker ended with ``status``: killed by the kernel past its memory (its
        cgroup's count of such kills, ``kills``, went up), or another crash."""
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        if killed and kills > self._oom_kills:
            self._oom_kills = kills
            self._max_rss_kb = self._memory_limit_kb  # REPORT's Max Memory Used
            return WorkerCrashed(status, out_of_memory=True)
        return WorkerCrashed(status)

    def _await_reply(self, channel: socket.socket, deadline: float) -> None:
        """Wait until the reply starts to arrive, reading the worker's memory meanwhile:
        past ``memory_mb`` it is killed as Lambda kills it (see _out_of_memory)."""
        limit = self._memory_limit_kb
        poller = select.poll()  # not select(): descriptors past 1023 are common here
        poller.register(channel, select.POLLIN)
        polled = self._cgroup is None  # else the kernel holds it to the limit
        while True:
            # Waking every few ms only to read its memory: with a cgroup, once at the end.
            wait_ms = _MEMORY_POLL_MS if polled else max(deadline - real_monotonic(), 0) * 1000
            if poller.poll(wait_ms):
                return
            if real_monotonic() >= deadline:
                raise TimeoutError("no reply from the worker in time")
            if polled and self.pid is not None and _resident_kb(self.pid) > limit:
                raise self._out_of_memory()

    def _out_of_memory(self) -> WorkerCrashed:
        self._max_rss_kb = self._memory_limit_kb  # REPORT's Max Memory Used: the limit
        return WorkerCrashed(self._wait_exit(grace=0.0), out_of_memory=True)

    def _wait_exit(self, grace: float = _EXIT_GRACE) -> int:
        """Give the worker ``grace`` seconds to exit, then end it; its raw wait status."""
        if self._reaped or self.pid is None:
            return 0
        if grace > 0:
            self._await_exit(grace)
        # Exited by itself or not: SIGKILL its group, which also ends what its handler
        # started (Lambda's sandbox goes as a whole). Then the template reaps it.
        self._kill()
        status = self._template.reap(self.pid, block=True)
        self._reaped = True
        return status if status is not None else 0

    def _await_exit(self, grace: float) -> None:
        assert self.pid is not None
        if self._pidfd is not None:
            select.select([self._pidfd], [], [], grace)  # readable once it has exited
            return
        until = real_monotonic() + grace
        while real_monotonic() < until and _process_state(self.pid) not in (None, "Z"):
            time.sleep(0.002)

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._signal(signal.SIGCONT)
            self._signal(signal.SIGKILL)
        self._frozen = False

    def _freeze(self) -> None:
        if not self.freezes:
            return
        with contextlib.suppress(ProcessLookupError):
            self._signal(signal.SIGSTOP)
            self._frozen = True

    def _thaw(self) -> None:
        if self._frozen:
            with contextlib.suppress(ProcessLookupError):
                self._signal(signal.SIGCONT)
            self._frozen = False

    def interrupt(self) -> None:
        """End the worker if a request is in flight (safe from another thread).

        The thread waiting for the reply then sees the worker gone at once and
        finishes the invocation as a crash; invoke_many uses it on Ctrl-C.
        """
        if self._busy:
            with contextlib.suppress(OSError):
                self._signal(signal.SIGKILL)

    def _abandon(self) -> None:
        """Interrupted (Ctrl-C) mid-request: kill the worker now, leave nothing behind."""
        with contextlib.suppress(Exception):
            self._wait_exit(grace=0.0)
        self.shutdown("interrupted")

    # -- init and invoke -------------------------------------------------------------
    @property
    def init_timeout(self) -> float:
        """Seconds the init attempt under way may take: Lambda's 10 s on demand,
        max(130 s, timeout) when provisioned, the function's timeout when an invocation
        runs it again (see ExecutionEnvironment.phase_limit)."""
        return self.phase_limit

    def _init_message(self, request_id: str | None, offset: float) -> InitRequest | RestoreRequest:
        # The config stays until an init succeeds: a failed one is run again.
        assert self._config is not None
        return InitRequest(config=self._config, request_id=request_id, offset=offset)

    def _init_timed_out(self, request_id: str | None) -> Outcome:
        return Outcome(
            OutcomeKind.INIT_ERROR,
            payload=timeout_payload(request_id, self.init_timeout, init=True),
        )

    def _run_init(self, request_id: str | None) -> Outcome:
        self._warn_test_side_patches()
        # What init code opens belongs to the init phase (None), even when an
        # invocation triggered it.
        with self._proxied(None) as proxied:
            outcome = self._init_worker(request_id)
        outcome.events = [*outcome.events, *proxied]
        return outcome

    def _run_invoke(
        self, request_id: str, event: Any, deadline_ms: float, headers: InvokeHeaders | None
    ) -> Outcome:
        self._warn_test_side_patches()
        with self._proxied(request_id) as proxied:
            outcome = self._invoke_worker(request_id, event, deadline_ms, headers)
        outcome.events = [*outcome.events, *proxied]
        return outcome

    def _warn_test_side_patches(self) -> None:
        # The test's monkeypatch/mock.patch of the function's modules stays in this
        # process: say so rather than let the test check something else.
        spec = self.spec
        test_side_patches.check(spec.code_root_prefix, spec.function_name, self.id)

    @contextlib.contextmanager
    def _proxied(self, request_id: str | None) -> Iterator[list[ObservedEvent]]:
        """What reached the plugin's proxies from this worker during one init or
        invocation (C code's connections too), filled in when the block ends."""
        scope = self._proxy_scope
        _taps.settle()  # what came before is not this phase's
        scope.request_id = request_id
        events: list[ObservedEvent] = []
        scope.events = events
        proxied: list[ObservedEvent] = []
        try:
            yield proxied
        finally:
            _taps.settle()
            scope.events = []
            proxied.extend(events)

    def _init_worker(self, request_id: str | None) -> Outcome:
        # The template's own start is the session's cost, not this environment's init.
        self._template.ready()
        if self.pid is not None:
            self._discard_worker()  # a retried init runs in a new runtime process
        started = real_monotonic()
        offset = self.spec.clock.shift + skew_of_the_tests_clock()
        try:
            self._spawn()
            reply = self._request(
                self._init_message(request_id, offset), self.init_timeout + _SLACK, PhaseReply
            )
        except TimeoutError:
            self._kill()
            outcome = self._init_timed_out(request_id)
            outcome.duration_ms = ms_since(started)
            return outcome
        except WorkerCrashed as crash:
            payload = crash.payload(request_id)
            return Outcome(OutcomeKind.RUNTIME_EXIT, payload=payload, duration_ms=ms_since(started))
        except BaseException:
            self._abandon()
            raise
        if reply.raised is not None:
            # Init code half run: the next init starts in a fresh runtime process.
            self._discard_worker()
            self._raise_test_outcome(reply.raised, reply.echo)
        self.tmp_refused = reply.tmp_refused
        kind = reply.kind
        if kind is OutcomeKind.OK:
            # The worker keeps it; a copy of os.environ per environment is not worth
            # holding on to here once init has succeeded.
            self._config = None
            if request_id is None:
                # An init that an invocation triggered is followed by that invocation at
                # once (as on Lambda, with no freeze in between): no SIGSTOP and SIGCONT.
                self._freeze()
        # Init Duration as the test process saw it: the fork as well as the init code,
        # as Lambda's includes the runtime's start.
        return Outcome(
            kind,
            reply.hooks_ms,
            payload=reply.payload,
            duration_ms=ms_since(started),
            events=reply.events,
            # A worker's init reply carries its log (a SnapStart hook's reply does not).
            output=reply.output,
            echo=reply.echo,
        )

    def _discard_worker(self) -> None:
        """End the worker of a failed init attempt; the environment itself lives on."""
        if self.pid is not None:
            _taps.unregister_process(self.pid)  # its pid may be another process's next
        with contextlib.suppress(Exception):
            self._wait_exit(grace=0.0)
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        self._cgroup = None  # the template removes it once it has reaped the worker
        self._oom_kills = 0
        self.pid = None
        self._reaped = False

    def _invoke_worker(
        self, request_id: str, event: Any, deadline_ms: float, headers: InvokeHeaders | None
    ) -> Outcome:
        timeout = self.spec.timeout
        started = real_monotonic()
        self._thaw()
        try:
            request = InvokeRequest(
                request_id=request_id,
                event=event,
                deadline_ms=deadline_ms,
                offset=self.spec.clock.shift + skew_of_the_tests_clock(),
                headers=headers,
            )
            reply = self._request(request, timeout + _SLACK, InvokeReply)
        except TimeoutError:
            self._timed_out(request_id)
            payload = timeout_payload(request_id, timeout)
            return Outcome(OutcomeKind.TIMEOUT, payload=payload, duration_ms=timeout * 1000.0)
        except WorkerCrashed as crash:
            payload = crash.payload(request_id)
            return Outcome(OutcomeKind.RUNTIME_EXIT, payload=payload, duration_ms=ms_since(started))
        except BaseException:
            self._abandon()
            raise
        if reply.kind is not OutcomeKind.RUNTIME_EXIT:  # reaped by the shutdown that follows
            self._freeze()
        if reply.raised is not None:
            self._raise_test_outcome(reply.raised, reply.echo)
        return Outcome(
            reply.kind,
            result=reply.result,
            raw=reply.raw,
            payload=reply.payload,
            duration_ms=reply.duration_ms,
            events=reply.events,
            output=reply.output,
            echo=reply.echo,
        )

    def _timed_out(self, request_id: str) -> None:
        """The request ``request_id`` is past its time: Lambda stops its runtime."""
        self._kill()

    def _release(self) -> None:
        if self.pid is not None:
            _taps.unregister_process(self.pid)
        try:
            if self.pid is not None and not self._reaped:
                self._stop_worker()
        finally:
            if self._channel is not None:
                self._channel.close()
                self._channel = None
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
            if self._owns_tmpdir and not self._tmp_handed_over:
                shutil.rmtree(self._tmpdir, ignore_errors=True)

    def _stop_worker(self) -> None:
        channel = self._channel
        if self.shutdown_reason in ("timeout", "exit") or channel is None:
            self._leave_connections_open(self._proxy_scope)
            self._kill()
            self._hand_over(grace=0.0)
            return
        grace = self.shutdown_grace()
        self._thaw()
        if grace > 0:
            # Lambda's shutdown phase (SIGTERM and the grace period, with extensions), in
            # the worker; then it is ended as Lambda discards an environment. Without
            # extensions nothing of function code runs: nothing to wait for here.
            try:
                channel.settimeout(grace + _EXIT_GRACE)
                send_message(channel, ShutdownRequest(grace=grace))
                until = real_monotonic() + grace + _EXIT_GRACE
                ready = expect(recv_message(channel, until), ShutdownReady)
                self.sigterm_handled = ready.sigterm_handled
            except (OSError, EOFError, ChannelError):
                pass  # gone already, or still in its SIGTERM handler past the grace period
        self._leave_connections_open(self._proxy_scope)
        # Told nothing more, the worker ends in os._exit (no atexit callbacks of
        # function code; coverage data saved), else it is killed.
        channel.close()
        self._channel = None
        self._hand_over(grace=_EXIT_GRACE)

    def _hand_over(self, grace: float) -> None:
        """Leave the ending worker to the template (reaped as it exits, its group ended
        past ``grace``, its /tmp removed), off the test's path; or, where the template
        cannot take it, wait for it here."""
        assert self.pid is not None
        remove = self._tmpdir if self._owns_tmpdir else None
        if self._template.release_worker(self.pid, grace, remove):
            # This process never signals it again.
            self._reaped = True
            self._tmp_handed_over = remove is not None
            return
        self._wait_exit(grace)

    def _max_memory_used_mb(self) -> int:
        return self._max_rss_kb // 1024

    def __repr__(self) -> str:
        return (
            f"<ProcessEnvironment {self.id} of {self.spec.function_name}: {self.state}, "
            f"pid {self.pid}, {len(self.invocations)} invocations>"
        )


def _stdio() -> tuple[tuple[int, int], ...]:
    stats = os.fstat(1), os.fstat(2)
    return tuple((s.st_dev, s.st_ino) for s in stats)


def _tracing_memory() -> bool:
    """tracemalloc in the workers (they inherit PYTHONTRACEMALLOC) costs memory of its
    own, several times the function's: the limit is not enforced then."""
    tracemalloc = sys.modules.get("tracemalloc")
    return bool(os.environ.get("PYTHONTRACEMALLOC")) or (
        tracemalloc is not None and tracemalloc.is_tracing()
    )


def _resident_kb(pid: int) -> int:
    """The process's resident memory (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


def _process_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0]
    except OSError:
        return None
