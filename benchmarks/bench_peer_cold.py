"""Process isolation's cold start side by side with python-lambda-local's fork per call.

    python benchmarks/bench_peer_cold.py [--rounds 100]

One handler file (a trivial handler), run cold both ways, the two alternating round by
round so that the machine's load weighs on both alike:

- ours: cold_start() + the first invoke() (a fork of the template, the handler's
  import, one round trip), then, timed apart, shutting the environment down (exit and
  reap);
- python-lambda-local (``lambda_local.main.run``, as its command line runs): a
  multiprocessing child forked for the call, which imports the handler file, runs
  it, sends the result back through a queue, and is joined.

Medians, and ours over theirs (below 1: ours is faster). Target (issue 8): our cold
start at most 4 ms, and no slower than python-lambda-local.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

from _project import make_project
from lambda_local.main import run as lambda_local_run

from pytest_lambda_context import LambdaFunction
from pytest_lambda_context.environments.template import WorkerTemplate

FILES = {"main.py": "def handler(event, context):\n    return {'ok': True}\n"}


def ms(seconds: float) -> float:
    return seconds * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    root = make_project(FILES)
    event_file = root / "event.json"
    event_file.write_text(json.dumps({"q": "x"}))
    # python-lambda-local logs START/END/REPORT at INFO: not printed, as in a quiet run.
    logging.getLogger().setLevel(logging.WARNING)
    peer_args = argparse.Namespace(
        file=str(Path(root, "main.py")),
        function="handler",
        event=str(event_file),
        timeout=3,
        arn_string="",
        version_name="",
        library=None,
        environment_variables=None,
    )
    template = WorkerTemplate()
    template.start()
    ours, ours_shutdown, theirs = [], [], []
    with LambdaFunction(
        "main.handler", code_root=root, isolation="process", worker_pool=template
    ) as function:
        function.invoke({})  # the template is ready
        lambda_local_run(peer_args)  # and multiprocessing imported
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            environment = function.cold_start()
            environment.invoke({"q": "x"})
            t1 = time.perf_counter()
            environment.shutdown()
            t2 = time.perf_counter()
            lambda_local_run(peer_args)
            t3 = time.perf_counter()
            ours.append(t1 - t0)
            ours_shutdown.append(t2 - t1)
            theirs.append(t3 - t2)
    template.close()
    our_cold = ms(statistics.median(ours))
    our_whole = ms(statistics.median([a + b for a, b in zip(ours, ours_shutdown, strict=True)]))
    peer = ms(statistics.median(theirs))
    print(f"medians of {args.rounds} rounds, alternating:")
    print(f"  ours: cold start (fork + init + first invoke) {our_cold:.2f} ms (target <= 4 ms)")
    print(f"  ours: cold start + shutdown (exit + reap)     {our_whole:.2f} ms")
    print(f"  python-lambda-local: one call (fork per call) {peer:.2f} ms")
    print(
        f"  ratio ours/theirs: cold start {our_cold / peer:.2f}, with shutdown {our_whole / peer:.2f}"
    )


if __name__ == "__main__":
    main()
