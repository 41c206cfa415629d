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
            if not candidate.options(request_timeout=1).ping():
                candidate.close()
                raise ConnectionError(f"Elasticsearch at {os.environ['ES_URL']} did not answer")
            client = candidate
        return client

    return get


get_es_client = _memoized_client()


def handler(event, context):
    return get_es_client().count(index=INDEX)["count"]
