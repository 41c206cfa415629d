"""lambda_network = loopback refuses every way Python code reaches the network, below
the socket layer too: _socket.socket.connect, connect_ex, UDP connect/sendto/sendmsg,
every name lookup, asyncio, and threads the environment started, also after their
invocation returned. In both isolations.

Each test runs pytest inside a private network namespace (``unshare -rn``) that has
only a loopback interface: even a broken guard cannot send a packet off the machine
(the attempt fails with "network unreachable" instead of the guard's message, and the
test fails)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Addresses of documentation ranges (RFC 5737): never a real host, and unreachable
# from the namespace anyway.
FAR = "192.0.2.1"

HANDLER = """
import asyncio, json, socket, threading, time
import _socket

FAR = {far!r}
LATE = []


def attempt(call):
    try:
        call()
    except OSError as exc:
        return f"{{type(exc).__name__}}: {{exc}}"
    return "went through"


def tcp(call):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return call(sock)


def udp(call):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        return call(sock)


async def _datagram():
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=(FAR, 53)
    )
    transport.close()


async def _stream(host):
    _, writer = await asyncio.open_connection(host, 80)
    writer.close()


PATHS = {{
    "connect": lambda: tcp(lambda s: s.connect((FAR, 80))),
    "connect_ex": lambda: tcp(lambda s: s.connect_ex((FAR, 80))),
    "_socket.socket.connect": lambda: tcp(lambda s: _socket.socket.connect(s, (FAR, 80))),
    "_socket.socket.connect_ex": lambda: tcp(lambda s: _socket.socket.connect_ex(s, (FAR, 80))),
    "super().connect": lambda: tcp(lambda s: super(socket.socket, s).connect((FAR, 80))),
    "create_connection": lambda: socket.create_connection((FAR, 80), timeout=2).close(),
    "connect to a name": lambda: tcp(lambda s: _socket.socket.connect(s, ("example.com", 80))),
    "getaddrinfo": lambda: socket.getaddrinfo("example.com", 80),
    "_socket.getaddrinfo": lambda: _socket.getaddrinfo("example.com", 80),
    "gethostbyname": lambda: socket.gethostbyname("example.com"),
    "gethostbyname_ex": lambda: socket.gethostbyname_ex("example.com"),
    "gethostbyaddr": lambda: socket.gethostbyaddr(FAR),
    "getnameinfo": lambda: socket.getnameinfo((FAR, 80), 0),
    "udp connect": lambda: udp(lambda s: s.connect((FAR, 53))),
    "udp sendto": lambda: udp(lambda s: s.sendto(b"x", (FAR, 53))),
    "udp sendmsg": lambda: udp(lambda s: s.sendmsg([b"x"], [], 0, (FAR, 53))),
    "tcp fast open": lambda: tcp(lambda s: s.sendto(b"x", 0x20000000, (FAR, 80))),
    "asyncio": lambda: asyncio.run(_stream(FAR)),
    "asyncio by name": lambda: asyncio.run(_stream("example.com")),
    "asyncio udp": lambda: asyncio.run(_datagram()),
    "thread": lambda: _in_thread(lambda: tcp(lambda s: s.connect((FAR, 80)))),
}}


def _in_thread(call):
    box = []
    worker = threading.Thread(target=lambda: box.append(attempt(call)))
    worker.start()
    worker.join()
    raise OSError(box[0])


def _late(delay):
    time.sleep(delay)
    LATE.append(attempt(lambda: tcp(lambda s: _socket.socket.connect(s, (FAR, 80)))))
    LATE.append(attempt(lambda: socket.gethostbyname("example.com")))


def handler(event, context):
    if event["path"] == "all":
        return {{name: attempt(call) for name, call in PATHS.items()}}
    if event["path"] == "start late thread":
        threading.Thread(target=_late, args=(event["delay"],), daemon=True).start()
        return "started"
    if event["path"] == "late results":
        # Process isolation froze the thread with its environment: it runs now.
        deadline = time.monotonic() + 10
        while len(LATE) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        return LATE
    if event["path"] == "loopback":
        port = event["port"]
        with socket.create_connection(("127.0.0.1", port)), socket.create_connection(("localhost", port)):
            pass
        return [socket.gethostbyname("localhost"), socket.getnameinfo(("127.0.0.1", port), 0)[0] != ""]
"""

TESTS = """
import socket, time
import pytest

pytestmark = pytest.mark.lambda_handler("app.net.handler")


def test_every_path_is_refused(lambda_function):
    results = lambda_function.invoke({"path": "all"})
    through = {name: r for name, r in results.items() if "lambda_network = loopback" not in r}
    assert through == {}, through
    assert "tried to connect to 192.0.2.1:80 from app/net.py" in results["_socket.socket.connect"]
    assert "tried to send to 192.0.2.1:53" in results["udp sendto"]
    assert "tried to look up 'example.com'" in results["gethostbyname_ex"]
    # The offending line (its PATHS entry), not the line that called it.
    with open("app/net.py") as source:
        lines = source.read().splitlines()
    for name in ("udp sendto", "udp sendmsg", "_socket.socket.connect", "tcp fast open", "connect"):
        line = next(i for i, text in enumerate(lines, 1) if text.startswith(f'    "{name}":'))
        assert f"from app/net.py:{line} in <lambda>" in results[name], (name, results[name])
    assert "tried to look up '192.0.2.1'" in results["gethostbyaddr"]


def test_a_thread_the_environment_started_is_guarded_after_its_invocation(lambda_function):
    assert lambda_function.invoke({"path": "start late thread", "delay": 0.3}) == "started"
    time.sleep(1.0)  # module isolation: the thread tries now, outside any invocation
    late = lambda_function.invoke({"path": "late results"})
    assert len(late) == 2 and all("lambda_network = loopback" in r for r in late), late


def test_loopback_stays_open(lambda_function):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert lambda_function.invoke({"path": "loopback", "port": server.getsockname()[1]}) == [
            "127.0.0.1",
            True,
        ]
"""

LOOPBACK_UP = """
import fcntl, socket, struct

def pytest_configure(config):
    # A new network namespace has its loopback interface down: bring it up.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, request)[:18])[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags | 1))
"""


def _private_network_available() -> str | None:
    unshare = shutil.which("unshare")
    if unshare is None:
        return "needs unshare (util-linux) for a private network namespace"
    probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"unshare -rn is refused here: {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def private_network() -> str:
    reason = _private_network_available()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: the guard tests must run)", pytrace=False)
        pytest.skip(reason)
    return str(shutil.which("unshare"))


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_the_guard_refuses_every_python_path(
    pytester: pytest.Pytester, private_network: str, isolation: str
) -> None:
    (pytester.path / "app").mkdir()
    (pytester.path / "app" / "__init__.py").write_text("")
    (pytester.path / "app" / "net.py").write_text(textwrap.dedent(HANDLER.format(far=FAR)))
    pytester.makeconftest(LOOPBACK_UP)
    pytester.makepyfile(test_guard=TESTS)
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
        str(Path(pytester.path) / "test_guard.py"),
    ]
    result = pytester.run(*command, timeout=120)
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=3)
