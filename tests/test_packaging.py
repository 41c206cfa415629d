"""Packaging promises: a light plugin import, the pytest11 entry point, py.typed in the wheel;
metadata as package indexes expect it, an sdist without tests, builds without warnings.

The import checks run in fresh interpreters: this test process has long since
imported elasticsearch, moto and the rest through other tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from email.message import Message
from email.parser import Parser
from importlib.metadata import entry_points
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.slow  # end to end, the same on every Python and pytest

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
    result.stdout.fnmatch_lines(["plugins: *lambda-context-*"])  # the plugin was loaded
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


# -- metadata, sdist and build warnings (python -m build, as a release would run it) ------

# Caches, builds and virtual environments: never part of what is built.
_NOT_SOURCES = shutil.ignore_patterns(
    ".*", "__pycache__", "*.pyc", "*.egg-info", "build", "dist", "site", "lambda-report.*"
)


@dataclass(frozen=True)
class Built:
    output: str  # python -m build's stdout and stderr
    wheel: Path
    sdist: Path


# The tests of the built distributions run on one xdist worker: one build, not one per
# worker.
ONE_BUILD = pytest.mark.xdist_group("built_distributions")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    pytest.importorskip("build", reason="build (dev group)")
    # A copy of the whole checkout (tests, examples and docs included, so the sdist's
    # exclusions are really exercised); build/ and *.egg-info land in the copy.
    source = tmp_path_factory.mktemp("checkout") / "src"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCES)
    out = source.parent / "dist"
    # Byte-compiling off (PYTHONDONTWRITEBYTECODE) makes setuptools warn: not ours.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return Built(output, wheel, sdist)


def _wheel_metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(archive.read(name).decode())


@ONE_BUILD
def test_building_the_wheel_and_sdist_warns_of_nothing(built: Built) -> None:
    # A line that lists one of the package's files (warnings_setup.py) is no warning.
    files = re.compile(r"pytest_lambda_context/\S*warning")
    warnings = [
        line for line in built.output.splitlines() if re.search(r"(?i)warn", files.sub("", line))
    ]
    assert not warnings, "\n".join(warnings)


@ONE_BUILD
def test_the_license_is_an_spdx_expression_with_its_file(built: Built) -> None:
    metadata = _wheel_metadata(built.wheel)
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["License"] is None  # the deprecated free-text field
    assert not [c for c in metadata.get_all("Classifier") or [] if c.startswith("License ::")]
    with zipfile.ZipFile(built.wheel) as archive:
        assert [n for n in archive.namelist() if n.endswith("licenses/LICENSE")]


@ONE_BUILD
def test_the_metadata_has_project_urls(built: Built) -> None:
    urls = dict(
        entry.split(", ", 1) for entry in _wheel_metadata(built.wheel).get_all("Project-URL") or []
    )
    assert {"Homepage", "Documentation", "Repository", "Issues", "Changelog"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values()), urls


@ONE_BUILD
def test_development_tools_are_not_published_as_an_extra(built: Built) -> None:
    metadata = _wheel_metadata(built.wheel)
    extras = metadata.get_all("Provides-Extra") or []
    assert "dev" not in extras
    assert {"elasticsearch", "aws", "containers", "all", "examples"} <= set(extras)
    requirements = metadata.get_all("Requires-Dist") or []
    # Exact pins (the tools' own) stay out of what users' resolvers see.
    assert not [r for r in requirements if "==" in r.partition(";")[0]], requirements
    for tool in ("ruff", "mypy", "tox", "pytest-benchmark", "awslambdaric"):
        assert not [r for r in requirements if r.startswith(tool)], (tool, requirements)


@ONE_BUILD
def test_the_long_description_links_only_absolutely_to_files_that_exist(built: Built) -> None:
    # A package index renders the README away from the repository: a relative link
    # (or image) there is broken; each absolute one must name a file of this checkout.
    description = _wheel_metadata(built.wheel).get_payload()
    assert isinstance(description, str) and "## Use it in your project" in description
    urls = dict(
        entry.split(", ", 1) for entry in _wheel_metadata(built.wheel).get_all("Project-URL") or []
    )
    repository = urls["Repository"].removeprefix("https://github.com/")
    targets = re.findall(r"\]\(([^)\s]+)\)", description)
    assert len(targets) >= 10, targets
    prefixes = (
        f"https://github.com/{repository}/blob/main/",
        f"https://raw.githubusercontent.com/{repository}/main/",
    )
    for target in targets:
        if target.startswith("#"):
            continue
        assert target.startswith("https://"), f"a relative link in the README: {target}"
        for prefix in prefixes:
            if target.startswith(prefix):
                assert (ROOT / target.removeprefix(prefix)).exists(), target


@ONE_BUILD
def test_the_sdist_ships_no_tests_and_builds_the_wheel(built: Built) -> None:
    with tarfile.open(built.sdist) as archive:
        names = [name.partition("/")[2] for name in archive.getnames()]
    assert not [n for n in names if n.startswith(("tests/", "examples/", "benchmarks/"))]
    for needed in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md"):
        assert needed in names, needed
    assert "pytest_lambda_context/plugin/assets/report.js" in names
    # python -m build made the wheel from the sdist: the sdist is complete.
    with zipfile.ZipFile(built.wheel) as archive:
        assert "pytest_lambda_context/py.typed" in archive.namelist()
