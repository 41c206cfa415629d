"""The pattern to follow: boto3 clients built once per execution environment.

The clients are created at module level, so during the init phase (the cold start),
and every warm invocation of the same environment reuses them: no new client, no new
credential resolution, no new TLS connection per request.
The tests in examples/tests/test_aws_orders.py show what the plugin sees.
"""

import json
import os

import boto3

TABLE = os.environ.get("ORDERS_TABLE", "orders")
BUCKET = os.environ.get("RECEIPTS_BUCKET", "receipts")

# Init phase: once per execution environment.
dynamodb = boto3.resource("dynamodb")
s3 = boto3.client("s3")
orders = dynamodb.Table(TABLE)


def handler(event, context):
    order_id = event["order_id"]
    orders.put_item(Item={"order_id": order_id, "total": str(event["total"])})
    s3.put_object(
        Bucket=BUCKET,
        Key=f"receipts/{order_id}.json",
        Body=json.dumps({"order_id": order_id, "request_id": context.aws_request_id}),
    )
    return {"order_id": order_id, "stored": True}
