"""Shared helpers: real handler files written into a temporary project."""

from __future__ import annotations

import importlib.util
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from _fake_docker import FakeDockerEngine
from support import SHARED_TEMPLATE, write_files

from pytest_lambda_context.services import docker_engine

pytest_plugins = ["pytester"]

# Started in the background by a non-interactive shell (``command &``), the suite
# inherits SIGINT ignored, and so would every pytest it starts: the tests of Ctrl-C
# would wait for an interrupt that never comes. Python's own handler, as in a terminal
# (the processes the tests start then get the default disposition).
if (
    threading.current_thread() is threading.main_thread()
    and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
):
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _load_servers() -> ModuleType:
    # The example project's server launcher, loaded by path: examples/ is not put on
    # sys.path, where its app packages would shadow the test projects' own.
    path = Path(__file__).resolve().parent.parent / "examples" / "servers.py"
    spec = importlib.util.spec_from_file_location("_plc_servers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


servers = _load_servers()


@pytest.fixture(scope="session", autouse=True)
def _shared_template() -> Iterator[None]:
    """The helpers' shared process-isolation template ends with the session."""
    yield
    SHARED_TEMPLATE.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL (initdb/pg_ctl from the machine): skipped without one, failed on CI."""
    yield from servers.server_or_skip(servers.postgres_server)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis (redis-server from the machine): skipped without one, failed on CI."""
    yield from servers.server_or_skip(servers.redis_server)


@pytest.fixture
def project(tmp_path: Path) -> Callable[[dict[str, str]], Path]:
    """Write a small Lambda project (handler files) and return its folder."""

    def make(files: dict[str, str]) -> Path:
        return write_files(tmp_path / "task", files)

    return make


# -- Docker, or its absence, for the backend tests ---------------------------------------


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # Unix socket paths must stay under ~100 bytes: tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="plc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def no_docker(monkeypatch: pytest.MonkeyPatch, short_dir: Path) -> None:
    """As on a machine without Docker, whatever this one has."""
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(docker_engine, "_default_sockets", lambda: [str(short_dir / "none.sock")])


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, short_dir: Path) -> Iterator[FakeDockerEngine]:
    with FakeDockerEngine(str(short_dir / "docker.sock")) as fake:
        monkeypatch.setenv("DOCKER_HOST", fake.url)
        yield fake


def pytest_itemcollected(item: pytest.Item) -> None:
    # Under xdist (addopts: --dist loadgroup) the tests that count a Docker engine's
    # containers before and after run one after another, on one worker. Marked as each
    # is collected, so that xdist's own naming of groups sees the mark.
    if item.get_closest_marker("docker") is not None:
        item.add_marker(pytest.mark.xdist_group("docker"))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if getattr(config.option, "loadgroup", False):  # an xdist worker, --dist loadgroup
        for item in items:
            _name_group(item)


def _name_group(item: pytest.Item) -> None:
    """Put the ``@group`` suffix that loadgroup schedules by on the node id where
    xdist's own hook could not: on pytest 9.2 its ``item._nodeid`` write no longer
    reaches the id (pytest-xdist issue 1386), and every group was split across workers
    (the example suite and the package build ran once per worker). Earlier pytest
    versions have the suffix from xdist already.

    The suffix follows a parametrized id's ``]``, which a structured id cannot say: its
    string is right, but pytest rebuilds it with a stray ``]`` where it shows ids
    relative to another folder (pytest run below the rootdir)."""
    groups = sorted(
        {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
    )
    suffix = "@" + "_".join(groups)
    if not groups or item.nodeid.endswith(suffix) or not hasattr(item, "_id"):
        return
    from _pytest.nodeid import NodeId  # pytest 9.2+: a structured id

    item._id = NodeId.parse(item.nodeid + suffix)
