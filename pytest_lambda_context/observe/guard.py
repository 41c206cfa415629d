"""The ``lambda_network = loopback`` guard: which addresses function code may reach.

A Lambda function under test must not reach real services by accident (a real
AWS account, a production cluster), so with ``loopback`` the socket monitor in
:mod:`pytest_lambda_context.observe.connections` refuses, before any packet leaves,
connections and name lookups that would go anywhere but 127.0.0.0/8 and ::1.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any

__all__ = [
    "LOOPBACK_HINT",
    "BlockedLookupError",
    "NetworkBlockedError",
    "format_endpoint",
    "is_loopback_host",
    "lookup_allowed",
]

LOOPBACK_HINT = (
    "lambda_network = loopback lets function code reach only 127.0.0.0/8 and ::1; "
    "set --lambda-network=allow (or ini lambda_network = allow) to let it through"
)

# Verdicts per host string: connect sees the same few addresses over and over, and
# parsing an address costs more than the rest of the guarded connect path.
_loopback_cache: dict[str, bool] = {}
_literal_cache: dict[str, bool] = {}
_CACHE_LIMIT = 4096


class NetworkBlockedError(ConnectionRefusedError):
    """Function code tried to connect beyond loopback under ``lambda_network = loopback``.

    A ConnectionRefusedError (an OSError), so client libraries report it the way they
    report any refused connection, with this message inside theirs.
    """

    def __init__(self, message: str, host: str = "", port: int = 0) -> None:
        super().__init__(errno.ECONNREFUSED, message)
        self.host = host
        self.port = port

    def __str__(self) -> str:
        return str(self.strerror)

    # OSError pickles as cls(errno, strerror); process isolation sends errors back
    # through a pipe, so rebuild from our own arguments instead.
    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.strerror, self.host, self.port))


class BlockedLookupError(socket.gaierror):
    """A DNS lookup of a non-loopback name from function code under ``loopback``."""

    def __init__(self, message: str, host: str = "") -> None:
        super().__init__(socket.EAI_NONAME, message)
        self.host = host

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.strerror, self.host))


def _remember(cache: dict[str, bool], key: str, verdict: bool) -> bool:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = verdict
    return verdict


def _is_localhost_name(host: str) -> bool:
    return host.lower().rstrip(".") == "localhost"


def is_loopback_host(host: str) -> bool:
    """True when connecting to ``host`` stays on this machine's loopback interface.

    ``host`` is what ``socket.connect`` was given: normally an address, sometimes a
    name. Of names only ``localhost`` passes: resolving any other one could itself
    send a DNS query off the machine.
    """
    verdict = _loopback_cache.get(host)
    if verdict is not None:
        return verdict
    if _is_localhost_name(host):
        return _remember(_loopback_cache, host, True)
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        try:
            # Short numeric forms ("127.1", "2130706433") that the C resolver accepts.
            return _remember(_loopback_cache, host, socket.inet_aton(host)[0] == 127)
        except OSError:
            return _remember(_loopback_cache, host, False)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _remember(_loopback_cache, host, address.ipv4_mapped.is_loopback)
    return _remember(_loopback_cache, host, address.is_loopback)


def lookup_allowed(host: str | bytes | None) -> bool:
    """True when ``getaddrinfo(host, ...)`` needs no DNS query beyond the machine.

    ``None`` (the passive/loopback address), ``localhost`` and address literals pass;
    connecting to a non-loopback literal is refused later, at connect.
    """
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    verdict = _literal_cache.get(host)
    if verdict is not None:
        return verdict
    if host == "" or _is_localhost_name(host):
        return _remember(_literal_cache, host, True)
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host.partition("%")[0])
        except OSError:
            continue
        return _remember(_literal_cache, host, True)
    try:
        socket.inet_aton(host)
    except OSError:
        return _remember(_literal_cache, host, False)
    return _remember(_literal_cache, host, True)


def format_endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def blocked_connect(
    host: str,
    port: int,
    frame: str | None,
    function_name: str,
    environment_id: str,
    verb: str = "connect to",
) -> NetworkBlockedError:
    where = f" from {frame}" if frame else ""
    message = (
        f"function {function_name!r} ({environment_id}) tried to {verb} "
        f"{format_endpoint(host, port)}{where}: {LOOPBACK_HINT}"
    )
    return NetworkBlockedError(message, host, port)


def blocked_lookup(
    host: str, frame: str | None, function_name: str, environment_id: str
) -> BlockedLookupError:
    where = f" from {frame}" if frame else ""
    message = (
        f"function {function_name!r} ({environment_id}) tried to look up {host!r}{where}: "
        f"{LOOPBACK_HINT}"
    )
    return BlockedLookupError(message, host)
