import os

from elasticsearch import Elasticsearch
from snapshot_restore_py import register_after_restore

client = Elasticsearch(os.environ["ES_URL"], max_retries=0)
client.ping()


@register_after_restore
def reconnect():
    # AWS's guidance: re-establish connections after a restore.
    global client
    client.close()
    client = Elasticsearch(os.environ["ES_URL"], max_retries=0)
    client.ping()


def handler(event, context):
    return client.count(index=os.environ["ES_INDEX"])["count"]
