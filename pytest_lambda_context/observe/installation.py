"""A process-wide set of patches, put in by its first user and taken out by its last.

The monitors of this layer (connections, clients, the network guard, descriptors) each
patch functions every thread shares; several environments, functions and tests use
them at once, so each is refcounted: every ``install()`` needs its ``uninstall()``, and
the last one restores exactly what the first one replaced.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Installation"]


class Installation:
    """``apply`` runs at the first :meth:`install`, ``remove`` at the last
    :meth:`uninstall`; both under ``lock`` (the monitor's own, when its patches read the
    count while they run)."""

    def __init__(
        self,
        name: str,
        apply: Callable[[], None],
        remove: Callable[[], None],
        lock: threading.Lock | None = None,
    ) -> None:
        self.name = name
        self._apply = apply
        self._remove = remove
        self.lock = lock if lock is not None else threading.Lock()
        self.users = 0

    def install(self) -> None:
        """One more user (refcounted: each install needs its uninstall)."""
        with self.lock:
            if self.users == 0:
                # Counted only once it worked. Not a transaction: an apply that failed
                # part-way leaves what it had patched, and the error says the monitor
                # is unusable in this process.
                self._apply()
            self.users += 1

    def uninstall(self) -> None:
        """One user fewer; the last one puts back what the first one replaced."""
        with self.lock:
            if self.users == 0:
                raise RuntimeError(f"{self.name}.uninstall() called more often than install()")
            self.users -= 1
            if self.users == 0:
                self._remove()

    def installed(self) -> bool:
        return self.users > 0
