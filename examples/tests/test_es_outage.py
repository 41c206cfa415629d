"""es_app.eager: a client checked at init; an outage during init, then recovery."""

import pytest

from pytest_lambda_context import InitError

pytestmark = pytest.mark.lambda_handler(
    "es_app.eager.handler", env={"ES_URL": "{es_url}", "ES_INDEX": "{es_index_prefix}docs"}
)


def test_init_fails_during_an_outage_and_a_later_cold_start_recovers(
    lambda_function, es, docs_index
):
    with es.outage(), pytest.raises(InitError) as failed:
        lambda_function.invoke({})
    assert failed.value.payload["errorType"] == "ConnectionError"
    assert "did not answer at init" in failed.value.payload["errorMessage"]

    assert lambda_function.invoke({}) == 3
    assert lambda_function.invocations[-1].cold
    assert es.connections.opened == 1  # refused ones were never accepted
