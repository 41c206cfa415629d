"""The README's "Use it in your project" section, followed literally in a fresh project.

A src/ layout, no conftest.py, no ini file: the section's handler and test, its run
command; then its client-per-invocation handler, whose failure must read as the
section shows it; then the handler moved where the plugin does not look, whose error
must name the folder and ``code_root`` without plugin frames.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from importlib.metadata import distribution
from pathlib import Path

import pytest
from test_docs import ROOT, Block, blocks

pytestmark = pytest.mark.slow  # end to end, the same on every Python and pytest

pytest_plugins = ["pytester"]

SECTION = "## Use it in your project"
# The path the README shows in place of the temporary project's.
SHOWN_PROJECT = "/home/me/shop"
_REQUEST_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_PORT = re.compile(r"127\.0\.0\.1:\d+")


@dataclass(frozen=True)
class Section:
    install: str
    files: dict[str, str]
    command: list[str]
    per_invocation_handler: str
    failure: list[str]
    hint: list[str]


def _section() -> Section:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    body = text.partition(SECTION)[2].partition("\n## ")[0]
    assert body, f"README.md has no {SECTION!r} section"
    found: list[Block] = blocks(body)
    bash = [b.text.strip() for b in found if b.language == "bash"]
    python = [b for b in found if b.language == "python"]
    text_blocks = [b.text.rstrip("\n").splitlines() for b in found if b.language == "text"]
    files = {}
    variant = None
    for block in python:
        first = block.text.partition("\n")[0]
        if block.marked_not_run:
            variant = block.text
        else:
            files[first.removeprefix("# ").strip()] = block.text
    assert len(bash) == 2 and variant is not None and len(text_blocks) == 2, found
    return Section(
        install=bash[0],
        files=files,
        command=shlex.split(bash[1]),
        per_invocation_handler=variant,
        failure=text_blocks[0],
        hint=text_blocks[1],
    )


def _normal(line: str, project: Path) -> str:
    line = line.replace(str(project), SHOWN_PROJECT)
    return _PORT.sub("127.0.0.1:<port>", _REQUEST_ID.sub("<request-id>", line)).rstrip()


def _assert_shown(shown: list[str], output: str, project: Path) -> None:
    """Each line the README shows (``...`` elides) is in the output, in that order."""
    lines = [_normal(line, project) for line in output.splitlines()]
    at = 0
    for wanted in shown:
        if wanted == "...":
            continue
        expected = _normal(wanted, project)
        assert expected in lines[at:], f"README line not in the output:\n{expected}\n\n{output}"
        at = lines.index(expected, at) + 1


def _run(pytester: pytest.Pytester, command: list[str]) -> pytest.RunResult:
    assert command[0] == "pytest", command
    # As on the reader's terminal: on CI (CI or BUILD_NUMBER set) pytest does not cut
    # the short summary's lines to the width the README shows.
    with pytest.MonkeyPatch.context() as patch:
        for name in ("CI", "BUILD_NUMBER"):
            patch.delenv(name, raising=False)
        return pytester.runpytest_subprocess(*command[1:], timeout=300)


@pytest.fixture
def section() -> Section:
    return _section()


def test_the_install_line_names_an_extra_the_package_declares(section: Section) -> None:
    (spec,) = re.findall(r'"pytest-lambda-context\[(\w+)\]"', section.install)
    extras = distribution("pytest-lambda-context").metadata.get_all("Provides-Extra") or []
    assert spec in extras


def test_the_section_in_a_fresh_src_layout_passes_then_fails_as_shown(
    pytester: pytest.Pytester, section: Section
) -> None:
    assert set(section.files) == {"src/search/handler.py", "tests/test_handler.py"}
    for name, text in section.files.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert not list(pytester.path.rglob("conftest.py"))
    assert not [p for p in pytester.path.iterdir() if p.suffix in (".ini", ".toml", ".cfg")]

    passed = _run(pytester, section.command)
    assert passed.ret == pytest.ExitCode.OK, passed.stdout.str()
    passed.assert_outcomes(passed=1)

    (pytester.path / "src/search/handler.py").write_text(
        section.per_invocation_handler, encoding="utf-8"
    )
    failed = _run(pytester, section.command)
    failed.assert_outcomes(failed=1)
    _assert_shown(section.failure, failed.stdout.str(), pytester.path)


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_a_handler_outside_the_code_root_is_named_with_the_folder_to_use(
    pytester: pytest.Pytester, section: Section, isolation: str
) -> None:
    # As the README says: the handler under lambda/, the test's code_root="src" left out.
    for name, text in section.files.items():
        if name.startswith("src/"):
            name = "lambda/" + name.removeprefix("src/")
        else:
            text = text.replace('code_root="src", ', "")
            assert "code_root" not in text
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    result = _run(pytester, [*section.command, f"--lambda-isolation={isolation}"])
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    _assert_shown(section.hint, output, pytester.path)
    # No frames of the plugin or of importlib: the test's own line is the only one.
    failure = output.partition("FAILURES")[2].partition("Captured")[0]
    assert "pytest_lambda_context/" not in failure, failure
    assert "importlib" not in failure, failure


def test_a_src_layout_is_found_without_code_root(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        **{
            "src/orders/__init__": "",
            "src/orders/handler": "def handler(event, context):\n    return {'ok': 1}\n",
            "tests/test_orders": """
                import pytest

                @pytest.mark.lambda_handler("orders.handler.handler")
                @pytest.mark.parametrize("isolation", ["module", "process"])
                def test_found(lambda_function, isolation):
                    assert lambda_function.invoke({}) == {"ok": 1}
                    assert lambda_function.code_root.endswith("/src")
            """,
        }
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(passed=2)


def test_a_module_missing_inside_the_package_keeps_lambdas_message(
    pytester: pytest.Pytester,
) -> None:
    # The code root is right, the handler string is not: no code_root hint.
    pytester.makepyfile(
        **{
            "orders/__init__": "",
            "orders/handler": "def handler(event, context):\n    return 1\n",
            "test_typo": """
                import pytest
                from pytest_lambda_context import InitError

                @pytest.mark.lambda_handler("orders.handlr.handler")
                def test_typo(lambda_function):
                    with pytest.raises(InitError) as raised:
                        lambda_function.invoke({})
                    assert raised.value.hint is None
                    assert str(raised.value) == (
                        "Runtime.ImportModuleError: Unable to import module "
                        "'orders.handlr': No module named 'orders.handlr'"
                    )
            """,
        }
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(passed=1)
