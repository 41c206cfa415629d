"""A counting, fault-injecting TCP proxy in front of any datastore.

It counts the connections it accepts (what the server would see), and it can cut
them the ways networks do: cleanly (FIN), with a reset (RST), silently (a black
hole), all at once (an outage: connection refused until it ends), or when a flow
has been idle longer than a NAT gateway or load balancer keeps it.

Each connection is relayed by two threads, one per direction, blocking in
``recv_into``: the lowest latency Python offers. Only the relay threads close
their sockets, after their own ``recv`` has returned; other threads cut a
connection with ``shutdown`` (which wakes a blocked ``recv``), never ``close``
(which would not wake it and could let the descriptor be reused under it).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Literal, TypeAlias, TypedDict

from pytest_lambda_context.observe import shared_connections, taps
from pytest_lambda_context.observe.scope import ACTIVE_SLOT, Scope, mark_internal_thread
from pytest_lambda_context.runtime.clock import real_monotonic

__all__ = ["DropMode", "ProxyCounter", "ProxyStats", "TcpProxy"]

DropMode = Literal["fin", "rst", "blackhole"]
_DROP_MODES = ("fin", "rst", "blackhole")
_LINGER_RST = struct.pack("ii", 1, 0)
_BUFFER = 64 * 1024
_UPSTREAM_CONNECT_TIMEOUT = 5.0
# A client's address as accept() gives it: (host, port), plus (flowinfo, scope_id) on IPv6.
_Peer: TypeAlias = tuple[str, int] | tuple[str, int, int, int]


class ProxyStats(TypedDict):
    """What :meth:`TcpProxy.stats` returns."""

    target: str  # "host:port"
    listening: bool
    opened: int
    open_now: int
    failed: int
    dropped: int
    expired: int
    last_error: str | None


class _Connection:
    """One client connection and its upstream: state shared by its two relay threads."""

    __slots__ = (
        "client",
        "cut_mode",
        "done",
        "last_activity",
        "lingering",
        "lock",
        "owner",
        "peer",
        "suspect",
        "threads",
        "upstream",
        "user",
        "watch_sharing",
    )

    def __init__(self, client: socket.socket, peer: _Peer, now: float) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.peer = peer
        self.last_activity = now
        # None while relaying; else how it was cut ("fin", "rst", "blackhole", "idle").
        self.cut_mode: str | None = None
        self.lock = threading.Lock()
        self.done = 0  # relay threads finished; the last one closes the sockets
        self.threads: list[threading.Thread] = []
        # The scope of the environment whose code opened it (None: not function code's).
        self.owner: Scope | None = None
        # Module isolation: note when another environment's code sends on it (a C
        # driver's connection kept in a shared module; Python's sends are seen anyway).
        self.watch_sharing = False
        # The environment that used it last (its owner at first), and another one's
        # scope that was running when its client last sent.
        self.user: Scope | None = None
        self.suspect: Scope | None = None
        # Its environment was killed: the server's side stays open when the client's
        # ends, as a server never hears of a runtime that Lambda killed.
        self.lingering = False

    def sockets(self) -> list[socket.socket]:
        return [self.client] if self.upstream is None else [self.client, self.upstream]

    def cut(self, mode: str) -> bool:
        """Start cutting the connection; the relay threads finish the job. False if cut."""
        with self.lock:
            if self.cut_mode is not None or self.done >= 2:
                return False
            self.cut_mode = mode
            if mode == "blackhole":
                # The client's side is left open and unanswered; the server's is closed.
                if self.upstream is not None:
                    _quiet_shutdown(self.upstream, socket.SHUT_RDWR)
                return True
            for sock in self.sockets():
                if mode == "fin":
                    _quiet_shutdown(sock, socket.SHUT_RDWR)  # FIN now, wakes the reader
                else:
                    # SHUT_RD wakes the reader without sending anything; the close
                    # that follows with SO_LINGER 0 sends the RST.
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                    _quiet_shutdown(sock, socket.SHUT_RD)
            return True

    def wake_all(self) -> None:
        """Make both relay threads return, whatever state the connection is in."""
        with self.lock:
            if self.done >= 2:
                return
            if self.cut_mode is None:
                self.cut_mode = "fin"
            for sock in self.sockets():
                _quiet_shutdown(sock, socket.SHUT_RDWR)


# Linux's TCP states (include/net/tcp_states.h) after the peer's FIN or a reset.
_PEER_ENDED = frozenset({7, 8, 9})  # TCP_CLOSE, TCP_CLOSE_WAIT, TCP_LAST_ACK


def _closed_by_client(client: socket.socket) -> bool:
    """Whether the client has closed its end (an EOF or a reset waits to be read).

    The connection's TCP state says so even when the client's last bytes (a
    driver's goodbye message, such as PostgreSQL's Terminate) still wait to be relayed
    in front of its end, which a peek would see first."""
    try:
        if (
            _TCP_INFO is not None
            and client.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)[0] in _PEER_ENDED
        ):
            return True
        return client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False  # open, nothing sent
    except OSError:
        return True  # reset, or already closed here


_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None)


def _quiet_shutdown(sock: socket.socket, how: int) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(how)


class ProxyCounter:
    """Counts of one proxy from a starting point on (a test's share, say)."""

    def __init__(self, proxy: TcpProxy) -> None:
        self._proxy = proxy
        self._start = proxy.opened

    @property
    def opened(self) -> int:
        """Connections accepted since this counter was made (or last reset)."""
        return self._proxy.opened - self._start

    @property
    def open_now(self) -> int:
        return self._proxy.open_now

    def reset(self) -> None:
        self._start = self._proxy.opened

    def __repr__(self) -> str:
        return f"<ProxyCounter opened={self.opened} open_now={self.open_now}>"


class TcpProxy:
    """Relay ``listen_host:port`` to ``target_host:target_port``, counting and cutting.

    ``clock`` (seconds, default the real monotonic clock) is the clock idle time is measured
    on; the plugin passes its own, which jumps forward while environments are frozen.
    Each connection it accepts from function code is recorded in that function's
    connection log (see :mod:`.taps`), whatever code opened it.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        name: str | None = None,
        idle_timeout: float | None = None,
        clock: Callable[[], float] | None = None,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        latency: float = 0.0,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        # What the connection log calls it ("via"), and its {proxy:NAME} placeholder.
        self.name = name or f"{target_host}:{target_port}"
        self.idle_timeout = idle_timeout
        self.clock: Callable[[], float] = clock or real_monotonic
        self.listen_host = listen_host
        # Seconds added before each chunk relayed towards the server; settable any time.
        self.latency = latency
        self.opened = 0  # connections accepted, ever
        self.failed = 0  # accepted, but the target could not be reached
        self.dropped = 0  # cut by drop_connections() / outage()
        self.expired = 0  # cut for being idle longer than idle_timeout
        self.last_error: str | None = None
        # Counts from the start, as ``es.connections`` counts from each test's start.
        self.connections = ProxyCounter(self)
        self._port = listen_port
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._connections: set[_Connection] = set()
        self._lock = threading.Lock()
        # Held while connections are taken off the listen queue and attributed: settle()
        # returns only once every connection queued before it was.
        self._accept_lock = threading.Lock()
        self._ready = select.poll()  # the listener, for settle()
        self._closed = False
        self._in_outage = False

    # --- life cycle ---------------------------------------------------------------

    def start(self) -> TcpProxy:
        if self._closed:
            raise RuntimeError("TcpProxy is closed")
        if self._listener is None:
            self._listen()
        return self

    def close(self) -> None:
        """Stop listening, cut every connection and wait for the relay threads."""
        self._closed = True
        self._stop_listening()
        deadline = real_monotonic() + 5.0
        while True:
            with self._lock:
                connections = list(self._connections)
            if not connections or real_monotonic() > deadline:
                break
            # Again each round: a relay that was still connecting upstream applies
            # the cut to its new socket, but only once it has one.
            for conn in connections:
                conn.wake_all()
            time.sleep(0.001)
        for conn in connections:
            for thread in list(conn.threads):
                thread.join(timeout=1.0)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- where it listens ---------------------------------------------------------

    @property
    def host(self) -> str:
        return self.listen_host

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        return (self.listen_host, self._port)

    def url(self, scheme: str = "http") -> str:
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"{scheme}://{host}:{self._port}"

    # --- counts -------------------------------------------------------------------

    @property
    def open_now(self) -> int:
        return len(self._connections)

    @property
    def lingering(self) -> int:
        """Connections left open on the server's side by environments that were killed
        (counted in ``open_now`` too)."""
        with self._lock:
            return sum(1 for c in self._connections if c.lingering)

    def mark(self) -> int:
        """A point to count from: pass it to :meth:`since`."""
        return self.opened

    def since(self, mark: int) -> int:
        """Connections accepted since ``mark``."""
        return self.opened - mark

    def counter(self) -> ProxyCounter:
        """A live view of the counts from now on (``opened``, ``open_now``)."""
        return ProxyCounter(self)

    def reset_counts(self) -> None:
        self.opened = self.failed = self.dropped = self.expired = 0

    def stats(self) -> ProxyStats:
        return {
            "target": f"{self.target_host}:{self.target_port}",
            "listening": self._listener is not None,
            "opened": self.opened,
            "open_now": self.open_now,
            "failed": self.failed,
            "dropped": self.dropped,
            "expired": self.expired,
            "last_error": self.last_error,
        }

    def __repr__(self) -> str:
        return (
            f"<TcpProxy {self.listen_host}:{self._port} -> {self.target_host}:{self.target_port}"
            f" opened={self.opened} open_now={self.open_now}>"
        )

    # --- faults -------------------------------------------------------------------

    def drop_connections(self, mode: DropMode = "rst") -> int:
        """Cut every open connection; return how many.

        ``fin``: closed cleanly, the client reads EOF. ``rst``: reset, the client gets
        ConnectionResetError. ``blackhole``: nothing more is relayed or answered, the
        client waits for its own timeout (its socket is closed once it gives up).
        """
        if mode not in _DROP_MODES:
            raise ValueError(f"drop_connections(mode=...) takes one of {_DROP_MODES}, not {mode!r}")
        with self._lock:
            connections = list(self._connections)
        cut = sum(conn.cut(mode) for conn in connections)
        with self._lock:
            self.dropped += cut
        return cut

    @contextlib.contextmanager
    def outage(self, mode: DropMode = "rst") -> Iterator[TcpProxy]:
        """While inside: new connections are refused and open ones are cut (``mode``).

        Afterwards the proxy listens again on the same port.
        """
        if self._in_outage:
            raise RuntimeError("TcpProxy.outage() is already in progress")
        self._in_outage = True
        try:
            self._stop_listening()
            self.drop_connections(mode)
            yield self
        finally:
            self._in_outage = False
            if not self._closed:
                self._listen()

    def expire_idle(self) -> int:
        """Reset every connection idle longer than ``idle_timeout`` by ``clock``.

        As an AWS NAT gateway or NLB does when a flow times out (350 s): the next
        packet either side sends is answered with a reset. Returns how many.
        """
        if self.idle_timeout is None:
            return 0
        now = self.clock()
        with self._lock:
            stale = [c for c in self._connections if now - c.last_activity > self.idle_timeout]
        cut = sum(conn.cut("rst") for conn in stale)
        with self._lock:
            self.expired += cut
        return cut

    def linger(self, scope: Scope) -> int:
        """Keep the server's side of ``scope``'s connections open when their client
        ends (its environment is being killed); how many. A connection its code has
        closed already (the end is waiting to be read) ends as it was closed."""
        with self._lock:
            owned = [c for c in self._connections if c.owner is scope and c.cut_mode is None]
        count = 0
        closing = []
        for conn in owned:
            if _closed_by_client(conn.client):
                closing.append(conn)
            else:
                conn.lingering = True
                count += 1
        # What its code closed is gone by the time the shutdown returns (open_now).
        for conn in closing:
            for thread in list(conn.threads):
                thread.join(timeout=1.0)
        return count

    def end_lingering(self) -> int:
        """Close the server's side of every connection left open by a killed
        environment (as the server's own keepalive would, one day); how many."""
        with self._lock:
            lingering = [c for c in self._connections if c.lingering]
        return sum(conn.cut("fin") for conn in lingering)

    # --- internals ----------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET6 if ":" in self.listen_host else socket.AF_INET)
        try:
            # Re-binding the same port after an outage must not trip over TIME_WAIT.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.listen_host, self._port))
            listener.listen(128)
            # Non-blocking: the accept thread waits in poll(), and settle() can take
            # what is queued from any thread.
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._port = listener.getsockname()[1]
        self._ready = select.poll()
        self._ready.register(listener, select.POLLIN)
        self._listener = listener
        self._accept_thread = threading.Thread(
            target=self._accept_loop,
            args=(listener,),
            name=f"lambda-context-proxy-{self._port}",
            daemon=True,
        )
        self._accept_thread.start()
        taps.track(self)

    def settle(self) -> None:
        """Accept and attribute every connection the kernel has completed by now."""
        listener = self._listener
        if listener is None:
            return
        # Nothing queued and no drain under way: every connection so far is attributed
        # (the accept thread takes and attributes connections only under the lock).
        # Checked first, as this runs twice per invocation while a proxy is alive.
        if not self._accept_lock.locked():
            try:
                if not self._ready.poll(0):
                    return
            except RuntimeError:
                pass  # another thread polls it right now: take the lock below

        with self._accept_lock:
            self._drain(listener)

    def _stop_listening(self) -> None:
        listener, thread = self._listener, self._accept_thread
        self._listener = self._accept_thread = None
        if listener is None:
            return
        taps.untrack(self)
        # shutdown wakes the blocked accept() (close would not); new connects are
        # refused from here on.
        _quiet_shutdown(listener, socket.SHUT_RDWR)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        listener.close()

    def _accept_loop(self, listener: socket.socket) -> None:
        mark_internal_thread()
        poller = select.poll()
        poller.register(listener, select.POLLIN)
        while self._listener is listener:
            try:
                # Shutting the listener down wakes poll (POLLHUP); the timeout is a
                # safety net, not the mechanism.
                ready = poller.poll(500)
            except OSError:
                return
            if not ready:
                continue
            with self._accept_lock:
                if not self._drain(listener):
                    return

    def _drain(self, listener: socket.socket) -> bool:
        """Accept what is queued (under ``_accept_lock``); False once the listener is shut."""
        while True:
            try:
                client, peer = listener.accept()
            except BlockingIOError:
                return True
            except OSError:
                return False  # the listener was shut down
            client.setblocking(True)  # never inherit non-blocking mode or a default timeout
            # Whose is it: asked now, while the client waits for its first answer.
            owner = taps.attribute(self.name, (self.listen_host, self._port), (peer[0], peer[1]))
            conn = _Connection(client, peer, self.clock())
            if owner is not None:
                conn.owner = conn.user = owner.scope
                conn.watch_sharing = owner.here
            with self._lock:
                self.opened += 1
                self._connections.add(conn)
            thread = threading.Thread(
                target=self._client_to_upstream,
                args=(conn,),
                name=f"lambda-context-proxy-{self._port}-up",
                daemon=True,
            )
            conn.threads.append(thread)
            thread.start()

    def _client_to_upstream(self, conn: _Connection) -> None:
        mark_internal_thread()
        client = conn.client
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream = socket.create_connection(
                (self.target_host, self.target_port), timeout=_UPSTREAM_CONNECT_TIMEOUT
            )
        except OSError as exc:
            with self._lock:
                self.failed += 1
            self.last_error = (
                f"could not connect to {self.target_host}:{self.target_port} "
                f"for the client at {conn.peer[0]}:{conn.peer[1]}: {exc}"
            )
            # The client sees its accepted connection closed, as with a proxy whose
            # backend is down.
            conn.done = 1
            self._finish(conn)
            return
        upstream.settimeout(None)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn.lock:
            conn.upstream = upstream
            if conn.cut_mode is not None:
                # Cut while we were connecting: apply it to the new socket too.
                mode, conn.cut_mode = conn.cut_mode, None
            else:
                mode = None
        if mode is not None:
            conn.cut(mode)
        thread = threading.Thread(
            target=self._relay,
            args=(conn, upstream, client, False),
            name=f"lambda-context-proxy-{self._port}-down",
            daemon=True,
        )
        conn.threads.append(thread)
        thread.start()
        self._relay(conn, client, upstream, True)

    def _relay(
        self, conn: _Connection, src: socket.socket, dst: socket.socket, upstream: bool
    ) -> None:
        if not upstream:
            mark_internal_thread()
        buffer = bytearray(_BUFFER)
        view = memoryview(buffer)
        clock = self.clock
        eof = False
        try:
            while True:
                n = src.recv_into(buffer)
                if n == 0:
                    eof = True
                    break
                if conn.lingering and not upstream:
                    continue  # the client is gone for good: what the server says is lost
                if conn.cut_mode is not None:
                    if conn.cut_mode == "blackhole" and upstream:
                        continue  # swallow what the client sends; it gets no answer
                    break
                now = clock()
                if self.idle_timeout is not None and now - conn.last_activity > self.idle_timeout:
                    # The flow timed out before anyone called expire_idle(): a NAT
                    # gateway answers this late packet with a reset.
                    if conn.cut("rst"):
                        with self._lock:
                            self.expired += 1
                    break
                conn.last_activity = now
                if conn.watch_sharing:
                    self._watch_sharing(conn, upstream)
                if upstream and self.latency > 0:
                    time.sleep(self.latency)
                dst.sendall(view[:n])
        except OSError:
            if conn.lingering and upstream:
                pass  # the killed client's end: the server never hears of it
            elif conn.lingering and conn.cut_mode is None:
                # Writing to the killed client failed: keep the server's side open.
                self._discard_until_cut(conn, src, buffer)
            else:
                # A reset from either side: pass it on to the other, as a router would.
                conn.cut("rst")
        else:
            if eof and conn.lingering and upstream:
                pass  # the killed client's end: the server never hears of it
            elif eof and conn.cut_mode is None:
                # Half-close: forward the FIN, keep relaying the other direction.
                _quiet_shutdown(dst, socket.SHUT_WR)
        finally:
            view.release()
            self._finish(conn)

    def _watch_sharing(self, conn: _Connection, upstream: bool) -> None:
        """Another environment's code sent on this connection (module isolation) when
        its client sent while that code ran and the server's answer came back while it
        still ran: that code was waiting for it. (Bytes the owner sent without waiting
        for an answer may be read here only once the next environment runs.)"""
        running = ACTIVE_SLOT[0]
        if upstream:
            conn.suspect = running if running is not conn.user else None
            return
        suspect, conn.suspect = conn.suspect, None
        if suspect is not None and suspect is running and conn.user is not None:
            address = f"{self.listen_host}:{self._port}"
            if shared_connections.note_use(conn.user, running, address):
                conn.user = running  # the next environment to use it is noted too

    @staticmethod
    def _discard_until_cut(conn: _Connection, upstream: socket.socket, buffer: bytearray) -> None:
        with contextlib.suppress(OSError):
            while conn.cut_mode is None and upstream.recv_into(buffer):
                pass

    def _finish(self, conn: _Connection) -> None:
        with conn.lock:
            conn.done += 1
            if conn.done < 2:
                return
            for sock in conn.sockets():
                sock.close()
        with self._lock:
            self._connections.discard(conn)
