"""The line of code behind a connection only a proxy saw, in process isolation: the
worker's stack, asked at the proxy's accept (tests/test_c_drivers.py checks libpq's
lines in both isolations); and, where it cannot be had, why, in plain words."""

from __future__ import annotations

import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_lambda_context.observe import connect_lines

SPAWNING = """
    import os, subprocess, sys

    CODE = (
        "import socket, sys; s = socket.create_connection(('127.0.0.1', int(sys.argv[1])));"
        " s.sendall(b'x'); s.recv(1); s.close()"
    )

    def handler(event, context):
        port = os.environ["PROXY"].rpartition(":")[2]
        done = subprocess.run([sys.executable, "-c", CODE, port], capture_output=True, text=True)
        return [done.returncode, done.stderr]
"""

CONFTEST = """
    import socket, threading
    import pytest

    @pytest.fixture
    def echo():
        server = socket.create_server(("127.0.0.1", 0))

        def serve():
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                with conn:
                    conn.sendall(conn.recv(1))

        threading.Thread(target=serve, daemon=True).start()
        yield server.getsockname()
        server.close()
"""

TESTS = """
    import pytest

    @pytest.mark.lambda_handler("app.spawn.handler", env={"PROXY": "{proxy:echo}"})
    def test_a_subprocess_connection_says_why_it_has_no_line(lambda_function, tcp_proxy, echo):
        tcp_proxy(*echo, name="echo")
        # The subprocess was not sent the worker's signal (whose default would end it).
        assert lambda_function.invoke({}) == [0, ""]
        (event,) = lambda_function.connections.events
        assert (event.seen_by, event.frame) == ("proxy", None)
        assert "a process that the function's code started (pid" in event.line_unknown
        assert "its line of code is unknown: a process that the function's code started" in (
            event.where()
        )
"""


def test_a_connection_a_subprocess_opened_is_counted_with_the_reason_it_has_no_line(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "app").mkdir()
    (pytester.path / "app" / "__init__.py").write_text("")
    (pytester.path / "app" / "spawn.py").write_text(textwrap.dedent(SPAWNING))
    pytester.makeconftest(textwrap.dedent(CONFTEST))
    pytester.makepyfile(test_spawn=textwrap.dedent(TESTS))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--lambda-isolation=process", "-W", "error"
    )
    result.assert_outcomes(passed=1)


WAITING = """
def wait(started, release):
    started.release()
    release.wait()
"""


@pytest.fixture
def waiting_code(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    # A module of "function code" under a code root of its own.
    (tmp_path / "waiting_code.py").write_text(WAITING)
    sys.path.insert(0, str(tmp_path))
    try:
        import waiting_code

        yield str(tmp_path) + "/", waiting_code
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("waiting_code", None)


@pytest.mark.parametrize("threads", [0, 1, 2])
def test_the_line_comes_from_the_one_thread_in_function_code(
    waiting_code: tuple[str, Any], threads: int
) -> None:
    code_root, module = waiting_code
    started, release = threading.Semaphore(0), threading.Event()
    running = [
        threading.Thread(target=module.wait, args=(started, release)) for _ in range(threads)
    ]
    for thread in running:
        thread.start()
        started.acquire()
    try:
        line, why = connect_lines.current_line(code_root)
    finally:
        release.set()
        for thread in running:
            thread.join()
    if threads == 1:
        assert (line, why) == ("waiting_code.py:4 in wait", None)
    elif threads == 0:
        assert line is None and why is not None and "no thread" in why
    else:
        assert line is None
        assert why == (
            "2 threads of the worker were running the function's code "
            "(waiting_code.py:4 in wait): which one connected is unknown"
        )
