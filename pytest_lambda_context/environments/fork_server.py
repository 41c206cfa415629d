"""A worker process that forks other workers in the template's place.

Two execution models start processes from something other than the clean template:
a SnapStart restore is a fork of the snapshot (a worker whose init ran), and the
runtime processes of a Lambda Managed Instances environment are forks of that
environment's own process. Both are a :class:`ForkServer`: a worker that was told to
serve fork and reap requests on its channel (``channel.ForkRequest``,
``channel.ReapRequest``, answered by ``worker.serve_forks`` as the template answers
them), with the interface of a :class:`~pytest_lambda_context.environments.process.Forker`,
as :class:`~pytest_lambda_context.environments.template.WorkerTemplate` has it, so a
``ProcessEnvironment`` forks through it like through the template (and the forked
worker starts at the same entry point, ``worker._fork``).
"""

from __future__ import annotations

import signal
import socket
import threading
from typing import Any, TypeVar

from pytest_lambda_context.environments.channel import (
    Forked,
    ForkRequest,
    ForkServerRequest,
    Reaped,
    ReapRequest,
    ServingForks,
    expect,
    recv_message,
    send_message,
)
from pytest_lambda_context.environments.process import ProcessEnvironment
from pytest_lambda_context.runtime.clock import real_monotonic

__all__ = ["ForkServer"]

# A fork or a reap is answered in milliseconds; past this the server is taken for dead.
_ANSWER_TIMEOUT = 30.0
Answer = TypeVar("Answer", Forked, Reaped)


class ForkServer(ProcessEnvironment):
    """A worker that forks workers; between requests it is frozen, like an idle environment."""

    limited_by_cgroup = False  # its forks would share the limit (they are polled instead)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fork_lock = threading.Lock()

    @property
    def tmpdir(self) -> str:
        """The folder that is this worker's /tmp (and what it forks sees of the host's)."""
        return self._tmpdir

    def ready(self) -> None:
        """Forks go through the server at once (it is started by whoever made it)."""

    def fork(self, channel: socket.socket, own_tmp: str, expose: list[str]) -> int:
        request = ForkRequest(own_tmp=own_tmp, expose=tuple(expose))
        reply = self._ask(request, [channel.fileno()], Forked)
        if reply is None:
            raise RuntimeError(f"{self!r} is gone: it cannot fork an environment")
        return reply.pid

    def reap(self, pid: int, block: bool = True) -> int | None:
        reply = self._ask(ReapRequest(pid=pid, block=block), [], Reaped)
        if reply is None:  # the server is gone, and its workers were killed with it
            return int(signal.SIGKILL)
        return reply.status

    def release_worker(self, pid: int, grace: float, remove: str | None = None) -> bool:
        return False  # the environment reaps its runtime processes itself, through reap()

    def _ask(
        self, message: ForkRequest | ReapRequest, fds: list[int], expected: type[Answer]
    ) -> Answer | None:
        with self._fork_lock:
            channel = self._channel
            if channel is None or self.state == "shutdown":
                return None
            self._thaw()
            try:
                channel.settimeout(_ANSWER_TIMEOUT)
                send_message(channel, message, fds)
                reply = recv_message(channel, real_monotonic() + _ANSWER_TIMEOUT)
            except (OSError, EOFError):
                return None
            finally:
                self._freeze()
            return expect(reply, expected)

    def start_serving(self) -> None:
        """Start a fresh worker (no function code) as a fork server."""
        self._template.ready()
        self._spawn()
        try:
            self._request(ForkServerRequest(), _ANSWER_TIMEOUT, ServingForks)
        except BaseException:
            self.shutdown("could not start")
            raise
        self.state = "warm"
        self._freeze()
