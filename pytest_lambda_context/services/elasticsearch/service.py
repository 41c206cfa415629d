"""The session's Elasticsearch as tests and handlers see it: ``ElasticsearchService``.

Handler code reaches every backend through a counting
:class:`~pytest_lambda_context.observe.proxy.TcpProxy`, so
``es.connections`` counts what the server accepted, and faults (dropped connections,
outages, a NAT gateway's idle timeout) can be injected whatever the backend. The
test side (``es.client()``, index clean-up) uses ``direct_url``, bypassing the proxy,
so it never shows up in the counts.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from pytest_lambda_context.observe.proxy import DropMode, ProxyCounter, TcpProxy
from pytest_lambda_context.services.elasticsearch import backends
from pytest_lambda_context.services.elasticsearch.backends import Backend, Decision

if TYPE_CHECKING:
    from pytest_lambda_context.runtime.clock import PluginClock

__all__ = ["DEFAULT_IDLE_TIMEOUT", "ElasticsearchService", "expirer"]

# AWS NAT gateways (and NLBs) drop a TCP flow idle for 350 s without telling either
# end: the classic cause of "connection reset" on the first invocation after a pause.
DEFAULT_IDLE_TIMEOUT = 350.0


class ElasticsearchService:
    """The session's Elasticsearch, fronted by a counting, fault-injecting proxy."""

    def __init__(
        self,
        backend: Backend,
        decision: Decision,
        *,
        clock: PluginClock | None = None,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        index_prefix: str | None = None,
    ) -> None:
        self._backend = backend
        self.decision = decision
        self.proxy = TcpProxy(
            backend.host,
            backend.port,
            name="es",  # max_connections(via="es")
            idle_timeout=idle_timeout,
            clock=clock.monotonic if clock is not None else None,
        ).start()
        # LambdaFunction.idle() moves the clock: connections idle past the timeout die then.
        self._unsubscribe = clock.subscribe(expirer(self.proxy)) if clock is not None else None
        self.connections: ProxyCounter = self.proxy.counter()
        # Lower case: index names must be. Unique per session and xdist worker.
        self.index_prefix = index_prefix or f"plc-{secrets.token_hex(4)}-"
        self._named: set[str] = set()
        self._client: Any = None
        self._version: str | None = None
        self.cleanup_errors: list[str] = []

    # -- where it is ---------------------------------------------------------------
    @property
    def backend(self) -> str:
        """``"container"``, ``"url"`` or ``"embedded"``."""
        return self._backend.name

    @property
    def reason(self) -> str:
        return self.decision.reason

    @property
    def direct_url(self) -> str:
        """The server itself, bypassing the proxy: for test-side code."""
        return self._backend.direct_url

    @property
    def url(self) -> str:
        """What handler code should use: through the counting proxy (credentials and
        path of a ``lambda_es_url`` are kept)."""
        parts = urlsplit(self.direct_url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@" if userinfo else ""
        netloc += f"{self.proxy.host}:{self.proxy.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    @property
    def version(self) -> str:
        """The server's version number, as ``GET /`` reports it."""
        if self._version is None:
            _, body = backends.http_json(self.direct_url)
            try:
                self._version = str(body["version"]["number"])
            except (TypeError, KeyError):
                self._version = "unknown"
        return self._version

    @property
    def host(self) -> str:
        """The proxy's host: what handler code should connect to."""
        return self.proxy.host

    @property
    def port(self) -> int:
        return self.proxy.port

    def placeholders(self) -> dict[str, Callable[[], str]]:
        """``{es_url}``, ``{es_host}``, ``{es_port}``, ``{es_index_prefix}`` for env values."""
        return {
            "es_url": lambda: self.url,
            "es_host": lambda: self.host,
            "es_port": lambda: str(self.port),
            "es_index_prefix": lambda: self.index_prefix,
        }

    def index_name(self, name: str) -> str:
        """``name`` under this session's prefix: the only indices a url cluster gets from
        the plugin, and the ones deleted at session end."""
        full = name if name.startswith(self.index_prefix) else self.index_prefix + name
        self._named.add(full)
        return full

    def client(self, **kwargs: Any) -> Any:
        """A test-side ``elasticsearch.Elasticsearch`` on ``direct_url``: not counted.

        Without arguments the same client is returned each time (closed at session end).
        """
        from elasticsearch import Elasticsearch

        if kwargs:
            return Elasticsearch(self.direct_url, **kwargs)
        if self._client is None:
            self._client = Elasticsearch(self.direct_url)
        return self._client

    # -- faults --------------------------------------------------------------------
    def drop_connections(self, mode: DropMode = "rst") -> int:
        """Cut every open connection (``"rst"``, ``"fin"`` or ``"blackhole"``); how many."""
        return self.proxy.drop_connections(mode)

    @contextlib.contextmanager
    def outage(self, mode: DropMode = "rst") -> Iterator[ElasticsearchService]:
        """While inside: new connections are refused and open ones are cut."""
        with self.proxy.outage(mode):
            yield self

    # -- life cycle ----------------------------------------------------------------
    def reset_counts(self) -> None:
        """Count from now on (each test gets its own ``es.connections``); connections
        of environments an earlier test killed end now."""
        self.proxy.end_lingering()
        self.connections.reset()

    def close(self) -> None:
        try:
            if self.backend == "url":
                self._delete_own_indices()
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.close()
        finally:
            if self._unsubscribe is not None:
                self._unsubscribe()
            self.proxy.close()
            self._backend.stop()

    def _delete_own_indices(self) -> None:
        names = self._own_indices()
        for name in sorted(names):
            if not name.startswith(self.index_prefix):  # never anyone else's
                continue
            try:
                status, body = backends.http_json(self.direct_url, "DELETE", f"/{quote(name)}")
                if status not in (200, 404):
                    self.cleanup_errors.append(f"DELETE {name}: {status} {str(body)[:200]}")
            except OSError as exc:
                self.cleanup_errors.append(f"DELETE {name}: {exc}")

    def _own_indices(self) -> set[str]:
        """Names under our prefix: what index_name() handed out, plus what the server
        lists by wildcard (``GET /prefix*``, as Elasticsearch 7-9 answer it), or, where
        it cannot, the indices that a ``_search`` over the wildcard finds documents in."""
        names = set(self._named)
        pattern = quote(self.index_prefix + "*", safe="*")
        try:
            status, body = backends.http_json(
                self.direct_url, path=f"/{pattern}?expand_wildcards=all&allow_no_indices=true"
            )
            if status == 200 and isinstance(body, dict):
                return names | {n for n in body if n.startswith(self.index_prefix)}
            status, body = backends.http_json(
                self.direct_url,
                "POST",
                f"/{pattern}/_search?ignore_unavailable=true",
                body={"size": 10000, "_source": False, "query": {"match_all": {}}},
            )
            if status == 200 and isinstance(body, dict):
                names.update(hit["_index"] for hit in body.get("hits", {}).get("hits", []))
        except (OSError, KeyError, TypeError) as exc:
            self.cleanup_errors.append(f"listing {self.index_prefix}*: {exc}")
        return names

    def __repr__(self) -> str:
        return f"<ElasticsearchService {self.backend} {self.url} -> {self.direct_url}>"


def expirer(proxy: TcpProxy) -> Callable[[], None]:
    def expire() -> None:
        proxy.expire_idle()

    return expire
