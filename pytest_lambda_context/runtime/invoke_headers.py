"""What a caller of Lambda's Invoke API passes besides the event: a client context, a
Cognito identity, a tenant id.

They reach the runtime as the Runtime API's headers (``Lambda-Runtime-Client-Context``
and ``Lambda-Runtime-Cognito-Identity``, JSON text; ``Lambda-Runtime-Aws-Tenant-Id``)
and become ``context.client_context``, ``context.identity`` and ``context.tenant_id``
(see :func:`pytest_lambda_context.runtime.context.apply_headers`). Here: the headers,
and the checks a caller's values pass first.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, NamedTuple

__all__ = ["InvokeHeaders", "invoke_headers"]

# The Invoke API's limits: ClientContext up to 3,583 bytes of base64; a tenant id of
# 1 to 256 of these characters.
CLIENT_CONTEXT_LIMIT = 3583
_TENANT_ID = re.compile(r"[a-zA-Z0-9._:/=+\-@ ]{1,256}")
_IDENTITY_KEYS = ("cognitoIdentityId", "cognitoIdentityPoolId")


class InvokeHeaders(NamedTuple):
    """The Runtime API headers of one invocation (None: not sent)."""

    client_context: str | None = None
    cognito_identity: str | None = None
    tenant_id: str | None = None


def invoke_headers(
    client_context: Any = None, identity: Any = None, tenant_id: Any = None
) -> InvokeHeaders | None:
    """The headers for what the test passed to ``invoke`` (None: nothing), each checked
    as the Invoke API would take it; a wrong one is an error that says the right form."""
    if client_context is None and identity is None and tenant_id is None:
        return None
    return InvokeHeaders(
        _client_context(client_context), _identity(identity), _tenant_id(tenant_id)
    )


def _client_context(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not (
        value.get("client") is None or isinstance(value["client"], dict)
    ):
        raise TypeError(
            f"client_context must be a dict, the JSON object a caller passes as the Invoke "
            f"API's ClientContext (for example {{'custom': {{...}}, 'env': {{...}}, "
            f"'client': {{'app_title': ...}}}}), with 'client' a dict if given; got {value!r}"
        )
    try:
        text = json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"client_context must be JSON-serialisable: {exc}") from None
    size = len(base64.b64encode(text.encode()))
    if size > CLIENT_CONTEXT_LIMIT:
        raise ValueError(
            f"client_context is {size} bytes once base64-encoded; Lambda's Invoke API takes "
            f"a ClientContext of at most {CLIENT_CONTEXT_LIMIT} bytes"
        )
    return text


def _identity(value: Any) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or not set(value) <= set(_IDENTITY_KEYS)
        or not all(v is None or isinstance(v, str) for v in value.values())
    ):
        raise TypeError(
            "identity must be a dict of the Cognito identity Lambda passes on, "
            "{'cognitoIdentityId': '...', 'cognitoIdentityPoolId': '...'} (strings); "
            f"got {value!r}"
        )
    return json.dumps(value)


def _tenant_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _TENANT_ID.fullmatch(value):
        raise ValueError(
            f"tenant_id={value!r}: Lambda takes 1 to 256 characters of letters, digits, "
            "spaces and . _ : / = + - @"
        )
    return value
