"""A frozen environment's connection dies behind a NAT gateway; the client recovers.

es.url goes through a proxy that, like an AWS NAT gateway, drops flows idle for more
than 350 s. lambda_function.idle(minutes=10) moves the plugin's clock while the
environment is frozen, so the memoized client's keep-alive connection is reset.
"""

import pytest

pytestmark = pytest.mark.lambda_handler(
    "es_app.search.handler", env={"ES_URL": "{es_url}", "ES_INDEX": "{es_index_prefix}docs"}
)


def test_the_next_invocation_succeeds_on_a_new_connection(lambda_function, es, docs_index):
    assert lambda_function.invoke({"q": "title:start"}) == 2
    expired = es.proxy.expired

    lambda_function.idle(minutes=10)  # longer than the proxy's 350 s idle timeout

    assert es.proxy.expired == expired + 1  # the gateway forgot the flow and reset it
    assert lambda_function.invoke({"q": "title:frozen"}) == 1
    second = lambda_function.invocations[-1]
    assert not second.cold  # the same, warm environment...
    assert second.connections_opened == 1  # ...had to open a new connection
    assert lambda_function.connections.per_environment() == {"env-1": 2}


def test_a_short_pause_keeps_the_connection(lambda_function, es, docs_index):
    lambda_function.invoke({"q": "title:start"})
    lambda_function.idle(minutes=5)  # within the gateway's idle timeout
    lambda_function.invoke({"q": "title:start"})

    assert es.connections.opened == 1
