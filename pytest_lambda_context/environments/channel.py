"""What the test process and its worker processes say to each other, and how it travels.

Process isolation has two kinds of link (see :mod:`~pytest_lambda_context.environments.worker`):

- the template's *control socket* (SOCK_SEQPACKET, one message per packet,
  :func:`send_packet` / :func:`recv_packet`): :class:`Hello` then :class:`Ready` at
  start, then :class:`ForkRequest` answered by :class:`Forked` and :class:`ReapRequest`
  answered by :class:`Reaped`;
- an environment's *channel* (a stream socketpair, length-prefixed messages,
  :func:`send_message` / :func:`recv_message`): :class:`InitRequest`,
  :class:`InvokeRequest`, :class:`SnapshotRequest`, :class:`RestoreRequest`,
  :class:`ForkServerRequest` and :class:`ShutdownRequest` from the test process;
  :class:`PhaseReply`, :class:`InvokeReply`, :class:`ServingForks` and
  :class:`ShutdownReady` back. A worker that
  forks others (a SnapStart snapshot, a Managed Instances environment) also answers
  :class:`ForkRequest` and :class:`ReapRequest` on its channel, as the template does.

Every message is a NamedTuple, built with keywords and read by field name: a field
given to the wrong name, or of the wrong type, is a type error. On the wire a message
is a plain tuple, its type's tag first, pickled: a warm invocation's round trip pays
well under a microsecond for the names (pickling the classes themselves cost ~5 µs).
"""

from __future__ import annotations

import pickle
import socket
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, TypeVar

from pytest_lambda_context.runtime.clock import real_monotonic
from pytest_lambda_context.runtime.records import ErrorPayload, OutcomeKind

if TYPE_CHECKING:
    from pytest_lambda_context.environments.worker_coverage import CoverageHandoff
    from pytest_lambda_context.observe.events import ObservedEvent
    from pytest_lambda_context.runtime.invoke_headers import InvokeHeaders
    from pytest_lambda_context.runtime.pytest_outcomes import RaisedOutcome

__all__ = [
    "MESSAGE_TYPES",
    "ChannelError",
    "ForkRequest",
    "ForkServerRequest",
    "Forked",
    "Hello",
    "InitRequest",
    "InvokeReply",
    "InvokeRequest",
    "Message",
    "PhaseReply",
    "Ready",
    "ReapRequest",
    "Reaped",
    "ReleaseRequest",
    "RestoreRequest",
    "ServingForks",
    "ShutdownReady",
    "ShutdownRequest",
    "SnapshotRequest",
    "WorkerConfig",
    "decode",
    "encode",
    "expect",
    "recv_message",
    "recv_packet",
    "send_message",
    "send_packet",
]


class ChannelError(RuntimeError):
    """A message that the other side should never have sent (a bug, not a crash)."""


# --- the template's control socket -----------------------------------------------------


class Hello(NamedTuple):
    """Test process -> template, once: what to import, from where, and how to measure."""

    sys_path: list[str]
    preload: list[str]
    # The session's coverage, for every worker to measure alike (None: not measured).
    coverage: CoverageHandoff | None
    # How many blank workers to keep forked ahead (environments/blank_pool.py).
    pool: int
    # Where to put each forked worker in a memory cgroup of its own (None: nowhere;
    # environments/memory_cgroup.py).
    memory_cgroups: str | None = None


class Ready(NamedTuple):
    """Template -> test process, once: imported what it could, ready to fork."""

    pid: int
    preloaded: list[str]


class ForkRequest(NamedTuple):
    """Fork a worker serving the channel whose fd travels with this message (SCM_RIGHTS)."""

    # The folder that is to be the worker's literal /tmp (None: the host's, or its
    # forker's), and the host paths that must stay visible in it.
    own_tmp: str | None
    expose: tuple[str, ...]


class Forked(NamedTuple):
    pid: int


class ReapRequest(NamedTuple):
    """Wait for worker ``pid`` (only its forker can: workers are its children)."""

    pid: int
    # False: answer at once, with status None if it still runs.
    block: bool


class Reaped(NamedTuple):
    # The raw wait status (os.waitpid's), or None: still running and not ``block``.
    status: int | None


class ReleaseRequest(NamedTuple):
    """The test process is done with worker ``pid`` (told to shut down, or killed):
    reap it once it exits, ending its process group past ``grace`` seconds, then remove
    ``remove``. Not answered: the test does not wait for it."""

    pid: int
    grace: float
    # The environment's own /tmp folder (None: not the worker's to remove). Removed
    # once the worker's mount namespace is gone: before, each of its bind mounts makes
    # the removal wait for the kernel (~5 ms a folder).
    remove: str | None


# --- an environment's channel ----------------------------------------------------------


