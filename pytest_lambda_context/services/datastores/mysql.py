"""MySQL, as MariaDB: ``mariadb-install-db`` and ``mariadbd`` from the machine (Debian's
``mariadb-server``), user ``root`` without a password on 127.0.0.1; a database of its
own for each test."""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from pytest_lambda_context.services.datastores import local
from pytest_lambda_context.services.datastores.kind import ContainerRecipe, Endpoint, Server

__all__ = ["KIND", "MysqlKind"]

_FOLDERS = ("/usr/sbin", "/usr/libexec", "/usr/local/mysql/bin")
_SCHEMES = ("mysql", "mariadb", "mysql+pymysql")


class MysqlKind:
    name = "mysql"
    title = "MySQL/MariaDB"
    install = "apt-get install mariadb-server"
    client_install = "pip install PyMySQL"
    container = ContainerRecipe(
        image="mariadb:11.4",
        versioned_image="mariadb:{version}",
        port=3306,
        endpoint=Endpoint("", 0, "root", "", "mysql"),
        ready=lambda endpoint: _greets(endpoint.port, endpoint.host),
        # The official images' (mariadb's, and mysql's for --lambda-mysql-image=mysql:8):
        # root's password (root may connect from any host).
        password_variables=("MARIADB_ROOT_PASSWORD", "MYSQL_ROOT_PASSWORD"),
        command=(
            "--innodb-buffer-pool-size=32M", "--innodb-flush-log-at-trx-commit=0",
            "--skip-log-bin", "--max-connections=300", "--skip-name-resolve",
        ),
    )  # fmt: skip

    def start_local(self, version: str | None = None, *, tls: bool = False) -> Server:
        install_db = local.find_binary(
            ["mariadb-install-db", "mysql_install_db"], ("/usr/bin",), self.install
        )
        server = local.find_binary(["mariadbd", "mysqld"], _FOLDERS, self.install)
        user = local.server_user(["mysql"])
        folder = local.make_folder(self.name, user)
        data = os.path.join(folder, "data")
        try:
            local.run_once(
                [
                    install_db, "--no-defaults", f"--datadir={data}",
                    "--auth-root-authentication-method=normal", "--skip-test-db",
                    "--skip-name-resolve",
                ],
                user,
                "mariadb-install-db",
            )  # fmt: skip
            port = local.free_port()
            command = [
                server, "--no-defaults", f"--datadir={data}",
                f"--socket={os.path.join(folder, 'mysqld.sock')}",
                f"--pid-file={os.path.join(folder, 'mysqld.pid')}",
                f"--port={port}", "--bind-address=127.0.0.1", "--skip-name-resolve",
                # A test server: small and without durability.
                "--innodb-buffer-pool-size=32M", "--innodb-flush-log-at-trx-commit=0",
                "--skip-log-bin", "--max-connections=300",
            ]  # fmt: skip
            ca_file = ""
            if tls:  # TLS offered (clients that ask get it; plain connections still work)
                ca_file, key = local.make_certificate(folder, user)
                command += [f"--ssl-cert={ca_file}", f"--ssl-key={key}", f"--ssl-ca={ca_file}"]
            process = local.start_process(command, folder, user, lambda: _greets(port), "mariadbd")
        except BaseException:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            raise
        endpoint = Endpoint("127.0.0.1", port, "root", "", "mysql", tls, ca_file)
        return Server(endpoint, "local", process)

    def parse_url(self, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES or not parts.hostname:
            raise ValueError("expected mysql://user:password@host:port/database")
        return Endpoint(
            parts.hostname,
            parts.port or 3306,
            unquote(parts.username or "root"),
            unquote(parts.password or ""),
            unquote(parts.path.lstrip("/")),
        )

    def url(self, endpoint: Endpoint) -> str:
        user = quote(endpoint.user, safe="")
        if endpoint.password:
            user += ":" + quote(endpoint.password, safe="")
        return f"mysql://{user}@{endpoint.host}:{endpoint.port}/{quote(endpoint.database, safe='')}"

    def create_namespace(self, admin: Endpoint, name: str, *, owned: bool) -> str:
        self._execute(admin, f"CREATE DATABASE `{name}`")
        return name

    def drop_namespace(self, admin: Endpoint, database: str) -> bool:
        if self._users_of(admin, database):
            return False  # DROP DATABASE would wait on their locks
        self._execute(admin, f"DROP DATABASE IF EXISTS `{database}`")
        return True

    def force_drop_namespace(self, admin: Endpoint, database: str) -> None:
        for thread in self._users_of(admin, database):
            try:
                self._execute(admin, f"KILL {int(thread)}")
            except Exception as exc:  # gone meanwhile: ER_NO_SUCH_THREAD
                if getattr(exc, "args", (None,))[0] != 1094:
                    raise
        self._execute(admin, f"DROP DATABASE IF EXISTS `{database}`")

    def version(self, endpoint: Endpoint) -> str:
        return str(self._query(endpoint, "SELECT VERSION()")[0][0])

    def client(self, endpoint: Endpoint, **kwargs: Any) -> Any:
        import pymysql

        kwargs.setdefault("autocommit", True)
        if endpoint.tls:
            kwargs.setdefault("ssl", {"ca": endpoint.ca_file} if endpoint.ca_file else {})
        return pymysql.connect(
            host=endpoint.host,
            port=endpoint.port,
            user=endpoint.user,
            password=endpoint.password,
            database=endpoint.database or None,
            **kwargs,
        )

    def _users_of(self, admin: Endpoint, database: str) -> list[int]:
        rows = self._query(
            admin,
            "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()",
            (database,),
        )
        return [int(row[0]) for row in rows]

    def _execute(self, endpoint: Endpoint, sql: str) -> None:
        self._query(endpoint, sql)

    def _query(self, endpoint: Endpoint, sql: str, args: Any = None) -> list[Any]:
        connection = self.client(endpoint.on(""), connect_timeout=10)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, args)
                return list(cursor.fetchall())
        finally:
            connection.close()


def _greets(port: int, host: str = "127.0.0.1") -> bool:
    """The server's handshake packet (protocol version 10) arrived."""
    with socket.create_connection((host, port), timeout=1) as sock:
        return sock.recv(5)[4:5] == b"\x0a"


KIND = MysqlKind()
