"""Packaging promises: a light plugin import, the pytest11 entry point, py.typed in the wheel.

The import checks run in fresh interpreters: this test process has long since
imported elasticsearch, moto and the rest through other tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import entry_points
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]

# Loading the plugin must not import any of these (SPEC, Packaging): a session that
# uses none of the fixtures should pay almost nothing for the plugin being installed.
HEAVY = (
    "elasticsearch",
    "elastic_transport",
    "moto",
    "boto3",
    "botocore",
    "testcontainers",
    "docker",
    "freezegun",
)

_LOADED_HEAVY = f"""
import json, sys
heavy = {list(HEAVY)!r}
print(json.dumps(sorted({{m.partition(".")[0] for m in sys.modules}} & set(heavy))))
"""


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_importing_the_plugin_module_imports_no_heavy_dependency() -> None:
    done = _run("-c", "import pytest_lambda_context.plugin\n" + _LOADED_HEAVY)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_a_session_that_uses_no_fixture_imports_no_heavy_dependency(
    pytester: pytest.Pytester,
) -> None:
    # The whole plugin life cycle (addoption, configure, collection, header, summary,
    # sessionfinish) in a real pytest run, not only the module import.
    pytester.makepyfile(
        conftest=f"""
        import json, sys
        def pytest_unconfigure(config):
            heavy = {list(HEAVY)!r}
            loaded = sorted({{m.partition(".")[0] for m in sys.modules}} & set(heavy))
            sys.stdout.write("HEAVY=" + json.dumps(loaded) + "\\n")
        """,
        test_plain="def test_plain():\n    assert True\n",
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=1)
    assert "lambda-context:" in result.stdout.str(), "the plugin was not loaded"
    result.stdout.fnmatch_lines(["HEAVY=[[][]]"])


def test_the_pytest11_entry_point_is_registered() -> None:
    found = [e for e in entry_points(group="pytest11") if e.name == "lambda_context"]
    assert [e.value for e in found] == ["pytest_lambda_context.plugin"]


def test_the_public_api_is_importable_lazily() -> None:
    code = (
        "import pytest_lambda_context as p\n"
        "names = [n for n in p.__all__ if getattr(p, n) is None]\n"
        "assert not names, names\n"
        "from pytest_lambda_context import LambdaFunction, InitError, LambdaError\n"
        "assert issubclass(InitError, LambdaError)\n"
    )
    done = _run("-c", code)
    assert done.returncode == 0, done.stderr


def test_the_wheel_ships_py_typed_and_the_entry_point(tmp_path: Path) -> None:
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources,
    # which must not race with other work in the checkout. With build isolation, as a
    # user's pip builds it (pip fetches setuptools from its cache or the index).
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "pytest_lambda_context",
        source / "pytest_lambda_context",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    wheels = tmp_path / "wheels"
    done = _run(
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--quiet",
        "--wheel-dir",
        str(wheels),
        str(source),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = wheels.glob("pytest_lambda_context-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "pytest_lambda_context/py.typed" in names
        assert "pytest_lambda_context/plugin/__init__.py" in names
        assert "pytest_lambda_context/environments/worker.py" in names
        assert "pytest_lambda_context/services/elasticsearch/store.py" in names
        # Tests, examples and CI scripts stay out of the distribution.
        assert not [n for n in names if n.startswith(("tests/", "examples/", "benchmarks/"))]
        (entry_points_txt,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        text = archive.read(entry_points_txt).decode()
    assert "[pytest11]" in text
    assert "lambda_context = pytest_lambda_context.plugin" in text
