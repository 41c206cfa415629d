"""The ``tcp_proxy`` fixture: counting proxies in front of any datastore, and the
``{proxy:NAME}`` placeholders that hand their addresses to function code."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator

import pytest

from pytest_lambda_context.environments.function_config import FunctionConfig, FunctionWiring
from pytest_lambda_context.environments.placeholders import PROXY_PREFIX
from pytest_lambda_context.observe.proxy import TcpProxy
from pytest_lambda_context.plugin.session import PluginState
from pytest_lambda_context.services.elasticsearch.service import DEFAULT_IDLE_TIMEOUT, expirer

__all__ = ["ProxyFactory", "prepare_function"]

_NAME = re.compile(r"[^{}\s]+")


class ProxyFactory:
    """``tcp_proxy(host, port, *, name=None, idle_timeout=350.0)`` -> a started ``TcpProxy``.

    Proxies run on the plugin's clock (``idle()`` expires their idle connections) and
    are closed after the test.
    """

    def __init__(self, state: PluginState) -> None:
        self._state = state
        self._made: list[tuple[TcpProxy, Callable[[], None]]] = []
        # "proxy:NAME" -> the proxy's address, for env placeholders; filled as proxies
        # are made, and read when an environment is created.
        self.placeholders: dict[str, Callable[[], str]] = {}

    def __call__(
        self,
        host: str,
        port: int,
        *,
        name: str | None = None,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        latency: float = 0.0,
    ) -> TcpProxy:
        if not isinstance(host, str) or not host:
            raise TypeError(
                f"tcp_proxy(host, port): host must be a host name or address, not {host!r}"
            )
        if "\x00" in host or any(c.isspace() for c in host) or "://" in host:
            raise ValueError(
                f"tcp_proxy(host={host!r}): a bare host name or IP address, without a scheme, "
                "NUL bytes or spaces; for example tcp_proxy('127.0.0.1', 5432)"
            )
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(
                f"tcp_proxy(host, port): port must be an integer 1-65535, not {port!r}"
            )
        if name is not None:
            if not isinstance(name, str) or not _NAME.fullmatch(name) or "\x00" in name:
                raise ValueError(
                    f"tcp_proxy(name={name!r}): a name is text without spaces or braces, "
                    "as in {proxy:NAME}; for example name='postgres'"
                )
            if PROXY_PREFIX + name in self.placeholders:
                raise ValueError(
                    f"tcp_proxy(name={name!r}): this test already has a proxy of that name; "
                    "give each one its own"
                )
        if idle_timeout is not None and (
            isinstance(idle_timeout, bool)
            or not isinstance(idle_timeout, (int, float))
            or not idle_timeout >= 0
        ):
            raise ValueError(
                f"tcp_proxy(idle_timeout={idle_timeout!r}): seconds (a number >= 0), or None "
                "for no idle timeout"
            )
        if (
            isinstance(latency, bool)
            or not isinstance(latency, (int, float))
            or not 0 <= latency < math.inf
        ):
            raise ValueError(
                f"tcp_proxy(latency={latency!r}): seconds added before each chunk sent to the "
                "server, a finite number >= 0, for example latency=0.05"
            )
        clock = self._state.clock
        proxy = TcpProxy(
            host,
            port,
            name=name,
            idle_timeout=idle_timeout,
            clock=clock.monotonic,
            latency=latency,
        ).start()
        self._made.append((proxy, clock.subscribe(expirer(proxy))))
        if name is not None:
            self.placeholders[PROXY_PREFIX + name] = lambda: "{}:{}".format(*proxy.address)
        return proxy

    def hand_over(self, closers: list[Callable[[], None]]) -> None:
        """Give the proxies made so far to ``closers`` (a warm environment may use them
        after this test): they are no longer closed with this factory."""
        while self._made:
            proxy, unsubscribe = self._made.pop()
            closers.append(_closer(proxy, unsubscribe))

    def close(self) -> None:
        while self._made:
            proxy, unsubscribe = self._made.pop()
            unsubscribe()
            proxy.close()


def _closer(proxy: TcpProxy, unsubscribe: Callable[[], None]) -> Callable[[], None]:
    def close() -> None:
        unsubscribe()
        proxy.close()

    return close


def proxy_factory(state: PluginState) -> Iterator[ProxyFactory]:
    """Body of the ``tcp_proxy`` fixture."""
    factory = ProxyFactory(state)
    try:
        yield factory
    finally:
        factory.close()


def prepare_function(request: pytest.FixtureRequest, config: FunctionConfig) -> FunctionWiring:
    """Let ``{proxy:NAME}`` in env values reach this test's proxies, made before the
    function or after it (up to its first invocation: the mapping stays live)."""
    mentions = any("{" + PROXY_PREFIX in v for v in config.env.values())
    if not mentions and "tcp_proxy" not in request.fixturenames:
        return FunctionWiring()
    factory: ProxyFactory = request.getfixturevalue("tcp_proxy")
    return FunctionWiring(placeholders=factory.placeholders)
