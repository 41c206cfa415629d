"""aws_app.orders: clients memoized at module level, against moto.

The ``aws`` fixture makes moto active, with fake credentials, before any cold start,
so the clients the handler builds at import time are mocked too.
"""

import json

import boto3
import pytest

pytestmark = pytest.mark.lambda_handler("aws_app.orders.handler")


@pytest.fixture
def orders_table_and_bucket(aws):
    """The table and the bucket, made by the test (test-side clients are not counted)."""
    boto3.client("dynamodb").create_table(
        TableName="orders",
        KeySchema=[{"AttributeName": "order_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "order_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    boto3.client("s3").create_bucket(Bucket="receipts")


# Two clients per environment (DynamoDB and S3): one of each service.
@pytest.mark.max_clients(2)
@pytest.mark.max_clients(1, service="s3")
def test_clients_are_built_once_per_environment(lambda_function, aws, orders_table_and_bucket):
    for n in range(5):
        assert lambda_function.invoke({"order_id": f"o-{n}", "total": 10 + n})["stored"]

    assert len(lambda_function.environments) == 1
    assert aws.clients_created() == 2
    assert aws.clients_created("dynamodb") == aws.clients_created("s3") == 1
    # Built during the init phase, at these lines of the handler module:
    assert sorted(c.frame for c in aws.clients) == [
        "aws_app/orders.py:18 in <module>",
        "aws_app/orders.py:19 in <module>",
    ]
    assert all(c.request_id is None for c in aws.clients)  # the init phase's
    assert [i.clients_created for i in lambda_function.invocations] == [0, 0, 0, 0, 0]

    # What the handler wrote, read back by the test.
    items = boto3.resource("dynamodb").Table("orders").scan()["Items"]
    assert sorted(item["order_id"] for item in items) == [f"o-{n}" for n in range(5)]
    receipt = boto3.client("s3").get_object(Bucket="receipts", Key="receipts/o-3.json")
    assert json.loads(receipt["Body"].read())["order_id"] == "o-3"


# Concurrency means more environments, and two clients in each of them.
@pytest.mark.max_clients(2, per="environment")
def test_each_concurrent_environment_builds_its_own(lambda_function, aws, orders_table_and_bucket):
    events = [{"order_id": f"c-{n}", "total": n} for n in range(6)]
    lambda_function.invoke_many(events, concurrency=3)

    assert len(lambda_function.environments) == 3
    assert aws.clients_created() == 6
    assert {env.id: len(env.clients) for env in lambda_function.environments} == {
        "env-1": 2,
        "env-2": 2,
        "env-3": 2,
    }


# In process isolation the workers talk to moto's server on 127.0.0.1 over real
# sockets, so the connections are counted too: one per client per environment,
# kept alive across invocations as against real AWS.
@pytest.mark.lambda_handler("aws_app.orders.handler", isolation="process")
@pytest.mark.max_connections(2)
def test_in_a_worker_process_the_connections_are_counted(
    lambda_function, aws, orders_table_and_bucket
):
    for n in range(4):
        lambda_function.invoke({"order_id": f"p-{n}", "total": n})

    assert aws.clients_created() == 2
    assert lambda_function.connections.per_environment() == {"env-1": 2}
    assert boto3.resource("dynamodb").Table("orders").scan()["Count"] == 4
