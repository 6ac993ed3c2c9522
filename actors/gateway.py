"""Gateway actors: one per listener; accept connections and spawn their session actors.

The acceptor calls back synchronously on the event loop for every new connection; the gateway
checks the connection limit and spawns a :class:`SessionActor` child whose mailbox then
receives the connection's bytes. Our listeners also ask the gateway at accept, before any byte
(:meth:`Gateway._admit`): sockets still opening (a WebSocket upgrade) count toward
``max_connections`` as well, so half-open upgrades cannot pile up beside the limit.

Handshake and heartbeat are per connection, so they live in the session actor (on the sans-I/O
``ServerConnection``), not here: the gateway stays off the per-packet path.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from actors.actor import Actor
from actors.logs import ServerLog, Throttle
from actors.sessions.actor import SessionActor
from actors.sessions.messages import ConnectionEvents
from transport.acceptor import Acceptor, Connection, ConnectionHandler
from transport.listener import Listener

if TYPE_CHECKING:
    from actors.sessions.host import GatewayHost

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StopAccepting:
    pass


@dataclass(frozen=True, slots=True)
class Listen:
    """Ask it to open its listener: answered with the bound (host, port), or the error."""


class _Refused:
    """Handler for a connection refused at accept: ignores its events."""

    def data_received(self, data: bytes) -> None:
        pass

    def connection_lost(self, exc: BaseException | None) -> None:
        pass


class Gateway(Actor):
    """Owns one :class:`Acceptor`."""

    def __init__(self, acceptor: Acceptor, app: GatewayHost) -> None:
        self.acceptor = acceptor
        self.app = app
        self.accepting = False
        self.log = ServerLog(log, app.server_id)
        self.refusals = Throttle()
        """Refused sockets come in floods (a server at its limit is when they come): one
        line per 10 s at warning, with the count of the others, each at debug."""

    async def on_listen(self, msg: Listen) -> tuple[str, int]:
        """Open the listener; the asker (App.start) gets the bind error, if any, as is."""
        if isinstance(self.acceptor, Listener):
            await self.acceptor.start(self._on_connection, admit=self._admit)
        else:  # a user's acceptor: checked when it hands a connection over
            await self.acceptor.start(self._on_connection)
        self.accepting = True
        host, port = self.acceptor.address
        proxy = isinstance(self.acceptor, Listener) and self.acceptor.proxy_protocol
        self.log.info(
            "%s listening on %s:%s%s",
            self.acceptor.kind,
            host,
            port,
            " (PROXY protocol: clients' addresses from the balancer's header)" if proxy else "",
        )
        return host, port

    def _admit(self) -> bool:
        """At accept: room for one more socket, counting those still opening on every
        listener of the app (``AcceptorStats.opening``)?"""
        app = self.app
        opening = sum(a.stats.opening for a in app.acceptors if isinstance(a, Listener))
        if self.accepting and app.connection_count + opening < app.config.max_connections:
            return True
        app.stats.refused_connections += 1
        self.refusals.log(
            time.monotonic(),
            self.log,
            logging.WARNING,
            "refusing a %s connection at accept (limit %s reached, %s still opening, or stopping)",
            self.acceptor.kind,
            app.config.max_connections,
            opening,
        )
        return False

    def _on_connection(self, connection: Connection) -> ConnectionHandler:
        app = self.app
        if not self.accepting or app.connection_count >= app.config.max_connections:
            app.stats.refused_connections += 1
            self.refusals.log(
                time.monotonic(),
                self.log,
                logging.WARNING,
                "refusing %s connection from %s (limit %s reached or stopping)",
                connection.kind,
                connection.remote_address,
                app.config.max_connections,
            )
            connection.abort()
            return _Refused()
        app.connection_opened()
        return ConnectionEvents(self.spawn(SessionActor, connection, app))

    async def on_stop_accepting(self, msg: StopAccepting) -> None:
        if self.accepting:
            self.accepting = False
            await self.acceptor.stop()
            self.log.info("%s stopped accepting", self.acceptor.kind)
