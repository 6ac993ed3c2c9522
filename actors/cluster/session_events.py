"""Backends observe the sessions they served: bind and close events (beyond Pitaya).

In Pitaya a backend never learns that a player it served bound a uid or disconnected. Here a
frontend remembers, per session, which backend servers handled its messages and through which
routes; when the session binds or closes it sends those servers a ``sys.sessionevent`` notify
(:class:`~actors.cluster.control.SessionEvent`) with a snapshot of the session. A backend
subscribes globally or for one route::

    app.on_remote_session_close(lambda s: rooms.tell(PlayerLeft(s.uid)))
    app.on_remote_session_close(save_progress, route="room.room.join")

Callbacks get the session as a read-only :class:`BackendSession` (``uid``, ``data``, ids).
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


class RemoteSessionEvents:
    """Subscriptions of one backend to the bind/close events of sessions it served."""

    def __init__(self) -> None:
        self._subscriptions: dict[str, list[tuple[str | None, RemoteSessionCallback]]] = {
            BIND: [],
            CLOSE: [],
        }

    def subscribe(self, event: str, callback: RemoteSessionCallback, route: str | None) -> None:
        self._subscriptions[event].append((route, callback))

    @property
    def wanted(self) -> bool:
        return any(self._subscriptions.values())

    async def emit(self, event: str, session: Session, routes: set[str]) -> None:
        """Run the callbacks of ``event`` whose route filter matches ``routes``."""
        for route, callback in self._subscriptions.get(event, []):
            if route is not None and route not in routes:
                continue
            try:
                result = callback(session)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("remote session %s callback failed for session %s", event, session.id)
