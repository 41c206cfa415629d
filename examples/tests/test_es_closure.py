"""es_app.closure: a closure-based getter that pings once, with a short timeout."""

import pytest

from pytest_lambda_context import HandlerError

pytestmark = pytest.mark.lambda_handler(
    "es_app.closure.handler", env={"ES_URL": "{es_url}", "ES_INDEX": "{es_index_prefix}docs"}
)


@pytest.mark.max_connections(1)
def test_one_client_and_one_connection_per_environment(lambda_function, docs_index):
    for _ in range(20):
        assert lambda_function.invoke({}) == 3

    assert lambda_function.connections.per_environment() == {"env-1": 1}


def test_an_unreachable_cluster_fails_fast_and_is_retried_next_time(
    lambda_function, es, docs_index
):
    with es.outage(), pytest.raises(HandlerError) as failed:  # connections to es.url are refused
        lambda_function.invoke({})
    assert failed.value.payload["errorType"] == "ConnectionError"
    assert "did not answer" in failed.value.payload["errorMessage"]

    # Only a client that answered is memoized: the same environment tries again.
    assert lambda_function.invoke({}) == 3
    assert len(lambda_function.environments) == 1
