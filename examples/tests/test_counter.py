"""Cold and warm starts of app.counter: state outside the handler lives per environment."""

import pytest

from pytest_lambda_context import InitError

pytestmark = pytest.mark.lambda_handler("app.counter.handler")


def test_warm_invocations_reuse_the_environment(lambda_function):
    first = lambda_function.invoke({"name": "ada"})
    second = lambda_function.invoke({"name": "grace"})

    assert first["invocations_in_this_environment"] == 1
    assert second["invocations_in_this_environment"] == 2
    assert second["client_id"] == first["client_id"]
    assert second["clients_built_in_this_environment"] == 1
    assert [i.cold for i in lambda_function.invocations] == [True, False]


def test_each_cold_start_runs_init_again(lambda_function):
    a = lambda_function.cold_start().invoke({})
    b = lambda_function.cold_start().invoke({})

    assert a["invocations_in_this_environment"] == b["invocations_in_this_environment"] == 1
    assert a["client_id"] != b["client_id"]
    assert len(lambda_function.environments) == 2


def test_concurrent_requests_need_more_environments(lambda_function):
    results = lambda_function.invoke_many([{"n": n} for n in range(9)], concurrency=3)

    assert len(lambda_function.environments) == 3
    assert {r["client_id"] for r in results} == {
        r["client_id"] for r in results[:3]
    }  # three clients, one per environment
    assert max(r["invocations_in_this_environment"] for r in results) == 3


@pytest.mark.lambda_handler("app.counter.handler", idle_timeout=600)
def test_an_idle_environment_is_recycled(lambda_function):
    lambda_function.invoke({})
    lambda_function.idle(minutes=5)
    assert lambda_function.invoke({})["invocations_in_this_environment"] == 2

    lambda_function.idle(minutes=15)
    assert lambda_function.invoke({})["invocations_in_this_environment"] == 1
    assert lambda_function.environments[0].state == "shutdown"


def test_the_report_line_matches_cloudwatch(lambda_function):
    lambda_function.invoke({})
    lambda_function.invoke({})
    cold, warm = lambda_function.invocations

    assert cold.report_line.startswith(f"REPORT RequestId: {cold.request_id}\tDuration: ")
    assert "Init Duration:" in cold.report_line
    assert "Init Duration:" not in warm.report_line


def test_bad_handler_names_fail_like_lambda(make_lambda_function):
    function = make_lambda_function("app.counter.no_such_handler")
    with pytest.raises(InitError) as failure:
        function.invoke({})
    assert failure.value.payload["errorType"] == "Runtime.HandlerNotFound"
    assert failure.value.payload["errorMessage"] == (
        "Handler 'no_such_handler' missing on module 'app.counter'"
    )
