"""The plugin's clock: real time plus however long the tests said environments idled."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

__all__ = ["PluginClock", "real_monotonic", "real_time", "shifted_clock", "skew_of_the_tests_clock"]

_MONOTONIC = time.CLOCK_MONOTONIC
_REALTIME = time.CLOCK_REALTIME
_NO_SKEW = 0.01


def real_monotonic() -> float:
    """Seconds on the monotonic clock, which no clock library moves: freezegun leaves
    ``clock_gettime`` alone and time-machine patches it for ``CLOCK_REALTIME`` only.
    Durations, deadlines and idle times are measured on it, so a test's ``freeze_time``
    neither stops them nor makes a wait endless."""
    return time.clock_gettime(_MONOTONIC)


def real_time() -> float:
    """The real wall clock, whatever freezegun or time-machine make ``time.time()`` say."""
    travel = sys.modules.get("time_machine")
    if travel is not None and travel.escape_hatch.is_travelling():
        return float(travel.escape_hatch.time.time())
    return time.clock_gettime(_REALTIME)


def skew_of_the_tests_clock() -> float:
    """How far the test's clock is from real time (freezegun's ``freeze_time`` or
    time-machine's ``travel`` in the test; 0.0 without). A worker process shifts its
    function's clock by it, so that function code sees the test's time in both
    isolations."""
    skew = time.time() - real_time()
    # Two readings of one clock differ by a fraction of a microsecond: under 10 ms is
    # no clock library at work, and the worker's clock then stays unpatched (cheaper).
    return skew if abs(skew) >= _NO_SKEW else 0.0


class PluginClock:
    """Time as the plugin and the function code see it, after emulated idling.

    Two readings, because they are restored differently. ``monotonic()`` (``offset``)
    only ever moves forward: proxies and idle timeouts measure on it, and it would
    make no sense for a connection to get younger. ``time()`` (``shift``) is the wall
    clock handler code sees through freezegun; the plugin puts it back to real time
    after each test, as it restores everything else it touched.
    """

    def __init__(self) -> None:
        self.offset = 0.0
        self.shift = 0.0
        self._listeners: list[Callable[[], None]] = []

    def monotonic(self) -> float:
        return real_monotonic() + self.offset

    def time(self) -> float:
        return time.time() + self.shift

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"time cannot run backwards: idle({seconds}) must be >= 0")
        self.offset += seconds
        self.shift += seconds
        for listener in list(self._listeners):
            listener()

    def restore_wall_clock(self) -> None:
        """Handler code sees real time again (the end of a test)."""
        self.shift = 0.0

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` after each jump; returns a function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe


_ignored: dict[str, tuple[int, list[str]]] = {}


def _libraries(code_root: str) -> list[str]:
    """Top-level packages that are not the function's own code (cached per module count)."""
    cached = _ignored.get(code_root)
    if cached is not None and cached[0] == len(sys.modules):
        return cached[1]
    own = set()
    tops = set()
    for name, module in list(sys.modules.items()):
        top = name.partition(".")[0]
        tops.add(top)
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path.startswith(code_root) and "-packages" not in path:
            own.add(top)
    # freezegun looks a few frames up the stack for an ignored caller: the plugin's own
    # frames sit right above the handler's, so they must not count as a library. Its
    # test is a prefix match, so "pytest" alone would also ignore "pytest_lambda_context":
    # such names are listed only with their trailing dot.
    keep = own | {"time", "datetime", __name__.partition(".")[0]}
    libraries = []
    for top in sorted(tops - keep):
        libraries.append(top + ".")
        if not any(name.startswith(top) for name in keep):
            libraries.append(top)
    _ignored[code_root] = (len(sys.modules), libraries)
    return libraries


@contextmanager
def shifted_clock(offset: float, code_root: str) -> Iterator[None]:
    """Let the function's code see the clock ``offset`` seconds ahead, ticking (freezegun).

    With no offset nothing is patched. Libraries are on freezegun's ignore list: that
    spares freezegun's scan of every loaded module (milliseconds per invocation) and
    the function's own calls to time and datetime still see the moved clock.
    """
    if not offset:
        yield
        return
    import freezegun  # only once a test moved the clock

    start = datetime.now(timezone.utc) + timedelta(seconds=offset)
    with freezegun.freeze_time(start, tick=True, ignore=_libraries(code_root)):
        yield


def ms_since(started: float) -> float:
    """Milliseconds elapsed since ``started``, a :func:`real_monotonic` reading."""
    return (time.clock_gettime(_MONOTONIC) - started) * 1000.0
