"""SnapStart: connections the snapshot holds are stale in every restored environment.

On Lambda a connection opened during init belongs to the snapshot's machine. After a
restore its socket still looks open (nothing to read, no EOF), and the first request
sent on it is answered with a reset, so the client's own recovery (urllib3's,
elastic-transport's, redis-py's, psycopg's) is what runs.

Emulated with descriptors, so it holds for every TCP socket, whoever opened it (a
Python client, or C code such as libpq), and whether it went through one of the
plugin's proxies or not:

- in the snapshot, once its hooks ran (:func:`detach`): each connected TCP socket is
  closed (the peer, a proxy say, sees it end, as when the snapshot's machine goes),
  and its descriptor number is held by a placeholder;
- in each restored environment (:func:`break_inherited`): each such descriptor gets a
  loopback connection of its own, whose far end is reset by a watcher thread as soon
  as anything arrives on it. Restored environments never share a socket.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import threading
from dataclasses import dataclass

__all__ = ["Inherited", "break_inherited", "detach"]

_LINGER_RST = struct.pack("ii", 1, 0)
_LOOPBACK: dict[int, str] = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}


@dataclass(frozen=True)
class Inherited:
    """A descriptor that held a connected TCP socket when the snapshot was taken."""

    fd: int
    family: int
    blocking: bool


def detach() -> list[Inherited]:
    """Close every connected TCP socket of this process; keep their descriptor numbers."""
    found = [item for fd in _open_fds() if (item := _inspect(fd)) is not None]
    for item in found:
        placeholder = socket.socket(item.family, socket.SOCK_STREAM)
        # dup2 closes the connection (its last descriptor) and keeps the number taken.
        os.dup2(placeholder.fileno(), item.fd, inheritable=False)
        placeholder.close()
    return found


def break_inherited(inherited: list[Inherited]) -> None:
    """Give each inherited descriptor its own connection that resets at first use."""
    if not inherited:
        return
    peers = []
    for item in inherited:
        client, peer = _loopback_pair(item.family)
        os.set_blocking(client.fileno(), item.blocking)
        os.dup2(client.fileno(), item.fd, inheritable=False)
        client.close()
        peers.append(peer)
    threading.Thread(
        target=_reset_on_data, args=(peers,), name="lambda-context-stale-connections", daemon=True
    ).start()


def _open_fds() -> list[int]:
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return []
    # 0-2 are the process's output, never a connection of the function's.
    return sorted(fd for fd in map(int, names) if fd > 2)


def _inspect(fd: int) -> Inherited | None:
    try:
        sock = socket.socket(fileno=fd)
    except OSError:  # not a socket, or already closed (the listdir's own descriptor)
        return None
    try:
        if sock.type != socket.SOCK_STREAM or sock.family not in _LOOPBACK:
            return None
        try:
            sock.getpeername()
        except OSError:  # a listener, or not connected
            return None
        return Inherited(fd, int(sock.family), os.get_blocking(fd))
    finally:
        sock.detach()


def _loopback_pair(family: int) -> tuple[socket.socket, socket.socket]:
    try:
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.bind((_LOOPBACK[family], 0))
    except OSError:  # no IPv6 loopback here: an IPv4 connection serves as well
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
    with listener:
        listener.listen(1)
        client = socket.socket(listener.family, socket.SOCK_STREAM)
        client.connect(listener.getsockname())
        peer, _ = listener.accept()
    return client, peer


def _reset_on_data(peers: list[socket.socket]) -> None:
    from pytest_lambda_context.observe.scope import mark_internal_thread

    mark_internal_thread()
    while peers:
        readable, _, _ = select.select(peers, [], [])
        for peer in readable:
            # Data (a request sent on the stale connection): answer with a reset, as the
            # peer of a snapshot's connection does. EOF (the client closed it): just go.
            with contextlib.suppress(OSError):
                if peer.recv(1, socket.MSG_PEEK):
                    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            peer.close()
            peers.remove(peer)
