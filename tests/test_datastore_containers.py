"""The postgres, mysql and redis fixtures' container backend: chosen (or not) and why,
and, with a Docker engine, run for real from the stand-in images that
.ci/datastore-images/build.sh makes of this machine's own server binaries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from urllib.parse import quote

import pytest
from _fake_docker import FakeDockerEngine
from test_datastores import ENV, KINDS, handler_files

from pytest_lambda_context.services import docker_engine

STANDIN = "pytest-lambda-context/{kind}-standin:local"


def _write_project(pytester: pytest.Pytester, kind: str, test: str) -> None:
    for path, text in handler_files(kind).items():
        target = pytester.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    pytester.makepyfile(test_it=test)


def _memoized_test(kind: str) -> str:
    return f"""
import pytest

pytestmark = pytest.mark.lambda_handler("app.memoized.handler", env={ENV[kind]!r})

@pytest.mark.max_connections(1, via={kind!r})
def test_one_connection_per_environment(lambda_function, {kind}):
    for _ in range(5):
        assert lambda_function.invoke({{}}) == 1
    assert {kind}.connections.opened == 1
    print("BACKEND", {kind}.backend, {kind}.version)
"""


# --- without a usable engine: the choice and its reason ------------------------------------


def test_container_without_docker_skips_saying_what_to_do(
    pytester: pytest.Pytester, no_docker: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("redis")
    monkeypatch.delenv("CI", raising=False)  # CI=true would fail it instead (tested apart)
    _write_project(pytester, "redis", _memoized_test("redis"))
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs", "--lambda-redis=container")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED * the redis fixture needs a container, but no Docker engine found: "
            "DOCKER_HOST is unset *. Start Docker (or set DOCKER_HOST), or choose "
            "--lambda-redis=local or url"
        ]
    )


def test_auto_without_the_image_uses_the_machines_binaries_and_says_why(
    pytester: pytest.Pytester, engine: FakeDockerEngine
) -> None:
    pytest.importorskip("redis")
    _write_project(pytester, "redis", _memoized_test("redis"))
    result = pytester.runpytest("-p", "no:cacheprovider", "-s", "--lambda-redis-image=no/such:1")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "lambda-context: redis: local (the machine's binaries (auto: a Docker engine "
            "answered at unix://* in * ms, but image no/such:1 is not present and cannot be "
            "pulled (*))), Redis at 127.0.0.1:*",
            "BACKEND local *",
        ]
    )
    assert engine.requests[:3] == [
        "/_ping",
        "/images/no/such:1/json",
        "/distribution/no/such:1/json",
    ]


def test_auto_falls_back_to_the_machines_binaries_when_the_container_fails(
    pytester: pytest.Pytester, engine: FakeDockerEngine
) -> None:
    # The engine has the image but runs nothing (this fake answers only probes): the
    # machine's own server does the test's work, and the reason says what happened.
    pytest.importorskip("redis")
    pytest.importorskip("testcontainers")
    engine.images.add("redis:7-alpine")
    _write_project(pytester, "redis", _memoized_test("redis"))
    # A subprocess: the docker SDK does not survive pytester's in-process runs.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "lambda-context: redis: local (the machine's binaries (auto: the redis fixture: *"
            "or choose --lambda-redis=local or url)), Redis at 127.0.0.1:*",
            "BACKEND local *",
        ]
    )


def test_a_version_chooses_the_image_of_that_version() -> None:
    from pytest_lambda_context.services.datastores import registry

    assert registry.kind("postgres").container.image_for("15") == "postgres:15-alpine"
    assert registry.kind("mysql").container.image_for("10.11") == "mariadb:10.11"
    assert registry.kind("redis").container.image_for(None) == "redis:7-alpine"


@pytest.mark.parametrize("backend", ["container", "auto"])
def test_the_options_and_the_factory_take_the_container_backend(
    pytester: pytest.Pytester, backend: str
) -> None:
    pytester.makeconftest(
        f"""
        from pytest_lambda_context import factories

        cache = factories.datastore("redis", backend={backend!r}, image="redis:7-alpine")
        """
    )
    pytester.makepyfile(test_it="def test_nothing(): pass")
    result = pytester.runpytest(
        "-p", "no:cacheprovider", f"--lambda-postgres={backend}", "--lambda-postgres-image=x:1"
    )
    result.assert_outcomes(passed=1)


def test_a_factory_image_that_is_not_a_name_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from pytest_lambda_context import factories

        cache = factories.datastore("redis", image=" ")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.stderr.fnmatch_lines(
        ["*factories.datastore('redis', image=' '): an image name such as 'postgres:16-alpine'*"]
    )
    assert result.ret != 0


# --- with a Docker engine, for real ----------------------------------------------------------


def _image(kind: str) -> str:
    image = STANDIN.format(kind=kind)
    status = docker_engine.probe_docker()
    if not status.answered or status.endpoint is None:
        pytest.skip(status.detail)
    state, how = docker_engine.image_state(status.endpoint, image)
    if state != "present":
        pytest.skip(f"{how}: build it with .ci/datastore-images/build.sh")
    return image


def _containers_of(image: str) -> list[str]:
    status = docker_engine.probe_docker()
    assert status.endpoint is not None
    filters = quote(json.dumps({"ancestor": [image]}))
    code, body = docker_engine._docker_api(
        status.endpoint, "GET", f"/containers/json?all=1&filters={filters}", 5
    )
    assert code == 200
    return [container["Id"] for container in json.loads(body)]


@pytest.mark.docker
@pytest.mark.parametrize(
    ("kind", "backend"),
    [("redis", "container"), ("postgres", "container"), ("mysql", "container"), ("redis", "auto")],
)
def test_container_backend_runs_for_real(
    pytester: pytest.Pytester, kind: str, backend: str
) -> None:
    pytest.importorskip(KINDS[kind][0])
    image = _image(kind)
    before = _containers_of(image)
    _write_project(pytester, kind, _memoized_test(kind))
    # A subprocess: the docker SDK (requests) does not survive pytester's in-process
    # module snapshots.
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-s",
        f"--lambda-{kind}={backend}",
        f"--lambda-{kind}-image={image}",
    )
    result.assert_outcomes(passed=1)
    why = (
        f"lambda_{kind} = container"
        if backend == "container"
        else "auto: a Docker engine answered*"
    )
    result.stdout.fnmatch_lines(
        [f"lambda-context: {kind}: container ({why}), * at 127.0.0.1:*", "BACKEND container *"]
    )
    assert _containers_of(image) == before  # stopped and removed at the session's end


@pytest.mark.docker
def test_a_killed_session_leaves_no_container_behind(pytester: pytest.Pytester) -> None:
    # SIGKILL gives pytest no chance to stop its container: the watchdog removes it.
    pytest.importorskip("redis")
    image = _image("redis")
    before = _containers_of(image)
    started = pytester.path / "started"
    pytester.makepyfile(
        test_it=f"""
        import pathlib, time

        def test_holds_the_server(redis):
            pathlib.Path({str(started)!r}).write_text(redis.backend)
            time.sleep(120)
        """
    )
    session = subprocess.Popen(
        [
            *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"),
            *("--lambda-redis=container", f"--lambda-redis-image={image}"),
        ],
        cwd=pytester.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and session.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.read_text() == "container"
        assert len(_containers_of(image)) == len(before) + 1
    finally:
        session.kill()
        session.wait()
    deadline = time.monotonic() + 20
    while _containers_of(image) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _containers_of(image) == before


def test_testcontainers_settings_hold_only_while_the_plugin_starts_a_container(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before, they were left in os.environ for the rest of the session, where a
    # project's own testcontainers use would meet them.
    config = pytest.importorskip("testcontainers.core.config").testcontainers_config
    monkeypatch.delenv("TESTCONTAINERS_RYUK_DISABLED", raising=False)
    monkeypatch.delenv("TESTCONTAINERS_CONNECTION_MODE", raising=False)
    monkeypatch.setattr(config, "connection_mode_override", None)
    monkeypatch.setitem(vars(config), "_ryuk_disabled", None)
    environ = dict(os.environ)
    with docker_engine.testcontainers_defaults():
        assert config.ryuk_disabled is True
        assert config.connection_mode_override is not None
        assert config.connection_mode_override.value == "docker_host"
    assert vars(config)["_ryuk_disabled"] is None
    assert config.connection_mode_override is None
    assert dict(os.environ) == environ
    # A user's own setting wins: in the environment, or in code.
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "false")
    with docker_engine.testcontainers_defaults():
        assert config.ryuk_disabled is False
    monkeypatch.delenv("TESTCONTAINERS_RYUK_DISABLED")
    config.ryuk_disabled = False
    with docker_engine.testcontainers_defaults():
        assert config.ryuk_disabled is False
