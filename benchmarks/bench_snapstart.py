"""SnapStart: a restore (fork of the snapshot) against a process cold start, same init.

    python benchmarks/bench_snapstart.py [--rounds 40]

The init imports a few standard modules not preloaded by the template, builds a
client, and does some work (a table of 200,000 entries), as real init code does.
Cold: cold_start() + the first invoke() with isolation="process" (fork of the clean
template, then the init). Restore: the same with snap_start=True once the snapshot is
published (fork of the snapshot, after-restore hooks, first invoke). Medians and their
ratio; shutting each environment down is not timed.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _project import make_project

from pytest_lambda_context import LambdaFunction
from pytest_lambda_context.environments.template import WorkerTemplate

FILES = {
    "fn/__init__.py": "",
    "fn/main.py": """
        import decimal, fractions, csv, email.parser, xml.dom.minidom, os
        from elasticsearch import Elasticsearch
        from snapshot_restore_py import register_after_restore

        client = Elasticsearch(os.environ.get("ES_URL", "http://127.0.0.1:9200"))
        TABLE = {f"key-{n}": n * n for n in range(200_000)}

        @register_after_restore
        def fresh():
            pass

        def handler(event, context):
            return {"ok": len(TABLE)}
    """,
}


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def first_invocations(function: LambdaFunction, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        environment = function.cold_start()
        environment.invoke({})
        times.append(time.perf_counter() - started)
        environment.shutdown()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    root = make_project(FILES)
    template = WorkerTemplate()
    template.start()
    common = {"code_root": root, "isolation": "process", "worker_pool": template}
    with LambdaFunction("fn.main.handler", **common) as function:  # type: ignore[arg-type]
        function.invoke({})  # the template is ready
        cold = first_invocations(function, args.rounds)
    with LambdaFunction("fn.main.handler", snap_start=True, **common) as function:  # type: ignore[arg-type]
        started = time.perf_counter()
        snapshot = function.publish()
        publish = time.perf_counter() - started
        restore = first_invocations(function, args.rounds)
        restore_ms = [e.restore_duration_ms or 0.0 for e in function.environments]
    template.close()
    print(f"publish (init + before-snapshot hooks, once): {publish * 1000:.1f} ms")
    print(f"  of which the snapshot's Init Duration: {snapshot.init_duration_ms:.1f} ms")
    print(f"process cold start + first invoke, median of {args.rounds}: {median_ms(cold):.2f} ms")
    print(f"SnapStart restore + first invoke, median of {args.rounds}: {median_ms(restore):.2f} ms")
    print(f"  of which Restore Duration, median: {statistics.median(restore_ms):.2f} ms")
    print(f"restore / cold start: {median_ms(restore) / median_ms(cold):.2f}x")


if __name__ == "__main__":
    main()
