"""The examples in docs/*.md and README.md run, as written, and pass.

The convention, for whoever writes docs:

- A fenced ``python`` (or ``ini``) block whose first line is a comment naming a file,
  ``# app/search.py`` or ``# test_search.py``, is a file of that page's example project.
  Files named ``test_*.py`` are test modules; the others are handler or support files.
- A test module whose first line is ``# test_name.py (fails)`` shows a failure: it is
  run on its own and must fail (the page shows what the failure says).
- Every other ``python`` block must be preceded by the line ``<!-- not run -->``, so no
  example drifts out of this suite unnoticed. Output, shell commands and fragments go
  in ``text``, ``bash`` or ``console`` blocks.

Each page is one project: the handler packages of examples/ (``app``, ``es_app``) are
copied in first, so pages can use them, then the page's own files. pytest runs in a
subprocess, as a user runs it, on the embedded Elasticsearch backend (no Docker).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end to end, the same on every Python and pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
# Handler packages every page's project starts with.
BASE_PACKAGES = ("app", "es_app")

_FENCE = re.compile(r"^(\s*)(`{3,})\s*([\w+-]*)\s*$")
_PATH_LINE = re.compile(r"^#\s*([\w./-]+\.(?:py|ini|cfg|toml))\s*(\(fails\))?\s*$")
_NOT_RUN = "<!-- not run -->"


@dataclass
class Block:
    language: str
    text: str
    line: int  # 1-based line of the opening fence
    marked_not_run: bool


@dataclass
class Page:
    path: Path
    files: dict[str, str] = field(default_factory=dict)
    passing: list[str] = field(default_factory=list)
    failing: list[str] = field(default_factory=list)
    unmarked: list[int] = field(default_factory=list)


def blocks(text: str) -> list[Block]:
    found = []
    lines = text.splitlines()
    i = 0
    previous = ""  # the last non-blank line before the current one
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        indent, fence, language = opening.groups()
        start = i
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            line = lines[i]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            i += 1
        found.append(
            Block(language.lower(), "\n".join(body) + "\n", start + 1, previous == _NOT_RUN)
        )
        previous = ""
        i += 1
    return found


def parse(path: Path) -> Page:
    page = Page(path)
    for block in blocks(path.read_text(encoding="utf-8")):
        if block.language not in ("python", "py", "ini"):
            continue
        first, _, rest = block.text.partition("\n")
        named = _PATH_LINE.match(first.strip())
        if named is None:
            if block.language != "ini" and not block.marked_not_run:
                page.unmarked.append(block.line)
            continue
        name, fails = named.groups()
        assert name not in page.files, f"{path.name}:{block.line}: {name} is defined twice"
        # The path comment stays in Python files (harmless); ini files get it dropped.
        page.files[name] = rest if name.endswith((".ini", ".cfg", ".toml")) else block.text
        if Path(name).name.startswith("test_") and name.endswith(".py"):
            (page.failing if fails else page.passing).append(name)
    return page


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


RUNNABLE = [page for page in map(parse, PAGES) if page.passing or page.failing]


def test_the_convention_finds_examples() -> None:
    # A broken parser would make every other test here vacuous.
    assert len(RUNNABLE) >= 5, [_id(p.path) for p in RUNNABLE]


@pytest.mark.parametrize("path", PAGES, ids=_id)
def test_every_python_block_is_a_file_or_marked_not_run(path: Path) -> None:
    unmarked = parse(path).unmarked
    assert not unmarked, (
        f"{_id(path)}: python blocks at lines {unmarked} are neither a file (first line "
        f"'# test_x.py' or '# app/x.py') nor preceded by '{_NOT_RUN}'"
    )


def _project(pytester: pytest.Pytester, page: Page) -> None:
    for package in BASE_PACKAGES:
        source = ROOT / "examples" / package
        if source.is_dir():
            shutil.copytree(
                source,
                pytester.path / package,
                ignore=shutil.ignore_patterns("__pycache__"),
                dirs_exist_ok=True,
            )
    # A page may bring its own pytest.ini; otherwise as strict as the examples' own.
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    for name, text in page.files.items():
        target = pytester.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--lambda-es=embedded", "-rfE", *args, timeout=300
    )


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda page: _id(page.path))
def test_the_examples_of_the_page_pass(pytester: pytest.Pytester, page: Page) -> None:
    _project(pytester, page)
    if page.passing:
        result = _run(pytester, *page.passing)
        assert result.ret == pytest.ExitCode.OK, result.stdout.str()
        outcomes = result.parseoutcomes()
        assert outcomes.get("passed", 0) >= len(page.passing)
    for name in page.failing:
        result = _run(pytester, name)
        assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
        assert result.parseoutcomes().get("failed", 0) >= 1


def test_the_readme_quick_start_is_one_bash_block_of_two_lines() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.partition("## Quick start")[2].partition("\n## ")[0]
    found = blocks(section)
    assert [b.language for b in found] == ["bash"], found
    lines = found[0].text.strip().splitlines()
    assert len(lines) == 2, lines
    examples, tests = lines
    assert "pip install" in examples and "examples" in examples and "pytest" in examples
    # The tools are a dependency group (not a published extra): pip 25.1 installs it, and
    # a fresh venv's pip may be older, so the line upgrades pip first.
    assert tests.startswith("python -m pip install -U pip && "), tests
    assert tests.endswith('pip install -e ".[all,examples]" --group dev && pytest'), tests
