"""Process isolation: cold start, shutdown and warm round trip, as medians, against the
previous design in the same run.

    python benchmarks/bench_process.py [--cold 60] [--warm 5000] [--gap 20] [--trivial]

Two templates run side by side, their cold starts alternating round by round so that
the machine's load weighs on both alike:

- ours: a pool of 2 blank workers forked ahead (environments/blank_pool.py), refilled
  in the template's quiet moments; shutdown is a message and a hand-over, the template
  reaps the worker and removes its /tmp;
- reference, the previous design: no pool (each cold start forks the template and sets
  the worker up), and a shutdown that waits for the worker's exit, asks the template to
  reap it and removes its /tmp itself.

Cold: cold_start() + the first invoke() of a handler whose init imports elasticsearch
and builds a client (no request), elasticsearch preloaded by the template: what the
test waits for. ``--trivial``: a handler with no init code, where what the pool saves
(the fork and the worker's set-up) weighs most. Shutdown: environment.shutdown(), timed on its own. ``--gap`` ms pass
between rounds, as a test's own code and fixtures would (the pool refills then).
Warm: invoke() of a warm, frozen worker: SIGCONT, the request, the reply, SIGSTOP.

Targets (issue 23): cold start at most 4 ms on a quiet machine; shutdown at most 1 ms
and off the test's path.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from _project import make_project

from pytest_lambda_context import LambdaFunction
from pytest_lambda_context.environments.template import WorkerTemplate

TRIVIAL = {"fn/__init__.py": "", "fn/search.py": "def handler(event, context):\n    return 1\n"}
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


class PreviousTemplate(WorkerTemplate):
    """The design before the pool: every fork from scratch, shutdowns reaped here."""

    def __init__(self) -> None:
        super().__init__(pool=0)

    def release_worker(self, pid: int, grace: float, remove: str | None = None) -> bool:
        return False


def ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", type=int, default=60)
    parser.add_argument("--warm", type=int, default=5000)
    parser.add_argument("--gap", type=float, default=20.0, help="ms between rounds")
    parser.add_argument("--trivial", action="store_true", help="a handler with no init")
    args = parser.parse_args()
    root = make_project(TRIVIAL if args.trivial else FILES)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    templates = {"ours": WorkerTemplate(), "reference": PreviousTemplate()}
    functions = {}
    for name, template in templates.items():
        started = time.perf_counter()
        template.start()
        function = LambdaFunction(
            "fn.search.handler", code_root=root, isolation="process", worker_pool=template
        ).__enter__()
        function.invoke({})  # waits for the template to be ready
        functions[name] = function
        print(
            f"{name}: template start, preload {len(template.preloaded)} modules (once): "
            f"{(time.perf_counter() - started) * 1000:.0f} ms"
        )

    cold: dict[str, list[float]] = {name: [] for name in functions}
    shutdown: dict[str, list[float]] = {name: [] for name in functions}
    init: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(args.cold):
        for name, function in functions.items():
            time.sleep(args.gap / 1000)
            t0 = time.perf_counter()
            environment = function.cold_start()
            environment.invoke({})
            t1 = time.perf_counter()
            environment.shutdown()
            t2 = time.perf_counter()
            cold[name].append(t1 - t0)
            shutdown[name].append(t2 - t1)
            init[name].append((environment.init_duration_ms or 0.0) / 1000)
    print(f"medians of {args.cold} rounds, alternating, {args.gap:.0f} ms apart:")
    for name in functions:
        print(
            f"  {name:9}: cold start (fork + init + first invoke) {ms(cold[name]):6.2f} ms "
            f"(Init Duration {ms(init[name]):.2f} ms); shutdown {ms(shutdown[name]):6.2f} ms"
        )
    print(
        f"  ours / reference: cold start {ms(cold['ours']) / ms(cold['reference']):.2f}, "
        f"shutdown {ms(shutdown['ours']) / ms(shutdown['reference']):.3f}"
    )

    function = functions["ours"]
    environment = function.cold_start()
    environment.invoke({})
    event = {"q": "x"}
    warm = []
    for _ in range(args.warm):
        t0 = time.perf_counter()
        environment.invoke(event)
        warm.append(time.perf_counter() - t0)
    print(f"warm invocation round trip, median of {args.warm}: {ms(warm):.3f} ms")
    for function in functions.values():
        function.__exit__(None, None, None)
    for template in templates.values():
        template.close()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
