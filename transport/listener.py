"""Plumbing shared by the TCP and WebSocket acceptors.

Both acceptors are ``asyncio.Protocol`` objects on ``loop.create_server`` rather than
streams: a stream costs a reader task and a buffer copy per connection, while a protocol is
one object whose callbacks run straight from the event loop. This module holds the two
pieces they have in common, so that there is one way to do each:

- :class:`BufferedConnection`, the per-connection object. It is at once the asyncio protocol
  and the :class:`~transport.acceptor.Connection` handed to the layer above. Writes are
  coalesced: every ``write`` in one event-loop iteration lands in a list that a single
  ``call_soon`` flush hands to the transport with one ``transport.write``. After each flush the
  transport's buffer is checked against ``ConnectionLimits.max_write_buffer``; a client that
  does not read is aborted there, so it can neither grow the server's memory without bound
  nor slow down anyone else.
- :class:`Listener`, the listening socket's life cycle (start, stop, address, stats).

Reading is fair between connections: a read that fills the buffer it was given (the peer
has more waiting: a pipelined flood, or a large upload) pauses that connection's reading
until the loop's next iteration, after every other connection ready now had its turn, and
its next reads get :data:`BURST_READ_SIZE` bytes until one does not fill them. Without it,
uvloop reads one socket up to 32 times in a row per readable event (libuv's loop): one
client pipelining small requests at a synchronous handler held the loop for about 0.6 s per
event, and every other client waited that long (asyncio's loop reads 256 KiB per event).
With it, an honest client's request waits for about one burst read of each flooding client.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
import weakref
from collections.abc import Callable, Iterable
from typing import cast

from transport.acceptor import ConnectionFactory, ConnectionHandler, ConnectionLimits
from transport.logs import ServerLog, Throttle
from transport.peer import format_peer
from transport.proxygate import ProxyGate, ProxyPolicy
from transport.stats import AcceptorStats

logger = logging.getLogger(__name__)

_NO_SERVER = ServerLog(logger, "")
_UNLISTED_SLOW_READERS = Throttle()
"""The slow-reader lines of connections no listener made (tests, subclasses used alone)."""

DEFAULT_LIMITS = ConnectionLimits()
"""The limits an acceptor uses unless given others (a frozen value, safe to share)."""

CLOSE_TIMEOUT = 2.0
"""Seconds a closing connection may take to drain (or to answer a WebSocket close frame)
before it is aborted: a peer that stopped reading must not hold a socket open forever."""


READ_BUFFER_SIZE = 64 * 1024
"""Bytes read from a socket at once, into one buffer shared by every connection of a loop."""

BURST_READ_SIZE = 8 * 1024
"""Bytes read at once from a connection whose last read filled its buffer, one read per loop
iteration: about 700 small pipelined requests, a few milliseconds of a server's time."""


class _LoopShared:
    """Per event loop: the read buffer and the flush queue every connection shares.

    Reading: asyncio's plain ``Protocol`` path allocates a fresh 256 KiB bytes object per
    ``recv`` (and the allocator maps and unmaps it), which profiling showed as a fifth of a
    busy server's time. As a ``BufferedProtocol`` a connection reads into this buffer instead
    and copies out only the bytes that arrived; sharing it is safe because asyncio hands it
    out and takes it back within one synchronous callback.

    Writing: instead of one ``call_soon`` per connection written to, every connection written
    to in an iteration joins one list that a single ``call_soon`` flushes.
    """

    __slots__ = ("buffer", "burst_view", "dirty", "flush_scheduled", "loop", "view")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.buffer = bytearray(READ_BUFFER_SIZE)
        self.view = memoryview(self.buffer)
        self.burst_view = self.view[:BURST_READ_SIZE]
        self.dirty: list[BufferedConnection] = []
        self.flush_scheduled = False

    def schedule(self, connection: BufferedConnection) -> None:
        self.dirty.append(connection)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush_all)

    def flush_all(self) -> None:
        self.flush_scheduled = False
        dirty, self.dirty = self.dirty, []
        for connection in dirty:
            connection._flush()


_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopShared] = (
    weakref.WeakKeyDictionary()
)


def _shared_for(loop: asyncio.AbstractEventLoop) -> _LoopShared:
    shared = _shared.get(loop)
    if shared is None:
        shared = _shared[loop] = _LoopShared(loop)
    return shared


