"""Resource use over a long session: 1,000 cold starts and 100,000 warm invocations.

    python benchmarks/bench_soak.py

Prints open file descriptors and resident memory before and after. Targets: the
descriptor count flat, resident memory growth under 50 MB.
"""

from __future__ import annotations

import gc
import os
import time

from _project import make_project

from pytest_lambda_context import LambdaFunction


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    root = make_project()
    # One warm-up round so the first-time imports are not counted as growth.
    with LambdaFunction("fn.main.handler", code_root=root) as function:
        function.invoke({})
    gc.collect()
    fds, rss = open_fds(), rss_mb()
    started = time.perf_counter()
    for _ in range(1_000):
        with LambdaFunction("fn.main.handler", code_root=root) as function:
            function.invoke({"q": "x"})
    cold_s = time.perf_counter() - started
    started = time.perf_counter()
    # Records are kept per function (tests read them); a long-lived function keeps
    # 100,000 of them, which is part of what this measures.
    with LambdaFunction("fn.main.handler", code_root=root) as function:
        for _ in range(100_000):
            function.invoke({"q": "x"})
    warm_s = time.perf_counter() - started
    gc.collect()
    print(f"1,000 cold starts in {cold_s:.2f} s, 100,000 warm invocations in {warm_s:.2f} s")
    print(f"open fds: {fds} before, {open_fds()} after (target: flat)")
    print(
        f"resident memory, one function holding all 100,000 records: {rss:.1f} MB before, "
        f"{rss_mb():.1f} MB after, growth {rss_mb() - rss:.1f} MB (target < 50 MB)"
    )
    del function
    gc.collect()
    # As a test session runs them: 100 tests of 1,000 warm invocations, each test's
    # function closed (and its records dropped) when the test ends.
    started = time.perf_counter()
    for _ in range(100):
        with LambdaFunction("fn.main.handler", code_root=root) as function:
            for _ in range(1_000):
                function.invoke({"q": "x"})
    gc.collect()
    print(
        f"resident memory, 100 functions of 1,000 invocations closed in turn "
        f"({time.perf_counter() - started:.2f} s): {rss_mb():.1f} MB after, "
        f"growth {rss_mb() - rss:.1f} MB; open fds {open_fds()}"
    )


if __name__ == "__main__":
    main()
