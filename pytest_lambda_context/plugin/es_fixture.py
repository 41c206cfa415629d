"""Glue between pytest and the session's Elasticsearch: the ``es`` fixture.

Imported only when a test uses them (or when the header line is written).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_lambda_context.plugin import terminal
from pytest_lambda_context.plugin.session import PluginState
from pytest_lambda_context.services import docker_engine
from pytest_lambda_context.services.elasticsearch import backends
from pytest_lambda_context.services.elasticsearch.backends import BackendError
from pytest_lambda_context.services.elasticsearch.service import (
    ElasticsearchService,
)

__all__ = [
    "docker_skip_reason",
    "header_line",
    "session_service",
    "skip_without_docker",
]

_INSTALL_CLIENT = 'the es fixture needs the elasticsearch client: pip install "pytest-lambda-context[elasticsearch]"'


def header_line(state: PluginState) -> str:
    """Which backend and why, without probing Docker (every session prints it)."""
    decided = state.es_decision
    try:
        decision = decided or backends.decide_cheaply(state.options)
    except BackendError as exc:
        return f"es: misconfigured ({exc})"
    if decision is None:
        endpoint = docker_engine.docker_endpoint()
        return f"es: auto, decided at first use (a Docker engine may answer at {endpoint})"
    return f"es: {decision.backend} ({decision.reason})"


def session_service(state: PluginState) -> Iterator[ElasticsearchService]:
    """Body of the session-scoped fixture: decide, start, yield, stop."""
    # pytest.fail outside the except blocks: the message alone, no chained traceback.
    if not docker_engine.is_installed("elasticsearch"):
        pytest.fail(_INSTALL_CLIENT, pytrace=False)
    say = terminal.say(state.config)
    failure = None
    try:
        cheap = backends.decide_cheaply(state.options)
        decision = cheap or backends.decide(state.options)
        if cheap is None:
            say(f"es: {decision.backend} ({decision.reason})")
        state.es_decision = decision
        backend = backends.start_backend(decision, state.options, say=say)
    except BackendError as exc:
        failure = f"es fixture: {exc}"
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    service = ElasticsearchService(backend, decision, clock=state.clock)
    try:
        yield service
    finally:
        service.close()
        if service.cleanup_errors:
            say(
                "could not delete every index of this session: " + "; ".join(service.cleanup_errors)
            )


def docker_skip_reason(state: PluginState) -> str | None:
    """Why a ``docker``-marked test cannot run (no engine answered in 1 s), or None.

    Probed once per session."""
    if state.docker_probe is None:
        state.docker_probe = docker_engine.probe_docker()
    status = state.docker_probe
    return None if status.answered else f"needs a Docker engine; {status.detail}"


def skip_without_docker(state: PluginState) -> None:
    """Skip a ``docker``-marked test, reported at the test's line (as skipif does)."""
    reason = docker_skip_reason(state)
    if reason is None:
        return
    raise pytest.skip.Exception(reason, _use_item_location=True)
