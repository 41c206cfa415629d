"""What the socket monitor adds to ``socket.connect``.

Two measurements:

1. The wrapper alone: the monitor installed over a stand-in connect that does
   nothing, so the figure is the monitor's own cost, free of the kernel's noise.
2. Real loopback connects: original vs monitor installed (no scope) vs counting
   (scope active), interleaved in rounds so drift hits all three alike.

Counting walks the stack to the user's frame; the connect is made ``--depth``
library frames below the user's code (requests sits about 20 deep).

    python benchmarks/bench_connect.py [--depth 20] [--rounds 30]

Target: counting costs at most 5 µs per connect; no scope costs ~nothing.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_lambda_context.observe import connections
from pytest_lambda_context.observe.scope import Scope, set_scope

USER_CODE = "def handler(go):\n    return go()\n"


def load_user_module(root: Path) -> Any:
    (root / "app").mkdir()
    (root / "app" / "bench_user.py").write_text(USER_CODE)
    sys.path.insert(0, str(root))
    import app.bench_user as module  # type: ignore[import-not-found]

    return module


def deep(depth: int, fn: Callable[[], Any]) -> Any:
    """Library frames between the user's code and the connect."""
    if depth <= 0:
        return fn()
    return deep(depth - 1, fn)


def per_call_ns(fn: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - start) / calls


def wrapper_only(user: Any, code_root: str, depth: int, rounds: int) -> dict[str, float]:
    """The monitor's cost with the real connect replaced by a no-op."""
    real = socket.socket.connect

    def stand_in(self: socket.socket, address: Any) -> None:
        return None

    sock = socket.socket()
    address = ("127.0.0.1", 9)
    calls = 20_000
    results: dict[str, list[float]] = {"original": [], "installed": [], "counting": []}
    scope = Scope("bench", "env-1", "r", code_root)

    def call() -> None:
        user.handler(lambda: deep(depth, lambda: sock.connect(address)))

    try:
        socket.socket.connect = stand_in  # type: ignore[method-assign]
        for _ in range(rounds):
            results["original"].append(per_call_ns(call, calls))
            connections.install()
            try:
                results["installed"].append(per_call_ns(call, calls))
                previous = set_scope(scope)
                try:
                    results["counting"].append(per_call_ns(call, calls))
                finally:
                    set_scope(previous)
                    scope.events.clear()
            finally:
                connections.uninstall()
    finally:
        socket.socket.connect = real  # type: ignore[method-assign]
        sock.close()
    return {name: statistics.median(values) for name, values in results.items()}


ACCEPTOR = """
import socket, sys
listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
print(listener.getsockname()[1], flush=True)
while True:
    conn, _ = listener.accept()
    conn.close()
"""


def real_connects(user: Any, code_root: str, depth: int, rounds: int) -> dict[str, float]:
    # The listener runs in another process, so that its accept loop does not compete
    # for this process's GIL with the connects being timed.
    acceptor = subprocess.Popen([sys.executable, "-c", ACCEPTOR], stdout=subprocess.PIPE, text=True)
    assert acceptor.stdout is not None
    address = ("127.0.0.1", int(acceptor.stdout.readline()))
    scope = Scope("bench", "env-1", "r", code_root)
    samples: dict[str, list[int]] = {"original": [], "installed": [], "counting": []}
    modes = list(samples)

    def timed(sock: socket.socket) -> int:
        start = time.perf_counter_ns()
        user.handler(lambda: deep(depth, lambda: sock.connect(address)))
        return time.perf_counter_ns() - start

    try:
        # The three modes take turns connect by connect (rotating which goes first),
        # so that drift in the kernel's state hits all of them alike.
        for i in range(rounds * 200):
            for mode in modes[i % 3 :] + modes[: i % 3]:
                sock = socket.socket()
                if mode == "original":
                    samples[mode].append(timed(sock))
                else:
                    connections.install()
                    previous = set_scope(scope if mode == "counting" else None)
                    try:
                        samples[mode].append(timed(sock))
                    finally:
                        set_scope(previous)
                        connections.uninstall()
                sock.close()
            scope.events.clear()
    finally:
        acceptor.kill()
        acceptor.wait()
        acceptor.stdout.close()
    return {name: statistics.median(values) for name, values in samples.items()}


def report(title: str, figures: dict[str, float]) -> None:
    base = figures["original"]
    print(title)
    for name, value in figures.items():
        extra = "" if name == "original" else f"  (+{(value - base) / 1000:.2f} µs)"
        print(f"  {name:<10} {value / 1000:8.2f} µs per connect{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=20, help="library frames below user code")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        user = load_user_module(root)
        code_root = str(root) + os.sep
        wrapper = wrapper_only(user, code_root, args.depth, args.rounds)
        report(f"monitor cost, connect stubbed out (depth {args.depth}, medians):", wrapper)
        real = real_connects(user, code_root, args.depth, args.rounds)
        report(f"real loopback connects (depth {args.depth}, medians):", real)
    overhead_us = (wrapper["counting"] - wrapper["original"]) / 1000
    idle_us = (wrapper["installed"] - wrapper["original"]) / 1000
    print(f"counting overhead {overhead_us:.2f} µs (target <= 5.00): ", end="")
    print("OK" if overhead_us <= 5.0 else "OVER TARGET")
    print(f"no-scope overhead {idle_us:.2f} µs")


if __name__ == "__main__":
    main()
