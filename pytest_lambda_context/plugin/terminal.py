"""Lines the plugin writes to the terminal while tests run (not the header or summary).

A backend decided at first use (the ``es`` fixture with ``auto``, a datastore fixture)
is said when it is decided, even from inside a captured fixture, as the header would
have said it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest

__all__ = ["say"]


def say(config: pytest.Config) -> Callable[[str], None]:
    """A function that writes ``lambda-context: <text>`` to the terminal now."""

    def write(text: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return  # an xdist worker, or -p no:terminal
        capture = config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.ensure_newline()
            reporter.write_line(f"lambda-context: {text}")

    return write
