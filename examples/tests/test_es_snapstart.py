"""SnapStart: a client connected at init holds the snapshot's connection, dead after a restore.

Each environment of a snap_start=True function is a restore of one snapshot, made by
running init once. The eager client's first request in a restored environment meets a
reset (with retries off, the invocation fails); re-connecting in an after-restore hook
(AWS's guidance) makes every restore start with a connection of its own.
"""

import pytest

from pytest_lambda_context import HandlerError

ENV = {"ES_URL": "{es_url}", "ES_INDEX": "{es_index_prefix}docs"}


@pytest.mark.lambda_handler(
    "es_app.snap_eager.handler", env=ENV, isolation="process", snap_start=True
)
def test_the_eager_client_breaks_after_restore(lambda_function, es, docs_index):
    snapshot = lambda_function.publish()  # init runs here, once
    assert snapshot.connections.opened() == 1
    with pytest.raises(HandlerError) as raised:
        lambda_function.invoke({})
    assert raised.value.error_type == "ConnectionError"
    # The next request reconnects: the restore paid a failure and a new connection.
    assert lambda_function.invoke({}) == 3
    assert lambda_function.connections.per_environment() == {"snapshot": 1, "env-1": 1}


@pytest.mark.lambda_handler(
    "es_app.snap_fixed.handler", env=ENV, isolation="process", snap_start=True
)
@pytest.mark.max_connections(1)
def test_register_after_restore_reconnects_each_restore(lambda_function, es, docs_index):
    assert lambda_function.invoke_many([{}] * 6, concurrency=3) == [3] * 6
    assert len(lambda_function.environments) == 3
    assert all(i.connections_opened == 0 for i in lambda_function.invocations)
    first = lambda_function.invocations[0]
    assert first.restore_duration_ms is not None
    assert "Restore Duration" in first.report_line
