"""The ``context`` object handed to a handler, and Lambda's reserved environment variables."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

__all__ = ["LambdaContext", "reserved_environment"]

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"
_PYTHON = f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}"


class CognitoIdentity:
    cognito_identity_id: str | None = None
    cognito_identity_pool_id: str | None = None


class LambdaContext:
    """What Lambda's Python runtime passes as ``context``.

    The deadline is on the wall clock that handler code sees, so after
    ``LambdaFunction.idle()`` (freezegun) the remaining time still counts down from
    the invocation's own start.
    """

    def __init__(
        self,
        *,
        aws_request_id: str,
        function_name: str = "test-function",
        memory_limit_in_mb: int = 128,
        timeout: float = 3.0,
        log_stream_name: str = "2026/01/01/[$LATEST]00000000000000000000000000000000",
        region: str = DEFAULT_REGION,
        deadline_ms: float | None = None,
    ) -> None:
        self.aws_request_id = aws_request_id
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = (
            f"arn:aws:lambda:{region}:{DEFAULT_ACCOUNT}:function:{function_name}"
        )
        # A string, as Lambda's runtime gives it.
        self.memory_limit_in_mb = str(memory_limit_in_mb)
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = log_stream_name
        self.client_context: Any = None
        self.identity = CognitoIdentity()
        self._deadline_ms = (
            deadline_ms if deadline_ms is not None else time.time() * 1000 + timeout * 1000
        )

    @classmethod
    def renewed(
        cls, template: LambdaContext, aws_request_id: str, deadline_ms: float
    ) -> LambdaContext:
        """A context like ``template`` for another request: what a warm invocation needs,
        at a fraction of the cost of building one (everything else is per environment)."""
        context = cls.__new__(cls)
        context.__dict__.update(template.__dict__)
        context.aws_request_id = aws_request_id
        context._deadline_ms = deadline_ms
        return context

    def get_remaining_time_in_millis(self) -> int:
        # time.time is looked up at call time so freezegun's clock applies.
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def log(self, msg: str) -> None:
        logging.getLogger("pytest_lambda_context.environments.function").info("%s", msg)

    def __repr__(self) -> str:
        return (
            f"LambdaContext(aws_request_id={self.aws_request_id!r}, "
            f"function_name={self.function_name!r})"
        )


def reserved_environment(
    *,
    handler: str,
    function_name: str,
    memory_mb: int,
    log_stream_name: str,
    task_root: str,
    initialization_type: str = "on-demand",
    region: str = DEFAULT_REGION,
) -> dict[str, str]:
    """The variables Lambda sets in every execution environment."""
    return {
        "_HANDLER": handler,
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream_name,
        "AWS_LAMBDA_INITIALIZATION_TYPE": initialization_type,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EXECUTION_ENV": _PYTHON,
        "LAMBDA_TASK_ROOT": task_root,
        "TZ": ":UTC",
    }
