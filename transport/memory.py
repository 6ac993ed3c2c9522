"""An in-memory acceptor: connections that are a pair of pipes in one event loop, no socket.

The server side of a connection is an ordinary :class:`~transport.acceptor.Connection`, so
whatever serves TCP serves this too, unchanged; the client side is a
:class:`~transport.client_channels.Channel`, so :class:`transport.client.Client` speaks the
whole protocol over it. Tests use it to drive a server in milliseconds, with no ports::

    acceptor = MemoryAcceptor()
    await acceptor.start(lambda conn: MyHandler(conn))
    client = await Client.over(await acceptor.connect())

It behaves like a TCP stream where it matters to the layers above: the server's writes reach
the client in order and may arrive together in one ``receive``; ``close`` delivers what was
written, then end of stream; ``abort`` drops what the client has not read yet; the handler's
``connection_lost`` is called exactly once, on a later loop iteration, whoever closed; a client
that does not read is aborted past ``ConnectionLimits.max_write_buffer``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

from transport.acceptor import ConnectionFactory, ConnectionHandler, ConnectionLimits
from transport.logs import ServerLog
from transport.stats import AcceptorStats

__all__ = ["MemoryAcceptor", "MemoryChannel", "MemoryConnection"]

logger = logging.getLogger(__name__)

_acceptor_ids = itertools.count(1)


class MemoryConnection:
    """The server's side of one in-memory connection (a :class:`Connection`)."""

    __slots__ = (
        "_acceptor",
        "_buffered",
        "_closed",
        "_eof",
        "_handler",
        "_lost",
        "_peer",
        "_readable",
        "_to_client",
    )

    def __init__(self, acceptor: MemoryAcceptor, peer: str) -> None:
        self._acceptor = acceptor
        self._peer = peer
        self._handler: ConnectionHandler | None = None
        self._to_client: list[bytes] = []
        self._buffered = 0
        self._readable = asyncio.Event()
        self._closed = False
        self._eof = False
        self._lost = False

    # -- Connection ------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        return "memory"

    @property
    def remote_address(self) -> str:
        return self._peer

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, packet: bytes) -> None:
        if self._closed:
            return
        self._to_client.append(packet)
        self._buffered += len(packet)
        self._readable.set()
        limit = self._acceptor.limits.max_write_buffer
        if self._buffered > limit:
            self._acceptor.stats.slow_reader_disconnects += 1
            self._acceptor.log.warning(
                "memory peer %s does not read: %d bytes buffered (limit %d); aborting it",
                self._peer,
                self._buffered,
                limit,
            )
            self.abort()

    def close(self) -> None:
        """The client reads what was written, then end of stream."""
        if not self._closed:
            self._closed = True
            self._end()

    def abort(self) -> None:
        """The client loses what it has not read yet and sees end of stream."""
        self._closed = True
        self._to_client.clear()
        self._buffered = 0
        self._end()

    # -- the client's side (MemoryChannel) and the acceptor ---------------------------------

    def _attach(self, handler: ConnectionHandler) -> None:
        self._handler = handler

    def _from_client(self, data: bytes) -> None:
        handler = self._handler
        if handler is None or self._closed:
            return
        try:
            handler.data_received(data)
        except Exception:
            self._acceptor.log.exception(
                "data handler failed for memory peer %s; aborting it", self._peer
            )
            self.abort()

    async def _read(self) -> bytes:
        while not self._to_client:
            if self._eof:
                return b""
            self._readable.clear()
            await self._readable.wait()
        data = b"".join(self._to_client)
        self._to_client.clear()
        self._buffered = 0
        return data

    def _end(self) -> None:
        """End of stream for the client; the handler hears of it on a later iteration."""
        self._eof = True
        self._readable.set()
        if not self._lost:
            self._lost = True
            asyncio.get_running_loop().call_soon(self._connection_lost)

    def _connection_lost(self) -> None:
        self._acceptor._forget(self)
        handler, self._handler = self._handler, None
        if handler is None:
            return
        try:
            handler.connection_lost(None)
        except Exception:
            self._acceptor.log.exception(
                "connection_lost handler failed for memory peer %s", self._peer
            )


class MemoryChannel:
    """The client's side of one in-memory connection (a ``transport.client_channels.Channel``).

    ``send`` hands the bytes to the server's handler at once; ``receive`` returns everything
    the server wrote since the last call, or ``b""`` once the connection is closed. As with
    TCP, bytes sent after the server closed are dropped; the client learns of the close by
    reading end of stream.
    """

    __slots__ = ("_closed", "_connection")

    def __init__(self, connection: MemoryConnection) -> None:
        self._connection = connection
        self._closed = False

    @property
    def server_side(self) -> MemoryConnection:
        """The connection as the server sees it (for tests of the server's behaviour)."""
        return self._connection

    async def send(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionResetError("the in-memory connection was closed by this client")
        self._connection._from_client(data)

    async def receive(self) -> bytes:
        return await self._connection._read()

    async def close(self) -> None:
        """Close from the client's side: the server's handler gets ``connection_lost``."""
        self._closed = True
        self._connection.close()


class MemoryAcceptor:
    """An :class:`~transport.acceptor.Acceptor` whose clients are made by :meth:`connect`.

    ``address`` is ``("memory", n)``, ``n`` unique per acceptor in the process; ``stats``
    counts as the socket acceptors do.
    """

    def __init__(self, *, limits: ConnectionLimits | None = None, server_id: str = "") -> None:
        self.limits = limits if limits is not None else ConnectionLimits()
        self.log = ServerLog(logger, server_id)
        """Its server's logger (``server_id``), as the socket acceptors have."""
        self.stats = AcceptorStats()
        self._id = next(_acceptor_ids)
        self._on_connection: ConnectionFactory | None = None
        self._accepting = False
        self._peers = itertools.count(1)
        self._live: set[MemoryConnection] = set()

    @property
    def kind(self) -> str:
        return "memory"

    @property
    def address(self) -> tuple[str, int]:
        return ("memory", self._id)

    @property
    def connections(self) -> set[MemoryConnection]:
        """The connections not yet lost (server side)."""
        return set(self._live)

    async def start(self, on_connection: ConnectionFactory) -> None:
        if self._on_connection is not None:
            raise RuntimeError("memory acceptor already started")
        self._on_connection = on_connection
        self._accepting = True

    async def stop(self) -> None:
        """Refuse new connections; the open ones stay open."""
        self._accepting = False

    async def connect(self) -> MemoryChannel:
        """A new connection, handed to the server; raises ConnectionRefusedError if stopped.

        A server that refuses the connection (closes or aborts it in ``on_connection``)
        leaves the client a channel that reads end of stream.
        """
        if not self._accepting or self._on_connection is None:
            raise ConnectionRefusedError(f"memory acceptor {self._id} is not accepting")
        connection = MemoryConnection(self, f"memory:{self._id}:{next(self._peers)}")
        try:
            handler = self._on_connection(connection)
        except Exception:
            self.log.exception(
                "on_connection failed for %s; aborting it", connection.remote_address
            )
            connection.abort()
            return MemoryChannel(connection)
        # Counted even when refused in on_connection (closed at once), as the socket
        # acceptors count it; connection_lost then comes on a later iteration as usual.
        connection._attach(handler)
        self._live.add(connection)
        self.stats.accepted += 1
        self.stats.active += 1
        return MemoryChannel(connection)

    def _forget(self, connection: MemoryConnection) -> None:
        if connection in self._live:
            self._live.discard(connection)
            self.stats.active -= 1
