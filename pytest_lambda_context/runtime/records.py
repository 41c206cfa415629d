"""What one invocation left behind: Lambda's REPORT line and the counts a test checks."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Invocation", "json_copy"]

_SCALARS = frozenset({str, int, float, bool, type(None)})


@dataclass(slots=True)
class Invocation:
    request_id: str
    environment_id: str
    cold: bool
    result: Any
    error: dict[str, Any] | None
    duration_ms: float
    memory_size_mb: int
    max_memory_used_mb: int
    init_duration_ms: float | None = None
    # SnapStart: the first invocation of a restored environment (init ran in the snapshot).
    restore_duration_ms: float | None = None
    billed_restore_duration_ms: int | None = None
    connections_opened: int = 0
    clients_created: int = 0
    # When the invoke phase began, in epoch seconds as handler code saw the clock
    # (idle() moves it forward): where the HTML report's timeline places the bar.
    started_at: float | None = None

    @property
    def billed_duration_ms(self) -> int:
        # Lambda bills each started millisecond.
        return max(1, math.ceil(self.duration_ms))

    @property
    def report_line(self) -> str:
        line = (
            f"REPORT RequestId: {self.request_id} Duration: {self.duration_ms:.2f} ms "
            f"Billed Duration: {self.billed_duration_ms} ms Memory Size: {self.memory_size_mb} MB "
            f"Max Memory Used: {self.max_memory_used_mb} MB"
        )
        if self.init_duration_ms is not None:
            line += f" Init Duration: {self.init_duration_ms:.2f} ms"
        if self.restore_duration_ms is not None:
            line += (
                f" Restore Duration: {self.restore_duration_ms:.2f} ms"
                f" Billed Restore Duration: {self.billed_restore_duration_ms} ms"
            )
        return line

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["billed_duration_ms"] = self.billed_duration_ms
        data["report_line"] = self.report_line
        return data


def json_copy(value: Any, what: str) -> Any:
    """The value after a JSON round trip, as Lambda passes events and results.

    A flat dict of scalars (the common small event) is copied without the encoder:
    the round trip would give back an equal dict, and this keeps a warm invocation
    within microseconds of a direct call.
    """
    __tracebackhide__ = True
    if type(value) is dict:
        for k, v in value.items():
            if type(k) is not str or type(v) not in _SCALARS:
                break
        else:
            return dict(value)
    if type(value) in _SCALARS:
        return value
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"The {what} must be JSON-serialisable, because Lambda passes it as JSON: {exc}"
        ) from None
