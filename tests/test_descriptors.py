"""Module isolation: descriptors that function code opened with os calls and left open
are released when its environment shuts down, as the end of a Lambda environment
closes them; the ones it closed, and the test's own, are left alone."""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import FunctionMaker, function_maker

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

HANDLER = """
import fcntl
import os

KEPT = []

def handler(event, context):
    if event.get("silence"):  # C output muted for a moment, then stdout put back
        saved = os.dup(1)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
        os.dup2(saved, 1)
        os.close(saved)
        return None
    read_end, write_end = os.pipe()
    lock = os.open(event["lock"], os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # held for the environment's life, as a cache lock
    closed = os.open(event["lock"], os.O_RDONLY)
    os.close(closed)
    KEPT.extend([read_end, write_end, lock])
    return {"pipe": [read_end, write_end], "lock": lock}
"""


@pytest.fixture
def make(project: Callable[[dict[str, str]], Path]) -> Iterator[FunctionMaker]:
    code = project({"app.py": HANDLER})
    with function_maker("app.handler", code_root=code) as maker:
        yield maker


def _target(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def test_descriptors_left_open_are_released_at_shutdown(
    make: FunctionMaker, tmp_path: Path
) -> None:
    lock_path = str(tmp_path / "cache.lock")
    mine_read, mine_write = os.pipe()  # the test's own: never touched
    try:
        function = make()
        opened = function.invoke({"lock": lock_path})
        read_end, write_end = opened["pipe"]
        assert _target(read_end).startswith("pipe:")
        probe = os.open(lock_path, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):  # the environment holds the lock
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            function.close()
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released with it
        finally:
            os.close(probe)
        for fd in (read_end, write_end, opened["lock"]):
            assert _target(fd) == os.devnull  # released, the number kept taken
        assert _target(mine_read).startswith("pipe:")
        os.write(mine_write, b"x")
        assert os.read(mine_read, 1) == b"x"
    finally:
        os.close(mine_read)
        os.close(mine_write)


def test_standard_streams_redirected_and_put_back_stay_the_tests(make: FunctionMaker) -> None:
    before = {fd: _target(fd) for fd in (0, 1, 2)}
    function = make()
    function.invoke({"silence": True})
    function.close()
    assert {fd: _target(fd) for fd in (0, 1, 2)} == before
