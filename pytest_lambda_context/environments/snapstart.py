"""``snap_start=True``: every execution environment is a restore of one snapshot.

As Lambda SnapStart does for a published version: the function's init runs once, in
the snapshot process (a worker, limit max(130 s, timeout)), then its before-snapshot
hooks. Each environment is then a fork of that process, a copy of its memory, where
the after-restore hooks run (10 s limit, else ``SnapStartTimeoutException``) before
its first invocation. What a restore leaves as on Lambda: the snapshot's connections
are stale (:mod:`~pytest_lambda_context.environments.stale_connections`), ``random``
resumes the snapshot's state, /tmp holds the snapshot's files
(:mod:`~pytest_lambda_context.environments.snapshot_runtime`).
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import tempfile
import threading
from typing import TYPE_CHECKING, NoReturn

from pytest_lambda_context.environments.channel import PhaseReply, RestoreRequest, SnapshotRequest
from pytest_lambda_context.environments.fork_server import ForkServer
from pytest_lambda_context.environments.process import ProcessEnvironment, WorkerCrashed
from pytest_lambda_context.runtime.clock import skew_of_the_tests_clock
from pytest_lambda_context.runtime.errors import InitError, LambdaError, error_payload
from pytest_lambda_context.runtime.handler import Outcome, timeout_payload
from pytest_lambda_context.runtime.records import ErrorPayload, OutcomeKind

if TYPE_CHECKING:
    from pytest_lambda_context.environments.function_config import FunctionConfig
    from pytest_lambda_context.environments.spec import FunctionSink

__all__ = ["RESTORE_TIMEOUT", "RestoredEnvironment", "SnapStart", "SnapshotProcess"]

# The runtime's load and the after-restore hooks must finish within 10 s.
RESTORE_TIMEOUT = 10.0
# Lambda's SnapStart init may run for max(130 s, the function's timeout).
SNAPSHOT_INIT_TIMEOUT = 130.0
# Lambda does not set these in SnapStart functions (AWS's "Monitoring for SnapStart").
_UNSET = ("AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME")
# Inside the snapshot's folder: the restored environments' own /tmp folders.
_RESTORES = ".restores"
_HOOK_ERROR = (
    "The afterRestore() runtime hook encountered an error. For more information, check "
    "the Amazon CloudWatch logs."
)


class SnapshotProcess(ForkServer):
    """The initialised worker a version's snapshot is made of; restores are its forks."""

    def __init__(self, spec: FunctionConfig, sink: FunctionSink, variables: dict[str, str]) -> None:
        super().__init__(spec, sink, "snapshot", "snap-start", variables)
        self.snapshot_error: ErrorPayload | None = None

    def _initial_environ(self) -> dict[str, str]:
        environ = super()._initial_environ()
        for name in _UNSET:
            environ.pop(name, None)
        return environ

    @property
    def init_timeout(self) -> float:
        return max(SNAPSHOT_INIT_TIMEOUT, self.spec.timeout)

    def take(self) -> None:
        """Init, then the before-snapshot hooks (within the same limit): the snapshot.

        Raises InitError (the init's error, or ``Runtime.BeforeSnapshotError``).
        """
        __tracebackhide__ = True
        self.init()
        remaining = self.init_timeout - (self.init_duration_ms or 0.0) / 1000.0
        self._thaw()  # init left it frozen, as an idle environment
        try:
            request = SnapshotRequest(offset=self.spec.clock.shift + skew_of_the_tests_clock())
            reply = self._request(request, max(remaining, 0.001), PhaseReply)
        except TimeoutError:
            self._fail(timeout_payload(None, self.init_timeout, init=True))
        except WorkerCrashed as crash:  # it exited, or went past memory_mb
            self._fail(crash.payload(None))
        except (OSError, EOFError):
            self._fail(error_payload("the snapshot process died", "Runtime.ExitError", None))
        self._collect(reply.events, None)
        if reply.raised is not None:  # pytest.skip/fail in a before-snapshot hook
            self.shutdown("snapshot failed")
            self._raise_test_outcome(reply.raised, reply.echo)
        if reply.kind is not OutcomeKind.OK:
            assert reply.payload is not None  # a failed hook's error
            self._fail(reply.payload)
        self._freeze()

    def _fail(self, payload: ErrorPayload) -> NoReturn:
        __tracebackhide__ = True
        self.snapshot_error = payload
        self.shutdown("snapshot failed")
        from pytest_lambda_context.environments.base import RemoteTraceback

        trace = payload.get("stackTrace") or []
        cause = RemoteTraceback([*trace, f"{payload['errorType']}: {payload['errorMessage']}"])
        raise InitError(payload) from cause


