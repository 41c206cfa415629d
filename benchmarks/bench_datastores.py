"""The datastore fixtures' costs: how long each local backend takes to start, and what
the counting proxy adds per query, for PostgreSQL (psycopg 3), MariaDB (PyMySQL) and
Redis (redis-py).

Each server is started from the machine's binaries as the fixtures start it
(``start_local``), ``--starts`` times (the median is printed); then one query on a kept
connection (``select 1`` / ``PING``) is timed directly and through a DatastoreService's
proxy, alternating query by query so drift hits both alike.

    python benchmarks/bench_datastores.py [--starts 3] [--queries 2000] [--kinds postgres,mysql,redis]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from pytest_lambda_context.services.datastores import registry
from pytest_lambda_context.services.datastores.service import DatastoreService

QUERIES: dict[str, Callable[[Any], object]] = {
    "postgres": lambda conn: conn.execute("select 1").fetchone(),
    "mysql": lambda conn: _mysql_one(conn),
    "redis": lambda conn: conn.ping(),
}


def _mysql_one(conn: Any) -> object:
    with conn.cursor() as cursor:
        cursor.execute("select 1")
        return cursor.fetchone()


def start_times(name: str, starts: int) -> list[float]:
    kind = registry.kind(name)
    took = []
    for _ in range(starts):
        began = time.perf_counter()
        server = kind.start_local()
        took.append(time.perf_counter() - began)
        server.stop()
    return took


def query_costs(name: str, queries: int) -> tuple[float, float]:
    kind = registry.kind(name)
    service = DatastoreService(kind, kind.start_local())
    try:
        direct = kind.client(service.direct_endpoint)
        proxied = kind.client(service.endpoint)
        query = QUERIES[name]
        times: dict[str, list[float]] = {"direct": [], "proxied": []}
        for _ in range(50):  # warm both up
            query(direct)
            query(proxied)
        for _ in range(queries):
            for which, conn in (("direct", direct), ("proxied", proxied)):
                began = time.perf_counter()
                query(conn)
                times[which].append(time.perf_counter() - began)
        direct.close()
        proxied.close()
        return statistics.median(times["direct"]), statistics.median(times["proxied"])
    finally:
        service.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--kinds", default="postgres,mysql,redis")
    args = parser.parse_args()
    for name in args.kinds.split(","):
        took = start_times(name, args.starts)
        direct, proxied = query_costs(name, args.queries)
        print(
            f"{name:8s} start: median {statistics.median(took):.2f} s "
            f"(min {min(took):.2f}, max {max(took):.2f}, n={len(took)}); "
            f"query: direct {direct * 1e6:.0f} us, through the proxy {proxied * 1e6:.0f} us "
            f"(+{(proxied - direct) * 1e6:.0f} us, x{proxied / direct:.2f}; n={args.queries})"
        )


if __name__ == "__main__":
    main()
