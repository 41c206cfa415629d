"""Redis: ``redis-server`` from the machine (Debian's ``redis-server``), without
persistence; a database number of its own for each test (on a server the plugin
started; an existing server's database is used as its URL names it)."""

from __future__ import annotations

import itertools
import socket
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from pytest_lambda_context.services.datastores import local
from pytest_lambda_context.services.datastores.kind import ContainerRecipe, Endpoint, Server

__all__ = ["KIND", "RedisKind", "command_reply"]

_SCHEMES = ("redis", "rediss")
# Databases of a server the plugin started: one per test, never reused in a session.
_DATABASES = 10000
_Reply = Any


class RedisKind:
    name = "redis"
    title = "Redis"
    install = "apt-get install redis-server"
    client_install = "pip install redis"
    container = ContainerRecipe(
        image="redis:7-alpine",
        versioned_image="redis:{version}-alpine",
        port=6379,
        endpoint=Endpoint("", 0, "", "", "0"),
        ready=lambda endpoint: command_reply(endpoint, ["PING"]) == "PONG",
        # A database number per test, as on a local server; no persistence; reached
        # through the engine's port mapping, so not from loopback (the official image
        # turns protected mode off the same way).
        command=(
            "redis-server", "--protected-mode", "no", "--save", "", "--appendonly", "no",
            "--databases", str(_DATABASES), "--maxclients", "1000",
        ),
    )  # fmt: skip

    def __init__(self) -> None:
        self._numbers = itertools.count()

    def start_local(self, version: str | None = None, *, tls: bool = False) -> Server:
        binary = local.find_binary(["redis-server"], (), self.install)
        user = local.server_user(["redis"])
        folder = local.make_folder(self.name, user)
        port = local.free_port()
        command = [
            binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
            "--appendonly", "no", "--dir", folder, "--daemonize", "no",
            "--databases", str(_DATABASES), "--maxclients", "1000",
        ]  # fmt: skip
        endpoint = Endpoint("127.0.0.1", port, "", "", "0")
        if tls:  # TLS only, as ElastiCache with in-transit encryption
            cert, key = local.make_certificate(folder, user)
            command[command.index("--port") + 1] = "0"
            command += ["--tls-port", str(port), "--tls-cert-file", cert, "--tls-key-file", key]
            command += ["--tls-ca-cert-file", cert, "--tls-auth-clients", "no"]
            endpoint = Endpoint("127.0.0.1", port, "", "", "0", tls=True, ca_file=cert)

        def ready() -> bool:
            return bool(command_reply(endpoint, ["PING"]) == "PONG")

        try:
            process = local.start_process(command, folder, user, ready, "redis-server")
        except BaseException:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            raise
        return Server(endpoint, "local", process)

    def parse_url(self, url: str) -> Endpoint:
        parts = urlsplit(url)
        database = parts.path.lstrip("/") or "0"
        if parts.scheme not in _SCHEMES or not parts.hostname or not database.isdigit():
            raise ValueError("expected redis://[:password@]host:port/database-number")
        return Endpoint(
            parts.hostname,
            parts.port or 6379,
            unquote(parts.username or ""),
            unquote(parts.password or ""),
            database,
            tls=parts.scheme == "rediss",
            ca_file=parse_qs(parts.query).get("ssl_ca_certs", [""])[0],
        )

    def url(self, endpoint: Endpoint) -> str:
        auth = quote(endpoint.user, safe="")
        if endpoint.password:
            auth += ":" + quote(endpoint.password, safe="")
        at = f"{auth}@" if auth else ""
        place = f"{endpoint.host}:{endpoint.port}/{endpoint.database or '0'}"
        if not endpoint.tls:
            return f"redis://{at}{place}"
        # redis-py verifies the certificate: against the server's own CA, when known.
        trust = f"?ssl_ca_certs={quote(endpoint.ca_file)}" if endpoint.ca_file else ""
        return f"rediss://{at}{place}{trust}"

    def create_namespace(self, admin: Endpoint, name: str, *, owned: bool) -> str:
        if not owned:
            return admin.database  # someone else's server: its databases are not ours
        number = str(1 + next(self._numbers) % (_DATABASES - 1))
        command_reply(admin, ["SELECT", number], ["FLUSHDB"])
        return number

    def drop_namespace(self, admin: Endpoint, database: str) -> bool:
        if database == admin.database:
            return True  # the URL's own database: nothing of it was made by us
        if self._users_of(admin, database):
            return False
        command_reply(admin, ["SELECT", database], ["FLUSHDB"])
        return True

    def force_drop_namespace(self, admin: Endpoint, database: str) -> None:
        if database == admin.database:
            return
        for client_id in self._users_of(admin, database):
            command_reply(admin, ["CLIENT", "KILL", "ID", client_id])
        command_reply(admin, ["SELECT", database], ["FLUSHDB"])

    def version(self, endpoint: Endpoint) -> str:
        info = str(command_reply(endpoint, ["INFO", "server"]))
        for line in info.splitlines():
            if line.startswith("redis_version:"):
                return line.partition(":")[2].strip()
        return "unknown"

    def client(self, endpoint: Endpoint, **kwargs: Any) -> Any:
        import redis

        return redis.Redis.from_url(self.url(endpoint), **kwargs)

    def _users_of(self, admin: Endpoint, database: str) -> list[str]:
        listing = str(command_reply(admin, ["CLIENT", "LIST"]))
        users = []
        for line in listing.splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if fields.get("db") == database:
                users.append(fields["id"])
        return users


def command_reply(endpoint: Endpoint, *commands: list[str]) -> _Reply:
    """Send commands on one new connection (after AUTH, if a password is set); the last
    reply. The test side's own wire client: no library needed to manage databases."""
    if endpoint.password:
        auth = [endpoint.user, endpoint.password] if endpoint.user else [endpoint.password]
        commands = (["AUTH", *auth], *commands)
    with _connect(endpoint) as sock:
        reader = sock.makefile("rb")
        for parts in commands:
            payload = f"*{len(parts)}\r\n".encode()
            for part in parts:
                data = part.encode()
                payload += b"$%d\r\n%s\r\n" % (len(data), data)
            sock.sendall(payload)
        reply: _Reply = None
        for _ in commands:
            reply = _read(reader)
        return reply


def _connect(endpoint: Endpoint) -> socket.socket:
    sock = socket.create_connection((endpoint.host, endpoint.port), timeout=10)
    if not endpoint.tls:
        return sock
    import ssl

    context = ssl.create_default_context(cafile=endpoint.ca_file or None)
    try:
        return context.wrap_socket(sock, server_hostname=endpoint.host)
    except BaseException:
        sock.close()
        raise


def _read(reader: Any) -> _Reply:
    line = reader.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2].decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RuntimeError(f"redis: {rest}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else reader.read(size + 2)[:-2].decode(errors="replace")
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read(reader) for _ in range(size)]
    raise RuntimeError(f"redis: unexpected reply {line[:40]!r}")


KIND = RedisKind()
