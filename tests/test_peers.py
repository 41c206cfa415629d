"""Which process holds the client end of a loopback connection (what lets a proxy
attribute C code's connections to the worker process of an environment)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from pytest_lambda_context.observe import peers


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server


def test_the_holder_is_found_by_netlink_and_by_proc(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.create_connection(listener.getsockname()) as client:
        accepted, peer = listener.accept()
        with accepted:
            inode = os.fstat(client.fileno()).st_ino
            remote = listener.getsockname()
            assert peers.socket_inode(peer, remote) == inode
            assert peers.owner_pid(peer, remote, [os.getpid()]) == os.getpid()
            with subprocess.Popen(["sleep", "30"]) as stranger:  # holds nothing
                assert peers.owner_pid(peer, remote, [stranger.pid]) is None
                stranger.kill()

            def refused(*args: object) -> None:
                raise OSError("netlink refused")

            monkeypatch.setattr(peers, "_diag_inode", refused)
            assert peers.socket_inode(peer, remote) == inode  # from /proc/net/tcp


def test_a_process_the_leader_started_counts_as_the_leader(listener: socket.socket) -> None:
    # The "worker" is this process; its child holds the connection.
    script = (
        "import socket, sys\n"
        f"s = socket.create_connection(('127.0.0.1', {listener.getsockname()[1]}))\n"
        "sys.stdout.write('connected\\n'); sys.stdout.flush(); sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"connected\n"
        accepted, peer = listener.accept()
        with accepted:
            assert peers.owner_pid(peer, listener.getsockname(), [os.getpid()]) == os.getpid()
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)
        child.stdout.close()  # type: ignore[union-attr]


def test_a_closed_socket_has_no_owner(listener: socket.socket) -> None:
    client = socket.create_connection(listener.getsockname())
    accepted, peer = listener.accept()
    client.close()
    with accepted:
        assert peers.owner_pid(peer, listener.getsockname(), [os.getpid()]) is None
