"""The template's pool of blank workers: forked ahead, waiting to be told what to become.

A blank worker has done what every worker does before it knows its environment: the
fork itself, its own process group, mount and user namespaces, the parent-death
signal, the subreaper flag, coverage, the network guard and the connection and client
monitors. It then waits on its handoff socket for the fork request (and the channel's
descriptor) of the environment it is to be, binds that environment's folder over
``/tmp`` and serves the channel. A cold start then pays for none of that, only for the
function's own init and the round trips, as on Lambda's pre-provisioned sandboxes.

The template refills the pool in its quiet moments (no request for a few
milliseconds), so that a fork does not compete for the CPU with the cold start that
took the last blank worker. The pool lives in the template, which
starts only when a test uses process isolation: nothing is forked otherwise.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable, Sequence

from pytest_lambda_context.environments.channel import ForkRequest, send_packet

__all__ = ["BlankPool", "BlankWorker"]

# (pid, the template's end of its handoff socket)
BlankWorker = tuple[int, socket.socket]


class BlankPool:
    """Up to ``size`` blank workers, the oldest handed out first."""

    def __init__(self, size: int, fork_blank: Callable[[Sequence[socket.socket]], BlankWorker]):
        self.size = size
        # Forks one blank worker; it gets the handoff sockets the child must close.
        self._fork_blank = fork_blank
        self._blanks: list[BlankWorker] = []

    def pids(self) -> set[int]:
        return {pid for pid, _ in self._blanks}

    def sockets(self) -> list[socket.socket]:
        """The handoff sockets a newly forked process must close (they are not its own)."""
        return [handoff for _, handoff in self._blanks]

    def short(self) -> bool:
        return len(self._blanks) < self.size

    def fill_one(self) -> bool:
        """Fork one blank worker if the pool is short of one; whether it still is."""
        if self.short():
            self._blanks.append(self._fork_blank(self.sockets()))
        return self.short()

    def hand_out(self, channel_fd: int, request: ForkRequest) -> int | None:
        """Give the environment of ``request`` to a blank worker; its pid, or None if
        there is none (the caller forks one the slow way)."""
        while self._blanks:
            pid, handoff = self._blanks.pop(0)
            try:
                send_packet(handoff, request, [channel_fd])
            except OSError:  # it died (killed from outside): the next one
                _end(pid)
                continue
            finally:
                handoff.close()
            return pid
        return None

    def close(self) -> None:
        """End every blank worker (they hold nothing, and nothing waits for them)."""
        blanks, self._blanks = self._blanks, []
        for pid, handoff in blanks:
            handoff.close()
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pid, _ in blanks:
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)


def _end(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.waitpid(pid, 0)
