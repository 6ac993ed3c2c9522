"""TCP (and TLS over TCP) acceptor: Pitaya's raw-socket transport.

The peer's bytes go to the handler exactly as the socket delivers them (in arbitrary
chunks; the packet decoder above reassembles packets). Writes are coalesced and a client
that does not read is aborted past ``ConnectionLimits.max_write_buffer``; both behaviours
live in :mod:`transport.listener`, shared with the WebSocket acceptor.

Example::

    acceptor = TcpAcceptor("0.0.0.0", 3250, ssl=context)
    await acceptor.start(lambda conn: MyHandler(conn))
    ...
    await acceptor.stop()   # stop accepting; existing connections stay open
"""

from __future__ import annotations

import asyncio

from transport.acceptor import ConnectionFactory
from transport.listener import BufferedConnection, Listener

__all__ = ["TcpAcceptor", "TcpConnection"]


class TcpConnection(BufferedConnection):
    """A TCP client: open as soon as accepted (after the TLS handshake, with TLS)."""

    __slots__ = ()

    @property
    def kind(self) -> str:
        return "tcp"

    def _begin(self) -> None:
        self._open()


class TcpAcceptor(Listener):
    """Listens on ``host:port``; with ``ssl`` every connection is TLS.

    A client failing the TLS handshake never reaches ``on_connection``: the handshake is
    done before the connection begins (:mod:`transport.proxygate`), and a failure only drops
    that socket.
    ``stats`` (:class:`~transport.stats.AcceptorStats`) counts accepted, active and
    slow-reader disconnects. ``proxy_protocol``: each connection begins with a load
    balancer's PROXY header, read before TLS starts (:class:`~transport.listener.Listener`).
    """

    @property
    def kind(self) -> str:
        return "tcp"

    def _connection(
        self, on_connection: ConnectionFactory, loop: asyncio.AbstractEventLoop
    ) -> TcpConnection:
        return TcpConnection(on_connection, self.limits, self.stats, loop)
