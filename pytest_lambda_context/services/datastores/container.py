"""The datastores' ``container`` backend: the kind's image started with testcontainers
once per session (per xdist worker), on a port the engine publishes on the machine.

testcontainers' generic container, with the kind's own readiness probe from the test
side (the same bytes the local backend waits for), not each module's wait strategy:
those differ across testcontainers versions, and some need a client library installed
or a shell in the image.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import replace

from pytest_lambda_context.services.datastores.kind import ContainerRecipe, Endpoint, Server
from pytest_lambda_context.services.datastores.local import ServerUnavailable
from pytest_lambda_context.services.docker_engine import (
    ContainerChance,
    DockerStatus,
    RunningContainer,
    publish,
    testcontainers_defaults,
)

__all__ = ["START_TIMEOUT", "start_container"]

# A first start of a database image initialises its data folder: seconds, not minutes.
START_TIMEOUT = 120.0
_POLL = 0.1


def start_container(
    title: str,
    recipe: ContainerRecipe,
    image: str,
    status: DockerStatus,
    chance: ContainerChance,
    *,
    timeout: float = START_TIMEOUT,
    say: Callable[[str], None] = lambda _: None,
) -> Server:
    """Start ``image`` and wait until the server answers (ServerUnavailable if it cannot:
    an exit or no answer in time). ``chance``: the engine answered at ``status`` and
    the image is there or can be pulled (see docker_engine.container_chance)."""
    assert status.endpoint is not None and chance.image_state is not None
    with testcontainers_defaults():
        return _start(title, recipe, image, status, chance, timeout, say)


def _start(
    title: str,
    recipe: ContainerRecipe,
    image: str,
    status: DockerStatus,
    chance: ContainerChance,
    timeout: float,
    say: Callable[[str], None],
) -> Server:
    assert status.endpoint is not None
    how = chance.detail
    from testcontainers.core.container import DockerContainer  # installed: see chance

    # The engine we probed: docker.from_env reads DOCKER_HOST from this mapping (a
    # socket we found ourselves, rootless or Docker Desktop, is not the SDK's default).
    environment = {**os.environ, "DOCKER_HOST": status.endpoint.url}
    try:  # it connects to the engine at once
        container = DockerContainer(image, docker_client_kw={"environment": environment})
    except Exception as exc:
        raise ServerUnavailable(f"the Docker engine refused a client: {exc}") from None
    publish(container, recipe.port, status.endpoint)
    # A password of this start's own: the port may be reachable from elsewhere.
    password = secrets.token_hex(12) if recipe.password_variables else ""
    for name, value in recipe.environment.items():
        container.with_env(name, value)
    for name in recipe.password_variables:
        container.with_env(name, password)
    if recipe.command:
        container.with_command(list(recipe.command))
    running = RunningContainer(container)
    say(f"starting {title} container {image} ({how}; waiting up to {timeout:g} s)")
    if chance.image_state == "pullable":
        say(f"pulling {image}: the wait for it to answer starts once it is pulled")
    try:
        container.start()  # pulls the image first if needed
        running.guard(status.endpoint)
    except Exception as exc:
        running.stop()
        raise ServerUnavailable(f"could not start a container from {image}: {exc}") from None
    began = time.monotonic()
    what = f"the {title} container ({image})"
    try:
        try:
            host = container.get_container_host_ip()
            port = int(container.get_exposed_port(recipe.port))
        except Exception as exc:  # no mapping: it exited at once, most likely
            why = running.exited() or str(exc)
            raise ServerUnavailable(f"{what} has no published port {recipe.port}: {why}") from None
        # 127.0.0.1 rather than a name that may resolve to ::1 first.
        endpoint = recipe.endpoint.at("127.0.0.1" if host == "localhost" else host, port)
        endpoint = replace(endpoint, password=password)
        _wait(recipe, endpoint, running, timeout, began, what)
    except BaseException:
        running.stop()
        raise
    return Server(endpoint, "container", running)


def _wait(
    recipe: ContainerRecipe,
    endpoint: Endpoint,
    running: RunningContainer,
    timeout: float,
    began: float,
    what: str,
) -> None:
    last = "no answer yet"
    while True:
        try:
            if recipe.ready(endpoint):
                return
        except Exception as exc:  # refused, reset, or the server's "loading" answer
            last = str(exc) or type(exc).__name__
        gone = running.exited()
        if gone is not None:
            raise ServerUnavailable(f"{what} stopped before it answered: {gone}")
        if time.monotonic() - began >= timeout:
            raise ServerUnavailable(
                f"{what} did not answer at {endpoint.host}:{endpoint.port} within "
                f"{timeout:g} s (last: {last})"
            )
        time.sleep(_POLL)
