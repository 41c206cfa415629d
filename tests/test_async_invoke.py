"""invoke_async: Lambda's asynchronous invocations, retried twice on the function's clock."""

from __future__ import annotations

import textwrap

import pytest

HANDLER = """
    seen = []  # this environment's requests, as the handler saw them


    def handler(event, context):
        seen.append(context.aws_request_id)
        print("handling", context.aws_request_id)
        if event.get("fail"):
            raise ValueError(f"attempt {len(seen)} of this environment")
        return len(seen)
"""

TESTS = """
    import pytest

    from pytest_lambda_context import RequestTooLargeError


    def test_a_failing_event_is_retried_twice_into_the_warm_environment(make_lambda_function):
        function = make_lambda_function("app.events.handler")
        request_id = function.invoke_async({"fail": True})
        assert [i.attempt for i in function.invocations] == [0]
        function.idle(seconds=59)
        assert len(function.invocations) == 1  # about a minute after the failure
        function.idle(seconds=1)
        assert [i.attempt for i in function.invocations] == [0, 1]
        function.idle(minutes=1)
        assert len(function.invocations) == 2  # about two minutes after the first retry
        function.idle(minutes=1)
        assert [i.attempt for i in function.invocations] == [0, 1, 2]
        function.idle(hours=1)
        assert len(function.invocations) == 3  # two retries, no more
        assert {i.request_id for i in function.invocations} == {request_id}
        assert [i.cold for i in function.invocations] == [True, False, False]
        assert {i.environment_id for i in function.invocations} == {"env-1"}
        assert [i.error["errorMessage"] for i in function.invocations] == [
            "attempt 1 of this environment",
            "attempt 2 of this environment",
            "attempt 3 of this environment",
        ]
        # The handler saw the same request id each time.
        for invocation in function.invocations:
            assert any(f"handling {request_id}" in line for line in invocation.logs)


    def test_an_event_that_succeeds_runs_once(make_lambda_function):
        function = make_lambda_function("app.events.handler")
        first = function.invoke_async({})
        second = function.invoke_async({})
        assert first != second
        function.idle(minutes=10)
        assert [(i.attempt, i.result, i.error) for i in function.invocations] == [
            (0, 1, None),
            (0, 2, None),
        ]


    def test_max_retry_attempts(make_lambda_function):
        function = make_lambda_function("app.events.handler")
        function.invoke_async({"fail": True}, max_retry_attempts=0)
        function.invoke_async({"fail": True}, max_retry_attempts=1)
        function.idle(minutes=10)
        assert [i.attempt for i in function.invocations] == [0, 0, 1]
        with pytest.raises(ValueError, match="max_retry_attempts=3 is out of range"):
            function.invoke_async({}, max_retry_attempts=3)


    def test_the_payload_limit_is_1_mb(make_lambda_function):
        function = make_lambda_function("app.events.handler")
        big = {"text": "x" * 1_048_576}
        with pytest.raises(RequestTooLargeError) as refused:
            function.invoke_async(big)
        assert refused.value.payload["errorType"] == "RequestEntityTooLargeException"
        assert "1048576 bytes" in refused.value.payload["errorMessage"]
        assert function.invocations == []
        assert function.invoke(big) == 1  # the synchronous limit is 6 MB
"""


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_invoke_async(pytester: pytest.Pytester, isolation: str) -> None:
    (pytester.path / "app").mkdir()
    (pytester.path / "app" / "__init__.py").write_text("")
    (pytester.path / "app" / "events.py").write_text(textwrap.dedent(HANDLER))
    pytester.makepyfile(test_it=textwrap.dedent(TESTS))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--lambda-isolation={isolation}"
    )
    result.assert_outcomes(passed=4)
