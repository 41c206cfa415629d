"""PostgreSQL: ``initdb`` and ``postgres`` from the machine (Debian's ``postgresql``
package puts them in /usr/lib/postgresql/*/bin), trust authentication for user
``postgres`` on 127.0.0.1; a database of its own for each test."""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from pytest_lambda_context.services.datastores import local
from pytest_lambda_context.services.datastores.kind import ContainerRecipe, Endpoint, Server

__all__ = ["KIND", "PostgresKind"]

_FOLDERS = ("/usr/lib/postgresql/*/bin",)
_SCHEMES = ("postgresql", "postgres")
_IN_USE = "55006"  # object_in_use: another session is connected to the database
_TLS_MODES = ("require", "verify-ca", "verify-full")
# The protocol's SSLRequest: a server that accepts connections answers with one byte.
_SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")


class PostgresKind:
    name = "postgres"
    title = "PostgreSQL"
    install = "apt-get install postgresql"
    client_install = 'pip install "psycopg[binary]"'
    container = ContainerRecipe(
        image="postgres:16-alpine",
        versioned_image="postgres:{version}-alpine",
        port=5432,
        endpoint=Endpoint("", 0, "postgres", "", "postgres"),
        ready=lambda endpoint: _answers(endpoint),
        # The official image's: the superuser's password (it refuses to start without).
        password_variables=("POSTGRES_PASSWORD",),
        command=(
            "postgres", "-c", "fsync=off", "-c", "full_page_writes=off",
            "-c", "synchronous_commit=off", "-c", "max_connections=300",
        ),
    )  # fmt: skip

    def start_local(self, version: str | None = None, *, tls: bool = False) -> Server:
        if version is None:
            initdb = local.find_binary(["initdb"], _FOLDERS, self.install)
        else:  # that version's folder only: PATH may hold another one
            folder = f"/usr/lib/postgresql/{version}/bin"
            initdb = local.find_binary(
                ["initdb"], [folder], f"apt-get install postgresql-{version}", use_path=False
            )
        postgres = local.find_binary(["postgres"], [os.path.dirname(initdb)], self.install)
        user = local.server_user(["postgres"])
        folder = local.make_folder(self.name, user)
        data = os.path.join(folder, "data")
        try:
            local.run_once(
                [initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
                user,
                "initdb",
            )
            port = local.free_port()
            log = os.path.join(folder, "server.log")
            command = [
                postgres, "-D", data, "-h", "127.0.0.1", "-p", str(port), "-k", folder,
                # A test server: durability off, room for many environments' connections.
                "-F", "-c", "full_page_writes=off", "-c", "synchronous_commit=off",
                "-c", "max_connections=300",
            ]  # fmt: skip
            ca_file = ""
            if tls:  # TLS offered (sslmode=require takes it; plain connections still work)
                ca_file, key = local.make_certificate(folder, user)
                command += ["-c", "ssl=on", "-c", f"ssl_cert_file={ca_file}"]
                command += ["-c", f"ssl_key_file={key}"]

            def ready() -> bool:
                with open(log, "rb") as text:
                    return b"ready to accept connections" in text.read()

            process = local.start_process(command, folder, user, ready, "postgres")
        except BaseException:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            raise
        endpoint = Endpoint("127.0.0.1", port, "postgres", "", "postgres", tls, ca_file)
        return Server(endpoint, "local", process)

    def parse_url(self, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES or not parts.hostname:
            raise ValueError("expected postgresql://user:password@host:port/database")
        query = parse_qs(parts.query)
        return Endpoint(
            parts.hostname,
            parts.port or 5432,
            unquote(parts.username or "postgres"),
            unquote(parts.password or ""),
            unquote(parts.path.lstrip("/")) or "postgres",
            tls=query.get("sslmode", [""])[0] in _TLS_MODES,
            ca_file=query.get("sslrootcert", [""])[0],
        )

    def url(self, endpoint: Endpoint) -> str:
        user = quote(endpoint.user, safe="")
        if endpoint.password:
            user += ":" + quote(endpoint.password, safe="")
        url = (
            f"postgresql://{user}@{endpoint.host}:{endpoint.port}/"
            f"{quote(endpoint.database, safe='')}"
        )
        # TLS required, not verified: what handlers on Lambda commonly ask of RDS (a
        # handler that verifies takes {NAME_ca} as its sslrootcert).
        return url + "?sslmode=require" if endpoint.tls else url

    def create_namespace(self, admin: Endpoint, name: str, *, owned: bool) -> str:
        self._execute(admin, f'CREATE DATABASE "{name}"')
        return name

    def drop_namespace(self, admin: Endpoint, database: str) -> bool:
        # DROP DATABASE waits 5 s for other sessions to leave before it gives up: a
        # warm environment's connection would cost every test that much. Asked first.
        users = self._execute(
            admin,
            "SELECT count(*) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND pid <> pg_backend_pid()",
        )
        if users:
            return False
        try:
            self._execute(admin, f'DROP DATABASE IF EXISTS "{database}"')
        except Exception as exc:
            if _sqlstate(exc) == _IN_USE:
                return False
            raise
        return True

    def force_drop_namespace(self, admin: Endpoint, database: str) -> None:
        self._execute(admin, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    def version(self, endpoint: Endpoint) -> str:
        return str(self._execute(endpoint, "SHOW server_version"))

    def client(self, endpoint: Endpoint, **kwargs: Any) -> Any:
        kwargs.setdefault("autocommit", True)
        try:
            import psycopg
        except ImportError:
            import psycopg2

            connection = psycopg2.connect(self.url(endpoint))
            connection.autocommit = kwargs.pop("autocommit")
            return connection
        return psycopg.connect(self.url(endpoint), **kwargs)

    def _execute(self, endpoint: Endpoint, sql: str) -> Any:
        """One statement outside a transaction (CREATE/DROP DATABASE need that); the
        first column of its first row, if any."""
        connection = self.client(endpoint, connect_timeout=10)
        try:
            cursor = connection.cursor()
            cursor.execute(sql)
            row = cursor.fetchone() if cursor.description else None
            return row[0] if row else None
        finally:
            connection.close()


def _answers(endpoint: Endpoint) -> bool:
    """The server accepts connections at ``endpoint`` (not yet while an image initialises
    its data folder: it listens on its unix socket only, then)."""
    with socket.create_connection((endpoint.host, endpoint.port), timeout=1) as sock:
        sock.sendall(_SSL_REQUEST)
        return sock.recv(1) in (b"S", b"N")


def _sqlstate(exc: Exception) -> str | None:
    return getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)


KIND = PostgresKind()
