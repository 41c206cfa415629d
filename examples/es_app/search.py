"""The recommended pattern: one client per execution environment, built on first use.

functools.cache makes get_es_client() build the client once per environment (a
cold start imports this module afresh, so a new environment builds a new one);
warm invocations reuse it and its open keep-alive connection.
"""

import functools
import os

from elasticsearch import Elasticsearch

INDEX = os.environ.get("ES_INDEX", "docs")


@functools.cache
def get_es_client() -> Elasticsearch:
    client = Elasticsearch(os.environ["ES_URL"])
    client.ping()
    return client


def handler(event, context):
    return get_es_client().search(index=INDEX, q=event["q"])["hits"]["total"]["value"]
