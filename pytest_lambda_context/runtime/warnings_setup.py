"""Warnings inside function code, as a fresh Lambda runtime treats them.

Lambda starts Python with no ``-W`` option and no ``PYTHONWARNINGS``, and the handler's
module is not ``__main__``: its warning filters are Python's defaults, and a shown
warning is written to ``sys.stderr``, which is the function's log stream. The test
session's ``-W`` and ``filterwarnings`` (pytest's ``error`` among them) are the test's,
not the function's: a warning must never become an exception in function code because
of them, nor be swallowed by pytest's recorder.

:class:`WarningsShare` is one environment's filters and display function, swapped in
around each of its calls in module isolation; :func:`use_lambda_defaults` sets a
process-isolated worker up once.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable
from typing import Protocol, TextIO, cast

__all__ = ["LAMBDA_FILTERS", "WarningsShare", "show_warning", "use_lambda_defaults"]

# Python's filters when no -W option or PYTHONWARNINGS is given (3.10 to 3.13 alike).
# The items are as warnings.filters holds them: action, message, category, module, line.
LAMBDA_FILTERS: tuple[tuple[str, None, type[Warning], str | None, int], ...] = (
    ("default", None, DeprecationWarning, "__main__", 0),
    ("ignore", None, DeprecationWarning, None, 0),
    ("ignore", None, PendingDeprecationWarning, None, 0),
    ("ignore", None, ImportWarning, None, 0),
    ("ignore", None, ResourceWarning, None, 0),
)

_Filter = tuple[str, object, type[Warning], object, int]
_ShowMessage = Callable[[warnings.WarningMessage], None]


class _WarningsModule(Protocol):
    """What is swapped of ``warnings``, as it is at run time: typeshed has ``filters`` as
    a Sequence of compiled patterns (Python's own defaults hold plain strings, and lists
    are bound here) and no ``_showwarnmsg_impl`` (the private display hook)."""

    filters: list[_Filter]
    showwarning: Callable[..., None]
    _showwarnmsg_impl: _ShowMessage


# warnings' private display hooks (_showwarnmsg_impl) are read through the module object.
_WARNINGS = cast("_WarningsModule", warnings)
# Python's own showwarning (which then calls _showwarnmsg_impl), whatever replaced it.
_SHOWWARNING: Callable[..., None] = getattr(warnings, "_showwarning_orig", warnings.showwarning)

# The filters' cache is keyed by a version that rebinding warnings.filters does not bump.
_filters_mutated: Callable[[], None] = getattr(warnings, "_filters_mutated", lambda: None)


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Python's own display (``warnings.showwarning``'s default): to ``sys.stderr``,
    read at each call, so the text lands in whatever stream the runtime set up."""
    stream = sys.stderr if file is None else file
    if stream is None:  # pythonw, or function code closed it
        return
    # As Python's: an unwritable stream loses the warning, not the call.
    with contextlib.suppress(OSError):
        stream.write(warnings.formatwarning(message, category, filename, lineno, line))


def _show_message(message: warnings.WarningMessage) -> None:
    # What warnings._showwarnmsg_impl does, for a WarningMessage.
    show_warning(
        message.message,
        message.category,
        message.filename,
        message.lineno,
        message.file,
        message.line,
    )


class WarningsShare:
    """One environment's warning filters and display, swapped in around each call.

    ``enter`` keeps what it replaced (the test's, pytest's recorder among them);
    ``exit`` keeps what function code left (its own ``simplefilter`` calls, or
    ``logging.captureWarnings``) for the environment's next call and puts the outer
    ones back.
    """

    __slots__ = ("_outer", "filters", "show", "show_message")

    def __init__(self) -> None:
        self.filters: list[_Filter] = list(LAMBDA_FILTERS)
        self.show: Callable[..., None] = _SHOWWARNING
        self.show_message: _ShowMessage = _show_message
        self._outer: tuple[list[_Filter], Callable[..., None], _ShowMessage] | None = None

    def enter(self) -> None:
        module = _WARNINGS
        self._outer = (module.filters, module.showwarning, module._showwarnmsg_impl)
        module.filters = self.filters
        module.showwarning = self.show
        module._showwarnmsg_impl = self.show_message
        _filters_mutated()

    def exit(self) -> None:
        outer = self._outer
        if outer is None:
            return
        module = _WARNINGS
        self.filters = module.filters
        self.show = module.showwarning
        self.show_message = module._showwarnmsg_impl
        module.filters, module.showwarning, module._showwarnmsg_impl = outer
        self._outer = None
        _filters_mutated()


def use_lambda_defaults() -> None:
    """Set this process's warnings up as a fresh Lambda runtime's (a worker forked from
    the test process inherits the session's filters and pytest's recorder)."""
    module = _WARNINGS
    module.filters = list(LAMBDA_FILTERS)
    module.showwarning = _SHOWWARNING
    module._showwarnmsg_impl = _show_message
    _filters_mutated()
