"""How events and results cross Lambda's Invoke API, as AWS's runtime client marshals them.

The result is encoded exactly as awslambdaric 4.2.2 encodes it (simplejson, its
settings, its ``Decimal`` and ``bytes`` rules), and decoded as a client of the
Invoke API would decode the payload. The event goes in as JSON, the way a client
sends it, and the runtime decodes it with simplejson as awslambdaric does. Both
directions are limited to Lambda's 6 MB synchronous payload.

Small flat events and results (a dict of short scalars, or a scalar) skip the
encoder: their round trip gives back an equal value, and that keeps a warm
invocation within microseconds of a direct call.
"""

from __future__ import annotations

import decimal
import json
import math
from typing import Any

import simplejson

__all__ = [
    "REQUEST_LIMIT",
    "RESPONSE_LIMIT",
    "MarshalFailure",
    "PayloadTooLarge",
    "ResultEncoder",
    "decode_event",
    "decode_result",
    "encode_event",
    "marshal_result",
]

# Lambda's synchronous invocation limits (bytes), as its error messages state them.
REQUEST_LIMIT = 6_291_456
RESPONSE_LIMIT = 6_291_556
# awslambdaric writes non-ASCII characters as they are only on these runtimes.
_UNESCAPED_RUNTIMES = frozenset(
    {
        "AWS_Lambda_python3.12",
        "AWS_Lambda_python3.13",
        "AWS_Lambda_python3.14",
        "AWS_Lambda_python3.15",
    }
)
# A string encodes to at most 6 bytes per character ("\\uXXXX"): below this many
# characters in all, a flat value is certainly under either limit.
_SURELY_SMALL = REQUEST_LIMIT // 6 - 4096
_SCALARS = frozenset({str, int, bool, type(None)})


class MarshalFailure(Exception):
    """The runtime could not marshal the result (awslambdaric's ``Runtime.MarshalError``)."""


class PayloadTooLarge(Exception):
    """An event or result over Lambda's 6 MB limit; the message is Lambda's."""


class ResultEncoder(simplejson.JSONEncoder):
    """awslambdaric's ``Encoder``: Decimal as a number (NaN as NaN), NaN allowed."""

    def __init__(self, execution_env: str | None) -> None:
        if execution_env in _UNESCAPED_RUNTIMES:
            super().__init__(use_decimal=False, ensure_ascii=False, allow_nan=True)
        else:
            super().__init__(use_decimal=False, allow_nan=True)

    def default(self, o: Any) -> Any:
        if isinstance(o, decimal.Decimal):
            if o.is_nan():
                return math.nan
            return simplejson.RawJSON(str(o))
        return super().default(o)


def _flat_size(value: dict[Any, Any]) -> int | None:
    """Characters in a flat dict of scalars with str keys, or None if it is not one
    (or holds NaN or an infinity, which take the encoder's path)."""
    size = 0
    for key, item in value.items():
        kind = type(item)
        if kind is str:
            size += len(item)
        elif kind is float:
            if not -math.inf < item < math.inf:
                return None
        elif kind not in _SCALARS:
            return None
        if type(key) is not str:
            return None
        size += len(key)
    return size


def marshal_result(result: Any, encoder: ResultEncoder) -> tuple[Any, bool]:
    """``(body, raw)``: the encoded result (``raw``: bytes returned as they are).

    Raises MarshalFailure with awslambdaric's message, or PayloadTooLarge.
    A small flat value comes back as itself (already what decoding would give).
    """
    kind = type(result)
    if kind is dict:
        size = _flat_size(result)
        if size is not None and size < _SURELY_SMALL:
            return dict(result), False
    elif (kind in _SCALARS and (kind is not str or len(result) < _SURELY_SMALL)) or kind is float:
        # (awslambdaric writes NaN and Infinity, which decode back to themselves.)
        return result, False
    if isinstance(result, bytes):
        if len(result) > RESPONSE_LIMIT:
            raise PayloadTooLarge(_response_message())
        return result, True
    try:
        body = encoder.encode(result)
    except Exception as exc:
        raise MarshalFailure(f"Unable to marshal response: {exc}") from exc
    if len(body) > RESPONSE_LIMIT // 4 and len(body.encode("utf-8")) > RESPONSE_LIMIT:
        raise PayloadTooLarge(_response_message())
    return _Encoded(body), False


class _Encoded(str):
    """A JSON body still to be decoded (so a flat value passed through is never mistaken
    for one)."""

    __slots__ = ()


def decode_result(body: Any, raw: bool) -> Any:
    """What the Invoke API's caller gets back: bytes as they are, JSON decoded."""
    if raw or type(body) is not _Encoded:
        return body
    # allow_nan: awslambdaric writes NaN and Infinity, and Python's json reads them back.
    return json.loads(body)


def _response_message() -> str:
    return f"Response payload size exceeded maximum allowed payload size ({RESPONSE_LIMIT} bytes)."


def encode_event(event: Any) -> Any:
    """The event as the Invoke API receives it; a small flat one is returned as a copy.

    Raises TypeError or ValueError (the test's own mistake: not JSON, NaN, too deep)
    naming the event and the valid form, or PayloadTooLarge.
    """
    kind = type(event)
    if kind is dict:
        size = _flat_size(event)
        if size is not None and size < _SURELY_SMALL:
            return dict(event)
    elif kind in _SCALARS and (kind is not str or len(event) < _SURELY_SMALL):
        return event
    try:
        # The most compact form a client could send: never refuse what one could.
        body = json.dumps(event, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except RecursionError:
        raise ValueError(
            "the event is nested too deeply to encode as JSON (Python's recursion limit); "
            "Lambda takes an event as a JSON document: pass a flatter structure"
        ) from None
    except ValueError as exc:
        raise ValueError(
            f"the event is not valid JSON: {exc} (NaN or Infinity at {_non_finite_path(event)}); "
            "Lambda's Invoke API refuses such a payload (InvalidRequestContentException): "
            "use None, a string or a finite number there"
        ) from None
    except TypeError as exc:
        raise TypeError(
            f"the event must be JSON-serialisable, because Lambda passes it as JSON: {exc}"
        ) from None
    if len(body) > REQUEST_LIMIT // 4 and len(body.encode("utf-8")) > REQUEST_LIMIT:
        raise PayloadTooLarge(
            f"Request must be smaller than {REQUEST_LIMIT} bytes for the InvokeFunction operation"
        )
    return _Encoded(body)


def decode_event(body: Any) -> Any:
    """The event as awslambdaric hands it to the handler (simplejson's decoding)."""
    if type(body) is not _Encoded:
        return body
    try:
        return simplejson.loads(body)
    except RecursionError:
        raise ValueError(
            "the event is nested too deeply for the runtime to decode (Python's recursion "
            "limit); pass a flatter structure"
        ) from None


def _non_finite_path(value: Any, path: str = "event") -> str:
    """Where the first NaN or infinity is, as ``event['a'][2]`` (for the error message)."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return where
        if isinstance(item, dict):
            stack.extend((v, f"{where}[{k!r}]") for k, v in reversed(list(item.items())))
        elif isinstance(item, (list, tuple)):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(item))))
    return path
