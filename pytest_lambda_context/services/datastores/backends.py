"""Which server a datastore fixture uses: ``url`` (an existing server) or ``local``
(the machine's binaries); ``auto`` takes the URL if one is given, else the binaries."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_lambda_context.services.datastores.kind import DatastoreKind, Server
from pytest_lambda_context.services.datastores.local import ServerUnavailable
from pytest_lambda_context.services.urls import without_password

__all__ = ["CHOICES", "Choice", "ServerUnavailable", "start_server"]

CHOICES = ("auto", "local", "url")


@dataclass(frozen=True)
class Choice:
    """What the options say for one datastore: ``lambda_postgres`` and ``lambda_postgres_url``."""

    backend: str = "auto"
    url: str | None = None
    # The server's version must start with it ("15"); PostgreSQL's local backend also
    # picks its binaries by it.
    version: str | None = None


def start_server(kind: DatastoreKind, choice: Choice) -> tuple[Server, str]:
    """The server, and why this backend (for the header line).

    ServerUnavailable (skip the test) when no server can be had; ValueError for options
    that contradict each other or a URL of the wrong form."""
    option = f"lambda_{kind.name}"
    if choice.backend not in CHOICES:
        raise ValueError(f"{option}={choice.backend!r}: choose one of {', '.join(CHOICES)}")
    if choice.backend == "url" or (choice.backend == "auto" and choice.url):
        if not choice.url:
            raise ValueError(f"{option}=url needs {option}_url (the server's URL)")
        try:
            endpoint = kind.parse_url(choice.url)
        except ValueError as exc:
            raise ValueError(f"{option}_url={without_password(choice.url)!r}: {exc}") from None
        return Server(endpoint, "url"), f"{option}_url given"
    try:
        server = kind.start_local(choice.version)
    except ServerUnavailable as exc:
        raise ServerUnavailable(
            f"the {kind.name} fixture {exc}, or give an existing server with "
            f"--{option.replace('_', '-')}-url"
        ) from None
    why = "the machine's binaries" + (" (auto)" if choice.backend == "auto" else "")
    return server, why
