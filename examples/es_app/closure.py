"""The same idea without functools: a closure that builds the client on first use.

The first call pings once with a short timeout, so a wrong ES_URL fails the first
invocation in a second, with a clear message, instead of after the client's default
timeout and retries on every request.
"""

import os
from collections.abc import Callable

from elasticsearch import Elasticsearch

INDEX = os.environ.get("ES_INDEX", "docs")


def _memoized_client() -> Callable[[], Elasticsearch]:
    client: Elasticsearch | None = None

    def get() -> Elasticsearch:
        nonlocal client
        if client is None:
            candidate = Elasticsearch(os.environ["ES_URL"])
            if not _ping(candidate, timeout=1):
                candidate.close()
                raise ConnectionError(f"Elasticsearch at {os.environ['ES_URL']} did not answer")
            client = candidate
        return client

    return get


def _ping(client: Elasticsearch, timeout: float) -> bool:
    # Clients 8 and 9 take per-request settings through .options(); 7.x as keywords.
    if hasattr(client, "options"):
        return bool(client.options(request_timeout=timeout).ping())
    return bool(client.ping(request_timeout=timeout))


get_es_client = _memoized_client()


def handler(event, context):
    return get_es_client().count(index=INDEX)["count"]
