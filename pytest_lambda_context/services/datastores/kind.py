"""What one datastore module provides: the ``DatastoreKind`` interface, and the records
shared by every kind (where a server is, a started server, how it runs in a container).

A new datastore is one module with a ``KIND`` object of this shape, plus one line in
:mod:`.registry`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

__all__ = ["ContainerRecipe", "DatastoreKind", "Endpoint", "Server", "Stoppable"]


@dataclass(frozen=True)
class Endpoint:
    """Where a server listens and whom to connect as. ``database``: a database name
    (PostgreSQL, MySQL) or a database number (Redis), as text."""

    host: str
    port: int
    user: str = ""
    password: str = ""
    database: str = ""
    # Connections use TLS; ``ca_file``: the certificate that signed the server's (a
    # server the plugin started with its own self-signed one), "" where unknown.
    tls: bool = False
    ca_file: str = ""

    def at(self, host: str, port: int) -> Endpoint:
        return replace(self, host=host, port=port)

    def on(self, database: str) -> Endpoint:
        return replace(self, database=database)


class Stoppable(Protocol):
    def stop(self) -> None: ...


@dataclass
class Server:
    """A running server: where it is, and what to stop when the plugin started it (a
    local process or a container)."""

    endpoint: Endpoint
    backend: str  # "local", "container" or "url"
    process: Stoppable | None = None

    @property
    def owned(self) -> bool:
        """The plugin started it: no one else uses it, and it goes with all it holds."""
        return self.backend != "url"

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass(frozen=True)
class ContainerRecipe:
    """How a kind runs in a container of its official image (or one that behaves alike)."""

    image: str  # the default image, pinned to a major version
    # The image of a version asked for ("postgres:{version}-alpine").
    versioned_image: str
    port: int  # where the server listens inside the container
    # Whom the plugin connects as; host and port (and the password) are filled in once
    # it runs.
    endpoint: Endpoint
    # ready(endpoint): the server answers at endpoint (OSError counts as no).
    ready: Callable[[Endpoint], bool]
    # The image's variables that set that user's password: a new one per start.
    password_variables: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    # Arguments for the image's entrypoint (a test server: no durability, room for many
    # environments' connections).
    command: tuple[str, ...] = ()

    def image_for(self, version: str | None) -> str:
        """The default image, or the one of ``version``."""
        return self.versioned_image.format(version=version) if version else self.image


class DatastoreKind(Protocol):
    """One datastore: how to start it, name it in a URL, and give each test its own
    database (or keyspace)."""

    name: str  # the fixture, option prefix, placeholder prefix and proxy name
    title: str  # as people call it: "PostgreSQL"
    install: str  # what to install for the local backend
    client_install: str  # what to install for its test-side client
    container: ContainerRecipe  # how it runs in a container (the container backend)

    def start_local(self, version: str | None = None, *, tls: bool = False) -> Server:
        """Start a server from the machine's binaries (raises ServerUnavailable); of
        ``version`` where the kind can choose; ``tls``: serving TLS with a self-signed
        certificate made for it."""
        ...

    def parse_url(self, url: str) -> Endpoint:
        """An existing server's URL (ValueError naming the right form)."""
        ...

    def url(self, endpoint: Endpoint) -> str:
        """The URL the usual clients take."""
        ...

    def create_namespace(self, admin: Endpoint, name: str, *, owned: bool) -> str:
        """Make a new, empty database for a test; returns what goes in ``database``.
        ``owned``: the plugin started the server (no one else uses it)."""
        ...

    def drop_namespace(self, admin: Endpoint, database: str) -> bool:
        """Remove a namespace made by :meth:`create_namespace`; False when it is still in
        use (a warm environment's connection), to be tried again at the end."""
        ...

    def force_drop_namespace(self, admin: Endpoint, database: str) -> None:
        """Remove it, cutting whoever still uses it (the session's end)."""
        ...

    def version(self, endpoint: Endpoint) -> str: ...

    def client(self, endpoint: Endpoint, **kwargs: Any) -> Any:
        """A test-side client of the usual library (ImportError naming the install)."""
        ...
