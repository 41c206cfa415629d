"""A handler with state outside the handler: it survives warm starts, not cold ones."""

import os
import time
import uuid

# Runs once per execution environment: at the cold start.
INITIALISED_AT = time.time()
invocations = 0


class ExpensiveClient:
    """Stands in for a datastore client: costly to build, meant to be built once."""

    built = 0

    def __init__(self) -> None:
        ExpensiveClient.built += 1
        # Unique across processes too (id() is only an address, and two forked
        # environments can hand out the same one).
        self.id = uuid.uuid4().hex


_client = None


def get_client() -> ExpensiveClient:
    """Build the client lazily, once per execution environment."""
    global _client
    if _client is None:
        _client = ExpensiveClient()
    return _client


def handler(event, context):
    global invocations
    invocations += 1
    client = get_client()
    return {
        "invocations_in_this_environment": invocations,
        "clients_built_in_this_environment": ExpensiveClient.built,
        "client_id": client.id,
        "function_name": os.environ["AWS_LAMBDA_FUNCTION_NAME"],
        "greeting": f"hello {event.get('name', 'world')}",
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
