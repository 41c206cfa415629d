"""Process isolation with coverage.py measuring the session, and the test-side patch check.

    python benchmarks/bench_process_tools.py [--cold 40] [--warm 3000]

The same handler package, timed twice through a fresh template each time: once with no
coverage, then with coverage.py measuring this process (as pytest-cov does: source = the
handler's folder, parallel data files), so every worker measures too.

- cold start: cold_start() + the first invoke() (fork, coverage start in the worker,
  init code, one round trip);
- shutdown: the environment's normal end (with coverage: stopping and saving its data
  file);
- warm round trip: invoke() on a warm, frozen worker (the handler calls a few functions
  of its package, so the measuring worker has lines to record).

Also: what the test-side patch check (test_side_patches.check) adds to an invocation,
for a handler package of a few modules that the test process imported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _project import make_project

from pytest_lambda_context import LambdaFunction
from pytest_lambda_context.environments import test_side_patches
from pytest_lambda_context.environments.template import WorkerTemplate

FILES = {
    "fn/__init__.py": "",
    "fn/config.py": "import os\nTABLE = os.environ.get('TABLE', 'docs')\nLIMIT = 10\n",
    "fn/query.py": """
        from fn import config

        def build(q):
            size = min(len(q), config.LIMIT)
            return {"index": config.TABLE, "q": q, "size": size}

        def shape(hits):
            return [hit for hit in hits if hit]
    """,
    "fn/main.py": """
        import json
        from fn import query

        def handler(event, context):
            request = query.build(event.get("q", ""))
            return {"request": request, "hits": query.shape([1, 0, 2])}
    """,
}


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def measure(root: Path, cold_count: int, warm_count: int) -> dict[str, float]:
    template = WorkerTemplate()
    template.start()
    try:
        with LambdaFunction(
            "fn.main.handler", code_root=root, isolation="process", worker_pool=template
        ) as function:
            function.invoke({})  # waits for the template to be ready
            cold, shutdown = [], []
            for _ in range(cold_count):
                t0 = time.perf_counter()
                environment = function.cold_start()
                environment.invoke({"q": "cold"})
                t1 = time.perf_counter()
                environment.shutdown()
                cold.append(t1 - t0)
                shutdown.append(time.perf_counter() - t1)
            environment = function.cold_start()
            environment.invoke({})
            warm = []
            event = {"q": "warm"}
            for _ in range(warm_count):
                t0 = time.perf_counter()
                environment.invoke(event)
                warm.append(time.perf_counter() - t0)
    finally:
        template.close()
    return {
        "cold start": median_ms(cold),
        "shutdown": median_ms(shutdown),
        "warm round trip": median_ms(warm),
    }


def patch_check_us(root: Path, rounds: int = 20000) -> float:
    sys.path.insert(0, str(root))
    import fn.main  # noqa: F401  (the test process imported the handler's package)

    prefix = str(root) + "/"
    test_side_patches.observe(prefix)
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        test_side_patches.check(prefix, "fn-main", "env-1")
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", type=int, default=40)
    parser.add_argument("--warm", type=int, default=3000)
    args = parser.parse_args()
    root = make_project(FILES)

    without = measure(root, args.cold, args.warm)

    import coverage

    data = Path(tempfile.mkdtemp(prefix="plc-bench-cov-")) / ".coverage"
    cov = coverage.Coverage(source=[str(root)], data_file=str(data), data_suffix=True)
    cov.start()
    try:
        with_coverage = measure(root, args.cold, args.warm)
    finally:
        cov.stop()
    files = sorted(p.name for p in data.parent.glob(".coverage.*"))

    print(f"medians ({args.cold} cold starts, {args.warm} warm invocations each)")
    print(f"{'':22} {'no coverage':>12} {'coverage':>12} {'ratio':>7}")
    for name, plain in without.items():
        measured = with_coverage[name]
        print(f"{name:22} {plain:9.3f} ms {measured:9.3f} ms {measured / plain:6.2f}x")
    print(f"worker data files written: {len(files)}")
    print(f"test-side patch check, per invocation: {patch_check_us(root):.2f} us")


if __name__ == "__main__":
    main()
