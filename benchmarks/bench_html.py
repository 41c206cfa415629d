"""What --lambda-html costs at the end of a session: render time and file size.

    python benchmarks/bench_html.py

Records come from real functions (module isolation), shaped as sessions run them,
and go through the plugin's own record building (function_record) as with
--lambda-html. Prints the median CPU time of 5 renders per shape, the page's size, and the
cost of keeping every invocation in the records (which --lambda-html needs).
Targets: a session of 10,000 invocations renders in under a second, and a single
test's loop of 100,000 warm invocations stays a small page (runs are one bar).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from _project import make_project

from pytest_lambda_context import LambdaFunction
from pytest_lambda_context.plugin.function_records import function_record
from pytest_lambda_context.plugin.history import SessionHistory
from pytest_lambda_context.plugin.html_report import render


def session(tests: int, invocations: int, concurrency: int = 1) -> list[dict[str, Any]]:
    root = make_project()
    records = []
    for number in range(tests):
        with LambdaFunction("fn.main.handler", code_root=root) as function:
            if concurrency > 1:
                function.invoke_many([{"q": "x"}] * invocations, concurrency=concurrency)
            else:
                for _ in range(invocations):
                    function.invoke({"q": "x"})
            records.append(
                function_record(function, f"tests/test_x.py::test_{number}", {}, invocations=True)
            )
    return records


def median_ms(work: Callable[[], object], repeats: int = 5) -> float:
    # CPU time of this process: the work is single-threaded, and on a shared machine
    # the wall clock would mostly measure the neighbours.
    times = []
    for _ in range(repeats):
        started = time.process_time()
        work()
        times.append((time.process_time() - started) * 1000)
    return statistics.median(times)


def record_cost() -> None:
    root = make_project()
    with LambdaFunction("fn.main.handler", code_root=root) as function:
        for _ in range(10_000):
            function.invoke({"q": "x"})
        without = median_ms(lambda: function_record(function, "t", {}, invocations=False))
        every = median_ms(lambda: function_record(function, "t", {}, invocations=True))
    print(
        f"record of a function with 10,000 invocations: {without:.1f} ms counts only, "
        f"{every:.1f} ms with every invocation (--lambda-report / --lambda-html)"
    )


def main() -> None:
    shapes = {
        "100 tests x 100 invocations": (100, 100, 1),
        "1,000 tests x 10 invocations": (1_000, 10, 1),
        "100 tests x 30 events over 3 environments": (100, 30, 3),
        "1 test x 100,000 invocations": (1, 100_000, 1),
    }
    for name, (tests, invocations, concurrency) in shapes.items():
        records = session(tests, invocations, concurrency)
        page = render(SessionHistory(records), {"options": {}})
        # The history is built once per session and shared with the summary: timed too.
        took = median_ms(lambda records=records: render(SessionHistory(records), {"options": {}}))
        print(f"{name}: render {took:.0f} ms (median of 5), page {len(page) / 1024:.0f} KiB")
    record_cost()


if __name__ == "__main__":
    main()
