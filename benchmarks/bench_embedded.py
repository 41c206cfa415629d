"""Benchmark the embedded Elasticsearch stand-in: start-up time and keep-alive throughput.

Run: python benchmarks/bench_embedded.py
Targets: median start() <= 50 ms; >= 2,000 GET /idx/_doc/1 per second on one
keep-alive connection.
"""

from __future__ import annotations

import http.client
import statistics
import time

from pytest_lambda_context.services.elasticsearch.embedded import EmbeddedElasticsearch

STARTS = 20
REQUESTS = 5_000
ROUNDS = 5


def bench_start() -> list[float]:
    timings = []
    for _ in range(STARTS):
        server = EmbeddedElasticsearch()
        began = time.perf_counter()
        server.start()
        timings.append((time.perf_counter() - began) * 1000)
        server.stop()
    return timings


def bench_get(server: EmbeddedElasticsearch) -> float:
    """Requests per second for GET /idx/_doc/1 on one keep-alive connection."""
    conn = http.client.HTTPConnection(server.host, server.port)
    try:
        began = time.perf_counter()
        for _ in range(REQUESTS):
            conn.request("GET", "/idx/_doc/1")
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"unexpected status {response.status}")
        return REQUESTS / (time.perf_counter() - began)
    finally:
        conn.close()


def main() -> None:
    starts = bench_start()
    print(
        f"start(): median {statistics.median(starts):.2f} ms over {STARTS} starts (target <= 50 ms)"
    )
    with EmbeddedElasticsearch() as server:
        conn = http.client.HTTPConnection(server.host, server.port)
        conn.request("PUT", "/idx/_doc/1", body=b'{"title": "benchmark"}')
        conn.getresponse().read()
        conn.close()
        rates = [bench_get(server) for _ in range(ROUNDS)]
        print(
            f"GET /idx/_doc/1 on one keep-alive connection: median {statistics.median(rates):,.0f} "
            f"requests/s over {ROUNDS} rounds of {REQUESTS:,} (target >= 2,000/s); "
            f"connections opened: {server.stats()['total_opened']}"
        )


if __name__ == "__main__":
    main()