class SnapStart:
    """A function's published version: its snapshot, made once, forked by each restore.

    Stands in for the worker template of the restored environments (``ready``,
    ``fork``, ``reap``). Lives until the function and every restored environment are
    done with it (an environment handed on to a later test keeps it alive).
    """

    def __init__(self, spec: FunctionConfig, sink: FunctionSink, variables: dict[str, str]) -> None:
        self._spec, self._sink, self._variables = spec, sink, variables
        self.snapshot: SnapshotProcess | None = None
        self.error: LambdaError | None = None
        self._lock = threading.Lock()
        self._users = 1  # the function

    def publish(self) -> SnapshotProcess:
        """Make the snapshot now, unless it was made; a failed publish fails again."""
        __tracebackhide__ = True
        with self._lock:
            if self.error is not None:
                raise self.error
            if self.snapshot is None:
                snapshot = SnapshotProcess(self._spec, self._sink, self._variables)
                try:
                    snapshot.take()
                except LambdaError as exc:
                    self.error = exc
                    raise
                self.snapshot = snapshot
            return self.snapshot

    # -- the template's interface, for RestoredEnvironment ---------------------------
    def ready(self) -> None:
        self.publish()

    def fork(self, channel: socket.socket, own_tmp: str, expose: list[str]) -> int:
        return self.publish().fork(channel, own_tmp, expose)

    def reap(self, pid: int, block: bool = True) -> int | None:
        snapshot = self.snapshot
        if snapshot is None:
            return int(signal.SIGKILL)
        return snapshot.reap(pid, block)

    def release_worker(self, pid: int, grace: float, remove: str | None = None) -> bool:
        return False  # restores are reaped through the snapshot's reap()

    # -- lifetime ------------------------------------------------------------------
    def hold(self) -> None:
        with self._lock:
            self._users += 1

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users > 0:
                return
            snapshot, self.snapshot = self.snapshot, None
        if snapshot is not None:
            snapshot.shutdown("closed")


class RestoredEnvironment(ProcessEnvironment):
    """An execution environment restored from the function's SnapStart snapshot."""

    limited_by_cgroup = False  # forked by the snapshot: its memory is polled

    def __init__(
        self,
        spec: FunctionConfig,
        sink: FunctionSink,
        env_id: str,
        variables: dict[str, str],
        snap_start: SnapStart,
    ) -> None:
        super().__init__(spec, sink, env_id, "snap-start", variables, template=snap_start)
        self._snap_start = snap_start
        snap_start.hold()

    @property
    def init_timeout(self) -> float:
        return RESTORE_TIMEOUT

    def _init_message(self, request_id: str | None, offset: float) -> RestoreRequest:
        return RestoreRequest(
            environment_id=self.id,
            log_stream_name=self.log_stream_name,
            tmpdir=self._tmpdir,
            environ={"TMPDIR": self._tmpdir},
            offset=offset,
        )

    def _init_timed_out(self, request_id: str | None) -> Outcome:
        message = (
            "Lambda couldn't restore the snapshot within the timeout limit: the "
            f"after-restore hooks ran past {RESTORE_TIMEOUT:.0f} seconds."
        )
        payload = error_payload(message, "SnapStartTimeoutException", request_id)
        return Outcome(OutcomeKind.SNAPSTART_TIMEOUT, payload=payload)

    def _run_init(self, request_id: str | None) -> Outcome:
        try:
            snapshot = self._snap_start.publish()  # made at the first cold start
        except LambdaError as exc:
            return Outcome(OutcomeKind.INIT_ERROR, payload=exc.payload)
        self._take_disk(snapshot.tmpdir)
        outcome = super()._run_init(request_id)
        if outcome.kind is OutcomeKind.OK:
            self.restore_duration_ms = outcome.duration_ms
            self.billed_restore_duration_ms = max(1, math.ceil(outcome.result))
        elif outcome.kind is OutcomeKind.HOOK_ERROR:
            hook_error = outcome.payload
            detail = "" if hook_error is None else hook_error["errorMessage"]
            trace = None if hook_error is None else hook_error.get("stackTrace")
            message = f"{_HOOK_ERROR} {detail}".rstrip()
            payload = error_payload(message, "SnapStartException", request_id, trace)
            outcome = Outcome(
                OutcomeKind.SNAPSTART_ERROR, payload=payload, duration_ms=outcome.duration_ms
            )
        return outcome

    def _take_disk(self, snapshot_tmp: str) -> None:
        """This environment's /tmp: a copy of the snapshot's (a snapshot holds the disk too).

        It lives inside the snapshot's own folder, the one place that the restore (a
        fork of the snapshot, inside its private /tmp) can see and make its own /tmp.
        """
        restores = os.path.join(snapshot_tmp, _RESTORES)
        os.makedirs(restores, exist_ok=True)
        own = tempfile.mkdtemp(prefix=f"{self.id}-", dir=restores)
        shutil.copytree(
            snapshot_tmp,
            own,
            symlinks=True,
            dirs_exist_ok=True,
            ignore=lambda folder, names: [_RESTORES] if folder == snapshot_tmp else [],
        )
        shutil.rmtree(self._tmpdir, ignore_errors=True)
        self._tmpdir = own

    def _init(self, request_id: str | None) -> float:
        __tracebackhide__ = True
        try:
            return super()._init(request_id)
        finally:
            # No init of its own: its first REPORT shows Restore Duration instead.
            self.init_duration_ms = None

    def _release(self) -> None:
        try:
            super()._release()
        finally:
            self._snap_start.release()
