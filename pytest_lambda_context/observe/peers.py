"""Which process holds the client end of a loopback TCP connection (Linux ``/proc``).

A proxy sees only the client's address. With several environments running in
worker processes at once, the client's port says nothing about whose code opened the
connection; the kernel does: ``/proc/net/tcp`` maps the connection's two ends to the
socket's inode, and a process's ``/proc/<pid>/fd`` holds ``socket:[inode]``.
Asked while the client waits for its first answer, so the socket is still there.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Iterable

__all__ = ["owner_pid", "socket_inode"]

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


def socket_inode(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """The inode of the TCP socket whose own end is ``local`` and peer ``remote``."""
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


def _group_members(groups: set[int]) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
            if int(fields[2]) in groups:  # state ppid pgrp
                members.append(int(entry))
    return members


def owner_pid(
    local: tuple[str, int], remote: tuple[str, int], leaders: Iterable[int]
) -> int | None:
    """Which of ``leaders`` (process group leaders) holds the socket, itself or through a
    process of its group (one its code started); None if none does (or it is gone)."""
    leaders = list(leaders)
    if not leaders:
        return None
    inode = socket_inode(local, remote)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in leaders:
        if _holds(pid, target):
            return pid
    groups = set(leaders)
    for pid in _group_members(groups):
        if pid not in groups and _holds(pid, target):
            with contextlib.suppress(OSError):
                return os.getpgid(pid)
    return None
