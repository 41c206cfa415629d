"""Output written to file descriptors 1 and 2 in a worker, below ``sys.stdout``.

On Lambda the runtime's standard output and error are a pipe into CloudWatch: what C
code or a subprocess writes there is in the log stream beside what Python prints. In a
worker, Python's output already goes through the runtime's stream tees; descriptors 1
and 2 (inherited by the processes the handler starts) are pointed at memory files,
read at the end of each phase into the same log stream. What the worker itself must
still tell the test (its last words when it fails) goes to the test's streams, kept
on other descriptors.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import sys

__all__ = ["DescriptorOutput"]


class DescriptorOutput:
    """Descriptors 1 and 2 as memory files, and where the test's streams went."""

    def __init__(self, real: tuple[int, int] | None = None) -> None:
        # The test's stdout and stderr, moved off 1 and 2 (``real``: where they are
        # already, in a process forked from a worker that had moved them).
        self.real = real if real is not None else (os.dup(1), os.dup(2))
        for fd in (1, 2):
            memory = os.memfd_create(f"lambda-fd{fd}")
            os.dup2(memory, fd)  # inheritable: the handler's processes write there too
            os.close(memory)
        self._read = [0, 0]
        # A character split between two reads is decoded when its end arrives.
        self._decoders = [codecs.getincrementaldecoder("utf-8")("replace") for _ in (1, 2)]

    def renewed(self) -> DescriptorOutput:
        """Memory files of its own for a process forked from this one (a SnapStart
        restore): the parent's stay the parent's."""
        return DescriptorOutput(self.real)

    def redirect(self, fds: list[int]) -> None:
        """The test's streams changed (a new test's capture): write there from now on."""
        for target, fd in zip(self.real, fds, strict=False):
            os.dup2(fd, target)

    def take(self) -> list[tuple[int, str]]:
        """What was written to descriptors 1 and 2 since the last call: (1 or 2, text)."""
        for stream in (sys.__stdout__, sys.__stderr__):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):  # closed by function code
                    stream.flush()
        written: list[tuple[int, str]] = []
        for index, fd in enumerate((1, 2)):
            try:
                size = os.fstat(fd).st_size
                if size <= self._read[index]:
                    continue
                data = os.pread(fd, size - self._read[index], self._read[index])
            except OSError:  # function code closed or replaced the descriptor
                continue
            self._read[index] += len(data)
            text = self._decoders[index].decode(data)
            if text:
                written.append((fd, text))
        return written
