"""The README's test command, timed as a new contributor runs it: a fresh virtual
environment, the install included.

    python benchmarks/bench_suite.py [--against REF] [--rounds N]

Each round makes a clean clone of the commit to measure (A: this checkout's HEAD;
B: ``--against``, e.g. an earlier commit), a new virtual environment in it, and runs
the README's second quick-start line there exactly as written (read from README.md:
install, then ``pytest``). With ``--against``, A and B alternate round by round, so both
share the machine's load. Prints each side's median of the whole line, of its install
and of pytest's own time, the ratio B/A, and the ratio against the 150 s target. A run
takes about five minutes per round and side on a 2-core machine: run it with nothing
else on the machine, and note the load (``uptime``) next to the figures.

Needs git, the network access the install needs (package registries), and what the
suite's servers need (see .ci/run: PostgreSQL, MariaDB, Redis, Chromium); tests whose
server is missing skip, which shortens the run, so compare like with like.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 150.0
# pytest's last line: "1076 passed, 8 skipped in 274.54s (0:04:34)"
_SUMMARY = re.compile(r"=+ (?P<counts>.*) in (?P<seconds>[\d.]+)s")


class Run(NamedTuple):
    whole_s: float
    install_s: float
    pytest_s: float  # as pytest reports it
    summary: str


def readme_test_line() -> str:
    """The README's quick-start line that runs the tests (install, then pytest)."""
    for line in (ROOT / "README.md").read_text().splitlines():
        if "--group dev" in line and "pytest" in line:
            return line.strip()
    raise SystemExit("README.md has no quick-start line with '--group dev' and pytest")


def clone(ref: str, into: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(into)], check=True)
    subprocess.run(["git", "-C", str(into), "checkout", "-q", ref], check=True)
    return into


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_once(ref: str, line: str) -> Run:
    """The line in a new clone of ``ref`` and a new virtual environment."""
    work = Path(tempfile.mkdtemp(prefix="plc-bench-suite-"))
    try:
        checkout = clone(ref, work / "checkout")
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        install, _, test = line.rpartition("&&")
        started = time.perf_counter()
        installing = subprocess.run(
            ["bash", "-c", install], cwd=checkout, env=env, capture_output=True, text=True
        )
        installed = time.perf_counter()
        if installing.returncode != 0:
            sys.stdout.write(installing.stdout[-3000:] + installing.stderr[-3000:])
            raise SystemExit(f"{ref}: the install failed (exit {installing.returncode})")
        done = subprocess.run(
            ["bash", "-c", test],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            # As in a terminal, even when this script runs in the background (where
            # SIGINT is inherited ignored and the suite's Ctrl-C tests would wait).
            preexec_fn=_interruptible,
        )
        ended = time.perf_counter()
        if done.returncode != 0:
            sys.stdout.write(done.stdout[-3000:] + done.stderr[-2000:])
            raise SystemExit(f"{ref}: the tests failed (exit {done.returncode})")
        found = _SUMMARY.search(done.stdout.strip().splitlines()[-1])
        pytest_s = float(found["seconds"]) if found else float("nan")
        summary = found["counts"] if found else "?"
        return Run(ended - started, installed - started, pytest_s, summary)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def median(runs: list[Run], field: str) -> float:
    return statistics.median(float(getattr(run, field)) for run in runs)


def report(name: str, ref: str, runs: list[Run]) -> None:
    print(
        f"{name} ({ref}): whole {median(runs, 'whole_s'):.0f} s, install "
        f"{median(runs, 'install_s'):.0f} s, pytest {median(runs, 'pytest_s'):.0f} s "
        f"({runs[-1].summary}); {len(runs)} round(s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", help="a commit to alternate with (B)")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    line = readme_test_line()
    print(f"line: {line}")
    print(f"load: {os.getloadavg()[0]:.2f} (1-minute average, at start)")
    ours: list[Run] = []
    theirs: list[Run] = []
    for _ in range(args.rounds):
        ours.append(run_once(head, line))
        if args.against:
            theirs.append(run_once(args.against, line))
    report("A", head, ours)
    whole = median(ours, "whole_s")
    print(f"A against the {TARGET_S:.0f} s target: {whole / TARGET_S:.2f}")
    if theirs:
        report("B", args.against, theirs)
        print(f"B/A, whole line: {median(theirs, 'whole_s') / whole:.2f}")
    print(f"load: {os.getloadavg()[0]:.2f} (1-minute average, at the end)")


if __name__ == "__main__":
    main()
