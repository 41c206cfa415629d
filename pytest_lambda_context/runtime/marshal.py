"""How events and results cross Lambda's Invoke API, as AWS's runtime client marshals them.

The result is encoded exactly as awslambdaric 4.2.2 encodes it (simplejson, its
settings, its ``Decimal`` and ``bytes`` rules), and decoded as a client of the
Invoke API would decode the payload. The event goes in as JSON, the way a client
sends it, and the runtime decodes it with simplejson as awslambdaric does. Both
directions are limited to Lambda's 6 MB synchronous payload.

Small flat events and results (a dict of short scalars, or a scalar) skip the
encoder: their round trip gives back an equal value, and that keeps a warm
invocation within microseconds of a direct call. Only values the encoder would
surely accept, and surely under the size limit, take that path: an integer the
encoder would refuse (over 4,300 digits) or a value that may encode to more than
6 MB goes through the encoder and its checks.
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
    "UnsendableResult",
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
# The most a character can take once encoded: an astral one escaped as a surrogate
# pair ("\\ud83d\\ude00"), 12 bytes.
_BYTES_PER_CHAR = 12
# The most an item of a flat dict adds besides its key's and string value's characters:
# quotes, ": ", ", " and a number (a float's repr is at most 24 characters).
_BYTES_PER_ITEM = 32
# Integers within this bound have at most 20 characters (far from the encoder's limit).
_INT_BOUND = 2**63
_INT_LOW = -_INT_BOUND
# A string this short is surely under either limit, however it is encoded.
_FAST_CHARS = REQUEST_LIMIT // _BYTES_PER_CHAR - 2


class MarshalFailure(Exception):
    """The runtime could not marshal the result (awslambdaric's ``Runtime.MarshalError``)."""


class PayloadTooLarge(Exception):
    """An event or result over Lambda's 6 MB limit; the message is Lambda's."""


class UnsendableResult(Exception):
    """The encoded result cannot be sent as UTF-8 (a lone surrogate written as it is,
    on the runtimes that do not escape): awslambdaric's runtime dies of it."""


class ResultEncoder(simplejson.JSONEncoder):
    """awslambdaric's ``Encoder``: Decimal as a number (NaN as NaN), NaN allowed."""

    def __init__(self, execution_env: str | None) -> None:
        # Written as it is (not escaped): only ASCII strings may skip the encoder.
        self.unescaped = execution_env in _UNESCAPED_RUNTIMES
        if self.unescaped:
            super().__init__(use_decimal=False, ensure_ascii=False, allow_nan=True)
        else:
            super().__init__(use_decimal=False, allow_nan=True)

    def default(self, o: Any) -> Any:
        if isinstance(o, decimal.Decimal):
            if o.is_nan():
                return math.nan
            return simplejson.RawJSON(str(o))
        return super().default(o)


def _flat_bound(value: dict[Any, Any], ascii_only: bool) -> int:
    """At most how many bytes a flat dict of scalars with str keys encodes to; -1 if
    it is not one, or holds what only the encoder may judge: NaN or an infinity, a
    large integer, a non-ASCII string where the encoder writes it as it is."""
    chars = 0
    for key, item in value.items():
        kind = type(item)
        if kind is str:
            chars += len(item)
        elif kind is int:
            if not _INT_LOW < item < _INT_BOUND:
                return -1
        elif kind is float:
            if not -math.inf < item < math.inf:
                return -1
        elif kind is not bool and item is not None:
            return -1
        if type(key) is not str:
            return -1
        chars += len(key)
    if ascii_only:
        for key, item in value.items():
            if not key.isascii() or (type(item) is str and not item.isascii()):
                return -1
    return chars * _BYTES_PER_CHAR + len(value) * _BYTES_PER_ITEM


def marshal_result(result: Any, encoder: ResultEncoder) -> tuple[Any, bool]:
    """``(body, raw)``: the encoded result (``raw``: bytes returned as they are).

    Raises MarshalFailure with awslambdaric's message, PayloadTooLarge, or
    UnsendableResult. A small flat value comes back as itself (already what decoding
    would give).
    """
    # Written out flat: this runs on every warm invocation.
    kind = type(result)
    if kind is dict:
        if 0 <= _flat_bound(result, encoder.unescaped) < RESPONSE_LIMIT:
            return dict(result), False
    elif kind is str:
        if len(result) < _FAST_CHARS and (not encoder.unescaped or result.isascii()):
            return result, False
    elif kind is int:
        if _INT_LOW < result < _INT_BOUND:
            return result, False
    elif kind is float or kind is bool or result is None:
        # (NaN and infinities too: awslambdaric writes them, they decode back as themselves.)
        return result, False
    if isinstance(result, bytes):
        if len(result) > RESPONSE_LIMIT:
            raise PayloadTooLarge(_response_message())
        return result, True
    try:
        body = encoder.encode(result)
    except Exception as exc:
        raise MarshalFailure(f"Unable to marshal response: {exc}") from exc
    if encoder.unescaped and not body.isascii():
        try:
            size = len(body.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise UnsendableResult(str(exc)) from exc
        if size > RESPONSE_LIMIT:
            raise PayloadTooLarge(_response_message())
    elif len(body) > RESPONSE_LIMIT:
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
        if 0 <= _flat_bound(event, False) < REQUEST_LIMIT:
            return dict(event)
    elif kind is str:
        if len(event) < _FAST_CHARS:
            return event
    elif kind is int:
        if _INT_LOW < event < _INT_BOUND:
            return event
    elif kind is bool or event is None:
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
