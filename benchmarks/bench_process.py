"""Process isolation: cold start and warm round trip, as medians.

    python benchmarks/bench_process.py [--cold 60] [--warm 5000]

Cold: cold_start() + the first invoke() of a handler whose init imports elasticsearch
and builds a client (no request), the template having elasticsearch preloaded: the
fork, the init code and one round trip. Shutting the environment down (SIGCONT,
shutdown message, exit, reap) is timed on its own.
Warm: invoke() of a trivial handler on a warm, frozen worker: SIGCONT, the request,
the reply, SIGSTOP.

Targets (issue 2): cold start at most 25 ms median; warm round trip at most 0.5 ms.
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
    "fn/search.py": """
        import functools, os
        from elasticsearch import Elasticsearch

        client = Elasticsearch(os.environ.get("ES_URL", "http://127.0.0.1:9200"))

        def handler(event, context):
            return {"ok": True}
    """,
}


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", type=int, default=60)
    parser.add_argument("--warm", type=int, default=5000)
    args = parser.parse_args()
    root = make_project(FILES)
    template = WorkerTemplate()
    started = time.perf_counter()
    template.start()
    with LambdaFunction(
        "fn.search.handler", code_root=root, isolation="process", worker_pool=template
    ) as function:
        function.invoke({})  # waits for the template to be ready
        print(
            f"template start, preload {len(template.preloaded)} modules (once): "
            f"{(time.perf_counter() - started) * 1000:.0f} ms"
        )

        cold, init, shutdown = [], [], []
        for _ in range(args.cold):
            t0 = time.perf_counter()
            environment = function.cold_start()
            environment.invoke({})
            t1 = time.perf_counter()
            environment.shutdown()
            t2 = time.perf_counter()
            cold.append(t1 - t0)
            shutdown.append(t2 - t1)
            init.append((environment.init_duration_ms or 0.0) / 1000)
        print(f"cold start (fork + init + first invoke), median of {args.cold}: {median_ms(cold)}")
        print(f"  of which Init Duration: {median_ms(init)}")
        print(f"environment shutdown (exit + reap), median: {median_ms(shutdown)}")

        environment = function.cold_start()
        environment.invoke({})
        event = {"q": "x"}
        warm = []
        for _ in range(args.warm):
            t0 = time.perf_counter()
            environment.invoke(event)
            warm.append(time.perf_counter() - t0)
        print(f"warm invocation round trip, median of {args.warm}: {median_ms(warm)}")
    template.close()


if __name__ == "__main__":
    main()
