"""The anti-pattern: a new client, hence a new TCP connection, in every invocation.

It works, and it is correct, but each invocation pays a TCP (and on a real cluster a
TLS) handshake, and a busy function opens thousands of connections a minute.
The test in examples/tests/test_es_per_invocation.py shows what the plugin sees.
"""

import os

from elasticsearch import Elasticsearch

INDEX = os.environ.get("ES_INDEX", "docs")


def handler(event, context):
    with Elasticsearch(os.environ["ES_URL"]) as client:
        return client.count(index=INDEX)["count"]
