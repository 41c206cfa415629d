"""What having the plugin installed costs a suite that does not use it.

    python benchmarks/bench_collect.py [--runs N]

Whole-process wall time of `pytest --collect-only -q` on a plain suite (200 tests in
10 modules, none using the plugin) with the plugin (A) and with `-p no:lambda_context`
(B), each in a fresh interpreter, alternating A and B so both share the machine's
noise; medians of each, and the difference. Measured twice: with bytecode caches as
usual, and with PYTHONDONTWRITEBYTECODE=1 (common in CI images), where pytest rewrites
the asserts of every module of a plugin's distribution it imports at every start.
Target: <= 10 ms added. Note the machine's load (`uptime`) next to the figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

MODULES = 10
TESTS_PER_MODULE = 20
TARGET_MS = 10.0


def make_suite() -> Path:
    root = Path(tempfile.mkdtemp(prefix="plc-collect-"))
    (root / "pytest.ini").write_text("[pytest]\n")
    for module in range(MODULES):
        tests = "\n".join(
            f"def test_{n}():\n    assert {n} == {n}\n" for n in range(TESTS_PER_MODULE)
        )
        (root / f"test_m{module}.py").write_text(tests)
    return root


class Run(NamedTuple):
    wall_ms: float
    cpu_ms: float  # user + system time of the process: less disturbed by other load


def run(root: Path, env: dict[str, str], *extra: str) -> Run:
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([*command, *extra], cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = (time.perf_counter() - started) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(wall, cpu * 1000)


class Figures(NamedTuple):
    with_plugin: float
    without: float
    added: float  # median of the pairwise differences


def figures(a: list[float], b: list[float]) -> Figures:
    return Figures(
        statistics.median(a),
        statistics.median(b),
        statistics.median(x - y for x, y in zip(a, b, strict=True)),
    )


def measure(root: Path, runs: int, no_bytecode: bool) -> tuple[Figures, Figures]:
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    if no_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    # Warm the file system cache and (where allowed) the bytecode caches of both sides.
    run(root, env)
    run(root, env, "-p", "no:lambda_context")
    with_plugin: list[Run] = []
    without: list[Run] = []
    for index in range(runs):
        # Alternate which side goes first, so neither always follows the other.
        if index % 2:
            without.append(run(root, env, "-p", "no:lambda_context"))
            with_plugin.append(run(root, env))
        else:
            with_plugin.append(run(root, env))
            without.append(run(root, env, "-p", "no:lambda_context"))
    wall = figures([r.wall_ms for r in with_plugin], [r.wall_ms for r in without])
    cpu = figures([r.cpu_ms for r in with_plugin], [r.cpu_ms for r in without])
    return wall, cpu


def load() -> str:
    try:
        return ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=31, help="pairs of runs per setting")
    runs = parser.parse_args().runs
    root = make_suite()
    tests = MODULES * TESTS_PER_MODULE
    print(f"pytest --collect-only of {tests} plain tests, {runs} alternating pairs; load {load()}")
    for no_bytecode in (False, True):
        wall, cpu = measure(root, runs, no_bytecode)
        setting = "PYTHONDONTWRITEBYTECODE=1" if no_bytecode else "bytecode cached"
        verdict = "met" if wall.added <= TARGET_MS else "MISSED"
        print(
            f"{setting}: wall with plugin {wall.with_plugin:.1f} ms, without "
            f"{wall.without:.1f} ms, added {wall.added:+.1f} ms (median of pairs; target "
            f"<= {TARGET_MS:.0f} ms: {verdict}); CPU time added {cpu.added:+.1f} ms "
            f"({cpu.with_plugin:.1f} against {cpu.without:.1f})"
        )
    print(f"load after: {load()}")


if __name__ == "__main__":
    main()
