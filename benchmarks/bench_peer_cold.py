"""Process isolation's cold start side by side with python-lambda-local's fork per call.

    python benchmarks/bench_peer_cold.py [--rounds 100] [--gap 20]

python-lambda-local 0.1.13 imports ``pkg_resources`` without declaring it: a virtual
environment without setuptools (or with setuptools 81 or later) needs
``pip install "setuptools<81"`` first.

One handler file (a trivial handler), run cold both ways, alternating round by round
so that the machine's load weighs on both alike (``--gap`` ms between rounds, as a
test's own code would leave; the template refills its pool of blank workers then):

- ours: cold_start() + the first invoke() (a blank worker of the template's pool, the
  handler's import, the round trips), then, timed apart, shutting the environment down
  (a message and a hand-over: the template reaps the worker);
- python-lambda-local (``lambda_local.main.run``, as its command line runs): a
  multiprocessing child forked for the call, which imports the handler file, runs
  it, sends the result back through a queue, and is joined.

Medians, and theirs over ours (1 or more: ours is no slower). Targets (issue 23): our
cold start at most 4 ms on a quiet machine; python-lambda-local's call over our cold
start + invoke + shutdown at least 1.0.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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
    parser.add_argument("--gap", type=float, default=20.0, help="ms between rounds")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
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
            time.sleep(args.gap / 1000)
            t0 = time.perf_counter()
            environment = function.cold_start()
            environment.invoke({"q": "x"})
            t1 = time.perf_counter()
            environment.shutdown()
            t2 = time.perf_counter()
            time.sleep(args.gap / 1000)
            t_peer = time.perf_counter()
            lambda_local_run(peer_args)
            t3 = time.perf_counter()
            ours.append(t1 - t0)
            ours_shutdown.append(t2 - t1)
            theirs.append(t3 - t_peer)
    template.close()
    our_cold = ms(statistics.median(ours))
    our_whole = ms(statistics.median([a + b for a, b in zip(ours, ours_shutdown, strict=True)]))
    peer = ms(statistics.median(theirs))
    our_shutdown = ms(statistics.median(ours_shutdown))
    print(f"medians of {args.rounds} rounds, alternating, {args.gap:.0f} ms apart:")
    print(f"  ours: cold start (init + first invoke)    {our_cold:.2f} ms (target <= 4 ms)")
    print(f"  ours: shutdown (message + hand-over)      {our_shutdown:.2f} ms")
    print(f"  ours: cold start + invoke + shutdown      {our_whole:.2f} ms")
    print(f"  python-lambda-local: one call (fork per call) {peer:.2f} ms")
    print(
        f"  theirs/ours (>= 1.0: ours no slower): cold start {peer / our_cold:.2f}, "
        f"with shutdown {peer / our_whole:.2f}"
    )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
