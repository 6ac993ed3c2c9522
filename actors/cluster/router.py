"""Choosing the server of a type that serves a route (Pitaya's router), and skipping the dead.

By default a random live server of the type. ``app.add_route(server_type, fn)`` installs a
custom choice: ``fn(session, route, servers) -> ServerInfo`` sees the caller's session (None
for an RPC made outside a session), the full route and the live candidates::

    def by_room(session, route, servers):
        room = session.get("room", "") if session else ""
        return servers[zlib.crc32(room.encode()) % len(servers)]

    app.add_route("room", by_room)

**Probation.** A server that died without leaving discovery (SIGKILL, a crash, a lost
machine) stays in the table until its etcd lease expires (60 s). A request to it is refused
at once by the transport (NATS "no responders": nobody subscribes to its subject; gRPC
``UNAVAILABLE`` before connecting): :class:`~actors.cluster.rpc.ServerUnreachable`. The
caller then tells the router (:meth:`Router.unreachable`), which stops choosing that server
for :data:`PROBATION` seconds (a warning, once). After that one request may choose it again
(a trial): if it answers, the server is back (:meth:`Router.answered`, logged once at info);
if it is refused again, the probation starts over, silently. A trial that gets no answer
at all (a timeout) does not count either way: another trial comes :data:`PROBATION` seconds
later. When every server of a type is on probation the router chooses among all of them, as
it would without probation (a refused request fails at once, so nothing is lost by trying).
A custom route function sees only the servers not on probation; asked for another server,
one that raises declines (the request fails as unreachable, ``PIT-408``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from actors.cluster.discovery import ServerInfo, ServiceDiscovery
from actors.errors import InternalError, PitayaError
from actors.logs import ServerLog

if TYPE_CHECKING:
    from actors.session import Session

RouteFunction = Callable[["Session | None", str, list[ServerInfo]], ServerInfo]

PROBATION = 3.0
"""Seconds a server refused by the transport is not chosen, before one trial request."""

FORGET_AFTER = 600.0
"""Seconds after which the probation of a server nobody tried any more is forgotten (it
left discovery long ago): the table of probations does not grow with dead ids."""

log = logging.getLogger(__name__)


class NoServersAvailable(InternalError):
    """``PIT-500`` with Pitaya's text: no live server of the route's type."""

    def __init__(self, server_type: str) -> None:
        super().__init__(f"no servers available of type {server_type}")
        self.metadata["server_type"] = server_type


class Router:
    """Picks a server per route; see the module docstring.

    ``probation``: seconds a refused server is skipped; ``clock``: monotonic seconds (tests
    pass their own); ``server_id``: this server, for its log lines.
    """

    def __init__(
        self,
        discovery: ServiceDiscovery,
        *,
        probation: float = PROBATION,
        clock: Callable[[], float] = time.monotonic,
        server_id: str = "",
    ) -> None:
        self.discovery = discovery
        self.custom: dict[str, RouteFunction] = {}
        self.probation_time = probation
        self.clock = clock
        self.probation: dict[str, float] = {}
        """Servers on probation, by id: when one may be tried again (``clock`` time)."""
        self.log = ServerLog(log, server_id)

    def add_route(self, server_type: str, fn: RouteFunction) -> None:
        self.custom[server_type] = fn

    def pick(self, server_type: str, route: str, session: Session | None) -> ServerInfo:
        servers = self.discovery.servers(server_type)
        if not servers:
            raise NoServersAvailable(server_type)
        if self.probation:
            servers = self._eligible(servers) or servers
        return self._choose(server_type, route, session, servers)

    def reroute(
        self, server_type: str, route: str, session: Session | None, tried: Collection[str]
    ) -> ServerInfo | None:
        """Another server for a request that provably reached none of ``tried`` (ids): one
        of the type not tried and not on probation, chosen as :meth:`pick` does; None when
        there is none, or when a custom route function declines by raising (a game pinning
        a player to the server of its match has no other). Its error is not the request's:
        the request failed because its server was unreachable, and is answered so; a route
        function that fails otherwise than with a ``PitayaError`` is logged."""
        servers = [s for s in self.discovery.servers(server_type) if s.id not in tried]
        if self.probation:
            servers = self._eligible(servers)
        if not servers:
            return None
        try:
            chosen = self._choose(server_type, route, session, servers)
        except PitayaError:
            return None
        except Exception:
            self.log.exception(
                "custom route for %s failed choosing another server for %s", server_type, route
            )
            return None
        return None if chosen.id in tried else chosen

    def unreachable(self, server: ServerInfo) -> None:
        """``server`` refused a request (nobody received it): skip it for a while."""
        now = self.clock()
        known = server.id in self.probation
        self.probation[server.id] = now + self.probation_time
        if known:
            return  # a failed trial, or another request refused at the same time
        if len(self.probation) > 1:
            self._forget_old(now)
        self.log.warning(
            "server %s (%s) is unreachable (nobody receives its requests): not chosen for "
            "%gs, then tried again",
            server.id,
            server.type,
            self.probation_time,
        )

    def answered(self, server: ServerInfo) -> None:
        """``server`` answered a request: if it was on probation, it is chosen again."""
        if self.probation.pop(server.id, None) is not None:
            self.log.info("server %s (%s) answers again: chosen again", server.id, server.type)

    def _choose(
        self, server_type: str, route: str, session: Session | None, servers: list[ServerInfo]
    ) -> ServerInfo:
        fn = self.custom.get(server_type)
        if fn is None:
            chosen = servers[0] if len(servers) == 1 else random.choice(servers)
        else:
            chosen = fn(session, route, list(servers))
            if not isinstance(chosen, ServerInfo):
                raise InternalError(f"custom route for {server_type} returned {chosen!r}")
        if self.probation and chosen.id in self.probation:
            # A trial (or every server is on probation): the others wait for its outcome.
            self.probation[chosen.id] = self.clock() + self.probation_time
        return chosen

    def _eligible(self, servers: list[ServerInfo]) -> list[ServerInfo]:
        """``servers`` without those on probation whose trial is not due yet."""
        now = self.clock()
        probation = self.probation
        return [s for s in servers if probation.get(s.id, now) <= now]

    def _forget_old(self, now: float) -> None:
        for server_id, until in list(self.probation.items()):
            if until + FORGET_AFTER < now:
                del self.probation[server_id]
