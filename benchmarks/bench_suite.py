"""The README's test command, timed as a new contributor runs it: a fresh virtual
environment, the install included.

    python benchmarks/bench_suite.py [--against REF] [--rounds N]

Each round makes a clean clone of the commit to measure (A: this checkout's HEAD;
B: ``--against``, e.g. an earlier commit), a new virtual environment in it, and runs
the README's second quick-start line there exactly as written (read from that
commit's README.md as CI reads it: install, then ``pytest``). With ``--against``, A
and B alternate (A B, B A, ...), so both share the machine's load and neither always
comes second to pip's cache. Each run's output is kept in a folder the script names.
Prints each side's median of the whole line, of its install and of pytest's own time,
the ratio B/A, and the ratio against the 150 s target. A run takes about five minutes
per round and side on a 2-core machine: run it with nothing else on the machine, and
note the load (``uptime``) next to the figures.

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


def readme_test_line(checkout: Path) -> str:
    """The second line of the README's Quick start block, as CI takes it (.ci/run):
    the tests' line (install, then pytest), read from the commit measured."""
    text = (checkout / "README.md").read_text()
    section = text.partition("## Quick start")[2].partition("\n## ")[0]
    block = section.partition("```bash\n")[2].partition("```")[0]
    lines = [line.strip() for line in block.splitlines() if line.strip()]
    if len(lines) != 2:
        raise SystemExit(f"{checkout}: README's Quick start is not one bash block of two lines")
    return lines[1]


def clone(ref: str, into: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(into)], check=True)
    subprocess.run(["git", "-C", str(into), "checkout", "-q", ref], check=True)
    return into


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# What would reach the timed run from this shell and change it (options, plugins,
# coverage of the caller, pip settings).
_NOT_PASSED_ON = ("PYTHONPATH", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "VIRTUAL_ENV")
_NOT_PASSED_ON_PREFIXES = ("PYTEST_XDIST_", "COV_CORE_", "PIP_")


def run_once(ref: str, logs: Path) -> Run:
    """The tests' line in a new clone of ``ref`` and a new virtual environment."""
    work = Path(tempfile.mkdtemp(prefix="plc-bench-suite-"))
    try:
        checkout = clone(ref, work / "checkout")
        line = readme_test_line(checkout)
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        env = {
            name: value
            for name, value in os.environ.items()
            if name not in _NOT_PASSED_ON and not name.startswith(_NOT_PASSED_ON_PREFIXES)
        }
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        install, _, test = line.rpartition("&&")
        log = logs / f"{ref}-{int(time.time())}.log"
        started = time.perf_counter()
        installing = subprocess.run(
            ["bash", "-c", install], cwd=checkout, env=env, capture_output=True, text=True
        )
        installed = time.perf_counter()
        log.write_text(installing.stdout + installing.stderr)
        if installing.returncode != 0:
            raise SystemExit(f"{ref}: the install failed (exit {installing.returncode}): {log}")
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
        with log.open("a") as out:
            out.write(done.stdout + done.stderr)
        if done.returncode != 0:
            raise SystemExit(f"{ref}: the tests failed (exit {done.returncode}): {log}")
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
    logs = Path(tempfile.mkdtemp(prefix="plc-bench-suite-logs-"))
    print(f"logs: {logs}")
    print(f"load: {os.getloadavg()[0]:.2f} (1-minute average, at start)")
    ours: list[Run] = []
    theirs: list[Run] = []
    for round_number in range(args.rounds):
        # A then B, then B then A: neither side always finds pip's cache warmed by the other.
        order = [(head, ours), (args.against, theirs)] if args.against else [(head, ours)]
        if round_number % 2:
            order.reverse()
        for ref, runs in order:
            runs.append(run_once(ref, logs))
    report("A", head, ours)
    whole = median(ours, "whole_s")
    print(f"A against the {TARGET_S:.0f} s target: {whole / TARGET_S:.2f}")
    if theirs:
        report("B", args.against, theirs)
        print(f"B/A, whole line: {median(theirs, 'whole_s') / whole:.2f}")
    print(f"load: {os.getloadavg()[0]:.2f} (1-minute average, at the end)")


if __name__ == "__main__":
    main()
