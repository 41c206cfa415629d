"""A datastore as tests and handlers see it: ``DatastoreService``.

As for Elasticsearch, handler code reaches the server through a counting,
fault-injecting :class:`~pytest_lambda_context.observe.proxy.TcpProxy` named after the
datastore (``via="postgres"``), and the test side (``client()``, clean-up) goes to the
server directly, uncounted. Each holder of the service (a test, or a module-scoped
factory fixture) gets a database of its own (:meth:`begin`), removed when it ends, or
at the end of the session if a warm environment still uses it.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pytest_lambda_context.observe.proxy import DropMode, ProxyCounter, TcpProxy
from pytest_lambda_context.services.datastores.kind import DatastoreKind, Endpoint, Server

if TYPE_CHECKING:
    from pytest_lambda_context.runtime.clock import PluginClock

__all__ = ["DEFAULT_IDLE_TIMEOUT", "DatastoreService", "Placeholders"]

# As for es: an AWS NAT gateway's idle timeout for a TCP flow.
DEFAULT_IDLE_TIMEOUT = 350.0

Placeholders = dict[str, Callable[[], str]]


class DatastoreService:
    """One server of one datastore kind, fronted by a counting proxy."""

    def __init__(
        self,
        kind: DatastoreKind,
        server: Server,
        *,
        reason: str = "",
        clock: PluginClock | None = None,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        name: str | None = None,
        placeholder_prefix: str | None = None,
    ) -> None:
        self.kind = kind
        # What via= and the reports call its proxy, and how its placeholders begin.
        self.name = name or kind.name
        self.placeholder_prefix = placeholder_prefix or self.name
        self._server = server
        self.reason = reason
        self.proxy = TcpProxy(
            server.endpoint.host,
            server.endpoint.port,
            name=self.name,
            idle_timeout=idle_timeout,
            clock=clock.monotonic if clock is not None else None,
        ).start()
        # LambdaFunction.idle() moves the clock: connections idle past the timeout die then.
        self._unsubscribe = clock.subscribe(_expirer(self.proxy)) if clock is not None else None
        self.connections: ProxyCounter = self.proxy.counter()
        self._prefix = f"plc_{secrets.token_hex(3)}_"
        self._made = 0
        self._database = server.endpoint.database
        self._left: list[str] = []  # databases still in use when their holder ended
        self._version: str | None = None
        self._clients: list[Any] = []
        self.cleanup_errors: list[str] = []

    # -- where it is ---------------------------------------------------------------
    @property
    def backend(self) -> str:
        """``"local"``, ``"container"`` or ``"url"``."""
        return self._server.backend

    @property
    def endpoint(self) -> Endpoint:
        """The proxy's address, with the current database: what handler code uses."""
        return self._server.endpoint.at(*self.proxy.address).on(self._database)

    @property
    def direct_endpoint(self) -> Endpoint:
        return self._server.endpoint.on(self._database)

    @property
    def url(self) -> str:
        """What handler code should use: through the counting proxy."""
        return self.kind.url(self.endpoint)

    @property
    def direct_url(self) -> str:
        """The server itself, bypassing the proxy: for test-side code."""
        return self.kind.url(self.direct_endpoint)

    @property
    def host(self) -> str:
        return self.proxy.host

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def user(self) -> str:
        return self._server.endpoint.user

    @property
    def password(self) -> str:
        return self._server.endpoint.password

    @property
    def ca_file(self) -> str:
        """The certificate to trust for TLS ("" without TLS, or where unknown)."""
        return self._server.endpoint.ca_file

    @property
    def db(self) -> str:
        """This holder's database (a name; for Redis a number)."""
        return self._database

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = self.kind.version(self._server.endpoint)
        return self._version

    def placeholders(self) -> Placeholders:
        """``{NAME_url}``, ``{NAME_host}``, ... for env values, read when an environment
        is created."""
        prefix = self.placeholder_prefix
        return {
            f"{prefix}_url": lambda: self.url,
            f"{prefix}_host": lambda: self.host,
            f"{prefix}_port": lambda: str(self.port),
            f"{prefix}_user": lambda: self.user,
            f"{prefix}_password": lambda: self.password,
            f"{prefix}_db": lambda: self.db,
            f"{prefix}_ca": lambda: self.ca_file,
        }

    def client(self, **kwargs: Any) -> Any:
        """A test-side client of the usual library on the server itself: not counted.
        Closed when its holder ends."""
        made = self.kind.client(self.direct_endpoint, **kwargs)
        self._clients.append(made)
        return made

    # -- faults --------------------------------------------------------------------
    def drop_connections(self, mode: DropMode = "rst") -> int:
        """Cut every open connection (``"rst"``, ``"fin"`` or ``"blackhole"``); how many."""
        return self.proxy.drop_connections(mode)

    @contextlib.contextmanager
    def outage(self, mode: DropMode = "rst") -> Iterator[DatastoreService]:
        """While inside: new connections are refused and open ones are cut."""
        with self.proxy.outage(mode):
            yield self

    # -- life cycle ----------------------------------------------------------------
    def begin(self) -> None:
        """A new holder (a test): counts from now, and a new, empty database; the
        connections that environments killed in an earlier test left open end now."""
        self.proxy.end_lingering()
        self.connections.reset()
        self._made += 1
        name = f"{self._prefix}{self._made}"
        self._database = self.kind.create_namespace(
            self._server.endpoint, name, owned=self._server.owned
        )

    def end(self) -> None:
        """The holder is done: its clients closed, its database removed unless a warm
        environment still uses it (then at :meth:`close`)."""
        # Connections of killed environments end with the test that killed them (those
        # its functions leave after this, when the next test begins).
        self.proxy.end_lingering()
        self._close_clients()
        database = self._database
        self._database = self._server.endpoint.database
        if database == self._server.endpoint.database:
            return
        try:
            if not self.kind.drop_namespace(self._server.endpoint, database):
                self._left.append(database)
        except Exception as exc:
            self.cleanup_errors.append(f"{database}: {exc}")

    def close(self) -> None:
        try:
            self._close_clients()
            if not self._server.owned:  # a server of ours goes with all it holds
                for database in self._left:
                    try:
                        self.kind.force_drop_namespace(self._server.endpoint, database)
                    except Exception as exc:
                        self.cleanup_errors.append(f"{database}: {exc}")
        finally:
            if self._unsubscribe is not None:
                self._unsubscribe()
            self.proxy.close()
            self._server.stop()

    def _close_clients(self) -> None:
        while self._clients:
            with contextlib.suppress(Exception):
                self._clients.pop().close()

    def __repr__(self) -> str:
        return f"<DatastoreService {self.kind.name} {self.backend} {self.url} -> {self.direct_url}>"


def _expirer(proxy: TcpProxy) -> Callable[[], None]:
    def expire() -> None:
        proxy.expire_idle()

    return expire
