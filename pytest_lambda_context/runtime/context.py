"""The ``context`` object handed to a handler, and Lambda's reserved environment variables."""

from __future__ import annotations

import itertools
import json
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_lambda_context.runtime.invoke_headers import InvokeHeaders

__all__ = [
    "RESERVED_VARIABLES",
    "Client",
    "ClientContext",
    "LambdaContext",
    "TraceHeaders",
    "apply_headers",
    "refuse_reserved",
    "reserved_environment",
    "trace_header",
]

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"
# Where Lambda's runtime and its libraries live (nothing of it is there here).
RUNTIME_DIR = "/var/runtime"
# What context.w3c() may carry (awslambdaric's allowlist).
_W3C_FIELDS = ("traceparent", "tracestate", "baggage")
_PYTHON = f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}"


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self) -> None:
        self.cognito_identity_id: str | None = None
        self.cognito_identity_pool_id: str | None = None

    def __repr__(self) -> str:
        return (
            f"CognitoIdentity([cognito_identity_id={self.cognito_identity_id},"
            f"cognito_identity_pool_id={self.cognito_identity_pool_id}])"
        )


class Client:
    """``context.client_context.client``: the mobile SDK's client."""

    __slots__ = (
        "app_package_name",
        "app_title",
        "app_version_code",
        "app_version_name",
        "installation_id",
    )

    def __init__(self, fields: dict[str, Any]) -> None:
        self.installation_id: Any = fields.get("installation_id")
        self.app_title: Any = fields.get("app_title")
        self.app_version_name: Any = fields.get("app_version_name")
        self.app_version_code: Any = fields.get("app_version_code")
        self.app_package_name: Any = fields.get("app_package_name")

    def __repr__(self) -> str:
        return (
            f"Client([installation_id={self.installation_id},app_title={self.app_title},"
            f"app_version_name={self.app_version_name},"
            f"app_version_code={self.app_version_code},"
            f"app_package_name={self.app_package_name}])"
        )


class ClientContext:
    """``context.client_context``: ``custom``, ``env`` and ``client``."""

    __slots__ = ("client", "custom", "env")

    def __init__(self, fields: dict[str, Any]) -> None:
        self.custom: Any = fields.get("custom")
        self.env: Any = fields.get("env")
        client = fields.get("client")
        self.client: Client | None = None if client is None else Client(client)

    def __repr__(self) -> str:
        return f"ClientContext([custom={self.custom},env={self.env},client={self.client}])"


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
        log_stream_name: str | None = "2026/01/01/[$LATEST]00000000000000000000000000000000",
        region: str = DEFAULT_REGION,
        deadline_ms: float | None = None,
        log_group_name: str | None = "",
    ) -> None:
        """``log_group_name`` "" means ``/aws/lambda/<function_name>``; None (as with
        ``log_stream_name``) is what the runtime reads where the variable is unset."""
        self.aws_request_id = aws_request_id
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = (
            f"arn:aws:lambda:{region}:{DEFAULT_ACCOUNT}:function:{function_name}"
        )
        # A string, as Lambda's runtime gives it.
        self.memory_limit_in_mb = str(memory_limit_in_mb)
        self.log_group_name = (
            f"/aws/lambda/{function_name}" if log_group_name == "" else log_group_name
        )
        self.log_stream_name = log_stream_name
        self.client_context: Any = None
        self.identity = CognitoIdentity()
        # Lambda's tenant isolation mode: the invocation's tenant (None without it).
        self.tenant_id: str | None = None
        self._w3c_fields: dict[str, str] = {}
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

    def w3c(self) -> dict[str, str]:
        """The W3C trace context of the invocation (awslambdaric 4.2's ``w3c()``)."""
        return dict(self._w3c_fields)

    def log(self, msg: Any) -> None:
        """Write ``msg`` as it is to the log, as awslambdaric does: to the runtime's log
        sink if the root logger still has the runtime's handler, else to stdout."""
        for handler in logging.getLogger().handlers:
            sink = getattr(handler, "log_sink", None)
            if sink is not None:
                sink.log(str(msg))
                return
        sys.stdout.write(str(msg))

    def __repr__(self) -> str:
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},"
            f"log_group_name={self.log_group_name},"
            f"log_stream_name={self.log_stream_name},"
            f"function_name={self.function_name},"
            f"memory_limit_in_mb={self.memory_limit_in_mb},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},"
            f"client_context={self.client_context},"
            f"identity={self.identity},"
            f"tenant_id={self.tenant_id}])"
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
    """The variables Lambda sets in every execution environment (AWS's "Defined runtime
    environment variables"): the reserved ones, and those it sets that a function's
    ``env`` may still override (PATH and LANG come from the test process)."""
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
        "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
        # Where the Runtime API would be; nothing listens there (the plugin's runtime
        # talks to the test process by its own channel).
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
        "TZ": ":UTC",
        # Not reserved: a function's env may set these.
        "PYTHONPATH": RUNTIME_DIR,
        "LD_LIBRARY_PATH": (
            f"/var/lang/lib:/lib64:/usr/lib64:{RUNTIME_DIR}:{RUNTIME_DIR}/lib:"
            f"{task_root}:{task_root}/lib:/opt/lib"
        ),
        "LC_CTYPE": "C.UTF-8",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
    }


