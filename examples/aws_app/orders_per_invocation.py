"""The anti-pattern: new boto3 clients in every invocation.

It works and it is correct, but each invocation pays for building two clients
(loading service models, resolving credentials) and, against real AWS, for new TLS
connections. The tests in examples/tests/test_aws_per_invocation.py count it.
"""

import json
import os

import boto3

TABLE = os.environ.get("ORDERS_TABLE", "orders")
BUCKET = os.environ.get("RECEIPTS_BUCKET", "receipts")


def handler(event, context):
    dynamodb = boto3.resource("dynamodb")  # a new client on every invocation
    s3 = boto3.client("s3")  # and another one
    order_id = event["order_id"]
    dynamodb.Table(TABLE).put_item(Item={"order_id": order_id, "total": str(event["total"])})
    s3.put_object(
        Bucket=BUCKET,
        Key=f"receipts/{order_id}.json",
        Body=json.dumps({"order_id": order_id, "request_id": context.aws_request_id}),
    )
    return {"order_id": order_id, "stored": True}
