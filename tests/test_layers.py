"""Lambda layers: folders merged at /opt (later layers win), their Python folders on
sys.path after the function's own, their modules imported afresh per environment."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import FunctionMaker, function_maker, write_files

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

SITE = f"python/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"

HANDLER = """
import json
import os

import settings
import vendored

def handler(event, context):
    settings.calls += 1
    out = {
        "source": settings.SOURCE,
        "calls": settings.calls,
        "vendored": vendored.NAME,
        "file": settings.__file__,
    }
    data = "/opt/config/limits.json"
    if os.path.exists(data):
        with open(data) as file:
            out["limits"] = json.load(file)
    if event.get("write"):
        try:
            with open("/opt/python/written.txt", "w") as file:
                file.write("x")
            out["write"] = "written"
        except OSError as exc:
            out["write"] = exc.strerror
    return out
"""


@pytest.fixture
def layered(tmp_path: Path) -> tuple[Path, list[Path]]:
    code = write_files(tmp_path / "task", {"app.py": HANDLER})
    first = write_files(
        tmp_path / "layer-1",
        {
            "python/settings.py": "SOURCE = 'layer-1'\ncalls = 0\n",
            f"{SITE}/vendored/__init__.py": "NAME = 'vendored in layer-1'\n",
            "config/limits.json": '{"from": "layer-1"}',
        },
    )
    second = write_files(
        tmp_path / "layer-2",
        {"python/settings.py": "SOURCE = 'layer-2'\ncalls = 0\n"},
    )
    return code, [first, second]


@pytest.fixture
def make(layered: tuple[Path, list[Path]]) -> Iterator[FunctionMaker]:
    code, layers = layered
    with function_maker("app.handler", code_root=code, layers=layers) as maker:
        yield maker


@pytest.mark.parametrize("isolation", ["module", "process"])
def test_a_later_layer_wins_and_its_modules_are_fresh_per_environment(
    make: FunctionMaker, isolation: str
) -> None:
    function = make(isolation=isolation)
    first = function.invoke({})
    assert first["source"] == "layer-2"  # both layers hold settings.py: the later wins
    assert first["vendored"] == "vendored in layer-1"  # a layer's site-packages
    assert function.invoke({})["calls"] == 2  # warm: the layer's module state is kept
    assert function.cold_start().invoke({})["calls"] == 1  # a new environment: afresh
    assert "settings" not in sys.modules  # the test's own modules are untouched


def test_process_isolation_mounts_the_layers_read_only_at_opt(make: FunctionMaker) -> None:
    function = make(isolation="process")
    result = function.invoke({"write": True})
    environment = function.environments[0]
    if environment.tmp_refused is not None:
        pytest.skip(f"this kernel gives no private mount namespace: {environment.tmp_refused}")
    assert result["file"] == "/opt/python/settings.py"
    assert result["limits"] == {"from": "layer-1"}  # read at its literal /opt path
    assert result["write"] == "Read-only file system"  # as Lambda's /opt
    assert not os.path.exists("/opt/config/limits.json")  # the host's /opt is untouched


@pytest.mark.parametrize(
    ("layers", "error", "message"),
    [
        ("layer", TypeError, "layers must be a list of folders, not one path"),
        (["missing"], ValueError, "is not a folder"),
        ([f"l{i}" for i in range(6)], ValueError, "Lambda takes at most 5"),
        (["l0", "l0"], ValueError, "is given twice"),
    ],
)
def test_wrong_layers_are_named_with_the_right_form(
    make: FunctionMaker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    layers: object,
    error: type[Exception],
    message: str,
) -> None:
    for i in range(6):
        (tmp_path / f"l{i}").mkdir()
    (tmp_path / "layer").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=message):
        make(layers=layers)
