"""A client built and checked at init (module import), as AWS's guidance suggests.

If Elasticsearch does not answer while the environment initialises, init fails:
Lambda reports Runtime.* / the exception as an init error and the next request
gets a fresh cold start, which succeeds once Elasticsearch is back.
"""

import os

from elasticsearch import Elasticsearch

INDEX = os.environ.get("ES_INDEX", "docs")

client = Elasticsearch(os.environ["ES_URL"])
if not client.ping():
    client.close()
    raise ConnectionError(f"Elasticsearch at {os.environ['ES_URL']} did not answer at init")


def handler(event, context):
    return client.count(index=INDEX)["count"]