# The keys Lambda's API refuses in a function's environment variables (its developer
# guide's "reserved environment variables"). TZ is listed there too, but the API
# accepts it and the runtime honours it, so it is not refused here either.
RESERVED_VARIABLES = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)


def refuse_reserved(names: object) -> None:
    """Raise ValueError, with Lambda's message, if any of ``names`` is reserved."""
    used = sorted(name for name in names if name in RESERVED_VARIABLES)  # type: ignore[attr-defined]
    if used:
        raise ValueError(
            "Lambda was unable to configure your environment variables because the "
            "environment variables you have provided contains reserved keys that are "
            "currently not supported for modification. Reserved keys used in this request: "
            f"{', '.join(used)}. (In LambdaFunction: the region is the `region` option; "
            "Lambda sets the others itself.)"
        )


# One header: when (epoch seconds), environment tag, invocation number, environment tag.
_TRACE_HEADER = b"Root=1-%08x-%s%08x;Parent=%s;Sampled=0"


def trace_header(environment_tag: str, number: int) -> str:
    """An X-Ray trace header for one invocation (``_X_AMZN_TRACE_ID``, new for each).

    ``environment_tag`` (16 hex digits, per environment) and the invocation's number
    make the trace id unique without drawing random bits on every invocation.
    """
    tag = environment_tag.encode()
    return (_TRACE_HEADER % (int(time.time()), tag, number, tag)).decode()


class TraceHeaders:
    """One environment's trace headers, as the bytes ``os.environ`` keeps (see
    :func:`trace_header`): formatted in C, with no per-call encoding."""

    __slots__ = ("_numbers", "_tag")

    def __init__(self, environment_tag: str) -> None:
        self._tag = environment_tag.encode()
        self._numbers = itertools.count(1)

    def next(self) -> bytes:
        tag = self._tag
        return _TRACE_HEADER % (int(time.time()), tag, next(self._numbers), tag)


def apply_headers(context: LambdaContext, headers: InvokeHeaders) -> None:
    """Set the context's client context, identity, tenant and W3C fields from the
    headers, as awslambdaric's ``create_lambda_context`` does."""
    fields = json.loads(headers.client_context) if headers.client_context else None
    w3c: dict[str, str] = {}
    if isinstance(fields, dict) and "w3c" in fields:
        raw = fields.pop("w3c")
        if isinstance(raw, dict):
            w3c = {k: raw[k] for k in _W3C_FIELDS if isinstance(raw.get(k), str)}
    context._w3c_fields = w3c
    context.client_context = None if fields is None else ClientContext(fields)
    identity = CognitoIdentity()
    if headers.cognito_identity:
        given = json.loads(headers.cognito_identity)
        identity.cognito_identity_id = given.get("cognitoIdentityId")
        identity.cognito_identity_pool_id = given.get("cognitoIdentityPoolId")
    context.identity = identity
    context.tenant_id = headers.tenant_id