class WorkerConfig(NamedTuple):
    """What a fresh worker needs to become one execution environment of the function."""

    # os.environ as function code sees it, and TMPDIR's folder (tempfile.tempdir).
    environ: dict[str, str]
    tmpdir: str
    sys_path: list[str]
    code_root: str
    # ``code_root`` with one trailing separator: what frames are matched against.
    code_root_prefix: str
    function_name: str
    environment_id: str
    # "allow" or "loopback" (the network guard's policy).
    network: str
    handler: str
    memory_mb: int
    region: str
    log_stream_name: str
    # The layer folders to mount at /opt, in order (environments/layers.py).
    layers: tuple[str, ...] = ()


class InitRequest(NamedTuple):
    """Run the init phase: import the handler's module (the function's init code)."""

    config: WorkerConfig
    # The invocation that triggered this init (None: a cold start ahead of traffic).
    request_id: str | None
    # Seconds the session's clock is shifted by (``idle()``): function code sees it.
    offset: float


class InvokeRequest(NamedTuple):
    request_id: str
    event: Any
    # The invocation's deadline, in the function's (shifted) epoch milliseconds.
    deadline_ms: float
    offset: float
    # The caller's client context, identity and tenant (None: none).
    headers: InvokeHeaders | None = None


class SnapshotRequest(NamedTuple):
    """SnapStart: init has run; run the before-snapshot hooks, then serve restores."""

    offset: float


class RestoreRequest(NamedTuple):
    """SnapStart: this restored worker becomes environment ``environment_id``; run the
    after-restore hooks."""

    environment_id: str
    log_stream_name: str
    tmpdir: str
    # Added to the snapshot's os.environ (TMPDIR: the restore's own folder).
    environ: dict[str, str]
    offset: float


class ForkServerRequest(NamedTuple):
    """Managed Instances: serve fork requests (the environment's runtime processes)."""


class ShutdownRequest(NamedTuple):
    """Lambda's shutdown phase: SIGTERM to function code's handler, if ``grace`` (the
    seconds it and the code's other threads may still run), then answer
    :class:`ShutdownReady` and wait to be ended. Function code's atexit callbacks never
    run (the worker ends in ``os._exit``, which saves coverage data first)."""

    grace: float


class ShutdownReady(NamedTuple):
    """The answer to :class:`ShutdownRequest`: what ran, now end the worker."""

    # Function code's SIGTERM handler was called (False: it had none, or no grace).
    sigterm_handled: bool


class PhaseReply(NamedTuple):
    """How an init phase, or SnapStart's hooks (before snapshot, after restore), ended."""

    # OK, INIT_ERROR, RUNTIME_EXIT (init code exited) or HOOK_ERROR (a hook failed).
    kind: OutcomeKind
    # SnapStart hooks: milliseconds since the restore (or the snapshot) began, the
    # billed duration. None for an init.
    hooks_ms: float | None
    # Lambda's error payload when ``kind`` is not OK.
    payload: ErrorPayload | None
    duration_ms: float
    # What function code's connections and clients did (observe's event objects).
    events: list[ObservedEvent]
    max_rss_kb: int
    # Why this environment's literal /tmp is the host's (None: it is its own).
    tmp_refused: str | None
    # The phase's log events, and its output for the test's stdout (1) and stderr (2);
    # None for SnapStart's hooks (their output goes with the next phase).
    output: list[str] | None
    echo: list[tuple[int, str]] | None
    # pytest.skip/fail/exit raised by init code: the test's outcome (``kind`` is then
    # INIT_ERROR, and the worker is to be discarded).
    raised: RaisedOutcome | None = None


class InvokeReply(NamedTuple):
    """How one invocation ended (see runtime.handler.Outcome)."""

    kind: OutcomeKind
    # The marshalled result; ``raw``: bytes as they are.
    result: Any
    raw: bool
    payload: ErrorPayload | None
    duration_ms: float
    events: list[ObservedEvent]
    max_rss_kb: int
    output: list[str]
    echo: list[tuple[int, str]]
    # pytest.skip/fail/exit raised by the handler: the test's outcome (``kind`` is then
    # OK; the environment stays warm, as in module isolation).
    raised: RaisedOutcome | None = None


class ServingForks(NamedTuple):
    """The answer to :class:`ForkServerRequest`: forks are served from now on."""

    max_rss_kb: int


Message: TypeAlias = (
    Hello
    | Ready
    | ForkRequest
    | Forked
    | ReapRequest
    | Reaped
    | InitRequest
    | InvokeRequest
    | SnapshotRequest
    | RestoreRequest
    | ForkServerRequest
    | ShutdownRequest
    | PhaseReply
    | InvokeReply
    | ServingForks
    | ShutdownReady
    | ReleaseRequest
)
# The wire tag of each type is its place here: append, never reorder (the template and
# its workers always run the same copy of this module, but a reader of a dump should
# not have to wonder).
MESSAGE_TYPES: tuple[type[Message], ...] = (
    Hello,
    Ready,
    ForkRequest,
    Forked,
    ReapRequest,
    Reaped,
    InitRequest,
    InvokeRequest,
    SnapshotRequest,
    RestoreRequest,
    ForkServerRequest,
    ShutdownRequest,
    PhaseReply,
    InvokeReply,
    ServingForks,
    ShutdownReady,
    ReleaseRequest,
)
_TAGS: dict[type[Message], int] = {kind: tag for tag, kind in enumerate(MESSAGE_TYPES)}
_PICKLE = pickle.HIGHEST_PROTOCOL

