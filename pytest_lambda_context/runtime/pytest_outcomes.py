"""pytest's outcome exceptions raised where function code runs.

``pytest.skip``, ``pytest.fail``, ``pytest.xfail`` and ``pytest.exit`` (pytest-timeout's
timeout is a ``pytest.fail``) raised in a handler or in init code are the test's
outcome, never the runtime's crash. Module isolation lets them pass; a worker process
describes one in a :class:`RaisedOutcome`, and the test process raises it again as
pytest's own.

Known by class name, not imported: this layer does not import pytest.
"""

from __future__ import annotations

import functools
import importlib
import os
import traceback
from collections.abc import Callable
from typing import NamedTuple, NoReturn

__all__ = [
    "CodeFrame",
    "HandledInFunctionCode",
    "RaisedOutcome",
    "describe_outcome",
    "is_test_outcome",
    "raise_outcome",
    "rebuild_outcome",
]

_OUTCOMES_MODULE = "_pytest.outcomes"
_OUTCOME_BASES = ("OutcomeException", "Exit")
_PYTEST = f"{os.sep}_pytest{os.sep}"
_RUNTIME = f"{os.sep}{__name__.partition('.')[0]}{os.sep}"
# The attribute values that travel: pytest's outcome classes keep only these kinds
# (msg, pytrace, returncode, allow_module_level, _use_item_location).
_PLAIN = (str, int, float, bool, type(None))


def is_test_outcome(exc: BaseException) -> bool:
    """Is ``exc`` one of pytest's outcome exceptions?"""
    return _is_outcome_class(type(exc))


def _is_outcome_class(cls: type) -> bool:
    # Exit derives from Exception, the others from OutcomeException (a BaseException).
    return any(
        base.__name__ in _OUTCOME_BASES and base.__module__ == _OUTCOMES_MODULE
        for base in cls.__mro__
    )


class CodeFrame(NamedTuple):
    """One frame of function code's stack where the outcome was raised."""

    filename: str
    lineno: int
    name: str


class RaisedOutcome(NamedTuple):
    """One of pytest's outcome exceptions, as a worker process sends it back."""

    # pytest's own class of it, or the nearest one a subclass derives from (a subclass
    # defined in function code is not imported into the test process: that would run
    # the function's init code there).
    name: str
    args: tuple[str | int | float | bool | None, ...]
    # Its attributes (msg, pytrace, returncode...), plain values only.
    attributes: dict[str, str | int | float | bool | None]
    # Function code's frames, outermost first.
    frames: list[CodeFrame]
    # The exception it was raised while handling, formatted ("" : none).
    context: str = ""


def describe_outcome(exc: BaseException) -> RaisedOutcome:
    """What of ``exc`` crosses to the test process."""
    return RaisedOutcome(
        name=_pytests_own(type(exc)),
        args=tuple(arg if isinstance(arg, _PLAIN) else str(arg) for arg in exc.args),
        attributes={name: value for name, value in vars(exc).items() if isinstance(value, _PLAIN)},
        frames=[
            CodeFrame(frame.filename, frame.lineno or 1, frame.name)
            for frame in traceback.extract_tb(exc.__traceback__)
            # Function code's frames: not the runtime's, not pytest's (pytest.fail's).
            if _RUNTIME not in frame.filename and _PYTEST not in frame.filename
        ],
        context=_context_text(exc),
    )


def _context_text(exc: BaseException) -> str:
    context = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if context is None:
        return ""
    return "".join(traceback.format_exception(type(context), context, context.__traceback__))


class HandledInFunctionCode(Exception):
    """The exception that function code was handling when it raised pytest's outcome,
    as its worker process formatted it (the exception itself stayed there)."""

    def __str__(self) -> str:
        return "\n" + str(self.args[0]).rstrip()


def _pytests_own(cls: type) -> str:
    """The first class in ``cls``'s MRO that pytest's outcomes module defines."""
    import sys

    outcomes = sys.modules.get(_OUTCOMES_MODULE)
    for base in cls.__mro__:
        name: str = base.__name__
        if outcomes is not None and getattr(outcomes, name, None) is base:
            return name
    return "Failed"  # not reached: is_test_outcome() found such a base


def rebuild_outcome(raised: RaisedOutcome) -> BaseException:
    """The exception ``raised`` describes, of pytest's class.

    Built without calling the class (its signature differs across pytest versions): the
    same args and attributes, as pickle would restore them.
    """
    target = getattr(importlib.import_module(_OUTCOMES_MODULE), raised.name, None)
    if (
        not isinstance(target, type)
        or not issubclass(target, BaseException)
        or not _is_outcome_class(target)
    ):
        raise TypeError(f"{raised.name} is not one of pytest's outcomes")
    exc = target.__new__(target, *raised.args)
    exc.args = raised.args
    for name, value in raised.attributes.items():
        setattr(exc, name, value)
    return exc


def raise_outcome(raised: RaisedOutcome) -> NoReturn:
    """Raise the exception ``raised`` describes, from frames at function code's files and
    lines: pytest then reports it as it does in module isolation (the handler's source
    in a ``pytest.fail``'s traceback, a skip's location in the short summary)."""
    __tracebackhide__ = True
    exc = rebuild_outcome(raised)
    if raised.context:  # pytest shows it above, as in module isolation
        exc.__context__ = HandledInFunctionCode(raised.context)
    call: Callable[[], None] | None = None
    for frame in reversed(raised.frames):
        # A code object of the frame's file, name and line that raises, or calls the
        # next frame's; exec runs it with no frame of its own in between.
        statement = "raise __outcome__" if call is None else "__next_frame__()"
        source = "\n" * (frame.lineno - 1) + statement
        code = compile(source, frame.filename, "exec").replace(co_name=frame.name)
        call = functools.partial(exec, code, {"__outcome__": exc, "__next_frame__": call})
    if call is not None:
        call()
    raise exc
