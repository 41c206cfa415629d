"""Which server a datastore fixture uses: ``url`` (an existing server), ``container``
(the kind's image, when a Docker engine answers) or ``local`` (the machine's binaries);
``auto`` takes the URL if one is given, else a container if Docker answers and has (or
can pull) the image, else the binaries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pytest_lambda_context.services.datastores.kind import DatastoreKind, Server
from pytest_lambda_context.services.datastores.local import ServerUnavailable
from pytest_lambda_context.services.docker_engine import (
    ContainerChance,
    DockerStatus,
    container_chance,
    docker_endpoint,
    probe_docker,
)
from pytest_lambda_context.services.urls import without_password

__all__ = ["CHOICES", "Choice", "ServerUnavailable", "start_server"]

CHOICES = ("auto", "local", "container", "url")


@dataclass(frozen=True)
class Choice:
    """What the options say for one datastore: ``lambda_postgres`` and ``lambda_postgres_url``."""

    backend: str = "auto"
    url: str | None = None
    # The server's version must start with it ("15"); PostgreSQL's local backend also
    # picks its binaries by it.
    version: str | None = None
    # The container backend's image (None: the kind's default).
    image: str | None = None
    # The local backend serves TLS, with a self-signed certificate made for it.
    tls: bool = False


def start_server(
    kind: DatastoreKind,
    choice: Choice,
    *,
    say: Callable[[str], None] = lambda _: None,
    probe: Callable[[], DockerStatus] = probe_docker,
) -> tuple[Server, str]:
    """The server, and why this backend (for the header line); ``say`` tells the
    terminal what takes time (a container's start, an image's pull).

    ServerUnavailable (skip the test) when no server can be had; ValueError for options
    that contradict each other or a URL of the wrong form."""
    option = f"lambda_{kind.name}"
    if choice.backend not in CHOICES:
        raise ValueError(f"{option}={choice.backend!r}: choose one of {', '.join(CHOICES)}")
    if choice.tls and (choice.backend in ("url", "container") or choice.url):
        raise ValueError(
            f"{option}_tls is for the local backend (a server the plugin starts with a "
            "certificate of its own); for an existing server put TLS in its URL "
            "(postgresql://...?sslmode=require, rediss://...)"
        )
    if choice.backend == "url" or (choice.backend == "auto" and choice.url):
        if not choice.url:
            raise ValueError(f"{option}=url needs {option}_url (the server's URL)")
        try:
            endpoint = kind.parse_url(choice.url)
        except ValueError as exc:
            raise ValueError(f"{option}_url={without_password(choice.url)!r}: {exc}") from None
        return Server(endpoint, "url"), f"{option}_url given"
    image = choice.image or kind.container.image_for(choice.version)
    if choice.backend == "container":
        status = probe()
        chance = container_chance(status, image)
        return _start_container(kind, image, status, chance, say), f"{option} = container"
    no_container = None
    if choice.backend == "auto" and not choice.tls:  # TLS: the local backend's
        status = probe()
        chance = container_chance(status, image)
        no_container = chance.detail if chance.image_state is None else None
        if no_container is None:
            try:
                server = _start_container(kind, image, status, chance, say)
                return server, f"auto: {status.detail}"
            except ServerUnavailable as exc:  # the machine's binaries may still do
                no_container = str(exc)
    try:
        server = kind.start_local(choice.version, tls=choice.tls)
    except ServerUnavailable as exc:
        raise ServerUnavailable(
            f"the {kind.name} fixture {exc}, or give an existing server with "
            f"--{option.replace('_', '-')}-url"
        ) from None
    why = "the machine's binaries" + (", TLS" if choice.tls else "")
    if no_container is not None:
        why += f" (auto: {no_container})" if docker_endpoint() is not None else " (auto)"
    return server, why


def _start_container(
    kind: DatastoreKind,
    image: str,
    status: DockerStatus,
    chance: ContainerChance,
    say: Callable[[str], None],
) -> Server:
    from pytest_lambda_context.services.datastores.container import start_container

    if not status.answered or status.endpoint is None:
        raise ServerUnavailable(
            f"the {kind.name} fixture needs a container, but {status.detail}. Start Docker "
            f"(or set DOCKER_HOST), or choose --lambda-{kind.name}=local or url"
        )
    try:
        if chance.image_state is None:
            raise ServerUnavailable(f"no container: {chance.detail}")
        return start_container(kind.title, kind.container, image, status, chance, say=say)
    except ServerUnavailable as exc:
        raise ServerUnavailable(
            f"the {kind.name} fixture: {exc}; or choose --lambda-{kind.name}=local or url"
        ) from None
