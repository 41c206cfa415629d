"""What the docs say of subprocesses: function code's subprocesses are outside the
network guard and outside the socket layer's counting (the guard and the counting live
in the Python process that runs function code). Both isolations.

Run inside a private network namespace with only loopback (test_network_guard's
fixture), so the subprocess's attempt at a far address cannot leave the machine: it
fails with "Network is unreachable", where the guard would have refused it.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from test_network_guard import FAR, LOOPBACK_UP, private_network

__all__ = ["private_network"]  # the fixture, used by name below

HANDLER = """
import socket, subprocess, sys

CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)"


def outcome(run):
    try:
        run()
    except OSError as exc:
        return type(exc).__name__ + ": " + str(exc)
    return "connected"


def handler(event, context):
    host, port = event["host"], event["port"]
    child = subprocess.run(
        [sys.executable, "-c", CONNECT, host, str(port)], capture_output=True, text=True
    )
    last = (child.stderr.strip().splitlines() or ["connected"])[-1]
    here = outcome(lambda: socket.create_connection((host, port), timeout=5).close())
    return {"subprocess": last, "here": here}
"""

TESTS = f"""
import socket
import pytest

pytestmark = pytest.mark.lambda_handler("app.spawn.handler")


def test_a_subprocess_is_not_refused_by_the_guard(lambda_function):
    seen = lambda_function.invoke({{"host": "{FAR}", "port": 9}})
    assert "lambda_network" in seen["here"], seen  # refused in function code's process
    assert "Network is unreachable" in seen["subprocess"], seen  # not refused: tried


def test_a_subprocess_connection_is_not_counted(lambda_function):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        seen = lambda_function.invoke({{"host": "127.0.0.1", "port": port}})
    assert seen == {{"subprocess": "connected", "here": "connected"}}
    # Two connections reached the server; the socket layer saw only function code's.
    assert len(lambda_function.connections.events) == 1
"""


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_subprocesses_are_outside_the_guard_and_the_count(
    pytester: pytest.Pytester, private_network: str, isolation: str
) -> None:
    (pytester.path / "app").mkdir()
    (pytester.path / "app" / "__init__.py").write_text("")
    (pytester.path / "app" / "spawn.py").write_text(textwrap.dedent(HANDLER))
    pytester.makeconftest(LOOPBACK_UP)
    pytester.makepyfile(test_spawn=TESTS)
    command = [
        private_network,
        "-rn",
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-W",
        "error",
        "--lambda-network=loopback",
        f"--lambda-isolation={isolation}",
        str(Path(pytester.path) / "test_spawn.py"),
    ]
    result = pytester.run(*command, timeout=120)
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=2)
