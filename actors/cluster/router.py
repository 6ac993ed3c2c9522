"""Choosing the server of a type that serves a route (Pitaya's router).

By default a random live server of the type. ``app.add_route(server_type, fn)`` installs a
custom choice: ``fn(session, route, servers) -> ServerInfo`` sees the caller's session (None
for an RPC made outside a session), the full route and the live candidates::

    def by_room(session, route, servers):
        room = session.get("room", "") if session else ""
        return servers[zlib.crc32(room.encode()) % len(servers)]

    app.add_route("room", by_room)
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from actors.cluster.discovery import ServerInfo, ServiceDiscovery
from actors.errors import InternalError

if TYPE_CHECKING:
    from actors.session import Session

RouteFunction = Callable[["Session | None", str, list[ServerInfo]], ServerInfo]


class NoServersAvailable(InternalError):
    """``PIT-500`` with Pitaya's text: no live server of the route's type."""

    def __init__(self, server_type: str) -> None:
        super().__init__(f"no servers available of type {server_type}")
        self.metadata["server_type"] = server_type


class Router:
    """Picks a server per route; see the module docstring."""

    def __init__(self, discovery: ServiceDiscovery) -> None:
        self.discovery = discovery
        self.custom: dict[str, RouteFunction] = {}

    def add_route(self, server_type: str, fn: RouteFunction) -> None:
        self.custom[server_type] = fn

    def pick(self, server_type: str, route: str, session: Session | None) -> ServerInfo:
        servers = self.discovery.servers(server_type)
        if not servers:
            raise NoServersAvailable(server_type)
        fn = self.custom.get(server_type)
        if fn is None:
            return servers[0] if len(servers) == 1 else random.choice(servers)
        chosen = fn(session, route, list(servers))
        if not isinstance(chosen, ServerInfo):
            raise InternalError(f"custom route for {server_type} returned {chosen!r}")
        return chosen
