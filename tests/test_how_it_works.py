"""docs/concepts/how-it-works.md names real code: every ``module:name`` it cites exists.

The page cites functions, classes and methods as ``pytest_lambda_context.x.y:Name`` or
``...:Class.method`` (and modules alone as ``pytest_lambda_context.x.y``); each is
imported and looked up here, so a rename that forgets the page fails.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "concepts" / "how-it-works.md"
# `pytest_lambda_context.module.path` or `pytest_lambda_context.module.path:Qualified.name`
_CITED = re.compile(r"`(pytest_lambda_context(?:\.\w+)*)(?::([\w.]+))?`")


def cited() -> list[tuple[str, str | None]]:
    return sorted(set(_CITED.findall(PAGE.read_text())), key=str)


def test_the_page_cites_code() -> None:
    # Enough for the life of an invocation in both isolations, the protocol and state.
    names = [name for _, name in cited() if name]
    assert len(names) >= 40
    assert "ExecutionEnvironment._invoke" in names
    assert "ModuleEnvironment._enter" in names
    assert "ProcessEnvironment._invoke_worker" in names


@pytest.mark.parametrize(
    ("module", "name"), cited(), ids=lambda value: value if isinstance(value, str) else ""
)
def test_each_cited_name_exists(module: str, name: str) -> None:
    target = importlib.import_module(module)
    for part in (name or "").split(".") if name else ():
        assert hasattr(target, part), f"{module}:{name}: no {part!r} in {target!r}"
        target = getattr(target, part)
    assert callable(target) or not name, f"{module}:{name} is not a function or class"
