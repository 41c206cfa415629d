"""Lambda Managed Instances: one execution environment, four runtime processes.

With per_environment_concurrency=4 an environment serves four requests at once, each
in its own process with its own init: the memoized client is one per process, so the
connection budget of an environment is four, not one.
"""

import pytest

ENV = {"ES_URL": "{es_url}", "ES_INDEX": "{es_index_prefix}docs"}


@pytest.mark.lambda_handler(
    "es_app.search.handler",
    env=ENV,
    isolation="process",
    per_environment_concurrency=4,
    function_name="search-managed-instances",
)
@pytest.mark.max_connections(4)
def test_a_memoized_client_per_runtime_process(lambda_function, docs_index):
    results = lambda_function.invoke_many([{"q": "title:start"}] * 16, concurrency=8)
    assert results == [2] * 16
    assert len(lambda_function.environments) == 2  # ceil(8 / 4)
    # One connection per process that served a request: at most four per environment.
    per_environment = lambda_function.connections.per_environment()
    assert len(per_environment) == 2 and all(1 <= n <= 4 for n in per_environment.values())
