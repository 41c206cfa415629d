"""``per_environment_concurrency=N``: Lambda Managed Instances' execution environments.

On Lambda Managed Instances the Python runtime serves up to N requests at once per
execution environment (``PerExecutionEnvironmentMaxConcurrency``), one per runtime
process: N processes, each with its own init and module state, sharing the
environment's /tmp, with ``AWS_LAMBDA_MAX_CONCURRENCY=N`` set. AWS's runtime client
starts them from its bootstrap process before any function code is loaded; here the
environment's own process (a fork server, forked from the clean template) forks them.

The environment is initialised when it is created (Managed Instances start
environments ahead of traffic, so no request waits for an init), and it is never
frozen: it stays active between invocations.

Errors, as AWS's guide describes them for Managed Instances (not as in the other
models): a request past its timeout gets its timeout error, but its code is not
stopped; its runtime process takes no other request until that code returns (the
late result is dropped). A runtime process that crashes (or is killed past the memory
size) is gone; the environment goes on with the others, and ends when none is left.
"""

from __future__ import annotations

import queue
import select
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pytest_lambda_context.environments.base import ExecutionEnvironment
from pytest_lambda_context.environments.channel import (
    ChannelError,
    InvokeReply,
    expect,
    recv_message,
)
from pytest_lambda_context.environments.fork_server import ForkServer
from pytest_lambda_context.environments.process import ProcessEnvironment
from pytest_lambda_context.runtime.clock import real_monotonic
from pytest_lambda_context.runtime.errors import TooManyRequestsError, throttle_payload
from pytest_lambda_context.runtime.handler import Outcome, exit_payload
from pytest_lambda_context.runtime.records import OutcomeKind

if TYPE_CHECKING:
    from pytest_lambda_context.environments.function_config import FunctionConfig
    from pytest_lambda_context.environments.spec import (
        FunctionSink,
        InitializationType,
    )
    from pytest_lambda_context.runtime.invoke_headers import InvokeHeaders

__all__ = ["INITIALIZATION_TYPE", "ManagedInstanceEnvironment", "RuntimeProcess"]

INITIALIZATION_TYPE: InitializationType = "lambda-managed-instances"
# Seconds to read a late reply that has started to arrive, and between two looks for a
# free runtime process while all are taken.
_LATE_READ = 5.0
_WAIT_STEP = 0.02


class RuntimeProcess(ProcessEnvironment):
    """One runtime process of a Managed Instances environment (not an environment itself)."""

    freezes = False  # a Managed Instances environment keeps running between requests
    limited_by_cgroup = False  # forked by the environment's server: its memory is polled

    def __init__(
        self,
        spec: FunctionConfig,
        sink: FunctionSink,
        env_id: str,
        variables: dict[str, str],
        server: ForkServer,
        tmpdir: str,
    ) -> None:
        super().__init__(
            spec, sink, env_id, INITIALIZATION_TYPE, variables, template=server, tmpdir=tmpdir
        )
        # The request whose code still runs past its timeout (None: none).
        self.late_request: str | None = None

    def _initial_environ(self) -> dict[str, str]:
        environ = super()._initial_environ()
        environ["AWS_LAMBDA_MAX_CONCURRENCY"] = str(self.spec.per_environment_concurrency)
        return environ

    def _timed_out(self, request_id: str) -> None:
        # Managed Instances do not enforce the timeout: the code runs on.
        self.late_request = request_id

    def late_reply(self) -> InvokeReply | None:
        """The late request's reply once its code has returned (None: still running).

        Raises EOFError (or ChannelError, OSError, ValueError) when the process is gone
        meanwhile.
        """
        channel = self._channel
        if channel is None:
            raise EOFError("the runtime process is gone")
        poller = select.poll()
        poller.register(channel, select.POLLIN)  # ValueError if closed meanwhile
        if not poller.poll(0):
            return None
        channel.settimeout(_LATE_READ)
        reply = expect(recv_message(channel, real_monotonic() + _LATE_READ), InvokeReply)
        self.late_request = None
        return reply

    def ended_with(self, reply: InvokeReply) -> bool:
        """Whether the runtime process is gone after ``reply``: its code exited the
        runtime, or went past the memory size (where no cgroup held it)."""
        if reply.kind is OutcomeKind.RUNTIME_EXIT:
            return True
        return self._cgroup is None and reply.max_rss_kb > self._memory_limit_kb


