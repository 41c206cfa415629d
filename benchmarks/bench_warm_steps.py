"""Where a warm invocation's time goes in module isolation: each step on its own.

    python benchmarks/bench_warm_steps.py

Each step of ``invoke()`` is run on its own, on the real objects of a warm environment
(the benchmark reaches into them; the package never does this), ``CALLS`` times per
round, and the median of ``ROUNDS`` rounds is printed in microseconds per call. The
rounds of all steps alternate, so a change in the machine's load reaches every step
alike. What the steps do not add up to is the glue between them (calls, ``try``
blocks, attribute reads).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

from _project import make_project

from pytest_lambda_context import LambdaFunction
from pytest_lambda_context.environments.base import encode_request
from pytest_lambda_context.environments.module import _PHASES, _with_timeout
from pytest_lambda_context.runtime.context import LambdaContext
from pytest_lambda_context.runtime.handler import call_handler

ROUNDS = 15
CALLS = 10_000


def per_call_us(step: Callable[[], object]) -> float:
    started = time.perf_counter()
    for _ in range(CALLS):
        step()
    return (time.perf_counter() - started) / CALLS * 1e6


def main() -> None:
    root = make_project()
    function = LambdaFunction("fn.main.handler", code_root=root)
    event = {"q": "x"}
    function.invoke(event)
    environment = function.environments[0]
    handler = environment._handler
    context = environment._context
    assert context is not None
    encoder = environment._encoder
    private = environment._private
    runtime_logging = environment._runtime_logging
    timeout = function.config.timeout
    outcome = _with_timeout(timeout, call_handler, handler, event, context, "r", encoder)
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    there = os.open(str(root), os.O_RDONLY | os.O_DIRECTORY)

    def swap() -> None:
        _PHASES.acquire()
        environment._enter("r", evict=False)
        environment._exit()
        _PHASES.release()

    def chdir_pair() -> None:
        os.fchdir(there)
        os.fchdir(here)

    def private_state() -> None:
        private.enter()
        private.exit()

    def logging_swap() -> None:
        runtime_logging.enter()
        runtime_logging.exit()

    def context_and_trace() -> None:
        LambdaContext.renewed(context, "r", 0.0)
        environment._trace_headers.next()

    def record() -> None:
        environment._record("r", cold=False, started_at=0.0, outcome=outcome, result=None)
        if len(environment.invocations) > 1000:
            del environment.invocations[:]
            del function.invocations[:]

    steps: dict[str, Callable[[], object]] = {
        "invoke(), whole": lambda: function.invoke(event),
        "direct call of the handler": lambda: handler(event, None),
        "route (the most recent idle environment)": lambda: function._route(None),
        "event copied as the Invoke API's JSON round trip": lambda: encode_request(event),
        "context renewed, trace header made": context_and_trace,
        "swap in and out, whole (phase lock included)": swap,
        "  of it: private state in and out (with the two fchdir)": private_state,
        "  of it: the two fchdir system calls alone": chdir_pair,
        "  of it: the runtime's logging in and out": logging_swap,
        "handler called under the timer, result marshalled": lambda: _with_timeout(
            timeout, call_handler, handler, event, context, "r", encoder
        ),
        "Invocation record kept (REPORT data)": record,
    }
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(ROUNDS):
        for name, step in steps.items():
            samples[name].append(per_call_us(step))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    function.close()
    os.close(here)
    os.close(there)

    width = max(map(len, steps))
    for name, value in medians.items():
        print(f"{name:<{width}}  {value:6.2f} us")
    top_level = [name for name in steps if not name.startswith("  ") and name != "invoke(), whole"]
    glue = medians["invoke(), whole"] - sum(medians[name] for name in top_level)
    overhead = medians["invoke(), whole"] - medians["direct call of the handler"]
    print(f"{'glue (whole minus the top-level steps)':<{width}}  {glue:6.2f} us")
    print(f"{'overhead over a direct call':<{width}}  {overhead:6.2f} us (target <= 5 us)")


if __name__ == "__main__":
    main()
