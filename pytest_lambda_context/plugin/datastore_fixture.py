"""Glue between pytest and the datastores: the ``postgres``, ``mysql`` and ``redis``
fixtures, and service placeholders (``{postgres_url}``, ``{es_host}``, ...) in env values.

Imported only when a test uses them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import pytest

from pytest_lambda_context.environments.function_config import FunctionConfig, FunctionWiring
from pytest_lambda_context.environments.placeholders import SERVICE_FIELDS
from pytest_lambda_context.plugin import terminal
from pytest_lambda_context.plugin.session import PluginState
from pytest_lambda_context.services.datastores import backends, registry
from pytest_lambda_context.services.datastores.backends import Choice, ServerUnavailable
from pytest_lambda_context.services.datastores.service import DatastoreService
from pytest_lambda_context.services.docker_engine import DockerStatus, probe_docker

__all__ = ["holder", "prepare_function", "session_service", "start_service"]

# Service fixtures the plugin itself defines; any other fixture whose value has
# placeholders() (factories.datastore) is found by its name in the test's fixtures.
BUILT_IN = ("es", *registry.DATASTORES)
_TOKEN = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)_(" + "|".join(SERVICE_FIELDS) + r")\}")


class HasPlaceholders(Protocol):
    def placeholders(self) -> Mapping[str, Any]: ...


def _docker(state: PluginState) -> DockerStatus:
    """Does a Docker engine answer? Asked once per session (per xdist worker), whatever
    the number of datastores: a hung engine costs its second once."""
    if state.docker_probe is None:
        state.docker_probe = probe_docker()
    return state.docker_probe


def unavailable(reason: str) -> None:
    """Skip the test with the reason; on CI (``CI=true``) fail it, so a missing install
    step cannot pass unseen."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: tests that need it must not skip)", pytrace=False)
    pytest.skip(reason)


def start_service(
    state: PluginState,
    kind_name: str,
    choice: Choice,
    *,
    name: str | None = None,
    placeholder_prefix: str | None = None,
) -> DatastoreService:
    """Start the server and its proxy (skip or fail the asking test when it cannot)."""
    kind = registry.kind(kind_name)
    failure = skip = None
    try:
        server, reason = backends.start_server(
            kind, choice, say=terminal.say(state.config), probe=lambda: _docker(state)
        )
    except ServerUnavailable as exc:
        skip = str(exc)
    except ValueError as exc:
        failure = f"{name or kind_name} fixture: {exc}"
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    if skip is not None:
        unavailable(skip)
    service = DatastoreService(
        kind,
        server,
        reason=reason,
        clock=state.clock,
        name=name,
        placeholder_prefix=placeholder_prefix,
    )
    wrong = None
    if choice.version is not None:
        try:
            found = service.version
        except Exception as exc:  # cannot ask: say so rather than pass unchecked
            found = f"unknown ({exc})"
        if not found.startswith(choice.version):
            wrong = (
                f"{name or kind.name}: version {choice.version!r} was asked for, but the "
                f"{kind.title} server is {found}"
            )
    if wrong is not None:
        service.close()
        pytest.fail(wrong, pytrace=False)
    endpoint = server.endpoint
    terminal.say(state.config)(
        f"{name or kind.name}: {server.backend} ({reason}), {kind.title} at "
        f"{endpoint.host}:{endpoint.port}"
    )
    return service


def session_service(state: PluginState, name: str) -> Iterator[DatastoreService]:
    """Body of the session-scoped ``_lambda_NAME_service`` fixture."""
    options = state.options
    choice = Choice(
        options.get(f"lambda_{name}") or "auto",
        options.get(f"lambda_{name}_url"),
        image=options.get(f"lambda_{name}_image"),
        tls=options.get(f"lambda_{name}_tls") == "on",
    )
    service = start_service(state, name, choice)
    try:
        yield service
    finally:
        service.close()


def holder(service: DatastoreService) -> Iterator[DatastoreService]:
    """Body of a fixture that holds the service for its scope: counts from its start, a
    database of its own, removed after it."""
    problem = None
    try:
        service.begin()
    except Exception as exc:  # the server refused: a clear line, not a plugin traceback
        problem = f"{service.name}: could not make a database for this test: {exc}"
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    try:
        yield service
    finally:
        service.end()


def prepare_function(request: pytest.FixtureRequest, config: FunctionConfig) -> FunctionWiring:
    """Fill ``{NAME_url}``, ``{NAME_host}``, ... in env values from the service fixture
    ``NAME``, pulling it in (so the order of fixtures does not matter)."""
    wanted = {match.group(1) for value in config.env.values() for match in _TOKEN.finditer(value)}
    wanted.update(name for name in BUILT_IN if name in request.fixturenames)
    suppliers: dict[str, Any] = {}
    for name in sorted(wanted):
        try:
            service = request.getfixturevalue(name)
        except Exception as exc:  # pytest's FixtureLookupError: no fixture of that name
            if type(exc).__name__ != "FixtureLookupError":
                raise
            continue  # the function says the placeholder is unknown
        if hasattr(service, "placeholders"):
            suppliers.update(service.placeholders())
    return FunctionWiring(placeholders=suppliers)
