"""Fixtures for a project's own conftest, in pytest-postgresql's style:
``from pytest_lambda_context import factories``.

``factories.lambda_function(handler, *, scope="function", **config)`` and
``factories.datastore(kind, *, scope="session", ...)`` each return a fixture; at module
or session scope a function keeps its environments warm across the tests that use it,
and a datastore keeps its server, proxy and database. A function made this way is in
the reports, and the limits of each test that uses it apply to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal, cast

import pytest

from pytest_lambda_context.services.datastores.registry import DATASTORES

if TYPE_CHECKING:
    from pytest_lambda_context.environments.function import LambdaFunction
    from pytest_lambda_context.services.datastores.service import DatastoreService

__all__ = ["datastore", "lambda_function"]

Scope = Literal["function", "class", "module", "package", "session"]
SCOPES = ("function", "class", "module", "package", "session")
_BACKENDS = ("auto", "local", "container", "url")


def _check_scope(factory: str, scope: Any) -> None:
    if scope not in SCOPES:
        raise ValueError(f"factories.{factory}(scope={scope!r}): choose one of {', '.join(SCOPES)}")


def lambda_function(handler: str, *, scope: str = "function", **config: Any) -> Any:
    """A fixture that makes ``LambdaFunction(handler, **config)`` for its scope and closes
    it after. Options are checked now, where the conftest is imported."""
    _check_scope("lambda_function", scope)
    import os

    from pytest_lambda_context.environments.function_config import FunctionConfig

    # The values, as the function will check them; not env (its placeholders are filled
    # by fixtures) nor the code root (found relative to the session's root, later).
    checked = {k: v for k, v in config.items() if k not in ("env", "code_root")}
    try:
        FunctionConfig.build(handler, {**checked, "code_root": os.getcwd()})
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"factories.lambda_function({handler!r}, ...): {exc}") from None

    @pytest.fixture(scope=cast("Scope", scope))
    def made(request: pytest.FixtureRequest) -> Iterator[LambdaFunction]:
        from pytest_lambda_context.plugin import plugin_state
        from pytest_lambda_context.plugin.session import TestFunctions

        # A function-scoped one belongs to its test, as make_lambda_function's do; a
        # wider one to the fixture, which reports it when its scope ends.
        tracked = TestFunctions.of(request.node) if scope == "function" else TestFunctions()
        with plugin_state(request.config).function_factory(request, tracked) as factory:
            yield factory(handler, **config)

    made.__doc__ = (
        f"``{handler}`` as a LambdaFunction, one per {scope} (factories.lambda_function)."
    )
    return made


def datastore(
    kind: str,
    *,
    scope: str = "session",
    backend: str = "auto",
    url: str | None = None,
    version: str | None = None,
    name: str | None = None,
    image: str | None = None,
    tls: bool = False,
) -> Any:
    """A fixture with a server of its own (``kind``: postgres, mysql or redis), a counting
    proxy named ``name`` (default: the fixture's name) and a database for its scope.

    Its placeholders are named after the fixture: ``orders_db = factories.datastore(
    "postgres")`` fills ``{orders_db_url}``, ``{orders_db_host}``, ... ``version``: the
    server's version must start with it (``"15"``); for PostgreSQL's local backend it
    also chooses /usr/lib/postgresql/VERSION/bin. ``image``: the container backend's
    image (default: the official one of a pinned major version). ``tls``: the local
    server serves TLS with a self-signed certificate (``{NAME_ca}`` is its path)."""
    if kind not in DATASTORES:
        raise ValueError(
            f"factories.datastore({kind!r}): no such datastore; choose one of "
            f"{', '.join(DATASTORES)}"
        )
    _check_scope("datastore", scope)
    if backend not in _BACKENDS:
        raise ValueError(
            f"factories.datastore({kind!r}, backend={backend!r}): choose one of "
            f"{', '.join(_BACKENDS)}"
        )
    if backend == "url" and not url:
        raise ValueError(f"factories.datastore({kind!r}, backend='url') needs url=...")
    if url is not None:
        from pytest_lambda_context.services.datastores.registry import kind as kind_of

        try:
            kind_of(kind).parse_url(url)
        except ValueError as exc:
            raise ValueError(f"factories.datastore({kind!r}, url=...): {exc}") from None
    if version is not None and (not isinstance(version, str) or not version.strip()):
        raise ValueError(f"factories.datastore({kind!r}, version={version!r}): text such as '15'")
    if not isinstance(tls, bool):
        raise ValueError(f"factories.datastore({kind!r}, tls={tls!r}): True or False")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        raise ValueError(
            f"factories.datastore({kind!r}, image={image!r}): an image name such as "
            "'postgres:16-alpine'"
        )
    if name is not None and (not isinstance(name, str) or not name.isidentifier()):
        raise ValueError(
            f"factories.datastore({kind!r}, name={name!r}): a name such as 'orders_db'"
        )

    @pytest.fixture(scope=cast("Scope", scope))
    def made(request: pytest.FixtureRequest) -> Iterator[DatastoreService]:
        from pytest_lambda_context.plugin import datastore_fixture, plugin_state
        from pytest_lambda_context.services.datastores.backends import Choice

        service = datastore_fixture.start_service(
            plugin_state(request.config),
            kind,
            Choice(backend, url, version, image, tls),
            name=name or request.fixturename,
            placeholder_prefix=request.fixturename,
        )
        try:
            yield from datastore_fixture.holder(service)
        finally:
            service.close()

    made.__doc__ = f"A {kind} server of its own, one database per {scope} (factories.datastore)."
    return made
