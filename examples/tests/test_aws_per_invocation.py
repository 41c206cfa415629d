"""aws_app.orders_per_invocation: the anti-pattern, and what the plugin shows about it.

With @pytest.mark.max_clients(2) (per environment) this test would fail with:

    @pytest.mark.max_clients(2) exceeded by function aws_app-orders_per_invocation ...:
      env-1 created 10 clients (limit 2):
        - env-1 invocation 1 (...): dynamodb client created at
          aws_app/orders_per_invocation.py:18 in handler
        - env-1 invocation 1 (...): s3 client created at
          aws_app/orders_per_invocation.py:19 in handler
        ...

Here the counts are asserted instead, so the example suite passes.
"""

import boto3
import pytest

pytestmark = pytest.mark.lambda_handler("aws_app.orders_per_invocation.handler")


@pytest.fixture
def orders_table_and_bucket(aws):
    boto3.client("dynamodb").create_table(
        TableName="orders",
        KeySchema=[{"AttributeName": "order_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "order_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    boto3.client("s3").create_bucket(Bucket="receipts")


# Two clients per invocation is all this handler promises.
@pytest.mark.max_clients(2, per="invocation")
@pytest.mark.max_clients(1, per="invocation", service="s3")
def test_every_invocation_builds_new_clients(lambda_function, aws, orders_table_and_bucket):
    for n in range(5):
        assert lambda_function.invoke({"order_id": f"o-{n}", "total": n})["stored"]

    assert len(lambda_function.environments) == 1  # all warm invocations...
    assert aws.clients_created() == 10  # ...yet ten clients
    assert aws.clients_created("s3") == 5
    assert [i.clients_created for i in lambda_function.invocations] == [2, 2, 2, 2, 2]
    assert {c.frame for c in aws.clients if c.service == "s3"} == {
        "aws_app/orders_per_invocation.py:19 in handler"
    }
