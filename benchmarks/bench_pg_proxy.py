"""What a tcp_proxy adds to PostgreSQL: per query, and per new connection.

A real PostgreSQL (started from the machine's binaries by examples/servers.py) is
queried with psycopg 3 (libpq in C) directly and through a TcpProxy, alternating
query by query so drift hits both alike: ``select 1`` on a kept connection, and a
full connect + ``select 1`` + close. The connection case also runs with a worker
process registered, so each accepted connection pays the owner lookup in /proc that
process isolation needs.

    python benchmarks/bench_pg_proxy.py [--queries 3000] [--connections 200]

Prints medians and the ratio proxy / direct.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from pytest_lambda_context.observe import taps
from pytest_lambda_context.observe.proxy import TcpProxy
from pytest_lambda_context.observe.scope import Scope

_SERVERS = Path(__file__).resolve().parent.parent / "examples" / "servers.py"


def _servers() -> object:
    spec = importlib.util.spec_from_file_location("plc_servers", _SERVERS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _alternate(
    count: int, direct: Callable[[], None], proxied: Callable[[], None]
) -> tuple[float, float]:
    """Median seconds of each, measured in turns."""
    times: dict[str, list[float]] = {"direct": [], "proxied": []}
    for _ in range(count):
        for name, call in (("direct", direct), ("proxied", proxied)):
            started = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - started)
    return statistics.median(times["direct"]), statistics.median(times["proxied"])


def _line(what: str, direct: float, proxied: float) -> None:
    print(
        f"{what:<46} direct {direct * 1e6:8.1f} µs   proxy {proxied * 1e6:8.1f} µs   "
        f"ratio {proxied / direct:5.2f}x   (+{(proxied - direct) * 1e6:.1f} µs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=200)
    args = parser.parse_args()

    servers: object = _servers()
    with servers.postgres_server() as url:  # type: ignore[attr-defined]
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        with TcpProxy(parts.hostname, parts.port, name="postgres") as proxy:
            proxied_url = url.replace(f":{parts.port}/", f":{proxy.port}/")
            with (
                psycopg.connect(url, autocommit=True) as direct,
                psycopg.connect(proxied_url, autocommit=True) as through,
            ):
                for connection in (direct, through):  # warm up
                    for _ in range(200):
                        connection.execute("select 1").fetchone()
                _line(
                    "query on a kept connection (select 1)",
                    *_alternate(
                        args.queries,
                        lambda: direct.execute("select 1").fetchone(),
                        lambda: through.execute("select 1").fetchone(),
                    ),
                )

            def connect(target: str) -> Callable[[], None]:
                def run() -> None:
                    with psycopg.connect(target, autocommit=True) as connection:
                        connection.execute("select 1").fetchone()

                return run

            _line(
                "connect + select 1 + close",
                *_alternate(args.connections, connect(url), connect(proxied_url)),
            )
            # As with isolation="process": the proxy asks /proc which worker holds each
            # connection (here this process, registered as a worker would be).
            taps.register_process(os.getpid(), Scope("bench", "env-1", None, "/nonexistent/"))
            try:
                _line(
                    "connect + select 1 + close, owner looked up",
                    *_alternate(args.connections, connect(url), connect(proxied_url)),
                )
            finally:
                taps.unregister_process(os.getpid())


if __name__ == "__main__":
    main()
