"""The seam between listeners and whatever serves connections.

An :class:`Acceptor` listens (TCP, WebSocket, or a user's own) and, for every accepted
connection, calls ``on_connection(connection)`` synchronously on the event loop. The returned
:class:`ConnectionHandler` receives the connection's bytes in arrival order. ``transport``
knows nothing of sessions or actors: the layer above plugs in through these protocols.

Example of a custom handler (an echo server)::

    class Echo:
        def __init__(self, conn: Connection) -> None:
            self.conn = conn
        def data_received(self, data: bytes) -> None:
            self.conn.write(data)
        def connection_lost(self, exc: BaseException | None) -> None:
            pass

    acceptor = TcpAcceptor("127.0.0.1", 0)
    await acceptor.start(Echo)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Per-connection limits a listener enforces before bytes reach the layer above.

    ``max_write_buffer``: bytes queued for a client that does not read; past it the
    connection is aborted (a slow reader must not make the server buffer without bound).
    ``open_timeout``: seconds from its accept a new connection has to finish the steps of
    the transport's own opening (a PROXY header, TLS, the WebSocket upgrade), all of them
    together, before it is aborted; until then it is not handed to the layer above, so
    nothing else would ever time it out.
    """

    max_write_buffer: int = 4 * 1024 * 1024
    open_timeout: float = 10.0


@runtime_checkable
class Connection(Protocol):
    """One accepted client connection, as bytes."""

    @property
    def remote_address(self) -> str:
        """``host:port`` of the peer, for logs."""
        ...

    @property
    def kind(self) -> str:
        """``"tcp"`` or ``"ws"`` (or a custom acceptor's name), for logs and metrics."""
        ...

    @property
    def closed(self) -> bool:
        """True once ``close``/``abort`` was called or the peer went away."""
        ...

    def write(self, packet: bytes) -> None:
        """Queue one whole packet for the peer. Never blocks; a no-op once closed.

        Writes made in the same event-loop iteration are flushed together. WebSocket
        acceptors send each packet as its own binary frame.
        """
        ...

    def close(self) -> None:
        """Flush what is queued, then close. Idempotent."""
        ...

    def abort(self) -> None:
        """Close at once, dropping anything queued. Idempotent."""
        ...


class ConnectionHandler(Protocol):
    """Receives the events of one connection; built by the acceptor's ``on_connection``."""

    def data_received(self, data: bytes) -> None:
        """Bytes from the peer, in order, in arbitrary chunks (a WebSocket frame per call)."""
        ...

    def connection_lost(self, exc: BaseException | None) -> None:
        """Called exactly once when the connection is gone, whoever closed it."""
        ...


ConnectionFactory = Callable[[Connection], ConnectionHandler]


@runtime_checkable
class Acceptor(Protocol):
    """A listener. Implementations: ``TcpAcceptor``, ``WebSocketAcceptor``, ``MemoryAcceptor``
    (no socket: ``transport.memory``, for tests), or your own."""

    @property
    def kind(self) -> str:
        """Short name of the transport (``"tcp"``, ``"ws"``)."""
        ...

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``; valid after ``start`` (port 0 resolves to the real port)."""
        ...

    async def start(self, on_connection: ConnectionFactory) -> None:
        """Bind and begin accepting; returns once the socket listens."""
        ...

    async def stop(self) -> None:
        """Stop accepting new connections. Existing connections stay open."""
        ...
