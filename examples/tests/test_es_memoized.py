"""es_app.search: a memoized client opens one connection per execution environment."""

import pytest

pytestmark = pytest.mark.lambda_handler(
    "es_app.search.handler", env={"ES_URL": "{es_url}", "ES_INDEX": "{es_index_prefix}docs"}
)


@pytest.mark.max_connections(1)  # per environment: fails the test if the client is rebuilt
def test_one_connection_over_100_invocations(lambda_function, es, docs_index):
    for _ in range(100):
        assert lambda_function.invoke({"q": "title:start"}) == 2

    assert len(lambda_function.environments) == 1
    assert lambda_function.connections.per_environment() == {"env-1": 1}
    assert es.connections.opened == 1  # what the server side saw, through the proxy


@pytest.mark.max_connections(1)
def test_three_concurrent_environments_open_three(lambda_function, es, docs_index):
    results = lambda_function.invoke_many([{"q": "title:start"}] * 30, concurrency=3)

    assert results == [2] * 30
    assert lambda_function.connections.per_environment() == {"env-1": 1, "env-2": 1, "env-3": 1}
    assert es.connections.opened == 3


def test_the_connection_is_opened_in_the_getter(lambda_function, docs_index):
    lambda_function.invoke({"q": "title:start"})

    (event,) = lambda_function.connections.events
    assert event.frame.startswith("es_app/search.py:")
    assert event.frame.endswith("in get_es_client")
