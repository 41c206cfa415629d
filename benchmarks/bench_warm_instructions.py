"""Instructions per warm invocation in module isolation, counted by callgrind: a
measure that the machine's load does not move.

    python benchmarks/bench_warm_instructions.py [--calls N]

Runs this script's child under ``valgrind --tool=callgrind`` three times: N warm
``invoke()`` calls of a trivial handler, N direct calls of the handler, and none. Each
of the first two minus the third, divided by N, is the instructions per call (the
process's start, imports and the environment's cold start cancel out); their ratio is
the ratio against a direct call. User-space instructions only: system calls (two
``fchdir`` per warm invocation) are not counted. Needs valgrind (Linux).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _project import make_project

_TOTAL = re.compile(r"^summary:\s+(\d+)", re.MULTILINE)


def child(root: str, mode: str, calls: int) -> None:
    """What runs under callgrind: a warm environment, then ``calls`` calls."""
    from pytest_lambda_context import LambdaFunction

    function = LambdaFunction("fn.main.handler", code_root=root)
    event = {"q": "x"}
    function.invoke(event)  # the cold start, in every run alike
    # The test's own copy of the handler, for the direct calls (imported in every run).
    sys.path.insert(0, root)
    from fn.main import handler  # type: ignore[import-not-found]

    if mode == "invoke":
        for _ in range(calls):
            function.invoke(event)
    elif mode == "direct":
        for _ in range(calls):
            handler(event, None)
    function.close()


def instructions(root: Path, mode: str, calls: int) -> int:
    """The whole run's instruction count under callgrind."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--child",
                str(root),
                mode,
                str(calls),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # The same hash seed in every run: dict and set layouts, and so the work,
            # alike in each.
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        found = _TOTAL.search(out.read_text())
        if found is None:
            raise SystemExit(f"no summary line in {out}")
        return int(found.group(1))


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    root = make_project()
    try:
        baseline = instructions(root, "none", 0)
        invoked = instructions(root, "invoke", args.calls) - baseline
        direct = instructions(root, "direct", args.calls) - baseline
    finally:
        shutil.rmtree(root, ignore_errors=True)
    per_invoke, per_direct = invoked / args.calls, direct / args.calls
    print(f"instructions per warm invoke(): {per_invoke:,.0f}")
    print(f"instructions per direct call:   {per_direct:,.0f}")
    print(f"ratio invoke()/direct call:     {per_invoke / per_direct:.1f}")


if __name__ == "__main__":
    main()
