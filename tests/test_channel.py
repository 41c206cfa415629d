"""The worker channel: every message type crosses both framings intact, by name."""

from __future__ import annotations

import ast
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from pytest_lambda_context.environments import channel
from pytest_lambda_context.environments.channel import (
    MESSAGE_TYPES,
    ChannelError,
    Forked,
    ForkRequest,
    ForkServerRequest,
    Hello,
    InitRequest,
    InvokeReply,
    InvokeRequest,
    Message,
    PhaseReply,
    Ready,
    Reaped,
    ReapRequest,
    ReleaseRequest,
    RestoreRequest,
    ServingForks,
    ShutdownReady,
    ShutdownRequest,
    SnapshotRequest,
    WorkerConfig,
)
from pytest_lambda_context.environments.worker_coverage import CoverageHandoff
from pytest_lambda_context.runtime.records import OutcomeKind

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

PACKAGE = Path(channel.__file__).resolve().parent.parent

CONFIG = WorkerConfig(
    environ={"AWS_LAMBDA_FUNCTION_NAME": "fn", "TZ": ":UTC"},
    tmpdir="/tmp/env-1",
    sys_path=["/code", "/site-packages"],
    code_root="/code",
    code_root_prefix="/code/",
    function_name="fn",
    environment_id="env-1",
    network="loopback",
    handler="app.main.handler",
    memory_mb=128,
    region="eu-west-1",
    log_stream_name="2026/12/02/[$LATEST]abc",
)

# One of each type, every field set to something its neighbours would not be.
SAMPLES: list[Message] = [
    Hello(
        sys_path=["/a", "/b"],
        preload=["json"],
        coverage=CoverageHandoff(
            config="{}", root="/r", data_file="/r/.coverage", source=None, private_folder=None
        ),
        pool=2,
    ),
    Ready(pid=4242, preloaded=["json", "ssl"]),
    ForkRequest(own_tmp="/tmp/own", expose=("/code", "/venv")),
    Forked(pid=4243),
    ReapRequest(pid=4243, block=False),
    Reaped(status=None),
    Reaped(status=9),
    ReleaseRequest(pid=4244, grace=1.5, remove="/tmp/env-3"),
    InitRequest(config=CONFIG, request_id="req-1", offset=3600.5),
    InitRequest(config=CONFIG, request_id=None, offset=0.0),
    InvokeRequest(request_id="req-2", event={"q": [1, 2.5, None]}, deadline_ms=1.5e12, offset=0.0),
    SnapshotRequest(offset=12.0),
    RestoreRequest(
        environment_id="env-2",
        log_stream_name="stream-2",
        tmpdir="/tmp/snap/.restores/env-2",
        environ={"TMPDIR": "/tmp/snap/.restores/env-2"},
        offset=-1.0,
    ),
    ForkServerRequest(),
    ShutdownRequest(grace=0.5),
    ShutdownReady(sigterm_handled=True),
    PhaseReply(
        kind=OutcomeKind.INIT_ERROR,
        hooks_ms=None,
        payload={"errorType": "Runtime.ImportModuleError", "errorMessage": "x"},
        duration_ms=12.5,
        events=[("event", 1)],
        max_rss_kb=20480,
        tmp_refused="no user namespaces",
        output=["INIT_START"],
        echo=[(1, "printed\n"), (2, "warned\n")],
    ),
    PhaseReply(
        kind=OutcomeKind.OK,
        hooks_ms=3.25,
        payload=None,
        duration_ms=3.25,
        events=[],
        max_rss_kb=1,
        tmp_refused=None,
        output=None,
        echo=None,
    ),
    InvokeReply(
        kind=OutcomeKind.OK,
        result=b'{"ok": true}',
        raw=True,
        payload=None,
        duration_ms=0.25,
        events=[],
        max_rss_kb=30000,
        output=["START", "END"],
        echo=[],
    ),
    ServingForks(max_rss_kb=7),
]


def test_every_message_type_has_a_sample() -> None:
    assert {type(sample) for sample in SAMPLES} == set(MESSAGE_TYPES)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_on_an_environments_channel(message: Message) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        channel.send_message(ours, message)
        received = channel.recv_message(theirs, time.monotonic() + 5.0)
    assert type(received) is type(message)
    assert received == message
    assert received._asdict() == message._asdict()


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_on_the_control_socket(message: Message) -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs:
        channel.send_packet(ours, message)
        received = channel.recv_packet(theirs)
    assert type(received) is type(message)
    assert received == message


@pytest.mark.parametrize("framing", ["stream", "packet"])
def test_a_descriptor_travels_with_a_fork_request(framing: str) -> None:
    kind = socket.SOCK_STREAM if framing == "stream" else socket.SOCK_SEQPACKET
    ours, theirs = socket.socketpair(socket.AF_UNIX, kind)
    read_end, write_end = os.pipe()
    request = ForkRequest(own_tmp=None, expose=())
    fds: list[int] = []
    with ours, theirs:
        if framing == "stream":
            channel.send_message(ours, request, [write_end])
            received: Message | None = channel.recv_message(theirs, fds=fds)
        else:
            channel.send_packet(ours, request, [write_end])
            received = channel.recv_packet(theirs, fds)
    os.close(write_end)
    assert received == request
    assert len(fds) == 1
    os.write(fds[0], b"through")
    os.close(fds[0])
    assert os.read(read_end, 7) == b"through"
    os.close(read_end)


def test_a_large_message_arrives_whole() -> None:
    # Bigger than one read and than the socket's buffer: sent and read in pieces.
    event = {"blob": "x" * (3 << 20)}
    message = InvokeRequest(request_id="big", event=event, deadline_ms=0.0, offset=0.0)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        import threading

        sender = threading.Thread(target=channel.send_message, args=(ours, message))
        sender.start()
        received = channel.recv_message(theirs, time.monotonic() + 30.0)
        sender.join()
    assert received == message


def test_the_other_side_gone_is_eof_and_no_message_is_none() -> None:
    ours, theirs = socket.socketpair()
    ours.close()
    with theirs, pytest.raises(EOFError):
        channel.recv_message(theirs)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.close()
    with theirs:
        assert channel.recv_packet(theirs) is None


def test_an_unexpected_message_names_both_types() -> None:
    with pytest.raises(ChannelError, match="expected Forked on the channel, got Reaped"):
        channel.expect(Reaped(status=0), Forked)
    with pytest.raises(ChannelError, match="not a channel message"):
        channel.decode(b"\x80\x05K\x07.")  # a pickled 7, not a tagged tuple


def _channel_type_calls() -> list[str]:
    """Every construction of a message type in the package that passes a field by place."""
    names = {kind.__name__ for kind in MESSAGE_TYPES} | {"WorkerConfig"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in names
                and node.args
            ):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.func.id}")
    return found


def test_the_package_builds_every_message_by_field_name() -> None:
    # NamedTuples accept fields by place too; by name, a swapped pair cannot happen.
    assert _channel_type_calls() == []
