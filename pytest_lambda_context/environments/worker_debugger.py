"""``breakpoint()`` in a worker of ``isolation="process"``: say how to debug instead.

A worker's standard input is not the developer's terminal (the worker runs in its own
session, its input is ``/dev/null``), so a debugger started in function code reads
end-of-file at its first prompt and quits: the invocation fails with a bare
``BdbQuit``. The worker replaces that error's message with what happened and how to
debug the test: in module isolation, where function code runs in pytest's own process
and ``breakpoint()`` stops in the terminal as usual.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["explain_debugger_quit"]

_MESSAGE = (
    "a debugger (breakpoint() or pdb) started in function code quit at once: {environment} "
    "runs in a worker process (isolation='process') whose input is not your terminal. "
    "To debug this test, run it in module isolation, where breakpoint() stops in your "
    "terminal: @pytest.mark.lambda_handler(..., isolation='module') on the test, or "
    "--lambda-isolation=module on the command line."
)


def explain_debugger_quit(payload: Any, environment_id: str) -> Any:
    """``payload`` (Lambda's error payload), with a BdbQuit explained; else unchanged."""
    if not isinstance(payload, dict) or payload.get("errorType") != "BdbQuit":
        return payload
    try:
        if os.isatty(0):  # a debugger could have read from it: the quit was the user's
            return payload
    except OSError:
        pass
    return {**payload, "errorMessage": _MESSAGE.format(environment=environment_id)}
