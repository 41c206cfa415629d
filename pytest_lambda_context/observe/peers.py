"""Which process holds the client end of a loopback TCP connection (Linux ``/proc``).

A proxy sees only the client's address. With several environments running in
worker processes at once, the client's port says nothing about whose code opened the
connection; the kernel does: ``/proc/net/tcp`` maps the connection's two ends to the
socket's inode, and a process's ``/proc/<pid>/fd`` holds ``socket:[inode]``.
Asked while the client waits for its first answer, so the socket is still there.
The kernel's sock_diag netlink interface answers for one socket in microseconds;
``/proc/net/tcp`` is the fallback where netlink is refused.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["Owner", "owner", "owner_pid", "socket_inode"]

_WORD = struct.Struct("=I")  # /proc prints each 32-bit word of an address in host order


def _hex_address(host: str, port: int, family: int) -> bytes:
    packed = socket.inet_pton(family, host)
    words = "".join(f"{_WORD.unpack_from(packed, i)[0]:08X}" for i in range(0, len(packed), 4))
    return f"{words}:{port:04X}".encode()


def _candidates(local: tuple[str, int], remote: tuple[str, int]) -> list[tuple[str, bytes]]:
    """(file, "local remote" as /proc writes them) for each way the socket may be listed."""
    v6 = ":" in local[0] or ":" in remote[0]
    found = []
    if not v6:
        key = _hex_address(*local, socket.AF_INET) + b" " + _hex_address(*remote, socket.AF_INET)
        found.append(("/proc/net/tcp", key))
        # A dual-stack client socket lists IPv4 ends as IPv4-mapped IPv6 addresses.
        local, remote = (f"::ffff:{local[0]}", local[1]), (f"::ffff:{remote[0]}", remote[1])
    key = _hex_address(*local, socket.AF_INET6) + b" " + _hex_address(*remote, socket.AF_INET6)
    found.append(("/proc/net/tcp6", key))
    return found


# Netlink's sock_diag asks the kernel for one socket by its four-tuple: microseconds,
# where /proc/net/tcp lists every socket of the machine (milliseconds when a test suite
# has left thousands in TIME_WAIT).
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_NLMSG = struct.Struct("=IHHII")
_REQUEST = struct.Struct("=BBBxI")  # family, protocol, extensions, states
_SOCKID = struct.Struct("!HH16s16s")  # ports and addresses, in network order
_TAIL = struct.Struct("=III")  # interface, cookie (none: 0xffffffff twice)
_MSG_INODE = struct.Struct("=I")
_INODE_OFFSET = _NLMSG.size + 4 + _SOCKID.size + _TAIL.size + 16  # expires..uid, inode


def _diag_inode(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
    source = socket.inet_pton(family, local[0]).ljust(16, b"\0")
    destination = socket.inet_pton(family, remote[0]).ljust(16, b"\0")
    body = (
        _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0xFFFFFFFF)
        + _SOCKID.pack(local[1], remote[1], source, destination)
        + _TAIL.pack(0, 0xFFFFFFFF, 0xFFFFFFFF)
    )
    header = _NLMSG.pack(_NLMSG.size + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as diag:
        diag.settimeout(1.0)
        diag.sendto(header + body, (0, 0))
        reply = diag.recv(65536)
    length, kind = struct.unpack_from("=IH", reply)
    if kind == _NLMSG_ERROR or length < _INODE_OFFSET + 4:
        return None
    (inode,) = _MSG_INODE.unpack_from(reply, _INODE_OFFSET)
    return inode or None


def socket_inode(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """The inode of the TCP socket whose own end is ``local`` and peer ``remote``."""
    with contextlib.suppress(OSError, struct.error, ValueError):
        inode = _diag_inode(local, remote)
        if inode is not None:
            return inode
    for path, key in _candidates(local, remote):
        try:
            with open(path, "rb") as table:
                text = table.read()
        except OSError:
            continue
        at = text.find(b" " + key + b" ")
        if at < 0:
            continue
        fields = text[at : text.find(b"\n", at)].split()
        # local remote st queues timer retransmits uid timeout inode
        with contextlib.suppress(IndexError, ValueError):
            inode = int(fields[8])
            if inode:
                return inode
    return None


def _holds(pid: int, target: str) -> bool:
    folder = f"/proc/{pid}/fd"
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    for name in names:
        with contextlib.suppress(OSError):
            if os.readlink(f"{folder}/{name}") == target:
                return True
    return False


def _descendants(pid: int) -> list[int]:
    """Processes started by ``pid`` and by those, from /proc/<pid>/task/*/children."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{parent}/task"):
                with (
                    contextlib.suppress(OSError),
                    open(f"/proc/{parent}/task/{task}/children") as f,
                ):
                    children = [int(child) for child in f.read().split()]
                    found.extend(children)
                    pending.extend(children)
    return found


class Owner(NamedTuple):
    """Who holds a socket: the worker (a leader given) and the process itself (the
    worker, or a process it started)."""

    leader: int
    holder: int


def owner(local: tuple[str, int], remote: tuple[str, int], leaders: Iterable[int]) -> Owner | None:
    """Which of ``leaders`` (worker processes) holds the socket, itself or through a
    process it started; None if none does (or the socket is gone)."""
    leaders = list(leaders)
    if not leaders:
        return None
    inode = socket_inode(local, remote)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in leaders:
        if _holds(pid, target):
            return Owner(pid, pid)
    # A process that function code started (a subprocess running psql, say).
    for leader in leaders:
        for pid in _descendants(leader):
            if _holds(pid, target):
                return Owner(leader, pid)
    return None


def owner_pid(
    local: tuple[str, int], remote: tuple[str, int], leaders: Iterable[int]
) -> int | None:
    """Which of ``leaders`` holds the socket (see :func:`owner`)."""
    found = owner(local, remote, leaders)
    return None if found is None else found.leader
