"""es_app.per_invocation: the anti-pattern, and what the plugin shows about it.

With @pytest.mark.max_connections(1) (per environment) this test would fail with:

    @pytest.mark.max_connections(1) exceeded by function es_app-per_invocation ...:
      env-1 created 5 connections (limit 1):
        - env-1 invocation 1 (...): 127.0.0.1:<port> opened at es_app/per_invocation.py:17 in handler
        ...
"""

import pytest

pytestmark = pytest.mark.lambda_handler(
    "es_app.per_invocation.handler",
    env={"ES_URL": "{es_url}", "ES_INDEX": "{es_index_prefix}docs"},
)


# One per invocation is all this handler promises; per environment it opens one each time.
@pytest.mark.max_connections(1, per="invocation")
def test_every_invocation_opens_a_new_connection(lambda_function, es, docs_index):
    for _ in range(5):
        assert lambda_function.invoke({}) == 3

    assert len(lambda_function.environments) == 1  # all warm invocations...
    assert lambda_function.connections.per_environment() == {"env-1": 5}  # ...yet 5 connections
    assert [i.connections_opened for i in lambda_function.invocations] == [1, 1, 1, 1, 1]
    assert es.connections.opened == 5
    assert {e.frame for e in lambda_function.connections.events} == {
        f"es_app/per_invocation.py:{_line_of('client.count')} in handler"
    }


def _line_of(text):
    from es_app import per_invocation

    with open(per_invocation.__file__) as source:
        return next(n for n, line in enumerate(source, 1) if text in line)