class BufferedConnection(asyncio.BufferedProtocol):
    """One accepted connection: asyncio protocol below, ``Connection`` above.

    Subclasses decide when the connection is *open* (TCP at once, WebSocket after the
    upgrade) by calling :meth:`_open`, and handle the peer's bytes in :meth:`data_received`
    (usually feeding them to :meth:`_deliver`).
    """

    __slots__ = (
        "_accepted_at",
        "_admit",
        "_bursting",
        "_close_timer",
        "_closed",
        "_flush_scheduled",
        "_handler",
        "_limits",
        "_log",
        "_loop",
        "_lost",
        "_on_connection",
        "_opening",
        "_peer",
        "_pending",
        "_shared",
        "_slow_readers",
        "_stats",
        "_transport",
    )

    def __init__(
        self,
        on_connection: ConnectionFactory,
        limits: ConnectionLimits,
        stats: AcceptorStats,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._on_connection = on_connection
        self._limits = limits
        self._stats = stats
        self._loop = loop
        self._accepted_at = loop.time()
        """When the socket was accepted (the protocol is made then, before any TLS): the
        opening stages share ``limits.open_timeout`` from here."""
        self._transport: asyncio.Transport | None = None
        self._handler: ConnectionHandler | None = None
        self._peer = "?"
        self._pending: list[bytes] = []
        self._flush_scheduled = False
        self._closed = False
        self._lost = False
        self._close_timer: asyncio.TimerHandle | None = None
        self._shared = _shared_for(loop)
        self._admit: Callable[[], bool] | None = None
        """Set by :meth:`Listener.start`: asked at accept whether this socket may stay."""
        self._log = _NO_SERVER
        """Set by the listener: its server's logger, so a line says which server it is."""
        self._slow_readers = _UNLISTED_SLOW_READERS
        """Set by the listener: how often its slow readers' aborts are logged (one line per
        10 s: a peer can open connections that do not read, as many as it likes)."""
        self._opening = False
        """Accepted, counted in ``stats.opening``, not handed over yet."""
        self._bursting = False
        """The last read filled its buffer: read :data:`BURST_READ_SIZE` at a time."""

    # -- Connection protocol -------------------------------------------------------------

    @property
    def kind(self) -> str:
        """Overridden by each acceptor's connection class."""
        raise NotImplementedError

    @property
    def remote_address(self) -> str:
        """``host:port`` of the peer."""
        return self._peer

    @property
    def closed(self) -> bool:
        """True once ``close``/``abort`` was called or the peer went away."""
        return self._closed

    def write(self, packet: bytes) -> None:
        """Queue ``packet``; everything queued in this loop iteration goes out in one write."""
        if not self._closed:
            self._enqueue(packet)

    def close(self) -> None:
        """Flush what is queued, then close; the transport drains its buffer first."""
        if self._closed:
            return
        self._closed = True
        self._flush()
        self._close_transport()

    def abort(self) -> None:
        """Drop what is queued and reset the connection now."""
        self._closed = True
        self._pending = []
        if self._transport is not None:
            self._transport.abort()

    # -- asyncio.BufferedProtocol --------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._shared.burst_view if self._bursting else self._shared.view

    def buffer_updated(self, nbytes: int) -> None:
        if nbytes >= BURST_READ_SIZE:
            self._bursting = nbytes == (BURST_READ_SIZE if self._bursting else READ_BUFFER_SIZE)
            if self._bursting and self._transport is not None:
                # The peer has more waiting: read next iteration, after the others.
                self._transport.pause_reading()
                self._loop.call_soon(self._resume_reading)
        elif self._bursting:
            self._bursting = False
        self.data_received(self._shared.view[:nbytes].tobytes())  # one copy, not two

    def _resume_reading(self) -> None:
        transport = self._transport
        if transport is not None and not self._lost and not transport.is_closing():
            transport.resume_reading()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Accepted: admitted, then the acceptor's own opening (with TLS or the PROXY
        protocol a gate in front of it takes the two steps, :mod:`transport.proxygate`)."""
        if self._accept(transport):
            self._begin()

    def _accept(self, transport: asyncio.BaseTransport) -> bool:
        """Refuse the socket at once if the listener's ``admit`` says so (False), else count
        it as opening until handed over. Separate from :meth:`_begin` because a PROXY header
        comes between the two (:mod:`transport.proxygate`): the socket counts from its
        accept, the acceptor's opening starts once the header named the client."""
        self._transport = cast(asyncio.Transport, transport)
        self._peer = format_peer(transport)
        if self._admit is not None and not self._admit():
            self._stats.refused += 1
            self._closed = True
            self._transport.abort()
            return False
        self._opening = True
        self._stats.opening += 1
        return True

    def _begin(self) -> None:
        """The acceptor's own opening, once the socket is admitted: TCP hands the connection
        over at once, WebSocket waits for the upgrade."""
        raise NotImplementedError

    def _open_time_left(self) -> float:
        """Seconds left of ``limits.open_timeout`` since the accept (0 when it is spent).

        One budget for every opening stage (a PROXY header, TLS, the WebSocket upgrade), not
        one each: a peer that spends it slowly on the first stages has none left for the
        next, so a slowloris socket holds its place for ``open_timeout`` at most."""
        return max(0.0, self._limits.open_timeout - (self._loop.time() - self._accepted_at))

    def _relayed(self, transport: asyncio.BaseTransport, client: str | None) -> None:
        """The PROXY header was read: ``client`` (``host:port``; None for a header relaying
        no address, such as a balancer's health check) is the peer from now on, and
        ``transport`` the one to use (a TLS one when TLS started after the header)."""
        self._transport = cast(asyncio.Transport, transport)
        if client is not None:
            self._peer = client
        if not self._closed:
            self._begin()

    def eof_received(self) -> bool | None:
        # The peer will send nothing more: send what is queued, then let asyncio close
        # the transport (returning None), which drains the buffer before closing.
        self._closed = True
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._lost = True
        self._pending = []
        if self._opening:
            self._opening = False
            self._stats.opening -= 1
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        handler, self._handler = self._handler, None
        if handler is None:
            return
        self._stats.active -= 1
        try:
            handler.connection_lost(exc)
        except Exception:
            self._log.exception(
                "connection_lost handler failed for %s peer %s", self.kind, self._peer
            )

    # -- for subclasses ------------------------------------------------------------------

    def _open(self) -> None:
        """Hand the connection to the layer above; abort it if ``on_connection`` raises."""
        if self._opening:
            self._opening = False
            self._stats.opening -= 1
        try:
            handler = self._on_connection(self)
        except Exception:
            self._log.exception(
                "on_connection failed for %s peer %s; aborting it", self.kind, self._peer
            )
            self.abort()
            return
        self._handler = handler
        self._stats.accepted += 1
        self._stats.active += 1

    def _deliver(self, data: bytes) -> None:
        """Pass the peer's bytes up; a handler that raises costs its connection, not the loop."""
        handler = self._handler
        if handler is None or self._closed:
            return
        try:
            handler.data_received(data)
        except Exception:
            self._log.exception(
                "data handler failed for %s peer %s; aborting it", self.kind, self._peer
            )
            self.abort()

    data_received = _deliver
    """The peer's bytes (a copy out of the shared read buffer), passed up as they are (TCP);
    subclasses that decode a framing first override it. ``_deliver`` itself, not a method
    calling it: every read comes here."""

    def _enqueue(self, data: bytes) -> None:
        """Queue bytes that are already framed, even after ``close`` (close frames, EOF)."""
        self._pending.append(data)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        """One flush per event-loop iteration, however many writes it holds."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._shared.schedule(self)

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending = self._pending
        transport = self._transport
        if not pending or transport is None or transport.is_closing():
            return
        self._pending = []
        transport.write(b"".join(pending))
        if transport.get_write_buffer_size() > self._limits.max_write_buffer:
            self._stats.slow_reader_disconnects += 1
            self._slow_readers.log(
                self._loop.time(),
                self._log,
                logging.WARNING,
                "%s peer %s does not read: %d bytes buffered (limit %d); aborting it",
                self.kind,
                self._peer,
                transport.get_write_buffer_size(),
                self._limits.max_write_buffer,
            )
            self.abort()

    def _close_transport(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._arm_close_timer()

    def _arm_close_timer(self) -> None:
        """Abort after ``CLOSE_TIMEOUT`` unless the connection is gone by then."""
        if self._close_timer is None and not self._lost and self._transport is not None:
            self._close_timer = self._loop.call_later(CLOSE_TIMEOUT, self._transport.abort)


class Listener:
    """The listening socket of an acceptor: start, stop, bound address and stats.

    Subclasses provide ``kind`` and :meth:`_connection`, the per-connection protocol.

    ``reuse_port`` sets ``SO_REUSEPORT``: several processes (frontends of one type on one
    machine) listen on the same port and the kernel spreads new connections across them, so
    a Python server, one core per process, uses every core behind one address. Every
    process sharing the port must set it.

    ``server_id`` (the app passes its own) prefixes the lines this listener and its
    connections log, as every other component's lines are, so that one of several servers
    sharing a log says which one dropped a peer.

    ``proxy_protocol``: every connection begins with a PROXY header (v1 or v2) from a load
    balancer, naming the client that ``remote_address`` then reports; with TLS the header
    comes before the TLS handshake (:mod:`transport.proxygate`). ``proxy_protocol_trusted``
    (CIDRs) limits the peers it is accepted from; the others are closed at accept.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl: ssl_module.SSLContext | None = None,
        limits: ConnectionLimits = DEFAULT_LIMITS,
        backlog: int = 1024,
        reuse_port: bool = False,
        server_id: str = "",
        proxy_protocol: bool = False,
        proxy_protocol_trusted: Iterable[str] = (),
    ) -> None:
        trusted = tuple(proxy_protocol_trusted)
        if trusted and not proxy_protocol:
            raise ValueError("proxy_protocol_trusted is set but proxy_protocol is off")
        self._proxy = ProxyPolicy.from_cidrs(trusted) if proxy_protocol else None
        """None: connections start at accept; else whose PROXY headers are believed."""
        self._proxy_throttle = Throttle()
        self._slow_readers = Throttle()
        self.stats = AcceptorStats()
        self.log = ServerLog(self._logger, server_id)
        self.limits = limits
        self._host = host
        self._port = port
        self._ssl = ssl
        self._backlog = backlog
        self._reuse_port = reuse_port
        self._server: asyncio.Server | None = None
        self._address: tuple[str, int] | None = None
        self._admit: Callable[[], bool] | None = None

    _logger = logger
    """The module logger of an acceptor's lines (each acceptor may name its own)."""

    @property
    def kind(self) -> str:
        """Overridden by each acceptor."""
        raise NotImplementedError

    @property
    def proxy_protocol(self) -> bool:
        """Whether every connection begins with a PROXY header (:mod:`transport.proxygate`)."""
        return self._proxy is not None

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` of the first listening socket once started.

        Before ``start`` it is the requested address (port 0 not yet resolved); it does not
        raise, so ``isinstance(acceptor, Acceptor)`` works on a fresh acceptor.
        """
        if self._address is None:
            return (self._host, self._port)
        return self._address

    async def start(
        self, on_connection: ConnectionFactory, *, admit: Callable[[], bool] | None = None
    ) -> None:
        """Bind and listen; ``on_connection`` is called for every accepted connection.

        ``admit`` (optional) is asked as each socket is accepted, before any byte is read:
        False closes it at once (``stats.refused``). A server's connection limit uses it so
        that sockets still opening (a WebSocket upgrade, a slowloris) count too.
        """
        if self._server is not None:
            raise RuntimeError(f"{self.kind} acceptor already started")
        loop = asyncio.get_running_loop()
        self._admit = admit
        # TLS starts from the gate (after the PROXY header, if any), not in asyncio's accept:
        # there the socket would be admitted, and counted, only after its handshake.
        self._server = await loop.create_server(
            lambda: self._accepted(on_connection, loop),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port or None,
        )
        sockname = self._server.sockets[0].getsockname()
        self._address = (str(sockname[0]), int(sockname[1]))
        # At debug: the server above says it, with its id (several share one stderr).
        self.log.debug(
            "%s acceptor listening on %s:%d%s%s%s",
            self.kind,
            *self._address,
            " (TLS)" if self._ssl is not None else "",
            " (port shared: SO_REUSEPORT)" if self._reuse_port else "",
            " (PROXY protocol)" if self._proxy is not None else "",
        )

    async def stop(self) -> None:
        """Close the listening socket; accepted connections stay open.

        ``Server.wait_closed`` is deliberately not awaited: from Python 3.12 it waits for
        every accepted connection to end, which is the opposite of what ``stop`` promises.
        """
        server = self._server
        if server is not None and server.is_serving():
            server.close()
            self.log.debug("%s acceptor on %s:%d stopped accepting", self.kind, *self.address)

    def _accepted(
        self, on_connection: ConnectionFactory, loop: asyncio.AbstractEventLoop
    ) -> asyncio.BufferedProtocol:
        connection = self._connection(on_connection, loop)
        connection._admit = self._admit
        connection._log = self.log
        connection._slow_readers = self._slow_readers
        if self._proxy is None and self._ssl is None:
            return connection
        return ProxyGate(
            connection,
            connection._accept,
            connection._relayed,
            kind=self.kind,
            policy=self._proxy or ProxyPolicy(),
            ssl=self._ssl,
            timeout=self.limits.open_timeout,
            stats=self.stats,
            log=self.log,
            throttle=self._proxy_throttle,
            loop=loop,
            header=self._proxy is not None,
        )

    def _connection(
        self, on_connection: ConnectionFactory, loop: asyncio.AbstractEventLoop
    ) -> BufferedConnection:
        raise NotImplementedError
