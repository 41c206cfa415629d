"""What having the plugin installed costs a suite that does not use it.

    python benchmarks/bench_collect.py

Median wall time of `pytest --collect-only -q` on a small suite (50 tests, no
plugin fixtures), with the plugin and with `-p no:lambda_context`, in fresh
interpreters, alternating to share the machine's noise. Target: <= 20 ms added.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 15


def make_suite() -> Path:
    root = Path(tempfile.mkdtemp(prefix="plc-collect-"))
    (root / "pytest.ini").write_text("[pytest]\n")
    for module in range(5):
        tests = "\n".join(f"def test_{n}():\n    assert {n} == {n}\n" for n in range(10))
        (root / f"test_m{module}.py").write_text(tests)
    return root


def run(root: Path, *extra: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *extra],
        cwd=root,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return (time.perf_counter() - started) * 1000


def main() -> None:
    root = make_suite()
    run(root)  # warm the file system cache and bytecode
    with_plugin, without = [], []
    for _ in range(RUNS):
        with_plugin.append(run(root))
        without.append(run(root, "-p", "no:lambda_context"))
    a, b = statistics.median(with_plugin), statistics.median(without)
    print(
        f"collect-only: with plugin {a:.1f} ms, without {b:.1f} ms, "
        f"added {a - b:.1f} ms median (target <= 20 ms)"
    )


if __name__ == "__main__":
    main()
