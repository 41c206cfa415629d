"""Asynchronous invocations (``invoke_async``): Lambda's event queue and its retries.

Lambda puts an asynchronous (``Event``) invocation on a queue and answers at once with
its request id. When the function returns an error (or times out, or its runtime
exits), Lambda retries the event twice by default (``MaximumRetryAttempts``, 0 to 2),
the first retry about a minute after the failure, the second about two minutes after
the first retry; each attempt has the same request id and is routed like any request,
usually to a warm environment. Times are on the function's clock: ``idle()`` moves it,
and events that have come due run then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ASYNC_REQUEST_LIMIT", "RETRY_DELAYS", "AsyncEvent", "EventQueue"]

# The Invoke API's limit for an asynchronous invocation's payload: 1 MB.
ASYNC_REQUEST_LIMIT = 1_048_576
# Seconds from a failed attempt to the next: about 1 minute, then about 2.
RETRY_DELAYS = (60.0, 120.0)


@dataclass(kw_only=True)
class AsyncEvent:
    """One asynchronous event waiting for its next attempt."""

    request_id: str
    # The event as the Invoke API took it (see runtime.marshal.encode_event).
    body: Any
    # 0 for the first attempt, then 1 and 2 (the retries).
    attempt: int
    # Retries left after this attempt (max_retry_attempts at first).
    retries_left: int
    # When it may run, on the function's monotonic clock.
    due: float


class EventQueue:
    """The events of one function waiting to run, in the order they came due."""

    def __init__(self) -> None:
        self._waiting: list[AsyncEvent] = []

    def add(self, event: AsyncEvent) -> None:
        self._waiting.append(event)
        self._waiting.sort(key=lambda e: e.due)

    def take_due(self, now: float) -> AsyncEvent | None:
        """The first event due by ``now`` (taken off the queue), or None."""
        if self._waiting and self._waiting[0].due <= now:
            return self._waiting.pop(0)
        return None

    def retry_of(self, event: AsyncEvent, now: float) -> AsyncEvent | None:
        """The next attempt of ``event``, which failed at ``now`` (None: no retry left)."""
        if event.retries_left <= 0:
            return None
        delay = RETRY_DELAYS[min(event.attempt, len(RETRY_DELAYS) - 1)]
        return AsyncEvent(
            request_id=event.request_id,
            body=event.body,
            attempt=event.attempt + 1,
            retries_left=event.retries_left - 1,
            due=now + delay,
        )

    def __len__(self) -> int:
        return len(self._waiting)