class ManagedInstanceEnvironment(ExecutionEnvironment):
    """An execution environment that serves up to N requests at once, one per process."""

    isolation = "process"

    def __init__(
        self,
        spec: FunctionConfig,
        sink: FunctionSink,
        env_id: str,
        initialization_type: InitializationType,
        variables: dict[str, str],
    ) -> None:
        # Whatever asked for it, a Managed Instances environment starts the same way.
        super().__init__(spec, sink, env_id, INITIALIZATION_TYPE, variables)
        count = spec.per_environment_concurrency or 1
        # The environment's own process (its /tmp is the environment's): it forks the
        # runtime processes, which share it.
        self._server = ForkServer(
            spec, sink, env_id, INITIALIZATION_TYPE, variables, tmpdir=self._tmpdir
        )
        self.processes = [
            RuntimeProcess(spec, sink, env_id, variables, self._server, self._tmpdir)
            for _ in range(count)
        ]
        # The idle runtime processes, the most recently used first.
        self._idle: queue.LifoQueue[RuntimeProcess] = queue.LifoQueue()
        # Runtime processes still running a request past its timeout, and those
        # serving a request now.
        self._late: list[RuntimeProcess] = []
        self._in_flight: set[RuntimeProcess] = set()
        self._lock = threading.Lock()

    # Busy, for routing: its init is under way, or no runtime process is free now
    # (Lambda turns requests away from a full environment). The base class sets it
    # around its own phases: kept only for the init (see can_take).
    @property
    def busy(self) -> bool:
        if self.state == "new":
            return self._initialising
        return not self.can_take(now=True)

    @busy.setter
    def busy(self, value: bool) -> None:
        self._initialising = value

    def can_take(self, now: bool = False) -> bool:
        """Whether a request sent here is served: by a free runtime process, or
        (``now`` False) by one serving a request now, once it is done. A process
        still in a timed-out request's code comes free only when that code returns,
        if ever."""
        if self.state != "warm":
            return self.state == "new"
        self._take_back_late()
        if not self._idle.empty():
            return True
        return not now and bool(self._in_flight)

    @property
    def module(self) -> ModuleType:
        raise RuntimeError(
            f"{self.id} runs its handler in {len(self.processes)} runtime processes, each "
            "with its own module: have the handler return what the test needs to see."
        )

    def _run_init(self, request_id: str | None) -> Outcome:
        started = real_monotonic()
        self._server.start_serving()
        # The runtime starts all its processes at once; each runs the function's init.
        with ThreadPoolExecutor(max_workers=len(self.processes)) as pool:
            outcomes = list(pool.map(lambda p: p._run_init(request_id), self.processes))
        events = [event for outcome in outcomes for event in outcome.events]
        # Every runtime process's init output, in the environment's one log stream.
        output = [line for outcome in outcomes for line in outcome.output or ()]
        echo = [chunk for outcome in outcomes for chunk in outcome.echo or ()]
        duration = (real_monotonic() - started) * 1000.0
        for outcome in outcomes:
            if outcome.kind is not OutcomeKind.OK:
                return Outcome(
                    outcome.kind,
                    payload=outcome.payload,
                    duration_ms=duration,
                    events=events,
                    output=output,
                    echo=echo,
                )
        for process in self.processes:
            process.state = "warm"
            self._idle.put(process)
        return Outcome(
            OutcomeKind.OK, duration_ms=duration, events=events, output=output, echo=echo
        )

    def _run_invoke(
        self, request_id: str, event: Any, deadline_ms: float, headers: InvokeHeaders | None
    ) -> Outcome:
        process = self._free_process()
        if process is None:
            return Outcome(
                OutcomeKind.RUNTIME_EXIT,
                payload=exit_payload("every runtime process has exited", request_id),
            )
        try:
            outcome = process._run_invoke(request_id, event, deadline_ms, headers)
        finally:
            with self._lock:
                self._in_flight.discard(process)
        if outcome.kind is OutcomeKind.RUNTIME_EXIT:
            process.shutdown("exit")  # the others go on serving
        elif outcome.kind is OutcomeKind.TIMEOUT:
            with self._lock:
                self._late.append(process)  # free again when its code returns
        else:
            self._idle.put(process)
        return outcome

    def _free_process(self) -> RuntimeProcess | None:
        """A free runtime process: one now, or the next that a request in flight
        frees. None: every runtime process is gone. TooManyRequestsError when every
        one left runs a timed-out request's code (Lambda rejects the request)."""
        while True:
            self._take_back_late()
            try:
                process = self._idle.get(timeout=_WAIT_STEP)
            except queue.Empty:
                if self._all_gone():
                    return None
                with self._lock:
                    waiting_for_none = not self._in_flight
                if waiting_for_none and self._idle.empty():
                    raise TooManyRequestsError(throttle_payload()) from None
                continue
            with self._lock:
                self._in_flight.add(process)
            return process

    def _take_back_late(self) -> None:
        """Free the runtime processes whose late request has returned: its result is
        dropped (the caller had its timeout error), what its Python code connected to
        is counted. One that the late code ended (an exit, past its memory) is gone,
        and the environment with its last one."""
        if not self._late:
            return
        gone: list[RuntimeProcess] = []
        with self._lock:
            for process in list(self._late):
                request_id = process.late_request
                try:
                    reply = process.late_reply()
                except (EOFError, OSError, ValueError, TimeoutError, ChannelError):
                    self._late.remove(process)
                    gone.append(process)
                    continue
                if reply is None:
                    continue
                self._late.remove(process)
                self._collect(reply.events, request_id)
                if process.ended_with(reply):
                    gone.append(process)
                else:
                    self._idle.put(process)
        for process in gone:
            process.shutdown("exit")
        if gone and self.state == "warm" and self._all_gone():
            self.shutdown("exit")

    def _all_gone(self) -> bool:
        """Every runtime process has exited (the environment cannot serve again)."""
        return all(p.state == "shutdown" for p in self.processes)

    def _ended_by(self, kind: OutcomeKind) -> str | None:
        if kind is OutcomeKind.TIMEOUT:
            return None
        if kind is OutcomeKind.RUNTIME_EXIT:
            return "exit" if self._all_gone() else None
        return super()._ended_by(kind)

    def interrupt(self) -> None:
        for process in self.processes:
            process.interrupt()

    def _release(self) -> None:
        try:
            for process in self.processes:
                # Still in a timed-out request's code: nothing to wait for, it is killed.
                late = process.late_request is not None
                process.shutdown("timeout" if late else self.shutdown_reason or "shutdown")
        finally:
            self._server.shutdown(self.shutdown_reason or "shutdown")
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def _max_memory_used_mb(self) -> int:
        return max(process._max_memory_used_mb() for process in self.processes)

    def __repr__(self) -> str:
        return (
            f"<ManagedInstanceEnvironment {self.id} of {self.spec.function_name}: "
            f"{self.state}, {len(self.processes)} processes, {len(self.invocations)} invocations>"
        )