M = TypeVar("M", bound=tuple[Any, ...])


def encode(message: Message) -> bytes:
    """``message`` as bytes: its tag and fields, pickled."""
    return pickle.dumps((_TAGS[type(message)], *message), _PICKLE)


def decode(data: bytes | bytearray | memoryview) -> Message:
    """The message ``encode`` made these bytes of."""
    fields = pickle.loads(data)
    try:
        kind = MESSAGE_TYPES[fields[0]]
    except (TypeError, IndexError, KeyError):
        raise ChannelError(f"not a channel message: {fields!r:.200}") from None
    # tuple.__new__, not kind(...): the fields are in order already, and this is the
    # warm path's cheapest way to the named type.
    message: Message = tuple.__new__(kind, fields[1:])
    return message


def expect(message: Message | None, kind: type[M]) -> M:
    """``message``, which must be a ``kind``; ChannelError otherwise."""
    if type(message) is not kind:
        raise ChannelError(f"expected {kind.__name__} on the channel, got {message!r:.200}")
    return message


# --- framing: one message per packet (the control socket) ------------------------------

CONTROL_PACKET = 1 << 16


def send_packet(sock: socket.socket, message: Message, fds: Sequence[int] = ()) -> None:
    """Send one message as one packet; ``fds`` travel with it (SCM_RIGHTS)."""
    data = encode(message)
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def recv_packet(sock: socket.socket, fds: list[int] | None = None) -> Message | None:
    """Read one packet's message; None when the peer is gone.

    ``fds``: file descriptors sent with the message are added to it (at most one).
    """
    if fds is None:
        data = sock.recv(CONTROL_PACKET)
    else:
        data, received, _, _ = socket.recv_fds(sock, CONTROL_PACKET, 1)
        fds.extend(received)
    return decode(data) if data else None


# --- framing: length-prefixed messages on a stream socket (an environment's channel) ---

_HEADER = struct.Struct("!Q")


def send_message(sock: socket.socket, message: Message, fds: Sequence[int] = ()) -> None:
    """Send one message; ``fds`` travel with its first bytes (SCM_RIGHTS)."""
    data = encode(message)
    if fds:
        framed = _HEADER.pack(len(data)) + data
        sent = socket.send_fds(sock, [framed], list(fds))
        if sent < len(framed):
            sock.sendall(framed[sent:])
    elif len(data) < 1 << 16:
        sock.sendall(_HEADER.pack(len(data)) + data)
    else:  # spare a copy of a large event or result
        sock.sendall(_HEADER.pack(len(data)))
        sock.sendall(data)


def recv_message(
    sock: socket.socket, deadline: float | None = None, fds: list[int] | None = None
) -> Message:
    """Read one message; EOFError when the peer is gone, TimeoutError past ``deadline``.

    ``deadline`` (time.monotonic) needs a socket in timeout mode; None blocks.
    ``fds``: file descriptors sent along with the message (SCM_RIGHTS) are added to it.
    """
    chunk = _recv(sock, 1 << 16, deadline, fds)
    while len(chunk) < _HEADER.size:
        chunk += _recv(sock, _HEADER.size - len(chunk), deadline)
    (size,) = _HEADER.unpack_from(chunk)
    end = _HEADER.size + size
    if len(chunk) >= end:  # the common case: the whole message in one read
        return decode(memoryview(chunk)[_HEADER.size : end])
    buffer = bytearray(size)
    view = memoryview(buffer)
    have = len(chunk) - _HEADER.size
    view[:have] = memoryview(chunk)[_HEADER.size :]
    while have < size:
        if deadline is not None:
            _set_timeout(sock, deadline)
        count = sock.recv_into(view[have:])
        if not count:
            raise EOFError("the peer closed the channel")
        have += count
    return decode(buffer)


def _recv(
    sock: socket.socket, size: int, deadline: float | None, fds: list[int] | None = None
) -> bytes:
    if deadline is not None:
        _set_timeout(sock, deadline)
    if fds is None:
        data = sock.recv(size)
    else:
        data, received, _, _ = socket.recv_fds(sock, size, 4)
        fds.extend(received)
    if not data:
        raise EOFError("the peer closed the channel")
    return data


def _set_timeout(sock: socket.socket, deadline: float) -> None:
    remaining = deadline - real_monotonic()
    if remaining <= 0:
        # Not settimeout(0): that makes the socket non-blocking (BlockingIOError).
        raise TimeoutError("no reply before the deadline")
    sock.settimeout(remaining)
