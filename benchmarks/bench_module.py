"""Module isolation: warm invocation overhead and cold start cost, as medians.

    python benchmarks/bench_module.py [--large-session]

``--large-session``: first import what a real test session has loaded (pytest, boto3,
moto, the elasticsearch client, psycopg, SQLAlchemy, where installed: over a thousand
modules), since a cold start and a shutdown look at every loaded module.

Warm: median of invoke() of a trivial handler minus a direct call of the same handler.
Cold: median of cold_start().init() minus a bare import of the function's own modules
(fresh each time, the third-party modules already loaded, as in both cases).
"""

from __future__ import annotations

import contextlib
import importlib
import statistics
import sys
import time

from _project import make_project

from pytest_lambda_context import LambdaFunction

ROUNDS = 15
CALLS = 20_000


def per_call_us(call, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls * 1e6


def warm(root) -> tuple[float, float]:
    function = LambdaFunction("fn.main.handler", code_root=root)
    function.invoke({})
    handler = function.environments[0]._handler
    event = {"q": "x"}
    direct, invoked = [], []
    for _ in range(ROUNDS):
        direct.append(per_call_us(lambda: handler(event, None), CALLS))
        invoked.append(per_call_us(lambda: function.invoke(event), CALLS))
    function.close()
    return statistics.median(direct), statistics.median(invoked)


def fresh_import_ms(root) -> float:
    sys.path.insert(0, str(root))
    try:
        for name in [n for n in sys.modules if n == "fn" or n.startswith("fn.")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        started = time.perf_counter()
        importlib.import_module("fn.main")
        return (time.perf_counter() - started) * 1000
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n == "fn" or n.startswith("fn.")]:
            del sys.modules[name]


def cold(root) -> tuple[float, float, float]:
    function = LambdaFunction("fn.main.handler", code_root=root)
    imports, starts, shutdowns = [], [], []
    for _ in range(200):
        imports.append(fresh_import_ms(root))
        environment = function.cold_start()
        started = time.perf_counter()
        environment.init()
        initialised = time.perf_counter()
        environment.shutdown()
        starts.append((initialised - started) * 1000)
        shutdowns.append((time.perf_counter() - initialised) * 1000)
    function.close()
    return statistics.median(imports), statistics.median(starts), statistics.median(shutdowns)


LARGE_SESSION = ("pytest", "boto3", "moto", "elasticsearch", "psycopg", "sqlalchemy")


def main() -> None:
    if "--large-session" in sys.argv[1:]:
        for name in LARGE_SESSION:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
    print(f"{len(sys.modules)} modules loaded")
    root = make_project()
    direct, invoked = warm(root)
    print(
        f"warm invocation: direct call {direct:.2f} us, invoke() {invoked:.2f} us, "
        f"overhead {invoked - direct:.2f} us median (target <= 5 us)"
    )
    bare, start, shutdown = cold(root)
    print(
        f"cold start: bare import {bare:.3f} ms, cold_start().init() {start:.3f} ms, "
        f"overhead {start - bare:.3f} ms median (target <= 0.25 ms); "
        f"shutdown {shutdown:.3f} ms median"
    )


if __name__ == "__main__":
    main()
