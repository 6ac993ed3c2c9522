"""Backends observe the sessions they served: bind and close events (beyond Pitaya).

In Pitaya a backend never learns that a player it served bound a uid or disconnected. Here a
frontend remembers, per session, which backend servers handled its messages and through which
routes; when the session binds or closes it sends those servers a ``pysys.sessionevent``
(:class:`~actors.cluster.control.SessionEvent`) with a snapshot of the session: over NATS a
request the backend acknowledges, held while it cannot be delivered
(``actors.cluster.held_events``); over gRPC a notify. A backend
subscribes globally or for one route::

    app.on_remote_session_close(lambda s: rooms.tell(PlayerLeft(s.uid)))
    app.on_remote_session_close(save_progress, route="room.room.join")

Callbacks get the session as a read-only :class:`BackendSession` (``uid``, ``data``, ids).
A frontend that dies without stopping sends no close: the backend closes its sessions itself
(``actors.cluster.served_sessions``).

**The record is bounded** (:func:`record_served`, ``Session.served_by``): at most
:data:`MAX_SERVED_SERVERS` servers per session and :data:`MAX_SERVED_ROUTES` routes per
server. Past the routes cap a server's routes become :data:`EVERY_ROUTE`: its events then
match every route filter, so no callback of a server already recorded misses an event (a
route-filtered callback may run for a session that never used its route). A server met
past the servers cap is not recorded: it is not told of that session's bind and close (and
is sent the session's handshake with every message, see ``actors.cluster.outbound``).
Routes a backend answers with PIT-404 are dropped from the record (a client cannot grow it
by making routes up).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actors.session import Session

log = logging.getLogger(__name__)

BIND = "bind"
CLOSE = "close"

RemoteSessionCallback = Callable[["Session"], Awaitable[None] | None]

MAX_SERVED_SERVERS = 64
"""Backend servers recorded per session (the bind/close events go to those)."""
MAX_SERVED_ROUTES = 64
"""Routes recorded per server and session; past it: :data:`EVERY_ROUTE`."""
EVERY_ROUTE = "*"
"""A route record meaning every route (no client route is ``*``)."""


def record_served(served_by: dict[str, set[str]], server_id: str, route: str) -> bool:
    """Record that ``server_id`` handled ``route`` for a session, within the caps (module
    docstring); False when the server is not recorded (past :data:`MAX_SERVED_SERVERS`)."""
    routes = served_by.get(server_id)
    if routes is None:
        if len(served_by) >= MAX_SERVED_SERVERS:
            return False
        served_by[server_id] = {route}
    elif route not in routes:
        add_route(routes, route)
    return True


def add_route(routes: set[str], route: str) -> None:
    """Add ``route`` to a record of the routes a session used on a server: past
    :data:`MAX_SERVED_ROUTES` the record is :data:`EVERY_ROUTE` (it matches every filter)."""
    if route in routes or EVERY_ROUTE in routes:
        return
    if len(routes) >= MAX_SERVED_ROUTES:
        routes.clear()
        routes.add(EVERY_ROUTE)
    else:
        routes.add(route)


class RemoteSessionEvents:
    """Subscriptions of one backend to the bind/close events of sessions it served."""

    def __init__(self) -> None:
        self._subscriptions: dict[str, list[tuple[str | None, RemoteSessionCallback]]] = {
            BIND: [],
            CLOSE: [],
        }
        self.closes_wanted = False
        """A close callback is subscribed (``actors.cluster.served_sessions`` remembers
        sessions only then; read for every forwarded message, so an attribute)."""

    def subscribe(self, event: str, callback: RemoteSessionCallback, route: str | None) -> None:
        self._subscriptions[event].append((route, callback))
        self.closes_wanted = bool(self._subscriptions[CLOSE])

    @property
    def wanted(self) -> bool:
        return any(self._subscriptions.values())

    async def emit(self, event: str, session: Session, routes: set[str]) -> None:
        """Run the callbacks of ``event`` whose route filter matches ``routes``
        (:data:`EVERY_ROUTE` matches every filter)."""
        every = EVERY_ROUTE in routes
        for route, callback in self._subscriptions.get(event, []):
            if route is not None and not every and route not in routes:
                continue
            try:
                result = callback(session)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("remote session %s callback failed for session %s", event, session.id)
