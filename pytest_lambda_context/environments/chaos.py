"""Chaos routing: legal but adversarial choices of environment, reproducible by seed.

Lambda never promises reuse: a request may go to any idle environment or to a new one,
and an idle environment may be reclaimed at any time. A handler that passes only
because the environment happened to be warm (a cache assumed filled) or cold is found
by routing that takes those liberties. The choices come from a random generator seeded
with the session's seed, the test and the function's place in it, so the same seed
replays the same routing whatever else the session runs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["ChaosRouter", "function_seed"]

E = TypeVar("E")

# Out of this many chances: a new environment in place of an idle one, and an idle
# environment recycled before a request.
_NEW_ENVIRONMENT = 3
_RECYCLE = 4


def function_seed(seed: int, test: str, number: int) -> str:
    """The seed of the ``number``-th function a test makes, under the session's ``seed``."""
    return f"{seed}:{test}:{number}"


class ChaosRouter:
    """The routing choices of one function."""

    def __init__(self, seed: str) -> None:
        self._random = random.Random(seed)

    def recycled(self, idle: Sequence[E]) -> list[E]:
        """Idle environments that Lambda reclaims before this request (maybe none)."""
        return [e for e in idle if self._random.randrange(_RECYCLE) == 0]

    def choose(self, idle: Sequence[E]) -> E | None:
        """The environment for the next request, or None for a new one."""
        if not idle or self._random.randrange(_NEW_ENVIRONMENT) == 0:
            return None
        return self._random.choice(list(idle))

    def targets(self, idle: Sequence[E], needed: int) -> list[E]:
        """Up to ``needed`` of ``idle`` for requests in flight at once, in a random
        order; the rest go to new environments."""
        count = self._random.randint(0, min(needed, len(idle)))
        return self._random.sample(list(idle), count)
